"""The appliance's Prometheus metrics: what is counted, and the cheap methods that count it.

Theory of operation. The B2BUA calls these methods several times per SIP message at hundreds of calls per
second, so the hot path must cost next to nothing. A ``prometheus_client`` labelled child costs about
400 ns per increment (argument checks plus a ``threading.Lock``); the control process is a single asyncio
thread, so that lock buys nothing. Each :class:`Metrics` therefore keeps its values as plain ``int``
slots in lists and dicts whose label sets are bound once at construction (a list indexed by response
class, a dict keyed by method or route), and a collector registered in the instance's own
:class:`~prometheus_client.CollectorRegistry` turns them into metric families only when scraped. An
increment is then one index and one integer add (≈40 ns).

Label values come only from the fixed sets below or, for reject reasons, from short snake_case names the
code passes in, never from the wire: an unknown SIP method is counted as ``other``, so a peer cannot
grow the label space.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from appliance.metrics.sync import SyncMetrics

ROUTES: Final = ("cloud", "ivr", "agents", "pri", "trunk", "local", "none")
"""Destination kinds that can take a call: ``local`` is a registered endpoint, ``none`` a failed call."""

DIRECTIONS: Final = ("in", "out")

METHODS: Final = (
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO", "SUBSCRIBE",
    "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
)  # fmt: skip
"""SIP methods counted under their own label; any other method is counted as ``other``."""

REJECT_REASONS: Final = (
    "malformed", "version", "uri_scheme", "too_large", "rate_limited", "loop", "too_many_hops",
    "unknown_method", "auth_failed", "no_route", "overload",
)  # fmt: skip
"""Reasons the SIP endpoint rejects a message for; other snake_case reasons are accepted too."""

MODES: Final = ("ONLINE", "SUSPECT", "SURVIVABLE", "RECOVERING")

MAX_REJECT_REASONS: Final = 64
"""Distinct reject reasons kept; past this, new reasons are counted as ``other`` (bounded label space)."""

_REASON_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,47}\Z")
_DROP_RE: Final = re.compile(r"[a-z][a-z0-9_\-]{0,47}\Z")
_CLASS_LABELS: Final = ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx")


class Metrics:
    """Every metric the control process exports, in a registry of its own.

    The counting methods raise :class:`ValueError` on a route, direction, status, mode or reason outside
    the documented sets: that is a bug in the caller, never something a peer can trigger.
    Each :meth:`call_started` must be matched by one :meth:`call_ended` naming the route the call was on
    when it ended (after any :meth:`call_routed`).
    """

    __slots__ = (
        "_bindings",
        "_calls_active",
        "_calls_rescued",
        "_calls_total",
        "_failovers",
        "_info",
        "_media_one_way",
        "_media_streams",
        "_media_timeouts",
        "_mode",
        "_rejects",
        "_relayed_calls",
        "_requests",
        "_responses",
        "_transactions",
        "_worker_drops",
        "_worker_relayed",
        "_workers",
        "registry",
        "sync",
    )

    def __init__(
        self, *, site: str = "", serial: str = "", version: str = "", process_metrics: bool = True
    ) -> None:
        """``site``, ``serial`` and ``version`` label ``appliance_info``; ``process_metrics`` adds the
        standard ``process_*`` series (CPU, resident memory, open file descriptors) of this process."""
        self.registry = CollectorRegistry()
        self._info = (site, serial, version)
        self._calls_active: dict[str, int] = dict.fromkeys(ROUTES, 0)
        self._calls_total: dict[str, int] = dict.fromkeys(ROUTES, 0)
        self._failovers: dict[tuple[str, str], int] = {}
        self._calls_rescued = 0
        # Index 0 is unused so that ``status // 100`` indexes directly.
        self._responses: dict[str, list[int]] = {d: [0] * 7 for d in DIRECTIONS}
        self._requests: dict[str, dict[str, int]] = {
            d: dict.fromkeys((*METHODS, "other"), 0) for d in DIRECTIONS
        }
        self._rejects: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self._transactions = 0
        self._bindings = 0
        self._mode: str | None = None
        self._relayed_calls = 0
        self._media_timeouts = 0
        self._media_one_way = 0
        # direction -> [packets, octets, lost], summed from each relayed call's final statistics.
        self._media_streams: dict[str, list[int]] = {d: [0, 0, 0] for d in DIRECTIONS}
        self._workers = [0, 0, 0]  # configured, running, restarts
        self._worker_relayed: dict[int, int] = {}
        self._worker_drops: dict[tuple[int, str], int] = {}
        self.registry.register(_Collector(self))
        # The cloud sync, the outbox and the WAN: set by the control process's sync wiring.
        self.sync = SyncMetrics()
        self.sync.register(self.registry)
        if process_metrics:
            ProcessCollector(registry=self.registry)

    # -- calls ---------------------------------------------------------------------------------------

    def call_started(self, route: str) -> None:
        """A new call was taken by ``route``."""
        try:
            self._calls_active[route] += 1
        except KeyError:
            raise ValueError(f"unknown route {route!r}") from None
        self._calls_total[route] += 1

    def call_routed(self, old_route: str, new_route: str) -> None:
        """A live call failed over from ``old_route`` to ``new_route`` (e.g. cloud → ivr when the WAN died).

        The call moves between the active gauges and is counted once more in ``appliance_calls_total``
        under the new route (that counter counts each route that took a call, not distinct calls), and in
        ``appliance_call_failovers_total{from_route,to_route}``.
        """
        active = self._calls_active
        if old_route not in active or new_route not in active:
            raise ValueError(f"unknown route in {old_route!r} -> {new_route!r}")
        active[old_route] -= 1
        active[new_route] += 1
        self._calls_total[new_route] += 1
        key = (old_route, new_route)
        self._failovers[key] = self._failovers.get(key, 0) + 1

    def call_rescued(self) -> None:
        """An answered call whose cloud leg failed was moved into the local IVR instead of being dropped
        (it is also counted as a cloud → ivr failover by :meth:`call_routed`)."""
        self._calls_rescued += 1

    def call_ended(self, route: str) -> None:
        """A call that was on ``route`` ended."""
        try:
            self._calls_active[route] -= 1
        except KeyError:
            raise ValueError(f"unknown route {route!r}") from None

    # -- SIP -----------------------------------------------------------------------------------------

    def request(self, direction: str, method: str) -> None:
        """A SIP request was received (``"in"``) or sent (``"out"``). Methods are case-sensitive
        (RFC 3261 §7.1); one not in :data:`METHODS` is counted as ``other``."""
        try:
            counts = self._requests[direction]
        except KeyError:
            raise ValueError(f"unknown direction {direction!r}") from None
        if method in counts:
            counts[method] += 1
        else:
            counts["other"] += 1

    def response(self, direction: str, status: int) -> None:
        """A SIP response with ``status`` (100 to 699) was received (``"in"``) or sent (``"out"``)."""
        if not 100 <= status <= 699:
            raise ValueError(f"status {status} is not a SIP status code")
        try:
            self._responses[direction][status // 100] += 1
        except KeyError:
            raise ValueError(f"unknown direction {direction!r}") from None

    def reject(self, reason: str) -> None:
        """The SIP endpoint rejected or dropped a message for ``reason`` (short snake_case)."""
        rejects = self._rejects
        if reason in rejects:
            rejects[reason] += 1
            return
        if _REASON_RE.match(reason) is None:
            raise ValueError(f"reject reason {reason!r} is not short snake_case")
        if len(rejects) >= MAX_REJECT_REASONS:
            rejects["other"] = rejects.get("other", 0) + 1
        else:
            rejects[reason] = 1

    def transaction_started(self) -> None:
        self._transactions += 1

    def transaction_ended(self) -> None:
        self._transactions -= 1

    def set_transactions_active(self, count: int) -> None:
        """Set ``appliance_sip_transactions_active`` outright (e.g. from the transaction table's size)."""
        self._transactions = count

    def set_registrar_bindings(self, count: int) -> None:
        self._bindings = count

    # -- media relay ---------------------------------------------------------------------------------

    def set_media(self, *, relayed_calls: int, workers: int, running: int, restarts: int) -> None:
        """Gauges sampled from the media anchor and the worker supervisor."""
        self._relayed_calls = relayed_calls
        self._workers = [workers, running, restarts]

    def media_timeout(self, *, one_way: bool = False) -> None:
        """A relayed call reported no RTP for the configured media timeout; ``one_way`` when the other
        leg's media still flowed (one-way audio, counted on its own as well)."""
        self._media_timeouts += 1
        if one_way:
            self._media_one_way += 1

    def media_stream_totals(self, direction: str, packets: int, octets: int, lost: int) -> None:
        """Add one finished stream's counts (``"in"``: received from the leg's peer, ``"out"``: sent)."""
        try:
            totals = self._media_streams[direction]
        except KeyError:
            raise ValueError(f"unknown direction {direction!r}") from None
        totals[0] += packets
        totals[1] += octets
        totals[2] += max(lost, 0)  # RFC 3550 §6.4.1: duplicates can make the loss negative

    def worker_stats(self, worker: int, relayed: int, dropped: tuple[tuple[str, int], ...]) -> None:
        """A worker's periodic report: totals since it started (a restarted worker starts again at 0)."""
        self._worker_relayed[worker] = relayed
        drops = self._worker_drops
        for reason, n in dropped:
            key = (worker, reason)
            # The reasons are the worker's own names ("latch", "srtp-auth"); the bound keeps a faulty
            # worker from growing the label space.
            if key in drops or (_DROP_RE.match(reason) and len(drops) < MAX_REJECT_REASONS * 4):
                drops[key] = n

    # -- appliance state -----------------------------------------------------------------------------

    def set_mode(self, name: str) -> None:
        """The survivability mode is now ``name`` (one of :data:`MODES`)."""
        if name not in MODES:
            raise ValueError(f"unknown mode {name!r}")
        self._mode = name

    def render(self) -> bytes:
        """The whole registry in the Prometheus text exposition format (version 0.0.4)."""
        return generate_latest(self.registry)


class _Collector(Collector):
    """Turns a :class:`Metrics` instance's plain counters into metric families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        # Reading private slots of the owning instance: this collector is part of Metrics.
        active = GaugeMetricFamily(
            "appliance_calls_active",
            "Calls in progress, by the destination kind carrying them.",
            labels=["route"],
        )
        total = CounterMetricFamily(
            "appliance_calls_total",
            "Calls taken, by destination kind (a failed-over call counts for each route that took it).",
            labels=["route"],
        )
        for route in ROUTES:
            active.add_metric([route], m._calls_active[route])
            total.add_metric([route], m._calls_total[route])
        yield active
        yield total

        failovers = CounterMetricFamily(
            "appliance_call_failovers",
            "Live calls moved from one destination kind to another.",
            labels=["from_route", "to_route"],
        )
        for (old, new), n in m._failovers.items():
            failovers.add_metric([old, new], n)
        yield failovers

        requests = CounterMetricFamily(
            "appliance_sip_requests",
            "SIP requests received (in) and sent (out).",
            labels=["direction", "method"],
        )
        for direction, by_method in m._requests.items():
            for method, n in by_method.items():
                requests.add_metric([direction, method], n)
        yield requests

        responses = CounterMetricFamily(
            "appliance_sip_responses",
            "SIP responses received (in) and sent (out), by status class.",
            labels=["direction", "class"],
        )
        for direction, by_class in m._responses.items():
            for label, n in zip(_CLASS_LABELS, by_class[1:], strict=True):
                responses.add_metric([direction, label], n)
        yield responses

        rejects = CounterMetricFamily(
            "appliance_sip_rejects", "SIP messages rejected or dropped by the endpoint.", labels=["reason"]
        )
        for reason, n in m._rejects.items():
            rejects.add_metric([reason], n)
        yield rejects

        yield GaugeMetricFamily(
            "appliance_sip_transactions_active", "SIP transactions in progress.", value=m._transactions
        )
        yield GaugeMetricFamily(
            "appliance_registrar_bindings", "Contacts registered with the local registrar.", value=m._bindings
        )

        yield GaugeMetricFamily(
            "appliance_media_relayed_calls_active",
            "Calls whose RTP the media workers relay.",
            value=m._relayed_calls,
        )
        yield CounterMetricFamily(
            "appliance_calls_rescued",
            "Answered calls moved into the local IVR when their cloud leg failed.",
            value=m._calls_rescued,
        )
        yield CounterMetricFamily(
            "appliance_media_timeouts", "Relayed calls ended for lack of RTP.", value=m._media_timeouts
        )
        yield CounterMetricFamily(
            "appliance_media_one_way",
            "Media timeouts on one leg while the other leg's RTP still flowed (one-way audio).",
            value=m._media_one_way,
        )
        packets = CounterMetricFamily(
            "appliance_media_packets",
            "RTP packets of finished relayed calls, received from (in) and sent to (out) the legs' peers.",
            labels=["direction"],
        )
        octets = CounterMetricFamily(
            "appliance_media_octets", "RTP payload octets of finished relayed calls.", labels=["direction"]
        )
        lost = CounterMetricFamily(
            "appliance_media_packets_lost",
            "RTP packets lost (RFC 3550) in finished relayed calls.",
            labels=["direction"],
        )
        for direction, (n_packets, n_octets, n_lost) in m._media_streams.items():
            packets.add_metric([direction], n_packets)
            octets.add_metric([direction], n_octets)
            lost.add_metric([direction], n_lost)
        yield packets
        yield octets
        yield lost
        configured, running, restarts = m._workers
        yield GaugeMetricFamily(
            "appliance_media_workers", "Media worker processes configured.", value=configured
        )
        yield GaugeMetricFamily(
            "appliance_media_workers_running", "Media worker processes connected now.", value=running
        )
        yield CounterMetricFamily(
            "appliance_media_worker_restarts", "Media workers restarted after dying.", value=restarts
        )
        relayed = CounterMetricFamily(
            "appliance_media_worker_packets_relayed",
            "Packets a media worker relayed since it started.",
            labels=["worker"],
        )
        for worker, n in sorted(m._worker_relayed.items()):
            relayed.add_metric([str(worker)], n)
        yield relayed
        drops = CounterMetricFamily(
            "appliance_media_worker_packets_dropped",
            "Packets a media worker dropped since it started, by reason.",
            labels=["worker", "reason"],
        )
        for (worker, reason), n in sorted(m._worker_drops.items()):
            drops.add_metric([str(worker), reason], n)
        yield drops

        mode = GaugeMetricFamily(
            "appliance_mode", "Survivability mode: 1 for the current one, 0 for the others.", labels=["mode"]
        )
        for name in MODES:
            mode.add_metric([name], 1 if name == m._mode else 0)
        yield mode

        info = GaugeMetricFamily(
            "appliance_info", "Identity of this appliance (always 1).", labels=["site", "serial", "version"]
        )
        info.add_metric(list(m._info), 1)
        yield info
