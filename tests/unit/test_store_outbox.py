"""The outbox (DESIGN.md §5.3): append, read after a seq, acknowledge, prune; seq never reused."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.store import (
    Database,
    Hlc,
    HybridLogicalClock,
    LocalProtocolError,
    Outbox,
    OutboxAckError,
    StoreError,
    Transaction,
)

SETTINGS = settings(
    max_examples=int(os.environ.get("APPLIANCE_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class FakeWall:
    """A wall clock the test sets by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counter_ids(prefix: str = "ev") -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[Database]:
    db = await Database.open(path)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with opened(tmp_path / "appliance.db") as database:
        yield database


def make_outbox(db: Database, wall: FakeWall | None = None) -> Outbox:
    wall = wall or FakeWall()
    hlc = HybridLogicalClock()
    return Outbox(db, new_id=counter_ids(), clock=lambda: hlc.now(int(wall() * 1000)), wall=wall)


async def test_append_returns_the_stored_event(db: Database) -> None:
    wall = FakeWall(1000.0)
    outbox = make_outbox(db, wall)
    first = await outbox.append("mode.changed", {"old": "ONLINE", "new": "SUSPECT"})
    wall.now = 1000.25
    second = await outbox.append("cdr", {"duration": 12.5, "legs": [1, 2]})
    assert (first.seq, first.id, first.type, first.hlc, first.created) == (
        1,
        "ev1",
        "mode.changed",
        Hlc(1_000_000, 0),
        1000.0,
    )
    assert first.body == {"old": "ONLINE", "new": "SUSPECT"}
    assert (second.seq, second.id, second.hlc, second.created) == (2, "ev2", Hlc(1_000_250, 0), 1000.25)
    assert await outbox.read_after(0, 10) == [first, second]
    assert await outbox.last_seq() == 2
    assert await outbox.pending_count() == 2
    assert await outbox.acked_seq() == 0


async def test_read_after_a_seq_with_a_limit(db: Database) -> None:
    outbox = make_outbox(db)
    for n in range(10):
        await outbox.append("n", {"n": n})
    assert [e.seq for e in await outbox.read_after(0, 3)] == [1, 2, 3]
    assert [e.seq for e in await outbox.read_after(3, 3)] == [4, 5, 6]
    assert [e.body["n"] for e in await outbox.read_after(8, 100)] == [8, 9]
    assert await outbox.read_after(10, 100) == []
    assert await outbox.read_after(99, 1) == []
    for seq, limit in [(-1, 1), (0, 0), (0, 10_001)]:
        with pytest.raises(LocalProtocolError):
            await outbox.read_after(seq, limit)


async def test_acknowledge_is_monotonic_and_bounded(db: Database) -> None:
    outbox = make_outbox(db)
    for n in range(5):
        await outbox.append("n", {"n": n})
    assert await outbox.acknowledge(3) == 3
    assert await outbox.acked_seq() == 3
    assert await outbox.pending_count() == 2
    assert await outbox.acknowledge(1) == 0  # a late retransmission of an old ack
    assert await outbox.acknowledge(3) == 0  # a replay
    assert await outbox.acked_seq() == 3
    with pytest.raises(OutboxAckError) as info:
        await outbox.acknowledge(6)
    assert str(info.value) == "cannot acknowledge seq 6: the last seq issued is 5"
    assert info.value.status == 409
    with pytest.raises(OutboxAckError):
        await outbox.acknowledge(-1)
    assert await outbox.acked_seq() == 3
    assert await outbox.acknowledge(5) == 2
    assert (await outbox.acked_seq(), await outbox.pending_count()) == (5, 0)
    # Acknowledging prunes: the cloud holds them now.
    assert await outbox.read_after(0, 10) == []


async def test_acknowledge_prunes_only_acknowledged_events(db: Database) -> None:
    outbox = make_outbox(db)
    for n in range(6):
        await outbox.append("n", {"n": n})
    assert await outbox.prune() == 0
    assert await outbox.acknowledge(4) == 4
    assert await outbox.prune() == 0
    assert [e.seq for e in await outbox.read_after(0, 10)] == [5, 6]
    assert (await outbox.last_seq(), await outbox.pending_count()) == (6, 2)


async def test_prune_deletes_what_older_firmware_acknowledged_without_pruning(db: Database) -> None:
    outbox = make_outbox(db)
    for n in range(4):
        await outbox.append("n", {"n": n})
    async with db.transaction() as tx:  # as an acknowledgement by older firmware left it
        await tx.execute("UPDATE outbox_state SET acked_seq = 3 WHERE singleton = 1")
    reopened = make_outbox(db)
    stats = await reopened.stats()
    assert (stats.first_seq, stats.acked_seq, stats.pending) == (1, 3, 1)
    assert await reopened.prune() == 3
    assert (await reopened.stats()).first_seq == 4
    assert [e.seq for e in await reopened.read_after(0, 10)] == [4]


async def test_seq_is_never_reused_after_prune_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    async with opened(path) as db:
        outbox = make_outbox(db)
        for n in range(3):
            await outbox.append("n", {"n": n})
        assert await outbox.acknowledge(3) == 3
        assert await outbox.read_after(0, 10) == []
        assert await outbox.last_seq() == 3
    async with opened(path) as db:
        outbox = make_outbox(db)
        assert (await outbox.last_seq(), await outbox.acked_seq(), await outbox.pending_count()) == (3, 3, 0)
        event = await outbox.append("n", {"n": 3})
        assert event.seq == 4
        with pytest.raises(OutboxAckError):
            await outbox.acknowledge(5)


async def test_concurrent_appends_are_group_committed(db: Database) -> None:
    transactions = 0
    real = db.transaction

    @asynccontextmanager
    async def counting() -> AsyncIterator[Transaction]:
        nonlocal transactions
        transactions += 1
        async with real() as tx:
            yield tx

    db.transaction = counting  # type: ignore[method-assign]
    outbox = make_outbox(db)
    events = await asyncio.gather(*(outbox.append("n", {"n": n}) for n in range(100)))
    assert sorted(e.seq for e in events) == list(range(1, 101))
    assert [e.body["n"] for e in events] == list(range(100))  # each caller got its own event
    assert len({e.id for e in events}) == 100
    by_seq = sorted(events, key=lambda e: e.seq)
    assert all(a.hlc < b.hlc for a, b in itertools.pairwise(by_seq))  # HLC order agrees with seq order
    assert transactions < 10
    assert await outbox.read_after(0, 200) == by_seq


async def test_a_failed_batch_is_retried_event_by_event(db: Database) -> None:
    # The first transaction of the batch fails on a repeated id and rolls back; each event is then
    # written on its own with fresh ids, and the rolled-back seqs are not consumed.
    ids = iter(["a", "b", "a", "c", "d", "e"])
    outbox = Outbox(db, new_id=lambda: next(ids), wall=FakeWall())
    assert await outbox.last_seq() == 0  # the counters are read at first use; now the three share a batch
    events = await asyncio.gather(*(outbox.append("n", {"n": n}) for n in range(3)))
    assert [(e.seq, e.id, e.body["n"]) for e in events] == [(1, "c", 0), (2, "d", 1), (3, "e", 2)]
    assert await outbox.read_after(0, 10) == events


async def test_one_bad_event_does_not_fail_its_batch(db: Database) -> None:
    outbox = Outbox(db, new_id=lambda: "same", wall=FakeWall())  # every id after the first collides
    results = await asyncio.gather(*(outbox.append("n", {"n": n}) for n in range(3)), return_exceptions=True)
    first = results[0]
    assert not isinstance(first, BaseException) and (first.seq, first.id) == (1, "same")
    for failed in results[1:]:
        assert isinstance(failed, StoreError) and "UNIQUE constraint failed: outbox.id" in str(failed)
    assert [e.id for e in await outbox.read_after(0, 10)] == ["same"]


async def test_append_many_is_one_transaction(db: Database) -> None:
    outbox = make_outbox(db)
    events = await outbox.append_many([("a", {"n": 1}), ("b", {"n": 2})])
    assert [(e.seq, e.type) for e in events] == [(1, "a"), (2, "b")]
    assert await outbox.append_many([]) == []
    with pytest.raises(LocalProtocolError):  # refused before anything is written
        await outbox.append_many([("c", {"n": 3}), ("d", {"bad": object()})])
    ids = iter(["x", "x"])
    dup = Outbox(db, new_id=lambda: next(ids), wall=FakeWall())
    with pytest.raises(StoreError):
        await dup.append_many([("e", {}), ("f", {})])
    assert [e.type for e in await outbox.read_after(0, 10)] == ["a", "b"]


@pytest.mark.parametrize(
    ("event_type", "body", "message"),
    [
        ("", {}, "event type must be 1-64 letters, digits, '_', '.' or '-': ''"),
        ("a b", {}, "event type must be 1-64 letters, digits, '_', '.' or '-': 'a b'"),
        ("x" * 65, {}, "event type must be 1-64 letters"),
        ("t", [1, 2], "event body must be a mapping, not list"),
        ("t", {"f": object()}, "event body cannot be encoded as CBOR"),
        ("t", {"big": b"x" * (256 * 1024)}, "event body is 262154 bytes, over 262144"),
    ],
)
async def test_bad_events_fail_their_caller_only(
    db: Database, event_type: str, body: Any, message: str
) -> None:
    outbox = make_outbox(db)
    with pytest.raises(LocalProtocolError) as info:
        await outbox.append(event_type, body)
    assert str(info.value).startswith(message)
    assert (await outbox.append("ok", {})).seq == 1


async def test_default_clock_stays_monotonic_across_a_restart_with_the_wall_clock_set_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "appliance.db"
    async with opened(path) as db:
        outbox = Outbox(db, wall=FakeWall(2000.0))
        before = await outbox.append("a", {})
        await outbox.acknowledge(1)  # prunes: the newest timestamp must survive even with no event left
        assert await outbox.last_hlc() == before.hlc == Hlc(2_000_000, 0)
    async with opened(path) as db:
        outbox = Outbox(db, wall=FakeWall(1500.0))  # the appliance rebooted with its clock behind
        after = await outbox.append("b", {})
        assert after.hlc == Hlc(2_000_000, 1)
        assert after.created == 1500.0
        assert len(after.id) == 32 and int(after.id, 16) >= 0  # uuid4 hex by default


async def test_cancelled_append_never_hangs_the_others(db: Database) -> None:
    outbox = make_outbox(db)
    tasks = [asyncio.create_task(outbox.append("n", {"n": n})) for n in range(5)]
    await asyncio.sleep(0)
    tasks[2].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [e.body["n"] for e in done if not isinstance(e, BaseException)] == [0, 1, 3, 4]
    await outbox.close()
    seqs = [e.seq for e in await outbox.read_after(0, 10)]
    assert len(seqs) in (4, 5) and seqs == list(range(1, len(seqs) + 1))  # written once or not at all


async def test_close_waits_for_queued_appends(db: Database) -> None:
    outbox = make_outbox(db)
    tasks = [asyncio.create_task(outbox.append("n", {"n": n})) for n in range(20)]
    await asyncio.sleep(0)
    await outbox.close()
    assert all(t.done() for t in tasks)
    assert await outbox.last_seq() == 20


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@SETTINGS
@given(st.lists(st.dictionaries(st.text(max_size=10), json_like, max_size=5), min_size=1, max_size=5))
async def test_bodies_round_trip(tmp_path: Path, bodies: list[dict[str, Any]]) -> None:
    path = tmp_path / f"rt-{os.urandom(6).hex()}.db"
    async with opened(path) as db:
        outbox = make_outbox(db)
        appended = [await outbox.append("body", body) for body in bodies]
        assert [e.body for e in appended] == bodies
    async with opened(path) as db:
        stored = await make_outbox(db).read_after(0, 100)
    assert [e.body for e in stored] == bodies
    assert stored == appended


async def test_the_newest_timestamp_is_that_of_the_newest_row_until_it_is_pruned(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    async with opened(path) as db:
        outbox = Outbox(db, wall=FakeWall(3000.0))
        await outbox.append("a", {})
        newest = await outbox.append("b", {})
        assert await outbox.last_hlc() == newest.hlc == Hlc(3_000_000, 1)
        await outbox.acknowledge(1)  # the newest row stays
    async with opened(path) as db:
        outbox = Outbox(db, wall=FakeWall(1000.0))
        assert await outbox.last_hlc() == newest.hlc
        assert (await outbox.append("c", {})).hlc == Hlc(3_000_000, 2)
        await outbox.acknowledge(3)  # every row gone: the prune kept the newest timestamp
        assert await outbox.last_hlc() == Hlc(3_000_000, 2)
