"""The durable outbox of events for the cloud (DESIGN.md §5.3).

Theory of operation. Every event the cloud must learn about (a mode change, a CDR, a voicemail) is
appended here and later read by the sync API in ``seq`` order. Each event has a ``seq``, a globally unique
``id``, a ``type``, a hybrid-logical-clock timestamp, a CBOR body and its creation wall time. The cloud
reads after a ``seq`` and acknowledges up to a ``seq``; an acknowledgement prunes what it acknowledges, in
the same transaction, and nothing else is ever pruned.

Durability. ``append`` returns only once its event is committed and fsync'd (see
:mod:`appliance.store.database`), so an event reported as appended survives a crash or power loss.
Concurrent appends are group-committed: while one transaction is being written, new appends queue up and
the next transaction writes all of them, so the disk sees one fsync per batch rather than per event.
``seq``, ``hlc`` and ``id`` are assigned inside the transaction, in queue order, so ``seq`` order and HLC
order agree. A cancelled ``append`` may or may not have been written (as with any cancelled write); it is
never written twice.

Gap-free sequence. ``seq`` is an AUTOINCREMENT key, so SQLite gives each row the highest seq ever issued
plus one (kept in ``sqlite_sequence``, which survives pruning: a seq is never reused). A batch is inserted
in one transaction by this process alone (the only writer, DESIGN.md §2), so its seqs are consecutive and
follow the last committed one; a batch that fails is rolled back whole, ``sqlite_sequence`` included, so
the seqs it took are issued again to the next batch. Hence the seqs ever committed are exactly
``1..last_seq``, ``pending == last_seq - acked_seq`` with no COUNT, and a reader never sees a hole. Each
write checks that its first seq follows the last one it knows of, and reloads its counters if not.

Counters. ``last_seq``, ``acked_seq``, ``first_seq`` and the quota bytes are kept in memory, read once
from the database at first use (one query) and replaced after each commit, so :meth:`Outbox.stats` costs
nothing. A write whose outcome is unknown (cancelled while committing) makes the next write re-read them.

Priorities and quota: :mod:`appliance.store.outbox_quota`. ``append`` takes CRITICAL and NORMAL events and
always returns the stored event (or raises); ``append_bulk`` takes BULK (``metrics.*``) events and returns
``None`` when one is thinned or refused, so callers of the events that matter never handle ``None``.

Only one :class:`Outbox` may write a database at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Final

import cbor2

from appliance.store.database import Database, Transaction
from appliance.store.errors import LocalProtocolError, OutboxAckError, OutboxFullError, StoreError
from appliance.store.hlc import Hlc, HybridLogicalClock
from appliance.store.outbox_counters import (
    COUNTERS_SQL,
    NEWEST_HLC_SQL,
    SAVE_NEWEST_HLC_SQL,
    Counters,
    counters_from_row,
)
from appliance.store.outbox_events import (
    MAX_BODY_SIZE,
    RAW_COLUMNS,
    OutboxEvent,
    OutboxStats,
    PendingEvent,
    RawEvent,
    decode_event,
    encode_event,
    new_event_id,
)
from appliance.store.outbox_quota import (
    PRESSURE_EVENT,
    Admission,
    Admitter,
    Pressure,
    Priority,
    next_pressure,
    priority_of,
    row_bytes,
)

__all__ = ["MAX_BODY_SIZE", "MAX_READ", "Outbox", "OutboxEvent", "OutboxStats", "RawEvent", "new_event_id"]

log = logging.getLogger(__name__)

MAX_READ: Final = 10_000
_COLUMNS: Final = 5  # id, type, hlc, body, created
_ROWS_PER_INSERT: Final = 5_000  # 5 parameters a row, under SQLite's 32,766 bound parameters


@dataclass(slots=True)
class _Write:
    tx: Transaction
    state: Counters  # the counters at the start of the transaction
    after: Counters | None = None  # the counters once it has committed


class Outbox:
    """The outbox over an open :class:`Database`.

    ``new_id`` makes event ids. ``clock`` gives HLC timestamps; when omitted the outbox keeps its own
    clock on ``wall``, seeded from the newest timestamp stored so that a restart with the wall clock set
    back still issues later timestamps. An injected clock should be seeded by its owner from
    :meth:`last_hlc`. ``wall`` gives the creation time of events. ``quota_bytes`` bounds the disk used by
    unacknowledged events (``None``: unbounded), see :mod:`appliance.store.outbox_quota`.
    """

    def __init__(
        self,
        db: Database,
        *,
        quota_bytes: int | None = None,
        new_id: Callable[[], str] = new_event_id,
        clock: Callable[[], Hlc] | None = None,
        wall: Callable[[], float] = time.time,
        max_body_size: int = MAX_BODY_SIZE,
        admitter: Admitter | None = None,
    ) -> None:
        if quota_bytes is not None and quota_bytes < 1:
            raise LocalProtocolError(f"quota_bytes must be positive or None, not {quota_bytes}")
        self._db = db
        self._quota = quota_bytes
        self._new_id = new_id
        self._wall = wall
        self._own_clock = HybridLogicalClock() if clock is None else None
        self._clock = clock if clock is not None else self._own_now
        self._max_body_size = max_body_size
        self._admitter = admitter if admitter is not None else Admitter()
        self._queue: list[tuple[PendingEvent, asyncio.Future[OutboxEvent]]] = []
        self._queued_bytes = 0  # accepted, not yet written: counted when admitting more
        self._writer: asyncio.Task[None] | None = None
        self._state: Counters | None = None
        self._stale = False  # a write's outcome is unknown: re-read the counters in the next write
        self._load_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()  # a write and the replacement of the counters, as one
        self._appended = asyncio.Event()  # set and replaced after every commit that added events

    def _own_now(self) -> Hlc:
        assert self._own_clock is not None
        return self._own_clock.now(int(self._wall() * 1000))

    # --- appending ----------------------------------------------------------------------------------------

    async def append(self, type: str, body: Mapping[str, Any]) -> OutboxEvent:
        """Append one CRITICAL or NORMAL event; returns it once it is durable.

        Raises :class:`OutboxFullError` for a NORMAL event above the quota's hard ceiling,
        :class:`LocalProtocolError` for a bad event or a BULK type (use :meth:`append_bulk`), and
        :class:`StoreError` if the write fails.
        """
        if priority_of(type) is Priority.BULK:
            raise LocalProtocolError(f"{type!r} is a bulk event type: append it with append_bulk")
        pending = await self._admitted(type, body)
        if pending is None:
            raise OutboxFullError(
                f"outbox is over its hard ceiling ({self._quota} bytes quota): {type!r} refused"
            )
        return await self._enqueue(pending)

    async def append_bulk(self, type: str, body: Mapping[str, Any]) -> OutboxEvent | None:
        """Append one BULK event (``metrics.*``); ``None`` if the quota thinned or refused it."""
        if priority_of(type) is not Priority.BULK:
            raise LocalProtocolError(f"{type!r} is not a bulk event type: append it with append")
        pending = await self._admitted(type, body)
        return None if pending is None else await self._enqueue(pending)

    async def append_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[OutboxEvent]:
        """Append several CRITICAL or NORMAL events in one transaction: all are durable, or none is
        written. Raises as :meth:`append` does, before writing anything."""
        state = await self._ready()
        batch: list[PendingEvent] = []
        for event_type, body in items:
            if priority_of(event_type) is Priority.BULK:
                raise LocalProtocolError(f"{event_type!r} is a bulk event type: append it with append_bulk")
            batch.append(encode_event(event_type, body, self._max_body_size))
        held = state.bytes + self._queued_bytes
        for pending in batch:
            admission = self._admitter.admit(
                pending.type, pending.size, level=state.pressure, held=held, quota=self._quota
            )
            if admission is not Admission.KEEP:
                raise OutboxFullError(f"outbox is over its hard ceiling: {pending.type!r} refused")
            held += pending.size
        return await self._write(batch) if batch else []

    async def _admitted(self, type: str, body: Mapping[str, Any]) -> PendingEvent | None:
        state = await self._ready()
        pending = encode_event(type, body, self._max_body_size)
        admission = self._admitter.admit(
            type, pending.size, level=state.pressure, held=state.bytes + self._queued_bytes, quota=self._quota
        )
        return pending if admission is Admission.KEEP else None

    async def _enqueue(self, pending: PendingEvent) -> OutboxEvent:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[OutboxEvent] = loop.create_future()
        self._queue.append((pending, future))
        self._queued_bytes += pending.size
        if self._writer is None:
            self._writer = loop.create_task(self._write_queue())
            self._writer.add_done_callback(self._writer_done)
        return await future

    async def _write_queue(self) -> None:
        """Write queued appends, one transaction per batch, until the queue is empty."""
        batch: list[tuple[PendingEvent, asyncio.Future[OutboxEvent]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._write_batch(batch)
                batch = []
        except BaseException:  # cancelled at shutdown: no waiting append may hang
            self._fail_queued(batch)
            raise
        finally:
            self._writer = None

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        if self._writer is writer:  # cancelled before it ever ran: its appends must not hang either
            self._writer = None
            self._fail_queued([])

    def _fail_queued(self, batch: list[tuple[PendingEvent, asyncio.Future[OutboxEvent]]]) -> None:
        error = StoreError("outbox writer stopped before the event was confirmed written")
        for pending, future in batch + self._queue:
            self._queued_bytes -= pending.size
            if not future.done():
                future.set_exception(error)
        self._queue = []

    async def _write_batch(self, batch: list[tuple[PendingEvent, asyncio.Future[OutboxEvent]]]) -> None:
        try:
            events = await self._write([p for p, _ in batch])
        except Exception as exc:  # the transaction was rolled back; nothing of this batch was written
            if len(batch) > 1:
                # One bad event (a duplicate id from the factory) must not fail its neighbours.
                for item in batch:
                    await self._write_batch([item])
                return
            pending, future = batch[0]
            self._queued_bytes -= pending.size
            if not future.done():
                future.set_exception(exc)
            return
        for (pending, future), event in zip(batch, events, strict=True):
            self._queued_bytes -= pending.size
            if not future.done():
                future.set_result(event)

    async def _write(self, batch: list[PendingEvent]) -> list[OutboxEvent]:
        """Insert ``batch`` (and a pressure event if the level changes) in one transaction; returns the
        events of ``batch``."""
        async with self._writing() as write:
            state = write.state
            added = sum(p.size for p in batch)
            pending = state.last_seq + len(batch) + 1 - state.acked_seq
            level, alarm = self._settle(state.pressure, state.bytes + added, pending)
            rows = batch if alarm is None else [*batch, alarm]
            events = await self._insert(write.tx, state, rows, level)
            write.after = replace(
                state,
                last_seq=events[-1].seq,
                bytes=state.bytes + sum(p.size for p in rows),
                first_seq=min(state.first_seq, events[0].seq),
                pressure=level,
            )
        return events[: len(batch)]

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[_Write]:
        """A write transaction with the counters as they are in it; the counters the block leaves in
        ``after`` replace them once it has committed, before another write may start."""
        async with self._write_lock:
            try:
                async with self._db.transaction() as tx:
                    write = _Write(tx, await self._current(tx))
                    yield write
            except BaseException as exc:
                # An error rolled the transaction back whole: the counters are still right. Cancelled,
                # perhaps while committing, the outcome is unknown: the next write re-reads them.
                if not isinstance(exc, Exception):
                    self._stale = True
                raise
            if write.after is not None:
                before, self._state = write.state, write.after
                if write.after.last_seq > before.last_seq:
                    self._appended.set()
                    self._appended = asyncio.Event()
                if write.after.pressure is not before.pressure:
                    log.warning(
                        "outbox pressure %s -> %s",
                        before.pressure.value,
                        write.after.pressure.value,
                        extra={"ctx": {"bytes": write.after.bytes, "quota": self._quota}},
                    )

    def _settle(self, current: Pressure, held: int, pending: int) -> tuple[Pressure, PendingEvent | None]:
        """The level once ``held`` bytes are held, and the pressure event announcing it if it changed.

        The event counts too: when it takes the outbox over the next threshold (a small quota), it
        announces the level it leads to, or nothing if that is the level already announced.
        """
        level = next_pressure(current, held, self._quota)
        while level is not current:
            body = {"level": level.value, "bytes": held, "quota_bytes": self._quota, "pending": pending}
            alarm = encode_event(PRESSURE_EVENT, body, self._max_body_size)
            settled = next_pressure(level, held + alarm.size, self._quota)
            if settled is level:
                return level, alarm
            level = settled  # only ever up, so this ends within two turns
        return current, None

    async def _insert(
        self, tx: Transaction, state: Counters, rows: list[PendingEvent], level: Pressure
    ) -> list[OutboxEvent]:
        stamped = []
        for pending in rows:
            hlc, event_id, created = self._clock(), self._new_id(), self._wall()
            stamped.append((event_id, pending.type, hlc, pending.body, created))
        seqs: list[int] = []
        for start in range(0, len(stamped), _ROWS_PER_INSERT):
            chunk = stamped[start : start + _ROWS_PER_INSERT]
            values = ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
            params = [v for i, t, h, b, c in chunk for v in (i, t, h.pack(), b, c)]
            assert len(params) == _COLUMNS * len(chunk)
            inserted = await tx.fetchall(
                f"INSERT INTO outbox (id, type, hlc, body, created) VALUES {values} RETURNING seq", params
            )
            seqs += sorted(int(r[0]) for r in inserted)  # RETURNING promises no order; VALUES go in order
        first = state.last_seq + 1
        if seqs != list(range(first, first + len(rows))):
            # Someone else wrote the table (see the module doc): roll back, re-read, let the caller retry.
            self._stale = True
            raise StoreError(f"outbox seq out of step: expected {first}, the database gave {seqs[0]}")
        if level is not state.pressure:
            await tx.execute("UPDATE outbox_state SET pressure = ? WHERE singleton = 1", (level.value,))
        return [
            OutboxEvent(first + n, i, t, h, cbor2.loads(b), c) for n, (i, t, h, b, c) in enumerate(stamped)
        ]

    # --- the counters -----------------------------------------------------------------------------------

    async def _ready(self) -> Counters:
        """The counters, read from the database at first use."""
        if self._state is None:
            async with self._load_lock:
                if self._state is None:
                    row = await self._db.fetchone(COUNTERS_SQL)
                    self._state = self._loaded(row)
        return self._state

    async def _current(self, tx: Transaction) -> Counters:
        """The counters inside a write transaction, re-read if a write's outcome was unknown."""
        if self._state is None or self._stale:
            self._state = self._loaded(await tx.fetchone(COUNTERS_SQL))
            self._stale = False
        return self._state

    def _loaded(self, row: tuple[Any, ...] | None) -> Counters:
        counters, newest = counters_from_row(row)
        if self._own_clock is not None:
            self._own_clock.observe(newest)
        return counters

    # --- reading, waiting -----------------------------------------------------------------------------------

    async def read_after(self, seq: int, limit: int) -> list[OutboxEvent]:
        """Up to ``limit`` events with a seq greater than ``seq``, in seq order."""
        rows = await self._read("seq, id, type, hlc, body, created", seq, limit)
        return [decode_event(row) for row in rows]

    async def read_raw_after(self, seq: int, limit: int) -> list[RawEvent]:
        """As :meth:`read_after`, with each body as the stored bytes (canonical CBOR), not decoded."""
        return list(map(RawEvent._make, await self._read(RAW_COLUMNS, seq, limit)))

    async def _read(self, columns: str, seq: int, limit: int) -> list[tuple[Any, ...]]:
        if seq < 0 or not 1 <= limit <= MAX_READ:
            raise LocalProtocolError(f"reading the outbox needs seq >= 0 and 1 <= limit <= {MAX_READ}")
        return await self._db.fetchall(
            f"SELECT {columns} FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )

    # The long-poll handler is given its wait in seconds by the cloud; a parameter reads better there than
    # an asyncio.timeout around a call that must return False, not raise, when the time is up.
    async def wait_for_append(self, after_seq: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until an event with a seq above ``after_seq`` is committed, at most ``timeout`` seconds;
        True if there is one (at once if there already is)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (await self._ready()).last_seq <= after_seq:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    await self._appended.wait()
            except TimeoutError:
                return (await self._ready()).last_seq > after_seq
        return True

    # --- acknowledging, pruning -----------------------------------------------------------------------------

    async def acknowledge(self, upto_seq: int) -> int:
        """Record that the cloud holds every event up to ``upto_seq`` and delete them; returns how many
        were deleted.

        An acknowledgement at or below the current one is a retransmission: it changes nothing and returns
        0. One beyond the last seq issued raises :class:`OutboxAckError`. The acknowledgement completes
        even if the caller is cancelled meanwhile, so the counters stay exact.
        """
        if upto_seq < 0:
            raise OutboxAckError(f"cannot acknowledge negative seq {upto_seq}")
        return await asyncio.shield(self._acknowledge(upto_seq))

    async def _acknowledge(self, upto: int) -> int:
        async with self._writing() as write:
            state = write.state
            if upto > state.last_seq:
                raise OutboxAckError(
                    f"cannot acknowledge seq {upto}: the last seq issued is {state.last_seq}"
                )
            if upto <= state.acked_seq:
                return 0
            row = await write.tx.fetchone(
                "SELECT COALESCE(SUM(length(body)), 0), COUNT(*) FROM outbox WHERE seq > ? AND seq <= ?",
                (state.acked_seq, upto),
            )
            assert row is not None
            held = state.bytes - int(row[0]) - row_bytes(0) * int(row[1])
            await write.tx.execute(SAVE_NEWEST_HLC_SQL)
            pruned = await write.tx.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))
            await write.tx.execute("UPDATE outbox_state SET acked_seq = ? WHERE singleton = 1", (upto,))
            after = replace(state, acked_seq=upto, first_seq=upto + 1, bytes=held)
            level, alarm = self._settle(state.pressure, held, state.last_seq + 1 - upto)
            if alarm is not None:
                events = await self._insert(write.tx, after, [alarm], level)
                after = replace(after, last_seq=events[-1].seq, bytes=held + alarm.size)
            write.after = replace(after, pressure=level)
        return pruned

    async def prune(self) -> int:
        """Delete acknowledged events still held; returns how many. :meth:`acknowledge` prunes what it
        acknowledges, so this finds only what a database written by older firmware kept."""
        async with self._writing() as write:
            state = write.state
            await write.tx.execute(SAVE_NEWEST_HLC_SQL)
            pruned = await write.tx.execute("DELETE FROM outbox WHERE seq <= ?", (state.acked_seq,))
            write.after = replace(state, first_seq=max(state.first_seq, state.acked_seq + 1))
        return pruned

    # --- the counters, for the API and the metrics ----------------------------------------------------------

    async def stats(self) -> OutboxStats:
        """The counters, from memory (no query once the outbox has been used)."""
        state = await self._ready()
        return OutboxStats(
            first_seq=state.first_seq,
            last_seq=state.last_seq,
            acked_seq=state.acked_seq,
            pending=state.last_seq - state.acked_seq,
            bytes=state.bytes,
            quota_bytes=self._quota,
            pressure=state.pressure.value,
            thinned=self._admitter.thinned,
            refused=self._admitter.refused,
        )

    async def acked_seq(self) -> int:
        return (await self._ready()).acked_seq

    async def last_seq(self) -> int:
        """The last seq ever issued (0 if none), whether or not its event was since pruned."""
        return (await self._ready()).last_seq

    async def pending_count(self) -> int:
        """How many events the cloud has not acknowledged yet (the sequence is gap-free: module doc)."""
        state = await self._ready()
        return state.last_seq - state.acked_seq

    async def last_hlc(self) -> Hlc:
        """The newest HLC timestamp ever stored (zero if none); seeds an injected clock after a restart."""
        row = await self._db.fetchone(f"SELECT {NEWEST_HLC_SQL}")
        return Hlc.unpack(int(row[0]) if row else 0)

    async def close(self) -> None:
        """Wait until every append already made is written."""
        async with self._load_lock:
            pass  # the lock is fair: appends that waited for the first read of the counters have queued
        while self._writer is not None:
            await asyncio.wait({self._writer})
