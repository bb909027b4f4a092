"""Typed views of the structured SIP headers: Via, name-addr headers (From, To, Contact, Route,
Record-Route), CSeq, and comma-separated lists (RFC 3261 §7.3.1, §20, §25.1).

The message keeps header values as text; these functions parse a value on demand and are total
(value or :class:`DecodeError`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from appliance.sip.errors import DecodeError
from appliance.sip.grammar import (
    Params,
    format_params,
    is_token,
    parse_params,
    quote,
    split_outside_quotes,
    unquote,
)
from appliance.sip.uri import format_host, split_hostport

# RFC 3261 §17.1.1.3: branches of RFC 3261-compliant elements start with this cookie.
BRANCH_COOKIE: Final = "z9hG4bK"
MAX_CSEQ: Final = 2**31 - 1

_VIA_RE: Final = re.compile(
    r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+([^;\s]+)\s*(?:;(.*))?\Z", re.I | re.S | re.A
)
# Characters no URI holds (RFC 3986 §2, RFC 3261 §25.1); they delimit a name-addr.
_NOT_IN_URI: Final = re.compile(r'[\s<>"]')
# RFC 3261 §20.16: CSeq = 1*DIGIT LWS Method
_CSEQ_RE: Final = re.compile(r"[ \t]*([0-9]+)[ \t]+([^ \t]+)[ \t]*\Z")


@dataclass(frozen=True, slots=True)
class Via:
    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {format_host(self.host)}{port}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    m = _VIA_RE.match(value.strip())
    if m is None:
        raise DecodeError("Malformed Via header")
    transport, hostport, param_text = m.group(1), m.group(2), m.group(3)
    host, port = split_hostport(hostport, what="Via header")
    params = parse_params(param_text.strip(), what="Via header") if param_text else {}
    return Via(transport=transport.upper(), host=host, port=port, params=params)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """``"Display" <uri>;params`` — the URI is kept as text; parse it with :func:`parse_uri` when needed."""

    uri: str
    display_name: str | None = None
    params: Params = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        params = dict(self.params)
        params["tag"] = tag
        return NameAddr(uri=self.uri, display_name=self.display_name, params=params)

    def __str__(self) -> str:
        name = f"{quote(self.display_name)} " if self.display_name is not None else ""
        return f"{name}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(value: str, *, what: str) -> NameAddr:
    """Parse a name-addr or addr-spec header value (RFC 3261 §20.10, §25.1); ``what`` names the header."""
    text = value.strip()
    if not text:
        raise DecodeError(f"Empty {what} header")
    display: str | None = None
    if text[0] == '"' or _angle_outside_quotes(text):
        # name-addr form: [display-name] <addr-spec> *(; param)
        if text[0] == '"':
            end = _closing_quote(text)
            if end < 0:
                raise DecodeError(f"Unterminated display name in {what} header")
            display = unquote(text[: end + 1])
            text = text[end + 1 :].lstrip()
        lt = text.find("<")
        if lt < 0:
            raise DecodeError(f"Missing '<' after display name in {what} header")
        if lt > 0:
            token_name = text[:lt].strip()
            if display is not None or not all(is_token(w) for w in token_name.split()):
                raise DecodeError(f"Malformed display name in {what} header")
            display = token_name
        gt = text.find(">", lt)
        if gt < 0:
            raise DecodeError(f"Unterminated '<' in {what} header")
        uri = text[lt + 1 : gt]
        if uri != uri.strip():
            # LAQUOT and RAQUOT take no inner whitespace (RFC 3261 §25.1; RFC 4475 §3.1.2.14).
            raise DecodeError(f"Whitespace inside '<...>' in {what} header")
        rest = text[gt + 1 :].strip()
    else:
        # addr-spec form: parameters after the URI belong to the header (RFC 3261 §20.10)
        uri, semi, param_part = text.partition(";")
        uri = uri.strip()
        rest = ";" + param_part if semi else ""
        if "?" in uri or "," in uri:
            # A URI holding a comma, question mark or semicolon must be enclosed in <> (RFC 3261 §20;
            # RFC 4475 §3.1.2.13): here it would change the header's meaning.
            raise DecodeError(f"URI with headers or commas outside '<...>' in {what} header")
    if not uri or ":" not in uri or _NOT_IN_URI.search(uri) is not None:
        raise DecodeError(f"Malformed URI in {what} header")
    params: Params = {}
    if rest:
        if rest[0] != ";":
            raise DecodeError(f"Unexpected text after URI in {what} header")
        params = parse_params(rest[1:], what=f"{what} header")
    return NameAddr(uri=uri, display_name=display, params=params)


def _angle_outside_quotes(text: str) -> bool:
    """Whether ``text`` has a ``<`` that is not inside a quoted string (a quoted parameter may hold one)."""
    lt = text.find("<")
    if lt < 0:
        return False
    quote_at = text.find('"')
    if quote_at < 0 or lt < quote_at:
        return True
    in_quotes = False
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
        elif ch == "<":
            return True
        i += 1
    return False


def _closing_quote(text: str) -> int:
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return -1


def parse_cseq(value: str) -> tuple[int, str]:
    """``(number, method)`` of a CSeq value; the number is at most 2**31 - 1 (RFC 3261 §8.1.1.5)."""
    m = _CSEQ_RE.match(value)
    if m is None:
        raise DecodeError("Malformed CSeq header")
    number, method = m.group(1), m.group(2)
    # Length first: int() refuses numerals beyond 4300 digits.
    if len(number.lstrip("0")) > 10 or int(number) > MAX_CSEQ:
        raise DecodeError("CSeq number out of range")
    if not is_token(method):
        raise DecodeError("Malformed CSeq method")
    return int(number), method


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value (RFC 3261 §7.3.1), respecting quotes and ``<...>``."""
    return [item.strip() for item in split_outside_quotes(value, ",") if item.strip()]


def parse_contacts(values: list[str]) -> list[NameAddr] | None:
    """Parse Contact header values; ``None`` means the wildcard ``*`` (REGISTER removal, RFC 3261 §10.2.2)."""
    items = [item for v in values for item in split_list(v)]
    if items == ["*"]:
        return None
    if "*" in items:
        raise DecodeError("Wildcard Contact mixed with other contacts")
    return [parse_name_addr(item, what="Contact") for item in items]


def parse_session_expires(value: str) -> tuple[int, str | None]:
    """RFC 4028 §4: ``delta-seconds *(;se-params)`` → the interval and the refresher ("uac", "uas", None)."""
    number, semi, param_text = value.partition(";")
    number = number.strip()
    if not number.isascii() or not number.isdigit() or len(number) > 10:
        raise DecodeError("Malformed Session-Expires header")
    params = parse_params(param_text, what="Session-Expires header") if semi else {}
    refresher = params.get("refresher")
    if refresher is not None and refresher.lower() not in ("uac", "uas"):
        raise DecodeError("Malformed refresher in Session-Expires header")
    return int(number), refresher.lower() if refresher else None


def parse_reason(value: str) -> list[tuple[str, int, str]]:
    """RFC 3326 §2: ``reason-value *(COMMA reason-value)``, each ``protocol *(SEMI reason-params)`` → a list
    of (protocol upper-cased, cause, text); values without a numeric ``cause`` are left out (§2 makes it
    mandatory, but a peer's slip must not cost the call its other reasons)."""
    out: list[tuple[str, int, str]] = []
    for item in split_list(value):
        protocol, semi, param_text = item.partition(";")
        protocol = protocol.strip()
        if not is_token(protocol) or not semi:
            continue
        try:
            params = parse_params(param_text, what="Reason header")
        except DecodeError:
            continue
        cause = params.get("cause")
        if cause is None or not cause.isascii() or not cause.isdigit() or len(cause) > 5:
            continue
        text = params.get("text") or ""
        out.append((protocol.upper(), int(cause), unquote(text)))
    return out
