"""What the Q.921 data link entity (:mod:`appliance.pri.lapd`) tells the layers above and management.

The primitives of Q.921 §4.1 become events: DL-ESTABLISH indication/confirm → :class:`LinkEstablished`,
DL-RELEASE indication/confirm → :class:`LinkReleased`, DL-DATA indication → :class:`DataReceived`,
DL-UNIT DATA indication → :class:`UnitDataReceived`, MDL-ERROR indication → :class:`LinkError`.

:class:`LinkEstablished` and :class:`LinkReleased` alternate, except that a re-establishment which lost
acknowledged-mode data (Q.921 §5.7.2: V(S) ≠ V(A) when it completed) is reported as a second
:class:`LinkEstablished` with ``reestablished`` true, without a release in between: layer 3 then treats it
as a data link reset (Q.931 §5.8.8: calls being established or active are kept, calls being cleared are
left alone), not as the data link failure of Q.931 §5.8.9.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class ReleaseReason(enum.Enum):
    """Why multiple frame operation ended."""

    LOCAL = "local"
    """We asked for it (:meth:`~appliance.pri.lapd.Lapd.stop`): DL-RELEASE confirm."""
    PEER = "peer"
    """The peer sent DISC (Q.921 §5.5.3.2) or refused with DM (§5.5.1.2)."""
    FAILURE = "failure"
    """Establishment or re-establishment failed: N200 retransmissions of SABME unanswered (§5.5.1.3)."""
    PHYSICAL = "physical"
    """The physical layer went down (PH-DEACTIVATE indication: the span lost its far end)."""


@dataclass(frozen=True, slots=True)
class LinkEstablished:
    """Multiple frame operation is up (DL-ESTABLISH indication or confirm, Q.921 §5.5.1).
    ``reestablished``: the link had been reported up and was reset with loss of unacknowledged data."""

    reestablished: bool = False


@dataclass(frozen=True, slots=True)
class LinkReleased:
    """Multiple frame operation ended (DL-RELEASE indication or confirm, Q.921 §5.5.3)."""

    reason: ReleaseReason


@dataclass(frozen=True, slots=True)
class DataReceived:
    """One in-sequence I frame's information field (DL-DATA indication, Q.921 §5.6.2)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class UnitDataReceived:
    """A UI frame's information field (DL-UNIT DATA indication, Q.921 §5.2.2)."""

    data: bytes


MDL_ERRORS: Final[dict[str, str]] = {
    # Q.921 Appendix II, Table II.1: management entity error codes.
    "A": "supervisory response with F=1 received unsolicited",
    "B": "DM response with F=1 received unsolicited",
    "C": "UA response with F=1 received unsolicited",
    "D": "UA response with F=0 received unsolicited",
    "E": "DM response with F=0 received: peer initiated re-establishment",
    "F": "SABME received: peer initiated re-establishment",
    "G": "SABME unanswered after N200 retransmissions",
    "H": "DISC unanswered after N200 retransmissions",
    "I": "status enquiry unanswered after N200 retransmissions",
    "J": "N(R) error",
    "K": "FRMR response received",
    "L": "frame with an undefined control field received",
    "M": "frame with an information field not permitted received",
    "N": "frame of wrong size received",
    "O": "information field longer than N201 received",
}


@dataclass(frozen=True, slots=True)
class LinkError:
    """MDL-ERROR indication (Q.921 §5.8, Table II.1): ``code`` A–O, described in :data:`MDL_ERRORS`."""

    code: str
    description: str


LapdEvent = LinkEstablished | LinkReleased | DataReceived | UnitDataReceived | LinkError
