"""The relay benchmark's pieces: bencode, the load generator's schedule and figures, the rtpengine peer."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.loadgen import PTIME_NS, LoadGenerator, Schedule, packet, percentile, stamp_of
from bench.relay import Measurement, summary
from bench.rtpengine import (
    BencodeError,
    PortRange,
    RtpEngine,
    audio_port,
    bdecode,
    bencode,
    call_sdp,
    installed,
)
from tests.system.sipp import free_port

needs_rtpengine = pytest.mark.skipif(
    installed() is None, reason="rtpengine is not installed (apt-get install rtpengine-daemon)"
)


def test_bencode_known_vectors() -> None:
    assert bencode({"command": "ping"}) == b"d7:command4:pinge"
    assert bencode({"b": 1, "a": [b"x", -3]}) == b"d1:al1:xi-3ee1:bi1ee"
    assert bdecode(b"d6:result2:oke") == {b"result": b"ok"}


decodable = st.recursive(
    st.integers() | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(decodable)
def test_bencode_round_trip(value: object) -> None:
    def to_encodable(v: object) -> object:
        if isinstance(v, dict):
            return {k.decode("latin-1"): to_encodable(x) for k, x in v.items()}
        if isinstance(v, list):
            return [to_encodable(x) for x in v]
        return v

    def latin(v: object) -> object:
        # str keys are encoded as UTF-8 on the way out; compare against that.
        if isinstance(v, dict):
            return {k.decode("latin-1").encode(): latin(x) for k, x in v.items()}
        if isinstance(v, list):
            return [latin(x) for x in v]
        return v

    assert bdecode(bencode(to_encodable(value))) == latin(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [b"", b"i12", b"5:abc", b"l1:a", b"x", b"i1ei2e", b"di1e1:ae"])
def test_bdecode_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(BencodeError):
        bdecode(bad)


def test_audio_port_from_sdp() -> None:
    assert audio_port(call_sdp(31234, 7)) == 31234


def test_schedule_spreads_ends_and_paces_every_20ms() -> None:
    schedule = Schedule(4, start_ns=1_000)
    assert [e for e, _, _ in schedule.take_due(1_000)] == [0]
    assert schedule.take_due(1_000 + PTIME_NS // 4 - 1) == []
    assert [e for e, _, _ in schedule.take_due(1_000 + PTIME_NS - 1)] == [1, 2, 3]
    # A late caller gets every packet it missed, in order, each with its own due time.
    due = schedule.take_due(1_000 + 2 * PTIME_NS)
    assert [(e, seq) for e, seq, _ in due] == [(0, 1), (1, 1), (2, 1), (3, 1), (0, 2)]
    assert due[-1][2] == 1_000 + 2 * PTIME_NS


def test_packet_carries_send_time_and_end() -> None:
    datagram = packet(5, 70000, 123_456_789)
    assert len(datagram) == 12 + 160
    assert datagram[0] == 0x80 and datagram[1] == 0
    assert stamp_of(datagram) == (123_456_789, 5)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert percentile(values, 0.99) == 990.0
    assert percentile(values, 0.999) == 999.0
    assert percentile([], 0.5) is None


def _relay_loop(
    a: socket.socket, b: socket.socket, stop: threading.Event, peers: dict[int, tuple[str, int]]
) -> None:
    """Forward between ``a`` and ``b`` by the source port learnt for each call (caller → callee map)."""
    import select

    while not stop.is_set():
        ready, _, _ = select.select([a, b], [], [], 0.05)
        for sock in ready:
            data, source = sock.recvfrom(2048)
            other = b if sock is a else a
            other.sendto(data, peers[source[1]])


def test_loadgen_through_echo_relay_has_no_loss_and_measures_latency() -> None:
    calls = 5
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    stop = threading.Event()
    with LoadGenerator(calls) as gen:
        peers: dict[int, tuple[str, int]] = {}
        for call in range(calls):
            caller, callee = gen.ports(call)
            peers[caller] = ("127.0.0.1", callee)
            peers[callee] = ("127.0.0.1", caller)
            gen.connect(call, a.getsockname()[1], b.getsockname()[1])
        relay = threading.Thread(target=_relay_loop, args=(a, b, stop, peers), daemon=True)
        relay.start()
        try:
            result = gen.run(2.0)
        finally:
            stop.set()
            relay.join(2)
            a.close()
            b.close()
    # 5 calls x 2 ends x 50 packets/s x 2 s, give or take the packet due at the window's edge.
    assert 995 <= result.sent <= 1010
    assert result.received == result.sent
    assert result.loss == 0
    assert result.p50_ms is not None and result.p99_ms is not None and result.p999_ms is not None
    assert 0 < result.p50_ms <= result.p99_ms <= result.p999_ms < 100
    assert result.send_errors == 0
    assert not result.generator_saturated


def test_loadgen_counts_loss_when_nothing_relays() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    with LoadGenerator(1) as gen:
        port = sink.getsockname()[1]
        gen.connect(0, port, port)
        result = gen.run(0.2)
    sink.close()
    assert result.sent > 0 and result.received == 0
    assert result.loss == 1.0
    assert result.p99_ms is None


def test_summary_leaves_ours_null_until_wired() -> None:
    with LoadGenerator(1) as gen:
        gen.connect(0, *gen.ports(0)[::-1])  # each end sends to the other: a zero-cost "relay"
        load = gen.run(0.2)
    peer = Measurement("rtpengine", load, cpu_s=0.001)
    row = summary(1, None, peer, [peer])
    assert row["cpu_us_per_packet"] is None and row["ratio"] is None and row["max_calls"] is None
    assert row["note"] == "appliance relay not yet wired"
    assert row["peer_cpu_us_per_packet"] == pytest.approx(1000.0 / load.received)
    assert row["peer_max_calls"] == 1


@needs_rtpengine
def test_rtpengine_relays_a_call_both_ways(tmp_path: Path) -> None:
    engine = RtpEngine(tmp_path, free_port(), PortRange(45000, 45099))
    client = engine.start()
    try:
        with LoadGenerator(2) as gen:
            for call in range(2):
                caller, callee = gen.ports(call)
                relay_ports = client.bridge(f"t-{call}", caller, callee)
                assert all(45000 <= p <= 45099 for p in relay_ports)
                gen.connect(call, *relay_ports)
            result = gen.run(1.0)
            for call in range(2):
                client.delete(f"t-{call}")
    finally:
        client.close()
        engine.stop()
    assert result.sent >= 190
    assert result.received == result.sent
    assert result.p99_ms is not None
