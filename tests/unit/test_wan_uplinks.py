"""The primary/backup uplink selector, driven by hand with an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from appliance.wan.errors import ModeConfigError, ModeError
from appliance.wan.events import UplinkChanged, UplinkEvent, UseUplink
from appliance.wan.uplinks import TRANSITIONS, Uplink, UplinkSelector, UplinkState, check_transition

PRIMARY = Uplink("fibre", "wan0", "10.77.1.2", 10)
BACKUP = Uplink("lte", "wan1", "10.77.2.2", 20)
FAILOVER_AFTER = 2
REVERT_AFTER = 60.0


def make(now: float = 0.0, **overrides: object) -> UplinkSelector:
    kwargs: dict[str, object] = {
        "primary": PRIMARY,
        "backup": BACKUP,
        "failover_after": FAILOVER_AFTER,
        "revert_after": REVERT_AFTER,
        "now": now,
    }
    kwargs.update(overrides)
    return UplinkSelector(**kwargs)  # type: ignore[arg-type]


def drain(s: UplinkSelector) -> list[UplinkEvent]:
    out: list[UplinkEvent] = []
    while (event := s.next_event()) is not None:
        out.append(event)
    return out


def switches(events: list[UplinkEvent]) -> list[tuple[str | None, str]]:
    return [(e.old, e.new) for e in events if isinstance(e, UplinkChanged)]


def started() -> UplinkSelector:
    s = make()
    drain(s)
    return s


def on_backup_after_carrier_loss(now: float = 1.0) -> UplinkSelector:
    s = started()
    s.carrier_changed("wan0", False, now)
    drain(s)
    assert s.state is UplinkState.BACKUP
    return s


def test_start_commands_the_primary() -> None:
    s = make(now=5.0)
    assert drain(s) == [
        UseUplink("fibre", "10.77.1.2", "wan0"),
        UplinkChanged(None, "fibre", "start", 5.0),
    ]
    assert s.state is UplinkState.PRIMARY and s.active == PRIMARY and s.get_timer() is None


def test_primary_carrier_loss_switches_to_the_backup_at_once() -> None:
    s = started()
    s.carrier_changed("wan0", False, 3.0)
    assert drain(s) == [
        UseUplink("lte", "10.77.2.2", "wan1"),
        UplinkChanged("fibre", "lte", "carrier lost on wan0", 3.0),
    ]
    assert s.state is UplinkState.BACKUP and s.active == BACKUP and s.get_timer() is None


def test_primary_carrier_loss_with_no_backup_carrier_stays() -> None:
    s = started()
    s.carrier_changed("wan1", False, 1.0)
    s.carrier_changed("wan0", False, 2.0)
    assert drain(s) == [] and s.state is UplinkState.PRIMARY


def test_backup_carrier_arriving_while_the_primary_has_none_switches() -> None:
    s = started()
    s.carrier_changed("wan1", False, 1.0)
    s.carrier_changed("wan0", False, 2.0)
    s.carrier_changed("wan1", True, 3.0)
    assert switches(drain(s)) == [("fibre", "lte")]
    assert s.state is UplinkState.BACKUP


def test_return_to_the_primary_after_revert_after_of_carrier() -> None:
    s = on_backup_after_carrier_loss()
    s.carrier_changed("wan0", True, 10.0)
    assert drain(s) == [] and s.state is UplinkState.REVERTING
    assert s.get_timer() == 10.0 + REVERT_AFTER
    s.handle_timer(10.0 + REVERT_AFTER - 0.001)
    assert drain(s) == [] and s.active == BACKUP
    s.handle_timer(10.0 + REVERT_AFTER)
    assert drain(s) == [
        UseUplink("fibre", "10.77.1.2", "wan0"),
        UplinkChanged("lte", "fibre", f"carrier up on wan0 for {REVERT_AFTER:g} s", 10.0 + REVERT_AFTER),
    ]
    assert s.state is UplinkState.PRIMARY and s.get_timer() is None


def test_a_flapping_primary_gets_no_traffic_back() -> None:
    s = on_backup_after_carrier_loss()
    now = 1.0
    for _ in range(20):  # up 30 s, down 1 s: never the 60 s the hold-down asks
        now += 1.0
        s.carrier_changed("wan0", True, now)
        now += REVERT_AFTER / 2
        s.handle_timer(now)
        s.carrier_changed("wan0", False, now)
        assert s.state is UplinkState.BACKUP
    assert switches(drain(s)) == []
    s.carrier_changed("wan0", True, now + 1.0)
    s.handle_timer(now + 1.0 + REVERT_AFTER)
    assert switches(drain(s)) == [("lte", "fibre")]


def test_reverting_primary_losing_carrier_again_restarts_the_wait() -> None:
    s = on_backup_after_carrier_loss()
    s.carrier_changed("wan0", True, 10.0)
    s.carrier_changed("wan0", False, 20.0)
    assert s.state is UplinkState.BACKUP and s.get_timer() is None and drain(s) == []
    s.carrier_changed("wan0", True, 30.0)
    assert s.get_timer() == 30.0 + REVERT_AFTER


def test_backup_carrier_loss_while_reverting_returns_to_the_primary_at_once() -> None:
    s = on_backup_after_carrier_loss()
    s.carrier_changed("wan0", True, 10.0)
    s.carrier_changed("wan1", False, 11.0)
    assert switches(drain(s)) == [("lte", "fibre")]
    assert s.state is UplinkState.PRIMARY and s.get_timer() is None


def test_primary_back_while_the_backup_has_no_carrier_returns_at_once() -> None:
    s = on_backup_after_carrier_loss()
    s.carrier_changed("wan1", False, 5.0)
    assert s.state is UplinkState.BACKUP and drain(s) == []  # nothing better
    s.carrier_changed("wan0", True, 6.0)
    events = drain(s)
    assert switches(events) == [("lte", "fibre")]
    assert "none on the backup" in next(e for e in events if isinstance(e, UplinkChanged)).reason


def test_failed_probes_on_the_primary_switch_and_revert_after_the_hold_down() -> None:
    s = started()
    s.probe_failed(1.0, "timeout")
    assert drain(s) == []
    s.probe_failed(2.0, "timeout")
    events = drain(s)
    assert switches(events) == [("fibre", "lte")]
    change = next(e for e in events if isinstance(e, UplinkChanged))
    assert change.reason == "2 probe rounds failed on fibre, last: timeout"
    # the primary kept carrier: the hold-down runs from the switch
    assert s.state is UplinkState.REVERTING and s.get_timer() == 2.0 + REVERT_AFTER
    s.probe_answered(3.0)
    s.handle_timer(2.0 + REVERT_AFTER)
    assert switches(drain(s)) == [("lte", "fibre")]


def test_an_answer_resets_the_failure_count() -> None:
    s = started()
    for t in range(10):
        s.probe_failed(t + 0.0, "timeout")
        s.probe_answered(t + 0.5)
    assert drain(s) == [] and s.state is UplinkState.PRIMARY


def test_failed_probes_do_not_switch_to_a_backup_without_carrier() -> None:
    s = started()
    s.carrier_changed("wan1", False, 0.5)
    for t in range(5):
        s.probe_failed(1.0 + t, "503 from the cloud")
    assert drain(s) == [] and s.state is UplinkState.PRIMARY


def test_failed_probes_on_the_backup_return_to_a_primary_with_carrier() -> None:
    s = on_backup_after_carrier_loss()
    s.carrier_changed("wan0", True, 2.0)
    s.probe_failed(3.0, "timeout")
    s.probe_failed(4.0, "timeout")
    assert switches(drain(s)) == [("lte", "fibre")]
    assert s.state is UplinkState.PRIMARY


def test_failed_probes_on_the_backup_without_primary_carrier_stay() -> None:
    s = on_backup_after_carrier_loss()
    for t in range(5):
        s.probe_failed(2.0 + t, "timeout")
    assert drain(s) == [] and s.state is UplinkState.BACKUP


def test_cloud_down_on_both_uplinks_switches_once_only() -> None:
    s = started()
    now = 0.0
    for _ in range(20):
        now += 1.0
        s.probe_failed(now, "timeout")
    # one switch for the primary's failures; the backup's then prove the cloud, not the uplink, is down
    assert switches(drain(s)) == [("fibre", "lte")]
    s.handle_timer(2.0 + REVERT_AFTER)
    assert switches(drain(s)) == [("lte", "fibre")]
    for _ in range(5):
        now = max(now, 2.0 + REVERT_AFTER) + 1.0
        s.probe_failed(now, "timeout")
    assert drain(s) == [] and s.state is UplinkState.PRIMARY
    # an answer proves the path again: failures count once more
    s.probe_answered(now + 1.0)
    s.probe_failed(now + 2.0, "timeout")
    s.probe_failed(now + 3.0, "timeout")
    assert switches(drain(s)) == [("fibre", "lte")]


def test_failure_count_starts_again_after_a_switch() -> None:
    s = started()
    s.probe_failed(1.0, "timeout")  # one against the primary
    s.carrier_changed("wan0", False, 2.0)
    s.carrier_changed("wan0", True, 3.0)
    drain(s)
    s.probe_failed(4.0, "timeout")  # the first against the backup
    assert s.state is UplinkState.REVERTING and drain(s) == []


def test_unknown_interfaces_and_repeated_carrier_reports_are_ignored() -> None:
    s = started()
    s.carrier_changed("eth9", False, 1.0)
    s.carrier_changed("wan0", True, 2.0)
    assert drain(s) == [] and s.state is UplinkState.PRIMARY
    s.carrier_changed("wan0", False, 3.0)
    s.carrier_changed("wan0", False, 4.0)
    assert switches(drain(s)) == [("fibre", "lte")]


@pytest.mark.parametrize(("old", "new"), [(a, b) for a in UplinkState for b in UplinkState])
def test_transition_table(old: UplinkState, new: UplinkState) -> None:
    allowed = {
        (UplinkState.PRIMARY, UplinkState.BACKUP),
        (UplinkState.PRIMARY, UplinkState.REVERTING),
        (UplinkState.BACKUP, UplinkState.REVERTING),
        (UplinkState.BACKUP, UplinkState.PRIMARY),
        (UplinkState.REVERTING, UplinkState.PRIMARY),
        (UplinkState.REVERTING, UplinkState.BACKUP),
    }
    if (old, new) in allowed:
        check_transition(old, new)
    else:
        with pytest.raises(ModeError, match=f"illegal uplink transition {old.name} -> {new.name}"):
            check_transition(old, new)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"failover_after": 0}, "failover_after"),
        ({"revert_after": -1.0}, "revert_after"),
        ({"backup": Uplink("lte", "wan0", "10.77.2.2")}, "distinct"),
        ({"backup": Uplink("fibre", "wan1", "10.77.2.2")}, "distinct"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object], words: str) -> None:
    with pytest.raises(ModeConfigError, match=words):
        make(**overrides)


class SelectorMachine(RuleBasedStateMachine):
    """Random carrier, probe and clock inputs: the table holds, the active uplink always has carrier when
    one of them does, and a carrier event moves the route back to the primary only when the backup is dead."""

    def __init__(self) -> None:
        super().__init__()
        self.s = make()
        self.now = 0.0
        self.active = drain(self.s)[0]

    def _drain(self) -> None:
        for event in drain(self.s):
            if isinstance(event, UplinkChanged):
                assert event.old != event.new
            else:
                self.active = event

    @rule(dt=st.floats(0, 90))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.s.handle_timer(self.now)
        self._drain()

    @rule(ifname=st.sampled_from(["wan0", "wan1"]), carrier=st.booleans())
    def carrier(self, ifname: str, carrier: bool) -> None:
        before = self.s.state
        self.s.carrier_changed(ifname, carrier, self.now)
        self._drain()
        if before is not UplinkState.PRIMARY and self.s.state is UplinkState.PRIMARY and carrier:
            assert not self.s.carrier("wan1"), "back to the primary only on the hold-down or a dead backup"

    @rule(answered=st.booleans())
    def probe(self, answered: bool) -> None:
        if answered:
            self.s.probe_answered(self.now)
        else:
            self.s.probe_failed(self.now, "timeout")
        self._drain()

    @invariant()
    def command_matches_state(self) -> None:
        assert self.active.ifname == self.s.active.ifname

    @invariant()
    def reverting_only_with_primary_carrier(self) -> None:
        if self.s.state is UplinkState.REVERTING:
            assert self.s.carrier("wan0") and self.s.get_timer() is not None
        if self.s.state is UplinkState.BACKUP:
            assert not self.s.carrier("wan0")

    @invariant()
    def table_is_closed(self) -> None:
        assert self.s.state in TRANSITIONS


SelectorMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestSelectorMachine = SelectorMachine.TestCase
