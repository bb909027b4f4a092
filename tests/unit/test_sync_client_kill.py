"""The pull command killed (SIGKILL) at random moments while it pulls from the real sync service, fetches
voicemail blobs and acknowledges, five times, events still being appended: at the end the store holds
every event exactly once, in order, every voicemail whole, and no acknowledgement ever ran ahead of what
the store held on disk."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.sync.client import ClientStore
from tests.sync_server import Site, running_site
from tests.unit.test_sync_client_service import ROOT, argv, voicemail

KILLS = 5


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with running_site(tmp_path) as running:
        yield running


def stored_upto(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])
    finally:
        conn.close()


async def test_pull_survives_sigkill(site: Site, tmp_path: Path) -> None:
    rng = random.Random(5)
    db, blobs = tmp_path / "events.db", tmp_path / "blobs"
    ahead: list[str] = []
    served = asyncio.Condition()
    reads = 0
    voicemails: dict[int, tuple[str, bytes]] = {}
    outbox = site.outbox
    acknowledge, read_raw_after = outbox.acknowledge, outbox.read_raw_after

    async def checked_acknowledge(upto: int) -> int:
        # What is acknowledged must be in the store on disk already, its voicemails whole beside it.
        held = stored_upto(db)
        if held < upto:
            ahead.append(f"ack {upto} with {held} stored")
        for seq, (name, data) in voicemails.items():
            path = blobs / "voicemail" / name
            if seq <= upto and (not path.exists() or path.read_bytes() != data):
                ahead.append(f"ack {upto} before voicemail {name}")
        return await acknowledge(upto)

    async def counted_read(after: int, limit: int) -> object:
        nonlocal reads
        reads += 1
        async with served:
            served.notify_all()
        return await read_raw_after(after, limit)

    outbox.acknowledge = checked_acknowledge  # type: ignore[method-assign]
    outbox.read_raw_after = counted_read  # type: ignore[assignment,method-assign]

    async def wait_reads(target: int) -> None:
        async with served:
            await served.wait_for(lambda: reads >= target)

    async def produce(count: int) -> None:
        for _ in range(count):
            n = (await outbox.stats()).last_seq + 1
            if n % 20 == 0:
                name, data = f"v{n}.vm", os.urandom(150_000 + n)
                await voicemail(site, name, data)
                voicemails[n] = (name, data)
            else:
                await outbox.append("call.record", {"n": n})

    await produce(400)
    command = [sys.executable, "-m", "appliance.sync.client", *argv(site), "pull", "--store", str(db),
               "--blobs", str(blobs), "--limit", "40"]  # fmt: skip
    killed = 0
    while killed < KILLS:
        target = reads + rng.randint(1, 4)
        process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL)
        exited = asyncio.ensure_future(process.wait())
        reached = asyncio.ensure_future(wait_reads(target))
        await asyncio.wait((exited, reached), return_when=asyncio.FIRST_COMPLETED)
        reached.cancel()
        await asyncio.sleep(rng.uniform(0, 0.05))  # somewhere inside the round that read started
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        await exited
        await produce(30)  # the appliance keeps producing meanwhile
    process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL)
    assert await asyncio.wait_for(process.wait(), 60) == 0

    assert ahead == []
    last = (await outbox.stats()).last_seq
    with ClientStore.open(db) as store:
        assert [e.seq for e in store.iter_events()] == list(range(1, last + 1))
        assert len({e.id for e in store.iter_events()}) == last
        assert [e.body.get("n") for e in store.iter_events() if e.type == "call.record"] == [
            n for n in range(1, last + 1) if n not in voicemails
        ]
    assert (await outbox.stats()).acked_seq == last
    for name, data in voicemails.values():
        assert (blobs / "voicemail" / name).read_bytes() == data
    assert sorted(p.name for p in (blobs / "voicemail").iterdir()) == sorted(
        n for n, _ in voicemails.values()
    )
