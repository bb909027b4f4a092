"""The local IVR as a call leg: an IVR session run on the caller's media leg in a media worker.

Theory of operation. A call routed to ``ivr:<flow>`` (or rescued there when its cloud leg failed) gets an
:class:`IvrLeg` as its b leg. The leg answers the caller's offer with the appliance as the media end
(:meth:`MediaAnchor.answer_local`) — or, for a rescue, takes over the already anchored caller leg
(:meth:`MediaAnchor.adopt_local`) so the caller is neither re-answered nor re-INVITEd — and runs an
:class:`~appliance.ivr.session.IvrSession` on it. The session's actions become commands for the call's
media worker (play, record, stop) and outbox appends (:attr:`B2bua.persist_requests`); the worker's events
(playback and recording ends, digits) and the appliance's answers (an append committed) go back to the
session. A transfer node's requests go to the B2BUA's agent transfer, which answers with the queue's
``transfer_*`` inputs and, once an agent answers, makes the agent's leg the call's b leg until the agent
hangs up and hands the caller back. The session outlives the call when the caller hangs up: its last
records (a voicemail being recorded, the session record) are still made durable, so the leg stays known to
the B2BUA until the session says it has ended.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from appliance.calls.causes import Cause
from appliance.calls.errors import MediaRefused
from appliance.calls.events import (
    Answer,
    CallEvent,
    Disconnect,
    Dtmf,
    Fail,
    Update,
    UpdateAnswer,
    UpdateRejected,
)
from appliance.ivr.actions import (
    Action,
    HangUp,
    LeaveQueue,
    Persist,
    PlayFiles,
    QueueForAgents,
    RecordMessage,
    SessionEnded,
    StopMedia,
)
from appliance.media.control_events import DtmfEvent, Play, PlayDone, Record, RecordDone, WorkerEvent
from appliance.media.control_events import StopMedia as StopMediaCommand

if TYPE_CHECKING:
    from appliance.calls.b2bua import B2bua, Call
    from appliance.calls.events import Setup

log = logging.getLogger("appliance.calls.ivr")

CALLER_LEG = "a"


class Session(Protocol):
    """What the leg needs of :class:`appliance.ivr.session.IvrSession`."""

    @property
    def ended(self) -> bool: ...
    def start(self, now: float) -> None: ...
    def dtmf(self, digit: str, now: float) -> None: ...
    def play_done(self, play_id: int, reason: str, now: float) -> None: ...
    def record_done(
        self, record_id: str, reason: str, duration: float, blob: Mapping[str, Any] | None, now: float
    ) -> None: ...
    def persisted(self, token: int, now: float) -> None: ...
    def persist_failed(self, token: int, reason: str, now: float) -> None: ...
    def transfer_position(self, position: int, now: float) -> None: ...
    def transfer_unavailable(self, now: float) -> None: ...
    def transfer_answered(self, agent: str, now: float) -> None: ...
    def transfer_ended(self, now: float) -> None: ...
    def caller_hung_up(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def next_action(self) -> Action | None: ...


class IvrLeg:
    """One caller's IVR session as the b leg of its call (``route_kind`` ``"ivr"``)."""

    __slots__ = ("_b2bua", "call", "call_id", "flow", "hung_up", "route_kind", "session", "timer_due")

    def __init__(self, b2bua: B2bua, call: Call, flow: str, session: Session) -> None:
        self._b2bua = b2bua
        self.call = call
        self.call_id = call.id
        self.flow = flow
        self.session = session
        self.route_kind = "ivr"
        self.timer_due: float | None = None
        self.hung_up = False  # the call is over for the caller; the session may still be finishing

    # ------------------------------------------------------------------------------ starting
    def start(self, setup: Setup, now: float) -> None:
        """A new call for the IVR: answer the caller locally, then run the flow."""
        anchor = self._b2bua.ivr_media
        if anchor is None or setup.sdp is None:
            reason = "No SDP offer (delayed offer)" if anchor is not None else "No media relay"
            self.call.from_leg(self, Fail(Cause.from_sip(488 if anchor else 503, reason)), now)
            return
        try:
            answer = anchor.answer_local(self.call_id, setup.sdp)
        except MediaRefused as exc:
            self.call.from_leg(self, Fail(Cause.from_sip(exc.status, exc.reason)), now)
            return
        self._b2bua.local_ivr.started(self)
        self.call.from_leg(self, Answer(answer), now)
        self.session.start(now)
        self.pump(now)

    def adopt(self, now: float) -> None:
        """A rescued call: the caller's leg is already answered and anchored; the session starts at once."""
        self._b2bua.local_ivr.started(self)
        self.session.start(now)
        self.pump(now)

    # ------------------------------------------------------------------------------ inputs
    def handle(self, event: CallEvent, now: float) -> None:
        """An event from the caller's leg."""
        if isinstance(event, (Disconnect, Fail)):
            self.caller_gone(now)
        elif isinstance(event, Dtmf):
            self.session.dtmf(event.digit, now)  # SIP INFO from a caller without telephone-event
            self.pump(now)
        elif isinstance(event, Update) and event.sdp is not None:
            anchor = self._b2bua.ivr_media
            assert anchor is not None  # an IVR leg exists only with an anchor
            try:
                answer = anchor.answer_local(self.call_id, event.sdp)
            except MediaRefused as exc:
                self.call.from_leg(self, UpdateRejected(Cause.from_sip(exc.status, exc.reason)), now)
                return
            self.call.from_leg(self, UpdateAnswer(answer), now)

    def caller_gone(self, now: float) -> None:
        if not self.hung_up:
            self.hung_up = True
            self.session.caller_hung_up(now)
            self.pump(now)

    def media_event(self, event: WorkerEvent, now: float) -> None:
        if isinstance(event, PlayDone):
            self.session.play_done(event.play_id, event.reason, now)
        elif isinstance(event, RecordDone):
            blob = None
            if event.reason != "error" and event.path:
                blob = {"path": event.path, "size": event.size, "sha256": event.sha256,
                        "key_id": event.key_id}  # fmt: skip
            self.session.record_done(event.record_id, event.reason, event.duration, blob, now)
        elif isinstance(event, DtmfEvent):
            if event.leg != CALLER_LEG:
                return
            self.session.dtmf(event.digit, now)
        else:
            return
        self.pump(now)

    def command_failed(self, command: object, reason: str, now: float) -> None:
        """The worker refused a play or record command: the session hears it as that media's end."""
        log.warning("IVR media command failed: %s", reason, extra={"ctx": {"call": self.call_id}})
        if isinstance(command, Play):
            self.session.play_done(command.play_id, "error", now)
        elif isinstance(command, Record):
            self.session.record_done(command.record_id, "error", 0.0, None, now)
        else:
            return
        self.pump(now)

    def persisted(self, token: int, now: float) -> None:
        self.session.persisted(token, now)
        self.pump(now)

    def persist_failed(self, token: int, reason: str, now: float) -> None:
        self.session.persist_failed(token, reason, now)
        self.pump(now)

    def on_timer(self, now: float) -> None:
        self.timer_due = None
        self.session.handle_timer(now)
        self.pump(now)

    # ------------------------------------------------------------------------------ outputs
    def pump(self, now: float) -> None:
        """Carry out every action the session queued, then re-arm its timer."""
        session = self.session
        while (action := session.next_action()) is not None:
            self._act(action, now)
        due = None if session.ended else session.get_timer()
        if due != self.timer_due:
            self.timer_due = due
            self._b2bua.arm(self)

    def _act(self, action: Action, now: float) -> None:
        b2bua = self._b2bua
        anchor = b2bua.ivr_media
        call_id = self.call_id
        match action:
            case PlayFiles():
                if anchor is not None and not self.hung_up:
                    play = Play(call_id, CALLER_LEG, action.play_id, action.files, action.barge_in,
                                action.loop)  # fmt: skip
                    if not anchor.local_command(call_id, play):
                        self.session.play_done(action.play_id, "error", now)
            case StopMedia():
                if anchor is not None:
                    anchor.local_command(call_id, StopMediaCommand(call_id, CALLER_LEG))
            case RecordMessage():
                record = Record(call_id, CALLER_LEG, action.record_id, action.max_seconds,
                                action.silence_seconds, action.end_on_hash, action.beep)  # fmt: skip
                if anchor is None or self.hung_up or not anchor.local_command(call_id, record):
                    self.session.record_done(action.record_id, "error", 0.0, None, now)
            case Persist():
                b2bua.persist_requests.append((call_id, action.token, action.type, action.body))
            case QueueForAgents():
                b2bua.transfer.join(self, action.group, action.strategy, now)
            case LeaveQueue():
                b2bua.transfer.leave(self, now)
            case HangUp():
                if not self.hung_up:
                    self.hung_up = True
                    text = "Normal call clearing" if action.cause == 16 else "Ended by the local IVR"
                    b2bua.local_ivr.hang_up(self, Cause.from_q850(action.cause, text), now)
            case SessionEnded():
                b2bua.local_ivr.ended(self)
