"""Small pieces of the RFC 3261 §25.1 grammar shared by the URI and header parsers.

Everything here is total: it returns a value or raises :class:`DecodeError` with a reason naming the fault.
"""

from __future__ import annotations

import re
from typing import Final

from appliance.sip.errors import DecodeError

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
TOKEN_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_TOKEN_FULL: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")

Params = dict[str, str | None]


def is_token(text: str) -> bool:
    return _TOKEN_FULL.match(text) is not None


def unquote(text: str) -> str:
    """Undo a quoted-string (RFC 3261 §25.1 quoted-pair): ``"a \\"b\\""`` → ``a "b"``."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out: list[str] = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and i + 1 < len(inner):
            out.append(inner[i + 1])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def quote(text: str) -> str:
    """Make a quoted-string, escaping ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside quoted strings and outside ``<...>`` (a URI may hold the separator).

    Raises :class:`DecodeError` on an unterminated quoted string or angle bracket.
    """
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif in_angle:
            if ch == ">":
                in_angle = False
        elif ch == "<":
            in_angle = True
        elif ch == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if in_quotes:
        raise DecodeError("Unterminated quoted string")
    if in_angle:
        raise DecodeError("Unterminated '<' in header value")
    parts.append(text[start:])
    return parts


def parse_params(text: str, *, what: str) -> Params:
    """Parse ``;name=value;flag`` (the leading ``;`` already removed) into an ordered dict.

    Names are case-insensitive (RFC 3261 §7.3.1) and stored lower-cased; values keep their case, quoted
    values keep their quotes so that serialization is faithful (use :func:`unquote` to read them).
    """
    params: Params = {}
    if not text:
        return params
    for item in split_outside_quotes(text, ";"):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not name or not is_token(name):
            raise DecodeError(f"Malformed parameter {item.strip()!r} in {what}")
        if eq:
            value = value.strip()
            if not value:
                raise DecodeError(f"Empty value for parameter {name!r} in {what}")
            if value[0] == '"':
                if _QUOTED_FULL.match(value) is None:
                    raise DecodeError(f"Malformed quoted value for parameter {name!r} in {what}")
            elif not _PARAM_VALUE_FULL.match(value):
                raise DecodeError(f"Malformed value for parameter {name!r} in {what}")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


# A generic-param value is a token, a host (incl. an IPv6 reference) or a quoted string
# (RFC 3261 §25.1 gen-value).
_PARAM_VALUE_FULL: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]/@&=$,?]+\Z")
# RFC 3261 §25.1 quoted-string: qdtext and quoted-pair (any character but CR/LF after the backslash).
_QUOTED_FULL: Final = re.compile(r'"(?:[^"\\\r\n]|\\[^\r\n])*"\Z')


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
