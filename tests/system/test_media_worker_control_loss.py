"""A media worker whose control process goes away abruptly (its socket reset, or closed with calls still
held, or the process SIGKILLed) logs one line, closes its sockets and exits with status 0 within a second:
no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.media.control import encode
from appliance.media.control_events import MAX_MESSAGE_SIZE, Offer
from tests.system.test_media_worker import phone_sdp, port_range

pytestmark = [pytest.mark.system, pytest.mark.timeout(60)]

EXIT_WITHIN = 1.0


class Worker:
    """One ``appliance.media.worker`` process, started and ready, its control socket at ``path``."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "worker.sock"
        low, high = port_range()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "appliance.media.worker", "--control", str(self.path), "--address",
             "127.0.0.1", "--ports", f"{low}-{high}", "--no-fastpath"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == b"ready\n"

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.settimeout(5.0)
        sock.connect(str(self.path))
        return sock

    def exit(self) -> tuple[int, str]:
        """The exit status, once the process ended (within EXIT_WITHIN of the call), and its stderr."""
        started = time.monotonic()
        status = self.process.wait(EXIT_WITHIN)
        assert time.monotonic() - started < EXIT_WITHIN
        assert self.process.stderr is not None
        return status, self.process.stderr.read().decode()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    started = Worker(tmp_path)
    try:
        yield started
    finally:
        started.kill()


def control_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "control connection" in line]


def assert_exited_cleanly(worker: Worker, level: str, how: str, calls: int) -> None:
    status, stderr = worker.exit()
    assert status == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert control_lines(stderr) == [
        f"{level}:appliance.media.worker:media worker 0: control connection {how} with {calls} calls; exiting"
    ]
    assert not worker.path.exists()  # the socket closed and its path removed on the way out


def test_control_socket_reset_before_the_greeting_is_read(worker: Worker) -> None:
    sock = worker.connect()
    sock.recv(MAX_MESSAGE_SIZE + 1, socket.MSG_PEEK)  # the greeting is queued, and stays unread
    sock.close()  # closing with unread data resets the connection: ECONNRESET at the worker
    assert_exited_cleanly(worker, "WARNING", "lost (Connection reset by peer)", 0)


def test_control_socket_closed_with_a_call_held(worker: Worker) -> None:
    sock = worker.connect()
    sock.recv(MAX_MESSAGE_SIZE + 1)  # the greeting
    sock.send(encode(Offer("c1", "a", phone_sdp(4000, 1), request_id=1)))
    sock.recv(MAX_MESSAGE_SIZE + 1)  # the answer: nothing left unread, so the close is an end of stream
    sock.close()
    assert_exited_cleanly(worker, "WARNING", "closed", 1)


def test_control_socket_closed_in_order(worker: Worker) -> None:
    sock = worker.connect()
    sock.recv(MAX_MESSAGE_SIZE + 1)
    sock.close()
    assert_exited_cleanly(worker, "INFO", "closed", 0)


def test_control_process_sigkilled(worker: Worker) -> None:
    control = subprocess.Popen(
        [sys.executable, "-c", "import socket, sys, time\n"
         "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(sys.argv[1])\n"
         "s.recv(65536, socket.MSG_PEEK); print('up', flush=True); time.sleep(60)", str(worker.path)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert control.stdout is not None and control.stdout.readline() == b"up\n"
        control.kill()
        control.wait()
    finally:
        if control.poll() is None:
            control.kill()
            control.wait()
        assert control.stdout is not None
        control.stdout.close()
    status, stderr = worker.exit()
    assert status == 0 and "Traceback" not in stderr, stderr
    assert len(control_lines(stderr)) == 1 and control_lines(stderr)[0].startswith("WARNING:"), stderr
