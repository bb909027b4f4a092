"""The TDM worker's control protocol: its messages and their codec (schema: ``control.cddl`` beside this).

Theory of operation. As with the media workers (:mod:`appliance.media.control`), each ``SOCK_SEQPACKET``
datagram between the control process and a span's TDM worker is one CBOR map (RFC 8949) with a text
``type``; commands and replies carry a ``request_id`` (uint32) that the reply repeats.

* commands, control → worker: :class:`Open` (arm a timeslot; the reply confirms its fixed port),
  :class:`Connect` (the remote RTP address), :class:`Close`, :class:`Stats`;
* replies: :class:`Ok` (``port`` for an open), :class:`Error` (``code``: :class:`~.bridge.ErrorCode`),
  :class:`StatsReply` (counters and pacing percentiles);
* events, worker → control: :class:`Ready` (the first datagram on the connection: the span, its timeslots
  and the ports another process held), :class:`LinkChanged` (the B link's far end came or went).

:func:`decode` is total: a message or :class:`ControlDecodeError`. It runs the media control protocol's
structural scan first (size at most :data:`MAX_MESSAGE_SIZE`, nesting at most 8, no tags, no
indefinite lengths, no duplicate keys), then checks every field's type and range and refuses unknown
keys. :func:`encode` writes keys in a fixed order and checks its own output decodes to the same message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from appliance.media.control import Fields, decode_with, encode_with
from appliance.media.control_events import MAX_MESSAGE_SIZE, ControlDecodeError, LocalProtocolError
from appliance.media.tdm.frames import CODECS
from hw.e1.links import B_TIMESLOTS

__all__ = [
    "MAX_MESSAGE_SIZE",
    "Close",
    "Connect",
    "ControlDecodeError",
    "Error",
    "LinkChanged",
    "LocalProtocolError",
    "Message",
    "Ok",
    "Open",
    "Pacing",
    "Ready",
    "Stats",
    "StatsReply",
    "decode",
    "encode",
]

MAX_REQUEST_ID: Final = 0xFFFFFFFF
MAX_COUNTERS: Final = 64
MAX_TEXT: Final = 256


@dataclass(frozen=True, slots=True)
class Open:
    timeslot: int
    codec: str
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Connect:
    timeslot: int
    host: str
    port: int
    payload_type: int
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Close:
    timeslot: int
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Stats:
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Ok:
    request_id: int
    port: int | None = None


@dataclass(frozen=True, slots=True)
class Error:
    request_id: int
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Pacing:
    """Pacing error of the span's ticks (ms) and the ticks run and skipped (:mod:`.pacer`)."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    ticks: int
    skipped: int


@dataclass(frozen=True, slots=True)
class StatsReply:
    request_id: int
    counters: tuple[tuple[str, int], ...]
    pacing: Pacing
    open: tuple[int, ...]
    link_up: bool


@dataclass(frozen=True, slots=True)
class Ready:
    span: int
    ports_min: int
    timeslots: tuple[int, ...]
    unusable: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class LinkChanged:
    up: bool


Command = Open | Connect | Close | Stats
Reply = Ok | Error | StatsReply
Event = Ready | LinkChanged
Message = Command | Reply | Event


def _timeslot(f: Fields, key: str = "timeslot") -> int:
    value = f.uint(key, limit=31)
    if value not in B_TIMESLOTS:
        raise ControlDecodeError(f"timeslot {value} cannot carry a B-channel", path=f"{f.path}.{key}")
    return value


def _rid(f: Fields) -> int:
    return f.uint("request_id", limit=MAX_REQUEST_ID)


def _uints(f: Fields, key: str, limit: int) -> tuple[int, ...]:
    values = f.array(key)
    if len(values) > len(B_TIMESLOTS):
        raise ControlDecodeError("too many entries", path=f"{f.path}.{key}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ControlDecodeError("expected uint", path=f"{f.path}.{key}")
    return tuple(values)


def _open(f: Fields) -> Message:
    codec = f.text("codec")
    if codec not in CODECS:
        raise ControlDecodeError(f"unknown codec {codec[:16]!r}", path=f"{f.path}.codec")
    return Open(_timeslot(f), codec, _rid(f))


def _connect(f: Fields) -> Message:
    host = f.text("host")
    if len(host) > MAX_TEXT:
        raise ControlDecodeError("too long", path=f"{f.path}.host")
    port = f.uint("port", limit=0xFFFF)
    return Connect(_timeslot(f), host, port, f.uint("payload_type", limit=127), _rid(f))


def _pacing(f: Fields) -> Pacing:
    return Pacing(
        f.number("p50_ms"), f.number("p99_ms"), f.number("max_ms"), f.uint("ticks"), f.uint("skipped")
    )


def _stats_reply(f: Fields) -> Message:
    raw = f.fields("counters")
    if len(raw.raw) > MAX_COUNTERS:
        raise ControlDecodeError("too many counters", path=raw.path)
    if any(not key or len(key) > MAX_TEXT for key in raw.raw):
        raise ControlDecodeError("bad counter name", path=raw.path)
    counters = tuple((key, raw.uint(key)) for key in sorted(raw.raw))
    pacing_fields = f.fields("pacing")
    pacing = _pacing(pacing_fields)
    pacing_fields.done()
    return StatsReply(_rid(f), counters, pacing, _uints(f, "open", 31), f.boolean("link_up"))


def _ready(f: Fields) -> Message:
    slots = _uints(f, "timeslots", 31)
    if any(slot not in B_TIMESLOTS for slot in slots) or len(set(slots)) != len(slots):
        raise ControlDecodeError("bad timeslot list", path=f"{f.path}.timeslots")
    return Ready(
        f.uint("span", limit=0xFFFF), f.uint("ports_min", limit=0xFFFF), slots, _uints(f, "unusable", 0xFFFF)
    )


def _error(f: Fields) -> Message:
    reason = f.text("reason", nonempty=False)
    if len(reason) > MAX_TEXT:
        raise ControlDecodeError("too long", path=f"{f.path}.reason")
    return Error(_rid(f), f.uint("code", limit=0xFFFF), reason)


def _ok(f: Fields) -> Message:
    return Ok(_rid(f), f.uint("port", limit=0xFFFF) if f.has("port") else None)


_DECODERS: Final[dict[str, Callable[[Fields], Message]]] = {
    "open": _open,
    "connect": _connect,
    "close": lambda f: Close(_timeslot(f), _rid(f)),
    "stats": lambda f: Stats(_rid(f)),
    "ok": _ok,
    "error": _error,
    "stats_reply": _stats_reply,
    "ready": _ready,
    "link": lambda f: LinkChanged(f.boolean("up")),
}


def decode(data: bytes) -> Message:
    """Decode one control datagram. Total: returns a message or raises :class:`ControlDecodeError`."""
    return decode_with(data, _DECODERS)


def request_id_of(data: bytes) -> int:
    """The ``request_id`` of a datagram that did not decode, if it can be read (0 if not), so the worker's
    error reply can still be matched."""
    try:
        raw = cbor2.loads(data) if len(data) <= MAX_MESSAGE_SIZE else None
    except Exception:  # any failure of a library on garbage just means no id
        return 0
    rid = raw.get("request_id") if isinstance(raw, dict) else None
    return rid if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid <= MAX_REQUEST_ID else 0


def _to_map(msg: Message) -> dict[str, Any]:
    match msg:
        case Open():
            return {
                "type": "open",
                "request_id": msg.request_id,
                "timeslot": msg.timeslot,
                "codec": msg.codec,
            }
        case Connect():
            return {
                "type": "connect",
                "request_id": msg.request_id,
                "timeslot": msg.timeslot,
                "host": msg.host,
                "port": msg.port,
                "payload_type": msg.payload_type,
            }
        case Close():
            return {"type": "close", "request_id": msg.request_id, "timeslot": msg.timeslot}
        case Stats():
            return {"type": "stats", "request_id": msg.request_id}
        case Ok():
            out: dict[str, Any] = {"type": "ok", "request_id": msg.request_id}
            if msg.port is not None:
                out["port"] = msg.port
            return out
        case Error():
            return {"type": "error", "request_id": msg.request_id, "code": msg.code, "reason": msg.reason}
        case StatsReply():
            p = msg.pacing
            return {
                "type": "stats_reply",
                "request_id": msg.request_id,
                "counters": dict(msg.counters),
                "pacing": {
                    "p50_ms": p.p50_ms,
                    "p99_ms": p.p99_ms,
                    "max_ms": p.max_ms,
                    "ticks": p.ticks,
                    "skipped": p.skipped,
                },
                "open": list(msg.open),
                "link_up": msg.link_up,
            }
        case Ready():
            return {
                "type": "ready",
                "span": msg.span,
                "ports_min": msg.ports_min,
                "timeslots": list(msg.timeslots),
                "unusable": list(msg.unusable),
            }
        case LinkChanged():
            return {"type": "link", "up": msg.up}
    raise LocalProtocolError(f"not a TDM control message: {msg!r}")  # pragma: no cover


def encode(msg: Message) -> bytes:
    """One message as one datagram; an invalid message raises :class:`LocalProtocolError` instead of
    reaching the peer (the output must decode back to ``msg``)."""
    return encode_with(msg, _to_map, decode)
