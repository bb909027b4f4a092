"""The asyncio edge of the confirmation deadlines: reverts unconfirmed writes on time (STYLE rule 4)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from appliance.store.errors import StoreError
from appliance.sync.documents.store import DocumentStore

log = logging.getLogger("appliance.sync.documents")

POLL: Final = 1.0
"""Seconds between looks at the store's timer: a write made meanwhile may arm an earlier deadline, so a
revert is at most this late (confirmations are given in whole seconds)."""


async def run_deadlines(store: DocumentStore, *, clock: Callable[[], float], poll: float = POLL) -> None:
    """Call ``store.handle_timer`` whenever a deadline is due, until cancelled; ``clock`` is the
    monotonic clock the store's ``now`` values come from (``loop.time``). A database error is logged and
    the revert tried again at the next look."""
    while True:
        deadline = store.get_timer()
        now = clock()
        if deadline is not None and deadline <= now:
            try:
                await store.handle_timer(now)
            except StoreError:
                log.exception("confirmation deadline: the revert failed, trying again")
                await asyncio.sleep(poll)
            continue
        await asyncio.sleep(poll if deadline is None else min(poll, deadline - now))
