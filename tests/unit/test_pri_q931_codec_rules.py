"""The per-message element rules (EN 300 403-1 §3.1 and §3.4) and how decode applies them per direction."""

from __future__ import annotations

import pytest

from appliance.pri import q931_rules as rules
from appliance.pri.q931_codec import decode
from appliance.pri.q931_model import IeId, IeProblem, MessageType

T = MessageType

# Mandatory in both directions (EN 300 403-1 §3.1 tables, "M" in both columns).
MANDATORY = {
    T.SETUP: {IeId.BEARER_CAPABILITY},
    T.SETUP_ACKNOWLEDGE: set(),
    T.CALL_PROCEEDING: set(),
    T.ALERTING: set(),
    T.PROGRESS: {IeId.PROGRESS_INDICATOR},
    T.CONNECT: set(),
    T.CONNECT_ACKNOWLEDGE: set(),
    T.DISCONNECT: {IeId.CAUSE},
    T.RELEASE: set(),  # the cause: only in the first clearing message (the call machine's rule)
    T.RELEASE_COMPLETE: set(),
    T.RESTART: {IeId.RESTART_INDICATOR},
    T.RESTART_ACKNOWLEDGE: {IeId.RESTART_INDICATOR},
    T.STATUS: {IeId.CAUSE, IeId.CALL_STATE},
    T.STATUS_ENQUIRY: set(),
    T.INFORMATION: set(),
    T.FACILITY: {IeId.FACILITY},
    T.NOTIFY: {IeId.NOTIFICATION_INDICATOR},
}


def test_every_message_type_has_rules() -> None:
    assert set(rules.MESSAGE_RULES) == set(MessageType)


@pytest.mark.parametrize("message_type", sorted(MANDATORY))
def test_mandatory_elements(message_type: MessageType) -> None:
    assert set(rules.mandatory_elements(message_type, None)) == MANDATORY[message_type]


def test_channel_identification_is_mandatory_in_setup_from_the_network_only() -> None:
    channel = IeId.CHANNEL_IDENTIFICATION
    assert rules.is_mandatory(T.SETUP, channel, True)
    assert not rules.is_mandatory(T.SETUP, channel, False)
    assert not rules.is_mandatory(T.SETUP, channel, None)
    assert {T.SETUP_ACKNOWLEDGE, T.CALL_PROCEEDING, T.ALERTING, T.CONNECT} == rules.FIRST_RESPONSE_TYPES


@pytest.mark.parametrize(
    ("message_type", "identifier", "from_network", "allowed"),
    [
        (T.SETUP, IeId.DISPLAY, True, True),
        (T.SETUP, IeId.DISPLAY, False, False),  # display: network to user only
        (T.SETUP, IeId.DISPLAY, None, True),
        (T.SETUP, IeId.KEYPAD_FACILITY, False, True),
        (T.SETUP, IeId.KEYPAD_FACILITY, True, False),  # keypad in SETUP: user to network only
        (T.INFORMATION, IeId.KEYPAD_FACILITY, True, True),
        (T.SETUP, IeId.CAUSE, None, False),
        (T.ALERTING, IeId.SENDING_COMPLETE, None, False),
        (T.SETUP, 0xD1, None, True),  # repeat indicator (type 1, keyed by bits 8-5)
        (T.STATUS, IeId.CALL_STATE, False, True),
    ],
)
def test_allowed_by_direction(
    message_type: MessageType, identifier: int, from_network: bool | None, allowed: bool
) -> None:
    assert rules.is_allowed(message_type, identifier, from_network) is allowed


def test_repetition_limits() -> None:
    progress = IeId.PROGRESS_INDICATOR
    assert rules.rule_of(T.ALERTING, progress) == rules.IeRule(repeat=2)
    assert rules.rule_of(T.RESTART, IeId.CHANNEL_IDENTIFICATION) == rules.IeRule(repeat=30)
    # three progress indicators in ALERTING: the third is a repetition and dropped
    data = bytes.fromhex("0802800101" + "1e028288" * 3)
    decoded = decode(data)
    assert len(decoded.message.progress) == 2
    assert decoded.problems == (IeProblem(0x1E, "repeated", False, False, "occurrence 3"),)


def test_restart_channel_identifications_add_up() -> None:
    # RESTART with channel identification repeated (Q.931 Table 3-8 note): channels 1 then 2
    data = bytes.fromhex("08020000461803a983811803a98382790180")
    decoded = decode(data)
    assert decoded.problems == ()
    assert decoded.message.channel is not None and decoded.message.channel.channels == (1, 2)


def test_comprehension_required_only_for_unknown_identifiers() -> None:
    assert rules.comprehension_required(0x00)  # segmented message: not supported
    assert rules.comprehension_required(0x0F)
    assert not rules.comprehension_required(IeId.BEARER_CAPABILITY)
    assert not rules.comprehension_required(IeId.CAUSE)
    assert not rules.comprehension_required(0x3A)
