"""The SIP package's error tree.

Every error carries the SIP status it turns into, so that the endpoint can answer a peer's bad request with a
precise response instead of letting an exception escape the receive path (STYLE.md rule 8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.sip.message import Message


class SipError(Exception):
    """Base of every error raised by :mod:`appliance.sip`."""


class LocalProtocolError(SipError):
    """Our own caller misused the API (e.g. sent a response on a terminated transaction)."""


class DecodeError(SipError):
    """The peer sent bytes that are not an acceptable SIP message.

    ``status`` is the response the endpoint sends if it can still build one (400, 416, 505, 513);
    ``reason`` is the reason phrase naming the fault; ``partial`` holds whatever message could be parsed
    before the fault, which the endpoint needs to address the error response (Via, From, To, Call-ID, CSeq).
    """

    def __init__(self, reason: str, *, status: int = 400, partial: Message | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = partial

    def __repr__(self) -> str:
        return f"DecodeError({self.status}, {self.reason!r})"


class MessageTooLarge(DecodeError):
    """The message exceeds the configured size cap (RFC 3261 §21.5.11 513 Message Too Large)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"Message Too Large ({size} > {limit} octets)", status=513)
        self.size = size
        self.limit = limit
