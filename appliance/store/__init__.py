"""The appliance's durable state: SQLite in WAL mode, versioned migrations, the outbox for the cloud.

The control process is the only writer (DESIGN.md §2). Open with ``await Database.open(path)``; build an
:class:`Outbox` and a :class:`KeyValueStore` over it.
"""

from appliance.store.database import Database, Transaction
from appliance.store.errors import (
    InvalidHlcError,
    LocalProtocolError,
    MigrationError,
    OutboxAckError,
    OutboxFullError,
    SchemaTooNewError,
    StoreError,
)
from appliance.store.hlc import Hlc, HybridLogicalClock
from appliance.store.kv import KeyValueStore
from appliance.store.migrations import MIGRATIONS, Migration
from appliance.store.outbox import Outbox, OutboxEvent, OutboxStats, RawEvent, new_event_id
from appliance.store.outbox_quota import Pressure, Priority, priority_of

__all__ = [
    "MIGRATIONS",
    "Database",
    "Hlc",
    "HybridLogicalClock",
    "InvalidHlcError",
    "KeyValueStore",
    "LocalProtocolError",
    "Migration",
    "MigrationError",
    "Outbox",
    "OutboxAckError",
    "OutboxEvent",
    "OutboxFullError",
    "OutboxStats",
    "Pressure",
    "Priority",
    "RawEvent",
    "SchemaTooNewError",
    "StoreError",
    "Transaction",
    "new_event_id",
    "priority_of",
]
