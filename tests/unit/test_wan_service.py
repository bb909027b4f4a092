"""The WAN service's wiring: the HTTPS hook only with a health URL, results and mode inputs to the core."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.config.schema import CloudConfig, Config, WanConfig
from appliance.sync import pki
from appliance.wan.https_probe import HealthTlsError
from appliance.wan.service import WanService
from tests import sync_pki
from tests.unit.test_wan_https_probe import serve
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


async def test_the_probe_trusts_health_ca_and_presents_the_client_certificate(tmp_path: Path) -> None:
    async with serve(tmp_path, mutual=True) as server:
        client = sync_pki.write_client(
            tmp_path, "probe", pki.issue(sync_pki.site_ca(server.paths), "site probe", client=True)
        )
        cloud = dataclasses.replace(
            CLOUD,
            health_url=server.url,
            health_ca=str(server.paths.ca_certificate),
            health_certificate=str(client.certificate),
            health_private_key=str(client.key),
        )
        service = WanService(Config(cloud=cloud), make_mode(), on_event=print)
        core = FakeCore()
        service.attach(core, lambda: None)
        assert service.https_probe is not None and service.https is not None
        service.https_probe(1)
        assert service.https._task is not None
        await service.https._task
        await service.stop()
    assert core.results == [(1, True, "HTTP 200")] and server.clients == ["site probe"]


def test_a_health_ca_that_does_not_load_stops_the_start(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("no certificate here\n")
    config = Config(cloud=dataclasses.replace(CLOUD, health_ca=str(junk)))
    with pytest.raises(HealthTlsError):
        WanService(config, make_mode(), on_event=print)
    # Without a health URL the files are not needed, so not read.
    WanService(Config(cloud=dataclasses.replace(config.cloud, health_url="")), make_mode(), on_event=print)
