"""The relay's RTP/RTCP sockets: where a media worker's pairs come from.

Call control must put the local RTP port into its SDP before any coroutine can run, so the port in an SDP
must already be one the relay holds: :class:`PortReserve` — a media worker binds every pair of its slice
when it starts, reports the pairs another process held, and lends the bound sockets to calls (``SetLeg``
and the SDP commands). It satisfies :class:`RelayPorts`, what :class:`~appliance.media.commands.MediaWorker`
needs (in-process tests use a pool that binds at allocation time, ``tests/socket_pool.py``).
"""

from __future__ import annotations

import errno
import resource
import socket
from typing import Final, Protocol

from appliance.media.ports import PortAllocator
from appliance.media.rtp import MediaError

# SO_RCVBUF of an idle pair: the kernel doubles it and rounds it up to its minimum (a few KiB), so a
# stranger spraying the slice pins little memory. In use, a pair gets the kernel's default back.
IDLE_BUFFER: Final = 1024
# Datagrams discarded at most per drain: a small idle buffer holds a handful; this bounds a flood.
DRAIN_LIMIT: Final = 4096
FD_MARGIN: Final = 64


class RelayPorts(Protocol):
    """What the media worker needs of its ports: a free pair for its SDP commands (:meth:`allocate`, or
    :meth:`release` it untaken), a pair's two sockets for a call (:meth:`take_pair`, raising
    :class:`PortUnavailableError`; on failure a pair from :meth:`allocate` is released) and back
    (:meth:`give_back`, after which the caller no longer touches the sockets)."""

    address: str

    @property
    def in_use(self) -> int: ...

    def allocate(self) -> int: ...

    def release(self, rtp_port: int) -> None: ...

    def take_pair(self, rtp_port: int) -> tuple[socket.socket, socket.socket]: ...

    def give_back(self, rtp_port: int) -> None: ...


class PortUnavailableError(MediaError):
    """A pair that cannot be handed out: another process holds it, it is outside the slice, or a call
    already has it. The worker answers ``NO_PORTS``."""


class ReserveError(MediaError):
    """A worker cannot hold its port slice; it does not start."""


class FdLimitError(ReserveError):
    """The process may not open enough file descriptors to hold its whole port slice."""


def fd_budget(pairs: int) -> int:
    """File descriptors a worker holding ``pairs`` pairs may need: two sockets a pair, a recording file for
    each call (two pairs a call) and a margin for the control socket, stdio, netlink and the event loop."""
    return 2 * pairs + pairs // 2 + FD_MARGIN


def raise_fd_limit(needed: int) -> int:
    """Raise ``RLIMIT_NOFILE``'s soft limit to the hard limit and return it; :class:`FdLimitError` names
    both figures when even the hard limit is below ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise FdLimitError(
            f"the port slice needs {needed} file descriptors but RLIMIT_NOFILE allows {hard} "
            "(raise LimitNOFILE in appliance.service or ulimit -n, or narrow the port range)"
        )
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else needed
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def _drain(sock: socket.socket) -> int:
    """Discard what is queued on ``sock``; returns how many datagrams (bounded, so a flood cannot hold
    the worker here)."""
    for count in range(DRAIN_LIMIT):
        try:
            sock.recv(1)
        except (BlockingIOError, InterruptedError):
            return count
        except OSError:
            # An ICMP error queued by an earlier send; it is consumed by this read too.
            continue
    return DRAIN_LIMIT


class PortReserve:
    """Every RTP/RTCP pair of a worker's slice ``[min_port, max_port]``, bound on ``address`` by
    :meth:`open` when the worker starts.

    Call control writes a relay port into an SDP before the worker hears of the call, so the worker
    holds the whole slice from the start: a pair another process holds is found then, reported
    (:attr:`unusable`) and never handed out, instead of failing a call whose SDP already went out.
    An idle pair has no reader and a small receive buffer (what arrives there is garbage or a previous
    call's late packets); :meth:`take_pair` drains it and gives it the working buffer, :meth:`give_back`
    drains it and makes it idle again. A port outside the slice (call control never names one; tools and
    tests that choose their own ports do) is bound when taken and closed when given back, as before the
    reserve existed. :meth:`allocate` picks a free pair (round-robin, see
    :class:`PortAllocator`) for the worker's own SDP commands.
    """

    def __init__(
        self, address: str, min_port: int, max_port: int, *, active_buffer: int | None = None
    ) -> None:
        """``active_buffer``: the ``SO_RCVBUF`` a pair gets while a call uses it (None: the kernel's
        default, what a freshly bound socket has)."""
        self.address = address
        self.range = (min_port, max_port)
        self._family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._allocator = PortAllocator(min_port, max_port)
        self._idle: dict[int, tuple[socket.socket, socket.socket]] = {}
        self._lent: dict[int, tuple[socket.socket, socket.socket]] = {}
        # Pairs outside the slice, bound on demand (see the class docstring).
        self._extra: dict[int, tuple[socket.socket, socket.socket]] = {}
        self._active_buffer = active_buffer
        self.unusable: frozenset[int] = frozenset()

    @property
    def capacity(self) -> int:
        return self._allocator.capacity

    @property
    def in_use(self) -> int:
        return self._allocator.in_use

    def open(self) -> frozenset[int]:
        """Bind every pair; returns (and keeps in :attr:`unusable`) the RTP ports of the pairs that could
        not be bound. Other bind errors (no such address) raise ``OSError`` with nothing left bound."""
        unusable = []
        first = self.range[0] + (self.range[0] & 1)
        try:
            for index in range(self._allocator.capacity):
                port = first + 2 * index
                pair = self._bind(port)
                if pair is None:
                    unusable.append(port)
                else:
                    self._idle[port] = pair
        except OSError:
            self.close()
            raise
        self.unusable = frozenset(unusable)
        self._allocator.exclude(self.unusable)
        return self.unusable

    def _bind(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        socks: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(self._family, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.setblocking(False)
                if self._active_buffer is None:
                    self._active_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, IDLE_BUFFER)
                sock.bind((self.address, p))
        except OSError as exc:
            for sock in socks:
                sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None  # another process holds it (or it is privileged): skip the pair
            raise
        return socks[0], socks[1]

    def allocate(self) -> int:
        """A free pair's RTP port, for :meth:`take_pair`; raises :class:`PortsExhaustedError`."""
        return self._allocator.allocate()

    def release(self, rtp_port: int) -> None:
        """Give back a pair :meth:`allocate` returned that was never taken."""
        if rtp_port in self._lent:
            raise ValueError(f"RTP port {rtp_port} is taken; give_back it")
        self._allocator.release(rtp_port)

    def take_pair(self, rtp_port: int) -> tuple[socket.socket, socket.socket]:
        """The bound RTP and RTCP sockets of ``rtp_port`` for a call, drained, with the working buffer;
        raises :class:`PortUnavailableError`. The pair is the caller's until :meth:`give_back`."""
        pair = self._idle.get(rtp_port)
        if pair is None:
            if rtp_port in self._lent or rtp_port in self._extra:
                raise PortUnavailableError(f"RTP port {rtp_port} is in use by another call")
            if rtp_port in self.unusable:
                raise PortUnavailableError(f"RTP port {rtp_port} is held by another process")
            if self._allocator.contains(rtp_port):
                raise PortUnavailableError(f"RTP port {rtp_port}: the reserve is not open")
            return self._bind_extra(rtp_port)
        if not self._allocator.is_allocated(rtp_port):
            self._allocator.claim(rtp_port)  # chosen by call control (SetLeg), not by allocate()
        del self._idle[rtp_port]
        assert self._active_buffer is not None
        for sock in pair:
            # Anything queued arrived while no call had the pair: it must not reach this call's peer.
            _drain(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._active_buffer)
        self._lent[rtp_port] = pair
        return pair

    def _bind_extra(self, rtp_port: int) -> tuple[socket.socket, socket.socket]:
        socks: list[socket.socket] = []
        try:
            for p in (rtp_port, rtp_port + 1):
                sock = socket.socket(self._family, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind((self.address, p))
                sock.setblocking(False)
        except OSError as exc:
            for sock in socks:
                sock.close()
            raise PortUnavailableError(
                f"cannot bind {self.address} port {p} (outside the slice): {exc.strerror or exc}"
            ) from None
        self._extra[rtp_port] = (socks[0], socks[1])
        return socks[0], socks[1]

    def give_back(self, rtp_port: int) -> None:
        """The call is done with the pair: drained and idle again (still bound)."""
        extra = self._extra.pop(rtp_port, None)
        if extra is not None:
            for sock in extra:
                sock.close()
            return
        pair = self._lent.pop(rtp_port)
        for sock in pair:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, IDLE_BUFFER)
            _drain(sock)
        self._idle[rtp_port] = pair
        self._allocator.release(rtp_port)

    def close(self) -> None:
        """Close every socket, idle or lent."""
        for pairs in (self._idle, self._lent, self._extra):
            for rtp, rtcp in pairs.values():
                rtp.close()
                rtcp.close()
            pairs.clear()
