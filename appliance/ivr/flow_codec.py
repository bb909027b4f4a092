"""Flow documents (schema 1): read them into :class:`~appliance.ivr.model.Flow`, write flows back.

Theory of operation. The cloud writes a flow as one map (the schema is ``flow.cddl`` next to this module,
for humans ``docs/ivr-flows.md``) and pushes it through the sync API as CBOR (RFC 8949) or JSON
(RFC 8259); a flow on disk is JSON. :func:`decode_flow_bytes` is the edge: it caps the size
(:data:`MAX_DOCUMENT_SIZE`) before parsing and the nesting (:data:`MAX_DEPTH`: CBOR while parsing, JSON
as soon as it is parsed, the parser itself held by the interpreter's recursion limit), refuses duplicate
map keys (RFC 8949 §5.6; RFC 8259 §4 leaves them undefined, so two readers could disagree), CBOR tags and
non-finite numbers, then hands the value to :func:`decode_flow`.

:func:`decode_flow` is strict and total: it returns a :class:`Flow` or raises :class:`FlowDecodeError`
naming the first offending field by path (checked in a fixed order: ``schema`` first, so that a document of
a later schema is refused as such; then unknown fields, sorted; then the fields in the order the model
declares them). Unknown fields are errors; an integer field takes an integral number (``3.0`` reads as
``3``), a seconds field any finite number; every count and duration has bounds. Each node type's fields
are one table (:data:`_FIELDS`); whether a field is required, and its default, come from the model's
dataclass, so a default is written in one place only.

Graph-level checks (targets that exist, reachability, loops, prompts, schedules, agent groups) are
:func:`appliance.ivr.validate.validate_flow`'s; a loader runs both.

:func:`encode_flow` is the inverse: required fields always, optional ones only where they differ from the
default, integral seconds as integers, weekdays and holidays sorted, so ``decode_flow(encode_flow(f)) == f``
and a canonical document re-encodes to itself.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from datetime import date
from importlib import resources
from typing import Any, Final

import cbor2

from appliance.ivr.errors import FlowDecodeError, FlowReadError, UnsupportedContentType
from appliance.ivr.model import (
    DTMF_KEYS,
    NODE_TYPES,
    SCHEMA_VERSION,
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
    Schedule,
    Survey,
    Transfer,
    Voicemail,
)
from appliance.ivr.validate import language_tag_ok, timezone_ok

MAX_DOCUMENT_SIZE: Final = 256 * 1024
"""Octets a flow document may take, in either encoding."""

MAX_DEPTH: Final = 16
"""Nesting a document may reach; schema 1 needs 5 (root, nodes, node, questions, question)."""

MAX_NODES: Final = 512
MAX_LANGUAGES: Final = 32
MAX_SCHEDULES: Final = 32
MAX_PROMPTS: Final = 32
"""Prompt names in one list."""
MAX_INTERVALS: Final = 16
"""Open intervals in one day of a schedule."""
MAX_HOLIDAYS: Final = 400
MAX_TIMEOUT: Final = 600.0
"""Seconds: every timeout, recording length and announcement period is at most this."""
MAX_QUEUE_WAIT: Final = 3600.0
"""Seconds a caller may be left waiting for an agent (``transfer.max_wait``)."""

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names of ``weekly``, Monday (0) first."""

CONTENT_TYPES: Final = ("application/json", "application/cbor")

_ID: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
"""Node ids, schedule names and agent groups: safe in a path, a log line and a metric label."""
_FLOW_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_PROMPT: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
"""A prompt name is a file name in the catalog (``<lang>/<name>.alaw``): no dots, no slashes."""
_VARIABLE: Final = re.compile(r"[a-z_][a-z0-9_]{0,31}")
_CLOCK: Final = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]|24:00")
_ISO_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_TYPE_NAMES: Final[Mapping[type[Node], str]] = {cls: name for name, cls in NODE_TYPES.items()}

_Read = Callable[[Any, str], Any]
"""Reads one field's value found at a path, or raises FlowDecodeError."""


# --- paths and messages -----------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    """The path of ``key`` inside the map at ``path``; a key that is not a plain identifier is quoted."""
    segment = key if _PLAIN_KEY.fullmatch(key) else json.dumps(key if len(key) <= 64 else key[:61] + "...")
    return f"{path}.{segment}" if path else segment


def _show(value: Any) -> str:
    """A short rendering of a document value for a message (never the whole of a large value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**18 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 64 else value[:61] + "...")
    return _kind(value)


def _kind(value: Any) -> str:
    """The document type of ``value`` as the schema speaks of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, bytes | bytearray):
        return "a byte string"
    return f"a {type(value).__name__}"


def _wrong(expected: str, value: Any, path: str) -> FlowDecodeError:
    return FlowDecodeError(f"expected {expected}, found {_kind(value)}", path=path)


# --- field readers ----------------------------------------------------------------------------------------


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _wrong("a map", value, path)
    for key in value:
        if not isinstance(key, str):
            raise FlowDecodeError(f"map key {_show(key)} is not text", path=path)
    return value


def _array(value: Any, path: str, limit: int) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise _wrong("an array", value, path)
    if len(value) > limit:
        raise FlowDecodeError(f"{len(value)} items, at most {limit} allowed", path=path)
    return value


def _text_where(ok: Callable[[str], object], what: str) -> _Read:
    """A reader of text that ``ok`` accepts; ``what`` completes "... is not" in the error."""

    def read(value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise _wrong("text", value, path)
        if not ok(value):
            raise FlowDecodeError(f"{_show(value)} is not {what}", path=path)
        return value

    return read


def _text(pattern: re.Pattern[str], what: str) -> _Read:
    return _text_where(pattern.fullmatch, f"a valid {what}")


_node_ref = _text(_ID, "node id (a letter or _, then letters, digits, _ or -; at most 64)")
_schedule_name = _text(_ID, "schedule name (a letter or _, then letters, digits, _ or -; at most 64)")
_group = _text(_ID, "agent group (a letter or _, then letters, digits, _ or -; at most 64)")
_prompt = _text(_PROMPT, "prompt name (letters, digits, _ or -, not starting with -; at most 64)")
_variable = _text(_VARIABLE, "variable name (lower-case letters, digits and _, not starting with a digit)")
_flow_name = _text(_FLOW_NAME, "flow name (letters, digits, _, . or -; at most 64)")


_language = _text_where(language_tag_ok, "a language tag (like en, pt-BR)")
_dtmf_key = _text_where(DTMF_KEYS.__contains__, "a phone key (0-9, *, #)")
_timezone = _text_where(timezone_ok, "an IANA time zone name")


def _choice(*options: str) -> _Read:
    return _text_where(options.__contains__, f"one of {', '.join(options)}")


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _wrong("true or false", value, path)
    return value


def _integer(low: int, high: int) -> _Read:
    def read(value: Any, path: str) -> int:
        # A CBOR or JSON writer may render a whole number as a float; it still means that integer.
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong("an integer", value, path)
        if not low <= value <= high:
            raise FlowDecodeError(f"{_show(value)} is out of range {low}..{high}", path=path)
        return value

    return read


def _seconds(high: float, *, zero: bool = False) -> _Read:
    low = "[0" if zero else "(0"

    def read(value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong("a number of seconds", value, path)
        if not (math.isfinite(value) and (value >= 0 if zero else value > 0) and value <= high):
            raise FlowDecodeError(f"{_show(value)} seconds is out of range {low}, {high:g}]", path=path)
        return float(value)

    return read


def _optional(read: _Read) -> _Read:
    """``read``, or None for null (a field whose absence is also meaningful)."""
    return lambda value, path: None if value is None else read(value, path)


def _prompts(*, nonempty: bool) -> _Read:
    def read(value: Any, path: str) -> tuple[str, ...]:
        items = _array(value, path, MAX_PROMPTS)
        if nonempty and not items:
            raise FlowDecodeError("expected at least one prompt", path=path)
        return tuple(_prompt(item, f"{path}[{i}]") for i, item in enumerate(items))

    return read


def _keyed(read_value: _Read) -> _Read:
    """A map from phone keys to values ``read_value`` reads (menu choices)."""

    def read(value: Any, path: str) -> dict[str, Any]:
        raw = _mapping(value, path)
        if not raw:
            raise FlowDecodeError("expected at least one choice", path=path)
        choices = {}
        for key, item in raw.items():
            at = _join(path, key)
            _dtmf_key(key, at)
            choices[key] = read_value(item, at)
        return choices

    return read


def _questions(value: Any, path: str) -> tuple[tuple[str, ...], ...]:
    items = _array(value, path, 3)
    if len(items) != 3:
        raise FlowDecodeError(f"expected exactly 3 questions, found {len(items)}", path=path)
    return tuple(_SOME_PROMPTS(item, f"{path}[{i}]") for i, item in enumerate(items))


_PROMPTS: Final = _prompts(nonempty=False)
_SOME_PROMPTS: Final = _prompts(nonempty=True)
_TIMEOUT: Final = _seconds(MAX_TIMEOUT)
_RETRIES: Final = _integer(0, 9)

_FIELDS: Final[Mapping[type[Node], Mapping[str, _Read]]] = {
    Play: {"prompts": _SOME_PROMPTS, "next": _node_ref, "barge_in": _boolean},
    Announcement: {"prompts": _SOME_PROMPTS, "next": _node_ref},
    Menu: {
        "prompts": _PROMPTS,
        "choices": _keyed(_node_ref),
        "on_failure": _node_ref,
        "timeout": _TIMEOUT,
        "retries": _RETRIES,
        "invalid_prompts": _PROMPTS,
        "timeout_prompts": _PROMPTS,
    },
    CollectDigits: {
        "prompts": _PROMPTS,
        "variable": _variable,
        "next": _node_ref,
        "on_failure": _node_ref,
        "min_digits": _integer(1, 32),
        "max_digits": _integer(1, 32),
        "terminator": _optional(_dtmf_key),
        "first_digit_timeout": _TIMEOUT,
        "inter_digit_timeout": _TIMEOUT,
        "retries": _RETRIES,
        "invalid_prompts": _PROMPTS,
    },
    LanguageMenu: {
        "choices": _keyed(_language),
        "next": _node_ref,
        "prompt": _prompt,
        "timeout": _TIMEOUT,
        "retries": _RETRIES,
    },
    BusinessHours: {"schedule": _schedule_name, "open": _node_ref, "closed": _node_ref},
    Voicemail: {
        "prompts": _PROMPTS,
        "next": _node_ref,
        "max_seconds": _seconds(MAX_TIMEOUT),
        "silence_seconds": _seconds(MAX_TIMEOUT),
        "min_seconds": _seconds(MAX_TIMEOUT, zero=True),
        "beep": _boolean,
        "end_on_hash": _boolean,
        "saved_prompts": _PROMPTS,
        "too_short_prompts": _PROMPTS,
    },
    CallbackRequest: {
        "next": _node_ref,
        "on_failure": _node_ref,
        "schedule": _optional(_schedule_name),
        "confirm_number": _boolean,
        "offers": _integer(1, 9),  # one key each, 1..9
        "lead_minutes": _integer(0, 7 * 24 * 60),
        "timeout": _TIMEOUT,
        "retries": _RETRIES,
        "saved_prompts": _PROMPTS,
    },
    Transfer: {
        "group": _group,
        "fallback": _node_ref,
        "strategy": _choice("ring_all", "longest_idle"),
        "music": _prompt,
        "announce_every": _seconds(MAX_TIMEOUT, zero=True),
        "max_wait": _seconds(MAX_QUEUE_WAIT),
        "after": _optional(_node_ref),
    },
    Survey: {
        "questions": _questions,
        "next": _node_ref,
        "intro_prompts": _PROMPTS,
        "thanks_prompts": _PROMPTS,
        "timeout": _TIMEOUT,
        "retries": _RETRIES,
    },
    Hangup: {"prompts": _PROMPTS, "cause": _integer(1, 127)},  # a Q.850 cause value
    Goto: {"target": _node_ref},
}
"""Each node type's document fields (its dataclass fields, in their order) and how each is read."""


# --- maps -------------------------------------------------------------------------------------------------


class _Object:
    """One document map being read at ``path``."""

    def __init__(self, value: Any, path: str) -> None:
        self.raw = _mapping(value, path)
        self.path = path

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def only(self, allowed: Collection[str], what: str) -> None:
        """Refuse any key not in ``allowed``, naming the first unknown one (sorted) and what is allowed."""
        unknown = sorted(key for key in self.raw if key not in allowed)
        if unknown:
            raise FlowDecodeError(
                f"unknown field ({what} has: {', '.join(allowed)})", path=self.at(unknown[0])
            )

    def required(self, key: str, read: _Read) -> Any:
        if key not in self.raw:
            raise FlowDecodeError("missing (required)", path=self.at(key))
        return read(self.raw[key], self.at(key))

    def optional(self, key: str, read: _Read, default: Any) -> Any:
        return read(self.raw[key], self.at(key)) if key in self.raw else default


def _decode_node(value: Any, path: str) -> Node:
    obj = _Object(value, path)
    kind = obj.required("type", _choice(*NODE_TYPES))
    cls = NODE_TYPES[kind]
    readers = _FIELDS[cls]
    obj.only(["type", *readers], f"a {kind} node")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if f.name in obj.raw or not has_default:
            kwargs[f.name] = obj.required(f.name, readers[f.name])
    node: Node = cls(**kwargs)
    match node:
        case CollectDigits() if node.min_digits > node.max_digits:
            raise FlowDecodeError(
                f"{node.min_digits} is above max_digits {node.max_digits}", path=obj.at("min_digits")
            )
        case Voicemail() if node.min_seconds > node.max_seconds:
            raise FlowDecodeError(
                f"{node.min_seconds:g} seconds is above max_seconds {node.max_seconds:g}",
                path=obj.at("min_seconds"),
            )
        case LanguageMenu():
            seen: dict[str, str] = {}
            for key, language in node.choices.items():
                if language in seen:
                    raise FlowDecodeError(
                        f"{_show(language)} is offered under key {_show(seen[language])} already",
                        path=_join(obj.at("choices"), key),
                    )
                seen[language] = key
    return node


def _clock(value: Any, path: str) -> int:
    """``HH:MM`` as minutes after midnight (24:00 is 1440: the end of the day)."""
    if not isinstance(value, str):
        raise _wrong('text "HH:MM"', value, path)
    if not _CLOCK.fullmatch(value):
        raise FlowDecodeError(f'{_show(value)} is not a time of day "HH:MM" (00:00 to 24:00)', path=path)
    return int(value[:2]) * 60 + int(value[3:])


def _intervals(value: Any, path: str) -> tuple[tuple[int, int], ...]:
    intervals: list[tuple[int, int]] = []
    for i, item in enumerate(_array(value, path, MAX_INTERVALS)):
        at = f"{path}[{i}]"
        pair = _array(item, at, 2)
        if len(pair) != 2:
            raise FlowDecodeError(f'expected ["HH:MM", "HH:MM"], found {len(pair)} items', path=at)
        start, end = _clock(pair[0], f"{at}[0]"), _clock(pair[1], f"{at}[1]")
        if start >= end:
            raise FlowDecodeError(f"ends at {pair[1]}, not after its start {pair[0]}", path=f"{at}[1]")
        if intervals and start < intervals[-1][1]:
            raise FlowDecodeError("starts before the previous interval ends (list them in order)", path=at)
        intervals.append((start, end))
    return tuple(intervals)


def _holidays(value: Any, path: str) -> frozenset[str]:
    days: set[str] = set()
    for i, item in enumerate(_array(value, path, MAX_HOLIDAYS)):
        at = f"{path}[{i}]"
        if not isinstance(item, str):
            raise _wrong('text "YYYY-MM-DD"', item, at)
        try:
            valid = _ISO_DATE.fullmatch(item) is not None and date.fromisoformat(item) is not None
        except ValueError:
            valid = False
        if not valid:
            raise FlowDecodeError(f'{_show(item)} is not a date "YYYY-MM-DD"', path=at)
        if item in days:
            raise FlowDecodeError(f"{_show(item)} is listed twice", path=at)
        days.add(item)
    return frozenset(days)


def _decode_schedule(value: Any, path: str) -> Schedule:
    obj = _Object(value, path)
    obj.only(["timezone", "weekly", "holidays"], "a schedule")
    timezone = obj.required("timezone", _timezone)
    week = _Object(obj.required("weekly", _mapping), obj.at("weekly"))
    week.only(WEEKDAYS, "weekly")
    weekly = {WEEKDAYS.index(day): week.required(day, _intervals) for day in WEEKDAYS if day in week.raw}
    return Schedule(timezone, weekly, obj.optional("holidays", _holidays, frozenset()))


def kind_of(value: Any) -> str:
    """The document type of ``value`` as a message names it ("a map", "text", "an integer", ...)."""
    return _kind(value)


def check_schedule_name(name: Any) -> str:
    """``name`` if a flow could name a schedule so (business hours pushed on their own are matched to the
    flows' ``schedules`` by it), else :class:`FlowDecodeError` with an empty path."""
    return str(_schedule_name(name, ""))


def decode_schedule(doc: Any) -> Schedule:
    """One schedule document (what a flow holds under ``schedules.<name>``: ``timezone``, ``weekly``,
    ``holidays``), read by the same rules as inside a flow; errors name paths relative to ``doc``."""
    return _decode_schedule(doc, "")


def _named(value: Any, path: str, limit: int, read_name: _Read, read_item: _Read) -> dict[str, Any]:
    raw = _mapping(value, path)
    if len(raw) > limit:
        raise FlowDecodeError(f"{len(raw)} entries, at most {limit} allowed", path=path)
    items = {}
    for key, item in raw.items():
        at = _join(path, key)
        items[read_name(key, at)] = read_item(item, at)
    return items


def _languages(value: Any, path: str) -> tuple[str, ...]:
    items = _array(value, path, MAX_LANGUAGES)
    if not items:
        raise FlowDecodeError("expected at least one language", path=path)
    languages: list[str] = []
    for i, item in enumerate(items):
        language = _language(item, f"{path}[{i}]")
        if language in languages:
            raise FlowDecodeError(f"{_show(language)} is listed twice", path=f"{path}[{i}]")
        languages.append(language)
    return tuple(languages)


_FLOW_FIELDS: Final = (
    "schema",
    "name",
    "version",
    "start",
    "languages",
    "default_language",
    "schedules",
    "nodes",
)


def decode_flow(doc: Mapping[str, Any]) -> Flow:
    """Read a flow document (what JSON or CBOR decode to: maps with text keys, arrays, text, numbers,
    booleans, null). Total: returns the flow or raises :class:`FlowDecodeError` naming the first bad field."""
    root = _Object(doc, "")
    schema = root.required("schema", _integer(0, 2**63))
    if schema != SCHEMA_VERSION:
        raise FlowDecodeError(
            f"unsupported schema {schema} (this build reads {SCHEMA_VERSION})", path="schema"
        )
    root.only(_FLOW_FIELDS, "a flow")
    name = root.required("name", _flow_name)
    version = root.required("version", _integer(1, 2**53))
    start = root.required("start", _node_ref)
    languages = root.required("languages", _languages)
    default_language = root.required("default_language", _language)
    if default_language not in languages:
        raise FlowDecodeError(
            f"{_show(default_language)} is not one of the flow's languages ({', '.join(languages)})",
            path="default_language",
        )
    schedules = root.optional(
        "schedules",
        lambda v, p: _named(v, p, MAX_SCHEDULES, _schedule_name, _decode_schedule),
        {},
    )
    nodes: dict[str, Node] = root.required(
        "nodes", lambda v, p: _named(v, p, MAX_NODES, _node_ref, _decode_node)
    )
    if not nodes:
        raise FlowDecodeError("expected at least one node", path="nodes")
    for node_id, node in nodes.items():
        if isinstance(node, LanguageMenu):
            for key, language in node.choices.items():
                if language not in languages:
                    raise FlowDecodeError(
                        f"{_show(language)} is not one of the flow's languages ({', '.join(languages)})",
                        path=_join(_join(_join("nodes", node_id), "choices"), key),
                    )
    return Flow(name, version, start, languages, default_language, nodes, schedules, schema)


# --- bytes and files --------------------------------------------------------------------------------------


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise FlowDecodeError(f"duplicate map key {_show(key)}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise FlowDecodeError(f"{name} is not a number JSON allows")


def _refuse_tag(*args: Any) -> Any:
    # cbor2's tag hook is called with the tag and, depending on the version, the decoder or a flag.
    tag = next((arg.tag for arg in args if isinstance(arg, cbor2.CBORTag)), "?")
    raise FlowDecodeError(f"CBOR tag {tag} not allowed")


def _nesting_within(value: Any, limit: int) -> bool:
    """Whether the JSON value ``value`` (a tree) nests at most ``limit`` deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def _parse(data: bytes, content_type: str) -> Any:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in CONTENT_TYPES:
        raise UnsupportedContentType(
            f"unsupported content type {_show(media_type)} ({', '.join(CONTENT_TYPES)})"
        )
    if len(data) > MAX_DOCUMENT_SIZE:
        raise FlowDecodeError(f"document too large ({len(data)} octets, at most {MAX_DOCUMENT_SIZE})")
    if media_type == "application/cbor":
        try:
            value, rest = _load_cbor(data)
        except FlowDecodeError:
            raise
        except Exception as exc:
            if isinstance(exc.__cause__, FlowDecodeError):  # a tag refused by _refuse_tag
                raise exc.__cause__ from None
            # cbor2 refuses bad input with errors that vary by version and backend (its semantic tags can
            # raise OverflowError or OSError building a date), so every one of them becomes our error.
            raise FlowDecodeError(f"not CBOR ({type(exc).__name__}: {str(exc)[:100]})") from None
        if rest:
            raise FlowDecodeError(f"trailing data after the document ({rest} octets)")
        return value
    try:
        text = data.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise FlowDecodeError(f"not UTF-8 (octet {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise FlowDecodeError(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise FlowDecodeError(f"nesting deeper than {MAX_DEPTH}") from None
    except ValueError:  # an integer of more digits than int() converts
        raise FlowDecodeError("not a flow document (a number too long)") from None
    if not _nesting_within(value, MAX_DEPTH):
        raise FlowDecodeError(f"nesting deeper than {MAX_DEPTH}")
    return value


def _load_cbor(data: bytes) -> tuple[Any, int]:
    """One CBOR item from ``data`` and how many octets follow it."""
    if not data:
        raise FlowDecodeError("empty document")
    stream = io.BytesIO(data)
    # read_size=1: the decoder reads no further than the item, so what follows it can be counted.
    decoder = cbor2.CBORDecoder(
        stream,
        tag_hook=_refuse_tag,
        read_size=1,
        max_depth=MAX_DEPTH,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )
    value = decoder.decode()
    return value, len(data) - stream.tell()


def decode_flow_bytes(data: bytes, content_type: str) -> Flow:
    """Read a flow document in ``content_type`` (``application/json`` or ``application/cbor``; parameters
    such as ``charset`` are ignored). Total: raises :class:`FlowDecodeError` (an
    :class:`UnsupportedContentType` for another media type) and nothing else."""
    return decode_flow(_parse(data, content_type))


def load_flow_file(path: str | os.PathLike[str]) -> Flow:
    """Read a JSON flow file: :class:`FlowReadError` if unreadable, else as :func:`decode_flow_bytes`."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_DOCUMENT_SIZE + 1)
    except OSError as exc:
        raise FlowReadError(os.fspath(path), exc.strerror or type(exc).__name__) from None
    return decode_flow_bytes(data, "application/json")


def default_flow() -> Flow:
    """The flow the appliance serves until the cloud pushes one (``flows/default.json``, package data)."""
    data = resources.files("appliance.ivr").joinpath("flows/default.json").read_bytes()
    return decode_flow_bytes(data, "application/json")


# --- encoding ---------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` as document data: arrays for tuples, maps for mappings, whole seconds as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _encode_node(node: Node) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": _TYPE_NAMES[type(node)]}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if f.default is dataclasses.MISSING or value != f.default:
            doc[f.name] = _plain(value)
    return doc


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _encode_schedule(schedule: Schedule) -> dict[str, Any]:
    weekly = {
        WEEKDAYS[day]: [[_hhmm(start), _hhmm(end)] for start, end in schedule.weekly[day]]
        for day in sorted(schedule.weekly)
    }
    doc: dict[str, Any] = {"timezone": schedule.timezone, "weekly": weekly}
    if schedule.holidays:
        doc["holidays"] = sorted(schedule.holidays)
    return doc


def encode_flow(flow: Flow) -> dict[str, Any]:
    """The document form of ``flow`` (JSON- and CBOR-ready): ``decode_flow(encode_flow(flow)) == flow`` for
    every flow :func:`decode_flow` can return. Fields equal to their defaults are left out."""
    doc: dict[str, Any] = {
        "schema": flow.schema,
        "name": flow.name,
        "version": flow.version,
        "start": flow.start,
        "languages": list(flow.languages),
        "default_language": flow.default_language,
    }
    if flow.schedules:
        doc["schedules"] = {name: _encode_schedule(s) for name, s in flow.schedules.items()}
    doc["nodes"] = {node_id: _encode_node(node) for node_id, node in flow.nodes.items()}
    return doc


def encode_flow_json(flow: Flow) -> bytes:
    """``flow`` as a canonical JSON file: maps one key a line with a two-space indent, arrays without maps
    on one line, keys in :func:`encode_flow`'s order, a final newline. A file written so reads back to
    ``flow`` and re-encodes to the same bytes."""
    return (_json_text(encode_flow(flow), "") + "\n").encode()


def _json_text(value: Any, indent: str) -> str:
    if isinstance(value, dict) and value:
        inner = indent + "  "
        items = (
            f"{inner}{json.dumps(key, ensure_ascii=False)}: {_json_text(item, inner)}"
            for key, item in value.items()
        )
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    return json.dumps(value, ensure_ascii=False)
