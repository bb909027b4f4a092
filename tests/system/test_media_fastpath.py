"""The kernel fast path on a real kernel, each test in a network namespace of its own.

Every scenario runs in a child process inside a throwaway namespace (``ip netns exec``), so the host's
nftables, conntrack table and sysctls are never touched. A scenario is a function of this module; the child
imports it, runs it and prints a JSON report, which the test asserts on. Peers and relay ports are UDP sockets
on 127.0.0.1 in the namespace: traffic between local sockets passes the ``output`` and ``postrouting`` hooks,
the same NAT maps the ``prerouting`` chain uses for packets from the network.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.media.fastpath import (
    FastPathConfig,
    FastPathUnavailable,
    FlowLeg,
    KernelFastPath,
    NetlinkRequestError,
)
from tests.system.netns import namespace

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
HOST = "127.0.0.1"
RA, RB, X = 41000, 41002, 41004
A, B = 31000, 31002
PACKETS = 50
PAYLOAD = 172  # an RTP header and 20 ms of G.711
TABLE = "appliance_media"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


# --- harness -------------------------------------------------------------------------------------------


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh namespace with loopback up and forwarding on; deleted afterwards, and checked to be gone."""
    with namespace("fastpath") as name:
        yield name
    assert name not in _namespaces()


@pytest.fixture(scope="module")
def forwarding() -> dict[str, Any]:
    """One call forwarded, probed by a third source, removed, and the fast path closed (one run, several
    tests read its report)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    with namespace("fastpath") as name:
        return run_in(name, scenario_forwarding)


def run_in(
    netns: str, scenario: Callable[[], dict[str, Any]], *prefix: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``scenario`` (a function of this module) in a child inside ``netns``; return its JSON report.
    ``prefix`` wraps the child (``setpriv ...`` to drop privileges); ``env`` adds environment variables."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        f"from tests.system.test_media_fastpath import {scenario.__name__} as s; "
        "print(json.dumps(s()))"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", netns, *prefix, str(PYTHON), "-c", code, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    assert done.returncode == 0, f"scenario {scenario.__name__} failed:\n{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


# --- scenario building blocks (these run inside the namespace) -------------------------------------------


def _udp(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, port))
    sock.settimeout(2.0)
    return sock


def _pending(sock: socket.socket) -> list[tuple[bytes, tuple[str, int]]]:
    """Whatever is queued on ``sock``, without waiting."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recvfrom(2048))
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2.0)
    return out


def _legs() -> tuple[FlowLeg, FlowLeg]:
    return FlowLeg((HOST, RA), (HOST, A)), FlowLeg((HOST, RB), (HOST, B))


def _nft_table() -> dict[str, Any] | None:
    done = subprocess.run(
        ["nft", "-j", "list", "table", "ip", TABLE], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def _map_elements(listing: dict[str, Any] | None, name: str) -> int:
    assert listing is not None
    for item in listing["nftables"]:
        if "map" in item and item["map"]["name"] == name:
            return len(item["map"].get("elem", []))
    raise AssertionError(f"no map {name}")


def _exchange(ra: socket.socket, rb: socket.socket, count: int) -> dict[str, Any]:
    """``count`` packets each way, interleaved like two phones talking; what each remote received."""
    got_b: list[tuple[bytes, tuple[str, int]]] = []
    got_a: list[tuple[bytes, tuple[str, int]]] = []
    for i in range(count):
        ra.sendto(b"a%03d" % i + b"\0" * (PAYLOAD - 4), (HOST, A))
        got_b.append(rb.recvfrom(2048))
        rb.sendto(b"b%03d" % i + b"\0" * (PAYLOAD - 4), (HOST, B))
        got_a.append(ra.recvfrom(2048))
    return {
        "b_payloads_ok": [d[:4] for d, _ in got_b] == [b"a%03d" % i for i in range(count)],
        "a_payloads_ok": [d[:4] for d, _ in got_a] == [b"b%03d" % i for i in range(count)],
        "b_sources": sorted({s for _, s in got_b}),
        "a_sources": sorted({s for _, s in got_a}),
    }


def _counters_dict(fastpath: KernelFastPath, handle: Any) -> dict[str, Any]:
    c = fastpath.counters(handle)
    return {
        "a_packets": c.a_packets,
        "a_bytes": c.a_bytes,
        "b_packets": c.b_packets,
        "b_bytes": c.b_bytes,
        "forwarding": c.forwarding,
    }


# --- scenarios ---------------------------------------------------------------------------------------------


def scenario_forwarding() -> dict[str, Any]:
    report: dict[str, Any] = {}
    ra, rb, x = _udp(RA), _udp(RB), _udp(X)
    relay_a, relay_b = _udp(A), _udp(B)  # bound, never read while the fast path holds the call
    with KernelFastPath() as fastpath:
        report["acct"] = Path("/proc/sys/net/netfilter/nf_conntrack_acct").read_text().strip()
        # Userspace relays the first packet, as the worker does until both remotes are latched: this leaves
        # ordinary conntrack entries for Ra<->A and B<->Rb that install must clear.
        ra.sendto(b"hello", (HOST, A))
        data, _ = relay_a.recvfrom(2048)
        relay_b.sendto(data, (HOST, RB))
        rb.recvfrom(2048)
        rb.sendto(b"hello-back", (HOST, B))
        relay_b.recvfrom(2048)

        leg_a, leg_b = _legs()
        handle = fastpath.install("call-1", leg_a, leg_b)
        listing = _nft_table()
        report["dnat_elements"] = _map_elements(listing, "dnat_to")
        report["snat_elements"] = _map_elements(listing, "snat_to")
        report["installed"] = fastpath.installed

        report["exchange"] = _exchange(ra, rb, PACKETS)
        report["relay_a_queued"] = len(_pending(relay_a))
        report["relay_b_queued"] = len(_pending(relay_b))
        report["counters"] = _counters_dict(fastpath, handle)
        report["poll_agrees"] = fastpath.poll([handle]) == {"call-1": fastpath.counters(handle)}

        # A third source is not the latched remote: the kernel leaves it to the relay socket. Then a marker
        # from Ra: had the kernel forwarded the third source's packet, Rb would have received it first.
        x.sendto(b"hijack", (HOST, A))
        report["third_at_relay"] = [(d.decode(), list(s)) for d, s in [relay_a.recvfrom(2048)]]
        ra.sendto(b"marker", (HOST, A))
        report["first_at_rb_after_third"] = rb.recvfrom(2048)[0].decode()
        report["counters_after_third"] = _counters_dict(fastpath, handle)

        final = fastpath.remove(handle)
        report["final"] = [final.a_packets, final.b_packets]
        report["installed_after_remove"] = fastpath.installed
        report["dnat_after_remove"] = _map_elements(_nft_table(), "dnat_to")
        # Back to userspace at once: the very next packet from Ra reaches the relay socket.
        ra.sendto(b"after-remove", (HOST, A))
        report["after_remove_at_relay"] = [(d.decode(), list(s)) for d, s in [relay_a.recvfrom(2048)]]
        report["after_remove_at_rb"] = len(_pending(rb))
    report["table_after_close"] = _nft_table() is not None
    return report


ROUTED_RELAY = "10.77.0.1"
ROUTED_A = "10.77.0.2"
ROUTED_B = "10.77.0.3"


def scenario_routed() -> dict[str, Any]:
    """The production path: phones in another namespace behind a veth, so packets to the relay pass
    ``prerouting`` and are forwarded (``forward``, ``postrouting``) back out of the same link."""
    from pyroute2.netns import setns  # type: ignore[import-untyped]

    with KernelFastPath() as fastpath:
        relay_a, relay_b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        relay_a.bind((ROUTED_RELAY, A))
        relay_b.bind((ROUTED_RELAY, B))
        leg_a = FlowLeg((ROUTED_A, RA), (ROUTED_RELAY, A))
        leg_b = FlowLeg((ROUTED_B, RB), (ROUTED_RELAY, B))
        handle = fastpath.install("call-1", leg_a, leg_b)
        # Sockets keep the namespace they were made in: the phones' are made in the phones' namespace.
        setns(os.environ["FASTPATH_PHONES_NS"], flags=0)
        ra, rb = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        ra.bind((ROUTED_A, RA))
        rb.bind((ROUTED_B, RB))
        ra.settimeout(2.0)
        rb.settimeout(2.0)
        got_b, got_a = [], []
        for i in range(PACKETS):
            ra.sendto(b"a%03d" % i, (ROUTED_RELAY, A))
            got_b.append(rb.recvfrom(2048))
            rb.sendto(b"b%03d" % i, (ROUTED_RELAY, B))
            got_a.append(ra.recvfrom(2048))
        counters = _counters_dict(fastpath, handle)
        fastpath.remove(handle)
    return {
        "b_ok": [d for d, _ in got_b] == [b"a%03d" % i for i in range(PACKETS)],
        "a_ok": [d for d, _ in got_a] == [b"b%03d" % i for i in range(PACKETS)],
        "b_sources": sorted({s for _, s in got_b}),
        "a_sources": sorted({s for _, s in got_a}),
        "relay_queued": len(_pending(relay_a)) + len(_pending(relay_b)),
        "counters": counters,
    }


def scenario_entry_expiry_keeps_totals() -> dict[str, Any]:
    """The call's conntrack entry going away (as an idle one expires) does not reset the totals."""
    from pyroute2 import NFCTSocket  # type: ignore[import-untyped]
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple  # type: ignore[import-untyped]

    ra, rb = _udp(RA), _udp(RB)
    _udp(A), _udp(B)
    with KernelFastPath() as fastpath:
        leg_a, leg_b = _legs()
        handle = fastpath.install("call-1", leg_a, leg_b)
        before = fastpath.counters(handle)
        _exchange(ra, rb, 10)
        first = _counters_dict(fastpath, handle)
        ct = NFCTSocket()
        ct.entry("del", tuple_orig=NFCTAttrTuple(saddr=HOST, daddr=HOST, proto=17, sport=RA, dport=A))
        gone = _counters_dict(fastpath, handle)
        # Now b speaks first: the fresh entry's original direction is b's.
        for i in range(5):
            rb.sendto(b"b%03d" % i, (HOST, B))
            ra.recvfrom(2048)
        second = _counters_dict(fastpath, handle)
        ct.close()
    return {
        "before": [before.a_packets, before.b_packets, before.forwarding],
        "first": first,
        "gone": gone,
        "second": second,
    }


def scenario_duplicate_tuple_refused() -> dict[str, Any]:
    ra, rb = _udp(RA), _udp(RB)
    _udp(A), _udp(B)
    with KernelFastPath() as fastpath:
        leg_a, leg_b = _legs()
        handle = fastpath.install("call-1", leg_a, leg_b)
        try:
            fastpath.install("call-2", leg_a, FlowLeg((HOST, 41006), (HOST, 31004)))
            errno_seen = 0
        except NetlinkRequestError as exc:
            errno_seen = exc.errno
        exchange = _exchange(ra, rb, 3)
        counters = _counters_dict(fastpath, handle)
        installed = fastpath.installed
    return {"errno": errno_seen, "exchange": exchange, "counters": counters, "installed": installed}


def scenario_stale_table_replaced() -> dict[str, Any]:
    subprocess.run(["nft", "add", "table", "ip", TABLE], check=True)
    subprocess.run(["nft", "add", "chain", "ip", TABLE, "leftover"], check=True)
    with KernelFastPath():
        listing = _nft_table()
        assert listing is not None
        chains = sorted(item["chain"]["name"] for item in listing["nftables"] if "chain" in item)
    return {"chains": chains, "after_close": _nft_table() is not None}


def scenario_open_unavailable() -> dict[str, Any]:
    try:
        with KernelFastPath(FastPathConfig()):
            return {"raised": None}
    except FastPathUnavailable as exc:
        return {"raised": str(exc)}


def scenario_latency() -> dict[str, Any]:
    calls = 200
    with KernelFastPath() as fastpath:
        # Start near the end of the 32-bit sequence space, so that numbering wraps during the run.
        fastpath._seq = (1 << 32) - 100
        handles = []
        start = time.perf_counter()
        for n in range(calls):
            a = FlowLeg(("127.0.1.1", 10000 + n), (HOST, 20000 + 2 * n))
            b = FlowLeg(("127.0.2.1", 10000 + n), (HOST, 20001 + 2 * n))
            handles.append(fastpath.install(f"call-{n}", a, b))
        install_s = time.perf_counter() - start
        elements = _map_elements(_nft_table(), "dnat_to")
        start = time.perf_counter()
        for handle in handles:
            fastpath.counters(handle)
        counters_s = time.perf_counter() - start
        start = time.perf_counter()
        polled = fastpath.poll(handles)
        poll_s = time.perf_counter() - start
        start = time.perf_counter()
        for handle in handles:
            fastpath.remove(handle)
        remove_s = time.perf_counter() - start
    return {
        "calls": calls,
        "elements": elements,
        "install_us": install_s / calls * 1e6,
        "counters_us": counters_s / calls * 1e6,
        "poll_us": poll_s / calls * 1e6,
        "polled": len(polled),
        "remove_us": remove_s / calls * 1e6,
    }


# --- tests -----------------------------------------------------------------------------------------------


@needs_root
def test_kernel_forwards_both_directions_with_the_relay_sockets_unread(forwarding: dict[str, Any]) -> None:
    report = forwarding
    assert report["acct"] == "1"
    assert (report["dnat_elements"], report["snat_elements"], report["installed"]) == (2, 2, 1)
    exchange = report["exchange"]
    assert exchange["a_payloads_ok"] and exchange["b_payloads_ok"]
    # Each remote sees the other's media coming from the relay port of its own leg.
    assert exchange["b_sources"] == [[HOST, B]]
    assert exchange["a_sources"] == [[HOST, A]]
    # Nothing reached the relay's sockets: the kernel forwarded every packet.
    assert (report["relay_a_queued"], report["relay_b_queued"]) == (0, 0)
    assert report["poll_agrees"]
    wire = PAYLOAD + 28  # conntrack counts IP bytes
    assert report["counters"] == {
        "a_packets": PACKETS,
        "a_bytes": PACKETS * wire,
        "b_packets": PACKETS,
        "b_bytes": PACKETS * wire,
        "forwarding": True,
    }


@needs_root
def test_a_third_source_is_left_to_the_userspace_latch(forwarding: dict[str, Any]) -> None:
    report = forwarding
    assert report["third_at_relay"] == [["hijack", [HOST, X]]]
    assert report["first_at_rb_after_third"] == "marker"
    # The kernel counted only the marker: the third source's packet is not the call's.
    counters = dict(report["counters"])
    counters["a_packets"] += 1
    counters["a_bytes"] += len("marker") + 28
    assert report["counters_after_third"] == counters


@needs_root
def test_remove_gives_the_ports_back_and_close_drops_the_table(
    forwarding: dict[str, Any],
) -> None:
    report = forwarding
    assert report["final"] == [PACKETS + 1, PACKETS]  # the marker included
    assert report["installed_after_remove"] == 0
    assert report["dnat_after_remove"] == 0
    assert report["after_remove_at_relay"] == [["after-remove", [HOST, RA]]]
    assert report["after_remove_at_rb"] == 0
    assert report["table_after_close"] is False


@needs_root
def test_phones_on_a_link_are_forwarded_through_prerouting(netns: str) -> None:
    with namespace("fastpath") as phones:
        run = ["ip", "-n"]
        subprocess.run(
            ["ip", "link", "add", "fp0", "netns", netns, "type", "veth", "peer", "fp1", "netns", phones],
            check=True,
        )
        subprocess.run([*run, netns, "addr", "add", f"{ROUTED_RELAY}/24", "dev", "fp0"], check=True)
        subprocess.run([*run, netns, "link", "set", "fp0", "up"], check=True)
        for address in (ROUTED_A, ROUTED_B):
            subprocess.run([*run, phones, "addr", "add", f"{address}/24", "dev", "fp1"], check=True)
        subprocess.run([*run, phones, "link", "set", "fp1", "up"], check=True)
        report = run_in(netns, scenario_routed, env={"FASTPATH_PHONES_NS": phones})
    assert report["a_ok"] and report["b_ok"]
    assert report["b_sources"] == [[ROUTED_RELAY, B]]
    assert report["a_sources"] == [[ROUTED_RELAY, A]]
    assert report["relay_queued"] == 0
    wire = 4 + 28
    assert report["counters"] == {
        "a_packets": PACKETS,
        "a_bytes": PACKETS * wire,
        "b_packets": PACKETS,
        "b_bytes": PACKETS * wire,
        "forwarding": True,
    }


@needs_root
def test_counters_survive_the_conntrack_entry_being_replaced(netns: str) -> None:
    report = run_in(netns, scenario_entry_expiry_keeps_totals)
    assert report["before"] == [0, 0, False]
    assert report["first"]["a_packets"] == 10 and report["first"]["b_packets"] == 10
    # Entry gone: the last sample is kept, but the kernel is not forwarding through it any more.
    assert (report["gone"]["a_packets"], report["gone"]["b_packets"]) == (10, 10)
    assert report["gone"]["forwarding"] is False
    assert (report["second"]["a_packets"], report["second"]["b_packets"]) == (10, 15)
    assert report["second"]["forwarding"] is True


@needs_root
def test_a_tuple_already_forwarded_is_refused_and_the_first_call_kept(netns: str) -> None:
    report = run_in(netns, scenario_duplicate_tuple_refused)
    assert report["errno"] == 17  # EEXIST
    assert report["installed"] == 1
    assert report["exchange"]["a_payloads_ok"] and report["exchange"]["b_payloads_ok"]
    assert (report["counters"]["a_packets"], report["counters"]["b_packets"]) == (3, 3)


@needs_root
def test_open_replaces_a_table_a_crashed_worker_left(netns: str) -> None:
    report = run_in(netns, scenario_stale_table_replaced)
    assert report == {"chains": ["out", "post", "pre"], "after_close": False}


@needs_root
def test_without_cap_net_admin_open_raises_unavailable(netns: str) -> None:
    # Root, but with CAP_NET_ADMIN gone from every set.
    dropped = ("setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--")
    report = run_in(netns, scenario_open_unavailable, *dropped)
    assert report["raised"] is not None and "CAP_NET_ADMIN" in report["raised"]
    # An unprivileged user.
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--")
    report = run_in(netns, scenario_open_unavailable, *nobody)
    assert report["raised"] is not None and "CAP_NET_ADMIN" in report["raised"]


@needs_root
def test_with_forwarding_off_open_raises_unavailable(netns: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_forward=0"], check=True)
    report = run_in(netns, scenario_open_unavailable)
    assert report["raised"] is not None and "ip_forward" in report["raised"]


@needs_root
def test_install_and_remove_latency(netns: str) -> None:
    report = run_in(netns, scenario_latency)
    sys.stdout.write(f"\nfast path latency: {json.dumps(report)}\n")
    assert report["elements"] == 2 * report["calls"]
    # The worker calls these from its event loop: each must stay well under a millisecond.
    assert report["install_us"] < 1000
    assert report["remove_us"] < 1000
    assert report["counters_us"] < 1000
    assert report["polled"] == report["calls"]
