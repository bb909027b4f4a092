"""What every call leg needs from the appliance: the SIP endpoint, our addresses, identifiers, policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from appliance.sip.builder import IdFactory
from appliance.sip.endpoint import SipEndpoint
from appliance.sip.uri import format_host

ALLOW: Final = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REGISTER"
SUPPORTED: Final = "timer"


@dataclass(slots=True)
class SipContext:
    endpoint: SipEndpoint
    ids: IdFactory
    # transport name → (host, port) the appliance is reachable at: used in Via, Contact and Record-Route.
    local: dict[str, tuple[str, int]] = field(default_factory=dict)
    domain: str = "localhost"
    user_agent: str = "PoP-Appliance"
    session_expires: int = 1800
    min_se: int = 90
    no_answer_timeout: float = 180.0  # RFC 3261 Timer C: a pending INVITE is abandoned after 3 minutes

    def sent_by(self, transport: str) -> str:
        host, port = self.local.get(transport) or self.local["udp"]
        return f"{format_host(host)}:{port}"

    def via(self, transport: str) -> str:
        return f"SIP/2.0/{transport.upper()} {self.sent_by(transport)};branch={self.ids.branch()};rport"

    def contact(self, transport: str, user: str = "pop") -> str:
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{user}@{self.sent_by(transport)}{suffix}>"
