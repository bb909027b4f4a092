"""DAHDI D- and B-channels on a fake device: socket pairs for the fds and a fake ioctl."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hw.e1.dahdi_channel import (
    DAHDI_GET_PARAMS,
    DAHDI_GETEVENT,
    DAHDI_SET_BLOCKSIZE,
    DAHDI_SPECIFY,
    ELAST,
    EVENT_ABORT,
    EVENT_ALARM,
    EVENT_BADFCS,
    EVENT_NOALARM,
    PARAMS_FORMAT,
    SIG_CLEAR,
    SIG_HARDHDLC,
    DahdiBChannels,
    DahdiDChannel,
    DeviceAccess,
)
from hw.e1.errors import DahdiError, LinkUsageError
from hw.e1.links import FRAME_OCTETS

FRAME = bytes((0x02, 0x01, 0x7F))
FCS = b"\x12\x34"


def test_ioctl_numbers_are_those_of_dahdi_user_h() -> None:
    # _IOW(0xDA, 38, int), _IOW(0xDA, 1, int), _IOR(0xDA, 8, int), _IOWR(0xDA, 5, struct dahdi_params)
    assert DAHDI_SPECIFY == 0x4004DA26
    assert DAHDI_SET_BLOCKSIZE == 0x4004DA01
    assert DAHDI_GETEVENT == 0x8004DA08
    assert struct.calcsize(PARAMS_FORMAT) == 132
    assert DAHDI_GET_PARAMS == 0xC084DA05


class FakeDevice:
    """/dev/dahdi/channel: each open is a SEQPACKET socket pair; the far end is kept by the test."""

    def __init__(self, sigtypes: dict[int, int], alarms: dict[int, int] | None = None) -> None:
        self.sigtypes = sigtypes
        self.alarms = alarms or {}
        self.channo: dict[int, int] = {}
        self.blocksize: dict[int, int] = {}
        self.far: dict[int, socket.socket] = {}  # channel number -> far end
        self.events: dict[int, list[int]] = {}  # fd -> pending events
        self._mine: list[socket.socket] = []
        self.fail: int | None = None

    def access(self) -> DeviceAccess:
        return DeviceAccess(
            device=Path("/dev/dahdi/channel"),
            open=self.open,
            ioctl=self.ioctl,
            read=self.read,
            write=self.write,
        )

    def open(self, path: Path) -> int:
        assert path == Path("/dev/dahdi/channel")
        mine, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setblocking(False)
        far.setblocking(False)
        self._mine.append(mine)
        fd = mine.detach()
        self.events[fd] = []
        self.far[-fd] = far  # until DAHDI_SPECIFY names the channel
        return fd

    def ioctl(self, fd: int, request: int, arg: bytes) -> bytes:
        if request == self.fail:
            raise OSError(errno.ENXIO, "No such device or address")
        if request == DAHDI_SPECIFY:
            (channo,) = struct.unpack("=i", arg)
            if channo not in self.sigtypes:
                raise OSError(errno.ENXIO, "No such device or address")
            self.channo[fd] = channo
            self.far[channo] = self.far.pop(-fd)
            return arg
        if request == DAHDI_SET_BLOCKSIZE:
            self.blocksize[fd] = struct.unpack("=i", arg)[0]
            return arg
        if request == DAHDI_GET_PARAMS:
            channo = self.channo[fd]
            name = f"TE4/0/1/{channo}".encode()
            return struct.pack(
                PARAMS_FORMAT,
                channo,
                1,
                channo,
                self.sigtypes[channo],
                *([0] * 8),
                name,
                *([0] * 10),
                self.alarms.get(channo, 0),
            )
        if request == DAHDI_GETEVENT:
            return struct.pack("=i", self.events[fd].pop(0) if self.events[fd] else 0)
        raise AssertionError(f"unexpected ioctl {request:#x}")

    def read(self, fd: int, size: int) -> bytes:
        if self.events[fd]:
            raise OSError(ELAST, "event pending")
        return os.read(fd, size)

    def write(self, fd: int, data: bytes) -> int:
        if self.events[fd]:
            raise OSError(ELAST, "event pending")
        return os.write(fd, data)

    def event(self, channo: int, event: int) -> None:
        fd = next(fd for fd, ch in self.channo.items() if ch == channo)
        self.events[fd].append(event)
        self.far[channo].send(b"\x00")  # make the fd readable, as DAHDI wakes a reader for an event

    def close(self) -> None:
        for sock in self.far.values():
            sock.close()


class Handler:
    def __init__(self) -> None:
        self.frames: list[object] = []
        self.links: list[bool] = []
        self.changed = asyncio.Event()

    def frame_received(self, *args: object) -> None:
        self.frames.append(args if len(args) > 1 else args[0])
        self.changed.set()

    def link_changed(self, up: bool) -> None:
        self.links.append(up)
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def far_recv(sock: socket.socket) -> bytes:
    async with asyncio.timeout(5):
        return await asyncio.get_running_loop().sock_recv(sock, 2048)


@pytest.fixture
def device() -> Iterator[FakeDevice]:
    dev = FakeDevice({16: SIG_HARDHDLC, 1: SIG_CLEAR, 2: SIG_CLEAR, 17: SIG_CLEAR})
    yield dev
    dev.close()


async def test_d_channel_strips_and_appends_the_fcs(device: FakeDevice) -> None:
    handler = Handler()
    d = DahdiDChannel.open(16, handler, access=device.access())
    assert d.up
    fd = next(iter(device.channo))
    assert device.blocksize[fd] == 1024
    device.far[16].send(FRAME + FCS)
    await handler.until(lambda: handler.frames == [FRAME])
    d.send(FRAME)
    assert await far_recv(device.far[16]) == FRAME + b"\x00\x00"
    with pytest.raises(LinkUsageError):
        d.send(b"")
    await d.close()
    assert not d.up


async def test_d_channel_events_take_the_link_down_and_up_and_count_bad_frames(device: FakeDevice) -> None:
    handler = Handler()
    d = DahdiDChannel.open(16, handler, access=device.access())
    device.event(16, EVENT_ALARM)
    await handler.until(lambda: handler.links == [False])
    assert not d.up
    d.send(FRAME)  # down: dropped, counted
    device.event(16, EVENT_BADFCS)
    device.event(16, EVENT_ABORT)
    device.event(16, EVENT_NOALARM)
    await handler.until(lambda: handler.links == [False, True])
    device.far[16].send(b"\x01")  # one octet: no frame once the FCS is taken off
    device.far[16].send(FRAME + FCS)
    await handler.until(lambda: FRAME in handler.frames)
    counts = d.counts
    assert counts["dropped_down"] == 1
    assert counts["bad_fcs"] == 1 and counts["aborts"] == 1
    assert counts["rx_bad_length"] >= 1  # the wake-up octets and the short frame
    await d.close()


async def test_d_channel_starting_in_alarm_is_down(device: FakeDevice) -> None:
    device.alarms[16] = 0x8
    d = DahdiDChannel.open(16, Handler(), access=device.access())
    assert not d.up
    await d.close()


async def test_clear_channel_is_not_a_d_channel_and_ioctl_failures_name_the_step(
    device: FakeDevice,
) -> None:
    with pytest.raises(DahdiError, match="channel 1 is not an HDLC D-channel"):
        DahdiDChannel.open(1, Handler(), access=device.access())
    device.fail = DAHDI_SPECIFY
    with pytest.raises(DahdiError, match="channel 16: DAHDI_SPECIFY 16: No such device or address"):
        DahdiDChannel.open(16, Handler(), access=device.access())


async def test_b_channels_carry_20_ms_frames_per_timeslot(device: FakeDevice) -> None:
    handler = Handler()
    b = DahdiBChannels.open(1, (1, 2, 17), handler, access=device.access())
    assert b.up
    assert set(device.blocksize.values()) == {FRAME_OCTETS}
    samples = bytes(range(FRAME_OCTETS))
    device.far[17].send(samples)
    await handler.until(lambda: handler.frames == [(17, samples)])
    b.send(2, samples)
    assert await far_recv(device.far[2]) == samples
    with pytest.raises(LinkUsageError):
        b.send(3, samples)
    with pytest.raises(LinkUsageError):
        b.send(1, samples[:10])
    await b.close()


async def test_b_channels_go_down_when_every_channel_is_in_alarm(device: FakeDevice) -> None:
    handler = Handler()
    b = DahdiBChannels.open(1, (1, 2), handler, access=device.access())
    device.event(1, EVENT_ALARM)
    device.event(2, EVENT_ALARM)
    await handler.until(lambda: handler.links == [False])
    device.event(1, EVENT_NOALARM)
    await handler.until(lambda: handler.links == [False, True])
    await b.close()


async def test_b_channels_open_failure_closes_what_was_opened(device: FakeDevice) -> None:
    with pytest.raises(DahdiError, match="channel 3: DAHDI_SPECIFY 3: No such device"):
        DahdiBChannels.open(1, (1, 3), Handler(), access=device.access())  # no channel 3 on the card
    for fd in device.events:  # both opened fds were closed again
        with pytest.raises(OSError):
            os.fstat(fd)


async def test_a_device_that_goes_away_takes_the_link_down_and_is_read_no_more(device: FakeDevice) -> None:
    handler = Handler()
    d = DahdiDChannel.open(16, handler, access=device.access())
    device.far[16].close()  # end of file on our side
    await handler.until(lambda: handler.links == [False])
    assert d.counts["removed"] == 1
    assert not d.up
    await d.close()
