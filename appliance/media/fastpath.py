"""The kernel fast path: netfilter forwards plain RTP↔RTP calls that need no processing.

Theory of operation (the maps and chains are in :mod:`appliance.media.fastpath_rules`, the eligibility
rules in :mod:`appliance.media.fastpath_decide`). A media worker opens one :class:`KernelFastPath` (its own
table: one per worker, so that a worker's restart only ever clears its own calls). Once a call is eligible
and both remotes are latched it calls :meth:`~KernelFastPath.install`, which

1. adds the call's four map elements in one nf_tables transaction, then
2. deletes the conntrack entries of ``Ra:ra ↔ L:A`` and ``Rb:rb ↔ L:B``. While userspace relayed, the
   kernel tracked those as ordinary flows (and the worker's own ``L:B → Rb:rb`` sends made ``Rb``'s packets
   that entry's replies); NAT rules are only consulted for a flow's first packet, so until those entries go,
   the call's packets would keep reaching the worker's sockets.

From then on the next packet from either remote creates one NATed entry carrying both directions, and the
worker's sockets see only packets from other sources (which its latch judges as before). The worker must
stop sending the call's RTP itself from the moment it calls install -- packets from the latched remotes still
queued on its sockets are dropped, not relayed: a datagram it sent after step 2 would recreate a non-NAT
entry for ``L:B → Rb:rb`` that shadows the fast path (:attr:`FlowCounters.forwarding` then stays False while
media flows; remove and install again clears it). The worker is single-threaded, so marking the call as
kernel-forwarded before install returns closes that window entirely. :meth:`~KernelFastPath.remove` deletes
the elements and the entries again, so the ports are the worker's at the next packet. RTCP is left to
userspace: it is a few packets per second and the worker wants to read it.

Counters are conntrack accounting (``net.netfilter.nf_conntrack_acct``, switched on by :meth:`open`). An
idle UDP entry expires (``nf_conntrack_udp_timeout``, 30 s before both sides spoke, 120 s after); the next
packet creates a fresh one starting at zero, so :meth:`~KernelFastPath.counters` keeps a running total per
call, adding an entry's last sample when its id changes. Packets an entry counted between the last sample
and its expiry are lost to the total; for a media timeout ("no increase for N seconds") that is harmless.

The worker's part, in order: :func:`~appliance.media.fastpath_decide.decide` on every change that may
matter (second remote latched, re-INVITE, recording or DTMF reporting switched); when eligible,
:meth:`~KernelFastPath.install` and stop relaying the call's RTP; in its periodic sweep,
:meth:`~KernelFastPath.poll` all kernel calls and tell its
:class:`~appliance.media.timeout.CallMediaWatch` ``packet(direction, now)`` for each direction whose count
grew (so a timeout is late by at most one sweep interval); on hang-up, on a re-INVITE that changes a remote
or the codec, or when the latch accepts a new source (a NAT rebinding seen on the relay socket),
:meth:`~KernelFastPath.remove` and relay in userspace again (re-installing once the new remote is latched).
While the kernel forwards, the latch sees no packets from the latched source, so it cannot use them to
cancel a re-latch candidate; the worker can use the call's growing kernel counters as that proof instead.

The calls are synchronous netlink round trips on a plain ``AF_NETLINK`` socket, the messages built with
pyroute2's message classes (compiled once per table, :mod:`appliance.media.fastpath_wire`). Not pyroute2's
sockets: in 0.9 their synchronous API runs its own asyncio loop per request (about 0.5 ms each, measured)
and cannot be called from a running loop at all, which is where the worker calls from. Measured in
``bench/fastpath_probe.py`` with 1000 calls: install about 40 µs of CPU, remove 60 µs, one call's counters
25 µs, a poll of all calls about 25 µs per call.

Forwarding to a remote peer routes the packet (``prerouting → forward → postrouting``), so :meth:`open`
refuses to start when ``net.ipv4.ip_forward`` is off rather than black-hole every call it installs.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from appliance.media.fastpath_rules import (
    DEFAULT_TABLE,
    NLMSG_DONE,
    NLMSG_ERROR,
    Encoded,
    FastPathDecodeError,
    FastPathError,
    FastPathUsageError,
    FlowCounters,
    FlowLeg,
    setup_batch,
    teardown_batch,
)
from appliance.media.fastpath_wire import (
    ConntrackSample,
    FlowMessages,
    error_code,
    parse_conntrack,
    split_messages,
)

log = logging.getLogger("appliance.media.fastpath")

NETLINK_NETFILTER: Final = 12
_SO_RCVBUFFORCE: Final = 33
_RECV_BUFFER: Final = 65536
# A kernel answer is immediate; this only bounds the wait if something is badly wrong.
_REPLY_TIMEOUT: Final = 1.0
# Conntrack reads per datagram in poll(): each answer is a few hundred bytes of receive buffer, and answers
# that do not fit are lost, so a chunk stays well inside the socket's buffer (_SOCKET_BUFFER).
POLL_CHUNK: Final = 64
_SOCKET_BUFFER: Final = 1 << 20
_SEQUENCE_LIMIT: Final = 1 << 32
# Sequence numbers set aside for one nf_tables transaction: more than any of ours holds (open's has 13).
_BATCH_SEQUENCES: Final = 16

__all__ = [
    "FastPathConfig",
    "FastPathDecodeError",
    "FastPathError",
    "FastPathUnavailable",
    "FastPathUsageError",
    "FlowCounters",
    "FlowHandle",
    "FlowLeg",
    "KernelFastPath",
    "NetlinkRequestError",
]


class FastPathUnavailable(FastPathError):
    """The kernel fast path cannot run here (no CAP_NET_ADMIN, nf_tables or NAT missing, forwarding off);
    the worker keeps relaying every call in userspace. The message says which and what to change."""


class NetlinkRequestError(FastPathError):
    """The kernel refused a request; ``errno`` is its error number."""

    def __init__(self, what: str, code: int) -> None:
        super().__init__(f"{what}: {os.strerror(code)} (errno {code})")
        self.errno = code


@dataclass(frozen=True, slots=True)
class FastPathConfig:
    """``table``: the nftables table (family ``ip``) this instance owns, one per worker;
    ``sysctl_root``: where the ``net`` sysctls are (a test may point it elsewhere); ``require_forwarding``:
    refuse to open while ``net.ipv4.ip_forward`` is 0."""

    table: str = DEFAULT_TABLE
    sysctl_root: Path = Path("/proc/sys")
    require_forwarding: bool = True


@dataclass(frozen=True, slots=True)
class FlowHandle:
    """One installed call, as :meth:`KernelFastPath.install` returned it."""

    key: str
    a: FlowLeg
    b: FlowLeg


@dataclass(slots=True)
class _Totals:
    # Counters of the call's expired conntrack entries, and the latest sample of the live one.
    done: FlowCounters = field(default_factory=FlowCounters)
    entry_id: int | None = None
    live: FlowCounters = field(default_factory=FlowCounters)


class KernelFastPath:
    """Installs, observes and removes kernel-forwarded calls. Not thread-safe; one per worker process."""

    def __init__(self, config: FastPathConfig | None = None) -> None:
        self._config = config or FastPathConfig()
        self._sock: socket.socket | None = None
        self._seq = 1
        self._messages = FlowMessages(self._config.table)
        self._calls: dict[str, FlowHandle] = {}
        self._totals: dict[str, _Totals] = {}

    @property
    def table(self) -> str:
        """The nftables table this instance owns."""
        return self._config.table

    @property
    def installed(self) -> int:
        """How many calls are installed."""
        return len(self._calls)

    # --- lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the table, maps and chains (replacing any a previous run left) and switch on conntrack
        accounting. Raises :class:`FastPathUnavailable` when this host cannot do it."""
        if self._sock is not None:
            raise FastPathUsageError("fast path already open")
        forwarding = self._read_sysctl("net/ipv4/ip_forward")
        if self._config.require_forwarding and forwarding != "1":
            raise FastPathUnavailable(
                "net.ipv4.ip_forward is 0: kernel-forwarded media to remote peers would be dropped "
                "(set it to 1 to use the fast path)"
            )
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.bind((0, 0))
            sock.settimeout(_REPLY_TIMEOUT)
            with contextlib.suppress(OSError):  # past net.core.rmem_max needs CAP_NET_ADMIN, as does all else
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _SOCKET_BUFFER)
        except OSError as exc:
            raise FastPathUnavailable(f"no netfilter netlink socket: {exc}") from exc
        self._sock = sock
        try:
            self._transact(
                setup_batch(self.table, first_sequence=self._take(_BATCH_SEQUENCES)).encode(), "create table"
            )
        except NetlinkRequestError as exc:
            self._close_socket()
            raise FastPathUnavailable(_explain(exc.errno, self.table)) from exc
        except BaseException:
            self._close_socket()
            raise
        # The nat chains above loaded nf_conntrack, so its sysctls exist now.
        try:
            if self._read_sysctl("net/netfilter/nf_conntrack_acct") != "1":
                (self._config.sysctl_root / "net/netfilter/nf_conntrack_acct").write_text("1\n")
        except OSError as exc:
            self.close()
            raise FastPathUnavailable(
                f"cannot switch on conntrack accounting (the call counters): {exc}"
            ) from exc
        log.info("fast path open: table ip %s", self.table)

    def close(self) -> None:
        """Delete the table (every installed call falls back to userspace at its next new flow) and the
        calls' conntrack entries, then close the socket. Idempotent."""
        if self._sock is None:
            return
        try:
            for handle in list(self._calls.values()):
                self._forget_conntrack(handle)
            self._transact(
                teardown_batch(self.table, first_sequence=self._take(_BATCH_SEQUENCES)).encode(),
                "delete table",
            )
        except NetlinkRequestError as exc:
            if exc.errno != errno.ENOENT:
                raise
        finally:
            self._calls.clear()
            self._totals.clear()
            self._close_socket()
        log.info("fast path closed: table ip %s deleted", self.table)

    def __enter__(self) -> KernelFastPath:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls -------------------------------------------------------------------------------------

    def install(self, key: str, a: FlowLeg, b: FlowLeg) -> FlowHandle:
        """Hand one call to the kernel. ``key`` names it (the call id); ``a`` and ``b`` are its legs with
        their latched remotes. Raises :class:`FastPathUsageError` for a key already installed and
        :class:`NetlinkRequestError` (``EEXIST``) if another call already holds one of the tuples. On any
        error nothing stays installed."""
        if key in self._calls:
            raise FastPathUsageError(f"call {key!r} is already installed")
        if a.local == b.local:
            raise FastPathUsageError(f"call {key!r}: both legs use relay port {a.local}")
        self._transact(
            self._messages.install(a, b, first_sequence=self._take(_BATCH_SEQUENCES)), f"install {key}"
        )
        handle = FlowHandle(key, a, b)
        try:
            self._forget_conntrack(handle)
        except FastPathError:
            # Without the old entries gone the rules would never apply; leave the call to userspace.
            self._transact(
                self._messages.remove(a, b, first_sequence=self._take(_BATCH_SEQUENCES)),
                f"undo install {key}",
            )
            raise
        self._calls[key] = handle
        self._totals[key] = _Totals()
        log.debug("fast path: call %s installed %s<->%s", key, a, b)
        return handle

    def counters(self, handle: FlowHandle) -> FlowCounters:
        """The call's packets and bytes per direction since install (see :class:`FlowCounters`)."""
        totals = self._totals_of(handle)
        (sample,) = self._get_conntrack([handle.a])
        return _advance(totals, sample)

    def poll(self, handles: Iterable[FlowHandle]) -> dict[str, FlowCounters]:
        """:meth:`counters` of many calls, by key, in a few round trips (:data:`POLL_CHUNK` requests per
        datagram): what a worker's periodic media-timeout sweep over all its kernel calls should use."""
        pending = [(handle, self._totals_of(handle)) for handle in handles]
        out: dict[str, FlowCounters] = {}
        for start in range(0, len(pending), POLL_CHUNK):
            chunk = pending[start : start + POLL_CHUNK]
            samples = self._get_conntrack([handle.a for handle, _ in chunk])
            for (handle, totals), sample in zip(chunk, samples, strict=True):
                out[handle.key] = _advance(totals, sample)
        return out

    def remove(self, handle: FlowHandle) -> FlowCounters:
        """Give the call back to userspace: delete its map elements and conntrack entries. Returns the final
        counters, read just before (the last ones read, if that read fails). If the kernel refuses the removal
        the call stays installed, and :meth:`remove` may be retried."""
        totals = self._totals_of(handle)
        try:
            final = self.counters(handle)
        except FastPathError as exc:
            log.warning("fast path: call %s: final counters unreadable (%s)", handle.key, exc)
            final = totals.done + totals.live
        try:
            self._transact(
                self._messages.remove(handle.a, handle.b, first_sequence=self._take(_BATCH_SEQUENCES)),
                f"remove {handle.key}",
            )
        except NetlinkRequestError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: already gone (someone flushed the table)
                raise
        del self._calls[handle.key]
        del self._totals[handle.key]
        self._forget_conntrack(handle)
        log.debug("fast path: call %s removed, %s", handle.key, final)
        return final

    # --- netlink -----------------------------------------------------------------------------------

    def _totals_of(self, handle: FlowHandle) -> _Totals:
        if self._calls.get(handle.key) is not handle:
            raise FastPathUsageError(f"call {handle.key!r} is not installed")
        return self._totals[handle.key]

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise FastPathUsageError("fast path is not open")
        return self._sock

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _read_sysctl(self, name: str) -> str | None:
        try:
            return (self._config.sysctl_root / name).read_text().strip()
        except OSError:
            return None

    def _take(self, count: int) -> int:
        """The first of ``count`` consecutive sequence numbers. They wrap before 32 bits overflow (a worker
        polling 1000 calls twice a second uses 2**32 in about 25 days), never inside one request."""
        if self._seq + count >= _SEQUENCE_LIMIT:
            self._seq = 1
        first = self._seq
        self._seq += count
        return first

    def _transact(self, batch: Encoded, what: str) -> None:
        sock = self._socket()
        sock.send(batch.data)
        waiting = set(batch.sequences)
        failure = 0
        while waiting:
            for msg_type, seq, message in self._receive(sock):
                if msg_type != NLMSG_ERROR:
                    continue
                code = error_code(message)
                if seq == batch.begin_sequence:
                    # The kernel could not even queue per-message errors: it answers the batch as a whole.
                    raise NetlinkRequestError(what, code or errno.EIO)
                if seq in waiting:
                    waiting.discard(seq)
                    failure = failure or code
        if failure:
            raise NetlinkRequestError(what, failure)

    def _receive(self, sock: socket.socket) -> list[tuple[int, int, bytes]]:
        try:
            data = sock.recv(_RECV_BUFFER)
        except TimeoutError as exc:
            raise FastPathError("no netlink answer from the kernel") from exc
        return list(split_messages(data))

    def _forget_conntrack(self, handle: FlowHandle) -> None:
        sock = self._socket()
        first = self._take(2)
        sock.send(
            self._messages.conntrack(handle.a, delete=True, sequence=first)
            + self._messages.conntrack(handle.b, delete=True, sequence=first + 1)
        )
        waiting = {first, first + 1}
        while waiting:
            for msg_type, seq, message in self._receive(sock):
                if msg_type == NLMSG_ERROR and seq in waiting:
                    waiting.discard(seq)
                    code = error_code(message)
                    # ENOENT: no entry for that tuple (never spoke, or the other delete took it).
                    if code not in (0, errno.ENOENT):
                        raise NetlinkRequestError(f"delete conntrack of {handle.key}", code)

    def _get_conntrack(self, legs: Sequence[FlowLeg]) -> list[ConntrackSample | None]:
        """The entries carrying each ``leg.remote → leg.local`` (None where there is none), asked for in one
        datagram; ctnetlink answers each request with the entry or an error."""
        sock = self._socket()
        first = self._take(len(legs))
        sock.send(
            b"".join(
                self._messages.conntrack(leg, delete=False, sequence=first + i) for i, leg in enumerate(legs)
            )
        )
        samples: list[ConntrackSample | None] = [None] * len(legs)
        waiting = set(range(len(legs)))
        while waiting:
            for msg_type, reply_seq, message in self._receive(sock):
                i = reply_seq - first
                if i not in waiting or msg_type == NLMSG_DONE:
                    continue  # a late answer to an earlier request
                waiting.discard(i)
                if msg_type == NLMSG_ERROR:
                    code = error_code(message)
                    if code not in (0, errno.ENOENT):
                        raise NetlinkRequestError("get conntrack", code)
                else:
                    samples[i] = parse_conntrack(message, legs[i])
        return samples


def _advance(totals: _Totals, sample: ConntrackSample | None) -> FlowCounters:
    """Fold one conntrack sample into a call's running totals; the totals so far."""
    if sample is None:
        # No entry: none yet, or it expired. Its last sample stays counted; nothing forwards right now.
        return totals.done + replace(totals.live, forwarding=False)
    if sample.entry_id != totals.entry_id:
        # A new entry: the previous one expired (or was replaced); bank its last sample.
        totals.done = totals.done + totals.live
        totals.entry_id = sample.entry_id
    totals.live = sample.counters
    return totals.done + totals.live


def _explain(code: int, table: str) -> str:
    if code == errno.EPERM:
        return f"creating nftables table ip {table} was refused: the worker lacks CAP_NET_ADMIN"
    if code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
        return (
            f"creating nftables table ip {table} failed ({os.strerror(code)}): "
            "nf_tables or its NAT support is missing from the kernel"
        )
    return f"creating nftables table ip {table} failed: {os.strerror(code)} (errno {code})"
