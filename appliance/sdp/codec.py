"""The SDP parser (RFC 8866 §5, §9).

Theory of operation. The body is cut into lines (CRLF, or a bare LF as many stacks write), each line must be
``<type>=<value>`` with a known lower-case type letter, and a cursor walks the lines in the order RFC 8866 §5
fixes::

    v= o= s= [i=] [u=] *e= *p= [c=] *b= 1*(t= *r= [z=]) [k=] *a=  *( m= [i=] *c= *b= [k=] *a= )

A line that does not fit where it stands is rejected with its line number: RFC 8866 §5 makes the order
mandatory and tells a parser to reject a description with a type letter it does not know. Structured fields
(``o=``, ``c=``, ``m=`` …) may be separated by runs of whitespace, which the model normalises to one space;
text fields (``s=``, ``i=``, attribute values) are kept as they arrived.

``parse_sdp`` is total: it returns a :class:`SessionDescription` or raises :class:`SdpDecodeError` whose
``status`` is 400 for malformed text and 488 for a description over the appliance's caps (64 KiB, 64 media
sections, 256 attributes in one section), and whose ``reason`` names the fault.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from appliance.sdp.errors import SdpDecodeError
from appliance.sdp.model import (
    Attribute,
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
    is_token,
    is_uint,
    validate_attribute,
)

MAX_SDP_SIZE: Final = 65536
MAX_MEDIA: Final = 64
MAX_ATTRIBUTES: Final = 256
TYPE_LETTERS: Final = frozenset("vosiuepcbtrzkam")

_T = TypeVar("_T")


class _Cursor:
    """Walks the ``(line number, type, value)`` triples; ``line`` is the number of the last line taken."""

    __slots__ = ("line", "lines", "pos")

    def __init__(self, lines: list[tuple[int, str, str]]) -> None:
        self.lines = lines
        self.pos = 0
        self.line = 0

    def peek(self) -> str | None:
        return self.lines[self.pos][1] if self.pos < len(self.lines) else None

    def take(self, kind: str) -> str | None:
        if self.peek() != kind:
            return None
        self.line, _, value = self.lines[self.pos]
        self.pos += 1
        return value

    def take_all(self, kind: str) -> list[str]:
        values = []
        while (value := self.take(kind)) is not None:
            values.append(value)
        return values

    def require(self, kind: str) -> str:
        value = self.take(kind)
        if value is None:
            if self.pos < len(self.lines):
                n, found, _ = self.lines[self.pos]
                raise SdpDecodeError(f"SDP line {n}: expected '{kind}=' line, found '{found}='", line=n)
            raise SdpDecodeError(f"SDP ends before the '{kind}=' line")
        return value


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse a whole session description (a SIP body); see the module docstring for the contract."""
    if len(data) > MAX_SDP_SIZE:
        raise SdpDecodeError(f"SDP exceeds {MAX_SDP_SIZE} octets", status=488)
    cursor = _Cursor(_split_lines(data))
    try:
        return _parse_session(cursor)
    except SdpDecodeError as exc:
        if exc.line is None and cursor.line:
            exc.line = cursor.line
        raise


def _split_lines(data: bytes) -> list[tuple[int, str, str]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpDecodeError("SDP is not valid UTF-8") from None
    raw = text.split("\n")
    # A final line break leaves one empty string; some stacks also append a blank line after the body.
    while raw and raw[-1] in ("", "\r"):
        raw.pop()
    if not raw:
        raise SdpDecodeError("SDP is empty")
    lines: list[tuple[int, str, str]] = []
    for n, text_line in enumerate(raw, 1):
        line = text_line[:-1] if text_line.endswith("\r") else text_line
        if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
            raise SdpDecodeError(f"SDP line {n}: expected '<type>=<value>'", line=n)
        if "\r" in line or "\x00" in line:
            raise SdpDecodeError(f"SDP line {n}: CR or NUL inside the line", line=n)
        if line[0] not in TYPE_LETTERS:
            raise SdpDecodeError(f"SDP line {n}: unknown type '{line[0]}='", line=n)
        lines.append((n, line[0], line[2:]))
    return lines


def _parse_session(c: _Cursor) -> SessionDescription:
    version = c.require("v")
    if version != "0":
        raise SdpDecodeError(f"v= line: unsupported version {version[:8]!r}")
    origin = _parse_origin(c.require("o"))
    session_name = c.require("s")
    information = c.take("i")
    uri = c.take("u")
    emails = tuple(c.take_all("e"))
    phones = tuple(c.take_all("p"))
    conn_text = c.take("c")
    connection = None if conn_text is None else _parse_connection(conn_text)
    bandwidths = _each(c, "b", _parse_bandwidth)
    timing = [_parse_timing(c, c.require("t"))]
    while (t := c.take("t")) is not None:
        timing.append(_parse_timing(c, t))
    key = c.take("k")
    attributes = _parse_attributes(c)
    media: list[MediaDescription] = []
    while (m := c.take("m")) is not None:
        if len(media) == MAX_MEDIA:
            raise SdpDecodeError(f"SDP has more than {MAX_MEDIA} media sections", status=488)
        media.append(_parse_media(c, m))
    if c.pos < len(c.lines):
        n, kind, _ = c.lines[c.pos]
        raise SdpDecodeError(f"SDP line {n}: '{kind}=' line out of order", line=n)
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        version=0,
        information=information,
        uri=uri,
        emails=emails,
        phones=phones,
        connection=connection,
        bandwidths=bandwidths,
        timing=tuple(timing),
        key=key,
        attributes=attributes,
        media=tuple(media),
    )


def _each(c: _Cursor, kind: str, parse: Callable[[str], _T]) -> tuple[_T, ...]:
    """Take and parse every consecutive ``kind=`` line, each parsed as soon as it is taken so that an error
    names its own line."""
    values = []
    while (value := c.take(kind)) is not None:
        values.append(parse(value))
    return tuple(values)


def _text(kind: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not value.strip():
            raise SdpDecodeError(f"{kind}= line: empty")
        return value

    return check


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpDecodeError("o= line: expected 6 fields")
    username, sess_id, sess_version, nettype, addrtype, address = parts
    if not is_uint(sess_id, 32):
        raise SdpDecodeError("o= line: bad session id")
    if not is_uint(sess_version, 32):
        raise SdpDecodeError("o= line: bad session version")
    if not is_token(nettype) or not is_token(addrtype):
        raise SdpDecodeError("o= line: bad network or address type")
    return Origin(username, int(sess_id), int(sess_version), nettype, addrtype, address)


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpDecodeError("c= line: expected 3 fields")
    if not is_token(parts[0]) or not is_token(parts[1]):
        raise SdpDecodeError("c= line: bad network or address type")
    return Connection(parts[0], parts[1], parts[2])


def _parse_bandwidth(value: str) -> Bandwidth:
    bwtype, colon, amount = value.partition(":")
    if not colon or not is_token(bwtype) or not is_uint(amount):
        raise SdpDecodeError("b= line: bad bandwidth")
    return Bandwidth(bwtype, int(amount))


def _parse_timing(c: _Cursor, value: str) -> Timing:
    parts = value.split()
    if len(parts) != 2 or not is_uint(parts[0]) or not is_uint(parts[1]):
        raise SdpDecodeError("t= line: bad time")
    repeats = _each(c, "r", _text("r"))
    zone = c.take("z")
    if zone is not None:
        _text("z")(zone)
    return Timing(int(parts[0]), int(parts[1]), repeats, zone)


def _parse_attributes(c: _Cursor) -> tuple[Attribute, ...]:
    attributes: list[Attribute] = []
    while (value := c.take("a")) is not None:
        if len(attributes) == MAX_ATTRIBUTES:
            raise SdpDecodeError(f"SDP has more than {MAX_ATTRIBUTES} attributes in one section", status=488)
        name, colon, rest = value.partition(":")
        if not is_token(name):
            raise SdpDecodeError("a= line: bad attribute name")
        attribute = Attribute(name, rest if colon else None)
        validate_attribute(attribute)
        attributes.append(attribute)
    return tuple(attributes)


def _parse_media(c: _Cursor, value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise SdpDecodeError("m= line: expected '<media> <port> <proto> <fmt> ...'")
    media, port_text, proto = parts[0], parts[1], parts[2]
    formats = tuple(parts[3:])
    if not is_token(media):
        raise SdpDecodeError("m= line: bad media type")
    port_str, slash, count_str = port_text.partition("/")
    if not is_uint(port_str, 5) or int(port_str) > 65535:
        raise SdpDecodeError("m= line: bad port")
    port_count = None
    if slash:
        if not is_uint(count_str, 5) or int(count_str) == 0:
            raise SdpDecodeError("m= line: bad port count")
        port_count = int(count_str)
    if not all(p and is_token(p) for p in proto.split("/")):
        raise SdpDecodeError("m= line: bad transport protocol")
    description = MediaDescription(media, int(port_str), proto, formats, port_count)
    if description.is_rtp:
        if any(not is_uint(f, 3) or int(f) > 127 for f in formats):
            raise SdpDecodeError("m= line: bad payload type")
    elif not all(is_token(f) for f in formats):
        raise SdpDecodeError("m= line: bad format")
    title = c.take("i")
    connections = _each(c, "c", _parse_connection)
    bandwidths = _each(c, "b", _parse_bandwidth)
    key = c.take("k")
    attributes = _parse_attributes(c)
    return MediaDescription(
        media,
        int(port_str),
        proto,
        formats,
        port_count,
        title=title,
        connections=connections,
        bandwidths=bandwidths,
        key=key,
        attributes=attributes,
    )
