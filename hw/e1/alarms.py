"""Span alarms: defects in, declared alarms with wall-clock timestamps out (sans-I/O).

Theory of operation. A backend reports *defects* as it sees them, each present or absent at an instant
``now`` (monotonic seconds): loss of signal (LOS, G.775 §5.2: no pulses for 10 to 255 bit periods), loss
of frame alignment (LOF, G.706 §4.1.1: three consecutive frame alignment words in error), alarm
indication signal (AIS, G.775 §5.4: an all-ones signal, sent by equipment upstream that lost its own
input) and remote alarm indication (RAI, G.704 §2.3.2 bit A of timeslot 0 in the non-FAS frames: the far
end does not receive us).

LOS and LOF make the *red* alarm (carrier failure). Following G.732 §4.2 and the long-standing practice of
carrier equipment, a red alarm is *declared* only after its defect has persisted for
:attr:`AlarmTimes.red_raise` (default 2.5 s), and *cleared* only after the defect has been absent for
:attr:`AlarmTimes.red_clear` (default 10 s), so that a line that bounces does not flap the D-channel and
the clock. AIS (*blue*) and RAI (*yellow*) are declared and cleared as reported: the framers integrate
them already (G.775 §5.4, §5.5), after :attr:`AlarmTimes.other_raise`/``other_clear`` (default 0).
The simulated span uses :data:`SIM_ALARM_TIMES`, short enough that a vanished far end is in alarm in under
a second.

Each declaration and clearing is an event, :class:`AlarmRaised`/:class:`AlarmCleared`, carrying the wall
clock (the injected ``wall`` function) at which it happened. :meth:`SpanAlarms.get_timer` gives the next
deadline and :meth:`SpanAlarms.handle_timer` acts on it.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)


class Alarm(enum.Enum):
    LOS = "los"  # loss of signal
    LOF = "lof"  # loss of frame alignment
    AIS = "ais"  # alarm indication signal (all ones)
    RAI = "rai"  # remote alarm indication

    @property
    def colour(self) -> str:
        """The alarm's traditional colour: red (ours, no signal or no framing), blue (AIS), yellow (RAI)."""
        return _COLOURS[self]


_COLOURS: Final = {Alarm.LOS: "red", Alarm.LOF: "red", Alarm.AIS: "blue", Alarm.RAI: "yellow"}
RED: Final = frozenset({Alarm.LOS, Alarm.LOF})


@dataclass(frozen=True, slots=True)
class AlarmTimes:
    """Persistence (``*_raise``) and clear (``*_clear``) times in seconds, for red and for other alarms."""

    red_raise: float = 2.5
    red_clear: float = 10.0
    other_raise: float = 0.0
    other_clear: float = 0.0

    def raise_after(self, alarm: Alarm) -> float:
        return self.red_raise if alarm in RED else self.other_raise

    def clear_after(self, alarm: Alarm) -> float:
        return self.red_clear if alarm in RED else self.other_clear


SIM_ALARM_TIMES: Final = AlarmTimes(red_raise=0.5, red_clear=0.5)


@dataclass(frozen=True, slots=True)
class AlarmRaised:
    span: int
    alarm: Alarm
    at: float  # wall-clock time (seconds since the epoch) of the declaration


@dataclass(frozen=True, slots=True)
class AlarmCleared:
    span: int
    alarm: Alarm
    at: float
    since: float  # wall-clock time at which it had been raised


AlarmEvent = AlarmRaised | AlarmCleared


class SpanAlarms:
    """The defects and declared alarms of one span.

    ``wall`` returns the wall-clock time for the events' timestamps; ``now`` arguments are monotonic.
    """

    def __init__(self, *, span: int, wall: Callable[[], float], times: AlarmTimes = AlarmTimes()) -> None:
        self._span = span
        self._wall = wall
        self._times = times
        self._defects: set[Alarm] = set()
        self._declared: dict[Alarm, float] = {}  # alarm -> wall-clock since
        self._deadlines: dict[Alarm, float] = {}  # alarm -> monotonic time its pending change takes effect
        self._events: deque[AlarmEvent] = deque()

    def defect(self, alarm: Alarm, present: bool, now: float) -> None:
        """The backend sees ``alarm``'s defect present or absent at ``now``; repeating a state is harmless."""
        if present == (alarm in self._defects):
            return
        if present:
            self._defects.add(alarm)
        else:
            self._defects.discard(alarm)
        if present == (alarm in self._declared):
            # Back to what is declared before the change was due: the change is cancelled (integration).
            self._deadlines.pop(alarm, None)
            return
        delay = self._times.raise_after(alarm) if present else self._times.clear_after(alarm)
        self._deadlines[alarm] = now + delay
        if delay <= 0:
            self.handle_timer(now)

    def set_defects(self, present: frozenset[Alarm], now: float) -> None:
        """Report the whole set of defects at once (what a backend that polls its card reads)."""
        for alarm in Alarm:
            self.defect(alarm, alarm in present, now)

    def get_timer(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def handle_timer(self, now: float) -> None:
        for alarm in [a for a, deadline in self._deadlines.items() if deadline <= now]:
            del self._deadlines[alarm]
            at = self._wall()
            if alarm in self._defects:
                self._declared[alarm] = at
                log.warning("span %d: %s alarm raised (%s)", self._span, alarm.name, alarm.colour)
                self._events.append(AlarmRaised(self._span, alarm, at))
            else:
                since = self._declared.pop(alarm)
                log.info("span %d: %s alarm cleared", self._span, alarm.name)
                self._events.append(AlarmCleared(self._span, alarm, at, since))

    def next_event(self) -> AlarmEvent | None:
        return self._events.popleft() if self._events else None

    @property
    def active(self) -> Mapping[Alarm, float]:
        """Declared alarms and the wall-clock time each was raised."""
        return dict(self._declared)

    @property
    def defects(self) -> frozenset[Alarm]:
        return frozenset(self._defects)

    @property
    def red(self) -> bool:
        return not RED.isdisjoint(self._declared)

    @property
    def blue(self) -> bool:
        return Alarm.AIS in self._declared

    @property
    def yellow(self) -> bool:
        return Alarm.RAI in self._declared

    @property
    def receive_ok(self) -> bool:
        """No red or blue alarm: what we receive is framed and real, so its clock can time us.

        A yellow alarm alone does not count: the far end does not hear us, but we hear it.
        """
        return not (self.red or self.blue)
