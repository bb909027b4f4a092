"""Metrics of the cloud sync and the WAN: mode transitions, the outbox, links and uplinks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.metrics import Metrics
from tests.unit.test_metrics import samples, value


def make() -> Metrics:
    return Metrics(site="par1", serial="PA-0001", version="1.2.3", process_metrics=False)


def test_each_mode_transition_is_counted_by_its_states() -> None:
    m = make()
    m.sync.mode_transition("ONLINE", "SUSPECT")
    m.sync.mode_transition("suspect", "survivable")
    m.sync.mode_transition("ONLINE", "SUSPECT")
    assert value(m, "appliance_mode_transitions_total", from_mode="online", to_mode="suspect") == 2
    assert value(m, "appliance_mode_transitions_total", from_mode="suspect", to_mode="survivable") == 1
    with pytest.raises(ValueError, match="unknown mode"):
        m.sync.mode_transition("ONLINE", "gone")


def test_the_outbox_is_exported_once_known() -> None:
    m = make()
    assert not any(name.startswith("appliance_outbox") for name, _ in samples(m))
    stats = SimpleNamespace(first_seq=8, last_seq=10, acked_seq=7, pending=3, bytes=900, quota_bytes=1000,
                            pressure="thinning", thinned={"bulk": 4}, refused={})  # fmt: skip
    m.sync.set_outbox(stats)
    assert value(m, "appliance_outbox_pending") == 3
    assert value(m, "appliance_outbox_acked_seq") == 7
    assert value(m, "appliance_outbox_pressure", level="thinning") == 1
    assert value(m, "appliance_outbox_pressure", level="normal") == 0
    assert value(m, "appliance_outbox_thinned_total", priority="bulk") == 4


def test_links_uplinks_and_snapshots() -> None:
    m = make()
    m.sync.link("eth0", True)
    m.sync.link("eth0", False)
    m.sync.link("eth0", False)
    m.sync.uplink_changed("backup")
    m.sync.snapshot(appended=True)
    m.sync.snapshot(appended=False)
    assert value(m, "appliance_wan_link_up", interface="eth0") == 0
    assert value(m, "appliance_wan_link_changes_total", interface="eth0") == 2
    assert value(m, "appliance_wan_uplink", uplink="backup") == 1
    assert value(m, "appliance_wan_uplink_changes_total") == 1
    assert value(m, "appliance_metrics_snapshots_total", result="thinned") == 1
