"""The WAN service's wiring: the HTTPS hook only with a health URL, results and mode inputs to the core."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.config.schema import CloudConfig, Config, WanConfig
from appliance.wan.service import WanService
from tests.unit.test_wan_mode_paths import make as make_mode

CLOUD = CloudConfig(trunk="sip:127.0.0.1:5080", health_url="https://127.0.0.1:1/health")


@dataclass
class FakeCore:
    results: list[tuple[int, bool, str]] = field(default_factory=list)
    timers: list[float] = field(default_factory=list)

    def https_probe_result(self, probe_id: int, answered: bool, reason: str, now: float) -> None:
        self.results.append((probe_id, answered, reason))

    def handle_timer(self, now: float) -> None:
        self.timers.append(now)


def test_no_health_url_no_https_hook() -> None:
    service = WanService(Config(cloud=CloudConfig(trunk="sip:127.0.0.1:5080")), make_mode(), on_event=print)
    assert service.https_probe is None and service.https is None and service.active_uplink is None


def test_no_cloud_no_https_hook_even_with_a_url() -> None:
    service = WanService(Config(cloud=CloudConfig(health_url=CLOUD.health_url)), make_mode(), on_event=print)
    assert service.https_probe is None


async def test_https_results_and_mode_inputs_reach_the_core_then_flush() -> None:
    flushed: list[int] = []
    events: list[tuple[str, object]] = []
    config = Config(cloud=CLOUD, wan=WanConfig(interfaces=("no-such-wan0",)))
    service = WanService(config, make_mode(), on_event=lambda kind, body: events.append((kind, dict(body))))
    assert service.https_probe is not None
    core = FakeCore()
    service.attach(core, lambda: flushed.append(1))
    service.https_probe(1)  # nothing listens on port 1: refused
    await service.start()  # the missing interface counts as without carrier: a mode input
    assert events == [("wan.link", {"ifname": "no-such-wan0", "carrier": False})]
    assert len(core.timers) == 1 and flushed
    assert service.https is not None and service.https._task is not None
    await service.https._task
    assert core.results[0][:2] == (1, False)
    await service.stop()
