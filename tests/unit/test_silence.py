"""Silence for the placeholder local IVR: the sans-I/O source on an injected clock, and the asyncio player
against a real UDP receiver on 127.0.0.1 (which only waits on its socket, never sleeps)."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from appliance.media import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    PortAllocator,
    RtpPacket,
    SilencePlayer,
    SilenceSource,
)


def source(start: float = 0.0, **kwargs: int) -> SilenceSource:
    args = {"payload_type": 8, "silence_octet": ALAW_SILENCE, "ssrc": 0xCAFE, "initial_seq": 100}
    args |= {"initial_timestamp": 5000} | kwargs
    return SilenceSource(start=start, **args)


def test_first_packet_is_due_at_start_with_marker_and_silence() -> None:
    src = source(start=10.0)
    assert src.get_timer() == 10.0
    assert src.packet_at(9.999) is None
    packet = RtpPacket.parse(src.packet_at(10.0) or b"")
    assert packet == RtpPacket(
        payload_type=8, sequence_number=100, timestamp=5000, ssrc=0xCAFE, payload=b"\xd5" * 160, marker=True
    )
    assert src.packet_at(10.0) is None
    assert src.get_timer() == 10.0 + 0.02
    assert src.packet_at(10.0199) is None
    second = RtpPacket.parse(src.packet_at(10.02) or b"")
    assert (second.sequence_number, second.timestamp, second.marker) == (101, 5160, False)


def test_ulaw_silence_octet() -> None:
    src = source(payload_type=0, silence_octet=ULAW_SILENCE)
    packet = RtpPacket.parse(src.packet_at(0.0) or b"")
    assert (packet.payload_type, packet.payload) == (0, b"\xff" * 160)


def test_fifty_packets_per_second() -> None:
    src = source(start=3.0)
    sent = [ms for ms in range(1000) if src.packet_at(3.0 + ms / 1000) is not None]
    assert len(sent) == 50
    # Each packet goes out in the millisecond its deadline falls in (start + n * 20 ms, in floating point).
    assert all(0 <= ms - 20 * i <= 1 for i, ms in enumerate(sent))


def drain(src: SilenceSource, now: float) -> list[RtpPacket]:
    out = []
    while (data := src.packet_at(now)) is not None:
        out.append(RtpPacket.parse(data))
    return out


def test_no_drift_over_ten_thousand_packets_with_late_wakeups() -> None:
    # A caller woken 0.7 ms after each deadline (a busy loop) still gets packet n at start + n * 20 ms:
    # deadlines are computed, not accumulated, so after 200 s the schedule is exact.
    start = 1234.5
    src = source(start=start, initial_seq=65000, initial_timestamp=2**32 - 800)
    packets: list[RtpPacket] = []
    while len(packets) < 10_000:
        packets.extend(drain(src, src.get_timer() + 0.0007))
    assert len(packets) == 10_000
    assert src.get_timer() == start + 10_000 * 0.02
    assert [p.sequence_number for p in packets] == [(65000 + i) % 65536 for i in range(10_000)]
    assert [p.timestamp for p in packets] == [(2**32 - 800 + 160 * i) % 2**32 for i in range(10_000)]
    assert [p.marker for p in packets[:2]] == [True, False] and not any(p.marker for p in packets[1:])
    assert src.packets_skipped == 0
    # And in wall-clock terms: exactly 50 packets in each second of the call.
    fresh = source(start=start)
    per_second = [0] * 200
    for step in range(200 * 200):  # polled every 5 ms for 200 s
        per_second[step // 200] += len(drain(fresh, start + step * 0.005))
    assert set(per_second) == {50}


def test_a_few_late_packets_are_caught_up_in_a_burst() -> None:
    src = source()
    burst = drain(src, 0.1)  # deadlines 0, 20, ... 100 ms have all passed
    assert [p.sequence_number for p in burst] == [100, 101, 102, 103, 104, 105]
    assert [p.timestamp - 5000 for p in burst] == [0, 160, 320, 480, 640, 800]
    assert src.packets_skipped == 0


def test_a_long_stall_skips_ahead_and_marks_the_resumed_packet() -> None:
    src = source()
    assert len(drain(src, 0.0)) == 1
    resumed = drain(src, 1.01)
    assert len(resumed) == 1
    (packet,) = resumed
    # 49 packets (20 ms ... 980 ms) were skipped: the timestamp jumps over them, the sequence number does not.
    assert (packet.sequence_number, packet.timestamp, packet.marker) == (101, 5000 + 50 * 160, True)
    assert src.packets_skipped == 49
    assert src.get_timer() == 51 * 0.02
    nxt = drain(src, 1.02)
    assert [(p.sequence_number, p.timestamp, p.marker) for p in nxt] == [(102, 5000 + 51 * 160, False)]


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        source(silence_octet=256)
    with pytest.raises(ValueError):
        SilenceSource(
            start=0, payload_type=8, silence_octet=0xD5, ssrc=1, initial_seq=0, initial_timestamp=0, ptime=0
        )


def counter() -> Callable[[int], int]:
    values: Iterator[int] = itertools.count(1000)
    return lambda bits: next(values) % (1 << bits)


def free_even_port() -> socket.socket:
    """A socket bound on an even loopback port, so that the port pair starting there is taken."""
    for _ in range(50):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        if sock.getsockname()[1] % 2 == 0 and sock.getsockname()[1] < 65530:
            return sock
        sock.close()
    pytest.skip("no even ephemeral port found")


class Receiver(asyncio.DatagramProtocol):
    """A UDP peer on 127.0.0.1 that queues what it receives (works on any event loop, uvloop included)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)


async def receive(receiver: Receiver, count: int) -> list[tuple[bytes, tuple[str, int]]]:
    # Waits on the socket with a timeout; the assertions never depend on how long anything took.
    return [await asyncio.wait_for(receiver.queue.get(), timeout=5) for _ in range(count)]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    loop = asyncio.get_running_loop()
    peer = Receiver()
    peer.transport, _ = await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", 0))
    yield peer
    peer.transport.close()


async def test_player_sends_paced_rtp_silence_over_udp(receiver: Receiver) -> None:
    loop = asyncio.get_running_loop()
    ports = PortAllocator(41000, 41099)
    player = SilencePlayer(loop=loop, ports=ports, randbits=counter())
    try:
        port = await player.start("call-1", "127.0.0.1", receiver.address, 8, ALAW_SILENCE)
        assert port % 2 == 0 and 41000 <= port < 41099
        received = await receive(receiver, 10)
        # Incoming media is read and discarded (counted), never echoed.
        for _ in range(3):
            receiver.sendto(b"\x80\x08" + b"\x00" * 170, ("127.0.0.1", port))
        received += await receive(receiver, 5)
        packets = [RtpPacket.parse(data) for data, _ in received]
        assert {addr for _, addr in received} == {("127.0.0.1", port)}
        first = packets[0]
        assert first.marker and not any(p.marker for p in packets[1:])
        assert [p.sequence_number for p in packets] == [
            (first.sequence_number + i) % 65536 for i in range(15)
        ]
        assert [p.timestamp for p in packets] == [(first.timestamp + 160 * i) % 2**32 for i in range(15)]
        assert {(p.payload_type, p.ssrc, p.payload) for p in packets} == {(8, first.ssrc, b"\xd5" * 160)}
        stats = player.stats("call-1")
        assert stats.local_port == port and stats.packets_received == 3 and stats.packets_sent >= 15
        with pytest.raises(ValueError, match="already playing"):
            await player.start("call-1", "127.0.0.1", receiver.address, 8, ALAW_SILENCE)
        player.stop("call-1")
        player.stop("call-1")  # idempotent
        assert ports.in_use == 0
        with pytest.raises(KeyError):
            player.stats("call-1")
    finally:
        player.close()


async def test_streams_share_the_tick_and_skip_a_busy_port(receiver: Receiver) -> None:
    loop = asyncio.get_running_loop()
    blocker = free_even_port()
    busy = blocker.getsockname()[1]
    ports = PortAllocator(busy, busy + 5)
    player = SilencePlayer(loop=loop, ports=ports, randbits=counter())
    try:
        a = await player.start("a", "127.0.0.1", receiver.address, 8, ALAW_SILENCE)
        b = await player.start("b", "127.0.0.1", receiver.address, 0, ULAW_SILENCE)
        assert (a, b) == (busy + 2, busy + 4)  # the pair at ``busy`` is held by another socket
        assert ports.in_use == 2
        by_port: dict[int, list[RtpPacket]] = {a: [], b: []}
        while min(len(v) for v in by_port.values()) < 5:
            for data, addr in await receive(receiver, 1):
                by_port[addr[1]].append(RtpPacket.parse(data))
        assert {p.payload for p in by_port[a]} == {b"\xd5" * 160}
        assert {p.payload for p in by_port[b]} == {b"\xff" * 160}
        assert {p.ssrc for p in by_port[a]}.isdisjoint({p.ssrc for p in by_port[b]})
    finally:
        player.close()
        blocker.close()
    assert ports.in_use == 0
