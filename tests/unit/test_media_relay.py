"""The relay core of one call's media: forwarding, transcoding, latching, drops, DTMF, timeouts, RTCP."""

from __future__ import annotations

import struct
import timeit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media.dtmf import TelephoneEvent
from appliance.media.g711 import alaw_to_ulaw
from appliance.media.relay import (
    DROP_LATCH,
    DROP_OVERSIZED,
    DROP_PADDING,
    DROP_SHORT,
    DROP_TRUNCATED,
    DROP_VERSION,
    DtmfReceived,
    FirstPacket,
    LegConfig,
    RelayCall,
    RelayEvent,
    RelayUsageError,
    SsrcChanged,
)
from appliance.media.rtp import RtpExtension, RtpPacket
from appliance.media.timeout import CallMediaWatch, MediaResumed, MediaTimedOut, OneWayAudio

PHONE = ("127.0.0.10", 40000)
PHONE_NAT = ("127.0.0.10", 41234)
PHONE_REBOUND = ("127.0.0.10", 45678)
CLOUD = ("127.0.0.20", 50000)
HIJACKER = ("127.0.0.66", 6666)
SSRC_A = 0x11111111
SSRC_B = 0x22222222


def make_call(
    *,
    codec_a: str = "PCMA",
    codec_b: str = "PCMA",
    now: float = 0.0,
    timeout: float = 10.0,
    timeout_b: float | None = None,
) -> RelayCall:
    return RelayCall(
        local_a=30000,
        local_b=30002,
        remote_a=LegConfig(PHONE, codec_pt=8 if codec_a == "PCMA" else 0, codec=codec_a, event_pt=101),
        remote_b=LegConfig(
            CLOUD, codec_pt=8 if codec_b == "PCMA" else 0, codec=codec_b, event_pt=96, timeout=timeout_b
        ),
        now=now,
        media_timeout=timeout,
    )


def rtp(seq: int, *, ssrc: int = SSRC_A, pt: int = 8, payload: bytes | None = None, **kw: object) -> bytes:
    body = payload if payload is not None else bytes((seq + i) & 0xFF for i in range(160))
    return RtpPacket(
        payload_type=pt,
        sequence_number=seq & 0xFFFF,
        timestamp=(seq * 160) & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=body,
        **kw,  # type: ignore[arg-type]
    ).serialize()


def events(call: RelayCall) -> list[RelayEvent]:
    out = []
    while (event := call.next_event()) is not None:
        out.append(event)
    return out


def test_steady_two_way_stream_is_forwarded_intact() -> None:
    call = make_call()
    for i in range(50):
        now = i * 0.02
        up = rtp(i, ssrc=SSRC_A)
        down = rtp(1000 + i, ssrc=SSRC_B)
        assert call.receive("a", up, PHONE_NAT, now) == [(CLOUD, up, "b")]
        # Leg A latched the NATed source, so the other direction goes back there, not to the SDP port.
        assert call.receive("b", down, CLOUD, now) == [(PHONE_NAT, down, "a")]
    assert call.dropped == {}
    assert call.stats("a").packets == 50 and call.stats("b").packets == 50
    assert call.stats("a").lost == 0
    assert events(call) == [FirstPacket("a", PHONE_NAT, 0.0), FirstPacket("b", CLOUD, 0.0)]


def test_before_latching_the_other_leg_gets_its_sdp_address() -> None:
    call = make_call()
    packet = rtp(1, ssrc=SSRC_B)
    assert call.receive("b", packet, CLOUD, 0.0) == [(PHONE, packet, "a")]


def test_transcoding_pcma_to_pcmu_changes_payload_and_pt_only() -> None:
    call = make_call(codec_a="PCMA", codec_b="PCMU")
    payload = bytes(range(256))[:160]
    packet = RtpPacket(
        payload_type=8,
        sequence_number=777,
        timestamp=123456,
        ssrc=SSRC_A,
        payload=payload,
        marker=True,
        csrcs=(5,),
        extension=RtpExtension(0xBEDE, b"\x01\x02\x03\x04"),
        padding=4,
    )
    [(dest, out, leg)] = call.receive("a", packet.serialize(), PHONE, 0.0)
    assert (dest, leg) == (CLOUD, "b")
    got = RtpPacket.parse(out)
    assert got.payload_type == 0
    assert got.payload == alaw_to_ulaw(payload) != payload
    assert (got.sequence_number, got.timestamp, got.ssrc, got.marker) == (777, 123456, SSRC_A, True)
    assert (got.csrcs, got.extension, got.padding) == (packet.csrcs, packet.extension, 4)
    # Everything but the PT octet and the payload is the same bytes.
    assert out[0] == packet.serialize()[0] and out[2:24] == packet.serialize()[2:24]


def test_transcoding_back_pcmu_to_pcma() -> None:
    call = make_call(codec_a="PCMA", codec_b="PCMU")
    payload = bytes(160)
    [(_, out, _)] = call.receive("b", rtp(5, ssrc=SSRC_B, pt=0, payload=payload), CLOUD, 0.0)
    got = RtpPacket.parse(out)
    assert got.payload_type == 8 and got.payload != payload and len(got.payload) == 160


def test_same_law_different_pt_rewrites_pt_only() -> None:
    call = RelayCall(
        local_a=30000,
        local_b=30002,
        now=0.0,
        remote_a=LegConfig(PHONE, codec_pt=8, codec="PCMA"),
        remote_b=LegConfig(CLOUD, codec_pt=98, codec="PCMA"),
    )
    packet = rtp(3)
    [(_, out, _)] = call.receive("a", packet, PHONE, 0.0)
    assert out[1] == 98 and out[:1] + out[2:] == packet[:1] + packet[2:]


def test_nat_rebinding_is_followed_after_a_run_of_packets() -> None:
    call = make_call()
    assert call.receive("a", rtp(0), PHONE_NAT, 0.0)
    seq = 1
    # The NAT rebinds: same SSRC, new port. The first packets are held back, then the latch moves.
    results = []
    for _ in range(3):
        results.append(call.receive("a", rtp(seq), PHONE_REBOUND, seq * 0.02))
        seq += 1
    assert results[0] == [] and results[1] == [] and results[2]
    assert call.latches("a").rtp.latched == PHONE_REBOUND
    [(dest, _, _)] = call.receive("b", rtp(1, ssrc=SSRC_B), CLOUD, 1.0)
    assert dest == PHONE_REBOUND


def test_hijacker_is_dropped_and_counted() -> None:
    call = make_call()
    call.receive("a", rtp(0), PHONE_NAT, 0.0)
    for i in range(10):
        assert call.receive("a", rtp(100 + i, ssrc=0xBAD), HIJACKER, 0.1 + i * 0.02) == []
    assert call.dropped == {DROP_LATCH: 10}
    assert call.latches("a").rtp.latched == PHONE_NAT
    [(dest, _, _)] = call.receive("b", rtp(1, ssrc=SSRC_B), CLOUD, 1.0)
    assert dest == PHONE_NAT
    assert call.stats("a").packets == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", DROP_SHORT),
        (b"\x80\x08\x00", DROP_SHORT),
        (bytes(1500), DROP_OVERSIZED),
        (b"\x40" + bytes(20), DROP_VERSION),
        # Four CSRCs announced, none present.
        (b"\x84\x08" + bytes(10), DROP_TRUNCATED),
        # Extension flag with no extension header.
        (b"\x90\x08" + bytes(10), DROP_TRUNCATED),
        # Extension announcing 100 words.
        (b"\x90\x08" + bytes(10) + b"\x00\x00\x00\x64" + bytes(8), DROP_TRUNCATED),
        # Padding count zero, then a count larger than the payload.
        (b"\xa0\x08" + bytes(10) + b"\x01\x00", DROP_PADDING),
        (b"\xa0\x08" + bytes(10) + b"\x01\xff", DROP_TRUNCATED),
    ],
)
def test_malformed_packets_are_counted_per_reason(data: bytes, reason: str) -> None:
    call = make_call()
    assert call.receive("a", data, PHONE, 0.0) == []
    assert call.dropped == {reason: 1}
    assert events(call) == []


def test_garbage_never_raises() -> None:
    call = make_call()
    for n in range(0, 64):
        for fill in (0x00, 0x80, 0x9F, 0xBF, 0xFF):
            call.receive("a", bytes([fill]) * n, PHONE, 0.0)
    assert sum(call.dropped.values()) > 0


def test_unknown_leg_is_a_usage_error() -> None:
    call = make_call()
    with pytest.raises(RelayUsageError):
        call.receive("c", rtp(1), PHONE, 0.0)


def _event(seq: int, ts: int, event: TelephoneEvent, *, marker: bool = False) -> bytes:
    return RtpPacket(
        payload_type=101,
        sequence_number=seq,
        timestamp=ts,
        ssrc=SSRC_A,
        payload=event.serialize(),
        marker=marker,
    ).serialize()


def test_dtmf_reported_once_and_forwarded_with_mapped_pt() -> None:
    call = make_call()
    sent = []
    sent.append(_event(1, 8000, TelephoneEvent(5, duration=160), marker=True))
    sent.append(_event(2, 8000, TelephoneEvent(5, duration=320)))
    sent.extend(_event(3 + i, 8000, TelephoneEvent(5, end=True, duration=800)) for i in range(3))
    for i, packet in enumerate(sent):
        [(dest, out, leg)] = call.receive("a", packet, PHONE, i * 0.02)
        assert (dest, leg) == (CLOUD, "b")
        assert out[1] & 0x7F == 96
        assert bool(out[1] & 0x80) == bool(packet[1] & 0x80)
        assert out[2:] == packet[2:]
    digits = [e for e in events(call) if isinstance(e, DtmfReceived)]
    assert digits == [DtmfReceived("a", "5", 100, 0.0)]


def test_dtmf_without_end_packets_closes_on_timer() -> None:
    call = make_call()
    call.receive("a", _event(1, 8000, TelephoneEvent(9, duration=160), marker=True), PHONE, 0.0)
    events(call)
    timer = call.get_timer()
    assert timer is not None and timer < 1.0
    call.handle_timer(timer)
    assert events(call) == [DtmfReceived("a", "9", 20, 0.0)]


def test_bad_dtmf_payload_is_dropped() -> None:
    call = make_call()
    packet = RtpPacket(
        payload_type=101, sequence_number=1, timestamp=0, ssrc=SSRC_A, payload=b"\x01"
    ).serialize()
    assert call.receive("a", packet, PHONE, 0.0) == []
    assert call.dropped == {"dtmf-payload": 1}


def test_media_timeout_per_direction_with_injected_clock() -> None:
    call = make_call(timeout=5.0)
    assert call.get_timer() == 5.0
    now = 0.0
    seq = 0
    while now < 4.9:
        call.receive("a", rtp(seq), PHONE, now)
        seq += 1
        now += 0.02
    events(call)
    call.handle_timer(4.99)
    assert events(call) == []
    # Only B is silent: A's next packet after B's deadline reports B's timeout and one-way audio.
    while now < 8.0:
        call.receive("a", rtp(seq), PHONE, now)
        seq += 1
        now += 0.02
    call.handle_timer(8.0)
    evs = events(call)
    assert MediaTimedOut("b", 0.0) in evs
    assert any(isinstance(e, OneWayAudio) and e.silent == "b" for e in evs)
    assert not any(isinstance(e, MediaTimedOut) and e.direction == "a" for e in evs)
    # What the worker tells call control: B timed out while A's media still flowed (one-way audio).
    assert call.recently_active("a", 8.0) and not call.recently_active("b", 8.0)
    # A stops too; its deadline is 5 s after its last packet.
    timer = call.get_timer()
    assert timer is not None and 12.9 < timer < 13.1
    call.handle_timer(timer)
    assert not call.recently_active("a", timer)
    assert next(e for e in events(call) if isinstance(e, MediaTimedOut)).direction == "a"
    # B comes back.
    call.receive("b", rtp(1, ssrc=SSRC_B), CLOUD, 14.0)
    assert MediaResumed("b") in events(call)


def test_a_leg_of_its_own_timeout_is_watched_with_it() -> None:
    call = RelayCall(
        local_a=30000,
        local_b=30002,
        remote_a=LegConfig(PHONE, codec_pt=8, codec="PCMA"),
        remote_b=LegConfig(CLOUD, codec_pt=8, codec="PCMA", timeout=2.0),
        now=0.0,
        media_timeout=30.0,
    )
    assert call.wake == 2.0 and call.get_timer() == 2.0
    call.receive("b", rtp(1, ssrc=SSRC_B), CLOUD, 0.5)
    now, seq = 0.0, 0
    while now < 3.0:  # the phone keeps talking; the cloud stopped at 0.5
        call.receive("a", rtp(seq), PHONE, now)
        seq, now = seq + 1, now + 0.02
    call.handle_timer(3.0)
    evs = events(call)
    assert MediaTimedOut("b", 0.5) in evs and not any(e == MediaTimedOut("a", 0.0) for e in evs)
    assert call.recently_active("a", 3.0) and not call.recently_active("b", 3.0)
    # Back to the call's own timeout from now on: the next silence from b is allowed 30 s.
    call.receive("b", rtp(2, ssrc=SSRC_B), CLOUD, 3.5)
    call.set_timeout("b", None, 3.5)
    assert MediaResumed("b") in events(call)
    call.receive("a", rtp(seq), PHONE, 20.0)
    call.handle_timer(33.0)
    assert events(call) == []
    call.handle_timer(33.5)
    assert events(call) == [MediaTimedOut("b", 3.5), OneWayAudio("a", "b", 3.5)]
    with pytest.raises(ValueError, match="positive"):
        LegConfig(CLOUD, codec_pt=8, codec="PCMA", timeout=0.0)


def test_hold_suppresses_timeout() -> None:
    call = make_call(timeout=5.0)
    call.set_hold("a", True, 1.0)
    assert call.get_timer() is None
    call.handle_timer(100.0)
    assert events(call) == []
    # Music on hold still flows while held.
    assert call.receive("b", rtp(1, ssrc=SSRC_B), CLOUD, 100.0)
    call.set_hold("a", False, 200.0)
    assert call.get_timer() == 205.0
    call.handle_timer(205.0)
    assert {e.direction for e in events(call) if isinstance(e, MediaTimedOut)} == {"a", "b"}


def test_ssrc_change_is_reported() -> None:
    call = make_call()
    call.receive("a", rtp(1), PHONE, 0.0)
    call.receive("a", rtp(2, ssrc=0x33333333), PHONE, 0.02)
    assert events(call) == [FirstPacket("a", PHONE, 0.0), SsrcChanged("a", SSRC_A, 0x33333333)]


def test_update_remote_relearns_a_new_address_and_codec() -> None:
    call = make_call()
    call.receive("a", rtp(1), PHONE_NAT, 0.0)
    moved = ("127.0.0.30", 42000)
    call.update_remote("a", LegConfig(moved, codec_pt=0, codec="PCMU", event_pt=101))
    [(dest, _, _)] = call.receive("b", rtp(1, ssrc=SSRC_B), CLOUD, 1.0)
    assert dest == moved
    [(_, out, _)] = call.receive("b", rtp(2, ssrc=SSRC_B, pt=8), CLOUD, 1.02)
    assert out[1] & 0x7F == 0


def rtcp_rr(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def test_rtcp_passthrough_to_the_other_legs_rtcp_address() -> None:
    call = make_call()
    report = rtcp_rr(SSRC_A)
    assert call.receive_rtcp("a", report, (PHONE_NAT[0], PHONE_NAT[1] + 1), 0.0) == [
        (("127.0.0.20", 50001), report, "b")
    ]
    back = rtcp_rr(SSRC_B)
    assert call.receive_rtcp("b", back, ("127.0.0.20", 50001), 0.1) == [
        ((PHONE_NAT[0], PHONE_NAT[1] + 1), back, "a")
    ]
    assert call.receive_rtcp("a", b"\x80\x08" + bytes(6), PHONE, 0.2) == []
    assert call.receive_rtcp("a", b"\x80\xc9", PHONE, 0.2) == []
    assert call.dropped == {"rtcp-type": 1, "short": 1}


def test_per_packet_cost() -> None:
    call = make_call()
    packets = [rtp(i) for i in range(1000)]
    state = {"i": 0}

    def one() -> None:
        i = state["i"]
        state["i"] = i + 1
        call.receive("a", packets[i % 1000], PHONE, i * 0.02)

    per_packet = min(timeit.repeat(one, number=5000, repeat=3)) / 5000
    print(f"receive(): {per_packet * 1e6:.2f} µs/packet")
    # Generous for slow CI machines; the figure itself goes in the report.
    assert per_packet < 100e-6


_OPS = st.lists(
    st.tuples(st.sampled_from(["a", "b", "timer", "hold", "unhold"]), st.floats(0.0, 3.0)), max_size=60
)


@given(_OPS, st.sampled_from([None, 0.5, 5.0]))
@settings(max_examples=200, deadline=None)
def test_timeout_events_match_a_watch_told_every_packet(
    ops: list[tuple[str, float]], timeout_b: float | None
) -> None:
    # The relay defers telling its watch about packets; the events must be those of a watch told each one,
    # with leg b's own timeout shorter, longer or the same as the call's.
    call = make_call(timeout=2.0, timeout_b=timeout_b)
    own = {} if timeout_b is None else {"b": timeout_b}
    reference = CallMediaWatch(2.0, now=0.0, forward="a", backward="b", timeouts=own)
    now = 0.0
    seq = 0
    got: list[RelayEvent] = []
    want: list[RelayEvent] = []
    for op, step in ops:
        now += step
        if op in ("a", "b"):
            seq += 1
            source = PHONE if op == "a" else CLOUD
            call.receive(op, rtp(seq, ssrc=SSRC_A if op == "a" else SSRC_B), source, now)
            reference.packet(op, now)
        elif op == "timer":
            call.handle_timer(now)
            reference.handle_timer(now)
        else:
            call.set_hold("a", op == "hold", now)
            for direction in ("a", "b"):
                reference.set_hold(direction, op == "hold", now)
        assert call.get_timer() == reference.get_timer()
        got.extend(e for e in events(call) if isinstance(e, MediaTimedOut | MediaResumed | OneWayAudio))
        while (event := reference.next_event()) is not None:
            want.append(event)
        assert got == want


def test_reoffer_with_the_same_address_keeps_the_latch() -> None:
    call = make_call()
    call.receive("a", rtp(1), PHONE_NAT, 0.0)
    call.update_remote("a", LegConfig(PHONE, codec_pt=8, codec="PCMA", event_pt=101))
    [(dest, _, _)] = call.receive("b", rtp(1, ssrc=SSRC_B), CLOUD, 0.1)
    assert dest == PHONE_NAT


def test_rtcp_from_a_hijacker_is_dropped() -> None:
    call = make_call()
    rtcp_source = (PHONE_NAT[0], PHONE_NAT[1] + 1)
    assert call.receive_rtcp("a", rtcp_rr(SSRC_A), rtcp_source, 0.0)
    assert call.receive_rtcp("a", rtcp_rr(0xBAD), HIJACKER, 0.1) == []
    assert call.dropped == {DROP_LATCH: 1}
    assert call.latches("a").rtcp.latched == rtcp_source
