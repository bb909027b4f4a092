"""The D-channel receive path (LAPD decode → LAPD machine → Q.931 decode → Q.931 machine), user and network
side, under a far end that sends anything: random and mutated frames, mutated and truncated Q.931 messages
in well-formed I-frames, timers running out, call control's commands in between, re-establishments and the
physical layer coming and going. The invariants are :mod:`tests.fuzz.pri_receive`'s: nothing raises out of
the receive path, every call reported is released exactly once, no B-channel is held twice.

Small and deterministic by default; ``HYPOTHESIS_PROFILE=long`` runs a hundred times as many, random. The
coverage-guided runner over the same harness is ``make fuzz-pri`` (``tests/fuzz/run_pri.py``)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.pri import q931_codec
from appliance.pri.q931_events import CallOffered, CallReleased
from appliance.pri.q931_model import BearerCapability, Cause, ChannelId, Message, MessageType, PartyNumber
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
pytestmark = pytest.mark.timeout(0 if _LONG else 120)  # the long profile runs for minutes


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


def _message(kind: MessageType, cref: int, flag: bool, channel: int = 0, cause: int = 16) -> Op:
    """A well-formed message of the far end's: channel identification when ``channel``, a cause on the
    clearing messages, a called number on SETUP and INFORMATION."""
    fields: dict[str, Any] = {}
    if channel:
        fields["channel"] = ChannelId((channel,), exclusive=True)
    if kind in (MessageType.DISCONNECT, MessageType.RELEASE, MessageType.RELEASE_COMPLETE):
        fields["cause"] = Cause(cause)
    if kind in (MessageType.SETUP, MessageType.INFORMATION):
        fields["called"] = PartyNumber("100")
    if kind is MessageType.SETUP:
        fields["bearer"] = BearerCapability()
    return Op("message", q931_codec.encode(Message(kind, cref, flag, **fields)))


def _command(name: str, pick: int = -1) -> Op:
    """Call control's ``name`` on the newest live call (``pick`` -1) or the ``pick``-th."""
    return Op("command", amount=COMMANDS.index(name), pick=pick)


_T = MessageType
_ANSWERS = st.sampled_from((_T.SETUP_ACKNOWLEDGE, _T.CALL_PROCEEDING, _T.ALERTING, _T.CONNECT))
_CLEARING = st.sampled_from((_T.DISCONNECT, _T.RELEASE, _T.RELEASE_COMPLETE, _T.STATUS_ENQUIRY))
_LOCAL = st.sampled_from(("setup_acknowledge", "proceeding", "alerting", "connect", "disconnect"))


@st.composite
def call_flow(draw: st.DrawFn) -> list[Op]:
    """The steps of a call as far as the far end takes it: an incoming call (its SETUP, our answers, its
    CONNECT ACKNOWLEDGE, a clearing message) or an outgoing one (our SETUP, its answers on the call
    reference we allocate, clearing) — each step kept or left out, so that every state is reached."""
    cref = draw(st.integers(1, 4))
    channel = draw(st.integers(1, 3))
    if draw(st.booleans()):  # the far end calls: its call reference, flag 0 from it
        steps = [_message(_T.SETUP, cref, True, channel)]
        steps += [_command(name) for name in draw(st.lists(_LOCAL, max_size=3))]
        steps.append(_message(_T.CONNECT_ACKNOWLEDGE, cref, True))
        steps.append(_message(draw(_CLEARING), cref, True))
    else:  # we call: our call reference, flag 1 from the far end
        steps = [_command("setup", draw(st.integers(0, 60)))]
        steps += [_message(kind, cref, False, channel) for kind in draw(st.lists(_ANSWERS, max_size=3))]
        steps.append(_message(draw(_CLEARING), cref, False))
    steps.append(_message(_T.RELEASE_COMPLETE, cref, cref % 2 == 0))
    return [step for step in steps if draw(st.integers(0, 4))]  # most steps kept


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


def _flat(chunks: list[list[Op]]) -> list[Op]:
    return [op for chunk in chunks for op in chunk]


STEPS = st.lists(OPS.map(lambda op: [op]) | call_flow(), max_size=16).map(_flat)


@pytest.mark.parametrize("side", ["user", "network"])
@FUZZ
@given(ops=STEPS)
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
