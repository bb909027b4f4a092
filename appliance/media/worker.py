"""The media worker process: asyncio glue between the control socket, the RTP sockets and the relay core.

Run as ``python -m appliance.media.worker --control PATH --address 127.0.0.1 --ports MIN-MAX``. The worker
listens on a Unix ``SOCK_SEQPACKET`` socket at ``PATH``, prints ``ready`` on stdout once it does, and serves
one control connection at a time: one CBOR message (:mod:`appliance.media.control`) per datagram. When the
control connection closes the worker exits, so a worker never outlives the process that drives it.

Command contract (one call has legs ``"a"``, the caller, and ``"b"``, the callee):

* ``Offer(call_id, leg="a", sdp)``: the caller's SDP. Both legs' RTP ports are allocated and bound now; the
  reply's ``sdp`` is the description to send towards leg b (relay address, leg b's local port) and
  ``ports`` is ``(leg b's port,)``. A second offer for a known call is refused.
* ``Answer(call_id, leg="b", sdp)``: the callee's SDP. The reply's ``sdp`` is the description to send to
  leg a (relay address, leg a's port), ``ports`` is ``(leg a's port,)``; the :class:`RelayCall` starts here,
  so packets received before the answer are dropped.
* ``Update(call_id, leg, sdp)``: a re-offer from ``leg`` on an answered call; the reply's ``sdp`` is for the
  other leg.
* ``Delete(call_id)``: frees the call's ports (a ``leg`` is ignored: legs are released with their call);
  the reply carries the final ``stats``. ``Query(call_id)`` returns the same figures.
* ``Ping`` is answered ``Ok``.

A command that cannot be decoded is answered with an :class:`Error` (``request_id`` 0 when even that could
not be read) and never stops the worker. RTP sockets are drained until ``EAGAIN`` on each readiness
callback; a single ``loop.call_at`` timer tracks the earliest relay deadline. Relay events leave as control
events. RTCP is not relayed by this worker yet: only the RTP port of each pair is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import cbor2

from appliance.media.control import decode as decode_message
from appliance.media.control import encode
from appliance.media.control_events import (
    MAX_MESSAGE_SIZE,
    MAX_REQUEST_ID,
    Answer,
    ControlDecodeError,
    ControlError,
    Delete,
    Direction,
    DtmfEvent,
    Error,
    ErrorCode,
    FirstPacket,
    MediaTimeout,
    Message,
    Offer,
    Ok,
    Ping,
    Query,
    Reply,
    SsrcChanged,
    StreamStats,
    Update,
    WorkerEvent,
)
from appliance.media.ports import PortsExhaustedError
from appliance.media.relay import DtmfReceived, LegConfig, RelayCall
from appliance.media.relay import FirstPacket as RelayFirstPacket
from appliance.media.relay import SsrcChanged as RelaySsrcChanged
from appliance.media.sockets import RtpSocketPool
from appliance.media.timeout import MediaTimedOut
from appliance.sdp.codec import parse_sdp
from appliance.sdp.errors import SdpError
from appliance.sdp.model import SessionDescription
from appliance.sdp.relay import remote_endpoints, rewrite_for_relay

log = logging.getLogger("appliance.media.worker")

# Datagrams drained from one RTP socket per readiness callback before yielding to the other sockets.
MAX_BATCH: Final = 64
_RECV_SIZE: Final = 2048
_LEGS: Final = ("a", "b")


class CommandFailedError(ControlError):
    """A command the worker refuses; ``code`` is the :class:`ErrorCode` of the ``Error`` reply."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class _Call:
    """One call's ports, sockets and (after the answer) its relay."""

    ports: dict[str, int]
    socks: dict[str, socket.socket]
    remote: dict[str, LegConfig] = field(default_factory=dict)
    relay: RelayCall | None = None


def leg_config(sdp: SessionDescription) -> LegConfig:
    """The remote side of a leg from the first audio stream of the SDP it wrote; raises CommandFailedError."""
    try:
        endpoints = remote_endpoints(sdp)
    except SdpError as exc:
        raise CommandFailedError(ErrorCode.BAD_SDP, str(exc)) from None
    for ep in endpoints:
        if ep.media != "audio" or ep.port == 0 or not ep.codecs:
            continue
        event_pt = next((c.payload_type for c in ep.codecs if c.encoding.lower() == "telephone-event"), None)
        codec = next((c for c in ep.codecs if c.encoding.lower() != "telephone-event"), None)
        if codec is None:
            continue
        address = (ep.address, ep.port) if ep.accepts_media and ep.address is not None else None
        return LegConfig(
            address=address, codec_pt=codec.payload_type, codec=codec.encoding, event_pt=event_pt
        )
    raise CommandFailedError(ErrorCode.BAD_SDP, "no enabled audio stream with a codec")


def _parse(text: str) -> SessionDescription:
    try:
        return parse_sdp(text.encode())
    except SdpError as exc:
        raise CommandFailedError(ErrorCode.BAD_SDP, str(exc)) from None


def _request_id_of(data: bytes) -> int:
    """The request id of an undecodable command, when it can still be read; else 0."""
    try:
        raw: Any = cbor2.loads(data) if len(data) <= MAX_MESSAGE_SIZE else None
    except Exception:
        # Any garbage at all: the Error reply still goes out, with id 0.
        return 0
    rid = raw.get("request_id") if isinstance(raw, dict) else None
    if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid <= MAX_REQUEST_ID:
        return rid
    return 0


class MediaWorker:
    """The worker's calls and command handlers, sans-I/O: :meth:`handle` takes one control datagram and
    ``now`` and returns the reply; sockets come bound from ``pool`` and are read by :class:`WorkerServer`."""

    def __init__(
        self,
        pool: RtpSocketPool,
        *,
        media_timeout: float = 30.0,
        unwatch: Callable[[socket.socket], object] = lambda sock: None,
    ) -> None:
        self.pool = pool
        self.unwatch = unwatch
        self.media_timeout = media_timeout
        self.calls: dict[str, _Call] = {}
        self._session_version = 0
        # Relay deadlines, one live entry per call (stale ones are skipped when they surface): the packet
        # path reschedules only the call it touched instead of scanning every call.
        self._deadlines: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}

    # -- commands ---------------------------------------------------------------------------------------

    def handle(self, data: bytes, now: float) -> Reply:
        """Decode one control datagram and act on it; always returns the reply to send."""
        try:
            msg = decode_message(data)
        except ControlDecodeError as exc:
            return Error(_request_id_of(data), int(ErrorCode.BAD_MESSAGE), exc.reason)
        rid = getattr(msg, "request_id", 0)
        try:
            return self._dispatch(msg, now)
        except CommandFailedError as exc:
            return Error(rid, int(exc.code), exc.reason)
        except Exception as exc:
            # A defect in one command must not take every call down with the worker.
            log.exception("media worker: command %r failed", msg)
            return Error(rid, int(ErrorCode.INTERNAL), f"{type(exc).__name__}: {exc}")
        finally:
            call_id = getattr(msg, "call_id", None)
            if call_id is not None:
                self.reschedule(call_id)  # the command may have created, changed or ended its relay

    def _dispatch(self, msg: Message, now: float) -> Reply:
        match msg:
            case Ping():
                return Ok(msg.request_id)
            case Offer():
                return self._offer(msg)
            case Answer():
                return self._answer(msg, now)
            case Update():
                return self._update(msg)
            case Delete():
                stats = self._stats(self._call(msg.call_id))
                self.release(msg.call_id)
                return Ok(msg.request_id, stats=stats)
            case Query():
                return Ok(msg.request_id, stats=self._stats(self._call(msg.call_id)))
            case _:
                raise CommandFailedError(ErrorCode.BAD_MESSAGE, f"{type(msg).__name__} is not a command")

    def _call(self, call_id: str) -> _Call:
        call = self.calls.get(call_id)
        if call is None:
            raise CommandFailedError(ErrorCode.UNKNOWN_CALL, f"no call {call_id!r}")
        return call

    def _rewrite(self, sdp: SessionDescription, port: int) -> str:
        self._session_version += 1
        # Only the first stream is relayed; any other stream is rejected towards the far leg.
        first_audio = next((i for i, m in enumerate(sdp.media) if m.media == "audio" and m.port != 0), None)
        ports = [port if i == first_audio else None for i in range(len(sdp.media))]
        out = rewrite_for_relay(
            sdp,
            address=self.pool.address,
            ports=ports,
            session_id=sdp.origin.session_id,
            session_version=self._session_version,
        )
        return out.to_bytes().decode()

    def _offer(self, msg: Offer) -> Ok:
        if msg.leg != "a":
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, "an offer comes from leg 'a'")
        if msg.call_id in self.calls:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, f"call {msg.call_id!r} already offered")
        sdp = _parse(msg.sdp)
        config = leg_config(sdp)
        ports: dict[str, int] = {}
        try:
            for leg in _LEGS:
                ports[leg] = self.pool.allocate()
        except PortsExhaustedError as exc:
            for port in ports.values():
                self.pool.release(port)
            raise CommandFailedError(ErrorCode.NO_PORTS, str(exc)) from None
        socks = {leg: self.pool.take(port) for leg, port in ports.items()}
        self.calls[msg.call_id] = _Call(ports=ports, socks=socks, remote={"a": config})
        return Ok(msg.request_id, sdp=self._rewrite(sdp, ports["b"]), ports=(ports["b"],))

    def _answer(self, msg: Answer, now: float) -> Ok:
        call = self._call(msg.call_id)
        if msg.leg != "b":
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, "an answer comes from leg 'b'")
        if call.relay is not None:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, f"call {msg.call_id!r} already answered")
        sdp = _parse(msg.sdp)
        call.remote["b"] = leg_config(sdp)
        call.relay = RelayCall(
            local_a=call.ports["a"],
            local_b=call.ports["b"],
            remote_a=call.remote["a"],
            remote_b=call.remote["b"],
            now=now,
            media_timeout=self.media_timeout,
        )
        return Ok(msg.request_id, sdp=self._rewrite(sdp, call.ports["a"]), ports=(call.ports["a"],))

    def _update(self, msg: Update) -> Ok:
        call = self._call(msg.call_id)
        if call.relay is None or msg.leg not in _LEGS:
            raise CommandFailedError(
                ErrorCode.BAD_MESSAGE, "update needs an answered call and leg 'a' or 'b'"
            )
        sdp = _parse(msg.sdp)
        config = leg_config(sdp)
        call.remote[msg.leg] = config
        call.relay.update_remote(msg.leg, config)
        other = "b" if msg.leg == "a" else "a"
        return Ok(msg.request_id, sdp=self._rewrite(sdp, call.ports[other]), ports=(call.ports[other],))

    def _stats(self, call: _Call) -> tuple[StreamStats, ...]:
        if call.relay is None:
            return ()
        out = []
        for leg in _LEGS:
            r = call.relay.stats(leg).report()
            out.append(StreamStats(leg, Direction.IN, r.packets, r.octets, max(r.lost, 0), r.jitter_ms))
        return tuple(out)

    def release(self, call_id: str) -> None:
        """Forget a call and free its ports; each socket goes to ``unwatch`` before it is closed, so that
        no readiness callback survives on a file descriptor number the kernel will reuse."""
        call = self.calls.pop(call_id)
        for leg, sock in call.socks.items():
            self.unwatch(sock)
            sock.close()
            self.pool.release(call.ports[leg])

    # -- relay events and timers ------------------------------------------------------------------------

    @staticmethod
    def events_of(call_id: str, relay: RelayCall, now: float) -> list[WorkerEvent]:
        """Take the relay's pending events as control events (events the protocol has no message for are
        logged and dropped: resumption and one-way audio are derived by call control from timeouts)."""
        out: list[WorkerEvent] = []
        while (event := relay.next_event()) is not None:
            match event:
                case RelayFirstPacket():
                    out.append(FirstPacket(call_id, event.leg, Direction.IN, event.source))
                case RelaySsrcChanged():
                    out.append(SsrcChanged(call_id, event.leg, Direction.IN, event.old, event.new))
                case DtmfReceived():
                    out.append(DtmfEvent(call_id, event.leg, event.digit, event.duration_ms))
                case MediaTimedOut():
                    silent = max(now - event.since, 0.0)
                    out.append(MediaTimeout(call_id, event.direction, Direction.IN, silent))
                case _:
                    log.info("media worker: call %s: %s", call_id, event)
        return out

    def reschedule(self, call_id: str) -> None:
        """Record ``call_id``'s current relay deadline (after its packets, timers or commands)."""
        call = self.calls.get(call_id)
        due = call.relay.get_timer() if call is not None and call.relay is not None else None
        if due is None:
            self._due.pop(call_id, None)
        elif self._due.get(call_id) != due:
            self._due[call_id] = due
            heapq.heappush(self._deadlines, (due, call_id))

    def next_deadline(self) -> float | None:
        """The earliest deadline of any relay."""
        heap = self._deadlines
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due_calls(self, now: float) -> list[str]:
        """The calls whose deadline has come; each is forgotten until rescheduled."""
        out = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            due, call_id = heapq.heappop(heap)
            if self._due.get(call_id) == due:
                del self._due[call_id]
                out.append(call_id)
        return out


class WorkerServer:
    """The asyncio side: the control connection, RTP readers and the relay timer around a MediaWorker."""

    def __init__(self, worker: MediaWorker, control_path: str) -> None:
        self.worker = worker
        self.control_path = control_path
        self.loop = asyncio.get_running_loop()
        self.conn: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def send(self, msg: Message) -> None:
        if self.conn is None:
            return
        try:
            self.conn.send(encode(msg))
        except (BlockingIOError, BrokenPipeError, ConnectionError) as exc:
            # A control process too slow to read loses the message (a reply then times out on its side)
            # rather than stall the media of every call on this worker.
            log.warning("media worker: control message dropped: %s", exc)

    def _watch(self, call_id: str) -> None:
        call = self.worker.calls[call_id]
        for leg, sock in call.socks.items():
            self.loop.add_reader(sock.fileno(), self._readable, call_id, leg, sock)

    def _readable(self, call_id: str, leg: str, sock: socket.socket) -> None:
        call = self.worker.calls.get(call_id)
        now = self.loop.time()
        for _ in range(MAX_BATCH):
            try:
                data, source = sock.recvfrom(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("media worker: call %s leg %s: %s", call_id, leg, exc)
                break
            if call is None or call.relay is None:
                continue  # before the answer there is nowhere to send it
            for destination, out, out_leg in call.relay.receive(leg, data, (source[0], source[1]), now):
                with contextlib.suppress(OSError):
                    call.socks[out_leg].sendto(out, destination)
        if call is not None and call.relay is not None:
            for event in self.worker.events_of(call_id, call.relay, now):
                self.send(event)
            self.worker.reschedule(call_id)
            self._arm()

    def _arm(self) -> None:
        due = self.worker.next_deadline()
        if due == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = due
        if due is not None:
            self._timer = self.loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.loop.time()
        for call_id in self.worker.due_calls(now):
            call = self.worker.calls.get(call_id)
            if call is not None and call.relay is not None:
                call.relay.handle_timer(now)
                for event in self.worker.events_of(call_id, call.relay, now):
                    self.send(event)
                self.worker.reschedule(call_id)
        self._arm()

    def on_command(self, data: bytes) -> None:
        before = set(self.worker.calls)
        reply = self.worker.handle(data, self.loop.time())
        for call_id in set(self.worker.calls) - before:
            self._watch(call_id)
        self.send(reply)
        self._arm()

    async def serve(self) -> None:
        """Accept control connections one after the other; return when the first one closes."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.control_path)
        listener.bind(self.control_path)
        listener.listen(1)
        listener.setblocking(False)
        print("ready", flush=True)
        try:
            conn, _ = await self.loop.sock_accept(listener)
            conn.setblocking(False)
            self.conn = conn
            while True:
                data = await self.loop.sock_recv(conn, MAX_MESSAGE_SIZE + 1)
                if not data:
                    return
                self.on_command(data)
        finally:
            listener.close()
            if self.conn is not None:
                self.conn.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.control_path)
            for call_id in list(self.worker.calls):
                self.worker.release(call_id)


def parse_ports(text: str) -> tuple[int, int]:
    """``MIN-MAX`` as two ints; raises ``ValueError``."""
    low, sep, high = text.partition("-")
    if not sep:
        raise ValueError(f"port range {text!r} is not MIN-MAX")
    return int(low), int(high)


async def run(control: str, address: str, ports: tuple[int, int]) -> None:
    """Serve one worker until its control connection closes."""
    pool = RtpSocketPool(address, *ports)
    try:
        loop = asyncio.get_running_loop()
        worker = MediaWorker(pool, unwatch=lambda sock: loop.remove_reader(sock.fileno()))
        await WorkerServer(worker, control).serve()
    finally:
        pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="appliance.media.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--control", required=True, help="the Unix SOCK_SEQPACKET control socket path")
    parser.add_argument("--address", required=True, help="the IP address RTP sockets bind to")
    parser.add_argument("--ports", required=True, type=parse_ports, help="the RTP port range MIN-MAX")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency; the stdlib loop still works
        asyncio.run(run(args.control, args.address, args.ports))
    else:
        uvloop.run(run(args.control, args.address, args.ports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
