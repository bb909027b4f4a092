"""Call control and the agent queue: IVR callers transferred to a local agent group, the agents rung over
SIP, the first answer relayed to the caller on its own media leg, and the caller given back to its session
when the agent hangs up."""

from __future__ import annotations

from appliance.ivr.actions import LeaveQueue, QueueForAgents, StopMedia
from appliance.ivr.agent_queue import AgentState
from appliance.media.control_events import Delete, Direction, DropLeg, DtmfEvent, MediaTimeout, SetLeg
from appliance.media.control_events import StopMedia as StopMediaCommand
from appliance.sip.builder import make_request
from appliance.sip.events import Peer
from appliance.sip.message import Request, Response
from tests.unit.harness import (
    AGENT1,
    AGENT2,
    ANSWER,
    CALLER,
    CLOUD,
    Harness,
    ScriptedSession,
    ack_for,
    in_dialog,
    invite,
    reply,
)
from tests.unit.test_b2bua import register_agent
from tests.unit.test_b2bua_media import answered, drain

AGENT1_URI = "sip:agent1@127.0.0.1:5091"
AGENT2_URI = "sip:agent2@127.0.0.1:5092"
PCMU_ANSWER = ANSWER.replace(b"RTP/AVP 8", b"RTP/AVP 0").replace(b"8 PCMA/8000", b"0 PCMU/8000")


def harness(*members: str) -> Harness:
    return Harness(cloud="", anchor=True, agent_groups={"sales": list(members or (AGENT1_URI, AGENT2_URI))})


def caller_in_ivr(h: Harness, n: int = 1) -> tuple[str, ScriptedSession, Response]:
    """Caller ``n`` answered by the IVR: its call id, its session and the 200 it got."""
    h.send(CALLER, invite(call_id=f"a-call-{n}", branch=f"z9hG4bKa{n}"))
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200
    h.send(CALLER, ack_for(ok, branch=f"z9hG4bKack{n}"))
    session = h.sessions[n - 1]
    return session.call_id, session, ok


def queue(h: Harness, session: ScriptedSession, strategy: str = "ring_all") -> None:
    """The session's transfer node queues its caller for the group."""
    session.actions.append(QueueForAgents("sales", strategy))
    h.b2bua.ivr_legs[session.call_id].pump(h.now)
    h._pump()


def invites(h: Harness, peer: Peer) -> list[Request]:
    """The INVITEs ``peer`` got, each answered 100 Trying (a CANCEL waits for a provisional, §9.1)."""
    out = [r for r in h.requests(peer) if r.method == "INVITE"]
    for request in out:
        h.send(peer, reply(request, 100))
    return out


def from_agent(method: str, agent_invite: Request, *, tag: str, port: int, cseq: int = 9) -> Request:
    """A request the agent's phone sends within its dialog."""
    return make_request(
        method, "sip:pop@127.0.0.1:5060", via=f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{tag}{cseq}",
        from_=f"{agent_invite.headers.get('to')};tag={tag}", to=agent_invite.headers.get("from") or "",
        call_id=agent_invite.call_id, cseq=cseq,
    )  # fmt: skip


def answer(h: Harness, agent_invite: Request, peer: Peer, *, tag: str, body: bytes = ANSWER) -> None:
    contact = f"<{agent_invite.uri}>"
    h.send(peer, reply(agent_invite, 200, tag=tag, body=body, contact=contact))


def connected() -> tuple[Harness, str, ScriptedSession, Request, Response]:
    """A caller connected to agent 1 (ring_all to both agents); the agent's INVITE, the caller's 200."""
    h = harness()
    call_id, session, ok = caller_in_ivr(h)
    queue(h, session)
    (inv1,) = invites(h, AGENT1)
    invites(h, AGENT2)
    drain(h.media_anchor)
    answer(h, inv1, AGENT1, tag="ag1")
    h.take(AGENT1)
    h.take(AGENT2)
    return h, call_id, session, inv1, ok


def test_ring_all_rings_every_agent_with_an_offer_from_the_callers_media() -> None:
    h = harness()
    _, session, _ = caller_in_ivr(h)
    drain(h.media_anchor)
    queue(h, session)
    (inv1,) = invites(h, AGENT1)
    (inv2,) = invites(h, AGENT2)
    assert (inv1.uri, inv2.uri) == (AGENT1_URI, AGENT2_URI)
    assert inv1.body == inv2.body
    # Leg b's port on the relay; the caller's codec first, the other law added for transcoding, events.
    assert b"m=audio 30002 RTP/AVP 8 101 0\r\n" in inv1.body and b"c=IN IP4 127.0.0.1" in inv1.body
    assert session.inputs[-1] == ("transfer_position", 1, h.now)
    # The agents' phones ringing are not the caller's business: it is in the IVR, answered long ago.
    h.send(AGENT1, reply(inv1, 180, tag="ag1"))
    assert h.take(CALLER) == [] and drain(h.media_anchor) == []
    assert h.b2bua.transfer.queue.agent_state(AGENT1_URI) is AgentState.RINGING


def test_the_first_agent_to_answer_gets_the_caller_and_the_other_ring_is_cancelled() -> None:
    h = harness()
    call_id, session, _ = caller_in_ivr(h)
    queue(h, session)
    assert len(invites(h, AGENT1)) == 1
    (inv2,) = invites(h, AGENT2)
    drain(h.media_anchor)
    answer(h, inv2, AGENT2, tag="ag2")
    assert [r.method for r in h.requests(AGENT2)] == ["ACK"]
    assert [r.method for r in h.requests(AGENT1)] == ["CANCEL"]
    assert session.inputs[-1] == ("transfer_answered", AGENT2_URI, h.now)
    # Both legs are set on the relay; the caller keeps its port, remote and codec, and is not re-INVITEd.
    set_a, set_b = drain(h.media_anchor)
    assert isinstance(set_a, SetLeg) and isinstance(set_b, SetLeg)
    assert (set_a.leg, set_a.spec.local_port, set_a.spec.remote, set_a.spec.codec) == (
        "a", 30000, ("127.0.0.1", 40000), "PCMA",
    )  # fmt: skip
    assert (set_b.leg, set_b.spec.local_port, set_b.spec.remote, set_b.spec.codec) == (
        "b", 30002, ("127.0.0.1", 41000), "PCMA",
    )  # fmt: skip
    assert h.take(CALLER) == []
    assert h.calls.routed == [] and h.calls.started == ["ivr"]  # a transfer is no failover
    queue_ = h.b2bua.transfer.queue
    assert queue_.agent_state(AGENT2_URI) is AgentState.BUSY
    assert queue_.agent_state(AGENT1_URI) is AgentState.IDLE
    # The session stops its music: the relay then carries caller and agent to each other.
    session.actions.append(StopMedia())
    h.b2bua.ivr_legs[call_id].pump(h.now)
    assert drain(h.media_anchor) == [StopMediaCommand(call_id, "a")]


def test_an_agent_picking_the_other_law_is_transcoded_for() -> None:
    h = harness(AGENT1_URI)
    _, session, _ = caller_in_ivr(h)
    queue(h, session)
    (inv1,) = invites(h, AGENT1)
    drain(h.media_anchor)
    answer(h, inv1, AGENT1, tag="ag1", body=PCMU_ANSWER)
    set_a, set_b = drain(h.media_anchor)
    assert isinstance(set_a, SetLeg) and isinstance(set_b, SetLeg)
    assert (set_a.spec.codec, set_a.spec.codec_pt, set_b.spec.codec, set_b.spec.codec_pt) == (
        "PCMA",
        8,
        "PCMU",
        0,
    )


def test_longest_idle_rings_one_agent_and_the_next_after_a_ring_timeout() -> None:
    h = harness()
    _, session, _ = caller_in_ivr(h)
    queue(h, session, "longest_idle")
    assert len(invites(h, AGENT1)) == 1 and invites(h, AGENT2) == []
    h.advance(20.0)  # the queue's ring timeout
    assert [r.method for r in h.requests(AGENT1)] == ["CANCEL"]
    (inv2,) = invites(h, AGENT2)
    answer(h, inv2, AGENT2, tag="ag2")
    assert session.inputs[-1] == ("transfer_answered", AGENT2_URI, h.now)


def test_a_failed_ring_moves_on_to_the_next_agent() -> None:
    h = harness()
    _, session, _ = caller_in_ivr(h)
    queue(h, session, "longest_idle")
    (inv1,) = invites(h, AGENT1)
    h.send(AGENT1, reply(inv1, 486, tag="ag1"))
    (inv2,) = invites(h, AGENT2)
    assert inv2.uri == AGENT2_URI


def test_callers_wait_in_line_while_every_agent_is_busy() -> None:
    h = harness(AGENT1_URI)
    _, first, _ = caller_in_ivr(h, 1)
    queue(h, first)
    (inv1,) = invites(h, AGENT1)
    answer(h, inv1, AGENT1, tag="ag1")
    h.take(AGENT1)
    _, second, _ = caller_in_ivr(h, 2)
    queue(h, second)
    assert invites(h, AGENT1) == []  # the one agent is busy with the first caller
    _, third, _ = caller_in_ivr(h, 3)
    queue(h, third)
    assert second.inputs[-1] == ("transfer_position", 1, h.now)
    assert third.inputs[-1] == ("transfer_position", 2, h.now)
    # The agent ends the first call: it is free, and the caller first in line rings it.
    h.send(AGENT1, from_agent("BYE", inv1, tag="ag1", port=5091))
    (again,) = invites(h, AGENT1)
    assert again.uri == AGENT1_URI
    assert third.inputs[-1] == ("transfer_position", 2, h.now)
    answer(h, again, AGENT1, tag="ag1b")
    assert second.inputs[-1] == ("transfer_answered", AGENT1_URI, h.now)
    assert third.inputs[-1] == ("transfer_position", 1, h.now)


def ringing_both() -> tuple[Harness, ScriptedSession, Response]:
    """A caller queued with ring_all, both agents ringing; its session and the caller's 200."""
    h = harness()
    _, session, ok = caller_in_ivr(h)
    queue(h, session)
    assert len(invites(h, AGENT1)) == len(invites(h, AGENT2)) == 1
    return h, session, ok


def both_cancelled(h: Harness) -> bool:
    return [r.method for r in h.requests(AGENT1)] == [r.method for r in h.requests(AGENT2)] == ["CANCEL"]


def test_a_caller_hanging_up_while_agents_ring_cancels_the_rings() -> None:
    h, session, ok = ringing_both()
    h.send(CALLER, in_dialog("BYE", ok, branch="z9hG4bKbye1", cseq=2))
    assert both_cancelled(h)
    assert "caller_hung_up" in session.names() and not h.b2bua.calls
    assert h.b2bua.transfer.queue.queued("sales") == ()
    assert h.b2bua.transfer.queue.agent_state(AGENT1_URI) is AgentState.IDLE


def test_the_session_leaving_the_queue_cancels_the_rings() -> None:
    h, session, _ = ringing_both()
    call_id = session.call_id
    session.actions.append(LeaveQueue())  # the node's maximum wait: on to its fallback
    h.b2bua.ivr_legs[call_id].pump(h.now)
    h._pump()
    assert both_cancelled(h)
    assert call_id in h.b2bua.calls and h.take(CALLER) == []


def test_an_agent_hanging_up_gives_the_caller_back_to_its_session() -> None:
    h, call_id, session, inv1, _ = connected()
    drain(h.media_anchor)
    h.send(AGENT1, from_agent("BYE", inv1, tag="ag1", port=5091))
    assert [m.status for m in h.take(AGENT1) if isinstance(m, Response)] == [200]
    assert session.inputs[-1] == ("transfer_ended", h.now)
    # Leg b goes; leg a stays as it is, on its port (its worker already reports its digits: the agent had
    # no telephone-event), and is the IVR's again.
    assert drain(h.media_anchor) == [DropLeg(call_id, "b")]
    assert h.media_anchor is not None and h.media_anchor.is_local(call_id)
    assert h.take(CALLER) == [] and call_id in h.b2bua.calls
    assert h.calls.routed == []
    assert h.b2bua.transfer.queue.agent_state(AGENT1_URI) is AgentState.IDLE


def test_a_caller_hanging_up_while_connected_releases_the_agent() -> None:
    h, call_id, session, _, ok = connected()
    h.send(CALLER, in_dialog("BYE", ok, branch="z9hG4bKbye1", cseq=2))
    assert [r.method for r in h.requests(AGENT1)] == ["BYE"]
    assert "caller_hung_up" in session.names() and not h.b2bua.calls
    assert drain(h.media_anchor)[-1] == Delete(call_id)
    assert h.b2bua.transfer.queue.agent_state(AGENT1_URI) is AgentState.IDLE


def test_an_answer_after_the_ring_timed_out_is_hung_up() -> None:
    h = harness(AGENT1_URI)
    _, session, _ = caller_in_ivr(h)
    queue(h, session)
    (inv1,) = invites(h, AGENT1)
    h.now += 20.0  # the answer arrives at the ring's deadline, before the timer fired
    answer(h, inv1, AGENT1, tag="ag1")
    assert [r.method for r in h.requests(AGENT1)] == ["ACK", "BYE"]
    assert "transfer_answered" not in session.names()


def test_digits_of_a_connected_caller_go_to_the_agent_not_the_session() -> None:
    h, call_id, session, _, _ = connected()
    h.b2bua.media_event(call_id, DtmfEvent(call_id, "a", "5", 120), h.now)
    h._pump()
    (info,) = h.requests(AGENT1)  # the agent's phone negotiated no telephone-event: SIP INFO
    assert info.method == "INFO" and b"Signal=5" in info.body
    assert "dtmf" not in session.names()


def test_a_caller_re_invite_while_connected_reaches_the_agent_through_the_relay() -> None:
    h, _, _, _, ok = connected()
    offer = invite().body.replace(b"40000", b"40010")
    reinvite = in_dialog(
        "INVITE", ok, branch="z9hG4bKre1", cseq=3, body=offer, content_type="application/sdp"
    )
    h.send(CALLER, reinvite)
    (forwarded,) = invites(h, AGENT1)
    assert b"m=audio 30002 " in forwarded.body and b"40010" not in forwarded.body


def test_an_agent_on_a_call_routed_straight_to_its_group_is_not_rung_by_the_queue() -> None:
    h = Harness(
        cloud="", anchor=True, agent_groups={"sales": [AGENT1_URI]},
        routes=(("100", ("agents:sales",)), ("*", ("ivr:default",))),
    )  # fmt: skip
    h.send(CALLER, invite("100", call_id="direct", branch="z9hG4bKd1"))
    (direct,) = invites(h, AGENT1)
    answer(h, direct, AGENT1, tag="d1")
    h.take(AGENT1)
    assert h.b2bua.transfer.queue.agent_state(AGENT1_URI) is AgentState.BUSY
    _, session, _ = caller_in_ivr(h, 1)
    queue(h, session)
    assert invites(h, AGENT1) == [] and session.inputs[-1] == ("transfer_position", 1, h.now)
    # The direct call ends: the agent is free and the waiting caller rings it.
    h.send(AGENT1, from_agent("BYE", direct, tag="d1", port=5091))
    assert [r.uri for r in invites(h, AGENT1)] == [AGENT1_URI]


def test_a_rescued_caller_can_be_transferred_on_its_relayed_leg() -> None:
    h = Harness(anchor=True, agent_groups={"sales": [AGENT1_URI]})
    answered(h)
    (call_id,) = h.b2bua.calls
    assert h.b2bua.cloud_lost("carrier lost", h.now).rescued == 1
    h.take(CLOUD)
    (session,) = h.sessions
    drain(h.media_anchor)
    queue(h, session)
    (inv1,) = invites(h, AGENT1)
    assert b"RTP/AVP 8 101 0\r\n" in inv1.body  # the codec the caller agreed with the cloud, its twin
    answer(h, inv1, AGENT1, tag="ag1")
    # Leg a is left as it was (same port, remote, codec and flags): only leg b is set.
    (set_b,) = drain(h.media_anchor)
    assert isinstance(set_b, SetLeg) and set_b.leg == "b" and set_b.spec.remote == ("127.0.0.1", 41000)
    assert session.inputs[-1] == ("transfer_answered", AGENT1_URI, h.now)
    assert h.take(CALLER) == [] and call_id in h.b2bua.calls


def test_a_caller_moving_its_media_while_agents_ring_is_met_where_it_is_now() -> None:
    h = harness(AGENT1_URI)
    _, session, ok = caller_in_ivr(h)
    queue(h, session)
    (inv1,) = invites(h, AGENT1)
    offer = invite().body.replace(b"40000", b"40010")
    h.send(
        CALLER,
        in_dialog("INVITE", ok, branch="z9hG4bKre1", cseq=3, body=offer, content_type="application/sdp"),
    )
    assert invites(h, AGENT1) == []  # the agents' offer names only the relay: it stands
    drain(h.media_anchor)
    answer(h, inv1, AGENT1, tag="ag1")
    set_a, set_b = drain(h.media_anchor)
    assert isinstance(set_a, SetLeg) and isinstance(set_b, SetLeg)
    assert (set_a.leg, set_a.spec.remote, set_b.leg) == ("a", ("127.0.0.1", 40010), "b")


def test_an_answer_whose_media_cannot_reach_the_caller_is_a_failed_ring() -> None:
    h = harness()
    _, session, _ = caller_in_ivr(h)
    queue(h, session, "longest_idle")
    (inv1,) = invites(h, AGENT1)
    g722 = ANSWER.replace(b"RTP/AVP 8", b"RTP/AVP 9").replace(b"8 PCMA/8000", b"9 G722/8000")
    answer(h, inv1, AGENT1, tag="ag1", body=g722)
    assert [r.method for r in h.requests(AGENT1)] == ["ACK", "BYE"]
    assert "transfer_answered" not in session.names()
    (inv2,) = invites(h, AGENT2)  # on to the next agent, as after any failed ring
    answer(h, inv2, AGENT2, tag="ag2")
    assert session.inputs[-1] == ("transfer_answered", AGENT2_URI, h.now)


def test_an_agent_registering_while_a_caller_waits_is_rung_at_the_next_refresh() -> None:
    users = {"1001": "pw1", "1002": "pw2"}
    h = Harness(cloud="", anchor=True, agent_groups={"sales": ["1001", "1002"]}, users=users)
    register_agent(h, "1001", "pw1", AGENT1)
    _, session, _ = caller_in_ivr(h)
    queue(h, session)
    (inv1,) = invites(h, AGENT1)  # rung at its binding's contact, sent where it registered from
    assert inv1.uri == "sip:1001@127.0.0.1:5091"
    register_agent(h, "1002", "pw2", AGENT2)
    assert h.b2bua.transfer.refresh(h.now)  # the appliance's once-a-second housekeeping
    h._pump()
    (inv2,) = invites(h, AGENT2)  # ring_all: a member idle while the caller rings is rung as well
    answer(h, inv2, AGENT2, tag="ag2")
    assert session.inputs[-1] == ("transfer_answered", "sip:1002@127.0.0.1:5092", h.now)
    assert [r.method for r in h.requests(AGENT1)] == ["CANCEL"]
    assert not h.b2bua.transfer.refresh(h.now)  # no caller waits: nothing to do


def test_a_group_without_a_reachable_agent_is_unavailable_at_once() -> None:
    h = Harness(cloud="", anchor=True, agent_groups={"sales": ["1001"]}, users={"1001": "pw1"})
    _, session, _ = caller_in_ivr(h)
    queue(h, session)
    assert session.inputs[-1] == ("transfer_unavailable", h.now)
    assert h.b2bua.transfer.queue.queued("sales") == () and h.take(AGENT1) == []


def test_callers_of_a_group_left_without_agents_are_sent_on() -> None:
    h, session, _ = ringing_both()
    h.agent_groups["sales"] = []  # both phones' registrations lapsed
    assert h.b2bua.transfer.refresh(h.now)
    h._pump()
    assert both_cancelled(h)
    assert session.inputs[-1] == ("transfer_unavailable", h.now)
    assert h.b2bua.transfer.queue.queued("sales") == ()


def test_an_agent_whose_media_stops_is_released_and_the_caller_goes_back_to_its_session() -> None:
    h, call_id, session, _, _ = connected()
    drain(h.media_anchor)
    h.b2bua.media_event(call_id, MediaTimeout(call_id, "b", Direction.IN, 2.0), h.now)
    h._pump()
    (bye,) = h.requests(AGENT1)
    assert bye.method == "BYE" and "cause=102" in (bye.headers.get("reason") or "")
    assert session.inputs[-1] == ("transfer_ended", h.now)
    assert drain(h.media_anchor) == [DropLeg(call_id, "b")]
    assert h.take(CALLER) == [] and call_id in h.b2bua.calls


def test_an_agent_placing_a_call_is_busy_until_it_ends() -> None:
    h = harness(AGENT1_URI)
    _, first, _ = caller_in_ivr(h, 1)
    queue(h, first)
    (inv1,) = invites(h, AGENT1)
    h.send(AGENT1, reply(inv1, 486, tag="ag1"))  # busy: the queue now knows the agent
    first.actions.append(LeaveQueue())
    h.b2bua.ivr_legs[first.call_id].pump(h.now)
    h.take(AGENT1)
    # The agent's phone calls out (to the IVR here), from the contact it is rung at.
    own = make_request(
        "INVITE", "sip:+49301234567@127.0.0.1", via="SIP/2.0/UDP 127.0.0.1:5091;branch=z9hG4bKout1",
        from_="<sip:agent1@127.0.0.1>;tag=out1", to="<sip:+49301234567@127.0.0.1>", call_id="agent-out",
        cseq=1, contact=f"<{AGENT1_URI}>", body=invite().body, content_type="application/sdp",
    )  # fmt: skip
    h.send(AGENT1, own)
    ok = h.take(AGENT1)[-1]
    assert isinstance(ok, Response) and ok.status == 200
    assert h.b2bua.transfer.queue.agent_state(AGENT1_URI) is AgentState.BUSY
    _, second, _ = caller_in_ivr(h, 3)
    queue(h, second)
    assert invites(h, AGENT1) == []
    # The agent hangs up its own call: it is free and rung for the caller waiting.
    h.send(AGENT1, in_dialog("BYE", ok, branch="z9hG4bKout2", cseq=2, via_port=5091))
    assert [r.uri for r in invites(h, AGENT1)] == [AGENT1_URI]
