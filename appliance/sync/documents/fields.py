"""Readers of document fields for the owners that have no document reader of their own (operator keys,
span settings, the routing table's outer map). Each returns the value or raises :class:`InvalidDocument`
naming the path (relative to the content) and what was expected; the content is plain data already
(:func:`~appliance.sync.documents.model.check_plain`)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from appliance.ivr.flow_codec import kind_of
from appliance.sync.documents.errors import InvalidDocument
from appliance.sync.documents.model import join


def wrong(expected: str, value: Any, path: str) -> InvalidDocument:
    return InvalidDocument(f"expected {expected}, found {kind_of(value)}", path=path)


def read_map(
    value: Any, path: str, *, required: Sequence[str], optional: Sequence[str] = ()
) -> Mapping[str, Any]:
    """A map with every ``required`` key and no key outside ``required`` and ``optional``."""
    if not isinstance(value, Mapping):
        raise wrong("a map", value, path)
    allowed = [*required, *optional]
    unknown = sorted(key for key in value if key not in allowed)
    if unknown:
        raise InvalidDocument(f"unknown field (allowed: {', '.join(allowed)})", path=join(path, unknown[0]))
    for key in required:
        if key not in value:
            raise InvalidDocument("missing (required)", path=join(path, key))
    return value


def read_array(value: Any, path: str, *, low: int, high: int) -> Sequence[Any]:
    """An array of ``low`` to ``high`` items."""
    if not isinstance(value, list | tuple):
        raise wrong("an array", value, path)
    if not low <= len(value) <= high:
        raise InvalidDocument(f"{len(value)} items, expected {low} to {high}", path=path)
    return value


def read_text(value: Any, path: str, pattern: re.Pattern[str], words: str) -> str:
    """Text matching ``pattern`` (whole); ``words`` says what that is."""
    if not isinstance(value, str):
        raise wrong(words, value, path)
    if pattern.fullmatch(value) is None:
        shown = value if len(value) <= 64 else value[:61] + "..."
        raise InvalidDocument(f"expected {words}, found {shown!r}", path=path)
    return value


def read_choice(value: Any, path: str, options: Collection[str]) -> str:
    words = "one of " + ", ".join(f'"{option}"' for option in options)
    if not isinstance(value, str):
        raise wrong(words, value, path)
    if value not in options:
        shown = value if len(value) <= 64 else value[:61] + "..."
        raise InvalidDocument(f"expected {words}, found {shown!r}", path=path)
    return value


def read_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise wrong("true or false", value, path)
    return value


def read_int(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong(f"an integer from {low} to {high}", value, path)
    if not low <= value <= high:
        raise InvalidDocument(f"expected an integer from {low} to {high}, found {value}", path=path)
    return value
