"""Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", OPODIS 2014).

Theory of operation. An HLC timestamp is a pair (wall milliseconds, counter). ``now(wall_ms)`` returns a
timestamp strictly greater than every timestamp this clock returned or observed before: it takes the wall
time when the wall clock has moved past the last timestamp, and otherwise keeps the last wall part and
increments the counter. So timestamps stay monotonic when NTP steps the wall clock back, and stay close to
real time (never behind the wall clock). ``observe(remote)`` merges a timestamp received from the cloud, so
that every later local timestamp orders after it (causality across the sync API).

The pair is packed into one non-negative integer, ``wall_ms << 16 | counter``, which sorts like the pair and
fits SQLite's 64-bit INTEGER for wall times far beyond this century. A counter that would overflow 16 bits
borrows one millisecond from the future instead (65,536 events within one millisecond).

Sans-I/O: the clock never reads the time itself; the caller passes the wall clock reading in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from appliance.store.errors import InvalidHlcError

COUNTER_BITS: Final = 16
COUNTER_LIMIT: Final = 1 << COUNTER_BITS
MAX_WALL_MS: Final = (1 << (63 - COUNTER_BITS)) - 1  # the packed value must fit a signed 64-bit integer


@dataclass(frozen=True, order=True, slots=True)
class Hlc:
    """One HLC timestamp; ordering is by ``wall_ms`` then ``counter``."""

    wall_ms: int
    counter: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.wall_ms <= MAX_WALL_MS:
            raise InvalidHlcError(f"HLC wall time {self.wall_ms} out of range 0..{MAX_WALL_MS}")
        if not 0 <= self.counter < COUNTER_LIMIT:
            raise InvalidHlcError(f"HLC counter {self.counter} out of range 0..{COUNTER_LIMIT - 1}")

    def pack(self) -> int:
        """The sortable integer form stored in the database and sent on the wire."""
        return (self.wall_ms << COUNTER_BITS) | self.counter

    @classmethod
    def unpack(cls, value: int) -> Hlc:
        if value < 0:
            raise InvalidHlcError(f"packed HLC {value} is negative")
        return cls(value >> COUNTER_BITS, value & (COUNTER_LIMIT - 1))

    def __str__(self) -> str:
        return f"{self.wall_ms}.{self.counter}"


ZERO: Final = Hlc(0, 0)


class HybridLogicalClock:
    """A monotonic HLC; ``last`` seeds it (the newest timestamp persisted before a restart)."""

    __slots__ = ("_last",)

    def __init__(self, last: Hlc = ZERO) -> None:
        self._last = last

    @property
    def last(self) -> Hlc:
        """The greatest timestamp issued or observed so far."""
        return self._last

    def now(self, wall_ms: int) -> Hlc:
        """A new timestamp, strictly greater than every earlier one, never behind ``wall_ms``."""
        wall_ms = min(max(wall_ms, 0), MAX_WALL_MS)
        last = self._last
        if wall_ms > last.wall_ms:
            nxt = Hlc(wall_ms, 0)
        elif last.counter + 1 < COUNTER_LIMIT:
            nxt = Hlc(last.wall_ms, last.counter + 1)
        elif last.wall_ms < MAX_WALL_MS:
            nxt = Hlc(last.wall_ms + 1, 0)
        else:  # 2^47 ms is in the year 6429; reaching it means a corrupted seed, not the passage of time
            raise InvalidHlcError("HLC exhausted: wall time at its maximum")
        self._last = nxt
        return nxt

    def observe(self, remote: Hlc) -> None:
        """Merge a timestamp received from elsewhere: every later ``now()`` orders after it."""
        self._last = max(self._last, remote)
