"""The far end against an in-process appliance side: the simulated span's real sockets, the real LAPD and
Q.931 machines on both sides, real time (the B-channels are paced at 20 ms, so these tests take seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from appliance.pri.farend import CallScript, FarEnd
from appliance.pri.farend_audio import Listener, Talker
from appliance.pri.farend_cli import parser, run
from appliance.pri.lapd import Lapd
from appliance.pri.link import PriLink
from appliance.pri.q931 import Q931
from appliance.pri.q931_events import CallConnected, CallOffered, CallReleased, Q931Event
from appliance.pri.q931_model import PartyNumber
from hw.e1.sim import SimBChannels, SimDChannel
from tests.unit.test_pri_link_pair import until

pytestmark = pytest.mark.timeout(60)

Side = Literal["user", "network"]


class Switch:
    """The appliance's side of span 1, user side: answers every call at once and plays a tone on its
    channel; listens for DTMF on every channel."""

    def __init__(self, directory: Path, timeslots: tuple[int, ...], side: Side = "user") -> None:
        self.q931 = Q931(side=side, b_channels=timeslots)
        self.link = PriLink(lapd=Lapd(side=side), q931=self.q931, on_event=self._event)
        self.d = SimDChannel(directory / "span1-d.sock", self.link)
        self.b = SimBChannels(directory / "span1-b.sock", self, timeslots=timeslots)
        self.link.attach(self.d)
        self.events: list[Q931Event] = []
        self.playing: dict[int, Talker] = {}
        self.listeners: dict[int, Listener] = {}
        self.answer = True
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.d.start()
        await self.b.start()
        self._task = asyncio.create_task(self._play())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.link.close()
        await self.d.close()
        await self.b.close()

    def _event(self, event: Q931Event) -> None:
        self.events.append(event)
        if isinstance(event, CallOffered) and self.answer:
            self.listeners[event.channel] = Listener(dtmf=True)
            self.link.run(lambda now: self.q931.proceeding(event.call, now=now))
            self.link.run(lambda now: self.q931.connect(event.call, now=now))
        elif isinstance(event, CallConnected):
            channel = self.q931.channel_of(event.call)
            assert channel is not None
            self.playing[channel] = Talker("tone")
        elif isinstance(event, CallReleased):
            self.playing = {ts: t for ts, t in self.playing.items() if self.q931.channel_of(event.call) != ts}

    async def _play(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            for ts, talker in list(self.playing.items()):
                self.b.send(ts, talker.next_frame())

    # BChannelHandler
    def frame_received(self, timeslot: int, samples: bytes) -> None:
        listener = self.listeners.setdefault(timeslot, Listener(dtmf=True))
        listener.feed(samples, asyncio.get_running_loop().time())

    def link_changed(self, up: bool) -> None:
        pass


@contextlib.asynccontextmanager
async def span(
    tmp_path: Path, timeslots: tuple[int, ...] = (1, 2, 3, 4), far_side: Side = "network"
) -> AsyncIterator[tuple[Switch, FarEnd]]:
    switch = Switch(tmp_path, timeslots, "user" if far_side == "network" else "network")
    await switch.start()
    far = FarEnd(directory=tmp_path, timeslots=timeslots, side=far_side)
    try:
        await far.start(within=5)
        yield switch, far
    finally:
        await far.close()
        await switch.close()


async def test_calls_are_answered_hear_the_tone_send_digits_and_are_cleared_with_the_cause(
    tmp_path: Path,
) -> None:
    async with span(tmp_path) as (switch, far):
        assert far.dchannel_up and switch.link.dchannel_up
        script = CallScript(called="100", digits="159#", digits_after=0.1, hold=1.8, cause=16, timeout=10)
        results = await far.place_calls(3, script)
    assert sorted(r.channel for r in results) == [1, 2, 3]  # exclusive channels, lowest free first
    for result in results:
        assert result.answered and result.cause == 16 and result.cleared_by == "far end", result
        assert result.digits_sent == "159#"
        assert result.heard.sound_frames > 20, result.heard  # the tone, for most of the call
        assert result.channel is not None
        assert switch.listeners[result.channel].heard.digits == "159#"
    offered = [e for e in switch.events if isinstance(e, CallOffered)]
    assert [(e.called and e.called.digits, e.calling and e.calling.digits) for e in offered] == [
        ("100", "4930123456")
    ] * 3
    assert "cause  16 by far end" in results[0].line()


async def test_a_call_from_the_appliance_is_answered_and_its_audio_heard(tmp_path: Path) -> None:
    async with span(tmp_path) as (switch, far):
        call = switch.link.run(
            lambda now: switch.q931.setup(called=PartyNumber("4930999"), channel=2, exclusive=True, now=now)
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not any(isinstance(e, CallConnected) for e in switch.events):
            assert loop.time() < deadline, switch.events
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # half a second of tone each way
        switch.link.run(lambda now: switch.q931.disconnect(call, 17, now=now))
        while not far.incoming or not far.incoming[0].released:
            assert loop.time() < deadline + 1
            await asyncio.sleep(0.01)
    (result,) = far.incoming
    assert result.direction == "in" and result.channel == 2 and result.called == "4930999"
    assert result.answered and result.cause == 17 and result.cleared_by == "appliance"
    assert result.heard.sound_frames > 10


async def test_no_channel_left_releases_the_call_with_cause_34(tmp_path: Path) -> None:
    async with span(tmp_path, timeslots=(5,)) as (_, far):
        first, second = await far.place_calls(2, CallScript(hold=0.3, timeout=5))
    assert first.answered and first.cause == 16
    assert not second.answered and second.cause == 34 and second.channel is None


async def test_the_far_end_on_the_user_side_places_calls_to_a_network_side_appliance(tmp_path: Path) -> None:
    async with span(tmp_path, far_side="user") as (switch, far):
        (result,) = await far.place_calls(1, CallScript(digits="7", digits_after=0.05, hold=0.6, timeout=5))
    assert result.answered and result.cause == 16 and result.heard.sound_frames > 0
    assert result.channel is not None and switch.listeners[result.channel].heard.digits == "7"


async def test_the_far_end_vanishes_and_returns_as_a_restarted_switch(tmp_path: Path) -> None:
    async with span(tmp_path) as (switch, far):
        placed = asyncio.create_task(far.place_call(CallScript(timeout=20)))
        await until(lambda: far.live_calls() and far.live_calls()[0].answered)
        await far.vanish()
        lost = await placed
        assert lost.answered and (lost.cleared_by, lost.cause) == ("vanished", 41), lost.line()
        await until(lambda: not switch.link.signal and not switch.link.dchannel_up)
        assert not far.dchannel_up and far.live_calls() == []
        # Loss of signal took the B-channels: the switch's active call ended at once (cause 38), no T309.
        assert switch.q931.calls == 0
        await far.come_back(within=5)
        assert switch.link.signal and far.dchannel_up
        (result,) = await far.place_calls(1, CallScript(hold=0.2, timeout=5))
        assert result.answered and result.cause == 16
        assert [up for _, up in far.dchannel_changes] == [True, False, True]


async def test_closing_the_far_end_ends_the_calls_it_was_following(tmp_path: Path) -> None:
    async with span(tmp_path) as (_, far):
        placed = asyncio.create_task(far.place_call(CallScript(timeout=20)))
        await until(lambda: far.live_calls() and far.live_calls()[0].answered)
        await far.close()
        result = await placed
    assert (result.cleared_by, result.cause) == ("vanished", 41) and far.live_calls() == []


async def test_the_command_line_prints_a_line_per_call_and_a_summary(tmp_path: Path) -> None:
    out = io.StringIO()
    async with span(tmp_path) as (_, far):
        await far.close()  # make room: one far end per span
        args = parser().parse_args(
            [
                "--dir", str(tmp_path), "--calls", "2", "--hold", "0.3", "--connect-timeout", "5",
                "--trace", str(tmp_path / "d.pcap"), "--pacing",
            ]
        )  # fmt: skip
        status = await run(args, out)
    text = out.getvalue()
    assert status == 0, text
    assert text.count(" answered ") == 2 and "2 calls, 2 answered, 2 with audio heard" in text, text
    assert (tmp_path / "d.pcap").stat().st_size > 24
    assert re.search(r"pacing: \d+ gaps, error p50 [\d.]+ ms, p99 [\d.]+ ms", text), text


async def test_the_command_line_without_an_appliance_exits_2(tmp_path: Path) -> None:
    out = io.StringIO()
    status = await run(parser().parse_args(["--dir", str(tmp_path), "--connect-timeout", "0.2"]), out)
    assert status == 2 and "no D-channel" in out.getvalue()
