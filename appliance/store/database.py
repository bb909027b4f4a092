"""The appliance's SQLite database: one connection, WAL journal, durable commits, serialised access.

Theory of operation. The control process is the only writer (DESIGN.md §2), so the store keeps a single
aiosqlite connection and serialises every use of it with one asyncio lock: a write transaction holds the
lock from ``BEGIN IMMEDIATE`` to ``COMMIT``, and reads take it too, because a read issued on the same
connection while a transaction is open would see that transaction's uncommitted rows.

aiosqlite runs every statement, in order, on one worker thread. A task cancelled while awaiting a statement
does not stop it; the rollback issued on the way out is queued behind it on the same thread before the lock
is released, so the next transaction always starts on a clean connection.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL`` fsyncs the write-ahead log at every commit, so a
transaction whose ``COMMIT`` has returned survives power loss, not only the death of the process (the
default ``NORMAL`` in WAL mode may lose the last commits on power loss). The sync API acknowledges to
callers only what has been committed this way.

Reads and checkpoints off the write path. Queries outside a transaction (:meth:`Database.fetchall`) run on a
second connection with its own thread and lock: in WAL mode it sees every committed transaction and
nothing uncommitted, and a long read (the sync feed reads 10,000 events at a time) no longer holds up the
appends queued behind it. SQLite's automatic checkpoint is turned off on the writer, because it runs inside
the ``COMMIT`` that crosses the threshold and adds the copy into the database file and its fsync to that
commit's latency; instead, after every :data:`CHECKPOINT_EVERY` commits, the reading connection runs a
PASSIVE checkpoint (which never blocks the writer) while appends go on.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import aiosqlite

from appliance.store.errors import LocalProtocolError, StoreError
from appliance.store.migrations import MIGRATIONS, Migration, apply_migrations

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
Params = Sequence[Any]
DEFAULT_BUSY_TIMEOUT_MS: Final = 5000
WAL_SIZE_LIMIT: Final = 16 * 1024 * 1024
CHECKPOINT_EVERY: Final = 200
"""Commits between two checkpoints: a few hundred KiB of WAL at the outbox's transaction sizes, what SQLite's
own default (1000 pages) amounts to."""


class Transaction:
    """Statements inside one open transaction; obtained from :meth:`Database.transaction` only."""

    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        cursor = await self._conn.execute(sql, params)
        changed = cursor.rowcount
        await cursor.close()
        return int(changed)

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Run one INSERT; returns the new row's rowid (the INTEGER PRIMARY KEY)."""
        row = await self._conn.execute_insert(sql, params)
        if row is None:
            raise StoreError("INSERT returned no rowid")
        return int(row[0])

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return [tuple(r) for r in await self._conn.execute_fetchall(sql, params)]

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


class Database:
    """The open database. Create with :meth:`open`; every method may raise :class:`StoreError`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        """Wrap an open connection; use :meth:`open`, which also configures it and migrates the schema."""
        self._conn: aiosqlite.Connection | None = conn
        self._reader: aiosqlite.Connection | None = None  # reads and checkpoints (module doc)
        self._path = path
        self._lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None  # the task inside the lock, to catch re-entry
        self._schema_version = 0
        self._commits = 0
        self._checkpoint: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        wall: Callable[[], float] = time.time,
    ) -> Database:
        """Open (creating it and its directory if need be) and migrate the database at ``path``.

        Raises :class:`SchemaTooNewError` if the file was written by newer firmware, :class:`MigrationError`
        if a migration fails, and :class:`StoreError` if the file is not a usable SQLite database.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {path.parent}: {exc.strerror}") from exc
        try:
            # isolation_level=None: no implicit transactions; the store issues BEGIN/COMMIT itself.
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        db = cls(conn, path)
        try:
            await db._configure(busy_timeout_ms)  # WAL first: the reader needs it to read beside the writer
            db._reader = await _open_reader(path, busy_timeout_ms)
            db._schema_version = await apply_migrations(db, migrations, wall=wall)
            if db._checkpoint is not None:
                await db._checkpoint
            db._commits, db._checkpoint = 0, None  # counted from the first commit after the open
        except BaseException:
            await db.close()
            raise
        return db

    async def _configure(self, busy_timeout_ms: int) -> None:
        conn = self._connection()
        try:
            # busy_timeout first: another process (a backup, the sqlite3 shell) may hold a lock right now.
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
            mode = str(rows[0][0]).lower() if rows else ""
            if mode != "wal":
                raise StoreError(f"database {self._path}: journal mode is {mode!r}, WAL is required")
            # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss (see module doc).
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run off the commit path
            # A WAL file grown by a burst (a drain, a long read holding a snapshot) is cut back to this
            # size when it is next reset, rather than kept at its largest for good.
            await conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        except sqlite3.Error as exc:
            raise StoreError(f"database {self._path} is not usable: {exc}") from exc

    @property
    def path(self) -> Path:
        return self._path

    @property
    def schema_version(self) -> int:
        """The schema version after the migrations applied at open."""
        return self._schema_version

    @property
    def closed(self) -> bool:
        return self._conn is None

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise LocalProtocolError(f"database {self._path} is closed")
        return self._conn

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            # The lock is not re-entrant: waiting for it here would wait forever.
            raise LocalProtocolError("the database was used inside its own transaction; use the Transaction")
        async with self._lock:
            self._holder = task
            try:
                yield
            finally:
                self._holder = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        ``BEGIN IMMEDIATE`` takes SQLite's write lock at the start, so a transaction never fails halfway
        for want of it. When this returns normally the transaction is durable (see the module doc). Inside
        the block use the :class:`Transaction` only: the database's own methods raise
        :class:`LocalProtocolError` there rather than wait for the lock the block holds.
        """
        async with self._locked():
            conn = self._connection()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                yield Transaction(conn)
                await conn.commit()
                self._committed()
            except BaseException as exc:
                # Queued behind any statement still running, before the lock is released (module doc).
                await _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"database {self._path}: {exc}") from exc
                raise

    def _committed(self) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY and (self._checkpoint is None or self._checkpoint.done()):
            self._commits = 0
            self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        """Copy the WAL into the database file without blocking the writer (PASSIVE); a checkpoint that
        fails is tried again after the next batch of commits."""
        try:
            async with self._read_lock:
                if self._reader is not None:
                    await self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            log.warning("checkpoint of %s failed", self._path, exc_info=True)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query outside any write transaction, on the reading connection; sees committed data
        only. Inside a transaction use the :class:`Transaction` (this raises there, as the write methods do,
        because the rows the transaction wrote are not visible here)."""
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            raise LocalProtocolError("the database was used inside its own transaction; use the Transaction")
        async with self._read_lock:
            if self._reader is None:
                raise LocalProtocolError(f"database {self._path} is closed")
            try:
                return [tuple(r) for r in await self._reader.execute_fetchall(sql, params)]
            except sqlite3.Error as exc:
                raise StoreError(f"database {self._path}: {exc}") from exc

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Close the connections once any transaction or read in progress has finished. Idempotent."""
        async with self._locked():
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
        if self._checkpoint is not None:
            await asyncio.wait({self._checkpoint})
        async with self._read_lock:
            reader, self._reader = self._reader, None
            if reader is not None:
                await reader.close()


async def _open_reader(path: Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    """The second connection: reads see committed data only (WAL), and it runs the checkpoints."""
    try:
        reader = await aiosqlite.connect(str(path), isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc
    try:
        await reader.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await reader.execute("PRAGMA query_only = ON")  # it never writes a row; checkpoints are allowed
    except BaseException:
        await reader.close()
        raise
    return reader


async def _rollback(conn: aiosqlite.Connection) -> None:
    try:
        await conn.rollback()
    except sqlite3.Error:  # e.g. SQLite already rolled back on its own after an I/O error
        log.warning("rollback failed", exc_info=True)
