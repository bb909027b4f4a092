"""Media worker CPU scheduling: each policy as the kernel reports it, in a child process so that this test
process keeps its own priority."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from appliance.media.scheduling import HIGH_NICE, REALTIME_PRIORITY, apply_scheduling

PROBE = """
import os, sys
from appliance.media.scheduling import apply_scheduling
problem = apply_scheduling(sys.argv[1])
print(os.sched_getscheduler(0), os.sched_getparam(0).sched_priority, os.getpriority(os.PRIO_PROCESS, 0))
print(problem or "")
"""
PRIVILEGED = os.geteuid() == 0


def probe(policy: str) -> tuple[int, int, int, str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, policy], capture_output=True, text=True, check=True, timeout=30
    ).stdout.splitlines()
    scheduler, priority, nice = (int(x) for x in out[0].split())
    return scheduler, priority, nice, out[1] if len(out) > 1 else ""


def test_normal_changes_nothing() -> None:
    assert apply_scheduling("normal") is None
    assert probe("normal")[:2] == (os.SCHED_OTHER, 0)


@pytest.mark.skipif(not PRIVILEGED, reason="raising priority needs CAP_SYS_NICE or raised rlimits")
def test_high_is_nice_minus_ten_and_realtime_is_round_robin_at_the_lowest_priority() -> None:
    assert probe("high")[:3] == (os.SCHED_OTHER, 0, HIGH_NICE)
    scheduler, priority, _, problem = probe("realtime")
    assert (scheduler, priority, problem) == (os.SCHED_RR, REALTIME_PRIORITY, "")


def test_a_policy_that_cannot_be_taken_is_not_fatal_and_says_why() -> None:
    if not PRIVILEGED:
        scheduler, _, _, problem = probe("realtime")
        assert scheduler == os.SCHED_OTHER and "running at normal priority" in problem
    # A process the call cannot reach (ESRCH) stands for one it may not change (EPERM): same path.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for policy in ("high", "realtime"):
        problem = apply_scheduling(policy, gone.pid)  # type: ignore[arg-type]
        assert problem is not None and problem.startswith(f"cannot take {policy} scheduling (")
        assert problem.endswith("running at normal priority")


def test_an_unknown_policy_is_refused_by_name() -> None:
    assert apply_scheduling("fastest") == "unknown scheduling policy 'fastest'"  # type: ignore[arg-type]
