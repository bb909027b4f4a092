"""The SIP servers the signalling benchmark drives, run as child processes, and their CPU accounting.

Contract. A :class:`ServerProcess` listens for SIP over UDP on ``127.0.0.1:listen_port`` and forwards every
call to ``next_hop``. :meth:`ServerProcess.start` returns once it is ready or raises
:class:`ServerStartError` whose message says why, in words fit for the benchmark's report;
:meth:`ServerProcess.stop` ends it and everything it started (it runs in its own session, so its whole
process group is signalled). :func:`tree_cpu_ticks` is the CPU time, in clock ticks, that a process and all
its descendants have used, including descendants that have already exited and been reaped.

Two servers exist: the appliance (``python -m appliance run``, ready when it prints ``appliance ready``)
and sippy's ``b2bua_simple``, the peer it is compared with (ready when its UDP port is bound).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.system.sipp import LOOPBACK, udp_port_bound

READY_LINE: Final = "appliance ready"
_OUTPUT_TAIL: Final = 3000


class ServerStartError(Exception):
    """The server did not come up; the message is the reason, with the tail of its output."""


# -- CPU accounting ---------------------------------------------------------------------------------------


def clock_ticks_per_second() -> int:
    return os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if the process is gone.

    The name is in parentheses and may hold spaces or parentheses itself, hence the split at the last ')'.
    Index 1 is the parent pid; 11 and 12 are utime and stime; 13 and 14 cutime and cstime (proc(5)).
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


@dataclass(frozen=True, slots=True)
class ProcStats:
    """One pass over ``/proc``: each process's parent, its own user + system ticks and its reaped
    children's (``cutime`` + ``cstime``), and the children of each pid."""

    stats: Mapping[int, tuple[int, int, int]]
    children: Mapping[int, list[int]]

    @classmethod
    def read(cls) -> ProcStats:
        stats: dict[int, tuple[int, int, int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (fields := _stat(int(entry))) is not None and len(fields) > 14:
                own = int(fields[11]) + int(fields[12])
                stats[int(entry)] = (int(fields[1]), own, int(fields[13]) + int(fields[14]))
        children: dict[int, list[int]] = {}
        for pid, (parent, _, _) in stats.items():
            children.setdefault(parent, []).append(pid)
        return cls(stats, children)

    def tree_ticks(self, root: int) -> int:
        """User plus system CPU of ``root`` and every live descendant, plus what their reaped children
        used. A child that exits between two samples moves from its own counters to its parent's
        ``cutime``/``cstime``, so the difference of two samples stays right for servers that fork."""
        total, pending = 0, [root]
        while pending:
            pid = pending.pop()
            if pid in self.stats:
                _, own, reaped = self.stats[pid]
                total += own + reaped
                pending.extend(self.children.get(pid, ()))
        return total


def tree_cpu_ticks(root: int) -> int:
    """:meth:`ProcStats.tree_ticks` of ``root`` now."""
    return ProcStats.read().tree_ticks(root)


# -- servers ----------------------------------------------------------------------------------------------


class ServerProcess:
    """Base of the benchmarked servers: spawn, wait until ready, stop. Subclasses give the command."""

    name = "server"

    def __init__(self, *, workdir: Path, listen_port: int, next_hop: tuple[str, int]) -> None:
        self.workdir = workdir
        self.listen_port = listen_port
        self.next_hop = next_hop
        self._proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> Mapping[str, str]:
        return os.environ

    def ready(self) -> bool:
        return udp_port_bound(self.listen_port, LOOPBACK)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "stderr.log"

    def start(self, timeout: float = 30.0) -> None:
        """Spawn the server and return once :meth:`ready`; raise ServerStartError otherwise."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = self.argv()
        try:
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self._proc = subprocess.Popen(
                    argv,
                    cwd=self.workdir,
                    env=dict(self.env()),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,  # its own process group: stop() reaches its workers too
                )
        except OSError as exc:
            raise ServerStartError(f"cannot run {argv[0]}: {exc.strerror}") from exc
        deadline = time.monotonic() + timeout
        while not self.ready():
            code = self._proc.poll()
            if code is not None:
                raise ServerStartError(f"exited with status {code} before it was ready\n{self.output_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(f"not ready after {timeout:g} s\n{self.output_tail()}")
            # The server announces readiness only through its output or its socket: poll both.
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``timeout``; idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        # Workers that outlive their parent would hold ports and CPU into the next measurement.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def exit_description(self) -> str:
        """How the server ended: its exit status, or the signal that killed it; "running" if it has not."""
        code = self._proc.poll() if self._proc is not None else None
        if code is None:
            return "running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def output_tail(self) -> str:
        parts = []
        for path in (self.stderr_path, self.stdout_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").strip()
                if text:
                    parts.append(f"--- {path.name} (last lines) ---\n{text[-_OUTPUT_TAIL:]}")
        return "\n".join(parts) if parts else "(no output)"


class Appliance(ServerProcess):
    """The appliance as shipped: ``python -m appliance run --config FILE --state-dir DIR``.

    Its configuration turns off the SIP rate limiter (the benchmark is the flood it would throttle), logs
    at warning and routes every called number to the SIPp callee as a trunk.
    """

    name = "appliance"

    def __init__(
        self, *, workdir: Path, listen_port: int, next_hop: tuple[str, int], python: str = sys.executable
    ) -> None:
        super().__init__(workdir=workdir, listen_port=listen_port, next_hop=next_hop)
        self.python = python

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def config_path(self) -> Path:
        return self.workdir / "appliance.toml"

    def config_text(self) -> str:
        host, port = self.next_hop
        return (
            f'state_dir = "{self.state_dir}"\n\n'
            "[sip]\n"
            f'listen = "{LOOPBACK}"\n'
            f"udp_port = {self.listen_port}\n"
            f"tcp_port = {self.listen_port}\n\n"
            "[sip.rate_limit]\nenabled = false\n\n"
            '[logging]\nlevel = "warning"\n\n'
            "[metrics]\nport = 0\n\n"
            "[[routes]]\n"
            'match = "*"\n'
            f'destinations = ["trunk:sip:{host}:{port}"]\n'
        )

    def argv(self) -> list[str]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        return [
            self.python,
            "-m",
            "appliance",
            "run",
            "--config",
            str(self.config_path),
            "--state-dir",
            str(self.state_dir),
        ]

    def ready(self) -> bool:
        try:
            text = self.stdout_path.read_text(errors="replace")
        except OSError:
            return False
        return any(line.strip() == READY_LINE for line in text.splitlines())


class Sippy(ServerProcess):
    """sippy's ``b2bua_simple`` in the foreground, forwarding every call to ``next_hop``.

    Its SIP logger is switched off (``SIPLOG_BEND=none``): by default it writes every message to stderr,
    which the appliance, logging at warning, does not do.
    """

    name = "sippy"

    def __init__(
        self, *, workdir: Path, listen_port: int, next_hop: tuple[str, int], executable: str | None = None
    ) -> None:
        super().__init__(workdir=workdir, listen_port=listen_port, next_hop=next_hop)
        self.executable = executable or str(Path(sys.executable).with_name("b2bua_simple"))

    def argv(self) -> list[str]:
        host, port = self.next_hop
        return [self.executable, "-f", "-l", LOOPBACK, "-p", str(self.listen_port), "-n", f"{host}:{port}"]

    def env(self) -> Mapping[str, str]:
        return {**os.environ, "SIPLOG_BEND": "none"}
