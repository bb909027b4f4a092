"""The control process's side of one span's TDM worker: spawn it, drive it, restart it when it dies.

Theory of operation. :meth:`TdmClient.start` spawns ``python -m appliance.media.tdm.worker`` for the span,
waits for ``ready`` on its stdout (an ``error: …`` line or an early exit raises :class:`TdmWorkerError`),
connects to its control socket and reads the :class:`Ready` greeting (the span's timeslots and the RTP
ports another process held). The commands are coroutines that send one datagram and await the reply
with the same ``request_id``; events (:class:`LinkChanged`, and each new worker's :class:`Ready`) go to
``on_event``.

When the control socket reaches its end (the worker died), pending commands fail with
:class:`TdmWorkerError`, the timeslots the worker had open go to ``on_lost`` (call control clears those
calls) and a new worker is started on the same ports, B-channels and control path. :meth:`stop` closes the
control socket, which ends the worker (it never outlives this side), and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from appliance.media.rtp import MediaError
from appliance.media.tdm.bridge import ErrorCode
from appliance.media.tdm.control import (
    MAX_MESSAGE_SIZE,
    Close,
    Command,
    Connect,
    ControlDecodeError,
    Error,
    Event,
    LinkChanged,
    Ok,
    Open,
    Ready,
    Reply,
    Stats,
    StatsReply,
    decode,
    encode,
)
from appliance.media.tdm.layout import tdm_port
from hw.e1.driver import BChannelsSpec

log = logging.getLogger("appliance.media.tdm.client")

START_TIMEOUT: Final = 15.0  # interpreter start and imports
COMMAND_TIMEOUT: Final = 2.0
STOP_TIMEOUT: Final = 5.0


class TdmWorkerError(MediaError):
    """A command failed: refused by the worker (``code`` from its error reply), timed out, or the worker
    died or could not start (``code`` :attr:`ErrorCode.INTERNAL`)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class TdmClient:
    """One span's TDM worker as call control sees it. Its B-channels: ``bchannels`` (a span driver's
    :meth:`~hw.e1.driver.SpanDriver.bchannels_spec`, ``dahdi_device`` the DAHDI channel device when not
    the real one), or a simulated span's ``b_socket``."""

    def __init__(
        self,
        *,
        span: int,
        b_socket: Path | None = None,
        bchannels: BChannelsSpec | None = None,
        dahdi_device: Path | None = None,
        control: Path,
        address: str,
        ports: tuple[int, int],
        timeslots: tuple[int, ...],
        on_event: Callable[[Event], None] | None = None,
        on_lost: Callable[[tuple[int, ...]], None] | None = None,
        timeout: float = COMMAND_TIMEOUT,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if bchannels is None:
            if b_socket is None:
                raise ValueError(f"span {span}: the TDM worker needs its B-channels (a spec or a socket)")
            bchannels = BChannelsSpec("sim", span, timeslots, path=b_socket)
        self.span = span
        self.bchannels = bchannels
        self.dahdi_device = dahdi_device
        self.control = control
        self.address = address
        self.ports = ports
        self.timeslots = timeslots
        self.on_event = on_event
        self.on_lost = on_lost
        self.timeout = timeout
        self.extra_args = extra_args
        self.ready: Ready | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._sock: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self._open: set[int] = set()
        self._stopping = False

    def port(self, timeslot: int) -> int:
        """The fixed RTP port of ``timeslot`` (what call control writes into the PRI leg's SDP)."""
        return tdm_port(self.ports[0], self.timeslots, timeslot)

    @property
    def open_timeslots(self) -> tuple[int, ...]:
        return tuple(sorted(self._open))

    # --- life cycle ---------------------------------------------------------------------------------

    async def start(self) -> Ready:
        """Spawn the worker and return its greeting; raises :class:`TdmWorkerError` if it cannot start."""
        loop = asyncio.get_running_loop()
        argv = [
            "-m", "appliance.media.tdm.worker", "--span", str(self.span), *self._bchannels_args(),
            "--control", str(self.control), "--address", self.address,
            "--ports", f"{self.ports[0]}-{self.ports[1]}", "--timeslots", ",".join(map(str, self.timeslots)),
            *self.extra_args,
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(sys.executable, *argv, stdout=asyncio.subprocess.PIPE)
        self.process = process
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            await self._reap(process)
            raise TdmWorkerError(
                ErrorCode.INTERNAL, f"span {self.span}: TDM worker not ready in time"
            ) from None
        text = line.decode(errors="replace").strip()
        if text != "ready":
            await self._reap(process)
            raise TdmWorkerError(ErrorCode.INTERNAL, text or f"span {self.span}: TDM worker exited")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        await loop.sock_connect(sock, str(self.control))
        data = await asyncio.wait_for(loop.sock_recv(sock, MAX_MESSAGE_SIZE + 1), START_TIMEOUT)
        greeting = decode(data) if data else None
        if not isinstance(greeting, Ready):
            sock.close()
            await self._reap(process)
            raise TdmWorkerError(ErrorCode.INTERNAL, f"span {self.span}: TDM worker did not greet")
        self._sock = sock
        self.ready = greeting
        self._reader = asyncio.create_task(self._read(sock, process), name=f"tdm-span{self.span}")
        if self.on_event is not None:
            self.on_event(greeting)
        return greeting

    def _bchannels_args(self) -> list[str]:
        spec = self.bchannels
        if spec.backend == "sim":
            if spec.path is None:
                raise ValueError(f"span {self.span}: a simulated span's B-channels need a socket path")
            return ["--b-socket", str(spec.path)]
        if spec.basechan is None:
            raise ValueError(f"span {self.span}: DAHDI B-channels need the span's base channel")
        device = [] if self.dahdi_device is None else ["--dahdi-device", str(self.dahdi_device)]
        return ["--driver", "dahdi", "--basechan", str(spec.basechan), *device]

    async def stop(self) -> None:
        """Close the control connection (the worker exits) and wait for the process."""
        self._stopping = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._fail_pending("TDM worker stopped")
        if self.process is not None:
            await self._reap(self.process)

    @staticmethod
    async def _reap(process: asyncio.subprocess.Process) -> None:
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def _read(self, sock: socket.socket, process: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(sock, MAX_MESSAGE_SIZE + 1)
            except OSError:
                data = b""
            if not data:
                break
            try:
                msg = decode(data)
            except ControlDecodeError as exc:
                log.warning("tdm span %d: bad message from the worker: %s", self.span, exc.reason)
                continue
            if isinstance(msg, Ok | Error | StatsReply):
                future = self._pending.pop(msg.request_id, None)
                if future is not None and not future.done():
                    future.set_result(msg)
            elif isinstance(msg, LinkChanged | Ready) and self.on_event is not None:
                self.on_event(msg)
        if self._stopping:
            return
        await self._worker_died(sock, process)

    async def _worker_died(self, sock: socket.socket, process: asyncio.subprocess.Process) -> None:
        sock.close()
        self._sock = None
        self._fail_pending("TDM worker died")
        lost, self._open = tuple(sorted(self._open)), set()
        await self._reap(process)
        log.error(
            "tdm span %d: worker exited (%s); %d timeslots lost", self.span, process.returncode, len(lost)
        )
        if self.on_lost is not None:
            self.on_lost(lost)
        self.restarts += 1
        while not self._stopping:
            try:
                await self.start()
                return
            except (TdmWorkerError, OSError) as exc:
                log.error("tdm span %d: restart failed: %s", self.span, exc)
                await asyncio.sleep(1.0)

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(TdmWorkerError(ErrorCode.INTERNAL, reason))

    # --- commands -----------------------------------------------------------------------------------

    async def _request(self, command: Command) -> Reply:
        sock = self._sock
        if sock is None:
            raise TdmWorkerError(ErrorCode.INTERNAL, f"span {self.span}: no TDM worker")
        rid = next(self._ids) & 0xFFFFFFFF
        command = dataclasses.replace(command, request_id=rid)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            sock.send(encode(command))
            reply = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise TdmWorkerError(ErrorCode.INTERNAL, f"{type(command).__name__} timed out") from None
        except OSError as exc:
            raise TdmWorkerError(ErrorCode.INTERNAL, f"control socket: {exc}") from None
        finally:
            self._pending.pop(rid, None)
        if isinstance(reply, Error):
            raise TdmWorkerError(reply.code, reply.reason)
        return reply

    async def open(self, timeslot: int, codec: str = "PCMA") -> int:
        """Arm ``timeslot`` (``codec`` towards RTP); returns its RTP port."""
        reply = await self._request(Open(timeslot, codec))
        self._open.add(timeslot)
        return reply.port if isinstance(reply, Ok) and reply.port is not None else self.port(timeslot)

    async def connect(self, timeslot: int, host: str, port: int, payload_type: int = 8) -> None:
        await self._request(Connect(timeslot, host, port, payload_type))

    async def close(self, timeslot: int) -> None:
        try:
            await self._request(Close(timeslot))
        finally:
            self._open.discard(timeslot)

    async def stats(self) -> StatsReply:
        reply = await self._request(Stats())
        if not isinstance(reply, StatsReply):
            raise TdmWorkerError(ErrorCode.INTERNAL, "stats answered with another reply")
        return reply
