"""CBOR bodies of the sync API: the accepted subset, the request rules with paths, the event batch."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.store import RawEvent
from appliance.sync import codec
from appliance.sync.errors import BadCbor, SchemaError, SyncError
from tests.sync_schema import examples, validate


def _raw(seq: int, body: dict[str, object]) -> RawEvent:
    return RawEvent(
        seq,
        f"{seq:032x}",
        "call.record",
        (1_732_480_000_000 + seq) << 16,
        1732480000.5 + seq,
        cbor2.dumps(body, canonical=True),
    )


@pytest.mark.parametrize(
    ("hex_body", "fragment"),
    [
        ("", "empty"),
        ("a1", "ends inside"),
        ("a1647570746f01ff", "follow"),  # a break after a complete item
        ("bf6475707401ff", "indefinite"),
        ("c11a00000001", "tag"),
        ("d9d9f7a0", "tag 55799"),
        ("a1647570746f01a0", "follow"),
        ("c24901000000000000000000", "tag 2"),  # a bignum is a tag too
        ("f97e00", "NaN"),
        ("fb7ff0000000000000", "infinity"),
        ("f7", "simple value 23"),
        ("f0", "simple value 16"),
        ("f818", "simple value 24"),
        ("1c", "reserved"),
        ("62c328", "UTF-8"),
        ("5a00ffffff00", "ends inside a string"),
        ("9b00000000ffffffff", "ends inside an array"),
        ("a2617501617501", "Duplicate"),
    ],
)
def test_bodies_outside_the_subset_are_bad_cbor(hex_body: str, fragment: str) -> None:
    with pytest.raises(BadCbor, match=fragment) as caught:
        codec.decode_body(bytes.fromhex(hex_body))
    assert caught.value.status == 400 and caught.value.code == "bad-cbor"


def test_nesting_is_capped() -> None:
    assert codec.decode_body(b"\x81" * 64 + b"\x00") is not None
    with pytest.raises(BadCbor, match="deeper"):
        codec.decode_body(b"\x81" * 65 + b"\x00")


def test_accepted_values_decode() -> None:
    value = {"a": [1, -2, 1.5, True, False, None, b"\x00", "é", {}], "b": []}
    assert codec.decode_body(cbor2.dumps(value)) == value
    assert codec.decode_body(bytes.fromhex("f93c00")) == 1.0


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"upto": "x"}, "upto"),
        ({"upto": -1}, "upto"),
        ({"upto": True}, "upto"),
        ({}, "upto"),
        ({"upto": 1, "more": 2}, "more"),
        ([1], None),
    ],
)
def test_ack_schema_errors_name_the_path(value: object, path: str | None) -> None:
    with pytest.raises(SchemaError) as caught:
        codec.decode_ack(cbor2.dumps(value))
    assert caught.value.path == path
    assert caught.value.to_body()["error"] == "schema"
    validate("error", caught.value.to_body())


def test_requests_decode_to_dataclasses() -> None:
    assert codec.decode_ack(cbor2.dumps({"upto": 7})) == codec.AckRequest(7)
    write = codec.decode_config_write(
        cbor2.dumps({"replaces": 1, "version": 2, "content": {"routes": []}, "confirm_within": 60})
    )
    assert write == codec.ConfigWrite(1, 2, {"routes": []}, 60)
    assert (
        codec.decode_config_write(cbor2.dumps({"replaces": 0, "version": 1, "content": b"x"})).confirm_within
        is None
    )
    assert codec.decode_confirm(cbor2.dumps({"version": 3})) == codec.ConfirmRequest(3)
    validate("config-write", {"replaces": 1, "version": 2, "content": {"routes": []}, "confirm_within": 60})


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"replaces": 0, "version": 1, "content": 1, "confirm_within": 0}, "confirm_within"),
        ({"replaces": 0, "version": 1, "content": 1, "confirm_within": 3601}, "confirm_within"),
        ({"replaces": 0, "version": 1, "content": 1, "confirm_within": None}, "confirm_within"),
        ({"replaces": 2, "version": 2, "content": 1}, "version"),
        ({"replaces": 0, "version": 1}, "content"),
        ({"replaces": "0", "version": 1, "content": 1}, "replaces"),
    ],
)
def test_config_write_schema_errors_name_the_path(value: object, path: str) -> None:
    with pytest.raises(SchemaError) as caught:
        codec.decode_config_write(cbor2.dumps(value))
    assert caught.value.path == path


def test_event_batch_splices_bodies_as_cbor2_would_encode_them() -> None:
    events = [
        _raw(1, {}),
        _raw(23, {"a": 1}),
        _raw(24, {"blob": {"path": "/x", "size": 2**40}, "z": [15, None, "ü" * 300]}),
        _raw(70_000, {"n": -5}),
        _raw(2**33, {"k": b"\x00" * 70_000}),
    ]
    encoded = codec.encode_event_batch(events, first_seq=1, last_seq=2**33, acked_seq=0)
    value = codec.event_batch_value(events, first_seq=1, last_seq=2**33, acked_seq=0)
    assert encoded == cbor2.dumps(value)
    validate("event-batch", encoded)
    # A float in a stored body stays in its shortest form (RFC 8949 §4.2.1), as the outbox wrote it.
    floating = [_raw(1, {"duration": 1.5})]
    encoded = codec.encode_event_batch(floating, first_seq=1, last_seq=1, acked_seq=0)
    assert cbor2.loads(encoded) == codec.event_batch_value(floating, first_seq=1, last_seq=1, acked_seq=0)
    assert floating[0].body in encoded
    empty = codec.encode_event_batch([], first_seq=5, last_seq=4, acked_seq=4)
    assert cbor2.loads(empty) == {"events": [], "first_seq": 5, "last_seq": 4, "acked_seq": 4}


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**64 - 1) | st.integers(0xFFFF, 0x1_0000_0000),
            st.text(max_size=34) | st.text("0123456789abcdef", min_size=32, max_size=32),
            st.text(max_size=40),
            st.integers(0, 2**64 - 1) | st.integers(0xFFFF_FFFF, 0x1_0000_0000),
            st.floats(allow_nan=False, allow_infinity=False),
            st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=4),
        ),
        max_size=5,
    )
)
@examples(100)
def test_event_batch_matches_cbor2_for_any_event(
    items: list[tuple[int, str, str, int, float, dict[str, object]]],
) -> None:
    events = [RawEvent(s, i, t, h, c, cbor2.dumps(b, canonical=True)) for s, i, t, h, c, b in items]
    encoded = codec.encode_event_batch(events, first_seq=0, last_seq=0, acked_seq=0)
    assert encoded == cbor2.dumps(codec.event_batch_value(events, first_seq=0, last_seq=0, acked_seq=0))


def test_event_batch_encodes_well_over_100k_events_per_second() -> None:
    body = cbor2.dumps(
        {"call_id": "a" * 32, "duration": 12.5, "from": "+4930123456", "to": "+4940123"}, canonical=True
    )
    events = [RawEvent(i, f"{i:032x}", "call.record", i << 16, 1.7e9 + i, body) for i in range(1, 10_001)]
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        codec.encode_event_batch(events, first_seq=1, last_seq=10_000, acked_seq=0)
        best = min(best, time.perf_counter() - start)
    assert 10_000 / best > 100_000


@given(st.binary(max_size=64))
@examples(300)
def test_random_bytes_never_escape_the_error_tree(data: bytes) -> None:
    for decode in (codec.decode_ack, codec.decode_config_write, codec.decode_confirm):
        try:
            decode(data)
        except SyncError as exc:
            assert exc.status == 400
            validate("error", exc.to_body())


def test_utc_time_has_milliseconds() -> None:
    assert codec.utc_time(0) == "1970-01-01T00:00:00.000Z"
    validate("utc-time", codec.utc_time(1732480000.1234))


VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "sync"
DECODERS = {
    "ack-request": codec.decode_ack,
    "config-write": codec.decode_config_write,
    "confirm-request": codec.decode_confirm,
}
EXPECTED = json.loads((VECTORS / "invalid" / "expected.json").read_text())


@pytest.mark.parametrize("path", sorted((VECTORS / "valid").glob("*.cbor")), ids=lambda p: p.stem)
def test_valid_vectors_decode_validate_and_round_trip(path: Path) -> None:
    rule = path.stem.split(".")[0]
    raw = path.read_bytes()
    validate(rule, raw)
    decoded = DECODERS[rule](raw)
    fields = {k: v for k, v in dataclasses.asdict(decoded).items() if v is not None}
    assert cbor2.dumps(fields) == raw


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_vectors_give_their_error_and_path(name: str) -> None:
    expected = EXPECTED[name]
    with pytest.raises(SyncError) as caught:
        DECODERS[expected["rule"]]((VECTORS / "invalid" / f"{name}.cbor").read_bytes())
    assert caught.value.code == expected["error"] and caught.value.path == expected["path"]
    assert caught.value.status == 400


@given(st.sampled_from(sorted((VECTORS / "valid").glob("*.cbor"))), st.data())
@examples(200)
def test_mutated_valid_vectors_decode_or_raise_a_400(path: Path, data: st.DataObject) -> None:
    raw = bytearray(path.read_bytes())
    at = data.draw(st.integers(0, len(raw) - 1))
    action = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if action == "flip":
        raw[at] ^= 1 << data.draw(st.integers(0, 7))
    elif action == "truncate":
        del raw[at:]
    else:
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=9))
    try:
        DECODERS[path.stem.split(".")[0]](bytes(raw))
    except SyncError as exc:
        assert exc.status == 400 and exc.code in ("bad-cbor", "schema")
