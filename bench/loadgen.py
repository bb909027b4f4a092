"""The relay benchmark's load generator: building and driving ``bench/loadgen.c``.

The generator is C (sendmmsg/recvmmsg, one thread, timerfd pacing; its header comment gives the details)
because a CPython loop tops out near 500 calls on one core, below the loads the benchmark needs. It is
built with the compiler flags of the Makefile's rule into ``build/loadgen``; :func:`build` rebuilds it when
the binary is missing or older than its source, so ``python -m bench.relay`` works without ``make``.

:class:`LoadGenerator` runs one load: :meth:`~LoadGenerator.start` spawns the generator, which binds
``2 × calls`` stream ends on loopback and reports their ports; the caller gives each end the relay port it
sends to (:meth:`~LoadGenerator.connect`), then :meth:`~LoadGenerator.begin` starts the traffic and
returns when the measured window begins (after an optional warm-up whose packets are not counted), and
:meth:`~LoadGenerator.result` waits for the figures. Ends ``2k`` (caller) and ``2k + 1`` (callee) are
call ``k``'s; the generator counts a packet as received only at the opposite end of its own call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final

SOURCE: Final = Path(__file__).with_name("loadgen.c")
# What the bench's C programs share (included by each source): a change there rebuilds them too.
SHARED_HEADER: Final = Path(__file__).with_name("rtpbench.h")
DEFAULT_BINARY: Final = Path(__file__).resolve().parent.parent / "build" / "loadgen"
# The Makefile's rule uses the same flags; keep them in step.
CFLAGS: Final = ("-O2", "-Wall", "-Wextra", "-Werror")
LOOPBACK: Final = "127.0.0.1"
DRAIN_MS: Final = 300
# Sending slots: every end's start time is snapped to this grid, and each slot's packets leave in one
# burst (20 at 1000 calls). Finer slots cost the generator a wake-up each: at 100 µs it needed ~0.9 of
# this VM's core at 1000 calls and fell behind; at 200 µs ~0.75.
SLOT_US: Final = 200
# How long the generator may take to bind its sockets, and to finish after its window and drain.
START_TIMEOUT_S: Final = 30.0
FINISH_MARGIN_S: Final = 30.0
# A generator busier than this, or sending later than this, limited the run itself.
SATURATED_CPU: Final = 0.9
SATURATED_LATE_MS: Final = 2.0


class LoadGenError(Exception):
    """The generator could not be built, did not start, or broke its line protocol."""


def compiler() -> str | None:
    """The C compiler: ``$CC`` if set, else ``cc`` or ``gcc`` on the PATH."""
    cc = os.environ.get("CC")
    return cc or shutil.which("cc") or shutil.which("gcc")


def build(binary: Path = DEFAULT_BINARY, *, source: Path = SOURCE) -> Path:
    """Compile the generator (or another bench program's ``source``) into ``binary`` unless it is already
    newer than its source; return the path.

    The compiler writes a temporary file that replaces ``binary`` atomically, so concurrent callers (the
    test suite, a bench) never run a half-written executable.
    """
    newest = max(source.stat().st_mtime, SHARED_HEADER.stat().st_mtime)
    if binary.exists() and binary.stat().st_mtime >= newest:
        return binary
    cc = compiler()
    if cc is None:
        raise LoadGenError(f"no C compiler to build {source.name} (apt-get install gcc libc6-dev)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".loadgen-", dir=binary.parent)
    os.close(fd)
    try:
        done = subprocess.run(
            [cc, *CFLAGS, "-o", tmp, str(source)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise LoadGenError(f"{cc} failed on {source}:\n{done.stderr}")
        os.replace(tmp, binary)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return binary


@dataclass(frozen=True)
class LoadResult:
    """What the generator reported for one run (its JSON line), with the derived figures."""

    ends: int
    seconds: float
    sent: int
    received: int
    lost: int
    duplicates: int
    reordered: int
    misrouted: int
    malformed: int
    send_errors: int
    socket_drops: int  # datagrams the generator's own receive queues dropped (SO_RXQ_OVFL)
    p50_us: int  # -1 when nothing arrived
    p99_us: int
    p999_us: int
    max_us: int
    late_p50_us: int  # how far after its due time a packet went out
    late_p99_us: int
    late_max_us: int
    cpu_user_s: float
    cpu_sys_s: float
    send_cpu_s: float  # CPU of the sending window alone (no drain)
    wall_s: float
    realtime: int  # 1 when the generator ran SCHED_FIFO (it asks with ``realtime=True``; needs root)
    warmup_s: float  # traffic before the measured window, not counted

    @classmethod
    def from_json(cls, line: str) -> LoadResult:
        """Parse the generator's result line; raises :class:`LoadGenError` on anything else."""
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise LoadGenError(f"generator result is not JSON: {line!r}") from exc
        if not isinstance(raw, dict):
            raise LoadGenError(f"generator result is not an object: {line!r}")
        values: dict[str, int | float] = {}
        for f in fields(cls):
            value = raw.get(f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise LoadGenError(f"generator result lacks a number {f.name!r}: {line!r}")
            values[f.name] = float(value) if f.type == "float" else int(value)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def calls(self) -> int:
        return self.ends // 2

    @property
    def loss(self) -> float:
        return 0.0 if self.sent == 0 else self.lost / self.sent

    @property
    def p50_ms(self) -> float | None:
        return _ms(self.p50_us)

    @property
    def p99_ms(self) -> float | None:
        return _ms(self.p99_us)

    @property
    def p999_ms(self) -> float | None:
        return _ms(self.p999_us)

    @property
    def max_ms(self) -> float | None:
        return _ms(self.max_us) if self.received else None

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s

    @property
    def generator_cpu(self) -> float:
        """The generator's CPU share of one core over its run (window and drain)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_us_per_packet(self) -> float | None:
        """The generator's CPU per packet relayed: its sends, receives and the kernel work they carry."""
        return self.cpu_s * 1e6 / self.received if self.received else None

    @property
    def p99_send_late_ms(self) -> float:
        return self.late_p99_us / 1000

    @property
    def generator_saturated(self) -> bool:
        """True when the generator, not the relay, limited the run."""
        return (
            self.generator_cpu > SATURATED_CPU
            or self.p99_send_late_ms > SATURATED_LATE_MS
            or self.socket_drops > 0
        )


def _ms(us: int) -> float | None:
    return None if us < 0 else us / 1000


class LoadGenerator:
    """One run of the C generator for ``calls`` calls over ``seconds``; use ``async with``."""

    def __init__(
        self,
        calls: int,
        seconds: float,
        *,
        binary: Path = DEFAULT_BINARY,
        drain_ms: int = DRAIN_MS,
        slot_us: int = SLOT_US,
        realtime: bool = True,
        warmup_ms: int = 0,
    ) -> None:
        if calls < 1 or seconds <= 0:
            raise ValueError("a load needs at least one call and a positive duration")
        self.calls = calls
        self.seconds = seconds
        self.binary = binary
        self.drain_ms = drain_ms
        self.slot_us = slot_us
        self.realtime = realtime
        self.warmup_ms = warmup_ms
        self._proc: asyncio.subprocess.Process | None = None
        self._ports: list[int] = []
        self._dest: list[int | None] = [None] * (2 * calls)

    async def __aenter__(self) -> LoadGenerator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Spawn the generator and read the ports of its stream ends."""
        self._proc = await asyncio.create_subprocess_exec(
            str(self.binary),
            "--ends", str(2 * self.calls),
            "--seconds", str(self.seconds),
            "--address", LOOPBACK,
            "--drain-ms", str(self.drain_ms),
            "--warmup-ms", str(self.warmup_ms),
            "--slot-us", str(self.slot_us),
            "--rt", "1" if self.realtime else "0",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 20,  # the ports line of 2000 ends is ~12 KB, beyond the 64 KiB default at 10k ends
        )  # fmt: skip
        words = (await self._line(START_TIMEOUT_S)).split()
        if not words or words[0] != "ports" or len(words) != 2 * self.calls + 1:
            raise LoadGenError(f"expected the ports of {2 * self.calls} ends, got {words[:4]}...")
        self._ports = [int(w) for w in words[1:]]

    def ports(self, call: int) -> tuple[int, int]:
        """Local ``(caller port, callee port)`` of ``call``, for the SDP given to the relay."""
        return self._ports[2 * call], self._ports[2 * call + 1]

    def connect(self, call: int, caller_relay_port: int, callee_relay_port: int) -> None:
        """Where ``call``'s caller end and callee end send: the relay's port facing each of them."""
        self._dest[2 * call] = caller_relay_port
        self._dest[2 * call + 1] = callee_relay_port

    async def begin(self) -> None:
        """Hand over the destinations; return once the warm-up is over and the measured window begins."""
        proc = self._running()
        if any(d is None for d in self._dest):
            raise LoadGenError("every call needs its relay ports (connect) before the run")
        assert proc.stdin is not None
        proc.stdin.write(("dest " + " ".join(map(str, self._dest)) + "\n").encode())
        await proc.stdin.drain()
        if (line := await self._line(START_TIMEOUT_S)) != "running":
            raise LoadGenError(f"expected 'running', got {line!r}")
        if (line := await self._line(self.warmup_ms / 1000 + START_TIMEOUT_S)) != "measuring":
            raise LoadGenError(f"expected 'measuring', got {line!r}")

    async def result(self) -> LoadResult:
        """Wait for the run to end and return its figures."""
        line = await self._line(self.seconds + self.drain_ms / 1000 + FINISH_MARGIN_S)
        proc = self._running()
        await proc.wait()
        self._proc = None
        return LoadResult.from_json(line)

    async def run(self) -> LoadResult:
        await self.begin()
        return await self.result()

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def _running(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise LoadGenError("the generator is not running")
        return self._proc

    async def _line(self, within_s: float) -> str:
        proc = self._running()
        assert proc.stdout is not None and proc.stderr is not None
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), within_s)
        except TimeoutError:
            raise LoadGenError(f"generator silent for {within_s:g} s") from None
        if not raw:
            await proc.wait()
            err = (await proc.stderr.read()).decode(errors="replace").strip()
            raise LoadGenError(f"generator exited {proc.returncode}: {err}")
        return raw.decode().strip()
