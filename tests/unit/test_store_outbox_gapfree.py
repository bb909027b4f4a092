"""The outbox sequence is gap-free: under failing and cancelled appends, and across SIGKILL of the writer."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.store import Database, Outbox, OutboxEvent, StoreError

REPO = Path(__file__).resolve().parents[2]


class FlakyIds:
    """An id factory that sometimes repeats an id already stored, so its whole transaction fails."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._issued: list[str] = []

    def __call__(self) -> str:
        if self._issued and self._rng.random() < 0.1:
            return self._rng.choice(self._issued)
        new = f"{len(self._issued):032x}"
        self._issued.append(new)
        return new


async def check_gap_free(outbox: Outbox) -> list[OutboxEvent]:
    stats = await outbox.stats()
    events = await outbox.read_after(stats.acked_seq, 10_000)
    assert [e.seq for e in events] == list(range(stats.acked_seq + 1, stats.last_seq + 1))
    assert stats.pending == len(events)
    return events


@pytest.mark.parametrize("seed", range(6))
async def test_concurrent_appends_with_failures_and_cancellations_leave_no_gap(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    db = await Database.open(tmp_path / "appliance.db")
    outbox = Outbox(db, new_id=FlakyIds(rng))
    seen: list[int] = []
    stop = asyncio.Event()

    async def reader() -> None:
        # A sync feed reading as fast as it can: every batch continues exactly where the last one ended.
        after = 0
        while not stop.is_set():
            batch = await outbox.read_raw_after(after, 50)
            assert [e.seq for e in batch] == list(range(after + 1, after + 1 + len(batch)))
            seen.extend(e.seq for e in batch)
            after += len(batch)
            if not batch:
                await outbox.wait_for_append(after, 0.05)

    reading = asyncio.create_task(reader())
    tasks: list[asyncio.Task[OutboxEvent]] = []
    for round_ in range(20):
        tasks += [asyncio.create_task(outbox.append("call.record", {"r": round_, "n": n})) for n in range(10)]
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)
        for task in rng.sample(tasks[-10:], rng.randrange(3)):
            task.cancel()
        if rng.random() < 0.3:
            stats = await outbox.stats()
            await outbox.acknowledge(rng.randrange(stats.acked_seq, stats.last_seq + 1))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await outbox.close()
    stop.set()
    await reading
    stored = [r for r in results if isinstance(r, OutboxEvent)]
    failed = [r for r in results if isinstance(r, StoreError)]
    assert failed and stored  # the factory did fail some transactions
    assert len(stored) + len(failed) + sum(isinstance(r, asyncio.CancelledError) for r in results) == 200
    events = await check_gap_free(outbox)
    acked = (await outbox.stats()).acked_seq
    held = {e.seq: e for e in events}
    for event in stored:  # every append told "stored" is there (or was acknowledged)
        assert event.seq <= acked or held[event.seq] == event
    last = (await outbox.stats()).last_seq
    assert seen == list(range(1, last + 1))
    await db.close()


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from appliance.store import Database, Outbox

    async def main() -> None:
        db = await Database.open(Path(sys.argv[1]))
        outbox = Outbox(db)

        async def producer(p: int) -> None:
            n = 0
            while True:
                event = await outbox.append("call.record", {"p": p, "n": n})
                print("S", event.seq, event.id, flush=True)
                n += 1
                if event.seq % 37 == 0:
                    upto = event.seq - 5
                    await outbox.acknowledge(max(upto, 0))
                    print("A", upto, flush=True)

        await asyncio.gather(*(producer(p) for p in range(4)))

    asyncio.run(main())
    """
)


async def test_sigkill_at_random_moments_loses_no_stored_event_and_leaves_no_gap(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    rng = random.Random(5)
    stored: dict[int, str] = {}
    acked = 0
    for _ in range(12):
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, str(path), cwd=REPO, stdout=asyncio.subprocess.PIPE
        )
        assert child.stdout is not None
        for _ in range(rng.randrange(1, 120)):
            line = (await asyncio.wait_for(child.stdout.readline(), 20)).split()
            assert line, "the writer died on its own"
            if line[0] == b"S":
                stored[int(line[1])] = line[2].decode()
            else:
                acked = max(acked, int(line[1]))
        os.kill(child.pid, signal.SIGKILL)
        await child.wait()
        assert child.returncode == -signal.SIGKILL
        db = await Database.open(path)
        try:
            outbox = Outbox(db)
            events = await check_gap_free(outbox)
            stats = await outbox.stats()
            assert stats.acked_seq >= acked
            held = {e.seq: e.id for e in events}
            for seq, event_id in stored.items():
                assert seq <= stats.acked_seq or held[seq] == event_id
        finally:
            await db.close()
    assert len(stored) > 100


@pytest.mark.parametrize("yields", range(12))
async def test_a_writer_cancelled_mid_commit_leaves_counters_that_match_the_database(
    tmp_path: Path, yields: int
) -> None:
    # Shutdown cancels the writer wherever it is, perhaps inside COMMIT: the outcome of that batch is
    # unknown in memory, so the next write re-reads the counters rather than trust them.
    db = await Database.open(tmp_path / "appliance.db")
    outbox = Outbox(db, quota_bytes=10**6)
    await outbox.append("call.record", {})
    tasks = [asyncio.create_task(outbox.append("call.record", {"n": n})) for n in range(20)]
    for _ in range(yields):
        await asyncio.sleep(0)
    writer = outbox._writer
    if writer is not None:
        writer.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await outbox.append("mode.changed", {})
    live = await outbox.stats()
    fresh = await Outbox(db, quota_bytes=10**6).stats()
    assert live == fresh
    await check_gap_free(outbox)
    await db.close()
