"""Release causes: ITU-T Q.850 cause values and their SIP mapping (RFC 3398 §7.2.4.1 and §8.2.6.1).

Call control carries one :class:`Cause` whatever the leg's protocol, so that a PRI release reaches a SIP
caller as the right status and a SIP failure reaches the PSTN as the right cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# RFC 3398 §7.2.4.1: SIP status → Q.850 cause.
SIP_TO_Q850: Final = {
    400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102, 410: 22, 413: 127,
    414: 127, 415: 79, 416: 127, 420: 127, 421: 127, 423: 127, 480: 18, 481: 41, 482: 25, 483: 25, 484: 28,
    485: 1, 486: 17, 487: 127, 488: 127, 500: 41, 501: 79, 502: 38, 503: 41, 504: 102, 505: 127, 513: 127,
    600: 17, 603: 21, 604: 1, 606: 58,
}  # fmt: skip

# RFC 3398 §8.2.6.1: Q.850 cause → SIP status (anything unlisted maps to 500).
Q850_TO_SIP: Final = {
    1: 404, 2: 404, 3: 404, 16: 480, 17: 486, 18: 408, 19: 480, 20: 480, 21: 403, 22: 410, 23: 410, 26: 404,
    27: 502, 28: 484, 29: 501, 31: 480, 34: 503, 38: 503, 41: 503, 42: 503, 44: 503, 47: 503, 55: 403,
    57: 403,
    58: 503, 65: 488, 69: 501, 70: 488, 79: 501, 87: 403, 88: 503, 102: 504, 111: 500, 127: 500,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Cause:
    """``location``: the Q.850 location (§2.2.3) of a cause a PRI span gave, None for any other cause."""

    q850: int
    sip_status: int
    text: str = ""
    location: int | None = None

    @classmethod
    def from_sip(cls, status: int, text: str = "") -> Cause:
        return cls(SIP_TO_Q850.get(status, 31 if status >= 400 else 16), status, text)

    @classmethod
    def from_q850(cls, q850: int, text: str = "", location: int | None = None) -> Cause:
        return cls(q850, Q850_TO_SIP.get(q850, 500), text, location)

    @property
    def reason_location(self) -> str | None:
        """The RFC 8606 ``location`` parameter of a ``Reason: Q.850`` header for :attr:`location`."""
        return None if self.location is None else RFC8606_LOCATIONS.get(self.location)


# RFC 8606 §3: the Reason header's location parameter for Q.850 §2.2.3 locations.
RFC8606_LOCATIONS: Final = {0: "U", 1: "LPN", 2: "LN", 3: "TN", 4: "RLN", 5: "RPN", 7: "INTL", 10: "BI"}


NORMAL_CLEARING: Final = Cause(16, 200, "Normal call clearing")
# A caller's CANCEL: 487 towards SIP, and normal call clearing towards ISDN (RFC 3398 §7, SIP to ISUP: a
# CANCEL or BYE received releases the ISUP/ISDN side with cause 16).
ORIGINATOR_CANCEL: Final = Cause(16, 487, "Request Terminated")
NO_ROUTE: Final = Cause(3, 404, "No route to destination")
NO_ANSWER: Final = Cause(19, 480, "No answer")
TIMEOUT: Final = Cause(102, 408, "Request Timeout")
UNAVAILABLE: Final = Cause(41, 503, "Service Unavailable")
SESSION_EXPIRED: Final = Cause(102, 408, "Session timer expired")
