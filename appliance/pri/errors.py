"""The PRI package's error tree (STYLE.md rule 8).

A peer's bad frame or message never escapes the receive path as an exception: the LAPD machine answers it
the way Q.921 §5.8.5 prescribes (FRMR/re-establishment or discard) and the Q.931 machine the way Q.931
§5.8 does (ignore, STATUS with a cause, or clear). The decode errors carry what the machine needs for
that: for Q.931, the cause value (Q.850) the answer carries and the diagnostic octets.
"""

from __future__ import annotations


class PriError(Exception):
    """Base of every error raised by :mod:`appliance.pri`."""


class LocalProtocolError(PriError):
    """Our own caller misused the API (e.g. asked to connect a call that is not in a state to connect)."""


class LapdDecodeError(PriError):
    """The octets are not an acceptable LAPD frame (Q.921 §5.8.4: such a frame is discarded, and a frame
    with an undefined or wrong-length control field is reported with FRMR/re-establishment)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Q931DecodeError(PriError):
    """The octets are not a Q.931 message the machine can act on as a whole.

    ``cause`` is the Q.850 cause of the answer Q.931 §5.8 prescribes for the fault, or ``None`` when the
    message is to be ignored silently (too short, wrong protocol discriminator, bad call reference length:
    §5.8.1–§5.8.3.1). ``call_reference`` and ``from_originator`` are set when the header could be read, so
    that the machine can address its STATUS or RELEASE COMPLETE; ``diagnostic`` is the cause's diagnostic
    (the message type for cause 97/98, the IE identifier for 99/100).
    """

    def __init__(
        self,
        reason: str,
        *,
        cause: int | None = None,
        call_reference: int | None = None,
        from_originator: bool | None = None,
        diagnostic: bytes = b"",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause
        self.call_reference = call_reference
        self.from_originator = from_originator
        self.diagnostic = diagnostic

    def __repr__(self) -> str:
        return f"Q931DecodeError({self.cause}, {self.reason!r})"
