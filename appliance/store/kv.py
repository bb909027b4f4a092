"""Small durable settings and state (the last known WAN mode, enrolment status), keyed by name.

Values are anything CBOR encodes (numbers, strings, bytes, lists, maps); each ``set`` is its own durable
transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import cbor2

from appliance.store.database import Database
from appliance.store.errors import LocalProtocolError, StoreError

MAX_KEY_LENGTH: Final = 128
MAX_VALUE_SIZE: Final = 64 * 1024


class KeyValueStore:
    def __init__(self, db: Database, *, wall: Callable[[], float] = time.time) -> None:
        self._db = db
        self._wall = wall

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        _check_key(key)
        row = await self._db.fetchone("SELECT value FROM kv WHERE key = ?", (key,))
        if row is None:
            return default
        try:
            return cbor2.loads(row[0])
        except (cbor2.CBORDecodeError, ValueError) as exc:
            raise StoreError(f"setting {key!r} is corrupt: {exc}") from exc

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``; durable when this returns."""
        _check_key(key)
        try:
            encoded = cbor2.dumps(value, canonical=True)
        except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
            raise LocalProtocolError(f"setting {key!r} cannot be encoded as CBOR: {exc}") from exc
        if len(encoded) > MAX_VALUE_SIZE:
            raise LocalProtocolError(f"setting {key!r} is {len(encoded)} bytes, over {MAX_VALUE_SIZE}")
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO kv (key, value, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
                (key, encoded, self._wall()),
            )

    async def delete(self, key: str) -> bool:
        """Remove ``key``; returns whether it was there."""
        _check_key(key)
        async with self._db.transaction() as tx:
            return await tx.execute("DELETE FROM kv WHERE key = ?", (key,)) > 0

    async def keys(self) -> list[str]:
        return [str(r[0]) for r in await self._db.fetchall("SELECT key FROM kv ORDER BY key")]


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise LocalProtocolError(f"setting keys are strings of 1 to {MAX_KEY_LENGTH} characters: {key!r}")
