"""Call detail records: one ``call.record`` per call, whatever its outcome, valid against records.cddl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
import pycddl
import pytest

from appliance.calls.cdr import CallRecords, media_stats
from appliance.ivr.actions import HangUp
from appliance.media.control_events import Direction, MediaTimeout, StreamStats
from appliance.sip.message import Response
from tests.unit import harness
from tests.unit.harness import CALLER, CLOUD, TRUNK2, Harness, ack_for, in_dialog, invite, reply
from tests.unit.test_b2bua import from_callee, setup_call

RECORDS = Path(__file__).parents[2] / "appliance" / "calls" / "records.cddl"
WALL0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z: the wall clock when the harness clock reads 0


def schema(rule: str) -> pycddl.Schema:
    return pycddl.Schema(f"root = {rule}\n" + RECORDS.read_text())


CALL_RECORD = schema("call-record")


def recorded(h: Harness, mode: str = "online") -> Harness:
    h.b2bua.cdr = CallRecords(wall=lambda: WALL0 + h.now, mode=lambda: mode)
    return h


def the_record(h: Harness) -> dict[str, Any]:
    (record,) = h.b2bua.cdr.done
    CALL_RECORD.validate_cbor(cbor2.dumps(record.body))
    assert record.call_id == record.body["call_id"]
    assert h.b2bua.cdr.active == 0
    return record.body


def test_a_cloud_call_the_caller_hangs_up() -> None:
    h = recorded(Harness())
    _, ok = setup_call(h)
    h.now = 2.5  # answered at 0.0: no time passes during the setup
    assert not h.b2bua.cdr.done  # nothing before the end
    h.send(CALLER, in_dialog("BYE", ok, branch="z9hG4bKbye1", cseq=2))
    body = the_record(h)
    assert body["route"] == "cloud" and body["direction"] == "inbound"
    assert (body["caller"], body["callee"]) == ("+4930555", "+49301234567")
    assert body["sip_call_id"] == "a-call-1"
    assert body["created"] == "2026-11-18T11:06:40.000Z" and body["created_ts"] == WALL0
    assert body["answered_ts"] == WALL0 and body["ended_ts"] == WALL0 + 2.5
    assert (body["duration"], body["billable"]) == (2.5, 2.5)
    assert (body["disconnect"], body["q850"], body["sip_status"]) == ("caller", 16, 200)
    assert body["mode"] == "online" and body["rescued"] is False and body["ivr_session"] is None
    assert body["legs"] == [
        {"kind": "cloud", "target": "", "started": "2026-11-18T11:06:40.000Z", "outcome": "answered"}
    ]


def test_a_trunk_call_the_callee_hangs_up() -> None:
    h = recorded(Harness(routes=(("*", ("trunk:sip:127.0.0.1:5082",)),)))
    h.send(CALLER, invite())
    (b_invite,) = h.requests(TRUNK2)
    h.send(TRUNK2, reply(b_invite, 200, body=harness.ANSWER, contact="<sip:t@127.0.0.1:5082>"))
    h.advance(30.0)
    bye = from_callee("BYE", b_invite, branch="z9hG4bKbye7", cseq=7)
    h.send(TRUNK2, bye)
    body = the_record(h)
    assert body["route"] == "trunk" and body["disconnect"] == "callee" and body["q850"] == 16
    assert body["billable"] == 30.0
    assert [(leg["kind"], leg["target"], leg["outcome"]) for leg in body["legs"]] == [
        ("trunk", "sip:127.0.0.1:5082", "answered")
    ]


def test_a_busy_destination_refuses_the_call() -> None:
    h = recorded(Harness(routes=(("*", ("trunk:sip:127.0.0.1:5082",)),)))
    h.send(CALLER, invite())
    (b_invite,) = h.requests(TRUNK2)
    h.send(TRUNK2, reply(b_invite, 486))
    body = the_record(h)
    assert body["answered"] is None and body["answered_ts"] is None and body["billable"] == 0.0
    assert (body["disconnect"], body["q850"], body["sip_status"]) == ("callee", 17, 486)
    assert body["legs"][0]["outcome"] == "failed" and body["legs"][0]["sip_status"] == 486


def test_no_route_is_the_appliances_refusal() -> None:
    h = recorded(Harness(routes=(("+1*", ("cloud",)),)))
    h.send(CALLER, invite())
    body = the_record(h)
    assert (body["route"], body["legs"], body["disconnect"]) == ("none", [], "appliance")
    assert (body["q850"], body["sip_status"]) == (3, 404)


def test_a_caller_cancelling_while_it_rings() -> None:
    h = recorded(Harness())
    h.cloud_online()
    a_invite = invite()
    h.send(CALLER, a_invite)
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 180))
    h.take(CALLER)
    headers = a_invite.headers
    cancel = harness.make_request(
        "CANCEL", a_invite.uri, via=headers.get("via") or "", from_=headers.get("from") or "",
        to=headers.get("to") or "", call_id=a_invite.call_id, cseq=1,
    )  # fmt: skip
    h.send(CALLER, cancel)
    body = the_record(h)
    assert body["disconnect"] == "caller" and body["answered"] is None
    assert body["legs"][0]["outcome"] == "cancelled"


def test_a_cloud_failure_falls_over_to_the_local_ivr() -> None:
    h = recorded(Harness())
    make = h.b2bua.local_ivr.sessions
    assert make is not None

    def with_id(*args: Any) -> Any:
        session = make(*args)
        session.session_id = "5e55i0n"  # as IvrSession has it
        return session

    h.b2bua.local_ivr.sessions = with_id
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 503))
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response) and ok.status == 200
    h.send(CALLER, ack_for(ok, branch="z9hG4bKack1"))
    h.advance(4.0)
    (session,) = h.sessions
    session.actions.append(HangUp(41))  # the flow ends the call
    h.b2bua.ivr_legs[session.call_id].pump(h.now)
    h._pump()
    body = the_record(h)
    assert body["route"] == "ivr" and body["ivr_session"] == "5e55i0n"
    assert (body["disconnect"], body["q850"]) == ("appliance", 41)
    assert [(leg["kind"], leg["target"], leg["outcome"]) for leg in body["legs"]] == [
        ("cloud", "", "failed"),
        ("ivr", "default", "answered"),
    ]
    assert body["legs"][0]["sip_status"] == 503 and body["rescued"] is False


def test_the_local_ivr_answers_in_survivable_mode() -> None:
    h = recorded(Harness(cloud=""), mode="survivable")
    h.send(CALLER, invite())
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response)
    h.send(CALLER, ack_for(ok, branch="z9hG4bKack1"))
    h.send(CALLER, in_dialog("BYE", ok, branch="z9hG4bKbye1", cseq=2))
    body = the_record(h)
    assert body["mode"] == "survivable" and body["route"] == "ivr" and body["disconnect"] == "caller"
    assert [(leg["kind"], leg["outcome"]) for leg in body["legs"]] == [("ivr", "answered")]


def test_an_agent_group_without_agents_is_unavailable() -> None:
    h = recorded(Harness(routes=(("*", ("agents:sales", "trunk:sip:127.0.0.1:5082")),)))
    h.send(CALLER, invite())
    (b_invite,) = h.requests(TRUNK2)
    h.send(TRUNK2, reply(b_invite, 404))
    body = the_record(h)
    assert [(leg["kind"], leg["target"], leg["outcome"]) for leg in body["legs"]] == [
        ("agents", "sales", "unavailable"),
        ("trunk", "sip:127.0.0.1:5082", "failed"),
    ]
    assert (body["disconnect"], body["sip_status"], body["route"]) == ("callee", 404, "trunk")


def test_a_rescued_call_says_so_and_ends_on_the_ivr() -> None:
    h = recorded(Harness(anchor=True))
    h.cloud_online()
    h.send(CALLER, invite())
    (b_invite,) = h.requests(CLOUD)
    h.send(CLOUD, reply(b_invite, 200, body=harness.ANSWER, contact="<sip:callee@127.0.0.1:5080>"))
    h.requests(CLOUD)
    ok = h.take(CALLER)[-1]
    assert isinstance(ok, Response)
    h.send(CALLER, ack_for(ok, branch="z9hG4bKack1"))
    (call_id,) = h.b2bua.calls
    h.b2bua.media_event(call_id, MediaTimeout(call_id, "b", Direction.IN, 2.0), h.now)
    h._pump()
    assert not h.b2bua.cdr.done  # the caller is still on the line, now with the IVR
    h.send(CALLER, in_dialog("BYE", ok, branch="z9hG4bKbye1", cseq=2))
    body = the_record(h)
    assert body["rescued"] is True and body["route"] == "ivr" and body["disconnect"] == "caller"
    assert [(leg["kind"], leg["outcome"]) for leg in body["legs"]] == [
        ("cloud", "rescued"),
        ("ivr", "answered"),
    ]
    assert "started" not in body["legs"][1]


def test_a_media_failure_is_the_appliances_release() -> None:
    h = recorded(Harness(anchor=True))
    setup_call(h)
    (call_id,) = h.b2bua.calls
    h.b2bua.media_failed(call_id, "worker died", h.now)
    h._pump()
    body = the_record(h)
    assert (body["disconnect"], body["q850"], body["sip_status"]) == ("appliance", 41, 200)


def test_without_a_wall_clock_no_record_is_kept() -> None:
    h = Harness()
    _, ok = setup_call(h)
    h.send(CALLER, in_dialog("BYE", ok, branch="z9hG4bKbye1", cseq=2))
    assert not h.b2bua.cdr.done and h.b2bua.cdr.active == 0


def test_media_statistics_fit_the_schema() -> None:
    stats = media_stats(
        [StreamStats("a", Direction.IN, 50, 8000, 0, 1.25), StreamStats("b", Direction.OUT, 3, 480, -1, 0.0)]
    )
    body = {"call_id": "c1", "path": "/var/rec/c1.enc", "duration": 1.0, "stats": stats}
    schema("call-recording").validate_cbor(cbor2.dumps(body))


@pytest.mark.parametrize(
    ("rule", "body"),
    [
        ("call-rescued", {"call_id": "c", "from": "cloud", "q850": 38, "reason": "WAN", "flow": "default"}),
        ("mode-changed", {"old": "online", "new": "suspect", "reason": "probe",
                          "at": "2026-11-24T21:30:00.000Z", "since_s": 12.5}),
        ("appliance-started", {"version": "0.1.0", "site": "pop-1"}),
    ],
)  # fmt: skip
def test_the_other_control_bodies_fit_the_schema(rule: str, body: dict[str, Any]) -> None:
    schema(rule).validate_cbor(cbor2.dumps(body))


def test_an_agent_answering_a_call_routed_to_its_group() -> None:
    h = recorded(
        Harness(routes=(("*", ("agents:sales",)),), agent_groups={"sales": ["sip:a1@127.0.0.1:5091"]})
    )
    h.send(CALLER, invite())
    (b_invite,) = h.requests(harness.AGENT1)
    h.send(harness.AGENT1, reply(b_invite, 200, body=harness.ANSWER, contact="<sip:a1@127.0.0.1:5091>"))
    h.advance(3.0)
    h.send(harness.AGENT1, from_callee("BYE", b_invite, branch="z9hG4bKbye3", cseq=3))
    body = the_record(h)
    assert (body["route"], body["disconnect"], body["billable"]) == ("agents", "callee", 3.0)
    assert [(leg["kind"], leg["target"], leg["outcome"]) for leg in body["legs"]] == [
        ("agents", "sales", "answered")
    ]


def test_a_pri_callers_side_may_come_before_the_record_and_is_kept_over_a_callees() -> None:
    records = CallRecords(wall=lambda: WALL0)
    records.pri("c1", span=2, handle=7, side="caller", channel=5)  # its leg is made before the record
    records.begin("c1", "span2/7", "+49301111", "+4930123456", 0.0, lambda n: n)
    records.pri("c1", span=1, handle=3, side="callee", channel=9)  # a tandem call out on span 1
    records.pri_cleared("c1", span=1, handle=3, cause=17, location=2)  # not the caller's side
    records.pri_cleared("c1", span=2, handle=7, cause=16, location=4)
    records.pri_cleared("c1", span=2, handle=7, cause=31, location=2)  # a later clearing message
    record = records.finish("c1", 1.0)
    assert record is not None
    CALL_RECORD.validate_cbor(cbor2.dumps(record.body))
    assert "sip_call_id" not in record.body
    assert record.body["pri"] == {"span": 2, "side": "caller", "handle": 7, "channel": 5, "q850": 16,
                                  "location": 4}  # fmt: skip


def test_a_sip_call_out_on_a_span_keeps_its_call_id_and_learns_the_channel_later() -> None:
    records = CallRecords(wall=lambda: WALL0)
    records.begin("c1", "a-call-1", "+4930555", "+4930123456", 0.0, lambda n: n)
    records.pri("c1", span=1, handle=3, side="callee")
    records.pri("c1", span=1, handle=3, side="callee", channel=9)
    record = records.finish("c1", 1.0)
    assert record is not None
    CALL_RECORD.validate_cbor(cbor2.dumps(record.body))
    assert record.body["sip_call_id"] == "a-call-1"
    assert record.body["pri"] == {"span": 1, "side": "callee", "handle": 3, "channel": 9}


def test_without_a_wall_clock_no_pri_side_is_kept_either() -> None:
    records = CallRecords()
    records.pri("c1", span=1, handle=1, side="caller")
    assert not records._pri_first and records.finish("c1", 0.0) is None
