"""Where each timeslot's RTP lives: a pure function of the worker's port range and timeslot list.

Call control writes a PRI leg's port into its SDP before the TDM worker hears of the call (as it does for
the media workers' relay ports), so the port cannot be chosen by the worker: timeslot number ``index``
in ``--timeslots`` has RTP on ``ports_min + 2 * index`` and RTCP on the port after it (RFC 3550 §11: RTP
on an even port, RTCP on the next odd one, when ``ports_min`` is even). Both processes compute it with
:func:`tdm_port`.
"""

from __future__ import annotations

from hw.e1.links import B_TIMESLOTS


def parse_timeslots(text: str) -> tuple[int, ...]:
    """``1-15,17-31`` (ranges and single numbers, comma separated) as a tuple in the given order; raises
    ``ValueError`` for a timeslot that cannot carry a B-channel (G.704: 0 is framing, 16 the D-channel) or
    one named twice."""
    slots: list[int] = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        first = int(low)
        last = int(high) if sep else first
        if last < first:
            raise ValueError(f"timeslot range {part!r} runs backwards")
        slots.extend(range(first, last + 1))
    for slot in slots:
        if slot not in B_TIMESLOTS:
            raise ValueError(f"timeslot {slot} cannot carry a B-channel")
    if len(set(slots)) != len(slots):
        raise ValueError("a timeslot is named twice")
    if not slots:
        raise ValueError("no timeslots")
    return tuple(slots)


def tdm_port(ports_min: int, timeslots: tuple[int, ...], timeslot: int) -> int:
    """The RTP port of ``timeslot`` (RTCP is the next port); raises ``ValueError`` if it is not one of
    ``timeslots``."""
    try:
        index = timeslots.index(timeslot)
    except ValueError:
        raise ValueError(f"timeslot {timeslot} is not one of the span's B-channels") from None
    return ports_min + 2 * index


def ports_needed(timeslots: tuple[int, ...]) -> int:
    """How many consecutive ports the timeslots' RTP/RTCP pairs take."""
    return 2 * len(timeslots)
