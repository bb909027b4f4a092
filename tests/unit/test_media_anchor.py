"""MediaAnchor: the SDP each leg sees, the offer/answer state, and the SetLeg/Delete commands it queues."""

from __future__ import annotations

import base64
import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.calls.b2bua import MediaRefused
from appliance.calls.media_anchor import MediaAnchor, RouteMedia
from appliance.media.control_events import Delete, LegSpec, SetLeg, SrtpKeys
from appliance.media.srtp import parse_crypto
from appliance.media.supervisor import MediaSupervisor
from appliance.sdp import SessionDescription, parse_sdp
from appliance.sdp.errors import SdpError
from tests.unit.test_sdp_properties import PROFILE, VALID_BYTES, sessions

RELAY = "127.0.0.1"
KEY_A = base64.b64encode(bytes(range(30))).decode()
KEY_B = base64.b64encode(bytes(range(30, 60))).decode()


def sdp(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def session(host: str, port: int, formats: str, *attrs: str, proto: str = "RTP/AVP", sess: int = 1,
            ver: int = 1) -> bytes:  # fmt: skip
    return sdp("v=0", f"o=peer {sess} {ver} IN IP4 {host}", "s=-", f"c=IN IP4 {host}", "t=0 0",
               f"m=audio {port} {proto} {formats}", *attrs)  # fmt: skip


OFFER_A = session(
    "10.1.1.1", 40000, "8 0 101", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv",
)  # fmt: skip
ANSWER_B = session(
    "10.2.2.2", 50000, "8 101", "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16", "a=sendrecv",
)  # fmt: skip


def anchor(**kwargs: object) -> MediaAnchor:
    counter = itertools.count(1)
    options: dict[str, object] = {"address": RELAY, "slices": [(30000, 30099)]}
    options.update(kwargs)
    return MediaAnchor(random_bytes=lambda n: bytes([next(counter) % 256]) * n, **options)  # type: ignore[arg-type]


def lines(body: bytes) -> list[str]:
    return body.decode().split("\r\n")[:-1]


def media_lines(body: bytes) -> list[str]:
    out = lines(body)
    return out[next(i for i, line in enumerate(out) if line.startswith("m=")) :]


def set_legs(a: MediaAnchor) -> dict[str, SetLeg]:
    out = {}
    while a.commands:
        worker, cmd = a.commands.popleft()
        assert worker == 0 and isinstance(cmd, SetLeg)
        out[cmd.leg] = cmd
    return out


def names_only_the_relay(body: bytes) -> bool:
    parsed = parse_sdp(body)
    return _relay_only(parsed)


def _relay_only(parsed: SessionDescription) -> bool:
    if parsed.origin.address != RELAY or (parsed.connection and parsed.connection.host != RELAY):
        return False
    for m in parsed.media:
        if any(c.host != RELAY for c in m.connections):
            return False
        rtcp = m.rtcp
        if rtcp is not None and rtcp.connection is not None:
            return False
        if any(a.name in ("candidate", "ice-ufrag", "ice-pwd", "remote-candidates") for a in m.attributes):
            return False
    return True


# --- offer / answer ---------------------------------------------------------------------------------------


def test_offer_and_answer_each_leg_sees_only_the_relay() -> None:
    a = anchor()
    to_b = a.sdp_from("c1", "a", OFFER_A)
    assert lines(to_b) == [
        "v=0", "o=- 54255129628557504 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
        "m=audio 30002 RTP/AVP 8 0 101", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv",
    ]  # fmt: skip
    assert not a.commands  # nothing to relay until the exchange completes
    to_a = a.sdp_from("c1", "b", ANSWER_B)
    assert media_lines(to_a) == [
        "m=audio 30000 RTP/AVP 8 101", "a=sendrecv", "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
    ]  # fmt: skip
    assert names_only_the_relay(to_a) and names_only_the_relay(to_b)
    legs = set_legs(a)
    assert legs["a"] == SetLeg("c1", "a", LegSpec(30000, ("10.1.1.1", 40000), 8, "PCMA", 101))
    assert legs["b"] == SetLeg("c1", "b", LegSpec(30002, ("10.2.2.2", 50000), 8, "PCMA", 101))
    assert a.active == 1


def test_a_cloud_leg_b_gets_the_cloud_media_timeout_and_a_trunk_leg_the_workers() -> None:
    a = anchor(cloud_media_timeout=2.0)
    for call_id, cloud in (("cloud-call", True), ("trunk-call", False)):
        a.configure(call_id, None)
        a.mark_cloud(call_id, cloud)
        a.sdp_from(call_id, "a", OFFER_A)
        a.sdp_from(call_id, "b", ANSWER_B)
    legs: dict[str, dict[str, LegSpec]] = {}
    while a.commands:
        _, cmd = a.commands.popleft()
        assert isinstance(cmd, SetLeg)
        legs.setdefault(cmd.call_id, {})[cmd.leg] = cmd.spec
    assert legs["cloud-call"]["b"].timeout == 2.0
    assert legs["cloud-call"]["a"].timeout is None  # the caller keeps the worker's timeout
    assert legs["trunk-call"]["a"].timeout is None and legs["trunk-call"]["b"].timeout is None
    # A call that falls back from the cloud to a trunk (or agents) before the answer: the worker's.
    a.configure("fallback", None)
    a.mark_cloud("fallback", True)
    a.sdp_from("fallback", "a", OFFER_A)
    a.mark_cloud("fallback", False)
    a.sdp_from("fallback", "b", ANSWER_B)
    assert all(cmd.spec.timeout is None for _, cmd in a.commands if isinstance(cmd, SetLeg))
    a.mark_cloud("not-anchored", True)  # ignored
    assert not a.has("not-anchored")
    with pytest.raises(ValueError, match="cloud_media_timeout"):
        anchor(cloud_media_timeout=0.0)


def test_delayed_offer_the_callee_offers_and_the_callers_ack_answers() -> None:
    a = anchor()
    a.configure("c1", None)
    to_a = a.sdp_from("c1", "b", ANSWER_B)  # the callee's 200 carries the offer
    assert media_lines(to_a)[0] == "m=audio 30000 RTP/AVP 8 101 0"  # µ-law added: the relay transcodes
    answer = session("10.1.1.1", 40000, "8 101", "a=rtpmap:101 telephone-event/8000")
    to_b = a.sdp_from("c1", "a", answer)  # the caller's ACK answers it
    assert media_lines(to_b)[0] == "m=audio 30002 RTP/AVP 8 101"
    legs = set_legs(a)
    assert legs["a"].spec.remote == ("10.1.1.1", 40000) and legs["b"].spec.remote == ("10.2.2.2", 50000)
    assert legs["a"].spec.codec == legs["b"].spec.codec == "PCMA"


def test_early_media_then_answer_re_answers_the_same_offer() -> None:
    a = anchor()
    a.sdp_from("c1", "a", OFFER_A)
    early = a.sdp_from("c1", "b", ANSWER_B)  # 183
    assert set_legs(a)["b"].spec.remote == ("10.2.2.2", 50000)
    assert a.sdp_from("c1", "b", ANSWER_B) == early  # 200 with the same SDP: same version, nothing to do
    assert not a.commands
    moved = session("10.3.3.3", 52000, "0", sess=9)  # 200 from another fork, another codec
    final = a.sdp_from("c1", "b", moved)
    assert lines(final)[1].endswith(" 2 IN IP4 127.0.0.1")  # RFC 3264 §8: a changed description, new version
    assert media_lines(final)[0] == "m=audio 30000 RTP/AVP 0 101"  # the caller keeps its events
    legs = set_legs(a)
    assert legs["b"].spec == LegSpec(30002, ("10.3.3.3", 52000), 0, "PCMU", None)
    assert legs["a"].spec == LegSpec(30000, ("10.1.1.1", 40000), 0, "PCMU", 101)
    assert legs["a"].flags == ("dtmf-events",) and a.wants_info("c1", "b")


def test_reinvite_hold_and_resume() -> None:
    a = anchor()
    a.sdp_from("c1", "a", OFFER_A)
    a.sdp_from("c1", "b", ANSWER_B)
    set_legs(a)
    hold = session("10.2.2.2", 50000, "8 101", "a=rtpmap:101 telephone-event/8000", "a=sendonly", ver=2)
    to_a = a.sdp_from("c1", "b", hold, offer=True)  # b's re-INVITE
    assert "a=sendonly" in media_lines(to_a) and names_only_the_relay(to_a)
    held = session("10.1.1.1", 40000, "8 101", "a=rtpmap:101 telephone-event/8000", "a=recvonly", ver=2)
    to_b = a.sdp_from("c1", "a", held)
    assert "a=recvonly" in media_lines(to_b)
    legs = set_legs(a)
    assert legs["a"].spec.hold and legs["b"].spec.hold
    resume = session("10.2.2.2", 50000, "8 101", "a=rtpmap:101 telephone-event/8000", ver=3)
    a.sdp_from("c1", "b", resume, offer=True)
    a.sdp_from("c1", "a", session("10.1.1.1", 40000, "8 101", "a=rtpmap:101 telephone-event/8000", ver=3))
    legs = set_legs(a)
    assert not legs["a"].spec.hold and not legs["b"].spec.hold


def test_hold_with_a_null_address_keeps_the_relay_address_and_sends_nothing() -> None:
    a = anchor()
    a.sdp_from("c1", "a", OFFER_A)
    a.sdp_from("c1", "b", ANSWER_B)
    set_legs(a)
    old_hold = session("0.0.0.0", 40000, "8", ver=2)
    to_b = a.sdp_from("c1", "a", old_hold, offer=True)
    assert "c=IN IP4 127.0.0.1" in lines(to_b) and "a=sendonly" in media_lines(to_b)
    a.sdp_from("c1", "b", session("10.2.2.2", 50000, "8", "a=recvonly", ver=2))
    legs = set_legs(a)
    assert legs["a"].spec.remote is None and legs["a"].spec.hold


def test_each_leg_keeps_its_own_payload_type_numbers() -> None:
    a = anchor()
    a.sdp_from("c1", "a", OFFER_A)
    # The callee answers telephone-event under its own number (RFC 3264 §6.1 asks it not to; many do).
    renumbered = session("10.2.2.2", 50000, "8 100", "a=rtpmap:100 telephone-event/8000", "a=fmtp:100 0-15")
    to_a = a.sdp_from("c1", "b", renumbered)
    assert media_lines(to_a)[0] == "m=audio 30000 RTP/AVP 8 101"  # the caller's own number
    assert "a=fmtp:101 0-16" in media_lines(to_a)
    legs = set_legs(a)
    assert (legs["a"].spec.event_pt, legs["b"].spec.event_pt) == (101, 100)
    # A re-INVITE from the callee with its numbering: the caller answers in it.
    a.sdp_from("c1", "b", session("10.2.2.2", 50000, "96 8", "a=rtpmap:96 telephone-event/8000", ver=2),
               offer=True)  # fmt: skip
    to_b = a.sdp_from(
        "c1", "a", session("10.1.1.1", 40000, "8 96", "a=rtpmap:96 telephone-event/8000", ver=2)
    )
    assert media_lines(to_b)[0] == "m=audio 30002 RTP/AVP 8 96"
    legs = set_legs(a)
    assert (legs["a"].spec.event_pt, legs["b"].spec.event_pt) == (96, 96)
    assert legs["b"].spec.codec_pt == 8


def test_transcoding_appends_the_other_g711_law_and_answers_in_the_offered_one() -> None:
    a = anchor()
    alaw_only = session("10.1.1.1", 40000, "8 101", "a=rtpmap:101 telephone-event/8000")
    to_b = a.sdp_from("c1", "a", alaw_only)
    assert media_lines(to_b)[:2] == ["m=audio 30002 RTP/AVP 8 101 0", "a=rtpmap:101 telephone-event/8000"]
    assert "a=rtpmap:0 PCMU/8000" in media_lines(to_b)
    to_a = a.sdp_from("c1", "b", session("10.2.2.2", 50000, "0 101", "a=rtpmap:101 telephone-event/8000"))
    assert media_lines(to_a)[0] == "m=audio 30000 RTP/AVP 8 101"
    legs = set_legs(a)
    assert (legs["a"].spec.codec, legs["b"].spec.codec) == ("PCMA", "PCMU")


def test_without_transcoding_an_answer_in_the_other_law_is_refused() -> None:
    a = anchor(transcode=False)
    to_b = a.sdp_from("c1", "a", session("10.1.1.1", 40000, "8"))
    assert media_lines(to_b)[0] == "m=audio 30002 RTP/AVP 8"
    with pytest.raises(MediaRefused) as info:
        a.sdp_from("c1", "b", session("10.2.2.2", 50000, "0"))
    assert info.value.status == 488


def test_srtp_caller_is_bridged_to_a_plain_rtp_callee() -> None:
    a = anchor()
    a.configure("c1", RouteMedia(srtp="off"))
    offer = session("10.1.1.1", 40000, "8", f"a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}",
                    proto="RTP/SAVP")  # fmt: skip
    to_b = a.sdp_from("c1", "a", offer)
    assert media_lines(to_b) == ["m=audio 30002 RTP/AVP 8 0", "a=rtpmap:0 PCMU/8000"]  # no keys for plain RTP
    to_a = a.sdp_from("c1", "b", session("10.2.2.2", 50000, "8"))
    ours = [x for x in media_lines(to_a) if x.startswith("a=crypto:")]
    assert media_lines(to_a)[0] == "m=audio 30000 RTP/SAVP 8" and len(ours) == 1
    crypto = parse_crypto(ours[0].removeprefix("a=crypto:"))
    assert crypto.tag == 7 and crypto.suite == "AES_CM_128_HMAC_SHA1_80"  # the offered tag (RFC 4568 §7.1.2)
    legs = set_legs(a)
    assert legs["a"].spec.srtp == SrtpKeys(
        "AES_CM_128_HMAC_SHA1_80", base64.b64encode(crypto.key).decode(), KEY_A
    )
    assert legs["b"].spec.srtp is None


def test_plain_caller_gets_an_srtp_callee_when_the_route_asks_for_sdes() -> None:
    a = anchor(transcode=False)
    a.configure("c1", RouteMedia(srtp="sdes"))
    to_b = a.sdp_from("c1", "a", session("10.1.1.1", 40000, "8"))
    assert media_lines(to_b)[0] == "m=audio 30002 RTP/SAVP 8"
    (ours,) = [x for x in media_lines(to_b) if x.startswith("a=crypto:1 ")]
    answer = session("10.2.2.2", 50000, "8", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}",
                     proto="RTP/SAVP")  # fmt: skip
    to_a = a.sdp_from("c1", "b", answer)
    assert media_lines(to_a) == ["m=audio 30000 RTP/AVP 8", "a=rtpmap:8 PCMA/8000"]
    legs = set_legs(a)
    key = base64.b64encode(parse_crypto(ours.removeprefix("a=crypto:")).key).decode()
    assert legs["b"].spec.srtp == SrtpKeys("AES_CM_128_HMAC_SHA1_80", key, KEY_B)


def test_srtp_follows_the_caller_with_fresh_keys_on_each_leg() -> None:
    a = anchor(transcode=False)
    offer = session("10.1.1.1", 40000, "8", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}",
                    proto="RTP/SAVP")  # fmt: skip
    to_b = a.sdp_from("c1", "a", offer)
    assert media_lines(to_b)[0] == "m=audio 30002 RTP/SAVP 8"
    assert KEY_A not in to_b.decode()  # a key protects one hop only (RFC 4568 §5)
    with pytest.raises(MediaRefused) as info:
        a.sdp_from("c1", "b", session("10.2.2.2", 50000, "8", proto="RTP/SAVP"))
    assert info.value.status == 488


def test_ice_attributes_are_stripped() -> None:
    a = anchor(transcode=False)
    offer = session(
        "10.1.1.1", 40000, "8", "a=ice-ufrag:abcd", "a=ice-pwd:0123456789012345678901",
        "a=candidate:1 1 udp 2122260223 10.1.1.1 40000 typ host", "a=end-of-candidates",
    )  # fmt: skip
    to_b = a.sdp_from("c1", "a", offer)
    assert media_lines(to_b) == ["m=audio 30002 RTP/AVP 8"]
    assert "10.1.1.1" not in to_b.decode()


def test_session_name_and_contacts_of_the_other_side_are_not_forwarded() -> None:
    a = anchor()
    offer = sdp(
        "v=0", "o=alice 1 1 IN IP4 10.1.1.1", "s=Alice's PBX pbx1.corp", "i=internal", "u=http://corp/x",
        "e=alice@corp", "p=+4930555", "c=IN IP4 10.1.1.1", "t=0 0", "m=audio 40000 RTP/AVP 8",
    )  # fmt: skip
    assert lines(a.sdp_from("c1", "a", offer))[:5] == [
        "v=0", "o=- 54255129628557504 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
    ]  # fmt: skip


def test_slices_come_from_the_supervisor(tmp_path: Path) -> None:
    sup = MediaSupervisor(2, RELAY, (20000, 29999), tmp_path)
    assert sup.slices == [(20000, 24999), (25000, 29999)]
    a = anchor(slices=sup.slices, worker_for=sup.worker_for)
    a.sdp_from("call-7", "a", OFFER_A)
    low, high = sup.slices[sup.worker_for("call-7")]
    assert a.calls_on(sup.worker_for("call-7")) == ["call-7"]
    port = int(media_lines(a.sdp_from("call-7", "b", ANSWER_B))[0].split()[1])
    assert low <= port <= high


def test_other_streams_are_forwarded_disabled() -> None:
    a = anchor()
    offer = OFFER_A + b"m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    to_b = a.sdp_from("c1", "a", offer)
    assert "m=video 0 RTP/AVP 96" in lines(to_b)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"v=0\r\nthis is not SDP\r\n", "SDP:"),
        (session("10.1.1.1", 0, "8"), "no RTP/AVP or RTP/SAVP audio stream"),
        (sdp("v=0", "o=p 1 1 IN IP4 10.1.1.1", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 8"), "c= line"),
        (session("pbx.example", 40000, "8"), "not an IP address"),
        (session("10.1.1.1", 40000, "8", "a=crypto:1 F8_128_HMAC_SHA1_80 inline:x", proto="RTP/SAVP"),
         "no usable a=crypto"),
        (session("10.1.1.1", 40000, "8", proto="UDP/TLS/RTP/SAVPF"), "no RTP/AVP or RTP/SAVP audio stream"),
        (session("10.1.1.1", 40000, "99"), "no known payload format"),
    ],
)  # fmt: skip
def test_sdp_that_cannot_be_negotiated_is_488(body: bytes, reason: str) -> None:
    a = anchor()
    with pytest.raises(MediaRefused) as info:
        a.sdp_from("c1", "a", body)
    assert info.value.status == 488 and reason in info.value.reason


def test_an_answer_with_a_codec_that_was_not_offered_is_488() -> None:
    a = anchor()
    a.sdp_from("c1", "a", OFFER_A)
    with pytest.raises(MediaRefused) as info:
        a.sdp_from("c1", "b", session("10.2.2.2", 50000, "18", "a=rtpmap:18 G729/8000"))
    assert info.value.status == 488 and "G729" in info.value.reason
    with pytest.raises(MediaRefused):
        a.sdp_from("c1", "b", session("10.2.2.2", 0, "8"))  # the audio stream refused


def test_ports_exhausted_is_503_and_release_gives_them_back() -> None:
    a = anchor(slices=[(30000, 30003)])  # two RTP/RTCP pairs: one call
    a.sdp_from("c1", "a", OFFER_A)
    with pytest.raises(MediaRefused) as info:
        a.sdp_from("c2", "a", OFFER_A)
    assert info.value.status == 503
    a.sdp_from("c1", "b", ANSWER_B)
    set_legs(a)
    a.release("c1")
    assert list(a.commands) == [(0, Delete("c1"))] and a.active == 0
    a.commands.clear()
    a.sdp_from("c2", "a", OFFER_A)
    a.release("c2")
    assert not a.commands  # the worker never heard of c2: nothing to delete


def test_calls_are_spread_over_the_worker_slices() -> None:
    a = anchor(slices=[(30000, 30099), (30100, 30199)], worker_for=lambda cid: int(cid[-1]) % 2)
    assert media_lines(a.sdp_from("c1", "a", OFFER_A))[0].startswith("m=audio 3010")
    a.sdp_from("c1", "b", ANSWER_B)
    assert {w for w, _ in a.commands} == {1}
    assert a.calls_on(1) == ["c1"] and a.calls_on(0) == []


def test_a_rejected_reoffer_keeps_the_agreed_media() -> None:
    a = anchor()
    a.sdp_from("c1", "a", OFFER_A)
    a.sdp_from("c1", "b", ANSWER_B)
    set_legs(a)
    a.sdp_from("c1", "b", session("10.2.2.2", 50000, "0", ver=2), offer=True)
    a.reject("c1")  # the caller answered the re-INVITE with 488
    # The next SDP from the caller is a new offer, not an answer to the withdrawn one.
    to_b = a.sdp_from("c1", "a", session("10.1.1.1", 40002, "8", ver=2), offer=True)
    assert media_lines(to_b)[0].startswith("m=audio 30002 ")
    assert not a.commands


def test_record_and_dtmf_event_flags() -> None:
    a = anchor(record=True)
    a.sdp_from("c1", "a", OFFER_A)
    a.sdp_from("c1", "b", session("10.2.2.2", 50000, "8"))  # no telephone-event: wants SIP INFO
    legs = set_legs(a)
    assert legs["a"].flags == legs["b"].flags == ("record", "dtmf-events")
    assert a.wants_info("c1", "b") and not a.wants_info("c1", "a")


# --- property: any SDP the parser accepts -----------------------------------------------------------------


def _check(a: MediaAnchor, call_id: str, leg: str, body: bytes) -> None:
    try:
        out = a.sdp_from(call_id, leg, body)
    except MediaRefused as exc:
        assert exc.status in (488, 503)
        return
    assert names_only_the_relay(out)


@PROFILE
@given(sessions, st.sampled_from(VALID_BYTES))
def test_any_parsed_sdp_is_anchored_to_the_relay_or_refused(
    generated: SessionDescription, valid: bytes
) -> None:
    a = anchor()
    for n, body in enumerate((generated.to_bytes(), valid, OFFER_A)):
        try:
            parse_sdp(body)
        except SdpError:
            continue
        _check(a, f"c{n}", "a", body)  # as an offer
        _check(a, f"c{n}", "b", body)  # and as its answer
        a.release(f"c{n}")
    assert a.active == 0


@PROFILE
@given(st.data())
def test_mutated_offers_and_answers_are_anchored_or_refused(data: st.DataObject) -> None:
    """Lines dropped or duplicated, addresses and ports replaced: an offer/answer pair either anchors to
    the relay or is refused with 488/503, whichever leg writes first."""
    a = anchor()
    bodies = []
    for base in (data.draw(st.sampled_from([*VALID_BYTES, OFFER_A])), ANSWER_B):
        kept = base.splitlines(keepends=True)
        for _ in range(data.draw(st.integers(0, 3))):
            if not kept:
                break
            i = data.draw(st.integers(0, len(kept) - 1))
            action = data.draw(st.sampled_from(["drop", "dup", "host", "port"]))
            if action == "drop":
                del kept[i]
            elif action == "dup":
                kept.insert(i, kept[i])
            elif action == "host":
                host = data.draw(st.sampled_from([b"0.0.0.0", b"::", b"10.9.9.9", b"host.invalid"]))
                kept[i] = kept[i].replace(b"127.0.0.1", host).replace(b"10.1.1.1", host)
            else:
                kept[i] = kept[i].replace(b"40000", str(data.draw(st.integers(0, 65535))).encode())
        bodies.append(b"".join(kept))
    first = data.draw(st.sampled_from(["a", "b"]))
    second = "b" if first == "a" else "a"
    for leg, body in ((first, bodies[0]), (second, bodies[1])):
        _check(a, "c1", leg, body)
    a.release("c1")
    assert a.active == 0
