"""What an IVR session asks of its media leg and of the appliance, and the prompt catalog it reads.

:class:`~appliance.ivr.session.IvrSession` is sans-I/O: it queues these actions (``next_action()``) and is
told their outcome through its input methods (``play_done``, ``record_done``, ``persisted`` ...). The
call-control glue turns them into media-worker commands (play, record, stop), outbox appends and agent
queue operations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

DIGIT_PROMPTS: Final = {**{d: f"digit_{d}" for d in "0123456789"}, "*": "digit_star", "#": "digit_hash"}
"""The prompt that speaks each key, for reading numbers back."""

PRESS_PROMPTS: Final = {**{d: f"press_{d}" for d in "0123456789"}, "*": "press_star", "#": "press_hash"}
"""The prompt that asks the caller to press each key ("press 1")."""

BUILTIN_PROMPTS: Final = frozenset(
    {
        *DIGIT_PROMPTS.values(),
        *(f"time_{h:02d}" for h in range(24)),  # a whole hour of the day, "14:00"
        "day_today",
        "day_tomorrow",
        *(f"day_{d}" for d in range(7)),  # Monday is day_0
        *PRESS_PROMPTS.values(),  # "press 1", "press star"
        "language_option",  # "For English," (in each language), followed by press_N
        "service_interruption",
        "main_menu",
        "invalid_choice",
        "no_input",
        "goodbye",
        "closed",
        "agents_unavailable",
        "queue_position",  # "You are caller number", followed by the digits
        "callback_number_is",  # "We will call you back at", followed by the digits
        "callback_confirm_number",  # "Press 1 for this number, or 2 to enter another."
        "callback_enter_number",  # "Please enter your phone number, then press hash."
        "callback_choose_time",  # "Please choose a time for our call."
        "callback_saved",
        "voicemail_prompt",  # "Please leave your message after the tone; press hash when done."
        "voicemail_saved",
        "voicemail_too_short",
        "survey_intro",
        "survey_q1",
        "survey_q2",
        "survey_q3",
        "survey_thanks",
    }
)
"""Prompt names every catalog language has; the interpreter composes numbers, times and menus from them.
``music_on_hold`` is language-neutral and lives in the catalog's shared folder."""

MUSIC_ON_HOLD: Final = "music_on_hold"


class PromptCatalog(Protocol):
    """Resolves prompt names to audio files (8 kHz A-law, raw, as :mod:`appliance.ivr.prompts` keeps them)."""

    def path(self, language: str, name: str) -> str:
        """The file for ``name`` in ``language``, falling back to the catalog's default language; raises
        ``KeyError`` when neither has it."""
        ...

    def has(self, language: str, name: str) -> bool:
        """Whether ``language`` itself (no fallback) has ``name``."""
        ...


# --- actions: session -> glue -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlayFiles:
    """Play ``files`` in order on the caller's leg, replacing whatever plays. ``barge_in``: a key press
    stops playback (the worker stops at once; the key still arrives as a digit). ``loop``: start over at the
    end until stopped (music on hold). The glue reports the end with ``play_done(play_id, reason)``."""

    play_id: int
    files: tuple[str, ...]
    barge_in: bool
    loop: bool = False


@dataclass(frozen=True, slots=True)
class StopMedia:
    """Stop any playback or recording on the caller's leg (each reports its end as ``stopped``)."""


@dataclass(frozen=True, slots=True)
class RecordMessage:
    """Record the caller into an encrypted voicemail file named ``record_id``: a beep first if ``beep``,
    then until ``max_seconds``, ``silence_seconds`` of silence, or ``#`` if ``end_on_hash``. Reported by
    ``record_done``."""

    record_id: str
    max_seconds: float
    silence_seconds: float
    end_on_hash: bool
    beep: bool


@dataclass(frozen=True, slots=True)
class Persist:
    """Append an outbox event ``type`` with ``body``; the glue calls ``persisted(token)`` once it is
    committed (or ``persist_failed``). Nothing that confirms an outcome to the caller plays before."""

    token: int
    type: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class QueueForAgents:
    """Queue the caller for agent ``group`` with ``strategy``; the glue reports ``transfer_position``,
    ``transfer_answered``, ``transfer_ended``. The session itself gives up after the node's max wait."""

    group: str
    strategy: str


@dataclass(frozen=True, slots=True)
class LeaveQueue:
    """Take the caller out of the agent queue (max wait passed, or the caller hung up)."""


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the call with Q.850 ``cause``."""

    cause: int


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The session is over and every record of it was handed to :class:`Persist`."""


Action = PlayFiles | StopMedia | RecordMessage | Persist | QueueForAgents | LeaveQueue | HangUp | SessionEnded
