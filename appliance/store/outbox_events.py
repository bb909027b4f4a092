"""Outbox events as the store holds them: validation and canonical encoding of a new event, the records
read back (decoded, or raw for the sync feed), the counters, and the default event id."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import cbor2

from appliance.store.errors import LocalProtocolError, StoreError
from appliance.store.hlc import Hlc
from appliance.store.outbox_quota import row_bytes

MAX_BODY_SIZE: Final = 256 * 1024  # events are small; recordings and voicemail travel as blobs
_TYPE_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    seq: int
    id: str
    type: str
    hlc: Hlc
    body: Mapping[str, Any]
    created: float  # wall-clock seconds since the epoch


class RawEvent(NamedTuple):
    """An event as stored, for the sync feed: ``body`` is the canonical CBOR of the body, not decoded.

    A named tuple rather than a frozen dataclass, immutable all the same: the feed builds 10,000 of these
    per read, and a tuple is made straight from the database row at a fraction of the cost.
    """

    seq: int
    id: str
    type: str
    hlc: int  # packed, see Hlc.pack
    created: float
    body: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """The outbox at a glance. ``bytes`` is what unacknowledged events count against ``quota_bytes``
    (``None``: no quota); ``thinned`` and ``refused`` count dropped events per priority name since start."""

    first_seq: int  # the oldest event still held; last_seq + 1 when none is
    last_seq: int  # the last seq issued, 0 if none
    acked_seq: int
    pending: int
    bytes: int
    quota_bytes: int | None
    pressure: str  # "normal" | "thinning" | "full"
    thinned: Mapping[str, int] = field(default_factory=dict)
    refused: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event validated and encoded, not yet written."""

    type: str
    body: bytes
    size: int  # what it counts against the quota


def new_event_id() -> str:
    """The default event id: a UUIDv7 (RFC 9562 §5.7) in hex, 48 bits of Unix milliseconds then 74
    random bits.

    Unique without coordination, like a random UUID, and in time order, so the ``id`` index of a large
    outbox grows at its end and acknowledged events leave from its start: with random ids every insert
    and every prune touches a random index page, and acknowledging 10,000 events of a 1,000,000 backlog
    took ten times longer.
    """
    millis = time.time_ns() // 1_000_000 & (1 << 48) - 1
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits: 12 for rand_a, 62 for rand_b
    value = millis << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62 | rand & (1 << 62) - 1
    return f"{value:032x}"


def encode_event(type: str, body: Mapping[str, Any], max_body_size: int = MAX_BODY_SIZE) -> PendingEvent:
    """Validate and encode now, in the caller's task, so a bad event fails its own caller only."""
    if not isinstance(type, str) or _TYPE_RE.fullmatch(type) is None:
        raise LocalProtocolError(f"event type must be 1-64 letters, digits, '_', '.' or '-': {type!r}")
    if not isinstance(body, Mapping):
        raise LocalProtocolError(f"event body must be a mapping, not {body.__class__.__name__}")
    try:
        # Canonical CBOR (RFC 8949 §4.2.1): the same body is always the same bytes.
        encoded = cbor2.dumps(dict(body), canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise LocalProtocolError(f"event body cannot be encoded as CBOR: {exc}") from exc
    if len(encoded) > max_body_size:
        raise LocalProtocolError(f"event body is {len(encoded)} bytes, over {max_body_size}")
    return PendingEvent(type, encoded, row_bytes(len(encoded)))


def decode_event(row: tuple[Any, ...]) -> OutboxEvent:
    seq, event_id, type_, hlc, body, created = row
    try:
        decoded = cbor2.loads(body)
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise StoreError(f"outbox event {seq} has a corrupt body: {exc}") from exc
    if not isinstance(decoded, dict):
        raise StoreError(f"outbox event {seq} has a body that is not a map")
    return OutboxEvent(int(seq), str(event_id), str(type_), Hlc.unpack(int(hlc)), decoded, float(created))


RAW_COLUMNS: Final = "seq, id, type, hlc, created, body"
"""The columns to select for :meth:`RawEvent._make`, in its field order."""
