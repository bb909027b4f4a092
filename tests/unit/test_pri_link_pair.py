"""Two PriLinks, network and user side, with the real LAPD and Q.931 machines, joined by an in-memory
D-channel pair on a real event loop: the adapter establishes the link, carries calls both ways, runs the
machines' timers through its one ``call_at``, and follows the span's signal going and coming back.

Timers are shortened (T200 50 ms) so that the retries the loop runs take milliseconds; every wait polls a
condition with a deadline.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Literal

import pytest

from appliance.pri.lapd import Lapd
from appliance.pri.lapd_timers import LapdTimers
from appliance.pri.link import PriLink
from appliance.pri.pcap import PcapWriter
from appliance.pri.q931 import Q931
from appliance.pri.q931_events import CallConnected, CallOffered, CallReleased, Q931Event
from appliance.pri.q931_model import PartyNumber
from appliance.pri.q931_timers import Q931Timers

pytestmark = pytest.mark.timeout(30)

FAST = LapdTimers(t200=0.05, t203=0.5)
CHANNELS = (1, 2, 3)


class Wire:
    """One direction-pair of an in-memory D-channel: a frame sent on one end reaches the other's handler
    on a later loop turn; ``cut`` makes it lose every frame (while both ends still see a signal)."""

    def __init__(self) -> None:
        self.ends = (WireEnd(self), WireEnd(self))
        self.cut = False

    def other(self, end: WireEnd) -> WireEnd:
        return self.ends[1] if end is self.ends[0] else self.ends[0]

    def signal(self, up: bool) -> None:
        for end in self.ends:
            end.up = up
            if end.handler is not None:
                end.handler.link_changed(up)


class WireEnd:
    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self.handler: PriLink | None = None
        self.up = True
        self.sent = 0

    def send(self, frame: bytes) -> None:
        peer = self._wire.other(self)
        if not self.up or self._wire.cut or peer.handler is None:
            return
        self.sent += 1
        asyncio.get_running_loop().call_soon(peer.handler.frame_received, frame)

    async def close(self) -> None:
        self.up = False


class Side:
    def __init__(self, side: Literal["user", "network"], end: WireEnd, **kw: object) -> None:
        self.q931 = Q931(side=side, b_channels=CHANNELS, timers=Q931Timers(t303=0.2, t309=0.3))
        self.lapd = Lapd(side=side, timers=FAST)
        self.events: list[Q931Event] = []
        self.dchannel: list[bool] = []
        self.signal: list[bool] = []
        self.answer = side == "user"
        self.link = PriLink(
            lapd=self.lapd,
            q931=self.q931,
            on_event=self._event,
            on_dchannel=self.dchannel.append,
            on_signal=self.signal.append,
            **kw,  # type: ignore[arg-type]
        )
        end.handler = self.link
        self.link.attach(end)

    def _event(self, event: Q931Event) -> None:
        self.events.append(event)
        if isinstance(event, CallOffered) and self.answer:
            self.link.run(lambda now: self.q931.connect(event.call, now=now))

    def of(self, kind: type[Q931Event]) -> list[Q931Event]:
        return [e for e in self.events if isinstance(e, kind)]


async def until(condition: Callable[[], object], within: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def pair(**kw: object) -> tuple[Wire, Side, Side]:
    wire = Wire()
    network = Side("network", wire.ends[0], **kw)
    user = Side("user", wire.ends[1])
    await until(lambda: network.link.dchannel_up and user.link.dchannel_up)
    return wire, network, user


async def test_the_link_comes_up_on_attach_and_calls_go_both_ways() -> None:
    buf = io.BytesIO()
    _, network, user = await pair(trace=PcapWriter(buf, side="network"), wall_clock=lambda: 1.0)
    assert network.dchannel == [True] and user.dchannel == [True]
    assert network.signal == [True] and user.signal == [True]

    call = network.link.run(
        lambda now: network.q931.setup(called=PartyNumber("100"), channel=2, exclusive=True, now=now)
    )
    await until(lambda: network.of(CallConnected) and user.of(CallConnected))
    (offered,) = user.of(CallOffered)
    assert isinstance(offered, CallOffered) and offered.channel == 2 and offered.called == PartyNumber("100")

    back = user.link.run(
        lambda now: user.q931.setup(called=PartyNumber("200"), channel=3, exclusive=True, now=now)
    )
    network.answer = True
    await until(lambda: len(user.of(CallConnected)) == 2)

    network.link.run(lambda now: network.q931.disconnect(call, 16, now=now))
    user.link.run(lambda now: user.q931.disconnect(back, 17, now=now))
    await until(lambda: len(network.of(CallReleased)) == 2 and len(user.of(CallReleased)) == 2)
    assert network.q931.calls == 0 and user.q931.calls == 0
    assert {e.cause for e in user.of(CallReleased) if isinstance(e, CallReleased)} == {16, 17}
    # The trace saw every frame the network side sent and received, SABME first.
    assert network.link.lapd is network.lapd
    assert buf.getvalue()[24 + 16 + 16 + 2] & 0xEF == 0x6F  # SABME's control octet, P bit masked


async def test_an_unanswered_setup_is_retried_and_cleared_by_the_q931_timer() -> None:
    wire, network, user = await pair()
    user.answer = False
    wire.cut = True  # frames lost both ways: T303 runs out (twice), LAPD's T200 retries meanwhile
    network.link.run(
        lambda now: network.q931.setup(called=PartyNumber("100"), channel=1, exclusive=True, now=now)
    )
    await until(lambda: network.of(CallReleased), within=5)
    (released,) = network.of(CallReleased)
    assert isinstance(released, CallReleased) and released.local


async def test_loss_of_signal_releases_the_link_and_its_return_establishes_it_again() -> None:
    wire, network, user = await pair()
    network.link.run(
        lambda now: network.q931.setup(called=PartyNumber("100"), channel=1, exclusive=True, now=now)
    )
    await until(lambda: network.of(CallConnected))
    wire.signal(False)
    assert network.signal == [True, False] and network.dchannel == [True, False]
    assert not network.link.dchannel_up and not user.link.dchannel_up
    # The active call outlives the link for T309, then is released (Q.931 §5.8.9).
    await until(lambda: network.of(CallReleased) and user.of(CallReleased))
    wire.signal(True)
    await until(lambda: network.link.dchannel_up and user.link.dchannel_up)
    assert network.dchannel == [True, False, True] and network.signal == [True, False, True]
    network.link.run(
        lambda now: network.q931.setup(called=PartyNumber("100"), channel=1, exclusive=True, now=now)
    )
    await until(lambda: len(network.of(CallConnected)) == 2)


async def test_a_peer_that_stops_answering_is_polled_and_the_link_reestablished() -> None:
    wire, network, user = await pair()
    wire.cut = True  # T203 polls, N200 enquiries unanswered: LAPD re-establishes, keep-up retries
    await until(lambda: not network.lapd.established, within=3)
    wire.cut = False
    await until(lambda: network.link.dchannel_up and network.lapd.established and user.lapd.established)
    network.link.close()
    user.link.close()
