"""The B-channel jitter buffer: 160-octet frames always, bounded depth, bit-exact in order, re-chunking."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media import g711
from appliance.media.rtp import RtpPacket
from appliance.media.tdm.jitter import CAP, TARGET, JitterBuffer, State

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "200"))
SILENCE = b"\xd5" * 160


def pkt(seq: int, ts: int, payload: bytes, *, ssrc: int = 0x1234, pt: int = 8) -> RtpPacket:
    return RtpPacket(
        payload_type=pt,
        sequence_number=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=payload,
    )


def frame(n: int) -> bytes:
    return bytes((n * 7 + i) & 0xFF for i in range(160))


def test_in_order_stream_is_bit_exact_after_the_target_delay() -> None:
    jb = JitterBuffer()
    out = []
    for n in range(50):
        jb.push(pkt(100 + n, 0xFFFFFF00 + 160 * n, frame(n)), 0.0)  # the timestamp wraps on the way
        out.append(jb.pop(0.0))
    assert out[0] == SILENCE  # filling: 20 ms of the 40 ms target
    assert out[1:] == [frame(n) for n in range(49)]
    assert jb.depth == 160
    assert jb.counters()["late"] == jb.counters()["duplicate"] == 0


def test_reordered_packets_are_placed_by_timestamp() -> None:
    jb = JitterBuffer()
    order = [1, 0, 3, 2, 5, 4]
    for n in order:
        jb.push(pkt(n, 160 * n, frame(n)), 0.0)
    assert [jb.pop(0.0) for _ in range(6)] == [frame(n) for n in range(6)]


def test_ten_and_thirty_ms_packets_are_rechunked_into_twenty_ms_frames() -> None:
    audio = b"".join(frame(n) for n in range(6))  # the whole cap, pushed at once
    for ptime in (80, 240):
        jb = JitterBuffer()
        for i in range(0, len(audio), ptime):
            jb.push(pkt(i // ptime, i, audio[i : i + ptime]), 0.0)
        assert b"".join(jb.pop(0.0) for _ in range(6)) == audio[: 6 * 160]


def test_duplicates_and_late_packets_are_dropped_and_counted() -> None:
    jb = JitterBuffer()
    for n in range(3):
        jb.push(pkt(n, 160 * n, frame(n)), 0.0)
    jb.push(pkt(1, 160, frame(1)), 0.0)
    assert jb.duplicate == 1
    assert jb.pop(0.0) == frame(0)
    jb.push(pkt(0, 0, frame(0)), 0.0)
    assert jb.late == 1


def test_loss_is_concealed_by_one_repeat_then_silence() -> None:
    jb = JitterBuffer()
    jb.push(pkt(0, 0, frame(0)), 0.0)
    jb.push(pkt(1, 160, frame(1)), 0.0)
    jb.push(pkt(4, 640, frame(4)), 0.0)  # 2 and 3 lost
    assert [jb.pop(0.0) for _ in range(5)] == [frame(0), frame(1), frame(1), SILENCE, frame(4)]
    assert jb.underruns == 2 and jb.concealed == 1


def test_overflow_drops_the_oldest_audio() -> None:
    jb = JitterBuffer()
    for n in range(10):
        jb.push(pkt(n, 160 * n, frame(n)), 0.0)
    assert jb.depth == CAP
    assert jb.overflow_samples == 4 * 160
    assert jb.pop(0.0) == frame(4)


def test_ssrc_change_and_timestamp_jump_resynchronise() -> None:
    jb = JitterBuffer()
    jb.push(pkt(0, 0, frame(0)), 0.0)
    jb.push(pkt(1, 160, frame(1)), 0.0)
    for n in range(9, 13):
        jb.push(pkt(n, 50_000 + 160 * n, frame(n), ssrc=99), 0.0)
    assert jb.resyncs == 1
    assert [jb.pop(0.0) for _ in range(2)] == [frame(9), frame(10)]
    jb.push(pkt(13, 50_000 + 13 * 160 + CAP, frame(13), ssrc=99), 0.0)  # a window beyond the last sample
    jb.push(pkt(14, 50_000 + 14 * 160 + CAP, frame(14), ssrc=99), 0.0)
    assert jb.resyncs == 2
    assert [jb.pop(0.0) for _ in range(2)] == [frame(13), frame(14)]
    jb.push(pkt(15, 0, frame(15), ssrc=99), 0.0)  # the sender's clock went back by seconds
    jb.push(pkt(16, 160, frame(16), ssrc=99), 0.0)
    assert jb.resyncs == 3
    assert jb.pop(0.0) == frame(15)


def test_a_dry_buffer_waits_for_the_next_talk_spurt() -> None:
    jb = JitterBuffer(conceal=False)
    jb.push(pkt(0, 0, frame(0)), 0.0)
    jb.push(pkt(1, 160, frame(1)), 0.0)
    assert [jb.pop(0.0) for _ in range(3)] == [frame(0), frame(1), SILENCE]
    assert jb.state is State.IDLE
    jb.push(pkt(2, 4000, frame(2)), 0.0)  # after a silence-suppression gap
    jb.push(pkt(3, 4160, frame(3)), 0.0)
    assert [jb.pop(0.0) for _ in range(2)] == [frame(2), frame(3)]
    assert jb.resyncs == 0


def test_pcmu_payload_is_translated_to_alaw() -> None:
    jb = JitterBuffer()
    ulaw = [g711.alaw_to_ulaw(frame(n)) for n in range(2)]
    for n in range(2):
        jb.push(pkt(n, 160 * n, ulaw[n], pt=0), 0.0)
    assert jb.pop(0.0) == g711.ulaw_to_alaw(ulaw[0])


_packet = st.tuples(
    st.integers(0, 0xFFFF),  # sequence number
    st.integers(-2000, 20_000),  # timestamp around a base
    st.integers(0, 400),  # payload length
    st.sampled_from([1, 1, 1, 2]),  # SSRC
    st.integers(0, 3),  # pops after it
)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(st.lists(_packet, max_size=60), st.integers(0, 0xFFFFFFFF))
def test_any_arrival_gives_whole_frames_within_the_cap(
    packets: list[tuple[int, int, int, int, int]], base: int
) -> None:
    jb = JitterBuffer()
    for seq, ts, length, ssrc, pops in packets:
        jb.push(pkt(seq, base + ts, bytes([seq & 0xFF]) * length, ssrc=ssrc), 0.0)
        assert 0 <= jb.depth <= CAP
        for _ in range(pops):
            assert len(jb.pop(0.0)) == 160
            assert 0 <= jb.depth <= CAP


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(st.lists(st.binary(min_size=160, max_size=160), min_size=2, max_size=30), st.integers(0, 0xFFFFFFFF))
def test_in_order_packets_come_out_bit_exact(frames: list[bytes], base: int) -> None:
    jb = JitterBuffer()
    out = []
    for n, data in enumerate(frames):
        jb.push(pkt(n, base + 160 * n, data), 0.0)
        out.append(jb.pop(0.0))
    out.append(jb.pop(0.0))
    assert out[0] == SILENCE
    assert out[1:] == frames
    assert TARGET == 320


def test_a_dry_buffer_keeps_the_part_of_a_straddling_packet_still_ahead() -> None:
    jb = JitterBuffer(conceal=False)
    jb.push(pkt(0, 0, frame(0)), 0.0)
    jb.push(pkt(1, 160, frame(1)), 0.0)
    assert [jb.pop(0.0) for _ in range(3)] == [frame(0), frame(1), SILENCE]
    # 30 ms starting 10 ms before the playout point: its last 20 ms are still ahead.
    jb.push(pkt(2, 240, frame(2) + frame(3)[:80]), 0.0)
    assert jb.state is State.FILLING
    jb.push(pkt(3, 480, frame(4)), 0.0)
    assert [jb.pop(0.0) for _ in range(2)] == [frame(2)[80:] + frame(3)[:80], frame(4)]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.sampled_from(["send", "send", "send", "lose", "swap", "dup", "stall"]), max_size=80),
    st.integers(0, 0xFFFFFFFF),
)
def test_frames_out_are_input_frames_in_order(script: list[str], base: int) -> None:
    """Loss, adjacent reordering, duplication and stalls: whatever is played is whole input frames, each
    at most once, in their order (concealment off, so a repeat would show)."""
    jb = JitterBuffer(conceal=False)
    frames = [bytes([n % 200 + 1]) * 160 for n in range(len(script) + 2)]
    out: list[bytes] = []
    held: list[int] = []
    for n, action in enumerate(script):
        if action == "swap":
            held.append(n)
        elif action == "send":
            for m in [n, *held]:
                jb.push(pkt(m, base + 160 * m, frames[m]), 0.0)
            held = []
        elif action == "dup":
            jb.push(pkt(n, base + 160 * n, frames[n]), 0.0)
            jb.push(pkt(n, base + 160 * n, frames[n]), 0.0)
        if action != "stall":
            out.append(jb.pop(0.0))
    played = [frames.index(f) for f in out if f != SILENCE]
    assert played == sorted(set(played))
