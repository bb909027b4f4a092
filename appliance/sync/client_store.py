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

Bodies are not encoded again: a batch read from the appliance carries the CBOR of the answer, which is
kept whole (table ``batches``) and each event row points into it; only a batch made by hand has its bodies
encoded one by one. Encoding every body again cost as much as decoding the batch.

The store is synchronous (``sqlite3``); an asyncio caller runs it in a thread (the :class:`Puller` does).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import cbor2

from appliance.sync.client_types import Event, EventBatch

_SCHEMA: Final = (
    # The answers of GET /events as received, kept whole: their bodies need no encoding again.
    "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    # body: the body's CBOR, or NULL when it is event number pos of the events array of batch.
    """CREATE TABLE IF NOT EXISTS events (
        seq     INTEGER PRIMARY KEY,
        id      TEXT NOT NULL UNIQUE,
        type    TEXT NOT NULL,
        hlc     INTEGER NOT NULL,
        created REAL NOT NULL,
        body    BLOB,
        batch   INTEGER REFERENCES batches (id),
        pos     INTEGER
    )""",
)
_INSERT: Final = (
    "INSERT INTO events (seq, id, type, hlc, created, body, batch, pos) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


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
            for statement in _SCHEMA:
                conn.execute(statement)
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
        _check_contiguous(events)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                skip = self._check_replayed(events)
                if skip < len(events):
                    self._insert(events, skip, batch)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._last_seq = max(self._last_seq, events[-1].seq)
            return len(events) - skip

    def _check_replayed(self, events: Sequence[Event]) -> int:
        """Compare the events at or below the last seq held with what is held; returns how many there
        are (the batch is contiguous, so they are its first ones)."""
        last = self._last_seq
        skip = min(max(last + 1 - events[0].seq, 0), len(events))
        if skip == 0:
            return 0
        held = dict(
            self._conn.execute(
                "SELECT seq, id FROM events WHERE seq BETWEEN ? AND ?", (events[0].seq, events[skip - 1].seq)
            ).fetchall()
        )
        for event in events[:skip]:
            held_id = held.get(event.seq)
            if held_id is None:
                # Below the last seq but not held: this store began after it (a pruned prefix).
                continue
            if held_id != event.id:
                raise SeqConflict(event.seq, held_id, event.id)
        return skip

    def _insert(self, events: Sequence[Event], skip: int, batch: EventBatch) -> None:
        """Insert ``events[skip:]``. With the answer's own CBOR at hand it is kept once and the rows point
        into it; otherwise each body is encoded on its own."""
        expected = self._last_seq + 1 if self._last_seq else max(batch.first_seq, 1)
        if events[skip].seq != expected:
            raise SequenceGap(expected, events[skip].seq)
        new = events[skip:]
        rows: list[tuple[Any, ...]]
        if batch.raw is not None:
            kept = self._conn.execute("INSERT INTO batches (data) VALUES (?)", (batch.raw,)).lastrowid
            rows = [(e.seq, e.id, e.type, e.hlc, e.created, None, kept, skip + i) for i, e in enumerate(new)]
        else:
            rows = [(e.seq, e.id, e.type, e.hlc, e.created, cbor2.dumps(e.body), None, None) for e in new]
        try:
            self._conn.executemany(_INSERT, rows)
        except sqlite3.IntegrityError:
            raise self._which_id_reused(new) from None

    def _which_id_reused(self, new: Sequence[Event]) -> IdReused:
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
        kept_id, kept_events = None, []
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT seq, id, type, hlc, created, body, batch, pos FROM events WHERE seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (after, chunk),
                ).fetchall()
            if not rows:
                return
            for seq, event_id, type_, hlc, created, body, batch, pos in rows:
                if body is not None:
                    yield Event(seq, event_id, type_, hlc, created, cbor2.loads(body))
                    continue
                if batch != kept_id:
                    with self._lock:
                        data = self._conn.execute(
                            "SELECT data FROM batches WHERE id = ?", (batch,)
                        ).fetchone()
                    kept_id, kept_events = batch, cbor2.loads(data[0])["events"]
                yield Event(seq, event_id, type_, hlc, created, kept_events[pos]["body"])
            after = rows[-1][0]


def _check_contiguous(events: Sequence[Event]) -> None:
    """sync.cddl: events come in seq order, gap-free."""
    first = events[0].seq
    if events[-1].seq - first == len(events) - 1 and all(e.seq == first + i for i, e in enumerate(events)):
        return
    for i, event in enumerate(events):
        if event.seq != first + i:
            raise SequenceGap(first + i, event.seq)
