"""The sync API's error tree: every error carries its HTTP status and its ``error-code`` of sync.cddl.

A :class:`SyncError` raised anywhere below the HTTP layer becomes the CBOR ``error`` body of sync.cddl with
its status; nothing else reaches the peer (an unexpected exception becomes 500 ``internal`` without detail).
"""

from __future__ import annotations

from typing import Any, ClassVar


class SyncError(Exception):
    """Base of the sync API's errors. ``path`` names the fault in the request body (dotted, "content.x")."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def to_body(self) -> dict[str, Any]:
        """The ``error`` rule of sync.cddl."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.path is not None:
            body["path"] = self.path
        return body


class BadRequest(SyncError):
    """A request the API cannot serve as asked (a bad query parameter, a bad blob id)."""

    status = 400
    code = "bad-request"


class DecodeError(SyncError):
    """The peer sent a body that cannot be used; base of the body errors."""

    status = 400
    code = "bad-request"


class BadCbor(DecodeError):
    """The body is not one well-formed CBOR data item of the accepted subset (RFC 8949 §5.3.1)."""

    code = "bad-cbor"


class SchemaError(DecodeError):
    """The body is CBOR but not of the request's rule in sync.cddl; ``path`` names where."""

    code = "schema"


class TooLarge(SyncError):
    status = 413
    code = "too-large"


class UnsupportedMediaType(SyncError):
    status = 415
    code = "unsupported-media-type"


class NotFound(SyncError):
    status = 404
    code = "not-found"


class MethodNotAllowed(SyncError):
    status = 405
    code = "method-not-allowed"


class BadRange(SyncError):
    """An unsatisfiable Range (RFC 9110 §15.5.17); ``size`` goes into ``Content-Range: bytes */size``."""

    status = 416
    code = "bad-range"

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


class AckBeyondLast(SyncError):
    status = 409
    code = "ack-beyond-last"


class Unavailable(SyncError):
    """The appliance cannot serve now (shutting down, the store is not open)."""

    status = 503
    code = "unavailable"


class Internal(SyncError):
    status = 500
    code = "internal"


def error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and ``error`` body for any exception.

    A :class:`SyncError` speaks for itself. An error of the documents package (it has the ``status`` and
    ``code`` of sync.cddl and ``as_message()``, or ``path`` and ``current_version``) is passed through.
    Anything else is 500 ``internal`` and says nothing of the cause (it is logged, not sent)."""
    status, code = getattr(exc, "status", None), getattr(exc, "code", None)
    as_message = getattr(exc, "as_message", None)
    if isinstance(status, int) and 400 <= status <= 599 and callable(as_message):
        message = as_message()
        if isinstance(message, dict):
            return status, message
    if isinstance(status, int) and 400 <= status <= 599 and isinstance(code, str):
        body: dict[str, Any] = {"error": code, "message": str(getattr(exc, "message", None) or exc)}
        path = getattr(exc, "path", None)
        if isinstance(path, str):
            body["path"] = path
        current = getattr(exc, "current_version", None)
        if isinstance(current, int) and not isinstance(current, bool):
            body["current_version"] = current
        return status, body
    return 500, {"error": "internal", "message": "internal error; the appliance log has the details"}
