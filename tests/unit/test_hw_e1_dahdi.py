"""The DAHDI span behind the SpanDriver interface, on a recorded sysfs/procfs tree and a fake dahdi_cfg."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hw.e1.alarms import Alarm, AlarmCleared, AlarmRaised
from hw.e1.dahdi import DahdiSpan, DahdiSystem
from hw.e1.dahdi_channel import DAHDI_MAINT, SIG_CLEAR, SIG_HARDHDLC
from hw.e1.dahdi_conf import DahdiSettings
from hw.e1.driver import BChannelsSpec, LoopbackChanged, SpanDriver, SpanEvent
from hw.e1.errors import DahdiCfgError, DahdiError, LinkUsageError
from hw.e1.model import Loopback, SpanConfig, SpanCounters
from tests.unit.test_hw_e1_dahdi_channel import FakeDevice, Handler

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dahdi"


class Box:
    """A copy of the recorded tree, a fake dahdi_cfg that keeps the file it was given, a fake device."""

    def __init__(self, tmp_path: Path, *, cfg_status: int = 0) -> None:
        shutil.copytree(VECTORS / "sysfs", tmp_path / "sys")
        shutil.copytree(VECTORS / "proc", tmp_path / "proc")
        self.sysfs = tmp_path / "sys" / "bus" / "dahdi_spans" / "devices"
        script = tmp_path / "dahdi_cfg"
        script.write_text(
            f'#!/bin/sh\ncp "$2" {tmp_path}/applied\necho "dahdi_cfg: span 9 does not exist" >&2\n'
            f"exit {cfg_status}\n"
        )
        script.chmod(0o755)
        self.applied = tmp_path / "applied"
        self.settings = DahdiSettings(
            system_conf=tmp_path / "etc" / "system.conf",
            dahdi_cfg=script,
            sysfs_spans=self.sysfs,
            proc_dahdi=tmp_path / "proc" / "dahdi",
            ctl_device=Path("/dev/dahdi/channel"),  # the fake device serves the control ioctl too
            poll_interval=3600.0,  # the tests poll by hand
        )
        self.device = FakeDevice({16: SIG_HARDHDLC, 1: SIG_CLEAR, 2: SIG_CLEAR})
        self.maint: list[tuple[int, int]] = []
        fake_ioctl = self.device.ioctl

        def ioctl(fd: int, request: int, arg: bytes) -> bytes:
            if request == DAHDI_MAINT:
                self.maint.append(struct.unpack("=ii", arg))
                return arg
            return fake_ioctl(fd, request, arg)

        self.system = DahdiSystem(self.settings, access=replace(self.device.access(), ioctl=ioctl))
        self.events: list[SpanEvent] = []

    def span(self, config: SpanConfig) -> DahdiSpan:
        span = DahdiSpan(self.system, on_event=self.events.append, wall=lambda: 500.0)
        span.configure(config)
        return span


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    b = Box(tmp_path)
    yield b
    b.device.close()


async def test_start_configures_every_span_and_reads_red_alarm_and_counters(box: Box) -> None:
    span1 = box.span(SpanConfig(number=1))
    span2 = box.span(SpanConfig(number=2, timing_priority=2))
    driver: SpanDriver = span1
    await driver.start()
    applied = box.applied.read_text().splitlines()
    assert "span=1,1,0,ccs,hdb3,crc4" in applied and "span=2,2,0,ccs,hdb3,crc4" in applied
    assert "bchan=32-46,48-62" in applied  # span 2's base channel read from sysfs
    status = driver.status()
    assert status.running
    assert status.alarms == {Alarm.LOS: 500.0, Alarm.LOF: 500.0}
    assert status.counters == SpanCounters(irq_misses=3)
    assert (status.name, status.description) == ("TE4/0/1", "T4XXP (PCI) Card 0 Span 1")
    assert not status.timing_source
    assert [type(e) for e in box.events] == [AlarmRaised, AlarmRaised]
    await span2.start()
    assert span2.status().timing_source
    assert span2.status().alarms == {}
    assert span2.status().counters.crc4_errors == 5
    await span1.stop()
    await span2.stop()
    assert not driver.status().running


async def test_alarm_clearing_in_sysfs_is_an_event_on_the_next_poll(box: Box) -> None:
    span = box.span(SpanConfig(number=1))
    await span.start()
    (box.sysfs / "span-1" / "alarms").write_text("0x4\n")  # red cleared, the far end still sees none of us
    span.poll()
    assert box.events[2:] == [
        AlarmCleared(1, Alarm.LOS, 500.0, since=500.0),
        AlarmCleared(1, Alarm.LOF, 500.0, since=500.0),
        AlarmRaised(1, Alarm.RAI, 500.0),
    ]
    assert span.status().alarms == {Alarm.RAI: 500.0}
    await span.stop()


async def test_dahdi_cfg_failure_fails_the_start_with_its_message(tmp_path: Path) -> None:
    box = Box(tmp_path, cfg_status=1)
    span = box.span(SpanConfig(number=1))
    with pytest.raises(DahdiCfgError, match="failed with status 1: dahdi_cfg: span 9 does not exist"):
        await span.start()
    assert not span.status().running
    box.device.close()


async def test_loopback_goes_to_the_card_with_dahdi_maint(box: Box) -> None:
    span = box.span(SpanConfig(number=2))
    span.set_loopback(Loopback.PAYLOAD)
    span.set_loopback(Loopback.PAYLOAD)
    span.set_loopback(Loopback.NONE)
    assert box.maint == [(2, 13), (2, 0)]
    assert box.events == [
        LoopbackChanged(2, Loopback.PAYLOAD, Loopback.NONE, 500.0),
        LoopbackChanged(2, Loopback.NONE, Loopback.PAYLOAD, 500.0),
    ]


async def test_d_and_b_channels_open_on_the_spans_channel_numbers(box: Box) -> None:
    span = box.span(SpanConfig(number=1, b_channels=(1, 2)))
    with pytest.raises(LinkUsageError):
        await span.open_dchannel(Handler())
    await span.start()
    handler = Handler()
    d = await span.open_dchannel(handler)
    assert d.up and span.status().d_channel_up
    b = await span.open_bchannels(handler)
    assert b.up
    assert sorted(box.device.channo.values()) == [1, 2, 16]
    assert span.bchannels_spec() == BChannelsSpec("dahdi", 1, (1, 2), basechan=1)
    with pytest.raises(LinkUsageError):
        await span.open_dchannel(handler)
    await span.stop()


async def test_a_missing_span_is_reported_by_poll_not_raised(box: Box) -> None:
    span = box.span(SpanConfig(number=1))
    await span.start()
    shutil.rmtree(box.sysfs / "span-1")
    span.poll()  # logged; the last known state stays
    assert span.status().alarms == {Alarm.LOS: 500.0, Alarm.LOF: 500.0}
    with pytest.raises(DahdiError):
        box.span(SpanConfig(number=1)).bchannels_spec()
    await span.stop()
