"""The control process's E1/PRI spans: drivers, D-channels, B-channel audio and the PRI gateway, wired.

Wiring only (issue 6): the parts decide, this module builds them from the ``[[spans]]`` configuration,
starts and stops them, and reports what they tell. Per span:

- the **driver** (:mod:`hw.e1`): :class:`~hw.e1.sim_span.SimSpan` on ``<state_dir>/run/span<N>-d.sock``
  and ``-b.sock`` (DESIGN.md §5.2), or a span of a DAHDI card (:class:`~hw.e1.dahdi.DahdiSpan`; the box's
  one :class:`~hw.e1.dahdi.DahdiSystem` writes system.conf and runs ``dahdi_cfg`` where ``[dahdi]`` says);
  the spans share one timing-source selector;
- the **TDM worker** (:mod:`appliance.media.tdm`), a process of its own carrying the span's B-channels
  as RTP on the media address; its ports are the span's slice of the media RTP range, carved from the
  top (:func:`~appliance.config.spans.span_port_ranges`: 64 per span), the media workers keeping what is
  below (:meth:`PriWiring.media_range`);
- the **D-channel**: :class:`~appliance.pri.link.PriLink` joining the driver's D-channel to the span's
  :class:`~appliance.pri.lapd.Lapd` and :class:`~appliance.pri.q931.Q931` machines;
- the **gateway** (:class:`~appliance.calls.pri_gateway.PriGateway`) between Q.931 and the B2BUA: calls
  from the span are placed with the B2BUA, and :class:`PriWiring` is the B2BUA's dialer of ``pri:<span>``
  destinations; its B-channel SDP names the media address the TDM worker binds;
- with ``trace = true``, the D-channel's **trace**: a pcap under ``<state_dir>/trace``
  (:class:`~appliance.app_pri_span.SpanTrace`).

Span events go to the outbox (``calls/records.cddl``) and the metrics (:mod:`appliance.metrics.pri`):

- ``span.alarm``: an alarm declared or cleared (LOS, LOF, AIS, RAI) with the time of each;
- ``span.dchannel``: the D-channel's data link up or down, why, and how long it was down;
- ``span.restart``: the span's channels restarted by a Q.931 RESTART (either side) or new settings.

A ``span`` document pushed by the cloud (:mod:`appliance.sync.documents.span`) replaces the settings of a
configured span: that span alone is stopped (its calls released) and started again with them; removing the
document brings back the configured settings. Its timing priority goes to the timing-source selector at
once (a change of source is reported; a card span's system.conf takes it at the restart). A span that is
not in ``[[spans]]`` cannot be started by a document: its driver and its ports come from the configuration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from appliance.app_pri_events import BY_SETTINGS, Append, SpanReporter, Spawn
from appliance.app_pri_span import SpanPlan, SpanRunner, TdmFactory, TdmWorker, drain_timing, hw_span_config
from appliance.calls.pri_gateway import CallControl
from appliance.config import Config
from appliance.config.spans import DahdiConfig, SpanConfig, span_port_ranges
from appliance.media.tdm.client import TdmClient
from appliance.metrics import Metrics
from appliance.metrics.pri import PriMetrics
from appliance.sync.documents.span import SpanSettings
from hw.e1.dahdi import DahdiSystem
from hw.e1.dahdi_channel import DeviceAccess
from hw.e1.dahdi_conf import DahdiSettings
from hw.e1.driver import BChannelsSpec
from hw.e1.timing import TimingSelector

if TYPE_CHECKING:
    from appliance.calls.b2bua import Call, Leg
    from appliance.calls.events import Setup

log = logging.getLogger("appliance.pri")

SAMPLE_EVERY: Final = 5.0  # seconds between copies of the spans' error counters into the metrics


# --- configuration ------------------------------------------------------------------------------------


def span_plans(config: Config) -> tuple[tuple[int, int], tuple[SpanPlan, ...]]:
    """The media workers' RTP range and each configured span's plan (its ports from the top of the
    range, the first span's highest)."""
    m = config.media
    media, slices = span_port_ranges(m.rtp_port_min, m.rtp_port_max, len(config.spans))
    return media, tuple(SpanPlan(span, ports) for span, ports in zip(config.spans, slices, strict=True))


def with_settings(span: SpanConfig, settings: SpanSettings) -> SpanConfig:
    """``span`` with the fields a ``span`` document sets; raises ``ValueError`` for settings the appliance
    cannot run (CAS framing: no D-channel to speak ISDN PRI on)."""
    if settings.framing != "ccs":
        raise ValueError(
            "only framing ccs is supported: the appliance signals with ISDN PRI on the D-channel"
        )
    return replace(
        span,
        framing=settings.framing,
        line_code=settings.line_code,
        crc4=settings.crc4,
        side=settings.side,
        timing_priority=settings.timing_priority,
        b_channels=settings.b_channels,
        switch_type=settings.switch_type or span.switch_type,
    )


def dahdi_settings(dahdi: DahdiConfig) -> DahdiSettings:
    """The DAHDI backend's settings from the ``[dahdi]`` table."""
    devices = Path(dahdi.device_dir)
    return DahdiSettings(
        system_conf=Path(dahdi.system_conf), dahdi_cfg=Path(dahdi.dahdi_cfg),
        sysfs_spans=Path(dahdi.sysfs_spans), proc_dahdi=Path(dahdi.proc_dahdi),
        channel_device=devices / "channel", ctl_device=devices / "ctl", hdlc=dahdi.hdlc,
    )  # fmt: skip


class PriWiring:
    """The spans of one control process (see the module doc); the B2BUA's dialer of ``pri:<span>``.

    Built before the media supervisor (which takes :attr:`media_range`) and the B2BUA (which takes it as
    its ``pri`` dialer); :meth:`start` once SIP listens; :meth:`on_span` is the ``span`` documents'
    callback; :meth:`flush` runs before every SIP flush; :meth:`close` at the end. ``make_tdm`` makes a
    span's TDM worker (default: a :class:`~appliance.media.tdm.client.TdmClient` process on the media
    address). ``dahdi_access`` is how the card spans' channels reach the kernel (the real devices unless
    given).
    """

    def __init__(
        self,
        *,
        config: Config,
        state_dir: Path,
        metrics: Metrics,
        append: Append,
        spawn: Spawn,
        wall: Callable[[], float] = time.time,
        make_tdm: TdmFactory | None = None,
        dahdi_access: DeviceAccess | None = None,
    ) -> None:
        self.config = config
        self.run_dir = state_dir / "run"
        self.media_range, self.plans = span_plans(config)
        self.spawn = spawn
        self.metrics = PriMetrics()
        self.metrics.register(metrics.registry)
        self.reporter = SpanReporter(metrics=self.metrics, append=append, spawn=spawn, wall=wall)
        self.timing = TimingSelector({p.number: p.config.timing_priority for p in self.plans}, wall=wall)
        self.dahdi: DahdiSystem | None = None
        if any(p.config.driver == "dahdi" for p in self.plans):
            self.dahdi = DahdiSystem(dahdi_settings(config.dahdi), access=dahdi_access)
        self.after_event: Callable[[], None] = _nothing
        self.calls: CallControl | None = None
        self.runners: dict[int, SpanRunner] = {}
        for plan in self.plans:
            self.reporter.add_span(plan.number)
            self.runners[plan.number] = SpanRunner(
                plan, region=config.site.region, run_dir=self.run_dir, reporter=self.reporter,
                timing=self.timing, make_tdm=make_tdm or self._tdm_client, after_event=self._after_event,
                wall=wall, dahdi=self.dahdi, media_address=config.media.address,
                trace_dir=state_dir / "trace",
            )  # fmt: skip
        self._started = False

    async def start(self, *, calls: CallControl, after_event: Callable[[], None]) -> list[str]:
        """Start every span, its calls placed with ``calls`` (the B2BUA), ``after_event`` run after each
        input the spans' calls handled; returns the lines ``make run`` prints. A span that cannot start is
        logged and left down: the appliance serves its SIP calls without it."""
        self.calls = calls
        self.after_event = after_event
        self._started = True
        lines = []
        for runner in self.runners.values():
            async with runner.lock:
                try:
                    await runner.start(calls)
                except Exception as exc:
                    log.exception("span %d did not start", runner.number)
                    lines.append(f"span {runner.number}         not started: {exc}")
                    continue
            lines.append(runner.describe())
        if self.runners:
            self.spawn(self._sample())
        return lines

    async def close(self) -> None:
        """Stop every span (their calls end, their sockets are removed, their TDM workers exit). The
        process is ending: the outbox closes next, so no span event is appended."""
        self._started = False
        for runner in self.runners.values():
            async with runner.lock:
                await runner.stop(report=False)

    def snapshot(self) -> dict[str, float]:
        """The spans' part of the ``metrics.snapshot`` event (:meth:`PriMetrics.snapshot`); nothing
        without spans."""
        return self.metrics.snapshot() if self.runners else {}

    # --- call control --------------------------------------------------------------------------------

    def dial(self, span: int, call: Call, setup: Setup, now: float) -> Leg | None:
        """:class:`~appliance.calls.outbound.PriDialer`: a call on ``span``, or None when the span is not
        configured, not running or its D-channel is down."""
        runner = self.runners.get(span)
        return runner.dial(call, setup, now) if runner is not None else None

    def flush(self) -> None:
        """Send what call control made the spans' Q.931 machines queue (before every SIP flush)."""
        for runner in self.runners.values():
            runner.flush()

    # --- span documents ------------------------------------------------------------------------------

    def runnable(self, name: str, settings: SpanSettings) -> None:
        """Raises ``ValueError`` for a ``span`` document this appliance cannot run: a span ``[[spans]]``
        does not configure (its driver and RTP ports come from the configuration), CAS framing, or
        settings the driver refuses. The document is then refused as invalid."""
        self._settings(name, settings)

    def on_span(self, name: str, settings: SpanSettings | None) -> None:
        """A ``span`` document was applied (``settings``) or removed (None): the span takes the settings
        (or its configured ones back) and, once the spans run, restarts alone with them. Raises
        ``ValueError`` as :meth:`runnable` does (the document is then not applied)."""
        runner, new = self._settings(name, settings)
        if new == runner.config:
            return
        runner.config = new
        self.timing.set_priority(runner.number, new.timing_priority)
        drain_timing(self.timing, self.reporter.span_event)
        if self._started:
            self.spawn(self._restart(runner))

    def _settings(self, name: str, settings: SpanSettings | None) -> tuple[SpanRunner, SpanConfig]:
        runner = self.runners.get(int(name))
        if runner is None:
            configured = ", ".join(str(n) for n in self.runners) or "none"
            raise ValueError(f"span {name} is not configured on this appliance (spans: {configured})")
        new = runner.plan.config if settings is None else with_settings(runner.plan.config, settings)
        hw_span_config(new)  # raises SpanConfigError (a ValueError) now, not at the restart
        return runner, new

    async def _restart(self, runner: SpanRunner) -> None:
        async with runner.lock:
            if not self._started or self.calls is None:
                return
            log.warning("span %d restarts with new settings", runner.number)
            await runner.stop()
            self.reporter.restarted(runner.number, BY_SETTINGS, runner.config.b_channels)
            try:
                await runner.start(self.calls)
            except Exception:
                log.exception("span %d did not restart", runner.number)

    # --- internals -----------------------------------------------------------------------------------

    def _after_event(self) -> None:
        self.after_event()

    def _tdm_client(
        self,
        span: SpanConfig,
        ports: tuple[int, int],
        spec: BChannelsSpec,
        on_lost: Callable[[tuple[int, ...]], None],
    ) -> TdmWorker:
        card = spec.backend == "dahdi" and self.dahdi is not None
        return TdmClient(
            span=span.number, bchannels=spec, control=self.run_dir / f"span{span.number}-tdm.sock",
            dahdi_device=self.dahdi.settings.channel_device if card and self.dahdi else None,
            address=self.config.media.address, ports=ports, timeslots=span.b_channels, on_lost=on_lost,
            # Paced 20 ms ticks: the worker runs at the media workers' CPU priority.
            extra_args=("--scheduling", self.config.media.scheduling),
        )  # fmt: skip

    async def _sample(self) -> None:
        while True:
            for runner in self.runners.values():
                try:
                    runner.sample()
                except Exception:  # a driver that cannot read its status must not end the sampling
                    log.exception("span %d: status not read", runner.number)
            await asyncio.sleep(SAMPLE_EVERY)


def _nothing() -> None:
    pass
