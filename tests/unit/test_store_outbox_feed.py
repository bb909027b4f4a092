"""The outbox as the sync API uses it: raw reads, long-poll waits, acknowledge-and-prune, cheap stats."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import pytest

from appliance.store import (
    Database,
    LocalProtocolError,
    Outbox,
    OutboxAckError,
    OutboxStats,
    RawEvent,
    new_event_id,
)
from tests.unit.test_store_outbox import opened


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with opened(tmp_path / "appliance.db") as database:
        yield database


def make_outbox(db: Database, quota_bytes: int | None = None) -> Outbox:
    numbers = itertools.count(1)
    return Outbox(db, quota_bytes=quota_bytes, new_id=lambda: f"{next(numbers):032x}", wall=lambda: 1000.5)


async def test_raw_read_gives_the_stored_canonical_bytes(db: Database) -> None:
    outbox = make_outbox(db)
    appended = [await outbox.append("call.record", {"n": n, "b": "x", "a": [1, 2]}) for n in range(5)]
    raw = await outbox.read_raw_after(1, 3)
    assert [r.seq for r in raw] == [2, 3, 4]
    for event, stored in zip(appended[1:4], raw, strict=True):
        assert stored == RawEvent(
            event.seq,
            event.id,
            "call.record",
            event.hlc.pack(),
            1000.5,
            cbor2.dumps(event.body, canonical=True),
        )
        assert isinstance(stored.body, bytes) and cbor2.loads(stored.body) == event.body
    assert await outbox.read_raw_after(5, 10) == []
    for seq, limit in [(-1, 1), (0, 0), (0, 10_001)]:
        with pytest.raises(LocalProtocolError):
            await outbox.read_raw_after(seq, limit)


async def test_wait_for_append_returns_at_once_when_an_event_is_already_there(db: Database) -> None:
    outbox = make_outbox(db)
    await outbox.append("mode.changed", {})
    assert await outbox.wait_for_append(0, 0.0) is True
    assert await outbox.wait_for_append(1, 0.0) is False


async def test_wait_for_append_wakes_on_the_commit(db: Database) -> None:
    outbox = make_outbox(db)
    waiter = asyncio.create_task(outbox.wait_for_append(0, 5.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    event = await outbox.append("mode.changed", {})
    assert await asyncio.wait_for(waiter, 1.0) is True  # woken by the commit, not by its timeout
    assert event.seq == 1


async def test_wait_for_append_times_out(db: Database) -> None:
    outbox = make_outbox(db)
    await outbox.append("a", {})
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await outbox.wait_for_append(1, 0.05) is False
    assert 0.04 <= loop.time() - start < 0.5


async def test_many_waiters_on_different_seqs(db: Database) -> None:
    outbox = make_outbox(db)
    waiters = [asyncio.create_task(outbox.wait_for_append(after, 0.3)) for after in (0, 1, 2)]
    await asyncio.sleep(0)
    await outbox.append("a", {})
    await outbox.append("b", {})
    assert await asyncio.gather(*waiters) == [True, True, False]


async def test_acknowledge_prunes_in_one_step_and_replays_change_nothing(db: Database) -> None:
    outbox = make_outbox(db)
    for n in range(10):
        await outbox.append("a", {"n": n})
    assert await outbox.acknowledge(4) == 4
    assert [e.seq for e in await outbox.read_raw_after(0, 100)] == list(range(5, 11))
    for replay in (4, 3, 0):
        assert await outbox.acknowledge(replay) == 0
    with pytest.raises(OutboxAckError) as info:
        await outbox.acknowledge(11)
    assert info.value.status == 409
    stats = await outbox.stats()
    assert (stats.first_seq, stats.last_seq, stats.acked_seq, stats.pending) == (5, 10, 4, 6)
    assert await outbox.acknowledge(10) == 6
    assert await outbox.read_raw_after(0, 100) == []


async def test_acknowledge_completes_when_its_caller_is_cancelled(db: Database) -> None:
    outbox = make_outbox(db)
    for n in range(3):
        await outbox.append("a", {"n": n})
    task = asyncio.create_task(outbox.acknowledge(2))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The shielded acknowledgement went on: a second one queues behind it and finds a replay.
    assert await outbox.acknowledge(2) == 0
    stats = await outbox.stats()
    assert (stats.acked_seq, stats.pending, stats.first_seq) == (2, 1, 3)
    assert [e.seq for e in await outbox.read_raw_after(0, 10)] == [3]


async def test_stats_are_kept_in_memory_and_match_a_reopened_database(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    db = await Database.open(path)
    outbox = make_outbox(db, quota_bytes=1_000_000)
    empty = await outbox.stats()
    assert empty == OutboxStats(1, 0, 0, 0, 0, 1_000_000, "normal", empty.thinned, empty.refused)
    bodies = [{"n": n, "pad": "p" * n} for n in range(20)]
    for body in bodies:
        await outbox.append("call.record", body)
    await outbox.acknowledge(5)
    live = await outbox.stats()
    expected_bytes = sum(len(cbor2.dumps(b, canonical=True)) + 160 for b in bodies[5:])
    assert (live.first_seq, live.last_seq, live.acked_seq, live.pending, live.bytes) == (
        6,
        20,
        5,
        15,
        expected_bytes,
    )
    queries = 0
    real = db.fetchall

    async def counting(sql: str, params: object = ()) -> list[tuple[object, ...]]:
        nonlocal queries
        queries += 1
        return await real(sql, params)  # type: ignore[arg-type]

    db.fetchall = counting  # type: ignore[method-assign]
    for _ in range(100):
        await outbox.stats()
    assert queries == 0
    db.fetchall = real  # type: ignore[method-assign]
    await db.close()
    db = await Database.open(path)
    try:
        reopened = await make_outbox(db, quota_bytes=1_000_000).stats()
    finally:
        await db.close()
    assert reopened == live


def test_default_ids_are_uuid7_in_time_order() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for event_id in ids[:50]:
        parsed = uuid.UUID(hex=event_id)
        assert (len(event_id), parsed.version, parsed.variant) == (32, 7, uuid.RFC_4122)
    millis = [int(event_id[:12], 16) for event_id in ids]
    assert millis == sorted(millis)  # the id index grows at its end
    assert abs(millis[0] - time.time() * 1000) < 60_000
