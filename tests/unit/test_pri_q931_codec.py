"""Q.931 codec against octet-string vectors checked by hand against ETSI EN 300 403-1 / ITU-T Q.931.

Each vector under ``tests/vectors/q931/`` carries its derivation octet by octet in comments. Valid ones
decode to the message in :data:`VALID` with no problem and encode back to identical octets; invalid ones
raise the message-level error of Q.931 §5.8.1-§5.8.4 (:data:`REJECTED`) or decode with exactly the
element-level problems of §5.8.5-§5.8.7 (:data:`PROBLEMS`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from appliance.pri.errors import LocalProtocolError, Q931DecodeError
from appliance.pri.q931_codec import decode, encode
from appliance.pri.q931_model import (
    BearerCapability,
    CallState,
    CallStateValue,
    Cause,
    ChannelId,
    Display,
    IeProblem,
    KeypadFacility,
    Layer1Protocol,
    Location,
    Message,
    MessageType,
    NumberingPlan,
    PartyNumber,
    Presentation,
    ProgressDescription,
    ProgressIndicator,
    RawIe,
    RestartClass,
    RestartIndicator,
    Screening,
    TransferCapability,
    TypeOfNumber,
)

Q931_VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "q931"


def vector_names(kind: str) -> list[str]:
    """The case names of ``valid`` or ``invalid`` vectors, sorted."""
    return sorted(p.stem for p in (Q931_VECTORS / kind).glob("*.hex"))


@cache
def load_vector(kind: str, name: str) -> bytes:
    """The octets of a vector: hex pairs; whitespace and ``#`` comments to the end of a line ignored."""
    text = (Q931_VECTORS / kind / f"{name}.hex").read_text()
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in text.splitlines()))


T = MessageType
SPEECH = BearerCapability()  # 04 03 80 90 a3
B1 = ChannelId((1,), exclusive=True)  # 18 03 a9 83 81
INBAND = ProgressDescription.IN_BAND_AVAILABLE

VALID: dict[str, Message] = {
    "setup_en_bloc_network": Message(
        T.SETUP,
        1,
        True,
        bearer=SPEECH,
        channel=B1,
        calling=PartyNumber(
            "012345678",
            TypeOfNumber.NATIONAL,
            NumberingPlan.ISDN,
            Presentation.ALLOWED,
            Screening.NETWORK_PROVIDED,
        ),
        called=PartyNumber("1234", TypeOfNumber.SUBSCRIBER),
        sending_complete=True,
    ),
    "setup_overlap_user_any_channel": Message(
        T.SETUP,
        7,
        True,
        bearer=SPEECH,
        channel=ChannelId(selection="any"),
        progress=(ProgressIndicator(ProgressDescription.ORIGIN_NOT_ISDN),),
        calling=PartyNumber("123"),
        called=PartyNumber("0"),
    ),
    "setup_multirate": Message(
        T.SETUP,
        2,
        True,
        bearer=BearerCapability(TransferCapability.UNRESTRICTED_DIGITAL, None, True, 0x18, 6),
        channel=ChannelId((1, 2, 3, 4, 5, 17), exclusive=True),
        called=PartyNumber("456", TypeOfNumber.NATIONAL),
    ),
    "call_proceeding": Message(T.CALL_PROCEEDING, 1, False, channel=B1),
    "setup_acknowledge": Message(
        T.SETUP_ACKNOWLEDGE,
        7,
        False,
        channel=ChannelId((15,), exclusive=True),
        progress=(ProgressIndicator(INBAND, Location.PUBLIC_LOCAL),),
    ),
    "alerting_inband": Message(
        T.ALERTING, 1, False, progress=(ProgressIndicator(INBAND, Location.PRIVATE_LOCAL),)
    ),
    "progress_display": Message(
        T.PROGRESS,
        1,
        False,
        progress=(ProgressIndicator(ProgressDescription.NOT_END_TO_END_ISDN, Location.PUBLIC_LOCAL),),
        display=Display("Hello"),
    ),
    "connect_connected_number": Message(
        T.CONNECT,
        1,
        False,
        connected=PartyNumber(
            "1234",
            TypeOfNumber.UNKNOWN,
            NumberingPlan.ISDN,
            Presentation.ALLOWED,
            Screening.USER_NOT_SCREENED,
        ),
        others=(RawIe(0x7E, b"\x04hi"),),
    ),
    "connect_acknowledge": Message(T.CONNECT_ACKNOWLEDGE, 1, True),
    "disconnect_normal_inband": Message(
        T.DISCONNECT,
        1,
        True,
        cause=Cause(16),
        progress=(ProgressIndicator(INBAND, Location.PUBLIC_LOCAL),),
    ),
    "release_cause_99_diagnostic": Message(
        T.RELEASE, 1, False, cause=Cause(99, Location.PUBLIC_LOCAL, b"\x3a")
    ),
    "release_cause_3a": Message(T.RELEASE_COMPLETE, 3, True, cause=Cause(34, Location.PUBLIC_LOCAL)),
    "release_complete_empty": Message(T.RELEASE_COMPLETE, 1, True),
    "restart_two_channels": Message(
        T.RESTART,
        0,
        True,
        channel=ChannelId((1, 2), exclusive=True),
        restart=RestartIndicator(RestartClass.INDICATED_CHANNELS),
    ),
    "restart_acknowledge_interface": Message(
        T.RESTART_ACKNOWLEDGE, 0, False, restart=RestartIndicator(RestartClass.SINGLE_INTERFACE)
    ),
    "status_active": Message(
        T.STATUS, 5, False, cause=Cause(30), call_state=CallState(CallStateValue.ACTIVE)
    ),
    "status_enquiry": Message(T.STATUS_ENQUIRY, 5, True),
    "information_called_digit": Message(
        T.INFORMATION, 7, True, called=PartyNumber("5"), sending_complete=True
    ),
    "information_keypad": Message(T.INFORMATION, 7, True, keypad=KeypadFacility("1#")),
    "setup_codeset_6": Message(
        T.SETUP, 9, True, bearer=SPEECH, channel=B1, others=(RawIe(0x01, b"\x05\x06", codeset=6),)
    ),
}
# Vectors whose octets are not the ones encode writes (octet 3a of the cause is not kept by the model).
NOT_CANONICAL = {"release_cause_3a": "080200035a080282a2"}

REJECTED: dict[str, tuple[int | None, int | None, bytes]] = {
    # name: (cause, call reference, diagnostic); cause None = ignore the message (§5.8.1-§5.8.3.1)
    "too_short": (None, None, b""),
    "header_truncated": (None, None, b""),
    "protocol_discriminator": (None, None, b""),
    "call_reference_length_1": (None, None, b""),
    "call_reference_length_spare": (None, None, b""),
    "message_type_unknown": (97, 4, b"\x25"),
    "message_type_bit8": (97, 4, b"\x85"),
}


def _p(identifier: int, kind: str, mandatory: bool, required: bool = False) -> tuple[int, str, bool, bool]:
    return (identifier, kind, mandatory, required)


PROBLEMS: dict[str, tuple[bool | None, list[tuple[int, str, bool, bool]]]] = {
    # name: (from_network, [(identifier, kind, mandatory, comprehension required)])
    "setup_bearer_missing": (None, [_p(0x04, "missing", True)]),
    "disconnect_cause_short": (None, [_p(0x08, "content", True)]),
    "disconnect_cause_truncated": (None, [_p(0x08, "content", True)]),
    "setup_comprehension_required": (None, [_p(0x0F, "unrecognized", False, True)]),
    "setup_unrecognized_optional": (None, [_p(0x3A, "unrecognized", False)]),
    "setup_out_of_sequence": (None, [_p(0x6C, "out-of-sequence", False)]),
    "release_cause_repeated": (None, [_p(0x08, "repeated", False)]),
    "status_call_state_undefined": (None, [_p(0x14, "content", True)]),
    "setup_channel_timeslot_16": (True, [_p(0x18, "content", True)]),
    "setup_called_digits_not_ia5": (None, [_p(0x70, "content", False)]),
    "setup_display_from_user": (False, [_p(0x28, "unrecognized", False)]),
    "setup_locking_shift_down": (None, [_p(0x95, "out-of-sequence", False)]),
}


def test_every_vector_file_is_in_a_table() -> None:
    assert set(vector_names("valid")) == set(VALID)
    assert set(vector_names("invalid")) == set(REJECTED) | set(PROBLEMS)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_vector_decodes_field_by_field(name: str) -> None:
    decoded = decode(load_vector("valid", name))
    assert decoded.problems == ()
    assert decoded.message == VALID[name]


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_vector_encodes_to_its_octets(name: str) -> None:
    expected = bytes.fromhex(NOT_CANONICAL[name]) if name in NOT_CANONICAL else load_vector("valid", name)
    assert encode(VALID[name]).hex(" ") == expected.hex(" ")


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_message_level_fault_raises_with_its_cause(name: str) -> None:
    cause, call_reference, diagnostic = REJECTED[name]
    with pytest.raises(Q931DecodeError) as info:
        decode(load_vector("invalid", name))
    assert (info.value.cause, info.value.call_reference, info.value.diagnostic) == (
        cause,
        call_reference,
        diagnostic,
    )
    if cause is not None:
        assert info.value.from_originator is (load_vector("invalid", name)[2] & 0x80 == 0)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_element_fault_is_a_problem_and_the_rest_decodes(name: str) -> None:
    from_network, expected = PROBLEMS[name]
    decoded = decode(load_vector("invalid", name), from_network=from_network)
    got = [(p.identifier, p.kind, p.mandatory, p.comprehension_required) for p in decoded.problems]
    assert got == expected
    assert decoded.message.type == MessageType(load_vector("invalid", name)[4])


def test_content_error_leaves_the_other_elements() -> None:
    message = decode(load_vector("invalid", "setup_called_digits_not_ia5")).message
    assert message.called is None
    assert message.calling == PartyNumber("2")
    assert message.bearer == SPEECH


def test_unrecognized_element_is_kept_raw() -> None:
    message = decode(load_vector("invalid", "setup_unrecognized_optional")).message
    assert message.others == (RawIe(0x3A, b"\x00"),)


def test_unexpected_known_element_is_not_comprehension_required() -> None:
    # a cause (08) in ALERTING: known, but not an element of ALERTING (EN 300 403-1 §3.1.1)
    decoded = decode(bytes.fromhex("080280010108028090"))
    assert decoded.problems == (IeProblem(0x08, "unrecognized", False, False),)
    assert decoded.message.cause is None
    assert decoded.message.others == (RawIe(0x08, b"\x80\x90"),)


def test_repetition_keeps_the_first() -> None:
    assert decode(load_vector("invalid", "release_cause_repeated")).message.cause == Cause(16)


def test_shifted_codesets_are_kept() -> None:
    message = decode(load_vector("invalid", "setup_locking_shift_down")).message
    assert message.others == (RawIe(0x01, b"\x00", 6), RawIe(0x02, b"\x00", 5))


def test_non_locking_shift_applies_to_one_element() -> None:
    # 9d: non-locking shift (bit 4 = 1) to codeset 5 for the element 01 only; 1e is codeset 0 again
    data = bytes.fromhex("08020001039d 01 01 071e 02 80 88".replace(" ", ""))
    decoded = decode(data)
    assert decoded.problems == ()
    assert decoded.message.others == (RawIe(0x01, b"\x07", 5),)
    assert decoded.message.progress == (ProgressIndicator(INBAND),)


def test_direction_decides_what_is_mandatory() -> None:
    # SETUP without channel identification: mandatory from the network on a PRI, optional from the user
    data = bytes.fromhex("080200010504038090a3")
    assert decode(data, from_network=False).problems == ()
    assert decode(data).problems == ()
    assert decode(data, from_network=True).problems == (IeProblem(0x18, "missing", True),)


def test_mandatory_element_out_of_sequence_is_processed() -> None:
    # STATUS with the call state (14) before the cause (08): the cause is mandatory, so it is used
    data = bytes.fromhex("080280017d14010a0802809e")
    decoded = decode(data)
    assert decoded.problems == (IeProblem(0x08, "out-of-sequence", True),)
    assert decoded.message.cause == Cause(30)


def test_display_with_a_character_set_octet() -> None:
    # some switches put a character set octet (b1, bit 8 = 1) in front of the IA5 text
    data = bytes.fromhex("08028001031e0282882803b14869")
    assert decode(data).message.display == Display("Hi")


def test_single_octet_element_may_stand_anywhere() -> None:
    # Q.931 §4.5.1: single-octet elements may appear at any point in the message; sending complete (a1)
    # after the called party number (70) is neither out of sequence nor resets the ascending order
    data = bytes.fromhex("080200010504038090a3" + "1803a98381" + "7003803130" + "a1")
    decoded = decode(data, from_network=False)
    assert decoded.problems == ()
    assert decoded.message.sending_complete and decoded.message.called is not None
    assert decoded.message.called.digits == "10"


def test_unlisted_single_octet_element_is_unrecognized() -> None:
    # more data (a0) and congestion level (b0) do not go in ALERTING
    decoded = decode(bytes.fromhex("0802800101a0b2"))
    assert [(p.identifier, p.kind) for p in decoded.problems] == [
        (0xA0, "unrecognized"),
        (0xB2, "unrecognized"),
    ]
    assert decoded.message.others == (RawIe(0xA0), RawIe(0xB2))


@pytest.mark.parametrize(
    "message",
    [
        Message(T.DISCONNECT, 1, True),  # no cause
        Message(T.SETUP, 1, True, bearer=SPEECH, cause=Cause(16)),  # cause does not go in SETUP
        Message(T.ALERTING, 0x8000, True),  # call reference beyond 15 bits
        Message(T.SETUP, 1, True, bearer=SPEECH, called=PartyNumber("12x")),
        Message(T.SETUP, 1, True, bearer=SPEECH, channel=ChannelId((16,))),
        Message(T.SETUP, 1, True, bearer=SPEECH, channel=ChannelId((), selection="indicated")),
        Message(T.SETUP, 1, True, bearer=BearerCapability(rate=0x18)),  # multirate without multiplier
        Message(T.SETUP, 1, True, bearer=SPEECH, others=(RawIe(0x18, b"\xa3"),)),
        Message(T.SETUP, 1, True, bearer=SPEECH, others=(RawIe(0x96),)),
        Message(T.STATUS_ENQUIRY, 1, True, display=Display("\u00e9")),
        Message(T.SETUP, 1, True, bearer=SPEECH, called=PartyNumber("1", presentation=Presentation.ALLOWED)),
        Message(T.ALERTING, 1, True, progress=(ProgressIndicator(INBAND),) * 3),
    ],
)
def test_encode_refuses_what_decode_would_report(message: Message) -> None:
    with pytest.raises(LocalProtocolError):
        encode(message)


def test_layer1_octet_is_optional() -> None:
    bearer = BearerCapability(TransferCapability.AUDIO_3K1, Layer1Protocol.G711_ULAW)
    message = Message(T.SETUP, 1, True, bearer=bearer)
    # 90 = ext 1, ITU-T, 3.1 kHz audio 10000; 90 = circuit 64 kbit/s; a2 = layer 1, G.711 mu-law 00010
    assert encode(message).hex() == "080200010504039090a2"
    assert decode(encode(message)).message == message
