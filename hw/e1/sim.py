"""The simulated E1 span's D- and B-channel sockets (DESIGN.md §5.2).

Each link listens on a Unix-domain ``SOCK_SEQPACKET`` socket that any PRI implementation can connect to
as the far end:

- D-channel (``spanN-d.sock``): one message is one LAPD frame (Q.921 §2.1: address, control,
  information), without flags, bit stuffing or FCS. An empty message, or one longer than
  :data:`~hw.e1.links.MAX_LAPD_FRAME`, is not a frame: it is counted and dropped.
- B-channels (``spanN-b.sock``): one message is one octet of timeslot number followed by the
  :data:`~hw.e1.links.FRAME_OCTETS` A-law octets of 20 ms of that timeslot. A timeslot not among the
  span's B-channels, or a message of another length, is counted and dropped.

One far end at a time: a second connection while one is up is closed at once (and counted). The far end
closing or resetting its socket is the span losing its signal (``link_changed(False)``); a new connection
is the signal back (``link_changed(True)``). Sends never block the event loop: a frame that finds the
socket buffer full, or no far end, is dropped and counted, as a card drops what it cannot put on the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hw.e1.errors import LinkUsageError
from hw.e1.links import B_TIMESLOTS, FRAME_OCTETS, MAX_LAPD_FRAME, BChannelHandler, DChannelHandler
from hw.e1.seqpacket import PeerGone, read_message, send_message

log = logging.getLogger(__name__)

SOCKET_MODE: Final = 0o660
# Messages read per readiness callback before yielding to the loop (the reader is level-triggered, so
# what is left is read on the next turn): a flooding far end cannot starve the other spans.
_READ_BATCH: Final = 64
_B_MESSAGE: Final = 1 + FRAME_OCTETS


@dataclass(frozen=True, slots=True)
class LinkCounters:
    """What one simulated link has carried and dropped since it was created."""

    received: int = 0  # messages delivered to the handler
    sent: int = 0  # messages written to the far end
    dropped_no_far_end: int = 0  # sends while no far end was connected
    dropped_full: int = 0  # sends that found the socket buffer full
    rx_empty: int = 0  # empty messages from the far end
    rx_oversize: int = 0  # D: longer than MAX_LAPD_FRAME
    rx_bad_timeslot: int = 0  # B: timeslot not one of the span's B-channels
    rx_bad_length: int = 0  # B: not 1 + FRAME_OCTETS octets
    refused: int = 0  # connections refused because a far end was already connected
    connections: int = 0  # far ends accepted


class _SeqpacketLink:
    """A listening ``SOCK_SEQPACKET`` socket with at most one connected far end.

    Subclasses check each received message (:meth:`_deliver`) and call their handler; this class owns the
    sockets, the readers and the counters.
    """

    _recv_size: int

    def __init__(self, path: Path, *, loop: asyncio.AbstractEventLoop | None) -> None:
        self._path = path
        self._loop = loop
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._closed = False
        self._counts: dict[str, int] = dict.fromkeys(LinkCounters.__slots__, 0)

    # -- life cycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on the path: its parent directory is created, a stale socket file there is replaced."""
        if self._listener is not None or self._closed:
            raise LinkUsageError(f"{self._path}: already started or closed")
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        self._loop = loop
        self._path.parent.mkdir(parents=True, exist_ok=True)
        _unlink_stale_socket(self._path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.setblocking(False)
            sock.bind(os.fspath(self._path))
            os.chmod(self._path, SOCKET_MODE)
            sock.listen(1)
        except OSError:
            sock.close()
            raise
        self._listener = sock
        loop.add_reader(sock.fileno(), self._on_accept)
        log.info("sim link listening on %s", self._path)

    async def close(self) -> None:
        """Close the far end's connection and the listening socket, and remove the socket file.

        The handler is not told the link went down: it asked for the close.
        """
        if self._closed:
            return
        self._closed = True
        self._drop_connection(notify=False)
        if self._listener is not None:
            assert self._loop is not None
            self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

    @property
    def up(self) -> bool:
        """True while a far end is connected."""
        return self._conn is not None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def counters(self) -> LinkCounters:
        return LinkCounters(**self._counts)

    # -- far end ----------------------------------------------------------------------------------------

    def _on_accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. ECONNABORTED: the far end gave up before we accepted
            log.warning("sim link %s: accept failed: %s", self._path, exc)
            return
        if self._conn is not None:
            self._counts["refused"] += 1
            log.warning("sim link %s: second far end refused (one is connected)", self._path)
            conn.close()
            return
        conn.setblocking(False)
        self._conn = conn
        self._counts["connections"] += 1
        assert self._loop is not None
        self._loop.add_reader(conn.fileno(), self._on_readable)
        log.info("sim link %s: far end connected", self._path)
        self._link_changed(True)

    def _on_readable(self) -> None:
        for _ in range(_READ_BATCH):
            conn = self._conn
            if conn is None:
                return
            try:
                data = read_message(conn, self._recv_size)
            except PeerGone as exc:
                log.info("sim link %s: far end lost: %s", self._path, exc)
                self._drop_connection(notify=True)
                return
            if data is None:
                return
            if not data:
                self._counts["rx_empty"] += 1
                continue
            if self._deliver(data):
                self._counts["received"] += 1

    def _drop_connection(self, *, notify: bool) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        assert self._loop is not None
        self._loop.remove_reader(conn.fileno())
        conn.close()
        if notify:
            self._link_changed(False)

    def _send(self, message: bytes) -> None:
        conn = self._conn
        if conn is None:
            self._counts["dropped_no_far_end"] += 1
            return
        try:
            sent = send_message(conn, message)
        except PeerGone as exc:  # the far end went away; its reader may not have run yet
            self._counts["dropped_no_far_end"] += 1
            log.info("sim link %s: far end lost on send: %s", self._path, exc)
            self._drop_connection(notify=False)
            # Tell the handler from the loop, not from inside its own send call.
            assert self._loop is not None
            self._loop.call_soon(self._report_loss)
            return
        if not sent:
            self._counts["dropped_full"] += 1
            return
        self._counts["sent"] += 1

    def _report_loss(self) -> None:
        if not self._closed and self._conn is None:
            self._link_changed(False)

    # -- subclass hooks -------------------------------------------------------------------------------

    def _deliver(self, data: bytes) -> bool:
        raise NotImplementedError

    def _link_changed(self, up: bool) -> None:
        raise NotImplementedError


class SimDChannel(_SeqpacketLink):
    """The D-channel of a simulated span (implements :class:`hw.e1.links.DChannel`)."""

    _recv_size = MAX_LAPD_FRAME + 1  # one more than a frame may have, to see an oversize message

    def __init__(
        self, path: Path, handler: DChannelHandler, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        super().__init__(path, loop=loop)
        self._handler = handler

    def send(self, frame: bytes) -> None:
        """Send one LAPD frame to the far end; dropped (and counted) with no far end or a full buffer.

        Raises :class:`LinkUsageError` for a frame no D-channel carries (empty or over MAX_LAPD_FRAME).
        """
        if not frame or len(frame) > MAX_LAPD_FRAME:
            raise LinkUsageError(f"a LAPD frame is 1 to {MAX_LAPD_FRAME} octets, not {len(frame)}")
        self._send(frame)

    def _deliver(self, data: bytes) -> bool:
        if len(data) > MAX_LAPD_FRAME:
            self._counts["rx_oversize"] += 1
            return False
        self._handler.frame_received(data)
        return True

    def _link_changed(self, up: bool) -> None:
        self._handler.link_changed(up)


class SimBChannels(_SeqpacketLink):
    """The B-channels of a simulated span (implements :class:`hw.e1.links.BChannels`)."""

    _recv_size = _B_MESSAGE + 1

    def __init__(
        self,
        path: Path,
        handler: BChannelHandler,
        *,
        timeslots: tuple[int, ...],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        bad = [ts for ts in timeslots if ts not in B_TIMESLOTS]
        if bad or not timeslots:
            raise LinkUsageError(
                f"B-channel timeslots are among 1-15 and 17-31 (G.704 §5), not {bad or '()'}"
            )
        super().__init__(path, loop=loop)
        self._handler = handler
        self._timeslots = frozenset(timeslots)

    @property
    def timeslots(self) -> frozenset[int]:
        return self._timeslots

    def send(self, timeslot: int, samples: bytes) -> None:
        """Send 20 ms of one timeslot; dropped (and counted) with no far end or a full buffer.

        Raises :class:`LinkUsageError` for a timeslot not open here or a frame not FRAME_OCTETS long.
        """
        self.check(timeslot, samples)
        self._send(bytes((timeslot,)) + samples)

    def check(self, timeslot: int, samples: bytes) -> None:
        """Raise :class:`LinkUsageError` unless :meth:`send` would take this frame."""
        if timeslot not in self._timeslots:
            raise LinkUsageError(f"timeslot {timeslot} is not a B-channel of this span")
        if len(samples) != FRAME_OCTETS:
            raise LinkUsageError(f"a B-channel frame is {FRAME_OCTETS} octets, not {len(samples)}")

    def _deliver(self, data: bytes) -> bool:
        if len(data) != _B_MESSAGE:
            self._counts["rx_bad_length"] += 1
            return False
        if data[0] not in self._timeslots:
            self._counts["rx_bad_timeslot"] += 1
            return False
        self._handler.frame_received(data[0], data[1:])
        return True

    def _link_changed(self, up: bool) -> None:
        self._handler.link_changed(up)


def _unlink_stale_socket(path: Path) -> None:
    """Remove a socket file left by an earlier run; refuse to remove anything that is not a socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise LinkUsageError(f"{path} exists and is not a socket")
    path.unlink()
