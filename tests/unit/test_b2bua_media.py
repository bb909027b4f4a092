"""B2BUA with a MediaAnchor: the SDP each side sees names only the relay, and the relay is told each leg."""

from __future__ import annotations

from appliance.calls.media_anchor import MediaAnchor, RouteMedia
from appliance.media.control_events import Delete, Direction, DtmfEvent, MediaTimeout, SetLeg
from appliance.sip.message import Request, Response
from tests.unit.harness import (
    ANSWER,
    CALLER,
    CLOUD,
    TRUNK2,
    Harness,
    ack_for,
    in_dialog,
    invite,
    reply,
)
from tests.unit.test_b2bua import from_callee, in_call, statuses

CALLER_MEDIA = b"m=audio 40000 "
CALLEE_MEDIA = b"m=audio 41000 "


def hidden(body: bytes) -> bool:
    """The body names the relay only: neither side's RTP port and no originator but '-'."""
    return CALLER_MEDIA not in body and CALLEE_MEDIA not in body and b"o=- " in body


def drain(anchor: MediaAnchor | None) -> list[SetLeg | Delete]:
    assert anchor is not None
    out = [cmd for _, cmd in anchor.commands]
    anchor.commands.clear()
    return out


def answered(h: Harness) -> tuple[Request, Response]:
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 200, body=ANSWER, contact="<sip:callee@127.0.0.1:5080>"))
    h.requests(CLOUD)
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200
    h.send(CALLER, ack_for(ok, branch="z9hG4bKack1"))
    return b_invite, ok


def test_both_sides_see_the_relay_and_each_leg_is_set() -> None:
    h = Harness(anchor=True)
    b_invite, ok = answered(h)
    assert b"m=audio 30002 RTP/AVP 8 0 101" in b_invite.body and hidden(b_invite.body)
    assert b"m=audio 30000 RTP/AVP 8 101" in ok.body and hidden(ok.body)
    a, b = drain(h.media_anchor)
    assert isinstance(a, SetLeg) and isinstance(b, SetLeg)
    assert (a.leg, a.spec.local_port, a.spec.remote) == ("a", 30000, ("127.0.0.1", 40000))
    assert (b.leg, b.spec.local_port, b.spec.remote) == ("b", 30002, ("127.0.0.1", 41000))
    assert a.call_id == b.call_id == next(iter(h.b2bua.calls))


def test_without_an_anchor_sdp_passes_untouched() -> None:
    h = Harness()
    b_invite, ok = answered(h)
    assert b_invite.body == invite().body and ok.body == ANSWER


def test_early_media_then_answer() -> None:
    h = Harness(anchor=True)
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 183, body=ANSWER))
    progress = h.take(CALLER)[-1]
    assert isinstance(progress, Response) and progress.status == 183 and hidden(progress.body)
    assert [c.leg for c in drain(h.media_anchor) if isinstance(c, SetLeg)] == ["a", "b"]
    moved = ANSWER.replace(b"41000", b"41010")
    h.send(CLOUD, reply(b_invite, 200, body=moved, contact="<sip:callee@127.0.0.1:5080>"))
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200 and b"m=audio 30000 " in ok.body
    (b,) = drain(h.media_anchor)
    assert isinstance(b, SetLeg) and b.leg == "b" and b.spec.remote == ("127.0.0.1", 41010)


def test_delayed_offer_is_anchored_both_ways_through_the_acks() -> None:
    h = Harness(anchor=True)
    h.cloud_online()
    h.send(CALLER, invite(body=b""))
    (b_invite,) = h.requests(CLOUD)
    assert not b_invite.body
    h.send(CLOUD, reply(b_invite, 200, body=ANSWER, contact="<sip:callee@127.0.0.1:5080>"))
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response) and b"m=audio 30000 " in ok.body and hidden(ok.body)
    ack = ack_for(ok, branch="z9hG4bKdack")
    ack.set_body(invite().body, "application/sdp")
    h.send(CALLER, ack)
    (b_ack,) = in_call(h.requests(CLOUD))
    assert b_ack.method == "ACK" and b"m=audio 30002 " in b_ack.body and hidden(b_ack.body)
    assert [c.leg for c in drain(h.media_anchor) if isinstance(c, SetLeg)] == ["a", "b"]


def test_reinvite_hold_from_the_caller_is_anchored() -> None:
    h = Harness(anchor=True)
    _, ok = answered(h)
    drain(h.media_anchor)
    hold = invite().body.replace(b"o=caller 1 1", b"o=caller 1 2").replace(b"a=sendrecv", b"a=sendonly")
    h.send(CALLER, in_dialog("INVITE", ok, branch="z9hG4bKre1", cseq=2, body=hold,
                             content_type="application/sdp"))  # fmt: skip
    (re_b,) = h.requests(CLOUD)
    assert re_b.method == "INVITE" and b"a=sendonly" in re_b.body and hidden(re_b.body)
    h.send(CLOUD, reply(re_b, 200, body=ANSWER.replace(b"a=sendrecv", b"a=recvonly")))
    ok2 = h.take(CALLER)[-1]
    assert isinstance(ok2, Response) and ok2.status == 200 and b"a=recvonly" in ok2.body and hidden(ok2.body)
    legs = {c.leg: c for c in drain(h.media_anchor) if isinstance(c, SetLeg)}
    assert legs["a"].spec.hold and legs["b"].spec.hold


def test_update_from_the_callee_is_anchored_towards_the_caller() -> None:
    h = Harness(anchor=True)
    b_invite, _ = answered(h)
    drain(h.media_anchor)
    offer = ANSWER.replace(b"o=callee 2 2", b"o=callee 2 3").replace(b"41000", b"41020")
    h.send(CLOUD, from_callee("UPDATE", b_invite, branch="z9hG4bKu2", cseq=5, body=offer))
    (re_a,) = h.requests(CALLER)
    assert re_a.method == "INVITE" and b"m=audio 30000 " in re_a.body and hidden(re_a.body)
    h.send(CALLER, reply(re_a, 200, tag="alice1", body=invite().body))
    update_ok = h.take(CLOUD)[-1]
    assert isinstance(update_ok, Response) and update_ok.status == 200 and hidden(update_ok.body)
    legs = {c.leg: c for c in drain(h.media_anchor) if isinstance(c, SetLeg)}
    assert legs["b"].spec.remote == ("127.0.0.1", 41020)


def test_a_reoffer_that_cannot_be_anchored_is_refused_and_the_call_stays() -> None:
    h = Harness(anchor=True)
    _, ok = answered(h)
    bad = (
        b"v=0\r\no=caller 1 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=video 5 RTP/AVP 96\r\n"
    )
    h.send(CALLER, in_dialog("INVITE", ok, branch="z9hG4bKre2", cseq=2, body=bad,
                             content_type="application/sdp"))  # fmt: skip
    assert statuses(h.take(CALLER)) == [100, 488]
    assert h.requests(CLOUD) == [] and len(h.b2bua.calls) == 1


def test_failover_reuses_the_anchored_offer() -> None:
    h = Harness(anchor=True, routes=(("*", ("cloud", "trunk:sip:127.0.0.1:5082")),))
    h.cloud_online()
    h.send(CALLER, invite())
    (b1,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b1, 503))
    (b2,) = [r for r in h.requests(TRUNK2) if r.method == "INVITE"]
    assert b2.body == b1.body and hidden(b2.body)
    h.send(TRUNK2, reply(b2, 200, body=ANSWER, contact="<sip:t@127.0.0.1:5082>"))
    assert statuses(h.take(CALLER)) == [100, 200]


def test_local_ivr_answers_on_a_fresh_port_and_only_the_callers_leg_is_set() -> None:
    h = Harness(anchor=True)
    h.cloud_online()
    h.send(CALLER, invite())
    (b1,) = h.requests(CLOUD)
    assert h.media_anchor is not None and h.media_anchor.active == 1
    h.send(CLOUD, reply(b1, 503))
    ok = h.take(CALLER)[-1]
    # The relayed attempt's two ports went back; the IVR answered on one port of its own.
    assert isinstance(ok, Response) and b"m=audio 30004 RTP/AVP 8 101" in ok.body and hidden(ok.body)
    set_a, *rest = drain(h.media_anchor)
    assert isinstance(set_a, SetLeg) and set_a.leg == "a" and set_a.spec.remote == ("127.0.0.1", 40000)
    assert set_a.flags == ("dtmf-events",) and h.media_anchor.active == 1
    assert all(c.leg == "a" for c in rest)  # the session's prompt, on the caller's leg


def test_an_offer_that_cannot_be_anchored_fails_the_relayed_destination() -> None:
    h = Harness(anchor=True, routes=(("*", ("cloud",)),))
    h.cloud_online()
    h.send(CALLER, invite(body=invite().body.replace(b"RTP/AVP", b"UDP/TLS/RTP/SAVPF")))
    assert statuses(h.take(CALLER)) == [100, 488]
    assert h.requests(CLOUD) == []


def test_route_media_options_reach_the_relay() -> None:
    h = Harness(anchor=True, route_media={"*": RouteMedia(srtp="sdes", record=True)})
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    assert b"RTP/SAVP" in b_invite.body and b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in b_invite.body
    key = "inline:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"
    srtp_answer = (
        ANSWER.replace(b"RTP/AVP", b"RTP/SAVP") + f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {key}\r\n".encode()
    )
    h.send(CLOUD, reply(b_invite, 200, body=srtp_answer, contact="<sip:callee@127.0.0.1:5080>"))
    ok = h.take(CALLER)[-1]
    assert (
        isinstance(ok, Response) and ok.status == 200 and b"RTP/AVP" in ok.body and b"crypto" not in ok.body
    )
    legs = {c.leg: c for c in drain(h.media_anchor) if isinstance(c, SetLeg)}
    assert legs["b"].spec.srtp is not None and legs["a"].spec.srtp is None
    assert "record" in legs["a"].flags


def test_an_srtp_callee_answering_plain_rtp_fails_the_call_with_488() -> None:
    h = Harness(anchor=True, routes=(("*", ("cloud",)),), route_media={"*": RouteMedia(srtp="sdes")})
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 200, body=ANSWER, contact="<sip:callee@127.0.0.1:5080>"))
    assert statuses(h.take(CALLER)) == [100, 488]
    assert [r.method for r in in_call(h.requests(CLOUD))] == ["ACK", "BYE"]
    assert not h.b2bua.calls


def test_media_timeout_ends_an_answered_call_on_both_legs() -> None:
    h = Harness(anchor=True, rescue_flow=None)
    answered(h)
    drain(h.media_anchor)
    (call_id,) = h.b2bua.calls
    h.b2bua.media_event(call_id, MediaTimeout(call_id, "b", Direction.IN, 30.0), h.now)
    h._pump()
    for peer in (CALLER, CLOUD):
        (bye,) = [r for r in h.requests(peer) if r.method == "BYE"]
        assert bye.headers.get("reason") == 'Q.850;cause=102;text="Media timeout"'
    assert not h.b2bua.calls and drain(h.media_anchor) == [Delete(call_id)]


def test_a_lost_worker_ends_the_call() -> None:
    h = Harness(anchor=True)
    answered(h)
    (call_id,) = h.b2bua.calls
    h.b2bua.media_failed(call_id, "media worker 0 died", h.now)
    h._pump()
    (bye,) = [r for r in h.requests(CLOUD) if r.method == "BYE"]
    assert "cause=41" in (bye.headers.get("reason") or "")
    assert not h.b2bua.calls


def test_worker_dtmf_reaches_only_a_leg_without_telephone_event_as_info() -> None:
    h = Harness(anchor=True)
    answered(h)  # the caller negotiated telephone-event, the callee's answer has none
    (call_id,) = h.b2bua.calls
    h.b2bua.media_event(call_id, DtmfEvent(call_id, "a", "5", 160), h.now)
    h._pump()
    (info,) = in_call(h.requests(CLOUD))
    assert info.method == "INFO" and b"Signal=5" in info.body
    h.b2bua.media_event(call_id, DtmfEvent(call_id, "b", "7", 100), h.now)
    h._pump()
    assert in_call(h.requests(CALLER)) == []  # the caller gets RFC 4733 packets from the relay


def test_relay_commands_are_collected_before_the_sdp_that_names_the_relay_is_sent() -> None:
    seen: list[tuple[int, int]] = []  # (commands waiting, messages already out to the caller) at each send
    made: list[Harness] = []

    def before_send() -> None:
        if made and made[0].media_anchor is not None:
            seen.append((len(made[0].media_anchor.commands), len(made[0].inbox.get(CALLER, []))))

    h = Harness(anchor=True, before_send=before_send)
    made.append(h)
    answered(h)
    # The send that carried the caller's 200 with the relay's SDP found both SetLegs waiting.
    assert (2, 1) in seen
