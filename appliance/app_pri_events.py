"""The E1/PRI spans' events to the outbox and the metrics (wiring; see :mod:`appliance.app_pri`).

- ``span.alarm`` (``records.cddl`` ``span-alarm``): an alarm declared or cleared by the span's driver
  (:mod:`hw.e1.alarms`: LOS, LOF, AIS, RAI), with the wall-clock time of each and how long it lasted;
- ``span.dchannel``: the D-channel's data link up (Q.921 multiple-frame established) or down, why, and how
  long it had been down;
- ``span.restart``: the span's channels restarted by a Q.931 RESTART (§5.5, either side) or new settings.

The same changes go to :class:`~appliance.metrics.pri.PriMetrics`, with the Q.931 protocol faults.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final

from appliance.ivr.records import iso_utc
from appliance.metrics.pri import PriMetrics
from appliance.pri.q931_events import ChannelsRestarted, ProtocolFault, Q931Event
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
            "span %d: channels %s restarted (%s)",
            span,
            slots_text(channels),
            by,
            extra={"ctx": {"span": span}},
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


def slots_text(channels: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in sorted(channels)) or "none"
