"""Metrics of the cloud sync and the WAN: the outbox, mode transitions, links and uplinks.

Like :mod:`appliance.metrics.registry`, values are plain ints set by the control process and turned into
metric families only when scraped. Label values are bounded: modes and pressure levels are fixed sets, and
interfaces and uplinks come from the configuration (at most :data:`MAX_NAMES` of each are kept).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MODE_NAMES: Final = ("online", "suspect", "survivable", "recovering")
PRESSURES: Final = ("normal", "thinning", "full")
MAX_NAMES: Final = 32


class OutboxStatsLike(Protocol):
    """What is read of :class:`appliance.store.OutboxStats`."""

    @property
    def last_seq(self) -> int: ...
    @property
    def acked_seq(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def quota_bytes(self) -> int | None: ...
    @property
    def pressure(self) -> str: ...
    @property
    def thinned(self) -> Mapping[str, int]: ...
    @property
    def refused(self) -> Mapping[str, int]: ...


class SyncMetrics:
    """The counters and gauges; :meth:`register` adds them to a registry (the appliance's own)."""

    def __init__(self) -> None:
        self.transitions: dict[tuple[str, str], int] = {}
        self.outbox: OutboxStatsLike | None = None
        self.links: dict[str, bool] = {}
        self.link_changes: dict[str, int] = {}
        self.uplink: str | None = None
        self.uplink_changes = 0
        self.snapshots = [0, 0]  # appended, thinned

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(_Collector(self))

    def mode_transition(self, old: str, new: str) -> None:
        """The survivable-mode machine went from ``old`` to ``new`` (names in either case)."""
        key = (old.lower(), new.lower())
        if key[0] not in MODE_NAMES or key[1] not in MODE_NAMES:
            raise ValueError(f"unknown mode in {old!r} -> {new!r}")
        self.transitions[key] = self.transitions.get(key, 0) + 1

    def set_outbox(self, stats: OutboxStatsLike) -> None:
        self.outbox = stats

    def link(self, interface: str, up: bool) -> None:
        """A WAN interface went up (carrier and administratively up) or down."""
        if interface not in self.links and len(self.links) >= MAX_NAMES:
            return
        if self.links.get(interface) != up:
            self.link_changes[interface] = self.link_changes.get(interface, 0) + 1
        self.links[interface] = up

    def uplink_changed(self, name: str | None) -> None:
        """The default route now uses uplink ``name`` (None: no usable uplink)."""
        self.uplink = name
        self.uplink_changes += 1

    def snapshot(self, *, appended: bool) -> None:
        """A ``metrics.snapshot`` event was appended, or thinned by the outbox quota."""
        self.snapshots[0 if appended else 1] += 1


class _Collector(Collector):
    def __init__(self, metrics: SyncMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        transitions = CounterMetricFamily(
            "appliance_mode_transitions",
            "Survivable-mode transitions, by the state left and the state entered.",
            labels=["from_mode", "to_mode"],
        )
        for (old, new), n in sorted(m.transitions.items()):
            transitions.add_metric([old, new], n)
        yield transitions
        yield from _outbox(m.outbox)
        up = GaugeMetricFamily("appliance_wan_link_up", "WAN interfaces: 1 up, 0 down.", labels=["interface"])
        changes = CounterMetricFamily(
            "appliance_wan_link_changes", "WAN interface state changes.", labels=["interface"]
        )
        for name, state in sorted(m.links.items()):
            up.add_metric([name], 1 if state else 0)
            changes.add_metric([name], m.link_changes.get(name, 0))
        yield up
        yield changes
        uplink = GaugeMetricFamily(
            "appliance_wan_uplink", "The uplink the default route uses (always 1).", labels=["uplink"]
        )
        if m.uplink is not None:
            uplink.add_metric([m.uplink], 1)
        yield uplink
        yield CounterMetricFamily(
            "appliance_wan_uplink_changes", "Default-route uplink changes.", value=m.uplink_changes
        )
        snapshots = CounterMetricFamily(
            "appliance_metrics_snapshots", "metrics.snapshot events, appended or thinned.", labels=["result"]
        )
        snapshots.add_metric(["appended"], m.snapshots[0])
        snapshots.add_metric(["thinned"], m.snapshots[1])
        yield snapshots


def _outbox(stats: OutboxStatsLike | None) -> Iterator[Metric]:
    if stats is None:
        return
    yield GaugeMetricFamily("appliance_outbox_pending", "Events not yet acknowledged.", value=stats.pending)
    yield GaugeMetricFamily(
        "appliance_outbox_bytes",
        "Bytes the unacknowledged events count against the quota.",
        value=stats.bytes,
    )
    yield GaugeMetricFamily(
        "appliance_outbox_quota_bytes", "The outbox quota (0: none).", value=stats.quota_bytes or 0
    )
    yield GaugeMetricFamily("appliance_outbox_last_seq", "The last seq issued.", value=stats.last_seq)
    yield GaugeMetricFamily(
        "appliance_outbox_acked_seq", "The last seq the cloud acknowledged.", value=stats.acked_seq
    )
    pressure = GaugeMetricFamily(
        "appliance_outbox_pressure", "Outbox quota pressure: 1 for the current level.", labels=["level"]
    )
    for level in PRESSURES:
        pressure.add_metric([level], 1 if level == stats.pressure else 0)
    yield pressure
    for name, values, text in (
        ("appliance_outbox_thinned", stats.thinned, "Events thinned under quota pressure, by priority."),
        ("appliance_outbox_refused", stats.refused, "Events refused above the quota, by priority."),
    ):
        family = CounterMetricFamily(name, text, labels=["priority"])
        for priority, n in sorted(values.items()):
            family.add_metric([priority], n)
        yield family
