"""Events the SIP endpoint hands to its transaction user (the call control, the registrar).

Events are small frozen dataclasses (STYLE.md rule 7). The transactions they name are live objects that
the TU answers through :class:`appliance.sip.endpoint.SipEndpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from appliance.sip.message import Request, Response
    from appliance.sip.transaction import ClientTransaction, ServerTransaction


class Peer(NamedTuple):
    """Where a message came from or goes to: transport ("udp", "tcp", "tls"), IP address, port."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request (not a retransmission) arrived; answer it through ``transaction``."""

    request: Request
    transaction: ServerTransaction


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx (RFC 3261 §13.3.1.4): it belongs to the dialog, not to a transaction."""

    request: Request
    peer: Peer


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched a pending INVITE server transaction; the endpoint already answered it 200."""

    request: Request
    invite: ServerTransaction


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for one of our client transactions (retransmitted finals are absorbed, but every 2xx
    to an INVITE is passed on so that the TU can re-send its ACK, RFC 6026 §7.2)."""

    response: Response
    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B or F fired: the request got no final response (the TU treats it as 408)."""

    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """A final response to an INVITE was never acknowledged (Timer H, or Timer L for a 2xx)."""

    transaction: ServerTransaction


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matches no client transaction (a late 2xx retransmission, or junk)."""

    response: Response
    peer: Peer


SipEvent = (
    RequestReceived
    | AckReceived
    | CancelReceived
    | ResponseReceived
    | TransactionTimeout
    | AckTimeout
    | StrayResponse
)
