"""The control process's call records into the outbox, with the media statistics of the call's delete."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine, Mapping
from typing import Any

from appliance.app_records import CallRecordWriter
from appliance.calls.cdr import CallRecord
from appliance.media.control_events import Direction, Ok, StreamStats
from appliance.media.supervisor import MediaWorkerError


class FakeOutbox:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[tuple[str, Mapping[str, Any]]] = []
        self.fail = fail

    async def append(self, type: str, body: Mapping[str, Any]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.events.append((type, body))


async def writer_with(outbox: FakeOutbox) -> tuple[CallRecordWriter, list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        tasks.append(asyncio.get_running_loop().create_task(coro))

    return CallRecordWriter(outbox, spawn=spawn), tasks  # type: ignore[arg-type]


STATS = (
    StreamStats("a", Direction.IN, 100, 16000, 2, 3.5),
    StreamStats("b", Direction.OUT, 98, 15680, 0, 0.0),
)


async def test_a_record_waits_for_its_calls_media_statistics() -> None:
    outbox = FakeOutbox()
    writer, tasks = await writer_with(outbox)
    reply: asyncio.Future[Ok] = asyncio.get_running_loop().create_future()
    writer.media_deleting("c1", reply)
    writer.take(deque([CallRecord("c1", {"call_id": "c1"}), CallRecord("c2", {"call_id": "c2"})]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [body["call_id"] for _, body in outbox.events] == ["c2"]  # c2 had no relayed media
    reply.set_result(Ok(1, stats=STATS))
    await asyncio.gather(*tasks)
    (_, body) = outbox.events[1]
    assert outbox.events[1][0] == "call.record"
    assert body["media"][0] == {"leg": "a", "direction": "in", "packets": 100, "octets": 16000, "lost": 2,
                                "jitter_ms": 3.5}  # fmt: skip
    assert writer.appended == 2


async def test_a_failed_delete_still_gives_the_record() -> None:
    outbox = FakeOutbox()
    writer, tasks = await writer_with(outbox)
    reply: asyncio.Future[Ok] = asyncio.get_running_loop().create_future()
    writer.media_deleting("c1", reply)
    writer.take(deque([CallRecord("c1", {"call_id": "c1"})]))
    reply.set_exception(MediaWorkerError(1, "worker 0 died"))
    await asyncio.gather(*tasks)
    assert outbox.events == [("call.record", {"call_id": "c1"})]


async def test_an_unclaimed_delete_is_forgotten_and_a_failed_append_counted() -> None:
    outbox = FakeOutbox(fail=True)
    writer, tasks = await writer_with(outbox)
    reply: asyncio.Future[Ok] = asyncio.get_running_loop().create_future()
    writer.media_deleting("c9", reply)
    reply.set_result(Ok(1))
    await asyncio.sleep(0)
    assert not writer._deleting
    writer.take(deque([CallRecord("c1", {"call_id": "c1"})]))
    await asyncio.gather(*tasks)
    assert (writer.appended, writer.failed) == (0, 1)
