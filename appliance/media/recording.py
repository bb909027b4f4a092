"""Call recordings encrypted at rest: writer, reader and WAV export.

A recording holds both directions of a call as the G.711 frames the media worker relayed, each with its
arrival time. It is encrypted with AES-256-GCM under a random per-file data key; that key is stored wrapped
(RFC 5649 AES key wrap with padding) under a configured key-encryption key (KEK) named by a key id, so the
KEK can be rotated while old recordings stay readable as long as their KEK is kept.

File format (all integers big-endian)::

    header  = magic "PoPREC" (6) | version u8 (=1) | body_len u16 | body | header_tag (16)
    body    = key_id_len u8 | key_id (UTF-8)
            | wrapped_len u8 | wrapped data key (RFC 5649)
            | codec u8 (8 = PCMA, 0 = PCMU: the RTP payload type) | sample_rate u32
            | call_id_len u16 | call_id (UTF-8) | direction_count u8
    chunk   = flags u8 (bit 0 = final) | ct_len u32 | ciphertext (ct_len, GCM tag included)
    plain   = record*
    record  = direction u8 | timestamp f64 | frame_len u16 | frame

``header_tag`` is the GCM tag of an empty plaintext under nonce 0 with the whole header (magic to end of
body) as associated data, so a tampered header is refused even when no chunk follows. Chunk ``i`` (from 0)
is sealed with nonce ``i + 1`` (a 96-bit counter: never reused under one data key, and the key is never used
for a second file) and associated data ``SHA-256(header) | i u64 | flags u8``. Binding the index and the
final flag means a chunk cannot be moved, dropped, replayed from another recording or promoted to be the
last one. The writer closes a chunk every second of audio or 64 KiB, whichever comes first, and ends the file
with a chunk flagged final (possibly empty). A file that ends without the final chunk (the worker crashed or
the disk filled) is reported as truncated, after every complete chunk before the cut has been yielded.
"""

from __future__ import annotations

import array
import contextlib
import enum
import hashlib
import math
import os
import struct
import sys
import wave
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from appliance.durable import fsync_dir
from appliance.media.g711 import alaw_decode, ulaw_decode
from appliance.media.rtp import MediaError

MAGIC: Final = b"PoPREC"
VERSION: Final = 1
SAMPLE_RATE: Final = 8000
CHUNK_SECONDS: Final = 1.0
CHUNK_BYTES: Final = 64 * 1024
# A chunk never exceeds CHUNK_BYTES plus one maximal record; anything far larger is not ours, and refusing it
# keeps a hostile file from making the reader allocate without bound.
MAX_CHUNK: Final = CHUNK_BYTES + 2 * 65536
FLAG_FINAL: Final = 0x01

_PREAMBLE: Final = struct.Struct("!6sBH")
_CHUNK_HEAD: Final = struct.Struct("!BI")
_RECORD: Final = struct.Struct("!BdH")
_AAD_TAIL: Final = struct.Struct("!QB")
_TAG_LEN: Final = 16
_KEK_LENGTHS: Final = frozenset({16, 24, 32})
Codec = Literal["PCMA", "PCMU"]

_CODECS: Final[dict[Codec, int]] = {"PCMA": 8, "PCMU": 0}
_CODEC_NAMES: Final[dict[int, Codec]] = {value: name for name, value in _CODECS.items()}


class Reason(enum.StrEnum):
    """Why a recording cannot be read (in full)."""

    TRUNCATED = "truncated"
    TAMPERED = "tampered"
    UNKNOWN_KEY = "unknown-key"
    WRONG_KEY = "wrong-key"
    MALFORMED = "malformed"


class RecordingError(MediaError):
    """A recording that cannot be read (in full); ``reason`` is a :class:`Reason`, ``detail`` says where."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


class RecordingUsageError(MediaError):
    """Our caller misused the writer (bad direction, oversized frame, write after close, bad KEK)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One G.711 frame as it was relayed: ``direction`` index, arrival ``timestamp`` (seconds), payload."""

    direction: int
    timestamp: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class Header:
    """The authenticated description of a recording."""

    key_id: str
    codec: Codec
    sample_rate: int
    call_id: str
    direction_count: int


def key_id_for(kek: bytes) -> str:
    """The key id a recording names ``kek`` by when none is configured: a fingerprint of the KEK (the first
    64 bits of its SHA-256), so a reader holding several KEKs can tell which one a file needs."""
    return "kek-" + hashlib.sha256(b"appliance recording kek\0" + kek).hexdigest()[:16]


def _nonce(counter: int) -> bytes:
    return counter.to_bytes(12, "big")


def _encode_header(header: Header, wrapped: bytes) -> bytes:
    key_id = header.key_id.encode()
    call_id = header.call_id.encode()
    body = b"".join(
        (
            struct.pack("!B", len(key_id)),
            key_id,
            struct.pack("!B", len(wrapped)),
            wrapped,
            struct.pack("!BI", _CODECS[header.codec], header.sample_rate),
            struct.pack("!H", len(call_id)),
            call_id,
            struct.pack("!B", header.direction_count),
        )
    )
    return _PREAMBLE.pack(MAGIC, VERSION, len(body)) + body


def _check_kek(kek: bytes) -> None:
    if len(kek) not in _KEK_LENGTHS:
        raise RecordingUsageError(f"a KEK is 16, 24 or 32 octets, not {len(kek)}")


class RecordingWriter:
    """Writes one call's recording to ``path`` (which must not exist yet).

    ``write`` buffers frames and seals a chunk every :data:`CHUNK_SECONDS` of audio or :data:`CHUNK_BYTES`;
    ``close`` seals the final chunk and fsyncs the file and its directory, so once it returns the recording
    survives a power cut and the outbox record announcing it may be written. ``random_bytes`` supplies the
    data key (injectable so tests are reproducible).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        kek: bytes,
        key_id: str,
        call_id: str,
        codec: Codec,
        directions: int = 2,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        _check_kek(kek)
        if codec not in _CODECS:
            raise RecordingUsageError(f"unsupported codec {codec!r}")
        if not 1 <= directions <= 255:
            raise RecordingUsageError(f"direction count {directions} out of range")
        if len(key_id.encode()) > 255 or len(call_id.encode()) > 65535:
            raise RecordingUsageError("key id or call id too long")
        data_key = random_bytes(32)
        if len(data_key) != 32:
            raise RecordingUsageError("random_bytes returned a short data key")
        self.header = Header(key_id, codec, SAMPLE_RATE, call_id, directions)
        self._path = Path(path)
        self._aead = AESGCM(data_key)
        header = _encode_header(self.header, aes_key_wrap_with_padding(kek, data_key))
        self._header_digest = hashlib.sha256(header).digest()
        self._index = 0
        self._buffer = bytearray()
        self._chunk_start: float | None = None
        self._closed = False
        # "xb": a recording is never silently overwritten, e.g. by a reused call id.
        self._file: BinaryIO = open(self._path, "xb")  # noqa: SIM115 - lives until close()
        self._file.write(header + self._aead.encrypt(_nonce(0), b"", header))

    def write(self, direction: int, timestamp: float, frame: bytes) -> None:
        """Append one frame of ``direction`` that arrived at ``timestamp`` (seconds, any monotonic origin)."""
        if self._closed:
            raise RecordingUsageError("write after close")
        if not 0 <= direction < self.header.direction_count:
            raise RecordingUsageError(f"direction {direction} out of range")
        if not math.isfinite(timestamp):
            raise RecordingUsageError("timestamp is not finite")
        if len(frame) > 0xFFFF:
            raise RecordingUsageError(f"frame of {len(frame)} octets is too large")
        if self._chunk_start is None:
            self._chunk_start = timestamp
        self._buffer += _RECORD.pack(direction, timestamp, len(frame))
        self._buffer += frame
        if len(self._buffer) >= CHUNK_BYTES or timestamp - self._chunk_start >= CHUNK_SECONDS:
            self._seal(final=False)

    def close(self) -> None:
        """Seal the final chunk, fsync the file and its directory. Idempotent."""
        if self._closed:
            return
        self._seal(final=True)
        self._closed = True
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
        # The directory entry must be durable too, or a crash could lose a file the outbox announced.
        fsync_dir(self._path.parent)

    def abort(self) -> None:
        """Stop writing without the final chunk (the disk failed): the file keeps the chunks sealed so far
        and reads as truncated, never as complete. Idempotent; errors closing the file are ignored."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _seal(self, *, final: bool) -> None:
        flags = FLAG_FINAL if final else 0
        aad = self._header_digest + _AAD_TAIL.pack(self._index, flags)
        sealed = self._aead.encrypt(_nonce(self._index + 1), bytes(self._buffer), aad)
        self._file.write(_CHUNK_HEAD.pack(flags, len(sealed)) + sealed)
        self._file.flush()
        self._index += 1
        self._buffer.clear()
        self._chunk_start = None


class _Cursor:
    """Reads fixed-size fields from a header body, raising MALFORMED instead of IndexError."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, size: int) -> bytes:
        if self._pos + size > len(self._data):
            raise RecordingError(Reason.MALFORMED, "header body too short")
        out = self._data[self._pos : self._pos + size]
        self._pos += size
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def done(self) -> bool:
        return self._pos == len(self._data)


class RecordingReader:
    """Reads a recording, yielding its :class:`Frame` objects in the order they were written.

    The header is read and its key unwrapped on construction (``header`` is then available); iteration
    raises :class:`RecordingError` at the first chunk that fails authentication (TAMPERED) or when the file
    ends before the final chunk (TRUNCATED) — after yielding every frame of the chunks before it.
    """

    def __init__(self, path: str | os.PathLike[str], *, keks: Mapping[str, bytes]) -> None:
        self._path = Path(path)
        with open(self._path, "rb") as file:
            self.header, self._aead, self._header_digest, self._body_offset = self._open(file, keks)

    @staticmethod
    def _open(file: BinaryIO, keks: Mapping[str, bytes]) -> tuple[Header, AESGCM, bytes, int]:
        preamble = file.read(_PREAMBLE.size)
        if len(preamble) < _PREAMBLE.size:
            raise RecordingError(Reason.TRUNCATED, "file ends inside the header")
        magic, version, body_len = _PREAMBLE.unpack(preamble)
        if magic != MAGIC:
            raise RecordingError(Reason.MALFORMED, "not a recording (bad magic)")
        if version != VERSION:
            raise RecordingError(Reason.MALFORMED, f"unsupported version {version}")
        body = file.read(body_len)
        tag = file.read(_TAG_LEN)
        if len(body) < body_len or len(tag) < _TAG_LEN:
            raise RecordingError(Reason.TRUNCATED, "file ends inside the header")
        cursor = _Cursor(body)
        try:
            key_id = cursor.take(cursor.u8()).decode()
            wrapped = cursor.take(cursor.u8())
            codec_pt, sample_rate = struct.unpack("!BI", cursor.take(5))
            call_id = cursor.take(int.from_bytes(cursor.take(2), "big")).decode()
            directions = cursor.u8()
        except UnicodeDecodeError:
            raise RecordingError(Reason.MALFORMED, "header text is not UTF-8") from None
        if not cursor.done():
            raise RecordingError(Reason.MALFORMED, "trailing octets in header body")
        codec = _CODEC_NAMES.get(codec_pt)
        if codec is None:
            raise RecordingError(Reason.MALFORMED, f"unknown codec {codec_pt}")
        kek = keks.get(key_id)
        if kek is None:
            raise RecordingError(Reason.UNKNOWN_KEY, f"no KEK for key id {key_id!r}")
        try:
            data_key = aes_key_unwrap_with_padding(kek, wrapped)
        except (InvalidUnwrap, ValueError):
            raise RecordingError(Reason.WRONG_KEY, f"KEK {key_id!r} does not unwrap the data key") from None
        if len(data_key) != 32:
            raise RecordingError(Reason.MALFORMED, "data key is not 256 bits")
        aead = AESGCM(data_key)
        header_bytes = preamble + body
        try:
            aead.decrypt(_nonce(0), tag, header_bytes)
        except InvalidTag:
            raise RecordingError(Reason.TAMPERED, "header fails authentication") from None
        header = Header(key_id, codec, sample_rate, call_id, directions)
        digest = hashlib.sha256(header_bytes).digest()
        return header, aead, digest, len(header_bytes) + _TAG_LEN

    def __iter__(self) -> Iterator[Frame]:
        with open(self._path, "rb") as file:
            file.seek(self._body_offset)
            index = 0
            while True:
                head = file.read(_CHUNK_HEAD.size)
                if len(head) < _CHUNK_HEAD.size:
                    raise RecordingError(Reason.TRUNCATED, f"file ends before chunk {index} (no final chunk)")
                flags, length = _CHUNK_HEAD.unpack(head)
                if flags & ~FLAG_FINAL or not _TAG_LEN <= length <= MAX_CHUNK + _TAG_LEN:
                    raise RecordingError(Reason.TAMPERED, f"chunk {index} has an impossible head")
                sealed = file.read(length)
                if len(sealed) < length:
                    raise RecordingError(Reason.TRUNCATED, f"file ends inside chunk {index}")
                aad = self._header_digest + _AAD_TAIL.pack(index, flags)
                try:
                    plain = self._aead.decrypt(_nonce(index + 1), sealed, aad)
                except InvalidTag:
                    raise RecordingError(Reason.TAMPERED, f"chunk {index} fails authentication") from None
                yield from self._records(plain, index)
                if flags & FLAG_FINAL:
                    if file.read(1):
                        raise RecordingError(Reason.TAMPERED, "octets after the final chunk")
                    return
                index += 1

    def _records(self, plain: bytes, index: int) -> Iterator[Frame]:
        pos = 0
        while pos < len(plain):
            if pos + _RECORD.size > len(plain):
                raise RecordingError(Reason.MALFORMED, f"chunk {index} ends inside a record")
            direction, timestamp, size = _RECORD.unpack_from(plain, pos)
            pos += _RECORD.size
            if pos + size > len(plain) or direction >= self.header.direction_count:
                raise RecordingError(Reason.MALFORMED, f"chunk {index} holds a bad record")
            yield Frame(direction, timestamp, plain[pos : pos + size])
            pos += size


@dataclass(frozen=True, slots=True)
class WavSummary:
    """What :func:`to_wav` wrote: frame count and length in samples per channel."""

    frames: int
    samples: int
    truncated: bool


def to_wav(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    keks: Mapping[str, bytes],
    *,
    allow_truncated: bool = False,
) -> WavSummary:
    """Decrypt a recording into a 2-channel 8 kHz 16-bit WAV (channel n = direction n).

    Frames are placed by arrival time relative to the earliest frame of either direction; gaps are filled
    with silence; a frame that arrives while the previous one is still playing follows it directly (jitter
    must not overwrite audio). Nothing is written unless the recording decrypts in full, or, with
    ``allow_truncated``, up to a truncation (other errors still raise).
    """
    reader = RecordingReader(path, keks=keks)
    if reader.header.direction_count > 2:
        raise RecordingError(Reason.MALFORMED, "WAV export handles at most two directions")
    decode = alaw_decode if reader.header.codec == "PCMA" else ulaw_decode
    rate = reader.header.sample_rate
    frames: list[Frame] = []
    truncated = False
    try:
        frames.extend(reader)
    except RecordingError as exc:
        if not (allow_truncated and exc.reason is Reason.TRUNCATED):
            raise
        truncated = True
    channels = [array.array("h"), array.array("h")]
    if frames:
        origin = min(frame.timestamp for frame in frames)
        for frame in frames:
            channel = channels[frame.direction]
            start = round((frame.timestamp - origin) * rate)
            if start > len(channel):
                channel.frombytes(bytes(2 * (start - len(channel))))
            channel.extend(decode(frame.payload))
    length = max(len(channel) for channel in channels)
    for channel in channels:
        channel.extend([0] * (length - len(channel)))
    interleaved = array.array("h", bytes(4 * length))
    interleaved[0::2] = channels[0]
    interleaved[1::2] = channels[1]
    if sys.byteorder == "big":  # WAV samples are little-endian
        interleaved.byteswap()
    with wave.open(os.fspath(out_path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(interleaved.tobytes())
    return WavSummary(len(frames), length, truncated)
