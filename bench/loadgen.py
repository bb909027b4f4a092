"""The relay benchmark's load generator: N concurrent G.711 20 ms calls, 50 packets/s each way.

Each call has two stream ends, each a UDP socket on 127.0.0.1: the caller end sends to the relay's
caller-side port, the callee end to its callee-side port, and each receives what the relay forwards from
the other. One process, one thread: a paced loop wakes every millisecond (or earlier when a socket is
readable), sends every packet whose time has come with ``sendto`` in a tight loop, and drains readable
sockets with non-blocking reads. Every packet carries its send time after the
RTP header (``time.time_ns``) and each socket asks the kernel to stamp arrivals (``SO_TIMESTAMPNS``,
same clock), so the latency measured is send → arrival in the socket, not send → the moment the loop
got round to reading it: a busy generator does not inflate the relay's latency.

The generator reports its own CPU share and how late it sent: a generator near 100 % CPU or sending
late is the bottleneck and the relay's figures at that load say nothing. In CPython this loop tops out
at a few hundred calls on one core; 1000 calls needs a C generator with sendmmsg/recvmmsg.
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import time
from dataclasses import dataclass
from typing import Final

LOOPBACK: Final = "127.0.0.1"
PTIME_NS: Final = 20_000_000
TICK_S: Final = 0.001
PAYLOAD_BYTES: Final = 160  # 20 ms of G.711 at 8 kHz
_RTP: Final = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_STAMP: Final = struct.Struct("!qI")  # send time in ns, stream end index
_PAD: Final = bytes(PAYLOAD_BYTES - _STAMP.size)
# After the last send, receivers drain this long before counting the rest as lost.
DRAIN_S: Final = 0.3
SOCKET_BUFFER: Final = 1 << 20
# Linux's SO_TIMESTAMPNS / SCM_TIMESTAMPNS (asm-generic/socket.h), which the socket module does not name.
SO_TIMESTAMPNS: Final = 35
_TIMESPEC: Final = struct.Struct("@qq")
_ANCILLARY: Final = socket.CMSG_SPACE(_TIMESPEC.size)


class Schedule:
    """When each of ``ends`` stream ends sends: every 20 ms, starts spread evenly across the first 20 ms.

    Pure bookkeeping over a caller-supplied ``now_ns``; the order in which ends fall due never changes, so
    a cursor over that cycle replaces a heap.
    """

    def __init__(self, ends: int, start_ns: int) -> None:
        if ends <= 0:
            raise ValueError("a schedule needs at least one stream end")
        self.ends = ends
        self.start_ns = start_ns
        self._cursor = 0
        self._cycle = 0

    def due_at(self) -> int:
        """The time the next packet is due."""
        return self.start_ns + self._cycle * PTIME_NS + self._cursor * PTIME_NS // self.ends

    def take_due(self, now_ns: int) -> list[tuple[int, int, int]]:
        """Every ``(end, sequence, due_ns)`` due at or before ``now_ns``, in due order; advance past them."""
        out: list[tuple[int, int, int]] = []
        while (due := self.due_at()) <= now_ns:
            out.append((self._cursor, self._cycle, due))
            self._cursor += 1
            if self._cursor == self.ends:
                self._cursor = 0
                self._cycle += 1
        return out


def packet(end: int, sequence: int, send_ns: int) -> bytes:
    """An RTP PCMU packet for stream end ``end`` carrying its send time at the start of the payload."""
    header = _RTP.pack(0x80, 0, sequence & 0xFFFF, (sequence * 160) & 0xFFFFFFFF, end + 1)
    return header + _STAMP.pack(send_ns, end) + _PAD


def stamp_of(datagram: bytes) -> tuple[int, int]:
    """``(send_ns, sending end)`` from a packet built by :func:`packet`."""
    send_ns, end = _STAMP.unpack_from(datagram, _RTP.size)
    return int(send_ns), int(end)


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, int(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def _arrival(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The kernel's arrival time in ns from ``recvmsg`` ancillary data, if it is there."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return int(seconds) * 1_000_000_000 + int(nanoseconds)
    return None


@dataclass(frozen=True)
class LoadResult:
    """One run: packets sent and received, latency through the relay, and the generator's own load."""

    calls: int
    seconds: float
    sent: int
    received: int
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    generator_cpu: float  # CPU seconds / wall seconds of this process during the run
    p99_send_late_ms: float  # how far behind its schedule the generator sent
    send_errors: int

    @property
    def loss(self) -> float:
        return 0.0 if self.sent == 0 else max(0, self.sent - self.received) / self.sent

    @property
    def generator_saturated(self) -> bool:
        """True when the generator, not the relay, limited the run."""
        return self.generator_cpu > 0.9 or self.p99_send_late_ms > 2.0


class LoadGenerator:
    """``calls`` calls' stream ends, bound on loopback at construction; :meth:`run` offers the load.

    Ends ``2k`` (caller) and ``2k + 1`` (callee) belong to call ``k``; :meth:`ports` gives their local
    ports for the SDP given to the relay, :meth:`connect` the relay ports each end sends to.
    """

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self._socks: list[socket.socket] = []
        try:
            for _ in range(2 * calls):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                sock.bind((LOOPBACK, 0))
                sock.setblocking(False)
        except OSError:
            self.close()
            raise
        self._targets: list[tuple[str, int] | None] = [None] * (2 * calls)

    def close(self) -> None:
        for sock in self._socks:
            sock.close()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ports(self, call: int) -> tuple[int, int]:
        """Local ``(caller port, callee port)`` of ``call``."""
        return self._socks[2 * call].getsockname()[1], self._socks[2 * call + 1].getsockname()[1]

    def connect(self, call: int, caller_relay_port: int, callee_relay_port: int) -> None:
        """Where ``call``'s caller end and callee end send: the relay's port facing each of them."""
        self._targets[2 * call] = (LOOPBACK, caller_relay_port)
        self._targets[2 * call + 1] = (LOOPBACK, callee_relay_port)

    def run(self, seconds: float) -> LoadResult:
        """Offer the load for ``seconds``, drain for :data:`DRAIN_S`, and return what was measured."""
        targets = self._targets
        if any(t is None for t in targets):
            raise ValueError("every call needs its relay ports (connect) before run")
        socks = self._socks
        selector = selectors.DefaultSelector()
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        latencies: list[int] = []
        late: list[int] = []
        sent = received = errors = 0
        clock = time.time_ns
        start = clock()
        schedule = Schedule(len(socks), start)
        end_ns = start + int(seconds * 1e9)
        stop_ns = end_ns + int(DRAIN_S * 1e9)
        cpu0 = time.process_time()
        try:
            while (now := clock()) < stop_ns:
                if now < end_ns:
                    for end, seq, due in schedule.take_due(now):
                        sent_ns = clock()
                        try:
                            socks[end].sendto(packet(end, seq, sent_ns), targets[end])  # type: ignore[arg-type]
                        except OSError as exc:
                            if exc.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.ECONNREFUSED):
                                raise
                            errors += 1
                            continue
                        sent += 1
                        late.append(sent_ns - due)
                    wait = min(TICK_S, max(0.0, (schedule.due_at() - clock()) / 1e9))
                else:
                    wait = TICK_S
                for key, _ in selector.select(wait):
                    readable = key.fileobj
                    assert isinstance(readable, socket.socket)
                    while True:
                        try:
                            datagram, ancillary, _, _ = readable.recvmsg(2048, _ANCILLARY)
                        except (BlockingIOError, ConnectionRefusedError):
                            break
                        arrived = _arrival(ancillary) or clock()
                        send_ns, _ = stamp_of(datagram)
                        latencies.append(arrived - send_ns)
                        received += 1
        finally:
            selector.close()
        wall = (clock() - start) / 1e9
        cpu = (time.process_time() - cpu0) / wall
        ms = sorted(v / 1e6 for v in latencies)
        late_ms = sorted(v / 1e6 for v in late)
        return LoadResult(
            calls=self.calls,
            seconds=seconds,
            sent=sent,
            received=received,
            p50_ms=percentile(ms, 0.5),
            p99_ms=percentile(ms, 0.99),
            p999_ms=percentile(ms, 0.999),
            max_ms=ms[-1] if ms else None,
            generator_cpu=cpu,
            p99_send_late_ms=percentile(late_ms, 0.99) or 0.0,
            send_errors=errors,
        )
