"""A child process for the SIGKILL test: appends outbox events forever and reports each durable one.

Usage: ``python outbox_writer.py DB_PATH CONCURRENCY``. Each line on stdout is ``<seq> <id> <sha256 of the
canonical CBOR body>``, printed only after ``Outbox.append`` returned, i.e. after the event was committed.
The parent kills this process with SIGKILL at arbitrary points and checks that every reported event
survived intact.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

import cbor2

from appliance.store import Database, Outbox


async def writer(outbox: Outbox, task: int) -> None:
    n = 0
    while True:
        n += 1
        payload = os.urandom(1 + (n * 37 + task * 101) % 3000)
        body = {"task": task, "n": n, "payload": payload, "sha256": hashlib.sha256(payload).hexdigest()}
        event = await outbox.append("test.sigkill", body)
        digest = hashlib.sha256(cbor2.dumps(body, canonical=True)).hexdigest()
        sys.stdout.write(f"{event.seq} {event.id} {digest}\n")
        sys.stdout.flush()


async def main(path: Path, concurrency: int) -> None:
    db = await Database.open(path)
    outbox = Outbox(db)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*(writer(outbox, t) for t in range(concurrency)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
