"""The configuration documents' error tree (STYLE rule 8): each error carries the sync API's answer.

``status`` is the HTTP status and ``code`` the ``error-code`` of ``appliance/sync/sync.cddl``;
:meth:`DocumentError.as_message` is the ``error`` map the server sends. A write that raises any of these
changed nothing: neither the stored document nor the running configuration.
"""

from __future__ import annotations

from typing import Any


class DocumentError(Exception):
    """Base of every error the document store raises on purpose."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path

    def as_message(self) -> dict[str, Any]:
        """The sync API's ``error`` map for this error."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.path:
            body["path"] = self.path
        return body


class UnknownKind(DocumentError):
    """The URL names a document kind this firmware does not have (404)."""

    status = 404
    code = "not-found"


class InvalidDocument(DocumentError):
    """The owner module refused the document (422). ``path`` is dotted from the request body's root
    (``content.nodes.menu``, ``content.routes[0].destinations[1]``); None when the fault is the name in
    the URL rather than anything in the body."""

    status = 422
    code = "invalid-document"


class StaleVersion(DocumentError):
    """``replaces`` is not the running version (412); ``current_version`` says which is (0: none)."""

    status = 412
    code = "stale-version"

    def __init__(self, current_version: int, replaces: int) -> None:
        super().__init__(
            f"the write replaces version {replaces} but version {current_version} is running",
            path="replaces",
        )
        self.current_version = current_version

    def as_message(self) -> dict[str, Any]:
        return {**super().as_message(), "current_version": self.current_version}


class ConfirmPending(DocumentError):
    """An earlier write of the document waits for its confirmation (409); confirm it or let it revert."""

    status = 409
    code = "confirm-pending"


class NothingToConfirm(DocumentError):
    """The version named is not waiting for a confirmation (409): never written so, confirmed already, or
    reverted."""

    status = 409
    code = "nothing-to-confirm"


class ApplyFailed(DocumentError):
    """The document was valid but its owner could not put it in force (a file write failed: disk full);
    the previous document and configuration were restored (500, ``internal``)."""

    status = 500
    code = "internal"
