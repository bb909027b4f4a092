"""Allocation of RTP/RTCP port pairs from the configured media port range.

RTP goes on an even port and its RTCP on the odd port above it (RFC 3550 §11), so the allocator hands out
pairs by their even port. Allocation walks the range round-robin from where it last stopped rather than
reusing the lowest free pair: a pair just released may still receive the previous call's late packets, and
cycling through the whole range before coming back keeps those away from the next call.

Pure bookkeeping: binding the socket is the caller's job. A media worker binds its whole slice when it
starts and reports the pairs another process held; :meth:`PortAllocator.exclude` keeps those out, so a port
written into an SDP is always one the worker already holds.
"""

from __future__ import annotations

from collections.abc import Iterable

from appliance.media.rtp import MediaError


class PortsExhaustedError(MediaError):
    """Every RTP/RTCP pair in the range is in use; the call control answers the call 503 or rejects it."""


class PortAllocator:
    """RTP/RTCP port pairs within ``[min_port, max_port]`` (both inclusive).

    The first RTP port is ``min_port`` rounded up to even; a pair is only used if its RTCP port is still
    within the range. Raises ``ValueError`` if the range holds no pair.
    """

    __slots__ = ("_cursor", "_excluded", "_first", "_in_use", "_pairs")

    def __init__(self, min_port: int, max_port: int) -> None:
        first = min_port + (min_port & 1)
        if not 1 <= min_port <= max_port <= 65535 or first + 1 > max_port:
            raise ValueError(f"port range {min_port}-{max_port} holds no RTP/RTCP pair")
        self._first = first
        self._pairs = (max_port - first + 1) // 2
        self._in_use: set[int] = set()
        self._excluded: frozenset[int] = frozenset()
        self._cursor = 0

    @property
    def capacity(self) -> int:
        """How many pairs the range holds."""
        return self._pairs

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def excluded(self) -> frozenset[int]:
        """The RTP ports of the pairs :meth:`allocate` skips (see :meth:`exclude`)."""
        return self._excluded

    def contains(self, rtp_port: int) -> bool:
        """Whether ``rtp_port`` is the RTP port of one of the range's pairs."""
        index, odd = divmod(rtp_port - self._first, 2)
        return not odd and 0 <= index < self._pairs

    def exclude(self, rtp_ports: Iterable[int]) -> None:
        """Never hand out these pairs (by RTP port) from now on; replaces the previous exclusion, so a
        worker that restarted and could bind a pair again gets it back. A pair in use stays in use until
        released. Ports outside the range are ``ValueError``."""
        ports = frozenset(rtp_ports)
        outside = sorted(p for p in ports if not self.contains(p))
        if outside:
            raise ValueError(f"RTP port {outside[0]} is not a pair of this range")
        self._excluded = ports

    def allocate(self) -> int:
        """Reserve the next free pair and return its (even) RTP port; raises :class:`PortsExhaustedError`."""
        if len(self._in_use) >= self._pairs:
            raise PortsExhaustedError(f"all {self._pairs} RTP port pairs are in use")
        for step in range(self._pairs):
            index = (self._cursor + step) % self._pairs
            port = self._first + 2 * index
            if port not in self._in_use and port not in self._excluded:
                self._in_use.add(port)
                self._cursor = (index + 1) % self._pairs
                return port
        raise PortsExhaustedError(
            f"all {self._pairs} RTP port pairs are in use or unusable ({len(self._excluded)} unusable)"
        )

    def is_allocated(self, rtp_port: int) -> bool:
        return rtp_port in self._in_use

    def claim(self, rtp_port: int) -> None:
        """Mark a pair chosen elsewhere (call control's ``SetLeg``) as in use, so :meth:`allocate` skips
        it; ``ValueError`` if it is not a pair of the range or already in use."""
        if not self.contains(rtp_port) or rtp_port in self._in_use:
            raise ValueError(f"RTP port {rtp_port} is not a free pair of this range")
        self._in_use.add(rtp_port)

    def release(self, rtp_port: int) -> None:
        """Give the pair back. Releasing a pair that is not allocated is the caller's bug (``ValueError``)."""
        if rtp_port not in self._in_use:
            raise ValueError(f"RTP port {rtp_port} is not allocated")
        self._in_use.remove(rtp_port)
