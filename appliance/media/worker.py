"""The media worker process: asyncio glue between the control socket, the RTP/RTCP sockets and the calls.

Run as ``python -m appliance.media.worker --control PATH --address 127.0.0.1 --ports MIN-MAX`` with the
options of :func:`main` (``--media-timeout``, ``--recording-dir``/``--recording-key``,
``--voicemail-dir``/``--voicemail-key``, ``--no-fastpath``, ``--worker-id``, ``--scheduling``: its CPU
priority, :mod:`appliance.media.scheduling`). The worker first binds
every RTP/RTCP pair of its slice (:class:`PortReserve`: call control writes a port into an SDP before the
worker hears of the call, so the worker must already hold it), raising ``RLIMIT_NOFILE``'s soft limit to
the hard one for that. It then listens on a Unix ``SOCK_SEQPACKET`` socket at ``PATH``, prints ``ready`` on
stdout (or ``error: REASON`` and exits 1 if it cannot hold its slice) and serves one control connection:
one CBOR message (:mod:`appliance.media.control`) per datagram, the first of which is the worker's
:class:`PortsReserved` (the pairs another process held). When the control connection closes the worker
exits, so a worker never outlives the process that drives it: an orderly close, or one lost because the
control process died (an end of stream, a reset, a broken pipe), logs one line and ends the process with
status 0 once its sockets are closed (:meth:`WorkerServer.serve`).

The calls and commands are :class:`~appliance.media.commands.MediaWorker`'s (the command contract is
there); this module is the glue around it, and the command line.

The packet path (:meth:`WorkerServer._readable`) is one function from ``recvfrom`` to ``sendto``: one
datagram per readiness callback (readiness is level-triggered, so a socket with more queued is called again
on the loop's next turn, and no read ends in ``EAGAIN``), handed to the call, its sends made, then three
attribute checks on the relay -- a latch learnt or moved (the fast path judges the call), events pending
(sent to call control), a deadline earlier than the armed timer. No deadline is computed per packet: one
``loop.call_at`` timer runs the sweep (:meth:`MediaWorker.handle_timer`) at the earliest relay deadline or
stats report, at most every ``SWEEP_GAP`` (0.2 s), so timeouts and lost DTMF ends are reported up to that
late. The cyclic garbage collector is off after start-up (the start-up heap frozen); the sweep runs it
on the young objects when enough accumulated and over the whole heap every minute, so that no collection
pauses a batch of packets. Every second the worker sends a :class:`WorkerStats` with the drop counters by
reason.

IVR media has a timer of its own (:mod:`appliance.media.ivr_commands` says why): one ``loop.call_at`` at
the earliest packet or recording deadline of any endpoint. uvloop's ``loop.time()`` has millisecond
resolution and is read once per loop iteration (measured: it trails ``time.monotonic()`` by 0-1 ms, and a
``call_at`` fires within ±0.6 ms of its deadline), so the pacing timer reads ``time.monotonic()`` (the
same clock, at full resolution) when it fires, and sends every packet due within :data:`PACING_EARLY` of
it: packets leave at most that early. A busy worker reads hundreds of sockets in one loop iteration, which
would hold the timer back for as long, so the packet path of an IVR call (a fourth attribute check,
:attr:`MediaCall.inspect`, for the others) also sends whatever is due, between two reads: with 500
sessions on one worker (bench-ivr) the p99 pacing error went from 25-45 ms to 0.3 ms. Unless
``--no-fastpath`` is given, :func:`open_fastpath` opens the worker's own kernel fast path table
(``appliance_media_<worker-id>``); where the host cannot (forwarding off, no nf_tables, no privilege) the
worker logs why and relays every call in userspace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from appliance.media.call import MediaCall, Send
from appliance.media.command_types import CommandFailedError, RecordingConfig
from appliance.media.commands import MediaWorker, leg_config, recording_name
from appliance.media.control import encode
from appliance.media.control_events import (
    MAX_MESSAGE_SIZE,
    Message,
    PortsReserved,
    RecordDone,
    RecordEndReason,
)
from appliance.media.fastpath import FastPathConfig, FastPathUnavailable, KernelFastPath
from appliance.media.fastpath_rules import DEFAULT_TABLE, FastPathError
from appliance.media.ivr_commands import IvrMedia, VoicemailConfig
from appliance.media.ivr_recorder import VoicemailRecorder
from appliance.media.offload import Offloader
from appliance.media.scheduling import POLICIES, Scheduling, apply_scheduling
from appliance.media.sockets import PortReserve, ReserveError, fd_budget, raise_fd_limit

__all__ = [
    "CommandFailedError",
    "MediaWorker",
    "RecordingConfig",
    "WorkerOptions",
    "WorkerServer",
    "leg_config",
    "main",
    "parse_args",
    "recording_name",
]

log = logging.getLogger("appliance.media.worker")

_RECV_SIZE: Final = 2048
_RecvFrom = Callable[[int], tuple[bytes, Any]]
# The timer never fires sooner than this after the previous sweep: deadlines of many calls coalesce into
# one pass (media timeouts promise ±0.5 s; a DTMF event whose end packets were lost is closed 0.5 s idle).
SWEEP_GAP: Final = 0.2
# The cyclic collector is off in the worker (its pauses were most of the latency tail): the sweep collects
# the youngest generation when this many tracked objects accumulated (one pass of a few thousand young
# objects is well under a millisecond) and the whole heap every GC_FULL_INTERVAL seconds.
GC_YOUNG: Final = 2000
GC_MIDDLE: Final = 10
GC_FULL_INTERVAL: Final = 60.0
# A packet due this soon after the pacing timer fired leaves with those due already, rather than one more
# wake-up a fraction of a millisecond later.
PACING_EARLY: Final = 0.0005
# Control messages kept while call control's socket is full (a few seconds of a busy worker's events).
CONTROL_BACKLOG: Final = 10000


class WorkerServer:
    """The asyncio side: the control connection, socket readers and the one timer around a MediaWorker."""

    def __init__(self, worker: MediaWorker, control_path: str, greeting: PortsReserved) -> None:
        self.worker = worker
        self.control_path = control_path
        self.greeting = greeting
        self.loop = asyncio.get_running_loop()
        self.conn: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._swept = -math.inf
        self._full_gc_due = self.loop.time() + GC_FULL_INTERVAL
        self._pacer: asyncio.TimerHandle | None = None
        self._pacer_at = math.inf  # when the pacing timer fires (no later than _next_due)
        self._next_due = math.inf  # the earliest IVR deadline
        self._backlog: deque[bytes] = deque()
        worker.watch = self._watch
        worker.unwatch = self._unwatch
        worker.ivr.finish = self._finish_recording

    def send(self, msg: Message) -> None:
        """Send one message to call control. A control process slow to read gets it later, in order,
        from a backlog written when its socket is writable again -- a voicemail's ``RecordDone`` must not
        be lost to a burst of digits -- and never stalls the media; only beyond :data:`CONTROL_BACKLOG`
        queued messages is one dropped (a reply then times out on its side)."""
        conn = self.conn
        if conn is None:
            return
        data = encode(msg)
        if not self._backlog:
            try:
                conn.send(data)
                return
            except BlockingIOError:
                self.loop.add_writer(conn.fileno(), self._drain_backlog)
            except (BrokenPipeError, ConnectionError) as exc:
                log.warning("media worker: control message dropped: %s", exc)
                return
        if len(self._backlog) >= CONTROL_BACKLOG:
            log.warning("media worker: control message dropped: %d queued", len(self._backlog))
            return
        self._backlog.append(data)

    def _drain_backlog(self) -> None:
        conn = self.conn
        backlog = self._backlog
        while conn is not None and backlog:
            try:
                conn.send(backlog[0])
            except BlockingIOError:
                return
            except (BrokenPipeError, ConnectionError) as exc:
                log.warning("media worker: %d control messages dropped: %s", len(backlog), exc)
                backlog.clear()
                break
            backlog.popleft()
        if conn is not None:
            self.loop.remove_writer(conn.fileno())

    def _watch(self, sock: socket.socket, call_id: str, leg: str, rtcp: bool) -> None:
        # MediaWorker watches a leg's sockets once the call is in .calls and unwatches them before it
        # leaves: the callback can hold the call, and the bound recvfrom, instead of looking them up.
        call = self.worker.calls[call_id]
        self.loop.add_reader(sock.fileno(), self._readable, call, leg, rtcp, sock.recvfrom)

    def _unwatch(self, sock: socket.socket) -> None:
        self.loop.remove_reader(sock.fileno())

    def _readable(self, call: MediaCall, leg: str, rtcp: bool, recvfrom: _RecvFrom) -> None:
        # The packet path. One datagram per callback: readiness is level-triggered, so a socket with more
        # queued is called again on the loop's next turn, and no read ends in EAGAIN (a failed syscall and
        # an exception, as dear as a datagram's own work when most wake-ups find one or two).
        now = self.loop.time()
        try:
            data, source = recvfrom(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("media worker: call %s leg %s: %s", call.call_id, leg, exc)
            return
        for out_sock, out, destination in call.receive(leg, rtcp, data, source, now):
            try:  # noqa: SIM105 - a with block costs two calls per packet, a try nothing
                out_sock.sendto(out, destination)
            except OSError:
                pass  # ICMP-reported unreachable peer, full buffer: that datagram is lost
        if call.inspect:
            # IVR media: a barge-in, a digit or a recording's end may have queued events and moved a deadline.
            events = self.worker.ivr.after_packets(call)
            if events:
                for event in events:
                    self.send(event)
                self._pace()
            if time.monotonic() + PACING_EARLY >= self._next_due:
                # Packets are due: sent now, between two reads, rather than after every socket ready in this
                # loop iteration has been read (hundreds at a time on a busy worker).
                self._paced()
        relay = call.relay
        if relay is None:
            return
        # Three attribute checks and no call in the common case: no latch moved, nothing to report, no
        # deadline earlier than the armed sweep.
        if relay.latch_epoch != call.latch_epoch:
            self.worker.latch_moved(call)
        if relay.events:
            for event in self.worker.events_of(call, now):
                self.send(event)
        if relay.wake < self._timer_at:
            self._sooner(relay.wake)

    def _sooner(self, due: float) -> None:
        due = max(due, self._swept + SWEEP_GAP)
        if due < self._timer_at:
            self._set_timer(due)

    def _arm(self) -> None:
        self._set_timer(max(self.worker.next_deadline(), self._swept + SWEEP_GAP))

    def _set_timer(self, due: float) -> None:
        if due == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = self.loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = self._swept = self.loop.time()
        for event in self.worker.handle_timer(now):
            self.send(event)
        self._collect(now)
        self._arm()

    def _collect(self, now: float) -> None:
        """The cyclic collector's work, at the sweep instead of at whichever allocation crossed its
        threshold (see :func:`run`)."""
        if now >= self._full_gc_due:
            self._full_gc_due = now + GC_FULL_INTERVAL
            gc.collect()
            return
        young, middle, _ = gc.get_count()
        if young > GC_YOUNG:
            gc.collect(1 if middle >= GC_MIDDLE else 0)

    def _pace(self) -> None:
        """Note the earliest IVR deadline and make sure a timer fires by then. A timer armed earlier is
        kept (firing early costs one look at the heap; re-arming costs a timer handle, and the deadline
        moves with every packet sent)."""
        due = self.worker.ivr.get_timer()
        self._next_due = math.inf if due is None else due
        if due is None or due >= self._pacer_at:
            return
        if self._pacer is not None:
            self._pacer.cancel()
        self._pacer_at = due
        self._pacer = self.loop.call_at(due, self._pacer_fired)

    def _pacer_fired(self) -> None:
        self._pacer, self._pacer_at = None, math.inf
        self._paced()

    def _paced(self) -> None:
        """Send every IVR packet due (from the pacing timer or the packet path) and report the events."""
        sends, events = self.worker.ivr.due(time.monotonic() + PACING_EARLY)
        self._send_all(sends)
        for event in events:
            self.send(event)
        self._pace()

    def _finish_recording(self, recorder: VoicemailRecorder, reason: RecordEndReason) -> None:
        """Close a voicemail in a thread (its fsyncs must not hold up any leg's packets); the
        ``RecordDone`` is sent once the file is on disk."""
        future = self.loop.run_in_executor(None, recorder.finish, reason)
        future.add_done_callback(self._recording_finished)

    def _recording_finished(self, future: asyncio.Future[RecordDone]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("media worker: voicemail not finished: %r", exc)
            return
        self.send(future.result())

    @staticmethod
    def _send_all(sends: list[Send]) -> None:
        for sock, out, destination in sends:
            try:
                sock.sendto(out, destination)
            except OSError as exc:  # a full buffer or an unreachable peer loses this packet, nothing more
                log.debug("media worker: packet not sent: %s", exc)

    def on_command(self, data: bytes) -> None:
        self.send(self.worker.handle(data, self.loop.time()))
        events, self.worker.ivr.events = self.worker.ivr.events, []
        for event in events:
            self.send(event)
        sends, self.worker.early_sends = self.worker.early_sends, []
        self._send_all(sends)
        self._arm()
        self._pace()

    def _control_lost(self, error: str | None) -> None:
        """Log the end of the control connection, once: at warning level when it was reset, or closed with
        calls still held (the control process died rather than shutting the worker down), else at info."""
        worker, calls = self.worker.worker_id, len(self.worker.calls)
        level = logging.WARNING if error is not None or calls else logging.INFO
        how = f"lost ({error})" if error is not None else "closed"
        log.log(level, "media worker %d: control connection %s with %d calls; exiting", worker, how, calls,
                extra={"ctx": {"worker": worker, "calls": calls, "error": error}})  # fmt: skip

    async def serve(self) -> None:
        """Accept one control connection and serve it; return (for the process to exit with status 0)
        when it ends, whether closed in order or lost with the control process (end of stream, reset,
        broken pipe). Every socket is closed and every call released on the way out."""
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
            self.send(self.greeting)
            self._arm()
            while True:
                try:
                    data = await self.loop.sock_recv(conn, MAX_MESSAGE_SIZE + 1)
                except ConnectionError as exc:  # ECONNRESET, EPIPE
                    # The control process died with a message of ours unread (a SIGKILL): the usual way a
                    # worker learns it is on its own, not a fault of the worker.
                    self._control_lost(exc.strerror or type(exc).__name__)
                    return
                if not data:
                    self._control_lost(None)
                    return
                self.on_command(data)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            if self._pacer is not None:
                self._pacer.cancel()
            if self.conn is not None and self._backlog:
                self.loop.remove_writer(self.conn.fileno())
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


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < 86400:
        raise ValueError(f"{text} is not a duration in seconds")
    return value


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """The worker's command line, parsed."""

    control: str
    address: str
    ports: tuple[int, int]
    media_timeout: float = 30.0
    recording: RecordingConfig | None = None
    fastpath: bool = True
    worker_id: int = 0
    voicemail: VoicemailConfig | None = None
    scheduling: Scheduling = "normal"


def reserve(options: WorkerOptions) -> tuple[PortReserve, PortsReserved]:
    """Bind the worker's whole slice; raises :class:`ReserveError` (the process may not hold that many
    descriptors, or too much of the slice is held by others to report) or ``OSError`` (the address is
    not the host's)."""
    pool = PortReserve(options.address, *options.ports)
    raise_fd_limit(fd_budget(pool.capacity))
    started = time.perf_counter()
    unusable = pool.open()
    elapsed_ms = (time.perf_counter() - started) * 1e3
    log.info(
        "media worker %d: %d RTP/RTCP pairs of %d-%d bound in %.0f ms; %d held by another process %s",
        options.worker_id, pool.capacity - len(unusable), *options.ports, elapsed_ms, len(unusable),
        sorted(unusable)[:20],
    )  # fmt: skip
    greeting = PortsReserved(options.worker_id, *options.ports, tuple(unusable))
    if len(encode(greeting)) > MAX_MESSAGE_SIZE:
        pool.close()
        raise ReserveError(f"{len(unusable)} pairs of the slice are held by other processes")
    return pool, greeting


async def run(options: WorkerOptions, pool: PortReserve, greeting: PortsReserved) -> None:
    """Serve one worker until its control connection closes (``pool`` from :func:`reserve`)."""
    offload = open_fastpath(options) if options.fastpath else None
    try:
        loop = asyncio.get_running_loop()
        worker = MediaWorker(
            pool,
            media_timeout=options.media_timeout,
            recording=options.recording,
            worker_id=options.worker_id,
            offload=offload,
            start=loop.time(),
            ivr=IvrMedia(voicemail=options.voicemail),
        )
        # Everything built so far lives as long as the process: frozen out of every collection. The
        # packet path makes no reference cycles, so automatic collection is off and the sweep collects.
        gc.collect()
        gc.freeze()
        gc.disable()
        await WorkerServer(worker, options.control, greeting).serve()
    finally:
        pool.close()
        if offload is not None:
            offload.close()


def open_fastpath(options: WorkerOptions) -> Offloader | None:
    """The worker's kernel fast path (its own nftables table), or None where the host cannot do it."""
    fastpath = KernelFastPath(FastPathConfig(table=f"{DEFAULT_TABLE}_{options.worker_id}"))
    try:
        fastpath.open()
    except (FastPathUnavailable, FastPathError, OSError) as exc:
        log.warning("media worker: kernel fast path off: %s", exc)
        return None
    return Offloader(fastpath, options.address)


def parse_args(argv: Sequence[str] | None = None) -> WorkerOptions:
    """The command line as :class:`WorkerOptions`; exits with status 2 on a bad option."""
    from appliance.media.recording_cli import KeyFileError, load_kek

    parser = argparse.ArgumentParser(prog="appliance.media.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--control", required=True, help="the Unix SOCK_SEQPACKET control socket path")
    parser.add_argument("--address", required=True, help="the IP address RTP sockets bind to")
    parser.add_argument("--ports", required=True, type=parse_ports, help="the RTP port range MIN-MAX")
    parser.add_argument(
        "--media-timeout", type=_seconds, default=30.0, help="seconds without RTP before a media timeout"
    )
    parser.add_argument("--recording-dir", type=Path, help="directory for encrypted call recordings")
    parser.add_argument("--recording-key", help="file holding the 32-byte key-encryption key")
    parser.add_argument("--voicemail-dir", type=Path, help="directory for encrypted voicemail files")
    parser.add_argument("--voicemail-key", help="file holding the voicemail 32-byte key-encryption key")
    parser.add_argument("--no-fastpath", action="store_true", help="keep every packet in userspace")
    parser.add_argument("--worker-id", type=int, default=0, help="this worker's index in its reports")
    parser.add_argument(
        "--scheduling", choices=POLICIES, default="normal", help="CPU scheduling (appliance.media.scheduling)"
    )
    args = parser.parse_args(argv)

    def key_and_dir(kind: str, directory: Path | None, key: str | None) -> tuple[Path, bytes] | None:
        if (directory is None) != (key is None):
            parser.error(f"--{kind}-dir and --{kind}-key go together")
        if directory is None or key is None:
            return None
        try:
            kek = load_kek(key)
        except KeyFileError as exc:
            parser.error(str(exc))
        if len(kek) != 32:
            parser.error(f"the {kind} key-encryption key must be 32 octets")
        if not directory.is_dir():
            parser.error(f"--{kind}-dir {directory} is not a directory")
        return directory, kek

    recording = voicemail = None
    if (found := key_and_dir("recording", args.recording_dir, args.recording_key)) is not None:
        recording = RecordingConfig(*found)
    if (found := key_and_dir("voicemail", args.voicemail_dir, args.voicemail_key)) is not None:
        voicemail = VoicemailConfig(*found)
    return WorkerOptions(
        control=args.control,
        address=args.address,
        ports=args.ports,
        media_timeout=args.media_timeout,
        recording=recording,
        fastpath=not args.no_fastpath,
        worker_id=args.worker_id,
        voicemail=voicemail,
        scheduling=args.scheduling,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    # A Ctrl-C at a terminal reaches the whole process group. The worker stops when the control process
    # closes its socket (after it released the calls), never on the signal itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if (problem := apply_scheduling(options.scheduling)) is not None:
        log.warning("media worker %d: %s", options.worker_id, problem)
    try:
        pool, greeting = reserve(options)
    except (ReserveError, OSError) as exc:
        # Instead of "ready": the supervisor puts this line in the error it raises.
        print(f"error: media worker {options.worker_id}: {exc}", flush=True)
        return 1
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency; the stdlib loop still works
        asyncio.run(run(options, pool, greeting))
    else:
        uvloop.run(run(options, pool, greeting))
    return 0


if __name__ == "__main__":
    sys.exit(main())
