"""The SDP package's error tree.

Every error a peer can cause carries the SIP status it turns into (STYLE.md rule 8): the call control answers
an INVITE whose body fails here with that status and the reason as the reason phrase, or a warning text, so
a bad offer becomes a precise SIP response and never an exception escaping the receive path.
"""

from __future__ import annotations


class SdpError(Exception):
    """Base of every error raised by :mod:`appliance.sdp`.

    ``reason`` names the fault; ``status`` is the SIP status to answer with.
    """

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.reason!r})"


class LocalProtocolError(SdpError):
    """Our own caller misused the API, e.g. asked to serialize a value holding a line break.

    ``status`` is 500: the fault is ours, not the peer's.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=500)


class SdpDecodeError(SdpError):
    """The peer sent a body that is not an acceptable session description.

    ``status`` is 400 (Bad Request) for malformed text and 488 (Not Acceptable Here) for a description that is
    well formed but beyond the appliance's caps (media sections, attributes, size). ``line`` is the 1-based
    line the fault was found on, when there is one.
    """

    def __init__(self, reason: str, *, status: int = 400, line: int | None = None) -> None:
        super().__init__(reason, status=status)
        self.line = line


class SdpNegotiationError(SdpError):
    """A well-formed offer or answer the appliance cannot accept (RFC 3264): no audio stream, no common codec.

    Always answered with 488 Not Acceptable Here (RFC 3261 §21.4.26).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=488)
