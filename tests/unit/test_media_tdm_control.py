"""The TDM worker's control codec: round trips, field checks, and garbage gives only ControlDecodeError."""

from __future__ import annotations

import contextlib
import os

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media.tdm.control import (
    Close,
    Connect,
    ControlDecodeError,
    Error,
    LinkChanged,
    LocalProtocolError,
    Message,
    Ok,
    Open,
    Pacing,
    Ready,
    Stats,
    StatsReply,
    decode,
    encode,
    request_id_of,
)
from hw.e1.links import B_TIMESLOTS

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "200"))
_settings = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)

MESSAGES: list[Message] = [
    Open(1, "PCMA", 7),
    Open(31, "PCMU", 0xFFFFFFFF),
    Connect(17, "127.0.0.1", 40000, 8, 2),
    Close(15, 3),
    Stats(4),
    Ok(1, 30000),
    Ok(2),
    Error(3, 2, "timeslot 16 is not on this span"),
    StatsReply(4, (("rtp_received", 10), ("tdm_sent", 12)), Pacing(0.15, 0.6, 1.25, 100, 0), (1, 2), True),
    Ready(1, 30000, tuple(B_TIMESLOTS), (30004,)),
    LinkChanged(False),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    data = encode(msg)
    assert decode(data) == msg
    assert encode(decode(data)) == data


def test_wire_form_of_open() -> None:
    assert cbor2.loads(encode(Open(5, "PCMU", 9))) == {
        "type": "open",
        "request_id": 9,
        "timeslot": 5,
        "codec": "PCMU",
    }


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"type": "open", "request_id": 1, "timeslot": 16, "codec": "PCMA"}, "open.timeslot"),
        ({"type": "open", "request_id": 1, "timeslot": 1, "codec": "G729"}, "open.codec"),
        ({"type": "open", "request_id": 1, "timeslot": 1}, "open.codec"),
        ({"type": "open", "request_id": 1, "timeslot": 1, "codec": "PCMA", "x": 1}, "open"),
        (
            {
                "type": "connect",
                "request_id": 1,
                "timeslot": 1,
                "host": "h",
                "port": 70000,
                "payload_type": 8,
            },
            "connect.port",
        ),
        ({"type": "close", "request_id": -1, "timeslot": 1}, "close.request_id"),
        ({"type": "stats", "request_id": True}, "stats.request_id"),
        (
            {"type": "ready", "span": 1, "ports_min": 1, "timeslots": [1, 1], "unusable": []},
            "ready.timeslots",
        ),
        ({"type": "fly"}, "type"),
    ],
)
def test_bad_fields_name_their_path(raw: dict[str, object], path: str) -> None:
    with pytest.raises(ControlDecodeError) as err:
        decode(cbor2.dumps(raw))
    assert err.value.path == path


def test_encode_refuses_an_invalid_message() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Open(16, "PCMA", 1))


def test_request_id_of_garbage() -> None:
    assert request_id_of(cbor2.dumps({"type": "open", "request_id": 12})) == 12
    assert request_id_of(b"\xff\x00") == 0
    assert request_id_of(cbor2.dumps([1])) == 0


@_settings
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_the_decode_error(data: bytes) -> None:
    with contextlib.suppress(ControlDecodeError):
        decode(data)
    request_id_of(data)


@_settings
@given(st.sampled_from(MESSAGES), st.data())
def test_mutated_and_truncated_messages(msg: Message, data: st.DataObject) -> None:
    wire = bytearray(encode(msg))
    cut = data.draw(st.integers(0, len(wire)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    for candidate in (bytes(wire), bytes(wire[:cut])):
        try:
            back = decode(candidate)
        except ControlDecodeError:
            continue
        assert decode(encode(back)) == back


def test_worker_dispatch_answers_every_datagram() -> None:
    import random

    from appliance.media.tdm.bridge import TdmBridge
    from appliance.media.tdm.commands import handle
    from appliance.media.tdm.pacer import Pacer

    bridge = TdmBridge(timeslots=(1, 2), ports_min=30000, rand=random.Random(0).getrandbits)
    pacing = Pacer(0.0).stats()
    assert handle(bridge, encode(Open(2, "PCMU", 5)), pacing) == Ok(5, 30002)
    assert handle(bridge, encode(Connect(2, "127.0.0.1", 4000, 0, 6)), pacing) == Ok(6)
    assert handle(bridge, encode(Open(2, "PCMU", 7)), pacing) == Error(7, 3, "timeslot 2 is already open")
    assert handle(bridge, encode(Close(3, 8)), pacing) == Error(8, 2, "timeslot 3 is not on this span")
    reply = handle(bridge, encode(Stats(9)), pacing, {"rtcp_received": 4})
    assert isinstance(reply, StatsReply)
    assert reply.open == (2,) and ("rtcp_received", 4) in reply.counters
    assert decode(encode(reply)) == reply
    bad = handle(
        bridge, cbor2.dumps({"type": "open", "request_id": 10, "timeslot": 16, "codec": "PCMA"}), pacing
    )
    assert isinstance(bad, Error) and bad.request_id == 10 and bad.code == 1
    assert handle(bridge, encode(LinkChanged(True)), pacing) == Error(0, 1, "LinkChanged is not a command")
    assert handle(bridge, b"\xff", pacing).code == 1  # type: ignore[union-attr]
