"""Properties of the Q.931 codec (STYLE.md rule 12).

1. Generated messages that keep their type's element rules round-trip: ``decode(encode(m)).message == m``
   with no problem, and encode again to the same octets.
2. decode is total: random bytes, truncations and mutations of the wire vectors give a ``Decoded`` or a
   ``Q931DecodeError``, never another exception; a message that decodes encodes again (or is refused with
   ``LocalProtocolError`` when it carried a problem), and one that decoded cleanly decodes back to itself.

The profile comes from ``HYPOTHESIS_PROFILE`` (``sip-ci`` by default: 200 deterministic examples; ``long``
for a soak run), see ``tests/unit/vectors.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from appliance.pri import q931_rules as rules
from appliance.pri.errors import LocalProtocolError, Q931DecodeError
from appliance.pri.q931_codec import canonical_others, decode, encode
from appliance.pri.q931_model import (
    BearerCapability,
    CallState,
    CallStateValue,
    Cause,
    ChannelId,
    Decoded,
    Display,
    IeId,
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
from tests.unit.test_pri_q931_codec import load_vector, vector_names
from tests.unit.vectors import hypothesis_settings, soak_marks

pytestmark = soak_marks()
SETTINGS = hypothesis_settings()

B_CHANNELS = [*range(1, 16), *range(17, 32)]


@st.composite
def bearers(draw: st.DrawFn) -> BearerCapability:
    rate = draw(st.sampled_from([0x10, 0x11, 0x13, 0x15, 0x17, 0x18]))
    return BearerCapability(
        draw(st.sampled_from(TransferCapability)),
        draw(st.none() | st.sampled_from(Layer1Protocol)),
        draw(st.booleans()),
        rate,
        draw(st.integers(2, 30)) if rate == 0x18 else None,
    )


@st.composite
def channel_ids(draw: st.DrawFn) -> ChannelId:
    selection = draw(st.sampled_from(["none", "indicated", "any"]))
    channels: tuple[int, ...] = ()
    if selection == "indicated":
        channels = tuple(draw(st.lists(st.sampled_from(B_CHANNELS), min_size=1, max_size=30, unique=True)))
    return ChannelId(channels, draw(st.booleans()), draw(st.booleans()), selection)


digits = st.text(alphabet="0123456789*#ABCD", max_size=31)


@st.composite
def numbers(draw: st.DrawFn, *, octet_3a: bool) -> PartyNumber:
    with_3a = octet_3a and draw(st.booleans())
    return PartyNumber(
        draw(digits),
        draw(st.sampled_from(TypeOfNumber)),
        draw(st.sampled_from(NumberingPlan)),
        draw(st.sampled_from(Presentation)) if with_3a else None,
        draw(st.sampled_from(Screening)) if with_3a else None,
    )


causes = st.builds(Cause, st.integers(0, 127), st.sampled_from(Location), st.binary(max_size=28))
progresses = st.builds(ProgressIndicator, st.sampled_from(ProgressDescription), st.sampled_from(Location))
ia5 = "".join(chr(c) for c in range(0x20, 0x7F))
TYPED: dict[int, tuple[str, Any]] = {
    IeId.BEARER_CAPABILITY: ("bearer", bearers()),
    IeId.CHANNEL_IDENTIFICATION: ("channel", channel_ids()),
    IeId.CALLING_PARTY_NUMBER: ("calling", numbers(octet_3a=True)),
    IeId.CALLED_PARTY_NUMBER: ("called", numbers(octet_3a=False)),
    IeId.CONNECTED_NUMBER: ("connected", numbers(octet_3a=True)),
    IeId.CAUSE: ("cause", causes),
    IeId.DISPLAY: ("display", st.builds(Display, st.text(alphabet=ia5, min_size=1, max_size=82))),
    IeId.KEYPAD_FACILITY: (
        "keypad",
        st.builds(KeypadFacility, st.text(alphabet=ia5[1:], min_size=1, max_size=32)),
    ),
    IeId.RESTART_INDICATOR: ("restart", st.builds(RestartIndicator, st.sampled_from(RestartClass))),
    IeId.CALL_STATE: ("call_state", st.builds(CallState, st.sampled_from(CallStateValue))),
}


TYPED_OR_LIST = {*TYPED, IeId.PROGRESS_INDICATOR}


@st.composite
def messages(draw: st.DrawFn, *, raw: bool = True) -> Message:
    """A message keeping its type's rules (no direction: mandatory in both, allowed in one at least);
    with ``raw`` false, only the typed elements (no RawIe, whose random contents mean nothing)."""
    types = [
        t for t in rules.MESSAGE_RULES if raw or set(rules.mandatory_elements(t, None)) <= set(TYPED_OR_LIST)
    ]
    message_type = draw(st.sampled_from(sorted(types)))
    fields: dict[str, Any] = {}
    others: list[RawIe] = []
    for identifier, rule in rules.MESSAGE_RULES[message_type].items():
        if not (rule.mandatory == "both" or draw(st.booleans())):
            continue
        if identifier in TYPED:
            name, strategy = TYPED[identifier]
            fields[name] = draw(strategy)
        elif identifier == IeId.PROGRESS_INDICATOR:
            fields["progress"] = tuple(draw(st.lists(progresses, min_size=1, max_size=rule.repeat)))
        elif identifier == IeId.SENDING_COMPLETE:
            fields["sending_complete"] = True
        elif not raw:
            continue
        elif rules.is_single_octet(identifier):
            others.append(RawIe(identifier | draw(st.integers(0, 15))))
        else:
            others.append(RawIe(identifier, draw(st.binary(max_size=8))))
    # elements of the codesets this appliance does not interpret (§4.5.2), kept as they came
    for _ in range(draw(st.integers(0, 2)) if raw else 0):
        identifier = draw(st.integers(0, 0x7F) | st.sampled_from([0xA0, 0xA1, 0xB3, 0xD1]))
        content = b"" if identifier & 0x80 else draw(st.binary(max_size=6))
        others.append(RawIe(identifier, content, draw(st.integers(4, 7))))
    return Message(
        message_type,
        draw(st.integers(0, 0x7FFF)),
        draw(st.booleans()),
        others=canonical_others(tuple(others)),
        **fields,
    )


@SETTINGS
@given(messages())
def test_generated_message_round_trips(message: Message) -> None:
    octets = _encode_within_n201(message)
    decoded = decode(octets)
    assert decoded.problems == ()
    assert decoded.message == message
    assert encode(decoded.message) == octets


def _encode_within_n201(message: Message) -> bytes:
    """encode, skipping the rare generated message longer than an I-frame carries (N201 = 260)."""
    try:
        return encode(message)
    except LocalProtocolError as exc:
        assume("N201" not in str(exc))
        raise


def _total(data: bytes) -> Decoded | None:
    """decode's contract on any octets, and encode's on whatever decodes."""
    try:
        decoded = decode(data)
    except Q931DecodeError:
        return None
    try:
        octets = encode(decoded.message)
    except LocalProtocolError:
        assert decoded.problems  # a clean message always encodes again
        return decoded
    if not decoded.problems:
        again = decode(octets)
        assert again.problems == ()
        assert again.message == replace(decoded.message, others=canonical_others(decoded.message.others))
    return decoded


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _total(data)


@SETTINGS
@given(st.binary(max_size=80))
def test_random_elements_after_a_valid_header(data: bytes) -> None:
    for message_type in (MessageType.SETUP, MessageType.DISCONNECT, MessageType.RESTART):
        assert _total(bytes([0x08, 0x02, 0x00, 0x01, message_type]) + data) is not None


VECTORS = [load_vector(kind, name) for kind in ("valid", "invalid") for name in vector_names(kind)]


def test_every_truncation_of_every_vector() -> None:
    for vector in VECTORS:
        for end in range(len(vector) + 1):
            _total(vector[:end])


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VECTORS)))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if action == "insert" or not data:
            data[where:where] = bytes([draw(st.integers(0, 255))])
        elif action == "delete":
            del data[where]
        elif action == "flip":
            data[where] ^= 1 << draw(st.integers(0, 7))
        else:
            data[where] = draw(st.integers(0, 255))
    return bytes(data)


@SETTINGS
@given(mutations())
def test_mutated_vectors(data: bytes) -> None:
    _total(data)


@SETTINGS
@given(messages(), st.booleans())
def test_decode_with_a_direction_never_fails_on_a_generated_message(
    message: Message, from_network: bool
) -> None:
    decoded = decode(_encode_within_n201(message), from_network=from_network)
    # a direction only adds problems of kind "missing" or "unrecognized" (direction-dependent rules)
    assert {p.kind for p in decoded.problems} <= {"missing", "unrecognized"}
