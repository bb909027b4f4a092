"""The SIPp harness against SIPp itself: calls, failures, OPTIONS, digest registration, statistics parsing,
and the rate search and accounting of the signalling benchmark (``make bench-sip``) built on it.

Every peer is a real SIPp process on 127.0.0.1; nothing here involves the appliance, so a failure points at
the harness, the scenarios or the benchmark.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.servers import Appliance, ServerStartError, clock_ticks_per_second, tree_cpu_ticks
from bench.sip import (
    SUMMARY_KEYS,
    Outcome,
    Settings,
    Trial,
    capped,
    interrupted,
    judge,
    run_trial,
    search,
    summary,
    table,
    within_latency,
)
from tests.system.sipp import (
    SippError,
    SippExit,
    SippProcess,
    SippResult,
    SippStats,
    SippTimeoutError,
    free_port,
    parse_rtt_csv,
    parse_stat_csv,
    percentile,
    udp_port_bound,
)

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
BENCH_SCENARIOS = ROOT / "bench" / "scenarios"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("caller", "callee"),
    [
        (BENCH_SCENARIOS / "uac_strict.xml", BENCH_SCENARIOS / "uas_direct.xml"),
        (SCENARIOS / "uac_call.xml", SCENARIOS / "uas_cloud.xml"),
    ],
    ids=["bench-strict", "call-to-cloud"],
)
def test_twenty_calls_uac_to_uas_all_succeed(tmp_path: Path, caller: Path, callee: Path) -> None:
    with SippProcess.uas(callee, workdir=tmp_path / "uas", max_calls=20) as uas:
        uas.wait_bound()
        with SippProcess.uac(
            caller, uas.address, workdir=tmp_path / "uac", rate=100, max_calls=20, duration_ms=20
        ) as uac:
            result = uac.wait(timeout=20)
        served = uas.wait(timeout=10)

    assert result.exit is SippExit.ALL_SUCCESSFUL, result.describe()
    assert result.stats is not None
    assert (result.stats.created, result.stats.successful, result.stats.failed) == (20, 20, 0)
    assert result.stats.failures == {}
    # One setup time per call, in milliseconds, all well under the first INVITE retransmission.
    assert len(result.setup_ms) == 20
    p99 = result.percentile_ms(99)
    assert p99 is not None and 0 <= p99 < 500
    assert served.exit is SippExit.ALL_SUCCESSFUL, served.describe()
    assert served.stats is not None and served.stats.successful == 20


def test_uac_against_silent_port_reports_failures(tmp_path: Path) -> None:
    silent = free_port()
    assert not udp_port_bound(silent)
    with SippProcess.uac(
        BENCH_SCENARIOS / "uac_strict.xml",
        ("127.0.0.1", silent),
        workdir=tmp_path / "uac",
        rate=20,
        max_calls=3,
        recv_timeout_ms=300,
    ) as uac:
        result = uac.wait(timeout=15)

    assert result.exit is SippExit.SOME_FAILED, result.describe()
    assert result.stats is not None
    assert (result.stats.successful, result.stats.failed) == (0, 3)
    assert result.stats.failures.get("TimeoutOnRecv") == 3
    assert result.setup_ms == ()
    assert result.percentile_ms(99) is None


def test_strict_caller_fails_a_call_without_100_trying(tmp_path: Path) -> None:
    # The benchmark callee sends no 100 (a server in between must), so straight to it every call fails.
    with SippProcess.uas(BENCH_SCENARIOS / "uas.xml", workdir=tmp_path / "uas") as uas:
        uas.wait_bound()
        with SippProcess.uac(
            BENCH_SCENARIOS / "uac_strict.xml", uas.address, workdir=tmp_path / "uac", rate=50, max_calls=2
        ) as uac:
            result = uac.wait(timeout=15)

    assert result.exit is SippExit.SOME_FAILED, result.describe()
    assert result.stats is not None
    assert result.stats.failures.get("UnexpectedMessage") == 2
    assert "while expecting '100'" in result.errors


def test_options_is_auto_answered_by_uas(tmp_path: Path) -> None:
    with SippProcess.uas(BENCH_SCENARIOS / "uas.xml", workdir=tmp_path / "uas") as uas:
        uas.wait_bound()
        with SippProcess.uac(
            SCENARIOS / "uac_options.xml", uas.address, workdir=tmp_path / "uac", rate=50, max_calls=3
        ) as uac:
            result = uac.wait(timeout=15)
        assert uas.running, "the callee keeps serving calls after answering OPTIONS"
        served = uas.stop()

    assert result.exit is SippExit.ALL_SUCCESSFUL, result.describe()
    assert result.stats is not None and result.stats.successful == 3
    assert served.stats is not None and served.stats.auto_answered == 3


@pytest.mark.parametrize(
    ("password", "verdict"), [("s3cret", SippExit.ALL_SUCCESSFUL), ("wrong", SippExit.SOME_FAILED)]
)
def test_register_with_digest(tmp_path: Path, password: str, verdict: SippExit) -> None:
    with SippProcess.uas(
        SCENARIOS / "uas_registrar.xml",
        workdir=tmp_path / "registrar",
        max_calls=1,
        variables={"user": "agent7", "password": "s3cret"},
    ) as registrar:
        registrar.wait_bound()
        with SippProcess.uac(
            SCENARIOS / "uac_register_digest.xml",
            registrar.address,
            workdir=tmp_path / "uac",
            max_calls=1,
            service="agent7",
            credentials=("agent7", password),
        ) as uac:
            result = uac.wait(timeout=15)

    assert result.exit is verdict, result.describe()
    assert result.stats is not None
    assert result.stats.successful == (1 if verdict is SippExit.ALL_SUCCESSFUL else 0)


async def test_wait_async_does_not_block_the_loop(tmp_path: Path) -> None:
    with SippProcess.uas(BENCH_SCENARIOS / "uas_direct.xml", workdir=tmp_path / "uas", max_calls=5) as uas:
        await uas.wait_bound_async()
        with SippProcess.uac(
            BENCH_SCENARIOS / "uac_strict.xml", uas.address, workdir=tmp_path / "uac", rate=100, max_calls=5
        ) as uac:
            result = await uac.wait_async()
        served = await uas.wait_async()

    assert result.exit is SippExit.ALL_SUCCESSFUL, result.describe()
    assert served.exit is SippExit.ALL_SUCCESSFUL, served.describe()


def test_leaving_the_block_kills_sipp(tmp_path: Path) -> None:
    with SippProcess.uas(BENCH_SCENARIOS / "uas.xml", workdir=tmp_path / "uas") as uas:
        uas.wait_bound()
        pid = uas.pid
        assert _alive(pid)
    assert not uas.running
    assert not _alive(pid)
    assert not udp_port_bound(uas.local_port)


def test_wait_timeout_kills_and_reports(tmp_path: Path) -> None:
    with SippProcess.uas(BENCH_SCENARIOS / "uas.xml", workdir=tmp_path / "uas") as uas:
        uas.wait_bound()
        with pytest.raises(SippTimeoutError) as caught:
            uas.wait(timeout=0.2)
    assert not uas.running
    assert caught.value.result.exit_code != 0


def test_command_line_stays_on_loopback(tmp_path: Path) -> None:
    uac = SippProcess.uac(
        BENCH_SCENARIOS / "uac_strict.xml",
        ("127.0.0.1", 5070),
        workdir=tmp_path,
        rate=50,
        call_limit=200,
        max_calls=1000,
        recv_timeout_ms=5000,
    )
    argv = uac.argv
    for flag in ("-i", "-mi", "-ci"):
        assert argv[argv.index(flag) + 1] == "127.0.0.1"
    assert argv[1] == "127.0.0.1:5070"
    assert argv[argv.index("-p") + 1] == str(uac.local_port)
    assert [argv[argv.index(f) + 1] for f in ("-r", "-l", "-m", "-recv_timeout")] == [
        "50",
        "200",
        "1000",
        "5000",
    ]
    assert "-nostdin" in argv and "-bg" not in argv
    assert "-aa" not in argv
    assert "-aa" in SippProcess.uas(BENCH_SCENARIOS / "uas.xml", workdir=tmp_path).argv


# -- parsing, on SIPp's own output formats ---------------------------------------------------------------

_STAT_HEADER = (
    "StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;CallRate(P);CallRate(C);"
    "IncomingCall(P);IncomingCall(C);OutgoingCall(P);OutgoingCall(C);TotalCallCreated;CurrentCall;"
    "SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);FailedMaxUDPRetrans(P);"
    "FailedMaxUDPRetrans(C);FailedUnexpectedMessage(P);FailedUnexpectedMessage(C);FailedTimeoutOnRecv(P);"
    "FailedTimeoutOnRecv(C);OutOfCallMsgs(P);OutOfCallMsgs(C);DeadCallMsgs(P);DeadCallMsgs(C);"
    "Retransmissions(P);Retransmissions(C);AutoAnswered(P);AutoAnswered(C);ResponseTime1(P);"
    "ResponseTime1(C);ResponseTimeRepartition1;ResponseTimeRepartition1_<10;"
)
_STAT_ROW = (
    "2026-11-24\t12:21:26.455213\t1795522886.455213;2026-11-24\t12:21:26.455974\t1795522886.455974;"
    "2026-11-24\t12:21:27.468310\t1795522887.468310;00:00:01;00:01:02;100;98.5;97.25;0;0;10;1200;1200;4;"
    "10;1190;0;6;0;1;0;3;0;2;0;0;0;7;0;11;0;0;00:00:00:004000;00:00:00:003000;;1190;"
)


def test_parse_stat_csv_reads_last_row() -> None:
    first = _STAT_ROW.replace(";1200;1200;4;", ";5;5;0;")
    stats = parse_stat_csv("\n".join([_STAT_HEADER, first, _STAT_ROW, ""]))
    assert (stats.created, stats.successful, stats.failed, stats.current_calls) == (1200, 1190, 6, 4)
    assert stats.retransmissions == 11
    assert stats.dead_call_messages == 7
    assert stats.current_rate == 98.5 and stats.average_rate == 97.25
    assert stats.elapsed_s == 62.0
    assert stats.failures == {"MaxUDPRetrans": 1, "UnexpectedMessage": 3, "TimeoutOnRecv": 2}


def test_parse_stat_csv_rejects_header_only() -> None:
    with pytest.raises(SippError):
        parse_stat_csv(_STAT_HEADER + "\n")


def test_parse_rtt_csv_and_percentiles() -> None:
    text = "Date_ms;response_time_ms;rtd_no\n52.001;7;1\n104.001;3;1\n110.0;900;2\n152.001;5;1\n204.0"
    samples = parse_rtt_csv(text)
    assert samples == (3.0, 5.0, 7.0)
    assert parse_rtt_csv(text, rtd="2") == (900.0,)
    assert percentile(samples, 50) == 5.0
    assert percentile(samples, 99) == 7.0
    assert percentile(samples, 1) == 3.0
    assert percentile([float(n) for n in range(1, 101)], 99) == 99.0
    with pytest.raises(ValueError):
        percentile(samples, 0)


# -- the signalling benchmark built on the harness -------------------------------------------------------


def _fake_trial(rate: int, window_s: float, *, passes: bool) -> Trial:
    return Trial(
        server="fake",
        rate=rate,
        window_s=window_s,
        reason="" if passes else "1 of 10 calls failed",
        calls=round(rate * window_s) if passes else 0,
        wall_s=window_s,
        p99_setup_ms=4.0,
        cpu_ms_per_call=1.0,
        sipp_cpu_pct=5.0,
        retransmissions=0,
    )


def test_search_doubles_bisects_then_confirms(tmp_path: Path) -> None:
    runs: list[tuple[int, float]] = []

    def probe(rate: int, window_s: float) -> Trial:
        runs.append((rate, window_s))
        # Short probes pass up to 300 calls/s, the long window only up to 250.
        return _fake_trial(rate, window_s, passes=rate <= (300 if window_s < 30 else 250))

    settings = Settings(workdir=tmp_path, start_rate=50, bisect_steps=3)
    best, trials, exhausted = search(settings, probe, max_rate=6400)

    assert [r for r, w in runs if w == 5.0] == [50, 100, 200, 400, 300, 350, 325]
    # 300 fails the full window: halve to 150 (pass), then bisect: 225 (pass), 262 (fail).
    assert [r for r, w in runs if w == 30.0] == [300, 150, 225, 262]
    assert best is not None and best.rate == 225 and best.window_s == 30.0
    assert not exhausted
    assert len(trials) == len(runs)


def test_search_confirms_once_when_the_probe_rate_holds(tmp_path: Path) -> None:
    settings = Settings(workdir=tmp_path, start_rate=50, bisect_steps=1)
    best, trials, _ = search(settings, lambda r, w: _fake_trial(r, w, passes=r <= 100), max_rate=6400)
    assert [(t.rate, t.window_s) for t in trials] == [(50, 5), (100, 5), (200, 5), (150, 5), (100, 30)]
    assert best is not None and best.rate == 100


def test_search_stops_at_max_rate_and_halves_below_start(tmp_path: Path) -> None:
    settings = Settings(workdir=tmp_path, window_s=5, probe_window_s=5, start_rate=50)
    best, _, exhausted = search(settings, lambda r, w: _fake_trial(r, w, passes=True), max_rate=150)
    assert best is not None and best.rate == 150 and exhausted

    best, trials, _ = search(settings, lambda r, w: _fake_trial(r, w, passes=r <= 12), max_rate=150)
    assert best is not None and best.rate == 12
    assert [t.rate for t in trials][:4] == [50, 25, 12, 18]

    best, _, _ = search(settings, lambda r, w: _fake_trial(r, w, passes=False), max_rate=150)
    assert best is None


def test_summary_has_exactly_the_published_keys(tmp_path: Path) -> None:
    ours = Outcome("appliance", best=_fake_trial(300, 30, passes=True))
    peer = Outcome("sippy", best=_fake_trial(100, 30, passes=True))
    ceiling = Outcome("sipp", best=_fake_trial(3200, 30, passes=True))
    result = summary([ours, peer, ceiling])
    assert tuple(result) == SUMMARY_KEYS
    assert result["ratio"] == 3.0 and result["sipp_ceiling_cps"] == 3200 and result["peer"] == "sippy"
    assert not capped(ours, ceiling)
    assert capped(Outcome("appliance", best=_fake_trial(3000, 30, passes=True)), ceiling)

    down = summary([Outcome("appliance", error="appliance did not start: exited with status 1"), peer])
    assert down["cps"] is None and down["ratio"] is None and down["peer_cps"] == 100
    text = table(
        [Outcome("appliance", error="appliance did not start: boom"), peer], None, Settings(tmp_path)
    )
    assert "appliance did not start: boom" in text


def test_trial_without_server_measures_sipp(tmp_path: Path) -> None:
    settings = Settings(workdir=tmp_path, window_s=1, probe_window_s=1)
    trial = run_trial(
        settings, server="sipp", rate=50, window_s=1, callee_port=free_port(), via=None, workdir=tmp_path
    )
    assert trial.passed, trial.reason
    assert trial.calls == 50
    assert trial.p99_setup_ms is not None and trial.p99_setup_ms >= 0
    assert trial.cpu_ms_per_call is None


def test_cpu_of_a_process_tree_counts_its_children() -> None:
    # The parent forks a child that burns 0.4 s of CPU and exits; the parent reaps it, says so, and idles.
    spin = "import time\nwhile time.process_time() < 0.4: pass"
    script = (
        f"import subprocess, sys, time; subprocess.run([sys.executable, '-c', {spin!r}]); "
        "print('reaped', flush=True); time.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        before = tree_cpu_ticks(parent.pid)
        assert parent.stdout is not None and parent.stdout.readline() == "reaped\n"
        after = tree_cpu_ticks(parent.pid)
    finally:
        parent.kill()
        parent.wait()
    # The child is gone, but its CPU moved into the parent's cutime/cstime and still counts.
    assert (after - before) / clock_ticks_per_second() >= 0.35


def test_server_that_cannot_run_reports_why(tmp_path: Path) -> None:
    appliance = Appliance(
        workdir=tmp_path, listen_port=free_port(), next_hop=("127.0.0.1", 5070), python=str(tmp_path / "none")
    )
    with pytest.raises(ServerStartError, match="cannot run"):
        appliance.start(timeout=2)
    assert 'destinations = ["trunk:sip:127.0.0.1:5070"]' in appliance.config_text()
    assert "[sip.rate_limit]\nenabled = false" in appliance.config_text()


def _result(*, exit_code: int, created: int, successful: int, failed: int, wall_s: float) -> SippResult:
    stats = SippStats(
        created=created,
        successful=successful,
        failed=failed,
        retransmissions=0,
        current_calls=0,
        current_rate=0.0,
        average_rate=0.0,
        elapsed_s=wall_s,
        auto_answered=0,
        dead_call_messages=0,
        out_of_call_messages=0,
        failures={"UnexpectedMessage": failed} if failed else {},
    )
    return SippResult(exit_code, stats, (), "", "", Path("."), wall_s)


def test_judge_names_what_went_wrong(tmp_path: Path) -> None:
    settings = Settings(workdir=tmp_path)
    served = _result(exit_code=0, created=100, successful=100, failed=0, wall_s=6)

    def verdict(placed: SippResult, callee: SippResult = served) -> str:
        return judge(settings, calls=100, window_s=5, placed=placed, served=callee)

    assert verdict(_result(exit_code=0, created=100, successful=100, failed=0, wall_s=5.1)) == ""
    assert "2 of 100 calls failed (UnexpectedMessage 2)" in verdict(
        _result(exit_code=1, created=100, successful=98, failed=2, wall_s=5.1)
    )
    assert "not sustained" in verdict(_result(exit_code=0, created=100, successful=100, failed=0, wall_s=7))
    assert "callee saw 90 of 100" in verdict(
        _result(exit_code=0, created=100, successful=100, failed=0, wall_s=5.1),
        _result(exit_code=0, created=100, successful=90, failed=0, wall_s=6),
    )
    # SIPp given -m stops early only when signalled: that run says nothing about the server.
    stopped = _result(exit_code=0, created=40, successful=40, failed=0, wall_s=2)
    assert interrupted(stopped, 100) and "stopped from outside after 40 of 100" in verdict(stopped)
    assert not interrupted(_result(exit_code=1, created=100, successful=99, failed=1, wall_s=5), 100)


def test_rate_within_the_setup_budget_comes_from_full_window_runs(tmp_path: Path) -> None:
    fast = dataclasses.replace(_fake_trial(700, 30, passes=True), p99_setup_ms=16.0)
    slow = dataclasses.replace(_fake_trial(1200, 30, passes=True), p99_setup_ms=800.0)
    probe = dataclasses.replace(_fake_trial(900, 5, passes=True), p99_setup_ms=20.0)  # a probe, not confirmed
    failed = dataclasses.replace(_fake_trial(1000, 30, passes=False), p99_setup_ms=10.0)
    ours = Outcome("appliance", best=slow, trials=(fast, probe, failed, slow))
    assert within_latency(ours, 30.0) == fast
    result = summary([ours, Outcome("sippy", best=None, trials=(probe,))])
    assert result["cps"] == 1200 and result["cps_p99_under_50ms"] == 700
    assert result["peer_cps_p99_under_50ms"] is None
