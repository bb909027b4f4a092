"""SIPp as a child process: the load generator and far-end peer of the system tests and of ``make bench-sip``.

Theory of operation. A :class:`SippProcess` runs one SIPp 3.6 instance in the foreground (never ``-bg``),
with stdin on ``/dev/null`` and ``-nostdin``, so that its exit status is the test's verdict. Each instance
owns a work directory: its scenario is copied there and SIPp runs with it as the working directory, so
every file SIPp writes lands there and nowhere else:

* ``<scenario>_<pid>_.csv`` — statistics (``-trace_stat``, one row every ``-fd`` seconds and one at exit);
* ``<scenario>_<pid>_rtt.csv`` — one line per measured response time (``-trace_rtt``, ``-rtt_freq``);
* ``<scenario>_<pid>_errors.log`` — unexpected messages and aborted calls (``-trace_err``);
* ``sipp.out`` — SIPp's screen output, kept for diagnosis.

Everything binds to loopback: SIP on ``-i`` and ``-p``, RTP echo on ``-mi``, and the remote-control socket,
which SIPp would otherwise open on every address, on ``-ci``/``-cp``. Ports are found by binding port 0.

SIPp's exit status (SIPp reference, "Exit codes"): 0 every call succeeded, 1 at least one call failed,
97 stopped by an internal command or the global ``-timeout``, 99 stopped before any call was processed,
255 (-1) fatal error, 254 (-2) fatal error binding a socket.

SIPp is always killed: on leaving the ``with`` block, when the object is collected, and, through
``PR_SET_PDEATHSIG``, when the process that started it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import math
import os
import shutil
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

LOOPBACK: Final = "127.0.0.1"
SIPP_BINARY: Final = "sipp"
# Diagnostics carried into results and exceptions are capped: a failing load test can log megabytes.
_TEXT_CAP: Final = 64 * 1024
_PR_SET_PDEATHSIG: Final = 1

Role = Literal["uac", "uas"]


class SippExit(enum.IntEnum):
    """SIPp's documented exit statuses."""

    ALL_SUCCESSFUL = 0
    SOME_FAILED = 1
    INTERNAL_COMMAND = 97
    NO_CALLS = 99
    FATAL_BIND = 254
    FATAL = 255


class SippError(Exception):
    """Base of the errors raised by this module."""


class SippNotReadyError(SippError):
    """SIPp exited, or did not bind its SIP port, before it was ready to take calls."""


class SippTimeoutError(SippError):
    """SIPp did not finish in the time given; it has been killed and ``result`` holds what it wrote."""

    def __init__(self, message: str, result: SippResult) -> None:
        super().__init__(message)
        self.result = result


# -- ports ------------------------------------------------------------------------------------------------


def free_port(host: str = LOOPBACK, *, udp: bool = True, tcp: bool = False) -> int:
    """A port on ``host`` that is free, at the time of the call, for UDP and/or TCP.

    The kernel picks it (bind to port 0); with both protocols the same number must be free for each.
    """
    if not (udp or tcp):
        raise ValueError("ask for a UDP port, a TCP port or both")
    for _ in range(64):
        first = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, first) as probe:
            probe.bind((host, 0))
            port: int = probe.getsockname()[1]
            if not (udp and tcp):
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
                try:
                    other.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError(f"no port on {host} is free for both UDP and TCP")


def udp_port_bound(port: int, host: str = LOOPBACK) -> bool:
    """Whether some process has a UDP socket bound to ``host:port`` (or to the wildcard address)."""
    wanted_v4 = {_hex_ipv4(host), "00000000"}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 2:
                continue
            address, _, port_hex = fields[1].rpartition(":")
            if int(port_hex, 16) != port:
                continue
            if table.endswith("6") or address in wanted_v4:
                return True
    return False


def _hex_ipv4(host: str) -> str:
    # /proc/net/udp writes the address as the in-memory (network order) word printed in host order.
    return socket.inet_aton(host)[::-1].hex().upper()


# -- statistics ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SippStats:
    """The last row of SIPp's statistics file: cumulative counters and the latest period's rate.

    ``failures`` maps each non-zero ``Failed…`` cause (``"UnexpectedMessage"``, ``"TimeoutOnRecv"``,
    ``"MaxUDPRetrans"``, ...) to its cumulative count.
    """

    created: int
    successful: int
    failed: int
    retransmissions: int
    current_calls: int
    current_rate: float
    average_rate: float
    elapsed_s: float
    auto_answered: int
    dead_call_messages: int
    out_of_call_messages: int
    failures: Mapping[str, int]


def _duration_s(text: str) -> float:
    """``HH:MM:SS`` or ``HH:MM:SS:USEC`` (SIPp's two duration formats) in seconds."""
    parts = text.strip().split(":")
    if len(parts) not in (3, 4) or not all(p.isdigit() for p in parts):
        raise SippError(f"not a SIPp duration: {text!r}")
    hours, minutes, seconds = (int(p) for p in parts[:3])
    micros = int(parts[3]) if len(parts) == 4 else 0
    return hours * 3600 + minutes * 60 + seconds + micros / 1e6


def parse_stat_csv(text: str) -> SippStats:
    """Parse a ``-trace_stat`` file (``;``-separated, header line first) into its last row's figures.

    Raises :class:`SippError` if the file has no data row or lacks a counter.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise SippError("statistics file has no data row")
    names = lines[0].split(";")
    values = lines[-1].split(";")
    row = dict(zip(names, values, strict=False))

    def number(name: str) -> float:
        try:
            return float(row[name])
        except (KeyError, ValueError) as exc:
            raise SippError(f"statistics file: bad or missing {name!r}") from exc

    failures = {
        name[len("Failed") : -len("(C)")]: int(number(name))
        for name in names
        if name.startswith("Failed") and name.endswith("(C)") and name != "FailedCall(C)"
    }
    return SippStats(
        created=int(number("TotalCallCreated")),
        successful=int(number("SuccessfulCall(C)")),
        failed=int(number("FailedCall(C)")),
        retransmissions=int(number("Retransmissions(C)")),
        current_calls=int(number("CurrentCall")),
        current_rate=number("CallRate(P)"),
        average_rate=number("CallRate(C)"),
        elapsed_s=_duration_s(row.get("ElapsedTime(C)", "")),
        auto_answered=int(number("AutoAnswered(C)")),
        dead_call_messages=int(number("DeadCallMsgs(C)")),
        out_of_call_messages=int(number("OutOfCallMsgs(C)")),
        failures={cause: count for cause, count in failures.items() if count},
    )


def parse_rtt_csv(text: str, *, rtd: str = "1") -> tuple[float, ...]:
    """The response times in milliseconds of distribution ``rtd`` in a ``-trace_rtt`` file, sorted.

    Lines are ``date_ms;response_time_ms;rtd_no`` after a header; a partly written last line is skipped.
    """
    samples: list[float] = []
    for line in text.splitlines()[1:]:
        fields = line.strip().split(";")
        if len(fields) != 3 or fields[2] != rtd:
            continue
        try:
            samples.append(float(fields[1]))
        except ValueError:
            continue
    return tuple(sorted(samples))


def percentile(samples: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile ``p`` (0 < p <= 100) of sorted ``samples``; None when there are none."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile out of range: {p}")
    if not samples:
        return None
    rank = math.ceil(p / 100 * len(samples))
    return samples[max(rank, 1) - 1]


@dataclass(frozen=True)
class SippResult:
    """What one SIPp run left behind: exit status, statistics, setup times and error log."""

    exit_code: int
    stats: SippStats | None
    setup_ms: tuple[float, ...]
    errors: str
    output: str
    workdir: Path
    wall_s: float

    @property
    def exit(self) -> SippExit | None:
        try:
            return SippExit(self.exit_code)
        except ValueError:
            return None

    @property
    def all_successful(self) -> bool:
        return self.exit_code == SippExit.ALL_SUCCESSFUL

    def percentile_ms(self, p: float) -> float | None:
        return percentile(self.setup_ms, p)

    def describe(self) -> str:
        """A one-paragraph account for assertion messages and benchmark logs."""
        name = self.exit.name if self.exit is not None else "unknown"
        lines = [f"SIPp exit {self.exit_code} ({name}) after {self.wall_s:.1f} s in {self.workdir}"]
        if self.stats is not None:
            s = self.stats
            lines.append(
                f"created {s.created}, successful {s.successful}, failed {s.failed} {dict(s.failures)}, "
                f"retransmissions {s.retransmissions}"
            )
        if self.errors:
            lines.append("errors log: " + self.errors[:2000])
        elif self.output:
            lines.append("output: " + self.output[-2000:])
        return "\n".join(lines)


# -- the process --------------------------------------------------------------------------------------------


def _die_with_parent() -> Callable[[], None]:
    """A pre-exec hook asking the kernel to SIGKILL the child when the thread that forked it ends."""
    libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork: no dlopen in the child

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return hook


def _kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class SippProcess:
    """One SIPp instance. Use :meth:`uac` or :meth:`uas`, then ``with``, ``start()``/``wait()``.

    ``target`` is the ``(host, port)`` a uac sends to; ``local_port`` None picks a free one. ``rate`` is
    calls per ``rate_period_ms`` (``-r``/``-rp``), ``call_limit`` the most simultaneous calls (``-l``),
    ``max_calls`` the calls after which SIPp exits (``-m``), ``duration_ms`` the length of every
    ``<pause/>`` without its own duration (``-d``). ``recv_timeout_ms`` fails a call whose expected
    message does not come in time; ``timeout_s`` stops SIPp as a whole. ``auto_answer`` (``-aa``) answers
    OPTIONS, INFO, NOTIFY and UPDATE with 200 outside the scenario. ``credentials`` feed
    ``[authentication]`` (``-au``/``-ap``); ``variables`` are ``-set`` globals. ``buffer_bytes`` sizes
    the socket buffers (``-buff_size``, capped by the kernel's ``rmem_max``/``wmem_max``); SIPp's default
    of 64 KiB drops datagrams in bursts of a few thousand calls per second.
    """

    def __init__(
        self,
        scenario: Path,
        *,
        role: Role,
        workdir: Path,
        target: tuple[str, int] | None = None,
        local_ip: str = LOOPBACK,
        local_port: int | None = None,
        rate: float | None = None,
        rate_period_ms: int | None = None,
        call_limit: int | None = None,
        max_calls: int | None = None,
        duration_ms: int | None = None,
        recv_timeout_ms: int | None = None,
        timeout_s: float | None = None,
        auto_answer: bool = False,
        service: str | None = None,
        credentials: tuple[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
        rtt_freq: int = 1,
        stat_freq_s: int = 1,
        timer_resol_ms: int | None = 1,
        buffer_bytes: int | None = None,
        trace_messages: bool = False,
        extra_args: Sequence[str] = (),
        binary: str = SIPP_BINARY,
    ) -> None:
        if role == "uac" and target is None:
            raise ValueError("a uac needs a target")
        self.scenario = Path(scenario)
        self.role = role
        self.workdir = Path(workdir)
        self.target = target
        self.local_ip = local_ip
        self.local_port = local_port if local_port is not None else free_port(local_ip)
        self._options: list[str] = []
        optional: list[tuple[str, object | None]] = [
            ("-r", rate),
            ("-rp", rate_period_ms),
            ("-l", call_limit),
            ("-m", max_calls),
            ("-d", duration_ms),
            ("-recv_timeout", recv_timeout_ms),
            ("-timeout", f"{timeout_s:g}s" if timeout_s is not None else None),
            ("-s", service),
            ("-timer_resol", timer_resol_ms),
            ("-buff_size", buffer_bytes),
        ]
        for flag, value in optional:
            if value is not None:
                self._options += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        if auto_answer:
            self._options.append("-aa")
        if credentials is not None:
            self._options += ["-au", credentials[0], "-ap", credentials[1]]
        for name, value in (variables or {}).items():
            self._options += ["-set", name, value]
        self._options += ["-trace_stat", "-fd", str(stat_freq_s), "-trace_rtt", "-rtt_freq", str(rtt_freq)]
        self._options.append("-trace_err")
        if trace_messages:
            self._options.append("-trace_msg")
        self._options += list(extra_args)
        self._binary = binary
        self._control_port = free_port(local_ip)
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._ended_at: float | None = None

    @classmethod
    def uac(cls, scenario: Path, target: tuple[str, int], *, workdir: Path, **options: Any) -> SippProcess:
        """A caller: places calls from ``scenario`` to ``target``. ``options`` as for the constructor."""
        return cls(scenario, role="uac", workdir=workdir, target=target, **options)

    @classmethod
    def uas(cls, scenario: Path, *, workdir: Path, auto_answer: bool = True, **options: Any) -> SippProcess:
        """A callee: answers calls per ``scenario`` on ``local_port``; ``-aa`` unless told otherwise."""
        return cls(scenario, role="uas", workdir=workdir, auto_answer=auto_answer, **options)

    # -- command line and files --

    @property
    def argv(self) -> list[str]:
        """The full SIPp command line."""
        argv = [self._binary]
        if self.target is not None:
            argv.append(f"{self.target[0]}:{self.target[1]}")
        argv += ["-sf", self.scenario.name, "-t", "u1", "-i", self.local_ip, "-p", str(self.local_port)]
        argv += ["-mi", self.local_ip, "-ci", self.local_ip, "-cp", str(self._control_port)]
        argv += ["-nostdin", *self._options]
        return argv

    @property
    def address(self) -> tuple[str, int]:
        return (self.local_ip, self.local_port)

    @property
    def pid(self) -> int:
        return self._require_started().pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _file(self, suffix: str) -> Path:
        return self.workdir / f"{self.scenario.stem}_{self.pid}_{suffix}"

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise SippError("SIPp has not been started")
        return self._proc

    # -- lifecycle --

    def start(self) -> Self:
        """Spawn SIPp. Returns at once; see :meth:`wait_bound` for a uas that must listen first.

        SIPp is tied to the calling thread's life (``PR_SET_PDEATHSIG``): start it from a thread that
        outlives it, such as the main thread or the event loop's.
        """
        if self._proc is not None:
            raise SippError("SIPp already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.scenario, self.workdir / self.scenario.name)
        argv = self.argv
        (self.workdir / "sipp.cmd").write_text(" ".join(argv) + "\n")
        with open(self.workdir / "sipp.out", "wb") as out:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 - only prctl runs between fork and exec
            )
        self._started_at = time.monotonic()
        weakref.finalize(self, _kill_quietly, self._proc)
        return self

    def wait_bound(self, timeout: float = 5.0) -> Self:
        """Block until SIPp's SIP socket is bound, so that a peer's first request is not lost.

        SIPp announces nothing when it is ready, so this polls the kernel's socket table.
        """
        proc = self._require_started()
        deadline = time.monotonic() + timeout
        while not udp_port_bound(self.local_port, self.local_ip):
            if proc.poll() is not None:
                raise SippNotReadyError(f"SIPp exited before binding:\n{self._collect().describe()}")
            if time.monotonic() > deadline:
                raise SippNotReadyError(f"SIPp did not bind {self.local_ip}:{self.local_port} in {timeout} s")
            time.sleep(0.01)
        return self

    async def wait_bound_async(self) -> Self:
        """:meth:`wait_bound` inside an event loop; bound it with ``asyncio.timeout``."""
        proc = self._require_started()
        while not udp_port_bound(self.local_port, self.local_ip):
            if proc.poll() is not None:
                raise SippNotReadyError(f"SIPp exited before binding:\n{self._collect().describe()}")
            await asyncio.sleep(0.01)
        return self

    def wait(self, timeout: float) -> SippResult:
        """Wait for SIPp to exit by itself and return its result; kill it, raise SippTimeoutError if not."""
        proc = self._require_started()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise SippTimeoutError(f"SIPp still running after {timeout} s", self._collect()) from None
        return self._collect()

    async def wait_async(self) -> SippResult:
        """:meth:`wait` inside an event loop, bound with ``asyncio.timeout``; the pidfd wakes the loop.

        If the wait is cancelled SIPp keeps running; leaving the ``with`` block kills it.
        """
        proc = self._require_started()
        if proc.poll() is None:
            loop = asyncio.get_running_loop()
            # Not yet reaped, so the pid still names our child even if it exits meanwhile.
            pidfd = os.pidfd_open(proc.pid)
            exited: asyncio.Future[None] = loop.create_future()

            def on_exit() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(pidfd, on_exit)
            try:
                await exited
            finally:
                loop.remove_reader(pidfd)
                os.close(pidfd)
        return self.wait(timeout=5.0)

    def stop(self, timeout: float = 5.0) -> SippResult:
        """Stop SIPp now, letting it write its final statistics (SIGTERM); SIGKILL after ``timeout``.

        Calls still in progress are abandoned. SIPp's smooth exit (SIGUSR1) is not used: after answering
        OPTIONS with ``-aa`` it waits for an out-of-call transaction that never ends.
        """
        proc = self._require_started()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self._collect()

    def kill(self) -> None:
        """SIGKILL SIPp if it is running and reap it. Safe to call any number of times."""
        if self._proc is not None:
            _kill_quietly(self._proc)
            self._mark_ended()

    def _mark_ended(self) -> None:
        if self._ended_at is None:
            self._ended_at = time.monotonic()

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()

    # -- results --

    def stats_so_far(self) -> SippStats | None:
        """The latest periodic statistics row (one every ``stat_freq_s``) while SIPp runs, or None."""
        if self._proc is None:
            return None
        try:
            text = self._file(".csv").read_text(errors="replace")
        except OSError:
            return None
        # SIPp may be writing the last row right now: only complete lines count.
        text = text[: text.rfind("\n") + 1]
        try:
            return parse_stat_csv(text)
        except SippError:
            return None

    def _collect(self) -> SippResult:
        proc = self._require_started()
        code = proc.poll()
        if code is None:
            raise SippError("SIPp is still running")
        self._mark_ended()
        assert self._ended_at is not None
        stats: SippStats | None = None
        with contextlib.suppress(OSError, SippError):
            stats = parse_stat_csv(self._file(".csv").read_text(errors="replace"))
        setup_ms: tuple[float, ...] = ()
        with contextlib.suppress(OSError):
            setup_ms = parse_rtt_csv(self._file("rtt.csv").read_text(errors="replace"))
        return SippResult(
            exit_code=code & 0xFF,
            stats=stats,
            setup_ms=setup_ms,
            errors=_read_capped(self._file("errors.log")),
            output=_read_capped(self.workdir / "sipp.out", tail=True),
            workdir=self.workdir,
            wall_s=self._ended_at - self._started_at,
        )


def _read_capped(path: Path, *, tail: bool = False) -> str:
    try:
        with open(path, "rb") as f:
            if tail:
                f.seek(max(0, f.seek(0, os.SEEK_END) - _TEXT_CAP))
            return f.read(_TEXT_CAP).decode(errors="replace")
    except OSError:
        return ""
