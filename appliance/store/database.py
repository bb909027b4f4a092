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
        self._path = path
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None  # the task inside the lock, to catch re-entry
        self._schema_version = 0

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
            await db._configure(busy_timeout_ms)
            db._schema_version = await apply_migrations(db, migrations, wall=wall)
        except BaseException:
            await conn.close()
            db._conn = None
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
            except BaseException as exc:
                # Queued behind any statement still running, before the lock is released (module doc).
                await _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"database {self._path}: {exc}") from exc
                raise

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query outside any write transaction; sees committed data only."""
        async with self._locked():
            conn = self._connection()
            try:
                return [tuple(r) for r in await conn.execute_fetchall(sql, params)]
            except sqlite3.Error as exc:
                raise StoreError(f"database {self._path}: {exc}") from exc

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Close the connection once any transaction in progress has finished. Idempotent."""
        async with self._locked():
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()


async def _rollback(conn: aiosqlite.Connection) -> None:
    try:
        await conn.rollback()
    except sqlite3.Error:  # e.g. SQLite already rolled back on its own after an I/O error
        log.warning("rollback failed", exc_info=True)
