"""Call control and the local IVR: calls answered by an IVR session on the caller's media leg, the session's
actions reaching the media worker and the outbox, and answered cloud calls rescued into the IVR."""

from __future__ import annotations

from appliance.calls.b2bua import is_failure
from appliance.calls.causes import Cause
from appliance.calls.ivr_leg import IvrLeg
from appliance.calls.sip_leg import bye_cause
from appliance.ivr.actions import HangUp, Persist, PlayFiles, RecordMessage, SessionEnded, StopMedia
from appliance.media.control_events import (
    Delete,
    Direction,
    DropLeg,
    DtmfEvent,
    MediaTimeout,
    Play,
    PlayDone,
    Record,
    RecordDone,
    SetLeg,
)
from appliance.media.control_events import StopMedia as StopMediaCommand
from appliance.sip.message import Request, Response
from tests.unit import harness
from tests.unit.harness import CALLER, CLOUD, Harness, ScriptedSession, ack_for, in_dialog, invite
from tests.unit.test_b2bua import from_callee
from tests.unit.test_b2bua_media import answered, drain


def ivr_call(h: Harness) -> tuple[str, ScriptedSession, Response]:
    """A call the IVR answers (no cloud configured); returns its id, its session and the caller's 200."""
    h.send(CALLER, invite())
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200
    h.send(CALLER, ack_for(ok, branch="z9hG4bKack1"))
    (call_id,) = h.b2bua.calls
    (session,) = h.sessions
    return call_id, session, ok


def bye_with(b_invite: Request, reason: str | None) -> Request:
    """The cloud's BYE on the B-leg dialog, with ``reason`` as its Reason header."""
    bye = from_callee("BYE", b_invite, branch="z9hG4bKbye9", cseq=9)
    if reason is not None:
        bye.headers.add("Reason", reason)
    return bye


def test_the_ivr_answers_on_its_own_port_and_plays_on_the_callers_leg() -> None:
    h = Harness(cloud="")
    call_id, session, ok = ivr_call(h)
    assert b"m=audio 20000 RTP/AVP 8 101" in ok.body and b"c=IN IP4 127.0.0.1" in ok.body
    set_a, play = drain(h.ivr_media)
    assert isinstance(set_a, SetLeg) and set_a.leg == "a" and set_a.flags == ("dtmf-events",)
    assert (set_a.spec.local_port, set_a.spec.remote, set_a.spec.codec) == (
        20000,
        ("127.0.0.1", 40000),
        "PCMA",
    )
    assert play == Play(call_id, "a", 1, ("/prompts/en/welcome.alaw",), True, False)
    assert session.names() == ["start"] and not session.rescued
    assert h.calls.started == ["ivr"]


def test_worker_events_and_digits_reach_the_session() -> None:
    h = Harness(cloud="")
    call_id, session, _ = ivr_call(h)
    h.b2bua.media_event(call_id, PlayDone(call_id, "a", 1, "barge_in"), h.now)
    h.b2bua.media_event(call_id, DtmfEvent(call_id, "a", "1", 120), h.now)
    done = RecordDone(call_id, "a", "s-vm1", "silence", 4.5, "/var/voicemail/s-vm1.vm", 900, "ab" * 32, "k1")
    h.b2bua.media_event(call_id, done, h.now)
    assert session.inputs[1:] == [
        ("play_done", 1, "barge_in", h.now),
        ("dtmf", "1", h.now),
        ("record_done", "s-vm1", "silence", 4.5,
         {"path": "/var/voicemail/s-vm1.vm", "size": 900, "sha256": "ab" * 32, "key_id": "k1"}, h.now),
    ]  # fmt: skip


def test_session_actions_become_worker_commands_and_outbox_requests() -> None:
    h = Harness(cloud="")
    call_id, session, _ = ivr_call(h)
    drain(h.ivr_media)
    leg = h.b2bua.ivr_legs[call_id]
    session.actions.extend([
        StopMedia(),
        RecordMessage("s-vm1", 60.0, 5.0, True, True),
        Persist(7, "ivr.voicemail", {"call_id": call_id}),
    ])  # fmt: skip
    leg.pump(h.now)
    assert drain(h.ivr_media) == [
        StopMediaCommand(call_id, "a"),
        Record(call_id, "a", "s-vm1", 60.0, 5.0, True, True),
    ]
    assert list(h.b2bua.persist_requests) == [(call_id, 7, "ivr.voicemail", {"call_id": call_id})]
    h.b2bua.persisted(call_id, 7, h.now)
    assert session.inputs[-1] == ("persisted", 7, h.now)


def test_a_refused_play_is_the_end_of_that_playback_for_the_session() -> None:
    h = Harness(cloud="")
    call_id, session, _ = ivr_call(h)
    (_, play) = drain(h.ivr_media)
    h.b2bua.ivr_command_failed(call_id, play, "no such file", h.now)
    assert session.inputs[-1] == ("play_done", 1, "error", h.now)


def test_the_session_hangs_up_with_its_cause() -> None:
    h = Harness(cloud="")
    call_id, session, _ = ivr_call(h)
    drain(h.ivr_media)
    session.actions.append(HangUp(41))
    h.b2bua.ivr_legs[call_id].pump(h.now)
    h._pump()
    (bye,) = [r for r in h.requests(CALLER) if r.method == "BYE"]
    assert "cause=41" in (bye.headers.get("reason") or "")
    assert not h.b2bua.calls and drain(h.ivr_media) == [Delete(call_id)]
    # The session is kept until it says it has ended (its records may still be on their way).
    assert call_id in h.b2bua.ivr_legs
    session.actions.append(SessionEnded())
    h.b2bua.ivr_legs[call_id].pump(h.now)
    assert call_id not in h.b2bua.ivr_legs


def test_a_caller_hanging_up_is_told_to_the_session_which_outlives_the_call() -> None:
    h = Harness(cloud="")
    call_id, session, ok = ivr_call(h)
    h.send(CALLER, in_dialog("BYE", ok, branch="z9hG4bKbye1", cseq=2))
    assert "caller_hung_up" in session.names() and not h.b2bua.calls
    assert isinstance(h.b2bua.ivr_legs[call_id], IvrLeg)
    # A recording stopped by the hang-up still reaches the session, after the call is gone.
    done = RecordDone(call_id, "a", "s-vm1", "stopped", 3.0, "/v/s-vm1.vm", 10, "00" * 32, "k")
    h.b2bua.media_event(call_id, done, h.now)
    assert session.names()[-1] == "record_done"
    # After the hang-up the session's plays go nowhere.
    session.actions.append(PlayFiles(9, ("/x.alaw",), barge_in=False))
    drain(h.ivr_media)
    h.b2bua.ivr_legs[call_id].pump(h.now)
    assert drain(h.ivr_media) == []


def test_an_unknown_flow_is_an_unavailable_destination() -> None:
    h = Harness(cloud="", routes=(("*", ("ivr:nosuch",)),))
    h.send(CALLER, invite())
    final = h.take(CALLER)[-1]
    assert isinstance(final, Response) and final.status == 503


# ------------------------------------------------------------------------------------------- rescue
def test_reason_headers_say_whether_a_bye_is_a_failure() -> None:
    def cause(reason: str | None) -> Cause:
        request = invite()
        if reason is not None:
            request.headers.add("Reason", reason)
        return bye_cause(request)

    assert cause(None).q850 == 16 and not is_failure(cause(None))
    assert cause('Q.850;cause=38;text="Network out of order"') == Cause.from_q850(38, "Network out of order")
    assert is_failure(cause("Q.850;cause=38"))
    assert cause('SIP;cause=503;text="Service Unavailable"').sip_status == 503
    assert not is_failure(cause("Q.850;cause=16")) and not is_failure(cause("Q.850;cause=17"))
    assert cause("Q.850;cause=x, Q.850;cause=41").q850 == 41  # a malformed value is skipped
    assert cause("garbage").q850 == 16


def rescued_setup() -> tuple[Harness, str, Request]:
    h = Harness(anchor=True)
    b_invite, _ = answered(h)
    drain(h.media_anchor)
    (call_id,) = h.b2bua.calls
    return h, call_id, b_invite


def assert_rescued(h: Harness, call_id: str) -> ScriptedSession:
    (session,) = h.sessions
    assert session.rescued and session.names() == ["start"]
    assert [r.method for r in h.requests(CALLER) if r.method in ("BYE", "INVITE", "UPDATE")] == []
    # Leg b goes; leg a stays as it is (its worker already reports digits: the cloud had no
    # telephone-event), and the prompt plays on the port the caller already sends to.
    drop, play = drain(h.media_anchor)
    assert drop == DropLeg(call_id, "b")
    assert isinstance(play, Play) and play.leg == "a" and play.call_id == call_id
    assert h.calls.routed == [("cloud", "ivr")] and h.calls.rescued == 1
    (req,) = [r for r in h.b2bua.persist_requests if r[2] == "call.rescued"]
    assert req[0] == call_id and req[3]["flow"] == "default"
    assert call_id in h.b2bua.calls
    return session


def test_a_cloud_bye_with_a_failure_cause_rescues_the_caller() -> None:
    h, call_id, b_invite = rescued_setup()
    h.send(CLOUD, bye_with(b_invite, 'Q.850;cause=38;text="Network out of order"'))
    assert_rescued(h, call_id)
    assert [m.status for m in h.take(CLOUD) if isinstance(m, Response)] == [200]


def test_a_cloud_bye_without_a_failure_ends_the_call() -> None:
    h, _, b_invite = rescued_setup()
    h.send(CLOUD, bye_with(b_invite, None))
    assert [r.method for r in h.requests(CALLER)] == ["BYE"]
    assert not h.b2bua.calls and h.sessions == []


def test_a_media_timeout_on_the_cloud_leg_rescues_and_releases_the_cloud() -> None:
    h, call_id, _ = rescued_setup()
    h.b2bua.media_event(call_id, MediaTimeout(call_id, "b", Direction.IN, 2.0), h.now)
    h._pump()
    (bye,) = [r for r in h.requests(CLOUD) if r.method == "BYE"]
    assert "cause=102" in (bye.headers.get("reason") or "")
    assert_rescued(h, call_id)


def test_a_cloud_leg_is_watched_with_the_cloud_media_timeout_a_trunk_leg_with_the_workers() -> None:
    h = Harness(anchor=True, routes=(("*", ("cloud", "trunk:sip:127.0.0.1:5082")),))
    assert h.media_anchor is not None
    h.media_anchor.cloud_media_timeout = 2.0
    answered(h)
    specs = {c.leg: c.spec for c in drain(h.media_anchor) if isinstance(c, SetLeg)}
    assert (specs["a"].timeout, specs["b"].timeout) == (None, 2.0)
    # The cloud refuses the next call and the trunk answers it: its leg b keeps the worker's timeout.
    h.send(CALLER, invite(call_id="second@127.0.0.1", branch="z9hG4bKsecond"))
    (b1,) = [r for r in h.requests(CLOUD) if r.method == "INVITE"]
    h.send(CLOUD, harness.reply(b1, 503))
    (b2,) = [r for r in h.requests(harness.TRUNK2) if r.method == "INVITE"]
    h.send(harness.TRUNK2, harness.reply(b2, 200, body=harness.ANSWER, contact="<sip:t@127.0.0.1:5082>"))
    specs = {c.leg: c.spec for c in drain(h.media_anchor) if isinstance(c, SetLeg)}
    assert (specs["a"].timeout, specs["b"].timeout) == (None, None)


def test_a_media_timeout_on_the_callers_leg_ends_the_call() -> None:
    h, call_id, _ = rescued_setup()
    h.b2bua.media_event(call_id, MediaTimeout(call_id, "a", Direction.IN, 2.0), h.now)
    h._pump()
    assert [r.method for r in h.requests(CALLER)] == ["BYE"] and not h.b2bua.calls


def test_wan_loss_rescues_every_answered_cloud_call_at_once() -> None:
    h, call_id, _ = rescued_setup()
    assert h.b2bua.cloud_lost("carrier lost on wan0", h.now).rescued == 1
    h._pump()
    (bye,) = [r for r in h.requests(CLOUD) if r.method == "BYE"]
    assert "cause=38" in (bye.headers.get("reason") or "")
    assert_rescued(h, call_id)
    assert h.b2bua.cloud_lost("again", h.now).rescued == 0  # already in the IVR


def test_without_a_rescue_flow_a_failed_cloud_leg_ends_the_call() -> None:
    h = Harness(anchor=True, rescue_flow=None)
    answered(h)
    (call_id,) = h.b2bua.calls
    assert h.b2bua.cloud_lost("carrier lost", h.now).rescued == 0
    h.b2bua.media_event(call_id, MediaTimeout(call_id, "b", Direction.IN, 2.0), h.now)
    h._pump()
    assert [r.method for r in h.requests(CALLER)] == ["BYE"] and not h.b2bua.calls


def test_a_call_whose_caller_codec_is_not_g711_is_not_rescued() -> None:
    h = Harness(anchor=True)
    h.cloud_online()
    offer = (
        invite()
        .body.replace(b"RTP/AVP 8 0 101", b"RTP/AVP 9 101")
        .replace(b"a=rtpmap:8 PCMA/8000", b"a=rtpmap:9 G722/8000")
    )
    h.send(CALLER, invite(body=offer))
    (b_invite,) = h.requests(CLOUD)
    answer = (
        b"v=0\r\no=callee 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 41000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\na=sendrecv\r\n"
    )
    from tests.unit.harness import reply

    h.send(CLOUD, reply(b_invite, 200, body=answer, contact="<sip:callee@127.0.0.1:5080>"))
    (call_id,) = h.b2bua.calls
    assert h.b2bua.cloud_lost("carrier lost", h.now).rescued == 0
    assert h.sessions == [] and call_id in h.b2bua.calls
