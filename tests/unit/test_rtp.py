"""RTP packet codec (RFC 3550 §5) and sender numbering, with property tests (STYLE.md rule 12).

Set APPLIANCE_FUZZ_EXAMPLES for a long randomised property run."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media import RtpDecodeError, RtpExtension, RtpPacket, RtpSender, parse_rtp

_LONG = "APPLIANCE_FUZZ_EXAMPLES" in os.environ
PROFILE = settings(
    max_examples=int(os.environ.get("APPLIANCE_FUZZ_EXAMPLES", "300")), derandomize=not _LONG, deadline=None
)

# V=2, PT=8 (PCMA), seq 0x1234, ts 0x000a0b0c, SSRC 0xdeadbeef, 4 octets of A-law silence.
PLAIN = bytes.fromhex("80081234000a0b0cdeadbeef") + b"\xd5" * 4
# V=2, P, X, CC=2, M, PT=101, two CSRCs, a one-word extension (RFC 8285 one-byte profile), payload, 3 padding.
FULL = (
    bytes.fromhex("b2e5fffffffffffe01020304")
    + bytes.fromhex("0000000a0000000b")
    + bytes.fromhex("bede0001")
    + bytes.fromhex("10ff0000")
    + bytes.fromhex("0b8a03c0")
    + bytes.fromhex("000003")
)


def test_plain_packet_fields_and_round_trip() -> None:
    packet = RtpPacket.parse(PLAIN)
    assert packet == RtpPacket(payload_type=8, sequence_number=0x1234, timestamp=0x000A0B0C, ssrc=0xDEADBEEF,
                               payload=b"\xd5" * 4)  # fmt: skip
    assert packet.version == 2 and not packet.marker and packet.csrcs == () and packet.extension is None
    assert packet.serialize() == PLAIN
    assert parse_rtp(PLAIN) == packet


def test_full_packet_fields_and_round_trip() -> None:
    packet = RtpPacket.parse(FULL)
    assert packet.marker and packet.payload_type == 101
    assert (packet.sequence_number, packet.timestamp, packet.ssrc) == (0xFFFF, 0xFFFFFFFE, 0x01020304)
    assert packet.csrcs == (10, 11)
    assert packet.extension == RtpExtension(0xBEDE, bytes.fromhex("10ff0000"))
    assert packet.payload == bytes.fromhex("0b8a03c0")  # an RFC 4733 event: digit 11 (#), end bit, volume 10
    assert packet.padding == 3
    assert packet.serialize() == FULL


def test_padding_of_one_octet_and_empty_payload() -> None:
    data = bytes.fromhex("a0000001000000020000000301")
    packet = RtpPacket.parse(data)
    assert (packet.payload, packet.padding) == (b"", 1)
    assert packet.serialize() == data


def test_empty_extension() -> None:
    data = bytes.fromhex("90000001000000020000000312340000") + b"x"
    packet = RtpPacket.parse(data)
    assert packet.extension == RtpExtension(0x1234, b"")
    assert packet.payload == b"x"
    assert packet.serialize() == data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "RTP packet shorter than 12 octets"),
        (PLAIN[:11], "RTP packet shorter than 12 octets"),
        (b"\x40" + PLAIN[1:], "RTP version 1, expected 2"),
        (b"\x00" + PLAIN[1:], "RTP version 0, expected 2"),
        (b"\xc0" + PLAIN[1:], "RTP version 3, expected 2"),
        (b"\x81" + PLAIN[1:12] + b"\x00\x00\x00", "RTP packet truncated in the CSRC list"),
        (b"\x90" + PLAIN[1:12] + b"\xbe\xde\x00", "RTP packet truncated in the extension header"),
        (
            b"\x90" + PLAIN[1:12] + b"\xbe\xde\x00\x02" + b"\x00" * 7,
            "RTP packet truncated in the extension data",
        ),
        (b"\xa0" + PLAIN[1:] + b"\x00", "RTP padding count is zero"),
        (b"\xa0" + PLAIN[1:12] + b"\x00\x05", "RTP padding count exceeds the payload"),
        (FULL[:-1] + b"\x09", "RTP padding count exceeds the payload"),
    ],
)
def test_bad_packets(data: bytes, reason: str) -> None:
    with pytest.raises(RtpDecodeError) as info:
        RtpPacket.parse(data)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_type": 128},
        {"sequence_number": 65536},
        {"sequence_number": -1},
        {"timestamp": 2**32},
        {"ssrc": -1},
        {"csrcs": tuple(range(16))},
        {"csrcs": (2**32,)},
        {"padding": 256},
    ],
)
def test_out_of_range_fields_are_refused(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"payload_type": 0, "sequence_number": 0, "timestamp": 0, "ssrc": 0}
    with pytest.raises(ValueError):
        RtpPacket(**(fields | kwargs))  # type: ignore[arg-type]


def test_extension_must_be_whole_words() -> None:
    with pytest.raises(ValueError):
        RtpExtension(1, b"abc")
    with pytest.raises(ValueError):
        RtpExtension(0x10000, b"")


def test_sender_numbering_wraps_and_counts() -> None:
    sender = RtpSender(ssrc=0x11223344, payload_type=0, initial_seq=65534, initial_timestamp=2**32 - 160)
    packets = [sender.next_packet(b"\xff" * 160, samples=160, marker=i == 0) for i in range(3)]
    assert [p.sequence_number for p in packets] == [65534, 65535, 0]
    assert [p.timestamp for p in packets] == [2**32 - 160, 0, 160]
    assert [p.marker for p in packets] == [True, False, False]
    assert {p.ssrc for p in packets} == {0x11223344} and {p.payload_type for p in packets} == {0}
    assert (sender.packets_sent, sender.octets_sent) == (3, 480)
    sender.skip(800)
    packet = sender.next_packet(b"", samples=160)
    assert (packet.sequence_number, packet.timestamp) == (1, 1120)
    with pytest.raises(ValueError):
        sender.skip(-1)


def test_sender_refuses_bad_initial_values() -> None:
    with pytest.raises(ValueError):
        RtpSender(ssrc=0, payload_type=0, initial_seq=65536, initial_timestamp=0)
    with pytest.raises(ValueError):
        RtpSender(ssrc=2**32, payload_type=0, initial_seq=0, initial_timestamp=0)


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension, st.integers(0, 0xFFFF), st.binary(max_size=16).map(lambda b: b[: len(b) // 4 * 4])
    ),
    padding=st.integers(0, 255),
)


@PROFILE
@given(packets)
def test_generated_packets_round_trip(packet: RtpPacket) -> None:
    data = packet.serialize()
    assert RtpPacket.parse(data) == packet
    assert RtpPacket.parse(data).serialize() == data


@PROFILE
@given(st.binary(max_size=120))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpDecodeError as exc:
        assert exc.reason
    else:
        assert len(packet.serialize()) == len(data)


@PROFILE
@given(
    st.sampled_from([PLAIN, FULL]), st.integers(0, len(FULL)), st.integers(0, 255), st.integers(0, len(FULL))
)
def test_mutated_and_truncated_packets_only_raise_decode_error(
    data: bytes, at: int, value: int, cut: int
) -> None:
    buf = bytearray(data)
    if at < len(buf):
        buf[at] = value
    try:
        packet = RtpPacket.parse(bytes(buf[:cut]))
    except RtpDecodeError:
        return
    assert RtpPacket.parse(packet.serialize()) == packet
