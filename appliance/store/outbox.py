"""The durable outbox of events for the cloud (DESIGN.md §5.3).

Theory of operation. Every event the cloud must learn about (a mode change, a CDR, a voicemail) is
appended here and later read by the sync API in ``seq`` order. Each event has a ``seq`` that increases
monotonically and is never reused, a globally unique ``id``, a ``type``, a hybrid-logical-clock timestamp,
a CBOR body and its creation wall time. The cloud reads after a ``seq`` and acknowledges up to a ``seq``;
only acknowledged events may be pruned.

``append`` returns only once its event is committed and fsync'd (see :mod:`appliance.store.database`), so
an event reported as appended survives a crash or power loss. Concurrent appends from many tasks are
group-committed: while one transaction is being written, new appends queue up and the next transaction
writes all of them, so the disk sees one fsync per batch rather than per event. ``seq``, ``hlc`` and
``id`` are assigned inside the transaction, in queue order, so ``seq`` order and HLC order agree.

A cancelled ``append`` may or may not have been written (as with any cancelled write); it is never
written twice.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from appliance.store.database import Database, Transaction
from appliance.store.errors import LocalProtocolError, OutboxAckError, StoreError
from appliance.store.hlc import Hlc, HybridLogicalClock

MAX_BODY_SIZE: Final = 256 * 1024  # events are small; recordings and voicemail travel as blobs
MAX_READ: Final = 10_000
_TYPE_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    seq: int
    id: str
    type: str
    hlc: Hlc
    body: Mapping[str, Any]
    created: float  # wall-clock seconds since the epoch


@dataclass(frozen=True, slots=True)
class _Pending:
    type: str
    body: bytes


def new_event_id() -> str:
    """The default event id: a random UUID in hex (122 random bits, unique without coordination)."""
    return uuid.uuid4().hex


class Outbox:
    """The outbox over an open :class:`Database`.

    ``new_id`` makes event ids. ``clock`` gives HLC timestamps; when omitted the outbox keeps its own
    clock on ``wall``, seeded from the newest timestamp stored so that a restart with the wall clock set
    back still issues later timestamps. An injected clock should be seeded by its owner from
    :meth:`last_hlc`. ``wall`` gives the creation time of events.
    """

    def __init__(
        self,
        db: Database,
        *,
        new_id: Callable[[], str] = new_event_id,
        clock: Callable[[], Hlc] | None = None,
        wall: Callable[[], float] = time.time,
        max_body_size: int = MAX_BODY_SIZE,
    ) -> None:
        self._db = db
        self._new_id = new_id
        self._wall = wall
        self._own_clock = HybridLogicalClock() if clock is None else None
        self._clock = clock if clock is not None else self._own_now
        self._seeded = self._own_clock is None
        self._max_body_size = max_body_size
        self._queue: list[tuple[_Pending, asyncio.Future[OutboxEvent]]] = []
        self._writer: asyncio.Task[None] | None = None

    def _own_now(self) -> Hlc:
        assert self._own_clock is not None
        return self._own_clock.now(int(self._wall() * 1000))

    # --- appending ----------------------------------------------------------------------------------------

    async def append(self, type: str, body: Mapping[str, Any]) -> OutboxEvent:
        """Append one event; returns it once it is durable. Raises :class:`StoreError`."""
        pending = self._prepare(type, body)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[OutboxEvent] = loop.create_future()
        self._queue.append((pending, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write_queue())
        return await future

    async def append_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[OutboxEvent]:
        """Append several events in one transaction: all are durable, or none is written."""
        batch = [self._prepare(t, b) for t, b in items]
        if not batch:
            return []
        async with self._db.transaction() as tx:
            return await self._insert(tx, batch)

    def _prepare(self, type: str, body: Mapping[str, Any]) -> _Pending:
        """Validate and encode now, in the caller's task, so a bad event fails its own caller only."""
        if not isinstance(type, str) or _TYPE_RE.fullmatch(type) is None:
            raise LocalProtocolError(f"event type must be 1-64 letters, digits, '_', '.' or '-': {type!r}")
        if not isinstance(body, Mapping):
            raise LocalProtocolError(f"event body must be a mapping, not {body.__class__.__name__}")
        try:
            # Canonical CBOR (RFC 8949 §4.2.1): the same body is always the same bytes.
            encoded = cbor2.dumps(dict(body), canonical=True)
        except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
            raise LocalProtocolError(f"event body cannot be encoded as CBOR: {exc}") from exc
        if len(encoded) > self._max_body_size:
            raise LocalProtocolError(f"event body is {len(encoded)} bytes, over {self._max_body_size}")
        return _Pending(type, encoded)

    async def _write_queue(self) -> None:
        """Write queued appends, one transaction per batch, until the queue is empty."""
        batch: list[tuple[_Pending, asyncio.Future[OutboxEvent]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._write_batch(batch)
                batch = []
        except BaseException:  # cancelled at shutdown: no waiting append may hang
            error = StoreError("outbox writer stopped before the event was confirmed written")
            for _, future in batch + self._queue:
                if not future.done():
                    future.set_exception(error)
            self._queue = []
            raise
        finally:
            self._writer = None

    async def _write_batch(self, batch: list[tuple[_Pending, asyncio.Future[OutboxEvent]]]) -> None:
        try:
            async with self._db.transaction() as tx:
                events = await self._insert(tx, [p for p, _ in batch])
        except Exception as exc:  # the transaction was rolled back; nothing of this batch was written
            if len(batch) > 1:
                # One bad event (a duplicate id from the factory) must not fail its neighbours.
                for item in batch:
                    await self._write_batch([item])
                return
            if not batch[0][1].done():
                batch[0][1].set_exception(exc)
            return
        for (_, future), event in zip(batch, events, strict=True):
            if not future.done():
                future.set_result(event)

    async def _insert(self, tx: Transaction, batch: list[_Pending]) -> list[OutboxEvent]:
        if not self._seeded and self._own_clock is not None:
            row = await tx.fetchone("SELECT last_hlc FROM outbox_state WHERE singleton = 1")
            self._own_clock.observe(Hlc.unpack(int(row[0]) if row else 0))
            self._seeded = True
        events: list[OutboxEvent] = []
        for pending in batch:
            hlc, event_id, created = self._clock(), self._new_id(), self._wall()
            seq = await tx.insert(
                "INSERT INTO outbox (id, type, hlc, body, created) VALUES (?, ?, ?, ?, ?)",
                (event_id, pending.type, hlc.pack(), pending.body, created),
            )
            events.append(OutboxEvent(seq, event_id, pending.type, hlc, cbor2.loads(pending.body), created))
        await tx.execute(
            "UPDATE outbox_state SET last_hlc = MAX(last_hlc, ?) WHERE singleton = 1",
            (max(e.hlc for e in events).pack(),),
        )
        return events

    # --- reading, acknowledging, pruning --------------------------------------------------------------------

    async def read_after(self, seq: int, limit: int) -> list[OutboxEvent]:
        """Up to ``limit`` events with a seq greater than ``seq``, in seq order."""
        if seq < 0 or not 1 <= limit <= MAX_READ:
            raise LocalProtocolError(f"read_after needs seq >= 0 and 1 <= limit <= {MAX_READ}")
        rows = await self._db.fetchall(
            "SELECT seq, id, type, hlc, body, created FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [_event(row) for row in rows]

    async def acknowledge(self, upto_seq: int) -> None:
        """Record that the cloud holds every event up to ``upto_seq``.

        An acknowledgement below the current one is a retransmission and changes nothing; one beyond the
        last seq ever issued raises :class:`OutboxAckError`.
        """
        if upto_seq < 0:
            raise OutboxAckError(f"cannot acknowledge negative seq {upto_seq}")
        async with self._db.transaction() as tx:
            last = await _last_seq(tx)
            if upto_seq > last:
                raise OutboxAckError(f"cannot acknowledge seq {upto_seq}: the last seq issued is {last}")
            await tx.execute(
                "UPDATE outbox_state SET acked_seq = ? WHERE singleton = 1 AND acked_seq < ?",
                (upto_seq, upto_seq),
            )

    async def prune(self) -> int:
        """Delete acknowledged events; returns how many were deleted."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM outbox WHERE seq <= (SELECT acked_seq FROM outbox_state WHERE singleton = 1)"
            )

    async def acked_seq(self) -> int:
        row = await self._db.fetchone("SELECT acked_seq FROM outbox_state WHERE singleton = 1")
        return int(row[0]) if row else 0

    async def last_seq(self) -> int:
        """The last seq ever issued (0 if none), whether or not its event was since pruned."""
        row = await self._db.fetchone("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
        return int(row[0]) if row else 0

    async def pending_count(self) -> int:
        """How many events the cloud has not acknowledged yet."""
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM outbox WHERE seq > (SELECT acked_seq FROM outbox_state WHERE singleton = 1)"
        )
        return int(row[0]) if row else 0

    async def last_hlc(self) -> Hlc:
        """The newest HLC timestamp ever stored (zero if none); seeds an injected clock after a restart."""
        row = await self._db.fetchone("SELECT last_hlc FROM outbox_state WHERE singleton = 1")
        return Hlc.unpack(int(row[0]) if row else 0)

    async def close(self) -> None:
        """Wait until every append already made is written."""
        while self._writer is not None:
            await asyncio.wait({self._writer})


async def _last_seq(tx: Transaction) -> int:
    row = await tx.fetchone("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
    return int(row[0]) if row else 0


def _event(row: tuple[Any, ...]) -> OutboxEvent:
    seq, event_id, type_, hlc, body, created = row
    try:
        decoded = cbor2.loads(body)
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise StoreError(f"outbox event {seq} has a corrupt body: {exc}") from exc
    if not isinstance(decoded, dict):
        raise StoreError(f"outbox event {seq} has a body that is not a map")
    return OutboxEvent(int(seq), str(event_id), str(type_), Hlc.unpack(int(hlc)), decoded, float(created))
