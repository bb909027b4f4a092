"""The D-channel receive path (LAPD decode → LAPD machine → Q.931 decode → Q.931 machine), user and network
side, under a far end that sends anything: random and mutated frames, mutated and truncated Q.931 messages
in well-formed I-frames, timers running out, call control's commands in between, re-establishments and the
physical layer coming and going. The invariants are :mod:`tests.fuzz.pri_receive`'s: nothing raises out of
the receive path, every call reported is released exactly once, no B-channel is held twice.

Small and deterministic by default; ``HYPOTHESIS_PROFILE=long`` runs a hundred times as many, random. The
coverage-guided runner over the same harness is ``make fuzz-pri`` (``tests/fuzz/run_pri.py``)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.pri.q931_events import CallOffered, CallReleased
from appliance.pri.q931_model import MessageType
from tests.fuzz.pri_receive import COMMANDS, Op, ReceivePath, seed_messages

_LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
FUZZ = settings(
    max_examples=20000 if _LONG else 200,
    deadline=None,
    derandomize=not _LONG,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SEEDS = seed_messages()


@st.composite
def mutated(draw: st.DrawFn, seed: st.SearchStrategy[bytes]) -> bytes:
    """A seed with a few octets changed, inserted or removed, then possibly cut short."""
    data = bytearray(draw(seed))
    for _ in range(draw(st.integers(0, 4))):
        where = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(("set", "insert", "delete")))
        if how == "insert" or where == len(data):
            data[where:where] = draw(st.binary(min_size=1, max_size=4))
        elif how == "set":
            data[where] = draw(st.integers(0, 255))
        else:
            del data[where]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _header() -> st.SearchStrategy[bytes]:
    crefs = st.sampled_from((0, 1, 2, 3, 0x7FFF)) | st.integers(0, 0x7FFF)
    types = st.sampled_from([int(t) for t in MessageType]) | st.integers(0, 255)
    return st.builds(
        lambda cref, flag, kind: bytes([0x08, 0x02, flag | cref >> 8, cref & 0xFF, kind]),
        crefs,
        st.sampled_from((0, 0x80)),
        types,
    )


def _element() -> st.SearchStrategy[bytes]:
    """One element, well-framed or not: an identifier (known or any), a length and contents."""
    ident = st.sampled_from((0x04, 0x08, 0x14, 0x18, 0x1E, 0x28, 0x2C, 0x6C, 0x70, 0x79, 0x01, 0x73, 0xA1))
    framed = st.builds(
        lambda i, c: bytes([i, len(c)]) + c, ident | st.integers(0, 255), st.binary(max_size=12)
    )
    return framed | st.binary(min_size=1, max_size=3)


MESSAGES = (
    st.sampled_from(SEEDS)
    | mutated(st.sampled_from(SEEDS))
    | st.builds(lambda h, ies: h + b"".join(ies), _header(), st.lists(_element(), max_size=6))
    | st.binary(max_size=40)
)
FRAMES = st.binary(max_size=12) | st.builds(
    lambda a1, a2, c, info: bytes([a1, a2]) + c + info,
    st.sampled_from((0x00, 0x02, 0x04, 0x01)) | st.integers(0, 255),
    st.sampled_from((0x01, 0x03)) | st.integers(0, 255),
    st.binary(min_size=1, max_size=2),
    st.binary(max_size=8) | st.just(bytes(261)),
)
OPS = st.one_of(
    st.builds(lambda d: Op("message", d), MESSAGES),
    st.builds(lambda d: Op("message", d), MESSAGES),
    st.builds(lambda d: Op("frame", d), FRAMES),
    st.builds(lambda t: Op("wait", amount=t), st.sampled_from((0.5, 1.1, 4.1, 10.5, 31.0, 121.0))),
    st.builds(
        lambda c, p: Op("command", amount=c, pick=p), st.integers(0, len(COMMANDS) - 1), st.integers(0, 60)
    ),
    st.sampled_from((Op("reset"), Op("down"), Op("up"))),
)


@pytest.mark.parametrize("side", ["user", "network"])
@FUZZ
@given(ops=st.lists(OPS, max_size=40))
def test_nothing_a_far_end_sends_breaks_the_receive_path(side: str, ops: list[Op]) -> None:
    path = ReceivePath("user" if side == "user" else "network")
    path.run(ops)
    # However it ended, a link taken down and T309 run out releases every call that is left.
    path.run([Op("down"), Op("wait", amount=121.0), Op("wait", amount=121.0)])
    assert path.q931.calls == 0 and set(path.reported) == path.released


@pytest.mark.parametrize("side", ["user", "network"])
def test_the_seeds_set_up_and_clear_calls(side: str) -> None:
    """The seed messages, in order, reach the machine: at least one call is offered and released (so the
    property test starts from input that gets past the decoders)."""
    path = ReceivePath("user" if side == "user" else "network")
    path.run([Op("message", m) for m in SEEDS])
    assert any(isinstance(e, CallOffered) for e in path.events)
    assert any(isinstance(e, CallReleased) for e in path.events)
