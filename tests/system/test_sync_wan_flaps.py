"""The WAN flaps twenty times under calls and events: nothing lost, nothing twice, calls served throughout.

The appliance runs in a network namespace of its own, the "cloud" in another, joined by a veth pair
(:mod:`tests.netns`). In the cloud: a SIPp contact centre (the cloud trunk, answering the appliance's
OPTIONS probes) and the reference sync client pulling the appliance's events over mutual TLS
(``python -m appliance.sync.client pull --follow``). In the appliance's namespace: a SIPp caller placing
a short call every half second. The WAN is then cut twenty times, alternately by carrier loss (the cloud
end of the veth goes down) and by a silent drop (nftables on the appliance's end), each cut held until
the appliance is SURVIVABLE and a call or two have been placed, then restored until it is ONLINE again.

At the end:

* every event the outbox issued is held exactly once: the client's store holds seq 1..acked without a
  gap, the outbox the few appended after the client stopped; ids unique, no event twice under two ids;
* every call SIPp placed has one ``call.record``; calls placed while SURVIVABLE were answered by the local
  IVR and never tried the cloud; calls placed while ONLINE with the WAN whole were answered by the cloud;
  SIPp saw no failed call;
* ``mode.changed`` events report every transition with its time, twenty entries into SURVIVABLE from
  ONLINE or SUSPECT, each inside its cut.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.sync.client_types import Event
from appliance.sync.pki import SitePki
from tests import sync_pki
from tests.netns import (
    CloudClient,
    NamespacedAppliance,
    NamespacedSipp,
    WanPair,
    appliance_config,
    check_exactly_once,
    check_no_leftovers,
    list_namespaces,
    outbox_account,
    skip_reason,
    start_appliance_in,
    wan_pair,
)
from tests.system.sipp import SIPP_BINARY, SippResult

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]
SCENARIOS = Path(__file__).parent / "scenarios"

_reason = skip_reason() or (None if shutil.which(SIPP_BINARY) else "SIPp is not installed (sip-tester)")
if _reason is not None:  # pragma: no cover - CI runs as root with iproute2, nftables and SIPp
    pytest.skip(_reason, allow_module_level=True)

FLAPS = 20
SIP_PORT = 5060
CLOUD_PORT = 5060
SYNC_PORT = 8443
CALLER_PORT = 5070
CALL_EVERY_S = 0.5
CALL_HOLD_MS = 400
# Time in SURVIVABLE before the WAN returns, and in ONLINE before the next cut: at least one call is
# placed in each (and in ONLINE answered before the cut).
SURVIVABLE_HOLD_S = 0.5
ONLINE_HOLD_S = 0.9
SETUP_S = 0.2  # a call placed this long before a cut has been answered before it
# Carrier loss is seen at once (netlink); a silent drop needs probe_failures unanswered probes.
CUT_TIMEOUT_S = 6.0
RESTORE_TIMEOUT_S = 6.0
TRANSITION_SAMPLE = re.compile(
    r'appliance_mode_transitions_total\{from_mode="(?P<old>\w+)",to_mode="(?P<new>\w+)"\}'
)
ANSWERED = ("answered", "rescued")  # outcomes of a leg whose callee answered


@pytest.fixture(autouse=True)
def _no_namespaces_left() -> Iterator[None]:
    with check_no_leftovers():
        yield


def flaps_config(wan: WanPair, work: Path, site: SitePki) -> str:
    """The cloud trunk across the WAN with fast probes; the WAN interface watched for carrier."""
    cloud = f"""\
[cloud]
trunk = "sip:{wan.cloud_ip}:{CLOUD_PORT}"
probe_interval = 1.0
probe_timeout = 0.5
probe_failures = 2
probe_successes = 1
hold_down = 1

[wan]
interfaces = ["{wan.app_if}"]
"""
    return appliance_config(
        wan, work, site_name="flaps", sip_port=SIP_PORT, sync_port=SYNC_PORT, pki=site, extra=cloud
    )


@dataclass
class Cut:
    """One cut of the WAN: wall-clock times (those of the call records) and how long the mode took."""

    kind: str  # "link" or "drop"
    cut_wall: float
    survivable_after_s: float
    restored_wall: float
    online_after_s: float
    online_wall: float  # when the test saw ONLINE again


def flap(wan: WanPair, app: NamespacedAppliance, kind: str) -> Cut:
    """Cut the WAN (``kind``) until the appliance is SURVIVABLE and SURVIVABLE_HOLD_S more, restore it,
    and leave it whole until ONLINE and ONLINE_HOLD_S more."""
    cut_wall = time.time()
    cut_at = wan.cut_link() if kind == "link" else wan.drop()
    survivable = app.wait_mode("SURVIVABLE", CUT_TIMEOUT_S) - cut_at
    time.sleep(SURVIVABLE_HOLD_S)
    restored_wall = time.time()
    restored_at = wan.restore_link() if kind == "link" else wan.undrop()
    online = app.wait_mode("ONLINE", RESTORE_TIMEOUT_S) - restored_at
    online_wall = time.time()
    time.sleep(ONLINE_HOLD_S)
    return Cut(kind, cut_wall, survivable, restored_wall, online, online_wall)


def check_calls(
    records: list[dict[str, Any]], caller: SippResult, cloud: SippResult, cuts: list[Cut]
) -> None:
    assert caller.stats is not None and cloud.stats is not None
    assert caller.stats.failed == 0, caller.describe()
    assert caller.stats.successful == caller.stats.created, caller.describe()
    assert len(records) == caller.stats.created, "not one call.record per call placed"
    assert len({r["sip_call_id"] for r in records}) == len(records), "a call recorded twice"
    by_mode: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_mode.setdefault(record["mode"], []).append(record)
    local = by_mode.get("survivable", [])
    # Placed during a cut, once the appliance knew: answered locally, the cloud never tried.
    for record in local:
        assert record["route"] == "ivr", record
        assert [leg["kind"] for leg in record["legs"]] == ["ivr"], record
        assert record["answered"] is not None, record
    assert len(local) >= FLAPS, f"only {len(local)} calls placed while SURVIVABLE in {FLAPS} cuts"

    # Placed once ONLINE was back (or before the first cut) and answered before the next cut: the cloud
    # answered; the call stays there unless a cut came while it was up (then it is rescued into the IVR).
    whole = [(c.online_wall, n.cut_wall - SETUP_S) for c, n in itertools.pairwise(cuts)]
    whole.append((0.0, cuts[0].cut_wall - SETUP_S))
    up = [r for r in by_mode.get("online", []) if any(a <= r["created_ts"] <= b for a, b in whole)]
    for record in up:
        first = record["legs"][0]
        assert first["kind"] == "cloud" and first["outcome"] in ANSWERED, record
        assert record["route"] == "cloud" or (record["rescued"] and record["route"] == "ivr"), record
    assert len(up) >= FLAPS, f"only {len(up)} calls placed with the WAN whole"
    answered_by_cloud = [
        r for r in records if any(leg["kind"] == "cloud" and leg["outcome"] in ANSWERED for leg in r["legs"])
    ]
    assert cloud.stats.created >= len(answered_by_cloud), cloud.describe()
    # Every call ended somewhere: the cloud, or the IVR (at once, after a failed cloud attempt, or rescued).
    assert {r["route"] for r in records} <= {"cloud", "ivr"}


def check_modes(events: list[Event], cuts: list[Cut]) -> None:
    changes = [e for e in events if e.type == "mode.changed"]
    assert changes, "no mode.changed event"
    for before, after in itertools.pairwise(changes):
        assert before.body["new"] == after.body["old"], (before.body, after.body)
    timeline = [f"{e.body['at']} {e.body['old']} -> {e.body['new']}: {e.body['reason']}" for e in changes]
    # A cut is noticed once (from ONLINE or SUSPECT); a probe lost while RECOVERING may send the mode back
    # to SURVIVABLE once more, which is not a new cut.
    noticed = [e for e in changes if e.body["new"] == "survivable" and e.body["old"] in ("online", "suspect")]
    assert len(noticed) == FLAPS, "\n".join(timeline)
    relapses = [e for e in changes if e.body["new"] == "survivable" and e.body["old"] == "recovering"]
    assert len(relapses) <= 3, "\n".join(timeline)
    for cut, event in zip(cuts, noticed, strict=True):
        assert cut.cut_wall - 0.5 <= event.created <= cut.restored_wall + 0.5, (cut, event.body)
    back_online = [e for e in changes if e.body["new"] == "online" and e.body["old"] != "online"]
    assert len(back_online) >= FLAPS
    for event in changes:
        assert isinstance(event.body.get("reason"), str) and event.body["reason"]
        assert isinstance(event.body.get("at"), str) and event.body["at"].endswith("Z")


def check_transition_metrics(events: list[Event], metrics: dict[str, float]) -> None:
    """Every transition is counted in ``appliance_mode_transitions_total`` as it was reported."""
    reported = Counter((e.body["old"], e.body["new"]) for e in events if e.type == "mode.changed")
    counted = Counter[tuple[str, str]]()
    for name, value in metrics.items():
        match = TRANSITION_SAMPLE.fullmatch(name)
        if match is not None and value:
            counted[(match["old"], match["new"])] = int(value)
    assert counted == reported, (counted, reported)


def test_the_harness_cuts_the_wan_both_ways_and_leaves_nothing_behind() -> None:
    def carrier(wan: WanPair) -> bool:
        return "NO-CARRIER" not in wan.check_in(wan.app, ["ip", "link", "show", wan.app_if])

    with wan_pair() as wan:
        names = {wan.app, wan.cloud}
        assert wan.reachable() and carrier(wan)
        wan.cut_link()
        assert not wan.reachable(0.3) and not carrier(wan)
        wan.restore_link()
        assert wan.reachable(2.0) and carrier(wan)
        wan.drop()
        assert not wan.reachable(0.3) and carrier(wan)  # silent: the link stays up
        wan.undrop()
        assert wan.reachable()
        sleeper = wan.run_in(wan.cloud, ["sleep", "60"])
    assert sleeper.poll() is not None, "a process started in the namespace outlived it"
    assert not names & list_namespaces()


def test_the_wan_flaps_twenty_times_under_calls_and_events(tmp_path: Path) -> None:
    with wan_pair() as wan:
        cloud = NamespacedSipp.in_ns(
            wan.cloud, SCENARIOS / "sync_uas_cloud.xml", role="uas", local_ip=wan.cloud_ip,
            local_port=CLOUD_PORT, workdir=tmp_path / "cloud-uas", auto_answer=True,
        )  # fmt: skip
        with cloud:
            cloud.wait_bound()
            site = sync_pki.site(tmp_path / "pki", hosts=(wan.app_ip,))
            app = start_appliance_in(wan, tmp_path, flaps_config(wan, tmp_path, site))
            try:
                app.wait_mode("ONLINE", 10)
                client = CloudClient(
                    wan, SYNC_PORT, site.ca_certificate, site.client_certificate, site.client_key,
                    tmp_path / "cloud-store.db",
                )  # fmt: skip
                client.start_pull()
                caller = NamespacedSipp.in_ns(
                    wan.app, SCENARIOS / "uac_call.xml", role="uac", target=(wan.app_ip, SIP_PORT),
                    local_ip="127.0.0.1", local_port=CALLER_PORT, workdir=tmp_path / "caller",
                    rate=1 / CALL_EVERY_S, duration_ms=CALL_HOLD_MS, recv_timeout_ms=20000,
                    service="+4930123456",
                )  # fmt: skip
                with caller:
                    time.sleep(2 * CALL_EVERY_S)
                    cuts = [flap(wan, app, "link" if i % 2 == 0 else "drop") for i in range(FLAPS)]
                    os.kill(caller.pid, signal.SIGUSR1)  # stop placing calls; finish those under way
                    caller_result = caller.wait(30)
                for cut in cuts:
                    print(f"{cut.kind}: SURVIVABLE after {cut.survivable_after_s:.3f} s, "
                          f"ONLINE after {cut.online_after_s:.3f} s")  # fmt: skip
                time.sleep(1.0)  # the last records and IVR sessions reach the outbox
                status = client.run("status")
                client.wait_caught_up(status["outbox"]["last_seq"], timeout=30)
                client_errors = client.stop()
                metrics = app.metrics()
            finally:
                app.stop()
            log = app.stderr()
            cloud_result = cloud.stop()  # only now: a cloud gone earlier would be one more cut
    assert "Traceback" not in log, log[-5000:]
    assert "Traceback" not in client_errors, client_errors
    events = client.events()
    account = outbox_account(tmp_path / "var")
    check_exactly_once(events, account)
    assert account.acked_seq >= status["outbox"]["last_seq"]
    records = [dict(e.body) for e in events if e.type == "call.record"]
    check_calls(records, caller_result, cloud_result, cuts)
    check_modes(events, cuts)
    check_transition_metrics(events, metrics)
