"""The IVR flow model: a flow is a named, versioned graph of nodes (schema version 1).

A flow is data the central cloud pushes through the sync API; :mod:`appliance.ivr.flow_codec` reads it from
its document form (a CBOR or JSON map) into these frozen dataclasses and :mod:`appliance.ivr.validate` checks
the graph before it is accepted. The interpreter (:mod:`appliance.ivr.session`) walks it for one caller.

Prompts are named, never paths: a name resolves per language in the prompt catalog
(:mod:`appliance.ivr.prompts`), so one flow serves every language it offers. Times are seconds (float).
Node ids are the keys of :attr:`Flow.nodes`; every "next"-like field names a node id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

SCHEMA_VERSION: Final = 1
"""The flow document schema this build reads (the document's ``schema`` field)."""

DTMF_KEYS: Final = frozenset("0123456789*#")
"""The keys a caller can press on a phone keypad (RFC 4733 events 0–11)."""

Prompts = tuple[str, ...]
"""Prompt names played in order."""

Weekday = Literal[0, 1, 2, 3, 4, 5, 6]
"""Monday is 0, as :meth:`datetime.date.weekday` counts."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """Business hours in a named IANA time zone.

    ``weekly`` maps a weekday (Monday 0) to its open intervals as minutes after local midnight,
    ``[start, end)`` with ``0 <= start < end <= 1440``; a day not listed is closed. ``holidays`` are local
    dates (ISO ``YYYY-MM-DD``) closed all day whatever the weekday says.
    """

    timezone: str
    weekly: Mapping[int, tuple[tuple[int, int], ...]]
    holidays: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Play:
    """Play ``prompts`` then go to ``next``. With ``barge_in`` a key press cuts the prompts short and is
    kept as type-ahead for the next node that takes input."""

    prompts: Prompts
    next: str
    barge_in: bool = True


@dataclass(frozen=True, slots=True)
class Announcement:
    """Play ``prompts`` to the end, whatever the caller presses (keys pressed meanwhile are discarded),
    then go to ``next``."""

    prompts: Prompts
    next: str


@dataclass(frozen=True, slots=True)
class Menu:
    """Play ``prompts`` (interruptible) and wait ``timeout`` seconds for one key from ``choices``.

    A key not in ``choices`` plays ``invalid_prompts``, silence plays ``timeout_prompts``; either counts as
    a try, and after ``retries`` further tries the flow goes to ``on_failure``.
    """

    prompts: Prompts
    choices: Mapping[str, str]
    on_failure: str
    timeout: float = 5.0
    retries: int = 2
    invalid_prompts: Prompts = ()
    timeout_prompts: Prompts = ()


@dataclass(frozen=True, slots=True)
class CollectDigits:
    """Play ``prompts`` and collect ``min_digits``..``max_digits`` keys into ``variable``.

    Collection ends at ``max_digits``, at the ``terminator`` key (not stored; None: no terminator) or when
    ``inter_digit_timeout`` passes after a key; before the first key the caller has ``first_digit_timeout``.
    Too few digits is a failed try (``invalid_prompts``); after ``retries`` further tries -> ``on_failure``.
    """

    prompts: Prompts
    variable: str
    next: str
    on_failure: str
    min_digits: int = 1
    max_digits: int = 20
    terminator: str | None = "#"
    first_digit_timeout: float = 5.0
    inter_digit_timeout: float = 3.0
    retries: int = 2
    invalid_prompts: Prompts = ()


@dataclass(frozen=True, slots=True)
class LanguageMenu:
    """Offer the languages in ``choices`` (key -> language code); each choice is announced with the
    catalog prompt ``prompt`` *in that language* ("for English, press 1"), so a caller hears every option in
    its own tongue. A choice switches the session's language; no choice (after ``retries``) keeps the
    current one. Either way the flow goes to ``next``."""

    choices: Mapping[str, str]
    next: str
    prompt: str = "language_option"
    timeout: float = 5.0
    retries: int = 1


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """Go to ``open`` while ``schedule`` (a key of :attr:`Flow.schedules`) is open, else to ``closed``."""

    schedule: str
    open: str
    closed: str


@dataclass(frozen=True, slots=True)
class Voicemail:
    """Record a message after ``prompts`` (and a beep if ``beep``).

    Recording ends after ``max_seconds``, after ``silence_seconds`` of silence, or at ``#`` if
    ``end_on_hash``. The message is made durable (outbox event + encrypted audio) before
    ``saved_prompts`` are played; then the flow goes to ``next``. A message shorter than
    ``min_seconds`` is not kept (``too_short_prompts``) and the flow goes to ``next`` as well.
    """

    prompts: Prompts
    next: str
    max_seconds: float = 120.0
    silence_seconds: float = 5.0
    min_seconds: float = 1.0
    beep: bool = True
    end_on_hash: bool = True
    saved_prompts: Prompts = ("voicemail_saved",)
    too_short_prompts: Prompts = ()


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """Take a callback request.

    If ``confirm_number`` and the caller's number is known, it is read back and the caller presses 1 to
    use it or 2 to key in another (as :class:`CollectDigits` would); otherwise the number is keyed in.
    Then ``offers`` callback times are offered, one key each: whole hours in the caller's local time at
    least ``lead_minutes`` ahead, within ``schedule`` (a key of :attr:`Flow.schedules`; None: any hour).
    The request is durable before ``saved_prompts`` play; then -> ``next``. Failing any step ``retries``
    times -> ``on_failure``.
    """

    next: str
    on_failure: str
    schedule: str | None = None
    confirm_number: bool = True
    offers: int = 3
    lead_minutes: int = 60
    timeout: float = 5.0
    retries: int = 2
    saved_prompts: Prompts = ("callback_saved",)


@dataclass(frozen=True, slots=True)
class Transfer:
    """Queue the caller for the local agent ``group`` (``ring_all`` rings every idle member at once,
    ``longest_idle`` the member idle longest first). While waiting the caller hears ``music`` (looped) and,
    every ``announce_every`` seconds (0: never), its position. After ``max_wait`` seconds unanswered the
    flow goes to ``fallback``. When the agent hangs up first, the caller goes on to ``after`` (a survey,
    say); None ends the call."""

    group: str
    fallback: str
    strategy: Literal["ring_all", "longest_idle"] = "ring_all"
    music: str = "music_on_hold"
    announce_every: float = 30.0
    max_wait: float = 120.0
    after: str | None = None


@dataclass(frozen=True, slots=True)
class Survey:
    """Ask the three ``questions`` (each a prompt list), each answered with a key 1–5. An answer below 3
    flags the survey for follow-up. Answers are durable before ``thanks_prompts`` play; then -> ``next``.
    A question not answered after ``retries`` further tries is recorded as unanswered."""

    questions: tuple[Prompts, Prompts, Prompts]
    next: str
    intro_prompts: Prompts = ()
    thanks_prompts: Prompts = ()
    timeout: float = 5.0
    retries: int = 1


@dataclass(frozen=True, slots=True)
class Hangup:
    """Play ``prompts`` (not interruptible), then hang up with Q.850 ``cause`` (16: normal clearing)."""

    prompts: Prompts = ()
    cause: int = 16


@dataclass(frozen=True, slots=True)
class Goto:
    """Go to ``target`` at once."""

    target: str


Node = (
    Play
    | Announcement
    | Menu
    | CollectDigits
    | LanguageMenu
    | BusinessHours
    | Voicemail
    | CallbackRequest
    | Transfer
    | Survey
    | Hangup
    | Goto
)

NODE_TYPES: Final[Mapping[str, type[Node]]] = {
    "play": Play,
    "announcement": Announcement,
    "menu": Menu,
    "collect": CollectDigits,
    "language_menu": LanguageMenu,
    "business_hours": BusinessHours,
    "voicemail": Voicemail,
    "callback": CallbackRequest,
    "transfer": Transfer,
    "survey": Survey,
    "hangup": Hangup,
    "goto": Goto,
}
"""The ``type`` field of a node in the document form, and the class it reads into."""


@dataclass(frozen=True, slots=True)
class Flow:
    """One IVR flow. ``languages`` are those it offers (prompts must exist in each); ``default_language``
    is one of them and serves callers whose language the flow does not offer. ``version`` is the
    document's version for the sync API (a push names the version it replaces)."""

    name: str
    version: int
    start: str
    languages: tuple[str, ...]
    default_language: str
    nodes: Mapping[str, Node]
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION


def successors(node: Node) -> tuple[str, ...]:
    """Every node id ``node`` can go to, in a stable order (the validator walks these)."""
    match node:
        case Play() | Announcement() | LanguageMenu() | Voicemail() | Survey():
            return (node.next,)
        case Menu():
            return (*node.choices.values(), node.on_failure)
        case CollectDigits() | CallbackRequest():
            return (node.next, node.on_failure)
        case BusinessHours():
            return (node.open, node.closed)
        case Transfer():
            return (node.fallback,) if node.after is None else (node.fallback, node.after)
        case Hangup():
            return ()
        case Goto():
            return (node.target,)


def takes_input(node: Node) -> bool:
    """Whether passing through ``node`` always waits for the caller (a key, a recording or an agent):
    a cycle in the graph must pass through at least one such node, or the flow would spin without end."""
    return isinstance(node, (Menu, CollectDigits, LanguageMenu, Voicemail, CallbackRequest, Transfer, Survey))


def prompt_names(node: Node) -> frozenset[str]:
    """Every catalog prompt name ``node`` may play (the validator checks each exists in every language).

    Prompts the interpreter adds itself (digits, times, beeps, position announcements) are listed in
    :data:`appliance.ivr.session.BUILTIN_PROMPTS`, not here."""
    names: set[str] = set()
    match node:
        case Play() | Announcement() | Hangup():
            names.update(node.prompts)
        case Menu():
            names.update(node.prompts, node.invalid_prompts, node.timeout_prompts)
        case CollectDigits():
            names.update(node.prompts, node.invalid_prompts)
        case LanguageMenu():
            names.add(node.prompt)
        case Voicemail():
            names.update(node.prompts, node.saved_prompts, node.too_short_prompts)
        case CallbackRequest():
            names.update(node.saved_prompts)
        case Transfer():
            names.add(node.music)
        case Survey():
            names.update(node.intro_prompts, node.thanks_prompts, *node.questions)
        case BusinessHours() | Goto():
            pass
    return frozenset(names)
