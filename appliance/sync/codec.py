"""CBOR bodies of the sync API (sync.cddl): request bodies in, typed values out; responses out as bytes.

Theory of operation. A request body is untrusted. :func:`decode_body` first walks the bytes itself
(RFC 8949 §3, the encoding of each data item's head) to check that they hold exactly one well-formed
data item of the subset the API accepts — definite lengths only, no tags (major type 6), no simple
values but false/true/null, no NaN or infinity, nesting at most :data:`MAX_DEPTH` deep — and only then
hands them to cbor2, which also refuses duplicate map keys (RFC 8949 §5.6). Every fault is a
:class:`BadCbor`. The ``decode_*`` functions then check the value against its rule in sync.cddl and
return a frozen dataclass, or raise :class:`SchemaError` naming the path of the fault.

The event feed is the hot path: a batch of 10,000 events is written by splicing each event's stored body
(already canonical CBOR, RFC 8949 §4.2.1, written by the outbox) between heads written by hand, instead
of decoding and encoding every body again. The bytes are those ``cbor2.dumps`` gives for the decoded
batch (keys in the order of the ``event`` rule, ``created`` as a float64).

This module does no I/O.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import cbor2

from appliance.ivr.records import iso_utc
from appliance.sync.errors import BadCbor, SchemaError

MAX_DEPTH: Final = 64
MAX_UINT: Final = 2**64 - 1
CONFIRM_WITHIN: Final = (1, 3600)

_HALF: Final = struct.Struct(">e")
_SINGLE: Final = struct.Struct(">f")
_DOUBLE: Final = struct.Struct(">d")
_U8: Final = struct.Struct(">B")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")


class RawEventLike(Protocol):
    """An event as the outbox stores it (``appliance.store.outbox.RawEvent``): ``body`` is the stored
    canonical CBOR of the body map."""

    @property
    def seq(self) -> int: ...
    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def hlc(self) -> int: ...
    @property
    def created(self) -> float: ...
    @property
    def body(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class AckRequest:
    upto: int


@dataclass(frozen=True, slots=True)
class ConfigWrite:
    replaces: int
    version: int
    content: Any
    confirm_within: int | None = None


@dataclass(frozen=True, slots=True)
class ConfirmRequest:
    version: int


# --- well-formedness --------------------------------------------------------------------------------------


def _argument(data: bytes, pos: int, info: int) -> tuple[int, int]:
    """The argument of a head whose additional information is ``info`` (RFC 8949 §3): value, next pos."""
    if info < 24:
        return info, pos
    if info > 27:  # 28-30 reserved (§3); 31 is an indefinite length, refused by the caller first
        raise BadCbor(f"reserved additional information {info} at byte {pos - 1}")
    width = 1 << (info - 24)
    end = pos + width
    if end > len(data):
        raise BadCbor("the body ends inside a data item")
    return int.from_bytes(data[pos:end], "big"), end


def check_well_formed(data: bytes, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`BadCbor` unless ``data`` is exactly one data item of the accepted subset."""
    if not data:
        raise BadCbor("the body is empty; a CBOR data item was expected")
    pos = 0
    # A stack of the counts of items still expected by the open arrays and maps.
    remaining: list[int] = []
    size = len(data)
    while True:
        if pos >= size:
            raise BadCbor("the body ends inside a data item")
        initial = data[pos]
        major, info = initial >> 5, initial & 0x1F
        start = pos
        pos += 1
        if info == 31:
            raise BadCbor(f"indefinite-length item at byte {start}: only definite lengths are accepted")
        argument, pos = _argument(data, pos, info)
        count = 0
        if major in (2, 3):
            if argument > size - pos:
                raise BadCbor("the body ends inside a string")
            if major == 3:
                try:
                    data[pos : pos + argument].decode("utf-8")
                except UnicodeDecodeError:
                    raise BadCbor(f"text string at byte {start} is not UTF-8") from None
            pos += argument
        elif major == 4:
            count = argument
        elif major == 5:
            count = 2 * argument
        elif major == 6:
            raise BadCbor(f"tag {argument} at byte {start}: tags are not accepted")
        elif major == 7:
            _check_simple(data, start, info, argument)
        if count > size - pos:  # each item takes at least one byte
            raise BadCbor("the body ends inside an array or map")
        if count:
            if len(remaining) >= max_depth:
                raise BadCbor(f"nested deeper than {max_depth}")
            remaining.append(count)
            continue
        # One item finished: close every container it completes.
        while remaining:
            remaining[-1] -= 1
            if remaining[-1]:
                break
            remaining.pop()
        if not remaining:
            break
    if pos != size:
        raise BadCbor(f"{size - pos} bytes follow the data item")


def _check_simple(data: bytes, start: int, info: int, argument: int) -> None:
    if info in (20, 21, 22):  # false, true, null
        return
    if info in (25, 26, 27):
        raw = data[start + 1 : start + 1 + (1 << (info - 24))]
        packer = {25: _HALF, 26: _SINGLE, 27: _DOUBLE}[info]
        value = packer.unpack(raw)[0]
        if math.isnan(value) or math.isinf(value):
            raise BadCbor(f"NaN or infinity at byte {start}: only finite numbers are accepted")
        return
    raise BadCbor(f"simple value {argument} at byte {start}: only false, true and null are accepted")


def decode_body(data: bytes, *, max_size: int | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """The one CBOR data item in ``data``; raises :class:`BadCbor` (``TooLarge`` is the caller's check
    before reading; ``max_size`` here guards direct callers)."""
    if max_size is not None and len(data) > max_size:
        raise BadCbor(f"the body is {len(data)} bytes, over {max_size}")
    check_well_formed(data, max_depth=max_depth)
    try:
        return cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False, max_depth=max_depth + 1)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise BadCbor(f"not CBOR: {exc}") from None


# --- schema ------------------------------------------------------------------------------------------------


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _map(value: Any, path: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    """``value`` as a map with exactly the ``required`` keys and some of the ``optional`` ones."""
    if not isinstance(value, dict):
        raise SchemaError(f"expected a map, not {_kind(value)}", path=path or None)
    for key in value:
        if not isinstance(key, str) or (key not in required and key not in optional):
            raise SchemaError(f"unexpected key {key!r}", path=_join(path, key))
    for key in required:
        if key not in value:
            raise SchemaError(f"{key!r} is missing", path=_join(path, key))
    return value


def _uint(value: Any, path: str, low: int = 0, high: int = MAX_UINT) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SchemaError(f"expected an unsigned integer, not {_kind(value)}", path=path)
    if not low <= value <= high:
        raise SchemaError(f"expected an integer from {low} to {high}, not {value}", path=path)
    return value


_KINDS: Final = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a text string"),
    (bytes, "a byte string"),
    (list, "an array"),
    (dict, "a map"),
)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for cls, name in _KINDS if isinstance(value, cls)), value.__class__.__name__)


def decode_ack(data: bytes, *, max_size: int | None = None) -> AckRequest:
    """The ``ack-request`` rule."""
    value = _map(decode_body(data, max_size=max_size), "", ("upto",))
    return AckRequest(_uint(value["upto"], "upto"))


def decode_config_write(data: bytes, *, max_size: int | None = None) -> ConfigWrite:
    """The ``config-write`` rule, and ``version`` > ``replaces``. The content is the owner's to check."""
    value = _map(
        decode_body(data, max_size=max_size), "", ("replaces", "version", "content"), ("confirm_within",)
    )
    replaces = _uint(value["replaces"], "replaces")
    version = _uint(value["version"], "version")
    if version <= replaces:
        raise SchemaError(f"version {version} must be greater than replaces {replaces}", path="version")
    within = value.get("confirm_within")
    if within is not None or "confirm_within" in value:
        within = _uint(within, "confirm_within", *CONFIRM_WITHIN)
    return ConfigWrite(replaces, version, value["content"], within)


def decode_confirm(data: bytes, *, max_size: int | None = None) -> ConfirmRequest:
    """The ``confirm-request`` rule."""
    value = _map(decode_body(data, max_size=max_size), "", ("version",))
    return ConfirmRequest(_uint(value["version"], "version"))


# --- responses ---------------------------------------------------------------------------------------------


def utc_time(posix: float) -> str:
    """The ``utc-time`` of sync.cddl: RFC 3339 §5.6 UTC with milliseconds, "2026-11-24T21:30:00.000Z"."""
    return iso_utc(posix)


def encode(value: Mapping[str, Any]) -> bytes:
    """A response body (any rule but ``event-batch``, which :func:`encode_event_batch` writes)."""
    return cbor2.dumps(dict(value))


def _head(major: int, argument: int) -> bytes:
    """The head of a data item (RFC 8949 §3): the shortest form of ``argument`` (§4.2.1)."""
    base = major << 5
    if argument < 24:
        return _U8.pack(base | argument)
    if argument < 0x100:
        return _U8.pack(base | 24) + _U8.pack(argument)
    if argument < 0x10000:
        return _U8.pack(base | 25) + _U16.pack(argument)
    if argument < 0x100000000:
        return _U8.pack(base | 26) + _U32.pack(argument)
    return _U8.pack(base | 27) + _U64.pack(argument)


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _head(3, len(raw)) + raw


# The keys of the ``event`` and ``event-batch`` rules, pre-encoded, in the order they are written.
_EVENT_MAP: Final = _head(5, 6)
_K_SEQ: Final = _text("seq")
_K_ID: Final = _text("id")
_K_TYPE: Final = _text("type")
_K_HLC: Final = _text("hlc")
_K_CREATED: Final = _text("created") + b"\xfb"  # a float64 follows (§3.3)
_K_BODY: Final = _text("body")
_BATCH_MAP: Final = _head(5, 4) + _text("events")
_K_FIRST: Final = _text("first_seq")
_K_LAST: Final = _text("last_seq")
_K_ACKED: Final = _text("acked_seq")


_ID_32: Final = _K_ID + _head(3, 32)  # event ids are 32 hex digits: one head for all
# The map head and "seq", then a 32-bit uint (0x1a).
_SEQ_32: Final = struct.Struct(f">{len(_EVENT_MAP + _K_SEQ)}sBI")
# A 64-bit uint (0x1b), "created" and the float64 head, the float64, "body".
_HLC_64: Final = struct.Struct(f">BQ{len(_K_CREATED)}sd{len(_K_BODY)}s")
_K_CREATED_BODY: Final = (_K_CREATED, _K_BODY)


def encode_event_batch(
    events: Sequence[RawEventLike], *, first_seq: int, last_seq: int, acked_seq: int
) -> bytes:
    """The ``event-batch`` rule, each event's stored body spliced in unchanged.

    The common shapes (a seq of 2^16 to 2^32 - 1, an id of 32 ASCII digits, an HLC of 2^32 or more,
    which every timestamp after 1970 is) take one ``struct`` call each; any other value takes the general
    head (same bytes, slower)."""
    head, text = _head, _text
    prefix = _EVENT_MAP + _K_SEQ
    created_key, body_key = _K_CREATED_BODY
    seq_pack, hlc_pack, double_pack = _SEQ_32.pack, _HLC_64.pack, _DOUBLE.pack
    typed: dict[str, bytes] = {}  # type -> "type", its text, "hlc"
    parts: list[bytes] = [_BATCH_MAP, head(4, len(events))]
    append = parts.append
    for event in events:
        seq, eid, hlc = event.seq, event.id, event.hlc
        append(seq_pack(prefix, 0x1A, seq) if 0x10000 <= seq <= 0xFFFFFFFF else prefix + head(0, seq))
        append(_ID_32 + eid.encode() if len(eid) == 32 and eid.isascii() else _K_ID + text(eid))
        kind = typed.get(event.type)
        if kind is None:
            kind = typed[event.type] = _K_TYPE + text(event.type) + _K_HLC
        append(kind)
        if 0xFFFFFFFF < hlc <= 0xFFFFFFFFFFFFFFFF:
            append(hlc_pack(0x1B, hlc, created_key, event.created, body_key))
        else:
            append(head(0, hlc) + created_key + double_pack(event.created) + body_key)
        append(event.body)
    parts += (_K_FIRST, head(0, first_seq), _K_LAST, head(0, last_seq), _K_ACKED, head(0, acked_seq))
    return b"".join(parts)


def event_batch_value(
    events: Sequence[RawEventLike], *, first_seq: int, last_seq: int, acked_seq: int
) -> dict[str, Any]:
    """The decoded form of :func:`encode_event_batch` (for tests and slow paths)."""
    return {
        "events": [
            {
                "seq": e.seq,
                "id": e.id,
                "type": e.type,
                "hlc": e.hlc,
                "created": float(e.created),
                "body": cbor2.loads(e.body),
            }
            for e in events
        ],
        "first_seq": first_seq,
        "last_seq": last_seq,
        "acked_seq": acked_seq,
    }
