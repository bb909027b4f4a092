"""The appliance on a span of a DAHDI card (``driver = "dahdi"``), as real processes on a fake card.

What is real: the appliance process and its TDM worker process, system.conf as the appliance writes it, a
``dahdi_cfg`` program run on it (a script that keeps what it was given), the span's alarms and counters
read from a sysfs/procfs tree (a copy of a recorded TE410P, ``tests/vectors/dahdi``) that the test edits
as a kernel would, one fd per channel read and written by the appliance (the D-channel's HDLC frames with
their FCS, 160-octet blocks on each B-channel). What is not: the kernel's answers to ``open`` and
``ioctl`` on ``/dev/dahdi/channel`` (:mod:`tests.system.test_pri_dahdi_kernel` explains why it cannot be,
and stands in for them); each channel's fd is the appliance's end of a socket whose other end is here, the
line side of the card.

The line side is joined to the sockets of a simulated span (DESIGN.md §5.2) so that the carrier is the same
far end as everywhere else (:class:`appliance.pri.farend.FarEnd`, network side): the D-channel comes up
through the card, a caller reaches the IVR, hears its greeting and dials in-band digits that the IVR
understands (audio both ways through the worker's channel fds); the recorded red alarm is reported and
clears when the tree says so, and the procfs counters reach the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.pri.farend import FarEnd
from hw.e1.links import B_TIMESLOTS, FRAME_OCTETS
from hw.e1.sim import SimBChannels, SimDChannel
from tests.system.appliance_proc import RunningAppliance, start_appliance
from tests.system.pri_helpers import eventually, outbox_events, span_config, span_metric
from tests.system.test_pri_dahdi_kernel import ENV, SITECUSTOMIZE, line_path
from tests.system.test_pri_span import IVR_SCRIPT

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors" / "dahdi"
D_CHANNEL = 16  # span 1's base channel is 1 in the recorded tree: timeslot t is channel t
FCS = b"\xa5\x5a"  # the line side's FCS octets (the card checks and strips them)


class CardLine:
    """The line side of span 1's channels, joined to a simulated span's sockets in ``sim_dir``."""

    def __init__(self, root: Path, sim_dir: Path) -> None:
        self.root = root
        self.d = SimDChannel(sim_dir / "span1-d.sock", self)
        self.b = SimBChannels(sim_dir / "span1-b.sock", _BSide(self), timeslots=B_TIMESLOTS)
        self.conns: dict[int, socket.socket] = {}
        self.frames_to_card = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.d.start()
        await self.b.start()
        for channo in (*B_TIMESLOTS, D_CHANNEL):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            listener.bind(str(line_path(self.root, channo)))
            listener.listen(4)
            listener.setblocking(False)
            self._tasks.append(asyncio.create_task(self._serve(channo, listener)))

    async def _serve(self, channo: int, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with listener:
            while True:
                conn, _ = await loop.sock_accept(listener)  # the channel opened (again)
                conn.setblocking(False)
                self._drop(channo)
                self.conns[channo] = conn
                loop.add_reader(conn.fileno(), self._readable, channo, conn)

    def _drop(self, channo: int) -> None:
        old = self.conns.pop(channo, None)
        if old is not None:
            asyncio.get_running_loop().remove_reader(old.fileno())
            old.close()

    def _readable(self, channo: int, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        if not data:
            self._drop(channo)  # the channel's fd was closed
        elif channo == D_CHANNEL:
            assert data[-2:] == b"\x00\x00", data.hex()  # the two octets DAHDI writes the FCS over
            self.d.send(data[:-2])
        elif len(data) == FRAME_OCTETS:
            self.b.send(channo, data)

    def to_card(self, channo: int, data: bytes) -> None:
        conn = self.conns.get(channo)
        if conn is not None:
            with contextlib.suppress(OSError):  # a full buffer loses the block, as a slip would
                conn.send(data)
                self.frames_to_card += 1

    # DChannelHandler of the far end's D socket
    def frame_received(self, frame: bytes) -> None:
        self.to_card(D_CHANNEL, frame + FCS)

    def link_changed(self, up: bool) -> None:
        del up  # the far end's comings and goings are the line's (the test writes the alarms)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channo in list(self.conns):
            self._drop(channo)
        await self.d.close()
        await self.b.close()


class _BSide:
    """The far end's B socket: its frames go to the card's channels (timeslot t is channel t)."""

    def __init__(self, line: CardLine) -> None:
        self.frame_received = line.to_card
        self.link_changed = line.link_changed


class Card:
    """The fake card's tree under ``root``: sysfs and procfs copied from the recording, the devices'
    directory, the line sockets' directory, a fake dahdi_cfg and the sitecustomize that installs the fake
    kernel in the appliance's processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copytree(VECTORS / "sysfs", root / "sys")
        shutil.copytree(VECTORS / "proc", root / "proc")
        for directory in ("dev/dahdi", "line", "etc", "site", "sim"):
            (root / directory).mkdir(parents=True)
        self.span_dir = root / "sys" / "bus" / "dahdi_spans" / "devices" / "span-1"
        self.proc = root / "proc" / "dahdi" / "1"
        self.applied = root / "applied"
        cfg = root / "dahdi_cfg"
        cfg.write_text(f'#!/bin/sh\ncp "$2" {self.applied}\n')
        cfg.chmod(0o755)
        (root / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.table = (
            f'[dahdi]\nsystem_conf = "{root}/etc/system.conf"\ndahdi_cfg = "{cfg}"\n'
            f'sysfs_spans = "{self.span_dir.parent}"\nproc_dahdi = "{self.proc.parent}"\n'
            f'device_dir = "{root}/dev/dahdi"\n'
        )

    def env(self) -> dict[str, str]:
        path = [str(self.root / "site"), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {ENV: str(self.root), "PYTHONPATH": os.pathsep.join(path)}


@contextlib.asynccontextmanager
async def appliance_on_card(tmp_path: Path) -> AsyncIterator[tuple[RunningAppliance, Card, CardLine]]:
    card = Card(tmp_path / "card")
    line = CardLine(card.root, card.root / "sim")
    await line.start()
    config = span_config().replace("number = 1\n", 'number = 1\ndriver = "dahdi"\n', 1) + card.table
    app = start_appliance(tmp_path, config, env=card.env())
    try:
        yield app, card, line
    finally:
        log = app.stop()
        (tmp_path / "appliance.log").write_text(log)
        print(f"appliance stderr (tail):\n{log[-6000:]}")
        await line.close()


async def test_a_call_through_a_card_span_reaches_the_ivr_and_the_cards_alarms_are_reported(
    tmp_path: Path,
) -> None:
    async with appliance_on_card(tmp_path) as (app, card, line):
        (banner,) = [b for b in app.banner if b.startswith("span 1 ")]
        assert "dahdi: DAHDI span TE4/0/1" in banner and str(card.root / "etc" / "system.conf") in banner
        conf = card.applied.read_text()  # what dahdi_cfg was given
        assert "span=1,1,0,ccs,hdb3,crc4\n" in conf and "bchan=1-15,17-31\n" in conf
        assert "hardhdlc=16\n" in conf
        # Every channel of the span is open: the D-channel in the control process, 30 in the worker.
        await eventually(lambda: len(line.conns) == 31, within=10, what="the span's channels open")

        def alarm(name: str) -> float:
            return span_metric(app, "appliance_span_alarm", alarm=name)

        # The recorded span is in red alarm (LOS, loss of frame alignment): read from sysfs, reported.
        await eventually(lambda: alarm("los") == 1 and alarm("lof") == 1, within=10, what="red alarm")
        (card.span_dir / "alarms").write_text("0x0\n")  # the far end's signal is back
        card.proc.write_text(card.proc.read_text().replace("\tIRQ misses: 3\n", "\tCRC4 error count: 9\n"))
        await eventually(lambda: alarm("los") == 0 and alarm("lof") == 0, within=10, what="alarm cleared")

        far = FarEnd(directory=card.root / "sim", span=1)
        try:
            await far.start(within=10.0)  # SABME/UA through the card's HDLC channel
            await eventually(
                lambda: span_metric(app, "appliance_pri_dchannel_up") == 1, within=10, what="D-channel up"
            )
            result = await far.place_call(replace(IVR_SCRIPT, calling="4930123450001"))
        finally:
            await far.close()
        assert result.answered, result.line()  # CONNECT: the IVR took the call
        assert result.heard.sound_frames > 25, result.line()  # its greeting, from the worker's channel fd
        assert result.digits_sent == "111", result.line()
        sessions = await eventually(
            lambda: outbox_events(app, "ivr.session"), within=10, what="the IVR session's record"
        )
        assert [s["digits"] for s in sessions] == ["111"]  # the tones reached the IVR through the card
        assert line.frames_to_card > 100  # the caller's audio, 20 ms blocks into the worker's fds
        await eventually(
            lambda: span_metric(app, "appliance_span_errors_total", counter="crc4_errors") == 9,
            within=10, what="procfs counters in the metrics",
        )  # fmt: skip
        alarms = [(a["alarm"], a["state"]) for a in outbox_events(app, "span.alarm")]
        assert alarms == [("los", "raised"), ("lof", "raised"), ("los", "cleared"), ("lof", "cleared")]
        (up, *_) = outbox_events(app, "span.dchannel")
        assert up["up"] and up["reason"] == "established"
