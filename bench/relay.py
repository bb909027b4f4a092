"""``make bench-relay``: CPU per relayed RTP packet, loss and added latency of a media relay under load.

For each load (``--calls``, default 100, 250, 500, 750, 1000 concurrent calls) the load generator
(bench/loadgen.py) offers G.711 20 ms streams, 50 packets/s each way, through each relay for
``--seconds``. A relay's CPU is the user + system time of its process tree from /proc/PID/stat across the
run, divided by the packets it relayed (those that arrived). Loss counts packets sent and never received;
latency is send → receive through the relay on loopback, p99 and p99.9.

The peer is Debian's ``rtpengine-daemon`` run userspace-only (bench/rtpengine.py). The appliance's own
relay is measured once ``appliance.media.supervisor`` exists; until then its figures are ``null`` with a
note. The last line printed is one JSON object whose keys are :data:`SUMMARY_KEYS`, for 500 calls (or
the highest load run when 500 is not among them); the loads before it are one JSON line each above it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.loadgen import LoadGenerator, LoadResult
from bench.rtpengine import PortRange, RtpEngine, RtpEngineError, installed
from bench.servers import clock_ticks_per_second, tree_cpu_ticks
from tests.system.sipp import free_port

DEFAULT_CALLS: Final = (100, 250, 500, 750, 1000)
HEADLINE_CALLS: Final = 500
SUMMARY_KEYS: Final = (
    "bench", "calls", "cpu_us_per_packet", "loss", "p99_added_latency_ms", "p999_added_latency_ms", "peer",
    "peer_cpu_us_per_packet", "peer_loss", "peer_p99_added_latency_ms", "peer_p999_added_latency_ms",
    "ratio", "max_calls", "peer_max_calls", "note",
)  # fmt: skip
# A load is "carried" with no loss and p99 under this (the max_calls criterion).
CARRIED_P99_MS: Final = 1.0
OURS_MISSING: Final = "appliance relay not yet wired"
# rtpengine takes two ports per stream end (RTP, RTCP); room for 1000 calls with margin.
PORTS: Final = PortRange(40000, 49999)


@dataclass(frozen=True)
class Measurement:
    """One relay at one load: what the generator saw and what the relay's process tree spent."""

    relay: str
    load: LoadResult | None
    cpu_s: float | None
    error: str = ""

    @property
    def cpu_us_per_packet(self) -> float | None:
        if self.load is None or self.cpu_s is None or self.load.received == 0:
            return None
        return self.cpu_s * 1e6 / self.load.received

    @property
    def carried(self) -> bool:
        load = self.load
        return (
            load is not None
            and load.loss == 0
            and load.p99_ms is not None
            and load.p99_ms < CARRIED_P99_MS
            and not load.generator_saturated
        )

    def line(self) -> str:
        head = f"[{self.relay}] "
        load = self.load
        if load is None:
            return head + "FAIL - " + self.error
        cpu = self.cpu_us_per_packet
        return (
            head + f"{load.calls:>5} calls x {load.seconds:g} s: {load.received}/{load.sent} packets, "
            f"loss {load.loss:.4%}, p99 {_ms(load.p99_ms)}, p99.9 {_ms(load.p999_ms)}, "
            f"{'n/a' if cpu is None else f'{cpu:.2f}'} us CPU/packet, generator at "
            f"{load.generator_cpu:.0%} CPU, p99 send lateness {load.p99_send_late_ms:.2f} ms"
            + (" (GENERATOR SATURATED: figures limited by the generator)" if load.generator_saturated else "")
        )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def measure_rtpengine(calls: int, seconds: float, workdir: Path) -> Measurement:
    """Start rtpengine, bridge ``calls`` calls through it, offer the load, return the figures."""
    engine = RtpEngine(workdir, free_port(), PORTS)
    try:
        client = engine.start()
    except RtpEngineError as exc:
        return Measurement("rtpengine", None, None, str(exc))
    try:
        with LoadGenerator(calls) as gen:
            for call in range(calls):
                caller, callee = gen.ports(call)
                gen.connect(call, *client.bridge(f"bench-{call}", caller, callee))
            ticks0 = tree_cpu_ticks(engine.pid)
            load = gen.run(seconds)
            ticks = tree_cpu_ticks(engine.pid) - ticks0
            for call in range(calls):
                client.delete(f"bench-{call}")
        return Measurement("rtpengine", load, ticks / clock_ticks_per_second())
    except (RtpEngineError, OSError) as exc:
        return Measurement("rtpengine", None, None, f"{exc}; log: {engine.log_path}")
    finally:
        client.close()
        engine.stop()


def appliance_relay_available() -> bool:
    """Whether the appliance's media workers exist to be measured (the hook for the appliance relay)."""
    return importlib.util.find_spec("appliance.media.supervisor") is not None


def summary(
    calls: int, ours: Measurement | None, peer: Measurement, peers: Sequence[Measurement]
) -> dict[str, object]:
    """The issue's JSON object for one load; ``max_calls`` from every load run so far."""
    ours_cpu = ours.cpu_us_per_packet if ours else None
    peer_cpu = peer.cpu_us_per_packet
    carried = [m.load.calls for m in peers if m.carried and m.load is not None]
    return {
        "bench": "relay",
        "calls": calls,
        "cpu_us_per_packet": ours_cpu,
        "loss": ours.load.loss if ours and ours.load else None,
        "p99_added_latency_ms": ours.load.p99_ms if ours and ours.load else None,
        "p999_added_latency_ms": ours.load.p999_ms if ours and ours.load else None,
        "peer": "rtpengine",
        "peer_cpu_us_per_packet": peer_cpu,
        "peer_loss": peer.load.loss if peer.load else None,
        "peer_p99_added_latency_ms": peer.load.p99_ms if peer.load else None,
        "peer_p999_added_latency_ms": peer.load.p999_ms if peer.load else None,
        "ratio": ours_cpu / peer_cpu if ours_cpu is not None and peer_cpu else None,
        "max_calls": None,
        "peer_max_calls": max(carried) if carried else None,
        "note": OURS_MISSING if ours is None else "",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default=",".join(map(str, DEFAULT_CALLS)), help="comma-separated loads")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per load")
    args = parser.parse_args(argv)
    loads = [int(c) for c in args.calls.split(",") if c.strip()]
    if installed() is None:
        print("rtpengine is not installed: apt-get install rtpengine-daemon (the peer of this bench)")
        return 1
    # The hook for the appliance's relay: once its supervisor can be driven here, it is measured beside the
    # peer at every load and its figures fill the summary's null fields.
    present = "present but not driven yet" if appliance_relay_available() else "does not exist yet"
    print(f"note: {OURS_MISSING} (appliance.media.supervisor {present}); measuring the peer")
    peers: list[Measurement] = []
    rows: list[dict[str, object]] = []
    failed = False
    for calls in loads:
        with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
            peer = measure_rtpengine(calls, args.seconds, Path(tmp))
        print(peer.line(), flush=True)
        failed |= peer.load is None
        peers.append(peer)
        rows.append(summary(calls, None, peer, peers))
        time.sleep(0.5)  # let the kernel recycle the previous run's ports
    print()
    print(f"{'calls':>6} {'peer us/pkt':>12} {'peer loss':>10} {'peer p99 ms':>12} {'peer p99.9 ms':>14}")
    for row in rows:
        print(
            f"{row['calls']:>6} {_num(row['peer_cpu_us_per_packet']):>12} {_num(row['peer_loss']):>10} "
            f"{_num(row['peer_p99_added_latency_ms']):>12} {_num(row['peer_p999_added_latency_ms']):>14}"
        )
    if not rows:
        return 1
    headline = next((r for r in rows if r["calls"] == HEADLINE_CALLS), rows[-1])
    final = summary(int(str(headline["calls"])), None, peers[rows.index(headline)], peers)
    for row in rows:
        if row is not headline:
            print(json.dumps(row))
    print(json.dumps(final))
    return 1 if failed else 0


def _num(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
