"""Durable key-value settings (the last known mode and the like)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.store import Database, KeyValueStore, LocalProtocolError


async def test_set_get_delete_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    db = await Database.open(path)
    kv = KeyValueStore(db, wall=lambda: 42.0)
    assert await kv.get("mode") is None
    assert await kv.get("mode", "SURVIVABLE") == "SURVIVABLE"
    await kv.set("mode", "ONLINE")
    await kv.set("mode", "SUSPECT")  # overwrite
    await kv.set("enrolment", {"state": "done", "serial": "SIM-0001", "cert": b"\x30\x82", "n": [1, 2.5]})
    assert await kv.get("mode") == "SUSPECT"
    assert await kv.keys() == ["enrolment", "mode"]
    assert await db.fetchone("SELECT updated FROM kv WHERE key = 'mode'") == (42.0,)
    await db.close()

    db = await Database.open(path)
    kv = KeyValueStore(db)
    assert await kv.get("mode") == "SUSPECT"
    assert await kv.get("enrolment") == {
        "state": "done",
        "serial": "SIM-0001",
        "cert": b"\x30\x82",
        "n": [1, 2.5],
    }
    assert await kv.delete("mode") is True
    assert await kv.delete("mode") is False
    assert await kv.get("mode") is None
    await db.close()


async def test_bad_keys_and_values(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "appliance.db")
    kv = KeyValueStore(db)
    try:
        for key in ["", "k" * 129]:
            with pytest.raises(LocalProtocolError):
                await kv.set(key, 1)
            with pytest.raises(LocalProtocolError):
                await kv.get(key)
        with pytest.raises(LocalProtocolError):
            await kv.set("x", object())
        with pytest.raises(LocalProtocolError):
            await kv.set("x", b"\x00" * (64 * 1024 + 1))
        assert await kv.keys() == []
    finally:
        await db.close()
