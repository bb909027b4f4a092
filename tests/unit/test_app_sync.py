"""The control process's cloud wiring: mode.changed bodies, the status parts, metrics snapshots."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cbor2
import pycddl

from appliance.app_sync import MIB, SnapshotGauges, SyncWiring
from appliance.config import Config
from appliance.config.load import load_config_text
from appliance.metrics import Metrics
from appliance.wan.events import ModeChanged
from appliance.wan.mode import Mode, ModeMachine
from tests.unit.test_metrics import value

RECORDS = Path(__file__).parents[2] / "appliance" / "calls" / "records.cddl"


def check(rule: str, body: Any) -> None:
    pycddl.Schema(f"root = {rule}\n" + RECORDS.read_text()).validate_cbor(cbor2.dumps(body))


class FakeOutbox:
    def __init__(self, *, thin: bool = False) -> None:
        self.thin = thin
        self.bulk: list[tuple[str, Mapping[str, Any]]] = []
        self.appended: list[tuple[str, Mapping[str, Any]]] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def stats(self) -> Any:
        return SimpleNamespace(pending=3, bytes=4096, pressure="thinning" if self.thin else "normal")

    async def append_bulk(self, type: str, body: Mapping[str, Any]) -> object | None:
        if self.thin:
            return None
        self.bulk.append((type, body))
        return object()


def wiring(outbox: FakeOutbox, clock: list[float]) -> tuple[SyncWiring, Metrics, ModeMachine]:
    metrics = Metrics(process_metrics=False)
    mode = ModeMachine(cloud_configured=False, probe_interval=5.0, probe_timeout=2.0, probe_failures=3,
                       probe_successes=2, hold_down=30.0, now=0.0)  # fmt: skip

    async def append(event_type: str, body: Mapping[str, Any]) -> None:
        outbox.appended.append((event_type, body))

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        outbox.tasks.append(asyncio.get_running_loop().create_task(coro))

    sync = SyncWiring(
        config=Config(), state_dir=Path("/nonexistent"), db=None, outbox=outbox, metrics=metrics,  # type: ignore[arg-type]
        mode=mode, append=append, spawn=spawn, wall=lambda: clock[0],
    )  # fmt: skip
    return sync, metrics, mode


def test_a_mode_change_says_when_and_how_long_the_old_mode_lasted() -> None:
    clock = [1_795_000_000.0]
    sync, metrics, _ = wiring(FakeOutbox(), clock)
    clock[0] += 42.25
    body = sync.mode_changed(ModeChanged(Mode.ONLINE, Mode.SUSPECT, "probe 3 not answered", 7.0))
    check("mode-changed", body)
    assert body == {"old": "online", "new": "suspect", "reason": "probe 3 not answered",
                    "at": "2026-11-18T11:07:22.250Z", "since_s": 42.25}  # fmt: skip
    clock[0] += 1.0
    assert sync.mode_changed(ModeChanged(Mode.SUSPECT, Mode.ONLINE, "answered", 8.0))["since_s"] == 1.0
    assert sync.status()["mode_since"] == clock[0]
    assert value(metrics, "appliance_mode_transitions_total", from_mode="online", to_mode="suspect") == 1


def test_the_status_parts_name_the_site_mode_and_uplink() -> None:
    sync, _, mode = wiring(FakeOutbox(), [1_795_000_000.0])
    status = sync.status()
    assert status["mode"] == mode.mode.value == "survivable"
    assert status["forced"] is None and status["uplink"] is None
    assert SyncWiring.outbox_quota(Config()) == Config().sync.outbox_quota_mb * MIB


async def test_a_snapshot_is_a_bulk_event_thinned_under_pressure() -> None:
    outbox = FakeOutbox()
    sync, metrics, _ = wiring(outbox, [1_795_000_000.0])
    gauges = SnapshotGauges(calls_active=lambda: 4, extra=lambda: {"media_workers": 2})
    assert await sync.snapshot(gauges)
    ((event_type, body),) = outbox.bulk
    assert event_type == "metrics.snapshot"
    check("metrics-snapshot", body)
    assert (body["calls_active"], body["outbox_pending"], body["media_workers"]) == (4, 3, 2)
    outbox.thin = True
    assert not await sync.snapshot(gauges)
    assert value(metrics, "appliance_metrics_snapshots_total", result="thinned") == 1
    assert value(metrics, "appliance_metrics_snapshots_total", result="appended") == 1


def test_recordings_are_a_blob_area_when_a_recording_key_is_configured(tmp_path: Path) -> None:
    sync, _, _ = wiring(FakeOutbox(), [0.0])
    sync.state_dir = tmp_path
    assert sync.blob_dirs() == {"voicemail": tmp_path / "voicemail"}
    key = tmp_path / "rec.key"
    key.write_bytes(bytes(32))
    sync.config = load_config_text(f'[media]\nrecording_key = "{key}"\n')
    assert sync.blob_dirs() == {"voicemail": tmp_path / "voicemail", "recording": tmp_path / "recordings"}


async def test_wan_events_reach_the_outbox_with_their_time() -> None:
    outbox = FakeOutbox()
    sync, _, _ = wiring(outbox, [1_795_000_000.0])
    sync._wan_event("wan.link", {"ifname": "eth0", "carrier": False})
    sync._wan_event("wan.uplink", {"old": "primary", "new": "backup", "reason": "eth0 lost carrier"})
    await asyncio.gather(*outbox.tasks)
    (link_type, link), (uplink_type, uplink) = outbox.appended
    assert (link_type, uplink_type) == ("wan.link", "wan.uplink")
    check("wan-link", link)
    check("wan-uplink", uplink)
    assert link["at"] == uplink["at"] == "2026-11-18T11:06:40.000Z"
