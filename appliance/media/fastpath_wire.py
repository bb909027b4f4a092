"""The fast path's per-call netlink traffic at event-loop speed: messages compiled once, replies parsed lean.

Why. pyroute2's message classes (:mod:`appliance.media.fastpath_rules` builds every message with them) take
0.2-0.5 ms of Python to encode one install batch or conntrack request, more than the whole budget of a call
made from the worker's event loop. The messages of one table differ per call only in a few fixed-size
values -- map keys and values, tuple addresses and ports, sequence numbers -- so :class:`Template` encodes
each message once with pyroute2, with recognisable placeholder values, finds where those land, and renders a
call's message by copying the bytes and patching them in (a few microseconds). A unit test proves a rendered
message byte-identical to pyroute2's own encoding of the same call.

Replies are read the same way: :func:`parse_conntrack` walks the ctnetlink attributes it needs (tuple, status,
counters, id) with :mod:`struct` instead of building pyroute2's attribute tree; the unit tests check it
against pyroute2's decoding. Parsers are total: a malformed reply raises :class:`FastPathDecodeError`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pyroute2.netlink import NLM_F_ACK  # type: ignore[import-untyped]

from appliance.media.fastpath_rules import (
    IPS_DST_NAT,
    IPS_SRC_NAT,
    NLMSG_HEADER,
    Encoded,
    FastPathDecodeError,
    FlowCounters,
    FlowLeg,
    conntrack_request,
    elements_batch,
    map_key,
    map_value,
)

NLMSG_ERRNO: Final = struct.Struct("=i")
_SEQ: Final = struct.Struct("=I")
_ATTR: Final = struct.Struct("=HH")
_BE16: Final = struct.Struct("!H")
_BE32: Final = struct.Struct("!I")
_BE64: Final = struct.Struct("!Q")
_NLA_TYPE_MASK: Final = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
_NFGENMSG: Final = 4
_NFNL_SUBSYS_CTNETLINK: Final = 1

# ctnetlink attribute numbers (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
_CTA_TUPLE_ORIG: Final = 1
_CTA_STATUS: Final = 3
_CTA_COUNTERS_ORIG: Final = 9
_CTA_COUNTERS_REPLY: Final = 10
_CTA_ID: Final = 12
_CTA_TUPLE_IP: Final = 1
_CTA_TUPLE_PROTO: Final = 2
_CTA_IP_V4_SRC: Final = 1
_CTA_PROTO_SRC_PORT: Final = 2
_CTA_COUNTERS_PACKETS: Final = 1
_CTA_COUNTERS_BYTES: Final = 2


@dataclass(frozen=True, slots=True)
class ConntrackSample:
    """One conntrack entry's counters as the kernel reported them (see :func:`parse_conntrack`)."""

    entry_id: int
    counters: FlowCounters


class Template:
    """One datagram encoded with placeholder values; :meth:`render` patches in real ones and numbers its
    messages from a first sequence number. Each placeholder must occur exactly once in the encoding (checked
    here, so a value that happens to collide with a length or a type is caught when the template is built)."""

    def __init__(self, data: bytes, placeholders: Mapping[str, bytes]) -> None:
        self._data = data
        self._slots: dict[str, tuple[int, int]] = {}
        for name, pattern in placeholders.items():
            at = data.find(pattern)
            if at < 0 or data.find(pattern, at + 1) >= 0:
                raise ValueError(f"placeholder {name} must occur exactly once in the template")
            self._slots[name] = (at, at + len(pattern))
        self._headers: list[int] = []
        self._acked: list[bool] = []
        offset = 0
        for _, _, message in split_messages(data):
            self._headers.append(offset)
            _, _, flags, _, _ = NLMSG_HEADER.unpack_from(message)
            self._acked.append(bool(flags & NLM_F_ACK))
            offset += (len(message) + 3) & ~3

    @property
    def messages(self) -> int:
        """How many netlink messages the datagram holds."""
        return len(self._headers)

    def render(self, first_sequence: int, values: Mapping[str, bytes]) -> Encoded:
        """The datagram with ``values`` in place of the placeholders (same names, same lengths)."""
        out = bytearray(self._data)
        for name, (start, end) in self._slots.items():
            value = values[name]
            if len(value) != end - start:
                raise ValueError(f"{name} must be {end - start} bytes")
            out[start:end] = value
        acked = []
        for i, offset in enumerate(self._headers):
            _SEQ.pack_into(out, offset + 8, first_sequence + i)
            if self._acked[i]:
                acked.append(first_sequence + i)
        return Encoded(bytes(out), first_sequence, tuple(acked), first_sequence + len(self._headers))


# Placeholders: four keys and four values of the install batch (dnat then snat elements), and a tuple for
# ctnetlink. Values chosen so they cannot be taken for a length, type or flag of these messages.
_KEYS: Final = tuple(bytes([0xE1 + i]) * 16 for i in range(4))
_VALUES: Final = tuple(bytes([0xD1 + i]) * 8 for i in range(4))
_CT_SRC: Final = ("239.201.202.203", 0xBEEF)
_CT_DST: Final = ("239.204.205.206", 0xCAFE)


class FlowMessages:
    """The compiled install, remove and conntrack messages of one table."""

    def __init__(self, table: str) -> None:
        dnat = [(_KEYS[0], _VALUES[0]), (_KEYS[1], _VALUES[1])]
        snat = [(_KEYS[2], _VALUES[2]), (_KEYS[3], _VALUES[3])]
        names = ("dk0", "dk1", "sk0", "sk1")
        self._install = Template(
            elements_batch(table, dnat, snat, add=True, first_sequence=1).encode().data,
            {**dict(zip(names, _KEYS, strict=True)), **{f"v{i}": v for i, v in enumerate(_VALUES)}},
        )
        self._remove = Template(
            elements_batch(table, dnat, snat, add=False, first_sequence=1).encode().data,
            dict(zip(names, _KEYS, strict=True)),
        )
        placeholder_leg = FlowLeg(_CT_SRC, _CT_DST)
        ct_placeholders = {
            "src": socket.inet_aton(_CT_SRC[0]),
            "dst": socket.inet_aton(_CT_DST[0]),
            "sport": _BE16.pack(_CT_SRC[1]),
            "dport": _BE16.pack(_CT_DST[1]),
        }
        self._ct_get = Template(conntrack_request(placeholder_leg, delete=False, sequence=1), ct_placeholders)
        self._ct_delete = Template(
            conntrack_request(placeholder_leg, delete=True, sequence=1), ct_placeholders
        )

    def install(self, a: FlowLeg, b: FlowLeg, *, first_sequence: int) -> Encoded:
        """Byte for byte :func:`~appliance.media.fastpath_rules.install_batch`."""
        ka, kb = map_key(a.remote, a.local), map_key(b.remote, b.local)
        values = {
            "dk0": ka,
            "dk1": kb,
            "sk0": ka,
            "sk1": kb,
            "v0": map_value(b.remote),
            "v1": map_value(a.remote),
            "v2": map_value(b.local),
            "v3": map_value(a.local),
        }
        return self._install.render(first_sequence, values)

    def remove(self, a: FlowLeg, b: FlowLeg, *, first_sequence: int) -> Encoded:
        """Byte for byte :func:`~appliance.media.fastpath_rules.remove_batch`."""
        ka, kb = map_key(a.remote, a.local), map_key(b.remote, b.local)
        return self._remove.render(first_sequence, {"dk0": ka, "dk1": kb, "sk0": ka, "sk1": kb})

    def conntrack(self, leg: FlowLeg, *, delete: bool, sequence: int) -> bytes:
        """Byte for byte :func:`~appliance.media.fastpath_rules.conntrack_request`."""
        values = {
            "src": socket.inet_aton(leg.remote[0]),
            "dst": socket.inet_aton(leg.local[0]),
            "sport": _BE16.pack(leg.remote[1]),
            "dport": _BE16.pack(leg.local[1]),
        }
        return (self._ct_delete if delete else self._ct_get).render(sequence, values).data


# --- replies -------------------------------------------------------------------------------------------


def split_messages(data: bytes) -> Sequence[tuple[int, int, bytes]]:
    """Split a netlink datagram into ``(type, sequence, message)``; a truncated message raises."""
    out: list[tuple[int, int, bytes]] = []
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, msg_type, _, seq, _ = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size or offset + length > len(data):
            raise FastPathDecodeError(
                f"netlink message length {length} at offset {offset} overruns the datagram"
            )
        out.append((msg_type, seq, data[offset : offset + length]))
        offset += (length + 3) & ~3
    return out


def error_code(message: bytes) -> int:
    """The errno of an ``NLMSG_ERROR`` message, positive; 0 for an acknowledgement."""
    if len(message) < NLMSG_HEADER.size + NLMSG_ERRNO.size:
        raise FastPathDecodeError("netlink error message is truncated")
    (code,) = NLMSG_ERRNO.unpack_from(message, NLMSG_HEADER.size)
    return -int(code)


def _attrs(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """Attribute type → ``(start, end)`` of its payload, for the attributes in ``data[start:end]``."""
    out: dict[int, tuple[int, int]] = {}
    while start + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(data, start)
        if length < _ATTR.size or start + length > end:
            raise FastPathDecodeError(f"attribute length {length} at offset {start} overruns its container")
        out[kind & _NLA_TYPE_MASK] = (start + _ATTR.size, start + length)
        start += (length + 3) & ~3
    return out


def _need(attrs: Mapping[int, tuple[int, int]], kind: int, size: int, what: str) -> tuple[int, int]:
    span = attrs.get(kind)
    if span is None or span[1] - span[0] < size:
        raise FastPathDecodeError(f"conntrack entry lacks {what}")
    return span


def _counts(data: bytes, attrs: Mapping[int, tuple[int, int]], kind: int) -> tuple[int, int]:
    span = attrs.get(kind)
    if span is None:
        return 0, 0  # accounting was off when the entry was created
    inner = _attrs(data, *span)
    packets = _need(inner, _CTA_COUNTERS_PACKETS, 8, "a packet counter")[0]
    octets = _need(inner, _CTA_COUNTERS_BYTES, 8, "a byte counter")[0]
    return _BE64.unpack_from(data, packets)[0], _BE64.unpack_from(data, octets)[0]


def parse_conntrack(data: bytes, leg_a: FlowLeg) -> ConntrackSample:
    """Decode one ctnetlink entry (a whole netlink message) into counters per call direction: ``a_*`` is the
    direction whose tuple starts at ``leg_a.remote`` (the original one if leg a spoke first, else the reply
    one)."""
    if len(data) < NLMSG_HEADER.size + _NFGENMSG:
        raise FastPathDecodeError(f"conntrack message of {len(data)} bytes is truncated")
    length, msg_type, _, _, _ = NLMSG_HEADER.unpack_from(data)
    if msg_type >> 8 != _NFNL_SUBSYS_CTNETLINK or not NLMSG_HEADER.size + _NFGENMSG <= length <= len(data):
        raise FastPathDecodeError(f"not a conntrack entry: type {msg_type:#x}, length {length}/{len(data)}")
    top = _attrs(data, NLMSG_HEADER.size + _NFGENMSG, length)
    orig = _attrs(data, *_need(top, _CTA_TUPLE_ORIG, 0, "an original tuple"))
    ip = _attrs(data, *_need(orig, _CTA_TUPLE_IP, 0, "tuple addresses"))
    proto = _attrs(data, *_need(orig, _CTA_TUPLE_PROTO, 0, "tuple ports"))
    src_ip = socket.inet_ntoa(data[slice(*_need(ip, _CTA_IP_V4_SRC, 4, "an IPv4 source"))][:4])
    (src_port,) = _BE16.unpack_from(data, _need(proto, _CTA_PROTO_SRC_PORT, 2, "a source port")[0])
    status = _BE32.unpack_from(data, _need(top, _CTA_STATUS, 4, "a status")[0])[0]
    entry_id = _BE32.unpack_from(data, _need(top, _CTA_ID, 4, "an id")[0])[0]
    orig_counts = _counts(data, top, _CTA_COUNTERS_ORIG)
    reply_counts = _counts(data, top, _CTA_COUNTERS_REPLY)
    a_first = (src_ip, src_port) == leg_a.remote
    (a_packets, a_bytes), (b_packets, b_bytes) = (
        (orig_counts, reply_counts) if a_first else (reply_counts, orig_counts)
    )
    natted = status & (IPS_SRC_NAT | IPS_DST_NAT) == IPS_SRC_NAT | IPS_DST_NAT
    return ConntrackSample(entry_id, FlowCounters(a_packets, a_bytes, b_packets, b_bytes, natted))
