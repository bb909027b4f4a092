"""``make bench-ivr``: how many IVR sessions one media worker plays with exact pacing and every digit heard.

An IVR session on a worker is what call control sets up for a caller in the local IVR: one leg (``SetLeg``
leg ``a``, PCMA, telephone-event payload type 101, flag ``dtmf-events``) and a looping prompt on it
(``Play``, ``loop=True``, no barge-in, so the digits do not stop it). For each load (``--sessions``,
default 100, 250, 500, 750, 1000, 1250, 1500, 2000 sessions) the bench starts ONE media worker under
:class:`~appliance.media.supervisor.MediaSupervisor`, sets that many sessions up, and runs the C load
client (bench/ivrload.c, driven by :mod:`bench.ivr_client`) for ``--warmup`` + ``--seconds``: every
session is a caller on its own UDP port that

* receives the prompt and measures its **pacing error**: for packet ``k`` of a stream, with ``t`` the
  kernel's arrival stamp and ``ts`` the RTP timestamp, its offset ``o_k = (t_k − t_0) − (ts_k − ts_0)/8000``
  from the stream's first packet of the measured window; the pacing error is ``|o_k − median(o)|``, the
  distance from the stream's own 8 kHz clock (``|o_k|`` itself, the error against one packet whose own
  jitter then counts twice, is reported too as ``…_from_first``). Lateness, bunching and skipped audio
  all show; p99 and max over every packet of every session. Sequence gaps are the **lost packets**;
* sends its own 20 ms audio toward the worker (the inbound load a real caller gives it) and one RFC 4733
  digit every 2 s (start, three updates, three end packets 20 ms apart, RFC 4733 §2.5.1), staggered across
  the sessions. The worker reports each digit as a ``DtmfEvent``; **dtmf_lost** counts the digits a
  session sent that its call did not report, in order (:func:`dtmf_tally`).

A load **passes** with p99 pacing error under 2 ms, no digit lost or wrong, every session's prompt
arriving, and a client that was not itself the limit (its CPU, send lateness and socket drops are
reported). A load that fails while other programs kept the machine busy (``background_cores`` above
0.15) is run again, up to ``--busy-retries`` (2) times: the worker's figure, not theirs. The bench stops
after the first load that fails, prints a JSON line per run and last the issue's object for the highest
passing load: ``{"bench": "ivr", "sessions_per_worker": N, …}``.

Before each load a **calibration** run (``--calibrate``, on by default, at most 5 s) points every caller
at its own port: the client alone at that load, its pacing, clock and digit counting with no worker in
between: the floor under the worker's figures, and the proof that the client is not the bottleneck.

The worker's CPU is its process's user + system time from /proc across the measured window, as a share of
one core. The client runs SCHED_FIFO when it can (root), so a busy worker does not make it send late; the
worker runs as deployed (normal priority) unless ``--worker-realtime``. Other programs' CPU during each run
is reported (``background_cores``): on a shared machine they, not the worker, may set the pacing error.

Profiling hook: with ``BENCH_IVR_PROFILE=DIR`` in the environment the worker of each load runs under
cProfile (CPU-time clock) and writes ``DIR/worker-<pid>.pstats`` when it exits; the bench prints the top
functions of them all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from appliance.media.control_events import DtmfEvent, LegSpec, Play, PlayDone, WorkerEvent
from appliance.media.g711 import alaw_encode
from appliance.media.supervisor import MediaSupervisor
from bench.ivr_client import (
    CODEC_PT,
    DEFAULT_BINARY,
    EVENT_PT,
    ClientResult,
    IvrLoadClient,
    build_client,
    digits_of,
)
from bench.loadgen import LoadGenError
from bench.relay import (
    BUSY_CORES,
    LOOPBACK,
    our_ports,
    profile_report,
    profiled_workers,
    stderr_to,
)
from bench.servers import clock_ticks_per_second, tree_cpu_ticks

DEFAULT_SESSIONS: Final = (100, 250, 500, 750, 1000, 1250, 1500, 2000)
DEFAULT_SECONDS: Final = 10.0
DEFAULT_WARMUP_S: Final = 2.0
CALIBRATION_MAX_S: Final = 5.0
GOAL: Final = 500
PACING_LIMIT_MS: Final = 2.0
LEG: Final = "a"
PLAY_ID: Final = 1
# A prompt that is not a whole number of 20 ms frames, so every loop crosses a file end mid-frame.
PROMPT_SAMPLES: Final = 4 * 8000 + 80
SETUP_CONCURRENCY: Final = 64
COMMAND_TIMEOUT_S: Final = 10.0
# How long after the client's end the worker's last digit reports may still come. A saturated worker's
# reports queue behind its packets, and the bench's own control side, at normal priority beside a worker
# and a client that may be SCHED_FIFO, can be starved: at 750 sessions up to 1313 of 4440 digits came
# more than 2 s after the run, none was missing after 15 s. Only a run with digits missing waits this long.
DTMF_GRACE_S: Final = 10.0
# IVR legs are played in userspace; the kernel fast path would only add nftables set-up to each load.
WORKER_ARGS: Final = ("--no-fastpath",)
PROFILE_ENV: Final = "BENCH_IVR_PROFILE"
# Every user process descends from init: its tree's CPU is the machine's, measured per process (exact to
# the scheduler's runtime) rather than sampled at each tick as /proc/stat is, which on this VM missed
# nearly all of the client's CPU (it sleeps at every tick).
INIT: Final = 1


def write_prompt(path: Path, samples: int = PROMPT_SAMPLES) -> Path:
    """A raw 8 kHz A-law prompt at ``path``: a 425 Hz tone whose level rises and falls twice a second,
    about -10 dBm0 at its peak (the level matters to nothing measured; it keeps the file honest audio)."""
    peak = 0.3 * 32767
    pcm = (
        round(
            peak * (0.6 + 0.4 * math.sin(2 * math.pi * 2 * n / 8000)) * math.sin(2 * math.pi * 425 * n / 8000)
        )
        for n in range(samples)
    )
    path.write_bytes(alaw_encode(pcm))
    return path


def call_id(session: int) -> str:
    return f"ivr-{session}"


def dtmf_tally(expected: str, reported: Sequence[str]) -> tuple[int, int]:
    """``(lost, wrong)`` for one session: ``expected`` digits in order against those its call reported.

    A reported digit matches the next expected one it equals (skipping expected digits that never came:
    lost); one that matches nothing ahead is wrong."""
    matched, at = 0, 0
    for digit in reported:
        found = expected.find(digit, at)
        if found < 0:
            continue
        matched += 1
        at = found + 1
    return len(expected) - matched, len(reported) - matched


@dataclass(frozen=True)
class LoadRun:
    """One load: what the client measured and what the worker reported and spent."""

    sessions: int
    client: ClientResult | None
    calibration: bool = False
    worker_cpu: float | None = None  # share of one core over the measured window
    # Cores' worth of CPU that neither the worker, the client nor the bench used meanwhile: other programs.
    background_cores: float | None = None
    worker_realtime: bool = False  # the worker ran SCHED_FIFO (--worker-realtime), not as deployed
    dtmf_lost: int = 0
    dtmf_wrong: int = 0
    play_errors: int = 0
    error: str = ""

    @property
    def busy(self) -> bool:
        """Other programs used more than :data:`~bench.relay.BUSY_CORES` during the run."""
        return self.background_cores is not None and self.background_cores > BUSY_CORES

    @property
    def passed(self) -> bool:
        c = self.client
        return (
            c is not None
            and c.p99_pacing_error_ms is not None
            and c.p99_pacing_error_ms < PACING_LIMIT_MS
            and self.dtmf_lost == 0
            and self.dtmf_wrong == 0
            and c.silent == 0
            and self.play_errors == 0
            and c.socket_drops == 0
            and not c.saturated
        )

    def row(self) -> dict[str, object]:
        """This run as one JSON-able line (``ivr-load``, or ``ivr-calibration`` for the client alone)."""
        out: dict[str, object] = {
            "bench": "ivr-calibration" if self.calibration else "ivr-load",
            "sessions": self.sessions,
        }
        c = self.client
        if c is None:
            return out | {"error": self.error, "passed": False}
        return out | {
            "p99_pacing_error_ms": c.p99_pacing_error_ms,
            "max_pacing_error_ms": c.max_pacing_error_ms,
            "p50_pacing_error_ms": _ms(c.pacing_p50_us),
            "p999_pacing_error_ms": _ms(c.pacing_p999_us),
            "p99_pacing_error_from_first_ms": c.first_p99_pacing_error_ms,
            "max_pacing_error_from_first_ms": _ms(c.first_max_us),
            "lost_packets": c.lost,
            "packets_received": c.received,
            "silent_sessions": c.silent,
            "stalled_sessions": c.stalled,
            "dtmf_sent": c.digits_sent,
            "dtmf_lost": self.dtmf_lost,
            "dtmf_wrong": self.dtmf_wrong,
            "play_errors": self.play_errors,
            "worker_cpu_pct": None if self.worker_cpu is None else round(100 * self.worker_cpu, 1),
            "client_cpu_pct": round(100 * c.cpu_share, 1),
            "client_p99_send_late_ms": c.late_p99_us / 1000,
            "client_max_send_late_ms": c.late_max_us / 1000,
            "client_socket_drops": c.socket_drops,
            "client_saturated": c.saturated,
            "client_realtime": bool(c.realtime),
            "worker_realtime": self.worker_realtime,
            "background_cores": None if self.background_cores is None else round(self.background_cores, 2),
            "seconds": c.seconds,
            "warmup_s": c.warmup_s,
            "passed": self.passed,
        }

    def line(self) -> str:
        name = (
            "calibration" if self.calibration else "worker, SCHED_FIFO" if self.worker_realtime else "worker"
        )
        head = f"[{name}] {self.sessions:>5} sessions"
        c = self.client
        if c is None:
            return f"{head}: FAIL - {self.error}"
        cpu = "" if self.worker_cpu is None else f", worker {self.worker_cpu:.0%} CPU"
        return (
            f"{head} x {c.seconds:g} s: pacing error p50 {_ms(c.pacing_p50_us)} p99 {_ms(c.pacing_p99_us)} "
            f"p99.9 {_ms(c.pacing_p999_us)} max {_ms(c.pacing_max_us)} ms (from the first packet: p99 "
            f"{_ms(c.first_p99_us)} max {_ms(c.first_max_us)}), {c.lost} lost of {c.received}, "
            f"{c.silent} silent / {c.stalled} stalled sessions, digits {c.digits_sent} sent "
            f"{self.dtmf_lost} lost {self.dtmf_wrong} wrong{cpu}; client {c.cpu_share:.0%} CPU, p99 send "
            f"lateness {c.late_p99_us / 1000:.3f} ms"
            + (" (CLIENT SATURATED)" if c.saturated else "")
            + (f", {c.socket_drops} datagrams dropped at its sockets" if c.socket_drops else "")
            + (f", {self.play_errors} playbacks failed" if self.play_errors else "")
            + (
                f"; BUSY MACHINE: {self.background_cores:.2f} cores used by other programs"
                if self.busy
                else ""
            )
            + ("" if self.calibration else f" -> {'pass' if self.passed else 'FAIL'}")
        )


def _ms(us: int) -> float | None:
    return None if us < 0 else us / 1000


def summary(runs: Sequence[LoadRun]) -> dict[str, object]:
    """The issue's object: the highest passing load of the worker runs (0 sessions when none passed, with
    the lowest load's figures)."""
    worker = [r for r in runs if not r.calibration]
    passing = [r for r in worker if r.passed]
    best = max(passing, key=lambda r: r.sessions) if passing else None
    shown = best or (min(worker, key=lambda r: r.sessions) if worker else None)
    client = shown.client if shown else None
    sessions = best.sessions if best else 0
    return {
        "bench": "ivr",
        "sessions_per_worker": sessions,
        "p99_pacing_error_ms": client.p99_pacing_error_ms if client else None,
        "dtmf_lost": shown.dtmf_lost if shown and client else None,
        "goal": GOAL,
        "ratio_to_goal": round(sessions / GOAL, 3),
    }


# -- the runs -----------------------------------------------------------------------------------------------


async def measure_calibration(
    sessions: int, seconds: float, binary: Path, *, warmup_ms: int, realtime: bool
) -> LoadRun:
    """Every caller sends to itself: the client alone, its pacing and digit counting at this load."""
    try:
        async with IvrLoadClient(
            sessions, seconds, binary=binary, warmup_ms=warmup_ms, realtime=realtime
        ) as client:
            for s in range(sessions):
                client.connect(s, client.port(s))
            await client.begin()
            result = await client.result()
    except (LoadGenError, OSError) as exc:
        return LoadRun(sessions, None, calibration=True, error=str(exc))
    lost = max(0, result.digits_sent - result.digits_seen)
    return LoadRun(sessions, result, calibration=True, dtmf_lost=lost, dtmf_wrong=result.digits_wrong)


class _Reports:
    """The worker's digit reports per call and its failed playbacks, as they arrive."""

    def __init__(self) -> None:
        self.digits: dict[str, list[str]] = {}
        self.count = 0
        self.play_errors = 0
        self._arrived = asyncio.Event()

    def __call__(self, _index: int, event: WorkerEvent) -> None:
        if isinstance(event, DtmfEvent):
            self.digits.setdefault(event.call_id, []).append(event.digit)
            self.count += 1
            self._arrived.set()
        elif isinstance(event, PlayDone) and event.reason == "error":
            self.play_errors += 1

    async def wait_for(self, count: int, within: float) -> None:
        """Return once ``count`` digits were reported in all, or after ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.count < count and (left := deadline - loop.time()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)


def free_ports(sup: MediaSupervisor, sessions: int) -> list[int]:
    """``sessions`` RTP ports of the worker's slice it holds (even, and not reported unusable)."""
    low, high = sup.slices[0]
    unusable = sup.unusable(0)
    ports = [p for p in range(low + (low & 1), high, 2) if p not in unusable][:sessions]
    if len(ports) < sessions:
        raise LoadGenError(f"the worker's slice {low}-{high} holds {len(ports)} pairs, not {sessions}")
    return ports


def tally(reports: Mapping[str, Sequence[str]], digits: Sequence[int]) -> tuple[int, int]:
    """``(lost, wrong)`` over every session, from the digits each sent (:func:`dtmf_tally`)."""
    lost = wrong = 0
    for s, count in enumerate(digits):
        session_lost, session_wrong = dtmf_tally(digits_of(s, count), reports.get(call_id(s), ()))
        lost += session_lost
        wrong += session_wrong
    return lost, wrong


async def measure_worker(
    sessions: int,
    seconds: float,
    binary: Path,
    workdir: Path,
    prompt: Path,
    *,
    warmup_ms: int,
    realtime: bool,
    worker_realtime: bool = False,
) -> LoadRun:
    """One worker, ``sessions`` IVR sessions on it, the client's load for ``seconds``."""
    reports = _Reports()
    sup = MediaSupervisor(
        1,
        LOOPBACK,
        our_ports(sessions),
        workdir,
        on_event=reports,
        timeout=COMMAND_TIMEOUT_S,
        worker_args=WORKER_ARGS,
    )
    log_path = workdir / "worker.log"
    phase = "start"
    loop = asyncio.get_running_loop()
    try:
        with stderr_to(log_path):
            await sup.start()
        ports = free_ports(sup, sessions)
        if worker_realtime:
            worker_pid = sup.pid(0)
            assert worker_pid is not None
            os.sched_setscheduler(worker_pid, os.SCHED_FIFO, os.sched_param(1))
        semaphore = asyncio.Semaphore(SETUP_CONCURRENCY)
        async with IvrLoadClient(
            sessions, seconds, binary=binary, warmup_ms=warmup_ms, realtime=realtime
        ) as client:

            async def set_up(s: int) -> None:
                spec = LegSpec(ports[s], (LOOPBACK, client.port(s)), CODEC_PT, "PCMA", EVENT_PT)
                async with semaphore:
                    await sup.set_leg(call_id(s), LEG, spec, ("dtmf-events",))
                    await sup.send(
                        0, Play(call_id(s), LEG, PLAY_ID, (str(prompt),), barge_in=False, loop=True)
                    )
                client.connect(s, ports[s])

            phase = "session set-up"
            await asyncio.gather(*(set_up(s) for s in range(sessions)))
            pid = sup.pid(0)
            if pid is None:
                raise LoadGenError("the media worker is not running")
            phase = "run"
            await client.begin()
            ticks0, all0, t0 = tree_cpu_ticks(pid), tree_cpu_ticks(INIT), loop.time()
            own0 = time.process_time()  # this process: the control side reading the worker's events
            result = await client.result()
            ticks, elapsed = tree_cpu_ticks(pid) - ticks0, loop.time() - t0
            every = tree_cpu_ticks(INIT) - all0
            own = time.process_time() - own0
            if sup.pid(0) != pid:
                raise LoadGenError("the media worker restarted during the run")
            await reports.wait_for(result.digits_sent, DTMF_GRACE_S)
        lost, wrong = tally(reports.digits, result.digits)
        tick = clock_ticks_per_second()
        cpu = ticks / tick / elapsed if elapsed > 0 else None
        # Every process's CPU (the client's too, reaped into this one's children's time) less the worker,
        # the client's sending window (its drain adds little) and this process.
        others = max(0.0, (every - ticks) / tick - result.cpu_s - own) / elapsed if elapsed > 0 else None
        return LoadRun(
            sessions,
            result,
            worker_cpu=cpu,
            background_cores=others,
            worker_realtime=worker_realtime,
            dtmf_lost=lost,
            dtmf_wrong=wrong,
            play_errors=reports.play_errors,
        )
    except Exception as exc:  # a refused command, a dead worker, the client: report it, go on
        return LoadRun(sessions, None, error=f"{phase}: {type(exc).__name__}: {exc}; {_tail(log_path)}")
    finally:
        await sup.close()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no worker log)"
    kept = [line for line in text.splitlines() if line.strip() and not line.startswith("INFO:")]
    return "worker log: " + (" | ".join(kept[-lines:]) or "(nothing above INFO)")


# -- main ---------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    loads = sorted({int(n) for n in args.sessions.split(",") if n.strip()})
    if not loads or loads[0] < 1:
        print("--sessions needs positive loads")
        return 2
    try:
        binary = build_client(args.client)
    except LoadGenError as exc:
        print(f"load client: {exc}")
        return 1
    warmup_ms = round(args.warmup * 1000)
    profile_dir = Path(os.environ[PROFILE_ENV]) if os.environ.get(PROFILE_ENV) else None
    runs: list[LoadRun] = []
    with tempfile.TemporaryDirectory(prefix="bench-ivr-") as tmp:
        prompt = args.prompt or write_prompt(Path(tmp) / "prompt.alaw")
        print(
            f"ivr bench: loads {loads}, {args.seconds:g} s each after {args.warmup:g} s warm-up, one media "
            f"worker, prompt {prompt} ({prompt.stat().st_size / 8000:g} s), client {binary}",
            flush=True,
        )
        for sessions in loads:
            if args.calibrate:
                calibration = await measure_calibration(
                    sessions,
                    min(args.seconds, CALIBRATION_MAX_S),
                    binary,
                    warmup_ms=warmup_ms,
                    realtime=args.realtime,
                )
                runs.append(calibration)
                print(calibration.line(), flush=True)
            for attempt in range(1 + args.busy_retries):
                workdir = Path(tempfile.mkdtemp(prefix=f"load-{sessions}-", dir=tmp))
                with profiled_workers(profile_dir):
                    measured = await measure_worker(
                        sessions,
                        args.seconds,
                        binary,
                        workdir,
                        prompt,
                        warmup_ms=warmup_ms,
                        realtime=args.realtime,
                        worker_realtime=args.worker_realtime,
                    )
                runs.append(measured)
                print(measured.line(), flush=True)
                await asyncio.sleep(0.5)  # let the kernel recycle the previous run's ports
                if measured.passed or not measured.busy or attempt == args.busy_retries:
                    break
                print(f"  other programs were busy: running {sessions} sessions again", flush=True)
            if not measured.passed:
                break
    if profile_dir is not None:
        print()
        print(profile_report(profile_dir))
    print()
    for r in runs:
        print(json.dumps(r.row()))
    print(json.dumps(summary(runs)))
    return 1 if any(r.client is None for r in runs) else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.ivr", description=__doc__.splitlines()[0])
    p.add_argument(
        "--sessions", default=",".join(map(str, DEFAULT_SESSIONS)), help="comma-separated loads, run upwards"
    )
    p.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="measured window per load")
    p.add_argument(
        "--warmup", type=float, default=DEFAULT_WARMUP_S, help="seconds of traffic before each window"
    )
    p.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="before each load, measure the client talking to itself at that load",
    )
    p.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the client SCHED_FIFO so that a busy worker does not make it send late (needs root)",
    )
    p.add_argument(
        "--worker-realtime",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run the media worker SCHED_FIFO priority 1 (needs root): its pacing on a core of its own, "
        "as no other program's load can take it (default: as deployed, normal priority)",
    )
    p.add_argument(
        "--busy-retries",
        type=int,
        default=2,
        help="run a load that failed again, up to this many times, when other programs were busy meanwhile",
    )
    p.add_argument(
        "--prompt", type=Path, default=None, help="a raw A-law prompt to loop (default: generated)"
    )
    p.add_argument("--client", type=Path, default=DEFAULT_BINARY, help="the client binary, built if stale")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.busy_retries < 0:
        print("--seconds must be positive, --warmup and --busy-retries not negative")
        return 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
