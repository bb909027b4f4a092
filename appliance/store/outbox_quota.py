"""Priorities of outbox events and the disk quota that protects the appliance from a long WAN outage.

Theory of operation. While the cloud is unreachable the outbox grows. Its disk use is bounded by a quota
(``[sync] outbox_quota_mb``) counted over the events not yet acknowledged: each row costs the length of
its stored body plus :data:`ROW_OVERHEAD_BYTES`, a fixed estimate of the rest of the row (seq, id, type,
HLC and creation time, the record header, and the entry in the ``id`` index). The estimate keeps the
count cheap -- a running total, not a look at the file -- and close enough to bound the file size.

Every event type has a :class:`Priority` (:func:`priority_of`):

* ``CRITICAL`` -- ``call.*`` and ``ivr.*``: call records, voicemails, callback requests, surveys, IVR
  sessions. What a caller was promised. Never refused, never thinned, whatever the quota says.
* ``NORMAL`` -- everything else (mode changes, alarms, configuration audit, ``appliance.*``). Kept past
  the quota up to a hard ceiling of :data:`NORMAL_CEILING` times the quota; above it the append raises
  :class:`~appliance.store.errors.OutboxFullError`.
* ``BULK`` -- ``metrics.*``. Sampled under pressure, refused when full.

The pressure level (:class:`Pressure`) follows the bytes held, with hysteresis so that an outbox hovering
at a threshold does not raise an alarm per event:

* ``normal`` -> ``thinning`` at :data:`THINNING_FROM` (80 %) of the quota; back to ``normal`` only below
  :data:`NORMAL_BELOW` (70 %).
* -> ``full`` at :data:`FULL_FROM` (100 %); back to ``thinning`` only below :data:`FULL_UNTIL_BELOW` (90 %).

While thinning, BULK events are sampled deterministically: of the events of each type offered, the 1st,
the (N+1)th, the (2N+1)th, … are kept (N = :data:`SAMPLE_EVERY`, 10), the others are dropped and counted.
The count per type runs from the start of the process. A dropped event is not written at all: the cloud
sees fewer samples of that metric, each as it was taken.
No quota (``None``) means no limit: the level stays ``normal``.

Sans-I/O: this module keeps counts and decides; the outbox does the writing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final


class Priority(enum.Enum):
    CRITICAL = "critical"
    NORMAL = "normal"
    BULK = "bulk"


# The whole classification: the first matching prefix wins, anything else is NORMAL.
PRIORITY_PREFIXES: Final[tuple[tuple[str, Priority], ...]] = (
    ("call.", Priority.CRITICAL),
    ("ivr.", Priority.CRITICAL),
    ("metrics.", Priority.BULK),
)


def priority_of(event_type: str) -> Priority:
    """The priority of an event type (see the module doc)."""
    for prefix, priority in PRIORITY_PREFIXES:
        if event_type.startswith(prefix):
            return priority
    return Priority.NORMAL


class Pressure(enum.StrEnum):
    NORMAL = "normal"
    THINNING = "thinning"
    FULL = "full"


ROW_OVERHEAD_BYTES: Final = 160
"""Estimated bytes of a row besides its body: the table cell (seq, a 32-character id, type, HLC, creation
time, record header) and the ``id`` index cell, with some slack for page fill."""

THINNING_FROM: Final = 0.80
NORMAL_BELOW: Final = 0.70
FULL_FROM: Final = 1.00
FULL_UNTIL_BELOW: Final = 0.90
NORMAL_CEILING: Final = 1.10
SAMPLE_EVERY: Final = 10

PRESSURE_EVENT: Final = "outbox.pressure"
"""The NORMAL event appended at each change of level: ``{level, bytes, quota_bytes, pending}``."""


def row_bytes(body_size: int) -> int:
    """What one row counts against the quota."""
    return body_size + ROW_OVERHEAD_BYTES


def next_pressure(current: Pressure, held: int, quota: int | None) -> Pressure:
    """The level once ``held`` bytes are held, coming from ``current`` (with the hysteresis above)."""
    if quota is None:
        return Pressure.NORMAL
    if held >= quota * FULL_FROM:
        return Pressure.FULL
    if current is Pressure.FULL and held >= quota * FULL_UNTIL_BELOW:
        return Pressure.FULL
    if held >= quota * THINNING_FROM:
        return Pressure.THINNING
    if current is not Pressure.NORMAL and held >= quota * NORMAL_BELOW:
        return Pressure.THINNING
    return Pressure.NORMAL


class Admission(enum.Enum):
    KEEP = "keep"
    THIN = "thin"  # a BULK event left out by sampling
    REFUSE = "refuse"  # a BULK event when full, a NORMAL one above the ceiling


class Admitter:
    """Decides whether an offered event is written, and counts those that are not.

    ``admit`` is given the level now and the bytes held *including* events accepted but not yet written,
    so a burst cannot overshoot between two commits: the level it applies is the one the outbox would
    reach once this event is written.
    """

    __slots__ = ("_offered", "_refused", "_sample_every", "_thinned")

    def __init__(self, *, sample_every: int = SAMPLE_EVERY) -> None:
        if sample_every < 1:
            raise ValueError("sample_every must be at least 1")
        self._sample_every = sample_every
        self._offered: dict[str, int] = {}  # BULK events offered under pressure, per type
        self._thinned = dict.fromkeys(Priority, 0)
        self._refused = dict.fromkeys(Priority, 0)

    def admit(
        self, event_type: str, size: int, *, level: Pressure, held: int, quota: int | None
    ) -> Admission:
        """Whether an event of ``event_type`` counting ``size`` bytes may be written."""
        priority = priority_of(event_type)
        if priority is Priority.CRITICAL or quota is None:
            return Admission.KEEP
        if priority is Priority.NORMAL:
            if held + size > quota * NORMAL_CEILING:
                self._refused[priority] += 1
                return Admission.REFUSE
            return Admission.KEEP
        projected = next_pressure(level, held + size, quota)
        if projected is Pressure.FULL:
            self._refused[priority] += 1
            return Admission.REFUSE
        if projected is Pressure.THINNING:
            offered = self._offered.get(event_type, 0)
            self._offered[event_type] = offered + 1
            if offered % self._sample_every:
                self._thinned[priority] += 1
                return Admission.THIN
        return Admission.KEEP

    @property
    def thinned(self) -> Mapping[str, int]:
        """Events left out by sampling, per priority name."""
        return {p.value: n for p, n in self._thinned.items()}

    @property
    def refused(self) -> Mapping[str, int]:
        """Events refused for want of space, per priority name."""
        return {p.value: n for p, n in self._refused.items()}
