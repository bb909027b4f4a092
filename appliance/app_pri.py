"""The control process's E1/PRI spans: drivers, D-channels, B-channel audio and the PRI gateway, wired.

Wiring only (issue 6): the parts decide, this module builds them from the ``[[spans]]`` configuration,
starts and stops them, and reports what they tell. Per span:

- the **driver** (:mod:`hw.e1`): :class:`~hw.e1.sim_span.SimSpan` on ``<state_dir>/run/span<N>-d.sock``
  and ``-b.sock`` (DESIGN.md §5.2), or a DAHDI card; the spans share one timing-source selector;
- the **TDM worker** (:mod:`appliance.media.tdm`), a process of its own carrying the span's B-channels
  as RTP on the media address; its ports are the span's slice of the media RTP range, carved from the
  top (:func:`~appliance.config.spans.span_port_ranges`: 64 per span), the media workers keeping what is
  below (:meth:`PriWiring.media_range`);
- the **D-channel**: :class:`~appliance.pri.link.PriLink` joining the driver's D-channel to the span's
  :class:`~appliance.pri.lapd.Lapd` and :class:`~appliance.pri.q931.Q931` machines;
- the **gateway** (:class:`~appliance.calls.pri_gateway.PriGateway`) between Q.931 and the B2BUA: calls
  from the span are placed with the B2BUA, and :class:`PriWiring` is the B2BUA's dialer of ``pri:<span>``
  destinations.

Span events go to the outbox (``calls/records.cddl``) and the metrics (:mod:`appliance.metrics.pri`):

- ``span.alarm``: an alarm declared or cleared (LOS, LOF, AIS, RAI) with the time of each;
- ``span.dchannel``: the D-channel's data link up or down, why, and how long it was down;
- ``span.restart``: the span's channels restarted by a Q.931 RESTART (either side) or new settings.

A ``span`` document pushed by the cloud (:mod:`appliance.sync.documents.span`) replaces the settings of a
configured span: that span alone is stopped (its calls released) and started again with them; removing the
document brings back the configured settings. A span that is not in ``[[spans]]`` cannot be started by a
document: its driver and its ports come from the configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from appliance.config import Config
from appliance.config.spans import SpanConfig, span_port_ranges
from appliance.ivr.records import iso_utc
from appliance.metrics.pri import PriMetrics
from appliance.pri.q931_events import ChannelsRestarted, ProtocolFault, Q931Event
from appliance.sync.documents.span import SpanSettings
from hw.e1 import model as hw_model
from hw.e1.alarms import AlarmCleared, AlarmRaised
from hw.e1.driver import LoopbackChanged, SpanEvent
from hw.e1.timing import TimingSourceChanged

log = logging.getLogger("appliance.pri")

Append = Callable[[str, Mapping[str, Any]], Coroutine[Any, Any, None]]
Spawn = Callable[[Coroutine[Any, Any, None]], None]

# Why a span's channels were restarted (records.cddl span-restart ``by``).
BY_PEER: Final = "peer"
BY_LOCAL: Final = "local"
BY_SETTINGS: Final = "settings"


# --- configuration ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpanPlan:
    """One configured span as the process runs it: its settings and its TDM worker's RTP ports."""

    config: SpanConfig
    ports: tuple[int, int]

    @property
    def number(self) -> int:
        return self.config.number


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


# --- span events to the outbox and the metrics --------------------------------------------------------


def alarm_body(event: AlarmRaised | AlarmCleared) -> dict[str, Any]:
    """The ``span.alarm`` body of an alarm declared or cleared."""
    body: dict[str, Any] = {"span": event.span, "alarm": event.alarm.value, "at": iso_utc(event.at)}
    if isinstance(event, AlarmRaised):
        return {**body, "state": "raised"}
    return {
        **body,
        "state": "cleared",
        "raised_at": iso_utc(event.since),
        "duration_s": round(max(event.at - event.since, 0.0), 3),
    }


def dchannel_body(span: int, up: bool, reason: str, at: float, down_since: float | None) -> dict[str, Any]:
    """The ``span.dchannel`` body; ``down_since`` (wall clock) gives ``down_s`` when the link comes up."""
    body: dict[str, Any] = {"span": span, "up": up, "reason": reason, "at": iso_utc(at)}
    if up and down_since is not None:
        body["down_s"] = round(max(at - down_since, 0.0), 3)
    return body


def restart_body(span: int, by: str, channels: tuple[int, ...], at: float) -> dict[str, Any]:
    return {"span": span, "by": by, "channels": sorted(channels), "at": iso_utc(at)}


class SpanReporter:
    """Turns span events into outbox events (appended through ``append``, run by ``spawn``) and metrics.

    ``wall`` stamps what the parts do not stamp themselves (the D-channel's changes, restarts).
    """

    def __init__(
        self, *, metrics: PriMetrics, append: Append, spawn: Spawn, wall: Callable[[], float]
    ) -> None:
        self.metrics = metrics
        self._append = append
        self._spawn = spawn
        self._wall = wall
        self._down_since: dict[int, float] = {}

    def add_span(self, span: int) -> None:
        self.metrics.add_span(span)

    def span_event(self, event: SpanEvent) -> None:
        """An event of a span's driver (alarm, loopback, timing source)."""
        if isinstance(event, AlarmRaised | AlarmCleared):
            raised = isinstance(event, AlarmRaised)
            log.warning(
                "span %d: alarm %s (%s) %s", event.span, event.alarm.value, event.alarm.colour,
                "raised" if raised else "cleared", extra={"ctx": {"span": event.span}},
            )  # fmt: skip
            self.metrics.alarm(event.span, event.alarm.value, raised)
            self._emit("span.alarm", alarm_body(event))
        elif isinstance(event, LoopbackChanged):
            log.warning(
                "span %d: loopback %s (was %s)", event.span, event.loopback.value, event.previous.value
            )
        elif isinstance(event, TimingSourceChanged):
            log.info("timing source: %s (was %s)", _clock(event.source), _clock(event.previous))

    def dchannel(self, span: int, up: bool, reason: str) -> None:
        """The span's D-channel data link came up (multiple-frame established) or went down."""
        at = self._wall()
        log.log(logging.INFO if up else logging.WARNING, "span %d: D-channel %s (%s)", span,
                "up" if up else "down", reason, extra={"ctx": {"span": span}})  # fmt: skip
        self.metrics.dchannel(span, up)
        down_since = self._down_since.pop(span, None) if up else None
        if not up:
            self._down_since[span] = at
        self._emit("span.dchannel", dchannel_body(span, up, reason, at, down_since))

    def restarted(self, span: int, by: str, channels: tuple[int, ...]) -> None:
        log.warning(
            "span %d: channels %s restarted (%s)", span, _slots(channels), by, extra={"ctx": {"span": span}}
        )
        self.metrics.restart(span, by)
        self._emit("span.restart", restart_body(span, by, channels, self._wall()))

    def q931_event(self, span: int, event: Q931Event) -> None:
        """What the span report takes of a Q.931 event (the gateway takes the calls' events)."""
        if isinstance(event, ProtocolFault):
            log.info("span %d: Q.931 fault, cause %d: %s", span, event.cause, event.detail,
                     extra={"ctx": {"span": span, "pri_call": event.call}})  # fmt: skip
            self.metrics.protocol_fault(span, event.cause)
        elif isinstance(event, ChannelsRestarted):
            self.restarted(span, BY_PEER if event.requested_by_peer else BY_LOCAL, event.channels)

    def _emit(self, event_type: str, body: Mapping[str, Any]) -> None:
        self._spawn(self._append(event_type, body))


def _clock(source: int | None) -> str:
    return "internal clock" if source is None else f"span {source}"


def _slots(channels: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in sorted(channels)) or "none"
