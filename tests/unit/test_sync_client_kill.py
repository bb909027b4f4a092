"""The pull command killed (SIGKILL) at random moments while it pulls, fetches blobs and acknowledges,
five times, events still being appended: at the end the store holds every event exactly once, in order,
every voicemail blob whole, and no acknowledgement ever ran ahead of what the store held on disk."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

from appliance.sync.client import ClientStore
from tests.unit.test_sync_client import ROOT, Site, fill, site  # noqa: F401  (site is a fixture)

KILLS = 5


async def test_pull_survives_sigkill(site: Site, tmp_path: Path) -> None:  # noqa: F811
    server = site.server
    rng = random.Random(5)
    db, blobs = tmp_path / "events.db", tmp_path / "blobs"
    ahead: list[str] = []

    def check_ack(upto: int) -> None:
        # Store (and blobs) before the acknowledgement: what is acknowledged is on disk already.
        if not db.exists():
            ahead.append(f"ack {upto} before the store exists")
            return
        conn = sqlite3.connect(db)
        try:
            held = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
        finally:
            conn.close()
        if held < upto:
            ahead.append(f"ack {upto} with only {held} stored")
        for event in server.events:
            if event.seq <= upto and event.type == "ivr.voicemail":
                name = f"{event.seq:08d}.vm"
                if not (blobs / "voicemail" / name).exists():
                    ahead.append(f"ack {upto} before blob {name}")

    server.on_ack = check_ack
    await fill(server, 400, voicemail_every=25)
    ids = {e.seq: e.id for e in server.events}
    contents = dict(server.blobs)
    command = [sys.executable, "-m", "appliance.sync.client", *site.argv(), "pull", "--store", str(db),
               "--blobs", str(blobs), "--limit", "40"]  # fmt: skip
    killed = 0
    while killed < KILLS:
        served = server.events_served
        # Slow blobs in some rounds, so that kills land inside downloads as well as around store and ack.
        server.blob_chunk_delay = rng.choice((0.0, 0.002))
        process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL)
        target = served + rng.randint(1, 4)
        exited = asyncio.ensure_future(process.wait())
        reached = asyncio.ensure_future(server.wait_served(target))
        await asyncio.wait((exited, reached), return_when=asyncio.FIRST_COMPLETED)
        reached.cancel()
        await asyncio.sleep(rng.uniform(0, 0.05))
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        await exited
        for _ in range(30):  # the appliance keeps producing meanwhile
            raw = await server.append("call.record", {"call_id": os.urandom(4).hex()})
            ids[raw.seq] = raw.id
    process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL)
    assert await asyncio.wait_for(process.wait(), 60) == 0

    assert ahead == []
    with ClientStore.open(db) as store:
        held = list(store.iter_events())
    assert [e.seq for e in held] == list(range(1, server.last + 1))
    assert [e.id for e in held] == [ids[seq] for seq in range(1, server.last + 1)]
    assert server.acked == server.last
    for name, data in contents.items():
        assert (blobs / name).read_bytes() == data
    leftovers = [p.name for p in (blobs / "voicemail").iterdir() if p.suffix in (".part", ".etag")]
    assert leftovers == []
