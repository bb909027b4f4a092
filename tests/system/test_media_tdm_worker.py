"""The TDM worker process: B-channel audio both ways bit-exact, pacing reported, the far end vanishing and
returning, and a killed worker restarted with its timeslots reported lost."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from appliance.media import g711
from appliance.media.rtp import RtpPacket
from appliance.media.tdm.client import TdmClient, TdmWorkerError
from appliance.media.tdm.control import Event, LinkChanged, Ready
from appliance.media.tdm.layout import tdm_port

SLOTS = (1, 2, 3)
SILENCE = b"\xd5" * 160
FRAMES = 25


def pattern(n: int, salt: int) -> bytes:
    # Never a frame of A-law silence, so the audio is told from the silence around it.
    return bytes(((n * 31 + i * 7 + salt) % 200) ^ 0x2A for i in range(160))


class FarEnd:
    """The span's far end on the B socket: sends frames and keeps what it receives per timeslot."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.received: dict[int, list[bytes]] = {}
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, str(self.path))
        self.sock = sock
        self._task = asyncio.create_task(self._read(sock))

    async def _read(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while data := await loop.sock_recv(sock, 2048):
            self.received.setdefault(data[0], []).append(data[1:])

    def send(self, timeslot: int, frame: bytes) -> None:
        assert self.sock is not None
        self.sock.send(bytes((timeslot,)) + frame)

    async def vanish(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def audio(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if f != SILENCE]


async def wait_for(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def rtp_peer() -> AsyncIterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


async def recv_rtp(sock: socket.socket, count: int) -> list[RtpPacket]:
    loop = asyncio.get_running_loop()
    out = []
    for _ in range(count):
        data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5.0)
        out.append(RtpPacket.parse(data))
    return out


async def send_paced(sock: socket.socket, target: tuple[str, int], payloads: list[bytes], pt: int) -> None:
    """Send one packet every 20 ms on an absolute schedule, as a phone would."""
    start = time.monotonic()
    for n, payload in enumerate(payloads):
        delay = start + n * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing our own sender, not waiting for the worker
        sock.sendto(RtpPacket(pt, n, 1000 + 160 * n, 0xABCD, payload, marker=n == 0).serialize(), target)


async def test_b_channel_audio_both_ways_pacing_and_link_events(
    tmp_path: Path, rtp_peer: socket.socket
) -> None:
    base = random.randrange(40000, 60000, 2)
    events: list[Event] = []
    lost: list[tuple[int, ...]] = []
    client = TdmClient(
        span=1,
        b_socket=tmp_path / "span1-b.sock",
        control=tmp_path / "tdm1.sock",
        address="127.0.0.1",
        ports=(base, base + 2 * len(SLOTS) - 1),
        timeslots=SLOTS,
        on_event=events.append,
        on_lost=lost.append,
    )
    ready = await client.start()
    far = FarEnd(tmp_path / "span1-b.sock")
    try:
        assert ready == Ready(1, base, SLOTS, ())
        await far.connect()
        await wait_for(lambda: LinkChanged(True) in events)
        peer = rtp_peer.getsockname()

        # PCMA on timeslot 1: the port is the fixed one, the audio is the frames as they are.
        assert await client.open(1, "PCMA") == tdm_port(base, SLOTS, 1) == base
        await client.connect(1, *peer, 8)
        sent = [pattern(n, 1) for n in range(FRAMES)]
        for frame in sent:
            far.send(1, frame)
        packets = await recv_rtp(rtp_peer, FRAMES)
        assert [p.payload for p in packets] == sent
        assert [p.marker for p in packets] == [True] + [False] * (FRAMES - 1)
        assert all(p.payload_type == 8 for p in packets)
        assert all(
            (b.sequence_number - a.sequence_number) & 0xFFFF == 1 for a, b in itertools.pairwise(packets)
        )
        assert all((b.timestamp - a.timestamp) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(packets))
        await send_paced(rtp_peer, ("127.0.0.1", base), sent, 8)
        await wait_for(lambda: len(audio(far.received.get(1, []))) >= FRAMES)
        assert audio(far.received[1]) == sent

        # PCMU on timeslot 2: within the G.711 translation tables both ways.
        port2 = await client.open(2, "PCMU")
        await client.connect(2, *peer, 0)
        sent2 = [pattern(n, 2) for n in range(FRAMES)]
        for frame in sent2:
            far.send(2, frame)
        packets = await recv_rtp(rtp_peer, FRAMES)
        assert [p.payload for p in packets] == [g711.alaw_to_ulaw(f) for f in sent2]
        ulaw = [g711.alaw_to_ulaw(f) for f in sent2]
        await send_paced(rtp_peer, ("127.0.0.1", port2), ulaw, 0)
        await wait_for(lambda: len(audio(far.received.get(2, []))) >= FRAMES)
        assert audio(far.received[2]) == [g711.ulaw_to_alaw(u) for u in ulaw]

        # A stranger's packets are dropped and counted.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.bind(("127.0.0.1", 0))
            stranger.sendto(RtpPacket(8, 1, 1, 1, SILENCE).serialize(), ("127.0.0.1", base))
            await asyncio.sleep(0.05)
        stats = await client.stats()
        counters = dict(stats.counters)
        assert counters["rtp_stranger"] >= 1
        assert counters["rtp_received"] == 2 * FRAMES
        assert counters["tdm_frames"] == 2 * FRAMES
        assert stats.open == (1, 2) and stats.link_up
        assert stats.pacing.ticks > 50 and 0 < stats.pacing.p99_ms < 50.0
        assert stats.pacing.p50_ms <= stats.pacing.p99_ms <= stats.pacing.max_ms

        # Errors come back typed.
        with pytest.raises(TdmWorkerError) as err:
            await client.open(1, "PCMA")
        assert err.value.code == 3

        # The far end vanishes (LOS) and returns.
        await far.vanish()
        await wait_for(lambda: LinkChanged(False) in events)
        await far.connect()
        await wait_for(lambda: events.count(LinkChanged(True)) == 2)
        await wait_for(lambda: len(far.received.get(1, [])) > 0)

        # A killed worker is replaced; the timeslots it carried are reported lost.
        assert client.process is not None
        client.process.kill()
        await wait_for(lambda: lost == [(1, 2)] and client.restarts == 1 and client.ready is not None)
        await wait_for(lambda: events.count(ready) == 2, within=15.0)
        assert await client.open(1, "PCMA") == base
    finally:
        await far.vanish()
        await client.stop()
    assert client.process is not None and client.process.returncode == 0


async def test_a_port_held_elsewhere_is_reported_and_its_timeslot_refused(tmp_path: Path) -> None:
    base = random.randrange(40000, 60000, 2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", base + 2))  # timeslot 2's RTP port
        client = TdmClient(
            span=2,
            b_socket=tmp_path / "span2-b.sock",
            control=tmp_path / "tdm2.sock",
            address="127.0.0.1",
            ports=(base, base + 5),
            timeslots=SLOTS,
        )
        ready = await client.start()
        try:
            assert ready.unusable == (base + 2,)
            with pytest.raises(TdmWorkerError) as err:
                await client.open(2)
            assert err.value.code == 4
            assert await client.open(3) == base + 4
        finally:
            await client.stop()
    assert client.process is not None and client.process.returncode == 0
    assert not (tmp_path / "tdm2.sock").exists()


async def test_a_worker_that_cannot_hold_its_ports_does_not_start(tmp_path: Path) -> None:
    client = TdmClient(
        span=3,
        b_socket=tmp_path / "span3-b.sock",
        control=tmp_path / "tdm3.sock",
        address="127.0.0.1",
        ports=(40000, 40003),
        timeslots=SLOTS,
    )
    with pytest.raises(TdmWorkerError, match="cannot hold 3 RTP/RTCP pairs"):
        await client.start()
