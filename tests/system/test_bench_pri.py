"""The PRI benchmark's pieces: the pacing figures, the CPU classes, and a short run of the whole bench (the
appliance with two simulated spans, a few calls each, the loopback calibration first)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.pri import main
from bench.pri_calls import calling
from bench.pri_cpu import MEDIA, OTHER, TDM, Sample, kind_of
from bench.pri_pacing import frames_lost, in_window, pacing, pacing_errors_ms
from bench.pri_sip import parse, sdp_target, tag_of, uri_of

ISSUE_KEYS = ("bench", "calls", "control_cpu_percent", "media_cpu_percent", "p99_pacing_error_ms")


# -- pure parts ---------------------------------------------------------------------------------------------


def _grid(frames: int, start: float = 100.0) -> list[float]:
    return [start + 0.020 * k for k in range(frames)]


def test_frames_on_their_20_ms_clock_have_no_pacing_error_whatever_the_first_frames_lateness() -> None:
    arrivals = _grid(50)
    assert max(pacing_errors_ms(arrivals)) == pytest.approx(0, abs=1e-6)
    arrivals[0] += 0.005  # the first frame late: only it is off, not every other frame
    errors = pacing_errors_ms(arrivals)
    assert errors[0] == pytest.approx(5) and max(errors[1:]) == pytest.approx(0, abs=1e-6)


def test_a_late_frame_shows_its_lateness_and_a_skipped_frame_moves_the_rest() -> None:
    arrivals = _grid(50)
    arrivals[10] += 0.003
    assert pacing_errors_ms(arrivals)[10] == pytest.approx(3)
    skipped = _grid(31) + _grid(20, 100.0 + 0.020 * 32)  # frame 31 never sent
    errors = pacing_errors_ms(skipped)
    assert errors[0] == pytest.approx(0, abs=1e-6) and errors[-1] == pytest.approx(20)
    assert frames_lost(skipped) == 1 and frames_lost(_grid(50)) == 0
    assert frames_lost([]) == 0 and pacing_errors_ms([]) == []


def test_the_window_takes_frames_from_its_start_up_to_its_end() -> None:
    assert in_window([3.0, 1.0, 2.0, 4.0], 1.0, 3.0) == [1.0, 2.0]


def test_pacing_covers_every_frame_of_every_channel_and_counts_silent_ones() -> None:
    late = _grid(100)
    late[50] += 0.010
    figures = pacing([_grid(100), late, [], _grid(10, 500.0)], 100.0, 102.0)
    assert (figures.channels, figures.silent, figures.frames, figures.lost) == (4, 2, 200, 0)
    assert figures.max_ms == pytest.approx(10) and figures.p50_ms == pytest.approx(0, abs=1e-6)
    assert figures.row()["p99_pacing_error_ms"] == 0.0  # 1 frame of 200 is late: above the 99th
    empty = pacing([], 0.0, 1.0)
    assert empty.p99_ms is None and empty.row()["frames"] == 0


@given(st.lists(st.floats(-0.0049, 0.0049), min_size=2, max_size=200))
def test_pacing_errors_are_bounded_by_the_jitter_on_a_grid(jitter: list[float]) -> None:
    arrivals = [100.0 + 0.020 * k + j for k, j in enumerate(jitter)]
    errors = pacing_errors_ms(arrivals)
    assert len(errors) == len(arrivals)
    assert max(errors) <= (max(jitter) - min(jitter)) * 1000 + 1e-6
    assert frames_lost(arrivals) == 0


def test_child_processes_are_classed_by_their_module() -> None:
    assert kind_of("/usr/bin/python3 -m appliance.media.tdm.worker --span 1") == TDM
    assert kind_of("/usr/bin/python3 -m appliance.media.worker --index 0") == MEDIA
    assert kind_of("/usr/bin/python3 -m something.else") == OTHER


def test_a_cpu_window_sums_the_media_processes_and_notes_one_that_ended() -> None:
    before = Sample(100, {10: (TDM, 50), 11: (MEDIA, 70), 12: (MEDIA, 5)})
    after = Sample(150, {10: (TDM, 150), 11: (MEDIA, 170), 13: (OTHER, 10)})
    window = after.since(before, 2.0)
    assert window.restarted and window.tdm_workers == 1 and window.media_workers == 1
    tick = window.control_s / 50
    assert window.control_percent == pytest.approx(100 * 50 * tick / 2)
    assert window.media_percent == pytest.approx(100 * 200 * tick / 2)
    assert window.accounted_s == pytest.approx(260 * tick)
    assert not after.since(after, 1.0).restarted


def test_each_call_has_its_own_calling_number_per_span() -> None:
    numbers = {calling(span, i) for span in (1, 2) for i in range(30)}
    assert len(numbers) == 60 and all(n.isdigit() and len(n) == 11 for n in numbers)


def test_the_sip_callers_read_what_the_appliance_answers() -> None:
    answer = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\ni: abc@bench\r\n"
        b"To: <sip:100@127.0.0.1>;tag=t1\r\nm: <sip:ivr@127.0.0.1:5070;transport=udp>\r\n"
        b"CSeq: 1 INVITE\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 61002 RTP/AVP 8\r\n"
    )
    start, headers, body = parse(answer)
    assert start == "SIP/2.0 200 OK" and headers["call-id"] == "abc@bench" and headers["cseq"] == "1 INVITE"
    assert tag_of(headers["to"]) == "t1" and tag_of("<sip:100@127.0.0.1>") == ""
    assert uri_of(headers["contact"]) == "sip:ivr@127.0.0.1:5070;transport=udp"
    assert uri_of("sip:ivr@127.0.0.1;expires=60") == "sip:ivr@127.0.0.1"
    assert sdp_target(body) == ("127.0.0.1", 61002)
    assert sdp_target("m=audio x RTP/AVP 8\r\nc=IN IP4 127.0.0.1") is None


@given(st.binary(max_size=300))
def test_the_sip_callers_read_any_datagram_without_raising(data: bytes) -> None:
    _, headers, body = parse(data)
    sdp_target(body)
    tag_of(headers.get("to", ""))
    uri_of(headers.get("contact", ""))


# -- the bench ----------------------------------------------------------------------------------------------


@pytest.mark.system
@pytest.mark.timeout(240)
def test_the_bench_prints_its_runs_and_the_issue_object_last(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--calls-per-span", "2", "--seconds", "2", "--warmup", "4.5", "--digit-every", "1"]
    argv += ["--first-digit-after", "5"]  # after the welcome announcement, in the window
    status = main([*argv, "--calibration-seconds", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    final = json.loads(lines[-1])
    assert tuple(final)[: len(ISSUE_KEYS)] == ISSUE_KEYS, final
    calibration, run, sip = (json.loads(line) for line in lines[-4:-1])
    assert calibration["bench"] == "pri-calibration" and calibration["calls_answered"] == 4
    assert calibration["frames"] >= 4 * 40 and calibration["silent_channels"] == 0
    assert run["bench"] == "pri-run" and run["calls_answered"] == 4 and run["silent_channels"] == 0
    assert run["tdm_workers"] == 2 and run["media_workers"] >= 1 and not run["media_restarted"]
    assert run["frames"] >= 4 * 90 and run["frames_lost"] == 0  # 2 s of 20 ms frames on each channel
    assert run["dtmf_sent"] >= 4 * 2 and run["dtmf_lost"] == 0 and run["dtmf_wrong"] == 0
    assert run["ivr_sessions"] == 4 and run["calls_cleared_early"] == 0
    assert sip["bench"] == "pri-sip-peer" and sip["calls_answered"] == 4 and sip["tdm_workers"] == 0
    assert sip["calls_cleared_early"] == 0
    assert sip["dtmf_sent"] >= 4 * 2 and sip["dtmf_lost"] == 0 and sip["rtp_packets_received"] > 0
    assert final["calls"] == 4 and 0 <= final["control_cpu_percent"] < 200  # 10 ms ticks, 2 s
    assert 0 < final["media_cpu_percent"] < 200
    assert 0 <= final["p99_pacing_error_ms"] < 100 and final["pacing_vs_floor"] is not None
    assert final["sip_control_cpu_percent"] is not None
    assert status == 0


def test_the_bench_refuses_nonsense_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--calls-per-span", "31"]) == 2
    assert main(["--seconds", "0.5"]) == 2
    assert "--calls-per-span 1-30" in capsys.readouterr().out
