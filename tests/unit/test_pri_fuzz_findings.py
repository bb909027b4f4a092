"""What hostile input on the D-channel showed about the answers to faulty clearing messages (Q.931 §5.8.6,
§5.8.7.1), on an active incoming call of the user side, through the whole receive path.

Each case was found by hostile input against the running appliance and is pinned here:

* §5.8.7.1 a): a DISCONNECT with an unrecognised element is answered with RELEASE cause 99 (the element's
  identifier as diagnostic), and no STATUS: one is returned only for messages other than DISCONNECT,
  RELEASE and RELEASE COMPLETE;
* §5.8.7.1 b): a RELEASE with an unrecognised element is answered with RELEASE COMPLETE cause 99;
* §5.8.6.2: a RELEASE that is the first clearing message with a cause of invalid contents is answered with
  cause 100, not 96 as if the cause were missing.
"""

from __future__ import annotations

from appliance.pri import q931_codec
from appliance.pri.lapd_codec import IFrame, decode
from tests.fuzz.pri_receive import COMMANDS, Op, ReceivePath

CREF = 5
NORMAL = b"\x08\x02\x80\x90"  # cause 16, location user
UNKNOWN_IE = b"\x73\x01\x00"  # not comprehension required (bits 8-5 not 0000)


def header(kind: int) -> bytes:
    return bytes([0x08, 0x02, CREF >> 8, CREF & 0xFF, kind])


def answers(kind: int, contents: bytes) -> list[tuple[str, int | None, bytes]]:
    """The user side's answer to the network's ``kind`` with ``contents`` on an active incoming call:
    (message type, cause, diagnostic) of each message it sends."""
    path = ReceivePath("user")
    setup = b"\x04\x03\x80\x90\xa3\x18\x03\xa9\x83\x81\x70\x04\x80100\xa1"
    path.run(
        [
            Op("message", header(0x05) + setup),
            Op("command", amount=COMMANDS.index("connect"), pick=-1),
            Op("message", header(0x0F)),  # CONNECT ACKNOWLEDGE: U10
        ]
    )
    sent = len(path.sent)
    path.step(Op("message", header(kind) + contents))
    out = []
    for data in path.sent[sent:]:
        frame = decode(data, sender="user")
        if isinstance(frame, IFrame):
            message = q931_codec.decode(frame.info).message
            cause = message.cause
            out.append(
                (
                    message.type.name,
                    None if cause is None else cause.value,
                    cause.diagnostic if cause else b"",
                )
            )
    return out


def test_a_disconnect_with_a_garbled_cause_is_answered_release_100() -> None:
    assert answers(0x45, b"\x08\x01\x80") == [("RELEASE", 100, b"\x08")]  # §5.8.6.2


def test_a_disconnect_with_an_unknown_comprehension_required_element_is_answered_release_99() -> None:
    assert answers(0x45, NORMAL + b"\x0b\x01\x00") == [("RELEASE", 99, b"\x0b")]  # §5.8.7.1 / §5.8.6.1


def test_a_disconnect_with_an_unrecognised_element_is_answered_release_99() -> None:
    assert answers(0x45, NORMAL + UNKNOWN_IE) == [("RELEASE", 99, b"\x73")]


def test_a_release_with_an_unrecognised_element_is_answered_release_complete_99() -> None:
    assert answers(0x4D, NORMAL + UNKNOWN_IE) == [("RELEASE_COMPLETE", 99, b"\x73")]


def test_a_first_release_with_a_garbled_cause_is_answered_release_complete_100() -> None:
    assert answers(0x4D, b"\x08\x01\x80") == [("RELEASE_COMPLETE", 100, b"\x08")]
