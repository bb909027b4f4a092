"""``make bench-sip``: the highest call rate a B2BUA sustains with no failed call, its setup time and its CPU.

Method (bench/README.md has the long form). For each server — the appliance, then sippy's b2bua_simple,
the peer — a SIPp callee (scenarios/uas.xml) stands behind the server and a SIPp caller
(scenarios/uac_strict.xml) places calls through it at a fixed rate for a window. A rate passes when every
call of the window succeeds on both legs (100, 180, 200 in order, nothing lost or late) and the caller
placed them all in time. The search doubles the rate from ``--start-rate`` on short probe windows,
bisects between the last pass and the first failure, then confirms the best rate over the full window
(halving, then bisecting, if the confirmation fails). The reported figures come from that confirmation run:

* cps: the confirmed rate;
* p99_setup_ms: 99th percentile of INVITE → 200 at the caller, from SIPp's ``-trace_rtt`` (1 ms steps);
* cpu_ms_per_call: the server's user + system CPU across the run, itself and its descendants
  (/proc/PID/stat in SC_CLK_TCK ticks), divided by the calls completed.

The same search with the caller sending straight to the callee gives SIPp's own ceiling on this machine;
a server that reaches it is reported as capped by SIPp. The last line printed is one JSON object whose
keys are :data:`SUMMARY_KEYS`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from bench.servers import (
    Appliance,
    ServerProcess,
    ServerStartError,
    Sippy,
    clock_ticks_per_second,
    tree_cpu_ticks,
)
from tests.system.sipp import LOOPBACK, SippProcess, SippResult, SippTimeoutError, free_port

SCENARIOS: Final = Path(__file__).resolve().parent / "scenarios"
CALLER: Final = SCENARIOS / "uac_strict.xml"
CALLEE: Final = SCENARIOS / "uas.xml"
# Without a server in between, the callee must also send the 100 Trying the caller requires.
DIRECT_CALLEE: Final = SCENARIOS / "uas_direct.xml"
SERVERS: Final = ("appliance", "sippy", "sipp")
SUMMARY_KEYS: Final = (
    "bench", "cps", "p99_setup_ms", "cpu_ms_per_call", "peer", "peer_cps", "peer_cpu_ms_per_call", "ratio",
    "sipp_ceiling_cps", "cps_p99_under_50ms", "peer_cps_p99_under_50ms",
)  # fmt: skip
# The call-setup budget of the goal: the rate carried within it is reported beside the ceiling.
SETUP_BUDGET_MS: Final = 50.0
# The callee counts a call once its time-wait (600 ms) is over and reports every second: give the last
# calls this long to show up before stopping it.
CALLEE_DRAIN_S: Final = 3.0
# Startup and the last calls' round trips make a run slightly longer than its window.
SUSTAIN_SLACK_S: Final = 0.5
# A run whose caller another process stopped says nothing about the server: it is run again this often.
INTERRUPTED_RETRIES: Final = 2
# A server whose best rate is this close to SIPp's own ceiling was limited by SIPp.
CAPPED_FRACTION: Final = 0.9


@dataclass(frozen=True)
class Settings:
    """How the search runs; every field has a command-line option."""

    workdir: Path
    window_s: float = 30.0
    probe_window_s: float = 5.0
    start_rate: int = 50
    max_rate: int = 6400
    bisect_steps: int = 3
    confirm_attempts: int = 4
    ring_ms: int = 10
    hold_ms: int = 10
    recv_timeout_ms: int = 5000
    sustain: float = 0.95


@dataclass(frozen=True)
class Trial:
    """One run at one rate. ``reason`` is empty when it passed and says why when it did not."""

    server: str
    rate: int
    window_s: float
    reason: str
    calls: int
    wall_s: float
    p99_setup_ms: float | None
    cpu_ms_per_call: float | None
    sipp_cpu_pct: float
    retransmissions: int
    interrupted: bool = False

    @property
    def passed(self) -> bool:
        return not self.reason

    def line(self) -> str:
        head = f"[{self.server}] {self.rate:>5} cps x {self.window_s:g} s: "
        if not self.passed:
            return head + "FAIL - " + self.reason
        p99 = f"{self.p99_setup_ms:g} ms" if self.p99_setup_ms is not None else "n/a"
        cpu = f", {self.cpu_ms_per_call:.3f} ms CPU/call" if self.cpu_ms_per_call is not None else ""
        return (
            head + f"pass - {self.calls} calls in {self.wall_s:.1f} s, p99 setup {p99}{cpu}, "
            f"{self.retransmissions} retransmissions, caller SIPp at {self.sipp_cpu_pct:.0f}% CPU"
        )


@dataclass(frozen=True)
class Outcome:
    """A server's search: its confirmed best run, if any, every run made, or why it could not run."""

    server: str
    best: Trial | None = None
    trials: tuple[Trial, ...] = ()
    error: str = ""
    search_exhausted: bool = False


# -- one run ----------------------------------------------------------------------------------------------


def _causes(failures: dict[str, int]) -> str:
    return ", ".join(f"{cause} {n}" for cause, n in sorted(failures.items())) or "no cause recorded"


def interrupted(placed: SippResult, calls: int) -> bool:
    """Whether the caller was stopped from outside before placing its calls.

    Given ``-m``, SIPp exits by itself only once every call is placed; its exit status is 0 or 1 after a
    SIGTERM or SIGINT too, so fewer calls with such a status mean that another process signalled it.
    """
    return placed.stats is not None and placed.stats.created < calls and placed.exit_code in (0, 1)


def judge(settings: Settings, *, calls: int, window_s: float, placed: SippResult, served: SippResult) -> str:
    """Why a run fails, or "" if it passes: every call succeeded on both legs, placed in time."""
    if interrupted(placed, calls):
        assert placed.stats is not None
        return f"caller stopped from outside after {placed.stats.created} of {calls} calls"
    if placed.stats is None:
        return f"caller wrote no statistics (SIPp exit {placed.exit_code}): {placed.output[-300:]!r}"
    s = placed.stats
    if s.failed or not placed.all_successful:
        causes = _causes(dict(s.failures))
        return f"{s.failed} of {s.created} calls failed ({causes}), SIPp exit {placed.exit_code}"
    if s.successful < calls:
        return f"only {s.successful} of {calls} calls completed (SIPp exit {placed.exit_code})"
    if served.stats is None:
        return f"callee wrote no statistics (SIPp exit {served.exit_code})"
    if served.stats.failed:
        return f"callee: {served.stats.failed} calls failed ({_causes(dict(served.stats.failures))})"
    if served.stats.successful < calls:
        return f"callee saw {served.stats.successful} of {calls} calls end"
    limit = window_s / settings.sustain + SUSTAIN_SLACK_S
    if placed.wall_s > limit:
        return f"not sustained: {calls} calls took {placed.wall_s:.1f} s, more than {limit:.1f} s"
    return ""


def socket_buffer_bytes(wanted: int = 4 * 1024 * 1024) -> int:
    """The largest socket buffer up to ``wanted`` that the kernel grants an unprivileged process."""
    limits = [wanted]
    for name in ("rmem_max", "wmem_max"):
        try:
            limits.append(int(Path(f"/proc/sys/net/core/{name}").read_text()))
        except (OSError, ValueError):
            continue
    return min(limits)


def run_trial(
    settings: Settings,
    *,
    server: str,
    rate: int,
    window_s: float,
    callee_port: int,
    via: ServerProcess | None,
    workdir: Path,
) -> Trial:
    """Place ``rate`` x ``window_s`` calls through ``via`` (or straight to the callee) and judge the run."""
    calls = max(1, round(rate * window_s))
    budget_s = window_s * 3 + settings.recv_timeout_ms / 1000 + 30
    target = (LOOPBACK, via.listen_port if via is not None else callee_port)
    callee = SippProcess.uas(
        CALLEE if via is not None else DIRECT_CALLEE,
        workdir=workdir / "uas",
        local_port=callee_port,
        duration_ms=settings.ring_ms,
        buffer_bytes=socket_buffer_bytes(),
    )
    caller = SippProcess.uac(
        CALLER,
        target,
        workdir=workdir / "uac",
        rate=rate,
        max_calls=calls,
        # In flight at once: a call lasts its hold time plus setup and release; two seconds more than that
        # means the server is not keeping up, and SIPp then throttles, which shows as "not sustained".
        call_limit=max(100, int(rate * (settings.hold_ms / 1000 + 2))),
        duration_ms=settings.hold_ms,
        recv_timeout_ms=settings.recv_timeout_ms,
        timeout_s=budget_s,
        buffer_bytes=socket_buffer_bytes(),
    )
    with callee:
        callee.wait_bound()
        cpu_before = tree_cpu_ticks(via.pid) if via is not None else 0
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with caller:
            try:
                placed = caller.wait(timeout=budget_s + 30)
            except SippTimeoutError as exc:
                placed = exc.result
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_after = tree_cpu_ticks(via.pid) if via is not None else 0
        deadline = time.monotonic() + CALLEE_DRAIN_S
        while time.monotonic() < deadline:
            seen = callee.stats_so_far()
            if seen is not None and seen.successful + seen.failed >= calls:
                break
            time.sleep(0.1)
        served = callee.stop()
    reason = judge(settings, calls=calls, window_s=window_s, placed=placed, served=served)
    if via is not None and not via.alive:
        reason = f"{via.name} exited during the run ({via.exit_description()})\n{via.output_tail()}"
    completed = placed.stats.successful if placed.stats is not None else 0
    cpu_ms: float | None = None
    if via is not None and completed:
        cpu_ms = (cpu_after - cpu_before) * 1000 / clock_ticks_per_second() / completed
    sipp_cpu_s = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    return Trial(
        server=server,
        rate=rate,
        window_s=window_s,
        reason=reason,
        calls=completed,
        wall_s=placed.wall_s,
        p99_setup_ms=placed.percentile_ms(99),
        cpu_ms_per_call=cpu_ms,
        sipp_cpu_pct=100 * sipp_cpu_s / placed.wall_s if placed.wall_s > 0 else 0.0,
        retransmissions=placed.stats.retransmissions if placed.stats is not None else 0,
        interrupted=interrupted(placed, calls),
    )


# -- the search -------------------------------------------------------------------------------------------


def search(
    settings: Settings, probe: Callable[[int, float], Trial], *, max_rate: int
) -> tuple[Trial | None, list[Trial], bool]:
    """Find the highest rate that passes; return its full-window run, every run, and whether the search
    stopped at ``max_rate`` without finding a failing rate.

    Doubling and bisection use probe windows; the winner is then run over the full window, halving the
    rate until a run passes and bisecting above it (at most ``confirm_attempts`` full-window runs).
    """
    trials: list[Trial] = []

    def attempt(rate: int, window_s: float) -> Trial:
        trial = probe(rate, window_s)
        trials.append(trial)
        return trial

    probe_s = min(settings.probe_window_s, settings.window_s)
    passing: int | None = None
    failing: int | None = None
    rate = max(1, min(settings.start_rate, max_rate))
    while True:
        if attempt(rate, probe_s).passed:
            passing = rate
            if rate >= max_rate:
                break
            rate = min(rate * 2, max_rate)
        else:
            failing = rate
            break
    while passing is None and rate > 1:
        rate //= 2
        if attempt(rate, probe_s).passed:
            passing = rate
        else:
            failing = rate
    if passing is None:
        return None, trials, False
    if failing is not None:
        low, high = passing, failing
        for _ in range(settings.bisect_steps):
            middle = (low + high) // 2
            if middle <= low:
                break
            if attempt(middle, probe_s).passed:
                low = middle
            else:
                high = middle
        passing = low
    exhausted = failing is None
    if probe_s >= settings.window_s:
        best = max((t for t in trials if t.passed and t.rate == passing), key=lambda t: t.window_s)
        return best, trials, exhausted
    # Confirmation over the full window: a rate can pass a probe yet fail over the window, so step down
    # by halves until a rate passes, then bisect between the best pass and the lowest failure.
    confirmed: Trial | None = None
    lowest_failure: int | None = None
    rate = passing
    for _ in range(settings.confirm_attempts):
        trial = attempt(rate, settings.window_s)
        if trial.passed:
            confirmed = trial
        else:
            lowest_failure = rate
        if lowest_failure is None:
            break  # the first confirmation passed; the probes already showed the next rate up failing
        floor = confirmed.rate if confirmed is not None else 0
        rate = (floor + lowest_failure) // 2 if confirmed is not None else lowest_failure // 2
        if rate <= floor or rate >= lowest_failure:
            break
    return confirmed, trials, exhausted


def bench_server(server: str, settings: Settings, *, max_rate: int, log: Callable[[str], None]) -> Outcome:
    """Search the best rate of ``server`` ("appliance", "sippy", or "sipp" for none).

    Every trial gets a fresh server and a fresh callee port: a run that failed leaves calls behind whose
    retransmissions (INVITE, BYE, 2xx, for up to 64*T1 = 32 s) would otherwise reach the next trial's
    callee and fail calls that have nothing to do with it.
    """
    workdir = settings.workdir / server
    counter = itertools.count(1)

    def probe(rate: int, window_s: float) -> Trial:
        for _ in range(INTERRUPTED_RETRIES + 1):
            run = workdir / f"run{next(counter):02d}-{rate}cps"
            callee_port = free_port()
            next_hop = (LOOPBACK, callee_port)
            via: ServerProcess | None = None
            if server == "appliance":
                via = Appliance(
                    workdir=run / "server", listen_port=free_port(udp=True, tcp=True), next_hop=next_hop
                )
            elif server == "sippy":
                via = Sippy(workdir=run / "server", listen_port=free_port(), next_hop=next_hop)
            if via is not None:
                via.start()
            try:
                trial = run_trial(
                    settings, server=server, rate=rate, window_s=window_s, callee_port=callee_port, via=via,
                    workdir=run,
                )  # fmt: skip
            finally:
                if via is not None:
                    via.stop()
            log(trial.line())
            if not trial.interrupted:
                break
        return trial

    try:
        best, trials, exhausted = search(settings, probe, max_rate=max_rate)
    except ServerStartError as exc:
        return Outcome(server, error=f"{server} did not start: {exc}")
    return Outcome(server, best=best, trials=tuple(trials), search_exhausted=exhausted)


# -- report -----------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _label(server: str) -> str:
    return {"appliance": "appliance", "sippy": "sippy b2bua_simple", "sipp": "SIPp uac->uas (no server)"}[
        server
    ]


def capped(outcome: Outcome, ceiling: Outcome | None) -> bool:
    """Whether ``outcome`` came so close to SIPp's own ceiling that SIPp, not the server, set the limit."""
    if outcome.best is None or ceiling is None or ceiling.best is None:
        return False
    return outcome.best.rate >= CAPPED_FRACTION * ceiling.best.rate


def table(outcomes: Sequence[Outcome], ceiling: Outcome | None, settings: Settings) -> str:
    header = (
        f"{'server':<28}{'cps':>7}{'p99 setup ms':>14}{'CPU ms/call':>13}{'calls':>9}{'retrans':>9}  note"
    )
    lines = [header, "-" * len(header)]
    for outcome in outcomes:
        best = outcome.best
        note = ""
        if outcome.error:
            note = outcome.error.splitlines()[0]
        elif best is None:
            note = "no rate passed"
        elif outcome.server == "sipp":
            note = "SIPp's own ceiling"
            if outcome.search_exhausted:
                note += f" (not reached: every rate up to --max-rate {settings.max_rate} passed)"
        elif capped(outcome, ceiling):
            note = "capped by SIPp: the server may do more"
        lines.append(
            f"{_label(outcome.server):<28}{best.rate if best else '-':>7}"
            f"{_fmt(best.p99_setup_ms if best else None, 'g'):>14}"
            f"{_fmt(best.cpu_ms_per_call if best else None, '.3f'):>13}"
            f"{best.calls if best else '-':>9}{best.retransmissions if best else '-':>9}  {note}"
        )
    lines.append(
        f"window {settings.window_s:g} s (probes {min(settings.probe_window_s, settings.window_s):g} s), "
        f"ring {settings.ring_ms} ms, hold {settings.hold_ms} ms; 0 failed calls required on both legs"
    )
    for outcome in outcomes:
        if outcome.error and "\n" in outcome.error:
            lines += ["", f"{outcome.server}:", outcome.error]
    return "\n".join(lines)


def within_latency(outcome: Outcome, window_s: float, p99_ms: float = SETUP_BUDGET_MS) -> Trial | None:
    """The highest full-window passing run whose p99 setup time stayed within ``p99_ms``: the rate a
    server carries before calls queue (at the zero-failure ceiling itself, setup time balloons)."""
    fitting = [
        t for t in outcome.trials
        if t.passed and t.window_s >= window_s and t.p99_setup_ms is not None and t.p99_setup_ms <= p99_ms
    ]  # fmt: skip
    return max(fitting, key=lambda t: t.rate, default=None)


def summary(outcomes: Sequence[Outcome], window_s: float = 30.0) -> dict[str, object]:
    """The machine-readable result: exactly :data:`SUMMARY_KEYS`, None where a figure is missing."""
    by_name = {o.server: o.best for o in outcomes}
    bounded = {o.server: within_latency(o, window_s) for o in outcomes}
    ours, peer, ceiling = by_name.get("appliance"), by_name.get("sippy"), by_name.get("sipp")

    def rounded(value: float | None, digits: int) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "bench": "sip",
        "cps": ours.rate if ours else None,
        "p99_setup_ms": rounded(ours.p99_setup_ms, 1) if ours else None,
        "cpu_ms_per_call": rounded(ours.cpu_ms_per_call, 3) if ours else None,
        "peer": "sippy",
        "peer_cps": peer.rate if peer else None,
        "peer_cpu_ms_per_call": rounded(peer.cpu_ms_per_call, 3) if peer else None,
        "ratio": round(ours.rate / peer.rate, 3) if ours and peer else None,
        "sipp_ceiling_cps": ceiling.rate if ceiling else None,
        "cps_p99_under_50ms": ours_bounded.rate if (ours_bounded := bounded.get("appliance")) else None,
        "peer_cps_p99_under_50ms": peer_bounded.rate if (peer_bounded := bounded.get("sippy")) else None,
    }


# -- command line -----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.sip", description=__doc__.split("\n\n")[0])
    p.add_argument("--window", type=float, default=30.0, help="confirmation window in seconds (30)")
    p.add_argument("--probe-window", type=float, default=5.0, help="window of search probes in seconds (5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 5 s window, 2 s probes, 2 bisections")
    p.add_argument("--start-rate", type=int, default=50, help="first rate tried, calls/s (50)")
    p.add_argument("--max-rate", type=int, default=6400, help="highest rate tried, calls/s (6400)")
    p.add_argument("--bisect-steps", type=int, default=3, help="bisections after the first failure (3)")
    p.add_argument("--ring-ms", type=int, default=10, help="callee's delay from 180 to 200, ms (10)")
    p.add_argument("--hold-ms", type=int, default=10, help="caller's hold time from ACK to BYE, ms (10)")
    p.add_argument("--servers", default=",".join(SERVERS), help="subset of appliance,sippy,sipp to run")
    p.add_argument("--keep", type=Path, help="keep every run's SIPp and server files under this directory")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(servers) - set(SERVERS))
    if unknown:
        print(f"bench.sip: unknown server(s) {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
        return 2

    def log(line: str) -> None:
        print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-sip-") as scratch:
        settings = Settings(
            workdir=args.keep.resolve() if args.keep else Path(scratch),
            window_s=args.window,
            probe_window_s=args.probe_window,
            start_rate=args.start_rate,
            max_rate=args.max_rate,
            bisect_steps=args.bisect_steps,
            ring_ms=args.ring_ms,
            hold_ms=args.hold_ms,
        )
        if args.quick:
            settings = replace(settings, window_s=5.0, probe_window_s=2.0, bisect_steps=2)
        started = time.monotonic()
        outcomes: dict[str, Outcome] = {}
        # SIPp's own ceiling first: no server can be measured above it, so it bounds their searches.
        if "sipp" in servers:
            outcomes["sipp"] = bench_server("sipp", settings, max_rate=settings.max_rate, log=log)
        ceiling = outcomes.get("sipp")
        limit = ceiling.best.rate if ceiling and ceiling.best else settings.max_rate
        for server in ("appliance", "sippy"):
            if server in servers:
                outcomes[server] = bench_server(server, settings, max_rate=limit, log=log)
                if outcomes[server].error:
                    log(f"[{server}] {outcomes[server].error.splitlines()[0]}")
        ordered = [outcomes[s] for s in SERVERS if s in outcomes]
        print()
        print(table(ordered, ceiling, settings))
        print(f"total {time.monotonic() - started:.0f} s")
        print(json.dumps(summary(ordered, settings.window_s)), flush=True)
    return 1 if any(o.error or o.best is None for o in ordered) else 0


if __name__ == "__main__":
    sys.exit(main())
