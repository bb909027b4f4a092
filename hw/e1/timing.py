"""Which span times the box: the timing-source selector over several spans (sans-I/O).

Theory of operation. A PRI box takes its transmit clock from the network: it recovers the 2048 kHz clock
of one received span and times every span from it, so that its frames do not slip against the carrier's
(G.822 slip performance; G.823 jitter and wander at 2048 kbit/s). Each span has a priority
(:attr:`hw.e1.model.SpanConfig.timing_priority`): 1 is the first choice, 2 the next, … and 0 never a
source. The selector picks the candidate with the lowest non-zero priority whose receive side is good
(no red or blue alarm, :attr:`hw.e1.alarms.SpanAlarms.receive_ok`); a tie goes to the lower span number.
When the source goes into alarm the next one takes over; with none left the box runs on its internal
clock (``None``); when a better span's alarm clears it takes the clock back at once (the alarm clear
time, G.732 practice, is the hold-off). Every change is a :class:`TimingSourceChanged` event.

A span is assumed in alarm until it is reported otherwise, so a box starts on its internal clock.

A span's priority can change while the box runs (:meth:`TimingSelector.set_priority`, new settings for the
span): the choice is made again at once, and a change of source is an event like any other.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hw.e1.errors import SpanConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TimingSourceChanged:
    source: int | None  # span number, None for the internal clock
    previous: int | None
    at: float  # wall-clock time


class TimingSelector:
    """``priorities`` maps span number to its timing priority (0 = never a source)."""

    def __init__(self, priorities: Mapping[int, int], *, wall: Callable[[], float]) -> None:
        for span, priority in priorities.items():
            _check_priority(span, priority)
        self._priorities = dict(priorities)
        self._wall = wall
        self._good: set[int] = set()
        self._source: int | None = None
        self._events: deque[TimingSourceChanged] = deque()

    def span_status(self, span: int, receive_ok: bool) -> None:
        """Span ``span``'s receive side is usable (no red or blue alarm) or not."""
        self._known(span)
        if receive_ok:
            self._good.add(span)
        else:
            self._good.discard(span)
        self._select()

    def set_priority(self, span: int, priority: int) -> None:
        """Span ``span`` takes timing priority ``priority`` (0: never a source) from now on; the source is
        chosen again (a :class:`TimingSourceChanged` if it changes). Raises :class:`SpanConfigError` for a
        span not known or a priority below 0."""
        self._known(span)
        _check_priority(span, priority)
        if self._priorities[span] != priority:
            log.info("span %d: timing priority %d -> %d", span, self._priorities[span], priority)
            self._priorities[span] = priority
            self._select()

    def priority(self, span: int) -> int:
        self._known(span)
        return self._priorities[span]

    def _known(self, span: int) -> None:
        if span not in self._priorities:
            raise SpanConfigError(f"span {span} is not known to the timing selector")

    def _select(self) -> None:
        candidates = [(p, s) for s, p in self._priorities.items() if p > 0 and s in self._good]
        best = min(candidates)[1] if candidates else None
        if best == self._source:
            return
        previous, self._source = self._source, best
        log.info("timing source: %s -> %s", _name(previous), _name(best))
        self._events.append(TimingSourceChanged(best, previous, self._wall()))

    @property
    def source(self) -> int | None:
        """The span the box is timed from, or ``None`` for the internal clock."""
        return self._source

    def next_event(self) -> TimingSourceChanged | None:
        return self._events.popleft() if self._events else None


def _check_priority(span: int, priority: int) -> None:
    if priority < 0:
        raise SpanConfigError(f"span {span}: timing priority {priority} is below 0")


def _name(source: int | None) -> str:
    return "internal" if source is None else f"span {source}"
