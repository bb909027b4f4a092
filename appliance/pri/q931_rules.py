"""Which information elements each Q.931 message carries (ETSI EN 300 403-1 §3, Q.931 §3.1 and §3.4).

For every message type the appliance handles, the codeset 0 elements that are mandatory and those that
are allowed, with the direction(s) in which the standard lists them ("n-u": network to user, "u-n": user
to network) and how many times one may appear. The codec uses these to fill
:class:`~appliance.pri.q931_model.IeProblem` lists (missing mandatory, unrecognised or unexpected,
repeated) and to refuse encoding a message the far end would have to reject.

Rules that depend on the call's state rather than the message alone are left to the call machine and
named here so it can apply them:

- :data:`FIRST_RESPONSE_TYPES`: channel identification is mandatory in the first message answering a
  SETUP (EN 300 403-1 §3.1.2/§3.1.3/§3.1.1/§3.1.14 notes; Q.931 §5.2.3.2), optional after;
- the cause is mandatory in RELEASE and RELEASE COMPLETE when that message is the first clearing message
  (the notes to the RELEASE and RELEASE COMPLETE tables, Q.931 §3.1.9/§3.1.10);
- channel identification in RESTART / RESTART ACK is present with restart class "indicated channels" and
  absent otherwise (Q.931 §4.5.25, §5.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from appliance.pri.q931_model import IeId, MessageType

Direction = Literal["both", "n-u", "u-n"]

# Single-octet elements (Q.931 §4.5.1, Table 4-3): type 1 ones are identified by bits 8-5 (their key is
# the octet with bits 4-1 cleared), type 2 ones by the whole octet.
SHIFT: Final = 0x90  # §4.5.3/§4.5.4, bit 4 = 1: non-locking
CONGESTION_LEVEL: Final = 0xB0
REPEAT_INDICATOR: Final = 0xD0
MORE_DATA: Final = 0xA0
NETWORK_SPECIFIC_FACILITIES: Final = 0x20  # §4.5.21
CONNECTED_SUBADDRESS: Final = 0x4D  # EN 300 097-1 (COLP)

# Identifiers the codec knows (Q.931 Table 4-3): one of these out of place is "unexpected", reported as
# unrecognised but never as comprehension-required, which §5.8.7.1 reserves for what the receiver cannot
# understand (an unexpected cause in ALERTING must not clear the call with cause 96).
RECOGNISED: Final = frozenset(
    {
        *(int(i) for i in IeId),
        NETWORK_SPECIFIC_FACILITIES,
        CONNECTED_SUBADDRESS,
        SHIFT,
        CONGESTION_LEVEL,
        REPEAT_INDICATOR,
        MORE_DATA,
    }
)

FIRST_RESPONSE_TYPES: Final = frozenset(
    {
        MessageType.SETUP_ACKNOWLEDGE,
        MessageType.CALL_PROCEEDING,
        MessageType.ALERTING,
        MessageType.CONNECT,
    }
)


def element_key(identifier: int) -> int:
    """The identifier a rule is keyed by: a type 1 single-octet element (bits 8-5 = 1xxx but 1010) by its
    bits 8-5, anything else by the whole identifier octet."""
    if identifier & 0x80 and identifier & 0xF0 != 0xA0:
        return identifier & 0xF0
    return identifier


def is_single_octet(identifier: int) -> bool:
    """Q.931 §4.5.1: bit 8 = 1 marks a single-octet element."""
    return bool(identifier & 0x80)


def comprehension_required(identifier: int) -> bool:
    """Q.931 §4.5.1/§5.8.7.1: an unknown codeset 0 identifier with bits 8-5 = 0000 (e.g. 00, segmented
    message) must be understood by the receiver, so it is handled like a missing mandatory element."""
    return identifier & 0xF0 == 0 and element_key(identifier) not in RECOGNISED


@dataclass(frozen=True, slots=True)
class IeRule:
    """How one element may appear in one message type: ``mandatory`` names the direction(s) in which it
    must be present (``None``: optional), ``allowed`` those in which it may be, ``repeat`` how many times."""

    mandatory: Direction | None = None
    allowed: Direction = "both"
    repeat: int = 1


M: Final = IeRule(mandatory="both")
OPT: Final = IeRule()
N_U: Final = IeRule(allowed="n-u")  # display, signal, date/time: the network informs the user
U_N: Final = IeRule(allowed="u-n")  # keypad in SETUP, transit network selection
PROGRESS_2: Final = IeRule(repeat=2)  # EN 300 403-1 §3.1: may be repeated (up to two times)
BC_2: Final = IeRule(mandatory="both", repeat=2)  # with a repeat indicator, §5.11 bearer negotiation
LAYERS_2: Final = IeRule(repeat=2)  # LLC/HLC with a repeat indicator
RESTART_CHANNELS: Final = IeRule(repeat=30)  # Q.931 §3.4.2: channel identification may repeat

_BC, _CAUSE, _STATE = IeId.BEARER_CAPABILITY, IeId.CAUSE, IeId.CALL_STATE
_CHANNEL, _FACILITY, _PROGRESS = IeId.CHANNEL_IDENTIFICATION, IeId.FACILITY, IeId.PROGRESS_INDICATOR
_DISPLAY, _SIGNAL, _UUI, _HLC = IeId.DISPLAY, IeId.SIGNAL, IeId.USER_USER, IeId.HIGH_LAYER_COMPATIBILITY

MESSAGE_RULES: Final[Mapping[MessageType, Mapping[int, IeRule]]] = {
    # §3.1.1 ALERTING
    MessageType.ALERTING: {
        _BC: OPT, _CHANNEL: OPT, _FACILITY: OPT, _PROGRESS: PROGRESS_2, _DISPLAY: N_U, _SIGNAL: N_U,
        _HLC: OPT, _UUI: OPT,
    },
    # §3.1.2 CALL PROCEEDING
    MessageType.CALL_PROCEEDING: {
        _BC: OPT, _CHANNEL: OPT, _FACILITY: OPT, _PROGRESS: PROGRESS_2, _DISPLAY: N_U, _HLC: OPT,
    },
    # §3.1.3 CONNECT (connected number and subaddress: COLP, EN 300 097-1)
    MessageType.CONNECT: {
        _BC: OPT, _CHANNEL: OPT, _FACILITY: OPT, _PROGRESS: PROGRESS_2, _DISPLAY: N_U, IeId.DATE_TIME: N_U,
        _SIGNAL: N_U, IeId.CONNECTED_NUMBER: OPT, CONNECTED_SUBADDRESS: OPT,
        IeId.LOW_LAYER_COMPATIBILITY: OPT, _HLC: OPT, _UUI: OPT,
    },
    # §3.1.4 CONNECT ACKNOWLEDGE
    MessageType.CONNECT_ACKNOWLEDGE: {_DISPLAY: N_U, _SIGNAL: N_U},
    # §3.1.5 DISCONNECT
    MessageType.DISCONNECT: {
        _CAUSE: M, _FACILITY: OPT, _PROGRESS: PROGRESS_2, _DISPLAY: N_U, _SIGNAL: N_U, _UUI: OPT,
    },
    # §3.1.6 INFORMATION
    MessageType.INFORMATION: {
        IeId.SENDING_COMPLETE: OPT, _CAUSE: N_U, _DISPLAY: N_U, IeId.KEYPAD_FACILITY: OPT, _SIGNAL: N_U,
        IeId.CALLED_PARTY_NUMBER: OPT,
    },
    # §3.1.8 PROGRESS
    MessageType.PROGRESS: {
        _BC: OPT, _CAUSE: OPT, _FACILITY: OPT, _PROGRESS: IeRule(mandatory="both", repeat=2), _DISPLAY: N_U,
        _HLC: OPT, _UUI: OPT,
    },
    # §3.1.9 RELEASE, §3.1.10 RELEASE COMPLETE (cause mandatory in the first clearing message: the machine)
    MessageType.RELEASE: {_CAUSE: OPT, _FACILITY: OPT, _DISPLAY: N_U, _SIGNAL: N_U, _UUI: OPT},
    MessageType.RELEASE_COMPLETE: {_CAUSE: OPT, _FACILITY: OPT, _DISPLAY: N_U, _SIGNAL: N_U, _UUI: OPT},
    # §3.4.1 RESTART, §3.4.2 RESTART ACKNOWLEDGE (global call reference)
    MessageType.RESTART: {_CHANNEL: RESTART_CHANNELS, _DISPLAY: N_U, IeId.RESTART_INDICATOR: M},
    MessageType.RESTART_ACKNOWLEDGE: {_CHANNEL: RESTART_CHANNELS, _DISPLAY: N_U, IeId.RESTART_INDICATOR: M},
    # §3.1.14 SETUP: channel identification mandatory from the network on a PRI, optional from the user
    MessageType.SETUP: {
        IeId.SENDING_COMPLETE: OPT, REPEAT_INDICATOR: OPT, _BC: BC_2, _CHANNEL: IeRule(mandatory="n-u"),
        _FACILITY: OPT, _PROGRESS: PROGRESS_2, NETWORK_SPECIFIC_FACILITIES: OPT, _DISPLAY: N_U,
        IeId.KEYPAD_FACILITY: U_N, _SIGNAL: N_U, IeId.CALLING_PARTY_NUMBER: OPT,
        IeId.CALLING_PARTY_SUBADDRESS: OPT, IeId.CALLED_PARTY_NUMBER: OPT, IeId.CALLED_PARTY_SUBADDRESS: OPT,
        IeId.REDIRECTING_NUMBER: OPT, IeId.TRANSIT_NETWORK_SELECTION: U_N,
        IeId.LOW_LAYER_COMPATIBILITY: LAYERS_2, _HLC: LAYERS_2, _UUI: OPT,
    },
    # §3.1.15 SETUP ACKNOWLEDGE
    MessageType.SETUP_ACKNOWLEDGE: {_CHANNEL: OPT, _PROGRESS: PROGRESS_2, _DISPLAY: N_U, _SIGNAL: N_U},
    # §3.1.16 STATUS, §3.1.17 STATUS ENQUIRY
    MessageType.STATUS: {_CAUSE: M, _STATE: M, _DISPLAY: N_U},
    MessageType.STATUS_ENQUIRY: {_DISPLAY: N_U},
    # §3.2 FACILITY, §3.1.7 NOTIFY (kept so that they are not rejected as unknown message types)
    MessageType.FACILITY: {_FACILITY: M, _DISPLAY: N_U},
    MessageType.NOTIFY: {_BC: OPT, IeId.NOTIFICATION_INDICATOR: M, _DISPLAY: N_U},
}  # fmt: skip


def _in(direction: Direction | None, from_network: bool | None) -> bool:
    """Whether a rule's ``direction`` covers a message sent by the network (``True``), by the user
    (``False``), or either (``None``: holds in *some* direction for ``allowed``)."""
    if direction is None:
        return False
    if direction == "both" or from_network is None:
        return True
    return (direction == "n-u") == from_network


def rule_of(message_type: MessageType, identifier: int) -> IeRule | None:
    """The rule of a codeset 0 element in a message type, ``None`` when the element does not belong."""
    return MESSAGE_RULES[message_type].get(element_key(identifier))


def is_mandatory(message_type: MessageType, identifier: int, from_network: bool | None) -> bool:
    """Mandatory in this direction; with ``from_network=None``, mandatory in both directions."""
    rule = rule_of(message_type, identifier)
    if rule is None or rule.mandatory is None:
        return False
    return rule.mandatory == "both" or (from_network is not None and _in(rule.mandatory, from_network))


def is_allowed(message_type: MessageType, identifier: int, from_network: bool | None) -> bool:
    """Allowed in this direction; with ``from_network=None``, allowed in one direction at least."""
    rule = rule_of(message_type, identifier)
    return rule is not None and _in(rule.allowed, from_network)


def mandatory_elements(message_type: MessageType, from_network: bool | None) -> tuple[int, ...]:
    """The mandatory element identifiers of a message type in a direction (see :func:`is_mandatory`)."""
    return tuple(i for i in MESSAGE_RULES[message_type] if is_mandatory(message_type, i, from_network))
