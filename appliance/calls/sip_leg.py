"""A SIP call leg: renders call-control events into SIP and SIP into call-control events.

One class serves both roles. The *inbound* leg (role ``uas``) was created by an INVITE that reached the
appliance; the *outbound* leg (role ``uac``) sends the INVITE towards a destination. Once a dialog exists both
behave alike: BYE, re-INVITE, UPDATE and INFO flow either way.

Topology hiding: an outbound leg is built from the call-control :class:`Setup` alone — new Call-ID, tags,
branch, our own Via and Contact, no Record-Route or Route copied — so nothing of one leg's addressing
reaches the other.

Session timers (RFC 4028) are per leg: each leg negotiates its own interval and refresher; the leg that
refreshes sends an UPDATE (or a re-INVITE with its last SDP when the peer does not allow UPDATE) at half
the interval; the leg that polices releases the call when no refresh came in time (§10).
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

from appliance.calls import causes
from appliance.calls.causes import Cause
from appliance.calls.context import ALLOW, SUPPORTED
from appliance.calls.events import (
    Answer,
    CallEvent,
    Disconnect,
    Dtmf,
    Fail,
    Info,
    Progress,
    Redirect,
    Ringing,
    Setup,
    Update,
    UpdateAnswer,
    UpdateRejected,
)
from appliance.sip.builder import make_request
from appliance.sip.dialog import Dialog, uri_to_peer
from appliance.sip.errors import DecodeError
from appliance.sip.events import Peer
from appliance.sip.headers import parse_contacts, parse_reason, parse_session_expires
from appliance.sip.message import Request, Response
from appliance.sip.transaction import ClientTransaction, ServerTransaction, TxState
from appliance.sip.uri import TelUri, parse_uri

if TYPE_CHECKING:
    from appliance.calls.b2bua import B2bua, Call

log = logging.getLogger("appliance.calls.sip")


class LegState(enum.Enum):
    IDLE = "idle"
    CALLING = "calling"  # INVITE sent / received, no final response yet
    EARLY = "early"
    ANSWERED = "answered"
    ENDED = "ended"


def _sdp_of(message: Request | Response) -> bytes | None:
    if not message.body:
        return None
    ctype = (message.headers.get("content-type") or "").split(";")[0].strip().lower()
    return message.body if ctype == "application/sdp" else None


def _allows_update(message: Request | Response) -> bool:
    """RFC 3311 §5.1: UPDATE may be sent to a peer that listed it in Allow."""
    return any(m.upper() == "UPDATE" for m in message.headers.get_all("allow"))


def _dtmf_from_info(request: Request) -> Dtmf | None:
    """application/dtmf-relay (``Signal=5\\nDuration=160``) or application/dtmf (a bare digit)."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    text = request.body.decode("utf-8", "replace")
    if ctype == "application/dtmf-relay":
        fields = dict(
            (k.strip().lower(), v.strip()) for k, _, v in (line.partition("=") for line in text.splitlines())
        )
        digit = fields.get("signal", "")
        duration = fields.get("duration", "100")
        if len(digit) == 1 and digit in "0123456789*#ABCDabcd":
            return Dtmf(digit.upper(), int(duration) if duration.isdigit() else 100)
    elif ctype == "application/dtmf" and len(text.strip()) == 1:
        return Dtmf(text.strip().upper())
    return None


class SipLeg:
    """One SIP side of a call; see the module docstring."""

    __slots__ = (
        "_ack",
        "_ack_held",
        "_b2bua",
        "_last_local_sdp",
        "_last_remote_sdp",
        "_offer_in_ack",
        "_pending_in",
        "_pending_out",
        "_refreshing",
        "call",
        "dialog",
        "invite",
        "invite_in",
        "local_tag",
        "peer",
        "refresher",
        "role",
        "route_kind",
        "session_interval",
        "state",
        "target_uri",
        "timer_due",
        "update_allowed",
    )

    def __init__(self, b2bua: B2bua, call: Call, *, role: str, peer: Peer, route_kind: str = "local") -> None:
        self._b2bua = b2bua
        self.call = call
        self.role = role
        self.peer = peer
        self.route_kind = route_kind
        self.state = LegState.IDLE
        self.local_tag = b2bua.ctx.ids.tag()
        self.dialog: Dialog | None = None
        self.invite: ClientTransaction | None = None  # our INVITE (outbound leg)
        self.invite_in: ServerTransaction | None = None  # their INVITE (inbound leg)
        self.target_uri = ""
        self._ack: Request | None = None
        # Delayed offer (RFC 3261 §13.2.1, an INVITE without SDP): the offer travels in the 2xx and the
        # answer in the ACK. The inbound leg then waits for the caller's ACK; the outbound leg holds its
        # own ACK until that answer has crossed the B2BUA.
        self._offer_in_ack = False
        self._ack_held = False
        self._pending_in: ServerTransaction | None = None  # a re-INVITE/UPDATE we must answer
        self._pending_out: ClientTransaction | None = None  # our re-INVITE/UPDATE awaiting its answer
        self._refreshing = False  # _pending_out is a session refresh of our own, not the other leg's offer
        self._last_local_sdp: bytes | None = None
        self._last_remote_sdp: bytes | None = None
        self.session_interval: int | None = None
        self.refresher = False  # True when this appliance refreshes the session on this leg
        self.timer_due: float | None = None
        self.update_allowed = False  # the peer listed UPDATE in Allow: refreshes need no SDP then

    # ------------------------------------------------------------------------------------ inbound
    def accept_invite(self, txn: ServerTransaction, now: float) -> Setup:
        """Adopt an initial INVITE (already vetted by the B2BUA) and return the Setup it asks for."""
        request = txn.request
        self.invite_in = txn
        txn.tu_data = self
        txn.local_tag = self.local_tag
        self.state = LegState.CALLING
        self._last_remote_sdp = _sdp_of(request)
        self.update_allowed = _allows_update(request)
        from_ = request.from_
        user = self._b2bua.called_user(request)
        try:
            caller = parse_uri(from_.uri)
            calling = caller.number if isinstance(caller, TelUri) else (caller.user or "")
        except DecodeError:
            calling = ""  # an unparseable or non-SIP From still gets its call, anonymously
        se = request.headers.get("session-expires")
        interval = parse_session_expires(se)[0] if se is not None else None  # vetted by the B2BUA
        max_forwards = int(request.headers.get("max-forwards") or 70)
        return Setup(
            called=user,
            calling=calling,
            calling_name=from_.display_name,
            sdp=self._last_remote_sdp,
            max_forwards=max_forwards - 1,
            session_expires=interval,
        )

    # ------------------------------------------------------------------------------------ outbound
    def send_invite(self, setup: Setup, request_uri: str, now: float) -> None:
        ctx = self._b2bua.ctx
        transport = self.peer.transport
        display = f'"{setup.calling_name}" ' if setup.calling_name else ""
        calling = setup.calling or "anonymous"
        host = request_uri.split("@", 1)[-1].split(";", 1)[0]
        extra = [
            ("Allow", ALLOW),
            ("Supported", SUPPORTED),
            ("Session-Expires", str(max(ctx.session_expires, ctx.min_se))),
            ("Min-SE", str(ctx.min_se)),
            ("User-Agent", ctx.user_agent),
        ]
        request = make_request(
            "INVITE",
            request_uri,
            via=ctx.via(transport),
            from_=f"{display}<sip:{calling}@{ctx.domain}>;tag={self.local_tag}",
            to=f"<sip:{setup.called}@{host}>",
            call_id=ctx.ids.call_id(),
            cseq=1,
            max_forwards=setup.max_forwards,
            contact=ctx.contact(transport),
            extra=extra,
            body=setup.sdp or b"",
            content_type="application/sdp" if setup.sdp else None,
        )
        self.target_uri = request_uri
        self._last_local_sdp = setup.sdp
        self.state = LegState.CALLING
        self.invite = ctx.endpoint.send_request(request, self.peer, now)
        self.invite.tu_data = self
        self._b2bua.index_leg(request.call_id, self.local_tag, self)
        self.timer_due = now + ctx.no_answer_timeout
        self._b2bua.arm(self)

    # ---------------------------------------------------------------- events from the other leg
    def handle(self, event: CallEvent, now: float) -> None:
        if self.state is LegState.ENDED:
            return
        if isinstance(event, (Ringing, Progress)):
            self._provisional(180 if isinstance(event, Ringing) else 183, event.sdp)
        elif isinstance(event, Answer):
            self._answer(event.sdp, now)
        elif isinstance(event, (Fail, Disconnect)):
            self._release(event.cause, now)
        elif isinstance(event, Update):
            self._send_update(event.sdp, now)
        elif isinstance(event, UpdateAnswer):
            if self._ack_held:
                self._send_held_ack(event.sdp)
            else:
                self._answer_update(200, event.sdp)
        elif isinstance(event, UpdateRejected):
            self._answer_update(event.cause.sip_status if event.cause.sip_status >= 400 else 488, None)
        elif isinstance(event, Dtmf):
            body = f"Signal={event.digit}\r\nDuration={event.duration_ms}\r\n".encode()
            self._in_dialog("INFO", now, body=body, content_type="application/dtmf-relay")
        elif isinstance(event, Info):
            self._in_dialog("INFO", now, body=event.body, content_type=event.content_type)

    def _provisional(self, status: int, sdp: bytes | None) -> None:
        txn = self.invite_in
        if txn is None or txn.state is not TxState.PROCEEDING:
            return
        if sdp is not None:
            self._last_local_sdp = sdp
        txn.respond(
            status,
            to_tag=self.local_tag,
            extra=[("Contact", self._b2bua.ctx.contact(self.peer.transport))],
            body=sdp or b"",
            content_type="application/sdp" if sdp else None,
        )
        if self.dialog is None:
            self.dialog = Dialog.as_uas(txn.request, self.local_tag)
            self._b2bua.index_leg(self.dialog.call_id, self.local_tag, self)
        self.state = LegState.EARLY

    def _answer(self, sdp: bytes | None, now: float) -> None:
        txn = self.invite_in
        if txn is None or txn.state is not TxState.PROCEEDING:
            return
        ctx = self._b2bua.ctx
        request = txn.request
        extra = [("Contact", ctx.contact(self.peer.transport)), ("Allow", ALLOW), ("Supported", SUPPORTED)]
        extra += self._negotiate_uas_timer(request, now)
        if sdp is not None:
            self._last_local_sdp = sdp
            self._offer_in_ack = self._last_remote_sdp is None
        txn.respond(
            200,
            to_tag=self.local_tag,
            extra=extra,
            body=sdp or b"",
            content_type="application/sdp" if sdp else None,
        )
        if self.dialog is None:
            self.dialog = Dialog.as_uas(request, self.local_tag)
            self._b2bua.index_leg(self.dialog.call_id, self.local_tag, self)
        self.dialog.early = False
        self.state = LegState.ANSWERED

    def _negotiate_uas_timer(self, request: Request, now: float) -> list[tuple[str, str]]:
        """RFC 4028 §9: echo the interval; let a timer-capable caller refresh, else refresh ourselves."""
        ctx = self._b2bua.ctx
        se = request.headers.get("session-expires")
        supported = "timer" in (request.headers.get("supported") or "").lower()
        if se is None and not supported:
            return []
        interval, asked = ctx.session_expires, None
        if se is not None:
            interval, asked = parse_session_expires(se)  # vetted by the B2BUA
        refresher = asked or ("uac" if supported else "uas")
        self.session_interval = interval
        self.refresher = refresher == "uas"
        self._arm_session_timer(now)
        extra = [("Session-Expires", f"{interval};refresher={refresher}")]
        if refresher == "uac":
            extra.append(("Require", "timer"))
        return extra

    def _arm_session_timer(self, now: float) -> None:
        if self.session_interval is None:
            return
        interval = self.session_interval
        if self.refresher:
            self.timer_due = now + interval / 2
        else:
            # RFC 4028 §10: the non-refresher waits the interval minus min(32 s, interval/3).
            self.timer_due = now + interval - min(32, interval / 3)
        self._b2bua.arm(self)

    def _release(self, cause: Cause, now: float) -> None:
        """Fail or Disconnect from the other side: end this leg the way its state requires."""
        state = self.state
        self.state = LegState.ENDED
        self.timer_due = None
        ctx = self._b2bua.ctx
        where = f";location={cause.reason_location}" if cause.reason_location else ""  # RFC 8606
        extra = [("Reason", f'Q.850;cause={cause.q850};text="{cause.text}"{where}')] if cause.text else []
        if self.invite_in is not None and self.invite_in.state is TxState.PROCEEDING:
            status = cause.sip_status if cause.sip_status >= 300 else 480
            # RFC 6432: a PSTN cause (one a PRI span gave, with its location) goes in the response as well.
            extra = extra if cause.location is not None else []
            self.invite_in.respond(status, cause.text or None, to_tag=self.local_tag, extra=extra)
        elif self.invite is not None and state in (LegState.CALLING, LegState.EARLY):
            ctx.endpoint.cancel(self.invite, now)
        elif state is LegState.ANSWERED and self.dialog is not None:
            self._in_dialog("BYE", now, extra=extra, force=True)
        self._b2bua.leg_ended(self)

    # ------------------------------------------------------------------------- SIP from our peer
    def on_response(self, response: Response, txn: ClientTransaction, now: float) -> None:
        if txn is self.invite:
            self._invite_response(response, now)
        elif txn is self._pending_out:
            self._update_response(response, txn, now)
        elif txn.request.method == "BYE":
            self._b2bua.leg_ended(self)

    def _invite_response(self, response: Response, now: float) -> None:
        status = response.status
        assert self.invite is not None
        if status < 200:
            if status == 100:
                return
            if response.to.tag and self.dialog is None:
                self.dialog = Dialog.as_uac(self.invite.request, response)
            self.state = LegState.EARLY
            sdp = _sdp_of(response)
            event: CallEvent = Ringing(sdp) if status in (180, 181, 182) else Progress(sdp)
            self.call.from_leg(self, event, now)
            return
        if status < 300:
            self._invite_accepted(response, now)
            return
        if self.state is LegState.ENDED:
            return
        self.state = LegState.ENDED
        self.timer_due = None
        if 300 <= status < 400:
            try:
                contacts = parse_contacts(response.headers.get_all("contact")) or []
            except DecodeError:
                contacts = []
            self.call.from_leg(self, Redirect(tuple(c.uri for c in contacts)), now)
        else:
            self.call.from_leg(self, Fail(Cause.from_sip(status, response.reason)), now)
        self._b2bua.leg_ended(self)

    def _invite_accepted(self, response: Response, now: float) -> None:
        assert self.invite is not None
        ctx = self._b2bua.ctx
        if self.dialog is None or self.dialog.remote_tag != (response.to.tag or ""):
            self.dialog = Dialog.as_uac(self.invite.request, response)
        self.dialog.early = False
        self.dialog.update_target(response)
        if self._ack is not None or self._ack_held:
            self.resend_ack()  # a retransmitted 2xx: our ACK was lost (or is still being held)
            return
        offer = _sdp_of(response)
        if self._last_local_sdp is None and offer is not None and self.state is not LegState.ENDED:
            self._ack_held = True  # delayed offer: the ACK must carry the caller's answer
        else:
            # §13.2.2.4: the ACK for a 2xx is a new request in the dialog, sent to the remote target.
            self._ack = self.dialog.create_request(
                "ACK", via=ctx.via(self.peer.transport), cseq=self.invite.request.cseq[0]
            )
            ctx.endpoint.send_stateless(self._ack, self._dialog_peer())
        if self.state is LegState.ENDED:
            # The other side gave up while this 2xx was in flight: acknowledge, then hang up (§15).
            self._in_dialog("BYE", now, force=True)
            return
        first = self.state is not LegState.ANSWERED
        self.state = LegState.ANSWERED
        self.update_allowed = _allows_update(response)
        self._negotiate_uac_timer(response, now)
        if first:
            self.call.from_leg(self, Answer(_sdp_of(response)), now)

    def _send_held_ack(self, sdp: bytes | None) -> None:
        assert self.dialog is not None and self.invite is not None
        self._ack_held = False
        self._last_local_sdp = sdp
        self._ack = self.dialog.create_request(
            "ACK", via=self._b2bua.ctx.via(self.peer.transport), cseq=self.invite.request.cseq[0],
            body=sdp or b"", content_type="application/sdp" if sdp else None,
        )  # fmt: skip
        self._b2bua.ctx.endpoint.send_stateless(self._ack, self._dialog_peer())

    def on_ack(self, request: Request, now: float) -> None:
        """The caller's ACK for our 2xx; after a delayed offer it carries the answer for the other leg."""
        if self._offer_in_ack:
            self._offer_in_ack = False
            sdp = _sdp_of(request)
            self._last_remote_sdp = sdp
            self.call.from_leg(self, UpdateAnswer(sdp), now)

    def resend_ack(self) -> None:
        """A 2xx arrived again after the INVITE transaction ended: our ACK was lost (§13.2.2.4)."""
        if self._ack is not None and self.dialog is not None:
            self._b2bua.ctx.endpoint.send_stateless(self._ack, self._dialog_peer())

    def _negotiate_uac_timer(self, response: Response, now: float) -> None:
        se = response.headers.get("session-expires")
        self.timer_due = None
        if se is None:
            return
        try:
            interval, refresher = parse_session_expires(se)
        except DecodeError:
            return  # a malformed value from the callee: run this leg without a session timer
        self.session_interval = interval
        self.refresher = (refresher or "uac") == "uac"
        self._arm_session_timer(now)

    def on_request(self, request: Request, txn: ServerTransaction, now: float) -> None:
        """An in-dialog request from our peer (the B2BUA matched it to this leg)."""
        method = request.method
        txn.tu_data = self
        if self.dialog is not None and not self.dialog.accept_remote_seq(request.cseq[0]):
            txn.respond(500, "CSeq out of order")
            return
        if method == "BYE":
            txn.respond(200)
            if self.state is not LegState.ENDED:
                self.state = LegState.ENDED
                self.timer_due = None
                self.call.from_leg(self, Disconnect(bye_cause(request)), now)
                self._b2bua.leg_ended(self)
        elif method in ("INVITE", "UPDATE"):
            self._incoming_offer(request, txn, now)
        elif method == "INFO":
            txn.respond(200)
            dtmf = _dtmf_from_info(request)
            if dtmf is not None:
                self.call.from_leg(self, dtmf, now)
            elif request.body:
                ctype = request.headers.get("content-type") or "application/octet-stream"
                self.call.from_leg(self, Info(ctype, request.body), now)
        elif method == "OPTIONS":
            txn.respond(200, extra=[("Allow", ALLOW), ("Supported", SUPPORTED)])
        else:
            txn.respond(405, extra=[("Allow", ALLOW)])

    def _incoming_offer(self, request: Request, txn: ServerTransaction, now: float) -> None:
        """re-INVITE or UPDATE: a session refresh is answered here; a new offer goes to the other leg."""
        if self._pending_in is not None or self._pending_out is not None:
            txn.respond(491)  # RFC 3261 §14.2 glare: one offer at a time
            return
        if self.dialog is not None:
            self.dialog.update_target(request)
        sdp = _sdp_of(request)
        if self.session_interval is not None:
            self._arm_session_timer(now)
        if sdp is None or sdp == self._last_remote_sdp:
            self._respond_offer(txn, 200, self._last_local_sdp if request.method == "INVITE" else None)
            return
        self._last_remote_sdp = sdp
        self._pending_in = txn
        self.call.from_leg(self, Update(sdp), now)

    def _respond_offer(self, txn: ServerTransaction, status: int, sdp: bytes | None) -> None:
        ctx = self._b2bua.ctx
        extra = [("Contact", ctx.contact(self.peer.transport))]
        if self.session_interval is not None and status == 200:
            extra.append(("Session-Expires", f"{self.session_interval};refresher={self._refresher_name()}"))
        txn.respond(status, to_tag=self.local_tag, extra=extra, body=sdp or b"",
                    content_type="application/sdp" if sdp else None)  # fmt: skip

    def _refresher_name(self) -> str:
        we_are_uas = self.role == "uas"
        return "uas" if self.refresher == we_are_uas else "uac"

    def _answer_update(self, status: int, sdp: bytes | None) -> None:
        txn, self._pending_in = self._pending_in, None
        if txn is None or txn.state not in (TxState.TRYING, TxState.PROCEEDING):
            return
        if sdp is not None and status == 200:
            self._last_local_sdp = sdp
        self._respond_offer(txn, status, sdp if status == 200 else None)

    def _send_update(self, sdp: bytes | None, now: float) -> None:
        if self.state is not LegState.ANSWERED or self._pending_out is not None:
            self.call.from_leg(self, UpdateRejected(Cause.from_sip(491)), now)
            return
        self._last_local_sdp = sdp
        self._pending_out = self._in_dialog(
            "INVITE", now, body=sdp or b"", content_type="application/sdp" if sdp else None
        )

    def _update_response(self, response: Response, txn: ClientTransaction, now: float) -> None:
        if response.status < 200:
            return
        self._pending_out = None
        refresh, self._refreshing = self._refreshing, False
        if response.status < 300:
            if txn.request.method == "INVITE" and self.dialog is not None:
                ack = self.dialog.create_request(
                    "ACK", via=self._b2bua.ctx.via(self.peer.transport), cseq=txn.request.cseq[0]
                )
                self._b2bua.ctx.endpoint.send_stateless(ack, self._dialog_peer())
            if self.dialog is not None:
                self.dialog.update_target(response)
            sdp = _sdp_of(response)
            if sdp is not None:
                self._last_remote_sdp = sdp
            if self.session_interval is not None:
                self._arm_session_timer(now)
            if not refresh:
                self.call.from_leg(self, UpdateAnswer(sdp), now)
        elif response.status in (408, 481):
            # RFC 5057 §5.1: the dialog is gone on the far side.
            self._peer_gone(Cause.from_sip(response.status), now)
        elif not refresh:
            self.call.from_leg(self, UpdateRejected(Cause.from_sip(response.status)), now)

    # ----------------------------------------------------------------------------------- timers
    def on_timer(self, now: float) -> None:
        self.timer_due = None
        if self.state in (LegState.CALLING, LegState.EARLY) and self.invite is not None:
            # Timer C: no final answer in time; give up on this destination.
            self.state = LegState.ENDED
            self._b2bua.ctx.endpoint.cancel(self.invite, now)
            self.call.from_leg(self, Fail(causes.NO_ANSWER), now)
            self._b2bua.leg_ended(self)
        elif self.state is LegState.ANSWERED and self.session_interval is not None:
            if self.refresher:
                self._refresh(now)
            else:
                self._peer_gone(causes.SESSION_EXPIRED, now)

    def _refresh(self, now: float) -> None:
        if self._pending_out is None:
            method = "UPDATE" if self.update_allowed else "INVITE"
            sdp = None if method == "UPDATE" else self._last_local_sdp
            txn = self._in_dialog(
                method, now, body=sdp or b"", content_type="application/sdp" if sdp else None
            )
            if txn is not None:
                self._refreshing = True
                self._pending_out = txn
        self._arm_session_timer(now)

    def on_timeout(self, txn: ClientTransaction, now: float) -> None:
        """Timer B/F: our request got no answer."""
        if txn is self.invite:
            if self.state is not LegState.ENDED:
                self.state = LegState.ENDED
                self.timer_due = None
                self.call.from_leg(self, Fail(causes.TIMEOUT), now)
                self._b2bua.leg_ended(self)
        elif txn is self._pending_out:
            self._pending_out = None
            self._peer_gone(causes.TIMEOUT, now)
        elif txn.request.method == "BYE":
            self._b2bua.leg_ended(self)

    def on_ack_timeout(self, now: float) -> None:
        """Our 2xx was never acknowledged: RFC 3261 §13.3.1.4 says end the dialog with a BYE."""
        self._peer_gone(causes.TIMEOUT, now)

    def on_cancel(self, now: float) -> None:
        txn = self.invite_in
        if txn is not None and txn.state is TxState.PROCEEDING:
            txn.respond(487, to_tag=self.local_tag)
        if self.state is not LegState.ENDED:
            self.state = LegState.ENDED
            self.timer_due = None
            self.call.from_leg(self, Disconnect(causes.ORIGINATOR_CANCEL), now)
            self._b2bua.leg_ended(self)

    def _peer_gone(self, cause: Cause, now: float) -> None:
        if self.state is LegState.ENDED:
            return
        self.state = LegState.ENDED
        self.timer_due = None
        self._in_dialog("BYE", now, force=True)
        self.call.from_leg(self, Disconnect(cause), now)
        self._b2bua.leg_ended(self)

    # ----------------------------------------------------------------------------------- helpers
    def _dialog_peer(self) -> Peer:
        """Requests in the dialog go where the peer asked (Contact / route) — unless that is unusable, in
        which case the address the leg was set up with still works (a NATed phone's Contact often is not)."""
        if self.role == "uas" or self.dialog is None:
            return self.peer
        try:
            return uri_to_peer(self.dialog.next_hop())
        except DecodeError:
            return self.peer

    def _in_dialog(
        self,
        method: str,
        now: float,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        force: bool = False,
    ) -> ClientTransaction | None:
        if self.dialog is None or (self.state is not LegState.ANSWERED and not force):
            return None
        ctx = self._b2bua.ctx
        transport = self.peer.transport
        request = self.dialog.create_request(
            method,
            via=ctx.via(transport),
            contact=ctx.contact(transport) if method in ("INVITE", "UPDATE") else None,
            extra=extra,
            body=body,
            content_type=content_type,
        )
        txn = ctx.endpoint.send_request(request, self._dialog_peer(), now)
        txn.tu_data = self
        return txn


def bye_cause(request: Request) -> Cause:
    """Why the peer hung up: the Q.850 cause of its Reason header (RFC 3326 §2), or a SIP status there;
    normal clearing when it gives none. Call control tells a hang-up from a failure by it (a cloud leg
    that failed is rescued, one that hung up is not)."""
    value = request.headers.get("reason")
    if value:
        for protocol, cause, text in parse_reason(value):
            if protocol == "Q.850" and 1 <= cause <= 127:
                return Cause.from_q850(cause, text)
            if protocol == "SIP" and 300 <= cause <= 699:
                return Cause.from_sip(cause, text)
    return Cause.from_q850(16, "Normal call clearing")
