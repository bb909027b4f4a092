"""Calls leaving a lost cloud: when the appliance turns SURVIVABLE, answered cloud calls are rescued into the
local IVR and calls whose cloud INVITE is still unanswered have it CANCELled (RFC 3261 §9.1) and go on to
their route's next destination at once, instead of ringing on a dead cloud until Timer B."""

from __future__ import annotations

from appliance.calls.cdr import CallRecords
from appliance.calls.local_ivr import CloudLost
from appliance.media.control_events import SetLeg
from appliance.sip.message import Request, Response
from appliance.wan.mode import Mode
from tests.unit.harness import ANSWER, CALLER, CLOUD, TRUNK2, Harness, invite, reply
from tests.unit.test_b2bua_media import answered, drain

EARLY = ANSWER.replace(b"o=callee 2 2", b"o=callee 3 3")


def ringing(h: Harness, *, status: int = 180, body: bytes = b"") -> Request:
    """A caller's call whose cloud INVITE got ``status`` back (0: nothing); returns that INVITE."""
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    if status:
        h.send(CLOUD, reply(b_invite, status, body=body))
    return b_invite


def lose_cloud(h: Harness) -> CloudLost:
    """The WAN is gone: the mode machine turns SURVIVABLE and the appliance tells call control."""
    h.mode.force(Mode.SURVIVABLE, h.now, "wan0 down")
    lost = h.b2bua.cloud_lost("carrier lost on wan0", h.now)
    h._pump()
    return lost


def statuses(h: Harness) -> list[int]:
    """The responses the caller got since last asked."""
    return [m.status for m in h.take(CALLER) if isinstance(m, Response)]


def cancel_of(h: Harness, b_invite: Request) -> Request:
    """The one CANCEL the cloud got for ``b_invite``, and nothing else (no second INVITE)."""
    sent = h.requests(CLOUD)
    assert [r.method for r in sent] == ["CANCEL"]
    (cancel,) = sent
    assert cancel.cseq == (b_invite.cseq[0], "CANCEL") and cancel.call_id == b_invite.call_id
    assert cancel.top_via.branch == b_invite.top_via.branch  # §9.1: it matches the INVITE's transaction
    return cancel


def test_a_ringing_cloud_call_moves_to_the_ivr_at_once() -> None:
    h = Harness()
    h.b2bua.cdr = records = CallRecords(wall=lambda: 1_700_000_000.0)
    b_invite = ringing(h)
    assert statuses(h) == [100, 180]
    assert lose_cloud(h) == CloudLost(rescued=0, moved=1)
    cancel = cancel_of(h, b_invite)
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200 and b"m=audio 20000" in ok.body
    (session,) = h.sessions
    assert session.flow == "default" and not session.rescued and session.names() == ["start"]
    assert h.calls.started == ["cloud"] and h.calls.routed == [("cloud", "ivr")]
    # The cloud answers the CANCEL and ends its INVITE: nothing more reaches the caller or the cloud.
    h.send(CLOUD, reply(cancel, 200))
    h.send(CLOUD, reply(b_invite, 487))
    assert h.take(CALLER) == [] and [r.method for r in h.requests(CLOUD)] == ["ACK"]  # ACK of the 487
    # The record: the cloud leg failed over with cause 38, the IVR took the call.
    (call_id,) = h.b2bua.calls
    h.b2bua.finish(h.b2bua.calls[call_id], h.now)
    (record,) = records.done
    legs = record.body["legs"]
    assert [(leg["kind"], leg["outcome"]) for leg in legs] == [("cloud", "failed"), ("ivr", "answered")]
    assert (legs[0]["q850"], legs[0]["sip_status"]) == (38, 503)
    assert record.body["route"] == "ivr" and not record.body["rescued"]


def test_a_call_with_early_media_from_the_cloud_moves_to_the_ivr() -> None:
    h = Harness(anchor=True)
    b_invite = ringing(h, status=183, body=EARLY)
    early = h.take(CALLER)[-1]
    assert isinstance(early, Response) and early.status == 183 and b"m=audio 30000" in early.body
    drain(h.media_anchor)
    assert lose_cloud(h) == CloudLost(rescued=0, moved=1)
    cancel_of(h, b_invite)
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200
    (session,) = h.sessions
    assert not session.rescued and session.names() == ["start"]
    # The relayed early media is torn down; the IVR plays on a leg of its own toward the caller.
    sets = [c for c in drain(h.media_anchor) if isinstance(c, SetLeg)]
    assert [(c.leg, c.spec.remote) for c in sets] == [("a", ("127.0.0.1", 40000))]


def test_a_200_racing_the_cancel_is_acknowledged_and_hung_up_never_bridged() -> None:
    h = Harness(anchor=True)
    b_invite = ringing(h)
    lose_cloud(h)
    cancel_of(h, b_invite)
    h.take(CALLER)
    (call_id,) = h.b2bua.calls
    drain(h.media_anchor)
    # The cloud had answered before the CANCEL reached it.
    h.send(CLOUD, reply(b_invite, 200, body=ANSWER, contact="<sip:callee@127.0.0.1:5080>"))
    assert [r.method for r in h.requests(CLOUD)] == ["ACK", "BYE"]
    assert h.take(CALLER) == []  # the caller stays with the IVR, its media untouched
    assert drain(h.media_anchor) == [] and h.b2bua.calls[call_id].b is h.b2bua.ivr_legs[call_id]


def test_nothing_back_from_the_cloud_yet_the_cancel_waits_for_a_provisional_response() -> None:
    h = Harness()
    b_invite = ringing(h, status=0)
    h.take(CALLER)
    assert lose_cloud(h) == CloudLost(rescued=0, moved=1)
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200 and len(h.sessions) == 1
    assert h.requests(CLOUD) == []  # §9.1: no CANCEL before a provisional response
    h.send(CLOUD, reply(b_invite, 180))
    cancel_of(h, b_invite)
    assert h.take(CALLER) == []


def test_answered_cloud_calls_are_still_rescued() -> None:
    h = Harness(anchor=True)
    answered(h)
    assert lose_cloud(h) == CloudLost(rescued=1, moved=0)
    (bye,) = [r for r in h.requests(CLOUD) if r.method == "BYE"]
    assert "cause=38" in (bye.headers.get("reason") or "")
    (session,) = h.sessions
    assert session.rescued and h.calls.rescued == 1
    assert h.b2bua.cloud_lost("again", h.now) == CloudLost(rescued=0, moved=0)


def test_calls_to_other_destinations_are_untouched() -> None:
    h = Harness(routes=(("*", ("trunk:sip:127.0.0.1:5082", "ivr:default")),))
    h.send(CALLER, invite())
    (t_invite,) = h.requests(TRUNK2)
    h.send(TRUNK2, reply(t_invite, 180))
    h.take(CALLER)
    assert lose_cloud(h) == CloudLost(rescued=0, moved=0)
    assert h.requests(TRUNK2) == [] and h.take(CALLER) == [] and h.sessions == []
    # An IVR call is not a cloud call either.
    h2 = Harness(cloud="")
    h2.send(CALLER, invite())
    assert lose_cloud(h2) == CloudLost(rescued=0, moved=0) and len(h2.sessions) == 1


def test_a_route_with_only_the_cloud_refuses_the_caller_with_the_outage() -> None:
    h = Harness(routes=(("*", ("cloud",)),))
    b_invite = ringing(h)
    h.take(CALLER)
    assert lose_cloud(h) == CloudLost(rescued=0, moved=1)
    cancel_of(h, b_invite)
    final = [m for m in h.take(CALLER) if isinstance(m, Response)][-1]
    assert final.status == 503 and "Network out of order" in final.reason
    assert not h.b2bua.calls
