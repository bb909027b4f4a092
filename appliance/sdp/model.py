"""The session description model (RFC 8866 §5) and its serializer.

Theory of operation. A :class:`SessionDescription` is an immutable tree of frozen dataclasses that mirrors
the text field for field: session-level fields, one or more time descriptions, then media descriptions. Every
attribute (``a=``) is kept as a generic :class:`Attribute` in its original order, so a description passes
through the appliance without losing what it does not interpret (ICE candidates, SDES keys, vendor
attributes). The attributes the appliance does interpret (rtpmap, fmtp, ptime, maxptime, direction, rtcp,
rtcp-mux, crypto, fingerprint, setup) are read through typed views that parse the value on demand; the
parser (:mod:`appliance.sdp.codec`) runs the same views once, so on a parsed description they never raise.

Structured fields are stored as values (ints, tuples); text fields are stored as they arrived. Serializing
writes single spaces between sub-fields and CRLF after every line (RFC 8866 §5), so a description in that
canonical form round-trips to identical bytes. Changing a description means building a new one with
:func:`dataclasses.replace`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from appliance.sdp.errors import LocalProtocolError, SdpDecodeError

# RFC 8866 §9: token-char = %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")
_DECIMAL_RE: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?\Z")
_FINGERPRINT_RE: Final = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*\Z")
# A line may not carry NUL, CR or LF inside it (RFC 8866 §9 byte-string).
_FORBIDDEN_RE: Final = re.compile(r"[\x00\r\n]")

SETUP_ROLES: Final = frozenset({"active", "passive", "actpass", "holdconn"})


def is_token(text: str) -> bool:
    return TOKEN_RE.match(text) is not None


def is_uint(text: str, max_digits: int = 20) -> bool:
    """A non-empty string of at most ``max_digits`` ASCII digits.

    ``str.isdigit`` alone also accepts other scripts' digits, and an unbounded digit string would make
    ``int()`` slow or raise, so every number read from the wire passes through here first.
    """
    return 0 < len(text) <= max_digits and text.isascii() and text.isdigit()


class Direction(StrEnum):
    """Media direction attributes (RFC 8866 §6.7, RFC 3264 §5.1), from the point of view of the writer."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    def mirrored(self) -> Direction:
        """The direction an answerer writes for this offered direction (RFC 3264 §6.1)."""
        return _MIRROR[self]

    @classmethod
    def of(cls, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE


_MIRROR: Final = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}
DIRECTION_NAMES: Final = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=`` (RFC 8866 §5.2): the description's originator and the identity and version of the session."""

    username: str
    session_id: int
    session_version: int
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=`` (RFC 8866 §5.7). ``address`` keeps a multicast ``/ttl/count`` suffix; :attr:`host` drops it."""

    nettype: str
    addrtype: str
    address: str

    @property
    def host(self) -> str:
        return self.address.partition("/")[0]

    @property
    def is_unspecified(self) -> bool:
        """``0.0.0.0`` (or ``::``): send nothing to this peer (RFC 3264 §8.4)."""
        return self.host in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (RFC 8866 §5.8), e.g. ``AS`` in kbit/s or ``TIAS`` in bit/s."""

    bwtype: str
    bandwidth: int

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, slots=True)
class Timing:
    """One time description (RFC 8866 §5.9 to §5.11): ``t=``, its ``r=`` lines and an optional ``z=`` line.

    Repeat and zone values are kept as text: the appliance only places calls "now" (``t=0 0``).
    """

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>`` (a property attribute) or ``a=<name>:<value>`` (RFC 8866 §5.13)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`` (RFC 8866 §6.6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        text = f"{self.payload_type} {self.encoding}/{self.clock_rate}"
        return text if self.channels is None else f"{text}/{self.channels}"


@dataclass(frozen=True, slots=True)
class Fmtp:
    """``a=fmtp:<format> <parameters>`` (RFC 8866 §6.15); the parameters are format specific text."""

    format: str
    parameters: str


@dataclass(frozen=True, slots=True)
class Rtcp:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605)."""

    port: int
    connection: Connection | None = None


@dataclass(frozen=True, slots=True)
class Crypto:
    """``a=crypto:<tag> <suite> <key-params> [<session-params>]`` (SDES, RFC 4568 §9.1)."""

    tag: int
    suite: str
    key_params: str
    session_params: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """``a=fingerprint:<hash-func> <hex pairs>`` (RFC 8122 §5), the peer's DTLS certificate hash."""

    hash_function: str
    value: str


def parse_rtpmap(value: str) -> RtpMap:
    """Parse an rtpmap value; raise :class:`SdpDecodeError` (400) if malformed."""
    pt, _, rest = value.partition(" ")
    parts = rest.strip(" ").split("/")
    if not is_uint(pt) or int(pt) > 127 or len(parts) not in (2, 3):
        raise SdpDecodeError("a=rtpmap: bad value")
    encoding, rate = parts[0], parts[1]
    if not encoding or not is_token(encoding) or not is_uint(rate) or int(rate) == 0:
        raise SdpDecodeError("a=rtpmap: bad value")
    channels: int | None = None
    if len(parts) == 3:
        if not is_uint(parts[2]) or int(parts[2]) == 0:
            raise SdpDecodeError("a=rtpmap: bad channel count")
        channels = int(parts[2])
    return RtpMap(int(pt), encoding, int(rate), channels)


def parse_fmtp(value: str) -> Fmtp:
    fmt, _, params = value.partition(" ")
    if not fmt or not is_token(fmt):
        raise SdpDecodeError("a=fmtp: bad format")
    return Fmtp(fmt, params)


def parse_packet_time(name: str, value: str) -> float:
    """``ptime``/``maxptime`` in milliseconds (RFC 8866 §6.4, §6.5): a positive decimal number."""
    if _DECIMAL_RE.match(value) is None or float(value) <= 0 or float(value) > 60_000:
        raise SdpDecodeError(f"a={name}: bad value")
    return float(value)


def parse_rtcp(value: str) -> Rtcp:
    parts = value.split()
    if len(parts) not in (1, 4) or not is_uint(parts[0]) or int(parts[0]) > 65535:
        raise SdpDecodeError("a=rtcp: bad value")
    connection = None
    if len(parts) == 4:
        if not is_token(parts[1]) or not is_token(parts[2]):
            raise SdpDecodeError("a=rtcp: bad value")
        connection = Connection(parts[1], parts[2], parts[3])
    return Rtcp(int(parts[0]), connection)


def parse_crypto(value: str) -> Crypto:
    parts = value.split()
    if len(parts) < 3 or not is_uint(parts[0]) or len(parts[0]) > 9 or not is_token(parts[1]):
        raise SdpDecodeError("a=crypto: bad value")
    return Crypto(int(parts[0]), parts[1], parts[2], tuple(parts[3:]))


def parse_fingerprint(value: str) -> Fingerprint:
    parts = value.split()
    if len(parts) != 2 or not is_token(parts[0]) or _FINGERPRINT_RE.match(parts[1]) is None:
        raise SdpDecodeError("a=fingerprint: bad value")
    return Fingerprint(parts[0], parts[1])


def parse_setup(value: str) -> str:
    if value not in SETUP_ROLES:
        raise SdpDecodeError("a=setup: bad value")
    return value


def validate_attribute(attribute: Attribute) -> None:
    """Check the value of an attribute the appliance interprets; others pass untouched."""
    name, value = attribute.name, attribute.value
    checker = _VALUE_CHECKS.get(name)
    if checker is not None:
        if value is None:
            raise SdpDecodeError(f"a={name}: missing value")
        checker(value)


_VALUE_CHECKS: Final[dict[str, Callable[[str], object]]] = {
    "rtpmap": parse_rtpmap,
    "fmtp": parse_fmtp,
    "ptime": lambda v: parse_packet_time("ptime", v),
    "maxptime": lambda v: parse_packet_time("maxptime", v),
    "rtcp": parse_rtcp,
    "crypto": parse_crypto,
    "fingerprint": parse_fingerprint,
    "setup": parse_setup,
}


class _Attributes:
    """Typed views shared by the session and media levels; ``attributes`` is the ordered tuple."""

    __slots__ = ()
    attributes: tuple[Attribute, ...]

    def attribute(self, name: str) -> str | None:
        """The value of the first attribute called ``name`` (``None`` if absent or a property attribute)."""
        for a in self.attributes:
            if a.name == name:
                return a.value
        return None

    def attribute_values(self, name: str) -> list[str]:
        return [a.value for a in self.attributes if a.name == name and a.value is not None]

    def has_attribute(self, name: str) -> bool:
        return any(a.name == name for a in self.attributes)

    @property
    def direction(self) -> Direction | None:
        """The direction attribute written at this level, or ``None`` (the last one wins if repeated)."""
        found = None
        for a in self.attributes:
            if a.name in DIRECTION_NAMES:
                found = Direction(a.name)
        return found

    @property
    def fingerprints(self) -> tuple[Fingerprint, ...]:
        return tuple(parse_fingerprint(v) for v in self.attribute_values("fingerprint"))

    @property
    def setup(self) -> str | None:
        value = self.attribute("setup")
        return None if value is None else parse_setup(value)


def _check(line: str) -> str:
    if _FORBIDDEN_RE.search(line):
        raise LocalProtocolError(f"SDP field would break the line: {line[:40]!r}")
    return line


@dataclass(frozen=True, slots=True)
class MediaDescription(_Attributes):
    """One ``m=`` section (RFC 8866 §5.14) and its ``i=``, ``c=``, ``b=``, ``k=`` and ``a=`` lines.

    ``port_count`` is the ``/<number of ports>`` suffix when written. ``formats`` are text: RTP payload
    type numbers for RTP protocols, format names for others (``t38``, ``webrtc-datachannel``).
    """

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    title: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.proto.upper()

    @property
    def connection(self) -> Connection | None:
        """The first media-level ``c=`` line (several only occur for layered multicast)."""
        return self.connections[0] if self.connections else None

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats as payload type numbers (the parser checks them for RTP protocols)."""
        return tuple(int(f) for f in self.formats if is_uint(f))

    def rtpmaps(self) -> dict[int, RtpMap]:
        """``a=rtpmap`` lines by payload type (the first one wins if a payload type is mapped twice)."""
        maps: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            rtpmap = parse_rtpmap(value)
            maps.setdefault(rtpmap.payload_type, rtpmap)
        return maps

    def fmtp(self, fmt: str | int) -> str | None:
        """The format parameters written for ``fmt``, or ``None``."""
        wanted = str(fmt)
        for value in self.attribute_values("fmtp"):
            parsed = parse_fmtp(value)
            if parsed.format == wanted:
                return parsed.parameters
        return None

    @property
    def ptime(self) -> float | None:
        value = self.attribute("ptime")
        return None if value is None else parse_packet_time("ptime", value)

    @property
    def maxptime(self) -> float | None:
        value = self.attribute("maxptime")
        return None if value is None else parse_packet_time("maxptime", value)

    @property
    def rtcp(self) -> Rtcp | None:
        value = self.attribute("rtcp")
        return None if value is None else parse_rtcp(value)

    @property
    def rtcp_mux(self) -> bool:
        return self.has_attribute("rtcp-mux")

    @property
    def crypto(self) -> tuple[Crypto, ...]:
        return tuple(parse_crypto(v) for v in self.attribute_values("crypto"))

    def lines(self) -> list[str]:
        port = f"{self.port}" if self.port_count is None else f"{self.port}/{self.port_count}"
        out = [_check(f"m={self.media} {port} {self.proto} {' '.join(self.formats)}")]
        if self.title is not None:
            out.append(_check(f"i={self.title}"))
        out.extend(_check(f"c={c}") for c in self.connections)
        out.extend(_check(f"b={b}") for b in self.bandwidths)
        if self.key is not None:
            out.append(_check(f"k={self.key}"))
        out.extend(_check(f"a={a}") for a in self.attributes)
        return out


@dataclass(frozen=True, slots=True)
class SessionDescription(_Attributes):
    """A whole session description (RFC 8866 §5); field names follow the RFC's, in the order written."""

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    timing: tuple[Timing, ...] = field(default=(Timing(),))
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """Where a stream's media goes: its own ``c=`` line, else the session-level one (RFC 8866 §5.7)."""
        return media.connection or self.connection

    def direction_for(self, media: MediaDescription) -> Direction:
        """The stream's direction: media level, else session level, else sendrecv (RFC 3264 §5.1)."""
        return media.direction or self.direction or Direction.SENDRECV

    def lines(self) -> list[str]:
        out = [f"v={self.version}", _check(f"o={self.origin}"), _check(f"s={self.session_name}")]
        if self.information is not None:
            out.append(_check(f"i={self.information}"))
        if self.uri is not None:
            out.append(_check(f"u={self.uri}"))
        out.extend(_check(f"e={e}") for e in self.emails)
        out.extend(_check(f"p={p}") for p in self.phones)
        if self.connection is not None:
            out.append(_check(f"c={self.connection}"))
        out.extend(_check(f"b={b}") for b in self.bandwidths)
        if not self.timing:
            raise LocalProtocolError("SDP needs at least one time description")
        for t in self.timing:
            out.append(f"t={t.start} {t.stop}")
            out.extend(_check(f"r={r}") for r in t.repeats)
            if t.zone is not None:
                out.append(_check(f"z={t.zone}"))
        if self.key is not None:
            out.append(_check(f"k={self.key}"))
        out.extend(_check(f"a={a}") for a in self.attributes)
        for m in self.media:
            out.extend(m.lines())
        return out

    def to_bytes(self) -> bytes:
        """The description as UTF-8 text with CRLF after every line (RFC 8866 §5).

        Raises :class:`LocalProtocolError` if a field holds NUL, CR or LF, which would let a value smuggle
        extra lines into the description.
        """
        return ("\r\n".join(self.lines()) + "\r\n").encode("utf-8")
