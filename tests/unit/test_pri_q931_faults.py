"""Q.931 §5.8 hostile input, through the codec: each fault answered the way the clause prescribes (ignore,
STATUS with cause 96/97/99/100/101, RELEASE COMPLETE 81, RELEASE with the fault's cause), a ProtocolFault for
every one, and nothing raised out of ``receive``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.pri import q931_codec
from appliance.pri.q931_events import CallOffered, CallReleased, ProtocolFault
from appliance.pri.q931_model import CallStateValue as S
from appliance.pri.q931_model import Message, MessageType
from tests.unit.test_pri_q931_machine import NUMBER, Pair, active_call, released


def header(cref: int, *, originator: bool, kind: int) -> bytes:
    """Protocol discriminator, two-octet call reference (flag set when sent by the side that did not
    allocate it) and message type (Q.931 §4.2-§4.4)."""
    return bytes([0x08, 0x02, (0 if originator else 0x80) | (cref >> 8), cref & 0xFF, kind])


def answered(pair: Pair, data: bytes) -> list[Message]:
    """Feed ``data`` to the user side as the network's, return the user side's answer."""
    pair.user.receive(data, pair.now)
    pair.drain()
    return pair.take("user")


def faults(pair: Pair) -> list[ProtocolFault]:
    return [e for e in pair.events["user"] if isinstance(e, ProtocolFault)]


def user_call() -> tuple[Pair, int]:
    """A pair with one active call the user side placed (call reference 1, the user's)."""
    pair = Pair(bytes_path=True)
    call, _ = active_call(pair)
    return pair, call


def test_message_type_non_existent_is_answered_with_status_97() -> None:
    pair, call = user_call()
    (status,) = answered(pair, header(1, originator=False, kind=0x33))
    assert status.type is MessageType.STATUS and status.call_reference == 1 and status.from_originator
    assert status.cause is not None and (status.cause.value, status.cause.diagnostic) == (97, b"\x33")
    assert status.call_state is not None and status.call_state.state is S.ACTIVE
    assert [f.cause for f in faults(pair)] == [97] and pair.user.state_of(call) is S.ACTIVE


def test_message_not_compatible_with_the_call_state_is_answered_with_status_101() -> None:
    pair, call = user_call()
    (status,) = answered(pair, header(1, originator=False, kind=0x01))  # ALERTING in U10
    assert status.type is MessageType.STATUS and status.cause is not None
    assert (status.cause.value, status.cause.diagnostic) == (101, b"\x01")
    assert pair.user.state_of(call) is S.ACTIVE and [f.cause for f in faults(pair)] == [101]


def test_messages_too_short_or_of_another_protocol_are_ignored() -> None:
    pair, call = user_call()
    for data in (b"", b"\x08\x02\x00", b"\x09\x02\x80\x01\x7d", b"\x08\x01\x01\x7d"):
        assert answered(pair, data) == []
    assert len(faults(pair)) == 4 and pair.user.state_of(call) is S.ACTIVE


def test_unrecognised_optional_element_is_acted_on_and_reported_with_status_99() -> None:
    pair, call = user_call()
    (status,) = answered(pair, header(1, originator=False, kind=0x75) + b"\x73\x01\x00")  # STATUS ENQUIRY
    # the enquiry itself is answered (cause 30); STATUS answers no STATUS, so no second one for the IE
    assert status.cause is not None and status.cause.value == 30
    data = header(1, originator=False, kind=0x7B) + b"\x73\x01\x00"  # INFORMATION
    (status,) = answered(pair, data)
    assert status.cause is not None and (status.cause.value, status.cause.diagnostic) == (99, b"\x73")
    assert pair.user.state_of(call) is S.ACTIVE


def test_unrecognised_comprehension_required_element_is_not_acted_on_status_99() -> None:
    pair, call = user_call()
    pair.user.status_enquiry(call, now=pair.now)
    pair.take("user")
    # a STATUS with a fault is not answered (no STATUS answers a STATUS) and not acted on
    assert answered(pair, header(1, originator=False, kind=0x7D) + b"\x0b\x01\x00\x14\x01\x00") == []
    assert pair.user.state_of(call) is S.ACTIVE  # its call state NULL was not acted on
    (status,) = answered(pair, header(1, originator=False, kind=0x03) + b"\x0b\x01\x00\x1e\x02\x80\x88")
    assert status.type is MessageType.STATUS and status.cause is not None
    assert (status.cause.value, status.cause.diagnostic) == (99, b"\x0b")


def test_disconnect_without_cause_is_released_with_cause_96() -> None:
    pair, call = user_call()
    (release,) = answered(pair, header(1, originator=False, kind=0x45))
    assert release.type is MessageType.RELEASE and release.cause is not None
    assert (release.cause.value, release.cause.diagnostic) == (96, b"\x08")
    assert pair.user.state_of(call) is S.RELEASE_REQUEST
    answered(pair, header(1, originator=False, kind=0x5A))
    assert [e.cause for e in released(pair, "user", call)] == [31]


def test_disconnect_with_bad_cause_contents_is_released_with_cause_100() -> None:
    pair, _ = user_call()
    (release,) = answered(pair, header(1, originator=False, kind=0x45) + b"\x08\x01\x80")
    assert release.type is MessageType.RELEASE and release.cause is not None and release.cause.value == 100


def test_release_without_cause_is_completed_with_cause_96() -> None:
    pair, call = user_call()
    (complete,) = answered(pair, header(1, originator=False, kind=0x4D))
    assert complete.type is MessageType.RELEASE_COMPLETE and complete.cause is not None
    assert complete.cause.value == 96 and pair.user.calls == 0
    assert len(released(pair, "user", call)) == 1


def test_mandatory_element_with_bad_contents_status_100_and_message_not_acted_on() -> None:
    pair = Pair(bytes_path=True)
    call = pair.user.setup(called=NUMBER, now=0.0)
    pair.pump()
    pair.net.proceeding(pair.offered("network").call, now=0.0)
    pair.pump()
    (status,) = answered(pair, header(1, originator=False, kind=0x03) + b"\x1e\x02\x80\xff")  # PROGRESS
    assert status.cause is not None and (status.cause.value, status.cause.diagnostic) == (100, b"\x1e")
    assert pair.user.get_timer() is not None  # T310 still running: the PROGRESS was not acted on
    assert pair.user.state_of(call) is S.OUTGOING_CALL_PROCEEDING


def test_setup_missing_a_mandatory_element_is_refused_with_release_complete_96() -> None:
    pair = Pair(bytes_path=True)
    (complete,) = answered(pair, header(5, originator=True, kind=0x05) + b"\x18\x03\xa9\x83\x81")
    assert complete.type is MessageType.RELEASE_COMPLETE and complete.call_reference == 5
    assert not complete.from_originator
    assert complete.cause is not None and (complete.cause.value, complete.cause.diagnostic) == (96, b"\x04")
    assert not any(isinstance(e, CallOffered) for e in pair.events["user"]) and pair.user.calls == 0
    assert [f.cause for f in faults(pair)] == [96]


def test_unknown_call_reference_answers() -> None:
    pair = Pair(bytes_path=True)
    (complete,) = answered(pair, header(9, originator=True, kind=0x4D) + b"\x08\x02\x80\x90")  # RELEASE
    assert complete.type is MessageType.RELEASE_COMPLETE and complete.cause is not None
    assert complete.cause.value == 81 and complete.call_reference == 9 and not complete.from_originator
    assert answered(pair, header(9, originator=True, kind=0x5A)) == []  # RELEASE COMPLETE: ignored
    (complete,) = answered(pair, header(9, originator=True, kind=0x01))  # ALERTING
    assert complete.type is MessageType.RELEASE_COMPLETE and complete.cause is not None
    assert complete.cause.value == 81
    (status,) = answered(pair, header(9, originator=True, kind=0x75))  # STATUS ENQUIRY
    assert status.type is MessageType.STATUS and status.call_state is not None
    assert status.call_state.state is S.NULL
    (complete,) = answered(pair, header(9, originator=False, kind=0x33))  # unknown type, unknown CR
    assert complete.type is MessageType.RELEASE_COMPLETE and complete.cause is not None
    assert complete.cause.value == 81
    assert (
        answered(pair, header(9, originator=False, kind=0x05) + b"\x04\x03\x80\x90\xa3") == []
    )  # SETUP, flag 1
    (complete,) = answered(pair, header(9, originator=True, kind=0x7D) + b"\x08\x02\x80\x9e\x14\x01\x0a")
    assert complete.type is MessageType.RELEASE_COMPLETE and complete.cause is not None
    assert complete.cause.value == 101  # STATUS for an unknown call in U10 (§5.8.11)
    assert answered(pair, header(9, originator=True, kind=0x7D) + b"\x08\x02\x80\x9e\x14\x01\x00") == []
    assert pair.user.calls == 0 and len(faults(pair)) == 8


def test_message_on_the_global_call_reference_is_answered_with_status_81() -> None:
    pair = Pair(bytes_path=True)
    (status,) = answered(pair, bytes([0x08, 0x02, 0x00, 0x00, 0x01]))  # ALERTING, global CR
    assert status.type is MessageType.STATUS and status.call_reference == 0
    assert status.cause is not None and status.cause.value == 81
    assert status.call_state is not None and status.call_state.state is S.NULL


def test_status_reporting_an_incompatible_state_clears_with_101_and_null_releases() -> None:
    pair, _ = user_call()
    (disc,) = answered(pair, header(1, originator=False, kind=0x7D) + b"\x08\x02\x80\x9e\x14\x01\x01")
    assert disc.type is MessageType.DISCONNECT and disc.cause is not None and disc.cause.value == 101
    pair2, call2 = user_call()
    assert answered(pair2, header(1, originator=False, kind=0x7D) + b"\x08\x02\x80\x9e\x14\x01\x00") == []
    assert [e.cause for e in released(pair2, "user", call2)] == [30] and pair2.user.calls == 0


def test_status_reporting_a_compatible_state_changes_nothing() -> None:
    pair, call = user_call()
    assert answered(pair, header(1, originator=False, kind=0x7D) + b"\x08\x02\x80\x9e\x14\x01\x0a") == []
    assert pair.user.state_of(call) is S.ACTIVE


def test_setup_on_a_call_reference_in_use_is_ignored() -> None:
    pair = Pair(bytes_path=True)
    pair.net.setup(called=NUMBER, now=0.0)
    setup = pair.take("network")
    pair.deliver("user", setup)
    pair.deliver("user", setup)
    pair.drain()
    assert len([e for e in pair.events["user"] if isinstance(e, CallOffered)]) == 1
    assert pair.take("user") == [] and pair.user.calls == 1


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=40), prefix=st.sampled_from([b"", b"\x08\x02\x80\x01", b"\x08\x02\x00\x07"]))
def test_random_octets_never_raise_and_never_hit_an_internal_error(data: bytes, prefix: bytes) -> None:
    pair, _ = user_call()
    pair.user.receive(prefix + data, pair.now)
    pair.drain()
    for message in pair.take("user"):
        q931_codec.encode(message)  # every answer is encodable
    assert not any(isinstance(e, ProtocolFault) and e.cause == 111 for e in pair.events["user"])
    assert len([e for e in pair.events["user"] if isinstance(e, CallReleased)]) <= 1
