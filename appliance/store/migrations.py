"""Versioned schema migrations.

Theory of operation. The schema is an ordered tuple of :class:`Migration` (versions 1, 2, 3, …). The
``schema_migrations`` table records each version applied, with its description and when. At open, every
migration above the recorded version is applied in order, each in its own transaction together with its
record, so a crash leaves the database at a whole version, never between two. A database recording a
version this firmware does not know was written by newer firmware (e.g. after an A/B rollback): it is
refused, because old code writing into a newer schema could corrupt it.

Migrations are append-only: a released migration is never edited, a change is a new migration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from appliance.store.errors import LocalProtocolError, MigrationError, SchemaTooNewError, StoreError

if TYPE_CHECKING:
    from appliance.store.database import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "outbox of events for the cloud, outbox state, key-value settings",
        (
            # DESIGN.md §5.3. AUTOINCREMENT, not a plain rowid: a seq is never reused, even after every
            # event up to it was acknowledged and pruned (SQLite keeps the high-water mark in
            # sqlite_sequence), so the cloud can never confuse a new event with one it already has.
            """CREATE TABLE outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                hlc INTEGER NOT NULL,
                body BLOB NOT NULL,
                created REAL NOT NULL
            ) STRICT""",
            # One row: the cloud's acknowledgement and the newest HLC issued, which survives pruning so
            # that timestamps stay monotonic across restarts even if the wall clock came back earlier.
            """CREATE TABLE outbox_state (
                singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
                acked_seq INTEGER NOT NULL CHECK (acked_seq >= 0),
                last_hlc INTEGER NOT NULL CHECK (last_hlc >= 0)
            ) STRICT""",
            "INSERT INTO outbox_state (singleton, acked_seq, last_hlc) VALUES (1, 0, 0)",
            """CREATE TABLE kv (
                key TEXT PRIMARY KEY,
                value BLOB NOT NULL,
                updated REAL NOT NULL
            ) STRICT""",
        ),
    ),
    Migration(
        2,
        "configuration documents pushed by the cloud",
        (
            # DESIGN.md §5.3, appliance/sync/sync.cddl. One row per document (kind, name): the running
            # version, and while a "confirm within N s" write waits for its confirmation, the version it
            # replaced, which a missed confirmation restores. content is the canonical CBOR the cloud sent.
            """CREATE TABLE config_documents (
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                version INTEGER NOT NULL CHECK (version > 0),
                content BLOB NOT NULL,
                sha256 TEXT NOT NULL,
                applied REAL NOT NULL,
                confirm_by REAL,
                previous_version INTEGER,
                previous_content BLOB,
                PRIMARY KEY (kind, name)
            ) STRICT""",
        ),
    ),
    Migration(
        3,
        "outbox pressure level",
        (
            # appliance/store/outbox_quota.py. The level last announced to the cloud, kept so that after a
            # restart the outbox neither repeats an alarm nor forgets to clear one.
            """ALTER TABLE outbox_state ADD COLUMN pressure TEXT NOT NULL DEFAULT 'normal'
                CHECK (pressure IN ('normal', 'thinning', 'full'))""",
        ),
    ),
)

_BOOKKEEPING: Final = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied REAL NOT NULL
) STRICT"""


def check_sequence(migrations: Sequence[Migration]) -> None:
    """Raise :class:`LocalProtocolError` unless versions run 1, 2, 3, … without gaps."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise LocalProtocolError(
                f"migration versions must run 1, 2, 3, …: found {migration.version} where {expected} belongs"
            )


async def current_version(db: Database) -> int:
    row = await db.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    return int(row[0]) if row is not None else 0


async def apply_migrations(
    db: Database, migrations: Sequence[Migration], *, wall: Callable[[], float]
) -> int:
    """Bring the schema of ``db`` up to the last of ``migrations``; returns the resulting version."""
    check_sequence(migrations)
    async with db.transaction() as tx:
        await tx.execute(_BOOKKEEPING)
    version = await current_version(db)
    known = len(migrations)
    if version > known:
        raise SchemaTooNewError(
            f"database {db.path} has schema version {version}, newer than the {known} this firmware knows; "
            "refusing to open it (was the firmware rolled back?)"
        )
    for migration in migrations[version:]:
        try:
            async with db.transaction() as tx:
                for statement in migration.statements:
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, description, applied) VALUES (?, ?, ?)",
                    (migration.version, migration.description, wall()),
                )
        except StoreError as exc:  # the transaction was rolled back: still at the previous version
            raise MigrationError(
                f"migration {migration.version} ({migration.description}) failed: {exc}"
            ) from exc
        log.info(
            "schema migrated", extra={"version": migration.version, "description": migration.description}
        )
        version = migration.version
    return version
