"""The control process's call records: each finished call's ``call.record`` into the outbox, with the media
statistics of its streams when its media was relayed.

Wiring only (the record itself is built by :mod:`appliance.calls.cdr`). A call's media is torn down by a
``delete`` command to its worker, sent in the same flush that ended the call; the worker's reply carries
the final counters of every stream. :meth:`CallRecordWriter.take` runs after each flush: it claims the
reply each finished call is waiting for, and the append happens once the reply is in (or after
:data:`STATS_WAIT` seconds without one: a record is never held back for long, nor lost, by a worker).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Final

from appliance.calls.cdr import CallRecord, media_stats
from appliance.media.control_events import Ok
from appliance.store import Outbox

log = logging.getLogger("appliance.calls.cdr")

# How long a record waits for its call's media statistics (a worker answers a delete in milliseconds; one
# that died answers never, and its calls were reported already).
STATS_WAIT: Final = 5.0

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class CallRecordWriter:
    """Appends call records to ``outbox``; ``spawn`` runs a coroutine as a tracked task of the process."""

    def __init__(self, outbox: Outbox, *, spawn: Spawn) -> None:
        self.outbox = outbox
        self.spawn = spawn
        self._deleting: dict[str, asyncio.Future[Ok]] = {}
        self.appended = 0
        self.failed = 0

    def media_deleting(self, call_id: str, reply: asyncio.Future[Ok]) -> None:
        """The delete of ``call_id``'s media was sent; ``reply`` brings its stream statistics."""
        self._deleting[call_id] = reply
        reply.add_done_callback(lambda _: self._forget(call_id, reply))

    def _forget(self, call_id: str, reply: asyncio.Future[Ok]) -> None:
        # A delete no record claimed (a call that never reached call control): nothing waits for it.
        if self._deleting.get(call_id) is reply:
            del self._deleting[call_id]

    def take(self, records: deque[CallRecord]) -> None:
        """After a flush: every record finished in it goes to the outbox."""
        while records:
            record = records.popleft()
            self.spawn(self._append(record, self._deleting.pop(record.call_id, None)))

    async def _append(self, record: CallRecord, reply: asyncio.Future[Ok] | None) -> None:
        body = record.body
        if reply is not None:
            try:
                ok = await asyncio.wait_for(asyncio.shield(reply), STATS_WAIT)
            except Exception:  # refused, timed out or the worker died: the record goes without stats
                log.info("call record without media statistics", extra={"ctx": {"call": record.call_id}})
            else:
                if ok.stats:
                    body = {**body, "media": media_stats(ok.stats)}
        try:
            await self.outbox.append("call.record", body)
        except Exception:
            self.failed += 1
            log.exception("outbox append of a call record failed", extra={"ctx": {"call": record.call_id}})
        else:
            self.appended += 1
