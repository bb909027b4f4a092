"""What the PRI system tests share: a running appliance with its simulated span, its far end, and reads of
the appliance's outbox and span metrics while it runs.

The far end is :class:`appliance.pri.farend.FarEnd` (the appliance's own stack, network side) on the
span's sockets under ``<state_dir>/run`` (DESIGN.md §5.1/§5.2). Every wait polls a real process (the
metrics endpoint, the database) against a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import cbor2

from appliance.pri.farend import FarEnd
from tests.system.appliance_proc import RunningAppliance, start_appliance
from tests.system.test_media_calls import bound_udp_ports

SPAN = 1
T = TypeVar("T")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')


def span_config(ports: int = 400) -> str:
    """Span 1 as ``make run`` has it (sim, user side, DESIGN.md §5.1), and a ``[media]`` table with ``ports``
    free UDP ports in 10000-19999, of which the span's TDM worker takes the top 64."""
    bound = bound_udp_ports()
    for _ in range(200):
        base = random.randrange(10000, 19999 - ports, 2)
        if bound.isdisjoint(range(base, base + ports)):
            media = f"rtp_port_min = {base}\nrtp_port_max = {base + ports - 1}\nworkers = 1\n"
            return f"[[spans]]\nnumber = {SPAN}\n\n[media]\n{media}"
    raise OSError(f"no free range of {ports} UDP ports in 10000-19999")


@contextlib.contextmanager
def logged_appliance(tmp_path: Path, config: str) -> Iterator[RunningAppliance]:
    """The appliance on ``config``; stopped on leaving, its stderr kept in ``appliance.log`` and its tail
    printed (pytest shows it for a failing test). Its stderr is read as it comes
    (:class:`RunningAppliance`): thirty calls log more than a pipe holds."""
    app = start_appliance(tmp_path, config)
    try:
        yield app
    finally:
        log = app.stop()
        (tmp_path / "appliance.log").write_text(log)
        print(f"appliance stderr (tail):\n{log[-6000:]}")


@contextlib.asynccontextmanager
async def appliance_with_span(tmp_path: Path, config: str = "") -> AsyncIterator[RunningAppliance]:
    """The appliance with its default span 1 (sim, user side), as :func:`logged_appliance`."""
    with logged_appliance(tmp_path, config or span_config()) as app:
        yield app


def span_dir(app: RunningAppliance) -> Path:
    return app.state_dir / "run"


def far_end_for(app: RunningAppliance, **kw: Any) -> FarEnd:
    """A network-side far end on span 1's sockets (``kw``: FarEnd's options)."""
    return FarEnd(directory=span_dir(app), span=SPAN, **kw)


def span_metric(app: RunningAppliance, name: str, **labels: str) -> float:
    """``name`` for span 1 and ``labels`` (in any order) from the metrics endpoint; 0 when absent."""
    wanted = {"span": str(SPAN), **labels}
    for key, value in app.metrics().items():
        family, _, rest = key.partition("{")
        if family == name and dict(_LABEL.findall(rest)) == wanted:
            return value
    return 0.0


def outbox_events(app: RunningAppliance, type_: str) -> list[dict[str, Any]]:
    """The bodies of the outbox's events of ``type_``, in order, read beside the running appliance."""
    db = sqlite3.connect(app.state_dir / "appliance.db", timeout=5)
    try:
        rows = db.execute("SELECT body FROM outbox WHERE type = ? ORDER BY seq", (type_,)).fetchall()
    finally:
        db.close()
    return [cbor2.loads(body) for (body,) in rows]


async def eventually(probe: Callable[[], T], *, within: float, what: str) -> T:
    """The first truthy value ``probe`` returns (it reads the metrics endpoint or the database), polled
    for at most ``within`` seconds; AssertionError naming ``what`` after that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not so after {within} s")
        await asyncio.sleep(0.05)


def wireshark_errors(pcap: Path) -> list[str]:
    """What Wireshark's LAPD/Q.931 dissectors (tshark) find wrong in a D-channel trace: its expert items
    of severity error, malformed packets among them; empty when every frame decodes cleanly."""
    args = ["tshark", "-r", str(pcap), "-q", "-z", "expert,error"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    # The expert summary lists each group under a header such as "Errors (3)"; no header, no errors.
    return [line for line in done.stdout.splitlines() if line.startswith("Errors (") or "Malformed" in line]
