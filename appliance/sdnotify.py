"""systemd service notification (``sd_notify(3)``) without a library dependency.

The unit runs the appliance as ``Type=notify`` with ``WatchdogSec=``: systemd considers the service
started only once it reports ``READY=1``, and restarts it when ``WATCHDOG=1`` stops arriving. The
control process therefore sends READY after every listener is bound, pings the watchdog from its event
loop (a loop blocked by a bug stops the pings, which is the point), reports what it is doing with
STATUS, and sends STOPPING when it begins a graceful shutdown.

The protocol (``sd_notify(3)``): newline-separated ``KEY=VALUE`` assignments in one datagram to the
``AF_UNIX`` socket named by ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract namespace.
Sending never blocks and never raises: a lost notification must not take the appliance down, so each
method returns whether the datagram was handed to the kernel.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Self


class Notifier:
    """A connection to the service manager's notification socket."""

    def __init__(self, address: str, *, watchdog_usec: int | None = None) -> None:
        """``address`` as in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket);
        ``watchdog_usec`` as in ``$WATCHDOG_USEC`` (``None``: no watchdog for this process).
        Raises :class:`ValueError` for an address that is neither."""
        if address.startswith("@"):
            self._address = "\0" + address[1:]
        elif address.startswith("/"):
            self._address = address
        else:
            raise ValueError(f"unsupported notification socket {address!r}")
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # A full socket buffer (systemd busy) drops the notification instead of stalling the event loop.
        self._sock.setblocking(False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier | None:
        """The notifier systemd asked for, or ``None`` when not started by systemd with ``Type=notify``
        (``$NOTIFY_SOCKET`` unset or empty, or a kind of socket other than ``AF_UNIX``).

        ``$WATCHDOG_USEC`` is honoured only when ``$WATCHDOG_PID`` is unset or names this process, as
        ``sd_watchdog_enabled(3)`` requires.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address.startswith(("/", "@")):
            return None
        watchdog: int | None = None
        pid = env.get("WATCHDOG_PID", "")
        usec = env.get("WATCHDOG_USEC", "")
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(address, watchdog_usec=watchdog)

    def watchdog_interval(self) -> float | None:
        """Seconds between :meth:`watchdog` pings: half the watchdog timeout, as ``sd_watchdog_enabled(3)``
        recommends; ``None`` when systemd runs no watchdog for this process."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def notify(self, message: str) -> bool:
        """Send raw ``KEY=VALUE`` lines; True when the datagram was handed to the kernel."""
        try:
            self._sock.sendto(message.encode(), self._address)
        except OSError:
            return False
        return True

    def ready(self) -> bool:
        """The service is up: listeners bound, ready for calls."""
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status`` (newlines are replaced by spaces)."""
        return self.notify("STATUS=" + text.replace("\n", " "))

    def watchdog(self) -> bool:
        """Keep-alive ping; must arrive at least every ``WatchdogSec``."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """Graceful shutdown has begun (calls are being released)."""
        return self.notify("STOPPING=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more before systemd gives up on a start or stop in progress (e.g. while a
        database migration runs before READY)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
