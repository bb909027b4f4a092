"""Callback times: whole hours on the caller's clock, a lead time ahead, inside the centre's hours."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.ivr.callback_slots import SEARCH_DAYS, Slot, offer_slots
from appliance.ivr.hours import ScheduleError, is_open
from appliance.ivr.model import Schedule
from tests.unit.test_ivr_hours import PROFILE, local, utc

NINE_TO_FIVE = ((9 * 60, 17 * 60),)
BERLIN_OFFICE = Schedule("Europe/Berlin", dict.fromkeys(range(5), NINE_TO_FIVE))


def office(
    now: float, *, zone: str = "Europe/Berlin", count: int = 3, schedule: Schedule = BERLIN_OFFICE
) -> list[Slot]:
    """The slots an office (by default in Berlin, open 09:00-17:00 on weekdays) offers, an hour ahead at
    the earliest."""
    return offer_slots(now, zone=zone, schedule=schedule, count=count, lead_minutes=60)


def anytime(now: float, zone: str, *, count: int, lead: int) -> list[Slot]:
    return offer_slots(now, zone=zone, schedule=None, count=count, lead_minutes=lead)


def offered(slots: list[Slot]) -> list[tuple[str | int, int]]:
    return [(slot.day, slot.hour) for slot in slots]


def test_slot_fields() -> None:
    # Tuesday 24 November 2026, 13:20 in Berlin (CET, +01:00).
    slots = anytime(local("Europe/Berlin", 2026, 11, 24, 13, 20), "Europe/Berlin", count=1, lead=60)
    assert slots == [
        Slot(
            utc=utc(2026, 11, 24, 14, 0),
            local_iso="2026-11-24T15:00:00+01:00",
            utc_iso="2026-11-24T14:00:00Z",
            hour=15,
            day="today",
        )
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        slots[0].hour = 16  # type: ignore[misc]


def test_lead_time() -> None:
    now = local("Europe/Berlin", 2026, 11, 24, 10, 0)
    at = [s.hour for s in anytime(now, "Europe/Berlin", count=3, lead=60)]
    assert at == [11, 12, 13]  # exactly the lead time ahead is early enough
    at = [s.hour for s in anytime(now + 1, "Europe/Berlin", count=3, lead=60)]
    assert at == [12, 13, 14]
    at = [s.hour for s in anytime(now, "Europe/Berlin", count=2, lead=0)]
    assert at == [10, 11]
    at = [s.hour for s in anytime(now, "Europe/Berlin", count=2, lead=-90)]
    assert at == [10, 11]  # never in the past
    at = [s.hour for s in anytime(now, "Europe/Berlin", count=2, lead=150)]
    assert at == [13, 14]


def test_count() -> None:
    now = local("Europe/Berlin", 2026, 11, 24, 10, 0)
    assert office(now, count=0) == []
    assert len(office(now, count=5)) == 5


def test_half_hour_zone_offers_the_callers_whole_hours() -> None:
    # 10:10 UTC is 15:40 in Kolkata (+05:30): the next whole hours there are 17:00 and 18:00 (lead 60).
    slots = anytime(utc(2026, 11, 24, 10, 10), "Asia/Kolkata", count=2, lead=60)
    assert [s.local_iso for s in slots] == ["2026-11-24T17:00:00+05:30", "2026-11-24T18:00:00+05:30"]
    assert [s.utc_iso for s in slots] == ["2026-11-24T11:30:00Z", "2026-11-24T12:30:00Z"]
    # A centre open 09:15-09:45 in Berlin has no whole Berlin hour open, but 14:00 in Kolkata is 09:30 there.
    short = Schedule("Europe/Berlin", {1: ((9 * 60 + 15, 9 * 60 + 45),)})
    now = utc(2026, 11, 23, 12, 0)  # Monday
    assert office(now, schedule=short, count=3) == []
    slots = office(now, zone="Asia/Kolkata", schedule=short, count=3)
    assert [s.local_iso for s in slots] == ["2026-11-24T14:00:00+05:30", "2026-12-01T14:00:00+05:30"]
    assert offered(slots) == [("tomorrow", 14), (1, 14)]


def test_centre_hours_in_another_zone_than_the_caller() -> None:
    # Tuesday 24 November 2026, 12:00 in Berlin (CET, +01:00) is 08:00 in Sao Paulo (-03:00): the centre's
    # 09:00-17:00 is 05:00-13:00 there, so the last hour it can offer today is 12:00.
    slots = office(local("Europe/Berlin", 2026, 11, 24, 12, 0), zone="America/Sao_Paulo", count=6)
    assert offered(slots) == [
        ("today", 9),
        ("today", 10),
        ("today", 11),
        ("today", 12),
        ("tomorrow", 5),
        ("tomorrow", 6),
    ]
    assert slots[0].local_iso == "2026-11-24T09:00:00-03:00"
    assert all(is_open(BERLIN_OFFICE, s.utc) for s in slots)


def test_overnight_closure_moves_to_tomorrow() -> None:
    now = local("Europe/Berlin", 2026, 11, 24, 14, 30)  # 17:00 is past closing time
    slots = office(now, count=3)
    assert offered(slots) == [("today", 16), ("tomorrow", 9), ("tomorrow", 10)]
    assert slots[1].local_iso == "2026-11-25T09:00:00+01:00"


def test_weekend_moves_to_monday() -> None:
    # Friday 27 November 2026 after closing: Saturday and Sunday are closed, Monday is day 0.
    now = local("Europe/Berlin", 2026, 11, 27, 17, 0)
    slots = office(now, count=3)
    assert offered(slots) == [(0, 9), (0, 10), (0, 11)]
    assert slots[0].local_iso == "2026-11-30T09:00:00+01:00"
    # From Saturday, Monday is still "day 0"; from Sunday it is tomorrow.
    saturday = office(now + 86_400, count=1)
    sunday = office(now + 2 * 86_400, count=1)
    assert offered(saturday) == [(0, 9)]
    assert offered(sunday) == [("tomorrow", 9)]


def test_today_is_the_callers_date() -> None:
    # 23:30 UTC on the 24th: already the 25th in Berlin, still 20:30 on the 24th in Sao Paulo.
    slots = anytime(utc(2026, 11, 24, 23, 30), "America/Sao_Paulo", count=4, lead=60)
    assert offered(slots) == [("today", 22), ("today", 23), ("tomorrow", 0), ("tomorrow", 1)]


def test_spring_forward_skips_the_missing_hour() -> None:
    # Sunday 29 March 2026 in Berlin: the clock jumps from 02:00 CET to 03:00 CEST; there is no 02:00.
    slots = anytime(utc(2026, 3, 28, 23, 30), "Europe/Berlin", count=3, lead=0)
    assert [s.local_iso for s in slots] == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]
    assert [s.utc for s in slots] == [utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0)]


def test_fall_back_offers_the_repeated_hour_once() -> None:
    # Sunday 25 October 2026 in Berlin: 02:00-03:00 happens twice (CEST, then CET).
    slots = anytime(utc(2026, 10, 24, 22, 30), "Europe/Berlin", count=3, lead=0)
    assert [s.local_iso for s in slots] == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T03:00:00+01:00",
    ]
    # During the second pass the first 02:00 is over: the next hour is 03:00.
    slots = anytime(utc(2026, 10, 25, 1, 10), "Europe/Berlin", count=1, lead=0)
    assert [s.local_iso for s in slots] == ["2026-10-25T03:00:00+01:00"]


def test_centre_summer_time_shifts_the_callers_hours() -> None:
    # Berlin moves to CEST on 29 March 2026, Sao Paulo stays at -03:00: 09:00 in Berlin is 05:00 there on
    # Monday 23 March and 04:00 on Monday 30 March.
    before = office(local("Europe/Berlin", 2026, 3, 20, 18, 0), zone="America/Sao_Paulo", count=1)
    after = office(local("Europe/Berlin", 2026, 3, 27, 18, 0), zone="America/Sao_Paulo", count=1)
    assert [s.local_iso for s in before] == ["2026-03-23T05:00:00-03:00"]
    assert [s.local_iso for s in after] == ["2026-03-30T04:00:00-03:00"]


def test_no_open_hour_in_fourteen_days_gives_nothing() -> None:
    now = local("Europe/Berlin", 2026, 11, 24, 12, 0)
    never = Schedule("Europe/Berlin", {})
    assert office(now, schedule=never, count=3) == []
    shut = Schedule(
        "Europe/Berlin",
        BERLIN_OFFICE.weekly,
        holidays=frozenset(
            f"2026-{m}-{d:02d}" for m, days in (("11", range(24, 31)), ("12", range(1, 32))) for d in days
        ),
    )
    assert office(now, schedule=shut, count=3) == []
    # Open again on day 14 but not before: found; just past day 14: not.
    reopen = dataclasses.replace(shut, holidays=frozenset(h for h in shut.holidays if h != "2026-12-08"))
    assert offered(office(now, schedule=reopen, count=1)) == [(1, 9)]
    late = dataclasses.replace(shut, holidays=frozenset(h for h in shut.holidays if h != "2026-12-09"))
    assert office(now, schedule=late, count=1) == []
    assert SEARCH_DAYS == 14


def test_unknown_zone_is_an_error() -> None:
    now = utc(2026, 11, 24, 12, 0)
    with pytest.raises(ScheduleError):
        anytime(now, "Nowhere/Land", count=3, lead=60)
    with pytest.raises(ScheduleError):
        offer_slots(now, zone="UTC", schedule=Schedule("Nowhere/Land", {}), count=3, lead_minutes=60)


ZONES = [
    "Europe/Berlin",
    "America/Sao_Paulo",
    "Asia/Dubai",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
]


@PROFILE
@given(
    now=st.floats(utc(2018, 1, 1), utc(2028, 1, 1)),
    zone=st.sampled_from(ZONES),
    centre=st.sampled_from(ZONES),
    opening=st.integers(0, 1439),
    length=st.integers(1, 600),
    count=st.integers(0, 5),
    lead=st.integers(0, 3000),
)
def test_slots_are_whole_open_hours_in_order(
    now: float, zone: str, centre: str, opening: int, length: int, count: int, lead: int
) -> None:
    schedule = Schedule(centre, dict.fromkeys((0, 2, 4), ((opening, min(opening + length, 1440)),)))
    slots = offer_slots(now, zone=zone, schedule=schedule, count=count, lead_minutes=lead)
    assert len(slots) <= count
    assert [s.utc for s in slots] == sorted({s.utc for s in slots})
    for slot in slots:
        assert now + lead * 60 <= slot.utc <= now + SEARCH_DAYS * 86_400
        assert is_open(schedule, slot.utc)
        wall = datetime.fromtimestamp(slot.utc, ZoneInfo(zone))
        assert (wall.minute, wall.second, wall.hour) == (0, 0, slot.hour)
        assert slot.local_iso == wall.isoformat()
        assert slot.utc_iso == datetime.fromtimestamp(slot.utc, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
