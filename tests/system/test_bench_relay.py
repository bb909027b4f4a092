"""The relay benchmark's pieces: the C load generator, the driver's arithmetic, bencode, the relays."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.loadgen import CFLAGS, LoadGenerator, LoadGenError, LoadResult, build, compiler
from bench.relay import (
    DIRECT,
    IN_NETNS,
    KERNEL,
    OURS,
    PEER,
    SUMMARY_KEYS,
    USERSPACE,
    Measurement,
    fastpath_option,
    fastpath_state,
    main,
    max_carried,
    measure_ours,
    netns_command,
    our_ports,
    our_variants,
    parser,
    summary,
)
from bench.rtpengine import (
    BencodeError,
    PortRange,
    RtpEngine,
    audio_port,
    bdecode,
    bencode,
    call_sdp,
    installed,
)
from tests.system.sipp import free_port

needs_rtpengine = pytest.mark.skipif(
    installed() is None, reason="rtpengine is not installed (apt-get install rtpengine-daemon)"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
ROOT = Path(__file__).resolve().parents[2]
needs_cc = pytest.mark.skipif(compiler() is None, reason="no C compiler (apt-get install gcc libc6-dev)")


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("loadgen") / "loadgen")


# -- the generator ------------------------------------------------------------------------------------------


@needs_cc
def test_loadgen_builds_with_the_makefile_flags_and_only_when_stale(tmp_path: Path) -> None:
    assert CFLAGS == ("-O2", "-Wall", "-Wextra", "-Werror")
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    assert "-O2 -Wall -Wextra -Werror" in makefile
    binary = build(tmp_path / "build" / "loadgen")
    assert os.access(binary, os.X_OK)
    built = binary.stat().st_mtime_ns
    assert build(binary) == binary
    assert binary.stat().st_mtime_ns == built
    assert [p.name for p in binary.parent.iterdir()] == ["loadgen"]  # no temporary file left behind


class _TrivialRelay(asyncio.DatagramProtocol):
    """Forwards each datagram to the other end of its call, found by source port; optionally crosses
    calls (sends to the next call's end) to stand in for a broken relay."""

    def __init__(self, peer_of: dict[int, int], *, cross: dict[int, int] | None = None) -> None:
        self.peer_of = cross or peer_of
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport, though it is one.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        port = addr[1]
        assert isinstance(port, int) and self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", self.peer_of[port]))


async def _through_relay(
    binary: Path, calls: int, seconds: float, *, cross: bool = False, warmup_ms: int = 0
) -> LoadResult:
    loop = asyncio.get_running_loop()
    async with LoadGenerator(calls, seconds, binary=binary, drain_ms=100, warmup_ms=warmup_ms) as gen:
        peer_of: dict[int, int] = {}
        ends = []
        for call in range(calls):
            caller, callee = gen.ports(call)
            peer_of[caller], peer_of[callee] = callee, caller
            ends += [caller, callee]
        crossed = {port: ends[(i + 2) % len(ends)] for i, port in enumerate(ends)}
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _TrivialRelay(peer_of, cross=crossed if cross else None), local_addr=("127.0.0.1", 0)
        )
        try:
            relay_port = transport.get_extra_info("sockname")[1]
            for call in range(calls):
                gen.connect(call, relay_port, relay_port)
            return await gen.run()
        finally:
            transport.close()


@needs_cc
def test_loadgen_through_a_trivial_relay_loses_nothing_and_measures_latency(loadgen: Path) -> None:
    result = asyncio.run(_through_relay(loadgen, calls=2, seconds=1.0))
    # 2 calls x 2 ends x 50 packets/s x 1 s.
    assert result.ends == 4 and result.sent == 200
    assert result.received == 200 and result.lost == 0 and result.loss == 0
    assert result.duplicates == result.misrouted == result.malformed == result.send_errors == 0
    assert result.p50_ms is not None and result.p99_ms is not None and result.p999_ms is not None
    # Through an asyncio relay on loopback: tens of microseconds, a few milliseconds at the worst.
    assert 0 < result.p50_ms <= result.p99_ms <= result.p999_ms <= (result.max_ms or 0) < 50
    assert result.cpu_s > 0 and result.wall_s >= 1.0
    assert result.generator_cpu < 0.5  # lateness depends on what else the machine runs: not asserted


@needs_cc
def test_loadgen_leaves_the_warm_up_out_of_every_figure(loadgen: Path) -> None:
    result = asyncio.run(_through_relay(loadgen, calls=1, seconds=0.4, warmup_ms=300))
    # 300 ms of warm-up are 15 packets per end, relayed and not counted; the 0.4 s window is 20 per end.
    assert result.warmup_s == 0.3
    assert result.sent == 40 and result.received == 40 and result.duplicates == 0
    assert 0.4 <= result.wall_s < 0.4 + 0.1 + 0.2  # the window and the drain, not the warm-up


@needs_cc
def test_loadgen_counts_a_crossed_stream_as_misrouted_not_received(loadgen: Path) -> None:
    result = asyncio.run(_through_relay(loadgen, calls=2, seconds=0.2, cross=True))
    assert result.sent == 40
    assert result.received == 0 and result.misrouted == 40 and result.loss == 1.0
    assert result.p99_ms is None


@needs_cc
def test_loadgen_counts_loss_when_nothing_relays(loadgen: Path) -> None:
    async def run() -> LoadResult:
        async with LoadGenerator(1, 0.2, binary=loadgen, drain_ms=50) as gen:
            gen.connect(0, free_port(), free_port())  # nobody listens there
            return await gen.run()

    result = asyncio.run(run())
    assert result.sent == 20 and result.received == 0 and result.loss == 1.0


@needs_cc
def test_loadgen_refuses_to_run_without_every_destination(loadgen: Path) -> None:
    async def run() -> None:
        async with LoadGenerator(2, 0.2, binary=loadgen) as gen:
            gen.connect(0, 4000, 4002)
            await gen.begin()

    with pytest.raises(LoadGenError, match="every call"):
        asyncio.run(run())


RESULT = {
    "ends": 1000, "seconds": 10.0, "sent": 250000, "received": 250000, "lost": 0, "duplicates": 0,
    "reordered": 0, "misrouted": 0, "malformed": 0, "send_errors": 0, "socket_drops": 0, "p50_us": 40,
    "p99_us": 400, "p999_us": 1500, "max_us": 3000, "late_p50_us": 50, "late_p99_us": 150,
    "late_max_us": 900, "cpu_user_s": 0.5, "cpu_sys_s": 2.0, "send_cpu_s": 2.4, "wall_s": 10.3,
    "realtime": 1, "warmup_s": 2.0,
}  # fmt: skip


def test_load_result_parses_the_generator_line_and_derives_figures() -> None:
    result = LoadResult.from_json(json.dumps(RESULT))
    assert result.calls == 500
    assert result.p99_ms == 0.4 and result.p999_ms == 1.5 and result.max_ms == 3.0
    assert result.cpu_us_per_packet == pytest.approx(10.0)
    assert result.generator_cpu == pytest.approx(2.5 / 10.3)
    assert result.p99_send_late_ms == 0.15 and not result.generator_saturated
    assert replace(result, cpu_sys_s=9.0).generator_saturated  # > 90 % of a core
    assert replace(result, late_p99_us=2500).generator_saturated  # sending more than 2 ms late
    assert replace(result, socket_drops=1).generator_saturated  # its own queues overflowed
    assert replace(result, p99_us=-1).p99_ms is None


@pytest.mark.parametrize(
    "line", ["", "ports 1 2", "[1, 2]", json.dumps(RESULT | {"sent": "many"}), json.dumps({"ends": 4})]
)
def test_load_result_rejects_anything_else(line: str) -> None:
    with pytest.raises(LoadGenError):
        LoadResult.from_json(line)


# -- the driver's arithmetic --------------------------------------------------------------------------------


def _measured(relay: str, calls: int, cpu_s: float, **changes: object) -> Measurement:
    load = LoadResult.from_json(json.dumps(RESULT | {"ends": 2 * calls} | changes))
    return Measurement(relay, calls, load, cpu_s, workers=2 if relay == OURS else None)


def test_summary_divides_relay_cpu_by_packets_relayed_and_finds_max_calls() -> None:
    ours = [
        _measured(OURS, 500, cpu_s=1.25),
        _measured(OURS, 750, cpu_s=2.0),
        _measured(OURS, 1000, cpu_s=3.0, lost=10),  # lost packets: not carried
    ]
    peers = [
        _measured(PEER, 500, cpu_s=3.75),
        _measured(PEER, 750, cpu_s=4.0, p99_us=1000),  # p99 not under 1 ms: not carried
    ]
    row = summary(500, ours[0], peers[0], ours, peers, workers=2, fastpath="not available")
    assert row["cpu_us_per_packet"] == 5.0  # 1.25 s / 250 000 packets
    assert row["peer_cpu_us_per_packet"] == 15.0
    assert row["ratio"] == pytest.approx(1 / 3, abs=1e-3)
    assert row["generator_cpu_us_per_packet"] == 10.0
    assert row["loss"] == 0.0 and row["p99_added_latency_ms"] == 0.4 and row["p999_added_latency_ms"] == 1.5
    assert row["max_calls"] == 750 and row["peer_max_calls"] == 500
    assert row["workers"] == 2 and row["fastpath"] == "not available"
    assert list(row)[:6] == ["bench", "calls", "workers", "fastpath", "offloaded", "cpu_us_per_packet"]


def test_summary_with_a_failed_relay_has_nulls_not_errors() -> None:
    failed = Measurement(OURS, 500, None, None, "media workers did not start")
    peer = _measured(PEER, 500, cpu_s=3.75)
    row = summary(500, failed, peer, [failed], [peer], workers=2, fastpath="default")
    assert row["cpu_us_per_packet"] is None and row["ratio"] is None and row["max_calls"] is None
    assert row["peer_max_calls"] == 500
    assert failed.row()["error"] == "media workers did not start"
    assert "FAIL" in failed.line()


def test_all_in_cost_adds_what_the_relay_cost_the_generator_beyond_the_direct_run() -> None:
    # The generator spends 10 us per packet in every run below (RESULT); alone it spent 6.
    kernel = replace(_measured(KERNEL, 500, cpu_s=0.025), direct_generator_us=6.0, offloaded=500)
    peer = replace(_measured(PEER, 500, cpu_s=2.5), direct_generator_us=6.0)
    userspace = replace(_measured(USERSPACE, 500, cpu_s=5.0), direct_generator_us=6.0)
    assert kernel.total_us_per_packet == pytest.approx(0.1 + 10 - 6)
    assert _measured(KERNEL, 500, cpu_s=1.0).total_us_per_packet is None  # no direct run to compare
    row = summary(
        500, kernel, peer, [kernel], [peer], workers=2, fastpath="on", userspace=userspace,
        all_userspace=[userspace],
    )  # fmt: skip
    assert row["ratio"] == pytest.approx(0.1 / 10, abs=1e-3)  # the issue's ratio: the relay processes only
    assert row["total_ratio"] == pytest.approx(4.1 / 14, abs=1e-3)
    assert row["total_us_per_packet"] == 4.1 and row["peer_total_us_per_packet"] == 14.0
    assert row["offloaded"] == 500 and row["fastpath"] == "on"
    assert row["userspace_cpu_us_per_packet"] == 20.0 and row["userspace_total_us_per_packet"] == 24.0
    assert row["userspace_max_calls"] == 500
    assert kernel.row()["offloaded"] == 500 and kernel.row()["total_us_per_packet"] == 4.1
    assert "500/500 calls offloaded" in kernel.line() and "all-in 4.10 us/packet" in kernel.line()


def test_fastpath_switches_pick_our_runs_and_the_default_runs_both_where_forwarding_allows() -> None:
    kernel, userspace = (KERNEL, True), (USERSPACE, False)
    assert our_variants(None, True) == ([kernel, userspace], [])
    assert our_variants(True, True) == ([kernel], [])
    assert our_variants(False, True) == ([userspace], [])
    assert our_variants(False, False) == ([userspace], [])
    runs, notes = our_variants(None, False)
    assert runs == [userspace] and "not measured" in notes[0]
    runs, notes = our_variants(True, False)
    assert runs == [kernel] and "cannot come up" in notes[0]


def test_the_namespace_run_is_the_driver_again_under_unshare() -> None:
    command = netns_command(["--calls", "2"])
    assert command[:3] == ["unshare", "--net", "--"]
    assert command[3:] == [sys.executable, "-m", "bench.relay", "--calls", "2", IN_NETNS]
    assert parser().parse_args([]).netns is None  # root: the namespace; anyone else: the host's
    assert parser().parse_args(["--no-netns"]).netns is False


def test_a_generator_limited_run_is_not_carried() -> None:
    assert _measured(OURS, 500, 1.0).carried
    assert not _measured(OURS, 500, 1.0, late_p99_us=5000).carried
    assert max_carried([_measured(OURS, 500, 1.0, late_p99_us=5000)]) is None


def test_fastpath_switch_passes_through_only_when_the_supervisor_takes_it() -> None:
    def with_fastpath(workers: int, *, fastpath: bool = False) -> None:
        """A supervisor signature with the keyword."""

    def with_worker_args(workers: int, *, worker_args: tuple[str, ...] = ()) -> None:
        """A supervisor that hands options to workers whose fast path is on unless --no-fastpath."""

    def without(workers: int) -> None:
        """A supervisor with neither."""

    assert fastpath_option(True, with_fastpath) == ({"fastpath": True}, "on")
    assert fastpath_option(False, with_fastpath) == ({"fastpath": False}, "off")
    assert fastpath_option(None, with_fastpath) == ({}, "default")
    assert fastpath_option(False, with_worker_args) == ({"worker_args": ("--no-fastpath",)}, "off")
    assert fastpath_option(True, with_worker_args) == ({}, "on")
    assert fastpath_option(None, with_worker_args) == ({}, "on")
    assert fastpath_option(True, without) == ({}, "not available")
    assert fastpath_option(None, without) == ({}, "not available")
    args = parser().parse_args(["--no-fastpath", "--workers", "3"])
    assert args.fastpath is False and args.workers == 3
    defaults = parser().parse_args([])
    assert defaults.fastpath is None and defaults.warmup == 2.0 and defaults.calls == "100,250,500,750,1000"


def test_fastpath_state_says_why_the_workers_turned_it_off() -> None:
    log = (
        "INFO:appliance.media.relay:relay leg a: first packet\n"
        "WARNING:appliance.media.worker:media worker: kernel fast path off: net.ipv4.ip_forward is 0\n"
    ) * 2
    assert fastpath_state("on", log) == "off: net.ipv4.ip_forward is 0"
    assert fastpath_state("on", "INFO: nothing about it\n") == "on"
    assert fastpath_state("off", log) == "off"


def test_our_port_range_sits_above_the_ephemeral_ports_and_grows_with_the_load() -> None:
    assert our_ports(1000) == (61000, 65535)  # 2268 RTP/RTCP pairs for 2000 legs
    low, high = our_ports(4000)
    assert high == 65535 and (high - low + 1) >= 4 * 4000


# -- the relays ---------------------------------------------------------------------------------------------


@needs_cc
def test_our_relay_carries_two_calls_through_the_supervisor(loadgen: Path, tmp_path: Path) -> None:
    m = asyncio.run(
        measure_ours(2, 1.0, loadgen, tmp_path, workers=1, supervisor_kwargs=fastpath_option(None)[0])
    )
    assert m.load is not None, m.error
    assert m.load.sent == 200 and m.load.received == 200 and m.load.misrouted == 0
    assert m.cpu_s is not None and m.cpu_s >= 0 and m.workers == 1
    assert m.fastpath is not None and m.fastpath.startswith(("on", "off", "not available"))
    assert m.load.p50_ms is not None and m.load.p50_ms < 50


@needs_cc
def test_the_bench_prints_one_line_per_run_and_the_issue_object_last(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["--calls", "1,2", "--seconds", "0.5", "--warmup", "0.2", "--relays", OURS, "--workers", "1"]
    status = main([*argv, "--no-netns", "--no-fastpath", "--loadgen", str(tmp_path / "loadgen")])
    lines = capsys.readouterr().out.strip().splitlines()
    final = json.loads(lines[-1])
    assert tuple(final) == SUMMARY_KEYS
    assert final["bench"] == "relay" and final["calls"] == 2 and final["workers"] == 1
    assert final["peer_cpu_us_per_packet"] is None and final["ratio"] is None
    assert final["fastpath"] == "off" and final["offloaded"] == 0
    runs = [json.loads(line) for line in lines[-5:-1]]
    assert [(r["relay"], r["calls"]) for r in runs] == [
        (DIRECT, 1), (USERSPACE, 1), (DIRECT, 2), (USERSPACE, 2)
    ]  # fmt: skip
    assert all(r["sent"] == 2 * r["calls"] * 25 for r in runs), runs
    assert [r["warmup_s"] for r in runs] == [0.0, 0.2, 0.0, 0.2]  # the generator alone needs no warm-up
    assert all(isinstance(r["background_cores"], float) and r["generator_cpu_share"] < 1 for r in runs)
    assert runs[1]["total_us_per_packet"] == pytest.approx(
        runs[1]["cpu_us_per_packet"] + runs[1]["generator_cpu_us_per_packet"]
        - runs[0]["generator_cpu_us_per_packet"], abs=0.01
    )  # fmt: skip
    assert status == 0


@needs_cc
@needs_root
def test_a_namespace_run_brings_the_fast_path_up_and_leaves_the_host_alone() -> None:
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    argv = ["--calls", "2", "--seconds", "1", "--warmup", "0.5", "--relays", OURS, "--workers", "1"]
    out = subprocess.run(
        [sys.executable, "-m", "bench.relay", *argv, "--netns"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    runs = {r["relay"]: r for r in map(json.loads, lines[-4:-1])}
    assert set(runs) == {DIRECT, KERNEL, USERSPACE}
    kernel, userspace = runs[KERNEL], runs[USERSPACE]
    assert kernel["fastpath"] == "on" and kernel["offloaded"] == 2, kernel
    assert userspace["fastpath"] == "off" and userspace["offloaded"] == 0, userspace
    for run in (kernel, userspace):
        assert run["sent"] == 200 and run["received"] == 200 and run["loss"] == 0 and run["misrouted"] == 0
        assert run["total_us_per_packet"] is not None
    final = json.loads(lines[-1])
    assert final["fastpath"] == "on" and final["offloaded"] == 2 and final["loss"] == 0
    assert final["userspace_cpu_us_per_packet"] is not None
    assert "own network namespace" in out.stdout
    # The host's forwarding and nftables are as they were: everything stayed in the namespace.
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forward
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
    assert "appliance_media" not in tables


def test_bencode_known_vectors() -> None:
    assert bencode({"command": "ping"}) == b"d7:command4:pinge"
    assert bencode({"b": 1, "a": [b"x", -3]}) == b"d1:al1:xi-3ee1:bi1ee"
    assert bdecode(b"d6:result2:oke") == {b"result": b"ok"}


decodable = st.recursive(
    st.integers() | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(decodable)
def test_bencode_round_trip(value: object) -> None:
    def to_encodable(v: object) -> object:
        if isinstance(v, dict):
            return {k.decode("latin-1"): to_encodable(x) for k, x in v.items()}
        if isinstance(v, list):
            return [to_encodable(x) for x in v]
        return v

    def latin(v: object) -> object:
        # str keys are encoded as UTF-8 on the way out; compare against that.
        if isinstance(v, dict):
            return {k.decode("latin-1").encode(): latin(x) for k, x in v.items()}
        if isinstance(v, list):
            return [latin(x) for x in v]
        return v

    assert bdecode(bencode(to_encodable(value))) == latin(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [b"", b"i12", b"5:abc", b"l1:a", b"x", b"i1ei2e", b"di1e1:ae"])
def test_bdecode_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(BencodeError):
        bdecode(bad)


def test_audio_port_from_sdp() -> None:
    assert audio_port(call_sdp(31234, 7)) == 31234


@needs_rtpengine
@needs_cc
def test_rtpengine_relays_a_call_both_ways(loadgen: Path, tmp_path: Path) -> None:
    engine = RtpEngine(tmp_path, free_port(), PortRange(45000, 45099))
    client = engine.start()

    async def run() -> LoadResult:
        async with LoadGenerator(2, 1.0, binary=loadgen, drain_ms=100) as gen:
            for call in range(2):
                caller, callee = gen.ports(call)
                relay_ports = client.bridge(f"t-{call}", caller, callee)
                assert all(45000 <= p <= 45099 for p in relay_ports)
                gen.connect(call, *relay_ports)
            return await gen.run()

    try:
        result = asyncio.run(run())
        for call in range(2):
            client.delete(f"t-{call}")
    finally:
        client.close()
        engine.stop()
    assert result.sent == 200
    assert result.received == result.sent and result.misrouted == 0
    assert result.p99_ms is not None
