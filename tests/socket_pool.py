"""A relay port pool for in-process tests of the media worker: it binds each pair when it is taken, so a
test needs no worker process to have bound a whole slice first (the product's workers use
:class:`appliance.media.sockets.PortReserve`)."""

from __future__ import annotations

import errno
import socket

from appliance.media.ports import PortAllocator, PortsExhaustedError
from appliance.media.sockets import PortUnavailableError


class RtpSocketPool(PortAllocator):
    """A :class:`PortAllocator` whose ``allocate`` also binds the RTP socket on ``address``."""

    def __init__(self, address: str, min_port: int, max_port: int) -> None:
        super().__init__(min_port, max_port)
        self.address = address
        self._family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._bound: dict[int, socket.socket] = {}
        # Pairs lent by take_pair, and whether their port came from allocate().
        self._lent: dict[int, tuple[socket.socket, socket.socket, bool]] = {}

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

    def take_pair(self, rtp_port: int) -> tuple[socket.socket, socket.socket]:
        """RTP and RTCP sockets of ``rtp_port``: the RTP one from :meth:`allocate` if it came from there,
        else bound now (any port: in-process tests), the RTCP one bound now. Raises
        :class:`PortUnavailableError` with nothing left bound."""
        if rtp_port in self._lent:
            raise PortUnavailableError(f"RTP port {rtp_port} is in use by another call")
        pooled = rtp_port in self._bound
        socks: list[socket.socket] = []
        try:
            for p in (rtp_port, rtp_port + 1):
                if p == rtp_port and pooled:
                    socks.append(self._bound.pop(rtp_port))
                    continue
                sock = socket.socket(self._family, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind((self.address, p))
                sock.setblocking(False)
        except OSError as exc:
            for sock in socks:
                sock.close()
            if pooled:
                super().release(rtp_port)
            raise PortUnavailableError(
                f"cannot bind {self.address} port {p}: {exc.strerror or exc}"
            ) from None
        self._lent[rtp_port] = (socks[0], socks[1], pooled)
        return socks[0], socks[1]

    def give_back(self, rtp_port: int) -> None:
        """Close a pair from :meth:`take_pair` (and free its port if it came from :meth:`allocate`)."""
        rtp, rtcp, pooled = self._lent.pop(rtp_port)
        rtp.close()
        rtcp.close()
        if pooled:
            super().release(rtp_port)

    def release(self, rtp_port: int) -> None:
        sock = self._bound.pop(rtp_port, None)
        if sock is not None:
            sock.close()
        super().release(rtp_port)

    def close(self) -> None:
        for port in list(self._lent):
            self.give_back(port)
        for port in list(self._bound):
            self.release(port)
