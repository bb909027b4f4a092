"""The simulated span: a :class:`~hw.e1.driver.SpanDriver` on the sockets of DESIGN.md §5.2.

The D-channel socket ``<directory>/span<N>-d.sock`` listens from :meth:`SimSpan.start`; a span without a
far end on it has lost its signal: LOS, declared as a red alarm after :data:`~hw.e1.alarms.SIM_ALARM_TIMES`
(half a second) and cleared the same time after a far end connects. The B-channel socket
``span<N>-b.sock`` is opened by whoever carries the audio: :meth:`SimSpan.open_bchannels` in this process,
or a media process with :func:`hw.e1.channels.open_bchannels` on :meth:`SimSpan.bchannels_spec`.

Loopbacks (:class:`~hw.e1.model.Loopback`) are emulated on the channels opened through this object:

- ``LOCAL``: what we send comes back to our own handlers (D and B); the far end's frames are not
  delivered and nothing of ours reaches it; the D-channel is up for us, as our own signal is received.
- ``LINE``: what the far end sends is returned to it, D and B; nothing reaches our handlers and what we
  send is dropped (the line carries the looped signal).
- ``PAYLOAD``: the far end's B-channel frames are returned to it (and not delivered to us); our B sends
  are dropped; the D-channel works as usual.

The socket can only be there or not, so the alarms it cannot express (AIS, RAI, LOF) and the error
counters are simulation controls: :meth:`SimSpan.inject_alarm` and :meth:`SimSpan.inject_counters`, for
tests and for trying the alarm paths of a running box.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from hw.e1.alarms import SIM_ALARM_TIMES, Alarm, AlarmTimes, SpanAlarms
from hw.e1.driver import BChannelsSpec, LoopbackChanged, SpanEvent, SpanStatus
from hw.e1.errors import LinkUsageError
from hw.e1.links import BChannelHandler, BChannels, DChannel, DChannelHandler
from hw.e1.model import Loopback, SpanConfig, SpanCounters
from hw.e1.sim import SimBChannels, SimDChannel
from hw.e1.timing import TimingSelector

log = logging.getLogger(__name__)


def _ignore(event: SpanEvent) -> None:
    del event


def sim_socket_paths(directory: Path, span: int) -> tuple[Path, Path]:
    """The D- and B-channel socket paths of span ``span`` (DESIGN.md §5.1: ``var/run/span1-d.sock``)."""
    return directory / f"span{span}-d.sock", directory / f"span{span}-b.sock"


class SimSpan:
    """A simulated E1 span. ``wall`` stamps the events; ``timing`` is shared by the box's spans."""

    def __init__(
        self,
        *,
        directory: Path,
        on_event: Callable[[SpanEvent], None] = _ignore,
        wall: Callable[[], float] = time.time,
        alarm_times: AlarmTimes = SIM_ALARM_TIMES,
        timing: TimingSelector | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._directory = directory
        self._on_event = on_event
        self._wall = wall
        self._alarm_times = alarm_times
        self._timing = timing
        self._loop = loop
        self._config = SpanConfig()
        self._alarms = SpanAlarms(span=1, wall=wall, times=alarm_times)
        self._counters = SpanCounters()
        self._loopback = Loopback.NONE
        self._link: SimDChannel | None = None
        self._d_user: _SpanD | None = None
        self._b_user: _SpanB | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- SpanDriver -----------------------------------------------------------------------------------

    @property
    def number(self) -> int:
        return self._config.number

    def configure(self, config: SpanConfig) -> None:
        if self._link is not None:
            raise LinkUsageError(f"span {self.number}: stop the span before configuring it")
        self._config = config
        self._alarms = SpanAlarms(span=config.number, wall=self._wall, times=self._alarm_times)

    async def start(self) -> None:
        if self._link is not None:
            raise LinkUsageError(f"span {self.number}: already started")
        self._loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        d_path, _ = sim_socket_paths(self._directory, self.number)
        link = SimDChannel(d_path, _DSide(self), loop=self._loop)
        await link.start()
        self._link = link
        self._signal_changed()  # no far end yet: loss of signal

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._b_user is not None:
            await self._b_user.close()
        if self._link is not None:
            await self._link.close()
            self._link = None
        self._d_user = None

    def status(self) -> SpanStatus:
        d_path, b_path = sim_socket_paths(self._directory, self.number)
        return SpanStatus(
            span=self.number,
            running=self._link is not None,
            alarms=self._alarms.active,
            counters=self._counters,
            loopback=self._loopback,
            timing_source=self._timing is not None and self._timing.source == self.number,
            d_channel_up=self._d_up,
            name=f"sim/{self.number}",
            description=f"simulated E1 span, D {d_path}, B {b_path}",
        )

    def set_loopback(self, mode: Loopback) -> None:
        if mode is self._loopback:
            return
        previous, self._loopback = self._loopback, mode
        log.info("span %d: loopback %s -> %s", self.number, previous.value, mode.value)
        self._on_event(LoopbackChanged(self.number, mode, previous, self._wall()))
        self._signal_changed()

    async def open_dchannel(self, handler: DChannelHandler) -> DChannel:
        if self._link is None:
            raise LinkUsageError(f"span {self.number}: start the span before opening its D-channel")
        if self._d_user is not None:
            raise LinkUsageError(f"span {self.number}: the D-channel is already open")
        d = self._d_user = _SpanD(self, handler)
        if self._d_up:  # a far end already there: told from the loop, as if it had just connected
            self._call_soon(d.report_current)
        return d

    async def open_bchannels(self, handler: BChannelHandler) -> BChannels:
        if self._b_user is not None:
            raise LinkUsageError(f"span {self.number}: the B-channels are already open")
        _, b_path = sim_socket_paths(self._directory, self.number)
        span_b = _SpanB(self, handler)
        link = SimBChannels(b_path, span_b, timeslots=self._config.b_channels, loop=self._loop)
        await link.start()
        span_b.link = link
        self._b_user = span_b
        return span_b

    def bchannels_spec(self) -> BChannelsSpec:
        _, b_path = sim_socket_paths(self._directory, self.number)
        return BChannelsSpec("sim", self.number, self._config.b_channels, path=b_path)

    # -- simulation controls --------------------------------------------------------------------------

    def inject_alarm(self, alarm: Alarm, present: bool) -> None:
        """Simulation control: set or clear a defect the socket cannot express (AIS, RAI, LOF).

        It goes through the same integration as a real one (so a LOF is declared after the persistence
        time). LOS follows the D-channel socket and is not injected.
        """
        if alarm is Alarm.LOS:
            raise LinkUsageError("LOS follows the D-channel socket: close or connect the far end")
        assert self._loop is not None, "start the span first"
        self._alarms.defect(alarm, present, self._loop.time())
        self._after_alarm_change()

    def inject_counters(self, counters: SpanCounters) -> None:
        """Simulation control: add ``counters`` to the span's error counters."""
        self._counters = self._counters + counters

    # -- internals ------------------------------------------------------------------------------------

    @property
    def loopback(self) -> Loopback:
        return self._loopback

    @property
    def _d_up(self) -> bool:
        """Whether our D-channel handler hears a signal: the far end's, or our own in local loopback."""
        if self._loopback is Loopback.LOCAL:
            return self._link is not None
        return self._link is not None and self._link.up

    def _signal_changed(self) -> None:
        """The far end came or went, or the loopback changed: update LOS and tell the D handler."""
        assert self._loop is not None
        self._alarms.defect(Alarm.LOS, not self._d_up, self._loop.time())
        self._after_alarm_change()
        if self._d_user is not None:
            self._d_user.report(self._d_up)

    def _after_alarm_change(self) -> None:
        changed = False
        while (event := self._alarms.next_event()) is not None:
            changed = True
            self._on_event(event)
        if changed and self._timing is not None:
            self._timing.span_status(self.number, self._alarms.receive_ok)
            while (timing_event := self._timing.next_event()) is not None:
                self._on_event(timing_event)
        self._rearm()

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._alarms.get_timer()
        if deadline is not None and self._link is not None:
            assert self._loop is not None
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self._loop is not None
        self._alarms.handle_timer(self._loop.time())
        self._after_alarm_change()

    def _call_soon(self, callback: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        self._loop.call_soon(callback, *args)

    def _far_send_d(self, frame: bytes) -> None:
        if self._link is not None:
            self._link.send(frame)


class _DSide:
    """The D socket's handler: applies the loopback between the far end and the user's handler."""

    def __init__(self, span: SimSpan) -> None:
        self._span = span

    def frame_received(self, frame: bytes) -> None:
        span = self._span
        if span.loopback is Loopback.LINE:
            span._far_send_d(frame)
        elif span.loopback is not Loopback.LOCAL and span._d_user is not None:
            span._d_user.handler.frame_received(frame)

    def link_changed(self, up: bool) -> None:
        del up  # the span reads the link's state itself
        self._span._signal_changed()


class _SpanD:
    """The D-channel as the span's user holds it (implements :class:`hw.e1.links.DChannel`)."""

    def __init__(self, span: SimSpan, handler: DChannelHandler) -> None:
        self._span = span
        self.handler = handler
        self._reported = False

    @property
    def up(self) -> bool:
        return self._span._d_user is self and self._span._d_up

    def report_current(self) -> None:
        if self._span._d_user is self:
            self.report(self._span._d_up)

    def report(self, up: bool) -> None:
        if up != self._reported:
            self._reported = up
            self.handler.link_changed(up)

    def send(self, frame: bytes) -> None:
        span = self._span
        if span._d_user is not self:
            return  # closed
        if span.loopback is Loopback.LOCAL:
            span._call_soon(self.handler.frame_received, bytes(frame))
        elif span.loopback is not Loopback.LINE:
            span._far_send_d(frame)

    async def close(self) -> None:
        if self._span._d_user is self:
            self._span._d_user = None


class _SpanB:
    """The B-channels as the span's user holds them, with the loopbacks applied."""

    link: SimBChannels

    def __init__(self, span: SimSpan, handler: BChannelHandler) -> None:
        self._span = span
        self._handler = handler

    @property
    def up(self) -> bool:
        return self._span.loopback is Loopback.LOCAL or self.link.up

    def frame_received(self, timeslot: int, samples: bytes) -> None:
        loopback = self._span.loopback
        if loopback in (Loopback.LINE, Loopback.PAYLOAD):
            self.link.send(timeslot, samples)
        elif loopback is not Loopback.LOCAL:
            self._handler.frame_received(timeslot, samples)

    def link_changed(self, up: bool) -> None:
        self._handler.link_changed(up)

    def send(self, timeslot: int, samples: bytes) -> None:
        self.link.check(timeslot, samples)
        loopback = self._span.loopback
        if loopback is Loopback.LOCAL:
            self._span._call_soon(self._handler.frame_received, timeslot, bytes(samples))
        elif loopback is Loopback.NONE:
            self.link.send(timeslot, samples)

    async def close(self) -> None:
        if self._span._b_user is self:
            self._span._b_user = None
        await self.link.close()
