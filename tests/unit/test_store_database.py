"""appliance.store.database and migrations: durable settings, versioned schema, serialised transactions."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from appliance.store import (
    MIGRATIONS,
    Database,
    LocalProtocolError,
    Migration,
    MigrationError,
    SchemaTooNewError,
    StoreError,
    database,
)

NEXT = Migration(len(MIGRATIONS) + 1, "notes", ("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)",))


async def test_fresh_database_settings_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sub" / "appliance.db"  # the parent directories do not exist yet
    db = await Database.open(path, wall=lambda: 1234.5)
    try:
        assert path.is_file() and db.path == path
        assert db.schema_version == len(MIGRATIONS)
        assert await db.fetchone("PRAGMA journal_mode") == ("wal",)
        async with db.transaction() as tx:  # the writing connection
            assert await tx.fetchone("PRAGMA synchronous") == (2,)  # FULL
            assert await tx.fetchone("PRAGMA foreign_keys") == (1,)
            assert await tx.fetchone("PRAGMA busy_timeout") == (5000,)
            assert await tx.fetchone("PRAGMA wal_autocheckpoint") == (0,)  # checkpoints off the commit path
            assert await tx.fetchone("PRAGMA query_only") == (0,)
        # The reading connection: never writes, waits for locks as long.
        assert await db.fetchone("PRAGMA query_only") == (1,)
        assert await db.fetchone("PRAGMA busy_timeout") == (5000,)
        tables = {r[0] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"outbox", "outbox_state", "kv", "schema_migrations"} <= tables
        rows = await db.fetchall(
            "SELECT version, description, applied FROM schema_migrations ORDER BY version"
        )
        assert rows == [(m.version, m.description, 1234.5) for m in MIGRATIONS]
    finally:
        await db.close()


async def test_reopening_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    db = await Database.open(path)
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('k', x'01', 0)")
    await db.close()
    for _ in range(2):
        db = await Database.open(path, wall=lambda: 99.0)
        assert db.schema_version == len(MIGRATIONS)
        assert await db.fetchall("SELECT version FROM schema_migrations") == [
            (m.version,) for m in MIGRATIONS
        ]
        assert await db.fetchone("SELECT applied FROM schema_migrations WHERE version = 1") != (99.0,)
        assert await db.fetchall("SELECT key, value FROM kv") == [("k", b"\x01")]
        await db.close()


async def test_upgrade_applies_only_the_new_migration(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    db = await Database.open(path)
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('k', x'02', 0)")
    await db.close()
    db = await Database.open(path, migrations=(*MIGRATIONS, NEXT))
    try:
        assert db.schema_version == NEXT.version
        assert await db.fetchall("SELECT key FROM kv") == [("k",)]
        async with db.transaction() as tx:
            assert await tx.insert("INSERT INTO notes (text) VALUES ('hello')") == 1
    finally:
        await db.close()


async def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    db = await Database.open(path, migrations=(*MIGRATIONS, NEXT))
    await db.close()
    with pytest.raises(SchemaTooNewError) as info:
        await Database.open(path)
    assert str(info.value) == (
        f"database {path} has schema version {NEXT.version}, newer than the {len(MIGRATIONS)} this firmware "
        "knows; refusing to open it (was the firmware rolled back?)"
    )
    assert info.value.status == 500
    # The refused database is untouched and still opens with the newer code.
    db = await Database.open(path, migrations=(*MIGRATIONS, NEXT))
    assert db.schema_version == NEXT.version
    await db.close()


async def test_failed_migration_is_rolled_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    bad = Migration(len(MIGRATIONS) + 1, "broken", ("CREATE TABLE half (a)", "THIS IS NOT SQL"))
    with pytest.raises(MigrationError) as info:
        await Database.open(path, migrations=(*MIGRATIONS, bad))
    assert str(info.value).startswith(f"migration {bad.version} (broken) failed: ")
    db = await Database.open(path)  # still at the last good version
    try:
        assert db.schema_version == len(MIGRATIONS)
        assert await db.fetchone("SELECT name FROM sqlite_master WHERE name = 'half'") is None
    finally:
        await db.close()


@pytest.mark.parametrize("versions", [(2,), (1, 3), (1, 1)])
async def test_migration_versions_must_be_consecutive(tmp_path: Path, versions: tuple[int, ...]) -> None:
    migrations = tuple(Migration(v, "x", ()) for v in versions)
    with pytest.raises(LocalProtocolError):
        await Database.open(tmp_path / "appliance.db", migrations=migrations)


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    path.write_bytes(b"this is not an SQLite database, just text" * 100)
    with pytest.raises(StoreError) as info:
        await Database.open(path)
    assert "not a database" in str(info.value)


async def test_cannot_create_the_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError) as info:
        await Database.open(tmp_path / "file" / "appliance.db")
    assert str(info.value).startswith(f"cannot create {tmp_path / 'file'}")


async def test_closed_database(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "appliance.db")
    await db.close()
    await db.close()  # idempotent
    assert db.closed
    with pytest.raises(LocalProtocolError):
        await db.fetchall("SELECT 1")
    with pytest.raises(LocalProtocolError):
        async with db.transaction():
            pass


async def test_transaction_commits_or_rolls_back(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "appliance.db")
    try:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('a', x'00', 0)")
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('b', x'00', 0)")
                assert await tx.fetchone("SELECT COUNT(*) FROM kv") == (2,)
                raise RuntimeError("caller failed")
        with pytest.raises(StoreError) as info:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('c', x'00', 0)")
                await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('a', x'00', 0)")
        assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
        assert await db.fetchall("SELECT key FROM kv") == [("a",)]
    finally:
        await db.close()


async def test_cancelled_transaction_leaves_a_clean_connection(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "appliance.db")
    inside = asyncio.Event()

    async def stuck() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('lost', x'00', 0)")
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    try:
        async with (
            db.transaction() as tx
        ):  # would fail with "cannot start a transaction within a transaction"
            await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('kept', x'00', 0)")
        assert await db.fetchall("SELECT key FROM kv") == [("kept",)]
    finally:
        await db.close()


async def test_reads_never_see_an_open_transaction(tmp_path: Path) -> None:
    # One connection serves both; without serialisation the read would see the uncommitted row.
    db = await Database.open(tmp_path / "appliance.db")
    inserted, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('x', x'00', 0)")
            inserted.set()
            await release.wait()
            raise RuntimeError("abandoned")

    task = asyncio.create_task(writer())
    await inserted.wait()
    read = asyncio.create_task(db.fetchall("SELECT key FROM kv"))
    await asyncio.sleep(0)  # let the read start and queue behind the open transaction
    assert not read.done()
    release.set()
    with pytest.raises(RuntimeError):
        await task
    assert await read == []
    await db.close()


async def test_close_waits_for_the_transaction_in_progress(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    db = await Database.open(path)
    inside, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('x', x'00', 0)")
            inside.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await inside.wait()
    closing = asyncio.create_task(db.close())
    await asyncio.sleep(0)
    assert not closing.done()
    release.set()
    await task
    await closing
    db = await Database.open(path)
    assert await db.fetchall("SELECT key FROM kv") == [("x",)]
    await db.close()


async def test_using_the_database_inside_its_own_transaction_is_refused(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "appliance.db")
    try:
        async with db.transaction():
            with pytest.raises(LocalProtocolError):
                await db.fetchall("SELECT 1")
            with pytest.raises(LocalProtocolError):
                async with db.transaction():
                    pass
        assert await db.fetchall("SELECT 1") == [(1,)]
    finally:
        await db.close()


async def test_reads_do_not_wait_for_a_write_transaction_and_see_only_committed_rows(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    try:
        wrote, release = asyncio.Event(), asyncio.Event()

        async def writer() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('k', x'01', 0)")
                wrote.set()
                await release.wait()

        task = asyncio.create_task(writer())
        await wrote.wait()
        # The transaction is open and holds the write lock: a read answers at once, without its row.
        assert await asyncio.wait_for(db.fetchall("SELECT key FROM kv"), 1.0) == []
        release.set()
        await task
        assert await db.fetchall("SELECT key FROM kv") == [("k",)]
    finally:
        await db.close()


async def test_checkpoints_run_after_a_number_of_commits_not_inside_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "CHECKPOINT_EVERY", 3)
    path = tmp_path / "a.db"
    db = await Database.open(path)
    try:
        size = path.stat().st_size
        for i in range(2):
            async with db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO kv (key, value, updated) VALUES (?, randomblob(20000), 0)", (f"{i}",)
                )
        assert db._checkpoint is None and path.stat().st_size == size  # everything still in the WAL
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO kv (key, value, updated) VALUES ('2', randomblob(20000), 0)")
        assert db._checkpoint is not None
        await db._checkpoint
        assert path.stat().st_size > size + 60000  # the three rows were copied into the database file
    finally:
        await db.close()
