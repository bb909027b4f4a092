"""The kernel fast path's netlink messages and their layout, without touching a socket.

Theory of operation. A relayed call whose two legs are plain RTP with the same payload types needs no
processing: the relay only rewrites addresses. Such a call can be handed to netfilter, which then forwards
its packets without waking the media worker (issue 3). :mod:`appliance.media.fastpath_decide` says whether
a call qualifies; this module builds the nf_tables and ctnetlink messages that install, remove and observe
it; :mod:`appliance.media.fastpath` sends them.

One call is two legs (:class:`FlowLeg`): leg ``a`` talks from ``Ra:ra`` to our relay port ``L:A``, leg ``b``
from ``Rb:rb`` to ``L:B``. The fast path's own table (family ``ip``) holds two maps keyed by the packet's
original 4-tuple ``saddr . sport . daddr . dport``:

* ``dnat_to`` gives where the packet really goes: ``Ra:ra → L:A`` maps to ``Rb:rb``, and the mirror.
  Looked up in a ``nat`` chain on ``prerouting`` (packets from the network) and on ``output`` (packets from
  local processes, which never pass ``prerouting``: the tests and benchmarks on loopback).
* ``snat_to`` gives the source it must come from: the same key maps to ``L:B`` (the mirror to ``L:A``).
  Looked up on ``postrouting`` with the conntrack entry's *original* tuple as key, since the packet's own
  destination has already been rewritten by then.

NAT chains see only the first packet of a conntrack entry; conntrack then rewrites every later packet of
both directions itself, so the per-packet cost of a call is one conntrack lookup and no rule at all, and a
map lookup is O(1) however many calls are installed. A packet from any other source (a NAT rebinding, a
would-be hijacker) matches no key, is not rewritten and reaches the relay's socket, where the userspace latch
still judges it. Counters come from conntrack accounting (``nf_conntrack_acct``): the one entry of a call
counts ``Ra → L:A`` in one direction and ``Rb → L:B`` in the other, whichever side spoke first.

Pure code: message objects are pyroute2's (:mod:`pyroute2.netlink.nfnetlink.nftsocket`,
:mod:`~pyroute2.netlink.nfnetlink.nfctsocket`), encoded to bytes here; :mod:`appliance.media.fastpath_wire`
compiles the per-call ones for speed and parses the kernel's answers.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pyroute2.netlink import (  # type: ignore[import-untyped]
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
)
from pyroute2.netlink.nfnetlink import (  # type: ignore[import-untyped]
    NFNL_SUBSYS_CTNETLINK,
    NFNL_SUBSYS_NFTABLES,
    nfgen_msg,
)
from pyroute2.netlink.nfnetlink.nfctsocket import (  # type: ignore[import-untyped]
    IPCTNL_MSG_CT_DELETE,
    IPCTNL_MSG_CT_GET,
    nfct_msg,
)
from pyroute2.netlink.nfnetlink.nftsocket import (  # type: ignore[import-untyped]
    DATA_TYPE_INET_SERVICE,
    DATA_TYPE_IPADDR,
    NFT_MSG_DELSETELEM,
    NFT_MSG_DELTABLE,
    NFT_MSG_NEWCHAIN,
    NFT_MSG_NEWRULE,
    NFT_MSG_NEWSET,
    NFT_MSG_NEWSETELEM,
    NFT_MSG_NEWTABLE,
    nft_chain_msg,
    nft_rule_msg,
    nft_set_elem_list_msg,
    nft_set_msg,
    nft_table_msg,
)

from appliance.media.rtp import MediaError

Address = tuple[str, int]

DEFAULT_TABLE: Final = "appliance_media"
DNAT_MAP: Final = "dnat_to"
SNAT_MAP: Final = "snat_to"

NFPROTO_IPV4: Final = 2
IPPROTO_UDP: Final = 17
# IPv4 and UDP headers, without options: conntrack counts IP bytes, RTP counts what follows these.
IP_UDP_OVERHEAD: Final = 28

NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLMSG_HEADER: Final = struct.Struct("=IHHII")
# nfnetlink batch delimiters (include/uapi/linux/netfilter/nfnetlink.h).
NFNL_MSG_BATCH_BEGIN: Final = 0x10
NFNL_MSG_BATCH_END: Final = 0x11
# Kernel conntrack status bits (include/uapi/linux/netfilter/nf_conntrack_common.h).
IPS_SRC_NAT: Final = 1 << 4
IPS_DST_NAT: Final = 1 << 5

# Registers: NFT_REG_1 is the 16-byte register the concatenated key starts in; a concatenation's fields
# sit in consecutive 32-bit registers, each field padded to 4 bytes (nftables' concat layout).
_REG_1: Final = 1
_REG32_01: Final = 9
_REG32_02: Final = 10
_REG32_03: Final = 11
_META_L4PROTO: Final = 16
_PAYLOAD_NETWORK: Final = 1
_PAYLOAD_TRANSPORT: Final = 2
_CT_PROTO_SRC: Final = 0x0B
_CT_PROTO_DST: Final = 0x0C
_CT_SRC_IP: Final = 0x13
_CT_DST_IP: Final = 0x14
_CT_DIR_ORIGINAL: Final = 0
_NAT_SNAT: Final = 0
_NAT_DNAT: Final = 1
_HOOK_PREROUTING: Final = 0
_HOOK_OUTPUT: Final = 3
_HOOK_POSTROUTING: Final = 4
_PRIO_DSTNAT: Final = -100
_PRIO_SRCNAT: Final = 100
_NF_ACCEPT: Final = 1
# nftables' concatenated type id: each sub-type shifted in by 6 bits (src/datatype.c concat_subtype_add);
# the kernel ignores it, ``nft list`` uses it to print addresses and ports.
_CONCAT_BITS: Final = 6
_KEY_TYPE: Final = (
    ((DATA_TYPE_IPADDR << _CONCAT_BITS | DATA_TYPE_INET_SERVICE) << _CONCAT_BITS | DATA_TYPE_IPADDR)
    << _CONCAT_BITS
) | DATA_TYPE_INET_SERVICE
_DATA_TYPE: Final = DATA_TYPE_IPADDR << _CONCAT_BITS | DATA_TYPE_INET_SERVICE
KEY_LEN: Final = 16
DATA_LEN: Final = 8

# The base chains the NAT maps are consulted from: (chain name, hook, priority).
_CHAINS: Final = (
    ("pre", _HOOK_PREROUTING, _PRIO_DSTNAT),
    ("out", _HOOK_OUTPUT, _PRIO_DSTNAT),
    ("post", _HOOK_POSTROUTING, _PRIO_SRCNAT),
)


class FastPathError(MediaError):
    """Base of the kernel fast path's errors."""


class FastPathUsageError(FastPathError):
    """The caller misused the fast path (a bad address, an unknown or duplicate call); a defect, never
    the network's doing."""


class FastPathDecodeError(FastPathError):
    """The kernel's netlink answer could not be parsed (truncated or of an unexpected type)."""


@dataclass(frozen=True, slots=True)
class FlowLeg:
    """One leg of a kernel-forwarded call: ``remote`` is the peer's latched RTP source (the address its
    packets come from and ours go to), ``local`` our relay address and port for the leg. IPv4 only."""

    remote: Address
    local: Address

    def __post_init__(self) -> None:
        for what, (host, port) in (("remote", self.remote), ("local", self.local)):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise FastPathUsageError(f"{what} address {host!r} is not an IPv4 address") from None
            if not 1 <= port <= 65535:
                raise FastPathUsageError(f"{what} port {port} out of range 1-65535")


@dataclass(frozen=True, slots=True)
class FlowCounters:
    """Packets and bytes the kernel forwarded for one call, per direction: ``a_*`` counts what leg a sent
    (towards b), ``b_*`` what leg b sent. Bytes are IP bytes (:data:`IP_UDP_OVERHEAD` per packet more than
    the UDP payload). ``forwarding`` is whether the call's current conntrack entry is the fast path's own
    (NATed); False while no packet has passed since install, after the entry expired, or if a flow the
    userspace relay started still owns the tuple."""

    a_packets: int = 0
    a_bytes: int = 0
    b_packets: int = 0
    b_bytes: int = 0
    forwarding: bool = False

    def __add__(self, other: FlowCounters) -> FlowCounters:
        return FlowCounters(
            self.a_packets + other.a_packets,
            self.a_bytes + other.a_bytes,
            self.b_packets + other.b_packets,
            self.b_bytes + other.b_bytes,
            other.forwarding,
        )


def grown(before: FlowCounters, after: FlowCounters) -> tuple[str, ...]:
    """The legs (``"a"``, ``"b"``) whose packet count grew from one sample of a call to the next: the
    directions that had media, named as :class:`~appliance.media.timeout.CallMediaWatch` names them (by the
    leg the media is received on)."""
    return tuple(
        leg
        for leg, was, now in (
            ("a", before.a_packets, after.a_packets),
            ("b", before.b_packets, after.b_packets),
        )
        if now > was
    )


# --- map elements ------------------------------------------------------------------------------------


def _field(host: str, port: int) -> bytes:
    # An address then a port padded to a 32-bit register, as the concatenation lays them out.
    return socket.inet_aton(host) + struct.pack("!H2x", port)


def map_key(src: Address, dst: Address) -> bytes:
    """The 16-byte key of both maps for packets from ``src`` to ``dst``."""
    return _field(*src) + _field(*dst)


def map_value(address: Address) -> bytes:
    """The 8-byte value of a map element: an address and a port."""
    return _field(*address)


def dnat_elements(a: FlowLeg, b: FlowLeg) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` of ``dnat_to`` for a call: each remote's packets to our port go to the other
    remote."""
    return [
        (map_key(a.remote, a.local), map_value(b.remote)),
        (map_key(b.remote, b.local), map_value(a.remote)),
    ]


def snat_elements(a: FlowLeg, b: FlowLeg) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` of ``snat_to``: the same keys, and the source is our port on the other leg."""
    return [
        (map_key(a.remote, a.local), map_value(b.local)),
        (map_key(b.remote, b.local), map_value(a.local)),
    ]


# --- nf_tables messages ------------------------------------------------------------------------------


def _expr(name: str, *attrs: tuple[str, Any]) -> dict[str, Any]:
    return {"attrs": [("NFTA_EXPR_NAME", name), ("NFTA_EXPR_DATA", {"attrs": list(attrs)})]}


def _data(value: bytes) -> dict[str, Any]:
    return {"attrs": [("NFTA_DATA_VALUE", value)]}


def _udp_only() -> list[dict[str, Any]]:
    return [
        _expr("meta", ("NFTA_META_DREG", _REG_1), ("NFTA_META_KEY", _META_L4PROTO)),
        _expr("cmp", ("NFTA_CMP_SREG", _REG_1), ("NFTA_CMP_OP", 0), ("NFTA_CMP_DATA", _data(bytes([17])))),
    ]


def _payload(dreg: int, base: int, offset: int, length: int) -> dict[str, Any]:
    return _expr(
        "payload",
        ("NFTA_PAYLOAD_DREG", dreg),
        ("NFTA_PAYLOAD_BASE", base),
        ("NFTA_PAYLOAD_OFFSET", offset),
        ("NFTA_PAYLOAD_LEN", length),
    )


def _ct(dreg: int, key: int) -> dict[str, Any]:
    return _expr("ct", ("NFTA_CT_DREG", dreg), ("NFTA_CT_KEY", key), ("NFTA_CT_DIRECTION", _CT_DIR_ORIGINAL))


def _lookup_nat(map_name: str, nat_type: int) -> list[dict[str, Any]]:
    return [
        _expr(
            "lookup",
            ("NFTA_LOOKUP_SET", map_name),
            ("NFTA_LOOKUP_SREG", _REG_1),
            ("NFTA_LOOKUP_DREG", _REG_1),
        ),
        _expr(
            "nat",
            ("NFTA_NAT_TYPE", nat_type),
            ("NFTA_NAT_FAMILY", NFPROTO_IPV4),
            ("NFTA_NAT_REG_ADDR_MIN", _REG_1),
            ("NFTA_NAT_REG_ADDR_MAX", _REG_1),
            ("NFTA_NAT_REG_PROTO_MIN", _REG32_01),
            ("NFTA_NAT_REG_PROTO_MAX", _REG32_01),
            ("NFTA_NAT_FLAGS", {"NF_NAT_RANGE_MAP_IPS", "NF_NAT_RANGE_PROTO_SPECIFIED"}),
        ),
    ]


def dnat_rule() -> list[dict[str, Any]]:
    """``meta l4proto udp dnat ip to ip saddr . udp sport . ip daddr . udp dport map @dnat_to``."""
    return [
        *_udp_only(),
        _payload(_REG_1, _PAYLOAD_NETWORK, 12, 4),
        _payload(_REG32_01, _PAYLOAD_TRANSPORT, 0, 2),
        _payload(_REG32_02, _PAYLOAD_NETWORK, 16, 4),
        _payload(_REG32_03, _PAYLOAD_TRANSPORT, 2, 2),
        *_lookup_nat(DNAT_MAP, _NAT_DNAT),
    ]


def snat_rule() -> list[dict[str, Any]]:
    """``meta l4proto udp snat ip to ct original ip saddr . ct original proto-src . ct original ip daddr .
    ct original proto-dst map @snat_to``."""
    return [
        *_udp_only(),
        _ct(_REG_1, _CT_SRC_IP),
        _ct(_REG32_01, _CT_PROTO_SRC),
        _ct(_REG32_02, _CT_DST_IP),
        _ct(_REG32_03, _CT_PROTO_DST),
        *_lookup_nat(SNAT_MAP, _NAT_SNAT),
    ]


class Batch:
    """An nf_tables transaction: messages between a batch begin and end, applied by the kernel all or
    nothing. Every message asks for an acknowledgement, so the sender knows which one failed;
    :attr:`sequences` lists the numbers it must collect."""

    def __init__(self, *, first_sequence: int) -> None:
        self._next = first_sequence
        self._parts: list[bytes] = []
        self.sequences: list[int] = []
        self.begin_sequence = self._put(
            _batch_marker(NFNL_MSG_BATCH_BEGIN), NFNL_MSG_BATCH_BEGIN, 0, ack=False
        )

    def _put(self, msg: Any, msg_type: int, flags: int, *, ack: bool = True) -> int:
        seq = self._next
        self._next += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = NLM_F_REQUEST | flags | (NLM_F_ACK if ack else 0)
        msg["header"]["sequence_number"] = seq
        msg.encode()
        self._parts.append(bytes(msg.data))
        if ack:
            self.sequences.append(seq)
        return seq

    def add(self, msg: Any, nft_type: int, flags: int = 0) -> None:
        """Append one nf_tables message (``nft_type`` one of pyroute2's ``NFT_MSG_*``)."""
        msg["nfgen_family"] = NFPROTO_IPV4
        self._put(msg, NFNL_SUBSYS_NFTABLES << 8 | nft_type, flags)

    def encode(self) -> Encoded:
        """The whole datagram, with the sequence numbers the sender needs."""
        end = self._next
        self._next += 1
        marker = _batch_marker(NFNL_MSG_BATCH_END)
        marker["header"]["type"] = NFNL_MSG_BATCH_END
        marker["header"]["flags"] = NLM_F_REQUEST
        marker["header"]["sequence_number"] = end
        marker.encode()
        data = b"".join([*self._parts, bytes(marker.data)])
        return Encoded(data, self.begin_sequence, tuple(self.sequences), self._next)


@dataclass(frozen=True, slots=True)
class Encoded:
    """A datagram ready to send: ``begin_sequence`` is its batch header's number (the kernel answers it only
    when it could not process the batch at all), ``sequences`` the numbers that will each be acknowledged,
    ``next_sequence`` the first number not used."""

    data: bytes
    begin_sequence: int
    sequences: tuple[int, ...]
    next_sequence: int


def _batch_marker(msg_type: int) -> Any:
    msg = nfgen_msg()
    msg["res_id"] = NFNL_SUBSYS_NFTABLES
    msg["header"]["type"] = msg_type
    return msg


def _named(msg_class: Any, **attrs: Any) -> Any:
    msg = msg_class()
    msg["attrs"] = [[msg_class.name2nla(name), value] for name, value in attrs.items()]
    return msg


def setup_batch(table: str, *, first_sequence: int) -> Batch:
    """The transaction :meth:`~appliance.media.fastpath.KernelFastPath.open` sends: drop any table of that
    name a crashed worker left (``add`` then ``delete``, as ``nft -f`` does, so it also works when there was
    none), then create the table, both maps, the three NAT chains and their rules."""
    batch = Batch(first_sequence=first_sequence)
    batch.add(_named(nft_table_msg, name=table), NFT_MSG_NEWTABLE, NLM_F_CREATE)
    batch.add(_named(nft_table_msg, name=table), NFT_MSG_DELTABLE)
    batch.add(_named(nft_table_msg, name=table), NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL)
    for set_id, name in enumerate((DNAT_MAP, SNAT_MAP), start=1):
        batch.add(
            _named(
                nft_set_msg,
                table=table,
                name=name,
                flags={"NFT_SET_MAP"},
                key_type=_KEY_TYPE,
                key_len=KEY_LEN,
                data_type=_DATA_TYPE,
                data_len=DATA_LEN,
                id=set_id,
            ),
            NFT_MSG_NEWSET,
            NLM_F_CREATE | NLM_F_EXCL,
        )
    for name, hook, priority in _CHAINS:
        batch.add(
            _named(
                nft_chain_msg,
                table=table,
                name=name,
                hook={"attrs": [("NFTA_HOOK_HOOKNUM", hook), ("NFTA_HOOK_PRIORITY", priority)]},
                policy=_NF_ACCEPT,
                type="nat",
            ),
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE | NLM_F_EXCL,
        )
        rule = snat_rule() if hook == _HOOK_POSTROUTING else dnat_rule()
        batch.add(
            _named(nft_rule_msg, table=table, chain=name, expressions=rule),
            NFT_MSG_NEWRULE,
            NLM_F_CREATE,
        )
    return batch


def teardown_batch(table: str, *, first_sequence: int) -> Batch:
    """The transaction that deletes the table with everything in it."""
    batch = Batch(first_sequence=first_sequence)
    batch.add(_named(nft_table_msg, name=table), NFT_MSG_DELTABLE)
    return batch


def _elements_msg(table: str, map_name: str, elements: Iterable[tuple[bytes, bytes]], with_data: bool) -> Any:
    elems = []
    for key, value in elements:
        attrs: list[tuple[str, Any]] = [("NFTA_SET_ELEM_KEY", _data(key))]
        if with_data:
            attrs.append(("NFTA_SET_ELEM_DATA", _data(value)))
        elems.append({"attrs": attrs})
    return _named(nft_set_elem_list_msg, table=table, set=map_name, elements=elems)


def elements_batch(
    table: str,
    dnat: Sequence[tuple[bytes, bytes]],
    snat: Sequence[tuple[bytes, bytes]],
    *,
    add: bool,
    first_sequence: int,
) -> Batch:
    batch = Batch(first_sequence=first_sequence)
    msg_type, flags = (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL) if add else (NFT_MSG_DELSETELEM, 0)
    batch.add(_elements_msg(table, DNAT_MAP, dnat, add), msg_type, flags)
    batch.add(_elements_msg(table, SNAT_MAP, snat, add), msg_type, flags)
    return batch


def install_batch(table: str, a: FlowLeg, b: FlowLeg, *, first_sequence: int) -> Batch:
    """Add one call's four map elements. ``NLM_F_EXCL``: a key already present (the same remote and relay
    port installed twice) fails the whole transaction instead of silently re-pointing another call."""
    return elements_batch(
        table, dnat_elements(a, b), snat_elements(a, b), add=True, first_sequence=first_sequence
    )


def remove_batch(table: str, a: FlowLeg, b: FlowLeg, *, first_sequence: int) -> Batch:
    """Delete one call's four map elements."""
    return elements_batch(
        table, dnat_elements(a, b), snat_elements(a, b), add=False, first_sequence=first_sequence
    )


# --- ctnetlink messages ------------------------------------------------------------------------------


def _tuple(src: Address, dst: Address) -> dict[str, Any]:
    return {
        "attrs": [
            ("CTA_TUPLE_IP", {"attrs": [("CTA_IP_V4_SRC", src[0]), ("CTA_IP_V4_DST", dst[0])]}),
            (
                "CTA_TUPLE_PROTO",
                {
                    "attrs": [
                        ("CTA_PROTO_NUM", IPPROTO_UDP),
                        ("CTA_PROTO_SRC_PORT", src[1]),
                        ("CTA_PROTO_DST_PORT", dst[1]),
                    ]
                },
            ),
        ]
    }


def conntrack_request(leg: FlowLeg, *, delete: bool, sequence: int) -> bytes:
    """A ctnetlink request for the entry carrying ``leg.remote → leg.local`` in either direction (the
    kernel's lookup hashes both tuples of every entry): ``delete`` it (acknowledged), or get it."""
    msg = nfct_msg()
    msg["nfgen_family"] = socket.AF_INET
    msg["attrs"] = [["CTA_TUPLE_ORIG", _tuple(leg.remote, leg.local)]]
    msg_type = IPCTNL_MSG_CT_DELETE if delete else IPCTNL_MSG_CT_GET
    msg["header"]["type"] = NFNL_SUBSYS_CTNETLINK << 8 | msg_type
    msg["header"]["flags"] = NLM_F_REQUEST | (NLM_F_ACK if delete else 0)
    msg["header"]["sequence_number"] = sequence
    msg.encode()
    return bytes(msg.data)
