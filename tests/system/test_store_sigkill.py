"""An acknowledged outbox append survives the death of the process at any point.

A real child process appends events from several concurrent tasks (so transactions are group-committed)
and prints each event once ``append`` has returned. The test SIGKILLs it after a random number of reported
events, several times over the same database, and checks that every reported event is present with its
body intact, that sequence numbers have neither gaps nor duplicates, and that a seq is not reused after
acknowledged events were pruned.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest

from appliance.store import Database, Outbox, OutboxEvent

pytestmark = pytest.mark.system

WRITER = Path(__file__).parent / "helpers" / "outbox_writer.py"
RUNS = 6
CONCURRENCY = 8


def run_and_kill(db_path: Path, kill_after: int) -> list[tuple[int, str, str]]:
    """Start a writer, SIGKILL it after ``kill_after`` reported events; return every event it reported."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(db_path), str(CONCURRENCY)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        while len(lines) < kill_after:
            line = proc.stdout.readline()
            assert line, f"writer exited early: {proc.stderr.read()}"
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)
        lines.extend(proc.stdout.readlines())  # reported between our last read and the kill
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    reported = []
    for line in lines:
        if line.endswith("\n"):  # a line cut by the kill was never a complete report
            seq, event_id, digest = line.split()
            reported.append((int(seq), event_id, digest))
    return reported


async def stored_events(db_path: Path) -> dict[int, OutboxEvent]:
    db = await Database.open(db_path)
    try:
        outbox = Outbox(db)
        events: dict[int, OutboxEvent] = {}
        after = 0
        while batch := await outbox.read_after(after, 1000):
            events.update((e.seq, e) for e in batch)
            after = batch[-1].seq
        assert after == await outbox.last_seq()
        return events
    finally:
        await db.close()


def check_reported(reported: list[tuple[int, str, str]], events: dict[int, OutboxEvent]) -> None:
    seqs = [seq for seq, _, _ in reported]
    assert len(seqs) == len(set(seqs)), "a seq was reported twice"
    for seq, event_id, digest in reported:
        assert seq in events, f"acknowledged event {seq} was lost"
        event = events[seq]
        assert event.id == event_id
        assert hashlib.sha256(cbor2.dumps(dict(event.body), canonical=True)).hexdigest() == digest
        assert hashlib.sha256(event.body["payload"]).hexdigest() == event.body["sha256"]


def check_contiguous(events: dict[int, OutboxEvent], first: int) -> None:
    seqs = sorted(events)
    assert seqs == list(range(first, first + len(seqs))), "gap in the stored seqs"
    assert len({e.id for e in events.values()}) == len(events), "duplicate event id"
    hlcs = [events[s].hlc for s in seqs]
    assert hlcs == sorted(hlcs) and len(set(hlcs)) == len(hlcs), "HLC order disagrees with seq order"


async def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    db_path = tmp_path / "var" / "appliance.db"
    all_reported: list[tuple[int, str, str]] = []
    first = 1
    for run in range(RUNS):
        reported = run_and_kill(db_path, kill_after=rng.randint(1, 60))
        assert reported, f"seed {seed}, run {run}: nothing reported"
        events = await stored_events(db_path)
        all_reported.extend(reported)
        check_reported([r for r in all_reported if r[0] >= first], events)
        check_contiguous(events, first)
        if run == RUNS // 2:
            # The cloud acknowledges everything so far and it is pruned: later runs must continue the
            # numbering, never reuse a pruned seq, even across a crash.
            db = await Database.open(db_path)
            outbox = Outbox(db)
            last = await outbox.last_seq()
            assert await outbox.acknowledge(last) == last - first + 1  # pruned as acknowledged
            assert await outbox.prune() == 0
            await db.close()
            first = last + 1
    assert len(all_reported) == len({seq for seq, _, _ in all_reported}), f"seed {seed}: seq reused"
