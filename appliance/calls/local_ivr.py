"""The local IVR side of call control: calls answered by an IVR session, answered cloud calls rescued
into one, and the cloud's calls moved off it when the appliance turns survivable.

Theory of operation. A destination ``ivr:<flow>`` gets an :class:`~appliance.calls.ivr_leg.IvrLeg` as its b
leg, answered on the IVR's media anchor. An answered call whose cloud leg fails (a BYE with a failure
cause, Q.850 §2.2.5 classes 32–127; a media timeout; the WAN gone) is *rescued*: its caller leg is adopted
by the rescue flow on the port it already uses, so the caller is neither re-answered nor dropped. The
sessions are known here by call id from answer until each has persisted its last record, which may be
after the caller hung up; the appliance's answers (an outbox append committed or failed, a worker command
refused, a worker event) reach them through :class:`LocalIvr`.

When the WAN or the cloud is lost (the survivable-mode machine turns SURVIVABLE) every call on the cloud
leaves it at once (:meth:`LocalIvr.cloud_lost`), as survivable branch systems (Cisco SRST, AudioCodes SBA)
do: answered calls are rescued as above, and a call whose cloud INVITE has no final answer yet (nothing
back, 100, 180 or 183 with early media) has it CANCELled (RFC 3261 §9.1) and goes on to its route's next
destination exactly as though the cloud had refused it, rather than ringing on a dead cloud until the
INVITE times out (Timer B, 64·T1 = 32 s, §17.1.1.2). The cloud is unavailable by then, so route
selection skips it (a default route goes on to ``ivr:default``). A 200 that crosses the CANCEL reaches a
leg that has ended, which acknowledges it and hangs up at once (§15): it is never bridged.

A session's transfer to a local agent group is the agent transfer's
(:class:`~appliance.calls.agent_transfer.AgentTransfer`), to which each IVR leg speaks directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.calls import causes
from appliance.calls.causes import Cause
from appliance.calls.events import Disconnect, Fail, Setup
from appliance.calls.ivr_leg import IvrLeg
from appliance.media.control_events import DtmfEvent, PlayDone, RecordDone, WorkerEvent

if TYPE_CHECKING:
    from collections.abc import Callable

    from appliance.calls.b2bua import B2bua, Call
    from appliance.calls.ivr_leg import Session
    from appliance.calls.media_anchor import MediaAnchor

log = logging.getLogger("appliance.calls")


@dataclass(frozen=True, slots=True)
class CloudLost:
    """What :meth:`LocalIvr.cloud_lost` did: ``rescued`` answered cloud calls into the rescue flow and
    ``moved`` calls still setting up their cloud leg to their route's next destination."""

    rescued: int
    moved: int


class LocalIvr:
    """The B2BUA's IVR sessions. ``sessions(call_id, flow, setup, rescued)`` makes a session (None without
    such a flow); ``media`` is the anchor whose workers run them; ``rescue_flow`` is where answered cloud
    calls go when their cloud leg fails (None: they are released)."""

    def __init__(
        self,
        b2bua: B2bua,
        *,
        sessions: Callable[[str, str, Setup, bool], Session | None] | None,
        media: MediaAnchor | None,
        rescue_flow: str | None,
    ) -> None:
        self._b2bua = b2bua
        self.sessions = sessions
        self.media = media
        self.rescue_flow = rescue_flow
        self.legs: dict[str, IvrLeg] = {}

    def new_leg(self, call: Call, flow: str, setup: Setup, *, rescued: bool) -> IvrLeg | None:
        """An IVR leg for ``call`` running ``flow``; None (``call.last_cause`` says why) without one."""
        if self.sessions is None or self.media is None:
            log.info("call %s: no local IVR configured", call.id)
            return None
        session = self.sessions(call.id, flow, setup, rescued)
        if session is None:
            call.last_cause = causes.Cause(47, 503, f"No IVR flow {flow!r}")
            log.warning("no IVR flow %r", flow, extra={"ctx": {"call": call.id}})
            return None
        return IvrLeg(self._b2bua, call, flow, session)

    def try_destination(self, call: Call, flow: str, now: float) -> bool:
        """Route ``call`` to ``ivr:<flow>``: False when the destination is unavailable."""
        ivr = self.new_leg(call, flow, call.setup, rescued=False)
        if ivr is None:
            return False
        anchor = self._b2bua.media_anchor
        if anchor is not None and call.b_setup is not None:
            # An earlier relayed destination anchored the caller's offer; the IVR answers it afresh.
            anchor.release(call.id)
            call.b_setup = None
        self._b2bua.route(call, "ivr")
        call.forks.append(ivr)
        ivr.start(call.setup, now)
        return True

    # ------------------------------------------------------------------------------- rescue
    def rescue(self, call: Call, cause: Cause, now: float) -> bool:
        """Move an answered call whose cloud leg failed into the rescue flow, on the caller's existing
        media leg: the caller is neither re-answered nor dropped. False when the call cannot be rescued
        (no rescue flow, not a cloud call, the caller's media not G.711); the caller must then be released.
        """
        b2bua = self._b2bua
        anchor = b2bua.media_anchor
        flow = self.rescue_flow
        b = call.b
        if flow is None or anchor is None or anchor is not self.media:
            return False
        if not call.answered or b is None or b.route_kind != "cloud" or not anchor.can_adopt_local(call.id):
            return False
        ivr = self.new_leg(call, flow, call.setup, rescued=True)
        if ivr is None:
            return False
        anchor.adopt_local(call.id)
        log.warning(
            "cloud leg failed (Q.850 cause %d%s): call rescued into IVR flow %r",
            cause.q850, f", {cause.text}" if cause.text else "", flow,
            extra={"ctx": {"call": call.id, "q850": cause.q850}},
        )  # fmt: skip
        b.handle(Disconnect(cause), now)  # a leg that has not ended yet (a media timeout) is released
        call.b = ivr
        call.b_setup = None
        b2bua.route(call, "ivr")
        b2bua.observer.call_rescued()
        body = {"call_id": call.id, "from": "cloud", "q850": cause.q850, "reason": cause.text, "flow": flow}
        b2bua.persist_requests.append((call.id, 0, "call.rescued", body))
        ivr.adopt(now)
        return True

    def rescue_cloud_calls(self, reason: str, now: float) -> int:
        """The WAN or the cloud is gone: rescue every answered call on a cloud leg now rather than waiting
        for each one's media timeout. Returns how many were rescued."""
        cause = cloud_gone(reason)
        rescued = 0
        for call in list(self._b2bua.calls.values()):
            if call.answered and call.b is not None and call.b.route_kind == "cloud" and not call.ended:
                rescued += self.rescue(call, cause, now)
        return rescued

    def cloud_lost(self, reason: str, now: float) -> CloudLost:
        """The WAN or the cloud is gone (the appliance turned SURVIVABLE): answered cloud calls are rescued
        (:meth:`rescue_cloud_calls`) and calls whose cloud leg is not answered yet leave it for their
        route's next destination (:meth:`leave_cloud`). Call it once the cloud counts as unavailable, so
        that route selection skips it."""
        rescued = self.rescue_cloud_calls(reason, now)
        cause = cloud_gone(reason)
        moved = sum(self.leave_cloud(call, cause, now) for call in list(self._b2bua.calls.values()))
        return CloudLost(rescued, moved)

    def leave_cloud(self, call: Call, cause: Cause, now: float) -> bool:
        """CANCEL ``call``'s unanswered cloud INVITE and try the route's next destination, as a cloud
        refusal with ``cause`` would: the record shows the cloud leg failed with it, and with no
        destination left the caller is refused with it. False (nothing done) for an answered or ended
        call, or one whose current attempt is not the cloud."""
        if call.answered or call.ended:
            return False
        legs = [leg for leg in call.forks if leg.route_kind == "cloud"]
        if not legs:
            return False
        log.warning(
            "cloud lost while its leg was being set up (%s): INVITE cancelled, next destination tried",
            cause.text, extra={"ctx": {"call": call.id, "q850": cause.q850}},
        )  # fmt: skip
        for leg in legs:
            # The leg sends CANCEL, or holds it until a provisional response comes (§9.1); from now on it
            # ACKs and BYEs a 2xx and swallows the 487, so the only failure call control sees is this one.
            leg.handle(Disconnect(cause), now)
            call.from_leg(leg, Fail(cause), now)
        return True

    # ----------------------------------------------------------------------- the sessions' life
    def started(self, leg: IvrLeg) -> None:
        self.legs[leg.call_id] = leg

    def ended(self, leg: IvrLeg) -> None:
        if self.legs.get(leg.call_id) is leg:
            del self.legs[leg.call_id]

    def hang_up(self, leg: IvrLeg, cause: Cause, now: float) -> None:
        """The flow ended the call (a hang-up node)."""
        call = leg.call
        if not call.ended:
            self._b2bua.cdr.released(call.id, "appliance", cause)
            call.a.handle(Disconnect(cause), now)
            self._b2bua.finish(call, now)

    # ----------------------------------------------------------------- the appliance's answers
    def persisted(self, call_id: str, token: int, now: float) -> None:
        leg = self.legs.get(call_id)
        if leg is not None and token:
            leg.persisted(token, now)

    def persist_failed(self, call_id: str, token: int, reason: str, now: float) -> None:
        leg = self.legs.get(call_id)
        if leg is not None and token:
            leg.persist_failed(token, reason, now)

    def command_failed(self, call_id: str, command: object, reason: str, now: float) -> None:
        leg = self.legs.get(call_id)
        if leg is not None:
            leg.command_failed(command, reason, now)

    def media_event(self, call_id: str, event: WorkerEvent, now: float) -> bool:
        """Give a worker event to the call's session; False when it is not the session's. Digits are the
        session's only while it has the caller: once an agent has the call they are relayed to the agent."""
        leg = self.legs.get(call_id)
        if leg is None:
            return False
        if isinstance(event, (PlayDone, RecordDone)) or (
            isinstance(event, DtmfEvent) and (leg.call.ended or leg.call.b is leg)
        ):
            leg.media_event(event, now)
            return True
        return False


def cloud_gone(reason: str) -> Cause:
    """The cause calls leave the cloud with when it is lost: Q.850 cause 38, network out of order."""
    return Cause(38, 503, f"Network out of order: {reason}")
