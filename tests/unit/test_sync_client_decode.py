"""Decoding an event batch is total: whatever an appliance (or something posing as one) answers, the
client gets an EventBatch it can rely on (seqs consecutive, ids and types text, bodies maps) or a
ProtocolError, nothing else. Random bytes, random CBOR values, and valid batches mutated and truncated."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.sync.client import ProtocolError, decode_event_batch
from tests.unit.vectors import hypothesis_settings, soak_marks

pytestmark = soak_marks()


def event(seq: int) -> dict[str, Any]:
    return {"seq": seq, "id": f"{seq:032x}", "type": "call.record", "hlc": seq << 16, "created": 1.7e9,
            "body": {"n": seq, "legs": [{"leg": "a"}]}}  # fmt: skip


VALID = cbor2.dumps(
    {"events": [event(7), event(8), event(9)], "first_seq": 1, "last_seq": 12, "acked_seq": 6}
)

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=20,
)  # fmt: skip


def decodes_or_refuses(payload: bytes) -> None:
    try:
        batch = decode_event_batch(payload)
    except ProtocolError:
        return
    for i, e in enumerate(batch.events):
        assert e.seq == batch.events[0].seq + i
        assert isinstance(e.id, str) and isinstance(e.type, str) and isinstance(e.body, dict)
    assert batch.raw == payload


def test_valid_batch() -> None:
    batch = decode_event_batch(VALID)
    assert [e.seq for e in batch.events] == [7, 8, 9]
    assert (batch.first_seq, batch.last_seq, batch.acked_seq, batch.upto) == (1, 12, 6, 9)
    assert batch.events[1].body == {"n": 8, "legs": [{"leg": "a"}]}
    assert batch.events[0]._asdict() == event(7)


@pytest.mark.parametrize(
    "value",
    [
        [],
        {"events": [event(1), event(3)], "first_seq": 1, "last_seq": 3, "acked_seq": 0},
        {"events": [{**event(1), "body": [1]}], "first_seq": 1, "last_seq": 1, "acked_seq": 0},
        {"events": [{**event(1), "seq": "1"}], "first_seq": 1, "last_seq": 1, "acked_seq": 0},
        {"events": [event(1)], "first_seq": -1, "last_seq": 1, "acked_seq": 0},
        {"events": [event(1)], "last_seq": 1, "acked_seq": 0},
        {"events": 5, "first_seq": 1, "last_seq": 1, "acked_seq": 0},
    ],
)
def test_malformed_batches_are_refused(value: Any) -> None:
    with pytest.raises(ProtocolError):
        decode_event_batch(cbor2.dumps(value))


@hypothesis_settings()
@given(st.binary(max_size=200))
def test_random_bytes(payload: bytes) -> None:
    decodes_or_refuses(payload)


@hypothesis_settings()
@given(st.dictionaries(st.sampled_from(["events", "first_seq", "last_seq", "acked_seq"]), cbor_values))
def test_random_values(value: dict[str, Any]) -> None:
    decodes_or_refuses(cbor2.dumps(value))


@hypothesis_settings()
@given(st.integers(0, len(VALID) - 1), st.integers(0, 255), st.booleans())
def test_mutated_and_truncated(position: int, byte: int, truncate: bool) -> None:
    payload = VALID[:position] if truncate else VALID[:position] + bytes([byte]) + VALID[position + 1 :]
    decodes_or_refuses(payload)
