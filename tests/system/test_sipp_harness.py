"""The SIPp harness against SIPp itself: calls, failures, OPTIONS, digest registration, statistics parsing.

Every peer is a real SIPp process on 127.0.0.1; nothing here involves the appliance, so a failure points at
the harness or the scenarios.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.system.sipp import (
    SippExit,
    SippProcess,
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
        (BENCH_SCENARIOS / "uac_strict.xml", BENCH_SCENARIOS / "uas.xml"),
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
    with SippProcess.uas(SCENARIOS / "uas_ringing_without_trying.xml", workdir=tmp_path / "uas") as uas:
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
    with SippProcess.uas(BENCH_SCENARIOS / "uas.xml", workdir=tmp_path / "uas", max_calls=5) as uas:
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
    from tests.system.sipp import SippError

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
