"""The media control protocol: wire vectors, totality of the decoder, and the control side's channel."""

from __future__ import annotations

import os
from pathlib import Path

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.media.control import (
    BadMessage,
    ControlChannel,
    EventReceived,
    ReplyReceived,
    RequestTimedOut,
    UnmatchedReply,
    decode,
    encode,
)
from appliance.media.control_events import (
    MAX_MESSAGE_SIZE,
    Answer,
    ControlDecodeError,
    Delete,
    Direction,
    DropLeg,
    DtmfEvent,
    Error,
    ErrorCode,
    FirstPacket,
    LegSpec,
    LocalProtocolError,
    MediaTimeout,
    Message,
    Offer,
    Ok,
    Ping,
    Play,
    PlayDone,
    PortsReserved,
    Query,
    Record,
    RecordDone,
    SetLeg,
    SrtpKeys,
    SsrcChanged,
    StopMedia,
    StreamStats,
    Update,
    WorkerStats,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "media_control"
VALID = sorted((VECTORS / "valid").glob("*.cbor"))
INVALID = sorted((VECTORS / "invalid").glob("*.cbor"))
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "200"))
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


# --- vectors ----------------------------------------------------------------------------------------


def test_vector_sets_are_populated() -> None:
    assert len(VALID) >= 15
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_vector_round_trips(path: Path) -> None:
    data = path.read_bytes()
    assert encode(decode(data)) == data


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_vector_gives_its_error(path: Path) -> None:
    expected = path.with_suffix(".expected").read_text().strip()
    with pytest.raises(ControlDecodeError) as info:
        decode(path.read_bytes())
    assert info.value.reason == expected
    assert info.value.code == ErrorCode.BAD_MESSAGE


def test_offer_vector_fields() -> None:
    msg = decode((VECTORS / "valid" / "offer.cbor").read_bytes())
    assert isinstance(msg, Offer)
    assert msg.request_id == 1
    assert msg.call_id == "c1@127.0.0.1"
    assert msg.leg == "caller"
    assert msg.sdp.startswith("v=0\r\n")
    assert msg.flags == ("symmetric", "record")


def test_ok_stats_vector_fields() -> None:
    msg = decode((VECTORS / "valid" / "ok_stats.cbor").read_bytes())
    assert msg == Ok(
        4,
        stats=(
            StreamStats("caller", Direction.IN, 1500, 258000, 3, 1.25),
            StreamStats("caller", Direction.OUT, 1498, 257656, 0, 0.5),
        ),
    )
    assert msg.sdp is None and msg.ports is None


def test_event_vectors_fields() -> None:
    valid = VECTORS / "valid"
    assert decode((valid / "delete_call.cbor").read_bytes()) == Delete("c1@127.0.0.1", None, request_id=5)
    assert decode((valid / "first_packet_ipv6.cbor").read_bytes()) == FirstPacket(
        "c1@127.0.0.1", "caller", Direction.IN, ("::1", 40002)
    )
    assert decode((valid / "ssrc_changed.cbor").read_bytes()) == SsrcChanged(
        "c1@127.0.0.1", "callee", Direction.IN, 0x12345678, 0xDEADBEEF
    )
    err = decode((valid / "error_unknown_call.cbor").read_bytes())
    assert err == Error(5, ErrorCode.UNKNOWN_CALL, "no call c9")


def test_ports_reserved_vector_fields() -> None:
    valid = VECTORS / "valid"
    greeting = decode((valid / "ports_reserved.cbor").read_bytes())
    assert greeting == PortsReserved(1, 23334, 26667, (23350, 26666))
    assert decode((valid / "ports_reserved_none.cbor").read_bytes()) == PortsReserved(1, 23334, 26667)


def test_ports_reserved_is_kept_sorted_and_refuses_a_port_outside_its_slice() -> None:
    assert PortsReserved(0, 20000, 20009, (20004, 20000, 20004)).unusable == (20000, 20004)
    with pytest.raises(LocalProtocolError, match="not an RTP port"):
        encode(PortsReserved(0, 20000, 20008, (20008,)))  # its RTCP port 20009 is outside the slice
    last_pair = PortsReserved(0, 20000, 20009, (20008,))
    assert decode(encode(last_pair)) == last_pair


def test_wire_map_uses_type_and_request_id() -> None:
    raw = cbor2.loads(encode(Query("c1", request_id=9)))
    assert raw == {"type": "query", "request_id": 9, "call_id": "c1"}
    raw = cbor2.loads(encode(DtmfEvent("c1", "a", "5", 120)))
    assert "request_id" not in raw and raw["type"] == "dtmf"


def test_integer_seconds_are_accepted_as_float() -> None:
    data = cbor2.dumps(
        {"type": "media_timeout", "call_id": "c", "leg": "a", "direction": "out", "silent_for": 5}
    )
    assert decode(data) == MediaTimeout("c", "a", Direction.OUT, 5.0)


def test_size_cap_is_inclusive() -> None:
    base = {"type": "error", "request_id": 1, "code": 5, "reason": ""}
    overhead = len(cbor2.dumps(base)) + 2  # a text of 256..65535 octets takes a 3-octet head, not 1
    reason = "x" * (MAX_MESSAGE_SIZE - overhead)
    data = cbor2.dumps({**base, "reason": reason})
    assert len(data) == MAX_MESSAGE_SIZE
    assert decode(data) == Error(1, 5, reason)
    with pytest.raises(ControlDecodeError, match="too large"):
        decode(cbor2.dumps({**base, "reason": reason + "x"}))


def test_depth_eight_is_allowed_for_the_decoder_scan() -> None:
    # Seven arrays under the top-level map reach depth 8; the scan accepts it and the schema then refuses.
    data = bytes.fromhex("a1") + cbor2.dumps("type") + bytes.fromhex("81" * 7) + cbor2.dumps(1)
    with pytest.raises(ControlDecodeError) as info:
        decode(data)
    assert info.value.reason == "type: missing or not text"


def test_encode_refuses_an_invalid_message() -> None:
    with pytest.raises(LocalProtocolError, match="call_id: empty text"):
        encode(Offer("", "a", SDP))
    with pytest.raises(LocalProtocolError, match="digit"):
        encode(DtmfEvent("c", "a", "x", 10))


# --- hypothesis -------------------------------------------------------------------------------------

_text = st.text(min_size=1, max_size=40)
_u32 = st.integers(0, 0xFFFFFFFF)
_u64 = st.integers(0, 2**64 - 1)
_dir = st.sampled_from(list(Direction))
_secs = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
_flags = st.lists(_text, max_size=4).map(tuple)
_stats = st.builds(StreamStats, _text, _dir, _u64, _u64, _u64, _secs)

_pt = st.integers(0, 127)
_keys = st.builds(SrtpKeys, _text, _text, _text)
_spec = st.builds(
    LegSpec,
    st.integers(0, 65535),
    st.none() | st.tuples(_text, st.integers(0, 65535)),
    _pt,
    _text,
    st.none() | _pt,
    st.none() | st.integers(0, 65535),
    st.booleans(),
    st.none() | _keys,
    st.none() | st.floats(min_value=0.001, max_value=86400, allow_nan=False, allow_infinity=False),
)
_call_flags = st.lists(
    st.sampled_from(["record", "dtmf-events", "no-fastpath", "inband-dtmf"]), max_size=3
).map(tuple)
_record_id = st.from_regex(r"\A[A-Za-z0-9_.-]{1,96}\Z")
_positive = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)
_sha256 = st.just("") | st.text("0123456789abcdef", min_size=64, max_size=64)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(SetLeg, _text, _text, _spec, _call_flags, _u32),
    st.builds(Offer, _text, _text, _text, _flags, _u32),
    st.builds(Answer, _text, _text, _text, _flags, _u32),
    st.builds(Update, _text, _text, _text, _flags, _u32),
    st.builds(Delete, _text, st.none() | _text, _u32),
    st.builds(Query, _text, _u32),
    st.builds(Ping, _u32),
    st.builds(
        Play,
        _text,
        _text,
        _u64,
        st.lists(_text, min_size=1, max_size=4).map(tuple),
        st.booleans(),
        st.booleans(),
        _u32,
    ),
    st.builds(Record, _text, _text, _record_id, _positive, _secs, st.booleans(), st.booleans(), _u32),
    st.builds(StopMedia, _text, _text, _u32),
    st.builds(DropLeg, _text, _text, _u32),
    st.builds(PlayDone, _text, _text, _u64, st.sampled_from(["done", "barge_in", "stopped", "error"])),
    st.builds(
        RecordDone,
        _text,
        _text,
        _record_id,
        st.sampled_from(["silence", "dtmf", "max", "stopped", "error"]),
        _secs,
        st.text(max_size=40),
        _u64,
        _sha256,
        st.text(max_size=40),
    ),
    st.builds(
        Ok,
        _u32,
        st.none() | _text,
        st.none() | st.lists(st.integers(0, 65535), max_size=4).map(tuple),
        st.none() | st.lists(_stats, max_size=3).map(tuple),
        st.none() | _text,
    ),
    st.builds(Error, _u32, st.integers(0, 0xFFFF), st.text(max_size=40)),
    st.builds(MediaTimeout, _text, _text, _dir, _secs, st.booleans()),
    st.builds(DtmfEvent, _text, _text, st.sampled_from(sorted("0123456789*#ABCD")), _u64),
    st.builds(FirstPacket, _text, _text, _dir, st.tuples(_text, st.integers(0, 65535))),
    st.builds(SsrcChanged, _text, _text, _dir, _u32, _u32),
    st.builds(
        WorkerStats,
        _u64,
        _u64,
        _u64,
        _u64,
        _u64,
        st.dictionaries(_text, _u64, max_size=4).map(lambda d: tuple(d.items())),
    ),
    st.integers(0, 32767).flatmap(
        lambda pair: st.builds(
            PortsReserved,
            _u64,
            st.just(2 * pair),
            st.just(2 * pair + 1),
            st.lists(st.just(2 * pair), max_size=1).map(tuple),
        )
    ),
)


@settings(max_examples=EXAMPLES)
@given(messages)
def test_generated_messages_round_trip(msg: Message) -> None:
    data = encode(msg)
    assert decode(data) == msg
    assert encode(decode(data)) == data


def _decode_or_error(data: bytes) -> None:
    try:
        decode(data)
    except ControlDecodeError as exc:
        assert exc.reason


@settings(max_examples=EXAMPLES)
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    _decode_or_error(data)


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID + INVALID), st.data())
def test_mutated_vectors_only_raise_decode_error(path: Path, data: st.DataObject) -> None:
    original = bytearray(path.read_bytes()[:4096])
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        if not mutated:
            break
        i = data.draw(st.integers(0, len(mutated) - 1))
        mutated[i] = data.draw(st.integers(0, 255))
    _decode_or_error(bytes(mutated))
    cut = data.draw(st.integers(0, len(original)))
    _decode_or_error(bytes(original[:cut]))


# --- channel ----------------------------------------------------------------------------------------


def test_channel_numbers_commands_and_matches_replies() -> None:
    ch = ControlChannel(timeout=2.0)
    rid1 = ch.send(Offer("c1", "a", SDP), now=0.0)
    rid2 = ch.send(Ping(), now=0.0)
    assert (rid1, rid2) == (1, 2)
    sent = [decode(d) for d in ch.data_to_send()]
    assert sent == [Offer("c1", "a", SDP, request_id=1), Ping(request_id=2)]
    assert ch.data_to_send() == []
    assert ch.pending == 2

    ch.receive(encode(Ok(2)), now=0.1)
    ch.receive(encode(Ok(1, sdp=SDP, ports=(20000, 20001))), now=0.2)
    assert ch.next_event() == ReplyReceived(Ping(request_id=2), Ok(2))
    assert ch.next_event() == ReplyReceived(
        Offer("c1", "a", SDP, request_id=1), Ok(1, sdp=SDP, ports=(20000, 20001))
    )
    assert ch.next_event() is None
    assert ch.pending == 0 and ch.get_timer() is None


def test_channel_times_out_at_the_deadline_and_reports_late_reply() -> None:
    ch = ControlChannel(timeout=1.0)
    ch.send(Query("c1"), now=0.0)
    ch.send(Delete("c1"), now=0.5)
    assert ch.get_timer() == 1.0
    ch.handle_timer(0.999)
    assert ch.next_event() is None
    ch.handle_timer(1.0)
    assert ch.next_event() == RequestTimedOut(Query("c1", request_id=1))
    assert ch.next_event() is None
    assert ch.get_timer() == 1.5
    ch.receive(encode(Error(1, ErrorCode.UNKNOWN_CALL, "gone")), now=1.2)
    assert ch.next_event() == UnmatchedReply(Error(1, 2, "gone"))
    ch.receive(encode(Ok(2)), now=1.3)
    assert ch.next_event() == ReplyReceived(Delete("c1", request_id=2), Ok(2))


def test_channel_queues_events_and_drops_bad_datagrams() -> None:
    ch = ControlChannel()
    ch.receive(encode(DtmfEvent("c1", "a", "7", 80)), now=0.0)
    ch.receive(b"\xff", now=0.0)
    ch.receive(encode(Ping(request_id=3)), now=0.0)
    assert ch.next_event() == EventReceived(DtmfEvent("c1", "a", "7", 80))
    bad = ch.next_event()
    assert isinstance(bad, BadMessage) and "reserved" not in bad.reason
    assert ch.next_event() == BadMessage("ping: a command sent by the worker")


def test_channel_refuses_a_greeting_after_the_first_datagram() -> None:
    # The supervisor reads the worker's PortsReserved before it feeds the channel anything.
    ch = ControlChannel()
    ch.receive(encode(PortsReserved(0, 20000, 20009, (20002,))), now=0.0)
    assert ch.next_event() == BadMessage("ports_reserved: only the first message of a connection")


def test_channel_request_ids_wrap_and_skip_pending() -> None:
    ch = ControlChannel(first_request_id=0xFFFFFFFE, timeout=10.0)
    assert ch.send(Ping(), 0.0) == 0xFFFFFFFE
    assert ch.send(Ping(), 0.0) == 0xFFFFFFFF
    assert ch.send(Ping(), 0.0) == 0
    ch2 = ControlChannel(first_request_id=5)
    assert ch2.send(Ping(), 0.0) == 5
    ch2._next_id = 5  # force a wrap onto the pending id
    assert ch2.send(Ping(), 0.0) == 6


def test_channel_refuses_non_commands() -> None:
    ch = ControlChannel()
    with pytest.raises(LocalProtocolError):
        ch.send(Ok(1), 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ControlChannel(timeout=0)


def test_channel_close_reports_every_pending_command() -> None:
    ch = ControlChannel()
    ch.send(Offer("c1", "a", SDP), 0.0)
    ch.send(Query("c2"), 0.0)
    ch.close()
    assert ch.data_to_send() == []
    assert ch.next_event() == RequestTimedOut(Offer("c1", "a", SDP, request_id=1))
    assert ch.next_event() == RequestTimedOut(Query("c2", request_id=2))
    assert ch.next_event() is None
    assert ch.pending == 0 and ch.get_timer() is None
    with pytest.raises(LocalProtocolError, match="closed"):
        ch.send(Ping(), 1.0)


def test_set_leg_vector_fields() -> None:
    msg = decode((VECTORS / "valid" / "set_leg_srtp_hold.cbor").read_bytes())
    assert isinstance(msg, SetLeg)
    assert (msg.call_id, msg.leg, msg.flags) == ("c1@127.0.0.1", "b", ("record", "no-fastpath"))
    spec = msg.spec
    assert (spec.local_port, spec.remote, spec.codec_pt, spec.codec) == (20002, None, 0, "PCMU")
    assert (spec.event_pt, spec.rtcp_port, spec.hold) == (None, 4005, True)
    assert spec.srtp is not None and spec.srtp.suite == "AES_CM_128_HMAC_SHA1_80"


def test_set_leg_timeout_vector_fields() -> None:
    msg = decode((VECTORS / "valid" / "set_leg_timeout.cbor").read_bytes())
    assert isinstance(msg, SetLeg)
    assert (msg.leg, msg.spec.remote, msg.spec.timeout) == ("b", ("127.0.0.1", 4002), 2.0)
    plain = decode((VECTORS / "valid" / "set_leg.cbor").read_bytes())
    assert isinstance(plain, SetLeg) and plain.spec.timeout is None


def test_set_leg_timeout_bounds() -> None:
    for seconds in (0.001, 1, 86400):
        msg = SetLeg("c", "b", LegSpec(20002, None, 8, "PCMA", timeout=seconds))
        assert decode(encode(msg)) == msg
    for seconds in (0.0, -1.0, 86400.001):
        with pytest.raises(LocalProtocolError, match=r"set_leg\.spec\.timeout: expected"):
            encode(SetLeg("c", "b", LegSpec(20002, None, 8, "PCMA", timeout=seconds)))


def test_ivr_vector_fields() -> None:
    valid = VECTORS / "valid"
    play = decode((valid / "play.cbor").read_bytes())
    assert isinstance(play, Play)
    assert (play.request_id, play.call_id, play.leg, play.play_id) == (12, "c1@127.0.0.1", "a", 7)
    assert play.files[1].endswith("/en/press_1.alaw") and len(play.files) == 2
    assert play.barge_in and not play.loop
    moh = decode((valid / "play_loop.cbor").read_bytes())
    assert isinstance(moh, Play) and moh.loop and not moh.barge_in
    assert decode((valid / "record.cbor").read_bytes()) == Record(
        "c1@127.0.0.1", "a", "vm-20261124-0001", 120.0, 5.0, True, True, request_id=14
    )
    assert decode((valid / "stop_media.cbor").read_bytes()) == StopMedia("c1@127.0.0.1", "a", request_id=15)
    assert decode((valid / "drop_leg.cbor").read_bytes()) == DropLeg("c1@127.0.0.1", "b", request_id=16)
    assert decode((valid / "play_done.cbor").read_bytes()) == PlayDone("c1@127.0.0.1", "a", 7, "barge_in")
    done = decode((valid / "record_done.cbor").read_bytes())
    assert isinstance(done, RecordDone)
    assert (done.reason, done.duration, done.size, done.key_id) == ("dtmf", 12.34, 99012, "kek-3f2a9c01")
    assert done.path.endswith("/vm-20261124-0001.vm") and len(done.sha256) == 64
    failed = decode((valid / "record_done_error.cbor").read_bytes())
    assert isinstance(failed, RecordDone) and (failed.size, failed.sha256) == (0, "")
    leg = decode((valid / "set_leg_inband_dtmf.cbor").read_bytes())
    assert isinstance(leg, SetLeg) and leg.flags == ("dtmf-events", "inband-dtmf")


def test_ivr_wire_maps_omit_defaults() -> None:
    raw = cbor2.loads(encode(Play("c", "a", 1, ("/p.alaw",), barge_in=False)))
    assert raw == {
        "type": "play",
        "request_id": 0,
        "call_id": "c",
        "leg": "a",
        "play_id": 1,
        "files": ["/p.alaw"],
        "barge_in": False,
    }
    raw = cbor2.loads(encode(Record("c", "a", "vm", 60, 0, False, False)))
    assert raw["max_seconds"] == 60.0 and isinstance(raw["max_seconds"], float)
    assert cbor2.loads(encode(DropLeg("c", "b")))["type"] == "drop_leg"


def test_encode_refuses_an_invalid_ivr_message() -> None:
    with pytest.raises(LocalProtocolError, match="record_id"):
        encode(Record("c", "a", "a/b", 60.0, 5.0, True, True))
    with pytest.raises(LocalProtocolError, match="files"):
        encode(Play("c", "a", 1, (), True))
    with pytest.raises(LocalProtocolError, match="reason"):
        encode(PlayDone("c", "a", 1, "over"))  # type: ignore[arg-type]


def test_channel_passes_ivr_commands_and_events() -> None:
    ch = ControlChannel()
    rid = ch.send(Play("c1", "a", 3, ("/p.alaw",), True), now=0.0)
    assert decode(ch.data_to_send()[0]) == Play("c1", "a", 3, ("/p.alaw",), True, request_id=rid)
    ch.receive(encode(PlayDone("c1", "a", 3, "done")), now=0.1)
    assert ch.next_event() == EventReceived(PlayDone("c1", "a", 3, "done"))
