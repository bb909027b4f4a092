"""Every call state of Q.931 §2.1 (user side) and §2.2 (network side) a PRI uses is entered, as the
machine's ``OLD -> NEW`` transition log shows, over the ordinary procedures run back to back."""

from __future__ import annotations

import logging
import re

import pytest

from appliance.pri.q931_model import PartyNumber
from tests.unit.test_pri_q931_machine import Pair, active_call

USER_STATES = {f"U{n}" for n in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 19, 25)}
NETWORK_STATES = {f"N{n}" for n in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 19, 25)}


def run_every_procedure() -> None:
    for caller in ("user", "network"):
        callee = "network" if caller == "user" else "user"
        # overlap, proceeding, alerting, connect, clearing by the caller
        pair = Pair()
        call = pair.machine(caller).setup(called=PartyNumber("1"), sending_complete=False, now=0.0)
        pair.pump()
        offer = pair.offered(callee).call
        pair.machine(callee).setup_acknowledge(offer, now=0.0)
        pair.pump()
        pair.machine(caller).information(call, "2", sending_complete=True, now=0.0)
        pair.machine(callee).proceeding(offer, now=0.0)
        pair.pump()
        pair.machine(callee).alerting(offer, now=0.0)
        pair.pump()
        pair.machine(callee).connect(offer, now=0.0)
        pair.pump()
        pair.machine(caller).disconnect(call, 16, now=0.0)
        pair.pump()
        # clearing by the callee
        pair = Pair()
        _, offer = active_call(pair, caller=caller)
        pair.machine(callee).disconnect(offer, 16, now=0.0)
        pair.pump()


def test_every_state_of_both_sides_is_entered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appliance.pri.q931")
    run_every_procedure()
    seen: set[str] = set()
    for record in caplog.records:
        match = re.search(r": ([UN]\d+) -> ([UN]\d+)$", record.getMessage())
        if match:
            seen.update(match.groups())
    assert seen >= USER_STATES, sorted(USER_STATES - seen)
    assert seen >= NETWORK_STATES, sorted(NETWORK_STATES - seen)
