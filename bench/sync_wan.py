"""The WAN part of ``make bench-sync``: time from a WAN cut to SURVIVABLE, as callers get it from the
appliance process.

Set-up (:mod:`tests.netns`): the appliance runs as it ships (``appliance run``) in the appliance's
namespace, its SIP on the WAN address, ``[wan] interfaces`` the WAN veth end and ``[cloud] trunk`` the
cloud's SBC: SIPp in the cloud's namespace, answering the appliance's SIP OPTIONS probes (``-aa``; no
``health_url``, so a probe round is the OPTIONS alone). The probe settings are :class:`ProbeSettings`
(the fast ones of the WAN documentation by default).

Each round waits until the appliance is ONLINE (boot probation, then RECOVERING and its hold-down after
the previous cut), cuts the WAN one way, waits for SURVIVABLE, and restores it:

* ``carrier_loss`` — :meth:`WanPair.cut_link`: the cloud's end of the veth goes down, the appliance's end
  loses carrier (netlink tells the WAN monitor at once);
* ``silent_drop`` — :meth:`WanPair.drop`: nftables drops everything to and from the cloud, the link stays
  up; only missed probes tell.

The time of a cut is from the instant the bench started the command that cuts (``ip`` or ``nft``; the
kernel does it somewhere within the command's run of a few milliseconds, reported as ``cut_command_s``,
so the figure is an upper bound) to the transition time in the appliance's ``mode.changed`` event to
SURVIVABLE in its outbox: the appliance's own record, on the same clock (its ``at``, the wall clock at
the transition, to the millisecond; or, in a body without one, ``created``, when the event was written,
one group commit later). The cut's monotonic instant is carried over to the wall clock through one
paired reading. The metrics endpoint is only polled to know when to look.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cbor2

from bench.common import rounded
from tests.netns import NamespacedAppliance, NamespacedSipp, WanPair, skip_reason, start_appliance_in

KINDS: Final = ("carrier_loss", "silent_drop")
SIP_PORT: Final = 5060
SCENARIO: Final = Path(__file__).resolve().parent.parent / "tests" / "system" / "scenarios" / "uas_cloud.xml"
ONLINE: Final = "ONLINE"
SURVIVABLE: Final = "SURVIVABLE"
ONLINE_TIMEOUT_S: Final = 60.0
SURVIVABLE_TIMEOUT_S: Final = 15.0
EVENT_TIMEOUT_S: Final = 5.0
START_TIMEOUT_S: Final = 30.0
READY_LINE: Final = "appliance ready"
REPO: Final = Path(__file__).resolve().parent.parent
# The event loops the appliance can be run on: as shipped (``appliance run``), or bench.sync_appliance.
UVLOOP: Final = "uvloop"
LOOPS: Final = (UVLOOP, "asyncio")


@dataclass(frozen=True)
class ProbeSettings:
    """``[cloud]`` probe settings of the appliance under test; the defaults are the fast settings of
    :mod:`appliance.wan.mode` ("Detection time": a silent drop is noticed within 2 s at worst)."""

    interval: float = 1.0
    timeout: float = 0.5
    failures: int = 2
    successes: int = 1
    hold_down: float = 1.0

    def toml(self) -> str:
        return (
            f"probe_interval = {self.interval}\nprobe_timeout = {self.timeout}\n"
            f"probe_failures = {self.failures}\nprobe_successes = {self.successes}\n"
            f"hold_down = {self.hold_down}\n"
        )


@dataclass(frozen=True)
class Cut:
    """One cut: its kind and the seconds from the cut to SURVIVABLE (None and why if it was not seen)."""

    kind: str
    seconds: float | None
    error: str = ""
    command_s: float | None = None  # how long the cut's command (ip, nft) took: the cut is somewhere in it

    def line(self) -> str:
        took = (
            f"SURVIVABLE after {self.seconds:.3f} s" if self.seconds is not None else f"failed: {self.error}"
        )
        return f"  {self.kind:12} {took}"

    def row(self) -> dict[str, object]:
        return {
            "bench": "sync-wan-cut",
            "kind": self.kind,
            "seconds": rounded(self.seconds),
            "cut_command_s": rounded(self.command_s),
            "error": self.error,
        }


def appliance_config(wan: WanPair, workdir: Path, probes: ProbeSettings) -> str:
    """The appliance's whole configuration file for the namespace pair."""
    return (
        f'state_dir = "{workdir / "var"}"\n\n'
        f'[sip]\nlisten = "{wan.app_ip}"\nudp_port = {SIP_PORT}\ntcp_port = {SIP_PORT}\n\n'
        f'[cloud]\ntrunk = "sip:cc@{wan.cloud_ip}:{SIP_PORT}"\n{probes.toml()}\n'
        f'[wan]\ninterfaces = ["{wan.app_if}"]\n\n'
        '[metrics]\nlisten = "127.0.0.1"\nport = 0\n\n'
        '[logging]\nlevel = "info"\n'
    )


def wall_of(monotonic: float) -> float:
    """``monotonic`` (a ``time.monotonic()`` reading) on the wall clock ``time.time()``."""
    return time.time() - (time.monotonic() - monotonic)


def transition_time(body: Mapping[str, Any], created: float) -> float:
    """When a ``mode.changed`` event says the transition happened: its ``at`` (RFC 3339, UTC) when the
    body has one, else the event's ``created``."""
    at = body.get("at")
    if isinstance(at, str):
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    return created


def survivable_at(db: Path, after_wall: float, timeout: float = EVENT_TIMEOUT_S) -> float | None:
    """When the first ``mode.changed`` to SURVIVABLE written after ``after_wall`` into the appliance's
    outbox ``db`` (read-only, beside the running appliance) says it happened; None if none comes."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT body, created FROM outbox WHERE type = 'mode.changed' AND created >= ? ORDER BY seq",
                (after_wall,),
            ).fetchall()
        for raw, created in rows:
            body = cbor2.loads(raw)
            if str(body.get("new", "")).upper() == SURVIVABLE:
                return transition_time(body, float(created))
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def start_on_asyncio(wan: WanPair, workdir: Path, config: str) -> NamespacedAppliance:
    """The appliance as :func:`tests.netns.start_appliance_in` starts it, but through
    :mod:`bench.sync_appliance` (the stdlib event loop); returns once it printed ``appliance ready``."""
    path, log_path = workdir / "appliance.toml", workdir / "appliance.log"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(config)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "bench.sync_appliance", "--config", str(path)]
    with open(log_path, "ab") as log:
        proc = wan.run_in(wan.app, argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=workdir)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # keeps draining after start-up, so the process never blocks on a full pipe
        for line in proc.stdout or ():
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    banner: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while not banner or banner[-1] != READY_LINE:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the appliance did not start: {log_path.read_text(errors='replace')[-3000:]}")
        banner.append(line)
    return NamespacedAppliance(wan, proc, path, banner, log_path)


@contextlib.contextmanager
def appliance_on_a_wan(
    workdir: Path, probes: ProbeSettings, loop: str = UVLOOP
) -> Iterator[tuple[WanPair, NamespacedAppliance]]:
    """The namespace pair, the cloud's SBC and the appliance (``appliance run``, or on the stdlib loop
    with ``loop`` "asyncio"), up and ONLINE; all removed on exit."""
    with WanPair.create() as wan:
        sbc = NamespacedSipp.in_ns(
            wan.cloud, SCENARIO, role="uas", local_ip=wan.cloud_ip, local_port=SIP_PORT,
            workdir=workdir / "sbc", auto_answer=True,
        )  # fmt: skip
        with sbc.start():
            sbc.wait_bound()
            config = appliance_config(wan, workdir, probes)
            if loop == UVLOOP:
                app = start_appliance_in(wan, workdir, config)
            else:
                app = start_on_asyncio(wan, workdir, config)
            try:
                app.wait_mode(ONLINE, ONLINE_TIMEOUT_S)
                yield wan, app
            finally:
                app.stop()


def cut_once(wan: WanPair, app: NamespacedAppliance, kind: str) -> Cut:
    """Wait for ONLINE, cut the WAN by ``kind``, time it to SURVIVABLE, restore the WAN."""
    app.wait_mode(ONLINE, ONLINE_TIMEOUT_S)
    asked = time.monotonic()
    done = wan.cut_link() if kind == "carrier_loss" else wan.drop()
    cut_wall = wall_of(asked)
    try:
        app.wait_mode(SURVIVABLE, SURVIVABLE_TIMEOUT_S)
        at = survivable_at(app.config_path.parent / "var" / "appliance.db", cut_wall)
    except AssertionError as exc:
        return Cut(kind, None, str(exc).splitlines()[0])
    finally:
        if kind == "carrier_loss":
            wan.restore_link()
        else:
            wan.undrop()
    if at is None:
        return Cut(
            kind, None, "SURVIVABLE on the metrics but no mode.changed event in the outbox", done - asked
        )
    return Cut(kind, at - cut_wall, "", done - asked)


def measure_cuts(
    workdir: Path,
    rounds: int,
    probes: ProbeSettings,
    *,
    loop: str = UVLOOP,
    on_cut: Callable[[Cut], None] | None = None,
) -> list[Cut]:
    """``rounds`` cuts of each kind, alternating, on one appliance. Raises RuntimeError when the harness
    cannot run here (not root, no nft) or the appliance does not come up."""
    reason = skip_reason()
    if reason is not None:
        raise RuntimeError(reason)
    cuts: list[Cut] = []
    with appliance_on_a_wan(workdir, probes, loop) as (wan, app):
        for _ in range(rounds):
            for kind in KINDS:
                cuts.append(cut_once(wan, app, kind))
                if on_cut is not None:
                    on_cut(cuts[-1])
    return cuts


def median_and_worst(cuts: Sequence[Cut], kind: str) -> tuple[float | None, float | None]:
    """Median and worst seconds of the ``kind`` cuts; None if any cut of that kind was not timed."""
    times = [c.seconds for c in cuts if c.kind == kind]
    if not times or any(t is None for t in times):
        return None, None
    known = [t for t in times if t is not None]
    return statistics.median(known), max(known)
