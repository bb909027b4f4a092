"""B2BUA call control, in memory: the real core, simulated caller and destinations, a hand-driven clock."""

from __future__ import annotations

import gc
import logging

import pytest

from appliance.sip.builder import make_request
from appliance.sip.events import Peer
from appliance.sip.message import Request, Response
from tests.unit.harness import (
    AGENT1,
    AGENT2,
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


def statuses(messages: list[Request | Response]) -> list[int]:
    return [m.status for m in messages if isinstance(m, Response)]


def setup_call(h: Harness, **kwargs: object) -> tuple[Request, Response]:
    """Caller → appliance → cloud, answered. Returns the cloud-side INVITE and the caller's 200."""
    h.cloud_online()
    h.send(CALLER, invite(**kwargs))  # type: ignore[arg-type]
    assert statuses(h.take(CALLER)) == [100]
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 180))
    h.send(CLOUD, reply(b_invite, 200, body=ANSWER, contact="<sip:callee@127.0.0.1:5080>"))
    (ack,) = h.requests(CLOUD)
    assert ack.method == "ACK"
    to_caller = h.take(CALLER)
    assert statuses(to_caller) == [180, 200]
    ok = to_caller[1]
    assert isinstance(ok, Response)
    h.send(CALLER, ack_for(ok, branch="z9hG4bKack1"))
    return b_invite, ok


def from_callee(method: str, b_invite: Request, *, branch: str, cseq: int, body: bytes = b"") -> Request:
    """A request the cloud sends to the appliance within the B-leg dialog."""
    to = b_invite.headers.get("from") or ""
    return make_request(
        method, "sip:pop@127.0.0.1:5060", via=f"SIP/2.0/UDP 127.0.0.1:5080;branch={branch}",
        from_=f"{b_invite.headers.get('to')};tag=callee1", to=to, call_id=b_invite.call_id, cseq=cseq,
        body=body, content_type="application/sdp" if body else None,
    )  # fmt: skip


def test_call_is_relayed_and_topology_is_hidden() -> None:
    h = Harness()
    b_invite, ok = setup_call(h)
    a_invite = invite()
    assert b_invite.call_id != a_invite.call_id
    assert b_invite.uri == "sip:+49301234567@127.0.0.1:5080"
    b_text = b_invite.to_bytes().decode()
    for leaked in ("5070", "alice1", "a-call-1", "z9hG4bKa1", "alice@"):
        assert leaked not in b_text.split("\r\n\r\n")[0], leaked  # headers carry nothing of the A leg
    assert b_invite.from_.display_name == "Alice"
    assert b_invite.headers.get("max-forwards") == "69"
    ok_text = ok.to_bytes().decode()
    assert "5080" not in ok_text.split("\r\n\r\n")[0] and "callee1" not in ok_text
    assert ok.body == ANSWER
    assert h.calls.started == ["cloud"]


def test_bye_from_caller_is_relayed_and_answered() -> None:
    h = Harness()
    b_invite, ok = setup_call(h)
    h.send(CALLER, in_dialog("BYE", ok, branch="z9hG4bKbye1", cseq=2))
    assert statuses(h.take(CALLER)) == [200]
    (bye,) = h.requests(CLOUD)
    assert bye.method == "BYE" and bye.call_id == b_invite.call_id
    assert bye.uri == "sip:callee@127.0.0.1:5080"  # the remote target from the callee's Contact
    h.send(CLOUD, reply(bye, 200))
    assert h.calls.ended == ["cloud"]
    assert not h.b2bua.calls


def test_bye_from_callee_reaches_caller() -> None:
    h = Harness()
    b_invite, _ = setup_call(h)
    h.send(CLOUD, from_callee("BYE", b_invite, branch="z9hG4bKcb1", cseq=1))
    assert statuses(h.take(CLOUD)) == [200]
    (bye,) = h.requests(CALLER)
    assert bye.method == "BYE" and bye.call_id == "a-call-1"
    assert bye.uri == "sip:alice@127.0.0.1:5070"


def test_failure_fails_over_to_next_destination() -> None:
    h = Harness()
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 503))
    assert [m.method for m in h.requests(CLOUD)] == ["ACK"]
    to_caller = h.take(CALLER)
    assert statuses(to_caller) == [100, 200]  # the local IVR answered
    ok = to_caller[-1]
    assert b"m=audio 20000 RTP/AVP 8" in ok.body
    assert h.calls.routed == [("cloud", "ivr")]
    assert h.ivr_media.active == 1


def test_survivable_mode_skips_the_cloud() -> None:
    h = Harness()  # the first probe is never answered: the appliance stays SURVIVABLE
    h.send(CALLER, invite())
    assert statuses(h.take(CALLER)) == [100, 200]
    assert [m.method for m in h.requests(CLOUD)] == ["OPTIONS"]  # probes only, no INVITE
    assert h.calls.started == ["ivr"]


def test_no_cloud_configured_answers_locally() -> None:
    h = Harness(cloud="")
    h.send(CALLER, invite())
    assert statuses(h.take(CALLER)) == [100, 200]


def test_last_failure_reaches_caller_when_no_destination_is_left() -> None:
    h = Harness(routes=(("*", ("cloud", "trunk:sip:127.0.0.1:5082")),))
    h.cloud_online()
    h.send(CALLER, invite())
    (b1,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b1, 500))
    (b2,) = [r for r in h.requests(TRUNK2) if r.method == "INVITE"]
    h.send(TRUNK2, reply(b2, 486))
    assert statuses(h.take(CALLER)) == [100, 486]


def test_cancel_before_answer() -> None:
    h = Harness()
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 180))
    h.take(CALLER)
    cancel = make_request(
        "CANCEL", "sip:+49301234567@127.0.0.1", via="SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa1;rport",
        from_='"Alice" <sip:+4930555@127.0.0.1:5070>;tag=alice1', to="<sip:+49301234567@127.0.0.1>",
        call_id="a-call-1", cseq=1,
    )  # fmt: skip
    h.send(CALLER, cancel)
    assert statuses(h.take(CALLER)) == [200, 487]
    (b_cancel,) = h.requests(CLOUD)
    assert b_cancel.method == "CANCEL" and b_cancel.top_via.branch == b_invite.top_via.branch
    h.send(CLOUD, reply(b_cancel, 200))
    h.send(CLOUD, reply(b_invite, 487))
    assert [m.method for m in h.requests(CLOUD)] == ["ACK"]
    assert h.take(CALLER) == []  # the 487 from the far side is not relayed twice


def test_reinvite_with_new_offer_is_relayed() -> None:
    h = Harness()
    _, ok = setup_call(h)
    new_offer = (
        b"v=0\r\no=caller 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 40002 RTP/AVP 8\r\n"
    )
    h.send(CALLER, in_dialog("INVITE", ok, branch="z9hG4bKre1", cseq=2, body=new_offer,
                             content_type="application/sdp"))  # fmt: skip
    assert statuses(h.take(CALLER)) == [100]
    (re_b,) = h.requests(CLOUD)
    assert re_b.method == "INVITE" and re_b.body == new_offer and re_b.cseq == (2, "INVITE")
    h.send(CLOUD, reply(re_b, 200, body=ANSWER))
    assert [m.method for m in h.requests(CLOUD)] == ["ACK"]
    (ok2,) = h.take(CALLER)
    assert isinstance(ok2, Response) and ok2.status == 200 and ok2.body == ANSWER


def test_session_refresh_is_answered_locally() -> None:
    h = Harness()
    _, ok = setup_call(h)
    h.send(CALLER, in_dialog("UPDATE", ok, branch="z9hG4bKup1", cseq=2))
    assert statuses(h.take(CALLER)) == [200]
    assert h.requests(CLOUD) == []


def test_info_dtmf_is_relayed() -> None:
    h = Harness()
    _, ok = setup_call(h)
    h.send(CALLER, in_dialog("INFO", ok, branch="z9hG4bKi1", cseq=2, body=b"Signal=5\r\nDuration=160\r\n",
                             content_type="application/dtmf-relay"))  # fmt: skip
    assert statuses(h.take(CALLER)) == [200]
    (info,) = h.requests(CLOUD)
    assert info.method == "INFO" and b"Signal=5" in info.body and b"Duration=160" in info.body


def test_session_timer_expiry_releases_both_legs() -> None:
    h = Harness()
    extra = [("Session-Expires", "120;refresher=uac"), ("Supported", "timer")]
    _, ok = setup_call(h, extra=extra)
    assert ok.headers.get("session-expires") == "120;refresher=uac"
    assert ok.headers.get("require") == "timer"
    # The cloud leg: its 200 had no Session-Expires, so no timer there; the caller must refresh within
    # 120 - min(32, 40) = 88 s.
    h.advance(87.0)
    assert h.requests(CALLER) == []
    h.advance(1.0)  # the BYE goes out at exactly 88 s; its first retransmission would be at 88.5 s
    (bye_a,) = h.requests(CALLER)
    (bye_b,) = [r for r in h.requests(CLOUD) if r.method == "BYE"]
    assert bye_a.method == "BYE" and bye_b.method == "BYE"


def test_session_interval_below_min_se_is_refused() -> None:
    h = Harness()
    h.send(CALLER, invite(extra=[("Session-Expires", "30")]))
    (_, too_small) = h.take(CALLER)
    assert isinstance(too_small, Response) and too_small.status == 422
    assert too_small.headers.get("min-se") == "90"


def test_max_forwards_zero_is_too_many_hops() -> None:
    h = Harness()
    h.send(CALLER, invite(max_forwards=0))
    assert statuses(h.take(CALLER)) == [100, 483]
    assert h.calls.rejects == ["too_many_hops"]


def test_no_answer_timer_c_fails_over() -> None:
    h = Harness()
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 180))
    h.take(CALLER)
    h.advance(180.0)
    (cancel,) = [r for r in h.requests(CLOUD) if r.method == "CANCEL"]
    assert cancel.top_via.branch == b_invite.top_via.branch
    assert statuses(h.take(CALLER)) == [200]  # the IVR took the call


def test_agent_group_forks_and_first_answer_wins() -> None:
    h = Harness(routes=(("1000", ("agents:support",)),), agent_groups={"support": ["1001", "1002"]},
                users={"1001": "pw1", "1002": "pw2"})  # fmt: skip
    for user, peer in (("1001", AGENT1), ("1002", AGENT2)):
        register_agent(h, user, h.users[user], peer)
    h.send(CALLER, invite("1000"))
    (inv1,) = h.requests(AGENT1)
    (inv2,) = h.requests(AGENT2)
    assert inv1.call_id != inv2.call_id
    h.send(AGENT1, reply(inv1, 180, tag="ag1"))
    h.send(AGENT2, reply(inv2, 180, tag="ag2"))
    h.send(AGENT2, reply(inv2, 200, tag="ag2", body=ANSWER, contact="<sip:1002@127.0.0.1:5092>"))
    assert [m.method for m in h.requests(AGENT2)] == ["ACK"]
    (cancel,) = h.requests(AGENT1)
    assert cancel.method == "CANCEL"
    assert statuses(h.take(CALLER))[-1] == 200
    assert h.calls.started == ["agents"]


def register_agent(h: Harness, user: str, password: str, peer: Peer) -> None:
    from appliance.sip.digest import authorization_for, parse_challenge

    def register(cseq: int, auth: str | None) -> Request:
        extra = [("Authorization", auth)] if auth else []
        return make_request(
            "REGISTER", "sip:localhost",
            via=f"SIP/2.0/UDP {peer.host}:{peer.port};branch=z9hG4bKr{user}{cseq}",
            from_=f"<sip:{user}@localhost>;tag=r{user}", to=f"<sip:{user}@localhost>", call_id=f"reg-{user}",
            cseq=cseq, contact=f"<sip:{user}@{peer.host}:{peer.port}>", extra=extra,
        )  # fmt: skip

    h.send(peer, register(1, None))
    (challenge,) = h.take(peer)
    assert isinstance(challenge, Response) and challenge.status == 401
    chal = parse_challenge(challenge.headers.get_all("www-authenticate")[0])
    auth = authorization_for(chal, method="REGISTER", uri="sip:localhost", username=user, password=password,
                             cnonce="abc123")  # fmt: skip
    h.send(peer, register(2, auth))
    (ok,) = h.take(peer)
    assert isinstance(ok, Response) and ok.status == 200


def test_options_unknown_and_unsupported_methods() -> None:
    h = Harness()

    def request(method: str, extra: list[tuple[str, str]] | None = None) -> Request:
        return make_request(
            method, "sip:127.0.0.1", via=f"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{method}",
            from_="<sip:a@127.0.0.1>;tag=x", to="<sip:127.0.0.1>", call_id=f"m-{method}", cseq=1, extra=extra,
        )  # fmt: skip

    h.send(CALLER, request("OPTIONS"))
    h.send(CALLER, request("FOOBAR"))
    h.send(CALLER, request("SUBSCRIBE"))
    h.send(CALLER, request("INVITE", [("Require", "100rel, foo")]))
    responses = [m for m in h.take(CALLER) if isinstance(m, Response) and m.status != 100]
    assert [r.status for r in responses] == [200, 501, 405, 420]
    assert responses[3].headers.get("unsupported") == "100rel, foo"
    assert "INVITE" in (responses[0].headers.get("allow") or "")


def test_call_lifecycle_is_logged_with_the_call_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appliance.calls")
    h = Harness()
    _, ok = setup_call(h)
    h.send(CALLER, in_dialog("BYE", ok, branch="z9hG4bKbye9", cseq=2))
    records = [r for r in caplog.records if r.name == "appliance.calls"]
    messages = [r.getMessage() for r in records]
    assert messages[0] == "call from +4930555 to +49301234567"
    assert "call answered by cloud" in messages
    call_ids = {r.ctx["call"] for r in records}  # type: ignore[attr-defined]
    assert len(call_ids) == 1 and next(iter(call_ids))
    assert records[0].ctx["sip_call_id"] == "a-call-1"  # type: ignore[attr-defined]


def test_early_media_183_is_relayed_with_its_sdp() -> None:
    h = Harness()
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 183, body=ANSWER))
    (_, progress) = h.take(CALLER)
    assert isinstance(progress, Response) and progress.status == 183 and progress.body == ANSWER
    assert progress.to.tag  # an early dialog on the caller's side


def test_update_with_new_offer_from_callee_reaches_caller_as_reinvite() -> None:
    h = Harness()
    b_invite, _ = setup_call(h)
    offer = ANSWER.replace(b"o=callee 2 2", b"o=callee 2 3")
    h.send(CLOUD, from_callee("UPDATE", b_invite, branch="z9hG4bKu2", cseq=5, body=offer))
    (re_a,) = h.requests(CALLER)
    assert re_a.method == "INVITE" and re_a.body == offer and re_a.to.tag == "alice1"
    h.send(CALLER, reply(re_a, 200, tag="alice1", body=invite().body))
    assert [m.method for m in h.requests(CALLER)] == ["ACK"]
    (update_ok,) = h.take(CLOUD)
    assert isinstance(update_ok, Response) and update_ok.status == 200 and update_ok.cseq == (5, "UPDATE")


def test_in_dialog_request_for_unknown_dialog_is_481() -> None:
    h = Harness()
    _, ok = setup_call(h)
    h.send(CALLER, in_dialog("BYE", ok, branch="z9hG4bKb1", cseq=2))
    h.take(CALLER)
    h.send(CALLER, in_dialog("BYE", ok, branch="z9hG4bKb2", cseq=3))
    assert statuses(h.take(CALLER)) == [481]


def test_cseq_going_backwards_in_a_dialog_is_500() -> None:
    h = Harness()
    _, ok = setup_call(h)
    h.send(CALLER, in_dialog("INFO", ok, branch="z9hG4bKi1", cseq=5))
    h.send(CALLER, in_dialog("INFO", ok, branch="z9hG4bKi2", cseq=4))
    assert statuses(h.take(CALLER)) == [200, 500]


def in_call(requests: list[Request]) -> list[Request]:
    """Without the cloud reachability probes, which keep coming while the clock runs."""
    return [r for r in requests if r.method != "OPTIONS"]


def test_appliance_refreshes_the_session_when_the_callee_makes_it_refresher() -> None:
    h = Harness()
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    assert b_invite.headers.get("session-expires") == "1800" and "timer" in (
        b_invite.headers.get("supported") or ""
    )
    h.send(CLOUD, reply(b_invite, 200, body=ANSWER, contact="<sip:callee@127.0.0.1:5080>",
                        extra=[("Session-Expires", "120;refresher=uac"), ("Require", "timer"),
                               ("Allow", "INVITE, ACK, BYE, UPDATE")]))  # fmt: skip
    h.requests(CLOUD)  # the ACK
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response)
    h.send(CALLER, ack_for(ok, branch="z9hG4bKack7"))
    h.advance(59.0)
    assert in_call(h.requests(CLOUD)) == []
    h.advance(1.0)
    (refresh,) = in_call(h.requests(CLOUD))
    assert refresh.method == "UPDATE" and not refresh.body  # RFC 4028 §7.4: half the interval
    h.send(CLOUD, reply(refresh, 200, extra=[("Session-Expires", "120;refresher=uac")]))
    assert h.requests(CALLER) == []  # a refresh is this leg's business only
    h.advance(60.0)
    assert [r.method for r in in_call(h.requests(CLOUD))] == ["UPDATE"]


def test_unacknowledged_answer_ends_the_call() -> None:
    h = Harness()
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 200, body=ANSWER, contact="<sip:callee@127.0.0.1:5080>"))
    h.requests(CLOUD)
    # The caller never ACKs: the 2xx is retransmitted until 64*T1, then the dialog is ended (§13.3.1.4).
    h.advance(31.9)
    oks = [m for m in h.take(CALLER) if isinstance(m, Response) and m.status == 200]
    # The first 200, then retransmissions at 0.5, 1.5, 3.5, 7.5 s and every T2 = 4 s after: up to 31.5 s.
    assert len(oks) == 1 + 10
    assert in_call(h.requests(CLOUD)) == []
    h.advance(0.2)
    assert [r.method for r in in_call(h.requests(CLOUD))] == ["BYE"]
    assert [r.method for r in h.requests(CALLER)] == ["BYE"]


def test_nothing_is_left_behind_after_calls_end() -> None:
    h = Harness(cloud="", routes=(("*", ("trunk:sip:127.0.0.1:5082", "ivr:default")),))
    # The control process runs without the automatic cycle collector: a call must leave no reference
    # cycle behind, or its memory would only come back at the next scheduled collection.
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    for i in range(20):
        h.send(CALLER, invite(branch=f"z9hG4bKleak{i}", call_id=f"leak-{i}"))
        (b,) = [r for r in h.requests(TRUNK2) if r.method == "INVITE"]
        if i % 2:
            h.send(TRUNK2, reply(b, 500))  # half fail over to the IVR
        else:
            h.send(TRUNK2, reply(b, 200, body=ANSWER, contact="<sip:callee@127.0.0.1:5082>"))
        ok = next(m for m in h.take(CALLER) if isinstance(m, Response) and m.status == 200 and m.cseq[0] == 1)
        h.send(CALLER, ack_for(ok, branch=f"z9hG4bKleakack{i}"))
        h.send(CALLER, in_dialog("BYE", ok, branch=f"z9hG4bKleakbye{i}", cseq=2))
        for bye in [r for r in h.requests(TRUNK2) if r.method == "BYE"]:
            h.send(TRUNK2, reply(bye, 200))
    h.advance(60.0)  # every transaction's linger timer (at most 64*T1) has run out
    h.send(CALLER, b"\r\n")  # one more input: the endpoint lets go of its last terminated transactions
    try:
        assert gc.collect() == 0, sorted({type(o).__name__ for o in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert h.endpoint.transaction_count == 0
    assert h.b2bua.calls == {} and h.b2bua.find_leg("leak-0", "x") is None
    assert not h.b2bua._legs
    assert h.endpoint.get_timer() is None and h.b2bua.get_timer() is None
    assert h.ivr_media.active == 0
    assert h.calls.ended.count("trunk") == 10 and h.calls.ended.count("ivr") == 10


def test_session_refresh_is_a_reinvite_with_the_last_sdp_when_update_is_not_allowed() -> None:
    h = Harness()
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 200, body=ANSWER, contact="<sip:callee@127.0.0.1:5080>",
                        extra=[("Session-Expires", "90;refresher=uac"),
                               ("Allow", "INVITE, ACK, BYE")]))  # fmt: skip
    h.requests(CLOUD)
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response)
    h.send(CALLER, ack_for(ok, branch="z9hG4bKack8"))
    h.advance(45.0)
    (refresh,) = in_call(h.requests(CLOUD))
    assert refresh.method == "INVITE" and refresh.body == b_invite.body and refresh.cseq == (2, "INVITE")


def test_delayed_offer_answer_travels_in_the_acks() -> None:
    h = Harness()
    h.cloud_online()
    h.send(CALLER, invite(body=b""))  # no SDP: the callee makes the offer (RFC 3261 §13.2.1)
    (b_invite,) = h.requests(CLOUD)
    assert not b_invite.body
    offer = ANSWER  # the callee's SDP, here an offer
    h.send(CLOUD, reply(b_invite, 200, body=offer, contact="<sip:callee@127.0.0.1:5080>"))
    assert in_call(h.requests(CLOUD)) == []  # the ACK waits for the caller's answer
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200 and ok.body == offer
    h.send(CLOUD, reply(b_invite, 200, body=offer, contact="<sip:callee@127.0.0.1:5080>"))  # retransmitted
    assert in_call(h.requests(CLOUD)) == []
    answer = invite().body
    ack = ack_for(ok, branch="z9hG4bKdack")
    ack.set_body(answer, "application/sdp")
    h.send(CALLER, ack)
    (b_ack,) = in_call(h.requests(CLOUD))
    assert b_ack.method == "ACK" and b_ack.body == answer and b_ack.cseq == (1, "ACK")
    h.send(CLOUD, reply(b_invite, 200, body=offer, contact="<sip:callee@127.0.0.1:5080>"))
    assert [r.body for r in in_call(h.requests(CLOUD))] == [answer]  # the same ACK again
