"""An in-memory appliance: the real sans-I/O core, fed bytes by simulated peers, on a hand-driven clock."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from appliance.calls.b2bua import B2bua
from appliance.calls.context import SipContext
from appliance.calls.local_media import SilenceMedia
from appliance.calls.media_anchor import MediaAnchor, RouteMedia
from appliance.calls.routing import RoutingTable
from appliance.config.schema import Destination
from appliance.core import ApplianceCore
from appliance.media.ports import PortAllocator
from appliance.sip.builder import IdFactory, make_request, make_response
from appliance.sip.digest import DigestServer, ha1
from appliance.sip.endpoint import SipEndpoint
from appliance.sip.events import Peer
from appliance.sip.message import Request, Response, parse_message
from appliance.sip.registrar import Registrar
from appliance.sip.transaction import TimerSettings
from appliance.sip.uri import parse_sip_uri
from appliance.wan.mode import ModeMachine

APPLIANCE = ("127.0.0.1", 5060)
CALLER = Peer("udp", "127.0.0.1", 5070)
CLOUD = Peer("udp", "127.0.0.1", 5080)
TRUNK2 = Peer("udp", "127.0.0.1", 5082)
AGENT1 = Peer("udp", "127.0.0.1", 5091)
AGENT2 = Peer("udp", "127.0.0.1", 5092)

OFFER = (
    b"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)
ANSWER = (
    b"v=0\r\no=callee 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 41000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
)


class CallsSeen:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.routed: list[tuple[str, str]] = []
        self.ended: list[str] = []
        self.rejects: list[str] = []

    def reject(self, reason: str) -> None:
        self.rejects.append(reason)

    def call_started(self, route: str) -> None:
        self.started.append(route)

    def call_routed(self, old_route: str, new_route: str) -> None:
        self.routed.append((old_route, new_route))

    def call_ended(self, route: str) -> None:
        self.ended.append(route)


@dataclass
class Harness:
    routes: Sequence[tuple[str, Sequence[str]]] = (("*", ("cloud", "ivr:default")),)
    cloud: str = "sip:127.0.0.1:5080"
    agent_groups: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    session_expires: int = 1800
    now: float = 0.0
    # Relay every call's media through a MediaAnchor (ports 30000-30099 on one worker, G.711 transcoding).
    anchor: bool = False
    route_media: dict[str, RouteMedia] = field(default_factory=dict)
    before_send: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.endpoint = SipEndpoint(timers=TimerSettings(0.5, 4.0, 5.0), ids=IdFactory())
        self.ctx = SipContext(endpoint=self.endpoint, ids=self.endpoint.ids, local={"udp": APPLIANCE},
                              session_expires=self.session_expires)  # fmt: skip
        self.mode = ModeMachine(cloud_configured=bool(self.cloud), probe_interval=5.0, probe_timeout=2.0,
                                probe_failures=3, probe_successes=2, hold_down=30.0, now=0.0)  # fmt: skip
        self.calls = CallsSeen()
        self.media = SilenceMedia(address="127.0.0.1", ports=PortAllocator(20000, 20999))
        counter = iter(range(1, 1 << 30))
        self.media_anchor = (
            MediaAnchor(
                address="127.0.0.1",
                slices=[(30000, 30099)],
                random_bytes=lambda n: bytes([next(counter) % 256]) * n,
            )
            if self.anchor
            else None
        )
        table = RoutingTable(
            [(m, tuple(Destination.parse(d) for d in dests)) for m, dests in self.routes], region="DE"
        )
        digest = DigestServer(
            realm="localhost", secret=os.urandom(16), nonce_lifetime=300, algorithms=["SHA-256", "MD5"]
        )
        users = self.users
        self.registrar = Registrar(
            domain="localhost", digest=digest, min_expires=60, max_expires=3600, default_expires=3600,
            credentials=lambda u, alg: ha1(u, "localhost", users[u], alg) if u in users else None,
        )  # fmt: skip
        self.b2bua = B2bua(
            ctx=self.ctx, router=table, cloud_available=lambda: self.mode.routes_to_cloud,
            cloud_trunk=self.cloud,
            agents=self._agents, media=self.media, observer=self.calls,
            media_anchor=self.media_anchor, route_media=self.route_media,
        )  # fmt: skip
        self.core = ApplianceCore(
            ctx=self.ctx, b2bua=self.b2bua, mode=self.mode, registrar=self.registrar,
            cloud_trunk=parse_sip_uri(self.cloud) if self.cloud else None,
            before_send=self.before_send,
        )  # fmt: skip
        self.inbox: dict[Peer, list[Request | Response]] = {}
        self.core.start(self.now)
        self._pump()

    def _agents(self, group: str) -> list[tuple[str, Peer]]:
        out = []
        for member in self.agent_groups.get(group, []):
            for b in self.registrar.lookup(member, self.now):
                out.append((b.uri, Peer(b.transport, b.source[0], b.source[1])))
        return out

    # ---------------------------------------------------------------------------------- driving
    def _pump(self) -> None:
        for peer, data in self.core.datagrams_to_send():
            self.inbox.setdefault(peer, []).append(parse_message(data))

    def send(self, peer: Peer, message: Request | Response | bytes) -> None:
        data = message if isinstance(message, bytes) else message.to_bytes()
        self.core.receive(data, peer, self.now)
        self._pump()

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while (due := self.core.get_timer()) is not None and due <= end:
            self.now = max(self.now, due)
            self.core.handle_timer(self.now)
            self._pump()
        self.now = end

    def take(self, peer: Peer) -> list[Request | Response]:
        return self.inbox.pop(peer, [])

    def cloud_online(self) -> None:
        """Answer the mode machine's probe so that the cloud counts as reachable."""
        for message in self.take(CLOUD):
            if isinstance(message, Request) and message.method == "OPTIONS":
                self.send(CLOUD, make_response(message, 200, to_tag="c0"))

    def requests(self, peer: Peer) -> list[Request]:
        return [m for m in self.take(peer) if isinstance(m, Request)]


def invite(called: str = "+49301234567", *, branch: str = "z9hG4bKa1", call_id: str = "a-call-1",
           body: bytes = OFFER, extra: list[tuple[str, str]] | None = None, max_forwards: int = 70,
           cseq: int = 1) -> Request:  # fmt: skip
    return make_request(
        "INVITE", f"sip:{called}@127.0.0.1", via=f"SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport",
        from_='"Alice" <sip:+4930555@127.0.0.1:5070>;tag=alice1', to=f"<sip:{called}@127.0.0.1>",
        call_id=call_id, cseq=cseq, contact="<sip:alice@127.0.0.1:5070>", max_forwards=max_forwards,
        extra=extra, body=body, content_type="application/sdp" if body else None,
    )  # fmt: skip


def in_dialog(method: str, response: Response, *, branch: str, cseq: int, body: bytes = b"",
              content_type: str | None = None, via_port: int = 5070,
              extra: list[tuple[str, str]] | None = None) -> Request:  # fmt: skip
    """A request from the caller within the dialog that ``response`` (our 2xx to its INVITE) set up."""
    return make_request(
        method, "sip:pop@127.0.0.1:5060", via=f"SIP/2.0/UDP 127.0.0.1:{via_port};branch={branch}",
        from_=response.headers.get("from") or "", to=response.headers.get("to") or "",
        call_id=response.call_id,
        cseq=cseq, extra=extra, body=body, content_type=content_type,
    )  # fmt: skip


def reply(request: Request, status: int, *, tag: str = "callee1", body: bytes = b"",
          extra: list[tuple[str, str]] | None = None, contact: str | None = None) -> Response:  # fmt: skip
    fields = list(extra or [])
    if contact is not None:
        fields.append(("Contact", contact))
    return make_response(request, status, to_tag=tag if status > 100 else None, extra=fields, body=body,
                         content_type="application/sdp" if body else None)  # fmt: skip


def ack_for(response: Response, *, branch: str, via_port: int = 5070) -> Request:
    return make_request(
        "ACK", "sip:pop@127.0.0.1:5060", via=f"SIP/2.0/UDP 127.0.0.1:{via_port};branch={branch}",
        from_=response.headers.get("from") or "", to=response.headers.get("to") or "",
        call_id=response.call_id,
        cseq=response.cseq[0],
    )  # fmt: skip
