"""An in-memory appliance: the real sans-I/O core, fed bytes by simulated peers, on a hand-driven clock."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.calls.b2bua import B2bua
from appliance.calls.context import SipContext
from appliance.calls.events import Setup
from appliance.calls.media_anchor import MediaAnchor, RouteMedia
from appliance.calls.routing import RoutingTable
from appliance.config.schema import Destination
from appliance.core import ApplianceCore
from appliance.ivr.actions import Action, PlayFiles, SessionEnded
from appliance.sip.builder import IdFactory, make_request, make_response
from appliance.sip.dialog import uri_to_peer
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
        self.rescued = 0

    def reject(self, reason: str) -> None:
        self.rejects.append(reason)

    def call_started(self, route: str) -> None:
        self.started.append(route)

    def call_routed(self, old_route: str, new_route: str) -> None:
        self.routed.append((old_route, new_route))

    def call_ended(self, route: str) -> None:
        self.ended.append(route)

    def call_rescued(self) -> None:
        self.rescued += 1


@dataclass
class ScriptedSession:
    """An IVR session double for call-control tests: it records its inputs and performs the actions a
    test queues (the interpreter itself is tested in test_ivr_session*). On start it plays one prompt."""

    call_id: str
    flow: str
    setup: Setup
    rescued: bool
    inputs: list[tuple[Any, ...]] = field(default_factory=list)
    actions: deque[Action] = field(default_factory=deque)
    timer: float | None = None
    ended: bool = False

    def start(self, now: float) -> None:
        self.inputs.append(("start", now))
        self.actions.append(PlayFiles(1, ("/prompts/en/welcome.alaw",), barge_in=True))

    def __getattr__(self, name: str) -> Callable[..., None]:
        # dtmf, play_done, record_done, persisted, caller_hung_up ...: recorded as (name, *args).
        if name.startswith("_") or name in ("next_action", "get_timer", "handle_timer"):
            raise AttributeError(name)
        return lambda *args: self.inputs.append((name, *args))

    def next_action(self) -> Action | None:
        if not self.actions:
            return None
        action = self.actions.popleft()
        self.ended = self.ended or isinstance(action, SessionEnded)
        return action

    def get_timer(self) -> float | None:
        return self.timer

    def handle_timer(self, now: float) -> None:
        self.timer = None
        self.inputs.append(("timer", now))

    def names(self) -> list[str]:
        return [i[0] for i in self.inputs]


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
    # Answered cloud calls whose cloud leg fails go to this IVR flow (None: they are released).
    rescue_flow: str | None = "default"
    ivr_flows: tuple[str, ...] = ("default",)

    def __post_init__(self) -> None:
        self.endpoint = SipEndpoint(timers=TimerSettings(0.5, 4.0, 5.0), ids=IdFactory())
        self.ctx = SipContext(endpoint=self.endpoint, ids=self.endpoint.ids, local={"udp": APPLIANCE},
                              session_expires=self.session_expires)  # fmt: skip
        self.mode = ModeMachine(cloud_configured=bool(self.cloud), probe_interval=5.0, probe_timeout=2.0,
                                probe_failures=3, probe_successes=2, hold_down=30.0, now=0.0)  # fmt: skip
        self.calls = CallsSeen()
        counter = iter(range(1, 1 << 30))
        # The local IVR's media: the relay's anchor when there is one (a rescue needs it), else an anchor
        # of its own, so that calls answered locally still get an SDP answer naming the appliance.
        self.ivr_media = MediaAnchor(
            address="127.0.0.1", slices=[(20000, 20999)], random_bytes=lambda n: b"\x11" * n
        )
        self.sessions: list[ScriptedSession] = []
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
            agents=self._agents, observer=self.calls,
            media_anchor=self.media_anchor, route_media=self.route_media,
            ivr_sessions=self._ivr_session, ivr_media=self.media_anchor or self.ivr_media,
            rescue_flow=self.rescue_flow,
        )  # fmt: skip
        self.core = ApplianceCore(
            ctx=self.ctx, b2bua=self.b2bua, mode=self.mode, registrar=self.registrar,
            cloud_trunk=parse_sip_uri(self.cloud) if self.cloud else None,
            before_send=self.before_send,
        )  # fmt: skip
        self.inbox: dict[Peer, list[Request | Response]] = {}
        self.core.start(self.now)
        self._pump()

    def _ivr_session(self, call_id: str, flow: str, setup: Setup, rescued: bool) -> ScriptedSession | None:
        if flow not in self.ivr_flows:
            return None
        session = ScriptedSession(call_id, flow, setup, rescued)
        self.sessions.append(session)
        return session

    def _agents(self, group: str) -> list[tuple[str, Peer]]:
        out = []
        for member in self.agent_groups.get(group, []):
            if ":" in member:  # a member's own URI, as the appliance's configuration allows
                out.append((member, uri_to_peer(parse_sip_uri(member))))
                continue
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
