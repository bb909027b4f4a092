"""Call control with legs that are not SIP: calls placed by a non-SIP caller (B2bua.place_call) and the
``pri:<span>`` destination through an injected dialer (the PRI gateway itself: test_pri_gateway)."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.calls.b2bua import Call, Leg
from appliance.calls.causes import Cause
from appliance.calls.events import Answer, CallEvent, Disconnect, Fail, Ringing, Setup
from appliance.calls.outbound import NO_CIRCUIT
from appliance.sip.message import Response
from tests.unit.harness import ANSWER, CALLER, OFFER, TRUNK2, Harness, ack_for, invite, reply
from tests.unit.test_b2bua import statuses


@dataclass(eq=False)
class FakeLeg:
    """A leg of another protocol: records what call control tells it, reports what a test makes it."""

    call: Call
    route_kind: str
    got: list[CallEvent] = field(default_factory=list)

    def handle(self, event: CallEvent, now: float) -> None:
        self.got.append(event)

    def report(self, event: CallEvent, now: float = 0.0) -> None:
        self.call.from_leg(self, event, now)


@dataclass
class FakeDialer:
    spans: tuple[int, ...] = (1,)
    dialled: list[tuple[int, Setup, FakeLeg]] = field(default_factory=list)

    def dial(self, span: int, call: Call, setup: Setup, now: float) -> Leg | None:
        if span not in self.spans:
            return None
        leg = FakeLeg(call, "pri")
        self.dialled.append((span, setup, leg))
        return leg


def place(h: Harness, called: str = "+49301234567", sdp: bytes | None = OFFER) -> tuple[Call, FakeLeg]:
    legs: list[FakeLeg] = []

    def make(call: Call) -> FakeLeg:
        legs.append(FakeLeg(call, "inbound"))
        return legs[0]

    call = h.b2bua.place_call(make, Setup(called, "+4930555", sdp=sdp), h.now, ref="span1/1")
    return call, legs[0]


def test_a_call_placed_by_a_non_sip_caller_is_routed_and_answered_by_the_ivr() -> None:
    h = Harness(cloud="")
    call, caller = place(h)
    assert call.a is caller and call.id in h.b2bua.calls
    (answer,) = caller.got
    assert isinstance(answer, Answer) and answer.sdp is not None and b"c=IN IP4 127.0.0.1" in answer.sdp
    assert h.calls.started == ["ivr"] and h.sessions[0].setup.called == "+49301234567"
    caller.report(Disconnect(Cause.from_q850(16)))
    assert call.ended and h.calls.ended == ["ivr"] and not h.b2bua.calls


def test_a_call_placed_without_a_route_fails_at_once() -> None:
    h = Harness(routes=(("+4930*", ("ivr:default",)),), cloud="")
    call, caller = place(h, "+4440123456")
    assert call.ended and h.calls.rejects == ["no_route"]
    assert [type(e) for e in caller.got] == [Fail] and caller.got[0].cause.q850 == 3  # type: ignore[union-attr]


def test_a_placed_call_that_hangs_up_while_a_sip_destination_rings_cancels_it() -> None:
    h = Harness(routes=(("*", ("trunk:sip:127.0.0.1:5082",)),), cloud="")
    call, caller = place(h)
    h._pump()  # what call control sent outside a SIP receive
    (b_invite,) = h.requests(TRUNK2)
    assert b_invite.method == "INVITE" and b_invite.body == OFFER
    h.send(TRUNK2, reply(b_invite, 180))
    assert [type(e) for e in caller.got] == [Ringing]
    caller.report(Disconnect(Cause.from_q850(16)))
    h._pump()
    (cancel,) = h.requests(TRUNK2)
    assert cancel.method == "CANCEL" and call.ended


def test_pri_destination_without_a_dialer_fails_with_cause_34_and_the_next_is_tried() -> None:
    h = Harness(routes=(("*", ("pri:1", "ivr:default")),), cloud="")
    h.send(CALLER, invite())  # no dialer: no PRI spans in this build of the appliance
    assert statuses(h.take(CALLER)) == [100, 200]
    assert h.calls.started == ["ivr"]


def sip_call_to_pri(*destinations: str, spans: tuple[int, ...] = (1,)) -> tuple[Harness, FakeDialer]:
    """A SIP caller's INVITE routed to ``destinations``, PRI spans through a fake dialer."""
    h = Harness(routes=(("*", destinations),), cloud="")
    dialer = FakeDialer(spans=spans)
    h.b2bua.outbound.pri = dialer
    h.send(CALLER, invite())
    return h, dialer


def test_pri_destination_alone_without_its_span_answers_503() -> None:
    h, dialer = sip_call_to_pri("pri:2")
    assert statuses(h.take(CALLER)) == [100, 503]
    assert not dialer.dialled and h.calls.started == ["none"]
    assert NO_CIRCUIT.q850 == 34


def test_sip_caller_to_a_pri_span_rings_is_answered_and_the_span_hangs_up_busy() -> None:
    h, dialer = sip_call_to_pri("pri:1")
    ((span, setup, leg),) = dialer.dialled
    assert span == 1 and setup.called == "+49301234567" and setup.sdp == OFFER
    assert h.calls.started == ["pri"]
    leg.report(Ringing(ANSWER))
    leg.report(Answer(ANSWER))
    h._pump()
    to_caller = h.take(CALLER)
    assert statuses(to_caller) == [100, 180, 200]
    ok = to_caller[-1]
    assert isinstance(ok, Response) and ok.body == ANSWER
    h.send(CALLER, ack_for(ok, branch="z9hG4bKack1"))
    leg.report(Disconnect(Cause.from_q850(17)))
    h._pump()
    bye = h.take(CALLER)[-1]
    assert not isinstance(bye, Response) and bye.method == "BYE"
    assert h.calls.ended == ["pri"]


def test_a_pri_span_that_fails_the_call_hands_it_to_the_next_destination() -> None:
    h, dialer = sip_call_to_pri("pri:1", "ivr:default")
    ((_, _, leg),) = dialer.dialled
    leg.report(Fail(Cause.from_q850(34)))
    h._pump()
    assert statuses(h.take(CALLER)) == [100, 200]
    assert h.calls.routed == [("pri", "ivr")]


def test_a_pri_span_busy_reaches_the_sip_caller_as_486() -> None:
    h, dialer = sip_call_to_pri("pri:1")
    ((_, _, leg),) = dialer.dialled
    leg.report(Fail(Cause.from_q850(17)))
    h._pump()
    assert statuses(h.take(CALLER)) == [100, 486]
