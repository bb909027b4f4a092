"""Framing SIP over TCP/TLS (RFC 3261 §18.3) with CRLF keep-alives (RFC 5626 §3.5.1).

Every valid vector is fed split at every octet (STYLE.md rule 10): the frames must not depend on where the
stream was cut, and an incomplete message must leave the buffer as it was.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.sip.errors import DecodeError, MessageTooLarge
from appliance.sip.message import DEFAULT_MAX_SIZE, parse_message
from appliance.sip.stream import PING, PONG, StreamFramer
from tests.unit.vectors import hypothesis_settings, load, names, soak_marks

pytestmark = soak_marks()
# A datagram without Content-Length cannot be framed on a stream (§18.3).
STREAM_CASES = [name for name in names("valid") if name != "no_content_length_udp"]


def frames_of(name: str) -> list[bytes]:
    """The messages a vector holds on a stream: one, or two for the datagram with trailing octets."""
    data = load("valid", name)
    if name == "torture_trailing_octets":
        first = data.index(b"\r\n\r\n") + 4  # its Content-Length is 0
        return [data[:first], data[first:]]
    return [data]


def drain(framer: StreamFramer) -> list[bytes]:
    out = []
    while (message := framer.next_message()) is not None:
        out.append(message)
    return out


def test_no_content_length_vector_is_refused_on_a_stream() -> None:
    framer = StreamFramer(DEFAULT_MAX_SIZE)
    framer.feed(load("valid", "no_content_length_udp"))
    with pytest.raises(DecodeError) as info:
        framer.next_message()
    assert info.value.reason == "Missing Content-Length header on a stream transport"


@pytest.mark.parametrize("case", STREAM_CASES)
def test_vector_split_at_every_octet(case: str) -> None:
    data = load("valid", case)
    expected = frames_of(case)
    first_size = len(expected[0])
    for cut in range(len(data) + 1):
        framer = StreamFramer(DEFAULT_MAX_SIZE)
        framer.feed(data[:cut])
        got = drain(framer)
        if cut < first_size:
            # Commit/rollback: nothing is consumed until the whole message is there.
            assert got == []
            assert framer.buffered == cut
        framer.feed(data[cut:])
        got += drain(framer)
        assert got == expected, f"cut at {cut}"
        assert framer.buffered == 0
        assert framer.pongs_due() == 0


@pytest.mark.parametrize("case", STREAM_CASES)
def test_frames_parse_as_stream_messages(case: str) -> None:
    for frame in frames_of(case):
        message = parse_message(frame, stream=True)
        assert message.to_bytes() == frame


def concatenated_stream() -> tuple[bytes, list[bytes], int]:
    """Every stream vector back to back, with pings and stray CRLFs between some: (octets, frames, pings)."""
    parts: list[bytes] = []
    frames: list[bytes] = []
    pings = 0
    for i, case in enumerate(STREAM_CASES):
        if i % 3 == 0:
            parts.append(PING)
            pings += 1
        elif i % 3 == 1:
            parts.append(b"\r\n")  # RFC 3261 §7.5: a CRLF before a start line is ignored
        parts.append(load("valid", case))
        frames += frames_of(case)
    parts.append(PING)
    return b"".join(parts), frames, pings + 1


def test_concatenated_messages_in_one_chunk() -> None:
    data, frames, pings = concatenated_stream()
    framer = StreamFramer(DEFAULT_MAX_SIZE)
    framer.feed(data)
    assert drain(framer) == frames
    assert framer.pongs_due() == pings
    assert framer.pongs_due() == 0  # reading cleared it
    assert framer.buffered == 0


def test_concatenated_messages_one_octet_at_a_time() -> None:
    data, frames, pings = concatenated_stream()
    framer = StreamFramer(DEFAULT_MAX_SIZE)
    got: list[bytes] = []
    pongs = 0
    for i in range(len(data)):
        framer.feed(data[i : i + 1])
        got += drain(framer)
        pongs += framer.pongs_due()
    assert got == frames
    assert pongs == pings


@hypothesis_settings()
@given(st.lists(st.integers(min_value=0, max_value=4096), max_size=40))
def test_concatenated_messages_in_random_chunks(cuts: list[int]) -> None:
    data, frames, pings = concatenated_stream()
    framer = StreamFramer(DEFAULT_MAX_SIZE)
    got: list[bytes] = []
    pongs = 0
    at = 0
    for size in [*cuts, len(data)]:
        framer.feed(data[at : at + size])
        at += size
        got += drain(framer)
        pongs += framer.pongs_due()
    assert got == frames
    assert pongs == pings


@pytest.mark.parametrize(
    ("stream", "pongs", "left"),
    [
        (PING, 1, 0),
        (PING * 2, 2, 0),
        (b"\r\n", 0, 2),  # a ping may still be arriving
        (b"\r\n\r", 0, 3),
        (PING + b"\r\n", 1, 2),
        (b"\r\nOPTIONS", 0, 7),  # the CRLF before a start line is dropped, no pong
    ],
)
def test_keepalives_between_messages(stream: bytes, pongs: int, left: int) -> None:
    framer = StreamFramer(DEFAULT_MAX_SIZE)
    framer.feed(stream)
    assert framer.next_message() is None
    assert framer.pongs_due() == pongs
    assert framer.buffered == left


def test_ping_split_at_every_octet_earns_one_pong() -> None:
    for cut in range(len(PING) + 1):
        framer = StreamFramer(DEFAULT_MAX_SIZE)
        framer.feed(PING[:cut])
        assert framer.next_message() is None
        framer.feed(PING[cut:])
        assert framer.next_message() is None
        assert framer.pongs_due() == 1
        assert framer.buffered == 0


def test_crlf_inside_a_body_is_not_a_keepalive() -> None:
    data = load("valid", "invite_sdp")
    framer = StreamFramer(DEFAULT_MAX_SIZE)
    framer.feed(data[:-2])
    assert framer.next_message() is None
    framer.feed(data[-2:] + PING)
    assert framer.next_message() == data
    assert framer.next_message() is None
    assert framer.pongs_due() == 1


def test_outbound_flow_counts_pongs() -> None:
    framer = StreamFramer(DEFAULT_MAX_SIZE, outbound=True)
    framer.feed(PONG)
    assert framer.next_message() is None
    assert framer.pongs_received() == 1
    assert framer.pongs_due() == 0
    framer.feed(PONG + PONG + load("valid", "response_200_sdp"))
    assert framer.next_message() == load("valid", "response_200_sdp")
    assert framer.pongs_received() == 2
    assert framer.pongs_received() == 0


def _head(length_lines: str) -> bytes:
    return (
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.2;branch=z9hG4bK1\r\nFrom: <sip:a@localhost>;tag=1\r\n"
        f"To: <sip:b@localhost>;tag=2\r\nCall-ID: s@localhost\r\nCSeq: 1 INVITE\r\n{length_lines}\r\n"
    ).encode()


@pytest.mark.parametrize(
    "length_line",
    [
        "Content-Length: 5\r\n",
        "l: 5\r\n",
        "CONTENT-LENGTH  :   5 \r\n",
        "Content-Length:\r\n 5\r\n",
        "L:005\r\n",
    ],
)
def test_content_length_spellings(length_line: str) -> None:
    data = _head(length_line) + b"hello"
    framer = StreamFramer(DEFAULT_MAX_SIZE)
    framer.feed(data + b"INVITE")
    assert framer.next_message() == data
    assert framer.buffered == len(b"INVITE")


def test_similar_header_names_are_not_content_length() -> None:
    framer = StreamFramer(DEFAULT_MAX_SIZE)
    framer.feed(_head("X-Content-Length: 3\r\nLength: 3\r\nContent-Length: 0\r\n") + b"abc")
    assert framer.next_message() == _head("X-Content-Length: 3\r\nLength: 3\r\nContent-Length: 0\r\n")


@pytest.mark.parametrize(
    ("length_lines", "reason"),
    [
        ("", "Missing Content-Length header on a stream transport"),
        ("Content-Length: abc\r\n", "Malformed Content-Length header"),
        ("Content-Length: -1\r\n", "Malformed Content-Length header"),
        ("Content-Length: \r\n", "Malformed Content-Length header"),
        ("Content-Length: 1 2\r\n", "Malformed Content-Length header"),
        ("Content-Length: \u00b2\r\n", "Malformed Content-Length header"),
        ("Content-Length: 1\r\nl: 1\r\n", "Duplicate Content-Length header"),
        ("Content-Length: " + "9" * 5000 + "\r\n", "Content-Length out of range"),
    ],
)
def test_unframeable_header_block(length_lines: str, reason: str) -> None:
    framer = StreamFramer(DEFAULT_MAX_SIZE)
    data = _head(length_lines) + b"x"
    framer.feed(data)
    with pytest.raises(DecodeError) as info:
        framer.next_message()
    assert (info.value.status, info.value.reason) == (400, reason)
    assert framer.buffered == len(data)  # left as it was; the connection is closed by its owner
    with pytest.raises(DecodeError):
        framer.next_message()


def test_header_block_over_the_cap_without_terminator() -> None:
    framer = StreamFramer(100)
    framer.feed(b"OPTIONS sip:localhost SIP/2.0\r\nX-Filler: " + b"a" * 59)  # 100 octets
    assert framer.next_message() is None  # 100 octets or fewer: still waiting
    framer.feed(b"a" * 20)
    with pytest.raises(MessageTooLarge) as info:
        framer.next_message()
    assert (info.value.status, info.value.limit) == (513, 100)


def test_content_length_over_the_cap_is_refused_before_the_body_arrives() -> None:
    head = _head("Content-Length: 70000\r\n")
    framer = StreamFramer(DEFAULT_MAX_SIZE)
    framer.feed(head)
    with pytest.raises(MessageTooLarge) as info:
        framer.next_message()
    assert info.value.size == len(head) + 70000


def test_message_of_exactly_the_cap_is_framed() -> None:
    data = load("valid", "invite_sdp")
    framer = StreamFramer(len(data))
    framer.feed(data + data)
    assert drain(framer) == [data, data]
    tight = StreamFramer(len(data) - 1)
    tight.feed(data)
    with pytest.raises(MessageTooLarge):
        tight.next_message()


def test_cap_must_hold_a_message() -> None:
    with pytest.raises(ValueError, match="cannot hold a message"):
        StreamFramer(3)
