"""The outbox's counters as one snapshot, and the single query that reads them at open.

The outbox keeps these in memory and replaces them after each commit (see :mod:`appliance.store.outbox`);
this query is what it reads at first use, and again after a write whose outcome it could not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from appliance.store.errors import StoreError
from appliance.store.hlc import Hlc
from appliance.store.outbox_quota import Pressure, row_bytes

# The newest HLC stored: the newest row's (seq order is HLC order), or, once that row is pruned, what the
# prune saved in outbox_state; appends do not write outbox_state, which keeps them to one statement.
NEWEST_HLC_SQL: Final = (
    "MAX((SELECT last_hlc FROM outbox_state WHERE singleton = 1),"
    " COALESCE((SELECT hlc FROM outbox ORDER BY seq DESC LIMIT 1), 0))"
)
SAVE_NEWEST_HLC_SQL: Final = f"UPDATE outbox_state SET last_hlc = {NEWEST_HLC_SQL} WHERE singleton = 1"
"""Run before a prune, which may delete the newest row."""

# One query, one pass over the unacknowledged rows (SUM and COUNT over a range of the primary key).
COUNTERS_SQL: Final = f"""SELECT s.acked_seq, {NEWEST_HLC_SQL}, s.pressure,
    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),
    (SELECT MIN(seq) FROM outbox),
    (SELECT COALESCE(SUM(length(body)), 0) FROM outbox WHERE seq > s.acked_seq),
    (SELECT COUNT(*) FROM outbox WHERE seq > s.acked_seq)
    FROM outbox_state AS s WHERE s.singleton = 1"""


@dataclass(frozen=True, slots=True)
class Counters:
    first_seq: int  # the oldest seq still held; last_seq + 1 when none is
    last_seq: int  # the last seq issued (sqlite_sequence), 0 if none
    acked_seq: int
    bytes: int  # what the rows above acked_seq count against the quota
    pressure: Pressure  # the level last announced


def counters_from_row(row: tuple[Any, ...] | None) -> tuple[Counters, Hlc]:
    """The counters and the newest HLC stored, from the row of :data:`COUNTERS_SQL`."""
    if row is None:
        raise StoreError("outbox_state is missing its row")
    acked, newest, pressure, last, first, body_bytes, count = row
    counters = Counters(
        first_seq=int(first) if first is not None else int(last) + 1,
        last_seq=int(last),
        acked_seq=int(acked),
        bytes=int(body_bytes) + row_bytes(0) * int(count),
        pressure=Pressure(pressure),
    )
    return counters, Hlc.unpack(int(newest))
