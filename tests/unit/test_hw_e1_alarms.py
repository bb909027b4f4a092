"""Alarm integration (G.732 practice: red declared after a persistence time, cleared after a clear time)."""

from __future__ import annotations

from hw.e1.alarms import (
    SIM_ALARM_TIMES,
    Alarm,
    AlarmCleared,
    AlarmEvent,
    AlarmRaised,
    AlarmTimes,
    SpanAlarms,
)

WALL0 = 1_700_000_000.0


class Wall:
    """A wall clock a fixed offset from the monotonic ``now`` the test drives."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return WALL0 + self.now


def run_to(alarms: SpanAlarms, wall: Wall, until: float) -> list[AlarmEvent]:
    """Fire every deadline up to ``until`` as the glue's loop.call_at would, and collect the events."""
    while (deadline := alarms.get_timer()) is not None and deadline <= until:
        wall.now = deadline
        alarms.handle_timer(deadline)
    wall.now = until
    return drain(alarms)


def drain(alarms: SpanAlarms) -> list[AlarmEvent]:
    events = []
    while (event := alarms.next_event()) is not None:
        events.append(event)
    return events


def test_red_alarm_is_declared_after_the_persistence_time_and_cleared_after_the_clear_time() -> None:
    wall = Wall()
    alarms = SpanAlarms(span=3, wall=wall)
    alarms.defect(Alarm.LOS, True, 0.0)
    assert alarms.get_timer() == 2.5
    assert run_to(alarms, wall, 2.4) == []
    assert not alarms.red
    assert run_to(alarms, wall, 2.5) == [AlarmRaised(3, Alarm.LOS, WALL0 + 2.5)]
    assert alarms.red and not alarms.receive_ok
    assert alarms.active == {Alarm.LOS: WALL0 + 2.5}
    alarms.defect(Alarm.LOS, False, 5.0)
    assert alarms.get_timer() == 15.0
    assert run_to(alarms, wall, 14.9) == []
    assert alarms.red
    assert run_to(alarms, wall, 15.0) == [AlarmCleared(3, Alarm.LOS, WALL0 + 15.0, since=WALL0 + 2.5)]
    assert alarms.active == {}
    assert alarms.get_timer() is None


def test_a_defect_shorter_than_the_persistence_time_raises_nothing() -> None:
    wall = Wall()
    alarms = SpanAlarms(span=1, wall=wall)
    alarms.defect(Alarm.LOF, True, 0.0)
    alarms.defect(Alarm.LOF, False, 2.0)
    assert alarms.get_timer() is None
    assert run_to(alarms, wall, 100.0) == []


def test_a_defect_returning_during_the_clear_time_keeps_the_alarm_and_restarts_the_clear_time() -> None:
    wall = Wall()
    alarms = SpanAlarms(span=1, wall=wall)
    alarms.defect(Alarm.LOS, True, 0.0)
    run_to(alarms, wall, 3.0)
    alarms.defect(Alarm.LOS, False, 3.0)
    alarms.defect(Alarm.LOS, True, 8.0)  # bounces back before the 10 s clear time
    assert alarms.get_timer() is None
    alarms.defect(Alarm.LOS, False, 9.0)
    assert run_to(alarms, wall, 18.9) == []
    assert [type(e) for e in run_to(alarms, wall, 19.0)] == [AlarmCleared]


def test_blue_and_yellow_are_declared_and_cleared_at_once() -> None:
    wall = Wall()
    alarms = SpanAlarms(span=1, wall=wall)
    alarms.defect(Alarm.AIS, True, 1.0)
    alarms.defect(Alarm.RAI, True, 1.0)
    assert drain(alarms) == [AlarmRaised(1, Alarm.AIS, WALL0), AlarmRaised(1, Alarm.RAI, WALL0)]
    assert alarms.blue and alarms.yellow and not alarms.red
    assert not alarms.receive_ok  # AIS: nothing real is received
    alarms.defect(Alarm.AIS, False, 2.0)
    assert alarms.receive_ok  # yellow alone: the far end does not hear us, we hear it
    assert [e.alarm for e in drain(alarms)] == [Alarm.AIS]


def test_repeated_reports_of_the_same_state_change_nothing() -> None:
    wall = Wall()
    alarms = SpanAlarms(span=1, wall=wall)
    alarms.defect(Alarm.LOS, True, 0.0)
    alarms.defect(Alarm.LOS, True, 2.0)  # must not push the deadline back
    assert alarms.get_timer() == 2.5
    alarms.defect(Alarm.RAI, False, 2.0)
    assert drain(alarms) == []


def test_set_defects_reports_the_whole_set() -> None:
    wall = Wall()
    alarms = SpanAlarms(span=1, wall=wall, times=AlarmTimes(red_raise=1.0, red_clear=1.0))
    alarms.set_defects(frozenset({Alarm.LOS, Alarm.LOF, Alarm.RAI}), 0.0)
    assert alarms.defects == {Alarm.LOS, Alarm.LOF, Alarm.RAI}
    events = run_to(alarms, wall, 1.0)
    assert [e.alarm for e in events] == [Alarm.RAI, Alarm.LOS, Alarm.LOF]
    alarms.set_defects(frozenset(), 2.0)
    assert {e.alarm for e in run_to(alarms, wall, 3.0)} == {Alarm.LOS, Alarm.LOF, Alarm.RAI}
    assert alarms.active == {}


def test_simulated_span_times_put_a_vanished_far_end_in_alarm_within_a_second() -> None:
    assert SIM_ALARM_TIMES.red_raise < 1.0
    assert SIM_ALARM_TIMES.red_clear < 1.0
    assert AlarmTimes().raise_after(Alarm.LOS) == 2.5
    assert AlarmTimes().clear_after(Alarm.LOF) == 10.0
    assert Alarm.LOS.colour == "red" and Alarm.AIS.colour == "blue" and Alarm.RAI.colour == "yellow"
