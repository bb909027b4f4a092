"""One running E1/PRI span: its driver, TDM worker, D-channel and gateway (wiring; see
:mod:`appliance.app_pri`).

:class:`SpanRunner` starts the parts in order — the driver (its D-channel socket listening), the TDM worker
(its B-channel socket and RTP ports), the Q.931 machine inside the PRI gateway, the LAPD machine and the
D-channel adapter — and stops them in reverse. The gateway owns the Q.931 machine and drains its events
(:meth:`PriGateway.pump <appliance.calls.pri_gateway.PriGateway.pump>`), so the D-channel adapter is given
the gateway as its Q.931 machine (:class:`GatewayMachine`) and the span's report sees the events through
:class:`ObservedQ931`. The gateway's TDM commands are sent to the worker in order by :class:`TdmCommands`.

The driver is a :class:`~hw.e1.sim_span.SimSpan` (``driver = "sim"``) or a :class:`~hw.e1.dahdi.DahdiSpan`
of the box's :class:`~hw.e1.dahdi.DahdiSystem` (``driver = "dahdi"``: system.conf written and
``dahdi_cfg`` run at its start, its alarms and counters polled from sysfs and procfs, its D-channel an HDLC
channel fd, its B-channels opened by the TDM worker from the span's base channel). Both report alarms the
same way. A simulated span tells the box's timing-source selector of its receive side itself; a card's
span is told to it here, from its alarms (the kernel picks the card's clock from system.conf's priorities
by the same rule, and the selector's choice is what the box reports).

A span with ``trace = true`` writes its D-channel as a pcap while it runs (:class:`SpanTrace`), the
gateway's B-channel SDP names the address the TDM worker binds, and the gateway keeps a far end's
announcement at most the span's ``announcement_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Literal, Protocol

from appliance.app_pri_events import SpanReporter, slots_text
from appliance.calls.pri_gateway import CallControl, PriGateway
from appliance.calls.pri_leg import LOCALHOST
from appliance.config.spans import SpanConfig
from appliance.metrics.pri import ERROR_COUNTERS
from appliance.pri.errors import LocalProtocolError
from appliance.pri.lapd import Lapd
from appliance.pri.link import PriLink
from appliance.pri.numbers import SpanNumbering
from appliance.pri.pcap import PcapWriter
from appliance.pri.q931 import Q931
from appliance.pri.q931_events import Q931Event
from hw.e1 import model as hw_model
from hw.e1.alarms import Alarm, AlarmCleared, AlarmRaised
from hw.e1.dahdi import DahdiSpan, DahdiSystem
from hw.e1.driver import BChannelsSpec, SpanDriver, SpanEvent
from hw.e1.links import DChannel
from hw.e1.sim_span import SimSpan, sim_socket_paths
from hw.e1.timing import TimingSelector

if TYPE_CHECKING:
    from appliance.calls.b2bua import Call, Leg
    from appliance.calls.events import Setup

log = logging.getLogger("appliance.pri")

CAUSE_TEMPORARY_FAILURE: Final = 41  # Q.850: the span stopped under its calls
# The alarms of a receive side whose clock cannot time the box: red (LOS, LOF) and blue (AIS).
RECEIVE_FAULTS: Final = frozenset({Alarm.LOS, Alarm.LOF, Alarm.AIS})
# A D-channel trace file is rotated when it would grow past this (SpanTrace): a call's SETUP to RELEASE
# COMPLETE with the data link's acknowledgements takes under 1 kB, so 64 MB hold tens of thousands.
TRACE_MAX_BYTES: Final = 64 * 1024 * 1024


def drain_timing(timing: TimingSelector, report: Callable[[SpanEvent], None]) -> None:
    """Report the selector's timing-source changes."""
    while (event := timing.next_event()) is not None:
        report(event)


@dataclass(frozen=True, slots=True)
class SpanPlan:
    """One configured span as the process runs it: its settings and its TDM worker's RTP ports."""

    config: SpanConfig
    ports: tuple[int, int]

    @property
    def number(self) -> int:
        return self.config.number


def hw_span_config(span: SpanConfig) -> hw_model.SpanConfig:
    """The driver's view of a configured span; raises :class:`hw.e1.errors.SpanConfigError`."""
    return hw_model.SpanConfig(
        number=span.number,
        framing=span.framing,
        line_code=span.line_code,
        crc4=span.crc4,
        side=span.side,
        switch_type=span.switch_type,
        b_channels=span.b_channels,
        timing_priority=span.timing_priority,
    )


class SpanTrace(PcapWriter):
    """A span's D-channel trace (``[[spans]] trace = true``): ``<directory>/span<N>-d.pcap``, every frame
    sent and received as :class:`~appliance.pri.pcap.PcapWriter` writes it (LINKTYPE_LINUX_LAPD, seen from
    the span's ``side``), each record flushed as it is written so that tshark reads a running capture.

    Rotation, never a gap: a new file is begun at each start of the span, the previous one kept as
    ``span<N>-d.pcap.1`` (replacing the one before); a file that would grow past ``max_bytes`` is rotated
    the same way, with a warning in the log. A span's traces so take at most twice ``max_bytes``. A write
    that fails (a full disk) ends the trace with an error in the log; the span runs on without it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        span: int,
        side: Literal["user", "network"],
        max_bytes: int = TRACE_MAX_BYTES,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"span{span}-d.pcap"
        self.span = span
        self.side: Literal["user", "network"] = side
        self.max_bytes = max_bytes
        self._out: BinaryIO | None = self._begin()
        super().__init__(self._out, side=side)

    def write(self, frame: bytes, *, sent: bool, timestamp: float) -> None:
        if self._out is None:
            return
        try:
            # A record is its 16-octet header, the 16-octet pseudo-header and the frame.
            if self.records and self._out.tell() + 32 + len(frame) > self.max_bytes:
                log.warning(
                    "span %d: D-channel trace reached %d bytes; %s kept as %s.1, a new file begun",
                    self.span, self.max_bytes, self.path, self.path.name, extra={"ctx": {"span": self.span}},
                )  # fmt: skip
                self._out.close()
                self._out = self._begin()
                PcapWriter.__init__(self, self._out, side=self.side)  # a new file opens with its header
            super().write(frame, sent=sent, timestamp=timestamp)
            self._out.flush()
        except OSError as exc:
            log.error("span %d: D-channel trace %s ended: %s", self.span, self.path, exc)
            self.close()

    def close(self) -> None:
        """Close the file (what was written stays); later frames are not written."""
        file, self._out = self._out, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def _begin(self) -> BinaryIO:
        if self.path.exists():
            self.path.replace(self.path.with_name(self.path.name + ".1"))
        return self.path.open("wb")


class TdmWorker(Protocol):
    """A span's TDM worker as the wiring drives it (:class:`appliance.media.tdm.client.TdmClient`)."""

    async def start(self) -> object: ...

    async def stop(self) -> None: ...

    async def open(self, timeslot: int, codec: str = "PCMA") -> int: ...

    async def connect(self, timeslot: int, host: str, port: int, payload_type: int = 8) -> None: ...

    async def close(self, timeslot: int) -> None: ...

    def port(self, timeslot: int) -> int: ...


# Makes the TDM worker of a span: its settings, its RTP ports, where its B-channels are, and the callback
# for the timeslots a worker that died had open.
TdmFactory = Callable[
    [SpanConfig, tuple[int, int], BChannelsSpec, Callable[[tuple[int, ...]], None]], TdmWorker
]


class TdmCommands:
    """The gateway's :class:`~appliance.calls.pri_leg.TdmMedia` on a span's TDM worker: each command is
    sent in the order given, one at a time (an open before its connect, a close after both), by one task;
    a command the worker refuses or cannot take is logged (the call goes on without that audio)."""

    def __init__(self, worker: TdmWorker, *, span: int) -> None:
        self.worker = worker
        self.span = span
        self._queue: asyncio.Queue[tuple[str, Callable[[], Awaitable[object]]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"tdm-commands-span{self.span}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def open(self, timeslot: int, codec: str) -> None:
        self._queue.put_nowait((f"open {timeslot}", lambda: self.worker.open(timeslot, codec)))

    def connect(self, timeslot: int, host: str, port: int, payload_type: int) -> None:
        what = f"connect {timeslot} to {host}:{port}"
        self._queue.put_nowait((what, lambda: self.worker.connect(timeslot, host, port, payload_type)))

    def close(self, timeslot: int) -> None:
        self._queue.put_nowait((f"close {timeslot}", lambda: self.worker.close(timeslot)))

    def port_of(self, timeslot: int) -> int:
        return self.worker.port(timeslot)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        while True:
            what, command = await self._queue.get()
            try:
                await command()
            except Exception as exc:  # refused, timed out or the worker died (its calls are cleared)
                log.warning(
                    "span %d: TDM %s failed: %s", self.span, what, exc, extra={"ctx": {"span": self.span}}
                )


class ObservedQ931(Q931):
    """The span's Q.931 machine, its events shown to ``observe`` as the gateway takes them (the gateway
    owns the machine and drains its events; the span's report wants the faults and restarts)."""

    def __init__(self, *, observe: Callable[[Q931Event], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observe = observe

    def next_event(self) -> Q931Event | None:
        event = super().next_event()
        if event is not None:
            self._observe(event)
        return event


class GatewayMachine:
    """The gateway as the D-channel adapter's Q.931 machine (:class:`appliance.pri.link.Q931Machine`):
    what the data link delivers goes to the gateway, which hands the events to the calls itself; after
    each input ``after`` runs (the SIP messages and media commands the calls caused go out)."""

    def __init__(self, gateway: PriGateway, *, after: Callable[[], None]) -> None:
        self.gateway = gateway
        self.after = after

    def link_established(self, now: float) -> None:
        self.gateway.link_established(now)
        self.after()

    def link_released(self, now: float) -> None:
        self.gateway.link_released(now)
        self.after()

    def physical_layer_lost(self, now: float) -> None:
        self.gateway.physical_layer_lost(now)
        self.after()

    def receive(self, data: bytes, now: float) -> None:
        self.gateway.receive(data, now)
        self.after()

    def data_to_send(self) -> list[bytes]:
        return self.gateway.data_to_send()

    def next_event(self) -> Q931Event | None:
        return None  # the gateway drains the machine (PriGateway.pump)

    def get_timer(self) -> float | None:
        return self.gateway.get_timer()

    def handle_timer(self, now: float) -> None:
        self.gateway.handle_timer(now)
        self.after()


class SpanRunner:
    """One configured span: its driver, TDM worker, D-channel and gateway, started and stopped together.

    ``config`` is the span's settings in force (the configured ones, or a ``span`` document's); a start
    takes its current value. ``after_event`` runs after every input the gateway handled. ``media_address``
    is the address the TDM worker binds (the B-channels' SDP names it); ``trace_dir`` where a span with
    ``trace = true`` writes its D-channel (default: ``trace`` beside ``run_dir``, ``<state_dir>/trace``).
    """

    def __init__(
        self,
        plan: SpanPlan,
        *,
        region: str,
        run_dir: Path,
        reporter: SpanReporter,
        timing: TimingSelector,
        make_tdm: TdmFactory,
        after_event: Callable[[], None],
        wall: Callable[[], float],
        dahdi: DahdiSystem | None = None,
        media_address: str = LOCALHOST,
        trace_dir: Path | None = None,
    ) -> None:
        self.plan = plan
        self.media_address = media_address
        self.trace_dir = trace_dir if trace_dir is not None else run_dir.parent / "trace"
        self.trace: SpanTrace | None = None
        self.dahdi = dahdi
        self.config = plan.config
        self.region = region
        self.run_dir = run_dir
        self.reporter = reporter
        self.timing = timing
        self.make_tdm = make_tdm
        self.after_event = after_event
        self.wall = wall
        self.lock = asyncio.Lock()  # one start, stop or restart at a time
        self.driver: SpanDriver | None = None
        self.tdm: TdmWorker | None = None
        self.commands: TdmCommands | None = None
        self.q931: Q931 | None = None
        self.link: PriLink | None = None
        self.dchannel: DChannel | None = None
        self.gateway: PriGateway | None = None

    @property
    def number(self) -> int:
        return self.plan.number

    def describe(self) -> str:
        """The line ``make run`` prints for the span."""
        span, (low, high) = self.config, self.plan.ports
        where = "a DAHDI card"
        if span.driver == "dahdi" and self.dahdi is not None:
            name = self.driver.status().name if self.driver is not None else ""
            where = f"DAHDI span {name or span.number}, {self.dahdi.settings.system_conf}"
        if span.driver == "sim":
            d_path, b_path = sim_socket_paths(self.run_dir, span.number)
            where = f"D-channel {d_path}, B-channels {b_path}"
        return f"span {span.number}         {span.side} side, {span.driver}: {where}; RTP ports {low}-{high}"

    async def start(self, calls: CallControl) -> None:
        """Bring the span up, its calls placed with ``calls``; on failure whatever was started is stopped
        again and the error raised."""
        n, span = self.number, self.config
        try:
            driver = self._driver()
            self.driver = driver
            driver.configure(hw_span_config(span))
            await driver.start()
            if isinstance(driver, DahdiSpan):
                self._timing_from(driver)
            self.tdm = self.make_tdm(span, self.plan.ports, driver.bchannels_spec(), self._tdm_lost)
            await self.tdm.start()
            self.commands = TdmCommands(self.tdm, span=n)
            self.commands.start()
            self.q931 = ObservedQ931(
                observe=self._q931_event, side=span.side, b_channels=span.b_channels, span=n
            )
            numbering = SpanNumbering(
                self.region,
                area_code=span.area_code or None,
                unknown_with_prefixes=span.number_format == "unknown",
            )
            gateway = PriGateway(
                span=n, q931=self.q931, tdm=self.commands, calls=calls, numbering=numbering,
                announcement_timeout=span.announcement_timeout, media_address=self.media_address,
            )  # fmt: skip
            self.gateway = gateway
            if span.trace:
                self._open_trace(span)
            self.link = PriLink(
                lapd=Lapd(side=span.side, name=f"span{n}"), q931=GatewayMachine(gateway, after=self._after),
                on_event=self._q931_event, on_dchannel=self._dchannel, span=n, wall_clock=self.wall,
                trace=self.trace,
            )  # fmt: skip
            self.dchannel = await driver.open_dchannel(self.link)
            self.link.attach(self.dchannel)
        except BaseException:
            await self.stop()
            raise
        log.info("%s", self.describe(), extra={"ctx": {"span": n}})

    def _open_trace(self, span: SpanConfig) -> None:
        """Begin the span's D-channel trace; a trace that cannot be written is logged, the span runs."""
        try:
            self.trace = SpanTrace(self.trace_dir, span=span.number, side=span.side)
        except OSError as exc:
            log.error("span %d: no D-channel trace: %s", span.number, exc)
            return
        log.info("span %d: D-channel trace in %s", span.number, self.trace.path)

    def _driver(self) -> SpanDriver:
        if self.config.driver == "sim":
            return SimSpan(directory=self.run_dir, on_event=self.reporter.span_event, wall=self.wall,
                           timing=self.timing)  # fmt: skip
        if self.dahdi is None:
            raise ValueError(f"span {self.number}: driver {self.config.driver!r} has no DAHDI system")
        return DahdiSpan(self.dahdi, on_event=self._span_event, wall=self.wall)

    def _span_event(self, event: SpanEvent) -> None:
        """A card span's event: reported, and an alarm's change told to the timing-source selector."""
        self.reporter.span_event(event)
        if isinstance(event, AlarmRaised | AlarmCleared) and isinstance(self.driver, DahdiSpan):
            self._timing_from(self.driver)

    def _timing_from(self, driver: SpanDriver) -> None:
        receive_ok = not RECEIVE_FAULTS & driver.status().alarms.keys()
        self.timing.span_status(self.number, receive_ok)
        drain_timing(self.timing, self.reporter.span_event)

    async def stop(self, *, report: bool = True) -> None:
        """Take the span down: its calls end (cause 41, temporary failure), the D-channel closes, the
        driver stops (the simulated span's sockets are removed) and the TDM worker exits. ``report``
        false: a D-channel that was up goes to the metrics only, not to the outbox (the process ends)."""
        gateway, self.gateway = self.gateway, None
        if gateway is not None and self.link is not None:
            self._end_calls(gateway, self.link.time())
        if self.link is not None:
            self.link.close()
            if self.link.dchannel_up and report:
                self.reporter.dchannel(self.number, False, "span stopped")
            elif self.link.dchannel_up:
                self.reporter.metrics.dchannel(self.number, False)
        closers: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if self.dchannel is not None:
            closers.append(("D-channel", self.dchannel.close))
        if self.driver is not None:
            closers.append(("driver", self.driver.stop))
        if self.commands is not None:
            closers.append(("TDM commands", self.commands.stop))
        if self.tdm is not None:
            closers.append(("TDM worker", self.tdm.stop))
        for what, close in closers:
            try:
                await close()
            except Exception:  # the others must still be closed
                log.exception("span %d: closing the %s failed", self.number, what)
        if self.driver is not None:
            self.reporter.metrics.retire_errors(self.number)
            if isinstance(self.driver, DahdiSpan):  # a stopped card span cannot time the box
                self.timing.span_status(self.number, False)
                drain_timing(self.timing, self.reporter.span_event)
        self.reporter.metrics.set_calls(self.number, 0)
        if self.trace is not None:
            self.trace.close()
            self.trace = None
        self.link = self.q931 = self.dchannel = self.driver = self.commands = self.tdm = None

    def _end_calls(self, gateway: PriGateway, now: float) -> None:
        # The data link is gone for good: Q.931 clears the calls not yet active (§5.8.9); the active ones
        # would wait for T309, which no one will run now, so call control hears of them at once.
        gateway.link_released(now)
        for ref, leg in list(gateway.legs.items()):
            del gateway.legs[ref]
            leg.close_channel()
            leg.released(CAUSE_TEMPORARY_FAILURE, now)
        self.after_event()

    def dial(self, call: Call, setup: Setup, now: float) -> Leg | None:
        if self.gateway is None:
            return None
        return self.gateway.dial(self.number, call, setup, now)

    def flush(self) -> None:
        """Send what call control made the span's Q.931 machine queue."""
        if self.link is not None:
            self.link.flush()

    def sample(self) -> None:
        """Copy the driver's error counters and the call count into the metrics."""
        metrics = self.reporter.metrics
        if self.driver is not None:
            counters = self.driver.status().counters
            metrics.set_errors(self.number, {name: getattr(counters, name) for name in ERROR_COUNTERS})
        metrics.set_calls(self.number, self.q931.calls if self.q931 is not None else 0)

    def _after(self) -> None:
        if self.q931 is not None:
            self.reporter.metrics.set_calls(self.number, self.q931.calls)
        self.after_event()

    def _q931_event(self, event: Q931Event) -> None:
        self.reporter.q931_event(self.number, event)

    def _dchannel(self, up: bool) -> None:
        reason = "established"
        if not up:
            reason = "data link released" if self.link is not None and self.link.signal else "loss of signal"
        self.reporter.dchannel(self.number, up, reason)

    def _tdm_lost(self, timeslots: tuple[int, ...]) -> None:
        """The TDM worker died with these timeslots open: their calls are cleared (cause 41); the client
        starts a new worker for the calls to come."""
        log.error("span %d: TDM worker died; clearing the calls on %s", self.number, slots_text(timeslots))
        if self.gateway is None or self.link is None or self.q931 is None:
            return
        now = self.link.time()
        for ref, leg in list(self.gateway.legs.items()):
            if leg.channel in timeslots:
                with contextlib.suppress(LocalProtocolError):  # already clearing
                    self.q931.disconnect(ref, CAUSE_TEMPORARY_FAILURE, now=now)
        self.link.flush()
