"""The TDM worker on a span of a DAHDI card: one channel fd per timeslot on a fake device (socket pairs
behind the injectable open and ioctl of :mod:`hw.e1.dahdi_channel`), its audio both ways to RTP, the
channels' alarms as link changes, a channel that cannot open failing the start, and the command line
that names the span's backend."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.media.rtp import RtpPacket
from appliance.media.tdm.bridge import TdmBridge
from appliance.media.tdm.client import TdmClient
from appliance.media.tdm.control import (
    MAX_MESSAGE_SIZE,
    Close,
    Command,
    Connect,
    LinkChanged,
    Message,
    Ok,
    Open,
    Ready,
    Stats,
    StatsReply,
    decode,
    encode,
)
from appliance.media.tdm.worker import Options, TdmWorker, bind_pairs, parse_args
from hw.e1.dahdi_channel import EVENT_ALARM, EVENT_NOALARM, SIG_CLEAR
from hw.e1.driver import BChannelsSpec
from hw.e1.links import FRAME_OCTETS
from tests.system.test_media_tdm_worker import recv_rtp, rtp_peer
from tests.unit.test_hw_e1_dahdi_channel import FakeDevice

__all__ = ["rtp_peer"]  # the RTP peer's fixture

SLOTS = (1, 17)
BASECHAN = 32  # span 2 of a box: its timeslot t is DAHDI channel 31 + t
SILENCE = b"\xd5" * FRAME_OCTETS


def frame(n: int, salt: int) -> bytes:
    return bytes(((n * 31 + i * 7 + salt) % 200) ^ 0x2A for i in range(FRAME_OCTETS))  # never silence


def options(tmp_path: Path) -> Options:
    base = random.randrange(40000, 60000, 2)
    return Options(
        span=2, b_socket=None, control=str(tmp_path / "tdm2.sock"), address="127.0.0.1",
        ports=(base, base + 2 * len(SLOTS) - 1), timeslots=SLOTS, driver="dahdi", basechan=BASECHAN,
    )  # fmt: skip


@dataclass
class Running:
    worker: TdmWorker
    task: asyncio.Task[int]
    control: socket.socket
    device: FakeDevice
    events: list[Message]
    request: int = 0

    async def recv(self) -> Message:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            return decode(await loop.sock_recv(self.control, MAX_MESSAGE_SIZE + 1))

    async def command(self, command: Command) -> Message:
        self.request += 1
        self.control.send(encode(type(command)(**{**_fields(command), "request_id": self.request})))
        while True:
            reply = await self.recv()
            if isinstance(reply, LinkChanged):
                self.events.append(reply)
                continue
            assert getattr(reply, "request_id", None) == self.request
            return reply

    async def event(self) -> Message:
        return self.events.pop(0) if self.events else await self.recv()


def _fields(command: Command) -> dict[str, object]:
    return {name: getattr(command, name) for name in command.__slots__}  # type: ignore[union-attr]


async def start(tmp_path: Path, device: FakeDevice) -> Running:
    opts = options(tmp_path)
    pairs, unusable = bind_pairs(opts)
    bridge = TdmBridge(
        timeslots=SLOTS, ports_min=opts.ports[0], rand=random.getrandbits, unusable=frozenset()
    )
    ready = Ready(opts.span, opts.ports[0], SLOTS, unusable)
    worker = TdmWorker(opts, bridge, pairs, ready, access=device.access())
    task = asyncio.create_task(worker.serve())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.setblocking(False)
    await asyncio.sleep(0)  # serve() binds its control socket and opens the channels in its first step
    await asyncio.get_running_loop().sock_connect(sock, opts.control)
    running = Running(worker, task, sock, device, [])
    assert await running.recv() == ready
    return running


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    device = FakeDevice({BASECHAN: SIG_CLEAR, BASECHAN + 16: SIG_CLEAR})
    run = await start(tmp_path, device)
    yield run
    run.control.close()
    async with asyncio.timeout(5):
        status = await run.task
    assert status == 0
    device.close()


async def far_frames(far: socket.socket, count: int) -> list[bytes]:
    """What the worker wrote on a channel (the kernel's side of its fd), silence left out."""
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    async with asyncio.timeout(5):
        while len(got) < count:
            data = await loop.sock_recv(far, 4096)
            if data != SILENCE:
                got.append(data)
    return got


async def test_a_card_spans_channels_carry_audio_both_ways_in_160_octet_blocks(
    running: Running, rtp_peer: socket.socket
) -> None:
    device, worker = running.device, running.worker
    # One fd per timeslot on channel basechan + t - 1, each with 20 ms blocks.
    assert sorted(device.channo.values()) == [BASECHAN, BASECHAN + 16]
    assert set(device.blocksize.values()) == {FRAME_OCTETS}
    assert await running.event() == LinkChanged(True)  # channels without alarms: the link is up
    low = worker.options.ports[0]
    assert await running.command(Open(17, "PCMA")) == Ok(running.request, low + 2)
    assert await running.command(Connect(17, *rtp_peer.getsockname(), 8)) == Ok(running.request)

    sent = [frame(n, 17) for n in range(10)]
    for f in sent:
        device.far[BASECHAN + 16].send(f)  # the card delivers a block per 20 ms
    packets = await recv_rtp(rtp_peer, len(sent))
    assert [p.payload for p in packets] == sent and {p.payload_type for p in packets} == {8}

    back = [frame(n, 99) for n in range(5)]
    for n, payload in enumerate(back):
        rtp_peer.sendto(RtpPacket(8, n, 160 * n, 0x1234, payload).serialize(), ("127.0.0.1", low + 2))
    assert await far_frames(device.far[BASECHAN + 16], len(back)) == back  # A-law as it came, per tick

    stats = await running.command(Stats())
    assert isinstance(stats, StatsReply) and stats.link_up and stats.open == (17,)
    assert dict(stats.counters)["tdm_frames"] == len(sent)
    assert await running.command(Close(17)) == Ok(running.request)


async def test_channel_alarms_take_the_b_link_down_and_up(running: Running) -> None:
    device = running.device
    assert await running.event() == LinkChanged(True)
    device.event(BASECHAN, EVENT_ALARM)  # one channel in alarm: the span still carries the other
    device.event(BASECHAN + 16, EVENT_ALARM)
    assert await running.event() == LinkChanged(False)
    device.event(BASECHAN, EVENT_NOALARM)
    assert await running.event() == LinkChanged(True)
    assert running.worker.blink is not None and running.worker.blink.up


async def test_a_channel_that_does_not_open_fails_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = FakeDevice({BASECHAN: SIG_CLEAR})  # timeslot 17's channel is not there
    opts = options(tmp_path)
    pairs, _ = bind_pairs(opts)
    bridge = TdmBridge(
        timeslots=SLOTS, ports_min=opts.ports[0], rand=random.getrandbits, unusable=frozenset()
    )
    worker = TdmWorker(opts, bridge, pairs, Ready(2, opts.ports[0], SLOTS, ()), access=device.access())
    assert await worker.serve() == 1
    out = capsys.readouterr().out
    assert out.startswith("error: tdm worker span 2: channel 48: DAHDI_SPECIFY 48") and "ready" not in out
    assert Path(opts.control).name not in os.listdir(tmp_path)  # the control socket is removed again
    with contextlib.suppress(OSError):
        device.close()


def test_the_command_line_names_the_backend() -> None:
    common = ["--span", "2", "--control", "c.sock", "--address", "127.0.0.1", "--ports", "40000-40003"]
    opts = parse_args([*common, "--driver", "dahdi", "--basechan", "32", "--timeslots", "1,17"])
    assert opts.bchannels().backend == "dahdi" and opts.bchannels().basechan == 32
    assert opts.dahdi_device == Path("/dev/dahdi/channel")
    sim = parse_args([*common, "--b-socket", "span2-b.sock"])
    assert sim.bchannels().backend == "sim" and sim.bchannels().path == Path("span2-b.sock")
    for missing in (["--driver", "dahdi"], []):
        with pytest.raises(SystemExit):
            parse_args([*common, *missing])


def test_the_client_starts_the_worker_on_the_spans_backend() -> None:
    def client(**kw: object) -> TdmClient:
        common: dict[str, Any] = {"span": 2, "control": Path("c.sock"), "address": "127.0.0.1",
                                  "ports": (40000, 40003), "timeslots": SLOTS}  # fmt: skip
        return TdmClient(**common, **kw)

    card = client(bchannels=BChannelsSpec("dahdi", 2, SLOTS, basechan=32), dahdi_device=Path("/x/channel"))
    assert card._bchannels_args() == ["--driver", "dahdi", "--basechan", "32", "--dahdi-device", "/x/channel"]
    assert client(b_socket=Path("b.sock"))._bchannels_args() == ["--b-socket", "b.sock"]
    with pytest.raises(ValueError, match="base channel"):
        client(bchannels=BChannelsSpec("dahdi", 2, SLOTS))._bchannels_args()
    with pytest.raises(ValueError, match="B-channels"):
        client()
