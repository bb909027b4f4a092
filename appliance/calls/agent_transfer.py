"""Transfer from the local IVR to a local agent group, through the agent queue.

Theory of operation. A session's transfer node asks for a group (``QueueForAgents``): the caller joins the
B2BUA's one :class:`~appliance.ivr.agent_queue.AgentQueue` after the group's members are refreshed from
the registrar (an agent is named by the contact URI it is rung at). The caller keeps hearing the IVR's
music while the queue's actions are carried out in SIP, as its docstring lays down:

* :class:`~appliance.ivr.agent_queue.Ring` forks one INVITE per agent (a :class:`SipLeg`, route kind
  ``agents``). The call is local on the anchor; each INVITE carries the anchor's offer for a new leg b made
  from the caller's own media (:meth:`MediaAnchor.offer_from_local`), so the caller keeps its port and
  codec. These legs are not forks of the call: the caller was answered by the IVR long ago, so their
  180/183 are not relayed, a 2xx is ``ring_answered`` and a final failure ``ring_failed``.
* :class:`~appliance.ivr.agent_queue.Connected` makes the agent's leg the call's b leg: the anchor sets both
  legs from the agent's answer, the session hears ``transfer_answered`` and stops its music, and from the
  moment the worker's playback stops the relay carries caller and agent to each other.
* :class:`~appliance.ivr.agent_queue.CancelRing` CANCELs those INVITEs (RFC 3261 §9.1; a ring already
  answered gets its BYE), :class:`~appliance.ivr.agent_queue.RejectAnswer` hangs up an answer that came too
  late (a 2xx crossing the CANCEL, §9.1), :class:`~appliance.ivr.agent_queue.Position` is the session's
  ``transfer_position``.

A group with no reachable agent (none configured, none registered) does not queue the caller: the session
hears ``transfer_unavailable`` and goes to the node's fallback at once (Asterisk's ``joinempty=no``); callers
already waiting for a group that loses its last agent follow them there (``leavewhenempty``).

The agent hanging up first gives the caller back to its session (``transfer_ended``), on its leg as a rescue
does (:meth:`MediaAnchor.adopt_local`): the flow goes on to the node's ``after`` (a survey) or ends. The
caller hanging up releases the agent; a caller who leaves the queue (hang-up, the node's maximum wait)
has its rings cancelled. Agents busy on calls routed straight to their group are reported to the queue too.

The queue's deadlines (ring timeouts, wrap-up, retries) are this object's timer in the B2BUA's heap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from appliance.calls.causes import NORMAL_CLEARING, Cause
from appliance.calls.errors import MediaRefused
from appliance.calls.events import Answer, Disconnect, Fail, Redirect
from appliance.calls.sip_leg import SipLeg
from appliance.ivr.agent_queue import (
    AgentQueue,
    AgentQueueError,
    CancelRing,
    Connected,
    Position,
    QueueAction,
    RejectAnswer,
    Ring,
)
from appliance.sip.dialog import uri_to_peer
from appliance.sip.errors import DecodeError
from appliance.sip.headers import parse_contacts
from appliance.sip.uri import parse_sip_uri

if TYPE_CHECKING:
    from appliance.calls.b2bua import B2bua, Call, Leg
    from appliance.calls.events import CallEvent
    from appliance.calls.ivr_leg import IvrLeg
    from appliance.sip.events import Peer
    from appliance.sip.message import Request

log = logging.getLogger("appliance.calls.agents")

# Another fork or agent took the call (RFC 3326 Reason on the CANCEL, Q.850 16 on a BYE).
ANSWERED_ELSEWHERE: Final = Cause(16, 200, "Call completed elsewhere")
# A ring stopped by the queue for a reason other than another agent's answer (timeout, the caller left).
RING_CANCELLED: Final = Cause(16, 487, "Ring cancelled")


@dataclass(slots=True, eq=False)
class _Ring:
    call_id: str
    agent: str
    leg: SipLeg


@dataclass(slots=True, eq=False)
class _Queued:
    ivr: IvrLeg
    group: str
    strategy: str


@dataclass(slots=True, eq=False)
class _Connected:
    ivr: IvrLeg
    agent: str
    leg: SipLeg


class AgentTransfer:
    """The B2BUA's side of the agent queue: IVR callers queued, the agents' legs, the connected calls."""

    def __init__(self, b2bua: B2bua, queue: AgentQueue) -> None:
        self._b2bua = b2bua
        self.queue = queue
        self.timer_due: float | None = None
        self._queued: dict[str, _Queued] = {}  # by call id
        self._connected: dict[str, _Connected] = {}  # by call id
        self._rings: dict[tuple[str, str], _Ring] = {}  # by (call id, agent)
        self._ring_legs: dict[SipLeg, _Ring] = {}
        self._peers: dict[str, Peer] = {}  # where to send each agent's INVITE, from the last refresh
        self._calling: dict[str, str] = {}  # agent by call id: calls an agent's phone placed
        self._pumping = False

    # --------------------------------------------------------------------------- the session's
    def join(self, ivr: IvrLeg, group: str, strategy: str, now: float) -> None:
        """The session queues its caller for ``group``."""
        call_id = ivr.call_id
        if ivr.call.ended or ivr.hung_up or call_id in self._connected:
            return
        self._refresh(group, now)
        if not self.queue.members(group):
            # Asterisk's joinempty=no: with no agent to ring the caller goes to the node's fallback now.
            # The session hears it once this action is done (its leg drains the actions it adds).
            log.info("no agent of group %s reachable", group, extra={"ctx": {"call": call_id}})
            ivr.session.transfer_unavailable(now)
            return
        self._queued[call_id] = _Queued(ivr, group, strategy)
        try:
            self.queue.join(call_id, group, strategy, now)
        except AgentQueueError as exc:
            # The caller waits with music until the node's maximum wait sends it to the fallback.
            log.warning("agent queue refused the caller: %s", exc, extra={"ctx": {"call": call_id}})
            del self._queued[call_id]
        self._pump(now)

    def leave(self, ivr: IvrLeg, now: float) -> None:
        """The session gives up waiting (its maximum wait) or its caller hung up: rings are cancelled."""
        if self._queued.pop(ivr.call_id, None) is not None:
            self.queue.leave(ivr.call_id, now)
            self._pump(now)

    def refresh(self, now: float) -> bool:
        """Registrations may have changed: tell the queue who is reachable in each group callers wait for.
        Callers of a group left without any agent go to their fallback (Asterisk's leavewhenempty). False
        when no caller waits (nothing to do)."""
        groups = {q.group for q in self._queued.values()}
        for group in groups:
            self._refresh(group, now)
        self._pump(now)
        for call_id, queued in list(self._queued.items()):
            if not self.queue.members(queued.group):
                del self._queued[call_id]
                self.queue.leave(call_id, now)
                queued.ivr.session.transfer_unavailable(now)
                queued.ivr.pump(now)
        self._pump(now)
        return bool(groups)

    def _refresh(self, group: str, now: float) -> None:
        contacts = self._b2bua.agents(group)
        self._peers.update(contacts)
        self.queue.members_changed(group, [uri for uri, _ in contacts], now)

    # ------------------------------------------------------------------------- agents' busy state
    def agent_busy(self, agent: str, now: float) -> None:
        """``agent`` answered a call routed straight to its group, outside the queue."""
        self.queue.agent_busy(agent, now)
        self._pump(now)

    def call_placed(self, call: Call, request: Request, now: float) -> None:
        """A new call from a phone: when its Contact is an agent the queue knows (the contact it registered,
        RFC 3261 §10.2.1), that agent is busy until the call ends."""
        if not self._peers:
            return  # no agent known yet: spare every call the parsing
        try:
            contacts = parse_contacts(request.headers.get_all("contact")) or []
        except DecodeError:
            return
        if contacts and self.queue.agent_state(contacts[0].uri) is not None:
            self._calling[call.id] = contacts[0].uri
            self.agent_busy(contacts[0].uri, now)

    # ------------------------------------------------------------------------------- call control
    def leg_event(self, call: Call, leg: Leg, event: CallEvent, now: float) -> bool:
        """Take ``event`` from ``leg`` when it is the transfer's: an agent's leg ringing for a queued caller,
        or the connected agent hanging up. False: the B2BUA relays it as usual."""
        ring = self._ring_legs.get(leg) if isinstance(leg, SipLeg) else None
        if ring is not None:
            if isinstance(event, Answer):
                self._answered(ring, event.sdp, now)
            elif isinstance(event, (Fail, Redirect, Disconnect)):
                self._forget(ring)
                self.queue.ring_failed(ring.call_id, ring.agent, now)
            # 180/183 stay here: the caller hears the IVR's music, not the agent's phone.
            self._pump(now)
            return True
        connected = self._connected.get(call.id)
        if connected is not None and leg is connected.leg and isinstance(event, Disconnect):
            self._agent_hung_up(call, connected, now)
            return True
        return False

    def call_gone(self, call: Call, now: float) -> None:
        """``call`` ended (the caller hung up, the flow or a media failure ended it): the queue forgets the
        caller and its rings are cancelled; a connected agent is released and free again."""
        call_id = call.id
        connected = self._connected.pop(call_id, None)
        if connected is not None:
            connected.leg.handle(Disconnect(NORMAL_CLEARING), now)  # a no-op once the leg has ended
            self.queue.agent_free(connected.agent, now)
            connected.ivr.caller_gone(now)
        elif call.answered and isinstance(call.b, SipLeg) and call.b.route_kind == "agents":
            self.queue.agent_free(call.b.target_uri, now)  # a call routed straight to the group
        if (agent := self._calling.pop(call_id, None)) is not None:
            self.queue.agent_free(agent, now)  # a call the agent placed
        if self._queued.pop(call_id, None) is not None:
            self.queue.leave(call_id, now)
        self._pump(now)

    def agent_lost(self, call: Call, cause: Cause, now: float) -> bool:
        """The connected agent's media is gone (a media timeout): its leg is released with ``cause`` and the
        caller goes back to its session as when the agent hangs up. False when no agent has the call."""
        connected = self._connected.get(call.id)
        if connected is None:
            return False
        log.warning("agent %s lost: %s", connected.agent, cause.text, extra={"ctx": {"call": call.id}})
        connected.leg.handle(Disconnect(cause), now)
        self._agent_hung_up(call, connected, now)
        return True

    def _agent_hung_up(self, call: Call, connected: _Connected, now: float) -> None:
        """The agent ended the call: the caller goes back to its session, on the leg it is on."""
        del self._connected[call.id]
        ivr = connected.ivr
        anchor = self._b2bua.ivr_media
        self.queue.agent_free(connected.agent, now)
        if anchor is None or not anchor.adopt_local(call.id):
            call.a.handle(Disconnect(NORMAL_CLEARING), now)
            self._b2bua.finish(call, now)
            ivr.caller_gone(now)
            return
        log.info("agent %s hung up: caller back in the IVR", connected.agent,
                 extra={"ctx": {"call": call.id}})  # fmt: skip
        call.b = ivr
        ivr.session.transfer_ended(now)
        ivr.pump(now)
        self._pump(now)

    # ------------------------------------------------------------------------------ the queue's
    def on_timer(self, now: float) -> None:
        self.timer_due = None
        self.queue.handle_timer(now)
        self._pump(now)

    def _pump(self, now: float) -> None:
        """Carry out every action the queue has, then re-arm its timer. Not re-entered: an input made while
        an action is carried out queues its actions for the loop already running."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while (action := self.queue.next_action()) is not None:
                self._act(action, now)
        finally:
            self._pumping = False
        due = self.queue.get_timer()
        if due != self.timer_due:
            self.timer_due = due
            self._b2bua.arm(self)

    def _act(self, action: QueueAction, now: float) -> None:
        match action:
            case Ring():
                self._ring(action, now)
            case CancelRing():
                cause = ANSWERED_ELSEWHERE if action.call_id in self._connected else RING_CANCELLED
                for agent in action.agents:
                    self._hang_up_ring(action.call_id, agent, cause, now)
            case Connected():
                self._connect(action.call_id, action.agent, now)
            case Position():
                queued = self._queued.get(action.call_id)
                if queued is not None:
                    queued.ivr.session.transfer_position(action.position, now)
                    queued.ivr.pump(now)
            case RejectAnswer():
                self._hang_up_ring(action.call_id, action.agent, ANSWERED_ELSEWHERE, now)

    def _ring(self, action: Ring, now: float) -> None:
        call_id = action.call_id
        queued = self._queued.get(call_id)
        anchor = self._b2bua.ivr_media
        if queued is None or anchor is None:
            for agent in action.agents:
                self.queue.ring_failed(call_id, agent, now)
            return
        call = queued.ivr.call
        try:
            offer = anchor.offer_from_local(call_id)
        except MediaRefused as exc:
            # The caller's media cannot reach an agent: it stays with the music until the maximum wait.
            log.warning("caller cannot be transferred: %d %s", exc.status, exc.reason,
                        extra={"ctx": {"call": call_id}})  # fmt: skip
            del self._queued[call_id]
            self.queue.leave(call_id, now)
            return
        setup = replace(call.setup, sdp=offer)
        for agent in action.agents:
            peer = self._peers.get(agent)
            if peer is None:
                try:
                    peer = uri_to_peer(parse_sip_uri(agent))
                except DecodeError:
                    self.queue.ring_failed(call_id, agent, now)
                    continue
            leg = SipLeg(self._b2bua, call, role="uac", peer=peer, route_kind="agents")
            ring = _Ring(call_id, agent, leg)
            self._rings[(call_id, agent)] = ring
            self._ring_legs[leg] = ring
            leg.send_invite(setup, agent, now)

    def _answered(self, ring: _Ring, sdp: bytes | None, now: float) -> None:
        """An agent's phone answered. The queue first processes its deadlines due by ``now`` (a ring that
        timed out is cancelled: this leg gets its BYE); an answer still wanted must then suit the caller's
        media, or it counts as the ring failing; only then is it the queue's ``ring_answered``, which
        connects the two."""
        self.queue.handle_timer(now)
        self._pump(now)
        anchor = self._b2bua.ivr_media
        call_id, agent = ring.call_id, ring.agent
        if anchor is not None and ring.leg in self._ring_legs and self.queue.ringing_for(agent) == call_id:
            try:
                anchor.answer_from_local(call_id, sdp or b"")
            except MediaRefused as exc:
                log.warning("agent %s answer refused: %d %s", agent, exc.status, exc.reason,
                            extra={"ctx": {"call": call_id}})  # fmt: skip
                self._forget(ring)
                ring.leg.handle(Disconnect(Cause.from_sip(exc.status, exc.reason)), now)
                self.queue.ring_failed(call_id, agent, now)
                return
        self.queue.ring_answered(call_id, agent, now)  # a ring no longer wanted: RejectAnswer

    def _connect(self, call_id: str, agent: str, now: float) -> None:
        """The queue connected ``agent``, whose answer the anchor has taken (:meth:`_answered`)."""
        ring = self._rings.get((call_id, agent))
        queued = self._queued.pop(call_id, None)
        if ring is None or queued is None:  # not reached: an answer is connected only while both exist
            self.queue.agent_free(agent, now)
            self._hang_up_ring(call_id, agent, ANSWERED_ELSEWHERE, now)
            return
        self._forget(ring)
        call = queued.ivr.call
        log.info("caller connected to agent %s", agent, extra={"ctx": {"call": call_id}})
        self._connected[call_id] = _Connected(queued.ivr, agent, ring.leg)
        # The call stays on its route (``ivr``): a transfer within the local IVR is not a failover, and the
        # session keeps the call (the agent may hand the caller back to it).
        call.b = ring.leg
        queued.ivr.session.transfer_answered(agent, now)
        queued.ivr.pump(now)

    def _hang_up_ring(self, call_id: str, agent: str, cause: Cause, now: float) -> None:
        ring = self._rings.get((call_id, agent))
        if ring is not None:
            self._forget(ring)
            ring.leg.handle(Disconnect(cause), now)  # CANCEL while it rings, BYE once answered

    def _forget(self, ring: _Ring) -> None:
        self._rings.pop((ring.call_id, ring.agent), None)
        self._ring_legs.pop(ring.leg, None)
