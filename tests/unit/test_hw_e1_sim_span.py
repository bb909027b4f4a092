"""The simulated span behind the SpanDriver interface: LOS from the D socket, loopbacks, controls."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hw.e1.alarms import Alarm, AlarmCleared, AlarmRaised, AlarmTimes
from hw.e1.driver import BChannelsSpec, LoopbackChanged, SpanDriver, SpanEvent
from hw.e1.errors import LinkUsageError
from hw.e1.links import FRAME_OCTETS
from hw.e1.model import Loopback, SpanConfig, SpanCounters
from hw.e1.sim_span import SimSpan, sim_socket_paths
from hw.e1.timing import TimingSelector, TimingSourceChanged
from tests.unit.test_hw_e1_sim import Recorder as LinkRecorder
from tests.unit.test_hw_e1_sim import connect, recv

IMMEDIATE = AlarmTimes(red_raise=0.0, red_clear=0.0)
FRAME = bytes((0x02, 0x01, 0x7F))
SAMPLES = bytes(range(FRAME_OCTETS))


class Recorder(LinkRecorder):
    """Also records the span's events."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[SpanEvent] = []

    def event(self, event: SpanEvent) -> None:
        self.events.append(event)
        self.wake()

    def alarms(self) -> list[tuple[str, Alarm]]:
        return [(type(e).__name__, e.alarm) for e in self.events if isinstance(e, AlarmRaised | AlarmCleared)]


class Span:
    """A started span 2 with B-channels 1-3, its recorder, and its far end's socket paths."""

    def __init__(self, sim: SimSpan, rec: Recorder, directory: Path) -> None:
        self.sim = sim
        self.rec = rec
        self.d_path, self.b_path = sim_socket_paths(directory, 2)

    async def far_d(self) -> socket.socket:
        sock = await connect(self.d_path)
        await self.rec.until(lambda: self.sim.status().d_channel_up)
        return sock


@pytest.fixture
async def span(tmp_path: Path) -> AsyncIterator[Span]:
    rec = Recorder()
    sim = SimSpan(directory=tmp_path, on_event=rec.event, wall=lambda: 1000.0, alarm_times=IMMEDIATE)
    sim.configure(SpanConfig(number=2, b_channels=(1, 2, 3)))
    await sim.start()
    yield Span(sim, rec, tmp_path)
    await sim.stop()


async def test_span_without_far_end_is_in_red_alarm_and_clears_when_one_connects(span: Span) -> None:
    driver: SpanDriver = span.sim
    rec = span.rec
    assert driver.status().alarms == {Alarm.LOS: 1000.0}
    assert driver.status().running and not driver.status().d_channel_up
    far = await span.far_d()
    assert rec.alarms() == [("AlarmRaised", Alarm.LOS), ("AlarmCleared", Alarm.LOS)]
    assert driver.status().alarms == {}
    far.close()
    await rec.until(lambda: len(rec.events) == 3)
    assert rec.alarms()[-1] == ("AlarmRaised", Alarm.LOS)
    assert driver.status().in_alarm


async def test_d_channel_frames_and_link_state_reach_the_handler(span: Span) -> None:
    d = await span.sim.open_dchannel(span.rec)
    assert not d.up
    far = await span.far_d()
    await span.rec.until(lambda: span.rec.links == [True])
    assert d.up
    far.send(FRAME)
    await span.rec.until(lambda: span.rec.frames == [FRAME])
    d.send(FRAME)
    assert await recv(far) == FRAME
    far.close()
    await span.rec.until(lambda: span.rec.links == [True, False])
    assert not d.up
    with pytest.raises(LinkUsageError):
        await span.sim.open_dchannel(span.rec)
    await d.close()
    assert not d.up


async def test_opening_the_d_channel_with_a_far_end_there_reports_it_up_once(span: Span) -> None:
    far = await span.far_d()
    await span.sim.open_dchannel(span.rec)
    span.sim.set_loopback(Loopback.PAYLOAD)  # the D-channel's state does not change
    await span.rec.until(lambda: span.rec.links == [True])
    await asyncio.sleep(0)
    assert span.rec.links == [True]
    far.close()
    await span.rec.until(lambda: span.rec.links == [True, False])


async def test_local_loopback_returns_our_frames_to_us_and_clears_los(span: Span) -> None:
    d = await span.sim.open_dchannel(span.rec)
    b = await span.sim.open_bchannels(span.rec)
    far_b = await connect(span.b_path)
    span.sim.set_loopback(Loopback.LOCAL)
    assert span.rec.events[-2:] == [
        LoopbackChanged(2, Loopback.LOCAL, Loopback.NONE, 1000.0),
        AlarmCleared(2, Alarm.LOS, 1000.0, since=1000.0),
    ]
    assert d.up and span.rec.links == [True]  # our own signal is received
    d.send(FRAME)
    b.send(3, SAMPLES)
    await span.rec.until(lambda: span.rec.frames == [FRAME] and span.rec.b_frames == [(3, SAMPLES)])
    far_b.send(bytes((1,)) + SAMPLES)  # the far end is cut off
    span.sim.set_loopback(Loopback.NONE)
    assert span.sim.status().loopback is Loopback.NONE
    assert span.rec.alarms()[-1] == ("AlarmRaised", Alarm.LOS)
    assert span.rec.b_frames == [(3, SAMPLES)]
    far_b.close()


async def test_line_loopback_returns_the_far_ends_d_and_b_frames_to_it(span: Span) -> None:
    d = await span.sim.open_dchannel(span.rec)
    b = await span.sim.open_bchannels(span.rec)
    far_d = await span.far_d()
    far_b = await connect(span.b_path)
    await span.rec.until(lambda: b.up)
    span.sim.set_loopback(Loopback.LINE)
    far_d.send(FRAME)
    assert await recv(far_d) == FRAME
    far_b.send(bytes((2,)) + SAMPLES)
    assert await recv(far_b) == bytes((2,)) + SAMPLES
    d.send(b"\x00\x01\x01")  # dropped: the line carries the looped signal
    b.send(1, SAMPLES)
    assert span.rec.frames == [] and span.rec.b_frames == []
    span.sim.set_loopback(Loopback.NONE)
    d.send(FRAME)
    assert await recv(far_d) == FRAME  # not the dropped frame
    far_d.close()
    far_b.close()


async def test_payload_loopback_returns_b_frames_and_leaves_the_d_channel_alone(span: Span) -> None:
    d = await span.sim.open_dchannel(span.rec)
    await span.sim.open_bchannels(span.rec)
    far_d = await span.far_d()
    far_b = await connect(span.b_path)
    span.sim.set_loopback(Loopback.PAYLOAD)
    far_b.send(bytes((3,)) + SAMPLES)
    assert await recv(far_b) == bytes((3,)) + SAMPLES
    far_d.send(FRAME)
    await span.rec.until(lambda: span.rec.frames == [FRAME])
    d.send(FRAME)
    assert await recv(far_d) == FRAME
    assert span.rec.b_frames == []
    far_d.close()
    far_b.close()


async def test_injected_alarms_and_counters_show_in_status_and_events(span: Span) -> None:
    far = await span.far_d()
    span.sim.inject_alarm(Alarm.AIS, True)
    span.sim.inject_alarm(Alarm.RAI, True)
    assert span.sim.status().alarms == {Alarm.AIS: 1000.0, Alarm.RAI: 1000.0}
    span.sim.inject_alarm(Alarm.AIS, False)
    assert span.rec.alarms()[-3:] == [
        ("AlarmRaised", Alarm.AIS),
        ("AlarmRaised", Alarm.RAI),
        ("AlarmCleared", Alarm.AIS),
    ]
    span.sim.inject_counters(SpanCounters(crc4_errors=3, slips=1))
    span.sim.inject_counters(SpanCounters(crc4_errors=1))
    assert span.sim.status().counters == SpanCounters(crc4_errors=4, slips=1)
    with pytest.raises(LinkUsageError):
        span.sim.inject_alarm(Alarm.LOS, True)
    far.close()


async def test_b_channels_spec_names_the_socket_and_timeslots(span: Span) -> None:
    assert span.sim.bchannels_spec() == BChannelsSpec("sim", 2, (1, 2, 3), path=span.b_path)


async def test_timing_source_follows_the_spans_alarms(tmp_path: Path) -> None:
    rec = Recorder()
    timing = TimingSelector({1: 1, 2: 2}, wall=lambda: 5.0)
    spans = []
    for number in (1, 2):
        sim = SimSpan(directory=tmp_path, on_event=rec.event, timing=timing, alarm_times=IMMEDIATE)
        sim.configure(SpanConfig(number=number))
        await sim.start()
        spans.append(sim)
    far2 = await connect(sim_socket_paths(tmp_path, 2)[0])
    await rec.until(lambda: timing.source == 2)
    far1 = await connect(sim_socket_paths(tmp_path, 1)[0])
    await rec.until(lambda: timing.source == 1)
    assert spans[0].status().timing_source and not spans[1].status().timing_source
    far1.close()
    await rec.until(lambda: timing.source == 2)
    far2.close()
    await rec.until(lambda: timing.source is None)
    changes = [(e.previous, e.source) for e in rec.events if isinstance(e, TimingSourceChanged)]
    assert changes == [(None, 2), (2, 1), (1, 2), (2, None)]
    for sim in spans:
        await sim.stop()


async def test_with_simulation_times_a_vanished_far_end_is_in_alarm_within_a_second(tmp_path: Path) -> None:
    rec = Recorder()
    sim = SimSpan(directory=tmp_path, on_event=rec.event)
    await sim.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await rec.until(lambda: len(rec.events) == 1)
    assert rec.alarms() == [("AlarmRaised", Alarm.LOS)]
    assert loop.time() - started < 1.0
    await sim.stop()
    assert not sim.status().running
    assert not sim_socket_paths(tmp_path, 1)[0].exists()


async def test_configure_while_running_and_open_before_start_are_refused(tmp_path: Path) -> None:
    sim = SimSpan(directory=tmp_path)
    with pytest.raises(LinkUsageError):
        await sim.open_dchannel(Recorder())
    await sim.start()
    with pytest.raises(LinkUsageError):
        sim.configure(SpanConfig(number=3))
    with pytest.raises(LinkUsageError):
        await sim.start()
    await sim.stop()
    sim.configure(SpanConfig(number=3))
    assert sim.number == 3
