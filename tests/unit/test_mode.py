"""The survivable-mode state machine, driven by hand with an injected clock."""

from __future__ import annotations

import logging
from itertools import product

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from appliance.wan import (
    FORCEABLE,
    TRANSITIONS,
    Event,
    Mode,
    ModeChanged,
    ModeConfigError,
    ModeError,
    ModeMachine,
    SendProbe,
    check_transition,
)

INTERVAL = 10.0
TIMEOUT = 2.0
FAST = 5.0  # max(INTERVAL / 2, TIMEOUT)
FAILURES = 3
SUCCESSES = 3
HOLD_DOWN = 30.0


def make(now: float = 0.0, **overrides: object) -> ModeMachine:
    kwargs: dict[str, object] = {
        "cloud_configured": True,
        "probe_interval": INTERVAL,
        "probe_timeout": TIMEOUT,
        "probe_failures": FAILURES,
        "probe_successes": SUCCESSES,
        "hold_down": HOLD_DOWN,
        "now": now,
    }
    kwargs.update(overrides)
    return ModeMachine(**kwargs)  # type: ignore[arg-type]


def drain(m: ModeMachine) -> list[Event]:
    out: list[Event] = []
    while (event := m.next_event()) is not None:
        out.append(event)
    return out


def probe_id(events: list[Event]) -> int:
    probes = [e.probe_id for e in events if isinstance(e, SendProbe)]
    assert len(probes) == 1, events
    return probes[0]


def changes(events: list[Event]) -> list[tuple[Mode, Mode]]:
    return [(e.old, e.new) for e in events if isinstance(e, ModeChanged)]


def online(now: float = 0.0, **overrides: object) -> tuple[ModeMachine, float]:
    """A machine that booted at ``now`` and went ONLINE on its first answer; returns it and the time."""
    m = make(now, **overrides)
    pid = probe_id(drain(m))
    m.probe_answered(pid, now + 0.1)
    assert m.mode is Mode.ONLINE
    drain(m)
    return m, now + 0.1


def fire(m: ModeMachine) -> float:
    """Fire the machine's timer exactly at its deadline, as the glue's ``call_at`` would."""
    now = m.get_timer()
    assert now is not None
    m.handle_timer(now)
    return now


def send_next(m: ModeMachine) -> int:
    """Let the next probe go out; returns its id."""
    fire(m)
    return probe_id(drain(m))


def fail_next(m: ModeMachine, delay: float = 0.0) -> float:
    """Let the next probe go out and report it failed ``delay`` later; returns its send time."""
    now = fire(m)
    m.probe_failed(probe_id(drain(m)), now + delay, "503")
    return now


def answer_next(m: ModeMachine, delay: float = 0.0) -> float:
    """Let the next probe go out and report it answered ``delay`` later; returns its send time."""
    now = fire(m)
    m.probe_answered(probe_id(drain(m)), now + delay)
    return now


def survivable_after_outage(**overrides: object) -> tuple[ModeMachine, float]:
    """An ONLINE machine that lost the cloud: SURVIVABLE, probation over, no probe outstanding."""
    m, now = online(0.0, **overrides)
    for _ in range(FAILURES):
        now = fail_next(m)
    assert m.mode is Mode.SURVIVABLE and not m.on_probation
    drain(m)
    return m, now


# -- the table ----------------------------------------------------------------------------------------------
def test_transition_table_covers_every_mode_and_guards_the_rest() -> None:
    assert set(TRANSITIONS) == set(Mode)
    for old, new in product(Mode, Mode):
        if new in TRANSITIONS[old]:
            check_transition(old, new)
        else:
            with pytest.raises(ModeError, match=f"{old.name} -> {new.name}"):
                check_transition(old, new)
    # The documented path and nothing that skips a step on evidence alone.
    assert Mode.RECOVERING not in TRANSITIONS[Mode.ONLINE]
    assert Mode.RECOVERING not in TRANSITIONS[Mode.SUSPECT]
    assert Mode.SUSPECT not in TRANSITIONS[Mode.SURVIVABLE]
    assert all(old not in TRANSITIONS[old] for old in Mode)


@pytest.mark.parametrize(
    "overrides",
    [
        {"probe_timeout": 0.0},
        {"probe_interval": 1.0, "probe_timeout": 2.0},
        {"probe_failures": 0},
        {"probe_successes": 0},
        {"hold_down": -1.0},
        {"probe_interval": float("nan")},
    ],
)
def test_bad_configuration_is_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ModeConfigError) as info:
        make(**overrides)  # type: ignore[arg-type]
    assert info.value.code == 78


# -- no cloud -----------------------------------------------------------------------------------------------
def test_without_cloud_it_is_survivable_for_good_and_never_probes() -> None:
    m = make(cloud_configured=False)
    assert m.mode is Mode.SURVIVABLE and not m.routes_to_cloud and not m.on_probation
    assert drain(m) == [] and m.get_timer() is None
    m.handle_timer(100.0)
    m.probe_answered(1, 100.0)
    m.link_down(101.0, "wan0")
    m.link_up(102.0, "wan0")
    m.cloud_leg_media_timeout(103.0)
    m.clear_force(104.0)
    assert m.mode is Mode.SURVIVABLE and drain(m) == [] and m.get_timer() is None
    assert m.down_links == frozenset()
    with pytest.raises(ModeError, match="no cloud"):
        m.force(Mode.ONLINE, 105.0, "test")
    m.force(Mode.SURVIVABLE, 105.0, "pin")  # already there: accepted, nothing moves
    assert m.mode is Mode.SURVIVABLE and drain(m) == []


# -- boot ---------------------------------------------------------------------------------------------------
def test_boot_is_survivable_and_probes_at_once() -> None:
    m = make(now=50.0)
    assert m.mode is Mode.SURVIVABLE and not m.routes_to_cloud and m.on_probation
    assert drain(m) == [SendProbe(1)]
    assert m.outstanding_probe == 1
    assert m.get_timer() == 52.0  # the probe's deadline


def test_boot_with_a_healthy_wan_goes_online_on_the_first_answer_without_hold_down() -> None:
    m = make()
    drain(m)
    m.probe_answered(1, 0.25)
    (change,) = drain(m)
    assert isinstance(change, ModeChanged)
    assert (change.old, change.new, change.at) == (Mode.SURVIVABLE, Mode.ONLINE, 0.25)
    assert "after boot" in change.reason
    assert m.routes_to_cloud and not m.on_probation
    assert m.get_timer() == 0.0 + INTERVAL  # ONLINE probes at the slow interval from the send time


def test_boot_probation_survives_fewer_than_probe_failures_misses() -> None:
    m = make()
    drain(m)
    for expected_id in range(1, FAILURES):
        assert fire(m) == (expected_id - 1) * FAST + TIMEOUT  # the probe times out
        assert m.mode is Mode.SURVIVABLE and m.on_probation
        assert fire(m) == expected_id * FAST  # the next probe goes out
        assert drain(m) == [SendProbe(expected_id + 1)]
    m.probe_answered(FAILURES, (FAILURES - 1) * FAST + 0.5)
    assert changes(drain(m)) == [(Mode.SURVIVABLE, Mode.ONLINE)]


def test_boot_probation_ends_after_probe_failures_misses_then_recovery_needs_hold_down() -> None:
    m = make()
    drain(m)
    for pid in range(1, FAILURES + 1):
        m.probe_failed(pid, (pid - 1) * FAST, "timeout at the edge")
        if pid < FAILURES:
            assert m.on_probation
            fire(m)
            assert drain(m) == [SendProbe(pid + 1)]
    assert not m.on_probation and m.mode is Mode.SURVIVABLE
    answer_next(m, 0.1)
    assert changes(drain(m)) == [(Mode.SURVIVABLE, Mode.RECOVERING)]
    assert not m.routes_to_cloud


# -- ONLINE / SUSPECT ---------------------------------------------------------------------------------------
def test_online_probes_every_interval_and_a_timeout_makes_it_suspect() -> None:
    m, _ = online()
    assert fire(m) == INTERVAL
    assert drain(m) == [SendProbe(2)]
    assert m.get_timer() == INTERVAL + TIMEOUT
    m.handle_timer(INTERVAL + TIMEOUT - 0.001)
    assert m.mode is Mode.ONLINE and drain(m) == []
    assert fire(m) == INTERVAL + TIMEOUT
    (change,) = drain(m)
    assert isinstance(change, ModeChanged)
    assert (change.old, change.new, change.at) == (Mode.ONLINE, Mode.SUSPECT, INTERVAL + TIMEOUT)
    assert "probe 2 unanswered" in change.reason
    assert m.routes_to_cloud  # SUSPECT still tries the cloud first
    assert m.get_timer() == INTERVAL + FAST  # faster probing while suspect


def test_suspect_goes_back_online_on_one_answer() -> None:
    m, _ = online()
    send_next(m)
    m.probe_failed(2, INTERVAL + 0.1, "408")
    assert m.mode is Mode.SUSPECT
    drain(m)
    now = answer_next(m, 0.1)
    assert changes(drain(m)) == [(Mode.SUSPECT, Mode.ONLINE)]
    assert m.get_timer() == now + INTERVAL


def test_suspect_becomes_survivable_after_probe_failures_consecutive_misses() -> None:
    m, _ = online()
    seen: list[tuple[Mode, Mode]] = []
    times = []
    for _ in range(FAILURES):
        fire(m)  # the next probe
        drain(m)
        times.append(fire(m))  # its timeout
        seen += changes(drain(m))
    assert seen == [(Mode.ONLINE, Mode.SUSPECT), (Mode.SUSPECT, Mode.SURVIVABLE)]
    assert times == [INTERVAL + TIMEOUT, INTERVAL + FAST + TIMEOUT, INTERVAL + 2 * FAST + TIMEOUT]
    assert not m.routes_to_cloud and not m.on_probation


def test_one_probe_failure_threshold_passes_through_suspect_at_once() -> None:
    m, _ = online(probe_failures=1)
    fire(m)
    drain(m)
    m.probe_failed(2, INTERVAL + 0.5, "no route to host")
    events = drain(m)
    assert changes(events) == [(Mode.ONLINE, Mode.SUSPECT), (Mode.SUSPECT, Mode.SURVIVABLE)]
    assert all(e.at == INTERVAL + 0.5 for e in events if isinstance(e, ModeChanged))


def test_an_answer_between_misses_resets_the_count() -> None:
    m, _ = online()
    modes = []
    for step in (fail_next, fail_next, answer_next, fail_next, fail_next):
        step(m)
        modes.append(m.mode)
    assert FAILURES == 3  # two misses, an answer, two misses: never SURVIVABLE
    assert modes == [Mode.SUSPECT, Mode.SUSPECT, Mode.ONLINE, Mode.SUSPECT, Mode.SUSPECT]


# -- late and stray answers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("timer_fired", [True, False])
def test_answers_at_or_after_the_deadline_are_late(timer_fired: bool) -> None:
    m, _ = online()
    send_next(m)
    if timer_fired:
        m.handle_timer(INTERVAL + TIMEOUT)
    m.probe_answered(2, INTERVAL + TIMEOUT)  # on the deadline, whether or not the glue's timer ran
    m.probe_answered(2, INTERVAL + TIMEOUT + 0.5)
    assert changes(drain(m)) == [(Mode.ONLINE, Mode.SUSPECT)]


def test_answers_and_failures_for_unknown_ids_are_ignored() -> None:
    m = make()
    drain(m)
    m.probe_answered(7, 0.1)
    m.probe_failed(0, 0.1, "x")
    assert m.mode is Mode.SURVIVABLE and m.on_probation and m.outstanding_probe == 1
    m.probe_answered(1, 0.2)
    m.probe_answered(1, 0.3)  # a duplicate answer counts once
    assert changes(drain(m)) == [(Mode.SURVIVABLE, Mode.ONLINE)]


# -- SURVIVABLE / RECOVERING --------------------------------------------------------------------------------
def recovering() -> tuple[ModeMachine, float]:
    m, _ = survivable_after_outage()
    now = answer_next(m)
    assert changes(drain(m)) == [(Mode.SURVIVABLE, Mode.RECOVERING)]
    return m, now


def test_survivable_keeps_probing_fast_and_an_answer_starts_recovering() -> None:
    m, now = survivable_after_outage()
    assert m.get_timer() == now + FAST
    pid = send_next(m)
    sent = now + FAST
    assert m.get_timer() == sent + TIMEOUT
    m.probe_answered(pid, sent + 0.2)
    assert changes(drain(m)) == [(Mode.SURVIVABLE, Mode.RECOVERING)]
    assert not m.routes_to_cloud
    assert m.get_timer() == sent + FAST


@pytest.mark.parametrize("evidence", ["probe failure", "probe timeout", "carrier loss", "media timeout"])
def test_recovering_goes_back_to_survivable_on_any_bad_evidence(evidence: str) -> None:
    m, since = recovering()
    if evidence == "probe failure":
        fail_next(m, 0.1)
    elif evidence == "probe timeout":
        send_next(m)
        fire(m)
    elif evidence == "carrier loss":
        m.link_down(since + 1.0, "wan0")
    else:
        m.cloud_leg_media_timeout(since + 0.5)
    assert changes(drain(m)) == [(Mode.RECOVERING, Mode.SURVIVABLE)]
    assert m.get_timer() is not None and not m.routes_to_cloud


def test_recovering_becomes_online_exactly_when_hold_down_elapses() -> None:
    m, since = recovering()
    for _ in range(SUCCESSES - 1):
        answer_next(m, 0.1)
    assert m.mode is Mode.RECOVERING and drain(m) == []
    # Enough answers; now only the hold-down is left. Keep answering the probes until its end.
    while True:
        timer = m.get_timer()
        assert timer is not None
        if timer >= since + HOLD_DOWN:
            break
        m.handle_timer(timer)
        for event in drain(m):
            assert isinstance(event, SendProbe)
            m.probe_answered(event.probe_id, timer + 0.1)
    assert m.get_timer() == since + HOLD_DOWN
    m.handle_timer(since + HOLD_DOWN - 1e-6)
    assert m.mode is Mode.RECOVERING
    m.handle_timer(since + HOLD_DOWN)
    events = drain(m)
    assert changes(events) == [(Mode.RECOVERING, Mode.ONLINE)]
    change = next(e for e in events if isinstance(e, ModeChanged))
    assert change.at == since + HOLD_DOWN
    assert m.routes_to_cloud


def test_recovering_waits_for_probe_successes_even_after_hold_down() -> None:
    m, _ = survivable_after_outage(probe_successes=4, hold_down=1.0)
    answers_at = []
    while m.mode is not Mode.ONLINE:
        answers_at.append(answer_next(m))
    assert len(answers_at) == 4  # the hold-down ended after the second
    assert changes(drain(m)) == [(Mode.RECOVERING, Mode.ONLINE)]


def test_zero_hold_down_and_one_success_recover_on_the_first_answer() -> None:
    m, _ = survivable_after_outage(probe_successes=1, hold_down=0.0)
    answer_next(m)
    assert changes(drain(m)) == [(Mode.SURVIVABLE, Mode.RECOVERING), (Mode.RECOVERING, Mode.ONLINE)]


# -- links and media ----------------------------------------------------------------------------------------
def test_carrier_loss_makes_online_suspect_at_once_and_probes_immediately() -> None:
    m, _ = online()
    m.link_down(3.0, "wan0")
    events = drain(m)
    assert changes(events) == [(Mode.ONLINE, Mode.SUSPECT)]
    assert events[-1] == SendProbe(2)
    assert m.down_links == frozenset({"wan0"})
    assert m.get_timer() == 3.0 + TIMEOUT
    # Carrier loss is not a miss: probe_failures misses of the probes are still needed.
    m.probe_failed(2, 3.5, "network unreachable")
    for _ in range(FAILURES - 1):
        assert m.mode is Mode.SUSPECT
        fail_next(m)
    assert changes(drain(m)) == [(Mode.SUSPECT, Mode.SURVIVABLE)]


def test_a_link_event_supersedes_the_outstanding_probe() -> None:
    m, _ = online()
    fire(m)
    assert drain(m) == [SendProbe(2)]
    m.link_down(INTERVAL + 0.5, "wan1")
    assert drain(m)[-1] == SendProbe(3)
    m.probe_answered(2, INTERVAL + 0.6)  # left over the old path: ignored
    assert m.mode is Mode.SUSPECT
    m.probe_answered(3, INTERVAL + 0.7)
    assert changes(drain(m)) == [(Mode.SUSPECT, Mode.ONLINE)]


def test_link_up_probes_at_once_but_changes_nothing_by_itself() -> None:
    m, now = survivable_after_outage()
    m.link_down(now + 1.0, "wan0")
    drain(m)
    m.link_up(now + 2.0, "wan0")
    events = drain(m)
    assert changes(events) == [] and len(events) == 1 and isinstance(events[0], SendProbe)
    assert m.down_links == frozenset() and m.mode is Mode.SURVIVABLE
    m.probe_answered(events[0].probe_id, now + 2.1)
    assert changes(drain(m)) == [(Mode.SURVIVABLE, Mode.RECOVERING)]


def test_media_timeout_counts_as_one_miss_per_probe() -> None:
    m, _ = online()
    for _ in range(5):  # one WAN fault times out every cloud leg at once
        m.cloud_leg_media_timeout(4.0)
    assert changes(drain(m)) == [(Mode.ONLINE, Mode.SUSPECT)]
    send_next(m)  # the next probe goes out at 5.0
    m.cloud_leg_media_timeout(5.5)  # miss 2
    m.cloud_leg_media_timeout(5.6)
    assert m.mode is Mode.SUSPECT
    m.probe_failed(m.outstanding_probe, 6.0, "x")  # type: ignore[arg-type]  # miss 3
    assert changes(drain(m)) == [(Mode.SUSPECT, Mode.SURVIVABLE)]


# -- operator override --------------------------------------------------------------------------------------
def test_forced_survivable_pins_the_mode_and_stops_probing() -> None:
    m, _ = online()
    m.force(Mode.SURVIVABLE, 1.0, "cloud maintenance")
    (change,) = drain(m)
    assert isinstance(change, ModeChanged)
    assert (change.old, change.new, change.at) == (Mode.ONLINE, Mode.SURVIVABLE, 1.0)
    assert "cloud maintenance" in change.reason
    assert m.forced is Mode.SURVIVABLE and m.get_timer() is None and m.outstanding_probe is None
    m.handle_timer(100.0)
    m.probe_answered(1, 100.0)
    m.link_up(100.0, "wan0")
    m.cloud_leg_media_timeout(100.0)
    assert m.mode is Mode.SURVIVABLE and drain(m) == []
    # Released: a probe at once, then the ordinary recovery path with its hold-down.
    m.clear_force(200.0)
    assert m.forced is None
    m.probe_answered(probe_id(drain(m)), 200.1)
    assert changes(drain(m)) == [(Mode.SURVIVABLE, Mode.RECOVERING)]


def test_forced_online_ignores_misses_until_cleared() -> None:
    m = make()
    drain(m)
    m.force(Mode.ONLINE, 0.5, "probes blocked by a firewall")
    assert changes(drain(m)) == [(Mode.SURVIVABLE, Mode.ONLINE)]
    m.link_down(1.0, "wan0")
    m.cloud_leg_media_timeout(2.0)
    assert m.mode is Mode.ONLINE and drain(m) == [] and m.down_links == frozenset({"wan0"})
    m.clear_force(3.0)
    m.probe_failed(probe_id(drain(m)), 3.1, "x")
    assert changes(drain(m)) == [(Mode.ONLINE, Mode.SUSPECT)]


def test_forcing_the_evidence_modes_is_refused() -> None:
    m = make()
    for mode in set(Mode) - FORCEABLE:
        with pytest.raises(ModeError, match=mode.name):
            m.force(mode, 0.0, "x")
    assert m.forced is None and m.mode is Mode.SURVIVABLE


def test_clear_force_without_a_pin_does_nothing() -> None:
    m, _ = online()
    m.clear_force(1.0)
    assert drain(m) == [] and m.mode is Mode.ONLINE


def test_transitions_are_logged_old_to_new(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appliance.wan.mode")
    online()
    assert any("SURVIVABLE -> ONLINE" in r.getMessage() for r in caplog.records)


# -- random inputs ------------------------------------------------------------------------------------------
class ModeMachineModel(RuleBasedStateMachine):
    """Random inputs; every emitted transition is checked against the table and the evidence fed in."""

    @initialize(
        cloud=st.booleans() | st.just(True),
        failures=st.integers(1, 4),
        successes=st.integers(1, 4),
        hold_down=st.sampled_from([0.0, 7.5, 30.0]),
    )
    def boot(self, cloud: bool, failures: int, successes: int, hold_down: float) -> None:
        self.now = 0.0
        self.cloud = cloud
        self.successes = successes
        self.hold_down = hold_down
        self.m = make(
            cloud_configured=cloud, probe_failures=failures, probe_successes=successes, hold_down=hold_down
        )
        self.mode = Mode.SURVIVABLE
        self.sent: list[int] = []
        self.sent_at: dict[int, float] = {}
        self.recovering_since: float | None = None
        self.answers_in_recovery = 0
        self.collect(accepted_answer=False, forced=False)

    def collect(self, *, accepted_answer: bool, forced: bool) -> None:
        for event in drain(self.m):
            if isinstance(event, SendProbe):
                assert self.cloud and self.m.forced is None
                assert not self.sent or event.probe_id > self.sent[-1]
                self.sent.append(event.probe_id)
                self.sent_at[event.probe_id] = self.now
                continue
            assert event.old is self.mode and event.at == self.now
            check_transition(event.old, event.new)
            if event.new is Mode.ONLINE and not forced:
                assert self.cloud
                if event.old is Mode.RECOVERING:
                    assert self.recovering_since is not None
                    assert self.now >= self.recovering_since + self.hold_down
                    assert self.answers_in_recovery >= self.successes
                else:
                    assert accepted_answer, "ONLINE without an answered probe"
            if event.new is Mode.RECOVERING:
                assert accepted_answer and not forced
                self.recovering_since = self.now
                self.answers_in_recovery = 1
            self.mode = event.new

    @rule(dt=st.floats(0.0, 20.0), fire_timers=st.booleans())
    def advance(self, dt: float, fire_timers: bool) -> None:
        target = self.now + dt
        while fire_timers and (timer := self.m.get_timer()) is not None and timer <= target:
            self.now = max(self.now, timer)
            self.m.handle_timer(self.now)
            self.collect(accepted_answer=False, forced=False)
        self.now = target

    @rule(stale=st.booleans())
    def answer(self, stale: bool) -> None:
        # The deadlines due now first (the input would process them anyway), so that the answer's own
        # effect is seen on its own.
        self.m.handle_timer(self.now)
        self.collect(accepted_answer=False, forced=False)
        pid = self.m.outstanding_probe
        if stale or pid is None:
            pid = self.sent[0] if self.sent else 0
        before = self.m.outstanding_probe
        self.m.probe_answered(pid, self.now)
        on_time = pid == before and self.now < self.sent_at[pid] + TIMEOUT
        if on_time and self.mode is Mode.RECOVERING:
            self.answers_in_recovery += 1
        self.collect(accepted_answer=on_time, forced=False)

    @precondition(lambda self: self.m.outstanding_probe is not None)
    @rule()
    def fail(self) -> None:
        self.m.probe_failed(self.m.outstanding_probe, self.now, "503")  # type: ignore[arg-type]
        self.collect(accepted_answer=False, forced=False)

    @rule(ifname=st.sampled_from(["wan0", "wan1"]), up=st.booleans())
    def link(self, ifname: str, up: bool) -> None:
        if up:
            self.m.link_up(self.now, ifname)
        else:
            self.m.link_down(self.now, ifname)
        self.collect(accepted_answer=False, forced=False)

    @rule()
    def media_timeout(self) -> None:
        self.m.cloud_leg_media_timeout(self.now)
        self.collect(accepted_answer=False, forced=False)

    @rule(mode=st.sampled_from(sorted(FORCEABLE, key=lambda m: m.value)))
    def force(self, mode: Mode) -> None:
        if mode is Mode.ONLINE and not self.cloud:
            with pytest.raises(ModeError):
                self.m.force(mode, self.now, "noc")
            return
        self.m.force(mode, self.now, "noc")
        self.collect(accepted_answer=False, forced=True)
        assert self.m.mode is mode

    @rule()
    def clear_force(self) -> None:
        self.m.clear_force(self.now)
        self.collect(accepted_answer=False, forced=False)

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "m"):
            return
        assert self.m.mode is self.mode
        assert self.m.routes_to_cloud == (self.mode in (Mode.ONLINE, Mode.SUSPECT))
        if not self.cloud:
            assert self.mode is Mode.SURVIVABLE and not self.sent
        if self.m.forced is not None:
            assert self.mode is self.m.forced and self.m.get_timer() is None
        elif self.cloud:
            assert self.m.get_timer() is not None


ModeMachineModel.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_mode_machine_model = ModeMachineModel.TestCase
