"""SIGKILL of the appliance during sync, twenty times: no acknowledged event lost, none sent twice.

The appliance runs in a network namespace of its own (:mod:`tests.netns`) with a SIPp caller placing
short calls into the local IVR, so that call records and IVR sessions are appended all the time; the
reference sync client pulls from the cloud's namespace (``pull --follow``: store, then acknowledge). Each
round starts the appliance on the same state directory, lets it serve for a random moment and SIGKILLs it,
as a power cut or the OOM killer would: in the middle of appends, of a batch on the wire, of an
acknowledgement. A last start lets the client catch up; then:

* the client's store holds seq 1..acked without a gap, each event once (its own checks refuse a gap, an
  id at two seqs or a seq under two ids, and the client would have stopped), and the outbox holds the
  rest of what it issued;
* every acknowledgement the client ever received is covered by the store;
* nothing was sent twice under a new id: no two stored events have the same type, body and HLC, no call
  has two records and no IVR session two reports;
* every start of the appliance left its ``appliance.started`` event, each once.
"""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.sync.client_types import Event
from tests import sync_pki
from tests.netns import (
    CloudClient,
    NamespacedSipp,
    OutboxAccount,
    appliance_config,
    check_exactly_once,
    check_no_leftovers,
    outbox_account,
    skip_reason,
    start_appliance_in,
    wan_pair,
)
from tests.system.sipp import SIPP_BINARY

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]
SCENARIOS = Path(__file__).parent / "scenarios"

_reason = skip_reason(nft=False) or (
    None if shutil.which(SIPP_BINARY) else "SIPp is not installed (sip-tester)"
)
if _reason is not None:  # pragma: no cover - CI runs as root with iproute2 and SIPp
    pytest.skip(_reason, allow_module_level=True)

ROUNDS = 20
SIP_PORT = 5060
SYNC_PORT = 8443
CALLER_PORT = 5070
CALLS_PER_S = 20
# How long the appliance serves, once the client has a batch of this round, before it is killed; drawn
# uniformly for each round.
LIFETIME_S = (0.0, 0.6)


@pytest.fixture(autouse=True)
def _no_namespaces_left() -> Iterator[None]:
    with check_no_leftovers():
        yield


def check_nothing_twice(events: list[Event], acks: list[int], account: OutboxAccount) -> None:
    assert max(acks, default=0) <= account.acked_seq, "an acknowledged event is not in the store"
    calls = Counter(e.body["sip_call_id"] for e in events if e.type == "call.record")
    assert not [c for c, n in calls.items() if n > 1], "a call recorded twice"
    sessions = Counter(e.body["session_id"] for e in events if e.type == "ivr.session")
    assert not [s for s, n in sessions.items() if n > 1], "an IVR session reported twice"


def test_sigkill_during_sync_twenty_times(tmp_path: Path) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    print(f"seed {seed}")
    with wan_pair() as wan:
        site = sync_pki.site(tmp_path / "pki", hosts=(wan.app_ip,))
        # No cloud trunk: every call is answered by the local IVR (a call record and an IVR session each).
        config = appliance_config(
            wan, tmp_path, site_name="sigkill", sip_port=SIP_PORT, sync_port=SYNC_PORT, pki=site
        )
        client = CloudClient(
            wan, SYNC_PORT, site.ca_certificate, site.client_certificate, site.client_key,
            tmp_path / "cloud-store.db",
        )  # fmt: skip
        caller = NamespacedSipp.in_ns(
            wan.app, SCENARIOS / "uac_call.xml", role="uac", target=(wan.app_ip, SIP_PORT),
            local_ip="127.0.0.1", local_port=CALLER_PORT, workdir=tmp_path / "caller",
            rate=CALLS_PER_S, duration_ms=200, recv_timeout_ms=3000, service="+4930123456",
        )  # fmt: skip
        client.start_pull()
        synced = 0
        with caller:
            for round_ in range(ROUNDS):
                app = start_appliance_in(wan, tmp_path, config, name=f"appliance-{round_}")
                # Killed while the client pulls: once it has a batch of this life of the appliance.
                synced += client.wait_batch(timeout=5.0)
                time.sleep(rng.uniform(*LIFETIME_S))
                app.kill()
                if not client.pulling():
                    raise AssertionError(
                        f"seed {seed}, round {round_}: the client stopped "
                        f"({client.proc and client.proc.returncode}): {client.stop()}"
                    )
            # Its own log: media workers orphaned by a kill may still be writing to the earlier ones.
            app = start_appliance_in(wan, tmp_path, config, name="appliance-last")
            try:
                caller.stop()
                time.sleep(1.0)  # the last calls' records reach the outbox
                status = client.run("status")
                client.wait_caught_up(status["outbox"]["last_seq"], timeout=30)
                errors = client.stop()
            finally:
                app.stop()
    assert "Traceback" not in errors, errors
    assert "Traceback" not in app.stderr(), app.stderr()[-5000:]
    events = client.events()
    account = outbox_account(tmp_path / "var")
    acks = [r["acked_seq"] for r in client.reports]
    print(
        f"seed {seed}: {len(events)} events held, {len(acks)} batches, "
        f"{Counter(e.type for e in events).most_common()}"
    )
    assert synced >= ROUNDS - 2, f"seed {seed}: the client pulled in only {synced} of {ROUNDS} rounds"
    check_exactly_once(events, account)
    check_nothing_twice(events, acks, account)
    types = [e.type for e in events] + [kind for _, _, kind in account.held]
    started = types.count("appliance.started")
    assert started == ROUNDS + 1, f"seed {seed}: {started} starts recorded of {ROUNDS + 1}"
    assert sum(1 for e in events if e.type == "call.record") >= ROUNDS, f"seed {seed}: too few calls"
