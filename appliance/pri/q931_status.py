"""Q.931 §5.8 error handling, the decisions without the machine: which answer an element-level fault
calls for, and whether a peer's reported call state is compatible with ours (§5.8.11).

Element faults (:class:`~appliance.pri.q931_model.IeProblem`), in order of precedence:

* a mandatory element missing (§5.8.6.1: cause 96), a mandatory element with wrong contents (§5.8.6.2:
  cause 100), an unrecognised element in the comprehension-required range (§5.8.7.1: handled as a missing
  mandatory one, cause 99 with its identifier): the message is not acted on ("fatal"); a SETUP is
  refused with RELEASE COMPLETE, a DISCONNECT/RELEASE is acted on with cause 31 but answered with the
  fault's cause, any other message answered with STATUS;
* an unrecognised optional element (§5.8.7.1: cause 99) or an optional element with wrong contents
  (§5.8.7.2: cause 100): the message is acted on without it and a STATUS reports the fault ("report");
* a repeated or out-of-sequence optional element: the first occurrence is used, the rest ignored silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from appliance.pri.errors import Q931DecodeError
from appliance.pri.q931_call import (
    CAUSE_IE_NON_EXISTENT,
    CAUSE_INVALID_CALL_REFERENCE,
    CAUSE_INVALID_IE_CONTENTS,
    CAUSE_MANDATORY_MISSING,
    CAUSE_NORMAL_UNSPECIFIED,
    CAUSE_NOT_COMPATIBLE_WITH_STATE,
    CAUSE_RESPONSE_TO_ENQUIRY,
    Call,
    RestartState,
    Side,
)
from appliance.pri.q931_channels import RestartProcedure
from appliance.pri.q931_events import ProtocolFault
from appliance.pri.q931_model import (
    GLOBAL_CALL_REFERENCE,
    CallState,
    Cause,
    Decoded,
    IeProblem,
    Message,
    MessageType,
)
from appliance.pri.q931_model import CallStateValue as S


@dataclass(frozen=True, slots=True)
class Answer:
    """What to do about a message's element faults: ``fatal`` = do not act on the message."""

    fatal: bool
    cause: int
    diagnostic: bytes
    detail: str


# Element faults in these are answered by the clearing procedure itself or not at all (§5.8.7.1).
NO_STATUS: Final = frozenset(
    {
        MessageType.STATUS,
        MessageType.STATUS_ENQUIRY,
        MessageType.DISCONNECT,
        MessageType.RELEASE,
        MessageType.RELEASE_COMPLETE,
    }
)


def judge(problems: tuple[IeProblem, ...]) -> Answer | None:
    """The answer the worst of ``problems`` calls for, or None when the message is to be acted on as is."""
    report: Answer | None = None
    for problem in problems:
        diag = bytes([problem.identifier & 0xFF])
        detail = f"IE 0x{problem.identifier:02x} {problem.kind} {problem.detail}".rstrip()
        if problem.kind == "missing" and problem.mandatory:
            return Answer(True, CAUSE_MANDATORY_MISSING, diag, detail)
        if problem.kind == "content" and problem.mandatory:
            return Answer(True, CAUSE_INVALID_IE_CONTENTS, diag, detail)
        if problem.kind == "unrecognized" and (problem.comprehension_required or problem.mandatory):
            return Answer(True, CAUSE_IE_NON_EXISTENT, diag, detail)
        if report is None and problem.kind == "unrecognized":
            report = Answer(False, CAUSE_IE_NON_EXISTENT, diag, detail)
        elif report is None and problem.kind == "content":
            report = Answer(False, CAUSE_INVALID_IE_CONTENTS, diag, detail)
    return report


_SETUP_PHASE: Final = frozenset(
    {
        S.CALL_INITIATED,
        S.OVERLAP_SENDING,
        S.OUTGOING_CALL_PROCEEDING,
        S.CALL_DELIVERED,
        S.CALL_PRESENT,
        S.CALL_RECEIVED,
        S.CONNECT_REQUEST,
        S.INCOMING_CALL_PROCEEDING,
        S.OVERLAP_RECEIVING,
    }
)
_CLEARING: Final = frozenset({S.DISCONNECT_REQUEST, S.DISCONNECT_INDICATION, S.RELEASE_REQUEST})


def compatible(side: Side, ours: S, peer: S) -> bool:
    """Whether the peer's state (from a STATUS) can coexist with ours, messages in flight allowed for.

    NULL is handled by the caller (§5.8.11: the call is released). A call in a clearing state is
    compatible with any state. An active call on the user side has a peer that is active or clearing;
    on the network side the user may still be in a setup state with our CONNECT in flight, or in U8
    with its CONNECT ACKNOWLEDGE in flight. A call still being set up is compatible with any state but
    NULL (the peer may have answered or started clearing).
    """
    if ours in _CLEARING or ours in _SETUP_PHASE:
        return peer is not S.NULL
    if ours is S.ACTIVE:
        allowed = {S.ACTIVE} | _CLEARING
        if side == "network":
            allowed |= {S.CALL_INITIATED, S.OVERLAP_SENDING, S.OUTGOING_CALL_PROCEEDING, S.CALL_DELIVERED}
            allowed |= {S.CONNECT_REQUEST}
        return peer in allowed
    return False


class FaultProcedures(RestartProcedure):
    """The §5.8 procedures that need the machine: message-level decode errors, unknown call references,
    fatal element faults, STATUS / STATUS ENQUIRY, and messages on the global call reference."""

    def _incoming_setup(self, decoded: Decoded, now: float) -> None:
        raise NotImplementedError  # the machine's (appliance.pri.q931.Q931)

    def _decode_error(self, exc: Q931DecodeError) -> None:
        """Message-level faults (§5.8.1-§5.8.4): ignore, or STATUS / RELEASE COMPLETE with the cause."""
        self._events.append(ProtocolFault(None, exc.cause or 0, exc.reason))
        if exc.cause is None or exc.call_reference is None or exc.from_originator is None:
            return
        cause = Cause(exc.cause, self._location, exc.diagnostic)
        if exc.call_reference == GLOBAL_CALL_REFERENCE:
            self._out.append(self._global_status(cause))
            return
        call = self._by_key.get((exc.call_reference, not exc.from_originator))
        if call is not None:
            self._status(call, exc.cause, exc.diagnostic)
        else:
            cause = Cause(CAUSE_INVALID_CALL_REFERENCE, self._location)
            self._out.append(
                Message(
                    MessageType.RELEASE_COMPLETE, exc.call_reference, not exc.from_originator, cause=cause
                )
            )

    def _unknown_reference(self, decoded: Decoded, now: float) -> None:
        """A call reference not in use (§5.8.3.2), or a new incoming SETUP."""
        msg = decoded.message
        if msg.type is MessageType.SETUP and msg.from_originator:
            self._incoming_setup(decoded, now)
            return
        detail = f"{msg.type.name} for unknown call reference {msg.call_reference}"
        self._events.append(ProtocolFault(None, CAUSE_INVALID_CALL_REFERENCE, detail))
        reply = not msg.from_originator
        if msg.type in (MessageType.RELEASE_COMPLETE, MessageType.SETUP):
            return
        if msg.type is MessageType.STATUS_ENQUIRY:
            status = Cause(CAUSE_RESPONSE_TO_ENQUIRY, self._location)
            self._out.append(
                Message(
                    MessageType.STATUS, msg.call_reference, reply, cause=status, call_state=CallState(S.NULL)
                )
            )
            return
        if msg.type is MessageType.STATUS:
            # §5.8.11: a STATUS reporting a state other than NULL for a call we do not have: clear it (101)
            if msg.call_state is not None and msg.call_state.state is not S.NULL:
                cause = Cause(CAUSE_NOT_COMPATIBLE_WITH_STATE, self._location)
                self._out.append(
                    Message(MessageType.RELEASE_COMPLETE, msg.call_reference, reply, cause=cause)
                )
            return
        cause = Cause(CAUSE_INVALID_CALL_REFERENCE, self._location)
        self._out.append(Message(MessageType.RELEASE_COMPLETE, msg.call_reference, reply, cause=cause))

    def _fatal_problem(
        self, call: Call, msg: Message, cause: int, diag: bytes, detail: str, now: float
    ) -> None:
        """§5.8.6.1/§5.8.6.2: a clearing message is acted on as if with cause 31, answered with ``cause``;
        a STATUS is ignored (no STATUS answers a STATUS); anything else gets STATUS and is not acted on."""
        self._fault(call, cause, detail)
        if msg.type is MessageType.DISCONNECT:
            if call.state not in (S.RELEASE_REQUEST, self._disc_rcvd):
                call.clearing_by(CAUSE_NORMAL_UNSPECIFIED, 0, local=False)
                self._send_release(call, Cause(cause, self._location, diag), now)
        elif msg.type is MessageType.RELEASE:
            if call.state is not S.RELEASE_REQUEST:
                self._send(call, MessageType.RELEASE_COMPLETE, cause=Cause(cause, self._location, diag))
            call.clearing_by(CAUSE_NORMAL_UNSPECIFIED, 0, local=False)
            self._release(call)
        elif msg.type is MessageType.RELEASE_COMPLETE:
            call.clearing_by(CAUSE_NORMAL_UNSPECIFIED, 0, local=False)
            self._release(call)
        elif msg.type is not MessageType.STATUS:
            self._status(call, cause, diag)

    def _on_status(self, call: Call, msg: Message, now: float) -> None:
        """§5.8.11: a peer in NULL releases the call; an incompatible state clears it with cause 101."""
        call.timers.pop("T322", None)
        call.attempts.pop("T322", None)
        if msg.call_state is None:
            return
        peer = msg.call_state.state
        if peer is S.NULL:
            cause = msg.cause.value if msg.cause is not None else CAUSE_NOT_COMPATIBLE_WITH_STATE
            call.clearing_by(cause, int(msg.cause.location) if msg.cause is not None else 0, local=False)
            self._release(call)
        elif not compatible(self.side, call.state, peer):
            self._fault(
                call, CAUSE_NOT_COMPATIBLE_WITH_STATE, f"peer in {int(peer)}, we in {self._state(call)}"
            )
            if call.state not in (self._disc_sent, S.RELEASE_REQUEST):
                self._clear(call, CAUSE_NOT_COMPATIBLE_WITH_STATE, now)

    def _on_status_enquiry(self, call: Call, msg: Message, now: float) -> None:
        self._status(call, CAUSE_RESPONSE_TO_ENQUIRY)

    def _on_global(self, decoded: Decoded, now: float) -> None:
        msg = decoded.message
        if msg.type is MessageType.RESTART and msg.from_originator:
            self._on_restart(decoded, judge(decoded.problems))
        elif msg.type is MessageType.RESTART_ACKNOWLEDGE and not msg.from_originator:
            if self._restart is RestartState.REST1:
                self._end_restart(peer=False, completed=True)
            else:
                self._events.append(ProtocolFault(None, 0, "RESTART ACKNOWLEDGE with no RESTART pending"))
        elif msg.type is not MessageType.STATUS:
            # §5.8.3.2 f): any other message on the global call reference
            self._events.append(
                ProtocolFault(None, CAUSE_INVALID_CALL_REFERENCE, f"{msg.type.name} on global CR")
            )
            self._out.append(self._global_status(Cause(CAUSE_INVALID_CALL_REFERENCE, self._location)))
