"""SIP dialogs (RFC 3261 §12): the state two user agents share for the life of a call.

A dialog is identified by Call-ID, local tag and remote tag. It remembers the remote target (the peer's
Contact), the route set (Record-Route, reversed on the UAC side, §12.1.2) and both CSeq counters, and builds
the requests sent within it (§12.2.1.1). Only loose routing (``;lr``, RFC 3261 §16.12) is supported: the
Request-URI is always the remote target and the route set travels in Route headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.sip.builder import make_request
from appliance.sip.errors import DecodeError
from appliance.sip.events import Peer
from appliance.sip.headers import parse_contacts
from appliance.sip.message import Request, Response
from appliance.sip.uri import SipUri, parse_sip_uri


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the From (UAC) or To (UAS) value without the tag: our identity in this dialog
    remote_uri: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    early: bool = True

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(cls, request: Request, local_tag: str) -> Dialog:
        """§12.1.1: the dialog a UAS creates when it answers ``request`` (INVITE) with a tagged response."""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_uri=_strip_tag(request.headers.get("to") or ""),
            remote_uri=_strip_tag(request.headers.get("from") or ""),
            remote_target=_contact_uri(request) or request.from_.uri,
            route_set=request.headers.get_all("record-route"),
            local_seq=0,
            remote_seq=request.cseq[0],
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """§12.1.2: the dialog a UAC creates from a tagged 1xx or 2xx to its request."""
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=response.to.tag or "",
            local_uri=_strip_tag(request.headers.get("from") or ""),
            remote_uri=_strip_tag(request.headers.get("to") or ""),
            remote_target=_contact_uri(response) or request.uri,
            route_set=list(reversed(response.headers.get_all("record-route"))),
            local_seq=request.cseq[0],
        )

    def update_target(self, message: Request | Response) -> None:
        """A target refresh (re-INVITE, UPDATE, or their 2xx) may change the remote target (§12.2)."""
        contact = _contact_uri(message)
        if contact:
            self.remote_target = contact

    def accept_remote_seq(self, cseq: int) -> bool:
        """§12.2.2: a request with a lower CSeq than the last one is out of order (answer 500)."""
        if self.remote_seq is not None and cseq < self.remote_seq:
            return False
        self.remote_seq = cseq
        return True

    def create_request(
        self,
        method: str,
        *,
        via: str,
        contact: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> Request:
        """§12.2.1.1: a request within the dialog; ACK and CANCEL pass the CSeq they must reuse."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        fields = [("Route", r) for r in self.route_set]
        if extra:
            fields.extend(extra)
        return make_request(
            method,
            self.remote_target,
            via=via,
            from_=f"{self.local_uri};tag={self.local_tag}",
            to=f"{self.remote_uri};tag={self.remote_tag}",
            call_id=self.call_id,
            cseq=cseq,
            contact=contact,
            extra=fields,
            body=body,
            content_type=content_type,
        )

    def next_hop(self) -> SipUri:
        """Where requests in this dialog go: the first route, else the remote target (RFC 3261 §8.1.2)."""
        if self.route_set:
            return parse_sip_uri(_angle_uri(self.route_set[0]))
        return parse_sip_uri(self.remote_target)


def uri_to_peer(uri: SipUri) -> Peer:
    """The transport address of a SIP URI whose host is an IP literal or ``localhost`` (RFC 3263 §4 is not
    needed for those; DNS names are resolved by the I/O glue before this is called)."""
    host = uri.params.get("maddr") or uri.host
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    transport = uri.transport
    port = uri.port or (5061 if transport == "tls" else 5060)
    return Peer(transport, host, port)


def _strip_tag(value: str) -> str:
    """The header value without its tag parameter (kept otherwise exactly as received)."""
    lower = value.lower()
    i = lower.find(";tag=")
    if i < 0:
        return value
    end = value.find(";", i + 1)
    return value[:i] + (value[end:] if end >= 0 else "")


def _contact_uri(message: Request | Response) -> str | None:
    values = message.headers.get_all("contact")
    if not values:
        return None
    try:
        contacts = parse_contacts(values[:1])
    except DecodeError:
        return None
    return contacts[0].uri if contacts else None


def _angle_uri(value: str) -> str:
    lt, gt = value.find("<"), value.find(">")
    return value[lt + 1 : gt] if 0 <= lt < gt else value.split(";", maxsplit=1)[0].strip()
