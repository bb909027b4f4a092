"""The PRI gateway against a real network-side Q.931 machine as the far end, messages passed in memory,
with the real call control (the in-memory appliance of tests.unit.harness) behind it."""

from __future__ import annotations

from appliance.calls.pri_gateway import PriGateway, PriSpans
from appliance.ivr.actions import HangUp
from appliance.pri.numbers import SpanNumbering
from appliance.pri.q931 import Q931
from appliance.pri.q931_events import (
    CallAlerting,
    CallConnected,
    CallOffered,
    CallProceeding,
    CallProgress,
    CallReleased,
    Q931Event,
)
from appliance.pri.q931_model import PartyNumber, Presentation, ProgressDescription, TypeOfNumber
from appliance.sip.message import Request, Response
from tests.unit.harness import ANSWER, CALLER, OFFER, TRUNK2, Harness, ack_for, invite, reply
from tests.unit.test_b2bua import statuses
from tests.unit.test_pri_gateway_leg import FakeTdm

B_CHANNELS = (*range(1, 16), *range(17, 32))
NATIONAL = TypeOfNumber.NATIONAL


class Span:
    """The appliance (call control + gateway, user side) and a network-side far end on one D-channel."""

    def __init__(
        self, routes: tuple[tuple[str, tuple[str, ...]], ...], *, anchor: bool = False, **gateway: float | str
    ) -> None:
        self.h = Harness(routes=routes, cloud="", anchor=anchor)
        self.tdm = FakeTdm()
        self.gw = PriGateway(
            span=1, q931=Q931(side="user", b_channels=B_CHANNELS, span=1), tdm=self.tdm, calls=self.h.b2bua,
            numbering=SpanNumbering("DE", area_code="30"), **gateway,
        )  # fmt: skip
        self.h.b2bua.outbound.pri = PriSpans([self.gw])
        self.far = Q931(side="network", b_channels=B_CHANNELS, span=1)
        self.far.link_established(0.0)
        self.gw.link_established(0.0)
        self.events: list[Q931Event] = []

    @property
    def now(self) -> float:
        return self.h.now

    def exchange(self) -> list[Q931Event]:
        """Pass messages both ways until both sides are quiet; the far end's new events."""
        while True:
            self.h._pump()
            to_gw, to_far = self.far.data_to_send(), self.gw.data_to_send()
            if not to_gw and not to_far:
                break
            for data in to_gw:
                self.gw.receive(data, self.now)
            for data in to_far:
                self.far.receive(data, self.now)
        while (event := self.far.next_event()) is not None:
            self.events.append(event)
        out, self.events = self.events, []
        return out

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while (due := self.gw.get_timer()) is not None and due <= end:
            self.h.now = due
            self.gw.handle_timer(due)
        self.h.now = end

    def call_in(self, digits: str = "30123456", **kwargs: object) -> int:
        calling = PartyNumber("301111", NATIONAL, presentation=Presentation.ALLOWED)
        return self.far.setup(called=PartyNumber(digits, NATIONAL), calling=calling, now=self.now, **kwargs)  # type: ignore[arg-type]


def test_a_pri_caller_is_answered_by_the_local_ivr_and_hangs_up() -> None:
    span = Span((("*", ("ivr:default",)),))
    ref = span.call_in()
    events = span.exchange()
    assert [type(e) for e in events] == [CallProceeding, CallConnected]
    channel = events[0].channel  # type: ignore[union-attr]
    (session,) = span.h.sessions
    assert (session.setup.called, session.setup.calling) == ("+4930123456", "+49301111")
    assert span.h.calls.started == ["ivr"]
    assert span.tdm.commands == [("open", channel, "PCMA"), ("connect", channel, "127.0.0.1", 20000, 8)]
    span.far.disconnect(ref, 16, now=span.now)
    (released,) = span.exchange()
    assert isinstance(released, CallReleased) and released.call == ref
    assert span.tdm.commands[-1] == ("close", channel)
    assert span.h.calls.ended == ["ivr"] and not span.h.b2bua.calls and not span.gw.legs


def test_a_pri_caller_to_a_busy_sip_trunk_is_cleared_with_cause_17() -> None:
    span = Span((("*", ("trunk:sip:127.0.0.1:5082",)),))
    ref = span.call_in()
    assert [type(e) for e in span.exchange()] == [CallProceeding]
    (b_invite,) = span.h.requests(TRUNK2)
    assert b"m=audio 31002 RTP/AVP 8 0" in b_invite.body and b"c=IN IP4 127.0.0.1" in b_invite.body
    assert b"telephone-event" not in b_invite.body and b"a=ptime:20" in b_invite.body
    span.h.send(TRUNK2, reply(b_invite, 486))
    (released,) = span.exchange()
    assert released == CallReleased(ref, 17, released.location, False)  # type: ignore[union-attr]
    assert span.tdm.commands[-1] == ("close", 1)


def test_early_media_from_a_sip_trunk_is_progress_and_alerting_with_progress_indicator_8() -> None:
    span = Span((("*", ("trunk:sip:127.0.0.1:5082",)),))
    ref = span.call_in()
    span.exchange()
    (b_invite,) = span.h.requests(TRUNK2)
    span.h.send(TRUNK2, reply(b_invite, 183, body=ANSWER))
    (progress,) = span.exchange()
    assert progress == CallProgress(ref, (ProgressDescription.IN_BAND_AVAILABLE,))
    assert span.tdm.commands[-1] == ("connect", 1, "127.0.0.1", 41000, 8)
    span.h.send(TRUNK2, reply(b_invite, 180, body=ANSWER))
    (alerting,) = span.exchange()
    assert alerting == CallAlerting(ref, (ProgressDescription.IN_BAND_AVAILABLE,))
    span.h.send(TRUNK2, reply(b_invite, 200, body=ANSWER, contact="<sip:callee@127.0.0.1:5082>"))
    assert [type(e) for e in span.exchange()] == [CallConnected]


def test_overlap_receiving_collects_digits_until_the_number_is_complete() -> None:
    span = Span((("*", ("ivr:default",)),))
    span.call_in("30", sending_complete=False)
    assert [type(e) for e in span.exchange()] == [CallProceeding]  # SETUP ACKNOWLEDGE (overlap)
    assert not span.h.sessions
    ref = next(iter(span.gw._collecting))
    assert ref is not None
    far_ref = 1
    span.far.information(far_ref, "1", now=span.now)
    span.exchange()
    assert not span.h.sessions  # +49301 is not yet a valid number
    span.far.information(far_ref, "23456", now=span.now)
    assert [type(e) for e in span.exchange()] == [CallProceeding, CallConnected]
    assert span.h.sessions[0].setup.called == "+4930123456"


def test_an_incomplete_number_at_the_digit_timeout_is_cleared_with_cause_28() -> None:
    span = Span((("+4930123456", ("ivr:default",)),), digit_timeout=10.0)
    span.call_in("30", sending_complete=False)
    span.exchange()
    span.advance(9.9)
    assert not span.exchange()
    span.advance(0.2)
    (released,) = span.exchange()
    assert isinstance(released, CallReleased) and released.cause == 28


def sip_call_to_span() -> tuple[Span, int, CallOffered]:
    span = Span((("*", ("pri:1",)),))
    span.h.send(CALLER, invite("+4930123456"))
    (offered,) = span.exchange()
    assert isinstance(offered, CallOffered)
    return span, offered.call, offered


def test_a_sip_caller_reaches_the_span_hears_its_tones_and_is_answered() -> None:
    span, ref, offered = sip_call_to_span()
    assert offered.called == PartyNumber("30123456", NATIONAL)
    assert offered.calling is not None and offered.calling.digits == "30555"
    channel = offered.channel
    assert span.tdm.commands == [("open", channel, "PCMA"), ("connect", channel, "127.0.0.1", 40000, 8)]
    span.far.proceeding(ref, now=span.now)
    span.far.alerting(ref, inband=True, now=span.now)
    span.exchange()
    to_caller = span.h.take(CALLER)
    assert statuses(to_caller) == [100, 180]
    ringing = to_caller[-1]
    port = 31000 + 2 * channel
    assert isinstance(ringing, Response) and f"m=audio {port} RTP/AVP 8".encode() in ringing.body
    span.far.connect(ref, now=span.now)
    span.exchange()
    (ok,) = span.h.take(CALLER)
    assert (
        isinstance(ok, Response) and ok.status == 200 and f"m=audio {port} RTP/AVP 8\r\n".encode() in ok.body
    )
    span.h.send(CALLER, ack_for(ok, branch="z9hG4bKack1"))
    span.far.disconnect(ref, 16, now=span.now)
    span.exchange()
    (bye,) = span.h.take(CALLER)
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert span.tdm.commands[-1] == ("close", channel) and span.h.calls.ended == ["pri"]


def test_a_busy_pri_far_end_reaches_the_sip_caller_as_486() -> None:
    span, ref, _ = sip_call_to_span()
    span.far.disconnect(ref, 17, now=span.now)
    span.exchange()
    assert statuses(span.h.take(CALLER)) == [100, 486]


def test_a_sip_caller_hanging_up_clears_the_pri_call() -> None:
    span, ref, _ = sip_call_to_span()
    span.far.alerting(ref, now=span.now)
    span.exchange()
    cancel = invite("+4930123456")
    assert cancel.body == OFFER
    span.h.send(CALLER, _cancel_of(cancel))
    (released,) = span.exchange()
    assert isinstance(released, CallReleased) and released.cause == 16  # RFC 3398: CANCEL → cause 16


def _cancel_of(request: Request) -> Request:
    from appliance.sip.builder import make_request

    return make_request(
        "CANCEL", request.uri, via=request.headers.get("via") or "", from_=request.headers.get("from") or "",
        to=request.headers.get("to") or "", call_id=request.call_id, cseq=request.cseq[0],
    )  # fmt: skip


def test_no_span_up_fails_the_destination_with_503() -> None:
    span = Span((("*", ("pri:1",)),))
    span.gw.link_released(0.0)
    span.h.send(CALLER, invite("+4930123456"))
    assert statuses(span.h.take(CALLER)) == [100, 503]


def test_the_far_end_may_choose_another_b_channel_than_the_one_offered() -> None:
    span = Span((("*", ("pri:1",)),))
    span.h.send(CALLER, invite("+4930123456"))
    # The far end's channel negotiation is the network side's (Q.931 §5.1.2): it answers on channel 9.
    (offered,) = span.exchange()
    assert isinstance(offered, CallOffered) and offered.channel == 1
    assert span.tdm.commands == [("open", 1, "PCMA"), ("connect", 1, "127.0.0.1", 40000, 8)]
    leg = span.gw.legs[next(iter(span.gw.legs))]
    leg.proceeding(9, span.now)
    assert span.tdm.commands[2:] == [("close", 1), ("open", 9, "PCMA"), ("connect", 9, "127.0.0.1", 40000, 8)]


def test_a_withheld_calling_number_reaches_call_control_as_anonymous() -> None:
    span = Span((("*", ("ivr:default",)),))
    hidden = PartyNumber("301111", NATIONAL, presentation=Presentation.RESTRICTED)
    span.far.setup(called=PartyNumber("30123456", NATIONAL), calling=hidden, now=span.now)
    span.exchange()
    assert span.h.sessions[0].setup.calling == ""


def test_an_unreadable_called_number_is_cleared_with_cause_28() -> None:
    span = Span((("*", ("ivr:default",)),))
    span.far.setup(called=PartyNumber("2891234567", TypeOfNumber.INTERNATIONAL), now=span.now)
    (released,) = span.exchange()
    assert isinstance(released, CallReleased) and released.cause == 28 and not span.h.sessions


def test_a_pri_caller_with_no_route_is_cleared_with_cause_3() -> None:
    span = Span((("+4940*", ("ivr:default",)),))
    span.call_in()
    events = span.exchange()
    assert [type(e) for e in events] == [CallProceeding, CallReleased]
    assert events[-1].cause == 3  # type: ignore[union-attr]


def test_losing_the_d_channel_fails_an_unanswered_sip_call_with_503() -> None:
    span, _, offered = sip_call_to_span()
    span.gw.link_released(span.now)  # calls not active are cleared locally with cause 41 (Q.931 §5.8.9)
    span.h._pump()
    assert statuses(span.h.take(CALLER)) == [100, 503]
    assert span.tdm.commands[-1] == ("close", offered.channel)


def test_a_sip_caller_abroad_is_dialled_as_an_international_number() -> None:
    span = Span((("*", ("pri:1",)),))
    span.h.send(CALLER, invite("+6561234567"))
    (offered,) = span.exchange()
    assert isinstance(offered, CallOffered)
    assert offered.called == PartyNumber("6561234567", TypeOfNumber.INTERNATIONAL)


def test_the_ivr_hanging_up_a_pri_caller_sends_disconnect_with_its_cause() -> None:
    span = Span((("*", ("ivr:default",)),))
    ref = span.call_in()
    span.exchange()
    (session,) = span.h.sessions
    session.actions.append(HangUp(16))
    (ivr,) = span.h.b2bua.ivr_legs.values()
    ivr.pump(span.now)
    (released,) = span.exchange()
    assert released == CallReleased(ref, 16, released.location, False)  # type: ignore[union-attr]
    assert span.tdm.commands[-1] == ("close", 1) and not span.gw.legs and not span.h.b2bua.calls


def test_with_media_anchored_the_b_channel_talks_to_the_media_worker_not_to_the_trunk() -> None:
    span = Span((("*", ("trunk:sip:127.0.0.1:5082",)),), anchor=True)
    span.call_in()
    span.exchange()
    (b_invite,) = span.h.requests(TRUNK2)
    assert b"m=audio 31002" not in b_invite.body and b"m=audio 300" in b_invite.body
    span.h.send(TRUNK2, reply(b_invite, 200, body=ANSWER, contact="<sip:callee@127.0.0.1:5082>"))
    assert [type(e) for e in span.exchange()] == [CallConnected]
    (_, _, host, port, payload_type) = span.tdm.commands[-1]
    assert host == "127.0.0.1" and 30000 <= port <= 30099 and port != 41000 and payload_type == 8  # type: ignore[operator]
