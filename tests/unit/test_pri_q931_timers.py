"""Q.931 timers (T301-T322), data link failure (§5.8.9), restart (§5.5) and glare, user and network side
back to back; ``now`` advanced by hand, messages through the codec (the byte path) where it matters."""

from __future__ import annotations

import pytest

from appliance.pri.errors import LocalProtocolError
from appliance.pri.q931 import Q931
from appliance.pri.q931_call import RestartState
from appliance.pri.q931_events import (
    CallOffered,
    CallProceeding,
    CallReleased,
    ChannelsRestarted,
    ProtocolFault,
)
from appliance.pri.q931_model import CallStateValue as S
from appliance.pri.q931_model import (
    ChannelId,
    Message,
    MessageType,
    PartyNumber,
    RestartClass,
    RestartIndicator,
)
from appliance.pri.q931_timers import Q931Timers
from tests.unit.test_pri_q931_machine import NUMBER, Pair, active_call, released

T = Q931Timers()


def causes(pair: Pair, side: str, call: int) -> list[int]:
    return [e.cause for e in released(pair, side, call)]


def test_t303_user_side_repeats_setup_once_then_releases_complete_with_102() -> None:
    pair = Pair()
    a = pair.user
    call = a.setup(called=NUMBER, now=0.0)
    lost = pair.take("user")  # the SETUP is lost
    assert a.get_timer() == T.t303
    pair.advance(T.t303)
    assert pair.take("user") == lost  # SETUP again, the same message
    assert a.state_of(call) is S.CALL_INITIATED
    pair.advance(T.t303)
    (rc,) = pair.take("user")
    assert rc.type is MessageType.RELEASE_COMPLETE and rc.cause is not None and rc.cause.value == 102
    assert pair.events["user"] == [CallReleased(call, 102, pair.last("user", CallReleased).location, True)]
    assert a.calls == 0 and a.get_timer() is None and not a.busy_channels()


def test_t303_network_side_clears_its_unanswered_setup_with_disconnect_102() -> None:
    # Q.931 §5.2.5.4 b): a SETUP sent on a point-to-point data link is cleared as in §5.3.4
    pair = Pair()
    call = pair.net.setup(called=NUMBER, now=0.0)
    lost = pair.take("network")
    pair.advance(T.t303)
    assert pair.take("network") == lost
    pair.advance(T.t303)
    (disc,) = pair.take("network")
    assert disc.type is MessageType.DISCONNECT and disc.cause is not None and disc.cause.value == 102
    assert pair.net.state_of(call) is S.DISCONNECT_INDICATION and pair.net.get_timer() == pair.now + T.t305
    assert not released(pair, "network", call)
    pair.deliver("user", [disc])  # the user never had the call: RELEASE cause 81 (§5.8.3.2)
    pair.pump()
    assert causes(pair, "network", call) == [102] and pair.net.calls == 0 and not pair.net.busy_channels()


def test_t303_second_setup_answered_goes_on_normally() -> None:
    pair = Pair(bytes_path=True)
    call = pair.user.setup(called=NUMBER, now=0.0)
    pair.take("user")
    pair.advance(T.t303)
    pair.pump()
    assert pair.offered("network").channel == 1
    pair.net.proceeding(pair.offered("network").call, now=pair.now)
    pair.pump()
    assert pair.user.state_of(call) is S.OUTGOING_CALL_PROCEEDING


@pytest.mark.parametrize("caller", ["user", "network"])
def test_t310_after_call_proceeding_clears_with_102(caller: str) -> None:
    pair = Pair(bytes_path=True)
    callee = "network" if caller == "user" else "user"
    call = pair.machine(caller).setup(called=NUMBER, now=0.0)
    pair.pump()
    pair.machine(callee).proceeding(pair.offered(callee).call, now=0.0)
    pair.pump()
    t310 = Q931Timers.for_side(caller).t310  # Q.931 Table 9-1 (N9): 10 s; Table 9-2 (U3): 30-120 s
    assert t310 == (10.0 if caller == "network" else 30.0)
    assert pair.machine(caller).get_timer() == t310
    pair.advance(t310)
    (disc,) = pair.take(caller)
    assert disc.type is MessageType.DISCONNECT and disc.cause is not None and disc.cause.value == 102
    pair.deliver(callee, [disc])
    pair.pump()
    assert causes(pair, caller, call) == [102]
    assert causes(pair, callee, pair.offered(callee).call) == [102]


def test_t313_user_connect_unacknowledged_clears_with_102() -> None:
    pair = Pair()
    pair.net.setup(called=NUMBER, now=0.0)
    pair.pump()
    incoming = pair.offered("user").call
    pair.user.connect(incoming, now=0.0)
    pair.take("user")  # CONNECT lost
    pair.advance(T.t313)
    assert pair.user.state_of(incoming) is S.DISCONNECT_REQUEST
    assert [m.type for m in pair.take("user")] == [MessageType.DISCONNECT]


@pytest.mark.parametrize("caller", ["user", "network"])
def test_t305_then_t308_twice_releases_the_call(caller: str) -> None:
    pair = Pair()
    a_call, _ = active_call(pair, caller=caller)
    a = pair.machine(caller)
    channel = a.channel_of(a_call)
    a.disconnect(a_call, 16, now=pair.now)
    assert [m.type for m in pair.take(caller)] == [MessageType.DISCONNECT]
    pair.advance(T.t305)
    (rel,) = pair.take(caller)
    assert rel.type is MessageType.RELEASE and rel.cause is not None and rel.cause.value == 16
    assert a.state_of(a_call) is S.RELEASE_REQUEST
    pair.advance(T.t308)
    assert [m.type for m in pair.take(caller)] == [MessageType.RELEASE]
    assert not released(pair, caller, a_call)
    pair.advance(T.t308)
    assert causes(pair, caller, a_call) == [16] and a.calls == 0 and not a.busy_channels()
    # Tables 9-1/9-2, second expiry: the B-channel goes to maintenance, and a RESTART for it (§5.5) starts
    assert channel is not None and a.channels_in_maintenance == (channel,)
    assert any(isinstance(e, ProtocolFault) and e.cause == 102 for e in pair.events[caller])
    (restart,) = pair.take(caller)
    assert restart.type is MessageType.RESTART and restart.channel == ChannelId((channel,), exclusive=True)
    assert a.restart_state is RestartState.REST1


@pytest.mark.parametrize("caller", ["user", "network"])
def test_t308_maintenance_channel_is_not_offered_until_a_restart_acknowledges_it(caller: str) -> None:
    pair = Pair(channels=(1,))
    a_call, _ = active_call(pair, caller=caller)
    a = pair.machine(caller)
    a.disconnect(a_call, 16, now=pair.now)
    pair.take(caller)
    pair.advance(T.t305 + T.t308 + T.t308)
    assert a.channels_in_maintenance == (1,)
    (restart,) = [m for m in pair.take(caller) if m.type is MessageType.RESTART]
    refused = a.setup(called=NUMBER, now=pair.now)  # the only channel is out of service
    pair.drain()
    assert causes(pair, caller, refused) == [34]
    # the peer, having forgotten the call, acknowledges the RESTART: the channel is back in service
    ack = Message(MessageType.RESTART_ACKNOWLEDGE, 0, False, channel=restart.channel, restart=restart.restart)
    pair.deliver(caller, [ack])
    pair.drain()
    assert a.channels_in_maintenance == () and a.restart_state is RestartState.REST0
    assert ChannelsRestarted((1,), requested_by_peer=False) in pair.events[caller]
    call = a.setup(called=NUMBER, now=pair.now)
    assert a.channel_of(call) == 1


def test_peer_restart_brings_a_maintenance_channel_back_into_service() -> None:
    pair = Pair(channels=(1, 2))
    pair.user.restart((2,), now=0.0)
    pair.take("user")  # the RESTART is lost, twice
    pair.advance(T.t316)
    pair.take("user")
    pair.advance(T.t316)
    assert pair.user.channels_in_maintenance == (2,)
    pair.deliver(
        "user",
        [Message(MessageType.RESTART, 0, True, channel=ChannelId((2,), exclusive=True),
                 restart=RestartIndicator(RestartClass.INDICATED_CHANNELS))],
    )  # fmt: skip
    assert [m.type for m in pair.take("user")] == [MessageType.RESTART_ACKNOWLEDGE]
    assert pair.user.channels_in_maintenance == ()


def test_t306_runs_instead_of_t305_for_an_in_band_network_disconnect() -> None:
    pair = Pair()
    _, net_call = active_call(pair, caller="user")
    pair.net.disconnect(net_call, 17, inband=True, now=0.0)
    (disc,) = pair.take("network")
    assert [p.description for p in disc.progress] == [8]
    assert pair.net.get_timer() == T.t306
    pair.deliver("user", [disc])
    pair.take("user")  # the user side plays the announcement and does not clear
    pair.advance(T.t306)
    (rel,) = pair.take("network")
    assert rel.type is MessageType.RELEASE and rel.cause is not None and rel.cause.value == 17
    assert pair.net.state_of(net_call) is S.RELEASE_REQUEST


def test_t301_network_side_no_answer_after_alerting() -> None:
    pair = Pair()
    call = pair.net.setup(called=NUMBER, now=0.0)
    pair.pump()
    pair.user.alerting(pair.offered("user").call, now=0.0)
    pair.pump()
    assert pair.net.state_of(call) is S.CALL_RECEIVED
    pair.advance(T.t301)
    pair.pump()
    assert causes(pair, "network", call) == [19]
    assert causes(pair, "user", pair.offered("user").call) == [19]


def test_t302_network_overlap_sending_times_out_with_28() -> None:
    pair = Pair()
    call = pair.user.setup(called=PartyNumber("1"), sending_complete=False, now=0.0)
    pair.pump()
    incoming = pair.offered("network").call
    pair.net.setup_acknowledge(incoming, now=0.0)
    pair.pump()
    pair.advance(T.t302 - 1)
    pair.user.information(call, "2", now=pair.now)
    pair.pump()
    assert pair.net.get_timer() == pytest.approx(pair.now + T.t302)  # restarted by INFORMATION
    pair.advance(T.t302)
    pair.pump()
    assert causes(pair, "user", call) == [28] and causes(pair, "network", incoming) == [28]


def test_t322_status_enquiry_unanswered_twice_clears_with_41() -> None:
    pair = Pair()
    call, _ = active_call(pair)
    pair.user.status_enquiry(call, now=pair.now)
    assert [m.type for m in pair.take("user")] == [MessageType.STATUS_ENQUIRY]
    pair.advance(T.t322)
    assert [m.type for m in pair.take("user")] == [MessageType.STATUS_ENQUIRY]
    pair.advance(T.t322)
    (disc,) = pair.take("user")
    assert disc.type is MessageType.DISCONNECT and disc.cause is not None and disc.cause.value == 41


def test_status_enquiry_answered_keeps_the_call() -> None:
    pair = Pair(bytes_path=True)
    call, incoming = active_call(pair)
    pair.user.status_enquiry(call, now=pair.now)
    pair.pump()
    assert pair.types("network")[-1] is MessageType.STATUS
    assert pair.user.get_timer() is None and pair.user.state_of(call) is S.ACTIVE
    assert pair.net.state_of(incoming) is S.ACTIVE


# ---------------------------------------------------------------- data link failure (§5.8.9)


def test_link_failure_clears_calls_not_active_and_keeps_active_ones_on_t309() -> None:
    pair = Pair()
    active, net_active = active_call(pair)
    ringing = pair.user.setup(called=NUMBER, now=pair.now)
    pair.pump()
    pair.user.link_released(pair.now)
    pair.net.link_released(pair.now)
    pair.drain()
    assert causes(pair, "user", ringing) == [41]
    assert causes(pair, "network", pair.offered("network").call) == [41]
    assert pair.user.state_of(active) is S.ACTIVE and pair.user.get_timer() == pair.now + T.t309
    pair.advance(T.t309 - 1)
    pair.user.link_established(pair.now)
    pair.net.link_established(pair.now)
    pair.pump()  # both verify the call with STATUS ENQUIRY / STATUS
    assert pair.types("user")[-2:] == [MessageType.STATUS_ENQUIRY, MessageType.STATUS]
    assert pair.user.state_of(active) is S.ACTIVE and pair.net.state_of(net_active) is S.ACTIVE
    assert pair.user.get_timer() is None and pair.net.get_timer() is None
    assert not released(pair, "user", active)


def test_loss_of_signal_clears_every_call_with_38_and_frees_the_channels() -> None:
    pair = Pair()
    active, _ = active_call(pair)
    ringing = pair.user.setup(called=NUMBER, now=pair.now)
    pair.pump()
    pair.user.physical_layer_lost(pair.now)
    pair.drain()
    # No T309 here: the B-channels went with the line, so even the active call ends at once.
    assert causes(pair, "user", active) == [38] and causes(pair, "user", ringing) == [38]
    assert pair.user.calls == 0 and not pair.user.busy_channels() and pair.user.get_timer() is None
    assert pair.take("user") == []  # nothing can be sent: the line is gone


def test_t309_expiry_clears_the_active_call_with_27() -> None:
    pair = Pair()
    active, net_active = active_call(pair)
    pair.user.link_released(pair.now)
    pair.net.link_released(pair.now)
    pair.advance(10.0)
    pair.user.link_released(pair.now)  # reported again: T309 runs on, not restarted (§5.8.9)
    pair.advance(T.t309 - 10.0)
    assert causes(pair, "user", active) == [27] and causes(pair, "network", net_active) == [27]
    assert pair.user.messages_to_send() == [] and pair.net.messages_to_send() == []


def test_disconnect_while_the_link_is_down_clears_locally() -> None:
    pair = Pair()
    active, _ = active_call(pair)
    pair.user.link_released(pair.now)
    pair.user.disconnect(active, 16, now=pair.now)
    pair.drain()
    assert causes(pair, "user", active) == [16] and pair.take("user") == []


# ---------------------------------------------------------------- restart (§5.5)


@pytest.mark.parametrize("side", ["user", "network"])
def test_restart_of_indicated_channels_releases_their_calls_on_both_sides(side: str) -> None:
    pair = Pair(bytes_path=True)
    other = "network" if side == "user" else "user"
    on_1 = active_call(pair, caller="user")
    on_2 = active_call(pair, caller="network")
    assert pair.user.channel_of(on_2[1]) == 2
    pair.machine(side).restart((2,), now=pair.now)
    assert pair.machine(side).restart_state is RestartState.REST1
    with pytest.raises(LocalProtocolError):
        pair.machine(side).restart(None, now=pair.now)
    (restart,) = pair.take(side)
    assert restart.type is MessageType.RESTART and restart.call_reference == 0
    assert restart.channel == ChannelId((2,), exclusive=True)
    assert restart.restart is not None and restart.restart.restart_class is RestartClass.INDICATED_CHANNELS
    assert pair.machine(side).setup(called=NUMBER, channel=2, exclusive=True, now=pair.now)  # blocked: 44
    pair.deliver(other, [restart])
    pair.pump()
    assert pair.machine(side).restart_state is RestartState.REST0
    assert ChannelsRestarted((2,), requested_by_peer=True) in pair.events[other]
    assert ChannelsRestarted((2,), requested_by_peer=False) in pair.events[side]
    assert pair.user.calls == pair.net.calls == 1
    assert pair.user.channel_of(on_1[0]) == 1
    assert [e.cause for e in pair.events["user"] if isinstance(e, CallReleased)] == [41, 44][
        : 2 if side == "user" else 1
    ]


def test_restart_unacknowledged_is_repeated_then_abandoned() -> None:
    pair = Pair()
    pair.net.restart(None, now=0.0)
    first = pair.take("network")
    pair.advance(T.t316)
    assert pair.take("network") == first
    pair.advance(T.t316)
    assert pair.net.restart_state is RestartState.REST0
    assert any(isinstance(e, ProtocolFault) and e.cause == 102 for e in pair.events["network"])
    # §5.5.1: after the last attempt the channels are out of service until maintenance action
    assert pair.net.channels_in_maintenance == pair.channels
    refused = pair.net.setup(called=NUMBER, now=pair.now)
    pair.drain()
    assert causes(pair, "network", refused) == [34] and pair.net.calls == 0
    pair.net.restart(None, now=pair.now)  # the maintenance action: restart again, acknowledged this time
    pair.pump()
    assert pair.net.channels_in_maintenance == () and pair.net.restart_state is RestartState.REST0
    assert pair.net.setup(called=NUMBER, now=pair.now) and pair.net.calls == 1


def test_restart_with_unknown_channel_is_answered_with_status_and_not_acted_on() -> None:
    pair = Pair()
    call, _ = active_call(pair)
    bad = Message(MessageType.RESTART, 0, True, channel=ChannelId((9,)), restart=None)
    pair.deliver("user", [bad])
    (status,) = pair.take("user")
    assert status.type is MessageType.STATUS and status.call_reference == 0
    assert pair.user.state_of(call) is S.ACTIVE


# ---------------------------------------------------------------- glare


def test_glare_network_wins_and_the_users_preferred_call_moves_to_another_channel() -> None:
    pair = Pair(bytes_path=True)
    user_call = pair.user.setup(called=NUMBER, channel=1, now=0.0)
    net_call = pair.net.setup(called=PartyNumber("200"), channel=1, exclusive=True, now=0.0)
    pair.pump()  # the two SETUPs cross on the link
    offer_user = pair.offered("user")
    assert (offer_user.call, offer_user.channel) == (offer_user.call, 1)
    offer_net = pair.offered("network")
    assert offer_net.channel == 2
    pair.net.proceeding(offer_net.call, now=0.0)
    pair.user.proceeding(offer_user.call, now=0.0)
    pair.pump()
    assert pair.last("user", CallProceeding) == CallProceeding(user_call, 2)
    assert pair.user.channel_of(user_call) == 2 and pair.user.channel_of(offer_user.call) == 1
    assert pair.net.channel_of(net_call) == 1 and pair.net.channel_of(offer_net.call) == 2
    assert pair.user.busy_channels() == {1: offer_user.call, 2: user_call}


def test_glare_both_exclusive_awards_the_network_and_clears_the_users_call_with_34() -> None:
    """Q.931 Annex D.3 b)."""
    pair = Pair(bytes_path=True)
    user_call = pair.user.setup(called=NUMBER, channel=1, exclusive=True, now=0.0)
    pair.net.setup(called=PartyNumber("200"), channel=1, exclusive=True, now=0.0)
    pair.pump()
    assert causes(pair, "user", user_call) == [34]
    assert not any(isinstance(e, CallOffered) for e in pair.events["network"])
    assert pair.user.busy_channels() == {1: pair.offered("user").call}


def test_glare_user_exclusive_beats_network_preferred() -> None:
    """Q.931 Annex D.3 c): the exclusive side is awarded the channel, the preferred one moves."""
    pair = Pair(bytes_path=True)
    user_call = pair.user.setup(called=NUMBER, channel=1, exclusive=True, now=0.0)
    net_call = pair.net.setup(called=PartyNumber("200"), channel=1, exclusive=False, now=0.0)
    pair.pump()
    offer_net, offer_user = pair.offered("network"), pair.offered("user")
    assert offer_net.channel == 1 and offer_user.channel == 2
    pair.user.alerting(offer_user.call, now=0.0)
    pair.net.connect(offer_net.call, now=0.0)
    pair.pump()
    assert pair.net.channel_of(net_call) == 2 and pair.user.channel_of(user_call) == 1
    assert pair.net.busy_channels() == {1: offer_net.call, 2: net_call}
    assert pair.user.busy_channels() == {1: user_call, 2: offer_user.call}


def test_each_side_runs_its_standard_timer_defaults() -> None:
    # Q.931 Table 9-1 (network) and Table 9-2 (user): the same but for T310 (N9 10 s, U3 30-120 s)
    user, net = Q931Timers.for_side("user"), Q931Timers.for_side("network")
    assert (user.t301, user.t303, user.t305, user.t308, user.t313, user.t316, user.t322) == (
        180.0, 4.0, 30.0, 4.0, 4.0, 120.0, 4.0,
    )  # fmt: skip
    assert (net.t302, net.t306, net.t310, user.t310) == (15.0, 30.0, 10.0, 30.0)
    assert user.t316_attempts == 2  # §5.5.1: two consecutive unsuccessful restart attempts
    assert Q931Timers.for_side("network", t303=0.5) == Q931Timers(t303=0.5, t310=10.0)
    pair = Pair()
    assert pair.user.timers == user and pair.net.timers == net
    assert Q931(side="network", b_channels=(1,), timers=Q931Timers()).timers.t310 == 30.0  # as given
