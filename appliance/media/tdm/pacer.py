"""The span's 20 ms tick: one deadline schedule for every timeslot, and how late each tick ran.

Theory of operation. Tick ``k`` is due at ``start + k * PERIOD`` on the monotonic clock: deadlines are
computed from the start, never from the previous tick, so the schedule does not drift by the loop's
latency. The glue arms one timer for :attr:`Pacer.deadline` and, when it fires, reads the clock at full
resolution and calls :meth:`Pacer.fire`, which says how many ticks to run now:

* on time (or up to :data:`EARLY` before the deadline, since a timer may fire a little early): one;
* one or more periods late: the due tick plus **one** catch-up tick — two frames leave back to back, a
  burst of at most one extra frame — and any further missed ticks are skipped (counted in
  :attr:`Pacer.skipped`; the glue drains the skipped frames from the jitter buffers so the playout
  point keeps pace with the senders). The schedule stays on the grid: the next deadline is the next
  ``start + k * PERIOD`` after ``now``.

The pacing error of each tick (how far from its deadline it ran, early or late: ``|actual - ideal|``) goes
into a histogram of :data:`BIN` wide bins up to :data:`HISTOGRAM_SPAN`, beyond which one overflow bin
holds them (the maximum is kept exactly), so percentiles cost no memory per tick.

Pure code: ``now`` is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

PERIOD: Final = 0.020
EARLY: Final = 0.0005  # a tick this close to its deadline runs now rather than after one more wake-up
BIN: Final = 0.00005  # 50 µs
HISTOGRAM_SPAN: Final = 0.100
_BINS: Final = round(HISTOGRAM_SPAN / BIN)


@dataclass(frozen=True, slots=True)
class PacingStats:
    """Pacing error percentiles in milliseconds (bin upper bounds, so never under-stated), the exact
    maximum, the ticks run and the ticks skipped."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    ticks: int
    skipped: int


class Histogram:
    """Fixed-bin histogram of non-negative durations in seconds."""

    __slots__ = ("bins", "count", "maximum")

    def __init__(self) -> None:
        self.bins = [0] * (_BINS + 1)
        self.count = 0
        self.maximum = 0.0

    def add(self, value: float) -> None:
        value = max(0.0, value)
        self.bins[min(_BINS, int(value / BIN))] += 1
        self.count += 1
        self.maximum = max(self.maximum, value)

    def percentile(self, fraction: float) -> float:
        """The upper bound of the bin holding the ``fraction`` quantile (the maximum for the overflow
        bin); 0.0 when empty."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index, count in enumerate(self.bins):
            seen += count
            if seen >= rank:
                return self.maximum if index == _BINS else min(self.maximum, (index + 1) * BIN)
        return self.maximum  # pragma: no cover - the bins hold every sample


class Pacer:
    """The tick schedule of one span, started at ``start``; the first tick is due one period later."""

    def __init__(self, start: float, *, period: float = PERIOD) -> None:
        self.start = start
        self.period = period
        self._index = 1
        self.histogram = Histogram()
        self.ticks = 0
        self.skipped = 0

    @property
    def deadline(self) -> float:
        """When the next tick is due."""
        return self.start + self._index * self.period

    def fire(self, now: float) -> tuple[int, int]:
        """``(run, skip)``: ticks to run now (0 if the timer fired early: re-arm for :attr:`deadline`, 1 or
        2) and missed ticks to skip. Records the pacing error of the tick run on its deadline."""
        due = self.deadline
        if now < due - EARLY:
            return 0, 0
        self.histogram.add(abs(now - due))
        behind = max(0, math.floor((now - due) / self.period))  # whole periods missed beyond the due tick
        run = 1 + min(1, behind)
        skip = behind - (run - 1)
        self._index += 1 + behind
        self.ticks += run
        self.skipped += skip
        return run, skip

    def stats(self) -> PacingStats:
        h = self.histogram
        return PacingStats(
            p50_ms=h.percentile(0.50) * 1e3,
            p99_ms=h.percentile(0.99) * 1e3,
            max_ms=h.maximum * 1e3,
            ticks=self.ticks,
            skipped=self.skipped,
        )
