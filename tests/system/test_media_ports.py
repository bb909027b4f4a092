"""Relay ports another process holds: the media workers bind their whole slice at start and report what
they could not bind, and no SDP the appliance sends ever names such a port.

The appliance runs as a process with one media worker on a slice of ten RTP/RTCP pairs; before it starts,
the test binds one pair's RTP port and another pair's RTCP port, as a benchmark or another program on the
box might. SIPp then places calls one after the other: the relay allocates round-robin, so the calls walk
the whole slice, and before the worker reserved its slice some of them were given a held port in their
SDP and then ended when the worker could not bind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.media.supervisor import MediaSupervisor, split_range
from tests.system.appliance_proc import start_appliance
from tests.system.rtp_peer import sipp_messages, write_scenario
from tests.system.sipp import SIPP_BINARY, SippProcess, free_port

pytestmark = [pytest.mark.system, pytest.mark.timeout(60)]
SCENARIOS = Path(__file__).parent / "scenarios"
RELAY = "127.0.0.1"
CALLER_IP = "127.0.0.2"
CALLEE_IP = "127.0.0.3"
CALLS = 8  # 16 pairs allocated in turn: the round-robin walks the 8 usable pairs twice
_M_AUDIO = re.compile(r"^m=audio (\d+) ", re.MULTILINE)

if shutil.which(SIPP_BINARY) is None:  # pragma: no cover - .ci/run installs sip-tester
    pytest.skip("SIPp is not installed (Debian package sip-tester)", allow_module_level=True)


def bound_udp_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            for line in f:
                fields = line.split(maxsplit=2)
                if len(fields) > 1:
                    ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def free_range(size: int) -> tuple[int, int]:
    """``size`` ports nothing holds now, outside the ephemeral ports and the default 20000-29999."""
    bound = bound_udp_ports()
    for _ in range(200):
        base = random.randrange(10000, 19000, 2)
        if bound.isdisjoint(range(base, base + size)):
            return base, base + size - 1
    raise OSError(f"no free range of {size} UDP ports in 10000-19999")


@contextlib.contextmanager
def holding(*ports: int) -> Iterator[None]:
    socks = []
    try:
        for port in ports:
            socks.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            socks[-1].bind((RELAY, port))
        yield
    finally:
        for sock in socks:
            sock.close()


def sdp(address: str, port: int, origin: str) -> str:
    return "\n".join(
        [
            "v=0",
            f"o={origin} 4000 1 IN IP4 {address}",
            "s=-",
            f"c=IN IP4 {address}",
            "t=0 0",
            f"m=audio {port} RTP/AVP 8",
            "a=rtpmap:8 PCMA/8000",
        ]
    )


def relay_ports(workdir: Path, start: str) -> list[int]:
    """The audio port of every SDP in the messages SIPp in ``workdir`` received starting with ``start``."""
    return [
        int(m.group(1))
        for message in sipp_messages(workdir)
        if message.direction == "received" and message.start_line.startswith(start)
        for m in [_M_AUDIO.search(message.body)]
        if m is not None
    ]


async def test_calls_never_name_a_relay_port_another_process_held_and_all_succeed(tmp_path: Path) -> None:
    low, high = free_range(20)
    # One worker: the whole range is its slice (appliance.media.supervisor).
    first, last = split_range(low, high, 1)[0]
    assert last - first + 1 == 20
    held_rtp, held_rtcp = first + 2, first + 9  # pair 1 by its RTP port, pair 4 by its RTCP port
    unusable = {held_rtp, held_rtp + 1, held_rtcp - 1, held_rtcp}
    uas_port = free_port(CALLEE_IP)
    callee_sdp = sdp(CALLEE_IP, 40002, "callee")
    uas = SippProcess.uas(
        write_scenario(SCENARIOS / "media_uas.xml", tmp_path / "uas-scenario", callee_sdp),
        workdir=tmp_path / "uas", local_ip=CALLEE_IP, local_port=uas_port, max_calls=CALLS,
        trace_messages=True, recv_timeout_ms=8000,
    )  # fmt: skip
    config = (
        f"[media]\nrtp_port_min = {low}\nrtp_port_max = {high}\nworkers = 1\n"
        f'[[routes]]\nmatch = "*"\ndestinations = ["trunk:sip:{CALLEE_IP}:{uas_port}"]\n'
    )
    with holding(held_rtp, held_rtcp), uas:
        await asyncio.wait_for(uas.wait_bound_async(), 5)
        app = start_appliance(tmp_path, config)
        try:
            uac = SippProcess.uac(
                write_scenario(
                    SCENARIOS / "media_uac.xml", tmp_path / "uac-scenario", sdp(CALLER_IP, 40000, "caller")
                ),
                app.sip, workdir=tmp_path / "uac", local_ip=CALLER_IP, max_calls=CALLS, call_limit=1,
                duration_ms=100, service="+4930123456", trace_messages=True, recv_timeout_ms=8000,
            )  # fmt: skip
            with uac:
                caller = await uac.wait_async()
                callee = await uas.wait_async()
        finally:
            log = app.stop()
            (tmp_path / "appliance.log").write_text(log)
    assert caller.all_successful, caller.describe()
    assert callee.all_successful, callee.describe()
    assert caller.stats is not None and caller.stats.successful == CALLS
    at_callee = relay_ports(tmp_path / "uas", "INVITE ")
    at_caller = relay_ports(tmp_path / "uac", "SIP/2.0 200")
    assert len(at_callee) == len(at_caller) == CALLS
    named = at_callee + at_caller
    assert all(first <= port < last and port % 2 == 0 for port in named), (named, first, last)
    assert unusable.isdisjoint(named), f"an SDP named a held pair: {sorted(named)}, held {sorted(unusable)}"
    # The calls did walk the slice: every usable pair was named, each twice.
    usable = [p for p in range(first, last, 2) if p not in unusable]
    assert sorted(named) == sorted(usable * 2)
    assert "2 RTP/RTCP pairs" in log and "held by another process" in log


async def test_a_restarted_worker_reserves_its_slice_again(tmp_path: Path) -> None:
    low, high = free_range(20)
    reports: list[tuple[int, frozenset[int]]] = []
    with holding(low + 4) as _:
        media = MediaSupervisor(
            1, RELAY, (low, high), tmp_path / "run", worker_args=("--no-fastpath",),
            on_reserved=lambda index, unusable: reports.append((index, unusable)),
        )  # fmt: skip
        await media.start()
    try:
        assert media.unusable(0) == {low + 4}
        assert reports == [(0, frozenset({low + 4}))]
        pid = media.pid(0)
        assert pid is not None
        # The holder is gone; a restarted worker binds the whole slice and says so.
        process = await asyncio.create_subprocess_exec("kill", "-9", str(pid))
        await process.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while media.pid(0) in (None, pid) or media.running_count == 0:
            assert loop.time() < deadline, "the worker was not restarted"
            await asyncio.sleep(0.05)
        assert media.unusable(0) == frozenset()
        assert reports[-1] == (0, frozenset())
    finally:
        await media.close()
