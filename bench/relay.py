"""``make bench-relay``: CPU per relayed RTP packet, loss and added latency of a media relay under load.

For each load (``--calls``, default 100, 250, 500, 750, 1000 concurrent calls) the C load generator
(bench/loadgen.c, driven by :mod:`bench.loadgen`) offers G.711 20 ms streams, 50 packets/s each way,
through each relay for ``--seconds``, one relay at a time:

* ``appliance-kernel`` and ``appliance-userspace`` — our media workers under
  :class:`~appliance.media.supervisor.MediaSupervisor` (``--workers``, default one per core), each call set
  up with an offer from leg a and an answer from leg b, exactly as call control does; once with their
  kernel fast path (nftables NAT, the workers only account) and once with ``--no-fastpath`` (every packet
  through Python). ``--fastpath`` runs only the first, ``--no-fastpath`` only the second;
* ``rtpengine`` — Debian's ``rtpengine-daemon``, userspace only, over its ng protocol (bench/rtpengine.py).

A relay's CPU is the user + system time of its processes from /proc/PID/stat across the run (every worker
for ours, the daemon and its threads for rtpengine), divided by the packets it relayed (those that
arrived). On loopback the kernel's work of delivering a packet runs in the *sender's* syscall, so each
relay run also reports the generator's CPU per packet: a relay that moves work into the kernel (a fast
path) shows it there. Loss counts packets sent and never received; latency is the generator's send stamp
→ the kernel's arrival stamp, through the relay on loopback, p99 and p99.9.

Before the relays at each load, a ``direct`` run sends each stream end straight to its peer: the
generator's own cost and ceiling, so that "the generator is not the bottleneck" is shown rather than
assumed, and so that each relay's all-in cost can be worked out: ``total_us_per_packet`` = the relay's
processes + the generator − the generator in the direct run at the same load, i.e. the relay including
the kernel work its packets cost the sender.

The kernel fast path needs ``net.ipv4.ip_forward`` = 1, which the bench never sets on the host. With
``--netns`` (the default when run as root) the driver re-runs itself under ``unshare -n``: a network
namespace of its own with only ``lo``, brought up, with forwarding and conntrack accounting on. The
generator, our workers and rtpengine all run there, so the comparison stays fair; the namespace, its
nftables tables and conntrack entries vanish with the last process in it.

Output: one progress line per (relay, load), a table, one JSON line per (relay, load), and last the
issue's JSON object (:data:`SUMMARY_KEYS`) for 500 calls (or the highest load run when 500 is not
among them).

Profiling hook: with ``BENCH_RELAY_PROFILE=DIR`` in the environment, every media worker runs under
cProfile and writes ``DIR/worker-<pid>.pstats`` when it exits; the driver prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import io
import json
import os
import pstats
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from appliance.media.supervisor import MediaSupervisor
from bench.loadgen import DEFAULT_BINARY, LoadGenerator, LoadGenError, LoadResult, build
from bench.rtpengine import PortRange, RtpEngine, RtpEngineError, call_sdp, installed
from bench.servers import clock_ticks_per_second, tree_cpu_ticks
from tests.system.sipp import free_port

DEFAULT_CALLS: Final = (100, 250, 500, 750, 1000)
DEFAULT_SECONDS: Final = 15.0
DEFAULT_WARMUP_S: Final = 2.0
HEADLINE_CALLS: Final = 500
OURS: Final = "appliance"
KERNEL: Final = "appliance-kernel"
USERSPACE: Final = "appliance-userspace"
PEER: Final = "rtpengine"
DIRECT: Final = "direct"
RELAYS: Final = (OURS, PEER)
SUMMARY_KEYS: Final = (
    "bench", "calls", "workers", "fastpath", "offloaded", "cpu_us_per_packet", "generator_cpu_us_per_packet",
    "total_us_per_packet", "loss", "p99_added_latency_ms", "p999_added_latency_ms", "peer",
    "peer_cpu_us_per_packet", "peer_generator_cpu_us_per_packet", "peer_total_us_per_packet", "peer_loss",
    "peer_p99_added_latency_ms", "peer_p999_added_latency_ms", "ratio", "total_ratio", "max_calls",
    "peer_max_calls", "userspace_cpu_us_per_packet", "userspace_total_us_per_packet", "userspace_max_calls",
    "note",
)  # fmt: skip
# A load is "carried" with no loss and p99 under this (the max_calls criterion).
CARRIED_P99_MS: Final = 1.0
# Relay port ranges below the kernel's ephemeral range (32768-60999), where the generator's ends bind.
# rtpengine takes two ports per stream end (RTP, RTCP); ours one today, a pair once RTCP is bound.
PEER_PORTS: Final = PortRange(10000, 19999)
# Our workers bind every RTP/RTCP pair of their slice when they start, so the slice is kept out of the way
# of everything else on the machine (the appliance's own default media range starts at 20000): at the top
# of the port space, above the ephemeral range, four ports per call (two legs, RTP and RTCP) plus margin.
OUR_PORTS_TOP: Final = 65535
OUR_PORTS_PER_CALL: Final = 4.5
OUR_PORTS_MIN: Final = 61000
NO_FASTPATH: Final = "--no-fastpath"
FASTPATH_OFF: Final = "kernel fast path off:"
# What a worker logs (appliance.media.offload, INFO) for each call it hands to the kernel.
OFFLOADED: Final = "handed to the kernel fast path"
# The driver re-run inside its namespace: set the namespace up, do not re-run again.
IN_NETNS: Final = "--in-netns"
# Inside the bench's namespace only: forwarding for the fast path's NAT, conntrack's byte/packet counters
# (the workers' accounting; they also set it themselves).
NETNS_SYSCTLS: Final = {"net/ipv4/ip_forward": "1", "net/netfilter/nf_conntrack_acct": "1"}
LOOPBACK: Final = "127.0.0.1"
# Offers and answers in flight at once while setting calls up.
SETUP_CONCURRENCY: Final = 64
DIRECT_MAX_SECONDS: Final = 5.0
# Control commands wait behind whatever packets a busy worker is draining; the supervisor's 2 s default
# is for call control, which must fail fast.
COMMAND_TIMEOUT_S: Final = 10.0
# Other programs using more than this many cores during a run make its figures suspect: say so.
BUSY_CORES: Final = 0.15
PROFILE_ENV: Final = "BENCH_RELAY_PROFILE"
PROFILE_TOP: Final = 25


@dataclass(frozen=True)
class Measurement:
    """One relay at one load: what the generator saw and what the relay's processes spent."""

    relay: str
    calls: int
    load: LoadResult | None
    cpu_s: float | None  # None for the direct run, which has no relay
    error: str = ""
    workers: int | None = None
    # Cores' worth of CPU that neither the relay nor the generator used during the run: other programs.
    background_cores: float | None = None
    fastpath: str | None = None  # our relay: whether the workers' kernel fast path was on, and if not why
    offloaded: int | None = None  # our relay: calls the workers handed to the kernel
    # The generator's CPU per packet in the direct run at the same load: what it costs with no relay.
    direct_generator_us: float | None = None

    @property
    def cpu_us_per_packet(self) -> float | None:
        if self.load is None or self.cpu_s is None or self.load.received == 0:
            return None
        return self.cpu_s * 1e6 / self.load.received

    @property
    def generator_cpu_us_per_packet(self) -> float | None:
        return self.load.cpu_us_per_packet if self.load else None

    @property
    def total_us_per_packet(self) -> float | None:
        """The relay's all-in cost: its processes, plus what its packets cost the generator beyond sending
        straight to the peer (on loopback the kernel's forwarding runs in the sender's syscall)."""
        relay, gen, base = self.cpu_us_per_packet, self.generator_cpu_us_per_packet, self.direct_generator_us
        if relay is None or gen is None or base is None:
            return None
        return relay + gen - base

    @property
    def carried(self) -> bool:
        load = self.load
        return (
            load is not None
            and load.sent > 0
            and load.lost == 0
            and load.p99_ms is not None
            and load.p99_ms < CARRIED_P99_MS
            and not load.generator_saturated
        )

    def row(self) -> dict[str, object]:
        """This run as one JSON-able line."""
        load = self.load
        out: dict[str, object] = {"bench": "relay-load", "relay": self.relay, "calls": self.calls}
        if self.workers is not None:
            out["workers"] = self.workers
        if self.fastpath is not None:
            out["fastpath"] = self.fastpath
        if self.offloaded is not None:
            out["offloaded"] = self.offloaded
        if load is None:
            return out | {"error": self.error}
        return out | {
            "seconds": load.seconds,
            "warmup_s": load.warmup_s,
            "sent": load.sent,
            "received": load.received,
            "loss": load.loss,
            "p50_ms": load.p50_ms,
            "p99_ms": load.p99_ms,
            "p999_ms": load.p999_ms,
            "max_ms": load.max_ms,
            "cpu_us_per_packet": _round(self.cpu_us_per_packet),
            "generator_cpu_us_per_packet": _round(self.generator_cpu_us_per_packet),
            "total_us_per_packet": _round(self.total_us_per_packet),
            "generator_cpu_share": round(load.generator_cpu, 3),
            "generator_p99_send_late_ms": load.p99_send_late_ms,
            "generator_max_send_late_ms": load.late_max_us / 1000,
            "generator_saturated": load.generator_saturated,
            "generator_realtime": bool(load.realtime),
            "misrouted": load.misrouted,
            "duplicates": load.duplicates,
            "carried": self.carried,
            "background_cores": _round(self.background_cores),
        }

    def line(self) -> str:
        head = f"[{self.relay}] {self.calls:>5} calls"
        load = self.load
        if load is None:
            return head + ": FAIL - " + self.error
        cpu = self.cpu_us_per_packet
        return (
            head + f" x {load.seconds:g} s: {load.received}/{load.sent} packets, loss {load.loss:.4%}, "
            f"p50 {_ms(load.p50_ms)}, p99 {_ms(load.p99_ms)}, p99.9 {_ms(load.p999_ms)}, "
            f"{'n/a' if cpu is None else f'{cpu:.2f} us'} CPU/packet; generator "
            f"{_num(self.generator_cpu_us_per_packet, 2)} us/packet at {load.generator_cpu:.0%} CPU, "
            f"p99 send lateness {load.p99_send_late_ms:.3f} ms"
            + (" (GENERATOR SATURATED: figures limited by the generator)" if load.generator_saturated else "")
            + (f", {load.misrouted} misrouted" if load.misrouted else "")
            + (
                f"; all-in {self.total_us_per_packet:.2f} us/packet"
                if self.total_us_per_packet is not None
                else ""
            )
            + (f"; fast path {self.fastpath}" if self.fastpath else "")
            + (f", {self.offloaded}/{self.calls} calls offloaded" if self.offloaded is not None else "")
            + (
                f"; BUSY MACHINE: {self.background_cores:.2f} cores used by other programs"
                if self.background_cores is not None and self.background_cores > BUSY_CORES
                else ""
            )
        )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _num(value: object, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else "n/a" if value is None else str(value)


def machine_busy_ticks(stat: Path = Path("/proc/stat")) -> int:
    """Clock ticks every CPU has spent not idle since boot (the ``cpu`` line of /proc/stat, proc(5)):
    user, nice, system, irq, softirq and steal; idle and iowait left out."""
    for line in stat.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
            return user + nice + system + irq + softirq + steal
    raise OSError(f"no cpu line in {stat}")


def _background(busy_ticks: int, relay_ticks: int, load: LoadResult) -> float:
    """Cores' worth of CPU other programs used during ``load``: the machine's busy time less the relay's
    and the generator's, over the run's wall time."""
    tick = clock_ticks_per_second()
    other_s = busy_ticks / tick - relay_ticks / tick - load.cpu_s
    return max(0.0, other_s) / load.wall_s if load.wall_s > 0 else 0.0


# -- the relays ---------------------------------------------------------------------------------------------


async def measure_direct(
    calls: int, seconds: float, binary: Path, *, realtime: bool = True, warmup_ms: int = 0
) -> Measurement:
    """Each stream end sends straight to its peer: the generator alone at this load."""
    try:
        async with LoadGenerator(
            calls, seconds, binary=binary, realtime=realtime, warmup_ms=warmup_ms
        ) as gen:
            for call in range(calls):
                caller, callee = gen.ports(call)
                gen.connect(call, callee, caller)
            await gen.begin()
            busy0 = machine_busy_ticks()
            load = await gen.result()
            busy = machine_busy_ticks() - busy0
    except (LoadGenError, OSError) as exc:
        return Measurement(DIRECT, calls, None, None, str(exc))
    return Measurement(DIRECT, calls, load, None, background_cores=_background(busy, 0, load))


async def measure_rtpengine(
    calls: int,
    seconds: float,
    binary: Path,
    workdir: Path,
    *,
    realtime: bool = True,
    warmup_ms: int = 0,
) -> Measurement:
    """Start rtpengine, bridge ``calls`` calls through it, offer the load, return the figures."""
    engine = RtpEngine(workdir, free_port(), PEER_PORTS)
    try:
        client = engine.start()
    except RtpEngineError as exc:
        return Measurement(PEER, calls, None, None, str(exc))
    try:
        async with LoadGenerator(
            calls, seconds, binary=binary, realtime=realtime, warmup_ms=warmup_ms
        ) as gen:
            for call in range(calls):
                caller, callee = gen.ports(call)
                gen.connect(call, *client.bridge(f"bench-{call}", caller, callee))
            await gen.begin()
            ticks0, busy0 = tree_cpu_ticks(engine.pid), machine_busy_ticks()
            load = await gen.result()
            ticks = tree_cpu_ticks(engine.pid) - ticks0
            busy = machine_busy_ticks() - busy0
        # No deletes: stopping the daemon ends every call, and an overloaded daemon would answer each
        # delete only after its backlog.
        background = _background(busy, ticks, load)
        return Measurement(PEER, calls, load, ticks / clock_ticks_per_second(), background_cores=background)
    except (RtpEngineError, LoadGenError, OSError) as exc:
        return Measurement(PEER, calls, None, None, f"{exc}; log: {engine.log_path}")
    finally:
        client.close()
        engine.stop()


def fastpath_option(
    requested: bool | None, supervisor: Callable[..., object] = MediaSupervisor
) -> tuple[dict[str, object], str]:
    """The supervisor keywords for ``--fastpath``/``--no-fastpath`` and a word for the report.

    A ``fastpath=`` keyword of ``supervisor`` (:class:`MediaSupervisor`) takes the switch as it is. Failing
    that, a supervisor with ``worker_args`` runs workers whose kernel fast path is on unless they are given
    ``--no-fastpath``: ``--no-fastpath`` passes that, anything else leaves the workers' default. With
    neither the switch reports "not available". Whether the fast path actually came up is the workers'
    business (:func:`fastpath_state` reads their log).
    """
    params = inspect.signature(supervisor).parameters
    if "fastpath" in params:
        if requested is None:
            return {}, "default"
        return {"fastpath": requested}, "on" if requested else "off"
    if "worker_args" in params:
        if requested is False:
            return {"worker_args": (NO_FASTPATH,)}, "off"
        return {}, "on"
    return {}, "not available"


def fastpath_state(word: str, log: str) -> str:
    """``word`` from :func:`fastpath_option`, or why the workers said their fast path is off."""
    reasons = sorted(
        {line.partition(FASTPATH_OFF)[2].strip() for line in log.splitlines() if FASTPATH_OFF in line}
    )
    return f"off: {'; '.join(reasons)}" if reasons and word != "off" else word


def our_ports(calls: int) -> tuple[int, int]:
    """The port range for our workers at ``calls`` calls: at least 61000-65535, lower for more calls."""
    low = min(OUR_PORTS_MIN, OUR_PORTS_TOP + 1 - int(calls * OUR_PORTS_PER_CALL))
    return max(low, 1024), OUR_PORTS_TOP


def _worker_ticks(sup: MediaSupervisor, workers: int) -> int:
    total = 0
    for index in range(workers):
        pid = sup.pid(index)
        if pid is None:
            raise LoadGenError(f"media worker {index} is not running")
        total += tree_cpu_ticks(pid)
    return total


def _pids(sup: MediaSupervisor, workers: int) -> tuple[int | None, ...]:
    return tuple(sup.pid(i) for i in range(workers))


async def measure_ours(
    calls: int,
    seconds: float,
    binary: Path,
    workdir: Path,
    *,
    workers: int,
    supervisor_kwargs: dict[str, object],
    fastpath: str = "not available",
    on_running: Callable[[Sequence[int | None]], object] = lambda pids: None,
    realtime: bool = True,
    warmup_ms: int = 0,
    relay: str = OURS,
) -> Measurement:
    """Start ``workers`` media workers, set ``calls`` calls up through them, offer the load.

    The result is named ``relay``; its ``offloaded`` counts the calls the workers said they handed to the
    kernel fast path (with the fast path on, each call once both remotes latched, during the warm-up)."""
    factory: Callable[..., MediaSupervisor] = MediaSupervisor
    sup = factory(
        workers, LOOPBACK, our_ports(calls), workdir, timeout=COMMAND_TIMEOUT_S, **supervisor_kwargs
    )
    log_path = workdir / "workers.log"
    phase = "start"
    try:
        with stderr_to(log_path):
            await sup.start()
        state = fastpath_state(fastpath, _read(log_path))
        semaphore = asyncio.Semaphore(SETUP_CONCURRENCY)
        async with LoadGenerator(
            calls, seconds, binary=binary, realtime=realtime, warmup_ms=warmup_ms
        ) as gen:

            async def set_up(call: int) -> None:
                caller, callee = gen.ports(call)
                call_id = f"bench-{call}"
                async with semaphore:
                    offer = await sup.offer(call_id, "a", call_sdp(caller, 1))
                    answer = await sup.answer(call_id, "b", call_sdp(callee, 2))
                if not offer.ports or not answer.ports:
                    raise LoadGenError(f"{call_id}: the relay gave no ports")
                # The offer's reply names leg b's relay port, the answer's leg a's.
                gen.connect(call, answer.ports[0], offer.ports[0])

            phase = "call set-up"
            await asyncio.gather(*(set_up(call) for call in range(calls)))
            pids = _pids(sup, workers)
            on_running(pids)
            phase = "run"
            await gen.begin()
            ticks0, busy0 = _worker_ticks(sup, workers), machine_busy_ticks()
            load = await gen.result()
            ticks = _worker_ticks(sup, workers) - ticks0
            busy = machine_busy_ticks() - busy0
            if _pids(sup, workers) != pids:
                raise LoadGenError("a media worker restarted during the run")

        # No deletes: closing the supervisor ends the workers and their calls, and an overloaded worker
        # would answer each delete only after its backlog.
        cpu_s = ticks / clock_ticks_per_second()
        background = _background(busy, ticks, load)
        return Measurement(
            relay,
            calls,
            load,
            cpu_s,
            workers=workers,
            background_cores=background,
            fastpath=state,
            offloaded=_read(log_path).count(OFFLOADED),
        )
    except Exception as exc:  # a failed command, a dead worker, the generator: report it, go on
        reason = f"{phase}: {type(exc).__name__}: {exc}; workers' log: {_tail(log_path)}"
        return Measurement(relay, calls, None, None, reason, workers)
    finally:
        await sup.close()


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at ``path`` while active, so that the workers spawned meanwhile log there
    (they log every stream's first packet at INFO, thousands of lines per load) instead of the report."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 10) -> str:
    """The last warnings and errors of a log (the workers' INFO lines are one per stream)."""
    text = _read(path)
    kept = [line for line in text.splitlines() if line.strip() and not line.startswith("INFO:")]
    return " | ".join(kept[-lines:]) or "(nothing above INFO)"


# -- profiling hook -----------------------------------------------------------------------------------------


# A worker under cProfile with a CPU-time clock: the default wall clock would charge a function for the
# time the worker sat preempted (by the generator, the other worker, the kernel's softirqs) inside it.
_PROFILE_BOOT: Final = """import cProfile, runpy, sys, time
out, module = sys.argv[1], sys.argv[3]
sys.argv = [module, *sys.argv[4:]]
profile = cProfile.Profile(time.process_time)
try:
    profile.runcall(runpy.run_module, module, run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profile.dump_stats(out)
"""


@contextlib.contextmanager
def profiled_workers(directory: Path | None) -> Iterator[None]:
    """While active, workers the supervisor spawns run under cProfile, writing into ``directory``.

    The supervisor starts ``sys.executable -m appliance.media.worker ...``; a wrapper script in its place
    runs the same module under a profiler that writes ``DIR/worker-<pid>.pstats`` when the worker leaves
    (through ``SystemExit``, once its control socket closes).
    """
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    boot = directory / "profile_boot.py"
    boot.write_text(_PROFILE_BOOT)
    wrapper = directory / "python-cprofile"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{boot}" "{directory}/worker-$$.pstats" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    real = sys.executable
    sys.executable = str(wrapper)
    try:
        yield
    finally:
        sys.executable = real


def profile_report(directory: Path, top: int = PROFILE_TOP) -> str:
    """The workers' profiles merged, top functions by own time."""
    files = sorted(str(p) for p in directory.glob("worker-*.pstats"))
    if not files:
        return f"no worker profiles in {directory}"
    stream = io.StringIO()
    stats = pstats.Stats(*files, stream=stream)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return stream.getvalue()


# -- the summary --------------------------------------------------------------------------------------------


def max_carried(measurements: Sequence[Measurement]) -> int | None:
    carried = [m.calls for m in measurements if m.carried]
    return max(carried) if carried else None


def summary(
    calls: int,
    ours: Measurement | None,
    peer: Measurement | None,
    all_ours: Sequence[Measurement],
    all_peer: Sequence[Measurement],
    *,
    workers: int | None,
    fastpath: str,
    note: str = "",
    userspace: Measurement | None = None,
    all_userspace: Sequence[Measurement] = (),
) -> dict[str, object]:
    """The issue's JSON object for one load; ``max_calls`` from every load run.

    ``ours`` is the headline run of our relay (with the kernel fast path when it was measured),
    ``userspace`` the same load with it off when both were run. ``ratio`` is ours / peer of the relay
    processes' CPU per packet, as the issue defines it; ``total_ratio`` the same of the all-in cost, which
    counts the kernel's forwarding that the fast path moves into the sender's syscalls."""
    ours_load = ours.load if ours else None
    peer_load = peer.load if peer else None
    ours_cpu = ours.cpu_us_per_packet if ours else None
    peer_cpu = peer.cpu_us_per_packet if peer else None
    ours_total = ours.total_us_per_packet if ours else None
    peer_total = peer.total_us_per_packet if peer else None
    return {
        "bench": "relay",
        "calls": calls,
        "workers": workers,
        "fastpath": ours.fastpath if ours and ours.fastpath else fastpath,
        "offloaded": ours.offloaded if ours else None,
        "cpu_us_per_packet": _round(ours_cpu),
        "generator_cpu_us_per_packet": _round(ours.generator_cpu_us_per_packet if ours else None),
        "total_us_per_packet": _round(ours_total),
        "loss": ours_load.loss if ours_load else None,
        "p99_added_latency_ms": ours_load.p99_ms if ours_load else None,
        "p999_added_latency_ms": ours_load.p999_ms if ours_load else None,
        "peer": PEER,
        "peer_cpu_us_per_packet": _round(peer_cpu),
        "peer_generator_cpu_us_per_packet": _round(peer.generator_cpu_us_per_packet if peer else None),
        "peer_total_us_per_packet": _round(peer_total),
        "peer_loss": peer_load.loss if peer_load else None,
        "peer_p99_added_latency_ms": peer_load.p99_ms if peer_load else None,
        "peer_p999_added_latency_ms": peer_load.p999_ms if peer_load else None,
        "ratio": _ratio(ours_cpu, peer_cpu),
        "total_ratio": _ratio(ours_total, peer_total),
        "max_calls": max_carried(all_ours) if ours else None,
        "peer_max_calls": max_carried(all_peer) if peer else None,
        "userspace_cpu_us_per_packet": _round(userspace.cpu_us_per_packet if userspace else None),
        "userspace_total_us_per_packet": _round(userspace.total_us_per_packet if userspace else None),
        "userspace_max_calls": max_carried(all_userspace) if userspace else None,
        "note": note,
    }


def _ratio(ours: float | None, peer: float | None) -> float | None:
    return _round(ours / peer) if ours is not None and peer else None


def table(measurements: Sequence[Measurement]) -> list[str]:
    head = (
        f"{'relay':<19} {'calls':>5} {'us/pkt':>7} {'gen us/pkt':>10} {'all-in':>7} {'gen CPU':>7} "
        f"{'late p99':>8} {'loss':>8} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7} "
        f"{'others':>6} {'offload':>7} carried"
    )
    out = [head]
    for m in measurements:
        load = m.load
        if load is None:
            out.append(f"{m.relay:<19} {m.calls:>5} FAIL: {m.error}")
            continue
        out.append(
            f"{m.relay:<19} {m.calls:>5} {_num(m.cpu_us_per_packet, 2):>7} "
            f"{_num(m.generator_cpu_us_per_packet, 2):>10} {_num(m.total_us_per_packet, 2):>7} "
            f"{load.generator_cpu:>7.0%} {load.p99_send_late_ms:>8.3f} {load.loss:>8.4%} "
            f"{_num(load.p50_ms):>7} {_num(load.p99_ms):>7} {_num(load.p999_ms):>8} {_num(load.max_ms):>7} "
            f"{_num(m.background_cores, 2):>6} {_num(m.offloaded):>7} {'yes' if m.carried else 'no'}"
        )
    return out


# -- the namespace ------------------------------------------------------------------------------------------


def forwarding(sysctl_root: Path = Path("/proc/sys")) -> bool:
    """Whether ``net.ipv4.ip_forward`` is 1 in this process's network namespace (the fast path needs it)."""
    try:
        return (sysctl_root / "net/ipv4/ip_forward").read_text().strip() == "1"
    except OSError:
        return False


def prepare_namespace(sysctl_root: Path = Path("/proc/sys")) -> None:
    """Inside the bench's fresh namespace: ``lo`` up, forwarding and conntrack accounting on.

    /proc/sys/net is the namespace of the process that opens it, so these writes never reach the host's.
    nf_conntrack's sysctls exist only once the module is loaded; the workers set accounting themselves
    after loading it, so a missing one is skipped."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    for name, value in NETNS_SYSCTLS.items():
        path = sysctl_root / name
        if path.exists():
            path.write_text(value + "\n")


def netns_command(argv: Sequence[str]) -> list[str]:
    """The command that re-runs the driver with ``argv`` in a network namespace of its own."""
    return ["unshare", "--net", "--", sys.executable, "-m", "bench.relay", *argv, IN_NETNS]


def run_in_netns(argv: Sequence[str]) -> int:
    """Re-run the driver under ``unshare -n``; its output is this process's. Nothing to clean up after:
    an unnamed namespace goes, with its nftables tables and conntrack entries, when its last process
    exits, and the driver ends every worker and daemon it starts."""
    if shutil.which("unshare") is None:
        print("--netns needs unshare (util-linux); run with --no-netns")
        return 2
    sys.stdout.flush()
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(netns_command(argv), cwd=root, check=False).returncode


# -- main ---------------------------------------------------------------------------------------------------


def _raise_open_files() -> None:
    """Workers and the generator hold a socket per stream end: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def our_variants(requested: bool | None, can_forward: bool) -> tuple[list[tuple[str, bool]], list[str]]:
    """Our relay's runs per load, each (name, fast path on), and notes: ``--fastpath`` the kernel path
    only, ``--no-fastpath`` userspace only, neither both where forwarding allows the kernel path."""
    kernel, userspace = (KERNEL, True), (USERSPACE, False)
    if requested is True:
        notes = [] if can_forward else ["net.ipv4.ip_forward is 0 here: the fast path cannot come up"]
        return [kernel], notes
    if requested is False:
        return [userspace], []
    if can_forward:
        return [kernel, userspace], []
    return [userspace], ["net.ipv4.ip_forward is 0 here (use --netns): kernel fast path not measured"]


async def run(args: argparse.Namespace) -> int:
    loads = [int(c) for c in args.calls.split(",") if c.strip()]
    relays = [r.strip() for r in args.relays.split(",") if r.strip()]
    if not loads or any(c < 1 for c in loads) or any(r not in RELAYS for r in relays):
        print(f"--calls needs positive loads, --relays a subset of {','.join(RELAYS)}")
        return 2
    try:
        binary = build(args.loadgen)
    except LoadGenError as exc:
        print(f"load generator: {exc}")
        return 1
    variants, notes = our_variants(args.fastpath, forwarding()) if OURS in relays else ([], [])
    options = {name: fastpath_option(on) for name, on in variants}
    if any(word == "not available" for _, word in options.values()):
        notes.append("fastpath: not available (MediaSupervisor takes neither fastpath= nor worker_args=)")
    if PEER in relays and installed() is None:
        notes.append("rtpengine is not installed (apt-get install rtpengine-daemon): peer not measured")
        relays.remove(PEER)
    for note in notes:
        print("note:", note)
    _raise_open_files()
    profile_dir = Path(os.environ[PROFILE_ENV]) if os.environ.get(PROFILE_ENV) else None
    workers = args.workers
    names = [name for name, _ in variants] + ([PEER] if PEER in relays else [])
    print(
        f"relay bench: loads {loads}, {args.seconds:g} s each, relays {names}, {workers} media workers, "
        f"{'own network namespace' if args.in_netns else 'host network namespace'}, generator {binary}",
        flush=True,
    )

    warmup_ms = round(args.warmup * 1000)

    async def measure(relay: str, calls: int) -> Measurement:
        with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
            if relay == PEER:
                return await measure_rtpengine(
                    calls, args.seconds, binary, Path(tmp), realtime=args.realtime, warmup_ms=warmup_ms
                )
            kwargs, word = options[relay]
            with profiled_workers(profile_dir):
                return await measure_ours(
                    calls,
                    args.seconds,
                    binary,
                    Path(tmp),
                    workers=workers,
                    supervisor_kwargs=kwargs,
                    fastpath=word,
                    on_running=lambda pids: print(f"[{relay}] worker pids {list(pids)}", flush=True),
                    realtime=args.realtime,
                    warmup_ms=warmup_ms,
                    relay=relay,
                )

    every: list[Measurement] = []
    for calls in loads:
        direct: Measurement | None = None
        if args.direct:
            seconds = min(args.seconds, DIRECT_MAX_SECONDS)
            direct = await measure_direct(calls, seconds, binary, realtime=args.realtime)
            every.append(direct)
            print(direct.line(), flush=True)
        baseline = direct.generator_cpu_us_per_packet if direct else None
        for relay in names:
            m = replace(await measure(relay, calls), direct_generator_us=baseline)
            every.append(m)
            print(m.line(), flush=True)
            await asyncio.sleep(0.5)  # let the kernel recycle the previous run's ports

    print()
    for text in table(every):
        print(text)
    if profile_dir is not None:
        print()
        print(profile_report(profile_dir))
    print()
    for m in every:
        print(json.dumps(m.row()))
    headline = HEADLINE_CALLS if HEADLINE_CALLS in loads else max(loads)

    def runs(relay: str) -> list[Measurement]:
        return [m for m in every if m.relay == relay]

    def at(relay: str) -> Measurement | None:
        return next((m for m in runs(relay) if m.calls == headline), None)

    ours_name = names[0] if variants else None
    final = summary(
        headline,
        at(ours_name) if ours_name else None,
        at(PEER),
        runs(ours_name) if ours_name else [],
        runs(PEER),
        workers=workers if variants else None,
        fastpath=options[ours_name][1] if ours_name else "not run",
        note="; ".join(notes),
        userspace=at(USERSPACE) if ours_name == KERNEL else None,
        all_userspace=runs(USERSPACE),
    )
    print(json.dumps(final))
    failed = any(m.load is None for m in every)
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.splitlines()[0])
    p.add_argument("--calls", default=",".join(map(str, DEFAULT_CALLS)), help="comma-separated loads")
    p.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="measured window per load")
    p.add_argument(
        "--warmup",
        type=float,
        default=DEFAULT_WARMUP_S,
        help="seconds of traffic before each measured window (first packets latch, log, raise events)",
    )
    p.add_argument("--relays", default=",".join(RELAYS), help="comma-separated subset of relays to run")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="media workers (default: one per core)"
    )
    p.add_argument(
        "--fastpath",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="our relay with its kernel fast path only (--no-fastpath: userspace only; default: both)",
    )
    p.add_argument(
        "--netns",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run everything in a network namespace of the bench's own, with forwarding on "
        "(default when root)",
    )
    p.add_argument(IN_NETNS, action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the generator SCHED_FIFO so that busy relays do not make it send late (needs root)",
    )
    p.add_argument(
        "--direct",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first measure the generator alone (ends to ends) at each load",
    )
    p.add_argument(
        "--loadgen", type=Path, default=DEFAULT_BINARY, help="the generator binary, built if stale"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.workers < 1 or args.seconds <= 0 or args.warmup < 0:
        print("--workers and --seconds must be positive, --warmup not negative")
        return 2
    if args.in_netns:
        prepare_namespace()
    elif args.netns if args.netns is not None else os.geteuid() == 0:
        return run_in_netns(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
