"""Q.931 messages to and from octets (ETSI EN 300 403-1 / ITU-T Q.931 §4 and §5.8), sans-I/O.

Theory of operation. :func:`decode` reads the header (Q.931 §4.2-§4.4) and raises
:class:`~appliance.pri.errors.Q931DecodeError` for the message-level faults of §5.8.1-§5.8.4: a message
too short, a wrong protocol discriminator or a call reference length other than two are ignored
(``cause=None``); an unknown message type gets cause 97 with the call reference, so that the machine can
answer STATUS. It then splits the elements (§4.5): shifts switch the codeset for the rest of the message
(locking, §4.5.3) or for the next element only (non-locking, §4.5.4); single-octet elements stand alone
and may appear anywhere (§4.5.1: outside the ascending order); the others carry identifier, length and
contents. A locking shift to a codeset not above the active one (§4.5.2 allows only upwards) is reported
as out of sequence. Every element-level fault becomes an
:class:`~appliance.pri.q931_model.IeProblem` and never costs the rest of the message (§5.8.5-§5.8.7):

- ``"out-of-sequence"``: a variable-length codeset 0 element below its predecessor (§4.5.1 ascending
  order, §5.8.5.1); it is discarded unless mandatory, in which case it is processed;
- ``"unrecognized"``: an unknown identifier, or one the message type does not carry in that direction
  (:mod:`appliance.pri.q931_rules`); kept in ``Message.others``;
- ``"repeated"``: more occurrences than the message allows (§5.8.5.2); only the first ones are kept;
- ``"content"``: an element whose contents break its coding (§5.8.6.2, §5.8.7.2); it is left out;
- ``"missing"``: a mandatory element absent (§5.8.6.1).

:func:`encode` writes the header, then codeset 0 (single-octet elements first, as the message tables
list Sending complete and Repeat indicator first, then the variable-length ones in ascending order), then
each other codeset after one locking shift, codesets ascending. It refuses (``LocalProtocolError``) a
message that decode would report a problem in when read without a direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from appliance.pri import q931_ies as ies
from appliance.pri import q931_rules as rules
from appliance.pri.errors import LocalProtocolError, Q931DecodeError
from appliance.pri.q931_model import (
    CALL_REFERENCE_LENGTH,
    MAX_CALL_REFERENCE,
    PROTOCOL_DISCRIMINATOR,
    Decoded,
    IeId,
    IeProblem,
    Message,
    MessageType,
    ProblemKind,
    RawIe,
)

MAX_MESSAGE: Final = 260  # Q.921 §5.9.3: N201, the largest information field of an I-frame
HEADER_LENGTH: Final = 5  # protocol discriminator, call reference length, two call reference octets, type
CAUSE_UNKNOWN_MESSAGE_TYPE: Final = 97  # Q.850: message type non-existent or not implemented
NON_LOCKING_BIT: Final = 0x08  # §4.5.3/§4.5.4: shift octet bit 4, 1 = non-locking, 0 = locking
_TYPES: Final = frozenset(int(t) for t in MessageType)

# The typed elements: identifier -> (decode, encode, Message field). Calling and connected numbers have
# octet 3a, the called number does not (Q.931 §4.5.8 / §4.5.10).
_Codec = tuple[Callable[[bytes], Any], Callable[[Any], bytes], str]
_TYPED: Final[dict[int, _Codec]] = {
    IeId.BEARER_CAPABILITY: (ies.decode_bearer, ies.encode_bearer, "bearer"),
    IeId.CAUSE: (ies.decode_cause, ies.encode_cause, "cause"),
    IeId.CALL_STATE: (ies.decode_call_state, ies.encode_call_state, "call_state"),
    IeId.CHANNEL_IDENTIFICATION: (ies.decode_channel, ies.encode_channel, "channel"),
    IeId.PROGRESS_INDICATOR: (ies.decode_progress, ies.encode_progress, "progress"),
    IeId.DISPLAY: (ies.decode_display, ies.encode_display, "display"),
    IeId.KEYPAD_FACILITY: (ies.decode_keypad, ies.encode_keypad, "keypad"),
    IeId.CONNECTED_NUMBER: (
        lambda d: ies.decode_number(d, octet_3a=True),
        lambda n: ies.encode_number(n, octet_3a=True),
        "connected",
    ),
    IeId.CALLING_PARTY_NUMBER: (
        lambda d: ies.decode_number(d, octet_3a=True),
        lambda n: ies.encode_number(n, octet_3a=True),
        "calling",
    ),
    IeId.CALLED_PARTY_NUMBER: (
        lambda d: ies.decode_number(d, octet_3a=False),
        lambda n: ies.encode_number(n, octet_3a=False),
        "called",
    ),
    IeId.RESTART_INDICATOR: (ies.decode_restart, ies.encode_restart, "restart"),
}
# Elements the codec itself handles and a RawIe in codeset 0 may therefore not stand for.
_RESERVED_RAW: Final = frozenset({*_TYPED, IeId.SENDING_COMPLETE})


@dataclass(frozen=True, slots=True)
class _Element:
    codeset: int
    identifier: int
    content: bytes
    fault: str = ""  # "truncated": the length runs past the end; "lower": a locking shift downwards


@dataclass(slots=True)
class _Reader:
    """The state of one decode: what the message has so far and the problems found."""

    type: MessageType
    from_network: bool | None
    fields: dict[str, Any] = field(default_factory=dict)
    progress: list[Any] = field(default_factory=list)
    others: list[RawIe] = field(default_factory=list)
    problems: list[IeProblem] = field(default_factory=list)
    seen: dict[int, int] = field(default_factory=dict)

    def problem(self, identifier: int, kind: ProblemKind, detail: str = "") -> None:
        mandatory = rules.is_mandatory(self.type, identifier, self.from_network)
        required = kind == "unrecognized" and rules.comprehension_required(identifier)
        self.problems.append(IeProblem(identifier, kind, mandatory, required, detail))


def decode(data: bytes, *, from_network: bool | None = None) -> Decoded:
    """Decode one Q.931 message (one I-frame's information field).

    ``from_network`` says who sent it (``True``: the network side), so that the direction-dependent rules
    of EN 300 403-1 §3 apply; with ``None`` an element counts as mandatory only when it is in both
    directions and as allowed when it is in either. Raises ``Q931DecodeError`` for message-level faults
    (see the module docstring); every other fault is in ``Decoded.problems``.
    """
    call_reference, from_originator, message_type = _header(data)
    reader = _Reader(message_type, from_network)
    last_variable = -1  # §4.5.1: ascending order of variable-length codeset 0 identifiers
    for element in _split(data):
        if element.codeset != 0:
            # §4.5.2: codesets 1-3 are reserved; 4-7 (ISO/IEC, national, local network, user-specific)
            # are not ours to interpret and are kept as they came.
            if element.codeset < 4:
                reader.problems.append(IeProblem(element.identifier, "unrecognized", False, False, "codeset"))
            reader.others.append(RawIe(element.identifier, element.content, element.codeset))
            continue
        identifier = element.identifier
        if not rules.is_single_octet(identifier):
            if identifier < last_variable:
                reader.problem(identifier, "out-of-sequence")
                if not rules.is_mandatory(message_type, identifier, from_network):
                    continue  # §5.8.5.1: discarded, the message processed as if it were absent
            else:
                last_variable = identifier
        _element(reader, element)
    for identifier in rules.mandatory_elements(message_type, from_network):
        if identifier not in reader.seen:
            reader.problems.append(IeProblem(identifier, "missing", True))
    message = Message(
        message_type,
        call_reference,
        from_originator,
        progress=tuple(reader.progress),
        others=tuple(reader.others),
        **reader.fields,
    )
    return Decoded(message, tuple(reader.problems))


def _header(data: bytes) -> tuple[int, bool, MessageType]:
    """Q.931 §4.2-§4.4; faults per §5.8.1-§5.8.4."""
    if len(data) < 3:
        raise Q931DecodeError("message too short")  # §5.8.2
    if data[0] != PROTOCOL_DISCRIMINATOR:
        raise Q931DecodeError(f"protocol discriminator {data[0]:#04x}")  # §5.8.1
    if data[1] != CALL_REFERENCE_LENGTH:  # bits 8-5 spare (0000), bits 4-1 the length: 2 on a PRI
        raise Q931DecodeError(f"call reference length octet {data[1]:#04x}")  # §5.8.3.1
    if len(data) < HEADER_LENGTH:
        raise Q931DecodeError("message too short")  # §5.8.2
    if len(data) > MAX_MESSAGE:
        raise Q931DecodeError(f"message of {len(data)} octets exceeds N201")
    call_reference = (data[2] & 0x7F) << 8 | data[3]
    from_originator = not data[2] & 0x80  # §4.3: the flag is 0 in messages from the originating side
    if data[4] not in _TYPES:  # includes bit 8 = 1 and the escape to national message types (0x00)
        raise Q931DecodeError(
            f"message type {data[4]:#04x} not implemented",
            cause=CAUSE_UNKNOWN_MESSAGE_TYPE,  # §5.8.4
            call_reference=call_reference,
            from_originator=from_originator,
            diagnostic=bytes([data[4]]),
        )
    return call_reference, from_originator, MessageType(data[4])


def _split(data: bytes) -> list[_Element]:
    """The elements after the header with the codeset each belongs to (§4.5.2-§4.5.4). A shift octet
    (type 1, bits 8-5 = 1001) is read as a shift in any codeset; it is not an element of the message. An
    element whose length runs past the end is returned truncated and ends the split."""
    elements: list[_Element] = []
    locked = 0
    temporary: int | None = None
    i = HEADER_LENGTH
    while i < len(data):
        octet = data[i]
        codeset = locked if temporary is None else temporary
        temporary = None
        if octet & 0xF0 == rules.SHIFT:
            if octet & NON_LOCKING_BIT:
                temporary = octet & 0x07  # §4.5.4: the next element only
            else:
                # §4.5.3: a locking shift stays in force to the end of the message; §4.5.2: it may only go
                # to a codeset higher than the one being left, a lower one is read as it says but reported
                if octet & 0x07 <= locked:
                    elements.append(_Element(0, octet, b"", fault="lower"))
                locked = octet & 0x07
            i += 1
        elif rules.is_single_octet(octet):
            elements.append(_Element(codeset, octet, b""))
            i += 1
        elif i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            elements.append(_Element(codeset, octet, bytes(data[i + 2 :]), fault="truncated"))
            break
        else:
            length = data[i + 1]
            elements.append(_Element(codeset, octet, bytes(data[i + 2 : i + 2 + length])))
            i += 2 + length
    return elements


def _element(reader: _Reader, element: _Element) -> None:
    """One codeset 0 element: rules, repetition, then its codec."""
    identifier, message_type = element.identifier, reader.type
    if element.fault == "lower":
        reader.problem(identifier, "out-of-sequence", "locking shift to a lower codeset")
        return
    if not rules.is_allowed(message_type, identifier, reader.from_network):
        reader.problem(identifier, "unrecognized")
        reader.others.append(RawIe(identifier, element.content))
        return
    key = rules.element_key(identifier)
    count = reader.seen.get(key, 0) + 1
    reader.seen[key] = count
    rule = rules.rule_of(message_type, identifier)
    if rule is not None and count > rule.repeat:
        reader.problem(identifier, "repeated", f"occurrence {count}")  # §5.8.5.2: only the first kept
        return
    if element.fault == "truncated":
        reader.problem(identifier, "content", "length beyond the end of the message")
        return
    if identifier == IeId.SENDING_COMPLETE:
        reader.fields["sending_complete"] = True
        return
    codec = _TYPED.get(identifier)
    if codec is None:
        reader.others.append(RawIe(identifier, element.content))
        return
    try:
        value = codec[0](element.content)
    except ies.IeContentError as exc:
        reader.problem(identifier, "content", str(exc))
        return
    name = codec[2]
    if name == "progress":
        reader.progress.append(value)
    elif name == "channel" and "channel" in reader.fields:
        # a repeated channel identification (RESTART, Q.931 Table 3-8): one list of channels
        first = reader.fields["channel"]
        if first.selection != "indicated" or value.selection != "indicated":
            reader.problem(identifier, "repeated", "only 'indicated' channels add up")
            return
        channels = first.channels + value.channels
        if len(set(channels)) != len(channels) or len(channels) > ies.MAX_CHANNELS:
            reader.problem(identifier, "content", "channels repeated or more than an E1 has")
            return
        reader.fields["channel"] = replace(first, channels=channels)
    else:
        reader.fields[name] = value


def encode(message: Message) -> bytes:
    """The octets of ``message`` (see the module docstring for the order). Raises ``LocalProtocolError``
    when the message breaks its type's rules (without a direction: mandatory in both directions, allowed in
    one at least), a value has no coding, or a raw element stands for one the codec types."""
    if not 0 <= message.call_reference <= MAX_CALL_REFERENCE:
        raise LocalProtocolError(f"call reference {message.call_reference}")
    flag = 0 if message.from_originator else 0x80
    out = bytearray([PROTOCOL_DISCRIMINATOR, CALL_REFERENCE_LENGTH])
    out += bytes([flag | message.call_reference >> 8, message.call_reference & 0xFF, message.type])
    elements = _typed_elements(message)
    for raw in message.others:
        elements.append(_raw_element(raw))
    _check_rules(message.type, elements)
    for codeset in sorted({e.codeset for e in elements}):
        if codeset:
            out.append(rules.SHIFT | codeset)  # §4.5.3 locking shift, codesets ascending
        for element in sorted((e for e in elements if e.codeset == codeset), key=_order):
            out.append(element.identifier)
            if not rules.is_single_octet(element.identifier):
                out.append(len(element.content))
                out += element.content
    if len(out) > MAX_MESSAGE:
        raise LocalProtocolError(f"message of {len(out)} octets exceeds N201")
    return bytes(out)


def canonical_others(others: tuple[RawIe, ...]) -> tuple[RawIe, ...]:
    """``others`` in the order :func:`encode` writes them (decode gives them in wire order)."""
    return tuple(sorted(others, key=lambda r: (r.codeset, *_order(_Element(r.codeset, r.identifier, b"")))))


def _order(element: _Element) -> tuple[int, int]:
    return (0 if rules.is_single_octet(element.identifier) else 1, element.identifier)


def _typed_elements(message: Message) -> list[_Element]:
    elements: list[_Element] = []
    for identifier, (_, encoder, name) in _TYPED.items():
        values = message.progress if name == "progress" else (getattr(message, name),)
        for value in values:
            if value is not None:
                elements.append(_Element(0, identifier, encoder(value)))
    if message.sending_complete:
        elements.append(_Element(0, IeId.SENDING_COMPLETE, b""))
    return elements


def _raw_element(raw: RawIe) -> _Element:
    if not (0 <= raw.codeset <= 7 and 0 <= raw.identifier <= 0xFF):
        raise LocalProtocolError(f"raw element {raw.identifier:#x} in codeset {raw.codeset}")
    if raw.identifier & 0xF0 == rules.SHIFT or (raw.codeset == 0 and raw.identifier in _RESERVED_RAW):
        raise LocalProtocolError(f"raw element {raw.identifier:#04x} is written by the codec itself")
    single = rules.is_single_octet(raw.identifier)
    if (single and raw.content) or len(raw.content) > 0xFF:
        raise LocalProtocolError(f"raw element {raw.identifier:#04x} content length {len(raw.content)}")
    return _Element(raw.codeset, raw.identifier, raw.content)


def _check_rules(message_type: MessageType, elements: list[_Element]) -> None:
    counts: dict[int, int] = {}
    for element in elements:
        if element.codeset:
            if element.codeset < 4:
                raise LocalProtocolError(f"codeset {element.codeset} is reserved")
            continue
        rule = rules.rule_of(message_type, element.identifier)
        if rule is None:
            raise LocalProtocolError(f"element {element.identifier:#04x} does not go in {message_type.name}")
        key = rules.element_key(element.identifier)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] > rule.repeat:
            raise LocalProtocolError(f"element {element.identifier:#04x} repeated in {message_type.name}")
    for identifier in rules.mandatory_elements(message_type, None):
        if identifier not in counts:
            raise LocalProtocolError(f"{message_type.name} without its mandatory element {identifier:#04x}")
