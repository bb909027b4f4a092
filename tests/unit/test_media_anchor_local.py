"""MediaAnchor for the local IVR: callers answered with the appliance as the media end, and relayed calls
whose caller leg the IVR takes over (call rescue)."""

from __future__ import annotations

import pytest

from appliance.calls.b2bua import MediaRefused
from appliance.media.control_events import Delete, DropLeg, Play, SetLeg
from tests.unit.test_media_anchor import anchor, lines, names_only_the_relay, session

CALLER_OFFER = session(
    "127.0.0.11", 40000, "0 8 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=sendrecv",
)  # fmt: skip
NO_EVENTS = session("127.0.0.11", 40000, "8", "a=rtpmap:8 PCMA/8000", "a=sendrecv")
CALLEE_ANSWER = session(
    "127.0.0.12", 50000, "0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16", "a=sendrecv",
)  # fmt: skip


def commands(a: object) -> list[object]:
    queue = a.commands  # type: ignore[attr-defined]
    out = [cmd for _, cmd in queue]
    queue.clear()
    return out


def test_a_local_answer_takes_one_port_and_sets_the_callers_leg() -> None:
    a = anchor()
    body = a.answer_local("c1", CALLER_OFFER)
    assert names_only_the_relay(body)
    assert "m=audio 30000 RTP/AVP 0 101" in lines(body)
    (set_a,) = commands(a)
    assert isinstance(set_a, SetLeg) and set_a.leg == "a" and set_a.flags == ("dtmf-events",)
    assert (set_a.spec.remote, set_a.spec.codec, set_a.spec.codec_pt, set_a.spec.event_pt) == (
        ("127.0.0.11", 40000),
        "PCMU",
        0,
        101,
    )
    assert a.is_local("c1") and a.active == 1
    # One port per IVR call: the next call's leg a gets the next pair.
    a.answer_local("c2", CALLER_OFFER)
    (set_2,) = commands(a)
    assert isinstance(set_2, SetLeg) and set_2.spec.local_port == 30002


def test_a_caller_without_telephone_event_gets_in_band_detection() -> None:
    a = anchor()
    a.answer_local("c1", NO_EVENTS)
    (set_a,) = commands(a)
    assert isinstance(set_a, SetLeg) and set_a.flags == ("dtmf-events", "inband-dtmf")
    assert set_a.spec.event_pt is None


def test_a_reoffer_is_answered_on_the_same_port_and_only_changes_are_sent() -> None:
    a = anchor()
    first = a.answer_local("c1", CALLER_OFFER)
    commands(a)
    assert a.answer_local("c1", CALLER_OFFER) == first and commands(a) == []  # a refresh changes nothing
    moved = CALLER_OFFER.replace(b"40000", b"40010")
    # Our side did not change, so neither does our answer (RFC 3264 §8: same o= version); the worker
    # learns the caller's new port.
    assert a.answer_local("c1", moved) == first
    (set_a,) = commands(a)
    assert isinstance(set_a, SetLeg) and set_a.spec.remote == ("127.0.0.11", 40010)


def test_a_local_call_can_be_played_to_and_is_deleted_with_its_call() -> None:
    a = anchor()
    assert not a.local_command("c1", Play("c1", "a", 1, ("/p.alaw",), True))  # no such call yet
    a.answer_local("c1", CALLER_OFFER)
    commands(a)
    assert a.local_command("c1", Play("c1", "a", 1, ("/p.alaw",), True))
    assert commands(a) == [Play("c1", "a", 1, ("/p.alaw",), True)]
    a.release("c1")
    assert commands(a) == [Delete("c1")] and a.active == 0


@pytest.mark.parametrize(
    "offer",
    [
        b"not sdp",
        session("127.0.0.11", 40000, "9", "a=rtpmap:9 G722/8000"),
        session("127.0.0.11", 40000, "8", "a=rtpmap:8 PCMA/8000", proto="RTP/SAVP"),
    ],
)
def test_offers_the_ivr_cannot_answer_are_refused_with_488(offer: bytes) -> None:
    a = anchor()
    with pytest.raises(MediaRefused) as refused:
        a.answer_local("c1", offer)
    assert refused.value.status == 488


def test_a_relayed_call_is_adopted_on_the_callers_existing_port() -> None:
    a = anchor(slices=[(30000, 30003)])  # two pairs: the relayed call holds both
    a.sdp_from("c1", "a", CALLER_OFFER)
    a.sdp_from("c1", "b", CALLEE_ANSWER)
    before = {c.leg: c for c in commands(a) if isinstance(c, SetLeg)}
    assert before["a"].flags == ()  # both legs have telephone-event: nothing to report while relayed
    assert a.can_adopt_local("c1") and a.adopt_local("c1")
    drop, set_a = commands(a)
    assert drop == DropLeg("c1", "b")
    # Same port and peer as while relayed; from now on every digit is reported for the IVR.
    assert isinstance(set_a, SetLeg) and set_a.spec == before["a"].spec and set_a.flags == ("dtmf-events",)
    assert a.is_local("c1")
    # Leg b's pair went back: a new call can have it.
    a.answer_local("c2", CALLER_OFFER)
    (set_2,) = commands(a)
    assert isinstance(set_2, SetLeg) and set_2.spec.local_port == 30002
    with pytest.raises(MediaRefused):
        a.answer_local("c3", CALLER_OFFER)  # and no other is free


def test_a_call_without_agreed_g711_media_is_not_adopted() -> None:
    a = anchor()
    assert not a.adopt_local("nosuch")
    a.sdp_from("c1", "a", CALLER_OFFER)  # offered, never answered
    assert not a.can_adopt_local("c1") and not a.adopt_local("c1")
    g722 = session("127.0.0.11", 40000, "9", "a=rtpmap:9 G722/8000")
    a.sdp_from("c2", "a", g722)
    a.sdp_from("c2", "b", session("127.0.0.12", 50000, "9", "a=rtpmap:9 G722/8000"))
    commands(a)
    assert not a.adopt_local("c2") and commands(a) == [] and not a.is_local("c2")
