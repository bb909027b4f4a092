"""The cloud side's durable event store: gap-free, each event once, survives a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest

from appliance.sync.client_store import ClientStore, IdReused, SeqConflict, SequenceGap
from appliance.sync.client_types import Event, EventBatch


def event(seq: int, event_id: str | None = None) -> Event:
    return Event(seq, event_id or f"{seq:032x}", "call.record", seq << 16, 1.7e9 + seq, {"n": seq})


def batch(*seqs: int, first_seq: int = 1, ids: dict[int, str] | None = None) -> EventBatch:
    ids = ids or {}
    events = [event(s, ids.get(s)) for s in seqs]
    return EventBatch(events, first_seq, max(seqs, default=first_seq - 1), 0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClientStore]:
    opened = ClientStore.open(tmp_path / "events.db")
    yield opened
    opened.close()


def test_stores_in_order_and_reads_back(store: ClientStore) -> None:
    assert store.last_seq == 0
    assert store.store(batch(1, 2, 3)) == 3
    assert store.store(batch(4)) == 1
    assert store.last_seq == 4
    held = list(store.iter_events())
    assert [e.seq for e in held] == [1, 2, 3, 4]
    assert held[2] == event(3)
    assert store.count() == 4
    assert [e.seq for e in store.iter_events(after=2, chunk=1)] == [3, 4]


def test_empty_batch_changes_nothing(store: ClientStore) -> None:
    assert store.store(batch()) == 0
    assert store.last_seq == 0


def test_gap_is_refused_and_nothing_stored(store: ClientStore) -> None:
    store.store(batch(1, 2))
    with pytest.raises(SequenceGap) as info:
        store.store(batch(4, 5))
    assert (info.value.expected, info.value.got) == (3, 4)
    with pytest.raises(SequenceGap):
        store.store(batch(3, 5))  # a hole inside the batch
    assert store.last_seq == 2
    assert store.count() == 2


def test_empty_store_starts_at_the_outbox_first_seq(store: ClientStore) -> None:
    with pytest.raises(SequenceGap):
        store.store(batch(5, 6))  # the outbox says it starts at 1: 1..4 are missing
    assert store.store(batch(5, 6, first_seq=5)) == 2
    assert store.first_seq() == 5
    with pytest.raises(SequenceGap):
        store.store(batch(8, first_seq=8))  # once something is held, only last + 1 continues


def test_replayed_events_are_skipped(store: ClientStore) -> None:
    store.store(batch(1, 2, 3))
    assert store.store(batch(2, 3)) == 0
    assert store.store(batch(3, 4, 5)) == 2
    assert [e.seq for e in store.iter_events()] == [1, 2, 3, 4, 5]


def test_same_id_at_a_new_seq_is_refused(store: ClientStore) -> None:
    store.store(batch(1, 2))
    with pytest.raises(IdReused) as info:
        store.store(batch(3, 4, ids={4: event(1).id}))
    assert (info.value.seq, info.value.held_seq) == (4, 1)
    assert store.last_seq == 2  # the whole batch was refused
    with pytest.raises(IdReused) as twice:
        store.store(batch(3, 4, ids={3: "a" * 32, 4: "a" * 32}))
    assert twice.value.held_seq is None


def test_held_seq_under_another_id_is_refused(store: ClientStore) -> None:
    store.store(batch(1, 2))
    with pytest.raises(SeqConflict) as info:
        store.store(batch(2, 3, ids={2: "b" * 32}))
    assert info.value.seq == 2
    assert store.last_seq == 2


def test_restart_keeps_every_event_and_the_position(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with ClientStore.open(path) as first:
        first.store(batch(1, 2, 3))
    with ClientStore.open(path) as again:
        assert again.last_seq == 3
        assert again.store(batch(3, 4)) == 1
        assert [e.id for e in again.iter_events()] == [event(s).id for s in (1, 2, 3, 4)]


def test_store_is_wal_and_full_sync(store: ClientStore) -> None:
    import sqlite3

    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def raw_batch(*seqs: int, first_seq: int = 1) -> EventBatch:
    """A batch as read from the appliance: with the CBOR of the answer it was decoded from."""
    made = batch(*seqs, first_seq=first_seq)
    value = {
        "events": [e._asdict() for e in made.events],
        "first_seq": made.first_seq,
        "last_seq": made.last_seq,
        "acked_seq": made.acked_seq,
    }
    return EventBatch(made.events, made.first_seq, made.last_seq, made.acked_seq, cbor2.dumps(value))


def test_answers_are_kept_whole_and_bodies_read_from_them(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with ClientStore.open(path) as store:
        assert store.store(raw_batch(1, 2, 3)) == 3
        assert store.store(raw_batch(2, 3, 4, 5)) == 2  # 2 and 3 replayed: 4 and 5 are its 3rd and 4th
        assert store.store(batch(6)) == 1  # made by hand: its body is encoded alone
        assert store.store(raw_batch(5)) == 0
    with ClientStore.open(path) as again:
        assert list(again.iter_events(chunk=2)) == [event(s) for s in range(1, 7)]
        assert list(again.iter_events(after=4)) == [event(5), event(6)]
        kept = again._conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
    assert kept == 2  # an answer that brought nothing new is not kept
