"""The Q.931 message model (ETSI EN 300 403-1, ITU-T Q.931 §4): message types, information elements and the
decoded message, as plain values shared by the codec (:mod:`appliance.pri.q931_codec`) and the call
machines.

A :class:`Message` is what one D-channel I-frame carries: the header (protocol discriminator 0x08, a
two-octet call reference on a primary rate interface, the message type) and its information elements in
wire order. The elements this appliance acts on are typed (:class:`BearerCapability`,
:class:`ChannelId`, :class:`PartyNumber`, :class:`Cause`, :class:`ProgressIndicator`, :class:`Display`,
:class:`SendingComplete`, :class:`RestartIndicator`, :class:`CallState`, :class:`KeypadFacility`); any other
recognised or unrecognised element is kept as :class:`RawIe` so that it can be reported or passed on.

Decoding is lenient where Q.931 §5.8 says an error is to be answered rather than the message dropped: the
codec returns a :class:`Decoded` with the message and the :class:`IeProblem` list (a mandatory element
missing, an unrecognised element, an element whose content is wrong), and the call machine chooses the
answer (§5.8.5–§5.8.7.2: cause 96, 99 or 100 in a STATUS or a clearing message). Faults that leave no
message to act on raise :class:`~appliance.pri.errors.Q931DecodeError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

PROTOCOL_DISCRIMINATOR: Final = 0x08  # Q.931 §4.2: Q.931/I.451 user-network call control messages
CALL_REFERENCE_LENGTH: Final = 2  # Q.931 §4.3: two octets on a primary rate interface
GLOBAL_CALL_REFERENCE: Final = 0  # Q.931 §4.3: the dummy/global call reference (RESTART, some STATUS)
MAX_CALL_REFERENCE: Final = 0x7FFF


class MessageType(enum.IntEnum):
    """Q.931 §4.4 Table 4-2: the message types of circuit-mode call control used on a PRI."""

    ALERTING = 0x01
    CALL_PROCEEDING = 0x02
    PROGRESS = 0x03
    SETUP = 0x05
    CONNECT = 0x07
    SETUP_ACKNOWLEDGE = 0x0D
    CONNECT_ACKNOWLEDGE = 0x0F
    DISCONNECT = 0x45
    RESTART = 0x46
    RELEASE = 0x4D
    RESTART_ACKNOWLEDGE = 0x4E
    RELEASE_COMPLETE = 0x5A
    FACILITY = 0x62
    NOTIFY = 0x6E
    STATUS_ENQUIRY = 0x75
    INFORMATION = 0x7B
    STATUS = 0x7D


class IeId(enum.IntEnum):
    """Q.931 §4.5 Table 4-3, codeset 0: identifiers of the variable-length elements, and the single-octet
    elements by their full octet."""

    BEARER_CAPABILITY = 0x04
    CAUSE = 0x08
    CALL_STATE = 0x14
    CHANNEL_IDENTIFICATION = 0x18
    FACILITY = 0x1C
    PROGRESS_INDICATOR = 0x1E
    NOTIFICATION_INDICATOR = 0x27
    DISPLAY = 0x28
    DATE_TIME = 0x29
    KEYPAD_FACILITY = 0x2C
    SIGNAL = 0x34
    CONNECTED_NUMBER = 0x4C
    CALLING_PARTY_NUMBER = 0x6C
    CALLING_PARTY_SUBADDRESS = 0x6D
    CALLED_PARTY_NUMBER = 0x70
    CALLED_PARTY_SUBADDRESS = 0x71
    REDIRECTING_NUMBER = 0x74
    TRANSIT_NETWORK_SELECTION = 0x78
    RESTART_INDICATOR = 0x79
    LOW_LAYER_COMPATIBILITY = 0x7C
    HIGH_LAYER_COMPATIBILITY = 0x7D
    USER_USER = 0x7E
    # single-octet elements (Q.931 §4.5.1): the whole octet
    SENDING_COMPLETE = 0xA1


class CallStateValue(enum.IntEnum):
    """Q.931 §2.1 and §4.5.7: call states, user side (U) and network side (N) share the numbers."""

    NULL = 0
    CALL_INITIATED = 1
    OVERLAP_SENDING = 2
    OUTGOING_CALL_PROCEEDING = 3
    CALL_DELIVERED = 4
    CALL_PRESENT = 6
    CALL_RECEIVED = 7
    CONNECT_REQUEST = 8
    INCOMING_CALL_PROCEEDING = 9
    ACTIVE = 10
    DISCONNECT_REQUEST = 11
    DISCONNECT_INDICATION = 12
    RELEASE_REQUEST = 19
    OVERLAP_RECEIVING = 25
    # global call reference states (§2.4): REST 1 / REST 2
    RESTART_REQUEST = 61
    RESTART = 62


class TypeOfNumber(enum.IntEnum):
    """Q.931 §4.5.10 octet 3 bits 7-5."""

    UNKNOWN = 0
    INTERNATIONAL = 1
    NATIONAL = 2
    NETWORK_SPECIFIC = 3
    SUBSCRIBER = 4
    ABBREVIATED = 6


class NumberingPlan(enum.IntEnum):
    """Q.931 §4.5.10 octet 3 bits 4-1."""

    UNKNOWN = 0
    ISDN = 1  # E.164
    DATA = 3
    TELEX = 4
    NATIONAL = 8
    PRIVATE = 9


class Presentation(enum.IntEnum):
    """Q.931 §4.5.10 octet 3a bits 7-6."""

    ALLOWED = 0
    RESTRICTED = 1
    NOT_AVAILABLE = 2


class Screening(enum.IntEnum):
    """Q.931 §4.5.10 octet 3a bits 2-1."""

    USER_NOT_SCREENED = 0
    USER_VERIFIED_PASSED = 1
    USER_VERIFIED_FAILED = 2
    NETWORK_PROVIDED = 3


class Location(enum.IntEnum):
    """Q.850 §2.2.3 (cause and progress indicator octet 3 bits 4-1)."""

    USER = 0
    PRIVATE_LOCAL = 1
    PUBLIC_LOCAL = 2
    TRANSIT = 3
    PUBLIC_REMOTE = 4
    PRIVATE_REMOTE = 5
    INTERNATIONAL = 7
    BEYOND_INTERWORKING = 10


class ProgressDescription(enum.IntEnum):
    """Q.931 §4.5.23 octet 4."""

    NOT_END_TO_END_ISDN = 1
    DESTINATION_NOT_ISDN = 2
    ORIGIN_NOT_ISDN = 3
    RETURNED_TO_ISDN = 4
    INTERWORKING = 5
    IN_BAND_AVAILABLE = 8


class TransferCapability(enum.IntEnum):
    """Q.931 §4.5.5 octet 3 bits 5-1."""

    SPEECH = 0x00
    UNRESTRICTED_DIGITAL = 0x08
    RESTRICTED_DIGITAL = 0x09
    AUDIO_3K1 = 0x10
    UNRESTRICTED_DIGITAL_TONES = 0x11
    VIDEO = 0x18


class Layer1Protocol(enum.IntEnum):
    """Q.931 §4.5.5 octet 5 bits 5-1 (user information layer 1 protocol)."""

    V110 = 0x01
    G711_ULAW = 0x02
    G711_ALAW = 0x03
    G721 = 0x04


class RestartClass(enum.IntEnum):
    """Q.931 §4.5.25 octet 3 bits 3-1."""

    INDICATED_CHANNELS = 0
    SINGLE_INTERFACE = 6
    ALL_INTERFACES = 7


@dataclass(frozen=True, slots=True)
class BearerCapability:
    """Q.931 §4.5.5. Circuit mode, 64 kbit/s (octet 4 = 0x90) unless the codec read otherwise."""

    capability: TransferCapability = TransferCapability.SPEECH
    layer1: Layer1Protocol | None = Layer1Protocol.G711_ALAW
    circuit_mode: bool = True
    rate: int = 0x10  # information transfer rate: 0x10 = 64 kbit/s
    multiplier: int | None = None  # octet 4.1 rate multiplier, present only with rate 0x18 (multirate)


@dataclass(frozen=True, slots=True)
class ChannelId:
    """Q.931 §4.5.13 on a primary rate interface (octet 3 bit 6 = 1, interface implicit).

    ``channels`` are B-channel numbers as the channel number octets carry them: E1 timeslots (1-15,
    17-31, channel type B, number map 0). ``exclusive`` is octet 3 bit 4 (0 = preferred). ``d_channel``
    is bit 3. ``selection`` is octet 3 bits 2-1: ``"none"`` (0: no channel), ``"indicated"`` (1: as
    indicated in the following octets), ``"any"`` (3: any channel).
    """

    channels: tuple[int, ...] = ()
    exclusive: bool = False
    d_channel: bool = False
    selection: Literal["none", "indicated", "any"] = "indicated"


@dataclass(frozen=True, slots=True)
class PartyNumber:
    """Calling/called/connected/redirecting party number (Q.931 §4.5.8/§4.5.10). ``digits`` are IA5
    characters (0-9, *, #, and A-D only where the network allows them). Presentation and screening are
    ``None`` when octet 3a is absent (and always for the called party number, which has no octet 3a)."""

    digits: str
    type_of_number: TypeOfNumber = TypeOfNumber.UNKNOWN
    plan: NumberingPlan = NumberingPlan.ISDN
    presentation: Presentation | None = None
    screening: Screening | None = None


@dataclass(frozen=True, slots=True)
class Cause:
    """Q.931 §4.5.12 / Q.850 §2.2: coding standard CCITT (0), a location and a cause value 1-127;
    ``diagnostic`` is the diagnostic octets (e.g. the IE identifier for cause 99/100)."""

    value: int
    location: Location = Location.USER
    diagnostic: bytes = b""


@dataclass(frozen=True, slots=True)
class ProgressIndicator:
    """Q.931 §4.5.23."""

    description: ProgressDescription
    location: Location = Location.USER


@dataclass(frozen=True, slots=True)
class Display:
    """Q.931 §4.5.16: IA5 text, at most 82 characters in the network-to-user direction (ETSI: 32)."""

    text: str


@dataclass(frozen=True, slots=True)
class KeypadFacility:
    """Q.931 §4.5.18: IA5 characters the user keyed."""

    digits: str


@dataclass(frozen=True, slots=True)
class SendingComplete:
    """Q.931 §4.5.27: single-octet element 0xA1, the called number is complete."""


@dataclass(frozen=True, slots=True)
class RestartIndicator:
    """Q.931 §4.5.25."""

    restart_class: RestartClass


@dataclass(frozen=True, slots=True)
class CallState:
    """Q.931 §4.5.7."""

    state: CallStateValue


@dataclass(frozen=True, slots=True)
class RawIe:
    """Any other element, as received: its codeset (after a shift), identifier and content octets.
    ``identifier`` is the whole octet for a single-octet element (``content`` then empty)."""

    identifier: int
    content: bytes = b""
    codeset: int = 0


Ie = (
    BearerCapability
    | ChannelId
    | PartyNumber
    | Cause
    | ProgressIndicator
    | Display
    | KeypadFacility
    | SendingComplete
    | RestartIndicator
    | CallState
    | RawIe
)

# Which element a party number fills is given by its position in :class:`Message` (the fields below),
# not by the dataclass, since four elements share it.


@dataclass(frozen=True, slots=True)
class Message:
    """One Q.931 message. ``call_reference`` is the call reference value (0 = global); ``from_originator``
    is the call reference flag read as "sent by the side that allocated the call reference" (flag bit 0,
    Q.931 §4.3). The typed fields hold the first occurrence of each element the appliance acts on;
    ``progress`` may repeat (up to two in ETSI), ``channels`` of a RESTART may repeat; ``others`` keeps
    every other element in wire order so a message round-trips through the codec unchanged in meaning."""

    type: MessageType
    call_reference: int
    from_originator: bool
    bearer: BearerCapability | None = None
    channel: ChannelId | None = None
    calling: PartyNumber | None = None
    called: PartyNumber | None = None
    connected: PartyNumber | None = None
    cause: Cause | None = None
    progress: tuple[ProgressIndicator, ...] = ()
    display: Display | None = None
    keypad: KeypadFacility | None = None
    sending_complete: bool = False
    restart: RestartIndicator | None = None
    call_state: CallState | None = None
    others: tuple[RawIe, ...] = ()


ProblemKind = Literal["missing", "unrecognized", "content", "repeated", "out-of-sequence"]


@dataclass(frozen=True, slots=True)
class IeProblem:
    """One element-level fault in a received message (Q.931 §5.8.5–§5.8.7.2).

    ``mandatory`` says whether the element is mandatory in this message type (EN 300 403-1 §3);
    ``comprehension_required`` whether its identifier is in the comprehension-required range (codeset 0,
    bits 8-5 = 0000, §4.5.1), which makes an unrecognised one be handled like a missing mandatory one.
    """

    identifier: int
    kind: ProblemKind
    mandatory: bool
    comprehension_required: bool = False
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A received message and the element-level faults found in it (empty when it was clean)."""

    message: Message
    problems: tuple[IeProblem, ...] = ()
