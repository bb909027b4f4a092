"""The PRI gateway: one span's Q.931 calls joined to call control (sans-I/O).

Theory of operation. A :class:`PriGateway` owns its span's Q.931 machine (:class:`~appliance.pri.q931.Q931`)
and the span's TDM worker (:class:`~appliance.calls.pri_leg.TdmMedia`, commands queued to the worker). The
span's glue (the asyncio service that owns the D-channel) feeds it what LAPD delivers
(:meth:`~PriGateway.receive`, :meth:`~PriGateway.link_established`, :meth:`~PriGateway.link_released`),
sends what :meth:`~PriGateway.data_to_send` returns and keeps one timer (:meth:`~PriGateway.get_timer`,
:meth:`~PriGateway.handle_timer`). Every input ends in :meth:`~PriGateway.pump`, which drains the machine's
events: each call's events go to its :class:`~appliance.calls.pri_leg.PriLeg`.

Incoming calls (Q.931 §5.2). A :class:`~appliance.pri.q931_events.CallOffered` has its numbers read as
E.164 (:mod:`appliance.pri.numbers`, per the span's :class:`~appliance.pri.numbers.SpanNumbering`), its
B-channel's timeslot opened in the TDM worker, and is answered with CALL PROCEEDING; a PriLeg becomes the
caller's leg of a new call (:meth:`B2bua.place_call <appliance.calls.b2bua.B2bua.place_call>`), its offer the
B-channel's SDP. A called number that cannot be read is cleared with cause 28 (invalid number format).

Overlap receiving (§5.2.4). When the SETUP lacks *sending complete* and the number is not yet complete, the
gateway sends SETUP ACKNOWLEDGE and collects the INFORMATION digits. A number is complete when sending
complete arrives, when it matches an exact route, or when it is a valid E.164 number that matches a route
(a prefix or the default route alone does not make it complete: ``+4930`` matches ``+4930*`` and ``*``).
The digit timeout, like T302 (EN 300 403-1 Table 9-2: 10-15 s, restarted by every INFORMATION), is the
gateway's own on the user side, where the machine runs no T302: on expiry the call proceeds if the digits
so far match any route and is cleared with cause 28 otherwise.

Outgoing calls (§5.1) are placed by :meth:`~PriGateway.dial`, the :class:`~appliance.calls.outbound.PriDialer`
call control calls for a ``pri:<span>`` destination (through :class:`PriSpans` when there are several
spans): E.164 → party numbers, SETUP on the machine, the B-leg's SDP from the channel the far end confirms.

An offer without G.711 cannot reach the span: the destination fails with cause 65 (bearer capability not
implemented: 488, RFC 3398 §8.2.6.1) rather than 34/503, which would send the caller to another trunk for
the same refusal. A delayed offer (an INVITE without SDP) is dialled: the B-channel offers G.711 in the
answer (:mod:`appliance.calls.pri_leg`).

Every :class:`~appliance.pri.q931_events.CallReleased` frees the call's timeslot in the TDM worker. The
legs' announcement deadlines (a DISCONNECT with in-band information, :mod:`appliance.calls.pri_leg`) are
part of the gateway's timer.

Call records. When call control keeps call records (:class:`~appliance.calls.cdr.CallRecords`, the
B2BUA's ``cdr``) each PRI call's record gets its ``pri`` part: span, B-channel, the call's handle, the side
the span is on, and the Q.850 cause and location the far end cleared with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import phonenumbers

from appliance.calls.cdr import CallRecords
from appliance.calls.events import Setup
from appliance.calls.pri_leg import (
    ANNOUNCEMENT_TIMEOUT,
    LOCALHOST,
    NO_G711,
    PriLeg,
    Q931Commands,
    TdmMedia,
    remote_media,
    rtp_host,
    tdm_sdp,
)
from appliance.calls.routing import RoutingTable
from appliance.pri.errors import LocalProtocolError
from appliance.pri.link import Q931Machine as LinkMachine
from appliance.pri.numbers import NumberError, SpanNumbering, from_isdn, to_isdn
from appliance.pri.q931_events import (
    CallAlerting,
    CallConnected,
    CallDisconnecting,
    CallHandle,
    CallOffered,
    CallProceeding,
    CallProgress,
    CallReleased,
    DigitsReceived,
    Q931Event,
)
from appliance.pri.q931_model import BearerCapability, PartyNumber

if TYPE_CHECKING:
    from appliance.calls.b2bua import Call, Leg

log = logging.getLogger("appliance.calls.pri")

# Q.850 cause 28 "invalid number format": the called number cannot be read, or is still incomplete at the
# digit timeout (Q.931 §5.2.4.3 clears an incomplete number with it).
CAUSE_INVALID_NUMBER: Final = 28
# Events about a call a leg already has.
_LEG_EVENTS: Final = (CallProceeding, CallAlerting, CallProgress, CallConnected)
# The digit timeout of overlap receiving (see the module docstring).
DIGIT_TIMEOUT: Final = 10.0


class Q931Machine(LinkMachine, Q931Commands, Protocol):
    """What the gateway uses of :class:`appliance.pri.q931.Q931`: what the D-channel adapter drives, a
    leg's commands, and placing and first answering calls."""

    def setup(
        self, *, called: PartyNumber, calling: PartyNumber | None = None, channel: int | None = None,
        exclusive: bool = False, bearer: BearerCapability = ..., sending_complete: bool = True,
        display: str | None = None, now: float,
    ) -> CallHandle: ...  # fmt: skip
    def setup_acknowledge(self, call: CallHandle, now: float) -> None: ...
    def proceeding(self, call: CallHandle, now: float) -> None: ...


class CallControl(Protocol):
    """What the gateway needs of :class:`~appliance.calls.b2bua.B2bua`."""

    @property
    def router(self) -> RoutingTable[Any]: ...
    def place_call(
        self, a_leg: Callable[[Call], Leg], setup: Setup, now: float, *, ref: str = ""
    ) -> Call: ...


@dataclass(slots=True)
class _Collecting:
    """An incoming call in overlap receiving: the called number so far and the digit deadline."""

    offer: CallOffered
    called: PartyNumber
    deadline: float


class PriGateway:
    """One span's gateway (see the module docstring). ``digit_timeout``: overlap receiving's T302;
    ``announcement_timeout``: how long a far end's announcement on DISCONNECT is kept at most (T306);
    ``media_address``: the address the span's TDM worker binds (``[media] address``), which the B-channels'
    SDP names (:func:`~appliance.calls.pri_leg.rtp_host`; ``ValueError`` if it is not an IP address)."""

    def __init__(
        self, *, span: int, q931: Q931Machine, tdm: TdmMedia, calls: CallControl, numbering: SpanNumbering,
        digit_timeout: float = DIGIT_TIMEOUT, announcement_timeout: float = ANNOUNCEMENT_TIMEOUT,
        media_address: str = LOCALHOST,
    ) -> None:  # fmt: skip
        self.span = span
        self.q931 = q931
        self.tdm = tdm
        self.calls = calls
        self.numbering = numbering
        self.digit_timeout = digit_timeout
        self.announcement_timeout = announcement_timeout
        self.address = rtp_host(media_address)
        self.link_up = False
        self.legs: dict[CallHandle, PriLeg] = {}
        self._collecting: dict[CallHandle, _Collecting] = {}

    @property
    def records(self) -> CallRecords | None:
        """Call control's call records (the B2BUA's ``cdr``), when it keeps them."""
        records = getattr(self.calls, "cdr", None)
        return records if isinstance(records, CallRecords) else None

    # ------------------------------------------------------------------------- from the data link
    def link_established(self, now: float) -> None:
        self.dchannel_changed(True)
        self.q931.link_established(now)
        self.pump(now)

    def link_released(self, now: float) -> None:
        self.dchannel_changed(False)
        self.q931.link_released(now)
        self.pump(now)

    def physical_layer_lost(self, now: float) -> None:
        """The span lost its far end: the machine clears every call (cause 38) and the data link."""
        self.dchannel_changed(False)
        self.q931.physical_layer_lost(now)
        self.pump(now)

    def receive(self, data: bytes, now: float) -> None:
        """One I-frame's information field from the D-channel."""
        self.q931.receive(data, now)
        self.pump(now)

    def data_to_send(self) -> list[bytes]:
        return self.q931.data_to_send()

    def get_timer(self) -> float | None:
        deadlines = [c.deadline for c in self._collecting.values()]
        deadlines += [leg.deadline for leg in self.legs.values() if leg.deadline is not None]
        machine = self.q931.get_timer()
        if machine is not None:
            deadlines.append(machine)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        for ref, collecting in list(self._collecting.items()):
            if collecting.deadline <= now:
                self._digits_timed_out(ref, collecting, now)
        for leg in list(self.legs.values()):
            if leg.deadline is not None and leg.deadline <= now:
                leg.on_timer(now)
        self.q931.handle_timer(now)
        self.pump(now)

    # ----------------------------------------------------------------------------- events
    def pump(self, now: float) -> None:
        """Hand every event the machine has to :meth:`handle_event`."""
        while (event := self.q931.next_event()) is not None:
            self.handle_event(event, now)

    def handle_event(self, event: Q931Event, now: float) -> None:
        """One event of the machine, to its call's leg (or to the gateway, for a new call). For glue that
        drains the machine itself (:class:`appliance.pri.link.PriLink`'s ``on_event``)."""
        if isinstance(event, CallOffered):
            self._offered(event, now)
        elif isinstance(event, DigitsReceived):
            self._digits(event, now)
        elif isinstance(event, CallReleased):
            self._released(event, now)
        elif isinstance(event, CallDisconnecting):
            leg = self.legs.get(event.call)
            if leg is not None:
                self._record_cause(leg, event.cause, event.location)
                leg.disconnecting(event.cause, now, event.location)
            else:  # a caller still dialling (overlap receiving) hung up: nobody to play anything to
                self._collecting.pop(event.call, None)
                self._clear(event.call, event.cause, now)
        elif isinstance(event, _LEG_EVENTS):
            leg = self.legs.get(event.call)
            if leg is not None:
                _TO_LEG[type(event)](leg, event, now)
                if isinstance(event, CallProceeding):
                    self._record(leg)
        else:  # ChannelsRestarted (each call on them has its CallReleased), ProtocolFault
            log.info("%s", event, extra={"ctx": {"span": self.span}})

    def dchannel_changed(self, up: bool) -> None:
        """The D-channel's data link came up or went (for glue that feeds the machine itself): calls are
        dialled only while it is up."""
        self.link_up = up

    def _offered(self, offer: CallOffered, now: float) -> None:
        ctx = {"span": self.span, "q931_call": offer.call, "channel": offer.channel}
        called = offer.called or PartyNumber("")
        number = self._read(called, offer.call, now)
        if number is None:
            return
        if offer.sending_complete or self._complete(number):
            self._proceed(offer, number, now)
            return
        log.info("overlap receiving %r", number, extra={"ctx": ctx})
        self.q931.setup_acknowledge(offer.call, now)
        self._collecting[offer.call] = _Collecting(offer, called, now + self.digit_timeout)

    def _digits(self, event: DigitsReceived, now: float) -> None:
        collecting = self._collecting.get(event.call)
        if collecting is None:
            return  # overlap sending after the number was complete: the digits are not ours to use
        called = collecting.called
        collecting.called = PartyNumber(called.digits + event.digits, called.type_of_number, called.plan)
        collecting.deadline = now + self.digit_timeout
        number = self._read(collecting.called, event.call, now)
        if number is None:
            del self._collecting[event.call]
        elif event.sending_complete or self._complete(number):
            del self._collecting[event.call]
            self._proceed(collecting.offer, number, now)

    def _digits_timed_out(self, ref: CallHandle, collecting: _Collecting, now: float) -> None:
        del self._collecting[ref]
        number = self._read(collecting.called, ref, now)
        if number is None:
            return
        if self.calls.router.lookup(number) is None:
            log.info("number %r incomplete at the digit timeout", number, extra={"ctx": {"span": self.span}})
            self._clear(ref, CAUSE_INVALID_NUMBER, now)
            return
        self._proceed(collecting.offer, number, now)

    def _read(self, called: PartyNumber, ref: CallHandle, now: float) -> str | None:
        """The called number as E.164 (or as received); None after clearing the call when unreadable."""
        try:
            return from_isdn(called, self.numbering)
        except NumberError as exc:
            log.warning("called number refused: %s", exc.reason, extra={"ctx": {"span": self.span}})
            self._clear(ref, CAUSE_INVALID_NUMBER, now)
            return None

    def _complete(self, number: str) -> bool:
        route = self.calls.router.lookup(number)
        if route is None:
            return False
        if not route.match.endswith("*"):
            return True
        if not number.startswith("+"):
            return False
        try:
            return bool(phonenumbers.is_valid_number(phonenumbers.parse(number, None)))
        except phonenumbers.NumberParseException:
            return False

    def _proceed(self, offer: CallOffered, called: str, now: float) -> None:
        """CALL PROCEEDING, then the call goes to call control with the B-channel as the caller's media."""
        try:
            calling = from_isdn(offer.calling, self.numbering)
        except NumberError as exc:
            log.info("calling number withheld: %s", exc.reason, extra={"ctx": {"span": self.span}})
            calling = ""
        self.q931.proceeding(offer.call, now)

        def a_leg(call: Call) -> PriLeg:
            leg = PriLeg(call, offer.call, q931=self.q931, tdm=self.tdm, span=self.span, route_kind="inbound",
                         channel=offer.channel, announcement_timeout=self.announcement_timeout,
                         address=self.address)  # fmt: skip
            leg.open_channel()
            self.legs[offer.call] = leg
            self._record(leg)  # before call control opens the record: it takes it from there
            return leg

        # The caller's offer is the B-channel's RTP end, fixed per timeslot.
        sdp = tdm_sdp(self.tdm.port_of(offer.channel), address=self.address)
        setup = Setup(called, calling, calling_name=offer.display, sdp=sdp)
        self.calls.place_call(a_leg, setup, now, ref=f"span{self.span}/{offer.call}")

    def _released(self, event: CallReleased, now: float) -> None:
        self._collecting.pop(event.call, None)
        leg = self.legs.pop(event.call, None)
        if leg is None:
            return
        leg.close_channel()
        if not event.local:
            self._record_cause(leg, event.cause, event.location)
        leg.released(event.cause, now, None if event.local else event.location)

    def _record(self, leg: PriLeg) -> None:
        """The call's record learns (or relearns: its B-channel once known) the PRI side of the call."""
        records = self.records
        if records is not None and leg.call is not None:
            side = "caller" if leg.incoming else "callee"
            records.pri(leg.call.id, span=self.span, handle=leg.ref, side=side, channel=leg.channel)

    def _record_cause(self, leg: PriLeg, cause: int, location: int) -> None:
        """The cause the far end cleared with, for the call's record (before call control ends it)."""
        records = self.records
        if records is not None and leg.call is not None:
            records.pri_cleared(leg.call.id, span=self.span, handle=leg.ref, cause=cause, location=location)

    def _clear(self, ref: CallHandle, cause: int, now: float) -> None:
        try:
            self.q931.disconnect(ref, cause, now=now)
        except LocalProtocolError as exc:
            log.info("call not cleared: %s", exc, extra={"ctx": {"span": self.span, "q931_call": ref}})

    # ------------------------------------------------------------------------- outgoing calls
    def dial(self, span: int, call: Call, setup: Setup, now: float) -> Leg | None:
        """A ``pri:<span>`` destination: SETUP on this span (:class:`~appliance.calls.outbound.PriDialer`).

        None when the D-channel is down or the called number cannot be written as a party number; also
        when the offer has no G.711 stream, ``call.last_cause`` then :data:`~appliance.calls.pri_leg.NO_G711`
        (cause 65, 488). A delayed offer (no SDP) is dialled: the B-channel offers in the answer.
        """
        ctx = {"span": self.span, "call": call.id}
        if span != self.span or not self.link_up:
            log.info("span %d not up", span, extra={"ctx": ctx})
            return None
        remote = remote_media(setup.sdp) if setup.sdp is not None else None
        if remote is None and setup.sdp is not None:
            log.info("no G.711 offer to send on span %d", span, extra={"ctx": ctx})
            call.last_cause = NO_G711
            return None
        try:
            called = to_isdn(setup.called, self.numbering)
        except NumberError as exc:
            log.info("called number not sent: %s", exc.reason, extra={"ctx": ctx})
            return None
        try:
            calling: PartyNumber | None = to_isdn(setup.calling, self.numbering, calling=True)
        except NumberError:
            calling = None  # a SIP caller's user name: the network provides the span's own number
        ref = self.q931.setup(called=called, calling=calling, display=setup.calling_name, now=now)
        leg = PriLeg(call, ref, q931=self.q931, tdm=self.tdm, span=self.span, route_kind="pri",
                     payload_type=8 if remote is None else remote[2],
                     announcement_timeout=self.announcement_timeout, address=self.address)  # fmt: skip
        leg.remote = remote
        leg.open_channel()
        self.legs[ref] = leg
        self._record(leg)
        return leg


_TO_LEG: Final[Mapping[type, Callable[[PriLeg, Any, float], None]]] = {
    CallProceeding: lambda leg, e, now: leg.proceeding(e.channel, now),
    CallAlerting: lambda leg, e, now: leg.alerting(e.progress, now),
    CallProgress: lambda leg, e, now: leg.in_band(e.progress, now),
    CallConnected: lambda leg, e, now: leg.connected(now),
}


class PriSpans:
    """The appliance's PRI spans as call control's one :class:`~appliance.calls.outbound.PriDialer`."""

    def __init__(self, gateways: Iterable[PriGateway]) -> None:
        self.gateways = {g.span: g for g in gateways}

    def dial(self, span: int, call: Call, setup: Setup, now: float) -> Leg | None:
        gateway = self.gateways.get(span)
        return None if gateway is None else gateway.dial(span, call, setup, now)
