"""The PRI gateway's interworking with SIP (RFC 3398) against a real network-side Q.931 machine as the far
end: announcements on DISCONNECT, media the B-channel cannot carry, delayed offers, the call record of a
PRI call, withheld numbers, 180 versus 183 and causes both ways."""

from __future__ import annotations

from typing import Any

import cbor2

from appliance.calls.cdr import CallRecords
from appliance.pri.q931_events import CallOffered, CallReleased
from appliance.pri.q931_model import Location, PartyNumber, Presentation, ProgressDescription
from appliance.sip.builder import make_request
from appliance.sip.message import Request, Response
from tests.unit.harness import ANSWER, CALLER, TRUNK2, ack_for, in_dialog, invite, reply
from tests.unit.test_b2bua import statuses
from tests.unit.test_cdr import CALL_RECORD, WALL0
from tests.unit.test_pri_gateway import NATIONAL, Span

G729 = ANSWER.replace(b"RTP/AVP 8", b"RTP/AVP 18").replace(b"a=rtpmap:8 PCMA", b"a=rtpmap:18 G729")
# The network side clears with its own location (Q.850 §2.2.3: public network serving the local user).
NETWORK = int(Location.PUBLIC_LOCAL)


def to_span(**gateway: float | str) -> tuple[Span, int, CallOffered]:
    span = Span((("*", ("pri:1",)),), **gateway)
    span.h.b2bua.cdr = CallRecords(wall=lambda: WALL0 + span.now)
    span.h.send(CALLER, invite("+4930123456"))
    (offered,) = span.exchange()
    assert isinstance(offered, CallOffered)
    span.far.proceeding(offered.call, now=span.now)
    span.exchange()
    return span, offered.call, offered


def run_far_end(span: Span, seconds: float) -> None:
    """Time passes for the far end and the appliance alike (the far end's T306 included)."""
    end = span.now + seconds
    while True:
        due = [t for t in (span.gw.get_timer(), span.far.get_timer()) if t is not None and t <= end]
        if not due:
            break
        span.h.now = min(due)
        span.gw.handle_timer(span.now)
        span.far.handle_timer(span.now)
        span.exchange()
    span.h.now = end


def the_record(span: Span) -> dict[str, Any]:
    (record,) = span.h.b2bua.cdr.done
    CALL_RECORD.validate_cbor(cbor2.dumps(record.body))
    return record.body


# ---------------------------------------------------------------------------- announcements (gap 1)
def test_an_announcement_before_answer_is_early_media_and_the_far_ends_release_the_final_status() -> None:
    span, ref, offered = to_span()
    span.far.alerting(ref, now=span.now)
    span.far.disconnect(ref, 1, inband=True, now=span.now)  # "the number you have dialled ..."
    assert not span.exchange()  # the call stays while the announcement plays
    to_caller = span.h.take(CALLER)
    assert statuses(to_caller) == [100, 180, 183]
    port = 31000 + 2 * offered.channel
    assert f"m=audio {port} RTP/AVP 8".encode() in to_caller[-1].body
    assert span.tdm.commands[-1] == ("connect", offered.channel, "127.0.0.1", 40000, 8)  # still relayed
    run_far_end(span, 29.0)
    assert not span.h.take(CALLER)
    run_far_end(span, 2.0)  # the far end's T306: RELEASE, cause as in its DISCONNECT
    (final,) = span.h.take(CALLER)
    assert isinstance(final, Response) and (final.status, final.reason) == (404, "Unallocated number")
    # RFC 6432: the PSTN's cause in the final response too, with its location (RFC 8606)
    assert final.headers.get("reason") == 'Q.850;cause=1;text="Unallocated number";location=LN'
    assert span.tdm.commands[-1] == ("close", offered.channel) and not span.gw.legs
    pri = the_record(span)["pri"]
    assert pri == {"span": 1, "side": "callee", "handle": ref, "channel": offered.channel, "q850": 1,
                   "location": NETWORK}  # fmt: skip


def test_an_announcement_the_far_end_never_ends_is_cut_at_the_configured_bound() -> None:
    span, ref, _ = to_span(announcement_timeout=5.0)
    span.far.disconnect(ref, 17, inband=True, now=span.now)
    span.exchange()
    assert statuses(span.h.take(CALLER)) == [100, 183]
    span.advance(4.9)  # the appliance's timers only: the far end keeps playing
    assert not span.exchange() and not span.h.take(CALLER)
    span.advance(0.2)
    (released,) = span.exchange()  # our RELEASE with the far end's cause
    assert isinstance(released, CallReleased) and released.cause == 17
    assert statuses(span.h.take(CALLER)) == [486]


def test_an_announcement_after_answer_keeps_the_audio_until_the_far_end_releases() -> None:
    span, ref, offered = to_span()
    span.far.connect(ref, now=span.now)
    span.exchange()
    ok = span.h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200
    span.h.send(CALLER, ack_for(ok, branch="z9hG4bKack1"))
    span.far.disconnect(ref, 16, inband=True, now=span.now)
    span.exchange()
    assert not span.h.take(CALLER) and span.tdm.commands[-1][0] == "connect"
    run_far_end(span, 31.0)
    (bye,) = span.h.take(CALLER)
    assert isinstance(bye, Request) and bye.method == "BYE"
    # RFC 3326 §2 with the location as received (RFC 8606: LN, the public network serving the local user)
    assert bye.headers.get("reason") == 'Q.850;cause=16;text="Normal call clearing";location=LN'
    assert span.tdm.commands[-1] == ("close", offered.channel)


def test_the_sip_caller_hanging_up_during_an_announcement_releases_the_pri_call() -> None:
    span, ref, _ = to_span()
    span.far.disconnect(ref, 17, inband=True, now=span.now)
    span.exchange()
    span.h.take(CALLER)
    cancel = invite("+4930123456")
    from tests.unit.test_pri_gateway import _cancel_of

    span.h.send(CALLER, _cancel_of(cancel))
    (released,) = span.exchange()
    # The far end started the clearing (its DISCONNECT): the release is local to it.
    assert released == CallReleased(ref, 17, NETWORK, True)  # type: ignore[union-attr]
    assert not span.gw.legs and span.gw.get_timer() is None


# ---------------------------------------------------------------------------- media failures (gap 2)
def test_an_offer_without_g711_is_refused_with_488_and_nothing_reaches_the_span() -> None:
    span = Span((("*", ("pri:1",)),))
    span.h.send(CALLER, invite("+4930123456", body=G729.replace(b"41000", b"40000")))
    (final,) = [m for m in span.h.take(CALLER) if isinstance(m, Response) and m.status >= 200]
    assert final.status == 488 and final.reason == "Bearer capability not implemented"
    assert not span.exchange() and not span.tdm.commands


def test_a_delayed_offer_is_dialled_and_the_b_channel_offers_in_the_200() -> None:
    span = Span((("*", ("pri:1",)),))
    span.h.send(CALLER, invite("+4930123456", body=b""))
    (offered,) = span.exchange()
    assert isinstance(offered, CallOffered)
    ref, channel = offered.call, offered.channel
    assert span.tdm.commands == [("open", channel, "PCMA")]  # nowhere to send to yet
    span.far.alerting(ref, inband=True, now=span.now)
    span.exchange()
    to_caller = span.h.take(CALLER)
    assert statuses(to_caller) == [100, 180] and not to_caller[-1].body  # no offer in an unreliable 18x
    span.far.connect(ref, now=span.now)
    span.exchange()
    (ok,) = span.h.take(CALLER)
    assert isinstance(ok, Response) and f"m=audio {31000 + 2 * channel} RTP/AVP 8 0\r\n".encode() in ok.body
    span.h.send(CALLER, in_dialog("ACK", ok, branch="z9hG4bKack1", cseq=1, body=ANSWER,
                                  content_type="application/sdp"))  # fmt: skip
    assert span.tdm.commands[-1] == ("connect", channel, "127.0.0.1", 41000, 8)
    assert not span.exchange()


def test_a_delayed_offer_answered_without_g711_clears_both_sides_with_cause_65() -> None:
    span = Span((("*", ("pri:1",)),))
    span.h.send(CALLER, invite("+4930123456", body=b""))
    (offered,) = span.exchange()
    span.far.connect(offered.call, now=span.now)  # type: ignore[union-attr]
    span.exchange()
    ok = span.h.take(CALLER)[-1]
    assert isinstance(ok, Response)
    span.h.send(CALLER, in_dialog("ACK", ok, branch="z9hG4bKack1", cseq=1, body=G729,
                                  content_type="application/sdp"))  # fmt: skip
    (released,) = span.exchange()
    assert isinstance(released, CallReleased) and released.cause == 65
    (bye,) = span.h.take(CALLER)
    assert (
        isinstance(bye, Request) and bye.method == "BYE" and "cause=65" in (bye.headers.get("reason") or "")
    )


def test_a_sip_callee_answering_a_pri_caller_without_g711_clears_the_pri_call_with_cause_65() -> None:
    span = Span((("*", ("trunk:sip:127.0.0.1:5082",)),))
    ref = span.call_in()
    span.exchange()
    (b_invite,) = span.h.requests(TRUNK2)
    span.h.send(TRUNK2, reply(b_invite, 200, body=G729, contact="<sip:callee@127.0.0.1:5082>"))
    (released,) = span.exchange()
    assert released == CallReleased(ref, 65, released.location, False)  # type: ignore[union-attr]
    sent = span.h.take(TRUNK2)
    assert [m.method for m in sent if isinstance(m, Request)] == ["ACK", "BYE"]
    assert not span.h.b2bua.calls and not span.gw.legs


# -------------------------------------------------------------------------------- call records (gap 3)
def test_a_pri_callers_record_has_its_span_side_and_no_sip_call_id() -> None:
    span = Span((("*", ("ivr:default",)),))
    span.h.b2bua.cdr = CallRecords(wall=lambda: WALL0 + span.now)
    ref = span.call_in()
    span.exchange()
    span.far.disconnect(ref, 16, now=span.now)
    span.exchange()
    body = the_record(span)
    assert "sip_call_id" not in body and body["caller"] == "+49301111" and body["callee"] == "+4930123456"
    assert body["pri"] == {"span": 1, "side": "caller", "handle": ref, "channel": 1, "q850": 16,
                           "location": NETWORK}  # fmt: skip
    assert (body["route"], body["disconnect"]) == ("ivr", "caller")


def test_a_pri_caller_without_a_route_is_recorded_too() -> None:
    span = Span((("+4940*", ("ivr:default",)),))
    span.h.b2bua.cdr = CallRecords(wall=lambda: WALL0 + span.now)
    ref = span.call_in()
    span.exchange()
    body = the_record(span)
    assert body["pri"] == {"span": 1, "side": "caller", "handle": ref, "channel": 1}  # we cleared it
    assert "sip_call_id" not in body and body["q850"] == 3


def test_a_sip_callers_record_keeps_its_call_id_and_adds_the_span_it_went_out_on() -> None:
    span, ref, offered = to_span()
    span.far.disconnect(ref, 17, now=span.now)
    span.exchange()
    body = the_record(span)
    assert body["sip_call_id"] == "a-call-1" and body["q850"] == 17 and body["sip_status"] == 486
    assert body["pri"] == {"span": 1, "side": "callee", "handle": ref, "channel": offered.channel, "q850": 17,
                           "location": NETWORK}  # fmt: skip


# ------------------------------------------------------------------------------- RFC 3398 (gap 4)
def test_a_withheld_pri_caller_reaches_a_sip_trunk_as_anonymous() -> None:
    span = Span((("*", ("trunk:sip:127.0.0.1:5082",)),))
    hidden = PartyNumber("301111", NATIONAL, presentation=Presentation.RESTRICTED)
    span.far.setup(called=PartyNumber("30123456", NATIONAL), calling=hidden, now=span.now)
    span.exchange()
    (b_invite,) = span.h.requests(TRUNK2)
    from_ = b_invite.headers.get("from") or ""
    assert from_.startswith("<sip:anonymous@") and "301111" not in str(b_invite.headers)


def test_progress_with_in_band_tones_is_183_and_other_progress_says_nothing() -> None:
    span, ref, offered = to_span()
    span.far.progress(ref, ProgressDescription.DESTINATION_NOT_ISDN, now=span.now)
    span.exchange()
    assert statuses(span.h.take(CALLER)) == [100]
    span.far.progress(ref, ProgressDescription.NOT_END_TO_END_ISDN, now=span.now)  # PI 1: tones in-band
    span.exchange()
    (progress,) = span.h.take(CALLER)
    assert isinstance(progress, Response) and progress.status == 183
    assert f"m=audio {31000 + 2 * offered.channel} RTP/AVP 8".encode() in progress.body
    span.far.alerting(ref, now=span.now)  # ALERTING: the called user is alerted, 180 (§8.2.3)
    span.exchange()
    assert statuses(span.h.take(CALLER)) == [180]


def test_the_far_ends_cause_is_the_final_status_and_its_name_the_reason_phrase() -> None:
    for cause, status in ((1, 404), (17, 486), (21, 403), (28, 484), (34, 503), (65, 488), (102, 504)):
        span, ref, _ = to_span()
        span.far.disconnect(ref, cause, now=span.now)
        span.exchange()
        (_, final) = span.h.take(CALLER)
        assert isinstance(final, Response) and final.status == status, cause


def test_a_sip_refusal_reaches_the_far_end_as_its_rfc_3398_cause() -> None:
    for status, cause in ((404, 1), (486, 17), (480, 18), (403, 21), (484, 28), (503, 41), (488, 127)):
        span = Span((("*", ("trunk:sip:127.0.0.1:5082",)),))
        ref = span.call_in()
        span.exchange()
        (b_invite,) = span.h.requests(TRUNK2)
        span.h.send(TRUNK2, reply(b_invite, status))
        (released,) = span.exchange()
        assert released == CallReleased(ref, cause, released.location, False), status  # type: ignore[union-attr]


def test_a_connect_is_200_with_the_b_channels_sdp() -> None:
    span, ref, offered = to_span()
    span.far.alerting(ref, now=span.now)
    span.exchange()
    assert statuses(span.h.take(CALLER)) == [100, 180]
    span.far.connect(ref, now=span.now)
    span.exchange()
    ok = span.h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200
    assert f"m=audio {31000 + 2 * offered.channel} RTP/AVP 8\r\n".encode() in ok.body
    assert b"c=IN IP4 127.0.0.1" in ok.body


def test_a_sip_callers_bye_with_a_q850_reason_reaches_the_far_end_as_that_cause_from_the_user() -> None:
    span, ref, _ = to_span()
    span.far.connect(ref, now=span.now)
    span.exchange()
    ok = span.h.take(CALLER)[-1]
    assert isinstance(ok, Response)
    span.h.send(CALLER, ack_for(ok, branch="z9hG4bKack1"))
    bye = in_dialog("BYE", ok, branch="z9hG4bKbye1", cseq=2, extra=[("Reason", 'Q.850;cause=21;text="x"')])
    span.h.send(CALLER, bye)
    (released,) = span.exchange()
    # RFC 3326: the Reason's cause, not the BYE's default 16; we are the user side (Q.850 location 0)
    assert released == CallReleased(ref, 21, int(Location.USER), False)  # type: ignore[union-attr]


def test_a_cause_the_appliance_chose_carries_no_location_to_sip() -> None:
    span, _, _ = to_span()
    span.gw.link_released(span.now)  # the machine clears the call itself with cause 41
    span.h._pump()
    final = span.h.take(CALLER)[-1]
    assert isinstance(final, Response) and (final.status, final.reason) == (503, "Temporary failure")
    assert final.headers.get("reason") is None
    assert the_record(span)["pri"].get("q850") is None


def test_an_anonymous_sip_caller_reaches_the_span_presentation_restricted() -> None:
    span = Span((("*", ("pri:1",)),))
    request = invite("+4930123456")
    anonymous = make_request(
        "INVITE", request.uri, via=request.headers.get("via") or "", to=request.headers.get("to") or "",
        from_='"Anonymous" <sip:anonymous@anonymous.invalid>;tag=anon1', call_id="anon-call",
        cseq=1, contact="<sip:anonymous@127.0.0.1:5070>", body=request.body, content_type="application/sdp",
    )  # fmt: skip
    span.h.send(CALLER, anonymous)
    (offered,) = span.exchange()
    assert isinstance(offered, CallOffered) and offered.calling is not None
    # RFC 3398 §7.2.1.1 (SIP → ISUP, read for DSS1): no number, presentation restricted (Q.931 §4.5.10)
    assert (offered.calling.digits, offered.calling.presentation) == ("", Presentation.RESTRICTED)
    assert offered.display is None  # nor a name: the user side sends no display (EN 300 403-1 §3.1.14)


def test_a_delayed_offer_with_media_anchored_joins_the_b_channel_to_the_media_worker() -> None:
    span = Span((("*", ("pri:1",)),), anchor=True)
    span.h.send(CALLER, invite("+4930123456", body=b""))
    (offered,) = span.exchange()
    assert isinstance(offered, CallOffered)
    span.far.connect(offered.call, now=span.now)
    span.exchange()
    ok = span.h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200 and b"RTP/AVP 8 0\r\n" in ok.body
    assert b"m=audio 31002" not in ok.body  # the anchor's port, not the B-channel's
    span.h.send(CALLER, in_dialog("ACK", ok, branch="z9hG4bKack1", cseq=1, body=ANSWER,
                                  content_type="application/sdp"))  # fmt: skip
    (_, _, host, port, payload_type) = span.tdm.commands[-1]
    assert host == "127.0.0.1" and 30000 <= port <= 30099 and payload_type == 8  # type: ignore[operator]


def test_a_caller_still_dialling_who_clears_with_an_announcement_is_released_at_once() -> None:
    span = Span((("*", ("ivr:default",)),))
    ref = span.call_in("30", sending_complete=False)
    span.exchange()  # SETUP ACKNOWLEDGE: overlap receiving
    span.far.disconnect(ref, 16, inband=True, now=span.now)
    (released,) = span.exchange()
    assert isinstance(released, CallReleased) and released.cause == 16
    assert not span.gw._collecting and span.gw.get_timer() is None
    span.advance(20.0)  # the digit timeout no longer runs
    assert not span.exchange() and not span.h.sessions
