"""How :class:`~appliance.ivr.session.IvrSession` runs each kind of node: one runner object per visit.

A runner is created when the session enters a node and is dropped when it leaves it. It asks for media,
outbox appends and agent-queue operations through its :class:`Host` (the session) and is handed the inputs
that concern it: keys, the end of its own playback, its deadline, its recording, its persists, the agent
queue's reports. The session routes only current inputs (a stale play id never reaches a runner), so a
runner reacts to what it is told without checking where it came from.

Common rules, from :mod:`appliance.ivr.model`:

* Input timeouts start when the prompt has been played (the caller cannot answer a question not yet
  asked), and keys pressed while an input prompt plays count (barge-in):
  :class:`~appliance.ivr.session_keys.KeyInput`. A node that asks for keys and gets a wrong one or none
  counts a try; ``1 + retries`` tries, then its ``on_failure``. Where the flow names no retry prompts
  (callback and survey steps) the built-in ``invalid_choice`` / ``no_input`` precede the question again.
* Type-ahead: keys that cut a barge-in :class:`~appliance.ivr.model.Play` short are kept by the host and
  consumed, one at a time, by the next nodes that take keys; a barge-in ``Play`` entered with keys pending
  is skipped (the caller is already ahead of it). Announcements, voicemail, transfers and hang-ups discard
  pending keys: none of them asks for a key.
* Confirmations (``saved_prompts``, ``thanks_prompts``) play only after the host reports the outcome
  ``persisted``; a persist that fails goes to the node's ``on_failure`` if it has one, else the call is
  hung up with Q.850 cause 41 (temporary failure) and no confirmation plays. A recording the worker
  reports as failed is treated the same way (the caller is not told the message was too short).
* A playback that fails (``play_done`` ``error``) counts as played: the flow carries on.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar

from appliance.ivr.actions import DIGIT_PROMPTS, PRESS_PROMPTS, LeaveQueue, QueueForAgents, StopMedia
from appliance.ivr.errors import IvrError
from appliance.ivr.hours import ScheduleError, is_open
from appliance.ivr.model import (
    Announcement,
    BusinessHours,
    CollectDigits,
    Flow,
    Goto,
    Hangup,
    LanguageMenu,
    Menu,
    Node,
    Play,
    Prompts,
    Voicemail,
)
from appliance.ivr.session_keys import KeyInput, KeyRule

log = logging.getLogger("appliance.ivr.session")

BARGE_IN_GRACE: Final = 2.0
"""Seconds a barge-in prompt waits, once cut, for the digit that cut it (reported when the key is let go)."""

CAUSE_NORMAL: Final = 16  # Q.850 normal call clearing
CAUSE_TEMPORARY_FAILURE: Final = 41  # Q.850 temporary failure: the appliance could not keep an outcome


class Host(Protocol):
    """What a runner may ask of its session."""

    @property
    def flow(self) -> Flow: ...
    @property
    def call_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def caller(self) -> str | None: ...
    @property
    def caller_zone(self) -> str: ...
    @property
    def agent(self) -> str | None: ...

    language: str

    def wall(self) -> float: ...
    def resolve(self, names: Sequence[str], language: str | None = None) -> tuple[str, ...]: ...
    def play_files(self, files: tuple[str, ...], *, barge_in: bool, loop: bool = False) -> bool: ...
    def forget_play(self) -> None: ...
    def emit(self, action: StopMedia | QueueForAgents | LeaveQueue) -> None: ...
    def record(self, node: Voicemail) -> str: ...
    def persist(self, type_: str, body: Mapping[str, Any]) -> int: ...
    def go(self, node_id: str, now: float) -> None: ...
    def hang_up(self, cause: int, now: float) -> None: ...
    def has_type_ahead(self) -> bool: ...
    def pop_type_ahead(self) -> str | None: ...
    def push_type_ahead(self, digit: str) -> None: ...
    def clear_type_ahead(self) -> None: ...
    def set_variable(self, name: str, value: str) -> None: ...
    def agent_answered(self, agent: str) -> None: ...


def ctx(host: Host) -> dict[str, Any]:
    """Logging context of the session's call (``extra=``), as :mod:`appliance.calls` logs."""
    return {"ctx": {"call": host.call_id, "ivr_session": host.session_id}}


def press_prompt(key: str) -> str:
    """The prompt that asks for ``key``: "press 1", "press star", "press hash"."""
    return PRESS_PROMPTS[key]


def digit_prompts(number: str) -> tuple[str, ...]:
    """The prompts that read ``number`` back key by key (characters that are not keys are skipped)."""
    return tuple(DIGIT_PROMPTS[c] for c in number if c in DIGIT_PROMPTS)


# --- runners -------------------------------------------------------------------------------------------

N = TypeVar("N", bound=Node)


class NodeStateError(IvrError):
    """A node runner was driven into a transition its table forbids (a defect here, not the caller's)."""


class Runner(Generic[N]):
    """One visit of one node. Inputs a node does not care about are ignored (keys: discarded).

    ``ending``: the node is the flow's own end (a hang-up node), so a caller who hangs up now has not
    abandoned the call. A node with several steps names them in an ``Enum`` and lists the allowed moves in
    ``PHASES``; :meth:`set_phase` is the one way to move."""

    ending = False
    PHASES: ClassVar[Mapping[Any, frozenset[Any]]] = {}
    phase: enum.Enum | None = None

    def __init__(self, host: Host, node_id: str, node: N) -> None:
        self.host = host
        self.node_id = node_id
        self.node = node
        self._then_go: str | None = None  # where to go once the playback under way has ended
        self._keeping: tuple[int, Prompts, str, str | None] | None = None  # the outcome being made durable

    def enter(self, now: float) -> None:
        raise NotImplementedError

    def set_phase(self, new: enum.Enum) -> None:
        """Move to step ``new`` (the first move is free); raise :class:`NodeStateError` if ``PHASES`` forbids
        it, and log ``OLD -> NEW``."""
        old = self.phase
        if old is not None and new not in self.PHASES[old]:
            raise NodeStateError(f"ivr node {self.node_id}: illegal transition {old.name} -> {new.name}")
        if log.isEnabledFor(logging.DEBUG):
            was = "-" if old is None else old.name
            log.debug("ivr node %s: %s -> %s", self.node_id, was, new.name, extra=ctx(self.host))
        self.phase = new

    def key(self, digit: str, now: float) -> None:
        del digit, now  # a node that asks for no key drops it

    def play_done(self, reason: str, now: float) -> None:
        if self._then_go is not None:
            target, self._then_go = self._then_go, None
            self.host.go(target, now)

    def deadline(self) -> float | None:
        return None

    def timer(self, now: float) -> None:
        del now

    def record_done(self, reason: str, duration: float, blob: Mapping[str, Any] | None, now: float) -> None:
        del reason, duration, blob, now

    def keep(
        self, type_: str, body: Mapping[str, Any], *, then: Prompts, next_: str, failure: str | None
    ) -> None:
        """Append the outcome to the outbox; once it is committed play ``then`` and go to ``next_``. If it
        cannot be kept, nothing is confirmed: go to ``failure``, or hang up (cause 41) when None."""
        self._keeping = (self.host.persist(type_, body), then, next_, failure)

    def persisted(self, token: int, now: float) -> None:
        if self._keeping is not None and self._keeping[0] == token:
            _, then, next_, _ = self._keeping
            self._keeping = None
            self.play_then_go(then, next_, now)

    def persist_failed(self, token: int, now: float) -> None:
        if self._keeping is not None and self._keeping[0] == token:
            failure = self._keeping[3]
            self._keeping = None
            if failure is None:
                self.host.hang_up(CAUSE_TEMPORARY_FAILURE, now)
            else:
                self.host.go(failure, now)

    def transfer_position(self, position: int, now: float) -> None:
        del position, now

    def transfer_answered(self, agent: str, now: float) -> None:
        del agent, now

    def transfer_ended(self, now: float) -> None:
        del now

    def transfer_unavailable(self, now: float) -> None:
        del now

    def caller_gone(self, now: float) -> None:
        del now

    def play_then_go(
        self, prompts: Sequence[str], node_id: str, now: float, *, barge_in: bool = False
    ) -> None:
        """Play ``prompts``, then go to ``node_id`` (at once if there is nothing to play)."""
        if self.host.play_files(self.host.resolve(prompts), barge_in=barge_in):
            self._then_go = node_id
        else:
            self.host.go(node_id, now)


class AskingRunner(Runner[N]):
    """A node that asks questions: keys, the end of the question and the deadline go to its
    :class:`KeyInput`, and every step allows ``1 + retries`` tries."""

    _input: KeyInput | None = None
    _failures = 0

    def _step(
        self, rule: KeyRule, on_done: Callable[[str, float], None], files: tuple[str, ...], now: float
    ) -> None:
        self._failures = 0
        self._input = KeyInput(self.host, rule, on_done)
        self._input.ask(files, now)

    def _ask_again(self, files: tuple[str, ...], now: float) -> None:
        assert self._input is not None
        self._input.ask(files, now)

    def _out_of_tries(self, retries: int) -> bool:
        """Count a failed try; True when it was the last one allowed."""
        self._failures += 1
        return self._failures > retries

    def key(self, digit: str, now: float) -> None:
        if self._input is not None:
            self._input.key(digit, now)

    def play_done(self, reason: str, now: float) -> None:
        if self._input is not None and self._input.play_done(now):
            return
        super().play_done(reason, now)

    def deadline(self) -> float | None:
        return None if self._input is None else self._input.deadline

    def timer(self, now: float) -> None:
        if self._input is not None:
            self._input.timer(now)


class PlayRunner(Runner[Play]):
    """Barge-in: the worker stops the prompt at the START of a digit (``play_done`` ``barge_in``) and reports
    the digit when it ends, a moment later. The node waits for that digit (at most
    :data:`BARGE_IN_GRACE`) before it moves on, so the next node neither starts a prompt the key will cut at
    once nor misses the key as type-ahead."""

    _grace: float | None = None

    def enter(self, now: float) -> None:
        if self.node.barge_in and self.host.has_type_ahead():
            self.host.go(self.node.next, now)  # the caller has already pressed past this
            return
        self.play_then_go(self.node.prompts, self.node.next, now, barge_in=self.node.barge_in)

    def play_done(self, reason: str, now: float) -> None:
        if reason == "barge_in" and self.node.barge_in:
            self._grace = now + BARGE_IN_GRACE
        else:
            super().play_done(reason, now)

    def deadline(self) -> float | None:
        return self._grace

    def timer(self, now: float) -> None:
        if self._grace is not None and now >= self._grace:
            self._grace = None  # a digit start the worker saw but no digit followed: carry on
            self.host.go(self.node.next, now)

    def key(self, digit: str, now: float) -> None:
        if self.node.barge_in:
            self.host.push_type_ahead(digit)
            self.host.forget_play()
            self.host.go(self.node.next, now)


class AnnouncementRunner(Runner[Announcement]):
    def enter(self, now: float) -> None:
        self.host.clear_type_ahead()
        self.play_then_go(self.node.prompts, self.node.next, now)


class GotoRunner(Runner[Goto]):
    def enter(self, now: float) -> None:
        self.host.go(self.node.target, now)


class BusinessHoursRunner(Runner[BusinessHours]):
    def enter(self, now: float) -> None:
        try:
            is_open_now = is_open(self.host.flow.schedules[self.node.schedule], self.host.wall())
        except (KeyError, ScheduleError) as exc:
            # The validator refuses such a flow; should one run anyway, "closed" is the branch that still
            # serves the caller without promising an agent.
            log.error("business hours %s unknown: %s", self.node.schedule, exc, extra=ctx(self.host))
            is_open_now = False
        self.host.go(self.node.open if is_open_now else self.node.closed, now)


class HangupRunner(Runner[Hangup]):
    ending = True

    def enter(self, now: float) -> None:
        self.host.clear_type_ahead()
        if not self.host.play_files(self.host.resolve(self.node.prompts), barge_in=False):
            self.host.hang_up(self.node.cause, now)

    def play_done(self, reason: str, now: float) -> None:
        self.host.hang_up(self.node.cause, now)


class MenuRunner(AskingRunner[Menu]):
    def enter(self, now: float) -> None:
        self._step(
            KeyRule(first_timeout=self.node.timeout), self._answer, self.host.resolve(self.node.prompts), now
        )

    def _answer(self, keys: str, now: float) -> None:
        if keys in self.node.choices:
            self.host.go(self.node.choices[keys], now)
        elif self._out_of_tries(self.node.retries):
            self.host.go(self.node.on_failure, now)
        else:
            extra = self.node.invalid_prompts if keys else self.node.timeout_prompts
            self._ask_again(self.host.resolve((*extra, *self.node.prompts)), now)


class CollectRunner(AskingRunner[CollectDigits]):
    def enter(self, now: float) -> None:
        node = self.node
        rule = KeyRule(
            first_timeout=node.first_digit_timeout,
            max_digits=node.max_digits,
            terminator=node.terminator,
            inter_timeout=node.inter_digit_timeout,
        )
        self._step(rule, self._answer, self.host.resolve(node.prompts), now)

    def _answer(self, keys: str, now: float) -> None:
        if len(keys) >= self.node.min_digits:
            self.host.set_variable(self.node.variable, keys)
            self.host.go(self.node.next, now)
        elif self._out_of_tries(self.node.retries):
            self.host.go(self.node.on_failure, now)
        else:
            self._ask_again(self.host.resolve((*self.node.invalid_prompts, *self.node.prompts)), now)


class LanguageMenuRunner(AskingRunner[LanguageMenu]):
    def enter(self, now: float) -> None:
        self._step(KeyRule(first_timeout=self.node.timeout), self._answer, self._options(), now)

    def _options(self) -> tuple[str, ...]:
        """Each choice in key order, announced in its own language: "For English, press 1"."""
        files: list[str] = []
        for key in sorted(self.node.choices):
            files += self.host.resolve((self.node.prompt, press_prompt(key)), self.node.choices[key])
        return tuple(files)

    def _answer(self, keys: str, now: float) -> None:
        language = self.node.choices.get(keys)
        if language is not None:
            log.info("ivr language %s -> %s", self.host.language, language, extra=ctx(self.host))
            self.host.language = language
            self.host.go(self.node.next, now)
        elif self._out_of_tries(self.node.retries):
            self.host.go(self.node.next, now)  # no choice keeps the language chosen by the caller's country
        else:
            self._ask_again(self._options(), now)
