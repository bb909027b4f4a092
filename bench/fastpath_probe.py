"""Probe the kernel fast path: what installing, reading and removing calls costs, and that 1000 calls forward.

``python -m bench.fastpath_probe [--calls 1000]`` (root) creates a throwaway network namespace, runs itself
inside it (``ip netns exec``), and deletes it afterwards, so the host's nftables and conntrack are never
touched. Inside, with one :class:`~appliance.media.fastpath.KernelFastPath`:

1. ``--calls`` calls are installed one by one (each: one nf_tables transaction adding four map elements and
   two conntrack deletions), timing every :meth:`install`;
2. every call's two remotes (UDP sockets on 127.0.0.0/8) send one packet each through their relay ports,
   which are bound but never read; the probe checks that each packet arrived at the opposite remote from the
   right relay port, and that the relay sockets stayed empty;
3. :meth:`counters` is read for every call (timed) and must show exactly one packet each way; then
   :meth:`poll` reads all calls at once, five times (timed per sweep);
4. every call is removed (timed; each removal reads the final counters first).

The last line is one JSON object: ``{"bench": "fastpath", "calls": N, "forwarded": …, "install_us":
{"wall": {"p50": …, "p99": …, "max": …}, "cpu": {…}}, "counters_us": {…}, "remove_us": {…}, …}``; ``cpu``
is the calling thread's CPU time (user and kernel), ``wall`` adds whatever preempted it. It is a latency
probe, not a load test: 2 × N packets in all.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Final

from appliance.media.fastpath import FlowHandle, FlowLeg, KernelFastPath

LOCAL: Final = "127.0.0.1"
FIRST_RELAY_PORT: Final = 20000
FIRST_REMOTE_PORT: Final = 40000


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6, 1)

    return {"p50": at(0.50), "p99": at(0.99), "max": round(ordered[-1] * 1e6, 1)}


class _Timer:
    """Wall-clock and CPU time (this thread's, user and kernel) of each timed call: on a shared box the
    wall-clock tail is mostly other processes' preemption; the CPU time is what a call really costs."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.thread_time()

    def __exit__(self, *exc: object) -> None:
        self.cpu.append(time.thread_time() - self._cpu)
        self.wall.append(time.perf_counter() - self._wall)

    def summary(self) -> dict[str, dict[str, float]]:
        return {"wall": _percentiles(self.wall), "cpu": _percentiles(self.cpu)}


def _udp(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _drain(socks: list[socket.socket], expected: int, timeout: float) -> dict[int, list[tuple[bytes, Any]]]:
    """Read from ``socks`` until ``expected`` datagrams arrived or ``timeout`` passed; by socket index."""
    got: dict[int, list[tuple[bytes, Any]]] = {}
    index = {sock.fileno(): i for i, sock in enumerate(socks)}
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN)
    deadline = time.monotonic() + timeout
    count = 0
    while count < expected and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            i = index[fd]
            try:
                while True:
                    got.setdefault(i, []).append(socks[i].recvfrom(2048))
                    count += 1
            except BlockingIOError:
                pass
    return got


def probe(calls: int) -> dict[str, Any]:
    """Run the probe in the current namespace (which it changes: run it in a throwaway one)."""
    relays: list[socket.socket] = []
    remotes: list[socket.socket] = []
    legs: list[tuple[FlowLeg, FlowLeg]] = []
    for n in range(calls):
        # Remotes on distinct loopback addresses, like phones on a LAN; relay ports on one address.
        ra = (f"127.1.{n // 250}.{n % 250 + 1}", FIRST_REMOTE_PORT)
        rb = (f"127.2.{n // 250}.{n % 250 + 1}", FIRST_REMOTE_PORT)
        la, lb = (LOCAL, FIRST_RELAY_PORT + 2 * n), (LOCAL, FIRST_RELAY_PORT + 2 * n + 1)
        relays += [_udp(*la), _udp(*lb)]
        remotes += [_udp(*ra), _udp(*rb)]
        legs.append((FlowLeg(ra, la), FlowLeg(rb, lb)))

    with KernelFastPath() as fastpath:
        install = _Timer()
        handles: list[FlowHandle] = []
        for n, (a, b) in enumerate(legs):
            with install:
                handles.append(fastpath.install(f"call-{n}", a, b))
        elements = _map_elements(fastpath.table)

        for n in range(calls):
            remotes[2 * n].sendto(b"a%06d" % n, legs[n][0].local)
            remotes[2 * n + 1].sendto(b"b%06d" % n, legs[n][1].local)
        got = _drain(remotes, 2 * calls, timeout=10.0)
        forwarded = 0
        for n in range(calls):
            at_b, at_a = got.get(2 * n + 1, []), got.get(2 * n, [])
            forwarded += at_b == [(b"a%06d" % n, legs[n][1].local)]
            forwarded += at_a == [(b"b%06d" % n, legs[n][0].local)]
        leaked = len(_drain(relays, 1, timeout=0.2))

        read = _Timer()
        counted = 0
        for handle in handles:
            with read:
                c = fastpath.counters(handle)
            counted += (c.a_packets, c.b_packets, c.forwarding) == (1, 1, True)

        # The periodic sweep a worker runs for media timeouts: every call's counters in a few round trips.
        sweep = _Timer()
        for _ in range(5):
            with sweep:
                polled = fastpath.poll(handles)
        poll_exact = sum((c.a_packets, c.b_packets, c.forwarding) == (1, 1, True) for c in polled.values())

        remove = _Timer()
        for handle in handles:
            with remove:
                fastpath.remove(handle)
    for sock in relays + remotes:
        sock.close()
    return {
        "bench": "fastpath",
        "calls": calls,
        "elements_peak": elements,
        "forwarded": forwarded,
        "relay_sockets_reached": leaked,
        "counters_exact": counted,
        "install_us": install.summary(),
        "counters_us": read.summary(),
        "poll_all_us": sweep.summary(),
        "poll_exact": poll_exact,
        "remove_us": remove.summary(),
    }


def _map_elements(table: str) -> int:
    done = subprocess.run(
        ["nft", "-j", "list", "map", "ip", table, "dnat_to"], capture_output=True, text=True, check=True
    )
    for item in json.loads(done.stdout)["nftables"]:
        if "map" in item:
            return len(item["map"].get("elem", []))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        print(json.dumps(probe(args.calls)))
        return 0
    if os.geteuid() != 0:
        print("bench.fastpath_probe needs root (it creates a network namespace)", file=sys.stderr)
        return 2
    name = f"fastpath-probe-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (
            ["ip", "-n", name, "link", "set", "lo", "up"],
            ["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ):
            subprocess.run(command, check=True)
        root = Path(__file__).resolve().parent.parent
        inside = ["-m", "bench.fastpath_probe", "--inside", "--calls", str(args.calls)]
        done = subprocess.run(
            ["ip", "netns", "exec", name, sys.executable, *inside],
            cwd=root,
            check=False,
        )
        return done.returncode
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


if __name__ == "__main__":
    sys.exit(main())
