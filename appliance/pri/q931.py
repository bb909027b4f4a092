"""Q.931 call control for one PRI span, user or network side (ETSI EN 300 403-1 / ITU-T Q.931), sans-I/O.

Theory of operation. One :class:`Q931` per D-channel. The data link (LAPD) below reports
:meth:`~Q931.link_established`/:meth:`~Q931.link_released` and hands over each I-frame's information
field (:meth:`~Q931.receive`); the codec turns it into a :class:`~appliance.pri.q931_model.Decoded` and
:meth:`~Q931.receive_message` acts on it. Call control above issues commands (:meth:`~Q931.setup`,
:meth:`~Q931.alerting`, :meth:`~Q931.connect`, :meth:`~Q931.disconnect` …) and drains
:meth:`~Q931.next_event`; the messages to send queue up as :class:`~appliance.pri.q931_model.Message`
values (:meth:`~Q931.messages_to_send`) or encoded (:meth:`~Q931.data_to_send`). Time is the ``now``
passed in; :meth:`~Q931.get_timer`/:meth:`~Q931.handle_timer` run T301-T322.

* Calls (:mod:`appliance.pri.q931_call`): outgoing §5.1 (SETUP, overlap sending with INFORMATION, CALL
  PROCEEDING, ALERTING, PROGRESS, CONNECT -> CONNECT ACK), incoming §5.2 (SETUP -> SETUP ACK / CALL
  PROCEEDING / ALERTING / CONNECT; CONNECT ACK), clearing §5.3 (DISCONNECT -> RELEASE -> RELEASE COMPLETE,
  in-band announcements on DISCONNECT §5.3.4.1, clear collision §5.3.5). The network side runs the same
  procedures mirrored (§5.1 seen from the network is its incoming call, N1-N4; its outgoing call is N6-N9).
* Channels (:mod:`appliance.pri.q931_channels`): negotiation (§5.1.2, §5.2.3.1: cause 44 for a busy
  exclusive channel, 34 when none is free) and glare (Annex D.3: exclusive beats preferred, the network
  wins between equals).
* Restart (§5.5, :mod:`appliance.pri.q931_channels`) on the global call reference: REST0/REST1/REST2, T316;
  B-channels in the maintenance condition (T308's second expiry, a restart given up on T316) until a
  restart covers them (:attr:`~Q931.channels_in_maintenance`).
* Timers (:mod:`appliance.pri.q931_timers`): each call keeps its running timers as deadlines; the expiry
  of each is one ``_tNNN`` method.
* Errors (§5.8, :mod:`appliance.pri.q931_status`): unknown call references (§5.8.3.2), unexpected message
  types (§5.8.4, cause 101), element faults (§5.8.5-§5.8.7: 96/99/100), STATUS ENQUIRY/STATUS
  (§5.8.10/§5.8.11), data link failure (§5.8.9: calls not active are cleared locally, active ones run T309
  and survive a re-establishment, then verified with STATUS ENQUIRY). A peer's fault never raises.

The procedures are split by clause over a stack of small classes sharing the state set up here:
:class:`~appliance.pri.q931_call.MachineBase` (helpers) <- ``TimerProcedures`` <- ``RestartProcedure`` <-
``FaultProcedures`` <- :class:`Q931` (commands, the receive path and the call establishment and clearing
handlers, dispatched through a table keyed by message type).

Every call reported to call control (each outgoing :meth:`~Q931.setup`, each :class:`CallOffered`) ends
with exactly one :class:`CallReleased`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Literal

from appliance.pri import q931_codec
from appliance.pri.errors import LocalProtocolError, Q931DecodeError
from appliance.pri.q931_call import (
    ANY_STATE,
    CAUSE_CHANNEL_UNACCEPTABLE,
    CAUSE_MANDATORY_MISSING,
    CAUSE_NETWORK_OUT_OF_ORDER,
    CAUSE_NORMAL_UNSPECIFIED,
    CAUSE_NOT_COMPATIBLE_WITH_STATE,
    CAUSE_TEMPORARY_FAILURE,
    EXPECTED,
    Call,
    RestartState,
)
from appliance.pri.q931_channels import CAUSE_NO_CIRCUIT, ChannelTable, choose, glare_yields
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
    ProtocolFault,
    Q931Event,
)
from appliance.pri.q931_model import (
    GLOBAL_CALL_REFERENCE,
    BearerCapability,
    Cause,
    ChannelId,
    Decoded,
    Display,
    Location,
    Message,
    MessageType,
    PartyNumber,
    ProgressDescription,
    ProgressIndicator,
)
from appliance.pri.q931_model import CallStateValue as S
from appliance.pri.q931_status import NO_STATUS, Answer, FaultProcedures, judge
from appliance.pri.q931_timers import Q931Timers

_LOG = logging.getLogger(__name__)

_MISSING = CAUSE_MANDATORY_MISSING
_DEFAULT_TIMERS = Q931Timers()
_SPEECH = BearerCapability()

_Handler = Callable[[Call, Message, float], None]


class Q931(FaultProcedures):
    """The per-span machine; see the module docstring. Commands raise
    :class:`~appliance.pri.errors.LocalProtocolError` when the call's state does not allow them."""

    def __init__(
        self,
        *,
        side: Literal["user", "network"],
        b_channels: tuple[int, ...],
        timers: Q931Timers = _DEFAULT_TIMERS,
        span: int = 1,
    ) -> None:
        self.side: Literal["user", "network"] = side
        # Without timers of its own a side runs its standard defaults (Q.931 Tables 9-1 and 9-2).
        self.timers = Q931Timers.for_side(side) if timers is _DEFAULT_TIMERS else timers
        self.span = span
        self._channels = ChannelTable(b_channels)
        self._calls: dict[CallHandle, Call] = {}
        # The non-fatal element fault of the message being handled: a clearing message answers with it
        # (§5.8.7.1 a/b, §5.8.6.2) instead of a STATUS.
        self._problem: Answer | None = None
        self._by_key: dict[tuple[int, bool], Call] = {}
        self._next_handle = 1
        self._next_cref = 1
        self._out: list[Message] = []
        self._events: deque[Q931Event] = deque()
        self._link_up = False
        self._location = Location.USER if side == "user" else Location.PUBLIC_LOCAL
        # we sent DISCONNECT: U11 / N12; the peer did: U12 / N11 (Q.931 §5.3.3, §5.3.4)
        self._disc_sent = S.DISCONNECT_REQUEST if side == "user" else S.DISCONNECT_INDICATION
        self._disc_rcvd = S.DISCONNECT_INDICATION if side == "user" else S.DISCONNECT_REQUEST
        # an incoming call not yet answered: U6 / N1
        self._offered = S.CALL_PRESENT if side == "user" else S.CALL_INITIATED
        self._restart = RestartState.REST0
        self._restart_channels: tuple[int, ...] = ()
        self._restart_message: Message | None = None
        self._restart_deadline: float | None = None
        self._restart_attempts = 0
        self._handlers: dict[MessageType, _Handler] = {
            MessageType.SETUP_ACKNOWLEDGE: self._on_answer,
            MessageType.CALL_PROCEEDING: self._on_answer,
            MessageType.ALERTING: self._on_answer,
            MessageType.CONNECT: self._on_answer,
            MessageType.PROGRESS: self._on_progress,
            MessageType.CONNECT_ACKNOWLEDGE: self._on_connect_ack,
            MessageType.INFORMATION: self._on_information,
            MessageType.DISCONNECT: self._on_disconnect,
            MessageType.RELEASE: self._on_release,
            MessageType.RELEASE_COMPLETE: self._on_release_complete,
            MessageType.STATUS: self._on_status,
            MessageType.STATUS_ENQUIRY: self._on_status_enquiry,
            MessageType.NOTIFY: self._on_ignored,
            MessageType.FACILITY: self._on_ignored,
        }

    # ---------------------------------------------------------------- data link side

    def link_established(self, now: float) -> None:
        """Multiple-frame operation (re-)established. Calls that survived a data link failure on T309 are
        verified with the status enquiry procedure (§5.8.9 allows it or a STATUS with cause 31; the enquiry
        also learns the peer's state). A data link reset (established again without a release, §5.8.8)
        keeps the calls as they are."""
        self._link_up = True
        for call in list(self._calls.values()):
            if call.timers.pop("T309", None) is not None:
                self._enquire(call, now)

    def link_released(self, now: float) -> None:
        """The data link is gone (§5.8.9): calls not active are cleared locally (cause 41); active ones
        start T309. A restart in progress is abandoned."""
        self._link_up = False
        for call in list(self._calls.values()):
            if call.state is S.ACTIVE:
                running = call.timers.get("T309")  # §5.8.9: a running T309 is not restarted
                call.timers.clear()
                call.timers["T309"] = running if running is not None else now + self.timers.t309
            else:
                call.clearing_by(CAUSE_TEMPORARY_FAILURE, self._location, local=True)
                self._release(call)
        if self._restart is RestartState.REST1:
            self._end_restart(peer=False, completed=False)

    def physical_layer_lost(self, now: float) -> None:
        """The span lost its far end (loss of signal, a red alarm): the B-channels went with it, so every
        call is cleared locally with cause 38 (network out of order) and the data link is failed as in
        :meth:`link_released`. T309 (§5.8.9) keeps calls across a data link reset on a working line, which
        this is not: it is what Asterisk's sig_pri and AudioCodes gateways do on a span alarm."""
        for call in list(self._calls.values()):
            call.clearing_by(CAUSE_NETWORK_OUT_OF_ORDER, self._location, local=True)
            self._release(call)
        self.link_released(now)

    def receive(self, data: bytes, now: float) -> None:
        """One I-frame's information field. Never raises for anything the peer sent."""
        try:
            # The user side receives what the network sends, so the codec applies that direction's rules.
            decoded = q931_codec.decode(data, from_network=self.side == "user")
        except Q931DecodeError as exc:
            self._decode_error(exc)
            return
        try:
            self.receive_message(decoded, now)
        except Exception as exc:  # a fault of ours must not take the span down with it
            _LOG.exception("span %d: message %r not handled", self.span, decoded.message.type)
            self._events.append(ProtocolFault(None, 111, f"internal error: {exc!r}"))

    def data_to_send(self) -> list[bytes]:
        """The queued messages, encoded, in order."""
        return [q931_codec.encode(message) for message in self.messages_to_send()]

    def messages_to_send(self) -> list[Message]:
        """The queued messages as values (what :meth:`data_to_send` encodes), in order."""
        out, self._out = self._out, []
        for message in out:  # the signalling trace, one line a message (DEBUG)
            _LOG.debug("span %d tx %s", self.span, message)
        return out

    def next_event(self) -> Q931Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [d for call in self._calls.values() for d in call.timers.values()]
        if self._restart_deadline is not None:
            deadlines.append(self._restart_deadline)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Run every timer whose deadline is at or before ``now``, earliest first."""
        while True:
            due = [(d, n, c) for c in self._calls.values() for n, d in c.timers.items() if d <= now]
            if self._restart_deadline is not None and self._restart_deadline <= now:
                self._restart_deadline = None
                self._t316(now)
                continue
            if not due:
                return
            _, name, call = min(due, key=lambda item: item[0])
            del call.timers[name]
            _LOG.info("span %d call %d: %s expired in %s", self.span, call.handle, name, self._state(call))
            getattr(self, f"_{name.lower()}")(call, now)

    # ---------------------------------------------------------------- introspection

    @property
    def calls(self) -> int:
        """Calls not in the NULL state."""
        return len(self._calls)

    @property
    def restart_state(self) -> RestartState:
        return self._restart

    def channel_of(self, call: CallHandle) -> int | None:
        found = self._calls.get(call)
        return None if found is None else found.channel

    def state_of(self, call: CallHandle) -> S:
        found = self._calls.get(call)
        return S.NULL if found is None else found.state

    def call_references(self) -> dict[tuple[int, bool], S]:
        """(call reference, allocated by this side) -> state, for every call not in NULL."""
        return {key: call.state for key, call in self._by_key.items()}

    def busy_channels(self) -> dict[int, CallHandle]:
        return self._channels.busy()

    # ---------------------------------------------------------------- commands

    def setup(
        self,
        *,
        called: PartyNumber,
        calling: PartyNumber | None = None,
        channel: int | None = None,
        exclusive: bool = False,
        bearer: BearerCapability = _SPEECH,
        sending_complete: bool = True,
        display: str | None = None,
        now: float,
    ) -> CallHandle:
        """Place a call (§5.1.1 user side, §5.2.1 network side). With no usable B-channel, or the data link
        down, the call is released at once through a :class:`CallReleased` (cause 34, 44 or 41)."""
        handle = self._new_handle()
        if not self._link_up:
            self._events.append(CallReleased(handle, CAUSE_TEMPORARY_FAILURE, self._location, True))
            return handle
        chosen = choose(self._channels, channel, exclusive=exclusive)
        if chosen.channel is None:
            self._events.append(CallReleased(handle, chosen.cause or CAUSE_NO_CIRCUIT, self._location, True))
            return handle
        call = Call(handle, self._new_cref(), True, self.side, self.span, channel=chosen.channel)
        call.exclusive = exclusive
        self._channels.reserve(chosen.channel, handle)
        self._add(call)
        call.setup = self._message(
            call,
            MessageType.SETUP,
            bearer=bearer,
            channel=ChannelId((chosen.channel,), exclusive=exclusive),
            calling=calling,
            called=called,
            # EN 300 403-1 §3.1.14: display in SETUP goes network to user only; the user side leaves it out.
            display=Display(display) if display is not None and self.side == "network" else None,
            sending_complete=sending_complete,
        )
        call.set_state(S.CALL_INITIATED if self.side == "user" else S.CALL_PRESENT)
        self._out.append(call.setup)
        self._start(call, "T303", now)
        return handle

    def setup_acknowledge(self, call: CallHandle, now: float) -> None:
        """Overlap receiving (§5.2.4): ask for more digits."""
        c = self._command(call, {self._offered})
        self._send(c, MessageType.SETUP_ACKNOWLEDGE, channel=self._first_channel(c))
        c.set_state(S.OVERLAP_RECEIVING if self.side == "user" else S.OVERLAP_SENDING)
        if self.side == "network":
            self._start(c, "T302", now)

    def proceeding(self, call: CallHandle, now: float) -> None:
        c = self._command(call, {self._offered, self._overlap_in})
        c.timers.pop("T302", None)
        self._send(c, MessageType.CALL_PROCEEDING, channel=self._first_channel(c))
        c.set_state(S.INCOMING_CALL_PROCEEDING if self.side == "user" else S.OUTGOING_CALL_PROCEEDING)

    def alerting(self, call: CallHandle, *, inband: bool = False, now: float) -> None:
        c = self._command(call, {self._offered, self._overlap_in, self._proceeding_in})
        c.timers.pop("T302", None)
        progress = (
            (ProgressIndicator(ProgressDescription.IN_BAND_AVAILABLE, self._location),) if inband else ()
        )
        self._send(c, MessageType.ALERTING, channel=self._first_channel(c), progress=progress)
        c.set_state(S.CALL_RECEIVED if self.side == "user" else S.CALL_DELIVERED)

    def progress(self, call: CallHandle, description: ProgressDescription, now: float) -> None:
        c = self._command(call, {self._overlap_in, self._proceeding_in, self._alerting_in})
        self._send(c, MessageType.PROGRESS, progress=(ProgressIndicator(description, self._location),))

    def connect(self, call: CallHandle, now: float) -> None:
        """Answer. User side: U8 until CONNECT ACKNOWLEDGE (T313). Network side: the call is active at once
        (the user's CONNECT ACKNOWLEDGE is optional, §5.1.8), reported with :class:`CallConnected`."""
        c = self._command(call, {self._offered, self._overlap_in, self._proceeding_in, self._alerting_in})
        c.timers.pop("T302", None)
        self._send(c, MessageType.CONNECT, channel=self._first_channel(c))
        if self.side == "user":
            c.set_state(S.CONNECT_REQUEST)
            self._start(c, "T313", now)
        else:
            c.set_state(S.ACTIVE)
            self._events.append(CallConnected(c.handle))

    def disconnect(self, call: CallHandle, cause: int, *, inband: bool = False, now: float) -> None:
        """Clear the call (§5.3): RELEASE COMPLETE to an unanswered SETUP (§5.3.2 a), RELEASE after the
        peer's DISCONNECT with in-band information, else DISCONNECT (``inband``: progress indicator 8,
        the network side then runs T306 instead of T305)."""
        c = self._calls.get(call)
        if c is None or c.state in (self._disc_sent, S.RELEASE_REQUEST):
            raise LocalProtocolError(f"span {self.span}: call {call} is not in a state to disconnect")
        self._clear(c, cause, now, inband=inband)

    release = disconnect

    def information(
        self, call: CallHandle, digits: str, *, sending_complete: bool = False, now: float
    ) -> None:
        """Overlap sending (§5.1.3): more called-party digits, in U2 / N25."""
        c = self._command(
            call, {S.OVERLAP_SENDING if self.side == "user" else S.OVERLAP_RECEIVING}, ours=True
        )
        self._send(c, MessageType.INFORMATION, called=PartyNumber(digits), sending_complete=sending_complete)

    def status_enquiry(self, call: CallHandle, now: float) -> None:
        """Ask the peer for its state of the call (§5.8.10, T322)."""
        self._enquire(self._command(call, None), now)

    # ---------------------------------------------------------------- receive path

    def receive_message(self, decoded: Decoded | Message, now: float) -> None:
        """Act on one decoded message (the core of :meth:`receive`)."""
        if isinstance(decoded, Message):
            decoded = Decoded(decoded)
        msg = decoded.message
        _LOG.debug("span %d rx %s %s", self.span, msg, decoded.problems or "")
        if msg.call_reference == GLOBAL_CALL_REFERENCE:
            self._on_global(decoded, now)
            return
        call = self._by_key.get((msg.call_reference, not msg.from_originator))
        if call is None:
            self._unknown_reference(decoded, now)
            return
        if msg.type is MessageType.SETUP:
            self._fault(call, 0, "SETUP on a call reference in use: ignored (§5.8.3.2)")
            return
        answer = judge(decoded.problems)
        if answer is not None and answer.fatal:
            self._fatal_problem(call, msg, answer.cause, answer.diagnostic, answer.detail, now)
            return
        expected = EXPECTED[self.side].get(msg.type)
        if msg.type not in ANY_STATE and (expected is None or call.state not in expected):
            self._fault(call, CAUSE_NOT_COMPATIBLE_WITH_STATE, f"{msg.type.name} in {self._state(call)}")
            self._status(call, CAUSE_NOT_COMPATIBLE_WITH_STATE, bytes([msg.type]))
            return
        self._problem = answer
        try:
            self._handlers[msg.type](call, msg, now)
        finally:
            self._problem = None
        if answer is not None:
            self._fault(call, answer.cause, answer.detail)
            if call.handle in self._calls and msg.type not in NO_STATUS:
                self._status(call, answer.cause, answer.diagnostic)

    def _incoming_setup(self, decoded: Decoded, now: float) -> None:
        """SETUP (§5.2.1 user side / §5.1.1 network side): negotiate the channel, offer the call."""
        msg = decoded.message
        answer = judge(decoded.problems)
        refuse: tuple[int, bytes, str] | None = None
        if answer is not None and answer.fatal:
            refuse = (answer.cause, answer.diagnostic, answer.detail)
        elif msg.bearer is None:
            refuse = (_MISSING, b"\x04", "SETUP without bearer capability")
        elif self.side == "user" and (msg.channel is None or msg.channel.selection == "none"):
            refuse = (_MISSING, b"\x18", "SETUP without channel identification")
        if refuse is not None:
            self._events.append(ProtocolFault(None, refuse[0], refuse[2]))
            self._reject(msg, Cause(refuse[0], self._location, refuse[1]))
            return
        assert msg.bearer is not None
        requested = msg.channel.channels[0] if msg.channel is not None and msg.channel.channels else None
        exclusive = msg.channel is not None and msg.channel.exclusive
        handle = self._new_handle()
        glare = self._glare(requested)
        if (
            glare is not None
            and requested is not None
            and glare_yields(self.side, ours_exclusive=glare.exclusive, incoming_exclusive=exclusive)
        ):
            _LOG.info("span %d: glare on B%d, call %d yields it", self.span, requested, glare.handle)
            self._channels.steal(requested, handle)
            glare.channel = None
            channel = requested
        else:
            chosen = choose(self._channels, requested, exclusive=exclusive)
            if chosen.channel is None:
                # Annex D.3 b): both exclusive, the network's SETUP is awarded, the user's cleared with 34
                cause = CAUSE_NO_CIRCUIT if glare is not None else chosen.cause or CAUSE_NO_CIRCUIT
                self._reject(msg, Cause(cause, self._location))
                return
            channel = chosen.channel
            self._channels.reserve(channel, handle)
        call = Call(handle, msg.call_reference, False, self.side, self.span, channel=channel)
        self._add(call)
        call.set_state(self._offered)
        progress = tuple(p.description for p in msg.progress)
        display = msg.display.text if msg.display is not None else None
        self._events.append(
            CallOffered(
                handle, channel, msg.called, msg.calling, msg.bearer, msg.sending_complete, display, progress
            )
        )
        if answer is not None:
            self._fault(call, answer.cause, answer.detail)
            self._status(call, answer.cause, answer.diagnostic)

    def _glare(self, requested: int | None) -> Call | None:
        """Our own unanswered SETUP (U1/N6) holding the channel the peer's crossing SETUP asks for."""
        owner = self._channels.owner(requested) if requested is not None else None
        call = self._calls.get(owner) if owner is not None else None
        if call is not None and call.ours and call.state in (S.CALL_INITIATED, S.CALL_PRESENT):
            return call
        return None

    def _reject(self, msg: Message, cause: Cause) -> None:
        self._out.append(Message(MessageType.RELEASE_COMPLETE, msg.call_reference, False, cause=cause))

    # ---------------------------------------------------------------- message handlers

    def _on_answer(self, call: Call, msg: Message, now: float) -> None:
        """SETUP ACK, CALL PROCEEDING, ALERTING or CONNECT on our outgoing call."""
        first = call.state in (S.CALL_INITIATED, S.CALL_PRESENT)
        if first:
            call.timers.pop("T303", None)
            if not self._take_answer_channel(call, msg, now):
                return
        assert call.channel is not None
        call.timers.pop("T310", None)
        if msg.type is MessageType.SETUP_ACKNOWLEDGE:
            call.set_state(S.OVERLAP_SENDING if self.side == "user" else S.OVERLAP_RECEIVING)
            self._events.append(CallProceeding(call.handle, call.channel, overlap=True))
            return
        if first or msg.type is MessageType.CALL_PROCEEDING:
            self._events.append(CallProceeding(call.handle, call.channel))
        progress = tuple(p.description for p in msg.progress)
        if msg.type is MessageType.CALL_PROCEEDING:
            call.set_state(S.OUTGOING_CALL_PROCEEDING if self.side == "user" else S.INCOMING_CALL_PROCEEDING)
            self._start(call, "T310", now)
        elif msg.type is MessageType.ALERTING:
            call.set_state(S.CALL_DELIVERED if self.side == "user" else S.CALL_RECEIVED)
            if self.side == "network":
                self._start(call, "T301", now)
            self._events.append(CallAlerting(call.handle, progress))
        else:
            call.timers.pop("T301", None)
            if self.side == "network":
                call.set_state(S.CONNECT_REQUEST)
            self._send(call, MessageType.CONNECT_ACKNOWLEDGE)
            call.set_state(S.ACTIVE)
            self._events.append(CallConnected(call.handle))

    def _take_answer_channel(self, call: Call, msg: Message, now: float) -> bool:
        """The first response's channel (§5.1.2 user side: the network's choice, possibly moving the call
        after glare; §5.2.3.1 network side: the user's choice when ours was preferred). An unusable one
        clears the call with RELEASE cause 6; none at all after losing the channel, cause 34."""
        offered = msg.channel.channels[0] if msg.channel is not None and msg.channel.channels else None
        if offered is None or offered == call.channel:
            if call.channel is not None:
                return True
            cause = CAUSE_NO_CIRCUIT
        elif self._channels.idle(offered) and (self.side == "user" or not call.exclusive):
            self._channels.release(call.channel, call.handle)
            self._channels.reserve(offered, call.handle)
            call.channel = offered
            return True
        else:
            cause = CAUSE_CHANNEL_UNACCEPTABLE
        self._fault(call, cause, f"unusable channel {offered} in {msg.type.name}")
        call.clearing_by(cause, self._location, local=True)
        self._send_release(call, Cause(cause, self._location), now)
        return False

    def _on_progress(self, call: Call, msg: Message, now: float) -> None:
        call.timers.pop("T310", None)  # EN 300 403-1 §5.1.6: PROGRESS stops T310
        cause = msg.cause.value if msg.cause is not None else None
        self._events.append(CallProgress(call.handle, tuple(p.description for p in msg.progress), cause))

    def _on_connect_ack(self, call: Call, msg: Message, now: float) -> None:
        if call.state is S.CONNECT_REQUEST:
            call.timers.pop("T313", None)
            call.set_state(S.ACTIVE)
            self._events.append(CallConnected(call.handle))

    def _on_information(self, call: Call, msg: Message, now: float) -> None:
        """Overlap receiving digits (§5.2.4: U25 / N2, T302 restarted); elsewhere INFORMATION is ignored."""
        if call.state is not self._overlap_in or msg.called is None:
            return
        if self.side == "network":
            call.timers.pop("T302", None)
            if not msg.sending_complete:
                self._start(call, "T302", now)
        self._events.append(DigitsReceived(call.handle, msg.called.digits, msg.sending_complete))

    def _on_disconnect(self, call: Call, msg: Message, now: float) -> None:
        """§5.3.3/§5.3.4; the clear collision of §5.3.5 when we sent DISCONNECT too."""
        if call.state in (S.RELEASE_REQUEST, self._disc_rcvd):
            return
        cause = msg.cause or Cause(CAUSE_NORMAL_UNSPECIFIED)
        call.clearing_by(cause.value, int(cause.location), local=False)
        if call.state is self._disc_sent:
            self._send_release(call, Cause(call.clear_cause or cause.value, self._location), now)
            return
        problem = self._problem
        call.timers.clear()
        call.set_state(self._disc_rcvd)
        inband = any(p.description is ProgressDescription.IN_BAND_AVAILABLE for p in msg.progress)
        if inband and self.side == "user":
            progress = tuple(p.description for p in msg.progress)
            self._events.append(CallDisconnecting(call.handle, cause.value, progress, int(cause.location)))
            return
        if problem is not None:  # §5.8.7.1 a): RELEASE with cause 99 (or 100) naming the element
            self._send_release(call, Cause(problem.cause, self._location, problem.diagnostic), now)
            return
        self._send_release(call, Cause(cause.value, self._location), now)

    def _on_release(self, call: Call, msg: Message, now: float) -> None:
        """§5.3.3/§5.3.4: RELEASE COMPLETE and NULL; in U19/N19 (both sent RELEASE, §5.3.5) no answer."""
        cause = msg.cause or Cause(CAUSE_NORMAL_UNSPECIFIED)
        answer, diag = cause.value, b""
        if self._problem is not None:
            # §5.8.7.1 b): an unrecognised element, or §5.8.6.2: a cause of invalid contents, is named in
            # the RELEASE COMPLETE (cause 99 or 100 with the element's identifier)
            answer, diag = self._problem.cause, self._problem.diagnostic
        elif msg.cause is None and call.state not in (self._disc_sent, self._disc_rcvd, S.RELEASE_REQUEST):
            # the first clearing message must carry a cause (§5.8.6.1): act as if 31, answer 96
            answer, diag = CAUSE_MANDATORY_MISSING, b"\x08"
            self._fault(call, answer, "RELEASE without cause as first clearing message")
        if call.state is not S.RELEASE_REQUEST:
            self._send(call, MessageType.RELEASE_COMPLETE, cause=Cause(answer, self._location, diag))
        call.clearing_by(cause.value, int(cause.location), local=False)
        self._release(call)

    def _on_release_complete(self, call: Call, msg: Message, now: float) -> None:
        cause = msg.cause or Cause(CAUSE_NORMAL_UNSPECIFIED)
        call.clearing_by(cause.value, int(cause.location), local=False)
        self._release(call)

    def _on_ignored(self, call: Call, msg: Message, now: float) -> None:
        _LOG.debug("span %d call %d: %s ignored", self.span, call.handle, msg.type.name)
