"""The media control protocol codec and the control side's sans-I/O channel.

Theory of operation. Each ``SOCK_SEQPACKET`` datagram between the control process and a media worker is
exactly one CBOR map (RFC 8949) with a text ``type`` key; commands and replies also carry ``request_id``
(uint32). The schema is ``control.cddl`` next to this module; the messages are in
:mod:`appliance.media.control_events`.

:func:`decode` is total: it returns a message or raises :class:`ControlDecodeError`, never anything else.
Before ``cbor2`` sees the bytes, a structural scan enforces the edge limits — at most
:data:`MAX_MESSAGE_SIZE` octets, one well-formed item with nothing after it, nesting at most
:data:`MAX_DEPTH`, no tags, no indefinite lengths, no simple values but false/true/null — so that the
library never builds an object the schema cannot contain. :func:`encode` writes keys in a fixed order and
omits absent optional keys, so a message encodes to one byte string and decoding it gives it back.

:class:`ControlChannel` numbers commands, matches replies to them, times them out against a deadline
(``get_timer``/``handle_timer``) and queues the worker's events; it does no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import cbor2

from appliance.media.control_events import (
    DTMF_DIGITS,
    MAX_DEPTH,
    MAX_LEG_TIMEOUT,
    MAX_MESSAGE_SIZE,
    MAX_PLAY_FILES,
    MAX_REQUEST_ID,
    PLAY_END_REASONS,
    RECORD_END_REASONS,
    RECORD_ID,
    Answer,
    Command,
    ControlDecodeError,
    Delete,
    Direction,
    DropLeg,
    DtmfEvent,
    Error,
    FirstPacket,
    LegSpec,
    LocalProtocolError,
    MediaTimeout,
    Message,
    Offer,
    Ok,
    Ping,
    Play,
    PlayDone,
    PlayEndReason,
    PortsReserved,
    Query,
    Record,
    RecordDone,
    RecordEndReason,
    Reply,
    SetLeg,
    SrtpKeys,
    SsrcChanged,
    StopMedia,
    StreamStats,
    Update,
    WorkerEvent,
    WorkerStats,
)

# --- structural scan --------------------------------------------------------------------------------

_SIMPLE_OK: Final = frozenset({20, 21, 22})  # false, true, null (RFC 8949 §3.3)


def _scan(data: bytes) -> None:
    """Check ``data`` is exactly one CBOR item within the edge limits; raise ControlDecodeError if not."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise ControlDecodeError(f"message too large ({len(data)} > {MAX_MESSAGE_SIZE} octets)")
    if not data:
        raise ControlDecodeError("empty message")
    end = _scan_item(data, 0, 1)
    if end != len(data):
        raise ControlDecodeError(f"{len(data) - end} octets after the message")


def _scan_item(data: bytes, pos: int, depth: int) -> int:
    """Scan the item at ``pos`` nested at ``depth``; return the offset after it."""
    if pos >= len(data):
        raise ControlDecodeError("truncated message")
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if info < 24:
        arg = info
    elif info <= 27:
        width = 1 << (info - 24)
        if pos + width > len(data):
            raise ControlDecodeError("truncated message")
        arg = int.from_bytes(data[pos : pos + width], "big")
        pos += width
    elif info == 31:
        raise ControlDecodeError("indefinite-length items are not allowed")
    else:
        raise ControlDecodeError(f"reserved additional information {info}")
    if major in (0, 1):
        return pos
    if major in (2, 3):
        if arg > len(data) - pos:
            raise ControlDecodeError("truncated message")
        return pos + arg
    if major == 6:
        raise ControlDecodeError(f"CBOR tag {arg} not allowed")
    if major == 7:
        # Floats (info 25-27) carry their value in ``arg``; anything else is a simple value.
        if info <= 24 and (info == 24 or arg not in _SIMPLE_OK):
            raise ControlDecodeError(f"simple value {arg} not allowed")
        return pos
    if depth > MAX_DEPTH:
        raise ControlDecodeError(f"nesting deeper than {MAX_DEPTH}")
    # Every item takes at least one octet, so a count beyond the remaining octets is a truncation; checking
    # here keeps a forged count from driving a long loop.
    count = arg if major == 4 else 2 * arg
    if count > len(data) - pos:
        raise ControlDecodeError("truncated message")
    if major == 4:
        for _ in range(count):
            pos = _scan_item(data, pos, depth + 1)
        return pos
    # A repeated key would be silently resolved by cbor2 (the last wins), so two readers of one datagram
    # could disagree; RFC 8949 §5.6 leaves such a map invalid, and so does this protocol.
    keys: set[bytes] = set()
    for _ in range(arg):
        start = pos
        pos = _scan_item(data, pos, depth + 1)
        key = data[start:pos]
        if key in keys:
            raise ControlDecodeError("duplicate map key")
        keys.add(key)
        pos = _scan_item(data, pos, depth + 1)
    return pos


# --- field readers ----------------------------------------------------------------------------------


class Fields:
    """Typed access to one decoded map; every failure names the field's path."""

    def __init__(self, raw: Mapping[Any, Any], path: str) -> None:
        for key in raw:
            if not isinstance(key, str):
                raise ControlDecodeError("map key is not text", path=path)
        self.raw = raw
        self.path = path
        self.used: set[str] = set()

    def _get(self, key: str) -> Any:
        if key not in self.raw:
            raise ControlDecodeError("missing", path=f"{self.path}.{key}")
        self.used.add(key)
        return self.raw[key]

    def has(self, key: str) -> bool:
        return key in self.raw

    def text(self, key: str, *, nonempty: bool = True) -> str:
        return _text(self._get(key), f"{self.path}.{key}", nonempty=nonempty)

    def uint(self, key: str, *, limit: int = 2**64 - 1) -> int:
        return _uint(self._get(key), f"{self.path}.{key}", limit)

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ControlDecodeError("expected number", path=f"{self.path}.{key}")
        if not math.isfinite(value) or value < 0:
            raise ControlDecodeError("expected finite non-negative number", path=f"{self.path}.{key}")
        return float(value)

    def array(self, key: str) -> list[Any]:
        value = self._get(key)
        if not isinstance(value, list):
            raise ControlDecodeError("expected array", path=f"{self.path}.{key}")
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise ControlDecodeError("expected true or false", path=f"{self.path}.{key}")
        return value

    def fields(self, key: str) -> Fields:
        value = self._get(key)
        if not isinstance(value, dict):
            raise ControlDecodeError("expected map", path=f"{self.path}.{key}")
        return Fields(value, f"{self.path}.{key}")

    def direction(self, key: str) -> Direction:
        value = self.text(key)
        try:
            return Direction(value)
        except ValueError:
            raise ControlDecodeError(f"unknown direction {value!r}", path=f"{self.path}.{key}") from None

    def done(self) -> None:
        extra = sorted(set(self.raw) - self.used)
        if extra:
            raise ControlDecodeError(f"unknown key {extra[0]!r}", path=self.path)


def _text(value: Any, path: str, *, nonempty: bool = True) -> str:
    if not isinstance(value, str):
        raise ControlDecodeError("expected text", path=path)
    if nonempty and not value:
        raise ControlDecodeError("empty text", path=path)
    return value


def _uint(value: Any, path: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlDecodeError("expected unsigned integer", path=path)
    if not 0 <= value <= limit:
        raise ControlDecodeError(f"out of range 0..{limit}", path=path)
    return value


def _flags(f: Fields) -> tuple[str, ...]:
    items = f.array("flags")
    return tuple(_text(item, f"{f.path}.flags[{i}]") for i, item in enumerate(items))


def _sdp_command(cls: type[Offer | Answer | Update]) -> Callable[[Fields], Message]:
    def build(f: Fields) -> Message:
        return cls(
            request_id=f.uint("request_id", limit=MAX_REQUEST_ID),
            call_id=f.text("call_id"),
            leg=f.text("leg"),
            sdp=f.text("sdp"),
            flags=_flags(f) if f.has("flags") else (),
        )

    return build


def _endpoint(value: Any, path: str) -> tuple[str, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ControlDecodeError("expected [host, port]", path=path)
    return _text(value[0], f"{path}[0]"), _uint(value[1], f"{path}[1]", 65535)


def _optional_pt(f: Fields, key: str) -> int | None:
    return f.uint(key, limit=127) if f.has(key) else None


def _srtp(f: Fields) -> SrtpKeys:
    keys = SrtpKeys(suite=f.text("suite"), local_key=f.text("local_key"), remote_key=f.text("remote_key"))
    f.done()
    return keys


def _leg_timeout(f: Fields) -> float | None:
    if not f.has("timeout"):
        return None
    timeout = f.number("timeout")
    if not 0 < timeout <= MAX_LEG_TIMEOUT:
        raise ControlDecodeError(f"expected seconds in (0, {MAX_LEG_TIMEOUT:g}]", path=f"{f.path}.timeout")
    return timeout


def _leg_spec(f: Fields) -> LegSpec:
    spec = LegSpec(
        local_port=f.uint("local_port", limit=65535),
        remote=_endpoint(f.array("remote"), f"{f.path}.remote") if f.has("remote") else None,
        codec_pt=f.uint("codec_pt", limit=127),
        codec=f.text("codec"),
        event_pt=_optional_pt(f, "event_pt"),
        rtcp_port=f.uint("rtcp_port", limit=65535) if f.has("rtcp_port") else None,
        hold=f.boolean("hold") if f.has("hold") else False,
        srtp=_srtp(f.fields("srtp")) if f.has("srtp") else None,
        timeout=_leg_timeout(f),
    )
    f.done()
    return spec


def _set_leg(f: Fields) -> Message:
    return SetLeg(
        request_id=f.uint("request_id", limit=MAX_REQUEST_ID),
        call_id=f.text("call_id"),
        leg=f.text("leg"),
        spec=_leg_spec(f.fields("spec")),
        flags=_flags(f) if f.has("flags") else (),
    )


def _delete(f: Fields) -> Message:
    return Delete(
        request_id=f.uint("request_id", limit=MAX_REQUEST_ID),
        call_id=f.text("call_id"),
        leg=f.text("leg") if f.has("leg") else None,
    )


def _query(f: Fields) -> Message:
    return Query(request_id=f.uint("request_id", limit=MAX_REQUEST_ID), call_id=f.text("call_id"))


def _ping(f: Fields) -> Message:
    return Ping(request_id=f.uint("request_id", limit=MAX_REQUEST_ID))


def _play(f: Fields) -> Message:
    request_id, call_id, leg = f.uint("request_id", limit=MAX_REQUEST_ID), f.text("call_id"), f.text("leg")
    play_id = f.uint("play_id")
    items = f.array("files")
    if not 1 <= len(items) <= MAX_PLAY_FILES:
        raise ControlDecodeError(f"expected 1..{MAX_PLAY_FILES} files", path=f"{f.path}.files")
    files = tuple(_text(item, f"{f.path}.files[{i}]") for i, item in enumerate(items))
    barge_in = f.boolean("barge_in")
    loop = f.boolean("loop") if f.has("loop") else False
    return Play(call_id, leg, play_id, files, barge_in, loop, request_id)


def _record(f: Fields) -> Message:
    request_id, call_id, leg = f.uint("request_id", limit=MAX_REQUEST_ID), f.text("call_id"), f.text("leg")
    record_id = f.text("record_id")
    if RECORD_ID.fullmatch(record_id) is None:
        raise ControlDecodeError("expected 1..96 of [A-Za-z0-9_.-]", path=f"{f.path}.record_id")
    max_seconds = f.number("max_seconds")
    if max_seconds == 0:
        raise ControlDecodeError("expected a positive number", path=f"{f.path}.max_seconds")
    return Record(
        call_id,
        leg,
        record_id,
        max_seconds,
        f.number("silence_seconds"),
        f.boolean("end_on_hash"),
        f.boolean("beep"),
        request_id,
    )


def _leg_command(cls: type[StopMedia | DropLeg]) -> Callable[[Fields], Message]:
    def build(f: Fields) -> Message:
        return cls(
            request_id=f.uint("request_id", limit=MAX_REQUEST_ID),
            call_id=f.text("call_id"),
            leg=f.text("leg"),
        )

    return build


def _stream(value: Any, path: str) -> StreamStats:
    if not isinstance(value, dict):
        raise ControlDecodeError("expected map", path=path)
    f = Fields(value, path)
    stats = StreamStats(
        leg=f.text("leg"),
        direction=f.direction("direction"),
        packets=f.uint("packets"),
        octets=f.uint("octets"),
        lost=f.uint("lost"),
        jitter_ms=f.number("jitter_ms"),
    )
    f.done()
    return stats


def _ok(f: Fields) -> Message:
    request_id = f.uint("request_id", limit=MAX_REQUEST_ID)
    sdp = f.text("sdp") if f.has("sdp") else None
    ports = None
    if f.has("ports"):
        ports = tuple(_uint(p, f"{f.path}.ports[{i}]", 65535) for i, p in enumerate(f.array("ports")))
    stats = None
    if f.has("stats"):
        stats = tuple(_stream(s, f"{f.path}.stats[{i}]") for i, s in enumerate(f.array("stats")))
    recording = f.text("recording") if f.has("recording") else None
    return Ok(request_id=request_id, sdp=sdp, ports=ports, stats=stats, recording=recording)


def _error(f: Fields) -> Message:
    return Error(
        request_id=f.uint("request_id", limit=MAX_REQUEST_ID),
        code=f.uint("code", limit=0xFFFF),
        reason=f.text("reason", nonempty=False),
    )


def _media_timeout(f: Fields) -> Message:
    return MediaTimeout(
        call_id=f.text("call_id"),
        leg=f.text("leg"),
        direction=f.direction("direction"),
        silent_for=f.number("silent_for"),
        one_way=f.boolean("one_way") if f.has("one_way") else False,
    )


def _dtmf(f: Fields) -> Message:
    digit = f.text("digit")
    if digit not in DTMF_DIGITS:
        raise ControlDecodeError(f"not a DTMF digit {digit!r}", path=f"{f.path}.digit")
    return DtmfEvent(
        call_id=f.text("call_id"), leg=f.text("leg"), digit=digit, duration_ms=f.uint("duration_ms")
    )


def _first_packet(f: Fields) -> Message:
    call_id, leg, direction = f.text("call_id"), f.text("leg"), f.direction("direction")
    source = f.array("source")
    if len(source) != 2:
        raise ControlDecodeError("expected [host, port]", path=f"{f.path}.source")
    host = _text(source[0], f"{f.path}.source[0]")
    port = _uint(source[1], f"{f.path}.source[1]", 65535)
    return FirstPacket(call_id=call_id, leg=leg, direction=direction, source=(host, port))


def _ssrc_changed(f: Fields) -> Message:
    return SsrcChanged(
        call_id=f.text("call_id"),
        leg=f.text("leg"),
        direction=f.direction("direction"),
        old_ssrc=f.uint("old_ssrc", limit=0xFFFFFFFF),
        new_ssrc=f.uint("new_ssrc", limit=0xFFFFFFFF),
    )


def _worker_stats(f: Fields) -> Message:
    return WorkerStats(
        worker_id=f.uint("worker_id"),
        calls=f.uint("calls"),
        streams=f.uint("streams"),
        packets_relayed=f.uint("packets_relayed"),
        packets_dropped=f.uint("packets_dropped"),
        dropped=_drop_reasons(f.fields("dropped")) if f.has("dropped") else (),
    )


def _drop_reasons(f: Fields) -> tuple[tuple[str, int], ...]:
    # Fields already refused non-text keys; every key is a reason and every value a counter.
    out = []
    for reason, count in f.raw.items():
        _text(reason, f"{f.path}")
        out.append((reason, _uint(count, f"{f.path}.{reason}", 2**64 - 1)))
    return tuple(out)


def _reason(f: Fields, allowed: frozenset[str]) -> str:
    reason = f.text("reason")
    if reason not in allowed:
        raise ControlDecodeError(f"unknown reason {reason!r}", path=f"{f.path}.reason")
    return reason


def _play_done(f: Fields) -> Message:
    call_id, leg, play_id = f.text("call_id"), f.text("leg"), f.uint("play_id")
    return PlayDone(call_id, leg, play_id, cast(PlayEndReason, _reason(f, PLAY_END_REASONS)))


_SHA256_HEX: Final = frozenset("0123456789abcdef")


def _record_done(f: Fields) -> Message:
    call_id, leg, record_id = f.text("call_id"), f.text("leg"), f.text("record_id")
    reason = cast(RecordEndReason, _reason(f, RECORD_END_REASONS))
    duration, path, size = f.number("duration"), f.text("path", nonempty=False), f.uint("size")
    digest = f.text("sha256", nonempty=False)
    if digest and (len(digest) != 64 or not set(digest) <= _SHA256_HEX):
        raise ControlDecodeError("expected 64 lower-case hex digits or empty", path=f"{f.path}.sha256")
    return RecordDone(
        call_id, leg, record_id, reason, duration, path, size, digest, f.text("key_id", nonempty=False)
    )


def _ports_reserved(f: Fields) -> Message:
    first = f.uint("first_port", limit=65535)
    last = f.uint("last_port", limit=65535)
    if last < first:
        raise ControlDecodeError("below first_port", path=f"{f.path}.last_port")
    unusable: list[int] = []
    for i, item in enumerate(f.array("unusable")):
        path = f"{f.path}.unusable[{i}]"
        port = _uint(item, path, 65535)
        # RFC 3550 §11: a pair is an even RTP port and the RTCP port above it, both in the slice.
        if port & 1 or not first <= port < last:
            raise ControlDecodeError(f"{port} is not an RTP port of {first}-{last}", path=path)
        if unusable and port <= unusable[-1]:
            raise ControlDecodeError("not in increasing order", path=path)
        unusable.append(port)
    return PortsReserved(f.uint("worker_id"), first, last, tuple(unusable))


# The wire name of each message type, and how it is read; dispatch is by this table (STYLE.md rule 15).
_DECODERS: Final[Mapping[str, Callable[[Fields], Message]]] = {
    "set_leg": _set_leg,
    "offer": _sdp_command(Offer),
    "answer": _sdp_command(Answer),
    "update": _sdp_command(Update),
    "delete": _delete,
    "query": _query,
    "ping": _ping,
    "play": _play,
    "record": _record,
    "stop_media": _leg_command(StopMedia),
    "drop_leg": _leg_command(DropLeg),
    "ok": _ok,
    "error": _error,
    "media_timeout": _media_timeout,
    "dtmf": _dtmf,
    "first_packet": _first_packet,
    "ssrc_changed": _ssrc_changed,
    "worker_stats": _worker_stats,
    "play_done": _play_done,
    "record_done": _record_done,
    "ports_reserved": _ports_reserved,
}

_TYPE_NAMES: Final[Mapping[type, str]] = {
    SetLeg: "set_leg",
    Offer: "offer",
    Answer: "answer",
    Update: "update",
    Delete: "delete",
    Query: "query",
    Ping: "ping",
    Play: "play",
    Record: "record",
    StopMedia: "stop_media",
    DropLeg: "drop_leg",
    Ok: "ok",
    Error: "error",
    MediaTimeout: "media_timeout",
    DtmfEvent: "dtmf",
    FirstPacket: "first_packet",
    SsrcChanged: "ssrc_changed",
    WorkerStats: "worker_stats",
    PlayDone: "play_done",
    RecordDone: "record_done",
    PortsReserved: "ports_reserved",
}


_M = TypeVar("_M")
_E = TypeVar("_E")


def decode(data: bytes) -> Message:
    """Decode one control datagram. Total: returns a message or raises :class:`ControlDecodeError`."""
    return decode_with(data, _DECODERS)


def decode_with(data: bytes, decoders: Mapping[str, Callable[[Fields], _M]]) -> _M:
    """Decode one datagram of a protocol built on this one's framing (the TDM worker's): the scan, then
    the decoder ``decoders`` holds for its ``type``, which must use every key."""
    _scan(data)
    try:
        raw = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError, EOFError) as exc:
        # The scan leaves little for cbor2 to refuse (invalid UTF-8 text, unhashable map keys), but its
        # error types vary by version and backend, so every one of them becomes our decode error.
        raise ControlDecodeError(f"invalid CBOR ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ControlDecodeError("message is not a map")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ControlDecodeError("missing or not text", path="type")
    decoder = decoders.get(kind)
    if decoder is None:
        raise ControlDecodeError(f"unknown message type {kind!r}", path="type")
    fields = Fields(raw, kind)
    fields.used.add("type")
    message = decoder(fields)
    fields.done()
    return message


def _stream_map(s: StreamStats) -> dict[str, Any]:
    return {
        "leg": s.leg,
        "direction": str(s.direction),
        "packets": s.packets,
        "octets": s.octets,
        "lost": s.lost,
        "jitter_ms": float(s.jitter_ms),
    }


def _spec_map(spec: LegSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"local_port": spec.local_port, "codec_pt": spec.codec_pt, "codec": spec.codec}
    if spec.remote is not None:
        out["remote"] = [spec.remote[0], spec.remote[1]]
    if spec.event_pt is not None:
        out["event_pt"] = spec.event_pt
    if spec.rtcp_port is not None:
        out["rtcp_port"] = spec.rtcp_port
    if spec.hold:
        out["hold"] = True
    if spec.srtp is not None:
        keys = spec.srtp
        out["srtp"] = {"suite": keys.suite, "local_key": keys.local_key, "remote_key": keys.remote_key}
    if spec.timeout is not None:
        out["timeout"] = float(spec.timeout)
    return out


def _to_map(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _TYPE_NAMES[type(msg)]}
    match msg:
        case SetLeg():
            out |= {"request_id": msg.request_id, "call_id": msg.call_id, "leg": msg.leg}
            out["spec"] = _spec_map(msg.spec)
            if msg.flags:
                out["flags"] = list(msg.flags)
        case Offer() | Answer() | Update():
            out |= {"request_id": msg.request_id, "call_id": msg.call_id, "leg": msg.leg, "sdp": msg.sdp}
            if msg.flags:
                out["flags"] = list(msg.flags)
        case Delete():
            out |= {"request_id": msg.request_id, "call_id": msg.call_id}
            if msg.leg is not None:
                out["leg"] = msg.leg
        case Query():
            out |= {"request_id": msg.request_id, "call_id": msg.call_id}
        case Ping():
            out["request_id"] = msg.request_id
        case Play():
            out |= {"request_id": msg.request_id, "call_id": msg.call_id, "leg": msg.leg}
            out |= {"play_id": msg.play_id, "files": list(msg.files), "barge_in": msg.barge_in}
            if msg.loop:
                out["loop"] = True
        case Record():
            out |= {"request_id": msg.request_id, "call_id": msg.call_id, "leg": msg.leg}
            out |= {"record_id": msg.record_id, "max_seconds": float(msg.max_seconds)}
            out |= {"silence_seconds": float(msg.silence_seconds), "end_on_hash": msg.end_on_hash}
            out["beep"] = msg.beep
        case StopMedia() | DropLeg():
            out |= {"request_id": msg.request_id, "call_id": msg.call_id, "leg": msg.leg}
        case Ok():
            out["request_id"] = msg.request_id
            if msg.sdp is not None:
                out["sdp"] = msg.sdp
            if msg.ports is not None:
                out["ports"] = list(msg.ports)
            if msg.stats is not None:
                out["stats"] = [_stream_map(s) for s in msg.stats]
            if msg.recording is not None:
                out["recording"] = msg.recording
        case Error():
            out |= {"request_id": msg.request_id, "code": int(msg.code), "reason": msg.reason}
        case MediaTimeout():
            out |= {"call_id": msg.call_id, "leg": msg.leg, "direction": str(msg.direction)}
            out["silent_for"] = float(msg.silent_for)
            if msg.one_way:
                out["one_way"] = True
        case DtmfEvent():
            out |= {"call_id": msg.call_id, "leg": msg.leg, "digit": msg.digit}
            out["duration_ms"] = msg.duration_ms
        case FirstPacket():
            out |= {"call_id": msg.call_id, "leg": msg.leg, "direction": str(msg.direction)}
            out["source"] = [msg.source[0], msg.source[1]]
        case SsrcChanged():
            out |= {"call_id": msg.call_id, "leg": msg.leg, "direction": str(msg.direction)}
            out |= {"old_ssrc": msg.old_ssrc, "new_ssrc": msg.new_ssrc}
        case WorkerStats():
            out |= {"worker_id": msg.worker_id, "calls": msg.calls, "streams": msg.streams}
            out |= {"packets_relayed": msg.packets_relayed, "packets_dropped": msg.packets_dropped}
            if msg.dropped:
                out["dropped"] = dict(msg.dropped)
        case PlayDone():
            out |= {"call_id": msg.call_id, "leg": msg.leg, "play_id": msg.play_id, "reason": msg.reason}
        case RecordDone():
            out |= {"call_id": msg.call_id, "leg": msg.leg, "record_id": msg.record_id, "reason": msg.reason}
            out |= {"duration": float(msg.duration), "path": msg.path, "size": msg.size}
            out |= {"sha256": msg.sha256, "key_id": msg.key_id}
        case PortsReserved():
            out |= {"worker_id": msg.worker_id, "first_port": msg.first_port, "last_port": msg.last_port}
            out["unusable"] = list(msg.unusable)
    return out


def encode(msg: Message) -> bytes:
    """Encode one message as one datagram. The message must be valid: :func:`decode` of the result gives
    back an equal message; an invalid one raises :class:`LocalProtocolError` rather than reach a peer."""
    return encode_with(msg, _to_map, decode)


def encode_with(msg: _E, to_map: Callable[[_E], dict[str, Any]], decode: Callable[[bytes], object]) -> bytes:
    """Encode one message of a protocol built on this one's framing (the TDM worker's) with its
    ``to_map``, refusing, as :func:`encode` does, one that ``decode`` would not give back equal."""
    data = cbor2.dumps(to_map(msg))
    try:
        back = decode(data)
    except ControlDecodeError as exc:
        raise LocalProtocolError(f"refusing to send an invalid message: {exc.reason}") from None
    if back != msg:
        raise LocalProtocolError(f"refusing to send a message that does not round-trip: {msg!r}")
    return data


# --- the control side's channel ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    """A worker answered a pending command."""

    command: Command
    reply: Reply


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    """A command got no reply by its deadline; a late reply to it is reported as :class:`UnmatchedReply`."""

    command: Command


@dataclass(frozen=True, slots=True)
class UnmatchedReply:
    """A reply for no pending command (late after a timeout, or a confused worker)."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class BadMessage:
    """The worker sent a datagram that is not a control message for this side; it was dropped."""

    reason: str


@dataclass(frozen=True, slots=True)
class EventReceived:
    """An unsolicited event from the worker."""

    event: WorkerEvent


ChannelEvent = ReplyReceived | RequestTimedOut | UnmatchedReply | BadMessage | EventReceived

_COMMAND_TYPES: Final = (SetLeg, Offer, Answer, Update, Delete, Query, Ping, Play, Record, StopMedia, DropLeg)
_WORKER_EVENT_TYPES: Final = (
    MediaTimeout,
    DtmfEvent,
    FirstPacket,
    SsrcChanged,
    WorkerStats,
    PlayDone,
    RecordDone,
)


class ControlChannel:
    """The control process's end of one worker's control socket, sans-I/O.

    ``send(command, now)`` numbers the command, queues its datagram for :meth:`data_to_send` and returns
    the request id; the command is pending until a reply with that id arrives through :meth:`receive` or
    ``timeout`` seconds pass (reported by :meth:`handle_timer`). Results come out of :meth:`next_event`
    in arrival order. A peer's bad datagram becomes a :class:`BadMessage` event, never an exception.
    """

    def __init__(self, *, timeout: float = 1.0, first_request_id: int = 1) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._timeout = timeout
        self._next_id = _uint(first_request_id, "first_request_id", MAX_REQUEST_ID)
        self._pending: dict[int, tuple[float, Command]] = {}
        self._outgoing: list[bytes] = []
        self._events: deque[ChannelEvent] = deque()
        self._closed = False

    @property
    def pending(self) -> int:
        """How many commands await a reply."""
        return len(self._pending)

    def _allocate_id(self) -> int:
        if len(self._pending) > MAX_REQUEST_ID:
            raise LocalProtocolError("every request id is in use")
        # Ids wrap at 2**32; one still pending is skipped so a reply can never match the wrong command.
        while self._next_id in self._pending:
            self._next_id = (self._next_id + 1) & MAX_REQUEST_ID
        rid = self._next_id
        self._next_id = (self._next_id + 1) & MAX_REQUEST_ID
        return rid

    def send(self, command: Command, now: float) -> int:
        """Queue ``command`` (its ``request_id`` is replaced) and return the id it was sent with."""
        if not isinstance(command, _COMMAND_TYPES):
            raise LocalProtocolError(f"{type(command).__name__} is not a command")
        if self._closed:
            raise LocalProtocolError("the channel is closed")
        rid = self._allocate_id()
        numbered = dataclasses.replace(command, request_id=rid)
        data = encode(numbered)
        self._pending[rid] = (now + self._timeout, numbered)
        self._outgoing.append(data)
        return rid

    def data_to_send(self) -> list[bytes]:
        """The datagrams to write, one per ``send``, in order; the queue is emptied."""
        out, self._outgoing = self._outgoing, []
        return out

    def receive(self, data: bytes, now: float) -> None:
        """Feed one datagram from the worker. A reply arriving at its deadline still counts (``now`` is
        accepted for symmetry with the other machines; expiry happens only in :meth:`handle_timer`)."""
        try:
            msg = decode(data)
        except ControlDecodeError as exc:
            self._events.append(BadMessage(exc.reason))
            return
        if isinstance(msg, Ok | Error):
            entry = self._pending.pop(msg.request_id, None)
            if entry is None:
                self._events.append(UnmatchedReply(msg))
            else:
                self._events.append(ReplyReceived(entry[1], msg))
        elif isinstance(msg, _WORKER_EVENT_TYPES):
            self._events.append(EventReceived(msg))
        elif isinstance(msg, PortsReserved):
            # The connection's greeting, read before the channel is fed; a second one is a confused worker.
            self._events.append(BadMessage("ports_reserved: only the first message of a connection"))
        else:
            self._events.append(BadMessage(f"{_TYPE_NAMES[type(msg)]}: a command sent by the worker"))

    def get_timer(self) -> float | None:
        """The earliest pending deadline, or None when nothing is pending."""
        return min((deadline for deadline, _ in self._pending.values()), default=None)

    def handle_timer(self, now: float) -> None:
        """Expire every command whose deadline is at or before ``now``, in request order."""
        expired = [rid for rid, (deadline, _) in self._pending.items() if deadline <= now]
        for rid in expired:
            _, command = self._pending.pop(rid)
            self._events.append(RequestTimedOut(command))

    def close(self) -> None:
        """The worker's socket closed (the worker died): every pending command is reported as
        :class:`RequestTimedOut` at once, in request order, and further ``send`` calls are refused."""
        self._closed = True
        for command in [command for _, command in self._pending.values()]:
            self._events.append(RequestTimedOut(command))
        self._pending.clear()
        self._outgoing.clear()

    def next_event(self) -> ChannelEvent | None:
        """The next result, or None when none is queued."""
        return self._events.popleft() if self._events else None
