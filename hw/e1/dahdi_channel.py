"""D- and B-channels of a DAHDI card, opened on ``/dev/dahdi/channel``.

Each channel is a file descriptor: open the generic channel device, ``DAHDI_SPECIFY`` the channel number,
``DAHDI_SET_BLOCKSIZE``, and check it with ``DAHDI_GET_PARAMS`` (numbers from dahdi-linux
``include/dahdi/user.h``; ``_IOW``/``_IOR``/``_IOWR`` of type 0xDA).

- The D-channel is configured ``hardhdlc``/``dchan`` in system.conf, so DAHDI does the HDLC framing and the
  FCS (ISO/IEC 13239, Q.921 §2.7): a read returns one frame followed by its 2 FCS octets (stripped
  here), a write takes one frame followed by 2 octets that DAHDI overwrites with the FCS (appended here).
- A B-channel is a clear channel of A-law samples (G.711); with a block size of 160 each read and write
  is 20 ms.
- A read or write that fails with ``ELAST`` (DAHDI's 500) means an event is waiting: ``DAHDI_GETEVENT``
  fetches it. ``DAHDI_EVENT_ALARM``/``NOALARM`` take the link down and up; ``BADFCS``, ``ABORT`` and
  ``OVERRUN`` on the D-channel are counted (the frame is lost, LAPD recovers it, Q.921 §5.8).

The device opener, ``ioctl`` and the fd ``read``/``write`` are injectable, so that the paths are tested on a
socket pair with a fake ``ioctl``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from hw.e1.errors import DahdiError, LinkUsageError
from hw.e1.links import FRAME_OCTETS, MAX_LAPD_FRAME, BChannelHandler, DChannelHandler

log = logging.getLogger(__name__)


def _ioc(direction: int, number: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (0xDA << 8) | number


_W, _R, _RW = 1, 2, 3
PARAMS_FORMAT: Final = "=12i40s10iI"  # struct dahdi_params
DAHDI_SET_BLOCKSIZE: Final = _ioc(_W, 1, 4)
DAHDI_GET_PARAMS: Final = _ioc(_RW, 5, struct.calcsize(PARAMS_FORMAT))
DAHDI_GETEVENT: Final = _ioc(_R, 8, 4)
DAHDI_MAINT: Final = _ioc(_W, 11, 8)  # struct dahdi_maintinfo {int spanno; int command;}
DAHDI_SPECIFY: Final = _ioc(_W, 38, 4)

ELAST: Final = 500  # dahdi/user.h defines it when the C library does not
EVENT_ALARM: Final = 4
EVENT_NOALARM: Final = 5
EVENT_ABORT: Final = 6
EVENT_OVERRUN: Final = 7
EVENT_BADFCS: Final = 8
EVENT_REMOVED: Final = 20
SIG_CLEAR: Final = 1 << 7
SIG_HDLCFCS: Final = (1 << 9) | (1 << 8) | SIG_CLEAR
SIG_HARDHDLC: Final = (1 << 19) | SIG_CLEAR
FCS_OCTETS: Final = 2
D_BLOCKSIZE: Final = 1024


class Ioctl(Protocol):
    def __call__(self, fd: int, request: int, arg: bytes, /) -> bytes: ...


def _real_ioctl(fd: int, request: int, arg: bytes) -> bytes:
    import fcntl

    return fcntl.ioctl(fd, request, arg)


@dataclass(frozen=True, slots=True)
class DeviceAccess:
    """How channels reach the kernel; each member is replaced by a fake in tests."""

    device: Path = Path("/dev/dahdi/channel")
    open: Callable[[Path], int] = lambda path: os.open(path, os.O_RDWR | os.O_NONBLOCK)
    ioctl: Ioctl = _real_ioctl
    read: Callable[[int, int], bytes] = os.read
    write: Callable[[int, bytes], int] = os.write


@dataclass(frozen=True, slots=True)
class ChannelParams:
    channo: int
    spanno: int
    chanpos: int
    sigtype: int
    name: str
    alarms: int


def ioctl_int(access: DeviceAccess, fd: int, request: int, value: int = 0) -> int:
    result = access.ioctl(fd, request, struct.pack("=i", value))
    return int(struct.unpack("=i", result[:4])[0])


def open_channel(access: DeviceAccess, channo: int, blocksize: int) -> tuple[int, ChannelParams]:
    """Open DAHDI channel ``channo`` with ``blocksize``; a :class:`DahdiError` names the step that failed."""
    step = f"open {access.device}"
    fd = -1
    try:
        fd = access.open(access.device)
        step = f"DAHDI_SPECIFY {channo}"
        ioctl_int(access, fd, DAHDI_SPECIFY, channo)
        step = f"DAHDI_SET_BLOCKSIZE {blocksize}"
        ioctl_int(access, fd, DAHDI_SET_BLOCKSIZE, blocksize)
        step = "DAHDI_GET_PARAMS"
        request = struct.pack(PARAMS_FORMAT, channo, *([0] * 11), b"", *([0] * 10), 0)
        fields = struct.unpack(PARAMS_FORMAT, access.ioctl(fd, DAHDI_GET_PARAMS, request))
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        raise DahdiError(f"channel {channo}: {step}: {exc.strerror or exc}") from exc
    name = fields[12].split(b"\0", 1)[0].decode("ascii", "replace")
    return fd, ChannelParams(fields[0], fields[1], fields[2], fields[3], name, fields[-1])


class _Channel:
    """One open channel fd with its reader on the loop and its event handling."""

    def __init__(self, access: DeviceAccess, fd: int, params: ChannelParams, loop: asyncio.AbstractEventLoop):
        self.access = access
        self.fd = fd
        self.params = params
        self.loop = loop
        self.alarm = params.alarms != 0
        self.counts: dict[str, int] = {}
        self.closed = False

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def read(self, size: int) -> bytes | None:
        """One block, or None when there is nothing (an event was handled, no data yet, or the device is
        gone: an end of file or an error other than ``ELAST``, after which the channel reads no more and
        is in alarm)."""
        try:
            data = self.access.read(self.fd, size)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno == ELAST:
                self.handle_event()
                return None
            log.warning("DAHDI channel %d: read failed: %s", self.params.channo, exc)
            self.gone()
            return None
        if not data:
            log.warning("DAHDI channel %d: end of file", self.params.channo)
            self.gone()
            return None
        return data

    def gone(self) -> None:
        """The device stopped working (a card removed, a span unassigned): stop reading, stay in alarm."""
        self.alarm = True
        self.count("removed")
        if not self.closed:
            self.loop.remove_reader(self.fd)

    def write(self, data: bytes) -> None:
        try:
            self.access.write(self.fd, data)
        except BlockingIOError:
            self.count("dropped_full")
        except OSError as exc:
            self.count("dropped_error")
            if exc.errno == ELAST:
                self.handle_event()
            else:
                log.warning("DAHDI channel %d: write failed: %s", self.params.channo, exc)

    def handle_event(self) -> int:
        event = ioctl_int(self.access, self.fd, DAHDI_GETEVENT)
        if event == EVENT_ALARM:
            self.alarm = True
        elif event in (EVENT_NOALARM,):
            self.alarm = False
        elif event == EVENT_REMOVED:
            self.gone()
        elif event in _EVENT_COUNTERS:
            self.count(_EVENT_COUNTERS[event])
        log.debug("DAHDI channel %d: event %d", self.params.channo, event)
        return event

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.fd)
            os.close(self.fd)


_EVENT_COUNTERS: Final = {EVENT_BADFCS: "bad_fcs", EVENT_ABORT: "aborts", EVENT_OVERRUN: "overruns"}


class DahdiDChannel:
    """A span's D-channel on a card (implements :class:`hw.e1.links.DChannel`)."""

    def __init__(self, channel: _Channel, handler: DChannelHandler) -> None:
        self._ch = channel
        self._handler = handler
        channel.loop.add_reader(channel.fd, self._on_readable)

    @classmethod
    def open(
        cls,
        channo: int,
        handler: DChannelHandler,
        *,
        access: DeviceAccess = DeviceAccess(),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> DahdiDChannel:
        fd, params = open_channel(access, channo, D_BLOCKSIZE)
        if params.sigtype not in (SIG_HDLCFCS, SIG_HARDHDLC):
            os.close(fd)
            raise DahdiError(f"channel {channo} is not an HDLC D-channel (signalling 0x{params.sigtype:x})")
        return cls(_Channel(access, fd, params, loop or asyncio.get_running_loop()), handler)

    @property
    def up(self) -> bool:
        return not self._ch.alarm and not self._ch.closed

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._ch.counts)

    def send(self, frame: bytes) -> None:
        if not frame or len(frame) > MAX_LAPD_FRAME:
            raise LinkUsageError(f"a LAPD frame is 1 to {MAX_LAPD_FRAME} octets, not {len(frame)}")
        if not self.up:
            self._ch.count("dropped_down")
            return
        self._ch.write(frame + bytes(FCS_OCTETS))  # DAHDI writes the FCS over the two octets

    def _on_readable(self) -> None:
        was_up = self.up
        data = self._ch.read(D_BLOCKSIZE + FCS_OCTETS)
        if self.up != was_up:
            self._handler.link_changed(self.up)
        if data is None:
            return
        frame = data[:-FCS_OCTETS]
        if not frame or len(frame) > MAX_LAPD_FRAME:
            self._ch.count("rx_bad_length")
            return
        self._handler.frame_received(frame)

    async def close(self) -> None:
        self._ch.close()


class DahdiBChannels:
    """A span's B-channels on a card, one fd per timeslot (implements :class:`hw.e1.links.BChannels`)."""

    def __init__(self, channels: dict[int, _Channel], handler: BChannelHandler) -> None:
        self._channels = channels
        self._handler = handler
        self._up = self._compute_up()
        for timeslot, ch in channels.items():
            ch.loop.add_reader(ch.fd, self._on_readable, timeslot)

    @classmethod
    def open(
        cls,
        basechan: int,
        timeslots: tuple[int, ...],
        handler: BChannelHandler,
        *,
        access: DeviceAccess = DeviceAccess(),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> DahdiBChannels:
        loop = loop or asyncio.get_running_loop()
        channels: dict[int, _Channel] = {}
        try:
            for ts in timeslots:
                fd, params = open_channel(access, basechan + ts - 1, FRAME_OCTETS)
                channels[ts] = _Channel(access, fd, params, loop)
        except DahdiError:
            for ch in channels.values():
                os.close(ch.fd)
            raise
        return cls(channels, handler)

    def _compute_up(self) -> bool:
        return any(not ch.alarm and not ch.closed for ch in self._channels.values())

    @property
    def up(self) -> bool:
        return self._up

    def send(self, timeslot: int, samples: bytes) -> None:
        ch = self._channels.get(timeslot)
        if ch is None:
            raise LinkUsageError(f"timeslot {timeslot} is not an open B-channel of this span")
        if len(samples) != FRAME_OCTETS:
            raise LinkUsageError(f"a B-channel frame is {FRAME_OCTETS} octets, not {len(samples)}")
        ch.write(samples)

    def _on_readable(self, timeslot: int) -> None:
        ch = self._channels[timeslot]
        data = ch.read(FRAME_OCTETS)
        up = self._compute_up()
        if up != self._up:
            self._up = up
            self._handler.link_changed(up)
        if data is None:
            return
        if len(data) != FRAME_OCTETS:
            ch.count("rx_bad_length")
            return
        self._handler.frame_received(timeslot, data)

    async def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
