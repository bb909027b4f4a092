"""Codecs of the typed Q.931 information elements (ETSI EN 300 403-1 / ITU-T Q.931 §4.5).

Each element has a ``decode_*`` function taking the element's *contents* (the octets after the identifier
and length octets) and returning the model value, and an ``encode_*`` function doing the reverse. A decode
function raises :class:`IeContentError` when the contents break the element's coding (Q.931 §5.8.6.2 /
§5.8.7.2: the caller turns that into an ``IeProblem`` of kind ``"content"``; the rest of the message is
unaffected). An encode function raises :class:`~appliance.pri.errors.LocalProtocolError` for a model value
that has no valid coding, so that encode never writes octets that decode would not give back.

Octet numbering in the comments is that of the standard: octet 1 is the identifier, octet 2 the length,
octet 3 the first content octet. "ext" is bit 8, the extension bit (0: the octet group continues).
"""

from __future__ import annotations

import enum
from typing import Final, Literal, TypeVar

from appliance.pri.errors import LocalProtocolError
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

EXT: Final = 0x80
CCITT: Final = 0  # coding standard 00: ITU-T (Q.931 §4.5.5 octet 3 bits 7-6, and the same in the others)
MULTIRATE: Final = 0x18  # Q.931 §4.5.5 octet 4: information transfer rate "multirate (64 kbit/s base)"
# Q.931 §4.5.5 octet 4 bits 5-1: 64, 2x64, 384, 1536, 1920 kbit/s and multirate.
RATES: Final = frozenset({0x10, 0x11, 0x13, 0x15, 0x17, MULTIRATE})
# Table 4-3 maximum lengths, as content octets (total length less the identifier and length octets).
MAX_DISPLAY: Final = 82  # §4.5.16 (EN 300 403-1 keeps Q.931's figure; the model says 82 characters)
MAX_KEYPAD: Final = 32  # §4.5.18: maximum length 34 octets
MAX_CAUSE: Final = 30  # §4.5.12: maximum length 32 octets
MAX_DIGITS: Final = 31  # numbers: network dependent; 31 digits cover E.164's 15 with room for prefixes
MAX_CHANNELS: Final = 30  # an E1 has 30 B-channels
# IA5 characters a party number may carry (Q.931 §4.5.8 octet 4: digits, * and #; A-D where allowed).
NUMBER_DIGITS: Final = frozenset("0123456789*#ABCD")
D_TIMESLOT: Final = 16  # E1 timeslot 16 carries the D-channel, never a B-channel (G.704)
_SELECTION: Final[dict[int, Literal["none", "indicated", "any"]]] = {0: "none", 1: "indicated", 3: "any"}
_SELECTION_CODE: Final = {name: code for code, name in _SELECTION.items()}

E = TypeVar("E", bound=enum.IntEnum)


class IeContentError(ValueError):
    """The contents of one element break its coding (a "content error", Q.931 §5.8.6.2 / §5.8.7.2)."""


def _enum(kind: type[E], value: int, what: str) -> E:
    try:
        return kind(value)
    except ValueError:
        raise IeContentError(f"{what}: reserved value {value:#x}") from None


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise IeContentError(what)


def _check(condition: bool, what: str) -> None:
    """Encode-side guard: a model value with no valid coding is our caller's error."""
    if not condition:
        raise LocalProtocolError(what)


def _ext_group(data: bytes, start: int) -> int:
    """The index just past the octet group starting at ``start``: octets up to and including the first
    with ext = 1 (Q.931 §4.5.1, the extension mechanism of octet groups such as 5, 5a, 5b ...)."""
    i = start
    while i < len(data) and not data[i] & EXT:
        i += 1
    _need(i < len(data), "octet group not terminated by an octet with ext = 1")
    return i + 1


# --- bearer capability, Q.931 §4.5.5 ------------------------------------------------------------------


def decode_bearer(data: bytes) -> BearerCapability:
    """Octet 3 (ext 1, coding standard, capability), octet 4 (ext, transfer mode, rate), octet 4.1 (ext 1,
    rate multiplier) only with rate multirate, then each optional: octet 5 (ext, layer 1 id 01, protocol)
    with 5a-5d, octet 6 (layer 2 id 10) and octet 7 (layer 3 id 11); the model keeps the layer 1 protocol
    only."""
    _need(2 <= len(data) <= 10, f"bearer capability length {len(data)}")
    o3, o4 = data[0], data[1]
    _need(bool(o3 & EXT) and bool(o4 & EXT), "bearer capability octets 3/4 without ext = 1")
    _need((o3 >> 5) & 3 == CCITT, "bearer capability coding standard is not ITU-T")
    capability = _enum(TransferCapability, o3 & 0x1F, "information transfer capability")
    mode = (o4 >> 5) & 3
    _need(mode in (0, 2), f"transfer mode {mode}")
    rate = o4 & 0x1F
    _need(rate in RATES, f"information transfer rate {rate:#x}")
    i = 2
    multiplier: int | None = None
    if rate == MULTIRATE:  # octet 4.1
        _need(i < len(data) and bool(data[i] & EXT), "multirate without octet 4.1")
        multiplier = data[i] & 0x7F
        _need(2 <= multiplier <= 30, f"rate multiplier {multiplier}")
        i += 1
    layer1: Layer1Protocol | None = None
    layer = 0
    while i < len(data):  # octets 5, 6, 7, each optional, in that order, told apart by bits 7-6
        ident = (data[i] >> 5) & 3
        _need(ident > layer, f"layer identification {ident} out of order or zero")
        if ident == 1:
            layer1 = _enum(Layer1Protocol, data[i] & 0x1F, "user information layer 1 protocol")
        layer = ident
        i = _ext_group(data, i)  # e.g. octets 5a-5d (rate adaption) belong to octet 5's group
    return BearerCapability(capability, layer1, mode == 0, rate, multiplier)


def encode_bearer(bc: BearerCapability) -> bytes:
    _check(bc.rate in RATES, f"bearer capability rate {bc.rate:#x}")
    _check(
        (bc.multiplier is not None) == (bc.rate == MULTIRATE), "rate multiplier goes with the multirate rate"
    )
    out = bytearray([EXT | CCITT << 5 | bc.capability, EXT | (0 if bc.circuit_mode else 2) << 5 | bc.rate])
    if bc.multiplier is not None:
        _check(2 <= bc.multiplier <= 30, f"rate multiplier {bc.multiplier}")
        out.append(EXT | bc.multiplier)
    if bc.layer1 is not None:
        out.append(EXT | 1 << 5 | bc.layer1)
    return bytes(out)


# --- channel identification on a primary rate interface, Q.931 §4.5.13 ---------------------------------


def decode_channel(data: bytes) -> ChannelId:
    """Octet 3: ext 1, interface identifier present (bit 7, must be 0: the interface is implicit), interface
    type (bit 6, 1 = primary rate), spare, preferred/exclusive (bit 4), D-channel indicator (bit 3), channel
    selection (bits 2-1). With selection "as indicated", octet 3.2 (ext 1, coding standard, number/map bit 5
    = 0: numbers, channel type bits 4-1 = 0011: B-channel units) and the channel number octets 3.3 (ext = 1
    on the last; bits 7-1 the number)."""
    _need(1 <= len(data) <= 2 + MAX_CHANNELS, f"channel identification length {len(data)}")
    o3 = data[0]
    _need(bool(o3 & EXT), "channel identification octet 3 without ext = 1")
    _need(not o3 & 0x40, "explicit interface identifier (octet 3.1) is not supported")
    _need(bool(o3 & 0x20), "interface type basic on a primary rate interface")
    selection = _SELECTION.get(o3 & 3)
    _need(selection is not None, "channel selection 10 is reserved on a primary rate interface")
    assert selection is not None
    exclusive, d_channel = bool(o3 & 0x08), bool(o3 & 0x04)
    if selection != "indicated":
        _need(len(data) == 1, "channel octets with a selection other than 'as indicated'")
        return ChannelId((), exclusive, d_channel, selection)
    _need(len(data) >= 3, "selection 'as indicated' without octets 3.2 and 3.3")
    o32 = data[1]
    _need(bool(o32 & EXT), "octet 3.2 without ext = 1")
    _need((o32 >> 5) & 3 == CCITT, "channel identification coding standard is not ITU-T")
    _need(not o32 & 0x10, "channel indicated by slot map (number/map = 1) is not supported")
    _need(o32 & 0x0F == 3, f"channel type {o32 & 0x0F} is not B-channel units")
    numbers = data[2:]
    _need(bool(numbers[-1] & EXT) and not any(n & EXT for n in numbers[:-1]), "channel number ext bits")
    channels = tuple(n & 0x7F for n in numbers)
    _need(all(_b_channel(c) for c in channels), f"channel numbers {channels} are not E1 B-channels")
    return ChannelId(channels, exclusive, d_channel, selection)


def _b_channel(number: int) -> bool:
    return 1 <= number <= 31 and number != D_TIMESLOT


def encode_channel(ch: ChannelId) -> bytes:
    _check(ch.selection in _SELECTION_CODE, f"channel selection {ch.selection!r}")
    indicated = ch.selection == "indicated"
    _check(indicated == bool(ch.channels), "channel numbers go with selection 'indicated', and only there")
    _check(len(ch.channels) <= MAX_CHANNELS and all(_b_channel(c) for c in ch.channels), "B-channel numbers")
    o3 = EXT | 0x20 | (0x08 if ch.exclusive else 0) | (0x04 if ch.d_channel else 0)
    out = bytearray([o3 | _SELECTION_CODE[ch.selection]])
    if indicated:
        out.append(EXT | CCITT << 5 | 3)
        out += bytes(ch.channels[:-1])
        out.append(EXT | ch.channels[-1])
    return bytes(out)


# --- party numbers, Q.931 §4.5.8 (called), §4.5.10 (calling), EN 300 097-1 (connected) -----------------


def decode_number(data: bytes, *, octet_3a: bool) -> PartyNumber:
    """Octet 3: ext, type of number (bits 7-5), numbering plan (bits 4-1); with ``octet_3a`` (calling and
    connected numbers) an optional octet 3a (ext 1, presentation bits 7-6, screening bits 2-1) when octet 3
    has ext = 0; then the IA5 digits (bit 8 = 0)."""
    _need(1 <= len(data) <= 2 + MAX_DIGITS, f"party number length {len(data)}")
    o3 = data[0]
    ton = _enum(TypeOfNumber, (o3 >> 4) & 7, "type of number")
    plan = _enum(NumberingPlan, o3 & 0x0F, "numbering plan")
    i = 1
    presentation: Presentation | None = None
    screening: Screening | None = None
    if not o3 & EXT:
        _need(octet_3a, "called party number octet 3 with ext = 0")
        _need(len(data) >= 2 and bool(data[1] & EXT), "octet 3a missing or without ext = 1")
        presentation = _enum(Presentation, (data[1] >> 5) & 3, "presentation indicator")
        screening = Screening(data[1] & 3)
        i = 2
    raw = data[i:]
    _need(len(raw) <= MAX_DIGITS, "too many digits")
    digits = "".join(chr(c) for c in raw)
    _need(set(digits) <= NUMBER_DIGITS, f"number digits {raw!r} are not IA5 digits")
    return PartyNumber(digits, ton, plan, presentation, screening)


def encode_number(number: PartyNumber, *, octet_3a: bool) -> bytes:
    _check(set(number.digits) <= NUMBER_DIGITS and len(number.digits) <= MAX_DIGITS, "party number digits")
    with_3a = number.presentation is not None or number.screening is not None
    _check(octet_3a or not with_3a, "presentation/screening on a number without octet 3a")
    o3 = number.type_of_number << 4 | number.plan
    out = bytearray([o3 if with_3a else EXT | o3])
    if with_3a:
        presentation = number.presentation or Presentation.ALLOWED
        screening = number.screening or Screening.USER_NOT_SCREENED
        out.append(EXT | presentation << 5 | screening)
    return bytes(out) + number.digits.encode("ascii")


# --- cause, Q.931 §4.5.12 / Q.850 §2 --------------------------------------------------------------------


def decode_cause(data: bytes) -> Cause:
    """Octet 3: ext, coding standard, spare, location; octet 3a (ext 1, recommendation) when octet 3 has
    ext = 0; octet 4: ext 1, cause value; octets 5...: diagnostics. A coding standard other than ITU-T is
    accepted (the value still says why the call clears) and not kept; so is the recommendation."""
    _need(2 <= len(data) <= MAX_CAUSE, f"cause length {len(data)}")
    o3 = data[0]
    location = _enum(Location, o3 & 0x0F, "location")
    i = 1 if o3 & EXT else 2
    _need(i == 1 or bool(data[1] & EXT), "cause octet 3a without ext = 1")
    _need(i < len(data) and bool(data[i] & EXT), "cause octet 4 missing or without ext = 1")
    value = data[i] & 0x7F
    return Cause(value, location, bytes(data[i + 1 :]))


def encode_cause(cause: Cause) -> bytes:
    _check(0 <= cause.value <= 0x7F, f"cause value {cause.value}")
    _check(len(cause.diagnostic) <= MAX_CAUSE - 2, "cause diagnostic too long")
    return bytes([EXT | CCITT << 5 | cause.location, EXT | cause.value]) + cause.diagnostic


# --- progress indicator, Q.931 §4.5.23 -------------------------------------------------------------------


def decode_progress(data: bytes) -> ProgressIndicator:
    """Octet 3: ext 1, coding standard, spare, location; octet 4: ext 1, progress description."""
    _need(len(data) == 2, f"progress indicator length {len(data)}")
    _need(bool(data[0] & EXT) and bool(data[1] & EXT), "progress indicator octets without ext = 1")
    _need((data[0] >> 5) & 3 == CCITT, "progress indicator coding standard is not ITU-T")
    location = _enum(Location, data[0] & 0x0F, "location")
    return ProgressIndicator(_enum(ProgressDescription, data[1] & 0x7F, "progress description"), location)


def encode_progress(progress: ProgressIndicator) -> bytes:
    return bytes([EXT | CCITT << 5 | progress.location, EXT | progress.description])


# --- display and keypad facility, Q.931 §4.5.16 / §4.5.18 -------------------------------------------------


def _ia5(data: bytes, low: int, what: str) -> str:
    _need(all(low <= c <= 0x7E for c in data), f"{what}: not printable IA5")
    return data.decode("ascii")


def decode_display(data: bytes) -> Display:
    """IA5 characters. EN 300 403-1 carries no character set octet; one with bit 8 = 1 in front (the
    Q.931 1998 coding some switches send) is skipped."""
    _need(1 <= len(data) <= MAX_DISPLAY + 1, f"display length {len(data)}")
    text = data[1:] if data[0] & EXT else data
    _need(1 <= len(text) <= MAX_DISPLAY, "display empty or too long")
    return Display(_ia5(text, 0x20, "display"))


def encode_display(display: Display) -> bytes:
    text = display.text
    _check(len(text) <= MAX_DISPLAY and all(" " <= c <= "~" for c in text), "display text (printable IA5)")
    _check(bool(text), "empty display")
    return text.encode("ascii")


def decode_keypad(data: bytes) -> KeypadFacility:
    _need(1 <= len(data) <= MAX_KEYPAD, f"keypad facility length {len(data)}")
    return KeypadFacility(_ia5(data, 0x21, "keypad facility"))


def encode_keypad(keypad: KeypadFacility) -> bytes:
    digits = keypad.digits
    _check(1 <= len(digits) <= MAX_KEYPAD and all("!" <= c <= "~" for c in digits), "keypad characters")
    return digits.encode("ascii")


# --- restart indicator §4.5.25, call state §4.5.7 ----------------------------------------------------------


def decode_restart(data: bytes) -> RestartIndicator:
    """Octet 3: ext 1, spare bits 7-4, class bits 3-1."""
    _need(len(data) == 1 and bool(data[0] & EXT), "restart indicator coding")
    return RestartIndicator(_enum(RestartClass, data[0] & 0x07, "restart class"))


def encode_restart(restart: RestartIndicator) -> bytes:
    return bytes([EXT | restart.restart_class])


def decode_call_state(data: bytes) -> CallState:
    """Octet 3: coding standard bits 8-7, call state value bits 6-1 (no extension bit)."""
    _need(len(data) == 1 and data[0] >> 6 == CCITT, "call state coding")
    return CallState(_enum(CallStateValue, data[0] & 0x3F, "call state value"))


def encode_call_state(state: CallState) -> bytes:
    return bytes([CCITT << 6 | state.state])
