"""The pull loop of the reference cloud client: read events, fetch their blobs, store, acknowledge.

Theory of operation. Exactly once, in order, whatever crashes (DESIGN.md §5.3):

1. ``GET /events?after=<last seq held>`` — the position is the store's, never a counter in memory, so a
   restart of either side resumes where the durable store stands;
2. fetch the blobs the new events name (``ivr.voicemail``: blob id ``voicemail/<file name>``; a
   ``recording``: its ``blob_id``) — the appliance keeps a blob until its event is acknowledged, so they
   are fetched first;
3. store the batch in one durable transaction (gap-free, duplicates skipped: see ``client_store``);
4. ``POST /ack upto=<last seq held>`` — only now may the appliance prune.

A crash between any two steps re-reads the same events: blobs already whole are not fetched again, stored
events are skipped as replays, and a repeated acknowledgement changes nothing. When the appliance goes
away (connection refused or broken) or answers with an error that is transient from the client's side of
the WAN (:func:`retryable`: 5xx from the appliance or a proxy in front of it, 408, 429) the loop backs off
and retries from the store's position; it never skips. Errors that retrying cannot cure (a gap, an id sent
twice, any other 4xx: the client's own bug) end the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from appliance.sync.client_store import ClientStore
from appliance.sync.client_types import ClientError, Event, EventBatch, TransportError

if TYPE_CHECKING:
    from appliance.sync.client import SyncClient

log = logging.getLogger(__name__)

BACKOFF_FIRST: Final = 0.1
BACKOFF_MAX: Final = 2.0  # short: after a WAN cut the backlog should start moving within seconds


@dataclass(frozen=True, slots=True)
class PullReport:
    """What one round of the loop did."""

    received: int  # events in the batch
    stored: int  # of them new to the store
    blobs: int  # blobs downloaded
    missing_blobs: int  # blobs the appliance no longer has (404)
    last_held: int  # the store's last seq after the round
    acked_seq: int  # the appliance's acknowledgement after the round
    last_seq: int  # the appliance's last seq when it answered
    acknowledged: bool = False  # whether this round sent an acknowledgement

    def as_json(self) -> dict[str, int]:
        return {
            "received": self.received,
            "stored": self.stored,
            "blobs": self.blobs,
            "missing_blobs": self.missing_blobs,
            "last_held": self.last_held,
            "acked_seq": self.acked_seq,
            "last_seq": self.last_seq,
            "acknowledged": self.acknowledged,
        }


async def _drop(task: asyncio.Task[Any] | None) -> None:
    """Cancel a read that ran ahead and collect its outcome (it may have failed meanwhile)."""
    if task is not None:
        task.cancel()
        await asyncio.wait((task,))
        if not task.cancelled():
            task.exception()  # retrieved, so that it is not reported as never retrieved


# RFC 9110 §15.6.2 and §15.6.6: the server (or a proxy) does not support the method or the HTTP version.
# Retrying cannot change that, so these end the loop where every other 5xx is retried.
_PERMANENT_5XX: Final = frozenset({501, 505})
# RFC 9110 §15.5.9 (408 Request Timeout) and RFC 6585 §4 (429 Too Many Requests): the request was fine,
# the moment was not.
_TRANSIENT_4XX: Final = frozenset({408, 429})


def retryable(exc: Exception) -> bool:
    """Whether the pull loop backs off and retries after ``exc`` rather than ending: a
    :class:`TransportError` (every request of the sync API is safe to repeat), a 5xx other than 501/505
    (the appliance starting, failing for a moment, or a proxy in front of it timing out or losing its
    upstream), 408 or 429. Any other :class:`ClientError` is a 4xx the client caused and ends the loop."""
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, ClientError):
        return (500 <= exc.status < 600 and exc.status not in _PERMANENT_5XX) or exc.status in _TRANSIENT_4XX
    return False


_BLOB_ID: Final = re.compile(r"[a-z][a-z0-9-]{0,31}/[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")


def blob_ids(event: Event) -> list[str]:
    """The blob ids an event names: an ``ivr.voicemail`` body's ``blob.path`` file (ivr/records.cddl,
    area ``voicemail``), and any body's ``blob_id`` (a ``recording`` event's "recording/<file name>",
    calls/records.cddl). Anything not of the form ``<area>/<file name>`` is ignored, so that a body
    cannot make the client write outside its blobs directory."""
    ids: list[str] = []
    body = event.body
    if event.type == "ivr.voicemail":
        blob = body.get("blob")
        if isinstance(blob, Mapping) and isinstance(blob.get("path"), str):
            ids.append("voicemail/" + os.path.basename(blob["path"]))
    named = body.get("blob_id")
    if isinstance(named, str):
        ids.append(named)
    return [i for i in ids if _BLOB_ID.fullmatch(i) is not None]


class Puller:
    """Pulls one appliance's events into a :class:`ClientStore` (blobs into ``blobs_dir``) and
    acknowledges them. ``sleep`` is injected so that tests drive the back-off by hand."""

    def __init__(
        self,
        client: SyncClient,
        store: ClientStore,
        blobs_dir: str | os.PathLike[str] | None = None,
        *,
        limit: int = 1000,
        wait: float = 20.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.store = store
        self.blobs_dir = Path(blobs_dir) if blobs_dir is not None else None
        self.limit = limit
        self.wait = wait
        self._sleep = sleep
        self.retries = 0  # transport failures survived, for reports
        self.stored = 0  # events stored, counted as soon as they are (before their acknowledgement)

    async def pull_once(self, *, wait: float | None = None) -> PullReport:
        """One round: read after the store's last seq, fetch blobs, store, acknowledge.

        Raises TransportError (retry), ClientError, or the store's errors."""
        return await self._settle(await self._read(self.store.last_seq, wait))

    async def _read(self, after: int, wait: float | None) -> EventBatch:
        return await self.client.events(
            after=after, limit=self.limit, wait=self.wait if wait is None else wait
        )

    async def _settle(self, batch: EventBatch) -> PullReport:
        """Blobs, store, acknowledge: the part of a round after the read."""
        fresh = [e for e in batch.events if e.seq > self.store.last_seq]
        fetched, missing = await self._fetch_blobs(fresh)
        stored = await asyncio.to_thread(self.store.store, batch)
        self.stored += stored
        acked = batch.acked_seq
        held = self.store.last_seq
        acknowledged = held > acked
        if acknowledged:
            # Also acknowledges what a previous round stored but could not acknowledge (a crash or a
            # broken connection between the two): the position is the store's.
            answer = await self.client.ack(held)
            acked = int(answer.get("acked_seq", held))
        return PullReport(
            len(batch.events), stored, fetched, missing, held, acked, batch.last_seq, acknowledged
        )

    async def run(
        self,
        *,
        follow: bool = False,
        on_round: Callable[[PullReport], None] | None = None,
    ) -> int:
        """Pull until the store holds the appliance's last seq (``follow``: forever); returns how many
        events were stored. Transport failures and the errors :func:`retryable` accepts back off (0.1 s
        doubling to 2 s) and retry from the store's position; any other error is raised.

        While a full batch is being stored the next one is already read (a backlog drains at the rate of
        the slower of the two, not of their sum); only the read runs ahead, never the acknowledgement."""
        start = self.stored
        shown = (-1, -1)  # (last held, acked) of the last round shown to on_round
        delay = BACKOFF_FIRST
        # The first round does not long-poll: it settles an acknowledgement left over by a crash.
        wait: float | None = 0
        ahead: asyncio.Task[EventBatch] | None = None
        try:
            while True:
                try:
                    if ahead is not None:
                        batch, ahead = await ahead, None
                    else:
                        batch = await self._read(self.store.last_seq, wait)
                    if len(batch.events) >= self.limit:
                        ahead = asyncio.create_task(self._read(batch.events[-1].seq, 0))
                    report = await self._settle(batch)
                except (TransportError, ClientError) as exc:
                    if not retryable(exc):
                        raise
                    await _drop(ahead)
                    ahead = None
                    await self._back_off(delay, exc)
                    delay = min(delay * 2, BACKOFF_MAX)
                    continue
                wait = None if follow else 0
                delay = BACKOFF_FIRST
                # Rounds that changed nothing are not shown; one whose only news is the position (an
                # acknowledgement settled after a lost answer) is.
                if on_round is not None and (
                    report.received or (report.last_held, report.acked_seq) != shown
                ):
                    shown = (report.last_held, report.acked_seq)
                    on_round(report)
                if not follow and report.last_held >= report.last_seq:
                    return self.stored - start
        finally:
            await _drop(ahead)

    async def _back_off(self, delay: float, exc: Exception) -> None:
        self.retries += 1
        fields: dict[str, object] = {"retry": self.retries, "delay": delay, "after_seq": self.store.last_seq}
        level = logging.INFO  # the appliance away or starting (a WAN cut, a restart): expected
        if isinstance(exc, ClientError):
            # The status and the sync.cddl error code ("http-<status>" when a proxy's body is not CBOR).
            fields |= {"status": exc.status, "code": exc.code}
            if exc.status != 503:
                level = logging.WARNING  # it failed while up, or a proxy did: worth a look if it lasts
        log.log(
            level, "sync pull: %s; retrying in %.1f s from seq %d", exc, delay, self.store.last_seq,
            extra={"ctx": fields},
        )  # fmt: skip
        await self._sleep(delay)

    async def _fetch_blobs(self, events: Sequence[Event]) -> tuple[int, int]:
        if self.blobs_dir is None:
            return 0, 0
        fetched = missing = 0
        for event in events:
            for blob_id in blob_ids(event):
                dest = self.blobs_dir / blob_id
                if dest.exists():  # renamed into place only whole and verified: fetched before a crash
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    await self.client.blob(blob_id, dest)
                except ClientError as exc:
                    if exc.status != 404:
                        raise
                    # The appliance no longer has it (removed on the box): retrying cannot help.
                    log.warning("sync pull: blob %s of event seq %d is gone: %s", blob_id, event.seq, exc)
                    missing += 1
                    continue
                fetched += 1
        return fetched, missing
