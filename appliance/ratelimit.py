"""Per-source rate limiting for the SIP edge: a token bucket per source IP address, in bounded memory.

Theory of operation. Each source address owns a bucket holding up to ``burst`` tokens that refills at
``rate`` tokens per second; a message is admitted when a whole token is available and takes it. Over any
window of ``w`` seconds a source that stays in the table is therefore admitted at most
``burst + rate * w`` messages, whatever the others do: a flood from one address is cut without touching
anyone else's allowance.

The table is an ``OrderedDict`` kept in least-recently-seen order and capped at ``max_sources``: a new
source beyond the cap evicts the one seen longest ago, so a flood of spoofed source addresses costs
bounded memory. An evicted source comes back with a full bucket; size the table above the number of
legitimate sources active within ``burst / rate`` seconds so that eviction only ever hits idle or
spoofed entries. :meth:`SourceRateLimiter.prune` drops entries whose bucket is full again (they are
indistinguishable from new ones) so that memory follows the traffic.

Drops are attributed with the Space-Saving algorithm (Metwally, Agrawal, El Abbadi, 2005): ``top``
counters track the heaviest droppers exactly enough to name the offenders (a count may be overestimated
by at most the smallest tracked count), again in bounded memory.

Sans-I/O: time is the ``now`` argument (seconds on a monotonic clock, e.g. ``loop.time()``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimitStats:
    """A snapshot for the NOC and the metrics: totals and the heaviest droppers, heaviest first."""

    admitted: int
    dropped: int
    sources: int
    top_offenders: tuple[tuple[str, int], ...]


class SourceRateLimiter:
    """Token buckets keyed by source address.

    ``source`` is the peer's IP address as text, without the port: a flood from one host using many
    ports is one source.
    """

    __slots__ = ("_admitted", "_buckets", "_burst", "_dropped", "_max", "_offenders", "_rate", "_top")

    def __init__(self, *, rate: float, burst: int, max_sources: int, top: int = 10) -> None:
        """``rate`` tokens per second (> 0), ``burst`` tokens at most (>= 1), ``max_sources`` buckets at
        most (>= 1), ``top`` offenders tracked for :meth:`stats` (>= 1). Raises :class:`ValueError`."""
        if not rate > 0:
            raise ValueError(f"rate must be positive, not {rate}")
        if burst < 1 or max_sources < 1 or top < 1:
            raise ValueError("burst, max_sources and top must be at least 1")
        self._rate = float(rate)
        self._burst = float(burst)
        self._max = max_sources
        self._top = top
        # source -> [tokens, last refill time]; a list so the hot path updates in place.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._offenders: dict[str, int] = {}
        self._admitted = 0
        self._dropped = 0

    def __len__(self) -> int:
        """Sources currently tracked (never more than ``max_sources``)."""
        return len(self._buckets)

    def allow(self, source: str, now: float) -> bool:
        """Take a token for ``source`` at time ``now``; True to admit the message, False to drop it."""
        buckets = self._buckets
        bucket = buckets.get(source)
        if bucket is None:
            if len(buckets) >= self._max:
                buckets.popitem(last=False)
            # A new source starts full, minus the token this message takes.
            buckets[source] = [self._burst - 1.0, now]
            self._admitted += 1
            return True
        buckets.move_to_end(source)
        tokens, last = bucket
        # A clock that steps back refills nothing rather than draining the bucket.
        if now > last:
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            self._admitted += 1
            return True
        bucket[0] = tokens
        self._dropped += 1
        self._count_offender(source)
        return False

    def prune(self, now: float) -> int:
        """Forget sources idle long enough for their bucket to be full again; returns how many.

        Costs O(forgotten): the table is in last-seen order, so the scan stops at the first recent entry.
        """
        idle = self._burst / self._rate
        buckets = self._buckets
        removed = 0
        while buckets:
            source, (_, last) = next(iter(buckets.items()))
            if now - last < idle:
                break
            del buckets[source]
            removed += 1
        return removed

    def stats(self) -> RateLimitStats:
        ranked = sorted(self._offenders.items(), key=lambda item: (-item[1], item[0]))
        return RateLimitStats(
            admitted=self._admitted,
            dropped=self._dropped,
            sources=len(self._buckets),
            top_offenders=tuple(ranked),
        )

    def _count_offender(self, source: str) -> None:
        offenders = self._offenders
        count = offenders.get(source)
        if count is not None:
            offenders[source] = count + 1
        elif len(offenders) < self._top:
            offenders[source] = 1
        else:
            # Space-Saving: the newcomer inherits the smallest counter, so a real heavy hitter climbs in.
            victim = min(offenders, key=offenders.__getitem__)
            offenders[source] = offenders.pop(victim) + 1
