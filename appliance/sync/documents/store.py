"""The configuration documents the cloud pushes: versioned, validated by their owners, applied whole.

Theory of operation. The table ``config_documents`` (store migration 2) is the truth: one row per
(kind, name) with the running version and its content as canonical CBOR; the owners' files and in-memory
state are materialised from it, and :meth:`DocumentStore.start` puts every stored document in force again
at boot. A write (:meth:`DocumentStore.put`) goes in three steps so that it is never half applied:

1. check everything that can be refused: the kind, the name, the version precondition (``replaces`` must
   be the running version, 0 for a new document), then the owner's :meth:`~DocumentOwner.validate`, which
   prepares what applying needs;
2. commit the row (with the version and content it replaces when the write must be confirmed);
3. the owner's :meth:`~DocumentOwner.apply`: an atomic file write, then an in-memory swap. Should it fail
   (a full disk), the previous row is written back and the previous document applied again, and the
   write fails with :class:`ApplyFailed`; a crash in between is repaired at the next start, from the row.

"Confirm within N s" works as Junos' ``commit confirmed``: the write is applied at once but stays
``pending-confirm`` until :meth:`DocumentStore.confirm`; at its deadline the previous version is restored
(or the document removed if it was new). Deadlines run on the monotonic clock (``now``, STYLE rule 2:
:meth:`get_timer` / :meth:`handle_timer`); the row keeps the wall-clock ``confirm_by`` so that a deadline
that passed while the appliance was down is honoured at start, as Junos reverts after a reboot during a
``commit confirmed``. While a write waits for its confirmation, other writes of that document are refused
(:class:`ConfirmPending`).

Every write applied, confirmed, reverted or refused becomes an outbox event (``config.applied``,
``config.confirmed``, ``config.reverted``, ``config.rejected``) through the injected ``append``. Writes,
confirmations and reverts are serialised by one lock, so a precondition checked is still true at commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from appliance.store.database import Database
from appliance.store.errors import StoreError
from appliance.sync.documents.errors import (
    ApplyFailed,
    ConfirmPending,
    DocumentError,
    InvalidDocument,
    NothingToConfirm,
    StaleVersion,
    UnknownKind,
)
from appliance.sync.documents.model import (
    KINDS,
    ConfigResult,
    Document,
    DocumentInfo,
    DocumentOwner,
    Kind,
    check_name,
    check_plain,
    within,
)

log = logging.getLogger("appliance.sync.documents")

Append = Callable[[str, Mapping[str, Any]], Awaitable[object]]
"""Appends one outbox event (type, body): ``Outbox.append``."""

MAX_VERSION: Final = 2**63 - 1
"""SQLite's INTEGER holds a version up to this."""
MAX_CONFIRM_WITHIN: Final = 3600

_COLUMNS: Final = (
    "kind, name, version, content, sha256, applied, confirm_by, previous_version, previous_content"
)


@dataclass(frozen=True, slots=True)
class _Row:
    kind: Kind
    name: str
    version: int
    content: bytes
    sha256: str
    applied: float
    confirm_by: float | None
    previous_version: int | None
    previous_content: bytes | None

    @property
    def pending(self) -> bool:
        return self.confirm_by is not None


@dataclass(frozen=True, slots=True)
class _Write:
    kind: str
    name: str
    replaces: int
    version: int
    content: Any
    confirm_within: float | None
    now: float


def _row(values: tuple[Any, ...]) -> _Row:
    return _Row(*values)


def _kind_order(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


class DocumentStore:
    """The stored configuration documents and their owners (one per kind).

    ``append`` is ``Outbox.append`` (or any async callable taking an event type and body); ``wall`` gives
    the POSIX time recorded as ``applied_at`` and ``confirm_by``. Call :meth:`start` once, after the
    database is open and before serving the sync API.
    """

    def __init__(
        self,
        db: Database,
        *,
        owners: Iterable[DocumentOwner],
        append: Append,
        wall: Callable[[], float],
    ) -> None:
        self._db = db
        self._owners: dict[str, DocumentOwner] = {owner.kind: owner for owner in owners}
        self._append = append
        self._wall = wall
        self._lock = asyncio.Lock()
        self._deadlines: dict[tuple[str, str], float] = {}
        # What apply() got for the running version, and while pending for the one a revert restores: a
        # failed apply or a revert then needs no new validation (which could now fail).
        self._running: dict[tuple[str, str], object] = {}
        self._previous: dict[tuple[str, str], object] = {}

    # --- reading ------------------------------------------------------------------------------------------

    async def get(self, kind: str, name: str) -> Document | None:
        """The stored document, or None; :class:`UnknownKind` for a kind this firmware lacks."""
        self._owner(kind)
        row = await self._load(kind, name)
        if row is None:
            return None
        return Document(
            row.kind, row.name, row.version, cbor2.loads(row.content), row.applied, row.confirm_by
        )

    async def list(self) -> list[DocumentInfo]:
        """Every stored document, by kind then name; what ``status`` and ``GET /config`` show."""
        rows = [_row(r) for r in await self._db.fetchall(f"SELECT {_COLUMNS} FROM config_documents")]
        rows.sort(key=lambda r: (_kind_order(r.kind), r.name))
        return [
            DocumentInfo(
                r.kind,
                r.name,
                r.version,
                r.sha256,
                r.applied,
                r.confirm_by,
                r.previous_version if r.pending else None,
            )
            for r in rows
        ]

    def get_timer(self) -> float | None:
        """The earliest confirmation deadline (monotonic), or None."""
        return min(self._deadlines.values(), default=None)

    # --- writing ------------------------------------------------------------------------------------------

    async def put(
        self,
        kind: str,
        name: str,
        replaces: int,
        version: int,
        content: Any,
        confirm_within: float | None,
        now: float,
    ) -> ConfigResult:
        """Write version ``version`` of a document in place of ``replaces`` (0: a new document).

        Returns the state in force (``applied``, or ``pending-confirm`` with ``confirm_by`` when
        ``confirm_within`` seconds were given). Writing the running version again with the same content is
        a replay: the running state is returned and nothing changes. Raises :class:`UnknownKind`,
        :class:`InvalidDocument`, :class:`StaleVersion`, :class:`ConfirmPending` or :class:`ApplyFailed`,
        each after recording a ``config.rejected`` event, and in each case nothing changed.
        """
        try:
            async with self._lock:
                return await self._put(_Write(kind, name, replaces, version, content, confirm_within, now))
        except DocumentError as exc:
            body: dict[str, Any] = {"kind": kind, "name": name, "version": version, "replaces": replaces}
            body.update(exc.as_message())
            body["reason"] = body.pop("error")
            await self._append("config.rejected", body)
            raise

    async def _put(self, write: _Write) -> ConfigResult:
        kind, name, content = write.kind, write.name, write.content
        replaces, version, confirm_within = write.replaces, write.version, write.confirm_within
        owner = self._owner(kind)
        check_name(kind, name)
        for field, value in (("replaces", replaces), ("version", version)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VERSION:
                raise InvalidDocument(f"expected an integer from 0 to {MAX_VERSION}", path=field)
        if confirm_within is not None and (
            isinstance(confirm_within, bool)
            or not isinstance(confirm_within, int | float)
            or not 1 <= confirm_within <= MAX_CONFIRM_WITHIN
        ):
            raise InvalidDocument(f"expected seconds from 1 to {MAX_CONFIRM_WITHIN}", path="confirm_within")
        check_plain(content)
        encoded = cbor2.dumps(content, canonical=True)
        digest = hashlib.sha256(encoded).hexdigest()
        key = (kind, name)
        row = await self._load(kind, name)
        if row is not None and row.version == version and row.sha256 == digest:
            log.info("config %s/%s version %d written again: no change", kind, name, version)
            return self._result(row)
        if row is not None and row.pending:
            raise ConfirmPending(
                f"version {row.version} waits for its confirmation; confirm it or let it revert first"
            )
        current = row.version if row is not None else 0
        if replaces != current:
            raise StaleVersion(current, replaces)
        if version <= replaces:
            raise InvalidDocument(f"version {version} is not above replaces {replaces}", path="version")
        try:
            prepared = owner.validate(name, content, version=version)
        except InvalidDocument as exc:
            path = None if exc.path is None else within("content", exc.path)
            raise InvalidDocument(exc.message, path=path) from None

        applied = self._wall()
        confirm_by = applied + confirm_within if confirm_within is not None else None
        new = _Row(
            kind,  # type: ignore[arg-type]
            name,
            version,
            encoded,
            digest,
            applied,
            confirm_by,
            (current if confirm_by is not None else None),
            (row.content if confirm_by is not None and row is not None else None),
        )
        try:
            await self._save(new)
        except StoreError as exc:  # rolled back: nothing changed
            raise ApplyFailed(
                f"version {version} could not be stored ({exc}); version {current} is in force"
            ) from None
        try:
            owner.apply(name, prepared)
        except Exception as exc:
            log.exception("config %s/%s version %d could not be applied", kind, name, version)
            await self._restore(owner, name, row)
            raise ApplyFailed(
                f"version {version} could not be applied ({exc}); version {current} is in force"
            ) from None
        previous = self._running.get(key)
        self._running[key] = prepared
        if confirm_within is not None:
            self._deadlines[key] = write.now + confirm_within
            if previous is not None:
                self._previous[key] = previous
        log.info("config %s/%s version %d applied (replaces %d)", kind, name, version, replaces)
        event: dict[str, Any] = {"kind": kind, "name": name, "version": version, "replaces": replaces}
        event["sha256"] = digest
        if confirm_by is not None:
            event["confirm_by"] = confirm_by
        await self._append("config.applied", event)
        return self._result(new)

    async def _restore(self, owner: DocumentOwner, name: str, row: _Row | None) -> None:
        """Put ``row`` (the document before a write whose apply failed; None: there was none) back in the
        table and in force: the owner may have replaced its file before failing."""
        key = (owner.kind, name)
        try:
            if row is None:
                await self._delete(owner.kind, name)
                owner.remove(name)
            else:
                await self._save(row)
                if key in self._running:
                    owner.apply(name, self._running[key])
        except Exception:  # the table is the truth, and start() puts it in force again
            log.exception("config %s/%s: restoring the previous version failed", owner.kind, name)

    async def confirm(self, kind: str, name: str, version: int, now: float) -> ConfigResult:
        """Confirm ``version`` of a document written with ``confirm_within``: it stays. Raises
        :class:`UnknownKind` or :class:`NothingToConfirm`."""
        self._owner(kind)
        async with self._lock:
            row = await self._load(kind, name)
            if row is None or not row.pending or row.version != version:
                state = (
                    "no such document"
                    if row is None
                    else f"version {row.version} is running"
                    + (", waiting for its confirmation" if row.pending else ", confirmed")
                )
                raise NothingToConfirm(f"version {version} is not waiting for a confirmation ({state})")
            confirmed = _Row(
                row.kind, row.name, row.version, row.content, row.sha256, row.applied, None, None, None
            )
            await self._save(confirmed)
            self._deadlines.pop((kind, name), None)
            self._previous.pop((kind, name), None)
        log.info("config %s/%s version %d confirmed", kind, name, version)
        await self._append("config.confirmed", {"kind": kind, "name": name, "version": version})
        return self._result(confirmed)

    # --- confirmation deadlines ---------------------------------------------------------------------------

    async def handle_timer(self, now: float) -> None:
        """Revert every write whose confirmation deadline (monotonic) is at or before ``now``. A deadline
        is dropped only once its revert is in the table: after a :class:`StoreError` (or a cancellation)
        the next call tries again."""
        due = sorted(key for key, deadline in self._deadlines.items() if deadline <= now)
        for key in due:
            async with self._lock:
                if self._deadlines.get(key, now + 1) > now:  # confirmed while this call waited for the lock
                    continue
                row = await self._load(*key)
                if row is not None and row.pending:
                    await self._revert(row, "not confirmed in time")
                self._deadlines.pop(key, None)

    async def _revert(self, row: _Row, reason: str) -> None:
        """Restore what a pending write replaced (or remove the document if it was new) and report it."""
        owner = self._owners[row.kind]
        key = (row.kind, row.name)
        restored = row.previous_version or 0
        try:
            if restored == 0 or row.previous_content is None:
                await self._delete(row.kind, row.name)
                self._running.pop(key, None)
                owner.remove(row.name)
            else:
                content = cbor2.loads(row.previous_content)
                digest = hashlib.sha256(row.previous_content).hexdigest()
                back = _Row(
                    row.kind, row.name, restored, row.previous_content, digest, self._wall(), None, None, None
                )
                await self._save(back)  # first: whatever happens next, the table holds the restored version
                prepared = self._previous.get(key)
                if prepared is None:  # not prepared since start: it was refused then, or the store restarted
                    prepared = owner.validate(row.name, content, version=restored)
                owner.apply(row.name, prepared)
                self._running[key] = prepared
        except StoreError:
            raise  # the table is unchanged (still pending): the revert is tried again
        except Exception as exc:  # an owner failed; the table is the truth and the next start applies it
            log.exception("config %s/%s: reverting version %d failed", row.kind, row.name, row.version)
            reason = f"{reason}; the revert failed: {exc}"
        finally:
            self._previous.pop(key, None)
        log.warning(
            "config %s/%s version %d reverted to %d: %s", row.kind, row.name, row.version, restored, reason
        )
        body = {"kind": row.kind, "name": row.name, "version": row.version, "restored_version": restored}
        await self._append("config.reverted", {**body, "reason": reason})

    # --- start --------------------------------------------------------------------------------------------

    async def start(self, now: float) -> None:
        """Put every stored document in force (kinds in :data:`KINDS` order), re-arm the confirmation
        deadlines still ahead, and revert the writes whose deadline passed while the appliance was down.

        A stored document its owner now refuses (the firmware became stricter) is logged, reported as
        ``config.rejected`` and left out; the owner serves its default. Nothing here raises for one bad
        document."""
        async with self._lock:
            rows = [_row(r) for r in await self._db.fetchall(f"SELECT {_COLUMNS} FROM config_documents")]
            rows.sort(key=lambda r: (_kind_order(r.kind), r.name))
            wall = self._wall()
            for row in rows:
                owner = self._owners.get(row.kind)
                if owner is None:
                    log.error("config %s/%s: no owner for this kind, left out", row.kind, row.name)
                    continue
                if row.pending and row.confirm_by is not None and row.confirm_by <= wall:
                    await self._revert(row, "not confirmed in time (the deadline passed while stopped)")
                    continue
                await self._start_one(owner, row)
                if row.pending and row.confirm_by is not None:
                    self._deadlines[(row.kind, row.name)] = now + (row.confirm_by - wall)

    async def _start_one(self, owner: DocumentOwner, row: _Row) -> None:
        key = (row.kind, row.name)
        try:
            prepared = owner.validate(row.name, cbor2.loads(row.content), version=row.version)
            owner.apply(row.name, prepared)
        except Exception as exc:
            log.error(
                "config %s/%s version %d not applied at start: %s", row.kind, row.name, row.version, exc
            )
            body = {"kind": row.kind, "name": row.name, "version": row.version, "replaces": row.version}
            message = exc.as_message() if isinstance(exc, DocumentError) else {"error": "internal"}
            reason = message.pop("error")
            await self._append("config.rejected", {**body, **message, "reason": reason, "at_start": True})
            return
        self._running[key] = prepared

    # --- rows ---------------------------------------------------------------------------------------------

    def _owner(self, kind: str) -> DocumentOwner:
        owner = self._owners.get(kind)
        if owner is None:
            raise UnknownKind(f"no document kind {kind!r} (kinds: {', '.join(KINDS)})")
        return owner

    async def _load(self, kind: str, name: str) -> _Row | None:
        found = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM config_documents WHERE kind = ? AND name = ?", (kind, name)
        )
        return None if found is None else _row(found)

    async def _save(self, row: _Row) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                f"INSERT OR REPLACE INTO config_documents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.kind,
                    row.name,
                    row.version,
                    row.content,
                    row.sha256,
                    row.applied,
                    row.confirm_by,
                    row.previous_version,
                    row.previous_content,
                ),
            )

    async def _delete(self, kind: str, name: str) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM config_documents WHERE kind = ? AND name = ?", (kind, name))

    @staticmethod
    def _result(row: _Row) -> ConfigResult:
        if row.pending:
            return ConfigResult(row.kind, row.name, row.version, "pending-confirm", row.confirm_by)
        return ConfigResult(row.kind, row.name, row.version, "applied")
