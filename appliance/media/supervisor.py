"""The control process's side of the media workers: spawning, command round trips, events, restarts.

Theory of operation. :class:`MediaSupervisor` starts ``workers`` processes of :mod:`appliance.media.worker`,
each with its own slice of the RTP port range and its own control socket ``run_dir/media-<i>.sock``, and
connects to each once the worker printed ``ready``. A worker binds its whole slice before that and greets
each connection with :class:`PortsReserved`: the pairs another process held. Those are
:meth:`MediaSupervisor.unusable` and go to ``on_reserved`` (call control's allocator skips them); a worker
is running only once its greeting was read, so no port is handed out before it is known to be usable.
A call lives on one worker, chosen by CRC-32 of its ``call_id`` (stable across restarts of the control
process, unlike ``hash``). Each worker's socket is driven by a sans-I/O
:class:`~appliance.media.control.ControlChannel`; one reader task per worker feeds it, and each command's
reply resolves the awaiting coroutine.

When a worker's control socket reaches end of file (the process died), its pending commands fail with
:class:`MediaWorkerError`, the call ids it carried are handed to ``on_lost`` and a new worker is started on
the same port slice and socket path (it binds the slice again and reports afresh).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import sys
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Final

from appliance.media.control import (
    ControlChannel,
    EventReceived,
    ReplyReceived,
    RequestTimedOut,
    decode,
)
from appliance.media.control_events import (
    MAX_MESSAGE_SIZE,
    Answer,
    Command,
    ControlError,
    Delete,
    Error,
    ErrorCode,
    LegSpec,
    Offer,
    Ok,
    Ping,
    PortsReserved,
    Query,
    SetLeg,
    WorkerEvent,
)

log = logging.getLogger("appliance.media.supervisor")

DEFAULT_TIMEOUT: Final = 2.0
# How long a freshly spawned worker may take to print "ready" (interpreter start and imports).
START_TIMEOUT: Final = 15.0


class MediaWorkerError(ControlError):
    """A command failed: the worker refused it (``code`` from its Error reply), timed out or died
    (``code`` :attr:`ErrorCode.INTERNAL`)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def split_range(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    """``[low, high]`` cut into ``parts`` slices of whole even/odd pairs; raises ``ValueError`` if a slice
    would hold no pair."""
    first = low + (low & 1)
    pairs = (high - first + 1) // 2
    if parts < 1 or pairs < parts:
        raise ValueError(f"port range {low}-{high} cannot give {parts} workers a pair each")
    out = []
    for i in range(parts):
        start = first + 2 * (pairs * i // parts)
        end = first + 2 * (pairs * (i + 1) // parts) - 1
        out.append((start, end))
    return out


class _Worker:
    """One worker process, its socket, channel and the calls it carries."""

    def __init__(self, index: int, ports: tuple[int, int], path: Path) -> None:
        self.index = index
        self.ports = ports
        self.path = path
        self.process: asyncio.subprocess.Process | None = None
        self.sock: socket.socket | None = None
        self.channel = ControlChannel()
        self.waiters: dict[int, asyncio.Future[Ok]] = {}
        self.calls: set[str] = set()
        # Datagrams the socket would not take at once, sent in order by ``drainer`` before anything newer.
        self.backlog: collections.deque[bytes] = collections.deque()
        self.drainer: asyncio.Task[None] | None = None
        self.reader: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.running = asyncio.Event()
        self.unusable: frozenset[int] = frozenset()


class MediaSupervisor:
    """N media workers behind one API. Use ``async with`` or :meth:`start`/:meth:`close`.

    ``on_event(worker_index, event)`` sees every worker event (also queued for :meth:`events`);
    ``on_lost(worker_index, call_ids)`` is told the calls of a worker that died, before it is restarted;
    ``on_reserved(worker_index, unusable)`` the RTP ports of the pairs a worker could not bind, each time it
    starts (before it counts as running). ``timeout`` bounds each command's round trip.
    """

    def __init__(
        self,
        workers: int,
        address: str,
        port_range: tuple[int, int],
        run_dir: Path | str,
        *,
        on_event: Callable[[int, WorkerEvent], object] | None = None,
        on_lost: Callable[[int, list[str]], object] | None = None,
        on_reserved: Callable[[int, frozenset[int]], object] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        worker_args: Sequence[str] = (),
    ) -> None:
        """``worker_args`` are added to every worker's command line (``--media-timeout``,
        ``--recording-dir``/``--recording-key``, ``--voicemail-dir``/``--voicemail-key``,
        ``--no-fastpath``)."""
        self.address = address
        self.run_dir = Path(run_dir)
        self.timeout = timeout
        self.on_event = on_event
        self.on_lost = on_lost
        self.on_reserved = on_reserved
        self.worker_args = tuple(worker_args)
        self.restarts = 0
        slices = split_range(port_range[0], port_range[1], workers)
        self._workers = [
            _Worker(i, ports, self.run_dir / f"media-{i}.sock") for i, ports in enumerate(slices)
        ]
        self._events: asyncio.Queue[tuple[int, WorkerEvent]] = asyncio.Queue()
        self._closing = False
        self._restarts: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> MediaSupervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn every worker and connect to it; raises :class:`MediaWorkerError` if one does not start
        (its reason: a worker that may not hold its port slice names the descriptor limit), after stopping
        the others."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        results = await asyncio.gather(*(self._spawn(w) for w in self._workers), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.close()
            raise failed[0]

    async def _spawn(self, w: _Worker) -> None:
        low, high = w.ports
        w.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "appliance.media.worker",
            "--control",
            str(w.path),
            "--address",
            self.address,
            "--ports",
            f"{low}-{high}",
            "--worker-id",
            str(w.index),
            *self.worker_args,
            stdout=asyncio.subprocess.PIPE,
        )
        assert w.process.stdout is not None
        try:
            line = await asyncio.wait_for(w.process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            with contextlib.suppress(ProcessLookupError):
                w.process.kill()
            await w.process.wait()
            said = line.decode("utf-8", "replace").strip()
            reason = f"media worker {w.index} did not start" + (f": {said}" if said else "")
            raise MediaWorkerError(int(ErrorCode.INTERNAL), reason)
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, str(w.path))
            greeting = await self._greeting(w, sock)
        except BaseException:
            sock.close()
            raise
        w.unusable = frozenset(greeting.unusable)
        if w.unusable:
            log.warning(
                "media worker %d: %d RTP/RTCP pairs of %d-%d held by another process, never used",
                w.index, len(w.unusable), *w.ports,
            )  # fmt: skip
        if self.on_reserved is not None:
            self.on_reserved(w.index, w.unusable)
        w.sock = sock
        w.channel = ControlChannel(timeout=self.timeout)
        w.reader = asyncio.create_task(self._read(w))
        w.running.set()

    async def _greeting(self, w: _Worker, sock: socket.socket) -> PortsReserved:
        """The worker's first datagram, which must be its :class:`PortsReserved` for its own slice."""
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, MAX_MESSAGE_SIZE + 1), START_TIMEOUT)
            greeting = decode(data)
        except (TimeoutError, OSError, ControlError) as exc:
            reason = f"media worker {w.index}: no greeting: {exc}"
            raise MediaWorkerError(int(ErrorCode.INTERNAL), reason) from None
        if not isinstance(greeting, PortsReserved) or (greeting.first_port, greeting.last_port) != w.ports:
            raise MediaWorkerError(
                int(ErrorCode.INTERNAL), f"media worker {w.index}: expected its ports, got {greeting!r}"
            )
        return greeting

    async def close(self) -> None:
        """Stop every worker (closing its socket makes it exit) and wait for the processes."""
        self._closing = True
        for task in list(self._restarts):
            task.cancel()
        for w in self._workers:
            if w.reader is not None:
                w.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await w.reader
            self._disconnect(w)
            if w.process is not None:
                try:
                    await asyncio.wait_for(w.process.wait(), self.timeout)
                except TimeoutError:
                    w.process.kill()
                    await w.process.wait()

    @property
    def slices(self) -> list[tuple[int, int]]:
        """Each worker's RTP port slice, by worker index."""
        return [w.ports for w in self._workers]

    def unusable(self, index: int) -> frozenset[int]:
        """The RTP ports of the pairs of worker ``index``'s slice it could not bind when it last started."""
        return self._workers[index].unusable

    @property
    def workers(self) -> int:
        return len(self._workers)

    @property
    def running_count(self) -> int:
        """Workers connected now (a dead one is not, until its restart completes)."""
        return sum(1 for w in self._workers if w.running.is_set())

    def pid(self, index: int) -> int | None:
        """The process id of worker ``index`` (for monitoring), None while it is not running."""
        process = self._workers[index].process
        return None if process is None or process.returncode is not None else process.pid

    async def running(self, index: int) -> None:
        """Return once worker ``index`` is connected (at once unless it is being restarted)."""
        await self._workers[index].running.wait()

    # -- commands ---------------------------------------------------------------------------------------

    def worker_for(self, call_id: str) -> int:
        """The index of the worker that carries ``call_id``."""
        return zlib.crc32(call_id.encode()) % len(self._workers)

    async def _command(self, index: int, command: Command) -> Ok:
        return await self._submit(self._workers[index], command)

    def submit(self, index: int, command: Command) -> asyncio.Future[Ok]:
        """Send ``command`` to worker ``index`` now, without waiting; the future resolves with the reply
        (or :class:`MediaWorkerError`). Commands reach each worker in the order they were submitted.

        The calls a worker carries (reported to ``on_lost`` if it dies) are tracked from the ``SetLeg``
        and ``Delete`` commands sent through here.
        """
        w = self._workers[index]
        if isinstance(command, SetLeg):
            w.calls.add(command.call_id)
        elif isinstance(command, Delete):
            w.calls.discard(command.call_id)
        return self._submit(w, command)

    def _submit(self, w: _Worker, command: Command) -> asyncio.Future[Ok]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Ok] = loop.create_future()
        sock = w.sock
        if sock is None:
            future.set_exception(
                MediaWorkerError(int(ErrorCode.INTERNAL), f"media worker {w.index} is not running")
            )
            return future
        rid = w.channel.send(command, loop.time())
        w.waiters[rid] = future
        for data in w.channel.data_to_send():
            if not w.backlog:
                try:
                    sock.send(data)
                    continue
                except BlockingIOError:
                    pass
                except OSError:
                    continue  # the worker is gone: the reader sees end of file and fails the waiters
            w.backlog.append(data)
            if w.drainer is None or w.drainer.done():
                w.drainer = asyncio.create_task(self._drain_backlog(w, sock))
        self._arm(w)
        return future

    async def _drain_backlog(self, w: _Worker, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            while w.backlog and w.sock is sock:
                await loop.sock_sendall(sock, w.backlog[0])
                w.backlog.popleft()

    async def offer(self, call_id: str, leg: str, sdp: str, flags: tuple[str, ...] = ()) -> Ok:
        """Send leg ``leg``'s SDP offer; the reply's ``sdp`` is for the other leg (the worker's contract)."""
        index = self.worker_for(call_id)
        reply = await self._command(index, Offer(call_id, leg, sdp, flags))
        self._workers[index].calls.add(call_id)
        return reply

    async def set_leg(self, call_id: str, leg: str, spec: LegSpec, flags: tuple[str, ...] = ()) -> Ok:
        """Hand the call's worker one leg as call control negotiated it (the data-plane command)."""
        return await self.send(self.worker_for(call_id), SetLeg(call_id, leg, spec, flags))

    async def send(self, index: int, command: Command) -> Ok:
        """:meth:`submit` and wait for the reply; raises :class:`MediaWorkerError`."""
        return await self.submit(index, command)

    async def answer(self, call_id: str, leg: str, sdp: str, flags: tuple[str, ...] = ()) -> Ok:
        """Send leg ``leg``'s SDP answer; the reply's ``sdp`` is for the offering leg."""
        return await self._command(self.worker_for(call_id), Answer(call_id, leg, sdp, flags))

    async def delete(self, call_id: str) -> Ok:
        """Release the call's media; the reply carries its final statistics."""
        index = self.worker_for(call_id)
        self._workers[index].calls.discard(call_id)
        return await self._command(index, Delete(call_id))

    async def query(self, call_id: str) -> Ok:
        """The call's statistics."""
        return await self._command(self.worker_for(call_id), Query(call_id))

    async def ping(self, index: int) -> Ok:
        """Round trip to worker ``index``."""
        return await self._command(index, Ping())

    async def events(self) -> AsyncIterator[tuple[int, WorkerEvent]]:
        """Every worker event as ``(worker_index, event)``, in arrival order, until cancelled."""
        while True:
            yield await self._events.get()

    # -- the channel's I/O ------------------------------------------------------------------------------

    def _arm(self, w: _Worker) -> None:
        if w.timer is not None:
            w.timer.cancel()
            w.timer = None
        due = w.channel.get_timer()
        if due is not None:
            w.timer = asyncio.get_running_loop().call_at(due, self._expire, w)

    def _expire(self, w: _Worker) -> None:
        w.timer = None
        w.channel.handle_timer(asyncio.get_running_loop().time())
        self._deliver(w)
        self._arm(w)

    def _deliver(self, w: _Worker) -> None:
        while (event := w.channel.next_event()) is not None:
            match event:
                case ReplyReceived(command=command, reply=reply):
                    future = w.waiters.pop(command.request_id, None)
                    if future is None or future.done():
                        continue
                    if isinstance(reply, Error):
                        future.set_exception(MediaWorkerError(reply.code, reply.reason))
                    else:
                        future.set_result(reply)
                case RequestTimedOut(command=command):
                    future = w.waiters.pop(command.request_id, None)
                    if future is not None and not future.done():
                        future.set_exception(
                            MediaWorkerError(int(ErrorCode.INTERNAL), f"media worker {w.index}: no reply")
                        )
                case EventReceived(event=worker_event):
                    self._events.put_nowait((w.index, worker_event))
                    if self.on_event is not None:
                        self.on_event(w.index, worker_event)
                case _:
                    log.warning("media worker %d: %s", w.index, event)

    async def _read(self, w: _Worker) -> None:
        loop = asyncio.get_running_loop()
        assert w.sock is not None
        while True:
            try:
                data = await loop.sock_recv(w.sock, MAX_MESSAGE_SIZE + 1)
            except OSError:
                data = b""
            if not data:
                break
            w.channel.receive(data, loop.time())
            self._deliver(w)
            self._arm(w)
        self._disconnect(w)
        if self._closing:
            return
        lost = sorted(w.calls)
        w.calls.clear()
        log.error("media worker %d died; %d calls lost", w.index, len(lost))
        if self.on_lost is not None:
            self.on_lost(w.index, lost)
        task = asyncio.create_task(self._restart(w))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    def _disconnect(self, w: _Worker) -> None:
        w.running.clear()
        w.channel.close()
        self._deliver(w)
        if w.timer is not None:
            w.timer.cancel()
            w.timer = None
        w.backlog.clear()
        if w.drainer is not None:
            w.drainer.cancel()
            w.drainer = None
        if w.sock is not None:
            w.sock.close()
            w.sock = None

    async def _restart(self, w: _Worker) -> None:
        if w.process is not None:
            with contextlib.suppress(ProcessLookupError):
                w.process.kill()
            await w.process.wait()
        try:
            await self._spawn(w)
            self.restarts += 1
        except (MediaWorkerError, OSError):
            # The worker stays down; commands for its calls fail at once with MediaWorkerError.
            log.exception("media worker %d could not be restarted", w.index)
