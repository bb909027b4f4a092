"""What the document store holds and answers, and what an owner module provides.

A configuration document is named by its kind and a name (``appliance/sync/sync.cddl``,
``document-kind``); its content is plain CBOR data that the kind's owner module checks
(:class:`DocumentOwner`). Times are wall-clock POSIX seconds here; :func:`utc_time` renders them as the
sync API's ``utc-time``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from appliance.sync.documents.errors import InvalidDocument

Kind = Literal["ivr-flow", "prompt", "routing", "operator-keys", "business-hours", "span"]

KINDS: Final[tuple[Kind, ...]] = ("prompt", "business-hours", "ivr-flow", "routing", "operator-keys", "span")
"""Every kind, in the order the store applies them at start: a flow's prompts and schedules are in force
before the flow is checked against them."""

State = Literal["applied", "pending-confirm"]

MAX_DEPTH: Final = 16
"""Nesting a document's content may reach (a flow needs 6)."""
MAX_INTEGER: Final = 2**63
"""Integers beyond ±this are refused: no document field needs them."""

_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PROMPT_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,16}/[A-Za-z0-9_.-]{1,64}")
_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def utc_time(seconds: float) -> str:
    """POSIX ``seconds`` as RFC 3339 UTC with milliseconds (``2026-11-24T21:30:00.000Z``)."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def check_name(kind: str, name: str) -> None:
    """Raise :class:`InvalidDocument` (no path: the name is in the URL) unless ``name`` is one a document
    of ``kind`` may have: ``"<language>/<prompt>"`` for a prompt, else 1-64 of ``[A-Za-z0-9_.-]``."""
    pattern, words = (
        (_PROMPT_NAME, '"<language>/<prompt>"') if kind == "prompt" else (_NAME, "1-64 of A-Z a-z 0-9 _ . -")
    )
    if not isinstance(name, str) or pattern.fullmatch(name) is None or name in {".", ".."}:
        raise InvalidDocument(f"{_show(name)} is not a {kind} document name ({words})")


def join(path: str, key: str | int) -> str:
    """The path of ``key`` (a map key, or an array index) inside the value at ``path``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    segment = key if _PLAIN_KEY.fullmatch(key) else _show(key)
    return f"{path}.{segment}" if path else segment


def within(prefix: str, path: str) -> str:
    """``path`` (relative to a value) made relative to the value's parent, where the value is ``prefix``."""
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def _show(value: object) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 64 else value[:61] + "..."
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return type(value).__name__


def check_plain(value: Any, path: str = "content") -> None:
    """Raise :class:`InvalidDocument` unless ``value`` is plain document data: maps with text keys, arrays,
    text, byte strings, integers within ±2**63, finite numbers, booleans and null, nested at most
    :data:`MAX_DEPTH` deep. Owners may then read it without meeting anything stranger (CBOR tags, huge
    integers, NaN), and it always encodes to canonical CBOR."""
    stack: list[tuple[Any, str, int]] = [(value, path, 1)]
    while stack:
        item, at, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > MAX_DEPTH:
                raise InvalidDocument(f"nested deeper than {MAX_DEPTH}", path=at)
            if isinstance(item, Mapping):
                for key in item:
                    if not isinstance(key, str):
                        raise InvalidDocument(f"a map key is {type(key).__name__}, not text", path=at)
                stack.extend((child, join(at, key), depth + 1) for key, child in item.items())
            else:
                stack.extend((child, join(at, i), depth + 1) for i, child in enumerate(item))
        elif isinstance(item, bool) or item is None or isinstance(item, str | bytes):
            continue
        elif isinstance(item, int):
            if not -MAX_INTEGER <= item <= MAX_INTEGER:
                raise InvalidDocument("integer out of range (at most 2**63 either way)", path=at)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidDocument(f"{item!r} is not a finite number", path=at)
        else:
            raise InvalidDocument(f"{type(item).__name__} is not document data", path=at)


_TIMES: Final = frozenset({"applied_at", "confirm_by"})


def _message(record: DocumentInfo | Document | ConfigResult) -> dict[str, Any]:
    """``record`` as its sync API map: times as ``utc-time``, optional fields (default None) left out
    while None."""
    body: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if value is None and f.default is None:
            continue
        body[f.name] = utc_time(value) if f.name in _TIMES else value
    return body


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """One stored document as ``document-info`` lists it; ``confirm_by`` (wall clock) and
    ``previous_version`` only while a write waits for its confirmation."""

    kind: Kind
    name: str
    version: int
    sha256: str
    applied_at: float
    confirm_by: float | None = None
    previous_version: int | None = None

    def as_message(self) -> dict[str, Any]:
        return _message(self)


@dataclass(frozen=True, slots=True)
class Document:
    """One stored document with its content as written (``document``)."""

    kind: Kind
    name: str
    version: int
    content: Any
    applied_at: float
    confirm_by: float | None = None

    def as_message(self) -> dict[str, Any]:
        return _message(self)


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """The answer to a write or a confirmation (``config-result``)."""

    kind: Kind
    name: str
    version: int
    state: State
    confirm_by: float | None = None

    def as_message(self) -> dict[str, Any]:
        return _message(self)


class DocumentOwner(Protocol):
    """The module that owns one kind of document: it checks a document and puts it in force.

    The store calls :meth:`validate` first, for everything that can be refused, and only then commits the
    document and calls :meth:`apply` with what :meth:`validate` returned. So that a document is never half
    in force, :meth:`apply` does its fallible work first (an atomic file write) and its in-memory swap
    last, and raises only before the swap; the store then restores the previous document. :meth:`remove`
    returns the owner to what it serves without a document of that name.
    """

    @property
    def kind(self) -> Kind: ...

    def validate(self, name: str, content: Any, *, version: int) -> object:
        """What :meth:`apply` needs, or :class:`InvalidDocument` with a path relative to the content
        (``nodes.menu``; ``""`` for the content as a whole; None for the name)."""
        ...

    def apply(self, name: str, prepared: Any) -> None: ...

    def remove(self, name: str) -> None: ...
