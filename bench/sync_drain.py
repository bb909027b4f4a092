"""The drain part of ``make bench-sync``: a backlog of events drained to the reference cloud client over
loopback TLS.

Contract. :func:`build_backlog` appends ``events`` call records to a fresh outbox database through
:meth:`appliance.store.Outbox.append_many`, :data:`BUILD_BATCH` events per transaction (the outbox's own
write path, so the rows are exactly what the appliance stores; one fsync per batch, not per event), and
returns how long it took. The database is then copied once per client, because draining acknowledges
and so prunes it.

:func:`measure_drain` starts the real sync service on a copy in a process of its own
(:mod:`bench.sync_serve`: TLS with the site PKI, client certificates) and drains it with the reference
client (:mod:`appliance.sync.client`), in one of two ways:

* ``puller`` — :class:`~appliance.sync.client.Puller` into a :class:`~appliance.sync.client.ClientStore`
  on disk: read a batch, store it durably (gap and duplicate checks, one fsync per batch), acknowledge;
  what the cloud's own loop does;
* ``events+ack`` — ``events()`` then ``ack()`` per batch, nothing stored: the API's own rate, without the
  client's store.

Both ask for :data:`~appliance.sync.codec` 's largest batch (``limit``, 10,000 by default). The rate is the
events the client received over the wall time from its first request to the acknowledgement of the last
event. The CPU per event of the service and of the client (the bench's process, store thread included)
over the same window, and the CPU other programs used meanwhile, show which side was the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from appliance.store import Database, Outbox
from appliance.sync.client import ClientStore, Puller, SyncClient
from appliance.sync.pki import SitePki, ensure_site_pki
from bench.common import OtherPrograms, rounded
from bench.servers import clock_ticks_per_second, tree_cpu_ticks
from bench.sync_append import EVENT_TYPE, call_record
from bench.sync_serve import LOOPBACK, READY

BUILD_BATCH: Final = 10_000
DRAIN_LIMIT: Final = 10_000  # sync.cddl: limit 1..10000
CLIENTS: Final = ("puller", "events+ack")
START_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True)
class DrainResult:
    """One drain of the whole backlog by one client."""

    client: str
    events: int
    wall_s: float
    server_cpu_s: float | None
    error: str = ""
    client_cpu_s: float | None = None  # the bench process: the client and its store's thread
    # Cores' worth of CPU that neither the service nor the client used meanwhile: other programs.
    background_cores: float | None = None

    @property
    def events_per_s(self) -> float | None:
        return self.events / self.wall_s if self.wall_s > 0 and not self.error else None

    def _per_event_us(self, cpu_s: float | None) -> float | None:
        return rounded(cpu_s * 1e6 / self.events, 2) if cpu_s is not None and self.events else None

    def row(self) -> dict[str, object]:
        return {
            "bench": "sync-drain",
            "client": self.client,
            "events": self.events,
            "seconds": rounded(self.wall_s),
            "events_per_s": rounded(self.events_per_s, 1),
            "server_cpu_us_per_event": self._per_event_us(self.server_cpu_s),
            "client_cpu_us_per_event": self._per_event_us(self.client_cpu_s),
            "background_cores": rounded(self.background_cores, 2),
            "error": self.error or None,
        }

    def line(self) -> str:
        if self.error:
            return f"  {self.client:10} failed: {self.error}"
        rate = self.events_per_s or 0.0
        return (
            f"  {self.client:10} {self.events:,} events in {self.wall_s:.2f} s = {rate:,.0f} events/s; "
            f"CPU per event: service {self._per_event_us(self.server_cpu_s)} us, client "
            f"{self._per_event_us(self.client_cpu_s)} us; other programs {self.background_cores or 0:.2f} "
            "cores"
        )


async def build_backlog(path: Path, events: int, batch: int = BUILD_BATCH) -> float:
    """Append ``events`` call records to a new outbox at ``path``; returns the seconds it took."""
    start = time.perf_counter()
    db = await Database.open(path)
    try:
        outbox = Outbox(db)
        for first in range(0, events, batch):
            last = min(events, first + batch)
            await outbox.append_many((EVENT_TYPE, call_record(n)) for n in range(first, last))
    finally:
        await db.close()  # the last connection: SQLite checkpoints the WAL into the file
    return time.perf_counter() - start


def copy_database(source: Path, dest: Path) -> Path:
    """A copy of a closed database (its file, and its WAL should one be left)."""
    shutil.copyfile(source, dest)
    wal = source.with_name(source.name + "-wal")
    if wal.exists():
        shutil.copyfile(wal, dest.with_name(dest.name + "-wal"))
    return dest


@contextlib.asynccontextmanager
async def sync_service(db: Path, state_dir: Path) -> AsyncIterator[tuple[str, int]]:
    """The service of :mod:`bench.sync_serve` on ``db``: yields its URL and pid; stopped on exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sync_serve", "--db", str(db), "--state-dir", str(state_dir),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)).decode().strip()
        word, _, url = line.partition(" ")
        if word != READY or not url.startswith(f"https://{LOOPBACK}:"):
            raise RuntimeError(f"the sync service did not start (it said {line!r})")
        yield url, proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _pull(client: SyncClient, store_path: Path, limit: int) -> int:
    with ClientStore.open(store_path) as store:
        await Puller(client, store, limit=limit, wait=0).run()
        return store.count()


async def _events_and_ack(client: SyncClient, limit: int) -> int:
    after = received = 0
    while True:
        batch = await client.events(after=after, limit=limit)
        if batch.upto is None:
            return received
        received += len(batch.events)
        after = batch.upto
        await client.ack(after)
        if after >= batch.last_seq:
            return received


async def measure_drain(
    kind: str, db: Path, workdir: Path, *, expected: int, limit: int = DRAIN_LIMIT
) -> DrainResult:
    """Serve ``db`` and drain it with client ``kind`` (one of :data:`CLIENTS`)."""
    state_dir = workdir / "state"
    pki: SitePki = ensure_site_pki(state_dir, [LOOPBACK])
    async with (
        sync_service(db, state_dir) as (url, pid),
        SyncClient(url, ca=pki.ca_certificate, cert=pki.client_certificate, key=pki.client_key) as client,
    ):
        await client.status()  # the TLS handshake and the connection, outside the window
        ticks, others, own = tree_cpu_ticks(pid), OtherPrograms.start(), time.process_time()
        start = time.perf_counter()
        if kind == "puller":
            got = await _pull(client, workdir / f"client-{db.stem}.db", limit)
        else:
            got = await _events_and_ack(client, limit)
        wall = time.perf_counter() - start
        client_cpu = time.process_time() - own
        cpu = (tree_cpu_ticks(pid) - ticks) / clock_ticks_per_second()
        background = others.cores(cpu + client_cpu, wall)
    error = "" if got == expected else f"the client holds {got} events of {expected}"
    return DrainResult(kind, got, wall, cpu, error, client_cpu, background)
