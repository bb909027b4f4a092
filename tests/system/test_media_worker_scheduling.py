"""media.scheduling reaches the media worker processes the appliance starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.system.appliance_proc import start_appliance
from tests.system.test_media_ports import free_range

pytestmark = [pytest.mark.system, pytest.mark.timeout(60)]


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(x) for x in (task / "children").read_text().split()]
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="real-time scheduling needs CAP_SYS_NICE or LimitRTPRIO")
def test_realtime_scheduling_puts_every_media_worker_under_sched_rr(tmp_path: Path) -> None:
    low, high = free_range(100)
    config = f'[media]\nworkers = 2\nrtp_port_min = {low}\nrtp_port_max = {high}\nscheduling = "realtime"\n'
    app = start_appliance(tmp_path, config)
    try:
        workers = children(app.proc.pid)
        assert len(workers) == 2
        assert [os.sched_getscheduler(pid) for pid in workers] == [os.SCHED_RR] * 2
        # The control process itself stays time-shared: only the packet path is real-time.
        assert os.sched_getscheduler(app.proc.pid) == os.SCHED_OTHER
    finally:
        app.stop()
