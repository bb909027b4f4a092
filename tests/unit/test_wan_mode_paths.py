"""The mode machine's inputs for the uplink selector: probe outcomes told to an observer, path changes."""

from __future__ import annotations

import pytest

from appliance.wan import Mode, ModeChanged, ModeMachine, SendProbe


def make(**overrides: object) -> ModeMachine:
    """A mode machine with a cloud, booted at 0 (first probe out); the other WAN tests use it too."""
    kwargs: dict[str, object] = {
        "cloud_configured": True,
        "probe_interval": 10.0,
        "probe_timeout": 2.0,
        "probe_failures": 3,
        "probe_successes": 1,
        "hold_down": 0.0,
        "now": 0.0,
    }
    kwargs.update(overrides)
    return ModeMachine(**kwargs)  # type: ignore[arg-type]


def test_observer_hears_answers_failures_and_timeouts_that_count() -> None:
    m = make()
    seen: list[tuple[int, bool, str, float]] = []
    m.set_probe_observer(lambda *outcome: seen.append(outcome))
    m.probe_answered(1, 0.5)
    m.handle_timer(10.0)  # probe 2 goes out
    m.probe_failed(2, 10.1, "503 from the cloud")
    m.handle_timer(15.0)  # probe 3 goes out (fast interval outside ONLINE)
    m.handle_timer(17.0)  # and times out
    m.probe_answered(3, 17.5)  # too late: not told
    m.probe_answered(99, 17.6)  # not outstanding: not told
    assert seen == [
        (1, True, "answered", 0.5),
        (2, False, "503 from the cloud", 10.1),
        (3, False, "probe 3 unanswered after 2 s", 17.0),
    ]


def test_superseded_probe_is_not_told() -> None:
    m = make()
    seen: list[tuple[int, bool, str, float]] = []
    m.set_probe_observer(lambda *outcome: seen.append(outcome))
    m.path_changed(0.5, "route moved to the backup")
    m.handle_timer(2.0)  # probe 1's deadline: superseded, nothing to tell
    assert seen == []
    m.handle_timer(2.5)
    assert seen == [(2, False, "probe 2 unanswered after 2 s", 2.5)]


def test_path_change_sends_a_probe_at_once_and_keeps_the_mode() -> None:
    m = make()
    m.probe_answered(1, 0.1)
    while m.next_event() is not None:
        pass
    m.path_changed(3.0, "route moved to the backup")
    assert m.next_event() == SendProbe(2) and m.mode is Mode.ONLINE
    assert m.get_timer() == 5.0  # the new probe's deadline


def test_path_change_without_cloud_or_when_forced_does_nothing() -> None:
    m = make(cloud_configured=False)
    m.path_changed(1.0, "x")
    assert m.next_event() is None
    m = make()
    m.force(Mode.SURVIVABLE, 0.0, "maintenance")
    while m.next_event() is not None:
        pass
    m.path_changed(1.0, "x")
    assert m.next_event() is None


def test_carrier_lost_on_the_last_link_is_survivable_at_once() -> None:
    for start in (Mode.ONLINE, Mode.SUSPECT, Mode.RECOVERING):
        m = make(hold_down=30.0)
        m.probe_answered(1, 0.1)  # ONLINE
        if start is Mode.SUSPECT:
            m.link_down(0.2, "wan1")
        elif start is Mode.RECOVERING:
            m.link_down(0.2, "wan0", no_path=True)
            m.link_up(0.3, "wan0")
            probe = m.outstanding_probe
            assert probe is not None
            m.probe_answered(probe, 0.4)
        assert m.mode is start
        m.link_down(1.0, "wan0", no_path=True)
        assert m.mode is Mode.SURVIVABLE
        assert m.outstanding_probe is not None  # and a probe out, to notice the way back


def test_carrier_lost_on_the_last_link_in_probation_keeps_probation() -> None:
    m = make()
    m.link_down(0.5, "wan0", no_path=True)
    assert m.mode is Mode.SURVIVABLE and m.on_probation


def silent_drop_to_survivable(interval: float, timeout: float, failures: int) -> float:
    """Seconds from a silent drop right after an answered probe (the worst case) to SURVIVABLE."""
    m = make(probe_interval=interval, probe_timeout=timeout, probe_failures=failures)
    m.probe_answered(1, 0.0)
    assert m.mode is Mode.ONLINE
    while m.mode is not Mode.SURVIVABLE:  # nothing is answered any more
        due = m.get_timer()
        assert due is not None
        m.handle_timer(due)
    return next(
        e.at for e in iter(m.next_event, None) if isinstance(e, ModeChanged) and e.new is Mode.SURVIVABLE
    )


@pytest.mark.parametrize(
    ("interval", "timeout", "failures", "worst"),
    [(1.0, 0.5, 2, 2.0), (1.0, 0.5, 3, 2.5), (5.0, 2.0, 3, 12.0), (2.0, 0.5, 2, 3.5)],
)
def test_silent_drop_worst_case_matches_the_documented_formula(
    interval: float, timeout: float, failures: int, worst: float
) -> None:
    fast = max(interval / 2, timeout)
    assert interval + (failures - 1) * fast + timeout == worst
    assert silent_drop_to_survivable(interval, timeout, failures) == pytest.approx(worst)
