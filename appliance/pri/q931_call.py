"""Per-call state of the Q.931 machine: the call states of Q.931 §2.1.1 (user side) and §2.1.2 (network side),
their transition table, the global call reference states of §2.4/§5.5, and which message each state
expects.

The user and network sides number their states alike (U1 call initiated … U25 overlap receiving;
N1 … N25) and a PRI call moves through the same graph on both, so one :data:`TRANSITIONS` table serves
both; logs name the state with its side's prefix (``U3``/``N3``). N22 (call abort, for point-to-multipoint
configurations) does not occur on a PRI's point-to-point data link.

A :class:`Call` is mutable and owned by one :class:`~appliance.pri.q931.Q931`; every state change goes
through :meth:`Call.set_state`, which checks the table, raises
:class:`~appliance.pri.errors.LocalProtocolError` on an illegal move and logs ``OLD -> NEW``.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from appliance.pri.errors import LocalProtocolError
from appliance.pri.q931_events import CallHandle, CallReleased, ProtocolFault, Q931Event
from appliance.pri.q931_model import (
    MAX_CALL_REFERENCE,
    CallState,
    Cause,
    ChannelId,
    Location,
    Message,
    MessageType,
    ProgressDescription,
    ProgressIndicator,
)
from appliance.pri.q931_model import CallStateValue as S

if TYPE_CHECKING:
    from appliance.pri.q931_channels import ChannelTable
    from appliance.pri.q931_timers import Q931Timers

Side = Literal["user", "network"]
_LOG = logging.getLogger("appliance.pri.q931")

# Q.850 causes the machine chooses itself
CAUSE_CHANNEL_UNACCEPTABLE = 6
CAUSE_NORMAL = 16
CAUSE_NO_ANSWER = 19
CAUSE_OUT_OF_ORDER = 27
CAUSE_INVALID_NUMBER = 28
CAUSE_RESPONSE_TO_ENQUIRY = 30
CAUSE_NETWORK_OUT_OF_ORDER = 38
CAUSE_NORMAL_UNSPECIFIED = 31
CAUSE_TEMPORARY_FAILURE = 41
CAUSE_INVALID_CALL_REFERENCE = 81
CAUSE_MANDATORY_MISSING = 96
CAUSE_IE_NON_EXISTENT = 99
CAUSE_INVALID_IE_CONTENTS = 100
CAUSE_NOT_COMPATIBLE_WITH_STATE = 101
CAUSE_RECOVERY_ON_TIMER = 102

# Clearing can start in any state (Q.931 §5.3.1): DISCONNECT sent (U11/N12) or received (U12/N11), a
# RELEASE sent (U19/N19) in the exceptional cases of §5.3.2 and §5.8, or straight to NULL (RELEASE or
# RELEASE COMPLETE received, restart, data link failure, timer expiry).
_CLEAR: Final = frozenset({S.DISCONNECT_REQUEST, S.DISCONNECT_INDICATION, S.RELEASE_REQUEST, S.NULL})

TRANSITIONS: Final[dict[S, frozenset[S]]] = {
    # SETUP sent (outgoing, §5.1.1) or received (incoming, §5.2.1)
    S.NULL: frozenset({S.CALL_INITIATED, S.CALL_PRESENT}),
    # outgoing: SETUP ACK (§5.1.3), CALL PROCEEDING (§5.1.5.2), ALERTING (§5.1.7), CONNECT (§5.1.8).
    # On the network side "call initiated" is the user's incoming SETUP, answered alike (§5.1 mirrored).
    S.CALL_INITIATED: frozenset(
        {S.OVERLAP_SENDING, S.OUTGOING_CALL_PROCEEDING, S.CALL_DELIVERED, S.ACTIVE} | _CLEAR
    ),
    S.OVERLAP_SENDING: frozenset({S.OUTGOING_CALL_PROCEEDING, S.CALL_DELIVERED, S.ACTIVE} | _CLEAR),
    S.OUTGOING_CALL_PROCEEDING: frozenset({S.CALL_DELIVERED, S.ACTIVE} | _CLEAR),
    S.CALL_DELIVERED: frozenset({S.ACTIVE} | _CLEAR),
    # incoming (§5.2): SETUP ACK (overlap receiving), CALL PROCEEDING, ALERTING, CONNECT
    S.CALL_PRESENT: frozenset(
        {S.OVERLAP_RECEIVING, S.INCOMING_CALL_PROCEEDING, S.CALL_RECEIVED, S.CONNECT_REQUEST} | _CLEAR
    ),
    S.OVERLAP_RECEIVING: frozenset({S.INCOMING_CALL_PROCEEDING, S.CALL_RECEIVED, S.CONNECT_REQUEST} | _CLEAR),
    S.INCOMING_CALL_PROCEEDING: frozenset({S.CALL_RECEIVED, S.CONNECT_REQUEST} | _CLEAR),
    S.CALL_RECEIVED: frozenset({S.CONNECT_REQUEST} | _CLEAR),
    # U8: CONNECT sent, CONNECT ACK awaited (§5.2.8); N8: CONNECT received, CONNECT ACK being sent
    S.CONNECT_REQUEST: frozenset({S.ACTIVE} | _CLEAR),
    S.ACTIVE: _CLEAR,
    # clear collision (§5.3.5): DISCONNECT received after sending one -> RELEASE
    S.DISCONNECT_REQUEST: frozenset({S.DISCONNECT_INDICATION, S.RELEASE_REQUEST, S.NULL}),
    S.DISCONNECT_INDICATION: frozenset({S.RELEASE_REQUEST, S.NULL}),
    S.RELEASE_REQUEST: frozenset({S.NULL}),
}


def state_name(side: Side, state: S) -> str:
    """``U10``/``N10``: the state as the standard's tables name it."""
    return f"{'U' if side == 'user' else 'N'}{int(state)}"


class RestartState(enum.Enum):
    """Global call reference states (Q.931 §2.4, §5.5): REST0 null, REST1 restart request (RESTART sent,
    T316 running), REST2 restart (RESTART received, calls being released)."""

    REST0 = 0
    REST1 = 1
    REST2 = 2


RESTART_TRANSITIONS: Final[dict[RestartState, frozenset[RestartState]]] = {
    RestartState.REST0: frozenset({RestartState.REST1, RestartState.REST2}),
    RestartState.REST1: frozenset({RestartState.REST0}),
    RestartState.REST2: frozenset({RestartState.REST0}),
}

# Messages that are acceptable in every state but NULL (Q.931 §5.8.4 exempts the clearing messages; STATUS,
# STATUS ENQUIRY, INFORMATION, NOTIFY and FACILITY are valid in every call state, §3).
ANY_STATE: Final = frozenset(
    {
        MessageType.DISCONNECT,
        MessageType.RELEASE,
        MessageType.RELEASE_COMPLETE,
        MessageType.STATUS,
        MessageType.STATUS_ENQUIRY,
        MessageType.INFORMATION,
        MessageType.NOTIFY,
        MessageType.FACILITY,
    }
)

# The other messages and the states in which they are expected (Q.931 Annex A, SDL of §5.1/§5.2); any other
# state answers STATUS with cause 101 (§5.8.4). The network's outgoing call runs N6 -> N25/N9/N7.
EXPECTED: Final[dict[Side, dict[MessageType, frozenset[S]]]] = {
    "user": {
        MessageType.SETUP_ACKNOWLEDGE: frozenset({S.CALL_INITIATED}),
        MessageType.CALL_PROCEEDING: frozenset({S.CALL_INITIATED, S.OVERLAP_SENDING}),
        MessageType.ALERTING: frozenset({S.CALL_INITIATED, S.OVERLAP_SENDING, S.OUTGOING_CALL_PROCEEDING}),
        MessageType.PROGRESS: frozenset({S.OVERLAP_SENDING, S.OUTGOING_CALL_PROCEEDING, S.CALL_DELIVERED}),
        MessageType.CONNECT: frozenset(
            {S.CALL_INITIATED, S.OVERLAP_SENDING, S.OUTGOING_CALL_PROCEEDING, S.CALL_DELIVERED}
        ),
        MessageType.CONNECT_ACKNOWLEDGE: frozenset({S.CONNECT_REQUEST, S.ACTIVE}),
    },
    "network": {
        MessageType.SETUP_ACKNOWLEDGE: frozenset({S.CALL_PRESENT}),
        MessageType.CALL_PROCEEDING: frozenset({S.CALL_PRESENT, S.OVERLAP_RECEIVING}),
        MessageType.ALERTING: frozenset({S.CALL_PRESENT, S.OVERLAP_RECEIVING, S.INCOMING_CALL_PROCEEDING}),
        MessageType.PROGRESS: frozenset({S.OVERLAP_RECEIVING, S.INCOMING_CALL_PROCEEDING, S.CALL_RECEIVED}),
        MessageType.CONNECT: frozenset(
            {S.CALL_PRESENT, S.OVERLAP_RECEIVING, S.INCOMING_CALL_PROCEEDING, S.CALL_RECEIVED}
        ),
        MessageType.CONNECT_ACKNOWLEDGE: frozenset({S.ACTIVE}),
    },
}


@dataclass(eq=False, slots=True)
class Call:
    """One call on the span. ``ours`` is true when this side allocated the call reference (it sent the
    SETUP; the messages it sends carry flag 0). ``channel`` is the B-channel the call holds in the
    :class:`~appliance.pri.q931_channels.ChannelTable` (None after losing it to glare, until the network's
    first response names another); ``channel_sent`` whether our first response already carried it.
    ``timers`` maps a running timer's name (``"T303"``) to its deadline. ``clear_*`` is how the call will be
    reported in its :class:`~appliance.pri.q931_events.CallReleased` once it reaches NULL."""

    handle: int
    cref: int
    ours: bool
    side: Side
    span: int
    state: S = S.NULL
    channel: int | None = None
    exclusive: bool = False
    channel_sent: bool = False
    timers: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    setup: Message | None = None
    clear_cause: int | None = None
    clear_location: int = 0
    clear_local: bool = False

    @property
    def key(self) -> tuple[int, bool]:
        return (self.cref, self.ours)

    def set_state(self, new: S) -> None:
        """The one place a call changes state (STYLE rule 5)."""
        if new is self.state:
            return
        if new not in TRANSITIONS[self.state]:
            raise LocalProtocolError(
                f"span {self.span} call {self.handle}: illegal transition "
                f"{state_name(self.side, self.state)} -> {state_name(self.side, new)}"
            )
        _LOG.info(
            "span %d call %d cr %d%s: %s -> %s",
            self.span,
            self.handle,
            self.cref,
            "" if self.ours else "'",
            state_name(self.side, self.state),
            state_name(self.side, new),
        )
        self.state = new

    def clearing_by(self, cause: int, location: int, *, local: bool) -> None:
        """Remember who cleared the call first and why; later clearing messages do not overwrite it."""
        if self.clear_cause is None:
            self.clear_cause = cause
            self.clear_location = location
            self.clear_local = local


class MachineBase:
    """What the procedures of :class:`~appliance.pri.q931.Q931` share: its state (set up by its constructor)
    and the helpers every clause uses. The procedures are split by clause over small classes stacked on
    this one: timer expiry (:mod:`~appliance.pri.q931_timers`), restart (:mod:`~appliance.pri.q931_channels`),
    §5.8 error handling (:mod:`~appliance.pri.q931_status`), and the machine itself."""

    side: Side
    span: int
    timers: Q931Timers
    _channels: ChannelTable
    _calls: dict[CallHandle, Call]
    _by_key: dict[tuple[int, bool], Call]
    _next_handle: int
    _next_cref: int
    _out: list[Message]
    _events: deque[Q931Event]
    _link_up: bool
    _location: Location
    _disc_sent: S  # we sent DISCONNECT: U11 / N12 (Q.931 §5.3.3, §5.3.4)
    _disc_rcvd: S  # the peer did: U12 / N11
    _offered: S  # an incoming call not yet answered: U6 / N1

    @property
    def _overlap_in(self) -> S:
        return S.OVERLAP_RECEIVING if self.side == "user" else S.OVERLAP_SENDING

    @property
    def _proceeding_in(self) -> S:
        return S.INCOMING_CALL_PROCEEDING if self.side == "user" else S.OUTGOING_CALL_PROCEEDING

    @property
    def _alerting_in(self) -> S:
        return S.CALL_RECEIVED if self.side == "user" else S.CALL_DELIVERED

    def _clear(self, call: Call, cause: int, now: float, *, inband: bool = False) -> None:
        """Start clearing from any state (§5.3.2) with ``cause``; with the link down, locally."""
        call.clearing_by(cause, self._location, local=True)
        if not self._link_up:
            self._release(call)
        elif call.state is self._offered and not call.ours:
            self._send(call, MessageType.RELEASE_COMPLETE, cause=Cause(cause, self._location))
            self._release(call)
        elif call.state is self._disc_rcvd:
            self._send_release(call, Cause(cause, self._location), now)
        else:
            call.timers.pop("T322", None)
            for name in ("T301", "T302", "T303", "T310", "T313"):
                call.timers.pop(name, None)
            inband = inband and self.side == "network"
            pi = (ProgressIndicator(ProgressDescription.IN_BAND_AVAILABLE, self._location),) if inband else ()
            self._send(call, MessageType.DISCONNECT, cause=Cause(cause, self._location), progress=pi)
            call.set_state(self._disc_sent)
            self._start(call, "T306" if inband else "T305", now)

    def _send_release(self, call: Call, cause: Cause, now: float) -> None:
        call.timers.clear()
        call.attempts.pop("T308", None)
        self._send(call, MessageType.RELEASE, cause=cause)
        call.set_state(S.RELEASE_REQUEST)
        self._start(call, "T308", now)

    def _release(self, call: Call) -> None:
        """NULL: free the channel and call reference, report the one :class:`CallReleased`."""
        call.timers.clear()
        self._channels.release(call.channel, call.handle)
        del self._calls[call.handle]
        del self._by_key[call.key]
        call.set_state(S.NULL)
        cause = call.clear_cause if call.clear_cause is not None else CAUSE_NORMAL
        self._events.append(CallReleased(call.handle, cause, call.clear_location, call.clear_local))

    def _enquire(self, call: Call, now: float) -> None:
        call.attempts["T322"] = 1
        self._send(call, MessageType.STATUS_ENQUIRY)
        self._start(call, "T322", now)

    def _retry(self, call: Call, name: str, limit: int) -> bool:
        done = call.attempts.get(name, 1)
        if done >= limit:
            return False
        call.attempts[name] = done + 1
        return True

    def _status(self, call: Call, cause: int, diagnostic: bytes = b"") -> None:
        self._send(
            call,
            MessageType.STATUS,
            cause=Cause(cause, self._location, diagnostic),
            call_state=CallState(call.state),
        )

    def _fault(self, call: Call, cause: int, detail: str) -> None:
        _LOG.warning("span %d call %d: %s (cause %d)", self.span, call.handle, detail, cause)
        self._events.append(ProtocolFault(call.handle, cause, detail))

    def _first_channel(self, call: Call) -> ChannelId | None:
        """Our first response to an offered call names the negotiated channel, exclusive (§5.2.3.1)."""
        if call.channel_sent or call.channel is None:
            return None
        call.channel_sent = True
        return ChannelId((call.channel,), exclusive=True)

    def _message(self, call: Call, kind: MessageType, **fields: object) -> Message:
        return Message(kind, call.cref, call.ours, **fields)  # type: ignore[arg-type]

    def _send(self, call: Call, kind: MessageType, **fields: object) -> None:
        self._out.append(self._message(call, kind, **fields))

    def _start(self, call: Call, name: str, now: float) -> None:
        call.timers[name] = now + float(getattr(self.timers, name.lower()))

    def _command(self, handle: CallHandle, states: set[S] | None, *, ours: bool | None = None) -> Call:
        call = self._calls.get(handle)
        if (
            call is None
            or (states is not None and call.state not in states)
            or (ours is not None and call.ours != ours)
        ):
            state = "NULL" if call is None else self._state(call)
            raise LocalProtocolError(f"span {self.span}: call {handle} in {state} does not allow this")
        return call

    def _state(self, call: Call) -> str:
        return state_name(self.side, call.state)

    def _add(self, call: Call) -> None:
        self._calls[call.handle] = call
        self._by_key[call.key] = call

    def _new_handle(self) -> CallHandle:
        handle = self._next_handle
        self._next_handle += 1
        return handle

    def _new_cref(self) -> int:
        """Q.931 §4.3: a value unique among this side's calls; 1-32767, wrapping."""
        for _ in range(MAX_CALL_REFERENCE):
            cref = self._next_cref
            self._next_cref = cref % MAX_CALL_REFERENCE + 1
            if (cref, True) not in self._by_key:
                return cref
        raise LocalProtocolError(f"span {self.span}: every call reference is in use")
