"""The IVR endpoint of a media worker leg, sans-I/O: pacing, playback, barge-in, voicemail recording."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media.control_events import DtmfEvent, PlayDone, RecordDone
from appliance.media.g711 import (
    ALAW_SILENCE_OCTET,
    ALAW_TO_ULAW_TABLE,
    ULAW_SILENCE_OCTET,
    ULAW_TO_ALAW_TABLE,
)
from appliance.media.ivr_endpoint import IvrEndpoint
from appliance.media.ivr_player import MAX_CATCH_UP, PTIME, SAMPLES, AudioCache, DeadlineHeap, PromptFileError
from appliance.media.ivr_recorder import VoicemailRecorder
from appliance.media.recording import Codec, RecordingReader, key_id_for
from appliance.media.tones import beep, dtmf_tone, encode, sine

KEK = bytes(range(32))
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "100"))
SSRC, SEQ, TS = 0x11223344, 65530, 0xFFFFFF00


def endpoint(law: Codec = "PCMA", pt: int = 8, inband: bool = False) -> IvrEndpoint:
    return IvrEndpoint(
        call_id="c1",
        leg="a",
        law=law,
        payload_type=pt,
        ssrc=SSRC,
        initial_seq=SEQ,
        initial_timestamp=TS,
        inband=inband,
    )


def header(packet: bytes) -> tuple[int, int, int, int, int]:
    first, second, seq, ts, ssrc = struct.unpack("!BBHII", packet[:12])
    return first, second, seq, ts, ssrc


def te(event: int, duration: int, end: bool = False) -> bytes:
    """An RFC 4733 §2.3 payload at volume 10."""
    return struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)


def audio(n: int, seed: int = 0) -> bytes:
    """``n`` distinct-looking A-law octets (never the silence octet, so padding is visible)."""
    return bytes((seed + 7 * i) % 200 + 1 for i in range(n))


def run(ep: IvrEndpoint, until: float) -> list[tuple[float, bytes]]:
    """Fire the endpoint exactly at each of its deadlines up to ``until``."""
    out: list[tuple[float, bytes]] = []
    while (due := ep.get_timer()) is not None and due <= until:
        out.extend((due, p) for p in ep.handle_timer(due))
    return out


# --- pacing and playback ----------------------------------------------------------------------------


def test_packets_are_due_exactly_at_start_plus_n_ptime_over_many_packets() -> None:
    ep = endpoint()
    data = audio(SAMPLES * 3000)
    ep.play(1, [data], barge_in=False, loop=False, now=10.0)
    sent = run(ep, 1000.0)
    assert len(sent) == 3000
    for n, (due, packet) in enumerate(sent):
        assert due == 10.0 + n * PTIME  # computed from n, never accumulated
        first, second, seq, ts, ssrc = header(packet)
        assert (first, ssrc) == (0x80, SSRC)
        assert second == (0x88 if n == 0 else 0x08)  # marker on the first packet only (RFC 3551 §4.1)
        assert seq == (SEQ + n) & 0xFFFF and ts == (TS + n * SAMPLES) & 0xFFFFFFFF
        assert packet[12:] == data[n * SAMPLES : (n + 1) * SAMPLES]
    assert list(ep.events) == [PlayDone("c1", "a", 1, "done")]
    assert ep.get_timer() is None and not ep.active


def test_late_firing_catches_up_a_few_packets_then_skips() -> None:
    ep = endpoint()
    data = audio(SAMPLES * 100)
    ep.play(1, [data], barge_in=False, loop=False, now=0.0)
    assert len(ep.handle_timer(0.0)) == 1
    burst = ep.handle_timer(3.5 * PTIME)  # packets 1, 2 and 3 are due: sent at once
    assert [header(p)[2] for p in burst] == [(SEQ + n) & 0xFFFF for n in (1, 2, 3)]
    assert all(not header(p)[1] & 0x80 for p in burst)
    assert ep.get_timer() == pytest.approx(4 * PTIME)
    # Twenty packets late: more than the catch-up allows, so they are skipped, timestamps passed over.
    late = ep.handle_timer(24 * PTIME + 0.001)
    assert len(late) == 1
    _, second, seq, ts, _ = header(late[0])
    assert second & 0x80  # a new talkspurt after the gap
    assert seq == (SEQ + 4) & 0xFFFF  # the sequence counts only packets sent
    assert ts == (TS + 24 * SAMPLES) & 0xFFFFFFFF  # the timestamp follows the clock
    assert late[0][12:] == data[24 * SAMPLES : 25 * SAMPLES]
    assert ep.get_timer() == pytest.approx(25 * PTIME)
    assert ep.playback is not None and ep.playback.skipped == 20


def test_files_play_in_sequence_as_one_stream_padded_at_the_end() -> None:
    ep = endpoint()
    one, two = audio(250, 1), audio(90, 2)
    ep.play(5, [one, b"", two], barge_in=False, loop=False, now=0.0)
    sent = [p for _, p in run(ep, 10.0)]
    assert len(sent) == 3  # 340 octets
    payload = b"".join(p[12:] for p in sent)
    assert payload == one + two + bytes([ALAW_SILENCE_OCTET]) * (480 - 340)
    assert list(ep.events) == [PlayDone("c1", "a", 5, "done")]


def test_loop_starts_over_until_stopped() -> None:
    ep = endpoint()
    moh = audio(SAMPLES * 2 + 40)
    ep.play(7, [moh], barge_in=False, loop=True, now=0.0)
    sent = [p for _, p in run(ep, 9 * PTIME)]
    assert len(sent) == 10
    stream = b"".join(p[12:] for p in sent)
    assert stream == (moh * 5)[: 10 * SAMPLES]
    assert not ep.events
    ep.stop()
    assert list(ep.events) == [PlayDone("c1", "a", 7, "stopped")]
    assert ep.get_timer() is None


def test_pcmu_leg_gets_mu_law_and_its_payload_type() -> None:
    ep = endpoint("PCMU", pt=0)
    data = audio(100)
    ep.play(1, [data], barge_in=False, loop=False, now=0.0)
    (packet,) = ep.handle_timer(0.0)
    assert header(packet)[1] == 0x80  # marker, payload type 0
    assert packet[12:] == data.translate(ALAW_TO_ULAW_TABLE) + bytes([ULAW_SILENCE_OCTET]) * 60


def test_a_new_play_replaces_the_old_and_the_stream_continues() -> None:
    ep = endpoint()
    ep.play(1, [audio(SAMPLES * 50)], barge_in=False, loop=False, now=0.0)
    first = run(ep, 2 * PTIME)
    assert len(first) == 3
    # Replaced mid-stream: the old one is stopped and the new one waits for the last packet to play out.
    ep.play(2, [audio(SAMPLES * 2, 9)], barge_in=True, loop=False, now=2.5 * PTIME)
    assert list(ep.events) == [PlayDone("c1", "a", 1, "stopped")]
    assert ep.get_timer() == pytest.approx(3 * PTIME)
    second = ep.handle_timer(3 * PTIME)
    _, marker_pt, seq, ts, ssrc = header(second[0])
    assert marker_pt == 0x88 and ssrc == SSRC
    assert seq == (SEQ + 3) & 0xFFFF and ts == (TS + 3 * SAMPLES) & 0xFFFFFFFF
    run(ep, 1.0)
    # After a pause the timestamp has moved with the clock (RFC 3550 §5.1).
    ep.events.clear()
    ep.play(3, [audio(10)], barge_in=False, loop=False, now=2.0)
    (third,) = ep.handle_timer(2.0)
    assert header(third)[2] == (SEQ + 5) & 0xFFFF
    assert header(third)[3] == (TS + round(2.0 * 8000)) & 0xFFFFFFFF


def test_empty_playback_is_done_at_once() -> None:
    ep = endpoint()
    ep.play(4, [b""], barge_in=True, loop=True, now=1.0)
    assert list(ep.events) == [PlayDone("c1", "a", 4, "done")]
    assert ep.handle_timer(1.0) == [] and not ep.active


# --- barge-in ---------------------------------------------------------------------------------------


def test_barge_in_on_the_first_rfc4733_packet_of_an_event() -> None:
    ep = endpoint()
    ep.play(1, [audio(SAMPLES * 50)], barge_in=True, loop=False, now=0.0)
    run(ep, 0.1)
    ep.telephone_event(8000, te(5, 160))
    assert list(ep.events) == [PlayDone("c1", "a", 1, "barge_in")]
    assert ep.get_timer() is None and ep.handle_timer(1.0) == []
    # The same event's later packets start nothing; a playback without barge-in goes on.
    ep.events.clear()
    ep.play(2, [audio(SAMPLES * 50)], barge_in=False, loop=False, now=1.0)
    ep.telephone_event(8000, te(5, 320, end=True))
    ep.telephone_event(16000, te(6, 160))
    assert not ep.events and ep.playback is not None


def test_inband_digit_barges_in_at_its_start_and_is_reported_at_its_end() -> None:
    ep = endpoint(inband=True)
    ep.play(1, [audio(SAMPLES * 100)], barge_in=True, loop=False, now=0.0)
    tone = encode(dtmf_tone("7", duration_ms=200), "PCMA")
    quiet = encode(sine(1000, 200, -70.0), "PCMA")
    stream = tone + quiet
    now = 0.0
    for i in range(0, len(stream), SAMPLES):
        now += PTIME
        ep.audio(stream[i : i + SAMPLES], now)
        if i == 3 * SAMPLES:
            assert list(ep.events) == [PlayDone("c1", "a", 1, "barge_in")]
    events = list(ep.events)
    assert events[0] == PlayDone("c1", "a", 1, "barge_in")
    assert len(events) == 2 and isinstance(events[1], DtmfEvent) and events[1].digit == "7"
    assert 160 <= events[1].duration_ms <= 240


# --- recording --------------------------------------------------------------------------------------


def recorder(tmp_path: Path, *, law: Codec = "PCMA", **kw: object) -> VoicemailRecorder:
    args: dict[str, object] = {"max_seconds": 60.0, "silence_seconds": 2.0, "end_on_hash": True} | kw
    return VoicemailRecorder(
        tmp_path,
        call_id="c1",
        leg="a",
        record_id="vm-1",
        law=law,
        kek=KEK,
        key_id=key_id_for(KEK),
        **args,  # type: ignore[arg-type]
    )


def voiced(n: int) -> bytes:
    return encode(sine(440, 20, -20.0, phase=n), "PCMA")


def check_file(done: RecordDone, frames: list[bytes]) -> None:
    path = Path(done.path)
    data = path.read_bytes()
    assert done.size == len(data) and done.sha256 == hashlib.sha256(data).hexdigest()
    assert done.key_id == key_id_for(KEK)
    reader = RecordingReader(path, keks={key_id_for(KEK): KEK})
    assert reader.header.direction_count == 1 and reader.header.call_id == "c1"
    assert [f.payload for f in reader] == frames
    assert done.duration == pytest.approx(len(b"".join(frames)) / 8000)


def test_record_ends_on_silence_and_trims_the_silent_tail(tmp_path: Path) -> None:
    ep = endpoint()
    ep.record(recorder(tmp_path), beep=None, now=0.0)
    speech = [voiced(i) for i in range(50)]
    pause = encode(sine(440, 20, -60.0), "PCMA")
    now = 0.0
    frames: list[bytes] = []
    for i, frame in enumerate(speech):
        now = i * PTIME
        ep.audio(frame, now)
        frames.append(frame)
        if i == 20:  # a short pause inside the message is kept
            for _ in range(10):
                now += PTIME / 11
                ep.audio(pause, now)
                frames.append(pause)
    for k in range(1, 60):
        ep.audio(pause, now + k * PTIME)
    assert ep.get_timer() == pytest.approx(49 * PTIME + 2.0)
    ep.handle_timer(49 * PTIME + 2.0)
    (done,) = ep.events
    assert isinstance(done, RecordDone)
    assert (done.reason, done.record_id, done.path) == ("silence", "vm-1", str(tmp_path / "vm-1.vm"))
    check_file(done, frames)


def test_record_ends_on_hash_start_and_keeps_what_came_before(tmp_path: Path) -> None:
    ep = endpoint()
    ep.record(recorder(tmp_path), beep=None, now=0.0)
    frames = [voiced(i) for i in range(10)]
    for i, frame in enumerate(frames):
        ep.audio(frame, i * PTIME)
    ep.telephone_event(4000, te(11, 160))  # '#'
    (done,) = ep.events
    assert isinstance(done, RecordDone) and done.reason == "dtmf"
    check_file(done, frames)
    assert not ep.active


def test_hash_does_not_end_a_recording_without_end_on_hash(tmp_path: Path) -> None:
    ep = endpoint()
    ep.record(recorder(tmp_path, end_on_hash=False), beep=None, now=0.0)
    ep.telephone_event(4000, te(11, 160))
    assert not ep.events and ep.recorder is not None


def test_record_ends_at_max_seconds(tmp_path: Path) -> None:
    ep = endpoint()
    ep.record(recorder(tmp_path, max_seconds=1.0, silence_seconds=0.0), beep=None, now=5.0)
    frames = [encode(sine(440, 20, -70.0), "PCMA")] * 50  # silence is kept: silence_seconds is 0
    for i, frame in enumerate(frames):
        ep.audio(frame, 5.0 + i * PTIME)
    ep.audio(voiced(1), 6.0)  # at the limit: not kept
    (done,) = ep.events
    assert isinstance(done, RecordDone) and done.reason == "max"
    check_file(done, frames)


def test_record_max_by_timer_when_the_caller_sends_nothing(tmp_path: Path) -> None:
    ep = endpoint()
    ep.record(recorder(tmp_path, max_seconds=3.0, silence_seconds=0.0), beep=None, now=0.0)
    assert ep.get_timer() == 3.0
    ep.handle_timer(3.0)
    (done,) = ep.events
    assert isinstance(done, RecordDone) and (done.reason, done.duration) == ("max", 0.0)
    check_file(done, [])


def test_record_stop_and_beep_first(tmp_path: Path) -> None:
    ep = endpoint("PCMU", pt=0)
    ep.play(1, [audio(SAMPLES * 100)], barge_in=False, loop=False, now=0.0)
    tone = beep("PCMA")
    ep.record(recorder(tmp_path, law="PCMU"), beep=tone, now=0.0)
    assert list(ep.events) == [PlayDone("c1", "a", 1, "stopped")]
    ep.events.clear()
    sent = run(ep, 1.0)
    beep_packets = -(-len(tone) // SAMPLES)
    assert len(sent) == beep_packets
    assert b"".join(p[12:] for _, p in sent)[: len(tone)] == tone.translate(ALAW_TO_ULAW_TABLE)
    started = beep_packets * PTIME
    assert ep.recorder is not None and ep.recorder.started == pytest.approx(started)
    frames = [encode(sine(440, 20, -20.0, law="PCMU"), "PCMU")] * 5
    for i, frame in enumerate(frames):
        ep.audio(frame, started + i * PTIME)
    ep.stop()
    (done,) = ep.events
    assert isinstance(done, RecordDone) and done.reason == "stopped"
    check_file(done, frames)
    assert RecordingReader(done.path, keks={key_id_for(KEK): KEK}).header.codec == "PCMU"


def test_a_play_during_the_beep_starts_the_recording_at_once(tmp_path: Path) -> None:
    ep = endpoint()
    ep.record(recorder(tmp_path), beep=beep("PCMA"), now=0.0)
    ep.handle_timer(0.0)
    ep.play(2, [audio(100)], barge_in=False, loop=False, now=0.05)
    assert not ep.events  # the beep is the worker's own: no PlayDone for it
    assert ep.recorder is not None and ep.recorder.started == 0.05


def test_a_voicemail_file_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "vm-1.vm").write_bytes(b"earlier")
    with pytest.raises(FileExistsError):
        recorder(tmp_path)


def test_a_new_recording_stops_the_old(tmp_path: Path) -> None:
    ep = endpoint()
    ep.record(recorder(tmp_path), beep=None, now=0.0)
    other = VoicemailRecorder(
        tmp_path, call_id="c1", leg="a", record_id="vm-2", law="PCMA", kek=KEK, key_id="k2",
        max_seconds=5.0, silence_seconds=0.0, end_on_hash=False,
    )  # fmt: skip
    ep.record(other, beep=None, now=1.0)
    (done,) = ep.events
    assert isinstance(done, RecordDone) and (done.record_id, done.reason) == ("vm-1", "stopped")
    assert ep.recorder is other


# --- the cache and the heap -------------------------------------------------------------------------


def test_audio_cache_reads_once_evicts_lru_and_sees_a_replaced_file(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        path = tmp_path / f"p{i}.alaw"
        path.write_bytes(bytes([i]) * 400)
        paths.append(str(path))
    cache = AudioCache(max_bytes=1000)
    assert cache.load(paths[0]) == bytes([0]) * 400
    assert cache.load(paths[0]) == bytes([0]) * 400 and (cache.hits, cache.misses) == (1, 1)
    cache.load(paths[1])
    cache.load(paths[0])  # now the most recent
    cache.load(paths[2])  # over budget: p1, the least recently used, goes
    assert cache.size == 800
    cache.load(paths[0])
    assert cache.misses == 3
    cache.load(paths[1])
    assert cache.misses == 4
    Path(paths[1]).write_bytes(b"new!")
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert cache.load(paths[1]) == b"new!"
    with pytest.raises(PromptFileError, match=r"missing\.alaw"):
        cache.load(str(tmp_path / "missing.alaw"))


def test_deadline_heap_orders_moves_and_removes() -> None:
    heap: DeadlineHeap[str] = DeadlineHeap()
    heap.set("a", 3.0)
    heap.set("b", 1.0)
    heap.set("c", 2.0)
    heap.set("b", 4.0)  # moved later: its old entry is stale
    heap.set("c", None)
    assert heap.get_timer() == 3.0 and len(heap) == 2
    assert heap.pop_due(3.5) == ["a"]
    assert heap.pop_due(3.9) == []
    assert heap.pop_due(4.0) == ["b"]
    assert heap.get_timer() is None


def test_a_renegotiated_codec_applies_to_the_next_packet_and_the_recording_keeps_its_law(
    tmp_path: Path,
) -> None:
    ep = endpoint()
    ep.record(recorder(tmp_path, silence_seconds=0.0), beep=None, now=0.0)
    data = audio(SAMPLES * 3)
    ep.play(1, [data], barge_in=False, loop=False, now=0.0)
    first = ep.handle_timer(0.0)
    ep.audio(voiced(0), 0.0)
    ep.set_codec("PCMU", 0)
    second = ep.handle_timer(PTIME)
    ep.audio(voiced(1).translate(ALAW_TO_ULAW_TABLE), PTIME)
    assert header(first[0])[1] & 0x7F == 8 and first[0][12:] == data[:SAMPLES]
    assert header(second[0])[1] & 0x7F == 0
    assert second[0][12:] == data[SAMPLES : 2 * SAMPLES].translate(ALAW_TO_ULAW_TABLE)
    ep.stop()
    done = next(e for e in ep.events if isinstance(e, RecordDone))
    reader = RecordingReader(done.path, keks={key_id_for(KEK): KEK})
    assert reader.header.codec == "PCMA"
    frames = [f.payload for f in reader]
    assert frames[0] == voiced(0)
    assert frames[1] == voiced(1).translate(ALAW_TO_ULAW_TABLE).translate(ULAW_TO_ALAW_TABLE)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=1, max_size=60), st.booleans())
def test_any_firing_keeps_the_stream_on_its_schedule(gaps: list[float], loop: bool) -> None:
    ep = endpoint()
    data = audio(SAMPLES * 40 + 37)
    padded = data + bytes([ALAW_SILENCE_OCTET]) * SAMPLES
    ep.play(1, [data], barge_in=False, loop=loop, now=0.0)
    now, previous, count = 0.0, -1, 0
    for gap in gaps:
        now += gap
        due = ep.get_timer()
        packets = ep.handle_timer(now)
        if due is None or now < due:
            assert packets == []
        for packet in packets:
            _, second, seq, ts, ssrc = header(packet)
            index = ((ts - TS) & 0xFFFFFFFF) // SAMPLES  # the schedule slot the packet stands for
            assert index * PTIME <= now + 1e-9  # never ahead of its time
            assert ssrc == SSRC and seq == (SEQ + count) & 0xFFFF  # the sequence counts packets sent
            count += 1
            assert bool(second & 0x80) == (index != previous + 1 or previous < 0)  # marker after a gap
            if loop:
                start = index * SAMPLES % len(data)
                assert packet[12:] == (data + data)[start : start + SAMPLES]
            else:
                assert packet[12:] == padded[index * SAMPLES : (index + 1) * SAMPLES]
            previous = index
        next_due = ep.get_timer()
        if next_due is not None:
            # What is left is never more than the catch-up allowance behind.
            assert now - next_due < (MAX_CATCH_UP + 1) * PTIME
