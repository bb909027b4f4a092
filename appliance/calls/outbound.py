"""Trying one destination of a call's route: the legs the B2BUA opens towards it.

Theory of operation. :meth:`Outbound.try_destination` opens the b leg (or legs) for one destination of the
route and returns True, or returns False at once when the destination cannot be tried (the cloud
unreachable, no agent registered, no such IVR flow, a PRI span absent or down); ``call.last_cause`` then
says why and the B2BUA tries the next destination. Relayed destinations (the cloud, a trunk, an agent group,
a PRI span) receive the caller's Setup with its offer anchored once per call (:meth:`Outbound.b_setup`), so
that forks and failover reuse one anchored offer. PRI spans are reached through an injected
:class:`PriDialer` (the PRI gateway), so call control knows nothing of Q.931.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Final, Protocol

from appliance.calls import causes
from appliance.calls.causes import Cause
from appliance.calls.errors import MediaRefused
from appliance.calls.sip_leg import SipLeg
from appliance.sip.dialog import uri_to_peer
from appliance.sip.errors import DecodeError
from appliance.sip.uri import SipUri, parse_sip_uri

if TYPE_CHECKING:
    from appliance.calls.b2bua import B2bua, Call, Destination, Leg
    from appliance.calls.events import Setup

log = logging.getLogger("appliance.calls")

# A ``pri:<span>`` destination whose span is not configured, not up, or has no free B-channel: Q.850 34
# "no circuit/channel available", which RFC 3398 §8.2.6.1 maps to 503.
NO_CIRCUIT: Final = causes.Cause(34, 503, "No circuit/channel available")


class PriDialer(Protocol):
    """Places calls on PRI spans (the PRI gateway).

    ``dial`` starts a call on ``span`` for ``call`` with ``setup`` (its SDP the offer the span's B-channel
    media is to send to) and returns the new leg, which reports to ``call`` like any other leg; None when
    the span is absent or its D-channel is down (the destination fails with cause 34, unless the dialer set
    ``call.last_cause`` to say why, e.g. an offer the span cannot carry). The leg reports nothing to
    ``call`` before ``dial`` returns.
    """

    def dial(self, span: int, call: Call, setup: Setup, now: float) -> Leg | None: ...


class Outbound:
    """The B2BUA's destinations (see the module docstring); ``pri`` None: ``pri:`` destinations fail."""

    __slots__ = ("_b2bua", "pri")

    def __init__(self, b2bua: B2bua, *, pri: PriDialer | None = None) -> None:
        self._b2bua = b2bua
        self.pri = pri

    def try_destination(self, call: Call, dest: Destination, now: float) -> bool:
        b2bua = self._b2bua
        kind = dest.kind
        if kind == "cloud":
            if b2bua.cloud_trunk is None or not b2bua.cloud_available():
                return False
            return self._dial_trunk(call, b2bua.cloud_trunk, now, "cloud")
        if kind == "trunk":
            try:
                trunk = parse_sip_uri(dest.target)
            except DecodeError:
                return False
            return self._dial_trunk(call, trunk, now, "trunk")
        if kind == "ivr":
            return b2bua.local_ivr.try_destination(call, dest.target, now)
        if kind == "agents":
            contacts = b2bua.agents(dest.target)
            if not contacts:
                call.last_cause = causes.Cause(20, 480, "No agent registered")
                return False
            b_setup = self.b_setup(call)
            if b_setup is None:
                return False
            b2bua.route(call, "agents")
            for uri, peer in contacts:
                leg = SipLeg(b2bua, call, role="uac", peer=peer, route_kind="agents")
                call.forks.append(leg)
                leg.send_invite(b_setup, uri, now)
            return True
        if kind == "pri":
            return self._dial_pri(call, dest.target, now)
        log.info("call %s: destination %s:%s not available", call.id, kind, dest.target)
        return False

    def b_setup(self, call: Call) -> Setup | None:
        """The Setup for a relayed destination: the caller's, with its offer anchored (once per call).

        None when the offer cannot be anchored; ``call.last_cause`` then says why (488 or 503).
        """
        b2bua = self._b2bua
        anchor = b2bua.media_anchor
        if anchor is None:
            return call.setup
        if call.b_setup is not None:
            return call.b_setup
        options = b2bua.route_media.get(call.route_match or "")
        sdp = call.setup.sdp
        try:
            anchor.configure(call.id, options)
            # A delayed offer (no SDP) is anchored when the callee's offer comes back in its answer.
            offer = None if sdp is None else anchor.sdp_from(call.id, "a", sdp)
        except MediaRefused as exc:
            anchor.release(call.id)
            call.last_cause = Cause.from_sip(exc.status, exc.reason)
            log.warning("call media refused: %d %s", exc.status, exc.reason, extra={"ctx": {"call": call.id}})
            return None
        call.b_setup = replace(call.setup, sdp=offer)
        return call.b_setup

    def _dial_trunk(self, call: Call, trunk: SipUri, now: float, kind: str) -> bool:
        b2bua = self._b2bua
        setup = self.b_setup(call)
        if setup is None:
            return False
        port = f":{trunk.port}" if trunk.port else ""
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in trunk.params.items())
        uri = f"{trunk.scheme}:{setup.called or 'anonymous'}@{trunk.host}{port}{params}"
        leg = SipLeg(b2bua, call, role="uac", peer=uri_to_peer(trunk), route_kind=kind)
        b2bua.route(call, kind)
        call.forks.append(leg)
        leg.send_invite(setup, uri, now)
        return True

    def _dial_pri(self, call: Call, target: str, now: float) -> bool:
        span = int(target) if target.isascii() and target.isdigit() else None
        if self.pri is None or span is None:
            log.info("call %s: no PRI span %s", call.id, target, extra={"ctx": {"call": call.id}})
            call.last_cause = NO_CIRCUIT
            return False
        setup = self.b_setup(call)
        if setup is None:
            return False
        before = call.last_cause
        leg = self.pri.dial(span, call, setup, now)
        if leg is None:
            log.info("call %s: PRI span %d unavailable", call.id, span, extra={"ctx": {"call": call.id}})
            if call.last_cause is before:
                call.last_cause = NO_CIRCUIT
            return False
        self._b2bua.route(call, "pri")
        call.forks.append(leg)
        return True
