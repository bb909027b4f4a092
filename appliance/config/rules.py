"""Per-field rules of the configuration schema.

A schema field declares its rule next to itself, in the dataclass field's metadata::

    udp_port: int = field(default=5060, metadata=port())

A :class:`Rule` says in words what the field expects ("an integer from 0 to 65535") and how to test a value
that already has the right Python type. The loader (:mod:`appliance.config.load`) checks the type from the
field's annotation, then the rule, and reports either failure with the same ``expected …, got …`` sentence,
so the operator always reads what the field accepts.

A check returns ``None`` to accept a value, :data:`REJECT` to refuse it with the ``expected`` sentence alone,
or any other text to refuse it with that text added as the reason (a URI parser's diagnosis, say).
"""

from __future__ import annotations

import ipaddress
import math
import re
import zoneinfo
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

import phonenumbers

from appliance.sip.errors import DecodeError
from appliance.sip.uri import parse_host, parse_sip_uri

RULE_KEY: Final = "appliance.config.rule"
REJECT: Final = ""

Check = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class Rule:
    """What a field accepts: ``expected`` in words, ``check`` on the typed value, ``item`` for array items."""

    expected: str
    check: Check | None = None
    item: Rule | None = None


def rule(expected: str, check: Check | None = None, *, item: Rule | None = None) -> Mapping[str, Rule]:
    """Field metadata carrying a rule: ``field(default=…, metadata=rule("…", check))``."""
    return {RULE_KEY: Rule(expected, check, item)}


def rule_of(metadata: Mapping[str, Any]) -> Rule | None:
    found = metadata.get(RULE_KEY)
    return found if isinstance(found, Rule) else None


def _range_words(noun: str, lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{noun} from {lo:g} to {hi:g}"
    if lo is not None:
        return f"{noun} of at least {lo:g}"
    if hi is not None:
        return f"{noun} of at most {hi:g}"
    return noun


def integer(lo: int | None = None, hi: int | None = None) -> Mapping[str, Rule]:
    """An integer within ``lo``..``hi`` (inclusive; either bound may be open)."""

    def check(v: int) -> str | None:
        return REJECT if (lo is not None and v < lo) or (hi is not None and v > hi) else None

    return rule(_range_words("an integer", lo, hi), check)


def even_integer(lo: int, hi: int) -> Mapping[str, Rule]:
    def check(v: int) -> str | None:
        return REJECT if v < lo or v > hi or v % 2 else None

    return rule(f"an even integer from {lo} to {hi}", check)


def port() -> Mapping[str, Rule]:
    """A TCP/UDP port; 0 asks the kernel for an ephemeral one (tests bind that way)."""
    return integer(0, 65535)


def number(*, above: float | None = None, least: float | None = None) -> Mapping[str, Rule]:
    """A finite number greater than ``above`` or at least ``least``."""
    words = f"a number greater than {above:g}" if above is not None else _range_words("a number", least, None)

    def check(v: float) -> str | None:
        if not math.isfinite(v):
            return REJECT
        if (above is not None and v <= above) or (least is not None and v < least):
            return REJECT
        return None

    return rule(words, check)


def ip_address_check(v: str) -> str | None:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return REJECT
    return None


def ip_address() -> Mapping[str, Rule]:
    return rule("an IPv4 or IPv6 address", ip_address_check)


def text(pattern: str | None = None, *, max_len: int = 256) -> Check:
    """A check for a string: non-empty, at most ``max_len`` characters, matching ``pattern`` when given."""
    compiled = re.compile(pattern) if pattern is not None else None

    def check(v: str) -> str | None:
        if not v or len(v) > max_len:
            return REJECT
        if compiled is not None and compiled.fullmatch(v) is None:
            return REJECT
        if compiled is None and not v.isprintable():
            return REJECT
        return None

    return check


def non_empty_text(expected: str = "a non-empty string", *, max_len: int = 256) -> Mapping[str, Rule]:
    return rule(expected, text(max_len=max_len))


def choice(options: Collection[str]) -> Rule:
    """A rule for one of a fixed set of strings (an array item; whole fields use ``Literal``)."""
    words = " or ".join(f'"{o}"' for o in options)
    allowed = frozenset(options)
    return Rule(words, lambda v: None if v in allowed else REJECT)


def non_empty_array(expected: str, item: Rule | None = None) -> Mapping[str, Rule]:
    return rule(expected, lambda v: None if v else REJECT, item=item)


# RFC 3261 §25.1 user: unreserved and user-unreserved characters; ";", "?" and "/" are left out because a
# name holding them cannot stand unescaped in a Digest username or a registration's user part.
USER_PATTERN: Final = r"[A-Za-z0-9\-_.!~*'()&=+$,]{1,64}"
USER_RE: Final = re.compile(USER_PATTERN)
# Names of IVR flows and agent groups: they appear in destinations ("agents:<group>") and in metrics labels.
NAME_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_\-.]{0,63}"
NAME_RE: Final = re.compile(NAME_PATTERN)


def sip_user() -> Mapping[str, Rule]:
    return rule("a SIP user name (letters, digits and -_.!~*'()&=+$, up to 64)", text(pattern=USER_PATTERN))


def name() -> Mapping[str, Rule]:
    return rule("a name of letters, digits, '_', '-' and '.' (up to 64)", text(pattern=NAME_PATTERN))


def hex_digest(length: int) -> Mapping[str, Rule]:
    pattern = re.compile(f"[0-9a-fA-F]{{{length}}}")

    def check(v: str) -> str | None:
        return None if v == "" or pattern.fullmatch(v) else REJECT

    return rule(f"{length} hexadecimal digits (or empty)", check)


def timezone_check(v: str) -> str | None:
    if not v or len(v) > 64:
        return REJECT
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return REJECT
    return None


def region_check(v: str) -> str | None:
    return None if v in phonenumbers.SUPPORTED_REGIONS else REJECT


def sip_uri_check(v: str) -> str | None:
    """An empty string or a sip:/sips: URI; on failure the parser's own diagnosis is the reason."""
    if v == "":
        return None
    try:
        parse_sip_uri(v)
    except DecodeError as exc:
        return exc.reason
    return None


def host_check(v: str) -> str | None:
    """A host name or IP address as it may stand in a SIP URI (a bare IPv6 address is accepted too)."""
    if ip_address_check(v) is None:
        return None
    try:
        parse_host(v, what="domain")
    except DecodeError:
        return REJECT
    return None


def header_text_check(v: str) -> str | None:
    """A non-empty printable header value, no CR/LF: it is written into every request the appliance sends."""
    return None if v and len(v) <= 128 and v.isprintable() else REJECT


def describe(value: object) -> str:
    """A TOML value as the operator wrote it, with its TOML type: ``"abc" (string)``, ``12 (integer)``."""
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (boolean)"
    if isinstance(value, int):
        return f"{value} (integer)"
    if isinstance(value, float):
        return f"{_toml_float(value)} (float)"
    if isinstance(value, str):
        return f"{_quote(value)} (string)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return f"{_short([_inline(v) for v in value])} (array)"
    kind = type(value).__name__  # TOML dates and times
    return f"{value} ({'date-time' if kind == 'datetime' else kind})"


def _toml_float(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def _quote(v: str, limit: int = 160) -> str:
    shown = v if len(v) <= limit else v[:limit] + "…"
    escaped = shown.replace("\\", "\\\\").replace('"', '\\"')
    # Control characters are shown escaped so that a report stays one line per issue.
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


def _inline(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _toml_float(v)
    if isinstance(v, str):
        return _quote(v, 20)
    if isinstance(v, dict):
        return "{…}"
    if isinstance(v, list | tuple):
        return "[…]"
    return str(v)


def _short(items: list[str], limit: int = 60) -> str:
    out = "[" + ", ".join(items) + "]"
    return out if len(out) <= limit else out[: limit - 2] + "…]"


def expected(words: str, value: object) -> str:
    """The standard issue sentence: ``expected <words>, got <value> (<type>)``."""
    return f"expected {words}, got {describe(value)}"
