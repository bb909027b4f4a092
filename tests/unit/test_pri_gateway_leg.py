"""A PRI leg on its own: call-control events → Q.931 commands and TDM commands, and the span's events →
call-control events with RFC 3398 causes, against a recording double of the Q.931 machine."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from appliance.calls.causes import Cause
from appliance.calls.events import (
    Answer,
    CallEvent,
    Disconnect,
    Dtmf,
    Fail,
    Progress,
    Ringing,
    Setup,
    Update,
    UpdateAnswer,
    UpdateRejected,
)
from appliance.calls.pri_gateway import PriSpans
from appliance.calls.pri_leg import ANNOUNCEMENT_TIMEOUT, NO_G711, PriLeg, q850_cause, remote_media, tdm_sdp
from appliance.pri.errors import LocalProtocolError
from appliance.pri.q931_model import ProgressDescription
from tests.unit.harness import ANSWER, OFFER

PI8 = (ProgressDescription.IN_BAND_AVAILABLE,)
PCMU_ONLY = ANSWER.replace(b"RTP/AVP 8", b"RTP/AVP 0").replace(b"a=rtpmap:8 PCMA", b"a=rtpmap:0 PCMU")


@dataclass
class FakeTdm:
    """The span's TDM worker as the commands queued to it; timeslot t has RTP port 31000 + 2t."""

    commands: list[tuple[object, ...]] = field(default_factory=list)

    def open(self, timeslot: int, codec: str) -> None:
        self.commands.append(("open", timeslot, codec))

    def connect(self, timeslot: int, host: str, port: int, payload_type: int) -> None:
        self.commands.append(("connect", timeslot, host, port, payload_type))

    def close(self, timeslot: int) -> None:
        self.commands.append(("close", timeslot))

    def port_of(self, timeslot: int) -> int:
        return 31000 + 2 * timeslot


@dataclass
class RecordingQ931:
    commands: list[tuple[object, ...]] = field(default_factory=list)
    refuse: bool = False

    def _do(self, *command: object) -> None:
        if self.refuse:
            raise LocalProtocolError("not in this state")
        self.commands.append(command)

    def alerting(self, call: int, *, inband: bool = False, now: float) -> None:
        self._do("alerting", call, inband)

    def progress(self, call: int, description: ProgressDescription, now: float) -> None:
        self._do("progress", call, description)

    def connect(self, call: int, now: float) -> None:
        self._do("connect", call)

    def disconnect(self, call: int, cause: int, *, inband: bool = False, now: float) -> None:
        self._do("disconnect", call, cause)

    def channel_of(self, call: int) -> int | None:
        return 5


@dataclass(eq=False)
class FakeCall:
    id: str = "c1"
    got: list[CallEvent] = field(default_factory=list)

    def from_leg(self, leg: object, event: CallEvent, now: float) -> None:
        self.got.append(event)


def leg(route_kind: str = "inbound", **kwargs: object) -> tuple[PriLeg, RecordingQ931, FakeTdm, FakeCall]:
    q931, tdm, call = RecordingQ931(**kwargs), FakeTdm(), FakeCall()  # type: ignore[arg-type]
    made = PriLeg(call, 7, q931=q931, tdm=tdm, span=1, route_kind=route_kind, channel=3)  # type: ignore[arg-type]
    return made, q931, tdm, call


def test_the_b_channel_sdp_is_g711_on_the_timeslot_port_without_telephone_events() -> None:
    sdp = tdm_sdp(31006)
    assert b"c=IN IP4 127.0.0.1\r\n" in sdp and b"m=audio 31006 RTP/AVP 8 0\r\n" in sdp
    assert b"a=ptime:20\r\n" in sdp and b"telephone-event" not in sdp
    assert remote_media(sdp) == ("127.0.0.1", 31006, 8)
    assert b"m=audio 31006 RTP/AVP 0\r\n" in tdm_sdp(31006, (0,))


@pytest.mark.parametrize(
    ("sdp", "expected"),
    [
        (OFFER, ("127.0.0.1", 40000, 8)),
        (PCMU_ONLY, ("127.0.0.1", 41000, 0)),
        (ANSWER.replace(b"RTP/AVP 8", b"RTP/AVP 9"), None),  # G.722 only
        (ANSWER.replace(b"m=audio 41000", b"m=audio 0"), None),  # stream refused
        (b"not sdp", None),
    ],
)
def test_the_remote_rtp_end_is_the_first_g711_audio_stream(
    sdp: bytes, expected: tuple[str, int, int] | None
) -> None:
    assert remote_media(sdp) == expected


def test_an_incoming_calls_early_media_and_answer_become_alerting_progress_and_connect() -> None:
    pri, q931, tdm, _ = leg()
    pri.handle(Ringing(None), 0.0)
    pri.handle(Progress(None), 0.0)  # nothing to tell the PSTN without media
    pri.handle(Progress(PCMU_ONLY), 0.0)
    pri.handle(Ringing(PCMU_ONLY), 0.0)
    pri.handle(Answer(ANSWER), 0.0)
    assert q931.commands == [
        ("alerting", 7, False),
        ("progress", 7, ProgressDescription.IN_BAND_AVAILABLE),
        ("alerting", 7, True),
        ("connect", 7),
    ]
    assert tdm.commands == [
        ("open", 3, "PCMU"),
        ("connect", 3, "127.0.0.1", 41000, 0),
        ("connect", 3, "127.0.0.1", 41000, 0),
        ("connect", 3, "127.0.0.1", 41000, 8),
    ]


@pytest.mark.parametrize(
    ("event", "q850"), [(Fail(Cause.from_sip(486)), 17), (Disconnect(Cause.from_sip(404)), 1)]
)
def test_call_control_clearing_is_disconnect_with_the_mapped_cause_once(event: CallEvent, q850: int) -> None:
    pri, q931, _, call = leg()
    pri.handle(event, 0.0)
    pri.handle(Disconnect(Cause.from_q850(16)), 0.0)
    pri.released(16, 0.0)  # the machine's CallReleased afterwards is not reported back
    assert q931.commands == [("disconnect", 7, q850)] and not call.got


def test_a_command_the_calls_state_refuses_is_logged_not_raised() -> None:
    pri, q931, _, _ = leg(refuse=True)
    pri.handle(Answer(ANSWER), 0.0)
    pri.handle(Disconnect(Cause.from_q850(16)), 0.0)
    assert not q931.commands


def test_a_media_update_moves_the_tdm_end_and_answers_with_the_channels_sdp() -> None:
    pri, _, tdm, call = leg()
    pri.handle(Answer(ANSWER), 0.0)
    pri.handle(Update(OFFER.replace(b"40000", b"40100")), 0.0)
    assert tdm.commands[-1] == ("connect", 3, "127.0.0.1", 40100, 8)
    (answer,) = call.got
    assert isinstance(answer, UpdateAnswer) and answer.sdp is not None
    assert b"m=audio 31006 RTP/AVP 8\r\n" in answer.sdp and b"o=- 31006 2 IN IP4" in answer.sdp


def test_dtmf_is_not_signalled_on_pri() -> None:
    pri, q931, tdm, call = leg()
    pri.handle(Dtmf("5"), 0.0)
    assert not q931.commands and not tdm.commands and not call.got


@pytest.mark.parametrize(
    ("route_kind", "answered", "expected"),
    [("pri", False, Fail), ("pri", True, Disconnect), ("inbound", False, Disconnect)],
)
def test_the_span_clearing_is_fail_before_answer_and_disconnect_after(
    route_kind: str, answered: bool, expected: type
) -> None:
    pri, _, _, call = leg(route_kind)
    if answered:
        pri.connected(0.0)
        call.got.clear()
    pri.released(17, 0.0)
    pri.released(17, 0.0)
    (event,) = call.got
    assert isinstance(event, (Fail, Disconnect)) and type(event) is expected
    assert event.cause == Cause(17, 486, "User busy")  # RFC 3398 §8.2.6.1, the Q.850 name as the reason


def test_the_far_ends_alerting_and_progress_carry_media_only_with_in_band_information() -> None:
    pri, _, _, call = leg("pri")
    pri.remote = ("127.0.0.1", 40000, 8)
    pri.alerting((), 0.0)
    pri.in_band((ProgressDescription.INTERWORKING,), 0.0)
    pri.in_band((ProgressDescription.NOT_END_TO_END_ISDN,), 0.0)
    pri.alerting(PI8, 0.0)
    pri.connected(0.0)
    pri.connected(0.0)
    assert [type(e) for e in call.got] == [Ringing, Progress, Ringing, Answer]
    assert call.got[0] == Ringing(None)
    assert all(b"m=audio 31006 RTP/AVP 8\r\n" in (e.sdp or b"") for e in call.got[1:])  # type: ignore[union-attr]


def test_a_far_end_announcement_without_an_offer_to_send_it_to_is_cleared_at_once() -> None:
    pri, q931, _, call = leg("pri")  # a delayed offer: no early media
    pri.disconnecting(17, 0.0)
    assert call.got == [Fail(q850_cause(17))] and q931.commands == [("disconnect", 7, 17)]
    assert pri.deadline is None


def test_a_far_end_announcement_is_early_media_until_the_bound_then_the_final_status() -> None:
    pri, q931, _, call = leg("pri")
    pri.remote = ("127.0.0.1", 40000, 8)
    pri.disconnecting(1, 10.0)
    (progress,) = call.got
    assert isinstance(progress, Progress) and b"m=audio 31006 RTP/AVP 8\r\n" in (progress.sdp or b"")
    assert pri.deadline == 10.0 + ANNOUNCEMENT_TIMEOUT and not q931.commands
    pri.on_timer(40.0)
    assert call.got[1:] == [Fail(Cause(1, 404, "Unallocated number"))]
    assert q931.commands == [("disconnect", 7, 1)] and pri.deadline is None


def test_an_announcement_after_answer_keeps_the_call_until_the_far_end_releases_it() -> None:
    pri, q931, _, call = leg("pri")
    pri.remote = ("127.0.0.1", 40000, 8)
    pri.connected(0.0)
    pri.disconnecting(16, 5.0)
    assert [type(e) for e in call.got] == [Answer] and pri.deadline == 35.0
    pri.released(16, 6.0)
    assert call.got[1:] == [Disconnect(q850_cause(16))] and pri.deadline is None and not q931.commands


def test_an_answer_without_g711_clears_the_pri_call_with_cause_65() -> None:
    pri, q931, tdm, call = leg()
    g729 = ANSWER.replace(b"RTP/AVP 8", b"RTP/AVP 18").replace(b"a=rtpmap:8 PCMA", b"a=rtpmap:18 G729")
    pri.handle(Answer(g729), 0.0)
    assert q931.commands == [("disconnect", 7, 65)] and not tdm.commands
    assert call.got == [Disconnect(Cause(65, 488, "Bearer capability not implemented"))]
    pri.released(65, 0.0)
    assert len(call.got) == 1


def test_a_delayed_offer_is_answered_in_the_ack_and_without_g711_there_the_call_is_cleared() -> None:
    pri, q931, tdm, call = leg("pri")
    pri.alerting(PI8, 0.0)  # no early media: the B-channel's offer cannot go in a 180
    pri.connected(0.0)
    assert call.got[0] == Ringing(None)
    answer = call.got[1]
    assert isinstance(answer, Answer) and b"m=audio 31006 RTP/AVP 8 0\r\n" in (answer.sdp or b"")
    pri.handle(UpdateAnswer(PCMU_ONLY), 0.0)
    assert tdm.commands[-1] == ("connect", 3, "127.0.0.1", 41000, 0)
    pri.handle(UpdateAnswer(b"v=0\r\n"), 0.0)
    assert q931.commands == [("disconnect", 7, 65)] and call.got[2:] == [Disconnect(NO_G711)]


def test_a_re_offer_without_g711_is_refused_and_the_media_stays() -> None:
    pri, _, tdm, call = leg()
    pri.handle(Answer(ANSWER), 0.0)
    before = list(tdm.commands)
    pri.handle(Update(ANSWER.replace(b"RTP/AVP 8", b"RTP/AVP 9")), 0.0)
    assert call.got == [UpdateRejected(NO_G711)] and tdm.commands == before


def test_an_unknown_span_is_not_dialled() -> None:
    assert PriSpans([]).dial(3, FakeCall(), Setup("+4930123456", ""), 0.0) is None  # type: ignore[arg-type]
