"""PriLink, the D-channel's asyncio adapter, with stand-in machines that record what the adapter does.

These tests pin the adapter's plumbing (what goes where, with which ``now``, the single timer); the
tests with the real LAPD and Q.931 machines are in ``test_pri_link_pair.py``.
"""

from __future__ import annotations

import asyncio
import io
import struct

import pytest

from appliance.pri.lapd_events import DataReceived, LapdEvent, LinkEstablished, LinkReleased, ReleaseReason
from appliance.pri.link import PriLink
from appliance.pri.pcap import PcapWriter
from appliance.pri.q931_events import CallConnected, Q931Event


class _Stub:
    """What both stand-ins share: queued output, queued events, one deadline, a record of calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.out: list[bytes] = []
        self.events: list[object] = []
        self.deadline: float | None = None

    def _take_out(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def _pop_event(self) -> object | None:
        return self.events.pop(0) if self.events else None

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.calls.append(("timer", now))
        self.deadline = None


class StubLapd(_Stub):
    """SABME/UA in one frame each; 'I' + data carries data; a timer at ``deadline`` when set."""

    def start(self, now: float) -> None:
        self.calls.append(("start", now))
        self.out.append(b"SABME")

    def receive(self, frame: bytes, now: float) -> None:
        self.calls.append(("receive", now))
        if frame == b"SABME":
            self.out.append(b"UA")
            self.events.append(LinkEstablished())
        elif frame == b"UA":
            self.events.append(LinkEstablished())
        elif frame.startswith(b"I"):
            self.events.append(DataReceived(frame[1:]))

    def send_data(self, data: bytes, now: float) -> None:
        self.out.append(b"I" + data)

    def frames_to_send(self) -> list[bytes]:
        return self._take_out()

    def next_event(self) -> LapdEvent | None:
        event = self._pop_event()
        assert event is None or isinstance(event, LinkEstablished | LinkReleased | DataReceived)
        return event

    def physical_down(self, now: float) -> None:
        self.calls.append(("down", now))
        self.events.append(LinkReleased(ReleaseReason.PHYSICAL))

    def physical_up(self, now: float) -> None:
        self.calls.append(("up", now))


class StubQ931(_Stub):
    def link_established(self, now: float) -> None:
        self.calls.append(("established", now))

    def link_released(self, now: float) -> None:
        self.calls.append(("released", now))

    def physical_layer_lost(self, now: float) -> None:
        self.calls.append(("lost", now))

    def receive(self, data: bytes, now: float) -> None:
        self.calls.append(("receive", data))
        self.events.append(CallConnected(call=len(self.calls)))

    def data_to_send(self) -> list[bytes]:
        return self._take_out()

    def next_event(self) -> Q931Event | None:
        event = self._pop_event()
        assert event is None or isinstance(event, CallConnected)
        return event


class MemoryDChannel:
    """One end of an in-memory D-channel: frames reach the peer's handler on the next loop turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.peer: PriLink | None = None
        self.sent: list[bytes] = []
        self.up = True

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        if self.up and self.peer is not None:
            self._loop.call_soon(self.peer.frame_received, frame)

    async def close(self) -> None:
        self.up = False


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def _link(
    loop: asyncio.AbstractEventLoop, events: list[Q931Event], **kw: object
) -> tuple[PriLink, StubLapd, StubQ931]:
    lapd, q931 = StubLapd(), StubQ931()
    link = PriLink(lapd=lapd, q931=q931, on_event=events.append, loop=loop, **kw)  # type: ignore[arg-type]
    return link, lapd, q931


async def test_two_links_establish_and_carry_data_both_ways() -> None:
    loop = asyncio.get_running_loop()
    ev_a: list[Q931Event] = []
    ev_b: list[Q931Event] = []
    states_a: list[bool] = []
    a, _, qa = _link(loop, ev_a, on_dchannel=states_a.append)
    b, _, qb = _link(loop, ev_b)
    ch_a, ch_b = MemoryDChannel(loop), MemoryDChannel(loop)
    ch_a.peer, ch_b.peer = b, a
    a.attach(ch_a)  # up already: A starts LAPD
    b.attach(ch_b)
    await _settle()
    assert a.dchannel_up and b.dchannel_up
    assert states_a == [True]
    assert ("established", pytest.approx(loop.time(), abs=1)) in qa.calls

    qa.out.append(b"SETUP")
    a.flush()
    await _settle()
    assert ("receive", b"SETUP") in qb.calls
    assert ev_b and isinstance(ev_b[0], CallConnected)


async def test_a_command_issued_from_a_callback_is_sent_in_the_same_pump() -> None:
    loop = asyncio.get_running_loop()
    channel = MemoryDChannel(loop)
    lapd, q931 = StubLapd(), StubQ931()

    def answer(event: Q931Event) -> None:
        link.run(lambda now: q931.out.append(b"CONNECT"))

    link = PriLink(lapd=lapd, q931=q931, on_event=answer, loop=loop)
    link.attach(channel)
    channel.sent.clear()
    link.frame_received(b"ISETUP")
    assert channel.sent == [b"ICONNECT"]


async def test_signal_up_starts_lapd_and_signal_down_releases_q931() -> None:
    loop = asyncio.get_running_loop()
    signals: list[bool] = []
    states: list[bool] = []
    link, lapd, q931 = _link(loop, [], on_signal=signals.append, on_dchannel=states.append)
    channel = MemoryDChannel(loop)
    channel.up = False
    link.attach(channel)
    assert lapd.calls == [] and not link.signal
    link.link_changed(True)
    assert [c for c, _ in lapd.calls] == ["up", "start"]
    assert channel.sent == [b"SABME"]
    link.frame_received(b"UA")
    link.link_changed(True)  # no change: ignored
    link.link_changed(False)
    assert [c for c, _ in lapd.calls] == ["up", "start", "receive", "down"]
    # Loss of signal reaches Q.931 first (its calls end with the line), then the data link's release.
    assert [c for c, _ in q931.calls] == ["established", "lost", "released"]
    assert signals == [True, False] and states == [True, False]
    assert not link.signal and not link.dchannel_up
    assert link.release_reason is ReleaseReason.PHYSICAL


async def test_one_timer_at_the_earliest_deadline_with_now_never_before_it() -> None:
    loop = asyncio.get_running_loop()
    link, lapd, q931 = _link(loop, [])
    t0 = loop.time()
    lapd.deadline = t0 + 0.05
    q931.deadline = t0 + 0.02
    link.flush()
    await asyncio.sleep(0.03)
    assert [c for c, _ in q931.calls] == ["timer"]
    assert q931.calls[0][1] >= t0 + 0.02  # type: ignore[operator]
    assert lapd.calls == []
    await asyncio.sleep(0.04)
    assert lapd.calls[0][0] == "timer" and lapd.calls[0][1] >= t0 + 0.05
    link.close()


async def test_close_cancels_the_timer_and_ignores_inputs() -> None:
    loop = asyncio.get_running_loop()
    link, lapd, _ = _link(loop, [])
    lapd.deadline = loop.time() + 0.01
    link.flush()
    link.close()
    link.frame_received(b"UA")
    link.link_changed(True)
    await asyncio.sleep(0.02)
    assert lapd.calls == []


async def test_a_failing_callback_is_logged_and_the_pump_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()

    def boom(event: Q931Event) -> None:
        raise RuntimeError("owner bug")

    lapd, q931 = StubLapd(), StubQ931()
    link = PriLink(lapd=lapd, q931=q931, on_event=boom, loop=loop)
    channel = MemoryDChannel(loop)
    link.attach(channel)
    channel.sent.clear()
    q931.out.append(b"X")
    link.frame_received(b"ISETUP")
    assert channel.sent == [b"IX"]
    assert "callback failed" in caplog.text


async def test_the_trace_gets_every_frame_with_its_direction() -> None:
    loop = asyncio.get_running_loop()
    buf = io.BytesIO()
    trace = PcapWriter(buf, side="user")
    link, _, _ = _link(loop, [], trace=trace, wall_clock=lambda: 12.5)
    link.attach(MemoryDChannel(loop))  # sends SABME
    link.frame_received(b"UA")
    assert trace.records == 2
    data = buf.getvalue()[24:]
    secs, usecs, caplen, _ = struct.unpack_from("<IIII", data)
    assert (secs, usecs) == (12, 500000)
    assert data[16:18] == b"\x00\x04" and data[16 + 16 : 16 + caplen] == b"SABME"
