"""The WAN monitor: netlink carrier events and probe outcomes into the mode machine and the uplink selector.

This is glue (STYLE.md rule 4); the decisions live in :class:`~appliance.wan.mode.ModeMachine` and
:class:`~appliance.wan.uplinks.UplinkSelector`. What it does:

* Watches the ``[wan] interfaces`` over netlink (:class:`~appliance.wan.netlink.NetlinkWatcher`). A change
  of carrier is reported as a ``wan.link`` event and goes to the mode machine at once: carrier loss on the
  interface that carries the default route is ``link_down`` (SUSPECT within milliseconds, and a probe;
  SURVIVABLE when no WAN link has carrier left), carrier back is ``link_up``. A watched interface missing
  from the start-up dump counts as without carrier. Without failover every watched interface counts as
  carrying the route.
* With ``[wan] failover`` and two uplinks, runs the uplink selector: it hears carrier changes and the
  outcome of every probe round the mode machine counts; each switch is a ``wan.uplink`` event, the
  default route is moved (:class:`~appliance.wan.routes.RouteApplier`, one change at a time, the latest
  wanted wins, a refused change is tried again every second) and, once moved, the mode machine probes at
  once over the new path.

The owner creates it after the mode machine and the SIP core, passing ``after_mode_input``: called with
the loop time after the monitor fed the mode machine, so the owner drains the machine (sends the probe,
records mode changes) and re-arms its timer, e.g. ``core.handle_timer(now); transports.flush()``.
``on_event(type, body)`` is called for every event the outbox should hold; it must not block.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from appliance.config.schema import WanConfig
from appliance.wan.errors import RouteError
from appliance.wan.events import LinkChanged, NetlinkEvent, UplinkChanged, UseUplink
from appliance.wan.mode import ModeMachine
from appliance.wan.netlink import NetlinkWatcher
from appliance.wan.routes import RouteApplier
from appliance.wan.uplinks import Uplink, UplinkSelector

_LOG: Final = logging.getLogger(__name__)
ROUTE_RETRY: Final = 1.0  # seconds between attempts at a default-route change the kernel refused


class WanObserver(Protocol):
    """Metrics of the WAN monitor (:class:`appliance.metrics.sync.SyncMetrics` is one)."""

    def link(self, interface: str, up: bool) -> None:
        """A watched WAN interface gained (``up``) or lost carrier."""

    def uplink_changed(self, name: str | None) -> None:
        """The default route now uses uplink ``name``."""


class Watcher(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


EventSink = Callable[[str, Mapping[str, object]], None]
WatcherFactory = Callable[[Callable[[NetlinkEvent], None]], Watcher]


def _netlink_watcher(on_event: Callable[[NetlinkEvent], None]) -> Watcher:
    return NetlinkWatcher(on_event=on_event)


class WanMonitor:
    """Runs between :meth:`start` and :meth:`stop`; idle when nothing is watched and failover is off."""

    def __init__(
        self,
        config: WanConfig,
        mode: ModeMachine,
        *,
        on_event: EventSink,
        after_mode_input: Callable[[float], None] | None = None,
        observer: WanObserver | None = None,
        watcher_factory: WatcherFactory = _netlink_watcher,
        routes: RouteApplier | None = None,
    ) -> None:
        self.config = config
        self.mode = mode
        self._on_event = on_event
        self._after = after_mode_input
        self._observer = observer
        self._watcher_factory = watcher_factory
        self._uplinks = [Uplink(u.name, u.interface, u.gateway, u.metric) for u in config.uplinks]
        self._routes = routes if routes is not None else RouteApplier(self._uplinks, enabled=config.failover)
        self._watched = frozenset(config.interfaces)
        self._carrier: dict[str, bool] = {}
        self.selector: UplinkSelector | None = None
        self._watcher: Watcher | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wanted: UseUplink | None = None
        self._applied: UseUplink | None = None
        self._route_task: asyncio.Task[None] | None = None
        self.route_failures = 0  # default-route changes the kernel refused (each retry counts)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def active_uplink(self) -> str | None:
        """The uplink the default route uses (for the status), None when failover is off."""
        return self.selector.active.name if self.selector is not None else None

    @property
    def carrier(self) -> Mapping[str, bool]:
        """Carrier of each watched interface seen so far."""
        return dict(self._carrier)

    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        if self.config.failover and len(self._uplinks) == 2:
            primary, backup = self._uplinks
            self.selector = UplinkSelector(
                primary=primary,
                backup=backup,
                failover_after=self.config.failover_after,
                revert_after=self.config.revert_after,
                now=loop.time(),
            )
            self.mode.set_probe_observer(self._probe_outcome)
        if self._watched:
            self._watcher = self._watcher_factory(self._netlink)
            await self._watcher.start()
            for ifname in sorted(self._watched - self._carrier.keys()):
                _LOG.warning("WAN interface %s not found: taken as without carrier", ifname)
                self._link(ifname, False)
        if self.selector is not None:
            self._drain_selector()

    async def stop(self) -> None:
        if self.selector is not None:
            self.mode.set_probe_observer(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._watcher is not None:
            await self._watcher.stop()
            self._watcher = None
        task, self._route_task = self._route_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- inputs -----------------------------------------------------------------------------------------

    def _netlink(self, event: NetlinkEvent) -> None:
        if isinstance(event, LinkChanged) and event.ifname in self._watched:
            self._link(event.ifname, event.carrier)

    def _link(self, ifname: str, carrier: bool) -> None:
        old = self._carrier.get(ifname)
        if old == carrier:
            return
        self._carrier[ifname] = carrier
        now = self._now()
        _LOG.log(logging.INFO if carrier else logging.WARNING, "WAN %s carrier %s", ifname, carrier)
        self._on_event("wan.link", {"ifname": ifname, "carrier": carrier})
        if self._observer is not None:
            self._observer.link(ifname, carrier)
        carries_route = self.selector is None or self.selector.active.ifname == ifname
        if self.selector is not None:
            self.selector.carrier_changed(ifname, carrier, now)
        if self.selector is not None:
            self._drain_selector()
        if not carrier and carries_route:
            self.mode.link_down(now, ifname, no_path=not self._any_path())
            self._mode_fed(now)
        elif carrier and old is not None:
            self.mode.link_up(now, ifname)
            self._mode_fed(now)

    def _any_path(self) -> bool:
        """Whether an uplink (every watched interface without failover) may still have carrier; one not
        reported yet is given the benefit of the doubt until the start-up dump is over."""
        links = [u.ifname for u in self._uplinks] if self.selector is not None else self._watched
        return any(self._carrier.get(ifname, True) for ifname in links)

    def _probe_outcome(self, probe_id: int, answered: bool, reason: str, now: float) -> None:
        # Called from inside the mode machine (the owner drains it afterwards): only the selector is fed.
        assert self.selector is not None
        if answered:
            self.selector.probe_answered(now)
        else:
            self.selector.probe_failed(now, reason)
        self._drain_selector()

    def _fire(self) -> None:
        self._timer = None
        if self.selector is not None:
            self.selector.handle_timer(self._now())
            self._drain_selector()

    # -- outputs ----------------------------------------------------------------------------------------

    def _drain_selector(self) -> None:
        selector = self.selector
        assert selector is not None
        while (event := selector.next_event()) is not None:
            if isinstance(event, UseUplink):
                self._want(event)
            elif isinstance(event, UplinkChanged):
                _LOG.warning("uplink %s -> %s: %s", event.old, event.new, event.reason)
                self._on_event("wan.uplink", {"old": event.old, "new": event.new, "reason": event.reason})
                if self._observer is not None:
                    self._observer.uplink_changed(event.new)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = selector.get_timer()
        if due is not None and self._loop is not None:
            self._timer = self._loop.call_at(due, self._fire)

    def _want(self, command: UseUplink) -> None:
        self._wanted = command
        if self._loop is not None and (self._route_task is None or self._route_task.done()):
            self._route_task = self._loop.create_task(self._apply_routes())

    async def _apply_routes(self) -> None:
        while (command := self._wanted) is not None and command != self._applied:
            try:
                changed = await self._routes.apply(command)
            except RouteError as exc:
                _LOG.error("uplink %s: %s; trying again in %g s", command.name, exc.reason, ROUTE_RETRY)
                self.route_failures += 1
                await asyncio.sleep(ROUTE_RETRY)
                continue
            self._applied = command
            if changed:
                now = self._now()
                self.mode.path_changed(now, f"default route via uplink {command.name}")
                self._mode_fed(now)

    def _mode_fed(self, now: float) -> None:
        if self._after is not None:
            self._after(now)

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()
