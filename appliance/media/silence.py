"""Silence for the placeholder local IVR: a paced stream of G.711 silence packets.

Until the IVR plays prompts, a call the appliance answers locally gets silence, so that the caller's side
sees live media (RTP keeps NAT bindings open and media-timeout watchdogs quiet) rather than a dead line.

Theory of operation. :class:`SilenceSource` is sans-I/O: packet *n* of a stream is due at the deadline
``start + n * ptime``, computed from ``n`` rather than accumulated, so pacing never drifts however long the
call lasts. The caller asks :meth:`SilenceSource.packet_at` with the current time for as long as it returns
a packet, then waits until :meth:`SilenceSource.get_timer`. A caller that fell behind by a few packets (a
busy event loop) catches up by sending them at once, which a receiver's jitter buffer absorbs; one that fell
further behind skips the missed packets: their timestamps are passed over (RFC 3550 §5.1, the timestamp
follows the sampling clock, the sequence number only packets sent) and the next packet carries the marker
bit, as the first packet after a silence period does (RFC 3551 §4.1).

:class:`SilencePlayer` is the thin asyncio glue: one UDP socket per stream, and one shared ``call_at`` tick
for all streams, whose start times are aligned on a common 20 ms grid so that one wake-up serves them all.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from appliance.media.ports import PortAllocator
from appliance.media.rtp import RtpSender

ALAW_SILENCE: Final = 0xD5  # G.711 A-law code for the smallest positive amplitude (0xD5 after even-bit XOR)
ULAW_SILENCE: Final = 0xFF  # G.711 µ-law code for amplitude zero
PTIME: Final = 0.02
CLOCK_RATE: Final = 8000
MAX_CATCH_UP: Final = 5  # late packets sent in a burst before the source skips instead (100 ms at 20 ms)

log = logging.getLogger(__name__)


class SilenceSource:
    """The RTP packets of one silence stream; see the module docstring.

    ``start`` is the deadline of the first packet (in the injected clock's seconds). ``ssrc``,
    ``initial_seq`` and ``initial_timestamp`` come from the caller (random in production, fixed in tests).
    """

    __slots__ = (
        "_index",
        "_marker",
        "_max_catch_up",
        "_payload",
        "_ptime",
        "_start",
        "packets_skipped",
        "sender",
    )

    def __init__(
        self,
        *,
        start: float,
        payload_type: int,
        silence_octet: int,
        ssrc: int,
        initial_seq: int,
        initial_timestamp: int,
        ptime: float = PTIME,
        clock_rate: int = CLOCK_RATE,
        max_catch_up: int = MAX_CATCH_UP,
    ) -> None:
        if not 0 <= silence_octet <= 0xFF or ptime <= 0 or clock_rate <= 0:
            raise ValueError("bad silence octet, packet time or clock rate")
        self.sender = RtpSender(
            ssrc=ssrc, payload_type=payload_type, initial_seq=initial_seq, initial_timestamp=initial_timestamp
        )
        self._start = start
        self._ptime = ptime
        self._payload = bytes((silence_octet,)) * round(clock_rate * ptime)
        self._index = 0
        self._marker = True  # RFC 3551 §4.1: the first packet of a talkspurt carries the marker bit
        self._max_catch_up = max_catch_up
        self.packets_skipped = 0

    def get_timer(self) -> float:
        """The deadline of the next packet."""
        return self._start + self._index * self._ptime

    def packet_at(self, now: float) -> bytes | None:
        """The next packet if its deadline has come at ``now``, else ``None``; call again until ``None``."""
        deadline = self.get_timer()
        if now < deadline:
            return None
        behind = int((now - deadline) / self._ptime)  # later deadlines that have also passed
        if behind > self._max_catch_up:
            self.sender.skip(behind * len(self._payload))
            self._index += behind
            self.packets_skipped += behind
            self._marker = True
        packet = self.sender.next_packet(self._payload, samples=len(self._payload), marker=self._marker)
        self._marker = False
        self._index += 1
        return packet.serialize()


@dataclass(frozen=True, slots=True)
class StreamStats:
    local_port: int
    packets_sent: int
    packets_received: int
    packets_skipped: int


class _Stream(asyncio.DatagramProtocol):
    """One stream's socket; whatever the peer sends is read and discarded, only counted."""

    def __init__(self, source: SilenceSource, remote: tuple[str, int], port: int) -> None:
        self.source, self.remote, self.port = source, remote, port
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0
        self.adopted = False  # the socket and port belong to the caller's pool

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received += 1

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that is not listening yet: keep sending, as RTP endpoints do.
        log.debug("silence stream on port %d: %s", self.port, exc)


class _SocketTransport:
    """The two transport calls the player makes, on a plain non-blocking socket (no await needed)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, stream: _Stream) -> None:
        self._loop, self._sock, self._stream = loop, sock, stream
        loop.add_reader(sock, self._read)

    def _read(self) -> None:
        try:
            while True:
                self._sock.recv(2048)
                self._stream.received += 1
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("RTP socket error: %s", exc)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._sock.sendto(data, addr)
        except OSError as exc:  # a full buffer or ICMP unreachable: drop this packet, keep pacing
            log.debug("RTP send failed: %s", exc)

    def close(self) -> None:
        self._loop.remove_reader(self._sock)
        self._sock.close()


class SilencePlayer:
    """Plays silence to any number of peers from sockets on ``ports`` (see the module docstring)."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        ports: PortAllocator,
        randbits: Callable[[int], int] = secrets.randbits,
        ptime: float = PTIME,
    ) -> None:
        self._loop, self._ports, self._randbits, self._ptime = loop, ports, randbits, ptime
        self._streams: dict[str, _Stream] = {}
        self._epoch = loop.time()
        self._handle: asyncio.TimerHandle | None = None

    async def start(
        self, stream_id: str, local_addr: str, remote_addr: tuple[str, int], codec_pt: int, silence_octet: int
    ) -> int:
        """Bind a socket on ``local_addr`` and an even port of the range, start sending silence to
        ``remote_addr`` from the next tick, and return the local RTP port."""
        if stream_id in self._streams:
            raise ValueError(f"stream {stream_id!r} already playing")
        now = self._loop.time()
        start = self._epoch + math.ceil((now - self._epoch) / self._ptime) * self._ptime
        bits = self._randbits
        source = SilenceSource(
            start=start, payload_type=codec_pt, silence_octet=silence_octet, ssrc=bits(32),
            initial_seq=bits(16), initial_timestamp=bits(32), ptime=self._ptime,
        )  # fmt: skip
        for attempt in range(min(self._ports.capacity, 16)):
            port = self._ports.allocate()
            stream = _Stream(source, remote_addr, port)
            try:
                await self._bind(stream, (local_addr, port))
            except OSError as exc:
                self._ports.release(port)
                # Another process holds this port: try the next pair, a few times.
                if exc.errno != errno.EADDRINUSE or attempt == min(self._ports.capacity, 16) - 1:
                    raise
                continue
            if stream_id in self._streams:  # started twice concurrently: keep the first
                self._close(stream)
                raise ValueError(f"stream {stream_id!r} already playing")
            self._streams[stream_id] = stream
            log.info("silence stream %s: %s:%d -> %s:%d", stream_id, local_addr, port, *remote_addr[:2])
            self._arm()
            return port
        raise OSError(errno.EADDRINUSE, "no bindable RTP port")  # pragma: no cover - loop returns or raises

    def adopt(
        self,
        stream_id: str,
        sock: socket.socket,
        remote_addr: tuple[str, int],
        codec_pt: int,
        silence_octet: int,
    ) -> None:
        """Like :meth:`start`, but synchronous, on a socket already bound by the caller (see
        :mod:`appliance.media.sockets`), whose port the caller also releases."""
        if stream_id in self._streams:
            raise ValueError(f"stream {stream_id!r} already playing")
        stream = _Stream(self._source(codec_pt, silence_octet), remote_addr, sock.getsockname()[1])
        stream.transport = _SocketTransport(self._loop, sock, stream)  # type: ignore[assignment]
        stream.adopted = True
        self._streams[stream_id] = stream
        self._arm()

    def _source(self, codec_pt: int, silence_octet: int) -> SilenceSource:
        now = self._loop.time()
        start = self._epoch + math.ceil((now - self._epoch) / self._ptime) * self._ptime
        bits = self._randbits
        return SilenceSource(
            start=start, payload_type=codec_pt, silence_octet=silence_octet, ssrc=bits(32),
            initial_seq=bits(16), initial_timestamp=bits(32), ptime=self._ptime,
        )  # fmt: skip

    def stop(self, stream_id: str) -> None:
        """Stop the stream and free its port pair; unknown ids are ignored (stop is idempotent)."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._close(stream)
            log.info(
                "silence stream %s stopped after %d packets", stream_id, stream.source.sender.packets_sent
            )
            self._arm()

    def close(self) -> None:
        for stream_id in list(self._streams):
            self.stop(stream_id)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def stats(self, stream_id: str) -> StreamStats:
        s = self._streams[stream_id]
        return StreamStats(s.port, s.source.sender.packets_sent, s.received, s.source.packets_skipped)

    async def _bind(self, stream: _Stream, local: tuple[str, int]) -> None:
        stream.transport, _ = await self._loop.create_datagram_endpoint(lambda: stream, local_addr=local)

    def _close(self, stream: _Stream) -> None:
        if stream.transport is not None:
            stream.transport.close()
        if not stream.adopted:
            self._ports.release(stream.port)

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._streams:
            deadline = min(s.source.get_timer() for s in self._streams.values())
            self._handle = self._loop.call_at(deadline, self._tick)

    def _tick(self) -> None:
        self._handle = None
        now = self._loop.time()
        for stream in self._streams.values():
            assert stream.transport is not None
            while (packet := stream.source.packet_at(now)) is not None:
                stream.transport.sendto(packet, stream.remote)
        self._arm()
