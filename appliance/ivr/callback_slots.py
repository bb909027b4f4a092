"""The callback times offered to a caller: whole hours in the caller's own time zone.

Theory of operation. A caller asking to be called back is offered the next few whole hours *of its own
clock* ("tomorrow at 14:00"), at least a lead time ahead, in which the centre's business hours are open. The
hours are walked on the caller's wall clock, so in a zone with a half-hour offset (Asia/Kolkata, +05:30)
a slot is 14:00 there, 08:30 UTC; the schedule is checked at each slot's start with
:func:`appliance.ivr.hours.is_open` in the schedule's own zone, which may be another one (a centre in
Europe/Berlin calling back a caller in America/Sao_Paulo).

On the days the caller's clock jumps, a whole hour in the spring gap does not exist and is skipped, and an
hour the autumn change repeats is offered once, at its first occurrence, so a caller never hears the same
time twice. The search stops :data:`SEARCH_DAYS` days after ``now_utc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from appliance.ivr.hours import is_open, load_zone, local_time
from appliance.ivr.model import Schedule

SEARCH_DAYS: Final = 14
"""How far after ``now_utc`` :func:`offer_slots` looks for open hours."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One callback time offered.

    ``utc`` is the POSIX instant; ``local_iso`` the caller's local time with its UTC offset
    (``2026-11-25T14:00:00+01:00``) and ``utc_iso`` the same instant in UTC (``2026-11-25T13:00:00Z``), as
    the outbox records them. ``hour`` (0–23) and ``day`` are what the caller hears: ``"today"``,
    ``"tomorrow"`` (the caller's local dates at ``now_utc``) or, further ahead, the weekday (Monday 0).
    """

    utc: float
    local_iso: str
    utc_iso: str
    hour: int
    day: Literal["today", "tomorrow"] | int


def offer_slots(
    now_utc: float, *, zone: str, schedule: Schedule | None, count: int, lead_minutes: int
) -> list[Slot]:
    """The first ``count`` whole hours on the clock of IANA ``zone`` that start at least ``lead_minutes``
    after ``now_utc`` (a negative lead counts as none) and at which ``schedule`` is open (None: any
    hour), in time order; fewer (possibly none) if the next :data:`SEARCH_DAYS` days hold fewer.

    Raises :class:`appliance.ivr.hours.ScheduleError` if ``zone`` or the schedule's zone is unknown.
    """
    caller_zone = load_zone(zone)
    if schedule is not None:
        load_zone(schedule.timezone)  # an unknown zone is an error even when no hour is looked at
    earliest = now_utc + max(lead_minutes, 0) * 60
    stop = now_utc + SEARCH_DAYS * 86_400
    today = local_time(now_utc, caller_zone).date()
    # Naive local times step along the caller's wall clock one whole hour at a time.
    wall = local_time(earliest, caller_zone).replace(tzinfo=None)
    if wall != wall.replace(minute=0, second=0, microsecond=0):
        wall = wall.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    slots: list[Slot] = []
    while len(slots) < count:
        start = wall.replace(tzinfo=caller_zone)  # fold 0: the first occurrence of a repeated hour
        at = start.timestamp()
        wall += timedelta(hours=1)
        if at > stop:
            break
        local = local_time(at, caller_zone)
        if local.replace(tzinfo=None) != start.replace(tzinfo=None) or at < earliest:
            continue  # in the spring gap, or a repeated hour whose first pass is already over
        if schedule is not None and not is_open(schedule, at):
            continue
        days_ahead = (local.date() - today).days
        day: Literal["today", "tomorrow"] | int = (
            "today" if days_ahead == 0 else "tomorrow" if days_ahead == 1 else local.weekday()
        )
        slots.append(
            Slot(
                utc=at,
                local_iso=local.isoformat(),
                utc_iso=datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                hour=local.hour,
                day=day,
            )
        )
    return slots
