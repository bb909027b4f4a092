"""systemd notifications over a real AF_UNIX datagram socket standing in for the service manager."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.sdnotify import Notifier


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """The service manager's end: a bound datagram socket and its $NOTIFY_SOCKET value."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_no_notify_socket_means_no_notifier() -> None:
    assert Notifier.from_env({}) is None
    assert Notifier.from_env({"NOTIFY_SOCKET": ""}) is None
    assert Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_messages_reach_the_manager(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier is not None
    with notifier:
        assert notifier.ready()
        assert received(sock) == "READY=1"
        assert notifier.status("SURVIVABLE: 3 calls\nin IVR")
        assert received(sock) == "STATUS=SURVIVABLE: 3 calls in IVR"
        assert notifier.watchdog()
        assert received(sock) == "WATCHDOG=1"
        assert notifier.extend_timeout(20)
        assert received(sock) == "EXTEND_TIMEOUT_USEC=20000000"
        assert notifier.stopping()
        assert received(sock) == "STOPPING=1"
    assert not notifier.ready()  # closed: reports failure instead of raising


def test_abstract_namespace_socket() -> None:
    name = f"appliance-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier is not None
        with notifier:
            assert notifier.ready()
        assert received(sock) == "READY=1"
    finally:
        sock.close()


def test_missing_manager_is_reported_not_raised(tmp_path: Path) -> None:
    with Notifier(str(tmp_path / "nobody-listens")) as notifier:
        assert not notifier.ready()
        assert not notifier.watchdog()


def test_full_manager_queue_does_not_block(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    with Notifier(path) as notifier:
        # Nobody reads: the queue fills and sends must start failing instead of stalling the event loop.
        sent = 0
        while notifier.watchdog():
            sent += 1
            assert sent < 1_000_000
    assert sent > 0
    assert received(sock) == "WATCHDOG=1"


def test_watchdog_interval_is_half_the_timeout(manager: tuple[socket.socket, str]) -> None:
    _, path = manager
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"}
    cases = [
        (env, 15.0),
        ({**env, "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({**env, "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # the watchdog is for another process
        ({"NOTIFY_SOCKET": path}, None),
        ({**env, "WATCHDOG_USEC": "0"}, None),
        ({**env, "WATCHDOG_USEC": "soon"}, None),
    ]
    for environ, expected in cases:
        notifier = Notifier.from_env(environ)
        assert notifier is not None
        with notifier:
            assert notifier.watchdog_interval() == expected, environ


def test_from_env_reads_the_process_environment(
    manager: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = manager
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "8000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = Notifier.from_env()
    assert notifier is not None
    with notifier:
        assert notifier.watchdog_interval() == 4.0
        assert notifier.ready()
    assert received(sock) == "READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert Notifier.from_env() is None


def test_unsupported_address_is_refused() -> None:
    with pytest.raises(ValueError):
        Notifier("relative/path")
