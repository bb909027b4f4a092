"""Business hours: open/closed by the local wall clock, across summer-time changes in both hemispheres, a
zone that abolished summer time, one that never had it, holidays, split days and exact boundaries."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.ivr.errors import IvrError
from appliance.ivr.hours import HORIZON_DAYS, ScheduleError, is_open, load_zone, next_change
from appliance.ivr.model import Schedule

PROFILE = settings(
    max_examples=int(os.environ.get("APPLIANCE_FUZZ_EXAMPLES", "60")),
    derandomize="APPLIANCE_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NINE_TO_FIVE = ((9 * 60, 17 * 60),)
WEEKDAYS = dict.fromkeys(range(5), NINE_TO_FIVE)
EVERY_DAY = dict.fromkeys(range(7), NINE_TO_FIVE)


def local(zone: str, *args: int, fold: int = 0) -> float:
    """The POSIX instant the wall clock in ``zone`` reads ``args`` (year, month, day, hour, minute ...)."""
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).timestamp()  # type: ignore[misc]


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


# --- plain weeks -------------------------------------------------------------------------------------------


def test_boundaries_are_start_inclusive_end_exclusive() -> None:
    shop = Schedule("Europe/Berlin", WEEKDAYS)
    # Tuesday 24 November 2026, CET (+01:00).
    assert not is_open(shop, local("Europe/Berlin", 2026, 11, 24, 8, 59, 59))
    assert is_open(shop, local("Europe/Berlin", 2026, 11, 24, 9, 0))
    assert is_open(shop, utc(2026, 11, 24, 8, 0))  # the same instant, written in UTC
    assert is_open(shop, local("Europe/Berlin", 2026, 11, 24, 16, 59, 59))
    assert is_open(shop, local("Europe/Berlin", 2026, 11, 24, 17, 0) - 0.001)
    assert not is_open(shop, local("Europe/Berlin", 2026, 11, 24, 17, 0))


def test_days_not_listed_are_closed() -> None:
    no_wednesdays = Schedule("Europe/Berlin", {0: NINE_TO_FIVE, 1: NINE_TO_FIVE, 3: NINE_TO_FIVE})
    assert is_open(no_wednesdays, local("Europe/Berlin", 2026, 11, 24, 12, 0))  # Tuesday
    assert not is_open(no_wednesdays, local("Europe/Berlin", 2026, 11, 25, 12, 0))  # Wednesday
    assert is_open(no_wednesdays, local("Europe/Berlin", 2026, 11, 26, 12, 0))  # Thursday
    assert not is_open(no_wednesdays, local("Europe/Berlin", 2026, 11, 28, 12, 0))  # Saturday
    assert not is_open(Schedule("Europe/Berlin", {}), local("Europe/Berlin", 2026, 11, 24, 12, 0))


def test_split_day_closes_for_lunch() -> None:
    split = Schedule("Europe/Berlin", dict.fromkeys(range(5), ((9 * 60, 12 * 60), (13 * 60, 17 * 60))))
    assert is_open(split, local("Europe/Berlin", 2026, 11, 24, 11, 59, 59))
    assert not is_open(split, local("Europe/Berlin", 2026, 11, 24, 12, 0))
    assert not is_open(split, local("Europe/Berlin", 2026, 11, 24, 12, 59, 59))
    assert is_open(split, local("Europe/Berlin", 2026, 11, 24, 13, 0))
    assert next_change(split, local("Europe/Berlin", 2026, 11, 24, 10, 0)) == local(
        "Europe/Berlin", 2026, 11, 24, 12, 0
    )
    assert next_change(split, local("Europe/Berlin", 2026, 11, 24, 12, 0)) == local(
        "Europe/Berlin", 2026, 11, 24, 13, 0
    )


def test_interval_ending_at_midnight() -> None:
    # Friday 18:00-24:00, Saturday 00:00-02:00: open across midnight without a flip at 00:00.
    late = Schedule("Asia/Dubai", {4: ((18 * 60, 1440),), 5: ((0, 120),)})
    assert is_open(late, local("Asia/Dubai", 2026, 11, 27, 23, 59, 59) + 0.999)
    assert is_open(late, local("Asia/Dubai", 2026, 11, 28, 0, 0))
    assert next_change(late, local("Asia/Dubai", 2026, 11, 27, 20, 0)) == local(
        "Asia/Dubai", 2026, 11, 28, 2, 0
    )
    friday_only = Schedule("Asia/Dubai", {4: ((18 * 60, 1440),)})
    assert not is_open(friday_only, local("Asia/Dubai", 2026, 11, 28, 0, 0))
    assert next_change(friday_only, local("Asia/Dubai", 2026, 11, 27, 20, 0)) == local(
        "Asia/Dubai", 2026, 11, 28, 0, 0
    )


def test_whole_day_interval_is_open_around_the_clock() -> None:
    always = Schedule("Europe/Berlin", dict.fromkeys(range(7), ((0, 1440),)))
    assert is_open(always, local("Europe/Berlin", 2026, 11, 24, 0, 0))
    assert is_open(always, local("Europe/Berlin", 2026, 11, 24, 23, 59, 59))
    assert next_change(always, local("Europe/Berlin", 2026, 11, 24, 12, 0)) is None
    assert next_change(Schedule("Europe/Berlin", {}), utc(2026, 11, 24)) is None


# --- holidays ----------------------------------------------------------------------------------------------


def test_holiday_closes_the_whole_local_day() -> None:
    christmas = Schedule("Europe/Berlin", WEEKDAYS, holidays=frozenset({"2026-12-25"}))
    assert not is_open(christmas, local("Europe/Berlin", 2026, 12, 25, 12, 0))  # a Friday
    assert is_open(christmas, local("Europe/Berlin", 2026, 12, 24, 12, 0))
    # Thursday 24th closes at 17:00; Friday 25th is a holiday and the weekend follows: Monday 28th.
    assert next_change(christmas, local("Europe/Berlin", 2026, 12, 24, 17, 0)) == local(
        "Europe/Berlin", 2026, 12, 28, 9, 0
    )


def test_holiday_is_a_local_date_not_a_utc_date() -> None:
    # Dubai is UTC+04:00: local 00:00-04:00 on the 25th is still the 24th in UTC.
    around = Schedule("Asia/Dubai", dict.fromkeys(range(7), ((0, 1440),)), holidays=frozenset({"2026-12-25"}))
    assert not is_open(around, utc(2026, 12, 24, 20, 0))  # 00:00 on the 25th in Dubai
    assert is_open(around, utc(2026, 12, 24, 19, 59, 59))
    assert not is_open(around, utc(2026, 12, 25, 19, 59, 59))
    assert is_open(around, utc(2026, 12, 25, 20, 0))
    assert next_change(around, utc(2026, 12, 24, 12, 0)) == utc(2026, 12, 24, 20, 0)
    assert next_change(around, utc(2026, 12, 24, 20, 0)) == utc(2026, 12, 25, 20, 0)


# --- Europe/Berlin: spring forward and fall back ----------------------------------------------------------


def test_berlin_opens_at_nine_on_the_clock_on_both_change_days() -> None:
    shop = Schedule("Europe/Berlin", EVERY_DAY)
    # Sunday 29 March 2026: 02:00 CET -> 03:00 CEST. Opening is 09:00 CEST, 07:00 UTC (08:00 UTC before).
    assert next_change(shop, local("Europe/Berlin", 2026, 3, 28, 17, 0)) == utc(2026, 3, 29, 7, 0)
    assert not is_open(shop, utc(2026, 3, 29, 6, 59, 59))
    assert is_open(shop, utc(2026, 3, 28, 8, 0))
    # Sunday 25 October 2026: 03:00 CEST -> 02:00 CET. Opening is 09:00 CET, 08:00 UTC.
    assert next_change(shop, local("Europe/Berlin", 2026, 10, 24, 17, 0)) == utc(2026, 10, 25, 8, 0)
    assert not is_open(shop, utc(2026, 10, 25, 7, 59, 59))
    assert is_open(shop, utc(2026, 10, 24, 7, 0))


def test_berlin_interval_starting_in_the_spring_gap_opens_at_the_jump() -> None:
    # 02:30 does not exist on 29 March 2026; the clock jumps from 01:59:59 CET to 03:00 CEST (01:00 UTC).
    night = Schedule("Europe/Berlin", {6: ((150, 240),)})
    assert not is_open(night, utc(2026, 3, 29, 0, 59, 59))
    assert is_open(night, utc(2026, 3, 29, 1, 0))
    assert next_change(night, utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 1, 0)
    assert next_change(night, utc(2026, 3, 29, 1, 0)) == local("Europe/Berlin", 2026, 3, 29, 4, 0)
    # A week later there is no gap: 02:30 CEST as usual.
    assert next_change(night, local("Europe/Berlin", 2026, 3, 29, 4, 0)) == local(
        "Europe/Berlin", 2026, 4, 5, 2, 30
    )


def test_berlin_interval_wholly_in_the_spring_gap_does_not_open_that_day() -> None:
    gap = Schedule("Europe/Berlin", {6: ((120, 150),)})
    for minute in range(0, 24 * 60, 10):
        assert not is_open(gap, utc(2026, 3, 28, 23, 0) + minute * 60)
    assert next_change(gap, utc(2026, 3, 28, 12, 0)) == local("Europe/Berlin", 2026, 4, 5, 2, 0)


def test_berlin_repeated_hour_is_judged_by_the_clock_in_both_passes() -> None:
    # 25 October 2026: 02:00-02:59 happens at 00:00-00:59 UTC (CEST) and again at 01:00-01:59 UTC (CET).
    night = Schedule("Europe/Berlin", {6: ((60, 150),)})  # 01:00-02:30
    first_0230 = local("Europe/Berlin", 2026, 10, 25, 2, 30)
    second_0200 = local("Europe/Berlin", 2026, 10, 25, 2, 0, fold=1)
    assert first_0230 == utc(2026, 10, 25, 0, 30)
    assert second_0200 == utc(2026, 10, 25, 1, 0)
    assert is_open(night, first_0230 - 1)
    assert not is_open(night, first_0230)
    assert is_open(night, second_0200)  # the clock is back at 02:00
    assert next_change(night, first_0230) == second_0200
    assert next_change(night, second_0200) == utc(2026, 10, 25, 1, 30)  # the second 02:30
    whole_hour = Schedule("Europe/Berlin", {6: ((120, 180),)})
    assert next_change(whole_hour, utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 0, 0)
    assert next_change(whole_hour, utc(2026, 10, 25, 0, 0)) == utc(2026, 10, 25, 2, 0)  # 90 minutes open


# --- America/Sao_Paulo: summer time until 2019, none since ------------------------------------------------


def test_sao_paulo_2018_summer_time_began_at_midnight() -> None:
    shop = Schedule("America/Sao_Paulo", WEEKDAYS)
    # Friday 2 November 2018 at -03:00, Monday 5 November at -02:00 (summer time from Sunday 4th, 00:00).
    assert next_change(shop, utc(2018, 11, 2, 11, 0)) == utc(2018, 11, 2, 12, 0)
    assert next_change(shop, utc(2018, 11, 2, 20, 0)) == utc(2018, 11, 5, 11, 0)
    assert is_open(shop, utc(2018, 11, 5, 11, 0))
    assert not is_open(shop, utc(2018, 11, 5, 10, 59, 59))
    # Sunday 4 November 2018 00:00-00:59 never happened: the clock went from 23:59:59 to 01:00.
    past_midnight = Schedule("America/Sao_Paulo", {6: ((0, 60),)})
    assert not any(is_open(past_midnight, utc(2018, 11, 4, 2, 0) + m * 60) for m in range(0, 180, 5))
    from_half_past = Schedule("America/Sao_Paulo", {6: ((30, 120),)})
    assert next_change(from_half_past, utc(2018, 11, 3, 12, 0)) == utc(2018, 11, 4, 3, 0)


def test_sao_paulo_2018_summer_time_ended_in_february() -> None:
    shop = Schedule("America/Sao_Paulo", WEEKDAYS)
    # Friday 16 February 2018 at -02:00; Monday 19 February at -03:00.
    assert is_open(shop, utc(2018, 2, 16, 11, 0))
    assert next_change(shop, utc(2018, 2, 16, 20, 0)) == utc(2018, 2, 19, 12, 0)


def test_sao_paulo_has_no_summer_time_now() -> None:
    shop = Schedule("America/Sao_Paulo", WEEKDAYS)
    # Early November 2026: still -03:00, so 09:00 is 12:00 UTC both before and after the first Sunday.
    assert next_change(shop, utc(2026, 11, 2, 11, 0)) == utc(2026, 11, 2, 12, 0)
    assert next_change(shop, utc(2026, 11, 6, 21, 0)) == utc(2026, 11, 9, 12, 0)
    assert not is_open(shop, utc(2026, 11, 9, 11, 59, 59))


# --- Asia/Dubai: no summer time ----------------------------------------------------------------------------


def test_dubai_keeps_plus_four_all_year() -> None:
    shop = Schedule("Asia/Dubai", WEEKDAYS)
    for month in (1, 3, 4, 7, 10, 11):
        day = next(d for d in range(1, 8) if datetime(2026, month, d).weekday() == 1)  # a Tuesday
        assert next_change(shop, utc(2026, month, day, 0, 0)) == utc(2026, month, day, 5, 0)
        assert next_change(shop, utc(2026, month, day, 5, 0)) == utc(2026, month, day, 13, 0)


# --- Australia/Sydney: southern hemisphere --------------------------------------------------------------


def test_sydney_summer_time_starts_in_october() -> None:
    shop = Schedule("Australia/Sydney", WEEKDAYS)
    # Friday 2 October 2026 at +10:00; Sunday 4 October 02:00 AEST -> 03:00 AEDT; Monday 5th at +11:00.
    assert next_change(shop, utc(2026, 10, 1, 20, 0)) == utc(2026, 10, 1, 23, 0)
    assert next_change(shop, utc(2026, 10, 2, 8, 0)) == utc(2026, 10, 4, 22, 0)
    assert is_open(shop, local("Australia/Sydney", 2026, 10, 5, 9, 0))
    night = Schedule("Australia/Sydney", {6: ((150, 200),)})
    assert next_change(night, utc(2026, 10, 3, 0, 0)) == utc(2026, 10, 3, 16, 0)  # the jump to 03:00


def test_sydney_summer_time_ends_in_april() -> None:
    shop = Schedule("Australia/Sydney", WEEKDAYS)
    # Friday 3 April 2026 at +11:00; Sunday 5 April 03:00 AEDT -> 02:00 AEST; Monday 6th at +10:00.
    assert next_change(shop, utc(2026, 4, 2, 20, 0)) == utc(2026, 4, 2, 22, 0)
    assert next_change(shop, utc(2026, 4, 3, 8, 0)) == utc(2026, 4, 5, 23, 0)


# --- errors and the horizon --------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../etc/passwd", "Europe", "Europe/Berlin\x00"])
def test_unknown_zone_is_a_schedule_error(zone: str) -> None:
    bad = Schedule(zone, WEEKDAYS)
    with pytest.raises(ScheduleError):
        is_open(bad, utc(2026, 11, 24, 12, 0))
    with pytest.raises(ScheduleError):
        next_change(bad, utc(2026, 11, 24, 12, 0))
    with pytest.raises(ScheduleError):
        load_zone(zone)
    assert issubclass(ScheduleError, IvrError)
    assert issubclass(ScheduleError, ValueError)


def test_next_change_looks_fourteen_days_ahead() -> None:
    closed_long = Schedule(
        "Europe/Berlin", WEEKDAYS, holidays=frozenset(f"2026-12-{d:02d}" for d in range(1, 32))
    )
    assert next_change(closed_long, local("Europe/Berlin", 2026, 11, 30, 17, 0)) is None
    assert next_change(closed_long, local("Europe/Berlin", 2026, 12, 20, 12, 0)) == local(
        "Europe/Berlin", 2027, 1, 1, 9, 0
    )
    assert HORIZON_DAYS == 14


# --- property: next_change agrees with is_open ----------------------------------------------------------

ZONES = ["Europe/Berlin", "America/Sao_Paulo", "Asia/Dubai", "Australia/Sydney", "Asia/Kolkata", "UTC"]
minutes = st.integers(0, 1440)
intervals = st.lists(st.tuples(minutes, minutes).filter(lambda p: p[0] < p[1]).map(tuple), max_size=3)
schedules = st.builds(
    lambda zone, weekly, holidays: Schedule(zone, weekly, frozenset(holidays)),
    st.sampled_from(ZONES),
    st.dictionaries(st.integers(0, 6), intervals.map(tuple), max_size=7),
    st.lists(st.dates(datetime(2018, 1, 1).date(), datetime(2028, 1, 1).date()).map(str), max_size=3),
)


@PROFILE
@given(
    schedule=schedules,
    at=st.one_of(
        st.integers(int(utc(2018, 1, 1)), int(utc(2028, 1, 1))), st.floats(utc(2018, 1, 1), utc(2028, 1, 1))
    ),
    data=st.data(),
)
def test_next_change_is_the_first_flip(schedule: Schedule, at: float, data: st.DataObject) -> None:
    state = is_open(schedule, at)
    change = next_change(schedule, at)
    end = at + HORIZON_DAYS * 86_400 if change is None else change
    if change is not None:
        assert at < change <= at + HORIZON_DAYS * 86_400
        assert is_open(schedule, change) != state
        assert is_open(schedule, max(at, change - 0.001)) == state
    # Sampled instants before the change (or over the whole horizon) keep the state.
    for _ in range(40):
        probe = data.draw(st.floats(at, end - 0.001, allow_nan=False))  # µs rounding at the end
        assert is_open(schedule, probe) == state
