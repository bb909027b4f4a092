"""Kernel link, address and route events from rtnetlink (RFC 3549 §3.1.1–3.1.3), as small frozen events.

Theory of operation. Two parts, as STYLE.md rules 1 and 4 ask:

* :func:`translate` is sans-I/O: it takes one rtnetlink message as a plain mapping (see :func:`flatten` for
  the shape; tests feed recorded dicts) and returns a :class:`~appliance.wan.events.LinkChanged`,
  :class:`~appliance.wan.events.AddressChanged`, :class:`~appliance.wan.events.RouteChanged` or None for a
  message the WAN monitor has no use for. It never raises on odd input: the kernel is trusted, but a
  field we do not expect makes the message uninteresting, not fatal.
* :class:`NetlinkWatcher` is the asyncio adapter (pyroute2 parses the messages): one socket bound to the link,
  address and route multicast groups (IPv4 and IPv6), joined *before* a second socket dumps the current
  links, addresses and routes, so nothing that changes during the dump is missed (a change then arrives
  after the dump's stale view and wins). Each message is flattened, translated and handed to ``on_event``.

Carrier. An interface has carrier when the kernel sets IFF_LOWER_UP and its operational state (RFC 2863
``ifOperStatus``, IFLA_OPERSTATE) is UP, or UNKNOWN for drivers that do not track one. A veth whose peer
went down, an Ethernet without a cable and a deleted interface all read as no carrier. The kernel sends
RTM_NEWLINK at once when the lower layer goes, so carrier loss is reported within milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

from appliance.wan.events import AddressChanged, LinkChanged, NetlinkEvent, RouteChanged

_LOG: Final = logging.getLogger(__name__)

IFF_UP: Final = 0x1
IFF_LOWER_UP: Final = 0x10000
RT_TABLE_MAIN: Final = 254
RTN_UNICAST: Final = 1
_CARRIER_OPERSTATES: Final = frozenset({"UP", "UNKNOWN"})

Message = Mapping[str, Any]
"""One flattened rtnetlink message: ``event`` (e.g. "RTM_NEWLINK"), the fixed header fields of its family
(``index``, ``flags``, ``family``, ``prefixlen``, ``dst_len``, ``table``, ``type``) and ``attrs``, a mapping
from attribute name (``IFLA_IFNAME``, ``IFA_ADDRESS``, ``RTA_GATEWAY``…) to a string or integer value."""


def translate(message: Message) -> NetlinkEvent | None:
    """The event ``message`` reports, or None when it is none of ours (or malformed)."""
    kind = message.get("event")
    attrs = message.get("attrs")
    if not isinstance(attrs, Mapping):
        attrs = {}
    if kind in ("RTM_NEWLINK", "RTM_DELLINK"):
        return _link(message, attrs, kind == "RTM_NEWLINK")
    if kind in ("RTM_NEWADDR", "RTM_DELADDR"):
        return _address(message, attrs, kind == "RTM_NEWADDR")
    if kind in ("RTM_NEWROUTE", "RTM_DELROUTE"):
        return _route(message, attrs, kind == "RTM_NEWROUTE")
    return None


def has_carrier(flags: int, operstate: str | None) -> bool:
    """Carrier as defined in the module docstring; ``operstate`` None when the kernel did not say."""
    return bool(flags & IFF_LOWER_UP) and (operstate is None or operstate in _CARRIER_OPERSTATES)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _link(message: Message, attrs: Mapping[str, Any], present: bool) -> LinkChanged | None:
    ifname = attrs.get("IFLA_IFNAME")
    index = _int(message.get("index"))
    flags = _int(message.get("flags"))
    if not isinstance(ifname, str) or index is None or flags is None:
        return None
    if not present:
        return LinkChanged(ifname, index, carrier=False, admin_up=False)
    operstate = attrs.get("IFLA_OPERSTATE")
    state = operstate if isinstance(operstate, str) else None
    return LinkChanged(ifname, index, carrier=has_carrier(flags, state), admin_up=bool(flags & IFF_UP))


def _address(message: Message, attrs: Mapping[str, Any], present: bool) -> AddressChanged | None:
    # IFA_LOCAL is the interface's own address on point-to-point links, where IFA_ADDRESS is the peer's.
    address = attrs.get("IFA_LOCAL", attrs.get("IFA_ADDRESS"))
    index = _int(message.get("index"))
    family = _int(message.get("family"))
    prefixlen = _int(message.get("prefixlen"))
    if not isinstance(address, str) or index is None or family is None or prefixlen is None:
        return None
    return AddressChanged(index, family, address, prefixlen, present)


def _route(message: Message, attrs: Mapping[str, Any], present: bool) -> RouteChanged | None:
    # RTA_TABLE carries table ids above 255, which the one-octet header field cannot.
    table = _int(attrs.get("RTA_TABLE", message.get("table")))
    family = _int(message.get("family"))
    dst_len = _int(message.get("dst_len"))
    if table != RT_TABLE_MAIN or message.get("type", RTN_UNICAST) != RTN_UNICAST:
        return None
    if family is None or dst_len is None:
        return None
    dst = attrs.get("RTA_DST", "")
    gateway = attrs.get("RTA_GATEWAY")
    return RouteChanged(
        family=family,
        dst=dst if isinstance(dst, str) else "",
        dst_len=dst_len,
        gateway=gateway if isinstance(gateway, str) else None,
        oif=_int(attrs.get("RTA_OIF")),
        present=present,
    )


_HEADER_FIELDS: Final = ("index", "flags", "family", "prefixlen", "dst_len", "table", "type")


def flatten(msg: Any) -> dict[str, Any]:
    """A pyroute2 message as the plain mapping :func:`translate` reads (scalar attributes only)."""
    out: dict[str, Any] = {"event": msg.get("event")}
    for key in _HEADER_FIELDS:
        try:
            value = msg[key]
        except (KeyError, TypeError):
            continue
        out[key] = value
    attrs: dict[str, Any] = {}
    for item in msg.get("attrs") or ():
        name, value = item[0], item[1]
        if isinstance(value, (str, int)):
            attrs.setdefault(name, value)
    out["attrs"] = attrs
    return out


def _groups(ipv6: bool) -> int:
    from pyroute2.netlink.rtnl import (  # type: ignore[import-untyped]  # here: translate() needs none
        RTMGRP_IPV4_IFADDR,
        RTMGRP_IPV4_ROUTE,
        RTMGRP_IPV6_IFADDR,
        RTMGRP_IPV6_ROUTE,
        RTMGRP_LINK,
    )

    groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE
    if ipv6:
        groups |= RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
    return int(groups)


# Dump requests (RFC 3549 §2.3.2): nlmsghdr + the family's fixed header, all zero (every object, any
# family). RTM_GETLINK/GETADDR/GETROUTE with NLM_F_REQUEST | NLM_F_DUMP.
_NLMSG_HDR: Final = struct.Struct("=IHHII")
_NLM_F_REQUEST_DUMP: Final = 0x001 | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_DUMPS: Final = ((18, 16), (22, 8), (26, 12))  # (message type, size of ifinfomsg / ifaddrmsg / rtmsg)
_RECV_SIZE: Final = 1 << 16
_RCVBUF: Final = 1 << 20  # a burst of route changes must not overflow the socket (ENOBUFS) at once


def _dump_request(msg_type: int, header_size: int, seq: int, family: int) -> bytes:
    payload = bytearray(header_size)
    payload[0] = family
    return _NLMSG_HDR.pack(_NLMSG_HDR.size + header_size, msg_type, _NLM_F_REQUEST_DUMP, seq, 0) + payload


def _dump_done(data: bytes) -> bool:
    """Whether ``data`` (one datagram of a dump) holds the NLMSG_DONE or NLMSG_ERROR that ends it."""
    offset = 0
    while offset + _NLMSG_HDR.size <= len(data):
        length, msg_type = _NLMSG_HDR.unpack_from(data, offset)[:2]
        if msg_type in (_NLMSG_DONE, _NLMSG_ERROR):
            return True
        if length < _NLMSG_HDR.size:
            return True  # malformed: stop reading rather than loop
        offset += (length + 3) & ~3
    return False


class NetlinkWatcher:
    """Feeds every link, address and route event of this network namespace to ``on_event``.

    :meth:`start` returns once the initial dump was delivered (links first, then addresses, then routes)
    and the watch runs; :meth:`stop` closes the socket. ``on_event`` runs in the event loop and must not
    block. If the watch socket fails (e.g. ENOBUFS after the kernel dropped messages under load) the
    watcher rebinds and dumps again, so its user sees the current state rather than a gap.

    The sockets are plain ``AF_NETLINK`` sockets read through ``loop.add_reader`` and parsed by pyroute2's
    rtnetlink marshal, not pyroute2's own asyncio transport: that one opens its socket through
    ``loop.create_datagram_endpoint``, which uvloop (the control process's loop) refuses for AF_NETLINK.
    """

    def __init__(self, *, on_event: Callable[[NetlinkEvent], None], ipv6: bool = True) -> None:
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl  # type: ignore[import-untyped]

        self._on_event = on_event
        self._ipv6 = ipv6
        self._marshal = MarshalRtnl()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recovery: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._bind_and_dump()

    async def stop(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
            self._recovery = None
        self._close()

    def _close(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _bind_and_dump(self) -> None:
        assert self._loop is not None
        self._close()
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            sock.bind((0, _groups(self._ipv6)))  # joined before the dump: no change is missed
            sock.setblocking(False)
            self._dump()
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._readable)

    def _dump(self) -> None:
        """Read the current links, addresses and routes on a socket of its own (the kernel answers at
        once from memory, so the blocking reads take microseconds)."""
        family = socket.AF_UNSPEC if self._ipv6 else socket.AF_INET
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as dump:
            dump.settimeout(2.0)
            dump.bind((0, 0))
            for seq, (msg_type, header_size) in enumerate(_DUMPS, start=1):
                dump.send(_dump_request(msg_type, header_size, seq, family))
                while True:
                    data = dump.recv(_RECV_SIZE)
                    self._deliver_datagram(data)
                    if _dump_done(data):
                        break

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(_RECV_SIZE)
            except BlockingIOError:
                return
            except OSError:
                # ENOBUFS: the kernel dropped messages; what we know may be stale.
                _LOG.warning("netlink watch failed; binding again and dumping the state", exc_info=True)
                self._start_recovery()
                return
            self._deliver_datagram(data)

    def _start_recovery(self) -> None:
        assert self._loop is not None
        self._close()
        if self._recovery is None or self._recovery.done():
            self._recovery = self._loop.create_task(self._recover())

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            try:
                self._bind_and_dump()
            except OSError:
                _LOG.warning("netlink: binding again failed", exc_info=True)
            else:
                return

    def _deliver_datagram(self, data: bytes) -> None:
        for msg in self._marshal.parse(data):
            self._deliver(msg)

    def _deliver(self, msg: Any) -> None:
        event = translate(flatten(msg))
        if event is not None:
            self._on_event(event)
