"""Allocation of RTP/RTCP port pairs from the configured media port range.

RTP goes on an even port and its RTCP on the odd port above it (RFC 3550 §11), so the allocator hands out
pairs by their even port. Allocation walks the range round-robin from where it last stopped rather than
reusing the lowest free pair: a pair just released may still receive the previous call's late packets, and
cycling through the whole range before coming back keeps those away from the next call.

Pure bookkeeping: binding the socket is the caller's job, and a port the caller cannot bind (another process
holds it) is released by the caller and simply skipped by the next allocation.
"""

from __future__ import annotations

from appliance.media.rtp import MediaError


class PortsExhaustedError(MediaError):
    """Every RTP/RTCP pair in the range is in use; the call control answers the call 503 or rejects it."""


class PortAllocator:
    """RTP/RTCP port pairs within ``[min_port, max_port]`` (both inclusive).

    The first RTP port is ``min_port`` rounded up to even; a pair is only used if its RTCP port is still
    within the range. Raises ``ValueError`` if the range holds no pair.
    """

    __slots__ = ("_cursor", "_first", "_in_use", "_pairs")

    def __init__(self, min_port: int, max_port: int) -> None:
        first = min_port + (min_port & 1)
        if not 1 <= min_port <= max_port <= 65535 or first + 1 > max_port:
            raise ValueError(f"port range {min_port}-{max_port} holds no RTP/RTCP pair")
        self._first = first
        self._pairs = (max_port - first + 1) // 2
        self._in_use: set[int] = set()
        self._cursor = 0

    @property
    def capacity(self) -> int:
        """How many pairs the range holds."""
        return self._pairs

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> int:
        """Reserve the next free pair and return its (even) RTP port; raises :class:`PortsExhaustedError`."""
        if len(self._in_use) >= self._pairs:
            raise PortsExhaustedError(f"all {self._pairs} RTP port pairs are in use")
        for step in range(self._pairs):
            index = (self._cursor + step) % self._pairs
            port = self._first + 2 * index
            if port not in self._in_use:
                self._in_use.add(port)
                self._cursor = (index + 1) % self._pairs
                return port
        raise PortsExhaustedError(f"all {self._pairs} RTP port pairs are in use")  # pragma: no cover

    def release(self, rtp_port: int) -> None:
        """Give the pair back. Releasing a pair that is not allocated is the caller's bug (``ValueError``)."""
        if rtp_port not in self._in_use:
            raise ValueError(f"RTP port {rtp_port} is not allocated")
        self._in_use.remove(rtp_port)
