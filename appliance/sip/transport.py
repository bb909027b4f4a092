"""The asyncio edge of SIP: UDP, TCP and TLS sockets around a sans-I/O core (STYLE.md rule 4).

Every received datagram or framed stream message goes to ``core.receive(data, peer, now)``; afterwards the
core's outgoing messages are written and its single timer re-armed. No protocol decision is made here.
Stream connections are kept per peer address so that responses and in-dialog requests reuse the
connection the peer opened (RFC 3261 §18.2.2), and outgoing requests to a stream peer open one on demand.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Protocol, cast

from appliance.sip.errors import DecodeError
from appliance.sip.events import Peer
from appliance.sip.stream import StreamFramer

log = logging.getLogger("appliance.sip.transport")


class Core(Protocol):
    def receive(self, data: bytes, peer: Peer, now: float, *, stream: bool = False) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def datagrams_to_send(self) -> list[tuple[Peer, bytes]]: ...


class SipTransports:
    """Owns the SIP sockets of the appliance and pumps the core."""

    def __init__(
        self,
        core: Core,
        *,
        max_message_size: int,
        tls_context: ssl.SSLContext | None = None,
        after_flush: Callable[[], None] | None = None,
    ) -> None:
        self.core = core
        self._after_flush = after_flush
        self.max_message_size = max_message_size
        self.tls_context = tls_context
        self.loop = asyncio.get_running_loop()
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self._streams: dict[tuple[str, str, int], _StreamProtocol] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self.addresses: dict[str, tuple[str, int]] = {}

    # ---------------------------------------------------------------------------------- listening
    async def listen_udp(self, host: str, port: int) -> tuple[str, int]:
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _DatagramProtocol(self), local_addr=(host, port)
        )
        self._udp = transport
        _enlarge_buffers(transport.get_extra_info("socket"))
        sockname = transport.get_extra_info("sockname")
        self.addresses["udp"] = (sockname[0], sockname[1])
        return self.addresses["udp"]

    async def listen_stream(self, transport: str, host: str, port: int) -> tuple[str, int]:
        ctx = self.tls_context if transport == "tls" else None
        server = await self.loop.create_server(lambda: _StreamProtocol(self, transport), host, port, ssl=ctx)
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        self.addresses[transport] = (sockname[0], sockname[1])
        return self.addresses[transport]

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._udp is not None:
            self._udp.close()
        for conn in list(self._streams.values()):
            conn.close()
        for server in self._servers:
            server.close()
            await server.wait_closed()

    # ----------------------------------------------------------------------------------- pumping
    def received(self, data: bytes, peer: Peer, *, stream: bool = False) -> None:
        try:
            self.core.receive(data, peer, self.loop.time(), stream=stream)
        except Exception:
            # A defect in the stack must cost this one message, not the process and every other call.
            log.exception("internal error handling a message from %s", peer)
        self.flush()

    def flush(self) -> None:
        for peer, data in self.core.datagrams_to_send():
            if peer.transport == "udp":
                if self._udp is not None:
                    self._udp.sendto(data, (peer.host, peer.port))
            else:
                self._send_stream(peer, data)
        if self._after_flush is not None:
            self._after_flush()
        self._rearm()

    def _rearm(self) -> None:
        due = self.core.get_timer()
        if due == self._timer_due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = self.loop.call_at(due, self._fire) if due is not None else None

    def _fire(self) -> None:
        self._timer = None
        self._timer_due = None
        try:
            self.core.handle_timer(self.loop.time())
        except Exception:
            log.exception("internal error handling a timer")
        self.flush()

    # ----------------------------------------------------------------------------------- streams
    def _send_stream(self, peer: Peer, data: bytes) -> None:
        conn = self._streams.get((peer.transport, peer.host, peer.port))
        if conn is not None:
            conn.write(data)
            return
        conn = _StreamProtocol(self, peer.transport)
        conn.pending.append(data)
        self._streams[(peer.transport, peer.host, peer.port)] = conn
        self.loop.create_task(self._connect(conn, peer))

    async def _connect(self, conn: _StreamProtocol, peer: Peer) -> None:
        ctx = self.tls_context if peer.transport == "tls" else None
        if peer.transport == "tls" and ctx is None:
            ctx = ssl.create_default_context()
        try:
            await self.loop.create_connection(lambda: conn, peer.host, peer.port, ssl=ctx)
        except OSError as exc:
            log.warning("cannot connect to %s: %s", peer, exc)
            self._streams.pop((peer.transport, peer.host, peer.port), None)

    def stream_opened(self, conn: _StreamProtocol, peer: Peer) -> None:
        self._streams[(peer.transport, peer.host, peer.port)] = conn

    def stream_closed(self, peer: Peer | None) -> None:
        if peer is not None:
            self._streams.pop((peer.transport, peer.host, peer.port), None)


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransports) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data in (b"\r\n\r\n", b"\r\n"):
            return  # RFC 5626 §4.4.1 keep-alive over UDP (STUN keep-alives are not answered here)
        self._owner.received(data, Peer("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the transaction timers handle the consequence.
        log.debug("UDP error: %s", exc)


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, owner: SipTransports, transport_name: str) -> None:
        self._owner = owner
        self._name = transport_name
        self._transport: asyncio.Transport | None = None
        self._framer = StreamFramer(owner.max_message_size)
        self.peer: Peer | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        self._transport = cast(asyncio.Transport, transport)
        addr = transport.get_extra_info("peername")
        self.peer = Peer(self._name, addr[0], addr[1])
        self._owner.stream_opened(self, self.peer)
        for data in self.pending:
            self._transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        framer = self._framer
        try:
            framer.feed(data)
            while (message := framer.next_message()) is not None:
                self._owner.received(message, self.peer, stream=True)
        except DecodeError as exc:
            # A stream that cannot be framed cannot be resynchronised: close it (RFC 3261 §18.3).
            log.info("closing %s: %s", self.peer, exc.reason)
            self.close()
            return
        pongs = framer.pongs_due()
        if pongs and self._transport is not None:
            self._transport.write(b"\r\n" * pongs)  # RFC 5626 §3.5.1 CRLF keep-alive pong

    def write(self, data: bytes) -> None:
        if self._transport is None:
            self.pending.append(data)
        else:
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.stream_closed(self.peer)


# A burst of datagrams (a trunk's retransmissions after a WAN hiccup, a flood being rate limited) must wait
# in the kernel, not be dropped there before the rate limiter and the transaction layer can see it.
UDP_BUFFER_BYTES = 4 << 20


def _enlarge_buffers(sock: socket.socket | None) -> None:
    if sock is None:
        return
    for force, plain in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF), (_SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            # The FORCE variants pass net.core.[rw]mem_max; they need CAP_NET_ADMIN, which the unit grants.
            sock.setsockopt(socket.SOL_SOCKET, force, UDP_BUFFER_BYTES)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, UDP_BUFFER_BYTES)
            except OSError as exc:
                log.warning("cannot enlarge SIP socket buffer: %s", exc)


_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def load_tls_context(certificate: str, private_key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certificate, private_key)
    return ctx
