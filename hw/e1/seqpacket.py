"""One message in or out of a connected, non-blocking ``SOCK_SEQPACKET`` socket: what the simulated span's
listening side (:mod:`hw.e1.sim`) and a far end's connecting side share.

A zero-octet read is either an empty message or the end of the connection; :func:`read_message` tells them
apart with a zero-timeout poll. Neither function ever blocks: a full socket buffer drops the message.
"""

from __future__ import annotations

import select
import socket
from typing import Final

_HANGUP: Final = select.POLLHUP | select.POLLRDHUP | select.POLLERR


class PeerGone(Exception):
    """The other end closed or reset the connection; the message is the reason."""


def hung_up(sock: socket.socket) -> bool:
    """Whether the other end has closed (an empty message reads as zero octets too)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLRDHUP)
    return any(mask & _HANGUP for _, mask in poller.poll(0))


def read_message(sock: socket.socket, size: int) -> bytes | None:
    """One message (``b""`` for an empty one), or None when nothing is waiting; raises :class:`PeerGone`."""
    try:
        data = sock.recv(size)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:  # ECONNRESET and the like
        raise PeerGone(str(exc)) from exc
    if not data and hung_up(sock):
        raise PeerGone("closed")
    return data


def send_message(sock: socket.socket, message: bytes) -> bool:
    """Send one message; False when the socket buffer is full (the message is dropped). Raises
    :class:`PeerGone` when the other end went away (EPIPE, ECONNRESET)."""
    try:
        sock.send(message, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError as exc:
        raise PeerGone(str(exc)) from exc
    return True
