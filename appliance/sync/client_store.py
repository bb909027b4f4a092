"""The receiving side's durable event store: what the cloud holds of an appliance's outbox.

Theory of operation. The cloud acknowledges an event only after this store has it on disk, so a crash of
either side at any moment costs at most a re-read (DESIGN.md §5.3: exactly once, in order). The store is
one SQLite file in WAL mode with ``synchronous=FULL``: a transaction whose ``COMMIT`` returned survives a
power cut, not only the death of the process.

``store(batch)`` checks, in one transaction, the two promises the appliance makes:

* gap-free: the first new event's seq is the last seq held plus one. An empty store accepts a batch that
  starts at the outbox's ``first_seq`` (events before it were acknowledged and pruned before this store
  existed);
* exactly once: an event already held under the same id and seq is a replay and is skipped; an id held
  at another seq, or a seq held under another id, means the appliance sent something twice under a new
  identity or renumbered its outbox. Both are refused and the whole batch with them.

The store is synchronous (``sqlite3``); an asyncio caller runs it in a thread (the :class:`Puller` does).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import cbor2

from appliance.sync.client_types import Event, EventBatch

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY,
    id      TEXT NOT NULL UNIQUE,
    type    TEXT NOT NULL,
    hlc     INTEGER NOT NULL,
    created REAL NOT NULL,
    body    BLOB NOT NULL
)
"""
_INSERT: Final = "INSERT INTO events (seq, id, type, hlc, created, body) VALUES (?, ?, ?, ?, ?, ?)"


class ClientStoreError(Exception):
    """Base of the store's errors; a refused batch leaves the store as it was."""


class SequenceGap(ClientStoreError):
    """The batch does not continue the store: an event between the last held and the first new is missing."""

    def __init__(self, expected: int, got: int) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"sequence gap: expected seq {expected}, got {got}")


class IdReused(ClientStoreError):
    """An event id arrived at a seq other than the one it is held at (or twice in one batch)."""

    def __init__(self, event_id: str, seq: int, held_seq: int | None) -> None:
        self.event_id = event_id
        self.seq = seq
        self.held_seq = held_seq
        where = f"held at seq {held_seq}" if held_seq is not None else "repeated in the batch"
        super().__init__(f"event id {event_id} arrived again at seq {seq} ({where})")


class SeqConflict(ClientStoreError):
    """A seq already held arrived again under a different id."""

    def __init__(self, seq: int, held_id: str, got_id: str) -> None:
        self.seq = seq
        self.held_id = held_id
        self.got_id = got_id
        super().__init__(f"seq {seq} is held as event {held_id}, arrived again as {got_id}")


class ClientStore:
    """The events received from one appliance, keyed by seq, ids unique. Open with :meth:`open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.Lock()  # one thread at a time on the connection
        row = conn.execute("SELECT MAX(seq) FROM events").fetchone()
        self._last_seq = int(row[0]) if row and row[0] is not None else 0

    @classmethod
    def open(cls, path: str | Path) -> ClientStore:
        """Open (creating if needed) the store file at ``path``."""
        path = Path(path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ClientStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def last_seq(self) -> int:
        """The highest seq held (0 when empty): where the next read starts."""
        return self._last_seq

    def store(self, batch: EventBatch) -> int:
        """Store the batch's new events durably, in one transaction; returns how many were new.

        Raises :class:`SequenceGap`, :class:`IdReused` or :class:`SeqConflict` (nothing stored then)."""
        events = batch.events
        if not events:
            return 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                new = self._check_replayed(events)
                if new:
                    self._insert(new, batch.first_seq)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            if new:
                self._last_seq = new[-1].seq
            return len(new)

    def _check_replayed(self, events: Sequence[Event]) -> list[Event]:
        """Compare the events at or below the last seq held with what is held; return the rest."""
        last = self._last_seq
        if events[0].seq > last:
            return list(events)
        old = [e for e in events if e.seq <= last]
        held = dict(
            self._conn.execute(
                "SELECT seq, id FROM events WHERE seq BETWEEN ? AND ?", (old[0].seq, old[-1].seq)
            ).fetchall()
        )
        for event in old:
            held_id = held.get(event.seq)
            if held_id is None:
                # Below the last seq but not held: this store began after it (a pruned prefix).
                continue
            if held_id != event.id:
                raise SeqConflict(event.seq, held_id, event.id)
        return [e for e in events if e.seq > last]

    def _insert(self, new: list[Event], first_seq: int) -> None:
        expected = self._last_seq + 1 if self._last_seq else max(first_seq, 1)
        for offset, event in enumerate(new):
            if event.seq != expected + offset:
                raise SequenceGap(expected + offset, event.seq)
        rows = [(e.seq, e.id, e.type, e.hlc, e.created, cbor2.dumps(e.body)) for e in new]
        try:
            self._conn.executemany(_INSERT, rows)
        except sqlite3.IntegrityError:
            raise self._which_id_reused(new) from None

    def _which_id_reused(self, new: list[Event]) -> IdReused:
        seen: dict[str, int] = {}
        for event in new:
            if event.id in seen:
                return IdReused(event.id, event.seq, None)
            seen[event.id] = event.seq
        for event in new:
            row = self._conn.execute("SELECT seq FROM events WHERE id = ?", (event.id,)).fetchone()
            if row is not None and int(row[0]) != event.seq:
                return IdReused(event.id, event.seq, int(row[0]))
        return IdReused(new[0].id, new[0].seq, None)  # not reached: the constraint named one of them

    def count(self) -> int:
        """How many events are held."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def first_seq(self) -> int | None:
        """The lowest seq held, None when empty."""
        with self._lock:
            row = self._conn.execute("SELECT MIN(seq) FROM events").fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def iter_events(self, after: int = 0, *, chunk: int = 10_000) -> Iterator[Event]:
        """The events held after seq ``after``, in seq order, bodies decoded."""
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT seq, id, type, hlc, created, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, chunk),
                ).fetchall()
            if not rows:
                return
            for seq, event_id, type_, hlc, created, body in rows:
                yield Event(seq, event_id, type_, hlc, created, cbor2.loads(body))
            after = rows[-1][0]
