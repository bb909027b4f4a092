"""The sync benchmark: its pure parts, and a ``--quick`` run whose last line is the issue's object.

The quick run checks the shape and sanity of the figures (present, positive, cuts under 5 s), not the
issue's goals: those are for ``make bench-sync`` on a quiet machine.
"""

from __future__ import annotations

import json
import os
import tempfile

import cbor2
import pytest

from bench.common import percentile, ratio
from bench.sync import GOALS, Results, brief, main
from bench.sync_append import AppendResult, call_record
from bench.sync_wan import Cut, median_and_worst, transition_time
from tests.netns import skip_reason

HEADLINE = (
    "bench", "append_p99_ms", "appends_per_s", "drain_events_per_s", "carrier_loss_to_survivable_s",
    "silent_drop_to_survivable_s",
)  # fmt: skip
# The WAN part needs root and nftables; elsewhere the quick run leaves it out.
NO_WAN = skip_reason()
QUICK_PARTS = "append,drain" if NO_WAN else "append,drain,wan"
CUT_LIMIT_S = 5.0
# The shipped command runs uvloop, which cannot watch netlink (pyroute2 issue 1335): the quick run checks
# the benchmark on the stdlib loop, where the WAN monitor sees carrier loss.
APPLIANCE_LOOP = "asyncio"


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 99) == 99.0 and percentile(samples, 50) == 50.0
    assert percentile(samples, 100) == 100.0 and percentile([3.0], 99) == 3.0
    assert percentile([], 99) is None
    with pytest.raises(ValueError):
        percentile(samples, 0)


def test_ratio_is_none_without_both_figures() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None and ratio(3.0, None) is None and ratio(3.0, 0.0) is None


def test_a_call_record_is_about_three_hundred_bytes_of_cbor() -> None:
    sizes = [len(cbor2.dumps(call_record(n), canonical=True)) for n in range(0, 10_000, 97)]
    assert min(sizes) >= 250 and max(sizes) <= 350


def test_the_summary_names_the_goals_and_which_were_met() -> None:
    fast = AppendResult("outbox", 2, 1000, 1.0, (0.02,) * 1000)  # back to back: queued
    slow = AppendResult("naive", 2, 250, 1.0, (0.08,) * 250)
    fast_steady = AppendResult("outbox", 2, 100, 1.0, (0.001,) * 100, rate=100.0)  # a steady load
    slow_steady = AppendResult("naive", 2, 100, 1.0, (0.008,) * 100, rate=100.0)
    appends = [fast, fast_steady, slow, slow_steady]
    summary = Results(appends=appends, figures={"drain_events_per_s": 10_000.0}).summary()
    assert tuple(summary)[: len(HEADLINE)] == HEADLINE
    # The headline latency is the steady load's; the back-to-back run gives the ceiling.
    assert summary["append_p99_ms"] == 1.0 and summary["appends_per_s"] == 1000.0
    assert summary["append_p99_ms_saturated"] == 20.0 and summary["append_offered_per_s"] == 100.0
    assert summary["appends_ratio_to_peer"] == 4.0 and summary["peer_append_p99_ms"] == 8.0
    assert summary["peer_append_p99_ms_saturated"] == 80.0
    assert summary["goals"] == {name: goal for name, (goal, _) in GOALS.items()}
    assert summary["ratio_to_goal"] == {
        "append_p99_ms": 0.2, "drain_events_per_s": 0.5, "carrier_loss_to_survivable_s": None,
        "silent_drop_to_survivable_s": None,
    }  # fmt: skip
    assert summary["goal_met"] == {
        "append_p99_ms": True, "drain_events_per_s": False, "carrier_loss_to_survivable_s": None,
        "silent_drop_to_survivable_s": None,
    }  # fmt: skip


def test_a_failure_is_noted_in_one_line_with_its_last_line() -> None:
    assert brief(ValueError("bad")) == "ValueError: bad"
    log = RuntimeError("did not start: banner\n" + "log line\n" * 100 + "ValueError: invalid family 16\n")
    assert brief(log) == "RuntimeError: did not start: banner … ValueError: invalid family 16"


def test_a_cut_is_timed_by_the_transition_the_appliance_recorded() -> None:
    body = {"old": "suspect", "new": "survivable", "at": "2026-11-24T21:18:56.858Z"}
    assert transition_time(body, 5.0) == pytest.approx(1795555136.858)
    assert transition_time({"new": "survivable"}, 5.0) == 5.0  # no time of its own: when it was written
    assert transition_time({"at": "yesterday"}, 5.0) == 5.0


def test_median_and_worst_need_every_cut_of_a_kind_timed() -> None:
    cuts = [
        Cut("silent_drop", 2.0),
        Cut("silent_drop", 1.0),
        Cut("carrier_loss", 0.1),
        Cut("silent_drop", 1.5),
    ]
    assert median_and_worst(cuts, "silent_drop") == (1.5, 2.0)
    assert median_and_worst(cuts, "carrier_loss") == (0.1, 0.1)
    assert median_and_worst([*cuts, Cut("carrier_loss", None, "timed out")], "carrier_loss") == (None, None)


def test_a_quick_run_prints_the_issue_object_last(capsys: pytest.CaptureFixture[str]) -> None:
    # A short directory of its own: pytest's tmp_path, a few levels deeper under the bench's own, leaves
    # too little of a Unix socket path's 107 octets for the appliance's sockets.
    with tempfile.TemporaryDirectory(prefix="bench-sync-test-") as short:
        status = main(["--quick", "--parts", QUICK_PARTS, "--appliance-loop", APPLIANCE_LOOP, "--dir", short])
        lines = capsys.readouterr().out.strip().splitlines()
        final = json.loads(lines[-1])
        assert status == 0, lines
        assert tuple(final)[: len(HEADLINE)] == HEADLINE and final["bench"] == "sync"
        assert final["append_p99_ms"] > 0 and final["appends_per_s"] > 0
        assert final["peer_appends_per_s"] > 0 and final["appends_ratio_to_peer"] > 0
        assert final["append_p99_ms_saturated"] > 0
        appends = [json.loads(line) for line in lines if line.startswith('{"bench": "sync-append"')]
        drains = [json.loads(line) for line in lines if line.startswith('{"bench": "sync-drain"')]
        assert sorted((a["target"], a["offered_per_s"] is None) for a in appends) == [
            ("naive", False), ("naive", True), ("outbox", False), ("outbox", True),
        ]  # fmt: skip
        assert all(a["appends"] > 0 and a["p99_ms"] >= a["p50_ms"] > 0 for a in appends)
        assert all(r["background_cores"] >= 0 for r in appends + drains)
        assert [d["client"] for d in drains] == ["puller", "events+ack"]
        assert all(d["events"] == 2_000 and d["events_per_s"] > 0 and d["error"] is None for d in drains), (
            drains
        )
        assert final["drain_events_per_s"] > 0 and final["drain_backlog"] == 2_000
        assert final["drain_client"] in ("puller", "events+ack")
        if NO_WAN is None:
            for kind in ("carrier_loss", "silent_drop"):
                assert 0 < final[f"{kind}_to_survivable_s"] <= final[f"{kind}_worst_s"] < CUT_LIMIT_S, final
            cuts = [json.loads(line) for line in lines if line.startswith('{"bench": "sync-wan-cut"')]
            assert sorted(c["kind"] for c in cuts) == ["carrier_loss", "silent_drop"]
            assert all(0 < c["cut_command_s"] < 1 for c in cuts), cuts
        assert set(final["ratio_to_goal"]) == set(GOALS) == set(final["goal_met"])
        assert os.listdir(short) == []  # the databases went with the run
