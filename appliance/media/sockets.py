"""RTP sockets bound at allocation time.

Call control must put the local RTP port into its SDP answer before any coroutine can run, so the port is
bound synchronously when it is allocated: a port another process holds is skipped there and then, and
the port in the SDP is always one this process owns. The media glue later adopts the bound socket.
"""

from __future__ import annotations

import errno
import socket

from appliance.media.ports import PortAllocator, PortsExhaustedError


class RtpSocketPool(PortAllocator):
    """A :class:`PortAllocator` whose ``allocate`` also binds the RTP socket on ``address``."""

    def __init__(self, address: str, min_port: int, max_port: int) -> None:
        super().__init__(min_port, max_port)
        self.address = address
        self._family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._bound: dict[int, socket.socket] = {}

    def allocate(self) -> int:
        for _ in range(min(self.capacity, 16)):
            port = super().allocate()
            sock = socket.socket(self._family, socket.SOCK_DGRAM)
            try:
                sock.bind((self.address, port))
            except OSError as exc:
                sock.close()
                super().release(port)
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue  # held by another process: try the next pair
            sock.setblocking(False)
            self._bound[port] = sock
            return port
        raise PortsExhaustedError("no bindable RTP port in the range")

    def take(self, port: int) -> socket.socket:
        """Hand the bound socket of ``port`` to the media glue, which then owns (and closes) it."""
        return self._bound.pop(port)

    def release(self, rtp_port: int) -> None:
        sock = self._bound.pop(rtp_port, None)
        if sock is not None:
            sock.close()
        super().release(rtp_port)

    def close(self) -> None:
        for port in list(self._bound):
            self.release(port)
