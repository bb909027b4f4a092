"""The WAN monitor's glue with a fake netlink watcher and a fake route applier (no kernel involved)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from appliance.config.schema import UplinkConfig, WanConfig
from appliance.metrics.sync import SyncMetrics
from appliance.wan import monitor as monitor_module
from appliance.wan.errors import RouteError
from appliance.wan.events import LinkChanged, NetlinkEvent, UseUplink
from appliance.wan.mode import Mode
from appliance.wan.monitor import WanMonitor, WanObserver
from appliance.wan.routes import RouteApplier
from tests.unit.test_wan_mode_paths import make as make_mode

UPLINKS = (UplinkConfig("fibre", "wan0", "10.77.1.2", 10), UplinkConfig("lte", "wan1", "10.77.2.2", 20))


class FakeWatcher:
    def __init__(self, on_event: Callable[[NetlinkEvent], None], dump: list[LinkChanged]) -> None:
        self.on_event = on_event
        self.dump = dump
        self.running = False

    async def start(self) -> None:
        for event in self.dump:
            self.on_event(event)
        self.running = True

    async def stop(self) -> None:
        self.running = False

    def carrier(self, ifname: str, carrier: bool) -> None:
        self.on_event(LinkChanged(ifname, 9, carrier, True))


class FakeRoutes(RouteApplier):
    def __init__(self, *, fail: int = 0) -> None:
        super().__init__([], enabled=True)
        self.applied: list[str] = []
        self.fail = fail
        self.done = asyncio.Event()

    async def apply(self, command: UseUplink) -> bool:
        if self.fail:
            self.fail -= 1
            raise RouteError("Network is unreachable")
        self.applied.append(command.name)
        self.done.set()
        return True


@dataclass
class Metrics:
    links: list[tuple[str, bool]] = field(default_factory=list)
    uplinks: list[str | None] = field(default_factory=list)

    def link(self, interface: str, up: bool) -> None:
        self.links.append((interface, up))

    def uplink_changed(self, name: str | None) -> None:
        self.uplinks.append(name)


class Rig:
    def __init__(
        self, config: WanConfig, dump: list[LinkChanged], *, routes: FakeRoutes | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        self.mode = make_mode(now=loop.time(), probe_interval=1.0, probe_timeout=0.5, probe_failures=2)
        self.mode.probe_answered(1, loop.time())
        assert self.mode.mode is Mode.ONLINE
        self.events: list[tuple[str, Mapping[str, object]]] = []
        self.fed: list[float] = []
        self.metrics = Metrics()
        self.routes = routes if routes is not None else FakeRoutes()
        self.watchers: list[FakeWatcher] = []

        def factory(on_event: Callable[[NetlinkEvent], None]) -> FakeWatcher:
            self.watchers.append(FakeWatcher(on_event, dump))
            return self.watchers[-1]

        self.monitor = WanMonitor(
            config,
            self.mode,
            on_event=lambda kind, body: self.events.append((kind, body)),
            after_mode_input=self.fed.append,
            observer=self.metrics,
            watcher_factory=factory,
            routes=self.routes,
        )

    @property
    def watcher(self) -> FakeWatcher:
        return self.watchers[0]

    async def routed(self, count: int) -> None:
        while len(self.routes.applied) < count:
            self.routes.done.clear()
            await asyncio.wait_for(self.routes.done.wait(), 5.0)


def up(ifname: str, carrier: bool = True) -> LinkChanged:
    return LinkChanged(ifname, 3, carrier, True)


FAILOVER = WanConfig(interfaces=("wan0", "wan1"), failover=True, uplinks=UPLINKS, revert_after=30.0)


async def test_nothing_watched_is_idle() -> None:
    rig = Rig(WanConfig(), [])
    await rig.monitor.start()
    assert rig.watchers == [] and rig.events == [] and rig.monitor.active_uplink is None
    await rig.monitor.stop()


async def test_carrier_loss_on_the_only_wan_link_makes_the_mode_survivable_at_once() -> None:
    rig = Rig(WanConfig(interfaces=("wan0",)), [up("lo"), up("wan0")])
    await rig.monitor.start()
    assert rig.events == [("wan.link", {"ifname": "wan0", "carrier": True})] and rig.fed == []
    rig.watcher.carrier("wan0", False)
    assert rig.mode.mode is Mode.SURVIVABLE and "wan0" in rig.mode.down_links
    assert rig.events[-1] == ("wan.link", {"ifname": "wan0", "carrier": False}) and len(rig.fed) == 1
    rig.watcher.carrier("wan0", False)  # a repeat changes nothing
    rig.watcher.carrier("eth7", False)  # nor does an interface not watched
    assert len(rig.events) == 2 and len(rig.fed) == 1
    rig.watcher.carrier("wan0", True)
    assert rig.mode.down_links == frozenset() and rig.metrics.links[-1] == ("wan0", True)
    assert rig.monitor.active_uplink is None and rig.routes.applied == []
    await rig.monitor.stop()
    assert not rig.watcher.running


async def test_carrier_loss_with_another_wan_link_left_makes_the_mode_suspect() -> None:
    rig = Rig(WanConfig(interfaces=("wan0", "wan1")), [up("wan0"), up("wan1")])
    await rig.monitor.start()
    rig.watcher.carrier("wan0", False)
    assert rig.mode.mode is Mode.SUSPECT
    rig.watcher.carrier("wan1", False)
    assert rig.mode.mode is Mode.SURVIVABLE
    await rig.monitor.stop()


async def test_watched_interface_missing_from_the_dump_has_no_carrier() -> None:
    rig = Rig(WanConfig(interfaces=("wan0", "wan9")), [up("wan0")])
    await rig.monitor.start()
    assert rig.monitor.carrier == {"wan0": True, "wan9": False}
    assert rig.mode.mode is Mode.SUSPECT
    await rig.monitor.stop()


async def test_failover_starts_on_the_primary_and_switches_on_carrier_loss() -> None:
    rig = Rig(FAILOVER, [up("wan0"), up("wan1")])
    await rig.monitor.start()
    await rig.routed(1)
    assert rig.routes.applied == ["fibre"] and rig.monitor.active_uplink == "fibre"
    assert ("wan.uplink", {"old": None, "new": "fibre", "reason": "start"}) in rig.events
    probe_before = rig.mode.outstanding_probe

    rig.watcher.carrier("wan0", False)
    assert rig.monitor.active_uplink == "lte" and rig.mode.mode is Mode.SUSPECT
    assert rig.events[-1] == ("wan.uplink", {"old": "fibre", "new": "lte", "reason": "carrier lost on wan0"})
    await rig.routed(2)
    assert rig.routes.applied == ["fibre", "lte"]
    assert rig.mode.outstanding_probe != probe_before  # probed again over the new path
    assert rig.metrics.uplinks == ["fibre", "lte"]
    await rig.monitor.stop()


async def test_carrier_loss_on_both_uplinks_makes_the_mode_survivable() -> None:
    rig = Rig(FAILOVER, [up("wan0"), up("wan1")])
    await rig.monitor.start()
    rig.watcher.carrier("wan0", False)
    assert rig.mode.mode is Mode.SUSPECT and rig.monitor.active_uplink == "lte"
    rig.watcher.carrier("wan1", False)
    assert rig.mode.mode is Mode.SURVIVABLE
    await rig.monitor.stop()


async def test_backup_carrier_loss_does_not_disturb_the_mode() -> None:
    rig = Rig(FAILOVER, [up("wan0"), up("wan1")])
    await rig.monitor.start()
    rig.watcher.carrier("wan1", False)
    assert rig.mode.mode is Mode.ONLINE and rig.monitor.active_uplink == "fibre"
    await rig.monitor.stop()


async def test_primary_without_carrier_at_start_goes_to_the_backup() -> None:
    rig = Rig(FAILOVER, [up("wan0", False), up("wan1")])
    await rig.monitor.start()
    await rig.routed(1)
    assert rig.monitor.active_uplink == "lte" and rig.routes.applied[-1] == "lte"
    await rig.monitor.stop()


async def test_failed_probe_rounds_switch_the_uplink() -> None:
    rig = Rig(FAILOVER, [up("wan0"), up("wan1")])
    await rig.monitor.start()
    await rig.routed(1)
    loop = asyncio.get_running_loop()
    for _ in range(2):
        pid = rig.mode.outstanding_probe
        if pid is None:
            rig.mode.handle_timer(rig.mode.get_timer() or loop.time())
            pid = rig.mode.outstanding_probe
        assert pid is not None
        rig.mode.probe_failed(pid, loop.time(), "503 from the cloud")
    assert rig.monitor.active_uplink == "lte"
    kind, body = rig.events[-1]
    assert kind == "wan.uplink" and body["new"] == "lte" and "2 probe rounds failed" in str(body["reason"])
    await rig.monitor.stop()


async def test_refused_route_change_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor_module, "ROUTE_RETRY", 0.01)
    rig = Rig(FAILOVER, [up("wan0"), up("wan1")], routes=FakeRoutes(fail=2))
    await rig.monitor.start()
    await rig.routed(1)
    assert rig.routes.applied == ["fibre"] and rig.monitor.route_failures == 2
    await rig.monitor.stop()


async def test_without_failover_uplinks_are_not_selected() -> None:
    config = WanConfig(interfaces=("wan0", "wan1"), failover=False, uplinks=UPLINKS)
    rig = Rig(config, [up("wan0"), up("wan1")])
    await rig.monitor.start()
    rig.watcher.carrier("wan1", False)
    assert rig.monitor.active_uplink is None and rig.routes.applied == []
    assert rig.mode.mode is Mode.SUSPECT  # every watched interface counts as carrying the route
    await rig.monitor.stop()


def test_the_sync_metrics_are_a_wan_observer() -> None:
    metrics: WanObserver = SyncMetrics()
    metrics.link("wan0", False)
    metrics.uplink_changed("lte")
