"""Building requests and responses (RFC 3261 §8.1.1, §8.2.6).

Responses copy Via, From, To, Call-ID and CSeq from the request (§8.2.6.2); a To tag is added when the
response creates or belongs to a dialog. Identifiers come from :class:`IdFactory`, which draws on the OS
random source so that branches, tags and Call-IDs are unguessable across legs (topology hiding).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from appliance.sip.headers import BRANCH_COOKIE
from appliance.sip.message import Headers, Request, Response

# RFC 3261 §21 reason phrases for the statuses the appliance sends.
REASONS: Final = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 407: "Proxy Authentication Required", 408: "Request Timeout",
    413: "Request Entity Too Large", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
}  # fmt: skip


def reason_phrase(status: int) -> str:
    return REASONS.get(status) or REASONS.get(status // 100 * 100) or "Unknown"


class IdFactory:
    """Source of branches, tags and Call-IDs; inject a seeded one in tests for reproducible traces."""

    __slots__ = ("_pool", "_random")

    # Identifiers are drawn from the OS random source in blocks: one getrandom() call per ~100 identifiers
    # instead of one per identifier, on a path taken several times per call.
    _BLOCK = 1024

    def __init__(self, random_bytes: Callable[[int], bytes] | None = None) -> None:
        self._random: Callable[[int], bytes] = random_bytes if random_bytes is not None else os.urandom
        self._pool = b""

    def token(self, nbytes: int = 8) -> str:
        pool = self._pool
        if len(pool) < nbytes:
            pool = self._random(max(self._BLOCK, nbytes))
        self._pool = pool[nbytes:]
        return pool[:nbytes].hex()

    def branch(self) -> str:
        return BRANCH_COOKIE + self.token(8)

    def tag(self) -> str:
        return self.token(6)

    def call_id(self) -> str:
        return self.token(12)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """A response to ``request`` with the §8.2.6.2 headers copied; ``to_tag`` is added if To has none."""
    src = request.headers
    fields: list[tuple[str, str]] = [("Via", v) for v in src.get_lines("via")]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = src.get(name)
        if value is not None:
            if name == "To" and to_tag is not None and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value.rstrip(' ;')};tag={to_tag}"
            fields.append((name, value))
    if extra:
        fields.extend(extra)
    if content_type is not None:
        fields.append(("Content-Type", content_type))
    fields.append(("Content-Length", str(len(body))))
    return Response(
        status, reason if reason is not None else reason_phrase(status), Headers.from_pairs(fields), body
    )


def make_request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    max_forwards: int = 70,
    contact: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """A request with the §8.1.1 mandatory headers in the customary order."""
    fields: list[tuple[str, str]] = [
        ("Via", via),
        ("Max-Forwards", str(max_forwards)),
        ("From", from_),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    if contact is not None:
        fields.append(("Contact", contact))
    if extra:
        fields.extend(extra)
    if content_type is not None:
        fields.append(("Content-Type", content_type))
    fields.append(("Content-Length", str(len(body))))
    return Request(method, uri, Headers.from_pairs(fields), body)
