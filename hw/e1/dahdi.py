"""The DAHDI backend: spans on Digium/Sangoma-style cards behind the :class:`~hw.e1.driver.SpanDriver`.

One :class:`DahdiSystem` per box owns ``system.conf`` and ``dahdi_cfg`` (DAHDI configures all spans at
once); each :class:`DahdiSpan` is one span. :meth:`DahdiSpan.start` writes the configuration of every
span configured so far and runs ``dahdi_cfg``, then polls the span's sysfs alarms and procfs counters every
:attr:`~hw.e1.dahdi_conf.DahdiSettings.poll_interval` (small reads of kernel attributes, done on the loop).

Alarms: the card drivers integrate LOS/LOF themselves (wct4xxp debounces LOS for 2.5 s and holds a
recovering span in ``RECOVER`` before it clears, the G.732 practice), so :data:`DAHDI_ALARM_TIMES` adds no
integration of its own. Timing: the kernel picks the clock source from system.conf's priorities; the span
reports it (sysfs ``syncsrc``) rather than choosing. Loopbacks go to the card with ``DAHDI_MAINT`` on
``/dev/dahdi/ctl``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections.abc import Callable
from typing import Final

from hw.e1.alarms import AlarmTimes, SpanAlarms
from hw.e1.dahdi_channel import DAHDI_MAINT, DahdiBChannels, DahdiDChannel, DeviceAccess
from hw.e1.dahdi_conf import DahdiSettings, render_system_conf, run_dahdi_cfg, write_atomically
from hw.e1.dahdi_status import SysfsSpan, read_proc_span, read_sysfs_span
from hw.e1.driver import BChannelsSpec, LoopbackChanged, SpanEvent, SpanStatus
from hw.e1.errors import DahdiError, LinkUsageError
from hw.e1.links import BChannelHandler, BChannels, DChannel, DChannelHandler
from hw.e1.model import Loopback, SpanConfig, SpanCounters

log = logging.getLogger(__name__)

DAHDI_ALARM_TIMES: Final = AlarmTimes(red_raise=0.0, red_clear=0.0)
# dahdi/user.h maintenance modes
_MAINT: Final = {Loopback.NONE: 0, Loopback.LOCAL: 1, Loopback.LINE: 2, Loopback.PAYLOAD: 13}


def _ignore(event: SpanEvent) -> None:
    del event


class DahdiSystem:
    """The box's DAHDI configuration: the spans' configs, system.conf and ``dahdi_cfg``."""

    def __init__(self, settings: DahdiSettings | None = None, *, access: DeviceAccess | None = None) -> None:
        settings = settings if settings is not None else DahdiSettings()
        self.settings = settings
        self.access = access if access is not None else DeviceAccess(device=settings.channel_device)
        self._configs: dict[int, SpanConfig] = {}
        self._lock = asyncio.Lock()

    def register(self, config: SpanConfig) -> None:
        self._configs[config.number] = config

    def basechan(self, number: int) -> int | None:
        try:
            return read_sysfs_span(self.settings.sysfs_spans, number).basechan
        except DahdiError:
            return None

    async def apply(self) -> None:
        """Write system.conf for every registered span and run ``dahdi_cfg`` (one run at a time)."""
        async with self._lock:
            configs = list(self._configs.values())
            basechans = {n: b for n in self._configs if (b := self.basechan(n)) is not None}
            text = render_system_conf(
                configs, hdlc=self.settings.hdlc, tone_zone=self.settings.tone_zone, basechans=basechans
            )
            write_atomically(self.settings.system_conf, text)
            await run_dahdi_cfg(self.settings)
            log.info("DAHDI configured: spans %s", sorted(self._configs))

    def maintenance(self, span: int, mode: Loopback) -> None:
        """Put the span in (or out of) a loopback with ``DAHDI_MAINT`` on the control device."""
        access = self.access
        try:
            fd = access.open(self.settings.ctl_device)
        except OSError as exc:
            raise DahdiError(f"cannot open {self.settings.ctl_device}: {exc.strerror or exc}") from exc
        try:
            access.ioctl(fd, DAHDI_MAINT, struct.pack("=ii", span, _MAINT[mode]))
        except OSError as exc:
            raise DahdiError(f"span {span}: DAHDI_MAINT {mode.value}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)


class DahdiSpan:
    """One span on a card. ``wall`` stamps events; ``on_event`` receives them."""

    def __init__(
        self,
        system: DahdiSystem,
        *,
        on_event: Callable[[SpanEvent], None] = _ignore,
        wall: Callable[[], float] = time.time,
        alarm_times: AlarmTimes = DAHDI_ALARM_TIMES,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._system = system
        self._on_event = on_event
        self._wall = wall
        self._alarm_times = alarm_times
        self._loop = loop
        self._config = SpanConfig()
        self._alarms = SpanAlarms(span=1, wall=wall, times=alarm_times)
        self._running = False
        self._loopback = Loopback.NONE
        self._sysfs: SysfsSpan | None = None
        self._counters = SpanCounters()
        self._poll: asyncio.TimerHandle | None = None
        self._alarm_timer: asyncio.TimerHandle | None = None
        self._d: DahdiDChannel | None = None
        self._b: DahdiBChannels | None = None

    @property
    def number(self) -> int:
        return self._config.number

    def configure(self, config: SpanConfig) -> None:
        if self._running:
            raise LinkUsageError(f"span {self.number}: stop the span before configuring it")
        self._config = config
        self._alarms = SpanAlarms(span=config.number, wall=self._wall, times=self._alarm_times)
        self._system.register(config)

    async def start(self) -> None:
        if self._running:
            raise LinkUsageError(f"span {self.number}: already started")
        self._loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        self._system.register(self._config)
        await self._system.apply()
        self._running = True
        self.poll()

    async def stop(self) -> None:
        self._running = False
        for handle in (self._poll, self._alarm_timer):
            if handle is not None:
                handle.cancel()
        self._poll = self._alarm_timer = None
        if self._d is not None:
            await self._d.close()
            self._d = None
        if self._b is not None:
            await self._b.close()
            self._b = None

    def poll(self) -> None:
        """Read the span's alarms and counters now (and schedule the next read while running)."""
        assert self._loop is not None
        settings = self._system.settings
        try:
            sysfs = read_sysfs_span(settings.sysfs_spans, self.number)
            proc = read_proc_span(settings.proc_dahdi, self.number)
        except DahdiError as exc:
            log.warning("span %d: %s", self.number, exc)
        else:
            self._sysfs = sysfs
            self._counters = proc.counters
            self._alarms.set_defects(sysfs.defects, self._loop.time())
            self._after_alarm_change()
        if self._running:
            self._poll = self._loop.call_later(settings.poll_interval, self.poll)

    def _after_alarm_change(self) -> None:
        assert self._loop is not None
        while (event := self._alarms.next_event()) is not None:
            self._on_event(event)
        if self._alarm_timer is not None:
            self._alarm_timer.cancel()
            self._alarm_timer = None
        deadline = self._alarms.get_timer()
        if deadline is not None:
            self._alarm_timer = self._loop.call_at(deadline, self._on_alarm_timer)

    def _on_alarm_timer(self) -> None:
        assert self._loop is not None
        self._alarm_timer = None
        self._alarms.handle_timer(self._loop.time())
        self._after_alarm_change()

    def status(self) -> SpanStatus:
        sysfs = self._sysfs
        return SpanStatus(
            span=self.number,
            running=self._running,
            alarms=self._alarms.active,
            counters=self._counters,
            loopback=self._loopback,
            timing_source=sysfs is not None and sysfs.timing_source,
            d_channel_up=self._d is not None and self._d.up,
            name=sysfs.name if sysfs else "",
            description=sysfs.description if sysfs else "",
        )

    def set_loopback(self, mode: Loopback) -> None:
        if mode is self._loopback:
            return
        self._system.maintenance(self.number, mode)
        previous, self._loopback = self._loopback, mode
        log.info("span %d: loopback %s -> %s", self.number, previous.value, mode.value)
        self._on_event(LoopbackChanged(self.number, mode, previous, self._wall()))

    def _basechan(self) -> int:
        if self._sysfs is not None:
            return self._sysfs.basechan
        return read_sysfs_span(self._system.settings.sysfs_spans, self.number).basechan

    async def open_dchannel(self, handler: DChannelHandler) -> DChannel:
        if not self._running:
            raise LinkUsageError(f"span {self.number}: start the span before opening its D-channel")
        if self._d is not None:
            raise LinkUsageError(f"span {self.number}: the D-channel is already open")
        assert self._config.d_channel is not None
        channo = self._basechan() + self._config.d_channel - 1
        self._d = DahdiDChannel.open(channo, handler, access=self._system.access, loop=self._loop)
        return self._d

    async def open_bchannels(self, handler: BChannelHandler) -> BChannels:
        if self._b is not None:
            raise LinkUsageError(f"span {self.number}: the B-channels are already open")
        self._b = DahdiBChannels.open(
            self._basechan(), self._config.b_channels, handler, access=self._system.access, loop=self._loop
        )
        return self._b

    def bchannels_spec(self) -> BChannelsSpec:
        return BChannelsSpec("dahdi", self.number, self._config.b_channels, basechan=self._basechan())
