"""The typed Q.931 element codecs, contents octet by octet (Q.931 §4.5; octet 3 is the first content octet).

Each case gives an element's contents in hex with its reading beside it; a decodable one must decode to the
value given, and the ones the model keeps whole must encode back to the same octets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from appliance.pri import q931_ies as ies
from appliance.pri.q931_model import (
    BearerCapability,
    CallState,
    CallStateValue,
    Cause,
    ChannelId,
    Display,
    KeypadFacility,
    Layer1Protocol,
    Location,
    NumberingPlan,
    PartyNumber,
    Presentation,
    ProgressDescription,
    ProgressIndicator,
    RestartClass,
    RestartIndicator,
    Screening,
    TransferCapability,
    TypeOfNumber,
)


def calling(data: bytes) -> PartyNumber:
    return ies.decode_number(data, octet_3a=True)


def called(data: bytes) -> PartyNumber:
    return ies.decode_number(data, octet_3a=False)


SPEECH = BearerCapability()
UNRESTRICTED = BearerCapability(TransferCapability.UNRESTRICTED_DIGITAL, None)

# (decoder, contents, value, canonical): canonical = encode gives the same octets back
GOOD: list[tuple[Callable[[bytes], Any], str, Any, bool]] = [
    (ies.decode_bearer, "80 90 a3", SPEECH, True),  # speech, circuit 64k, layer 1 A-law
    (ies.decode_bearer, "88 90", UNRESTRICTED, True),  # unrestricted digital, no octet 5
    (
        ies.decode_bearer,
        "90 90 a2",
        BearerCapability(TransferCapability.AUDIO_3K1, Layer1Protocol.G711_ULAW),
        True,
    ),
    (
        ies.decode_bearer,
        "88 90 21 8f",
        BearerCapability(TransferCapability.UNRESTRICTED_DIGITAL, Layer1Protocol.V110),
        False,
    ),
    # ^ octet 5 21 = ext 0, V.110; 5a 8f = ext 1 (rate adaption, not kept)
    (
        ies.decode_bearer,
        "88 90 c2 e6",
        BearerCapability(TransferCapability.UNRESTRICTED_DIGITAL, None),
        False,
    ),
    # ^ no octet 5: octet 6 c2 = layer 2 id 10, Q.921; octet 7 e6 = layer 3 id 11, X.25 (not kept)
    (
        ies.decode_bearer,
        "88 98 9e",
        BearerCapability(TransferCapability.UNRESTRICTED_DIGITAL, None, True, 0x18, 30),
        True,
    ),
    (ies.decode_channel, "a9 83 81", ChannelId((1,), exclusive=True), True),
    (ies.decode_channel, "a1 83 9f", ChannelId((31,)), True),  # preferred, channel 31
    (ies.decode_channel, "a3", ChannelId(selection="any"), True),
    (ies.decode_channel, "ac", ChannelId(exclusive=True, d_channel=True, selection="none"), True),
    (ies.decode_channel, "a9 83 01 02 91", ChannelId((1, 2, 17), exclusive=True), True),
    (called, "81", PartyNumber(""), True),  # unknown, ISDN, no digits yet (overlap)
    (called, "c1 2a 23 41", PartyNumber("*#A", TypeOfNumber.SUBSCRIBER), True),
    (called, "99 31", PartyNumber("1", TypeOfNumber.INTERNATIONAL, NumberingPlan.PRIVATE), True),
    (
        calling,
        "21 a3 31",
        PartyNumber(
            "1",
            TypeOfNumber.NATIONAL,
            NumberingPlan.ISDN,
            Presentation.RESTRICTED,
            Screening.NETWORK_PROVIDED,
        ),
        True,
    ),
    (
        calling,
        "00 c0",
        PartyNumber(
            "",
            TypeOfNumber.UNKNOWN,
            NumberingPlan.UNKNOWN,
            Presentation.NOT_AVAILABLE,
            Screening.USER_NOT_SCREENED,
        ),
        True,
    ),
    (ies.decode_cause, "80 90", Cause(16), True),
    (ies.decode_cause, "8a e6 04", Cause(102, Location.BEYOND_INTERWORKING, b"\x04"), True),  # T303? diag
    (ies.decode_cause, "02 80 a2", Cause(34, Location.PUBLIC_LOCAL), False),  # octet 3a, Q.931
    (ies.decode_cause, "e2 91", Cause(17, Location.PUBLIC_LOCAL), False),  # coding 11 (network specific)
    (ies.decode_progress, "80 88", ProgressIndicator(ProgressDescription.IN_BAND_AVAILABLE), True),
    (
        ies.decode_progress,
        "84 82",
        ProgressIndicator(ProgressDescription.DESTINATION_NOT_ISDN, Location.PUBLIC_REMOTE),
        True,
    ),
    (ies.decode_display, "41 20 7e", Display("A ~"), True),
    (ies.decode_display, "b1 41", Display("A"), False),  # character set octet skipped
    (ies.decode_keypad, "31 2a 23", KeypadFacility("1*#"), True),
    (ies.decode_restart, "87", RestartIndicator(RestartClass.ALL_INTERFACES), True),
    (ies.decode_call_state, "19", CallState(CallStateValue.OVERLAP_RECEIVING), True),
    (ies.decode_call_state, "3e", CallState(CallStateValue.RESTART), True),
]

BAD: list[tuple[Callable[[bytes], Any], str]] = [
    (ies.decode_bearer, "80"),  # no octet 4
    (ies.decode_bearer, "00 90"),  # octet 3 ext 0 (no octet 3a in bearer capability)
    (ies.decode_bearer, "a0 90"),  # coding standard 01 (ISO/IEC)
    (ies.decode_bearer, "81 90"),  # capability 00001 reserved
    (ies.decode_bearer, "80 b0"),  # transfer mode 01 reserved
    (ies.decode_bearer, "80 92"),  # rate 10010 reserved
    (ies.decode_bearer, "88 98"),  # multirate without octet 4.1
    (ies.decode_bearer, "88 98 81"),  # rate multiplier 1
    (ies.decode_bearer, "80 90 c2 a3"),  # octet 6 (layer id 10) before octet 5 (01)
    (ies.decode_bearer, "80 90 83"),  # layer identification 00
    (ies.decode_bearer, "80 90 23"),  # octet 5 ext 0 and no octet 5a
    (ies.decode_bearer, "80 90 a3 c2 e6 80"),  # an octet after octet 7
    (ies.decode_channel, ""),
    (ies.decode_channel, "29 83 81"),  # octet 3 ext 0
    (ies.decode_channel, "e9 01 83 81"),  # interface identifier present
    (ies.decode_channel, "89 83 81"),  # interface type basic
    (ies.decode_channel, "a2"),  # selection 10 reserved on PRI
    (ies.decode_channel, "a9"),  # indicated without octets 3.2/3.3
    (ies.decode_channel, "a9 83"),  # indicated without a channel number
    (ies.decode_channel, "a9 93 81"),  # slot map
    (ies.decode_channel, "a9 84 81"),  # channel type H0
    (ies.decode_channel, "a9 83 01"),  # last channel octet ext 0
    (ies.decode_channel, "a9 83 81 82"),  # ext 1 before the last
    (ies.decode_channel, "a9 83 80"),  # channel 0
    (ies.decode_channel, "a9 83 a0"),  # channel 32
    (ies.decode_channel, "a3 83 81"),  # channel octets with "any"
    (called, ""),
    (called, "01 80 31"),  # called number with octet 3a
    (called, "d1 31"),  # type of number 101 reserved
    (called, "82 31"),  # numbering plan 0010 reserved
    (called, "81 2b"),  # "+" is not a digit
    (called, "81 " + "31 " * 32),  # 32 digits
    (calling, "21"),  # octet 3 ext 0 but no octet 3a
    (calling, "21 31"),  # octet 3a ext 0
    (calling, "21 e0 31"),  # presentation 11 reserved
    (ies.decode_cause, "80"),
    (ies.decode_cause, "80 10"),  # octet 4 ext 0
    (ies.decode_cause, "02 00 90"),  # octet 3a ext 0
    (ies.decode_cause, "86 90"),  # location 0110 reserved
    (ies.decode_cause, "80 90 " + "00 " * 29),  # longer than 32 octets in all
    (ies.decode_progress, "80"),
    (ies.decode_progress, "80 88 00"),
    (ies.decode_progress, "a0 88"),  # coding standard ISO/IEC
    (ies.decode_progress, "80 86"),  # description 6 undefined
    (ies.decode_display, ""),
    (ies.decode_display, "b1"),  # character set octet alone
    (ies.decode_display, "41 0a"),  # control character
    (ies.decode_keypad, ""),
    (ies.decode_keypad, "31 20"),  # space
    (ies.decode_restart, "80 80"),
    (ies.decode_restart, "01"),  # ext 0
    (ies.decode_restart, "82"),  # class 010 reserved
    (ies.decode_call_state, "4a"),  # coding standard 01
    (ies.decode_call_state, "05"),  # state 5 undefined
]

ENCODERS: dict[Callable[[bytes], Any], Callable[[Any], bytes]] = {
    ies.decode_bearer: ies.encode_bearer,
    ies.decode_channel: ies.encode_channel,
    called: lambda n: ies.encode_number(n, octet_3a=False),
    calling: lambda n: ies.encode_number(n, octet_3a=True),
    ies.decode_cause: ies.encode_cause,
    ies.decode_progress: ies.encode_progress,
    ies.decode_display: ies.encode_display,
    ies.decode_keypad: ies.encode_keypad,
    ies.decode_restart: ies.encode_restart,
    ies.decode_call_state: ies.encode_call_state,
}


@pytest.mark.parametrize(("decoder", "contents", "value", "canonical"), GOOD)
def test_element_decodes(decoder: Callable[[bytes], Any], contents: str, value: Any, canonical: bool) -> None:
    data = bytes.fromhex(contents)
    assert decoder(data) == value
    encoded = ENCODERS[decoder](value)
    assert decoder(encoded) == value
    if canonical:
        assert encoded == data


@pytest.mark.parametrize(("decoder", "contents"), BAD)
def test_element_content_error(decoder: Callable[[bytes], Any], contents: str) -> None:
    with pytest.raises(ies.IeContentError):
        decoder(bytes.fromhex(contents))
