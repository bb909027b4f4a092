"""Operator command for encrypted call recordings.

``python -m appliance.media.recording_cli decrypt FILE OUT.wav --key-file K [--key-id ID]`` decrypts a
recording into a 2-channel WAV. Without ``--key-id`` the KEK goes by its fingerprint
(:func:`~appliance.media.recording.key_id_for`), the id the media worker writes into its recordings.
The key file holds the key-encryption key either as raw octets (16, 24 or 32) or as hex text. Exit
status: 0 on success; 1 with a one-line message on stderr when the key is unknown or wrong, the recording
was tampered with or truncated, or a file cannot be read or written. With ``--allow-truncated`` a
truncated recording is exported up to the cut and the command still exits 0 after a warning, for
recovering the audio of a call the worker was recording when it crashed.
"""

from __future__ import annotations

import argparse
import binascii
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.media.recording import SAMPLE_RATE, RecordingError, key_id_for, to_wav

_KEK_LENGTHS = (16, 24, 32)


class KeyFileError(Exception):
    """The key file cannot be read or does not hold a KEK."""


def load_kek(path: str | os.PathLike[str]) -> bytes:
    """Read a KEK from ``path``: raw 16/24/32 octets, or the same as hex text (whitespace ignored)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {os.fspath(path)}: {exc.strerror}") from None
    if len(data) in _KEK_LENGTHS:
        return data
    try:
        key = binascii.unhexlify(b"".join(data.split()))
    except (binascii.Error, ValueError):
        raise KeyFileError(f"key file {os.fspath(path)} is neither a raw nor a hex key") from None
    if len(key) not in _KEK_LENGTHS:
        raise KeyFileError(f"key file {os.fspath(path)} holds {len(key)} octets, not 16, 24 or 32")
    return key


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recording_cli", description="Encrypted call recordings.")
    commands = parser.add_subparsers(dest="command", required=True)
    decrypt = commands.add_parser("decrypt", help="decrypt a recording to a 2-channel 8 kHz WAV")
    decrypt.add_argument("file", help="the encrypted recording")
    decrypt.add_argument("out", help="the WAV file to write")
    decrypt.add_argument("--key-file", required=True, help="file holding the key-encryption key")
    decrypt.add_argument(
        "--key-id", help="key id the KEK is configured under (default: the KEK's fingerprint)"
    )
    decrypt.add_argument(
        "--allow-truncated", action="store_true", help="export a truncated recording up to the cut"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        kek = load_kek(args.key_file)
        key_id = args.key_id if args.key_id is not None else key_id_for(kek)
        summary = to_wav(args.file, args.out, {key_id: kek}, allow_truncated=args.allow_truncated)
    except KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RecordingError as exc:
        print(f"error: recording {args.file}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.filename or args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    if summary.truncated:
        print(f"warning: recording {args.file} is truncated; exported up to the cut", file=sys.stderr)
    print(f"{args.out}: {summary.frames} frames, {summary.samples / SAMPLE_RATE:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
