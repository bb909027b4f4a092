"""The IVR benchmark's pieces: the C load client, the digit tally, and a short run against one worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.ivr import (
    GOAL,
    LoadRun,
    dtmf_tally,
    main,
    measure_calibration,
    summary,
    write_prompt,
)
from bench.ivr_client import ClientResult, IvrLoadClient, build_client, digits_of
from bench.loadgen import LoadGenError, compiler
from bench.relay import LOOPBACK

needs_cc = pytest.mark.skipif(compiler() is None, reason="no C compiler (apt-get install gcc libc6-dev)")
SUMMARY_KEYS = ("bench", "sessions_per_worker", "p99_pacing_error_ms", "dtmf_lost", "goal", "ratio_to_goal")
LOAD_KEYS = (
    "sessions", "p99_pacing_error_ms", "max_pacing_error_ms", "lost_packets", "dtmf_sent", "dtmf_lost",
    "worker_cpu_pct",
)  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_client(tmp_path_factory.mktemp("ivrload") / "ivrload")


# -- pure parts ---------------------------------------------------------------------------------------------


def test_each_session_presses_its_own_cycle_of_twelve_digits() -> None:
    assert digits_of(0, 13) == "0123456789*#0"
    assert digits_of(11, 3) == "#01"
    assert digits_of(5, 0) == ""


@pytest.mark.parametrize(
    ("expected", "reported", "lost", "wrong"),
    [
        ("0123", "0123", 0, 0),
        ("0123", "013", 1, 0),  # "2" never reported
        ("0123", "", 4, 0),
        ("0123", "01923", 0, 1),  # a digit nobody pressed
        ("0123", "0113", 1, 1),  # "2" heard as "1"
        ("", "5", 0, 1),
    ],
)
def test_dtmf_tally_counts_lost_and_wrong_digits_in_order(
    expected: str, reported: str, lost: int, wrong: int
) -> None:
    assert dtmf_tally(expected, list(reported)) == (lost, wrong)


@given(st.text("0123456789*#", max_size=12), st.text("0123456789*#", max_size=12))
def test_dtmf_tally_is_bounded_by_what_was_sent_and_reported(expected: str, reported: str) -> None:
    lost, wrong = dtmf_tally(expected, list(reported))
    assert 0 <= lost <= len(expected) and 0 <= wrong <= len(reported)
    assert len(expected) - lost == len(reported) - wrong  # both sides agree on the matches
    assert dtmf_tally(expected, list(expected)) == (0, 0)


def _result_lines(sessions: int = 2, **changes: object) -> tuple[str, str]:
    raw: dict[str, object] = {
        "sessions": sessions, "seconds": 1, "warmup_s": 0.5, "sent": 100, "received": 100,
        "audio_received": 90, "lost": 0, "silent": 0, "stalled": 0, "socket_drops": 0, "digits_sent": 2,
        "digits_seen": 2, "digits_wrong": 0, "pacing_p50_us": 10, "pacing_p99_us": 1500,
        "pacing_p999_us": 1700, "pacing_max_us": 2100, "first_p99_us": 1800, "first_max_us": 2500,
        "late_p99_us": 80, "late_max_us": 300,
        "cpu_s": 0.1, "wall_s": 1.0, "realtime": 1,
    }  # fmt: skip
    raw.update(changes)
    return "digits " + " ".join(["1"] * sessions), json.dumps(raw)


def test_client_result_parses_its_two_lines() -> None:
    result = ClientResult.parse(*_result_lines())
    assert result.digits == (1, 1) and result.sessions == 2
    assert result.p99_pacing_error_ms == 1.5 and result.max_pacing_error_ms == 2.1
    assert result.first_p99_pacing_error_ms == 1.8
    assert result.cpu_share == pytest.approx(0.1) and not result.saturated
    assert ClientResult.parse(*_result_lines(late_p99_us=2500)).saturated
    assert not ClientResult.parse(*_result_lines(socket_drops=1)).saturated  # the machine's UDP memory
    assert ClientResult.parse(*_result_lines(cpu_s=0.95)).saturated
    assert ClientResult.parse(*_result_lines(pacing_p99_us=-1)).p99_pacing_error_ms is None


@pytest.mark.parametrize(
    ("digits", "line"),
    [
        ("digits 1", _result_lines()[1]),  # one count for two sessions
        ("ports 1 1", _result_lines()[1]),
        ("digits 1 x", _result_lines()[1]),
        (_result_lines()[0], "{"),
        (_result_lines()[0], "[]"),
        (_result_lines()[0], json.dumps({"sessions": 2})),
        _result_lines(lost=True),
    ],
)
def test_client_result_rejects_anything_else(digits: str, line: str) -> None:
    with pytest.raises(LoadGenError):
        ClientResult.parse(digits, line)


@given(st.text(max_size=40), st.text(max_size=200))
def test_client_result_parse_is_total(digits: str, line: str) -> None:
    with contextlib.suppress(LoadGenError):
        ClientResult.parse(digits, line)


def _run(sessions: int, p99_us: int, *, lost: int = 0, calibration: bool = False) -> LoadRun:
    result = ClientResult.parse(*_result_lines(sessions, pacing_p99_us=p99_us))
    return LoadRun(sessions, result, calibration=calibration, worker_cpu=0.5, dtmf_lost=lost)


def test_a_load_whose_packets_were_dropped_at_the_client_does_not_pass() -> None:
    result = ClientResult.parse(*_result_lines(socket_drops=3))
    assert not LoadRun(2, result).passed and LoadRun(2, replace(result, socket_drops=0)).passed


def test_a_run_is_busy_when_other_programs_used_more_than_a_sixth_of_a_core() -> None:
    result = ClientResult.parse(*_result_lines())
    assert LoadRun(2, result, background_cores=0.2).busy
    assert not LoadRun(2, result, background_cores=0.1).busy and not LoadRun(2, result).busy


def test_the_summary_names_the_highest_passing_load() -> None:
    runs = [_run(100, 1500, calibration=True), _run(100, 900), _run(250, 1900), _run(500, 2400)]
    assert [r.passed for r in runs[1:]] == [True, True, False]
    assert summary(runs) == {
        "bench": "ivr", "sessions_per_worker": 250, "p99_pacing_error_ms": 1.9, "dtmf_lost": 0,
        "goal": GOAL, "ratio_to_goal": 0.5,
    }  # fmt: skip
    none = summary([_run(100, 900, lost=1)])
    assert none["sessions_per_worker"] == 0 and none["dtmf_lost"] == 1 and none["ratio_to_goal"] == 0


def test_the_generated_prompt_is_a_few_seconds_of_alaw(tmp_path: Path) -> None:
    data = write_prompt(tmp_path / "p.alaw").read_bytes()
    assert 3 * 8000 < len(data) < 6 * 8000 and len(data) % 160 != 0
    assert len(set(data)) > 20  # audio, not one silence octet


# -- the client ---------------------------------------------------------------------------------------------


@needs_cc
def test_the_client_talking_to_itself_hears_every_digit_and_paces_its_stream(client: Path) -> None:
    run = asyncio.run(measure_calibration(20, 1.5, client, warmup_ms=500, realtime=False))
    assert run.client is not None, run.error
    c = run.client
    assert c.sessions == 20 and c.silent == 0 and c.lost == 0 and c.socket_drops == 0
    assert c.sent == 20 * 75  # every packet of the window, audio and digits
    assert c.sent - 20 <= c.received <= c.sent  # the window's last packets may land just after it
    # One digit per 2 s per session, the first ones staggered over 2 s: all but the last have pressed one.
    assert sum(c.digits) == c.digits_sent == c.digits_seen >= 19
    assert run.dtmf_lost == 0 and c.digits_wrong == 0
    assert c.p99_pacing_error_ms is not None and c.p99_pacing_error_ms < 20


async def _play_to(port: int, packets: int, *, late: dict[int, float], missing: set[int]) -> None:
    """A stand-in worker: PCMA packets every 20 ms to ``port``, packet k held ``late[k]`` s, ``missing``
    never sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.01
    try:
        for k in range(packets):
            due = start + k * 0.020 + late.get(k, 0.0)
            await asyncio.sleep(max(0.0, due - loop.time()))
            if k not in missing:
                header = struct.pack(
                    "!BBHII", 0x80, 8, (65510 + k) & 0xFFFF, (2**32 - 4000 + 160 * k) % 2**32, 7
                )
                sock.sendto(header + bytes(160), (LOOPBACK, port))
    finally:
        sock.close()


@needs_cc
def test_the_client_measures_a_late_packet_and_a_gap_from_a_player_it_does_not_control(client: Path) -> None:
    async def run() -> ClientResult:
        async with IvrLoadClient(1, 1.6, binary=client, warmup_ms=200, realtime=False) as c:
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where the caller's own audio goes
            sink.bind((LOOPBACK, 0))
            c.connect(0, sink.getsockname()[1])
            player = asyncio.create_task(_play_to(c.port(0), 95, late={40: 0.008}, missing={60}))
            await c.begin()
            result = await c.result()
            await player
            sink.close()
            return result

    result = asyncio.run(run())
    assert result.silent == 0 and result.lost == 1  # packet 60; sequence and timestamp wrap at 25-26
    assert result.max_pacing_error_ms is not None and result.max_pacing_error_ms >= 6  # packet 40
    assert result.pacing_p50_us < 2000  # the others on their 20 ms grid


# -- the bench ----------------------------------------------------------------------------------------------


@needs_cc
def test_the_bench_prints_one_line_per_load_and_the_issue_object_last(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["--sessions", "20", "--seconds", "2", "--warmup", "1", "--no-realtime"]
    status = main([*argv, "--client", str(tmp_path / "ivrload")])
    lines = capsys.readouterr().out.strip().splitlines()
    final = json.loads(lines[-1])
    assert tuple(final) == SUMMARY_KEYS
    calibration, load = (json.loads(line) for line in lines[-3:-1])
    assert calibration["bench"] == "ivr-calibration" and calibration["worker_cpu_pct"] is None
    assert load["bench"] == "ivr-load", load
    assert all(key in load for key in LOAD_KEYS), load
    assert load["sessions"] == 20 and load["silent_sessions"] == 0 and load["play_errors"] == 0
    assert load["dtmf_sent"] >= 20 and load["dtmf_lost"] == 0 and load["dtmf_wrong"] == 0
    assert load["p99_pacing_error_ms"] < 20 and load["lost_packets"] == 0
    assert load["p99_pacing_error_from_first_ms"] < 20 and load["background_cores"] >= 0
    assert 0 < load["worker_cpu_pct"] < 100
    assert final["sessions_per_worker"] in (0, 20) and final["goal"] == GOAL
    assert final["dtmf_lost"] == 0
    assert status == 0
