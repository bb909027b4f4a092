"""Q.921 frame codec: hand-checked vectors (``tests/vectors/lapd``), round trips and hostile input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.pri.errors import LapdDecodeError, LocalProtocolError
from appliance.pri.lapd_codec import (
    N201,
    Frame,
    FrameRejected,
    FrmrFrame,
    IFrame,
    InvalidFrame,
    SFrame,
    SKind,
    UFrame,
    UKind,
    decode,
    encode,
)
from tests.unit.test_pri_lapd_pair import lapd_settings

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "lapd"
VALID = sorted((VECTORS / "valid").glob("*.vec"))
INVALID = sorted((VECTORS / "invalid").glob("*.vec"))
PROPERTY = lapd_settings(300)


def load(path: Path) -> tuple[str, str, bytes]:
    """A vector file: ``sender:``, ``expect:`` and ``hex:`` lines; ``#`` lines are the hand check."""
    fields = dict(
        line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    )
    return fields["sender"], fields["expect"], bytes.fromhex(fields["hex"])


def describe(frame: Frame) -> str:
    """Every field of a SAPI 0 / TEI 0 frame, in the notation of the vector files."""
    assert (frame.sapi, frame.tei) == (0, 0)
    if isinstance(frame, IFrame):
        return f"I ns={frame.ns} nr={frame.nr} p={frame.p:d} info={frame.info.hex()}"
    role = "command" if frame.command else "response"
    if isinstance(frame, SFrame):
        return f"S {frame.kind.name} nr={frame.nr} pf={frame.pf:d} {role}"
    if isinstance(frame, FrmrFrame):
        rejected = "response" if frame.rejected_response else "command"
        return (
            f"FRMR control={frame.rejected_control.hex()} vs={frame.vs} vr={frame.vr} rejected={rejected} "
            f"w={frame.w:d} x={frame.x:d} y={frame.y:d} z={frame.z:d} pf={frame.pf:d}"
        )
    info = f" info={frame.info.hex()}" if frame.info else ""
    return f"U {frame.kind.name} pf={frame.pf:d} {role}{info}"


def test_there_are_vectors() -> None:
    assert len(VALID) >= 15 and len(INVALID) >= 15


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_vector(path: Path) -> None:
    sender, expect, data = load(path)
    assert sender in ("user", "network")
    frame = decode(data, sender=sender)  # type: ignore[arg-type]
    assert describe(frame) == expect
    assert encode(frame, sender=sender) == data  # type: ignore[arg-type]


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_vector(path: Path) -> None:
    sender, expect, data = load(path)
    with pytest.raises(LapdDecodeError) as info:
        decode(data, sender=sender)  # type: ignore[arg-type]
    error = info.value
    if isinstance(error, FrameRejected):
        assert f"FrameRejected {error.mdl_code}: {error.reason}" == expect
    else:
        assert isinstance(error, InvalidFrame) and error.mdl_code is None
        assert f"InvalidFrame: {error.reason}" == expect


def test_the_same_octets_are_command_or_response_by_sender() -> None:
    # Q.921 Table 1: C/R 0 is a command from the user and a response from the network.
    frame = bytes.fromhex("00010101")
    assert decode(frame, sender="user") == SFrame(SKind.RR, 0, True, command=True)
    assert decode(frame, sender="network") == SFrame(SKind.RR, 0, True, command=False)


def test_any_sapi_and_tei_when_asked() -> None:
    frame = decode(bytes.fromhex("fe ff 03 00"), sender="network", sapi=None, tei=None)
    assert frame == UFrame(UKind.UI, False, True, b"\x00", sapi=63, tei=127)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (IFrame(128, 0, False, b""), "N\\(S\\) 128"),
        (SFrame(SKind.RR, -1, False, True), "N\\(R\\) -1"),
        (UFrame(UKind.SABME, True, True, b"x"), "SABME carries no information field"),
        (UFrame(UKind.UI, False, True, bytes(N201 + 1)), "exceeds N201"),
        (IFrame(0, 0, False, b"", sapi=64), "SAPI 64"),
        (UFrame(UKind.UI, False, True, tei=128), "TEI 128"),
        (FrmrFrame(b"\x01", 0, 0, False, True, False, False, False), "two octets"),
        (FrmrFrame(b"\x01\x00", 128, 0, False, True, False, False, False), "V\\(S\\) 128"),
    ],
)
def test_encode_refuses_bad_fields(frame: Frame, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        encode(frame, sender="user")


seq = st.integers(0, 127)
yes, no = st.just(True), st.just(False)
info = st.binary(max_size=N201)
addr = {"sapi": st.integers(0, 63), "tei": st.integers(0, 127)}
frames = st.one_of(
    st.builds(IFrame, ns=seq, nr=seq, p=st.booleans(), info=info, **addr),
    st.builds(SFrame, kind=st.sampled_from(SKind), nr=seq, pf=st.booleans(), command=st.booleans(), **addr),
    st.builds(UFrame, kind=st.sampled_from([UKind.SABME, UKind.DISC]), pf=st.booleans(), command=yes),
    st.builds(UFrame, kind=st.sampled_from([UKind.UA, UKind.DM]), pf=st.booleans(), command=no),
    st.builds(UFrame, kind=st.just(UKind.UI), pf=st.booleans(), command=yes, info=info, **addr),
    st.builds(UFrame, kind=st.just(UKind.XID), pf=st.booleans(), command=st.booleans(), info=info),
    st.builds(
        FrmrFrame,
        rejected_control=st.binary(min_size=2, max_size=2),
        vs=seq,
        vr=seq,
        rejected_response=st.booleans(),
        w=st.booleans(),
        x=st.booleans(),
        y=st.booleans(),
        z=st.booleans(),
        pf=st.booleans(),
        **addr,
    ),
)
sides = st.sampled_from(["user", "network"])


@PROPERTY
@given(frame=frames, sender=sides)
def test_round_trip(frame: Frame, sender: str) -> None:
    data = encode(frame, sender=sender)  # type: ignore[arg-type]
    assert decode(data, sender=sender, sapi=None, tei=None) == frame  # type: ignore[arg-type]
    assert encode(decode(data, sender=sender, sapi=None, tei=None), sender=sender) == data  # type: ignore[arg-type]


def _decode_or_error(data: bytes, sender: str) -> None:
    try:
        frame = decode(data, sender=sender)  # type: ignore[arg-type]
    except LapdDecodeError as exc:
        assert isinstance(exc, InvalidFrame | FrameRejected)
        assert exc.reason
        return
    # Whatever decodes re-encodes to the same octets (FRMR: up to the spare bits of its information field).
    again = encode(frame, sender=sender)  # type: ignore[arg-type]
    assert again == data or isinstance(frame, FrmrFrame)
    assert decode(again, sender=sender) == frame  # type: ignore[arg-type]


@PROPERTY
@given(data=st.binary(max_size=300), sender=sides)
def test_garbage_is_a_frame_or_a_decode_error(data: bytes, sender: str) -> None:
    _decode_or_error(data, sender)


@PROPERTY
@given(frame=frames, sender=sides, cut=st.integers(0, 300), flips=st.lists(st.integers(0, 2047), max_size=4))
def test_truncated_and_mutated_frames(frame: Frame, sender: str, cut: int, flips: list[int]) -> None:
    data = bytearray(encode(frame, sender=sender))  # type: ignore[arg-type]
    for bit in flips:
        if bit // 8 < len(data):
            data[bit // 8] ^= 1 << (bit % 8)
    _decode_or_error(bytes(data[:cut]), sender)


def test_rejection_repr_names_the_code() -> None:
    with pytest.raises(FrameRejected) as info:
        decode(bytes.fromhex("00010d00"), sender="user")
    assert repr(info.value) == "FrameRejected(L, 'undefined supervisory control field 0x0d')"
