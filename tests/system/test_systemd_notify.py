"""The control process tells systemd when it is ready and which mode it is in (Type=notify)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.system.appliance_proc import start_appliance

pytestmark = pytest.mark.system


def test_ready_and_mode_are_notified(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(10.0)
        app = start_appliance(tmp_path, env={"NOTIFY_SOCKET": str(path)})
        try:
            messages = [listener.recv(4096).decode() for _ in range(2)]
        finally:
            app.stop()
            messages.append(listener.recv(4096).decode())
    assert messages == ["STATUS=mode SURVIVABLE", "READY=1", "STOPPING=1"]
