"""The IVR interpreter: one :class:`IvrSession` walks one :class:`~appliance.ivr.model.Flow` for one caller.

Theory of operation. The session is sans-I/O (STYLE rules 1–3): call control feeds it what happened on the
caller's leg -- keys (RFC 4733 telephone-events or in-band DTMF, RFC 4733 §3.2 events 0–11), the end of a
playback or a recording, outbox commits, agent-queue reports -- each with the loop's monotonic ``now``,
and drains the :mod:`~appliance.ivr.actions` it asks for with :meth:`IvrSession.next_action`. Its one
deadline is :meth:`IvrSession.get_timer`; the glue calls :meth:`IvrSession.handle_timer` when it passes.
Wall time (business hours, callback times, record timestamps) comes from the injected ``wall``.

Each node visit is a runner (:mod:`appliance.ivr.session_nodes`, :mod:`appliance.ivr.session_outcomes`) that
follows the node's documented contract in :mod:`appliance.ivr.model`. The session itself keeps what outlives
a node: the language, the keys typed ahead, the current playback id (a ``play_done`` for any other id is
stale and ignored: a new playback replaces the old one, which the worker reports as ``stopped``), the
recording and the persists under way, and the lifecycle:

* ``NEW`` -> ``ACTIVE`` at :meth:`~IvrSession.start`.
* ``ACTIVE`` -> ``CLOSING`` when the flow hangs up (``HangUp`` is emitted) or the caller hangs up (no
  more playback from then on; a recording under way is stopped and still kept if long enough; the agent
  queue is left).
* ``CLOSING`` -> ``ENDED`` as soon as no recording or persist is outstanding: the session record
  (``ivr.session``) is handed to ``Persist``, then ``SessionEnded``. Later reports are ignored.

A flow that passes 100 nodes without waiting for the caller (a loop the validator should have refused) is
cut: the call is hung up with Q.850 cause 41 (temporary failure) and the outcome is ``error``.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from appliance.ivr import records
from appliance.ivr.actions import (
    Action,
    HangUp,
    LeaveQueue,
    Persist,
    PlayFiles,
    PromptCatalog,
    QueueForAgents,
    RecordMessage,
    SessionEnded,
    StopMedia,
)
from appliance.ivr.errors import IvrError
from appliance.ivr.model import (
    DTMF_KEYS,
    Announcement,
    BusinessHours,
    CallbackRequest,
    CollectDigits,
    Flow,
    Goto,
    Hangup,
    LanguageMenu,
    Menu,
    Node,
    Play,
    Survey,
    Transfer,
    Voicemail,
)
from appliance.ivr.session_nodes import (
    CAUSE_TEMPORARY_FAILURE,
    AnnouncementRunner,
    BusinessHoursRunner,
    CollectRunner,
    GotoRunner,
    HangupRunner,
    LanguageMenuRunner,
    MenuRunner,
    PlayRunner,
    Runner,
)
from appliance.ivr.session_outcomes import CallbackRunner, SurveyRunner, TransferRunner, VoicemailRunner

log = logging.getLogger("appliance.ivr.session")

MAX_HOPS: Final = 100
"""Node transitions allowed without caller input before the flow is cut as a loop."""

MAX_RECORDED: Final = 1000
"""Node ids and keys the session record keeps at most, each: a caller who holds the line pressing keys, or
sits through a looping menu for hours, must not grow an outbox event without bound."""

RUNNERS: Final[Mapping[type[Node], type[Runner[Any]]]] = {
    Play: PlayRunner,
    Announcement: AnnouncementRunner,
    Menu: MenuRunner,
    CollectDigits: CollectRunner,
    LanguageMenu: LanguageMenuRunner,
    BusinessHours: BusinessHoursRunner,
    Voicemail: VoicemailRunner,
    CallbackRequest: CallbackRunner,
    Transfer: TransferRunner,
    Survey: SurveyRunner,
    Hangup: HangupRunner,
    Goto: GotoRunner,
}
"""The runner for each node class (dispatch by type, STYLE rule 15)."""


class SessionUsageError(IvrError):
    """Call control drove the session against its contract (started twice, say): a defect in the caller
    of this API, never the caller on the phone."""


class SessionState(enum.Enum):
    NEW = "new"
    ACTIVE = "active"
    CLOSING = "closing"
    ENDED = "ended"


_TRANSITIONS: Final[dict[SessionState, frozenset[SessionState]]] = {
    SessionState.NEW: frozenset({SessionState.ACTIVE, SessionState.CLOSING}),
    SessionState.ACTIVE: frozenset({SessionState.CLOSING}),
    SessionState.CLOSING: frozenset({SessionState.ENDED}),
    SessionState.ENDED: frozenset(),
}


class IvrSession:
    """One caller in one flow. See the module docstring for the lifecycle; every input method takes the
    loop's monotonic ``now`` last and may queue actions for :meth:`next_action`.

    ``language`` is the caller's language chosen by country (a language menu may change it), ``caller_zone``
    the IANA zone callback times are offered in, ``rescued`` whether the call came from a failed cloud leg
    (recorded in the session record).
    """

    def __init__(
        self,
        *,
        flow: Flow,
        catalog: PromptCatalog,
        call_id: str,
        session_id: str,
        caller: str | None,
        language: str,
        caller_zone: str,
        wall: Callable[[], float],
        rescued: bool = False,
    ) -> None:
        self._flow = flow
        self._catalog = catalog
        self._call_id = call_id
        self._session_id = session_id
        self._caller = caller
        self.language = language
        self._caller_zone = caller_zone
        self.wall = wall
        self._rescued = rescued
        self.state = SessionState.NEW
        self._actions: deque[Action] = deque()
        self._runner: Runner[Any] | None = None
        self._path: list[str] = []
        self._node_id: str | None = None
        self._truncated = False
        self._digits: list[str] = []
        self._type_ahead: deque[str] = deque()
        self._variables: dict[str, str] = {}
        self._play_id = 0
        self._playing: int | None = None  # the play id whose play_done the current node waits for
        self._recordings = 0
        self._recording: str | None = None
        self._token = 0
        self._pending: dict[int, str] = {}  # persist token -> event type, until persisted or failed
        self._hops = 0
        self._started: float | None = None
        self._outcome: str | None = None
        self._agent: str | None = None
        self._abandoned = False
        self._ctx = {"ctx": {"call": call_id, "ivr_session": session_id}}

    # --- properties ------------------------------------------------------------------------------------

    @property
    def flow(self) -> Flow:
        return self._flow

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def caller(self) -> str | None:
        return self._caller

    @property
    def caller_zone(self) -> str:
        return self._caller_zone

    @property
    def agent(self) -> str | None:
        """The local agent who answered the caller, if one did."""
        return self._agent

    @property
    def ended(self) -> bool:
        return self.state is SessionState.ENDED

    @property
    def path(self) -> tuple[str, ...]:
        """Node ids in the order visited (a node visited twice appears twice), the first
        :data:`MAX_RECORDED`."""
        return tuple(self._path)

    @property
    def current_node(self) -> str | None:
        """The node the session is in (the last one, while closing); None before the start and once ended."""
        return None if self.state is SessionState.ENDED else self._node_id

    @property
    def variables(self) -> Mapping[str, str]:
        """What collect nodes stored, by variable name."""
        return dict(self._variables)

    # --- inputs ----------------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Answer: enter the flow's start node (nothing if the caller already hung up)."""
        if self.state is SessionState.ACTIVE:
            raise SessionUsageError(f"session {self._session_id} started twice")
        if self.state is not SessionState.NEW:
            return
        self._started = self.wall()
        self._set_state(SessionState.ACTIVE)
        log.info(
            "ivr flow %s v%d starts in %s",
            self._flow.name,
            self._flow.version,
            self.language,
            extra=self._ctx,
        )
        self.go(self._flow.start, now)

    def dtmf(self, digit: str, now: float) -> None:
        """One key from the caller, whether or not a prompt is playing."""
        if digit not in DTMF_KEYS:
            log.debug("ivr key %r ignored: not a keypad key", digit, extra=self._ctx)
            return
        if self.state is not SessionState.ACTIVE or self._runner is None:
            return
        self._record(self._digits, digit)
        self._hops = 0
        self._runner.key(digit, now)

    def play_done(self, play_id: int, reason: str, now: float) -> None:
        """Playback ``play_id`` ended (``done``, ``barge_in``, ``stopped`` or ``error``)."""
        if play_id != self._playing or self._runner is None or self.state is not SessionState.ACTIVE:
            return  # replaced, cut by a key the node already acted on, or the session is past playback
        self._playing = None
        if reason == "error":
            # The caller missed a prompt; the flow carries on rather than strand them in silence.
            log.warning("ivr playback %d failed", play_id, extra=self._ctx)
        self._runner.play_done(reason, now)

    def record_done(
        self, record_id: str, reason: str, duration: float, blob: Mapping[str, Any] | None, now: float
    ) -> None:
        """Recording ``record_id`` ended (``silence``, ``dtmf``, ``max``, ``stopped`` or ``error``); ``blob``
        describes the encrypted, fsync'd file (None on error)."""
        if record_id != self._recording:
            return
        self._recording = None
        self._hops = 0
        log.info("ivr recording %s ended (%s) after %.1f s", record_id, reason, duration, extra=self._ctx)
        if self._runner is not None:
            self._runner.record_done(reason, duration, blob, now)
        self._maybe_end()

    def persisted(self, token: int, now: float) -> None:
        """The outbox committed the event of ``token``."""
        type_ = self._pending.pop(token, None)
        if type_ is None:
            return
        if type_ == records.VOICEMAIL:
            self._outcome = "voicemail"
        elif type_ == records.CALLBACK:
            self._outcome = "callback"
        if self._runner is not None:
            self._runner.persisted(token, now)
        self._maybe_end()

    def persist_failed(self, token: int, reason: str, now: float) -> None:
        """The outbox could not commit the event of ``token``: its outcome is not confirmed to the caller."""
        type_ = self._pending.pop(token, None)
        if type_ is None:
            return
        log.error("ivr %s not kept: %s", type_, reason, extra=self._ctx)
        if self._runner is not None:
            self._runner.persist_failed(token, now)
        self._maybe_end()

    def transfer_position(self, position: int, now: float) -> None:
        """The caller's place in the agent queue (1: next)."""
        if self.state is SessionState.ACTIVE and self._runner is not None:
            self._runner.transfer_position(position, now)

    def transfer_answered(self, agent: str, now: float) -> None:
        """A local agent answered; the caller's leg is theirs until :meth:`transfer_ended`."""
        if self.state is SessionState.ACTIVE and self._runner is not None:
            self._hops = 0
            self._runner.transfer_answered(agent, now)

    def transfer_unavailable(self, now: float) -> None:
        """No agent of the group can be reached: the caller hears so and goes to the node's fallback."""
        if self.state is SessionState.ACTIVE and self._runner is not None:
            self._runner.transfer_unavailable(now)

    def transfer_ended(self, now: float) -> None:
        """The agent hung up first; the caller is still on the line."""
        if self.state is SessionState.ACTIVE and self._runner is not None:
            self._hops = 0
            self._runner.transfer_ended(now)

    def caller_hung_up(self, now: float) -> None:
        """The caller is gone: nothing more is played; what is under way is finished and recorded."""
        if self.state in (SessionState.CLOSING, SessionState.ENDED):
            return
        self._abandoned = self._runner is None or not self._runner.ending
        self._set_state(SessionState.CLOSING)
        if self._recording is not None:
            self._actions.append(StopMedia())  # the worker ends the recording and reports it as stopped
        if self._runner is not None:
            self._runner.caller_gone(now)
        self._maybe_end()

    def get_timer(self) -> float | None:
        """The next deadline, or None."""
        if self.state is not SessionState.ACTIVE or self._runner is None:
            return None
        return self._runner.deadline()

    def handle_timer(self, now: float) -> None:
        deadline = self.get_timer()
        if deadline is None or now < deadline or self._runner is None:
            return
        self._hops = 0
        self._runner.timer(now)

    def next_action(self) -> Action | None:
        """The next action the session asks for, or None when there is none now."""
        return self._actions.popleft() if self._actions else None

    # --- what runners ask for (session_nodes.Host) -----------------------------------------------------

    def resolve(self, names: Sequence[str], language: str | None = None) -> tuple[str, ...]:
        """The files of prompts ``names`` in ``language`` (default: the session's). A prompt the catalog
        lacks (the validator checks flows against it, so this is a catalog changed since) is skipped."""
        lang = self.language if language is None else language
        files: list[str] = []
        for name in names:
            try:
                files.append(self._catalog.path(lang, name))
            except KeyError:
                log.warning("ivr prompt %s missing in %s", name, lang, extra=self._ctx)
        return tuple(files)

    def play_files(self, files: tuple[str, ...], *, barge_in: bool, loop: bool = False) -> bool:
        """Play ``files``; False (nothing played) when there are none or the caller is gone."""
        if not files or self.state is not SessionState.ACTIVE:
            return False
        self._play_id += 1
        self._playing = self._play_id
        self._actions.append(PlayFiles(self._play_id, files, barge_in=barge_in, loop=loop))
        return True

    def forget_play(self) -> None:
        self._playing = None

    def emit(self, action: StopMedia | QueueForAgents | LeaveQueue) -> None:
        self._actions.append(action)

    def record(self, node: Voicemail) -> str:
        self._recordings += 1
        record_id = f"{self._session_id}-vm{self._recordings}"
        self._recording = record_id
        self._actions.append(
            RecordMessage(
                record_id=record_id,
                max_seconds=node.max_seconds,
                silence_seconds=node.silence_seconds,
                end_on_hash=node.end_on_hash,
                beep=node.beep,
            )
        )
        return record_id

    def persist(self, type_: str, body: Mapping[str, Any]) -> int:
        self._token += 1
        self._pending[self._token] = type_
        self._actions.append(Persist(self._token, type_, body))
        return self._token

    def go(self, node_id: str, now: float) -> None:
        """Leave the current node for ``node_id`` (nothing once the session is closing)."""
        if self.state is not SessionState.ACTIVE:
            return
        self._playing = None
        self._hops += 1
        node = self._flow.nodes.get(node_id)
        if self._hops > MAX_HOPS or node is None:
            why = f"has no node {node_id!r}" if node is None else "loops without input"
            log.error("ivr flow %s %s: call cut", self._flow.name, why, extra=self._ctx)
            self._runner = None
            self._outcome = "error"
            self.hang_up(CAUSE_TEMPORARY_FAILURE, now)
            return
        previous = self._node_id or "-"
        log.info("ivr node %s -> %s", previous, node_id, extra=self._ctx)
        self._node_id = node_id
        self._record(self._path, node_id)
        self._runner = RUNNERS[type(node)](self, node_id, node)
        self._runner.enter(now)

    def hang_up(self, cause: int, now: float) -> None:
        if self.state is not SessionState.ACTIVE:
            return
        log.info("ivr hangs up, cause %d", cause, extra=self._ctx)
        self._actions.append(HangUp(cause))
        self._set_state(SessionState.CLOSING)
        self._maybe_end()

    def has_type_ahead(self) -> bool:
        return bool(self._type_ahead)

    def pop_type_ahead(self) -> str | None:
        return self._type_ahead.popleft() if self._type_ahead else None

    def push_type_ahead(self, digit: str) -> None:
        self._type_ahead.append(digit)

    def clear_type_ahead(self) -> None:
        self._type_ahead.clear()

    def set_variable(self, name: str, value: str) -> None:
        self._variables[name] = value

    def agent_answered(self, agent: str) -> None:
        self._agent = agent
        self._outcome = "agent"

    # --- lifecycle -------------------------------------------------------------------------------------

    def _record(self, kept: list[str], item: str) -> None:
        if len(kept) < MAX_RECORDED:
            kept.append(item)
        else:
            self._truncated = True

    def _set_state(self, new: SessionState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise SessionUsageError(f"ivr session: illegal transition {self.state.name} -> {new.name}")
        log.debug("ivr session %s -> %s", self.state.name, new.name, extra=self._ctx)
        self.state = new

    def _maybe_end(self) -> None:
        if self.state is not SessionState.CLOSING or self._pending or self._recording is not None:
            return
        end = self.wall()
        outcome = self._outcome or ("abandoned" if self._abandoned else "hangup")
        body = records.session_body(
            call_id=self._call_id,
            session_id=self._session_id,
            flow=self._flow.name,
            flow_version=self._flow.version,
            caller=self._caller,
            language=self.language,
            rescued=self._rescued,
            started=end if self._started is None else self._started,
            ended=end,
            path=self._path,
            digits="".join(self._digits),
            truncated=self._truncated,
            outcome=outcome,
            agent=self._agent,
            variables=self._variables,
        )
        self._token += 1
        self._actions.append(Persist(self._token, records.SESSION, body))
        self._actions.append(SessionEnded())
        self._runner = None
        self._set_state(SessionState.ENDED)
        log.info("ivr session ended: %s", outcome, extra=self._ctx)
