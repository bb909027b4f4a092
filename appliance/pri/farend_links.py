"""The far end's side of a simulated span's sockets (DESIGN.md §5.2): client D- and B-channel links.

The appliance listens on ``spanN-d.sock`` and ``spanN-b.sock``; a far end connects to both. These links
implement :class:`hw.e1.links.DChannel` and :class:`hw.e1.links.BChannels` on the connecting side, so that
the far end runs the same stack (:class:`appliance.pri.link.PriLink`) the appliance does.

Contract: :meth:`connect` opens the connection (and may be called again after :meth:`close` or after the
appliance closed it: a far end that returns); the handler is told ``link_changed(True)`` once connected and
``link_changed(False)`` when the appliance closes or resets the connection — not when the far end closes
it itself, as it asked for that. Sends never block: with no connection, or a full socket buffer, the
message is dropped and counted in :attr:`dropped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from hw.e1.links import FRAME_OCTETS, MAX_LAPD_FRAME, BChannelHandler, DChannelHandler
from hw.e1.seqpacket import PeerGone, read_message, send_message

log = logging.getLogger(__name__)


class FarEndLinkError(OSError):
    """The appliance's socket could not be reached (absent, refusing, or it closed us at once)."""


class ClientLink:
    """A ``SOCK_SEQPACKET`` client socket with a level-triggered reader on the loop: each message goes to
    ``on_message``, the connection coming and going to ``on_change`` (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        recv_size: int,
        on_message: Callable[[bytes], None],
        on_change: Callable[[bool], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._path = path
        self._recv_size = recv_size
        self._on_message = on_message
        self._on_change = on_change
        self._loop = loop
        self._sock: socket.socket | None = None
        self.received = 0
        self.sent = 0
        self.dropped = 0

    @property
    def path(self) -> Path:
        return self._path

    @property
    def up(self) -> bool:
        return self._sock is not None

    async def connect(self) -> None:
        """Connect to the appliance's socket; raises :class:`FarEndLinkError` if that fails. Connecting
        while connected does nothing."""
        if self._sock is not None:
            return
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        self._loop = loop
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, os.fspath(self._path))
        except OSError as exc:
            sock.close()
            raise FarEndLinkError(f"{self._path}: {exc}") from exc
        self._sock = sock
        loop.add_reader(sock.fileno(), self._on_readable)
        log.info("far end connected to %s", self._path)
        self._on_change(True)

    async def close(self) -> None:
        """Close the connection (the appliance sees its far end vanish); the handler is not told."""
        self._drop(notify=False)

    def _on_readable(self) -> None:
        # One message per readiness callback: the reader is level-triggered, so what is left is read on
        # the next turn of the loop, between the far end's own timers.
        sock = self._sock
        if sock is None:
            return
        try:
            data = read_message(sock, self._recv_size)
        except PeerGone as exc:
            log.info("far end link %s lost: %s", self._path, exc)
            self._drop(notify=True)
            return
        if data:
            self.received += 1
            self._on_message(data)

    def send(self, message: bytes) -> None:
        sock = self._sock
        if sock is None:
            self.dropped += 1
            return
        try:
            sent = send_message(sock, message)
        except PeerGone as exc:
            self.dropped += 1
            log.info("far end link %s lost on send: %s", self._path, exc)
            self._drop(notify=False)
            assert self._loop is not None
            self._loop.call_soon(self._on_change, False)  # not from inside the caller's send
            return
        if not sent:
            self.dropped += 1
            return
        self.sent += 1

    def _drop(self, *, notify: bool) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        assert self._loop is not None
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock.fileno())
        sock.close()
        if notify:
            self._on_change(False)


class FarEndDChannel:
    """The far end's D-channel (implements :class:`hw.e1.links.DChannel`)."""

    def __init__(
        self, path: Path, handler: DChannelHandler, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.link = ClientLink(
            path,
            recv_size=MAX_LAPD_FRAME + 1,
            on_message=handler.frame_received,
            on_change=handler.link_changed,
            loop=loop,
        )

    @property
    def up(self) -> bool:
        return self.link.up

    def send(self, frame: bytes) -> None:
        self.link.send(frame)

    async def connect(self) -> None:
        await self.link.connect()

    async def close(self) -> None:
        await self.link.close()


class FarEndBChannels:
    """The far end's B-channels (implements :class:`hw.e1.links.BChannels`): one message is a timeslot
    octet and 20 ms of A-law. A message of another length is counted in :attr:`malformed` and dropped."""

    def __init__(
        self, path: Path, handler: BChannelHandler, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._handler = handler
        self.malformed = 0
        self.link = ClientLink(
            path,
            recv_size=2 + FRAME_OCTETS,
            on_message=self._message,
            on_change=handler.link_changed,
            loop=loop,
        )

    @property
    def up(self) -> bool:
        return self.link.up

    def send(self, timeslot: int, samples: bytes) -> None:
        self.link.send(bytes((timeslot,)) + samples)

    async def connect(self) -> None:
        await self.link.connect()

    async def close(self) -> None:
        await self.link.close()

    def _message(self, data: bytes) -> None:
        if len(data) != 1 + FRAME_OCTETS:
            self.malformed += 1
            return
        self._handler.frame_received(data[0], data[1:])
