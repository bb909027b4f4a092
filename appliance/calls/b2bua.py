"""The back-to-back user agent: every call is two legs joined by the call-control event set.

Theory of operation. An initial INVITE is vetted (Max-Forwards, session-timer minimum), its called number is
looked up in the routing table, and the call tries the route's destinations in order: the cloud trunk (only
while the survivable-mode machine says the cloud is reachable), an explicit trunk, the local IVR, a local
agent group (forked to every registered member at once: first to answer wins, the others are cancelled) or a
PRI span. A destination that fails before answer hands the call to the next one; when none is left the caller
gets the last failure. After answer the B2BUA only relays events between the two legs. A call whose caller
is not on SIP (a PRI caller, whose gateway makes its leg) starts at :meth:`B2bua.place_call` and is routed
the same way; legs towards the destinations are opened by :class:`~appliance.calls.outbound.Outbound`.

With a :class:`~appliance.calls.media_anchor.MediaAnchor` every relayed call's media is anchored at the
appliance: the caller's offer is rewritten once per call (forks and failover reuse it), and every SDP that
then crosses between the legs (early media, answer, re-INVITE/UPDATE either way, an answer in an ACK) goes
through the anchor, which queues the media workers' commands. The local IVR terminates media itself and is
never anchored. Media the anchor refuses fails the destination (488/503); media lost later (a timeout, a
worker failure) ends the call in :meth:`B2bua.end_for_media`.

The local IVR (:mod:`appliance.calls.local_ivr`: IVR destinations and the rescue of answered cloud calls)
and the transfer of IVR callers to a local agent group through the agent queue
(:mod:`appliance.calls.agent_transfer`) are objects this B2BUA owns; their legs join calls like any other.

Legs talk to the B2BUA through :meth:`Call.from_leg`; the B2BUA talks to legs through ``leg.handle``. Neither
side knows the other's protocol. Leg timers (no-answer, session timers) sit in one heap here, beside the SIP
endpoint's transaction timers.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final, Protocol

from appliance.calls import causes
from appliance.calls.agent_transfer import ANSWERED_ELSEWHERE, AgentTransfer
from appliance.calls.causes import Cause
from appliance.calls.cdr import CallRecords
from appliance.calls.context import ALLOW, SipContext
from appliance.calls.errors import MediaRefused
from appliance.calls.events import (
    Answer,
    CallEvent,
    Disconnect,
    Dtmf,
    Fail,
    Progress,
    Redirect,
    Ringing,
    Setup,
    Update,
    UpdateAnswer,
    UpdateRejected,
)
from appliance.calls.ivr_leg import IvrLeg
from appliance.calls.local_ivr import CloudLost, LocalIvr
from appliance.calls.outbound import Outbound, PriDialer
from appliance.calls.routing import RoutingTable
from appliance.calls.sip_leg import LegState, SipLeg
from appliance.ivr.agent_queue import AgentQueue
from appliance.media.control_events import DtmfEvent, MediaTimeout, WorkerEvent
from appliance.sip.errors import DecodeError
from appliance.sip.events import Peer
from appliance.sip.headers import parse_session_expires
from appliance.sip.message import Request
from appliance.sip.transaction import ServerTransaction
from appliance.sip.uri import TelUri, parse_sip_uri, parse_uri

if TYPE_CHECKING:
    from appliance.calls.ivr_leg import Session
    from appliance.calls.media_anchor import MediaAnchor, RouteMedia

log = logging.getLogger("appliance.calls")

# No RTP on an answered call for media.timeout seconds (cloud.media_timeout from a cloud leg). Q.850
# cause 102 "recovery on timer expiry" is the cause for a call cleared because a timer expired, and
# RFC 3326 §2 carries it to a SIP peer as "Reason: Q.850;cause=102". Others pick differently: FreeSWITCH
# ends such calls with its own MEDIA_TIMEOUT (604, outside Q.850), Asterisk's rtp_timeout with cause 44
# ("requested channel unavailable"), and rtpengine leaves the decision to Kamailio (its timeout only
# deletes the media session); a timer expiry says what happened, so the far end's logs and CDRs read it
# right.
MEDIA_TIMEOUT: Final = Cause(102, 408, "Media timeout")
# The media worker carrying the call refused a command or died: the relay state is gone (Q.850 41).
MEDIA_FAILURE: Final = Cause(41, 503, "Media relay failure")


def is_failure(cause: Cause) -> bool:
    """Whether a release ``cause`` says something failed rather than someone hung up: Q.850 §2.2.5 puts
    causes 1–31 in the normal event classes and 32–127 in resource unavailable, service not available,
    not implemented, invalid message, protocol error and interworking. A cloud leg released with one of
    the latter (a BYE with ``Reason: Q.850;cause=38``, a timed-out session) is rescued."""
    return cause.q850 >= 32


class Destination(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def target(self) -> str: ...


class CallObserver(Protocol):
    def call_started(self, route: str) -> None: ...
    def call_routed(self, old_route: str, new_route: str) -> None: ...
    def call_rescued(self) -> None: ...
    def call_ended(self, route: str) -> None: ...
    def reject(self, reason: str) -> None: ...


IvrSessions = Callable[[str, str, Setup, bool], "Session | None"]
"""``(call_id, flow, setup, rescued)`` → a new IVR session for the call, or None without such a flow."""

PersistRequest = tuple[str, int, str, Mapping[str, Any]]
"""``(call_id, token, type, body)``: an outbox append an IVR session waits for."""


class Leg(Protocol):
    call: Call
    route_kind: str

    def handle(self, event: CallEvent, now: float) -> None: ...


class TimedLeg(Protocol):
    """A leg with a deadline in the B2BUA's heap (SIP legs' no-answer and session timers, IVR sessions)."""

    @property
    def timer_due(self) -> float | None: ...
    def on_timer(self, now: float) -> None: ...


class Call:
    __slots__ = (
        "_b2bua",
        "a",
        "answered",
        "b",
        "b_setup",
        "candidates",
        "ended",
        "forks",
        "id",
        "last_cause",
        "route_kind",
        "route_match",
        "setup",
    )

    def __init__(self, b2bua: B2bua, call_id: str, setup: Setup, candidates: list[Destination]) -> None:
        self._b2bua = b2bua
        self.id = call_id
        self.setup = setup
        self.candidates = candidates
        self.a: Leg = None  # type: ignore[assignment]  # set right after construction
        self.b: Leg | None = None
        self.forks: list[Leg] = []
        self.answered = False
        self.ended = False
        self.route_kind = "none"
        self.route_match: str | None = None
        self.last_cause: Cause = causes.NO_ROUTE
        # The Setup every relayed destination receives (its SDP anchored once, reused by forks and
        # failover); None until a relayed destination is tried.
        self.b_setup: Setup | None = None

    def from_leg(self, leg: Leg, event: CallEvent, now: float) -> None:
        self._b2bua.call_event(self, leg, event, now)


class B2bua:
    def __init__(
        self,
        *,
        ctx: SipContext,
        router: RoutingTable[Destination],
        cloud_available: Callable[[], bool],
        cloud_trunk: str,
        agents: Callable[[str], list[tuple[str, Peer]]],
        observer: CallObserver,
        media_anchor: MediaAnchor | None = None,
        route_media: Mapping[str, RouteMedia] | None = None,
        ivr_sessions: IvrSessions | None = None,
        ivr_media: MediaAnchor | None = None,
        rescue_flow: str | None = None,
        agent_queue: AgentQueue | None = None,
        cdr: CallRecords | None = None,
        pri: PriDialer | None = None,
    ) -> None:
        self.ctx = ctx
        self.router = router
        self.cloud_available = cloud_available
        self.cloud_trunk = parse_sip_uri(cloud_trunk) if cloud_trunk else None
        self.agents = agents
        self.observer = observer
        # With an anchor every SDP between relayed legs goes through it (the RTP flows via the media
        # workers); without one SDP passes through untouched and the endpoints send media to each other.
        self.media_anchor = media_anchor
        self.route_media = route_media or {}
        # The local IVR runs on the media workers of ``ivr_media`` (by default the relay's anchor, which a
        # rescue needs: the caller's relayed leg becomes the IVR's); without sessions or an anchor an
        # ``ivr:`` destination is unavailable. ``rescue_flow``: where answered cloud calls go when their
        # cloud leg fails.
        self.ivr_media = ivr_media or media_anchor
        self.local_ivr = LocalIvr(self, sessions=ivr_sessions, media=self.ivr_media, rescue_flow=rescue_flow)
        # IVR callers transferred to a local agent group queue here for the group's agents.
        self.transfer = AgentTransfer(self, agent_queue or AgentQueue())
        # Destinations and the legs towards them; ``pri`` places calls on PRI spans (None: no spans).
        self.outbound = Outbound(self, pri=pri)
        self.calls: dict[str, Call] = {}
        self.persist_requests: deque[PersistRequest] = deque()
        # Call detail records: finished ones wait in ``cdr.done`` for the outbox (none without a wall clock).
        self.cdr = cdr or CallRecords()
        self._legs: dict[tuple[str, str], SipLeg] = {}
        self._heap: list[tuple[float, int, TimedLeg]] = []
        self._seq = itertools.count()

    # -------------------------------------------------------------------------------- bookkeeping
    def index_leg(self, call_id: str, local_tag: str, leg: SipLeg) -> None:
        self._legs[(call_id, local_tag)] = leg

    def find_leg(self, call_id: str, local_tag: str) -> SipLeg | None:
        return self._legs.get((call_id, local_tag))

    def leg_ended(self, leg: SipLeg) -> None:
        txn = leg.invite_in or leg.invite
        if txn is not None:
            self._legs.pop((txn.request.call_id, leg.local_tag), None)

    def arm(self, leg: TimedLeg) -> None:
        if leg.timer_due is not None:
            heapq.heappush(self._heap, (leg.timer_due, next(self._seq), leg))

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap and (heap[0][2].timer_due != heap[0][0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def handle_timer(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, leg = heapq.heappop(heap)
            if leg.timer_due == due:
                leg.on_timer(now)

    @staticmethod
    def called_user(request: Request) -> str:
        try:
            uri = parse_uri(request.uri)
        except DecodeError:
            return ""
        if isinstance(uri, TelUri):
            return uri.number
        return uri.user or ""

    # ----------------------------------------------------------------------------- new calls
    def new_call(self, txn: ServerTransaction, now: float) -> None:
        """An initial INVITE (no To tag) arrived."""
        request = txn.request
        mf = request.headers.get("max-forwards")
        if mf is not None and int(mf) == 0:
            self.observer.reject("too_many_hops")
            txn.respond(483, to_tag=self.ctx.ids.tag())
            return
        se = request.headers.get("session-expires")
        if se is not None:
            try:
                interval, _ = parse_session_expires(se)
            except DecodeError as exc:
                txn.respond(400, exc.reason, to_tag=self.ctx.ids.tag())
                return
            if interval < self.ctx.min_se:
                # RFC 4028 §8.1: too small an interval is refused with our minimum.
                txn.respond(422, to_tag=self.ctx.ids.tag(), extra=[("Min-SE", str(self.ctx.min_se))])
                return
        call = Call(self, self.ctx.ids.call_id(), Setup("", ""), [])
        a = SipLeg(self, call, role="uas", peer=txn.peer, route_kind="inbound")
        call.a = a
        setup = a.accept_invite(txn, now)
        self.index_leg(request.call_id, a.local_tag, a)
        self._start(call, setup, request.call_id, now, {"txn": txn.branch, "peer": str(txn.peer)})
        self.transfer.call_placed(call, request, now)
        self._next_destination(call, now)

    def place_call(self, a_leg: Callable[[Call], Leg], setup: Setup, now: float, *, ref: str = "") -> Call:
        """A new call from a leg that is not SIP (a PRI caller): ``a_leg`` makes the caller's leg for the
        new call, ``setup`` is what the caller asked for (its SDP the caller's offer), ``ref`` names the
        call in the caller's protocol for logs and the call record. The call is routed at once, as an
        INVITE is; the returned call may already have ended (no route, every destination failed)."""
        call = Call(self, self.ctx.ids.call_id(), setup, [])
        call.a = a_leg(call)
        self._start(call, setup, ref, now, {})
        self._next_destination(call, now)
        return call

    def _start(self, call: Call, setup: Setup, ref: str, now: float, ctx: dict[str, str]) -> None:
        """Route a new call (its a leg set) and open its record: what every call does, whatever its origin."""
        call.setup = setup
        route = self.router.lookup(setup.called)
        if route is None:
            self.observer.reject("no_route")
            call.last_cause = causes.NO_ROUTE
        else:
            call.candidates = self.router.candidates(route, cloud_available=self.cloud_available())
            call.route_match = route.match
        self.calls[call.id] = call
        self.cdr.begin(call.id, ref, setup.calling, setup.called, now, self.router.normalise)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "call from %s to %s", setup.calling or "anonymous", setup.called,
                extra={"ctx": {"call": call.id, "sip_call_id": ref, **ctx,
                               "route": route.match if route else None}},
            )  # fmt: skip

    def _next_destination(self, call: Call, now: float) -> None:
        while call.candidates:
            dest = call.candidates.pop(0)
            self.cdr.trying(call.id, dest, now)
            if self.outbound.try_destination(call, dest, now):
                return
            self.cdr.unavailable(call.id)
        self._end(call, Fail(call.last_cause), now)

    def route(self, call: Call, kind: str) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("call tries %s", kind, extra={"ctx": {"call": call.id}})
        if call.route_kind == "none":
            self.observer.call_started(kind)
        elif call.route_kind != kind:
            self.observer.call_routed(call.route_kind, kind)
        if call.answered:  # a rescue
            self.cdr.rerouted(call.id, call.b, self.local_ivr.rescue_flow or "")
        call.route_kind = kind
        if self.media_anchor is not None:
            # A silent cloud is noticed by its own short media timeout; phones and trunks keep the long one.
            self.media_anchor.mark_cloud(call.id, kind == "cloud")

    # --------------------------------------------------------------------------- event relay
    def call_event(self, call: Call, leg: Leg, event: CallEvent, now: float) -> None:
        if call.ended:
            return
        if self.transfer.leg_event(call, leg, event, now):
            return  # an agent's leg while it rings for a queued caller, or its hang-up once connected
        if leg is call.a:
            if isinstance(event, Disconnect):
                self.cdr.released(call.id, "caller", event.cause)
                for other in [*call.forks, *([call.b] if call.b else [])]:
                    other.handle(event, now)
                self.finish(call, now)
            elif call.b is not None:
                self._relay(call, leg, call.b, event, now)
            return
        if isinstance(event, (Ringing, Progress)):
            if not call.answered and leg in call.forks:
                self._relay(call, leg, call.a, event, now)
        elif isinstance(event, Answer):
            if call.answered or leg not in call.forks:
                leg.handle(Disconnect(ANSWERED_ELSEWHERE), now)
                return
            call.answered = True
            call.b = leg
            self.cdr.answered(call.id, leg, now)
            if log.isEnabledFor(logging.INFO):
                log.info("call answered by %s", leg.route_kind, extra={"ctx": {"call": call.id}})
            for other in call.forks:
                if other is not leg:
                    other.handle(Disconnect(ANSWERED_ELSEWHERE), now)
            call.forks = []
            if call.route_kind != leg.route_kind:
                self.route(call, leg.route_kind)
            if leg.route_kind == "agents" and isinstance(leg, SipLeg):
                self.transfer.agent_busy(leg.target_uri, now)  # a direct call to the group
            self._relay(call, leg, call.a, event, now)
        elif isinstance(event, (Fail, Redirect)):
            if leg in call.forks:
                call.forks.remove(leg)
                if isinstance(event, Fail):
                    call.last_cause = event.cause
                else:
                    call.last_cause = Cause.from_sip(480, "Redirected")
                if not call.forks:
                    self.cdr.leg_failed(call.id, call.last_cause)
                if not call.forks and not call.answered:
                    self._next_destination(call, now)
        elif isinstance(event, Disconnect):
            if leg is call.b:
                if is_failure(event.cause) and self.rescue(call, event.cause, now):
                    return
                self.cdr.released(call.id, "callee", event.cause)
                call.a.handle(event, now)
                self.finish(call, now)
        elif leg is call.b:
            self._relay(call, leg, call.a, event, now)

    def _relay(self, call: Call, source: Leg, target: Leg, event: CallEvent, now: float) -> None:
        """Hand ``event`` from ``source`` to ``target``, its SDP anchored when the call's media is relayed."""
        anchor = self.media_anchor
        if (
            anchor is None
            or isinstance(source, IvrLeg)
            or isinstance(target, IvrLeg)
            or not anchor.has(call.id)
        ):
            target.handle(event, now)
            return
        if isinstance(event, UpdateRejected):
            anchor.reject(call.id)
        elif isinstance(event, (Ringing, Progress, Answer, Update, UpdateAnswer)) and event.sdp is not None:
            side = "a" if source is call.a else "b"
            try:
                sdp = anchor.sdp_from(
                    call.id, side, event.sdp, offer=True if isinstance(event, Update) else None
                )
            except MediaRefused as exc:
                cause = Cause.from_sip(exc.status, exc.reason)
                log.warning(
                    "SDP from leg %s refused: %d %s", side, exc.status, exc.reason,
                    extra={"ctx": {"call": call.id}},
                )  # fmt: skip
                if isinstance(event, (Ringing, Progress)):
                    target.handle(replace(event, sdp=None), now)  # the call goes on without early media
                elif isinstance(event, Update):
                    source.handle(UpdateRejected(cause), now)  # the last agreed media stays
                elif not call.ended:
                    self.end_for_media(call, cause, now)  # an answer that cannot be anchored: no media
                return
            event = replace(event, sdp=sdp)
        target.handle(event, now)

    # ------------------------------------------------------------------------- media events
    def media_event(self, call_id: str, event: WorkerEvent, now: float) -> None:
        """An event a media worker reported about ``call_id`` (see :mod:`appliance.media.control_events`)."""
        if self.local_ivr.media_event(call_id, event, now):
            return
        call = self.calls.get(call_id)
        if call is None or call.ended:
            return
        if isinstance(event, MediaTimeout):
            # One-way audio (the other leg still sends) is reported as such: it points at a NAT or firewall
            # on the silent leg's path rather than at a dead call.
            what = "one-way audio: " if event.one_way else ""
            log.warning(
                "%sno RTP from leg %s for %.1f s", what, event.leg, event.silent_for,
                extra={"ctx": {"call": call_id}},
            )  # fmt: skip
            if call.answered:
                # The callee's media died while the caller's still flows: a rescue keeps the caller.
                if event.leg == "b" and self.rescue(call, MEDIA_TIMEOUT, now):
                    return
                if event.leg == "b" and self.transfer.agent_lost(call, MEDIA_TIMEOUT, now):
                    return  # a local agent's: the caller goes back to its IVR session
                self.end_for_media(call, MEDIA_TIMEOUT, now)
        elif isinstance(event, DtmfEvent):
            log.info("DTMF %s on leg %s", event.digit, event.leg, extra={"ctx": {"call": call_id}})
            target, other = (call.b, "b") if event.leg == "a" else (call.a, "a")
            anchor = self.media_anchor
            # RFC 4733 packets already reach a leg that negotiated telephone-event; SIP INFO only for the
            # leg that did not.
            if target is not None and anchor is not None and anchor.wants_info(call_id, other):
                target.handle(Dtmf(event.digit, event.duration_ms), now)
        else:
            log.debug("media event %s", event, extra={"ctx": {"call": call_id}})

    def media_failed(self, call_id: str, reason: str, now: float) -> None:
        """The worker refused a command for the call, or died: its media is gone, so is the call."""
        ivr = self.ivr_legs.get(call_id)
        if ivr is not None and ivr.call.ended:
            ivr.command_failed(None, reason, now)  # only the session's last records are still pending
        call = self.calls.get(call_id)
        if call is not None and not call.ended:
            log.error("media relay failed: %s", reason, extra={"ctx": {"call": call_id}})
            self.end_for_media(call, MEDIA_FAILURE, now)

    def end_for_media(self, call: Call, cause: Cause, now: float) -> None:
        """The one decision on a call whose media is lost: today both legs are released with ``cause``
        (BYE with a Reason header once answered, the cause's status before)."""
        legs = [call.a, *call.forks, *([call.b] if call.b is not None and call.b not in call.forks else [])]
        self.cdr.released(call.id, "appliance", cause)
        for leg in legs:
            leg.handle(Disconnect(cause), now)
        self.finish(call, now)

    # ------------------------------------------------------------------------------- local IVR
    @property
    def ivr_legs(self) -> dict[str, IvrLeg]:
        """IVR sessions by call id, from answer until each has persisted its last record."""
        return self.local_ivr.legs

    def rescue(self, call: Call, cause: Cause, now: float) -> bool:
        """See :meth:`LocalIvr.rescue <appliance.calls.local_ivr.LocalIvr.rescue>`."""
        return self.local_ivr.rescue(call, cause, now)

    def cloud_lost(self, reason: str, now: float) -> CloudLost:
        """See :meth:`LocalIvr.cloud_lost <appliance.calls.local_ivr.LocalIvr.cloud_lost>`."""
        return self.local_ivr.cloud_lost(reason, now)

    def persisted(self, call_id: str, token: int, now: float) -> None:
        """An IVR session's outbox append is committed."""
        self.local_ivr.persisted(call_id, token, now)

    def persist_failed(self, call_id: str, token: int, reason: str, now: float) -> None:
        self.local_ivr.persist_failed(call_id, token, reason, now)

    def ivr_command_failed(self, call_id: str, command: object, reason: str, now: float) -> None:
        self.local_ivr.command_failed(call_id, command, reason, now)

    def _end(self, call: Call, event: Fail, now: float) -> None:
        log.warning(
            "call failed: %d %s", event.cause.sip_status, event.cause.text,
            extra={"ctx": {"call": call.id, "q850": event.cause.q850}},
        )  # fmt: skip
        self.cdr.failed(call.id, event.cause)
        call.a.handle(event, now)
        if call.route_kind == "none":
            self.observer.call_started("none")
        self.finish(call, now)

    def finish(self, call: Call, now: float) -> None:
        if call.ended:
            return
        call.ended = True
        self.calls.pop(call.id, None)
        self.cdr.finish(call.id, now)
        self.transfer.call_gone(call, now)
        if self.media_anchor is not None:
            self.media_anchor.release(call.id)
        if self.ivr_media is not None and self.ivr_media is not self.media_anchor:
            self.ivr_media.release(call.id)
        # The legs refer to their call and the call to its legs: let go of them so that reference counting,
        # not the cycle collector, frees a finished call (legs still answering late messages keep working:
        # every event they raise stops at ``call.ended``).
        call.a = None  # type: ignore[assignment]
        call.b = None
        call.forks = []
        if log.isEnabledFor(logging.INFO):
            log.info("call ended", extra={"ctx": {"call": call.id, "route": call.route_kind}})
        self.observer.call_ended(call.route_kind)

    # ------------------------------------------------------------------------------ SIP intake
    def on_request(self, txn: ServerTransaction, now: float) -> None:
        """Requests the core routed to call control: INVITE, BYE, UPDATE, INFO, in-dialog OPTIONS."""
        request = txn.request
        to_tag = request.to.tag
        if to_tag is None:
            if request.method == "INVITE":
                self.new_call(txn, now)
            else:
                txn.respond(481 if request.method in ("BYE", "UPDATE", "INFO") else 405,
                            to_tag=self.ctx.ids.tag(), extra=[("Allow", ALLOW)])  # fmt: skip
            return
        leg = self._legs.get((request.call_id, to_tag))
        if leg is None or (leg.state is LegState.ENDED and request.method != "BYE"):
            txn.respond(481)
            return
        leg.on_request(request, txn, now)
