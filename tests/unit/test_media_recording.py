"""Encrypted call recordings: round trip, WAV export, tamper/truncation detection and the CLI."""

from __future__ import annotations

import itertools
import os
import struct
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from appliance.media.recording import (
    CHUNK_BYTES,
    MAGIC,
    Frame,
    Reason,
    RecordingError,
    RecordingReader,
    RecordingUsageError,
    RecordingWriter,
    to_wav,
)

KEK = bytes(range(32))
OTHER_KEK = bytes(range(1, 33))
KEKS = {"kek-1": KEK}
_CHUNK_HEAD = struct.Struct("!BI")
_TAG = 16


def deterministic_random() -> Callable[[int], bytes]:
    counter = itertools.count()

    def random_bytes(size: int) -> bytes:
        seed = next(counter)
        return bytes((seed * 31 + i) % 256 for i in range(size))

    return random_bytes


def tone(n: int, codec: str = "PCMA") -> bytes:
    encode = alaw_encode if codec == "PCMA" else ulaw_encode
    return encode(((i * 997 + n * 131) % 20000) - 10000 for i in range(160))


def write_call(path: Path, *, seconds: float = 3.0, codec: str = "PCMA", close: bool = True) -> list[Frame]:
    """Write 20 ms frames both ways for ``seconds``; the B direction starts 10 ms after A."""
    frames: list[Frame] = []
    writer = RecordingWriter(path, kek=KEK, key_id="kek-1", call_id="call-42@pop", codec=codec)  # type: ignore[arg-type]
    for n in range(round(seconds / 0.02)):
        for direction, offset in ((0, 0.0), (1, 0.01)):
            frame = Frame(direction, 100.0 + n * 0.02 + offset, tone(n + direction * 1000, codec))
            writer.write(frame.direction, frame.timestamp, frame.payload)
            frames.append(frame)
    if close:
        writer.close()
    else:
        writer._file.close()  # simulate a crash: no final chunk, nothing fsynced
    return frames


def chunk_offsets(data: bytes) -> list[tuple[int, int]]:
    """(offset, total length) of each chunk in a recording file."""
    body_len = struct.unpack_from("!H", data, len(MAGIC) + 1)[0]
    pos = len(MAGIC) + 3 + body_len + _TAG
    out = []
    while pos < len(data):
        _, length = _CHUNK_HEAD.unpack_from(data, pos)
        out.append((pos, _CHUNK_HEAD.size + length))
        pos += _CHUNK_HEAD.size + length
    return out


def header_length(data: bytes) -> int:
    body_len: int = struct.unpack_from("!H", data, len(MAGIC) + 1)[0]
    return len(MAGIC) + 3 + body_len + _TAG


@pytest.fixture
def recording(tmp_path: Path) -> tuple[Path, list[Frame]]:
    path = tmp_path / "call.rec"
    return path, write_call(path)


def test_round_trip_frames(recording: tuple[Path, list[Frame]]) -> None:
    path, frames = recording
    reader = RecordingReader(path, keks=KEKS)
    assert reader.header.call_id == "call-42@pop"
    assert reader.header.codec == "PCMA"
    assert reader.header.direction_count == 2
    assert reader.header.sample_rate == 8000
    assert list(reader) == frames


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 1),
            st.floats(0, 10_000, allow_nan=False),
            st.binary(max_size=400),
        ),
        max_size=300,
    )
)
def test_any_frames_round_trip(records: list[tuple[int, float, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.rec"
        with RecordingWriter(path, kek=KEK, key_id="kek-1", call_id="c", codec="PCMU") as writer:
            for direction, timestamp, payload in records:
                writer.write(direction, timestamp, payload)
        assert list(RecordingReader(path, keks=KEKS)) == [Frame(*record) for record in records]


def test_chunks_are_cut_every_second(recording: tuple[Path, list[Frame]]) -> None:
    path, _ = recording
    # 3 s of audio from t=100.0: a chunk closes on the frames at 101.0 and 102.01; the rest is final.
    assert len(chunk_offsets(path.read_bytes())) == 3


def test_chunks_are_cut_at_64_kib(tmp_path: Path) -> None:
    path = tmp_path / "big.rec"
    with RecordingWriter(path, kek=KEK, key_id="kek-1", call_id="c", codec="PCMU") as writer:
        for n in range(20):
            writer.write(0, 0.0, bytes([n]) * 8000)  # same instant: only the size can cut a chunk
    chunks = chunk_offsets(path.read_bytes())
    assert len(chunks) == 3
    assert all(length <= CHUNK_BYTES + 9000 for _, length in chunks)
    assert [f.payload[0] for f in RecordingReader(path, keks=KEKS)] == list(range(20))


def test_file_does_not_contain_plaintext(recording: tuple[Path, list[Frame]]) -> None:
    path, frames = recording
    assert frames[5].payload not in path.read_bytes()


def test_fresh_data_key_per_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.rec", tmp_path / "b.rec"
    write_call(a, seconds=0.1)
    write_call(b, seconds=0.1)
    assert a.read_bytes() != b.read_bytes()


def test_injected_random_makes_file_reproducible(tmp_path: Path) -> None:
    outputs = []
    for name in ("a.rec", "b.rec"):
        with RecordingWriter(
            tmp_path / name,
            kek=KEK,
            key_id="kek-1",
            call_id="c",
            codec="PCMA",
            random_bytes=deterministic_random(),
        ) as writer:
            writer.write(0, 1.0, b"\xd5" * 160)
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]


def test_existing_file_is_not_overwritten(recording: tuple[Path, list[Frame]]) -> None:
    path, _ = recording
    with pytest.raises(FileExistsError):
        RecordingWriter(path, kek=KEK, key_id="kek-1", call_id="c", codec="PCMA")


def test_writer_rejects_misuse(tmp_path: Path) -> None:
    with pytest.raises(RecordingUsageError):
        RecordingWriter(tmp_path / "x.rec", kek=b"short", key_id="k", call_id="c", codec="PCMA")
    writer = RecordingWriter(tmp_path / "y.rec", kek=KEK, key_id="k", call_id="c", codec="PCMA")
    with pytest.raises(RecordingUsageError):
        writer.write(2, 0.0, b"\xd5")
    with pytest.raises(RecordingUsageError):
        writer.write(0, float("nan"), b"\xd5")
    with pytest.raises(RecordingUsageError):
        writer.write(0, 0.0, bytes(70000))
    writer.close()
    writer.close()
    with pytest.raises(RecordingUsageError):
        writer.write(0, 0.0, b"\xd5")


def test_empty_recording_reads_as_no_frames(tmp_path: Path) -> None:
    path = tmp_path / "empty.rec"
    RecordingWriter(path, kek=KEK, key_id="kek-1", call_id="c", codec="PCMU").close()
    assert list(RecordingReader(path, keks=KEKS)) == []


def test_wav_export(recording: tuple[Path, list[Frame]], tmp_path: Path) -> None:
    path, frames = recording
    out = tmp_path / "call.wav"
    summary = to_wav(path, out, KEKS)
    assert summary.frames == len(frames)
    assert not summary.truncated
    with wave.open(str(out), "rb") as wav:
        assert wav.getnchannels() == 2
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == 8000
        # A: 150 frames of 160 samples from t=0; B starts 10 ms (80 samples) later.
        assert wav.getnframes() == 150 * 160 + 80
        raw = wav.readframes(wav.getnframes())
    samples = struct.unpack(f"<{len(raw) // 2}h", raw)
    left, right = samples[0::2], samples[1::2]
    assert list(left[:160]) == alaw_decode(frames[0].payload)
    assert list(left[160:320]) == alaw_decode(frames[2].payload)
    assert list(right[:80]) == [0] * 80  # silence before B's first frame
    assert list(right[80:240]) == alaw_decode(frames[1].payload)
    assert list(left[-80:]) == [0] * 80  # A padded to B's length


def test_wav_fills_gaps_with_silence(tmp_path: Path) -> None:
    path, out = tmp_path / "gap.rec", tmp_path / "gap.wav"
    a, b = tone(1, "PCMU"), tone(2, "PCMU")
    with RecordingWriter(path, kek=KEK, key_id="kek-1", call_id="c", codec="PCMU") as writer:
        writer.write(0, 5.0, a)
        writer.write(0, 5.5, b)  # 480 ms of lost packets between them
        writer.write(1, 5.0, b)
        writer.write(1, 5.015, a)  # early by 5 ms: follows the previous frame, never overwrites it
    to_wav(path, out, KEKS)
    with wave.open(str(out), "rb") as wav:
        assert wav.getnframes() == 4000 + 160
        raw = wav.readframes(wav.getnframes())
    samples = struct.unpack(f"<{len(raw) // 2}h", raw)
    left, right = samples[0::2], samples[1::2]
    assert list(left[:160]) == ulaw_decode(a)
    assert list(left[160:4000]) == [0] * 3840
    assert list(left[4000:]) == ulaw_decode(b)
    assert list(right[:320]) == ulaw_decode(b) + ulaw_decode(a)
    assert list(right[320:]) == [0] * (4160 - 320)


def expect_error(path: Path, reason: Reason | None = None, keks: dict[str, bytes] = KEKS) -> list[Frame]:
    """Read ``path`` until it fails; return the frames read before the failure."""
    got: list[Frame] = []
    with pytest.raises(RecordingError) as info:
        got.extend(RecordingReader(path, keks=keks))
    if reason is not None:
        assert info.value.reason is reason
    return got


def test_every_header_byte_is_authenticated(recording: tuple[Path, list[Frame]]) -> None:
    path, _ = recording
    data = path.read_bytes()
    for pos in range(header_length(data)):
        tampered = bytearray(data)
        tampered[pos] ^= 0x01
        path.write_bytes(tampered)
        expect_error(path)


def test_every_chunk_byte_is_authenticated(tmp_path: Path) -> None:
    path = tmp_path / "small.rec"
    write_call(path, seconds=1.1)
    data = path.read_bytes()
    start = header_length(data)
    # Every byte of every chunk (flags, length, ciphertext and tag) is checked.
    for pos in range(start, len(data)):
        tampered = bytearray(data)
        tampered[pos] ^= 0x80
        path.write_bytes(tampered)
        expect_error(path)


def test_flipped_ciphertext_is_tampered(recording: tuple[Path, list[Frame]]) -> None:
    path, frames = recording
    data = bytearray(path.read_bytes())
    offset, _ = chunk_offsets(bytes(data))[1]
    data[offset + _CHUNK_HEAD.size + 10] ^= 0xFF
    path.write_bytes(data)
    got = expect_error(path, Reason.TAMPERED)
    assert got == frames[: len(got)] and got  # chunk 0 still decrypted


def test_dropped_chunk_is_detected(recording: tuple[Path, list[Frame]]) -> None:
    path, _ = recording
    data = path.read_bytes()
    offset, length = chunk_offsets(data)[1]
    path.write_bytes(data[:offset] + data[offset + length :])
    expect_error(path, Reason.TAMPERED)


def test_reordered_chunks_are_detected(recording: tuple[Path, list[Frame]]) -> None:
    path, _ = recording
    data = path.read_bytes()
    (o1, l1), (o2, l2) = chunk_offsets(data)[:2]
    path.write_bytes(data[:o1] + data[o2 : o2 + l2] + data[o1 : o1 + l1] + data[o2 + l2 :])
    expect_error(path, Reason.TAMPERED)


def test_final_flag_cannot_be_forged(recording: tuple[Path, list[Frame]]) -> None:
    path, _ = recording
    data = path.read_bytes()
    offset, length = chunk_offsets(data)[1]
    forged = bytearray(data[: offset + length])
    forged[offset] |= 0x01  # claim chunk 1 was the last one
    path.write_bytes(forged)
    expect_error(path, Reason.TAMPERED)


def test_chunk_from_another_recording_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.rec", tmp_path / "b.rec"
    write_call(a)
    write_call(b)
    da, db = a.read_bytes(), b.read_bytes()
    (oa, la), (ob, lb) = chunk_offsets(da)[1], chunk_offsets(db)[1]
    a.write_bytes(da[:oa] + db[ob : ob + lb] + da[oa + la :])
    expect_error(a, Reason.TAMPERED)


def test_trailing_data_after_final_chunk_is_refused(recording: tuple[Path, list[Frame]]) -> None:
    path, _ = recording
    path.write_bytes(path.read_bytes() + b"\x00")
    expect_error(path, Reason.TAMPERED)


def test_truncation_mid_chunk_yields_frames_before(recording: tuple[Path, list[Frame]]) -> None:
    path, frames = recording
    data = path.read_bytes()
    offset, length = chunk_offsets(data)[2]
    path.write_bytes(data[: offset + length // 2])
    got = expect_error(path, Reason.TRUNCATED)
    # Chunks 0 and 1 (two seconds of audio, both ways) survive the cut.
    assert got == frames[: len(got)]
    assert len(got) == 202


def test_truncation_at_chunk_boundary_is_not_silently_short(recording: tuple[Path, list[Frame]]) -> None:
    path, frames = recording
    data = path.read_bytes()
    offset, _ = chunk_offsets(data)[-1]
    path.write_bytes(data[:offset])  # only the final chunk is missing
    got = expect_error(path, Reason.TRUNCATED)
    # 101 frames up to t=101.0 and 101 more up to t=102.01; only the final chunk's frames are lost.
    assert got == frames[:202]


def test_crashed_writer_is_reported_truncated(tmp_path: Path) -> None:
    path = tmp_path / "crash.rec"
    frames = write_call(path, seconds=2.5, close=False)
    got = expect_error(path, Reason.TRUNCATED)
    assert got == frames[: len(got)] and got


def test_truncation_inside_header(recording: tuple[Path, list[Frame]]) -> None:
    path, _ = recording
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(RecordingError) as info:
        RecordingReader(path, keks=KEKS)
    assert info.value.reason is Reason.TRUNCATED


def test_wrong_kek(recording: tuple[Path, list[Frame]]) -> None:
    path, _ = recording
    with pytest.raises(RecordingError) as info:
        RecordingReader(path, keks={"kek-1": OTHER_KEK})
    assert info.value.reason is Reason.WRONG_KEY


def test_unknown_key_id(recording: tuple[Path, list[Frame]]) -> None:
    path, _ = recording
    with pytest.raises(RecordingError) as info:
        RecordingReader(path, keks={"kek-2": KEK})
    assert info.value.reason is Reason.UNKNOWN_KEY


def test_not_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "junk.rec"
    path.write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(RecordingError) as info:
        RecordingReader(path, keks=KEKS)
    assert info.value.reason is Reason.MALFORMED


def test_wav_export_refuses_truncated_unless_allowed(
    recording: tuple[Path, list[Frame]], tmp_path: Path
) -> None:
    path, _ = recording
    data = path.read_bytes()
    path.write_bytes(data[: chunk_offsets(data)[-1][0]])
    out = tmp_path / "t.wav"
    with pytest.raises(RecordingError):
        to_wav(path, out, KEKS)
    assert not out.exists()
    summary = to_wav(path, out, KEKS, allow_truncated=True)
    assert summary.truncated
    with wave.open(str(out), "rb") as wav:
        assert wav.getnframes() == summary.samples >= 2 * 8000


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [sys.executable, "-m", "appliance.media.recording_cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=60,
        check=False,
    )


def test_cli_decrypts_with_hex_key_file(recording: tuple[Path, list[Frame]], tmp_path: Path) -> None:
    path, _ = recording
    key_file, out = tmp_path / "kek.hex", tmp_path / "out.wav"
    key_file.write_text(KEK.hex() + "\n")
    result = run_cli("decrypt", path, out, "--key-file", key_file, "--key-id", "kek-1")
    assert result.returncode == 0, result.stderr
    with wave.open(str(out), "rb") as wav:
        assert wav.getnchannels() == 2
        assert wav.getnframes() == 150 * 160 + 80


def test_cli_raw_key_file_and_wrong_key(recording: tuple[Path, list[Frame]], tmp_path: Path) -> None:
    path, _ = recording
    key_file, out = tmp_path / "kek.bin", tmp_path / "out.wav"
    key_file.write_bytes(OTHER_KEK)
    result = run_cli("decrypt", path, out, "--key-file", key_file, "--key-id", "kek-1")
    assert result.returncode == 1
    assert "wrong-key" in result.stderr
    assert not out.exists()
    result = run_cli("decrypt", path, out, "--key-file", key_file, "--key-id", "kek-9")
    assert result.returncode == 1
    assert "unknown-key" in result.stderr


def test_cli_reports_tamper_and_truncation(recording: tuple[Path, list[Frame]], tmp_path: Path) -> None:
    path, _ = recording
    key_file, out = tmp_path / "kek.bin", tmp_path / "out.wav"
    key_file.write_bytes(KEK)
    data = path.read_bytes()
    offset, _ = chunk_offsets(data)[-1]
    path.write_bytes(data[:offset])
    result = run_cli("decrypt", path, out, "--key-file", key_file, "--key-id", "kek-1")
    assert result.returncode == 1
    assert "truncated" in result.stderr
    result = run_cli("decrypt", path, out, "--key-file", key_file, "--key-id", "kek-1", "--allow-truncated")
    assert result.returncode == 0
    assert "truncated" in result.stderr and out.exists()
    tampered = bytearray(data)
    tampered[offset - 5] ^= 1
    path.write_bytes(tampered)
    result = run_cli("decrypt", path, tmp_path / "x.wav", "--key-file", key_file, "--key-id", "kek-1")
    assert result.returncode == 1
    assert "tampered" in result.stderr


def test_cli_bad_key_file(recording: tuple[Path, list[Frame]], tmp_path: Path) -> None:
    path, _ = recording
    key_file = tmp_path / "kek.txt"
    key_file.write_text("not a key")
    result = run_cli("decrypt", path, tmp_path / "o.wav", "--key-file", key_file, "--key-id", "kek-1")
    assert result.returncode == 1
    assert "key file" in result.stderr
