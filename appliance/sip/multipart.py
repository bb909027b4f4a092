"""Multipart message bodies (RFC 2046 §5.1 as carried by SIP, RFC 5621).

Theory of operation. A multipart body is a sequence of parts separated by delimiter lines built from the
``boundary`` parameter of its Content-Type: ``--boundary`` opens the first part, CRLF ``--boundary`` each
next one, CRLF ``--boundary--`` closes the body. Whatever precedes the first delimiter (the preamble) and
follows the last (the epilogue) carries no meaning and is dropped. Each part is a MIME header block
(Content-Type, Content-Disposition, Content-ID ...; a part with none starts with an empty line) and the
part's octets, which are kept as they are: SIP sends bodies in binary (RFC 3261 §7.4).

The appliance meets these as SDP alongside ISUP, resource lists or location objects (RFC 5621 §3), so
:func:`parse_multipart` is total — a list of :class:`BodyPart` or :class:`DecodeError` with the reason — and
capped in the number of parts. A part that is itself multipart is returned as is; parse it again to descend.
:func:`build_multipart` writes the canonical form, and parsing that form gives back the same parts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from appliance.sip.errors import DecodeError, LocalProtocolError
from appliance.sip.grammar import is_token, parse_params, quote, unquote

MAX_PARTS: Final = 32

_CRLF: Final = b"\r\n"
# RFC 2046 §5.1.1: boundary := 0*69<bchars> bcharsnospace
_BOUNDARY_RE: Final = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]\Z")
# Octets a part's header block may not hold; CR and LF are checked to come only as CRLF pairs.
_CTL_OCTETS: Final = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_FOLD: Final = re.compile(r"[ \t]*\r\n[ \t]+")
_VALUE_CTL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One part of a multipart body: its header fields in order, as ``(name, value)``, and its octets."""

    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def of(cls, content_type: str, body: bytes, *, disposition: str | None = None) -> BodyPart:
        """A part with a Content-Type and, optionally, a Content-Disposition (RFC 5621 §5)."""
        headers = [("Content-Type", content_type)]
        if disposition is not None:
            headers.append(("Content-Disposition", disposition))
        return cls(tuple(headers), body)

    def header(self, name: str) -> str | None:
        """The first value of a header field, the name compared without regard to case."""
        key = name.lower()
        for field_name, value in self.headers:
            if field_name.lower() == key:
                return value
        return None

    @property
    def content_type(self) -> str | None:
        """The Content-Type value; RFC 2046 §5.1 makes a part without one ``text/plain``."""
        return self.header("content-type")

    @property
    def media_type(self) -> str:
        """``type/subtype`` of the part in lower case, ``text/plain`` when it has no Content-Type."""
        content_type = self.content_type
        return media_type(content_type) if content_type is not None else "text/plain"

    @property
    def content_disposition(self) -> str | None:
        return self.header("content-disposition")


def media_type(content_type: str) -> str:
    """``type/subtype`` of a Content-Type value, lower-cased and without parameters."""
    return content_type.partition(";")[0].strip().lower()


def is_multipart(content_type: str | None) -> bool:
    return content_type is not None and media_type(content_type).startswith("multipart/")


def multipart_boundary(content_type: str) -> str:
    """The boundary of a ``multipart/*`` Content-Type; :class:`DecodeError` when absent or malformed."""
    type_subtype, semi, param_text = content_type.partition(";")
    kind, slash, subtype = type_subtype.strip().partition("/")
    if not slash or not is_token(kind) or not is_token(subtype):
        raise DecodeError("Malformed Content-Type of a multipart body")
    if kind.lower() != "multipart":
        raise DecodeError(f"Content-Type {kind.lower()}/{subtype.lower()} is not multipart")
    params = parse_params(param_text, what="Content-Type") if semi else {}
    raw = params.get("boundary")
    if raw is None:
        raise DecodeError("Missing boundary parameter in multipart Content-Type")
    boundary = unquote(raw)
    if _BOUNDARY_RE.match(boundary) is None:
        raise DecodeError("Malformed multipart boundary")
    return boundary


def parse_multipart(body: bytes, content_type: str, *, max_parts: int = MAX_PARTS) -> list[BodyPart]:
    """The parts of a multipart body, ``content_type`` being the message's (or enclosing part's) value.

    Raises :class:`DecodeError` (status 400) naming the fault: no boundary, no opening or closing delimiter,
    a malformed delimiter line or part header, more than ``max_parts`` parts.
    """
    dash = b"--" + multipart_boundary(content_type).encode("ascii")
    delimiter = _CRLF + dash
    if body.startswith(dash):
        at = 0
    else:
        at = body.find(delimiter)
        if at < 0:
            raise DecodeError("Missing opening boundary in multipart body")
        at += 2  # the preamble, if any, ends with this CRLF
    parts: list[BodyPart] = []
    while True:
        after = at + len(dash)
        if body[after : after + 2] == b"--":
            break  # close-delimiter; the epilogue is ignored
        eol = body.find(_CRLF, after)
        # RFC 2046 §5.1.1: the delimiter may be followed by transport padding (spaces), then CRLF.
        if eol < 0 or body[after:eol].strip(b" \t"):
            raise DecodeError("Malformed boundary line in multipart body")
        start = eol + 2
        end = body.find(delimiter, start)
        if end < 0:
            raise DecodeError("Missing closing boundary in multipart body")
        if len(parts) == max_parts:
            raise DecodeError(f"More than {max_parts} parts in multipart body")
        parts.append(_parse_part(body[start:end]))
        at = end + 2
    if not parts:
        raise DecodeError("Multipart body without parts")
    return parts


def _parse_part(content: bytes) -> BodyPart:
    if not content or content.startswith(_CRLF):
        return BodyPart((), content[2:])
    end = content.find(b"\r\n\r\n")
    if end < 0:
        raise DecodeError("Missing empty line after part headers in multipart body")
    head_octets = content[:end]
    try:
        head = head_octets.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("Part headers in multipart body are not valid UTF-8") from None
    crlf = head_octets.count(_CRLF)
    if (
        len(head_octets.translate(None, _CTL_OCTETS)) != end
        or head_octets.count(b"\r") != crlf
        or head_octets.count(b"\n") != crlf
    ):
        raise DecodeError("Control character or bare CR/LF in part headers of multipart body")
    if head[0] in " \t":
        raise DecodeError("Part headers of multipart body start with a continuation line")
    headers: list[tuple[str, str]] = []
    for line in _FOLD.sub(" ", head).split("\r\n"):
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            raise DecodeError(f"Malformed part header {line[:32]!r} in multipart body")
        headers.append((name, value.strip(" \t")))
    return BodyPart(tuple(headers), content[end + 4 :])


def build_multipart(parts: Sequence[BodyPart], boundary: str, *, subtype: str = "mixed") -> tuple[bytes, str]:
    """Encode ``parts`` as a multipart body; returns the body and the Content-Type value to send with it.

    Raises :class:`LocalProtocolError` for no parts, a malformed boundary or subtype, a header that cannot
    be written on one line, or a part whose octets hold the delimiter (pick another boundary).
    """
    if not parts:
        raise LocalProtocolError("A multipart body needs at least one part")
    if _BOUNDARY_RE.match(boundary) is None:
        raise LocalProtocolError(f"Malformed multipart boundary {boundary!r}")
    if not is_token(subtype):
        raise LocalProtocolError(f"Malformed multipart subtype {subtype!r}")
    dash = b"--" + boundary.encode("ascii")
    delimiter = _CRLF + dash
    out = bytearray()
    for part in parts:
        lines: list[str] = []
        for name, value in part.headers:
            if not is_token(name) or value != value.strip(" \t") or _VALUE_CTL.search(value):
                raise LocalProtocolError(f"Part header {name!r} cannot be written on one line")
            lines.append(f"{name}: {value}\r\n")
        encoded = "".join(lines).encode("utf-8") + _CRLF + part.body
        if delimiter in encoded:
            raise LocalProtocolError("A body part contains the multipart boundary")
        out += dash + _CRLF + encoded + _CRLF
    out += dash + b"--" + _CRLF
    shown = boundary if is_token(boundary) else quote(boundary)
    return bytes(out), f"multipart/{subtype};boundary={shown}"
