"""The store package's error tree.

Each error carries ``status``, the HTTP status the sync API answers with when the error reaches it
(DESIGN.md §5.3): a cloud acknowledging events that do not exist is the cloud's fault (409), anything else
is the appliance's (500).
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by :mod:`appliance.store`."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LocalProtocolError(StoreError):
    """Our own caller misused the API (a body that cannot be encoded, a closed database, a bad argument)."""


class SchemaTooNewError(StoreError):
    """The database was written by newer firmware than this one (e.g. after an A/B rollback)."""


class MigrationError(StoreError):
    """A schema migration failed; the database is left at the last version that applied completely."""


class OutboxAckError(StoreError):
    """The cloud acknowledged a sequence number the outbox never issued."""

    status = 409


class OutboxFullError(StoreError):
    """The outbox is past its hard ceiling: an event that may be refused was refused (see outbox_quota)."""

    status = 507


class InvalidHlcError(StoreError, ValueError):
    """A hybrid logical clock value out of range (negative, or a counter that does not fit)."""

    status = 400
