"""The hybrid logical clock: monotonic whatever the wall clock does, packed form sorts like the pair."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.store import Hlc, HybridLogicalClock, InvalidHlcError
from appliance.store.hlc import COUNTER_LIMIT, MAX_WALL_MS

SETTINGS = settings(max_examples=int(os.environ.get("APPLIANCE_HYPOTHESIS_EXAMPLES", "200")), deadline=None)

hlcs = st.builds(Hlc, st.integers(0, MAX_WALL_MS), st.integers(0, COUNTER_LIMIT - 1))


def test_takes_the_wall_clock_when_it_moves_forward() -> None:
    clock = HybridLogicalClock()
    assert clock.now(1000) == Hlc(1000, 0)
    assert clock.now(1000) == Hlc(1000, 1)
    assert clock.now(1005) == Hlc(1005, 0)
    assert clock.last == Hlc(1005, 0)


def test_wall_clock_stepping_back_keeps_the_last_wall_time_and_counts() -> None:
    clock = HybridLogicalClock()
    clock.now(5000)
    assert clock.now(4000) == Hlc(5000, 1)  # NTP stepped the clock back a second
    assert clock.now(4999) == Hlc(5000, 2)
    assert clock.now(5001) == Hlc(5001, 0)  # caught up: back to real time


def test_counter_overflow_borrows_a_millisecond() -> None:
    clock = HybridLogicalClock(Hlc(7, COUNTER_LIMIT - 2))
    assert clock.now(7) == Hlc(7, COUNTER_LIMIT - 1)
    assert clock.now(7) == Hlc(8, 0)
    assert clock.now(8) == Hlc(8, 1)


def test_observe_orders_later_timestamps_after_a_remote_one() -> None:
    clock = HybridLogicalClock()
    clock.now(1000)
    clock.observe(Hlc(9000, 3))  # the cloud's clock is ahead
    assert clock.now(1001) == Hlc(9000, 4)
    clock.observe(Hlc(10, 0))  # an older remote timestamp changes nothing
    assert clock.now(1002) == Hlc(9000, 5)


def test_seeded_clock_continues_after_restart() -> None:
    clock = HybridLogicalClock(Hlc(2000, 5))
    assert clock.now(1500) == Hlc(2000, 6)


def test_exhausted_clock_raises() -> None:
    clock = HybridLogicalClock(Hlc(MAX_WALL_MS, COUNTER_LIMIT - 1))
    with pytest.raises(InvalidHlcError):
        clock.now(0)


@pytest.mark.parametrize(("wall", "counter"), [(-1, 0), (0, -1), (0, COUNTER_LIMIT), (MAX_WALL_MS + 1, 0)])
def test_out_of_range_values_are_refused(wall: int, counter: int) -> None:
    with pytest.raises(InvalidHlcError) as info:
        Hlc(wall, counter)
    assert isinstance(info.value, ValueError)


def test_pack_layout() -> None:
    assert Hlc(1, 2).pack() == (1 << 16) | 2
    assert Hlc.unpack((5 << 16) | 7) == Hlc(5, 7)
    assert Hlc(MAX_WALL_MS, COUNTER_LIMIT - 1).pack() == (1 << 63) - 1  # fits SQLite's INTEGER
    assert str(Hlc(12, 3)) == "12.3"
    with pytest.raises(InvalidHlcError):
        Hlc.unpack(-1)


@SETTINGS
@given(hlcs, hlcs)
def test_packed_form_round_trips_and_sorts_like_the_pair(a: Hlc, b: Hlc) -> None:
    assert Hlc.unpack(a.pack()) == a
    assert (a < b) == (a.pack() < b.pack())
    assert (a == b) == (a.pack() == b.pack())


operations = st.lists(
    st.one_of(
        st.tuples(st.just("now"), st.integers(-(10**6), 2 * 10**12)),
        st.tuples(st.just("observe"), hlcs.filter(lambda h: h.wall_ms < 3 * 10**12)),
    ),
    max_size=60,
)


@SETTINGS
@given(st.integers(0, 2 * 10**12), operations)
def test_monotonic_under_any_wall_clock(start: int, ops: list[tuple[str, object]]) -> None:
    clock = HybridLogicalClock()
    highest = clock.now(start)
    for op, arg in ops:
        if op == "observe":
            assert isinstance(arg, Hlc)
            clock.observe(arg)
            highest = max(highest, arg)
        else:
            assert isinstance(arg, int)
            stamp = clock.now(arg)
            assert stamp > highest  # strictly after everything issued or observed
            assert stamp.wall_ms >= arg  # never behind the wall clock
            highest = stamp
        assert clock.last == highest
