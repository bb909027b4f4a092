"""The TDM bridge sans I/O: port layout, packetiser vectors, symmetric RTP, ticks, pacing."""

from __future__ import annotations

import random

import pytest

from appliance.media import g711
from appliance.media.rtp import RtpPacket
from appliance.media.tdm.bridge import ErrorCode, TdmBridge, TdmCommandError
from appliance.media.tdm.frames import Packetiser
from appliance.media.tdm.layout import parse_timeslots, tdm_port
from appliance.media.tdm.pacer import PERIOD, Pacer

SLOTS = parse_timeslots("1-15,17-31")
REMOTE = ("127.0.0.1", 40000)


def test_timeslots_and_their_fixed_ports() -> None:
    assert tuple(range(1, 16)) + tuple(range(17, 32)) == SLOTS
    assert tdm_port(30000, SLOTS, 1) == 30000
    assert tdm_port(30000, SLOTS, 17) == 30030
    assert tdm_port(30000, SLOTS, 31) == 30058
    with pytest.raises(ValueError):
        tdm_port(30000, SLOTS, 16)
    for bad in ("16", "0-3", "1,1", "5-2", "32"):
        with pytest.raises(ValueError):
            parse_timeslots(bad)


def test_packetiser_vector() -> None:
    p = Packetiser(
        codec="PCMA", payload_type=8, ssrc=0x11223344, initial_seq=0xFFFF, initial_timestamp=0xFFFFFF60
    )
    first = p.packet(b"\x01" * 160)
    assert first[:12] == bytes.fromhex("8088ffffffffff6011223344")
    assert first[12:] == b"\x01" * 160
    second = p.packet(b"\x02" * 160)
    assert second[:12] == bytes.fromhex("8008000000000000" + "11223344")
    p.restart()
    assert p.packet(b"\x03" * 160)[1] == 0x88


def test_pcmu_packetiser_translates_with_g711_table_4() -> None:
    p = Packetiser(codec="PCMU", payload_type=0, ssrc=1, initial_seq=0, initial_timestamp=0)
    alaw = bytes(range(96, 256))
    assert p.packet(alaw)[12:] == g711.alaw_to_ulaw(alaw)


def bridge() -> TdmBridge:
    return TdmBridge(
        timeslots=SLOTS, ports_min=30000, rand=random.Random(1).getrandbits, unusable=frozenset({30002})
    )


def rtp(seq: int, payload: bytes, pt: int = 8) -> bytes:
    return RtpPacket(
        payload_type=pt, sequence_number=seq, timestamp=160 * seq, ssrc=5, payload=payload
    ).serialize()


def test_commands_and_their_errors() -> None:
    b = bridge()
    assert b.open(3, "PCMA") == 30004
    with pytest.raises(TdmCommandError) as err:
        b.open(3, "PCMA")
    assert err.value.code is ErrorCode.WRONG_STATE
    for call, code in (
        (lambda: b.open(16, "PCMA"), ErrorCode.UNKNOWN_TIMESLOT),
        (lambda: b.open(2, "PCMA"), ErrorCode.PORT_UNAVAILABLE),
        (lambda: b.open(4, "G722"), ErrorCode.BAD_MESSAGE),
        (lambda: b.connect(5, *REMOTE, 8), ErrorCode.WRONG_STATE),
        (lambda: b.close(5), ErrorCode.WRONG_STATE),
    ):
        with pytest.raises(TdmCommandError) as err:
            call()
        assert err.value.code is code
    b.close(3)
    assert b.open_timeslots == ()


def test_audio_both_ways_and_symmetric_rtp() -> None:
    b = bridge()
    b.open(1, "PCMA")
    assert b.from_tdm(1, b"\x10" * 160) is None  # not connected yet
    b.connect(1, *REMOTE, 8)
    sent = b.from_tdm(1, b"\x10" * 160)
    assert sent is not None and sent[1] == REMOTE and sent[0][12:] == b"\x10" * 160
    b.from_rtp(1, rtp(0, b"\x20" * 160), ("127.0.0.1", 40002), 0.0)  # a stranger
    b.from_rtp(1, b"junk", REMOTE, 0.0)
    b.from_rtp(1, rtp(0, b"\x00" * 4, pt=101), REMOTE, 0.0)
    b.from_rtp(1, rtp(0, b"\x20" * 160), REMOTE, 0.0)
    b.from_rtp(1, rtp(1, g711.alaw_to_ulaw(b"\x21" * 160), pt=0), REMOTE, 0.0)
    assert b.tick(0.0) == [(1, b"\x20" * 160)]
    assert b.tick(0.02) == [(1, g711.ulaw_to_alaw(g711.alaw_to_ulaw(b"\x21" * 160)))]
    b.skip(0.04)
    counters = b.counters()
    assert counters["rtp_stranger"] == counters["rtp_invalid"] == counters["rtp_other_type"] == 1
    assert counters["rtp_received"] == 2 and counters["tdm_frames"] == 1 and counters["tdm_unconnected"] == 1
    b.close(1)
    assert b.counters()["jitter_played"] == 2
    assert b.tick(0.06) == []


def test_pacer_on_time_early_and_late() -> None:
    p = Pacer(100.0)
    assert p.deadline == pytest.approx(100.02)
    assert p.fire(100.0) == (0, 0)  # far too early: re-arm
    assert p.fire(100.0201) == (1, 0)
    assert p.fire(100.0398) == (1, 0)  # 0.2 ms early is on time
    assert p.fire(100.0805) == (2, 0)  # one period late: the due tick and one catch-up
    assert p.fire(100.1800) == (2, 3)  # five periods: two now, three skipped
    assert p.deadline == pytest.approx(100.2)
    stats = p.stats()
    assert stats.ticks == 6 and stats.skipped == 3
    assert stats.max_ms == pytest.approx(80.0, abs=1e-6)
    assert 0.2 <= stats.p50_ms <= 0.2501  # errors 0.1, 0.2 (early), 20.5, 80 ms
    assert stats.p99_ms == pytest.approx(80.0, abs=1e-6)


def test_pacer_grid_does_not_drift() -> None:
    p = Pacer(0.0)
    for k in range(1, 1001):
        assert p.fire(k * PERIOD + 0.0003) == (1, 0)
    assert p.deadline == pytest.approx(1001 * PERIOD)
    assert p.stats().p99_ms == pytest.approx(0.35, abs=0.051)
