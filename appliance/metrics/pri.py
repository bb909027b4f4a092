"""Metrics of the E1 spans and their ISDN PRI D-channels.

Like :mod:`appliance.metrics.registry`, values are plain ints set by the control process (the span wiring,
:mod:`appliance.app_pri`) and turned into metric families only when scraped. Label values are bounded: span
numbers come from the configuration (1-255), alarms and error counters are fixed sets, and Q.931 causes
are Q.850 values (0-127), so a far end cannot grow the label space.

Exported:

- ``appliance_span_alarm{span,alarm}``: 1 while the alarm is declared (every alarm of every span is
  exported, 0 when clear, so that an alert can be written on the absence of a 1);
- ``appliance_span_alarm_changes_total{span,alarm}``: declarations and clearings;
- ``appliance_span_errors_total{span,counter}``: the span's error counters (CRC-4 blocks, bipolar
  violations, FAS words, E-bits, slips, missed interrupts) as the driver last reported them;
- ``appliance_span_restarts_total{span,reason}``: restarts of the span's channels (a Q.931 RESTART from
  either side, or new settings);
- ``appliance_pri_dchannel_up{span}`` and ``appliance_pri_dchannel_changes_total{span}``: the LAPD data
  link in multiple-frame established state (Q.921 §5.5);
- ``appliance_pri_calls{span}``: calls not in the Q.931 null state;
- ``appliance_pri_protocol_faults_total{span,cause}``: received messages that were faulty and answered
  per Q.931 §5.8 (ignored, STATUS, or the call cleared), by the Q.850 cause of the answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

ALARMS: Final = ("los", "lof", "ais", "rai")
"""Span alarms (hw.e1.alarms.Alarm values): loss of signal, loss of frame, AIS (blue), RAI (yellow)."""

ERROR_COUNTERS: Final = (
    "crc4_errors", "bipolar_violations", "fas_errors", "e_bit_errors", "slips", "irq_misses",
)  # fmt: skip
"""The span error counters (hw.e1.model.SpanCounters fields)."""

RESTART_REASONS: Final = ("peer", "local", "settings")
"""Why a span's channels were restarted: a RESTART from the far end, one we sent, new span settings."""

MAX_CAUSE: Final = 127


@dataclass
class _Span:
    alarms: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ALARMS, 0))
    alarm_changes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ALARMS, 0))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_COUNTERS, 0))
    errors_before: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_COUNTERS, 0))
    restarts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESTART_REASONS, 0))
    dchannel_up: int = 0
    dchannel_changes: int = 0
    calls: int = 0
    faults: dict[int, int] = field(default_factory=dict)


class PriMetrics:
    """The span and D-channel metrics; :meth:`register` adds them to a registry (the appliance's own).

    A span is exported from :meth:`add_span` on. The setters raise :class:`ValueError` for an alarm,
    counter or restart reason outside the documented sets and for a span never added: a bug in the
    caller, never something a peer can trigger.
    """

    def __init__(self) -> None:
        self._spans: dict[int, _Span] = {}

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(_Collector(self))

    def add_span(self, span: int) -> None:
        """Export ``span`` (at zero); adding a span again keeps its values."""
        self._spans.setdefault(span, _Span())

    def _span(self, span: int) -> _Span:
        try:
            return self._spans[span]
        except KeyError:
            raise ValueError(f"span {span} is not exported") from None

    def alarm(self, span: int, alarm: str, raised: bool) -> None:
        """``alarm`` was declared (``raised``) or cleared on ``span``."""
        s = self._span(span)
        if alarm not in s.alarms:
            raise ValueError(f"unknown span alarm {alarm!r}")
        value = 1 if raised else 0
        if s.alarms[alarm] != value:
            s.alarm_changes[alarm] += 1
        s.alarms[alarm] = value

    def set_errors(self, span: int, counters: Mapping[str, int]) -> None:
        """The running driver's error counters (totals since it started)."""
        s = self._span(span)
        for name, value in counters.items():
            if name not in s.errors:
                raise ValueError(f"unknown span error counter {name!r}")
            s.errors[name] = value

    def retire_errors(self, span: int) -> None:
        """The span's driver is stopped (a restart starts the next one at zero): what it counted stays in
        the exported totals, which never go down."""
        s = self._span(span)
        for name, value in s.errors.items():
            s.errors_before[name] += value
            s.errors[name] = 0

    def restart(self, span: int, reason: str) -> None:
        s = self._span(span)
        if reason not in s.restarts:
            raise ValueError(f"unknown restart reason {reason!r}")
        s.restarts[reason] += 1

    def dchannel(self, span: int, up: bool) -> None:
        """The D-channel's data link came up (multiple-frame established) or went down."""
        s = self._span(span)
        value = 1 if up else 0
        if s.dchannel_up != value:
            s.dchannel_changes += 1
        s.dchannel_up = value

    def set_calls(self, span: int, calls: int) -> None:
        self._span(span).calls = calls

    def protocol_fault(self, span: int, cause: int) -> None:
        """A faulty message was received and answered with ``cause`` (Q.850)."""
        if not 0 <= cause <= MAX_CAUSE:
            raise ValueError(f"cause {cause} is not a Q.850 value")
        faults = self._span(span).faults
        faults[cause] = faults.get(cause, 0) + 1

    def dchannel_up(self, span: int) -> bool:
        return self._span(span).dchannel_up == 1

    def snapshot(self) -> dict[str, float]:
        """The spans' gauges summed for the ``metrics.snapshot`` event: PRI calls, spans with an alarm
        declared, D-channels up (the cloud's trend lines; per span, the metrics endpoint)."""
        spans = self._spans.values()
        return {
            "pri_calls": sum(s.calls for s in spans),
            "spans_in_alarm": sum(1 for s in spans if any(s.alarms.values())),
            "pri_dchannels_up": sum(s.dchannel_up for s in spans),
        }


class _Collector(Collector):
    def __init__(self, metrics: PriMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        spans = sorted(self._m._spans.items())
        alarm = GaugeMetricFamily(
            "appliance_span_alarm", "E1 span alarms: 1 while declared.", labels=["span", "alarm"]
        )
        alarm_changes = CounterMetricFamily(
            "appliance_span_alarm_changes", "E1 span alarms declared and cleared.", labels=["span", "alarm"]
        )
        errors = CounterMetricFamily(
            "appliance_span_errors", "E1 span error counters (G.706 CRC-4, G.703 line code, slips).",
            labels=["span", "counter"],
        )  # fmt: skip
        restarts = CounterMetricFamily(
            "appliance_span_restarts", "Restarts of a span's channels, by reason.", labels=["span", "reason"]
        )
        up = GaugeMetricFamily(
            "appliance_pri_dchannel_up", "PRI D-channel data link: 1 established, 0 down.", labels=["span"]
        )
        changes = CounterMetricFamily(
            "appliance_pri_dchannel_changes", "PRI D-channel data link state changes.", labels=["span"]
        )
        calls = GaugeMetricFamily("appliance_pri_calls", "PRI calls not in the null state.", labels=["span"])
        faults = CounterMetricFamily(
            "appliance_pri_protocol_faults", "Faulty Q.931 messages received, by the cause answered.",
            labels=["span", "cause"],
        )  # fmt: skip
        for number, s in spans:
            name = str(number)
            for a in ALARMS:
                alarm.add_metric([name, a], s.alarms[a])
                alarm_changes.add_metric([name, a], s.alarm_changes[a])
            for c in ERROR_COUNTERS:
                errors.add_metric([name, c], s.errors_before[c] + s.errors[c])
            for r in RESTART_REASONS:
                restarts.add_metric([name, r], s.restarts[r])
            up.add_metric([name], s.dchannel_up)
            changes.add_metric([name], s.dchannel_changes)
            calls.add_metric([name], s.calls)
            for cause, n in sorted(s.faults.items()):
                faults.add_metric([name, str(cause)], n)
        yield from (alarm, alarm_changes, errors, restarts, up, changes, calls, faults)
