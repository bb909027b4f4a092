"""The WAN monitor in a throwaway network namespace: real netlink, real veth carrier, real default routes.

Each test makes a namespace with veth pairs (``wanN`` is the appliance's WAN interface, ``peerN`` its far
end, both in the namespace, addresses 10.77.x.y inside it only) and runs the monitor there in a child
process (this module run as a script), which prints one JSON line per event with the loop's monotonic
time. CLOCK_MONOTONIC is the same in every namespace, so the test measures from the moment it cut the
link. Carrier is cut by setting the peer end down, as a cable pulled at the far side would.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from appliance.sync import pki
from tests.netns import wan_pair
from tests.system.netns import namespace

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
CARRIER_BUDGET = 0.5  # seconds from the cut to the event (issue 5: carrier loss noticed in < 0.5 s)
SILENT_DROP_BUDGET = 3.0  # issue 5; the fast settings' worst case is 2 s (see appliance.wan.mode)

pytestmark = [
    pytest.mark.system,
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]


# --- the child: the monitor inside the namespace -----------------------------------------------------------


async def child(spec: Mapping[str, Any]) -> None:
    """Run a WanMonitor on ``spec`` until stdin closes; print events, mode changes and "ready"."""
    from appliance.config.schema import UplinkConfig, WanConfig
    from appliance.wan.events import ModeChanged
    from appliance.wan.mode import ModeMachine
    from appliance.wan.monitor import WanMonitor

    loop = asyncio.get_running_loop()

    def emit(kind: str, **fields: object) -> None:
        print(json.dumps({"kind": kind, "t": loop.time(), **fields}), flush=True)

    # Probes are never answered here and take long to time out: only netlink moves the mode.
    mode = ModeMachine(
        cloud_configured=True,
        probe_interval=120.0,
        probe_timeout=60.0,
        probe_failures=3,
        probe_successes=1,
        hold_down=0.0,
        now=loop.time(),
    )
    mode.probe_answered(1, loop.time())

    def drain(now: float) -> None:
        while (event := mode.next_event()) is not None:
            if isinstance(event, ModeChanged):
                emit("mode", old=event.old.name, new=event.new.name, reason=event.reason)

    drain(loop.time())
    config = WanConfig(
        interfaces=tuple(spec["interfaces"]),
        failover=spec.get("failover", False),
        uplinks=tuple(UplinkConfig(**u) for u in spec.get("uplinks", ())),
        revert_after=spec.get("revert_after", 60.0),
    )
    monitor = WanMonitor(
        config, mode, on_event=lambda kind, body: emit(kind, body=dict(body)), after_mode_input=drain
    )
    await monitor.start()
    emit("ready", uplink=monitor.active_uplink)
    await loop.run_in_executor(None, sys.stdin.read)
    await monitor.stop()


async def health_server(spec: Mapping[str, Any]) -> None:
    """The cloud's HTTPS health endpoint on ``spec["host"]``, port 8443, until stdin closes."""
    import ssl

    from aiohttp import web

    loop = asyncio.get_running_loop()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(spec["certificate"], spec["key"])
    app = web.Application()
    app.router.add_get("/health", lambda request: web.Response(text="ok"))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, spec["host"], 8443, ssl_context=context).start()
    print(json.dumps({"kind": "ready", "t": loop.time()}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


async def prober(spec: Mapping[str, Any]) -> None:
    """The mode machine probing the cloud by HTTPS alone with the fast settings of the mode docstring
    (1 s interval, 0.5 s timeout, 2 misses, hold-down 1 s); prints its mode changes until stdin closes."""
    import ssl

    from appliance.wan.events import ModeChanged, SendProbe
    from appliance.wan.https_probe import HttpsProbe
    from appliance.wan.mode import ModeMachine

    loop = asyncio.get_running_loop()
    mode = ModeMachine(
        cloud_configured=True,
        probe_interval=1.0,
        probe_timeout=0.5,
        probe_failures=2,
        probe_successes=1,
        hold_down=1.0,
        now=loop.time(),
    )
    timer: list[asyncio.TimerHandle] = []

    def pump() -> None:
        while (event := mode.next_event()) is not None:
            if isinstance(event, SendProbe):
                https.start(event.probe_id)
            elif isinstance(event, ModeChanged):
                print(json.dumps({"kind": "mode", "t": event.at, "new": event.new.name}), flush=True)
        for handle in timer:
            handle.cancel()
        timer.clear()
        due = mode.get_timer()
        if due is not None:
            timer.append(loop.call_at(due, fire))

    def fire() -> None:
        mode.handle_timer(loop.time())
        pump()

    def result(probe_id: int, answered: bool, reason: str) -> None:
        if answered:
            mode.probe_answered(probe_id, loop.time())
        else:
            mode.probe_failed(probe_id, loop.time(), reason)
        pump()

    context = ssl.create_default_context(cafile=spec["ca"])
    https = HttpsProbe(spec["url"], timeout=0.5, on_result=result, ssl_context=context)
    pump()
    await loop.run_in_executor(None, sys.stdin.read)
    await https.close()


# --- the test side ---------------------------------------------------------------------------------------


def ip(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, text=True).stdout


def add_wan(ns: str, n: int) -> None:
    """``wan<n>`` with 10.77.<n+1>.1/24, joined to ``peer<n>``; both up."""
    ip(ns, "link", "add", f"wan{n}", "type", "veth", "peer", "name", f"peer{n}")
    ip(ns, "addr", "add", f"10.77.{n + 1}.1/24", "dev", f"wan{n}")
    ip(ns, "link", "set", f"peer{n}", "up")
    ip(ns, "link", "set", f"wan{n}", "up")
    # The kernel's link watch sets the operational state UP a moment after carrier (up to a second later
    # under load); the monitor must start on a link that is up, or it starts on the other uplink.
    deadline = time.monotonic() + 5.0
    while json.loads(ip(ns, "-j", "link", "show", f"wan{n}"))[0]["operstate"] != "UP":
        assert time.monotonic() < deadline, f"wan{n} not up"
        time.sleep(0.01)


def ip_netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True).stdout


def default_route(ns: str) -> str:
    return ip(ns, "route", "show", "default").strip()


class Child:
    """The monitor child's JSON lines, read on a thread."""

    def __init__(self, ns: str, spec: Mapping[str, Any], main: str = "child") -> None:
        code = (
            "import asyncio, json, sys; sys.path.insert(0, sys.argv[1]); "
            f"from tests.system.test_wan_netns import {main}; asyncio.run({main}(json.loads(sys.argv[2])))"
        )
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(PYTHON), "-c", code, str(ROOT), json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, kind: str, timeout: float = 10.0, **match: object) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} {match} within {timeout} s; saw {self.seen}")
            try:
                item = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(item)
            body = item.get("body", item)
            if item["kind"] == kind and all(body.get(k) == v for k, v in match.items()):
                return item

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)


@contextmanager
def monitor_in(ns: str, spec: Mapping[str, Any], main: str = "child") -> Iterator[Child]:
    child_proc = Child(ns, spec, main)
    try:
        yield child_proc
    finally:
        child_proc.close()


def wait_route(ns: str, expected: str, timeout: float = 5.0) -> None:
    """Wait until the default routes are exactly ``expected`` (a switch adds the new route, then deletes
    the old one: for a moment both are there)."""
    deadline = time.monotonic() + timeout
    while (route := default_route(ns)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"default route {route!r}, not {expected!r}")
        time.sleep(0.02)


def test_carrier_loss_is_reported_and_survivable_within_half_a_second() -> None:
    with namespace("wan") as ns:
        add_wan(ns, 0)
        with monitor_in(ns, {"interfaces": ["wan0"]}) as mon:
            mon.wait_for("wan.link", ifname="wan0", carrier=True)
            mon.wait_for("ready")
            cut = time.monotonic()
            ip(ns, "link", "set", "peer0", "down")
            lost = mon.wait_for("wan.link", ifname="wan0", carrier=False)
            mode = mon.wait_for("mode", new="SURVIVABLE")  # the only WAN link: no path left
            assert lost["t"] - cut < CARRIER_BUDGET
            assert mode["t"] - cut < CARRIER_BUDGET
            assert mode["reason"] == "carrier lost on wan0, no WAN link left"
            ip(ns, "link", "set", "peer0", "up")
            mon.wait_for("wan.link", ifname="wan0", carrier=True)
    assert ns not in ip_netns_list()


def test_failover_moves_the_default_route_and_back_after_revert_after() -> None:
    revert_after = 1.0
    spec = {
        "interfaces": ["wan0", "wan1"],
        "failover": True,
        "revert_after": revert_after,
        "uplinks": [
            {"name": "fibre", "interface": "wan0", "gateway": "10.77.1.2", "metric": 10},
            {"name": "lte", "interface": "wan1", "gateway": "10.77.2.2", "metric": 20},
        ],
    }
    with namespace("wan") as ns:
        add_wan(ns, 0)
        add_wan(ns, 1)
        with monitor_in(ns, spec) as mon:
            assert mon.wait_for("ready")["uplink"] == "fibre"
            wait_route(ns, "default via 10.77.1.2 dev wan0 proto static metric 10")

            cut = time.monotonic()
            ip(ns, "link", "set", "peer0", "down")
            switched = mon.wait_for("wan.uplink", old="fibre", new="lte")
            assert switched["t"] - cut < CARRIER_BUDGET
            wait_route(ns, "default via 10.77.2.2 dev wan1 proto static metric 20")
            assert mon.wait_for("mode", new="SUSPECT")["t"] - cut < CARRIER_BUDGET  # the backup has carrier

            # a primary that flaps never gets the route back
            for _ in range(3):
                ip(ns, "link", "set", "peer0", "up")
                mon.wait_for("wan.link", ifname="wan0", carrier=True)
                time.sleep(revert_after / 4)
                ip(ns, "link", "set", "peer0", "down")
                mon.wait_for("wan.link", ifname="wan0", carrier=False)
            assert default_route(ns).split()[2] == "10.77.2.2"

            ip(ns, "link", "set", "peer0", "up")
            back = mon.wait_for("wan.link", ifname="wan0", carrier=True)
            reverted = mon.wait_for("wan.uplink", old="lte", new="fibre")
            # (the selector read the clock just before the event was printed, and the loop may fire a
            # timer up to its clock resolution early)
            assert reverted["t"] - back["t"] >= revert_after - 0.01
            assert reverted["body"]["reason"] == f"carrier up on wan0 for {revert_after:g} s"
            wait_route(ns, "default via 10.77.1.2 dev wan0 proto static metric 10")
            switches = [e["body"]["new"] for e in mon.seen if e["kind"] == "wan.uplink"]
            assert switches == ["fibre", "lte", "fibre"]


def test_without_failover_the_routes_are_left_alone() -> None:
    spec = {
        "interfaces": ["wan0", "wan1"],
        "uplinks": [
            {"name": "fibre", "interface": "wan0", "gateway": "10.77.1.2"},
            {"name": "lte", "interface": "wan1", "gateway": "10.77.2.2"},
        ],
    }
    with namespace("wan") as ns:
        add_wan(ns, 0)
        add_wan(ns, 1)
        with monitor_in(ns, spec) as mon:
            assert mon.wait_for("ready")["uplink"] is None
            ip(ns, "link", "set", "peer0", "down")
            mon.wait_for("wan.link", ifname="wan0", carrier=False)
            mon.wait_for("mode", new="SUSPECT")
        assert default_route(ns) == ""


def test_silent_drop_is_survivable_within_three_seconds(tmp_path: Path) -> None:
    if shutil.which("nft") is None:
        pytest.skip("nftables (nft) is not installed")
    with wan_pair() as wan:
        paths = pki.ensure_site_pki(tmp_path, (wan.cloud_ip,), site="wan-drop")
        server = {
            "host": wan.cloud_ip,
            "certificate": str(paths.server_certificate),
            "key": str(paths.server_key),
        }
        probe = {"url": f"https://{wan.cloud_ip}:8443/health", "ca": str(paths.ca_certificate)}
        with monitor_in(wan.cloud, server, "health_server") as cloud:
            cloud.wait_for("ready")
            with monitor_in(wan.app, probe, "prober") as app:
                app.wait_for("mode", new="ONLINE")  # first answer after boot
                for _ in range(2):
                    cut = wan.drop()
                    survivable = app.wait_for("mode", new="SURVIVABLE")
                    assert survivable["t"] - cut < SILENT_DROP_BUDGET
                    wan.undrop()
                    app.wait_for("mode", new="RECOVERING")
                    app.wait_for("mode", new="ONLINE")  # after the 1 s hold-down
                    time.sleep(0.3)  # a cut at another phase of the probe interval
