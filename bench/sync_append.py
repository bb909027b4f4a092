"""The append part of ``make bench-sync``: durable appends per second and their latency, ours and a naive
outbox's, on the same disk in the same run.

Contract. :func:`measure_appends` runs ``producers`` concurrent asyncio tasks against one
:class:`AppendTarget` for ``seconds``: each appends call records (:func:`call_record`, about 300 bytes of
canonical CBOR), either back to back (the ceiling: appends/s) or at an offered rate (the latency a steady
load gets). An append's latency ends when it returned, i.e. when it is durable; appends still running at
the deadline are awaited and counted.

The targets, each on a fresh database file in ``workdir`` (a real file system, never tmpfs: fsync is the
cost being measured):

* :class:`OutboxTarget` — :class:`appliance.store.Outbox` as the appliance runs it (WAL,
  ``synchronous=FULL``, group commit: one transaction and one fsync for every append queued meanwhile);
* :class:`NaiveTarget` — the peer: Python's ``sqlite3`` with the same journal and durability settings and
  the same row, one ``BEGIN IMMEDIATE; INSERT; COMMIT`` per event on one writer thread (SQLite has one
  writer), i.e. the outbox most programs start with: one fsync'd commit per event.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import sqlite3
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import cbor2

from appliance.store import Database, Outbox
from bench.common import OtherPrograms, percentile, rounded

EVENT_TYPE: Final = "call.record"
NAIVE_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
    "type TEXT NOT NULL, hlc INTEGER NOT NULL, body BLOB NOT NULL, created REAL NOT NULL)"
)


def call_record(n: int, *, at: float = 1_780_000_000.0) -> dict[str, Any]:
    """Call record number ``n``: the fields a CDR carries (ids, parties, times, route, cause, media
    counters), realistic sizes and values; about 300 bytes once canonical CBOR."""
    start = at + n * 0.37
    return {
        "call_id": f"{uuid.UUID(int=n * 2654435761 % 2**128).hex}@10.20.30.40",
        "direction": "inbound",
        "from": f"sip:+4930{5550000 + n % 10000:07d}@pstn.pop-fra-03.cc",
        "to": "sip:+498912345678@pop-fra-03.cc",
        "route": "cloud" if n % 5 else "local-ivr",
        "start": start,
        "answer": start + 2.5,
        "end": start + 62.5 + n % 300,
        "cause": 16,
        "codec": "PCMA",
        "span": None if n % 3 else {"span": 1, "channel": 1 + n % 30},
        "media": {"rx_packets": 3125 + n % 97, "tx_packets": 3125, "lost": n % 7, "jitter_ms": 2.25},
    }


class AppendTarget(Protocol):
    """Somewhere events are appended durably; :meth:`append` returns once its event is on disk."""

    async def append(self, type: str, body: Mapping[str, Any]) -> None: ...

    async def close(self) -> None: ...


class OutboxTarget:
    """The appliance's outbox on a database file of its own."""

    def __init__(self, db: Database, outbox: Outbox) -> None:
        self._db, self._outbox = db, outbox

    @classmethod
    async def open(cls, path: Path) -> OutboxTarget:
        db = await Database.open(path)
        return cls(db, Outbox(db))

    async def append(self, type: str, body: Mapping[str, Any]) -> None:
        await self._outbox.append(type, body)

    async def close(self) -> None:
        await self._outbox.close()
        await self._db.close()


class NaiveTarget:
    """One fsync'd commit per event: stdlib ``sqlite3``, WAL, ``synchronous=FULL``, one writer thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="naive-outbox")
        self._conn: sqlite3.Connection | None = None
        self._hlc = itertools.count(1)

    @classmethod
    async def open(cls, path: Path) -> NaiveTarget:
        target = cls(path)
        await asyncio.get_running_loop().run_in_executor(target._pool, target._connect)
        return target

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(NAIVE_SCHEMA)
        self._conn = conn

    def _insert(self, type: str, body: bytes) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO outbox (id, type, hlc, body, created) VALUES (?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, type, next(self._hlc), body, time.time()),
        )
        conn.execute("COMMIT")

    async def append(self, type: str, body: Mapping[str, Any]) -> None:
        encoded = cbor2.dumps(dict(body), canonical=True)  # in the caller, as the outbox does
        await asyncio.get_running_loop().run_in_executor(self._pool, self._insert, type, encoded)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, conn.close)
        self._pool.shutdown()


@dataclass(frozen=True)
class AppendResult:
    """What :func:`measure_appends` saw for one target."""

    target: str
    producers: int
    appends: int
    wall_s: float
    latencies_s: tuple[float, ...]
    rate: float | None = None  # the offered appends/s, None for back to back
    background_cores: float | None = None  # other programs' CPU meanwhile (bench.common.OtherPrograms)

    @property
    def appends_per_s(self) -> float:
        return self.appends / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def offered(self) -> str:
        return "back to back" if self.rate is None else f"{self.rate:g}/s offered"

    def p_ms(self, q: float) -> float | None:
        value = percentile(self.latencies_s, q)
        return None if value is None else value * 1000

    def row(self) -> dict[str, object]:
        return {
            "bench": "sync-append",
            "target": self.target,
            "producers": self.producers,
            "offered_per_s": self.rate,
            "appends": self.appends,
            "seconds": rounded(self.wall_s),
            "appends_per_s": rounded(self.appends_per_s, 1),
            "p50_ms": rounded(self.p_ms(50)),
            "p99_ms": rounded(self.p_ms(99)),
            "max_ms": rounded(self.p_ms(100)),
            "background_cores": rounded(self.background_cores, 2),
        }

    def line(self) -> str:
        return (
            f"  {self.target:6} {self.producers} producers, {self.offered}: {self.appends} appends in "
            f"{self.wall_s:.2f} s = {self.appends_per_s:,.0f}/s, p50 {self.p_ms(50) or 0:.2f} ms, "
            f"p99 {self.p_ms(99) or 0:.2f} ms, max {self.p_ms(100) or 0:.2f} ms; other programs "
            f"{self.background_cores or 0:.2f} cores"
        )


async def measure_appends(
    target: AppendTarget, name: str, *, producers: int, seconds: float, rate: float | None = None
) -> AppendResult:
    """``producers`` tasks appending call records to ``target`` for ``seconds``.

    With ``rate`` None each task appends back to back (closed loop: the target's ceiling). With a ``rate``
    (appends/s in all) the load is open: producer ``k`` appends at ``start + (k + i × producers) / rate``
    and an append's latency counts from when it was due, so a target that falls behind is charged the
    queueing it causes rather than being offered less (no coordinated omission)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    numbers = itertools.count()
    others, own = OtherPrograms.start(), time.process_time()
    start = loop.time()
    deadline = start + seconds

    async def produce(k: int) -> None:
        for i in itertools.count():
            due = loop.time() if rate is None else start + (k + i * producers) / rate
            if due >= deadline:
                return
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            body = call_record(next(numbers))
            await target.append(EVENT_TYPE, body)
            latencies.append(loop.time() - due)

    await asyncio.gather(*(produce(k) for k in range(producers)))
    wall = loop.time() - start
    background = others.cores(time.process_time() - own, wall)
    return AppendResult(name, producers, len(latencies), wall, tuple(latencies), rate, background)


async def appends_of(
    kind: str, path: Path, *, producers: int, seconds: float, rate: float | None = None
) -> AppendResult:
    """Open a fresh ``kind`` target (``outbox`` or ``naive``) at ``path``, measure it, close it."""
    target: AppendTarget = await (OutboxTarget.open(path) if kind == "outbox" else NaiveTarget.open(path))
    try:
        return await measure_appends(target, kind, producers=producers, seconds=seconds, rate=rate)
    finally:
        await target.close()
