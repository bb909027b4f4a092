"""Per-source token buckets: admission, refill, isolation between sources, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.ratelimit import SourceRateLimiter


def test_steady_traffic_under_the_rate_always_passes() -> None:
    rl = SourceRateLimiter(rate=10, burst=5, max_sources=100)
    now = 0.0
    for _ in range(1000):
        assert rl.allow("127.0.0.10", now)
        now += 0.11  # 9.1 messages/s against a rate of 10
    assert rl.stats().dropped == 0
    assert rl.stats().admitted == 1000


def test_a_burst_beyond_burst_is_cut() -> None:
    rl = SourceRateLimiter(rate=10, burst=5, max_sources=100)
    results = [rl.allow("127.0.0.10", 0.0) for _ in range(8)]
    assert results == [True] * 5 + [False] * 3
    stats = rl.stats()
    assert (stats.admitted, stats.dropped) == (5, 3)
    assert stats.top_offenders == (("127.0.0.10", 3),)


def test_tokens_refill_with_time_up_to_burst() -> None:
    rl = SourceRateLimiter(rate=10, burst=5, max_sources=100)
    for _ in range(5):
        assert rl.allow("127.0.0.10", 0.0)
    assert not rl.allow("127.0.0.10", 0.0)
    assert not rl.allow("127.0.0.10", 0.05)  # half a token
    assert rl.allow("127.0.0.10", 0.1)  # one whole token
    assert not rl.allow("127.0.0.10", 0.1)
    # A long silence refills to burst, not beyond.
    admitted = sum(rl.allow("127.0.0.10", 100.0) for _ in range(20))
    assert admitted == 5


def test_clock_stepping_back_does_not_refill_or_break() -> None:
    rl = SourceRateLimiter(rate=1, burst=1, max_sources=10)
    assert rl.allow("127.0.0.10", 50.0)
    assert not rl.allow("127.0.0.10", 10.0)
    assert not rl.allow("127.0.0.10", 50.5)
    assert rl.allow("127.0.0.10", 51.0)


def test_a_flooding_source_does_not_reduce_another_allowance() -> None:
    rl = SourceRateLimiter(rate=20, burst=10, max_sources=100)
    now = 0.0
    polite_ok = 0
    for _ in range(1000):
        for _ in range(50):
            rl.allow("127.0.0.66", now)  # 50 000 messages/s
        polite_ok += rl.allow("127.0.0.10", now)  # 1 000 messages/s, also above its rate
        now += 0.001
    # The polite source got exactly its own allowance over the second: burst + rate * ~1 s.
    assert 10 + 19 <= polite_ok <= 10 + 20
    flood_dropped = dict(rl.stats().top_offenders)["127.0.0.66"]
    assert flood_dropped >= 50_000 - (10 + 20)


def test_an_idle_polite_source_is_untouched_by_a_flood() -> None:
    rl = SourceRateLimiter(rate=5, burst=3, max_sources=100)
    for i in range(10_000):
        rl.allow("127.0.0.66", i * 0.0001)
    assert [rl.allow("127.0.0.10", 1.0) for _ in range(3)] == [True, True, True]


def test_table_never_exceeds_max_sources_and_evicts_least_recently_seen() -> None:
    rl = SourceRateLimiter(rate=1, burst=2, max_sources=3)
    rl.allow("127.0.0.1", 0.0)
    rl.allow("127.0.0.1", 0.0)
    assert not rl.allow("127.0.0.1", 0.0)  # empty bucket
    rl.allow("127.0.0.2", 0.0)
    rl.allow("127.0.0.3", 0.0)
    rl.allow("127.0.0.1", 0.0)  # seen again: now the most recent
    rl.allow("127.0.0.4", 0.0)  # evicts 127.0.0.2, the least recently seen
    assert len(rl) == 3
    # 127.0.0.1 kept its empty bucket (not evicted, so not refilled).
    assert not rl.allow("127.0.0.1", 0.0)
    for i in range(10_000):
        rl.allow(f"127.1.{i // 256}.{i % 256}", 0.0)
        assert len(rl) <= 3
    assert rl.stats().sources == 3


def test_prune_forgets_only_sources_whose_bucket_is_full_again() -> None:
    rl = SourceRateLimiter(rate=2, burst=4, max_sources=100)
    rl.allow("127.0.0.1", 0.0)
    rl.allow("127.0.0.2", 1.0)
    rl.allow("127.0.0.3", 3.0)
    assert rl.prune(2.5) == 1  # 127.0.0.1 idle 2.5 s >= burst/rate = 2 s
    assert len(rl) == 2
    assert rl.prune(2.5) == 0
    assert rl.prune(10.0) == 2
    assert len(rl) == 0


def test_top_offenders_are_bounded_and_name_the_heavy_hitter() -> None:
    rl = SourceRateLimiter(rate=1, burst=1, max_sources=10_000, top=4)
    for i in range(500):
        rl.allow("127.0.0.66", 0.0)
        spoofed = f"127.2.{i // 256}.{i % 256}"
        rl.allow(spoofed, 0.0)
        rl.allow(spoofed, 0.0)  # one drop each
    stats = rl.stats()
    assert len(stats.top_offenders) == 4
    assert stats.top_offenders[0] == ("127.0.0.66", 499)
    assert stats.dropped == 499 + 500


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        SourceRateLimiter(rate=0, burst=1, max_sources=1)
    with pytest.raises(ValueError):
        SourceRateLimiter(rate=1, burst=0, max_sources=1)
    with pytest.raises(ValueError):
        SourceRateLimiter(rate=1, burst=1, max_sources=0)


SOURCES = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "::1"]
# Back-to-back messages (0), short gaps and long silences, so that bursts after idle periods are common.
GAPS = st.one_of(
    st.sampled_from([0.0, 0.0, 0.001, 0.1, 1.0, 5.0]),
    st.floats(min_value=0.0, max_value=2.0, allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(min_value=0.1, max_value=100.0, allow_nan=False),
    burst=st.integers(min_value=1, max_value=20),
    events=st.lists(
        st.tuples(st.sampled_from(SOURCES), GAPS),
        max_size=300,
    ),
)
def test_admitted_over_any_window_never_exceeds_burst_plus_rate_times_window(
    rate: float, burst: int, events: list[tuple[str, float]]
) -> None:
    # The bound holds for sources that stay in the table, so the table holds them all.
    rl = SourceRateLimiter(rate=rate, burst=burst, max_sources=len(SOURCES))
    now = 0.0
    admitted: dict[str, list[float]] = {s: [] for s in SOURCES}
    for source, dt in events:
        now += dt
        if rl.allow(source, now):
            admitted[source].append(now)
    for times in admitted.values():
        for i in range(len(times)):
            for j in range(i, len(times)):
                window = times[j] - times[i]
                assert j - i + 1 <= burst + rate * window + 1e-6
    total = sum(len(t) for t in admitted.values())
    assert rl.stats().admitted == total
    assert rl.stats().dropped == len(events) - total
