"""``make bench-pri``: two full E1 spans (60 simultaneous calls) in the local IVR, the appliance's cost and
the prompt audio's pacing as the carrier hears it.

The appliance runs as shipped (``python -m appliance run``) with two simulated spans, 1 and 2 (user side,
``[[spans]]``), and no cloud, so every PRI call goes to the IVR's default flow. A far end per span
(:mod:`bench.pri_calls`: the appliance's own LAPD and Q.931, network side, on the span's sockets) brings
the D-channel up and places 30 calls at once, every B-channel of the span: 60 callers in the IVR. Each
presses ``*`` ``1`` in-band every ``--digit-every`` seconds (the language menu, English, back to the main
menu: the IVR keeps every caller and keeps playing prompts). Once every call is answered the callers stay
``--warmup`` seconds, then ``--seconds`` are measured:

* **pacing**: every 160-octet frame a B-channel carries towards the far end is time-stamped as the far end
  reads it, and compared with the channel's own 20 ms clock (:mod:`bench.pri_pacing`: the offset from the
  median, as :mod:`bench.ivr` does); p99 over every frame of every channel; frames lost;
* **CPU** from ``/proc/<pid>/stat`` across the window, as % of one core: the control process's own, and
  the media processes' (the spans' TDM workers and the media workers, summed);
* **digits**: what the IVR got, as its ``ivr.session`` records in the outbox say (per calling number),
  against what each caller pressed.

**Calibration** (``--calibrate``, on by default): before the appliance, the same far ends and calls run
against a loopback span (:mod:`bench.pri_loopback`) that answers and sends every frame straight back, for
``--calibration-seconds``: the far ends' own sender loop and receive stamping alone, the floor under the
pacing figure; ``pacing_vs_floor`` is the appliance's p99 over the floor's.

Last line: ``{"bench": "pri", "calls": N, "control_cpu_percent": …, "media_cpu_percent": …,
"p99_pacing_error_ms": …, …}`` with the calibration, digit and loss figures after the issue's keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import cbor2

from appliance.media.scheduling import POLICIES
from bench.common import OtherPrograms, emit, progress, ratio, rounded
from bench.ivr import dtmf_tally
from bench.pri_calls import (
    HANG_UP_WITHIN_S,
    LAST_DIGITS_S,
    Drive,
    DriveError,
    Plan,
    calling,
    drive,
    press_every,
)
from bench.pri_cpu import CpuWindow, ProcessCpu, Sample
from bench.pri_sip import SipCallers
from bench.relay import BUSY_CORES, LOOPBACK, our_ports
from bench.servers import Appliance, ServerStartError
from tests.system.sipp import free_port

LOOPBACK_READY_S: Final = 15.0
RECORDS_WITHIN_S: Final = 10.0
SPANS: Final = (1, 2)


class PriAppliance(Appliance):
    """The appliance with ``spans`` simulated (user side; none: SIP alone), no cloud and no routes (every
    call to the IVR's default flow), media on the benches' port range, logging at warning."""

    name = "appliance"
    spans: tuple[int, ...] = SPANS
    scheduling: str = "normal"  # [media] scheduling: the media workers' and TDM workers' CPU priority

    def config_text(self) -> str:
        low, high = our_ports(60)
        spans = "".join(f"[[spans]]\nnumber = {n}\n\n" for n in self.spans)
        none = "" if self.spans else "spans = []\n"  # a top-level key: before the first table
        return (
            f'state_dir = "{self.state_dir}"\n{none}\n'
            f'[sip]\nlisten = "127.0.0.1"\nudp_port = {self.listen_port}\ntcp_port = {self.listen_port}\n\n'
            '[logging]\nlevel = "warning"\n\n'
            "[metrics]\nport = 0\n\n[sync]\nport = 0\n\n"
            f"[media]\nrtp_port_min = {low}\nrtp_port_max = {high}\n"
            f'scheduling = "{self.scheduling}"\n\n{spans}'
        )

    @property
    def span_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def database(self) -> Path:
        return self.state_dir / "appliance.db"


@dataclass(frozen=True)
class Measured:
    """One run's calls and, for the appliance, its CPU and the IVR's digits."""

    drive: Drive
    cpu: CpuWindow | None = None
    background_cores: float | None = None
    dtmf_got: int | None = None
    dtmf_lost: int | None = None
    dtmf_wrong: int | None = None
    sessions: int | None = None
    farend_realtime: str = "off"

    def row(self, bench: str) -> dict[str, object]:
        d = self.drive
        seconds = d.window[1] - d.window[0]
        row: dict[str, object] = {
            "bench": bench,
            "calls_placed": d.placed,
            "calls_answered": d.answered,
            "calls_cleared_early": d.cleared_early,
            "answered_in_s": rounded(d.answered_in_s),
            **d.pacing().row(),
            "farend_cpu_percent": round(100 * d.farend_cpu_s / seconds, 1) if seconds > 0 else None,
            "farend_late_ticks": d.late_ticks,
            "farend_realtime": self.farend_realtime,
            "seconds": round(seconds, 3),
        }
        if self.cpu is not None:
            row |= self.cpu.row()
            row |= {
                "dtmf_sent": d.digits_sent,
                "dtmf_got": self.dtmf_got,
                "dtmf_lost": self.dtmf_lost,
                "dtmf_wrong": self.dtmf_wrong,
                "ivr_sessions": self.sessions,
                "background_cores": rounded(self.background_cores, 2),
            }
        return row

    def line(self, name: str) -> str:
        d, p = self.drive, self.drive.pacing()
        head = (
            f"[{name}] {d.answered}/{d.placed} calls answered"
            + (f", {d.cleared_early} CLEARED BEFORE THE WINDOW'S END" if d.cleared_early else "")
            + (f" in {d.answered_in_s:.1f} s" if d.answered_in_s is not None else "")
            + f"; pacing error p50 {_f(p.p50_ms)} p99 {_f(p.p99_ms)} p99.9 {_f(p.p999_ms)} max "
            f"{_f(p.max_ms)} ms over {p.frames} frames of {p.due} due, {p.lost} lost, {p.silent} silent "
            f"channels; far ends SCHED_FIFO {self.farend_realtime}"
        )
        if self.cpu is None:
            return head
        busy = self.background_cores is not None and self.background_cores > BUSY_CORES
        return (
            f"{head}; CPU control {self.cpu.control_percent:.1f} %, media {self.cpu.media_percent:.1f} % "
            f"({self.cpu.describe()}); digits {d.digits_sent} sent, {self.dtmf_got} got by the IVR, "
            f"{self.dtmf_lost} lost, {self.dtmf_wrong} wrong"
            + (f"; BUSY MACHINE: {self.background_cores:.2f} cores used by others" if busy else "")
        )


@contextlib.contextmanager
def realtime(enabled: bool) -> Iterator[str]:
    """Run this thread (the far ends' loop) ``SCHED_FIFO`` priority 1 inside the block, when ``enabled``
    and allowed (root); yields "on", "off" or "off: <reason>". Entered only once the processes under test
    are started: a child would inherit the policy."""
    if not enabled:
        yield "off"
        return
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError as exc:
        yield f"off: {exc.strerror}"
        return
    try:
        yield "on"
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# -- the runs -------------------------------------------------------------------------------------------


async def calibrate(workdir: Path, plan: Plan, *, rt: bool) -> Measured:
    """The far ends against the loopback span (see the module docstring)."""
    directory = workdir / "loopback"
    with _loopback(directory, plan.spans, workdir / "loopback.log", rt=rt), realtime(rt) as state:
        return Measured(await drive(directory, plan), farend_realtime=state)


@contextlib.contextmanager
def _loopback(directory: Path, spans: Sequence[int], log: Path, *, rt: bool) -> Iterator[None]:
    argv = [sys.executable, "-m", "bench.pri_loopback", "--dir", str(directory)]
    argv += ["--spans", ",".join(map(str, spans))] + (["--realtime"] if rt else [])
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        # The loopback prints one line once it listens; a dead one closes its stdout first.
        line = proc.stdout.readline().decode(errors="replace").strip()
        if line != "ready":
            raise DriveError(f"the loopback span did not start: {log.read_text(errors='replace')[-1500:]}")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(LOOPBACK_READY_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Window:
    """The on_window callback of :func:`bench.pri_calls.drive`: CPU counters at the window's two ends."""

    def __init__(self, pid: int) -> None:
        self._cpu = ProcessCpu(pid)
        self._marks: dict[bool, tuple[Sample, OtherPrograms, float, float]] = {}

    def __call__(self, started: bool) -> None:
        self._marks[started] = (
            self._cpu.sample(),
            OtherPrograms.start(),
            time.process_time(),
            time.monotonic(),
        )

    def result(self) -> tuple[CpuWindow, float | None]:
        """The appliance's CPU over the window and the cores other programs used meanwhile."""
        (s0, others, own0, t0), (s1, _, own1, t1) = self._marks[True], self._marks[False]
        window = s1.since(s0, t1 - t0)
        return window, others.cores(window.accounted_s + (own1 - own0), t1 - t0)


def _start(workdir: Path, spans: tuple[int, ...], scheduling: str) -> PriAppliance:
    app = PriAppliance(workdir=workdir, listen_port=free_port(tcp=True), next_hop=(LOOPBACK, 9))
    app.spans, app.scheduling = spans, scheduling
    try:
        app.start()
    except ServerStartError as exc:
        raise DriveError(f"the appliance did not start: {exc}") from exc
    return app


async def measure_appliance(workdir: Path, plan: Plan, *, rt: bool, scheduling: str = "normal") -> Measured:
    """The appliance as shipped with the far ends on its spans (see the module docstring)."""
    app = _start(workdir / "appliance", plan.spans, scheduling)
    try:
        window = _Window(app.pid)
        with realtime(rt) as state:
            result = await drive(app.span_dir, plan, on_window=window)
        cpu, background = window.result()
        callers = [(r.calling or "", r.digits_sent) for r in result.results if r.answered]
        got, lost, wrong, sessions = await _ivr_digits(app.database, callers)
        return Measured(result, cpu, background, got, lost, wrong, sessions, state)
    finally:
        app.stop()


@dataclass(frozen=True)
class SipMeasured:
    """The same callers over SIP/RTP: the appliance's CPU and the IVR's digits."""

    calls: int
    answered: int
    cleared_early: int
    cpu: CpuWindow
    background_cores: float | None
    dtmf_sent: int
    dtmf_got: int
    dtmf_lost: int
    dtmf_wrong: int
    rtp_received: int

    def row(self) -> dict[str, object]:
        return {
            "bench": "pri-sip-peer",
            "calls_placed": self.calls,
            "calls_answered": self.answered,
            "calls_cleared_early": self.cleared_early,
            **self.cpu.row(),
            "dtmf_sent": self.dtmf_sent,
            "dtmf_got": self.dtmf_got,
            "dtmf_lost": self.dtmf_lost,
            "dtmf_wrong": self.dtmf_wrong,
            "rtp_packets_received": self.rtp_received,
            "background_cores": rounded(self.background_cores, 2),
            "seconds": round(self.cpu.wall_s, 3),
        }

    def line(self) -> str:
        return (
            f"[SIP peer] {self.answered}/{self.calls} calls answered"
            + (f", {self.cleared_early} CLEARED BEFORE THE WINDOW'S END" if self.cleared_early else "")
            + "; CPU control "
            f"{self.cpu.control_percent:.1f} %, media {self.cpu.media_percent:.1f} % "
            f"({self.cpu.describe()}); digits {self.dtmf_sent} sent, {self.dtmf_got} got by the IVR, "
            f"{self.dtmf_lost} lost, {self.dtmf_wrong} wrong; {self.rtp_received} RTP packets heard"
        )


async def measure_sip(workdir: Path, plan: Plan, *, rt: bool, scheduling: str = "normal") -> SipMeasured:
    """The same calls, digits and window with SIP callers (:mod:`bench.pri_sip`) and no span."""
    app = _start(workdir / "appliance-sip", (), scheduling)
    callers = [f"+{calling(span, i)}" for span in plan.spans for i in range(plan.calls_per_span)]
    sip = SipCallers((LOOPBACK, app.listen_port), callers)
    try:
        with realtime(rt):
            return await _sip_calls(app, sip, plan)
    finally:
        sip.close()
        app.stop()


async def _sip_calls(app: PriAppliance, sip: SipCallers, plan: Plan) -> SipMeasured:
    callers = len(sip.calls)
    await sip.open()
    sip.invite_all()
    await sip.wait_answered(plan.answer_within)
    live = [c for c in sip.calls if c.answered]
    if not live:
        raise DriveError(f"none of {callers} SIP calls was answered within {plan.answer_within:g} s")
    presses = [
        asyncio.create_task(press_every(functools.partial(c.talker.press, plan.digits), plan, i / len(live)))
        for i, c in enumerate(live)
    ]
    await asyncio.sleep(plan.warmup)
    window = _Window(app.pid)
    window(True)
    heard0 = sum(c.frames_received for c in live)
    await asyncio.sleep(plan.seconds)
    window(False)
    early = sum(c.ended for c in live)
    heard = sum(c.frames_received for c in live) - heard0
    for task in presses:
        task.cancel()
    await asyncio.sleep(LAST_DIGITS_S)
    sip.hang_up_all()
    await sip.wait_ended(HANG_UP_WITHIN_S)
    cpu, background = window.result()
    sent = [(c.caller.lstrip("+"), c.digits_sent) for c in live]
    got, lost, wrong, _ = await _ivr_digits(app.database, sent)
    return SipMeasured(
        callers, len(live), early, cpu, background, sum(len(d) for _, d in sent), got, lost, wrong, heard
    )


async def _ivr_digits(database: Path, callers: Sequence[tuple[str, str]]) -> tuple[int, int, int, int]:
    """``(got, lost, wrong, sessions)``: the digits the IVR's session records hold against what each
    caller ``(calling number without +, digits pressed)`` pressed (:func:`bench.ivr.dtmf_tally`, matched by
    calling number); waits for every caller's record, at most :data:`RECORDS_WITHIN_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECORDS_WITHIN_S
    while True:
        records = {str(s.get("caller")): str(s.get("digits", "")) for s in _sessions(database)}
        if len(records) >= len(callers) or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)
    got = lost = wrong = 0
    for number, pressed in callers:
        heard = records.get(f"+{number}", "")
        session_lost, session_wrong = dtmf_tally(pressed, list(heard))
        got += len(heard)
        lost += session_lost
        wrong += session_wrong
    return got, lost, wrong, len(records)


def _sessions(database: Path) -> list[Mapping[str, Any]]:
    try:
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        rows = db.execute("SELECT body FROM outbox WHERE type = 'ivr.session' ORDER BY seq").fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()
    return [cbor2.loads(body) for (body,) in rows]


def summary(
    measured: Measured | None, floor: Measured | None, sip: SipMeasured | None = None
) -> dict[str, object]:
    """The issue's object first, then the calibration, digits and losses."""
    if measured is None or measured.cpu is None:
        return {
            "bench": "pri",
            "calls": 0,
            "control_cpu_percent": None,
            "media_cpu_percent": None,
            "p99_pacing_error_ms": None,
        }
    pace, cpu, calls = measured.drive.pacing(), measured.cpu, measured.drive.held
    floor_p99 = floor.drive.pacing().p99_ms if floor is not None else None
    per_call = cpu.control_percent / calls if calls else None
    sip_held = sip.answered - sip.cleared_early if sip is not None else 0
    sip_per_call = sip.cpu.control_percent / sip_held if sip is not None and sip_held else None
    return {
        "bench": "pri",
        "calls": calls,
        "control_cpu_percent": round(cpu.control_percent, 1),
        "media_cpu_percent": round(cpu.media_percent, 1),
        "p99_pacing_error_ms": rounded(pace.p99_ms),
        "pacing_floor_p99_ms": rounded(floor_p99),
        "pacing_vs_floor": ratio(pace.p99_ms, floor_p99, 1),
        "control_cpu_vs_sip": ratio(per_call, sip_per_call, 2),
        "sip_control_cpu_percent": round(sip.cpu.control_percent, 1) if sip is not None else None,
        "sip_media_cpu_percent": round(sip.cpu.media_percent, 1) if sip is not None else None,
        "frames_lost": pace.lost,
        "dtmf_sent": measured.drive.digits_sent,
        "dtmf_lost": measured.dtmf_lost,
        "calls_placed": measured.drive.placed,
    }


# -- main -----------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    plan = Plan(
        spans=SPANS,
        calls_per_span=args.calls_per_span,
        seconds=args.seconds,
        warmup=args.warmup,
        digit_every=args.digit_every,
        first_digit_after=args.first_digit_after,
    )
    progress(
        f"pri bench: spans {', '.join(map(str, SPANS))}, {plan.calls_per_span} calls each, "
        f"{plan.warmup:g} s warm-up, {plan.seconds:g} s measured, '{plan.digits}' every "
        f"{plan.digit_every:g} s per call; far ends on {type(asyncio.get_running_loop()).__name__}; media "
        f"scheduling {args.scheduling}"
    )
    floor = measured = None
    errors = 0
    with tempfile.TemporaryDirectory(prefix="bench-pri-") as tmp:
        if args.calibrate:
            try:
                short = replace(plan, seconds=min(plan.seconds, args.calibration_seconds))
                floor = await calibrate(Path(tmp), short, rt=args.realtime)
                progress(floor.line("calibration"))
            except DriveError as exc:
                errors += 1
                progress(f"[calibration] FAIL - {exc}")
        try:
            measured = await measure_appliance(Path(tmp), plan, rt=args.realtime, scheduling=args.scheduling)
            progress(measured.line("appliance"))
        except DriveError as exc:
            errors += 1
            progress(f"[appliance] FAIL - {exc}")
        sip = None
        if args.sip:
            try:
                sip = await measure_sip(Path(tmp), plan, rt=args.realtime, scheduling=args.scheduling)
                progress(sip.line())
            except DriveError as exc:
                errors += 1
                progress(f"[SIP peer] FAIL - {exc}")
    progress("")
    if floor is not None:
        emit(floor.row("pri-calibration"))
    if measured is not None:
        emit(measured.row("pri-run"))
    if sip is not None:
        emit(sip.row())
    result = summary(measured, floor, sip) | {"media_scheduling": args.scheduling}
    emit(result)
    complete = measured is not None and result["calls"] == len(SPANS) * plan.calls_per_span
    return 0 if complete and not errors else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.pri", description=__doc__.splitlines()[0])
    p.add_argument(
        "--seconds", type=float, default=20.0, help="measured window, after every call is answered"
    )
    p.add_argument("--warmup", type=float, default=3.0, help="seconds with every call up before the window")
    p.add_argument("--calls-per-span", type=int, default=30, help="calls each far end places (1-30)")
    p.add_argument("--digit-every", type=float, default=4.0, help="seconds between each caller's presses")
    p.add_argument(
        "--first-digit-after",
        type=float,
        default=Plan.first_digit_after,
        help="seconds after answer before a caller's first press (after the welcome announcement)",
    )
    p.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first run the far ends against a loopback span: their own pacing floor",
    )
    p.add_argument(
        "--sip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="last, the same calls over SIP/RTP into an appliance without spans: the control CPU per call",
    )
    p.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the far ends SCHED_FIFO (needs root), so that the appliance's processes and other "
        "programs do not delay their reads, which would count as the appliance's pacing error",
    )
    p.add_argument(
        "--scheduling",
        choices=POLICIES,
        default="normal",
        help="the appliance's [media] scheduling: its media and TDM workers' CPU priority (default: normal, "
        "as shipped; realtime needs root)",
    )
    p.add_argument("--calibration-seconds", type=float, default=10.0, help="the calibration's window")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (
        min(args.seconds, args.calibration_seconds) < 1
        or args.warmup < 0
        or not 1 <= args.calls_per_span <= 30
        or args.digit_every <= 0
        or args.first_digit_after < 0
    ):
        print(
            "--seconds and --calibration-seconds must be 1 or more, --digit-every positive, --warmup and "
            "--first-digit-after not negative, --calls-per-span 1-30"
        )
        return 2
    # The standard loop, not uvloop: the far ends stamp frames with loop.time(), which uvloop keeps in ms.
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
