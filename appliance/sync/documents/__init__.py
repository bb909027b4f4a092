"""Configuration documents pushed by the cloud (sync API ``/sync/v1/config``): stored, validated by the
module that owns each kind, applied whole or not at all, optionally confirmed within a deadline."""

from appliance.sync.documents.errors import (
    ApplyFailed,
    ConfirmPending,
    DocumentError,
    InvalidDocument,
    NothingToConfirm,
    StaleVersion,
    UnknownKind,
)
from appliance.sync.documents.model import (
    KINDS,
    ConfigResult,
    Document,
    DocumentInfo,
    DocumentOwner,
    Kind,
    utc_time,
)
from appliance.sync.documents.owners import default_owners
from appliance.sync.documents.store import Append, DocumentStore

__all__ = [
    "KINDS",
    "Append",
    "ApplyFailed",
    "ConfigResult",
    "ConfirmPending",
    "Document",
    "DocumentError",
    "DocumentInfo",
    "DocumentOwner",
    "DocumentStore",
    "InvalidDocument",
    "Kind",
    "NothingToConfirm",
    "StaleVersion",
    "UnknownKind",
    "default_owners",
    "utc_time",
]
