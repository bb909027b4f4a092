"""A span on a DAHDI card wired as the control process wires it: system.conf written and a fake
``dahdi_cfg`` run, alarms and counters read from a recorded sysfs/procfs tree, the D-channel on a fake
channel device (socket pairs behind the injectable open and ioctl: the card's kernel interface, the only
double besides the TDM worker and call control), a network-side far end from our own stack on the line
side of the D-channel, and the timing-source selector following the alarms and the span documents."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.config.load import load_config_text
from appliance.pri.q931_events import CallProceeding
from appliance.pri.q931_model import PartyNumber, TypeOfNumber
from appliance.sync.documents.span import SpanSettings
from hw.e1.dahdi import DahdiSpan
from hw.e1.dahdi_channel import EVENT_ALARM, SIG_CLEAR, SIG_HARDHDLC
from hw.e1.driver import BChannelsSpec
from hw.e1.links import DChannelHandler
from tests.unit.test_app_pri_span import FarEnd, Harness, until
from tests.unit.test_hw_e1_dahdi_channel import FakeDevice

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dahdi"
FCS = b"\xa5\x5a"  # what the card's HDLC controller appends on the line (DAHDI hands it to us, we drop it)


class Card:
    """A copy of the recorded tree (span 1 in red alarm: LOS and LFA), a fake dahdi_cfg that keeps each
    file it was given, and the fake channel device with span 1's D-channel and two B-channels."""

    def __init__(self, tmp_path: Path, *, cfg_status: int = 0) -> None:
        shutil.copytree(VECTORS / "sysfs", tmp_path / "sys")
        shutil.copytree(VECTORS / "proc", tmp_path / "proc")
        self.span_dir = tmp_path / "sys" / "bus" / "dahdi_spans" / "devices" / "span-1"
        self.proc = tmp_path / "proc" / "dahdi" / "1"
        self.applied = tmp_path / "applied"
        script = tmp_path / "dahdi_cfg"
        script.write_text(
            f'#!/bin/sh\ncat "$2" >> {self.applied}\necho "dahdi_cfg: no such span" >&2\nexit {cfg_status}\n'
        )
        script.chmod(0o755)
        self.device = FakeDevice({16: SIG_HARDHDLC, 1: SIG_CLEAR, 2: SIG_CLEAR})
        self.config = load_config_text(
            '[[spans]]\nnumber = 1\ndriver = "dahdi"\nb_channels = [1, 2]\n'
            f'[dahdi]\nsystem_conf = "{tmp_path}/etc/system.conf"\ndahdi_cfg = "{script}"\n'
            f'sysfs_spans = "{self.span_dir.parent}"\nproc_dahdi = "{self.proc.parent}"\n'
        )

    def set_alarms(self, bits: int) -> None:
        (self.span_dir / "alarms").write_text(f"0x{bits:x}\n")


class LineD:
    """The line side of the D-channel's fd: frames with the FCS the card checks and strips."""

    def __init__(self, sock: socket.socket, handler: DChannelHandler) -> None:
        self.sock = sock
        self.handler = handler
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read)

    @property
    def up(self) -> bool:
        return True

    def send(self, frame: bytes) -> None:
        self.sock.send(frame + FCS)

    def _read(self) -> None:
        data = self.sock.recv(4096)
        assert data[-2:] == b"\x00\x00"  # the two octets DAHDI writes the FCS over
        self.handler.frame_received(data[:-2])

    async def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())


@pytest.fixture
async def card(tmp_path: Path) -> AsyncIterator[Card]:
    c = Card(tmp_path)
    yield c
    c.device.close()


@pytest.fixture
async def harness(tmp_path: Path, card: Card) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, card.config, dahdi_access=card.device.access())
    lines = await h.pri.start(calls=h.calls, after_event=h.after)
    assert lines == [f"span 1         user side, dahdi: DAHDI span TE4/0/1, {tmp_path}/etc/system.conf; "
                     "RTP ports 29936-29999"]  # fmt: skip
    yield h
    await h.close()


def alarm_states(h: Harness) -> list[tuple[str, str]]:
    return [(b["alarm"], b["state"]) for k, b in h.outbox if k == "span.alarm"]


async def test_the_card_is_configured_and_its_recorded_alarms_are_span_events(
    harness: Harness, card: Card, tmp_path: Path
) -> None:
    h = harness
    conf = (tmp_path / "etc" / "system.conf").read_text()
    assert card.applied.read_text() == conf
    assert "span=1,1,0,ccs,hdb3,crc4\n" in conf and "bchan=1-2\n" in conf and "hardhdlc=16\n" in conf
    # The TDM worker is told the span's channels: timeslot t on DAHDI channel basechan + t - 1.
    assert h.specs == [BChannelsSpec("dahdi", 1, (1, 2), basechan=1)]
    # The recorded tree has span 1 in red alarm (LOS with loss of frame alignment): declared at once.
    await until(lambda: h.metric("appliance_span_alarm", span="1", alarm="los") == 1, "LOS from sysfs")
    assert h.metric("appliance_span_alarm", span="1", alarm="lof") == 1
    assert h.pri.timing.source is None  # in red alarm: the box runs on its internal clock

    runner = h.pri.runners[1]
    driver = runner.driver
    assert isinstance(driver, DahdiSpan)
    card.set_alarms(0)  # the far end came back
    card.proc.write_text(
        card.proc.read_text().replace("\tIRQ misses: 3\n", "\tCRC4 error count: 7\n\tTiming slips: 2\n")
    )
    driver.poll()  # the next poll (every second while the span runs)
    assert h.metric("appliance_span_alarm", span="1", alarm="los") == 0
    assert h.pri.timing.source == 1  # receive side good again: the box is timed from span 1
    runner.sample()
    assert h.metric("appliance_span_errors_total", span="1", counter="crc4_errors") == 7
    assert h.metric("appliance_span_errors_total", span="1", counter="slips") == 2
    card.set_alarms(1 << 4)  # AIS from the far end (blue): not a clock to be timed from
    driver.poll()
    assert h.pri.timing.source is None
    await h.settle()
    assert alarm_states(h) == [
        ("los", "raised"), ("lof", "raised"), ("los", "cleared"), ("lof", "cleared"), ("ais", "raised"),
    ]  # fmt: skip


async def test_d_channel_frames_go_through_the_card_and_a_call_reaches_call_control(
    harness: Harness, card: Card
) -> None:
    h = harness
    far = FarEnd(card.device.far[16], channel=LineD)  # the carrier's switch
    try:
        await until(lambda: far.link.dchannel_up and h.metric("appliance_pri_dchannel_up", span="1") == 1,
                    "D-channel established over the card")  # fmt: skip
        called = PartyNumber("30123456", TypeOfNumber.NATIONAL)
        far.link.run(lambda now: far.q931.setup(called=called, channel=2, exclusive=True, now=now))
        await until(lambda: bool(h.calls.placed), "the call placed with call control")
        setup, leg, _ = h.calls.placed[0]
        assert setup.called == "+4930123456" and leg.channel == 2
        await until(lambda: any(isinstance(e, CallProceeding) for e in far.events), "CALL PROCEEDING")
        await until(lambda: ("open", 2, "PCMA") in h.tdms[0].commands, "timeslot 2 opened")
        # The card reports an alarm on the D-channel's fd: the data link is gone with the line.
        card.device.event(16, EVENT_ALARM)
        await until(lambda: h.metric("appliance_pri_dchannel_up", span="1") == 0, "D-channel down")
    finally:
        await far.close()
    await h.settle()
    ups = [b for k, b in h.outbox if k == "span.dchannel"]
    assert [b["up"] for b in ups] == [True, False] and ups[1]["reason"] == "loss of signal"


async def test_a_span_documents_timing_priority_applies_at_once_and_in_system_conf_at_the_restart(
    harness: Harness, card: Card
) -> None:
    h = harness
    card.set_alarms(0)
    driver = h.pri.runners[1].driver
    assert isinstance(driver, DahdiSpan)
    driver.poll()
    assert h.pri.timing.source == 1
    h.pri.on_span("1", SpanSettings("ccs", "hdb3", True, "user", 0, (1, 2)))  # never a clock source
    assert h.pri.timing.source is None and h.pri.timing.priority(1) == 0
    await until(lambda: len(h.tdms) == 2 and h.tdms[1].started, "the span restarted")
    assert "span=1,0,0,ccs,hdb3,crc4\n" in card.applied.read_text()  # dahdi_cfg ran again with it
    h.pri.on_span("1", None)  # the configured priority back: span 1 times the box again
    assert h.pri.timing.priority(1) == 1
    await until(lambda: len(h.tdms) == 3 and h.tdms[2].started, "the configured settings back")
    assert h.pri.timing.source == 1


async def test_a_card_that_dahdi_cfg_refuses_is_not_started(tmp_path: Path) -> None:
    card = Card(tmp_path, cfg_status=1)
    h = Harness(tmp_path, card.config, dahdi_access=card.device.access())
    lines = await h.pri.start(calls=h.calls, after_event=h.after)
    assert lines[0].startswith("span 1         not started:") and "dahdi_cfg: no such span" in lines[0]
    assert not h.tdms
    await h.close()
    card.device.close()
