"""SIP messages (RFC 3261 §7): the header model, the parser and the serializer.

Theory of operation. A message is a start line, an ordered list of header fields and a body. Each parsed
field keeps the exact text it arrived as (name spelling, compact form, spacing, folding), so an unmodified
message serializes back to identical bytes; a field added by the appliance is written in canonical form.
Values are stored unfolded (RFC 3261 §7.3.1: folding is equivalent to a single SP) and parsed into typed
views (:mod:`appliance.sip.headers`) only when asked for, which keeps the hot path to one split per line.

``parse_message`` is total: it returns a :class:`Request` or :class:`Response` or raises
:class:`DecodeError` carrying the status to answer with (400, 416, 505, 513) and the partially parsed
message so that the endpoint can still address that answer.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Final

from appliance.sip.errors import DecodeError, MessageTooLarge
from appliance.sip.grammar import is_token
from appliance.sip.headers import (
    BRANCH_COOKIE,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_list,
)
from appliance.sip.uri import SipUri, Uri, parse_uri, uri_scheme

SIP_VERSION: Final = "SIP/2.0"
DEFAULT_MAX_SIZE: Final = 65535
SUPPORTED_SCHEMES: Final = frozenset({"sip", "sips", "tel"})

# RFC 3261 §7.3.3 and the compact forms registered since (RFC 3265, 3515, 3892, 3841, 4028, 4474).
COMPACT_FORMS: Final = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length", "c": "content-type",
    "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via", "o": "event", "r": "refer-to",
    "b": "referred-by", "u": "allow-events", "x": "session-expires", "a": "accept-contact",
    "j": "reject-contact", "d": "request-disposition", "y": "identity", "n": "identity-info",
}  # fmt: skip

# How a header is written when the appliance adds it.
CANONICAL_NAMES: Final = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate", "rack": "RAck",
    "rseq": "RSeq", "min-se": "Min-SE", "mime-version": "MIME-Version", "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match", "p-asserted-identity": "P-Asserted-Identity",
}  # fmt: skip

# Headers whose grammar is a comma-separated list, so several values may share one line (RFC 3261 §7.3.1).
LIST_HEADERS: Final = frozenset({
    "via", "contact", "route", "record-route", "allow", "supported", "require", "proxy-require",
    "unsupported", "accept", "accept-encoding", "accept-language", "content-encoding", "content-language",
    "allow-events", "path", "service-route", "in-reply-to", "p-asserted-identity",
})  # fmt: skip

# Headers that must appear at most once.
SINGLE_HEADERS: Final = frozenset({
    "call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type", "expires",
    "session-expires", "min-se", "min-expires", "rseq", "rack",
})  # fmt: skip

# The header fields every message carries (RFC 3261 §8.1.1), in the order their absence is reported.
_MANDATORY: Final = ("via", "from", "to", "call-id", "cseq")

_CANONICAL_CACHE: dict[str, str] = {}
# Control octets other than HTAB, CR and LF are not allowed in a header block; CR and LF only as CRLF.
_CTL_OCTETS: Final = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_FOLD: Final = re.compile(r"[ \t]*\r\n[ \t]+")
_METHOD_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
# RFC 3261 §25.1: callid = word [ "@" word ]
_WORD: Final = r"""[A-Za-z0-9\-.!%*_+`'~()<>:\\"/\[\]?{}]+"""
_CALL_ID_RE: Final = re.compile(f"{_WORD}(?:@{_WORD})?\\Z")


def header_key(name: str) -> str:
    """The lookup key of a header name: lower-case full form (``v`` → ``via``)."""
    key = name.lower()
    return COMPACT_FORMS.get(key, key)


def canonical_name(key: str) -> str:
    name = _CANONICAL_CACHE.get(key)
    if name is None:
        name = CANONICAL_NAMES.get(key) or "-".join(p.capitalize() for p in key.split("-"))
        if len(_CANONICAL_CACHE) < 512:  # bounded: keys come from the wire
            _CANONICAL_CACHE[key] = name
    return name


def _known_names() -> dict[str, str]:
    """Header-name spellings seen on nearly every message, mapped to their keys (parser fast path)."""
    keys = {
        *LIST_HEADERS, *SINGLE_HEADERS, "user-agent", "server", "subject", "organization", "date",
        "authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate", "event",
        "subscription-state", "refer-to", "referred-by", "replaces", "privacy", "reason", "warning",
        "retry-after", "content-disposition", "mime-version", "timestamp", "priority", "alert-info",
        "call-info", "diversion", "history-info", "p-preferred-identity", "remote-party-id",
    }  # fmt: skip
    names: dict[str, str] = {}
    for key in keys:
        spelled = CANONICAL_NAMES.get(key) or "-".join(p.capitalize() for p in key.split("-"))
        for name in (key, spelled, key.upper()):
            names[name] = key
    for short, key in COMPACT_FORMS.items():
        names[short] = names[short.upper()] = key
    return names


# Read-only after import.
_KNOWN_NAMES: Final = _known_names()


Field = tuple[str, str, str | None]


class Headers:
    """Ordered, multi-valued header fields.

    Each field is ``(key, value, raw)``: the lookup key (see :func:`header_key`), the unfolded value, and
    the exact line(s) it arrived as (``None`` once modified or when added locally). Fields are tuples of
    strings, which the cycle collector stops tracking: a message costs it one object, not one per header.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: list[Field] | None = None) -> None:
        self._fields: list[Field] = fields if fields is not None else []

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, str]]) -> Headers:
        return cls([(header_key(n), v, None) for n, v in pairs])

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for key, value, _ in self._fields:
            yield canonical_name(key), value

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: str) -> bool:
        key = header_key(name)
        return any(f[0] == key for f in self._fields)

    def get(self, name: str) -> str | None:
        """The first field's value (for a list header, the whole first line)."""
        key = header_key(name)
        for f in self._fields:
            if f[0] == key:
                return f[1]
        return None

    def get_lines(self, name: str) -> list[str]:
        key = header_key(name)
        return [f[1] for f in self._fields if f[0] == key]

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, list headers split at their commas."""
        key = header_key(name)
        values = [f[1] for f in self._fields if f[0] == key]
        if key in LIST_HEADERS:
            return [item for v in values for item in split_list(v)]
        return values

    def add(self, name: str, value: str) -> None:
        self._fields.append((header_key(name), value, None))

    def prepend(self, name: str, value: str) -> None:
        self._fields.insert(0, (header_key(name), value, None))

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name with one field, kept at the first one's position."""
        key = header_key(name)
        for i, f in enumerate(self._fields):
            if f[0] == key:
                self._fields[i] = (key, value, None)
                self._fields[i + 1 :] = [g for g in self._fields[i + 1 :] if g[0] != key]
                return
        self._fields.append((key, value, None))

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first field of this name only (e.g. a Via line that gained parameters)."""
        key = header_key(name)
        for i, f in enumerate(self._fields):
            if f[0] == key:
                self._fields[i] = (key, value, None)
                return
        self._fields.append((key, value, None))

    def remove(self, name: str) -> None:
        key = header_key(name)
        self._fields = [f for f in self._fields if f[0] != key]

    def pop_first_value(self, name: str) -> str | None:
        """Remove the first value of a list header (the top Via, the top Route) and return it."""
        key = header_key(name)
        for i, f in enumerate(self._fields):
            if f[0] == key:
                items = split_list(f[1])
                if len(items) <= 1:
                    del self._fields[i]
                else:
                    self._fields[i] = (key, ", ".join(items[1:]), None)
                return items[0] if items else None
        return None

    def copy(self) -> Headers:
        return Headers(list(self._fields))

    def write(self, out: list[str]) -> None:
        for key, value, raw in self._fields:
            if raw is not None:
                out.append(raw)
            else:
                out.append(f"{canonical_name(key)}: {value}")


class Message:
    """Common part of requests and responses; see :class:`Request` and :class:`Response`."""

    __slots__ = ("_cseq", "_from", "_to", "_via", "body", "headers")

    def __init__(self, headers: Headers, body: bytes) -> None:
        self.headers = headers
        self.body = body
        self._via: Via | None = None
        self._cseq: tuple[int, str] | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None

    # Lazily parsed views of the headers every layer needs. They raise DecodeError on a bad value.
    @property
    def top_via(self) -> Via:
        if self._via is None:
            first = self.headers.get("via")
            if first is None:
                raise DecodeError("Missing Via header")
            top = split_list(first)
            if not top:
                raise DecodeError("Empty Via header")
            self._via = parse_via(top[0])
        return self._via

    def invalidate(self) -> None:
        """Forget the cached views: call it after changing Via, From, To or CSeq in :attr:`headers`."""
        self._via = None
        self._cseq = None
        self._from = None
        self._to = None

    @property
    def call_id(self) -> str:
        value = self.headers.get("call-id")
        if not value:
            raise DecodeError("Missing Call-ID header")
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        if self._cseq is None:
            value = self.headers.get("cseq")
            if value is None:
                raise DecodeError("Missing CSeq header")
            self._cseq = parse_cseq(value)
        return self._cseq

    @property
    def from_(self) -> NameAddr:
        if self._from is None:
            value = self.headers.get("from")
            if value is None:
                raise DecodeError("Missing From header")
            self._from = parse_name_addr(value, what="From")
        return self._from

    @property
    def to(self) -> NameAddr:
        if self._to is None:
            value = self.headers.get("to")
            if value is None:
                raise DecodeError("Missing To header")
            self._to = parse_name_addr(value, what="To")
        return self._to

    def set_body(self, body: bytes, content_type: str | None) -> None:
        self.body = body
        if content_type is not None:
            self.headers.set("content-type", content_type)
        elif not body:
            self.headers.remove("content-type")
        self.headers.set("content-length", str(len(body)))

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        out = [self.start_line()]
        self.headers.write(out)
        out.append("")
        out.append("")
        head = "\r\n".join(out).encode("utf-8")
        return head + self.body if self.body else head


class Request(Message):
    __slots__ = ("_parsed_uri", "method", "uri", "version")

    def __init__(
        self, method: str, uri: str, headers: Headers, body: bytes = b"", version: str = SIP_VERSION
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri
        self.version = version
        self._parsed_uri: tuple[str, Uri] | None = None

    @property
    def request_uri(self) -> Uri:
        """The Request-URI parsed (:func:`appliance.sip.uri.parse_uri`); raises :class:`DecodeError`.

        The parse is kept while ``uri`` holds the same text, so routing does not parse it a second time.
        """
        parsed = self._parsed_uri
        if parsed is None or parsed[0] is not self.uri:
            parsed = self._parsed_uri = (self.uri, parse_uri(self.uri))
        return parsed[1]

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("reason", "status", "version")

    def __init__(
        self, status: int, reason: str, headers: Headers, body: bytes = b"", version: str = SIP_VERSION
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason
        self.version = version

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def parse_message(
    data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, stream: bool = False
) -> Request | Response:
    """Parse one whole message (one datagram, or one frame cut by :mod:`appliance.sip.stream`).

    ``stream`` says the message came over a reliable stream, where Content-Length is mandatory
    (RFC 3261 §18.3, §20.14). Raises :class:`DecodeError` (or :class:`MessageTooLarge`, status 513) and
    nothing else; ``exc.partial`` is set whenever the start line and the header fields could be read, so
    that the endpoint can address its error response (400, 416, 505, 513).
    """
    if len(data) > max_size:
        too_large = MessageTooLarge(len(data), max_size)
        too_large.partial = _readable_part(data)
        raise too_large
    message, end = _parse_head(data)
    _validate(message, data[end + 4 :], stream)
    return message


def _parse_head(data: bytes) -> tuple[Request | Response, int]:
    """The start line and header fields, unvalidated, and the offset of the CRLFCRLF that ends them."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise DecodeError("Missing empty line after the headers")
    head_octets = data[:end]
    try:
        head = head_octets.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("Header block is not valid UTF-8") from None
    # Two C-level passes instead of a regular expression: this check runs on every message.
    crlf = head_octets.count(b"\r\n")
    if (
        len(head_octets.translate(None, _CTL_OCTETS)) != end
        or head_octets.count(b"\r") != crlf
        or head_octets.count(b"\n") != crlf
    ):
        raise DecodeError("Control character or bare CR/LF in the header block")
    lines = head.split("\r\n")
    start = lines[0]
    message = _parse_status_line(start) if start[:4].upper() == "SIP/" else _parse_request_line(start)
    if message.version == SIP_VERSION or message.version.upper() == SIP_VERSION:
        message.headers = _parse_header_lines(lines, message)
        return message, end
    # A request of another SIP version: read what header fields there are, so that the 505 response can
    # still be addressed (RFC 3261 §8.2.6.2), then refuse it.
    with contextlib.suppress(DecodeError):  # the fields before a fault are kept in message.headers
        message.headers = _parse_header_lines(lines, message)
    raise DecodeError(f"Version Not Supported ({message.version!r})", status=505, partial=message)


def _readable_part(data: bytes) -> Request | Response | None:
    """Whatever of an oversized message can be read, to address the 513 response; ``None`` if nothing."""
    try:
        return _parse_head(data)[0]
    except DecodeError as exc:
        partial = exc.partial
        return partial if isinstance(partial, Request | Response) else None


def _parse_status_line(line: str) -> Response:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != SIP_VERSION:
        # A response is never answered, so there is nothing to address: fail before the header fields.
        raise DecodeError(f"Version Not Supported ({version[:16]!r})", status=505)
    if len(code) != 3 or not code.isascii() or not code.isdigit() or code[0] not in "123456":
        raise DecodeError("Malformed status line")
    return Response(int(code), reason, Headers(), b"", version)


def _parse_request_line(line: str) -> Request:
    """The Request-Line (RFC 3261 §7.1); an unsupported ``SIP/x.y`` version is kept for a 505 answer."""
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise DecodeError("Malformed request line")
    method, uri, version = parts
    if _METHOD_RE.match(method) is None:
        raise DecodeError("Malformed method in request line")
    if version.upper() != SIP_VERSION and (version[:4].upper() != "SIP/" or len(version) > 16):
        raise DecodeError("Malformed SIP version in request line")
    return Request(method, uri, Headers(), b"", version)


def _parse_header_lines(lines: list[str], message: Message) -> Headers:
    fields: list[Field] = []
    known = _KNOWN_NAMES
    i = 1
    n = len(lines)
    while i < n:
        raw = lines[i]
        i += 1
        if i < n and lines[i][:1] in (" ", "\t"):
            # Folded value (RFC 3261 §7.3.1): gather continuation lines, keep the raw text for round trips.
            # Lines are never empty here: the header block ends at the first empty line.
            j = i
            while j < n and lines[j][:1] in (" ", "\t"):
                j += 1
            raw = "\r\n".join(lines[i - 1 : j])
            i = j
            value_src = _FOLD.sub(" ", raw)
        else:
            value_src = raw
        name, colon, value = value_src.partition(":")
        if not colon:
            message.headers = Headers(fields)
            raise DecodeError(f"Malformed header line {raw[:32]!r}", partial=message)
        # Common spellings skip the token check and the case folding (hot path).
        key = known.get(name)
        if key is None:
            name = name.rstrip(" \t")
            if not name or not is_token(name):
                message.headers = Headers(fields)
                raise DecodeError(f"Malformed header name {name[:32]!r}", partial=message)
            key = name.lower()
            key = COMPACT_FORMS.get(key, key)
        fields.append((key, value.strip(" \t"), raw))
    return Headers(fields)


def _digits(text: str, limit: int) -> int | None:
    """The value of an ASCII decimal numeral, or ``None``; numerals above ``limit`` give ``limit + 1``.

    Guards ``int()``, which accepts non-ASCII digits and refuses numerals beyond 4300 digits.
    """
    if not text or not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0")
    if len(significant) > len(str(limit)):
        return limit + 1
    return min(int(text), limit + 1)


def _validate(message: Request | Response, body: bytes, stream: bool) -> None:
    """Mandatory headers (RFC 3261 §8.1.1), their syntax, singletons, Content-Length and body framing."""
    first: dict[str, str] = {}
    repeated: set[str] = set()
    for f in message.headers._fields:
        key = f[0]
        if key in first:
            repeated.add(key)
        else:
            first[key] = f[1]
    if repeated:
        for key in first:
            if key in repeated and key in SINGLE_HEADERS:
                raise DecodeError(f"Duplicate {canonical_name(key)} header", partial=message)
    for key in _MANDATORY:
        if key not in first:
            raise DecodeError(f"Missing {canonical_name(key)} header", partial=message)
    try:
        top = split_list(first["via"])
        if not top:
            raise DecodeError("Empty Via header")
        via = message._via = parse_via(top[0])
        cseq = message._cseq = parse_cseq(first["cseq"])
        method = cseq[1]
        message._from = parse_name_addr(first["from"], what="From")
        message._to = parse_name_addr(first["to"], what="To")
    except DecodeError as exc:
        exc.partial = message
        raise
    if _CALL_ID_RE.match(first["call-id"]) is None:
        raise DecodeError("Malformed Call-ID header", partial=message)
    if isinstance(message, Request):
        if method != message.method:
            raise DecodeError("CSeq method does not match the request method", partial=message)
        branch = via.branch
        if branch is None:
            # RFC 2543 peers without a branch are not supported: transactions are matched on it (§17.2.3).
            raise DecodeError("Missing branch parameter in Via header", partial=message)
        if branch == BRANCH_COOKIE:
            # The magic cookie alone names no transaction (RFC 4475 §3.1.3.1).
            raise DecodeError("Missing transaction identifier in Via branch", partial=message)
        max_forwards_text = first.get("max-forwards")
        max_forwards = None if max_forwards_text is None else _digits(max_forwards_text, 255)
        if max_forwards_text is not None and (max_forwards is None or max_forwards > 255):
            raise DecodeError("Malformed Max-Forwards header", partial=message)
        scheme = uri_scheme(message.uri)
        if scheme is None:
            raise DecodeError("Malformed Request-URI", partial=message)
        if scheme not in SUPPORTED_SCHEMES:
            raise DecodeError(f"Unsupported URI Scheme {scheme!r}", status=416, partial=message)
        try:
            uri = message.request_uri
        except DecodeError as exc:
            exc.partial = message
            raise
        if isinstance(uri, SipUri) and uri.headers:
            # RFC 3261 §19.1.1 Table 1: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
            raise DecodeError("Headers are not allowed in the Request-URI", partial=message)
    length_text = first.get("content-length")
    if length_text is None:
        if stream:
            raise DecodeError("Missing Content-Length header on a stream transport", partial=message)
        message.body = body
        return
    length = _digits(length_text, len(body))
    if length is None:
        raise DecodeError("Malformed Content-Length header", partial=message)
    if length > len(body):
        raise DecodeError("Content-Length exceeds the body", partial=message)
    # RFC 3261 §18.3: octets past Content-Length in a datagram are discarded.
    message.body = body[:length] if length < len(body) else body
