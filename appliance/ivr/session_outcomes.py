"""How :class:`~appliance.ivr.session.IvrSession` runs the nodes that take an outcome from the caller:
voicemail, callback requests, the post-call survey, and the transfer to a local agent.

The rules shared with every node are in :mod:`appliance.ivr.session_nodes`; the one that matters most
here: an outcome is appended to the outbox (:meth:`~appliance.ivr.session_nodes.Runner.keep`) and only once
the host reports it ``persisted`` does the caller hear it confirmed.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from appliance.ivr import records
from appliance.ivr.actions import LeaveQueue, QueueForAgents, StopMedia
from appliance.ivr.callback_slots import Slot, offer_slots
from appliance.ivr.hours import ScheduleError
from appliance.ivr.model import CallbackRequest, Survey, Transfer, Voicemail
from appliance.ivr.session_keys import KeyRule
from appliance.ivr.session_nodes import (
    CAUSE_NORMAL,
    CAUSE_TEMPORARY_FAILURE,
    AskingRunner,
    Runner,
    ctx,
    digit_prompts,
    press_prompt,
)

log = logging.getLogger("appliance.ivr.session")

CALLBACK_MIN_DIGITS: Final = 3
CALLBACK_MAX_DIGITS: Final = 20
SURVEY_KEYS: Final = "12345"


class VoicemailPhase(enum.Enum):
    PROMPT = "prompt"  # the greeting plays
    RECORDING = "recording"  # the worker records until silence, '#', the limit or a stop
    TOO_SHORT = "too-short"  # not kept: too_short_prompts, then next
    KEEPING = "keeping"  # the message is being made durable, then saved_prompts, then next


class VoicemailRunner(Runner[Voicemail]):
    PHASES: ClassVar[Mapping[Any, frozenset[Any]]] = {
        VoicemailPhase.PROMPT: frozenset({VoicemailPhase.RECORDING}),
        VoicemailPhase.RECORDING: frozenset({VoicemailPhase.TOO_SHORT, VoicemailPhase.KEEPING}),
        VoicemailPhase.TOO_SHORT: frozenset(),
        VoicemailPhase.KEEPING: frozenset(),
    }
    _record_id = ""

    def enter(self, now: float) -> None:
        self.host.clear_type_ahead()
        self.set_phase(VoicemailPhase.PROMPT)
        if not self.host.play_files(self.host.resolve(self.node.prompts), barge_in=False):
            self._record()

    def _record(self) -> None:
        self.set_phase(VoicemailPhase.RECORDING)
        self._record_id = self.host.record(self.node)

    def play_done(self, reason: str, now: float) -> None:
        if self.phase is VoicemailPhase.PROMPT:
            self._record()
        else:
            super().play_done(reason, now)

    def record_done(self, reason: str, duration: float, blob: Mapping[str, Any] | None, now: float) -> None:
        host = self.host
        if reason != "error" and duration < self.node.min_seconds:
            self.set_phase(VoicemailPhase.TOO_SHORT)
            self.play_then_go(self.node.too_short_prompts, self.node.next, now)
        elif reason == "error" or blob is None:
            log.warning("voicemail %s not recorded: %s", self._record_id, reason, extra=ctx(host))
            host.hang_up(CAUSE_TEMPORARY_FAILURE, now)
        else:
            self.set_phase(VoicemailPhase.KEEPING)
            body = records.voicemail_body(
                call_id=host.call_id,
                session_id=host.session_id,
                caller=host.caller,
                language=host.language,
                node=self.node_id,
                record_id=self._record_id,
                duration=duration,
                blob=blob,
                recorded_at=host.wall(),
            )
            self.keep(
                records.VOICEMAIL, body, then=self.node.saved_prompts, next_=self.node.next, failure=None
            )


def day_prompt(day: str | int) -> str:
    """The prompt naming a callback slot's day: ``day_today``, ``day_tomorrow`` or ``day_N`` (Monday 0)."""
    return f"day_{day}"


class CallbackPhase(enum.Enum):
    CONFIRM_NUMBER = "confirm-number"  # the caller's number read back: 1 to use it, 2 for another
    ENTER_NUMBER = "enter-number"  # 3 to 20 digits, then '#'
    CHOOSE_TIME = "choose-time"  # one key per slot offered
    KEEPING = "keeping"  # the request is being made durable, then saved_prompts, then next


class CallbackRunner(AskingRunner[CallbackRequest]):
    """Three steps, each with its own tries: the number (confirm the caller's, or key one in), the time
    (one key per offered slot), then the durable request and its confirmation."""

    PHASES: ClassVar[Mapping[Any, frozenset[Any]]] = {
        CallbackPhase.CONFIRM_NUMBER: frozenset({CallbackPhase.ENTER_NUMBER, CallbackPhase.CHOOSE_TIME}),
        CallbackPhase.ENTER_NUMBER: frozenset({CallbackPhase.CHOOSE_TIME}),
        CallbackPhase.CHOOSE_TIME: frozenset({CallbackPhase.KEEPING}),
        CallbackPhase.KEEPING: frozenset(),
    }
    _number = ""
    _source = ""
    _slots: Sequence[Slot] = ()

    def enter(self, now: float) -> None:
        if self.node.confirm_number and self.host.caller:
            self.set_phase(CallbackPhase.CONFIRM_NUMBER)
            self._step(KeyRule(first_timeout=self.node.timeout), self._confirmed, self._confirm_files(), now)
        else:
            self._enter_number(now)

    def _confirm_files(self, *before: str) -> tuple[str, ...]:
        caller = self.host.caller or ""
        return self.host.resolve(
            (*before, "callback_number_is", *digit_prompts(caller), "callback_confirm_number")
        )

    def _confirmed(self, keys: str, now: float) -> None:
        if keys == "1":
            self._number, self._source = self.host.caller or "", "caller"
            self._offer(now)
        elif keys == "2":
            self._enter_number(now)
        elif self._out_of_tries(self.node.retries):
            self.host.go(self.node.on_failure, now)
        else:
            self._ask_again(self._confirm_files("invalid_choice" if keys else "no_input"), now)

    def _enter_number(self, now: float) -> None:
        self.set_phase(CallbackPhase.ENTER_NUMBER)
        rule = KeyRule(
            first_timeout=self.node.timeout,
            max_digits=CALLBACK_MAX_DIGITS,
            terminator="#",
            inter_timeout=self.node.timeout,
        )
        self._step(rule, self._keyed, self.host.resolve(("callback_enter_number",)), now)

    def _keyed(self, keys: str, now: float) -> None:
        if len(keys) >= CALLBACK_MIN_DIGITS and keys.isdigit():
            self._number, self._source = keys, "keyed"
            self._offer(now)
        elif self._out_of_tries(self.node.retries):
            self.host.go(self.node.on_failure, now)
        else:
            self._ask_again(self.host.resolve(("invalid_choice", "callback_enter_number")), now)

    def _offer(self, now: float) -> None:
        host = self.host
        try:
            schedule = None if self.node.schedule is None else host.flow.schedules[self.node.schedule]
            self._slots = offer_slots(
                host.wall(),
                zone=host.caller_zone,
                schedule=schedule,
                count=min(self.node.offers, 9),  # one key per slot, and "press N" goes up to 9
                lead_minutes=self.node.lead_minutes,
            )
        except (KeyError, ScheduleError) as exc:
            log.error("callback times not offered: %s", exc, extra=ctx(host))
            self._slots = ()
        if not self._slots:
            host.go(self.node.on_failure, now)
            return
        self.set_phase(CallbackPhase.CHOOSE_TIME)
        self._step(KeyRule(first_timeout=self.node.timeout), self._chosen, self._offer_files(), now)

    def _offer_files(self, *before: str) -> tuple[str, ...]:
        names = [*before, "callback_choose_time"]
        for i, slot in enumerate(self._slots, start=1):
            names += [day_prompt(slot.day), f"time_{slot.hour:02d}", press_prompt(str(i))]
        return self.host.resolve(names)

    def _chosen(self, keys: str, now: float) -> None:
        host = self.host
        if len(keys) == 1 and keys.isdigit() and 1 <= int(keys) <= len(self._slots):
            slot = self._slots[int(keys) - 1]
            self.set_phase(CallbackPhase.KEEPING)
            body = records.callback_body(
                call_id=host.call_id,
                session_id=host.session_id,
                number=self._number,
                number_source=self._source,
                language=host.language,
                slot_utc=slot.utc_iso,
                slot_local=slot.local_iso,
                timezone=host.caller_zone,
                requested_at=host.wall(),
            )
            node = self.node
            self.keep(
                records.CALLBACK, body, then=node.saved_prompts, next_=node.next, failure=node.on_failure
            )
        elif self._out_of_tries(self.node.retries):
            host.go(self.node.on_failure, now)
        else:
            self._ask_again(self._offer_files("invalid_choice" if keys else "no_input"), now)


class SurveyPhase(enum.Enum):
    ASKING = "asking"  # question by question
    KEEPING = "keeping"  # the answers are being made durable, then thanks_prompts, then next


class SurveyRunner(AskingRunner[Survey]):
    """Question by question; a question out of tries is recorded as unanswered and the next one asked."""

    PHASES: ClassVar[Mapping[Any, frozenset[Any]]] = {
        SurveyPhase.ASKING: frozenset({SurveyPhase.KEEPING}),
        SurveyPhase.KEEPING: frozenset(),
    }

    def enter(self, now: float) -> None:
        self._answers: list[int | None] = []
        self.set_phase(SurveyPhase.ASKING)
        self._ask(now)

    def _files(self, *before: str) -> tuple[str, ...]:
        question = len(self._answers)
        intro = self.node.intro_prompts if question == 0 and not before else ()
        return self.host.resolve((*before, *intro, *self.node.questions[question]))

    def _ask(self, now: float) -> None:
        self._step(KeyRule(first_timeout=self.node.timeout), self._answer, self._files(), now)

    def _answer(self, keys: str, now: float) -> None:
        if len(keys) == 1 and keys in SURVEY_KEYS:
            self._answers.append(int(keys))
        elif not self._out_of_tries(self.node.retries):
            self._ask_again(self._files("invalid_choice" if keys else "no_input"), now)
            return
        else:
            self._answers.append(None)
        if len(self._answers) < len(self.node.questions):
            self._ask(now)
        else:
            self._keep_answers()

    def _keep_answers(self) -> None:
        host = self.host
        self._input = None
        self.set_phase(SurveyPhase.KEEPING)
        body = records.survey_body(
            call_id=host.call_id,
            session_id=host.session_id,
            caller=host.caller,
            language=host.language,
            agent=host.agent,
            answers=[*self._answers, *[None] * (len(self.node.questions) - len(self._answers))],
            answered_at=host.wall(),
        )
        self.keep(records.SURVEY, body, then=self.node.thanks_prompts, next_=self.node.next, failure=None)

    def caller_gone(self, now: float) -> None:
        # A caller who hangs up after answering part of the survey still told us something (a low first
        # answer asks for follow-up): keep what was answered, the rest unanswered.
        if self._answers and self.phase is SurveyPhase.ASKING:
            self._keep_answers()


class TransferPhase(enum.Enum):
    QUEUED = "queued"  # music on hold
    ANNOUNCING = "announcing"  # the caller's position, then music again
    CONNECTED = "connected"  # an agent has the caller: no media, no timers
    GAVE_UP = "gave-up"  # max_wait passed: out of the queue, on to fallback


class TransferRunner(Runner[Transfer]):
    """Queued with music, position announcements on a fixed cadence, a give-up deadline; once an agent
    answers the leg is the agent's until the agent hangs up first."""

    PHASES: ClassVar[Mapping[Any, frozenset[Any]]] = {
        TransferPhase.QUEUED: frozenset(
            {TransferPhase.ANNOUNCING, TransferPhase.CONNECTED, TransferPhase.GAVE_UP}
        ),
        # An announcement due while the last one still plays (a long position number) replaces it.
        TransferPhase.ANNOUNCING: frozenset(
            {TransferPhase.QUEUED, TransferPhase.ANNOUNCING, TransferPhase.CONNECTED, TransferPhase.GAVE_UP}
        ),
        TransferPhase.CONNECTED: frozenset(),
        TransferPhase.GAVE_UP: frozenset(),
    }

    def enter(self, now: float) -> None:
        node = self.node
        self.host.clear_type_ahead()
        self._position: int | None = None
        self._give_up = now + node.max_wait
        self._announce = now + node.announce_every if node.announce_every > 0 else None
        self.host.emit(QueueForAgents(node.group, node.strategy))
        self._music()

    def _music(self) -> None:
        self.set_phase(TransferPhase.QUEUED)
        self.host.play_files(self.host.resolve((self.node.music,)), barge_in=False, loop=True)

    def _waiting(self) -> bool:
        return self.phase in (TransferPhase.QUEUED, TransferPhase.ANNOUNCING)

    def deadline(self) -> float | None:
        if not self._waiting():
            return None
        return self._give_up if self._announce is None else min(self._give_up, self._announce)

    def timer(self, now: float) -> None:
        if not self._waiting():
            return
        if now >= self._give_up:
            self.set_phase(TransferPhase.GAVE_UP)
            self.host.emit(LeaveQueue())
            self.host.emit(StopMedia())
            self.host.go(self.node.fallback, now)
            return
        if self._announce is not None and now >= self._announce:
            while self._announce <= now:  # a fixed cadence, whatever the loop's lateness
                self._announce += self.node.announce_every
            if self._position is not None:
                files = self.host.resolve(("queue_position", *digit_prompts(str(self._position))))
                if self.host.play_files(files, barge_in=False):
                    self.set_phase(TransferPhase.ANNOUNCING)

    def play_done(self, reason: str, now: float) -> None:
        if self.phase is TransferPhase.ANNOUNCING:
            self._music()
        elif self.phase is TransferPhase.GAVE_UP:
            super().play_done(reason, now)

    def transfer_unavailable(self, now: float) -> None:
        # No agent of the group can be reached at all (none configured or registered): waiting out
        # max_wait with music would only delay the fallback (Asterisk's joinempty=no, leavewhenempty).
        if not self._waiting():
            return
        self.set_phase(TransferPhase.GAVE_UP)
        self.host.emit(StopMedia())
        self.play_then_go(("agents_unavailable",), self.node.fallback, now)

    def transfer_position(self, position: int, now: float) -> None:
        self._position = position

    def transfer_answered(self, agent: str, now: float) -> None:
        if not self._waiting():
            return  # after giving up: the glue has taken the caller out of the queue already
        self.set_phase(TransferPhase.CONNECTED)
        self.host.forget_play()
        self.host.emit(StopMedia())
        self.host.agent_answered(agent)

    def transfer_ended(self, now: float) -> None:
        if self.phase is not TransferPhase.CONNECTED:
            return
        if self.node.after is not None:
            self.host.go(self.node.after, now)
        else:
            self.host.hang_up(CAUSE_NORMAL, now)

    def caller_gone(self, now: float) -> None:
        if self._waiting():
            self.host.emit(LeaveQueue())
