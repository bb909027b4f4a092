"""Q.931 machine, user and network side back to back in memory: calls through every state, clearing,
collision, glare and channel negotiation (Q.931 §5.1-§5.3; EN 300 403-1 §5.1.2/§5.2.3.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from appliance.pri.errors import LocalProtocolError
from appliance.pri.q931 import Q931
from appliance.pri.q931_events import (
    CallAlerting,
    CallConnected,
    CallDisconnecting,
    CallOffered,
    CallProceeding,
    CallProgress,
    CallReleased,
    DigitsReceived,
    Q931Event,
)
from appliance.pri.q931_model import (
    BearerCapability,
    ChannelId,
    Message,
    MessageType,
    PartyNumber,
    ProgressDescription,
)
from appliance.pri.q931_model import CallStateValue as S

E = TypeVar("E", bound=Q931Event)
CHANNELS = (1, 2, 3)
NUMBER = PartyNumber("4420")


@dataclass
class Pair:
    """A user-side and a network-side machine joined by a lossless in-memory D-channel.

    ``wire`` carries Message values (``bytes_path`` False) or encoded octets through the codec."""

    channels: tuple[int, ...] = CHANNELS
    bytes_path: bool = False
    user: Q931 = field(init=False)
    net: Q931 = field(init=False)
    events: dict[str, list[Q931Event]] = field(init=False)
    sent: dict[str, list[Message]] = field(init=False)
    now: float = 0.0

    def __post_init__(self) -> None:
        self.user = Q931(side="user", b_channels=self.channels)
        self.net = Q931(side="network", b_channels=self.channels)
        self.events = {"user": [], "network": []}
        self.sent = {"user": [], "network": []}
        self.user.link_established(self.now)
        self.net.link_established(self.now)

    def machine(self, side: str) -> Q931:
        return self.user if side == "user" else self.net

    def take(self, side: str) -> list[Message]:
        """What ``side`` has queued (not delivered)."""
        out = self.machine(side).messages_to_send()
        self.sent[side].extend(out)
        return out

    def deliver(self, side: str, messages: list[Message]) -> None:
        """Give ``messages`` to ``side``."""
        target = self.machine(side)
        for message in messages:
            if self.bytes_path:
                from appliance.pri import q931_codec

                target.receive(q931_codec.encode(message), self.now)
            else:
                target.receive_message(message, self.now)

    def pump(self) -> None:
        """Deliver in both directions until nothing is in flight; collect events."""
        while True:
            to_net, to_user = self.take("user"), self.take("network")
            if not to_net and not to_user:
                break
            self.deliver("network", to_net)
            self.deliver("user", to_user)
        self.drain()

    def drain(self) -> None:
        for side in ("user", "network"):
            while (event := self.machine(side).next_event()) is not None:
                self.events[side].append(event)

    def advance(self, seconds: float) -> None:
        """Move time on, running both sides' timers in deadline order (nothing delivered)."""
        end = self.now + seconds
        while True:
            deadlines = [
                (t, m) for m in (self.user, self.net) if (t := m.get_timer()) is not None and t <= end
            ]
            if not deadlines:
                break
            when, machine = min(deadlines, key=lambda item: item[0])
            self.now = when
            machine.handle_timer(when)
        self.now = end
        self.drain()

    def last(self, side: str, kind: type[E]) -> E:
        found = [e for e in self.events[side] if isinstance(e, kind)]
        assert found, f"no {kind.__name__} on the {side} side: {self.events[side]}"
        return found[-1]

    def offered(self, side: str) -> CallOffered:
        return self.last(side, CallOffered)

    def types(self, side: str) -> list[MessageType]:
        return [m.type for m in self.sent[side]]


def released(pair: Pair, side: str, call: int) -> list[CallReleased]:
    return [e for e in pair.events[side] if isinstance(e, CallReleased) and e.call == call]


def active_call(pair: Pair, *, caller: str = "user") -> tuple[int, int]:
    """A call from ``caller`` answered by the other side; returns (caller's handle, callee's handle)."""
    callee = "network" if caller == "user" else "user"
    handle = pair.machine(caller).setup(called=NUMBER, now=pair.now)
    pair.pump()
    incoming = pair.offered(callee).call
    pair.machine(callee).alerting(incoming, now=pair.now)
    pair.machine(callee).connect(incoming, now=pair.now)
    pair.pump()
    assert pair.machine(caller).state_of(handle) is S.ACTIVE
    assert pair.machine(callee).state_of(incoming) is S.ACTIVE
    return handle, incoming


@pytest.mark.parametrize("bytes_path", [False, True], ids=["messages", "octets"])
@pytest.mark.parametrize("caller", ["user", "network"])
def test_en_bloc_call_through_proceeding_alerting_connect_and_normal_clearing(
    caller: str, bytes_path: bool
) -> None:
    pair = Pair(bytes_path=bytes_path)
    callee = "network" if caller == "user" else "user"
    a, b = pair.machine(caller), pair.machine(callee)
    call = a.setup(called=NUMBER, calling=PartyNumber("100"), channel=2, display="Desk", now=0.0)
    assert a.state_of(call) is (S.CALL_INITIATED if caller == "user" else S.CALL_PRESENT)
    pair.pump()
    offer = pair.offered(callee)
    # A display travels network to user only (EN 300 403-1 §3.1.14): the user side's SETUP leaves it out.
    display = "Desk" if caller == "network" else None
    assert (offer.channel, offer.called, offer.calling, offer.display) == (
        2,
        NUMBER,
        PartyNumber("100"),
        display,
    )
    assert b.state_of(offer.call) is (S.CALL_INITIATED if caller == "user" else S.CALL_PRESENT)
    b.proceeding(offer.call, now=0.0)
    pair.pump()
    assert pair.last(caller, CallProceeding) == CallProceeding(call, 2)
    proceeding = S.OUTGOING_CALL_PROCEEDING if caller == "user" else S.INCOMING_CALL_PROCEEDING
    assert a.state_of(call) is proceeding
    b.progress(offer.call, ProgressDescription.IN_BAND_AVAILABLE, now=0.0)
    b.alerting(offer.call, inband=True, now=0.0)
    pair.pump()
    assert pair.last(caller, CallProgress) == CallProgress(call, (ProgressDescription.IN_BAND_AVAILABLE,))
    assert pair.last(caller, CallAlerting) == CallAlerting(call, (ProgressDescription.IN_BAND_AVAILABLE,))
    assert a.state_of(call) is (S.CALL_DELIVERED if caller == "user" else S.CALL_RECEIVED)
    b.connect(offer.call, now=0.0)
    pair.pump()
    assert CallConnected(call) in pair.events[caller]
    assert CallConnected(offer.call) in pair.events[callee]
    assert a.state_of(call) is S.ACTIVE and b.state_of(offer.call) is S.ACTIVE
    assert a.channel_of(call) == b.channel_of(offer.call) == 2
    a.disconnect(call, 16, now=0.0)
    assert a.state_of(call) is (S.DISCONNECT_REQUEST if caller == "user" else S.DISCONNECT_INDICATION)
    pair.pump()
    assert released(pair, caller, call) == [
        CallReleased(call, 16, pair.last(caller, CallReleased).location, True)
    ]
    assert [e.cause for e in released(pair, callee, offer.call)] == [16]
    assert not released(pair, callee, offer.call)[0].local
    assert a.calls == b.calls == 0 and not a.busy_channels() and not b.busy_channels()
    assert pair.types(caller)[-1] in (MessageType.RELEASE_COMPLETE, MessageType.DISCONNECT)


def test_user_connect_waits_for_connect_acknowledge_in_u8() -> None:
    pair = Pair()
    call = pair.net.setup(called=NUMBER, now=0.0)
    pair.pump()
    incoming = pair.offered("user").call
    pair.user.connect(incoming, now=0.0)
    assert pair.user.state_of(incoming) is S.CONNECT_REQUEST
    to_net = pair.take("user")
    assert [m.type for m in to_net] == [MessageType.CONNECT]
    assert to_net[0].channel == ChannelId((1,), exclusive=True)
    pair.deliver("network", to_net)
    assert pair.net.state_of(call) is S.ACTIVE
    pair.pump()
    assert pair.user.state_of(incoming) is S.ACTIVE
    assert pair.types("network")[-1] is MessageType.CONNECT_ACKNOWLEDGE


@pytest.mark.parametrize("bytes_path", [False, True], ids=["messages", "octets"])
@pytest.mark.parametrize("caller", ["user", "network"])
def test_overlap_sending_and_receiving_with_information(caller: str, bytes_path: bool) -> None:
    pair = Pair(bytes_path=bytes_path)
    callee = "network" if caller == "user" else "user"
    a, b = pair.machine(caller), pair.machine(callee)
    call = a.setup(called=PartyNumber("44"), sending_complete=False, now=0.0)
    pair.pump()
    offer = pair.offered(callee)
    assert not offer.sending_complete
    b.setup_acknowledge(offer.call, now=0.0)
    pair.pump()
    assert pair.last(caller, CallProceeding) == CallProceeding(call, 1, overlap=True)
    assert a.state_of(call) is (S.OVERLAP_SENDING if caller == "user" else S.OVERLAP_RECEIVING)
    assert b.state_of(offer.call) is (S.OVERLAP_RECEIVING if caller == "network" else S.OVERLAP_SENDING)
    a.information(call, "20", now=1.0)
    a.information(call, "1", sending_complete=True, now=2.0)
    pair.pump()
    digits = [e for e in pair.events[callee] if isinstance(e, DigitsReceived)]
    assert digits == [DigitsReceived(offer.call, "20", False), DigitsReceived(offer.call, "1", True)]
    b.proceeding(offer.call, now=2.0)
    b.connect(offer.call, now=2.0)
    pair.pump()
    assert a.state_of(call) is S.ACTIVE


def test_in_band_disconnect_from_network_keeps_the_call_until_call_control_releases() -> None:
    pair = Pair()
    user_call, net_call = active_call(pair, caller="user")
    pair.net.disconnect(net_call, 17, inband=True, now=0.0)
    pair.pump()
    # The cause's location is the network's own (Q.850 §2.2.3: 2, public network serving the local user).
    assert pair.last("user", CallDisconnecting) == CallDisconnecting(
        user_call, 17, (ProgressDescription.IN_BAND_AVAILABLE,), 2
    )
    assert pair.user.state_of(user_call) is S.DISCONNECT_INDICATION
    assert pair.net.state_of(net_call) is S.DISCONNECT_INDICATION
    pair.advance(10.0)  # the announcement plays; T306 (30 s) is still running
    pair.user.disconnect(user_call, 16, now=pair.now)
    pair.pump()
    assert [e.cause for e in released(pair, "user", user_call)] == [17]
    assert released(pair, "network", net_call)[0].local
    assert pair.user.calls == pair.net.calls == 0


@pytest.mark.parametrize("caller", ["user", "network"])
def test_clear_collision_both_disconnect(caller: str) -> None:
    """§5.3.5: DISCONNECT crosses DISCONNECT; both answer RELEASE; RELEASE crosses RELEASE; no RELEASE
    COMPLETE is sent and each side releases once with its own cause."""
    pair = Pair()
    a_call, b_call = active_call(pair, caller=caller)
    callee = "network" if caller == "user" else "user"
    pair.machine(caller).disconnect(a_call, 16, now=0.0)
    pair.machine(callee).disconnect(b_call, 31, now=0.0)
    pair.pump()
    assert [e.cause for e in released(pair, caller, a_call)] == [16]
    assert [e.cause for e in released(pair, callee, b_call)] == [31]
    assert MessageType.RELEASE_COMPLETE not in pair.types("user") + pair.types("network")
    assert pair.user.calls == pair.net.calls == 0


def test_rejecting_an_offered_call_sends_release_complete() -> None:
    pair = Pair()
    call = pair.net.setup(called=NUMBER, now=0.0)
    pair.pump()
    incoming = pair.offered("user").call
    pair.user.disconnect(incoming, 17, now=0.0)
    pair.pump()
    assert pair.types("user") == [MessageType.RELEASE_COMPLETE]
    assert [e.cause for e in released(pair, "network", call)] == [17]
    assert [e.cause for e in released(pair, "user", incoming)] == [17]


def test_commands_in_the_wrong_state_raise() -> None:
    pair = Pair()
    call = pair.user.setup(called=NUMBER, now=0.0)
    with pytest.raises(LocalProtocolError):
        pair.user.connect(call, now=0.0)
    with pytest.raises(LocalProtocolError):
        pair.user.information(call, "1", now=0.0)
    with pytest.raises(LocalProtocolError):
        pair.user.alerting(999, now=0.0)
    pair.user.disconnect(call, 16, now=0.0)
    with pytest.raises(LocalProtocolError):
        pair.user.disconnect(call, 16, now=0.0)


def test_no_free_channel_releases_with_cause_34_and_exclusive_busy_with_44() -> None:
    pair = Pair(channels=(1,))
    first = pair.user.setup(called=NUMBER, now=0.0)
    second = pair.user.setup(called=NUMBER, now=0.0)
    third = pair.user.setup(called=NUMBER, channel=1, exclusive=True, now=0.0)
    pair.drain()
    assert [e.cause for e in released(pair, "user", second)] == [34]
    assert [e.cause for e in released(pair, "user", third)] == [44]
    assert pair.user.channel_of(first) == 1


def test_setup_with_the_data_link_down_is_released_with_cause_41() -> None:
    machine = Q931(side="user", b_channels=CHANNELS)
    call = machine.setup(called=NUMBER, now=0.0)
    assert machine.next_event() == CallReleased(call, 41, 0, True)
    assert machine.messages_to_send() == []


def test_network_picks_another_channel_when_the_preferred_one_is_busy() -> None:
    pair = Pair()
    active_call(pair, caller="network")  # holds B1
    setup = Message(
        MessageType.SETUP, 9, True, bearer=BearerCapability(), channel=ChannelId((1,)), called=NUMBER
    )
    pair.deliver("network", [setup])
    pair.drain()
    offer = pair.offered("network")
    assert offer.channel == 2
    pair.net.proceeding(offer.call, now=0.0)
    (answer,) = pair.take("network")
    assert answer.type is MessageType.CALL_PROCEEDING and answer.channel == ChannelId((2,), exclusive=True)


def test_network_refuses_an_exclusive_busy_channel_with_44_and_none_free_with_34() -> None:
    pair = Pair(channels=(1, 2))
    active_call(pair, caller="network")  # B1
    exclusive = ChannelId((1,), exclusive=True)
    pair.deliver(
        "network", [Message(MessageType.SETUP, 9, True, bearer=BearerCapability(), channel=exclusive)]
    )
    (answer,) = pair.take("network")
    assert (
        answer.type is MessageType.RELEASE_COMPLETE and answer.cause is not None and answer.cause.value == 44
    )
    full = Pair(channels=(1,))
    active_call(full, caller="network")
    setup = Message(
        MessageType.SETUP, 77, True, bearer=BearerCapability(), channel=ChannelId(selection="any")
    )
    full.deliver("network", [setup])
    (answer,) = full.take("network")
    assert (answer.type, answer.call_reference, answer.from_originator) == (
        MessageType.RELEASE_COMPLETE,
        77,
        False,
    )
    assert answer.cause is not None and answer.cause.value == 34


def test_call_references_are_unique_among_our_calls_and_carry_the_flag() -> None:
    """Q.931 §4.3: our SETUPs carry flag 0 (from the originator) and values unique among our calls; the
    peer's call may use the same value with the other flag."""
    pair = Pair()
    first = pair.user.setup(called=NUMBER, now=0.0)
    second = pair.user.setup(called=NUMBER, now=0.0)
    setups = pair.take("user")
    assert [m.from_originator for m in setups] == [True, True]
    assert setups[0].call_reference != setups[1].call_reference
    pair.deliver("network", setups)
    pair.take("network")
    # the network's own call gets reference 1 too: no clash, the flag tells them apart
    pair.net.setup(called=NUMBER, now=0.0)
    (net_setup,) = pair.take("network")
    assert net_setup.call_reference == setups[0].call_reference and net_setup.from_originator
    pair.deliver("user", [net_setup])
    pair.drain()
    refs = pair.user.call_references()
    assert (net_setup.call_reference, False) in refs and (setups[0].call_reference, True) in refs
    assert len(refs) == 3 and pair.user.channel_of(first) != pair.user.channel_of(second)
