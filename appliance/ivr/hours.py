"""Business hours: whether a :class:`~appliance.ivr.model.Schedule` is open at an instant, and when that
next changes.

Theory of operation. A schedule is kept in *local wall-clock time* of its IANA zone (the tz database, read
through :mod:`zoneinfo` from the pinned ``tzdata``): an instant is open when the local date is not a holiday
and the local time of day lies in one of that weekday's intervals ``[start, end)`` (minutes after local
midnight, ``end`` 1440 meaning midnight at the end of the day). So a shop open 09:00–17:00 opens at 09:00 on
the clock on the day summer time starts or ends, as its staff would.

Twice a year the wall clock jumps, and the rule is always "what the wall clock shows right now":

* **Spring gap** (e.g. Europe/Berlin on the last Sunday of March, 02:00 CET -> 03:00 CEST): local times in
  the gap never happen. An interval starting in the gap (02:30) opens at the first instant the clock shows a
  later time, i.e. at the jump (03:00 CEST); an interval lying wholly in the gap (02:00–02:30) does not open
  that day; one ending in the gap (01:00–02:30) closes at the jump.
* **Autumn repeat** (Europe/Berlin, last Sunday of October, 03:00 CEST -> 02:00 CET): local times from 02:00
  to 03:00 happen twice and each pass is judged by the clock, so an interval covering that hour is open in
  both passes (90 minutes of real time for 02:00–03:00), and one ending at 02:30 closes at the first 02:30,
  opens again when the clock goes back to 02:00 and closes at the second 02:30.

:func:`next_change` gives the next instant :func:`is_open` flips. Between two offset changes of the zone the
local clock runs with real time, so a flip can happen only where the clock reads an interval boundary or
midnight (computed for both readings of an ambiguous time) or at an offset change itself; the function
looks at those instants in order and returns the first one whose state differs.

Times are POSIX seconds (UTC) passed in by the caller; this module reads no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.ivr.errors import IvrError
from appliance.ivr.model import Schedule

HORIZON_DAYS: Final = 14
"""How far ahead :func:`next_change` looks."""

_DAY_SECONDS: Final = 86_400
# Real offset changes are months apart; one hour steps find each one, and a bisection then pins it to the
# second (the tz database has whole-second transitions).
_OFFSET_PROBE_SECONDS: Final = 3600


class ScheduleError(IvrError, ValueError):
    """A schedule, or a time zone name, this module cannot use (an unknown IANA zone, say).

    The flow validator refuses a flow whose schedules name unknown zones; this error is what is left for a
    zone that passed there but is missing from this build's tz database, or a zone given in configuration.
    """


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (e.g. ``"Europe/Berlin"``); :class:`ScheduleError` if there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # ZoneInfo raises ValueError for malformed keys ("../x", "") and OSError for odd paths.
        raise ScheduleError(f"unknown time zone {name!r}") from exc


def local_time(at_utc: float, zone: ZoneInfo) -> datetime:
    """The aware local date and time in ``zone`` at POSIX instant ``at_utc``."""
    return datetime.fromtimestamp(at_utc, zone)


def is_open(schedule: Schedule, at_utc: float) -> bool:
    """Whether ``schedule`` is open at POSIX instant ``at_utc``, judged by the local wall clock of
    ``schedule.timezone`` (see the module docstring for the days the clock jumps).

    Raises :class:`ScheduleError` if the zone is unknown.
    """
    return _open_at(schedule, local_time(at_utc, load_zone(schedule.timezone)))


def next_change(schedule: Schedule, at_utc: float) -> float | None:
    """The first POSIX instant after ``at_utc`` at which :func:`is_open` differs from its value at
    ``at_utc``, or None if it stays the same for the next :data:`HORIZON_DAYS` days (always open, never
    open, or a long closure). The state at the returned instant is already the new one.

    Raises :class:`ScheduleError` if the zone is unknown.
    """
    zone = load_zone(schedule.timezone)
    state = _open_at(schedule, local_time(at_utc, zone))
    horizon = at_utc + HORIZON_DAYS * _DAY_SECONDS
    for candidate in sorted(set(_candidates(schedule, zone, at_utc, horizon))):
        if at_utc < candidate <= horizon and _open_at(schedule, local_time(candidate, zone)) != state:
            return candidate
    return None


def _open_at(schedule: Schedule, local: datetime) -> bool:
    if local.date().isoformat() in schedule.holidays:
        return False
    second = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    return any(start * 60 <= second < end * 60 for start, end in schedule.weekly.get(local.weekday(), ()))


def _candidates(schedule: Schedule, zone: ZoneInfo, start: float, stop: float) -> Iterator[float]:
    """Every instant in ``(start, stop]`` where the schedule's state may flip, and some more."""
    yield from _offset_changes(zone, start, stop)
    minutes = sorted({0, *(m for intervals in schedule.weekly.values() for pair in intervals for m in pair)})
    first = local_time(start, zone).date() - timedelta(days=1)
    for offset in range(HORIZON_DAYS + 2):
        day = first + timedelta(days=offset)
        for minute in minutes:
            yield from _instants_of(day, minute, zone)


def _instants_of(day: date, minute: int, zone: ZoneInfo) -> Iterator[float]:
    """The instants at which the clock in ``zone`` reads ``minute`` after midnight of ``day`` (both
    readings of an ambiguous time; for a time in a gap, two nearby instants, harmless as candidates)."""
    wall = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(minutes=minute)
    # Adding a timedelta to an aware datetime is wall-clock arithmetic; 1440 lands on the next midnight.
    for fold in (0, 1):
        yield wall.replace(fold=fold).timestamp()


def _offset_changes(zone: ZoneInfo, start: float, stop: float) -> Iterator[float]:
    """The instants in ``(start, stop]`` at which ``zone`` changes its UTC offset (summer time, say):
    the first second of the new offset."""
    probe = start
    before = _offset(zone, probe)
    while probe < stop:
        step = min(probe + _OFFSET_PROBE_SECONDS, stop)
        after = _offset(zone, step)
        if after != before:
            # Transitions fall on whole seconds: the offset at floor(probe) is still `before`, at
            # ceil(step) already `after`.
            low, high = math.floor(probe), math.ceil(step)
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(zone, middle) == before:
                    low = middle
                else:
                    high = middle
            yield float(high)
            before = after
        probe = step


def _offset(zone: ZoneInfo, at_utc: float) -> timedelta | None:
    return local_time(at_utc, zone).utcoffset()
