"""Property tests for the SDP codec: round trips of generated descriptions, and totality on random and
mutated input (STYLE.md rule 12). A short deterministic run by default; set APPLIANCE_FUZZ_EXAMPLES to a
larger number (e.g. 20000) for a long randomised run."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.sdp import (
    DEFAULT_AUDIO_CODECS,
    Attribute,
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    SdpDecodeError,
    SdpError,
    SessionDescription,
    Timing,
    answer_audio,
    hold_state,
    parse_sdp,
)

_LONG = "APPLIANCE_FUZZ_EXAMPLES" in os.environ
PROFILE = settings(
    max_examples=int(os.environ.get("APPLIANCE_FUZZ_EXAMPLES", "150")),
    derandomize=not _LONG,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
VECTORS = sorted((Path(__file__).resolve().parent.parent / "vectors" / "sdp").glob("*/*.sdp"))
VALID_BYTES = [p.read_bytes() for p in VECTORS if p.parent.name == "valid"]
ALL_BYTES = [p.read_bytes() for p in VECTORS]

TOKEN_ALPHABET = "!#$%&'*+-.^_`{|}~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=10)
# Text fields: anything but NUL, CR and LF (RFC 8866 §9 byte-string).
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00\r\n"), max_size=20)
nonblank = texts.filter(lambda t: t.strip() != "")
addresses = st.text(TOKEN_ALPHABET + ":/", min_size=1, max_size=16)
connections = st.builds(Connection, tokens, tokens, addresses)
bandwidths = st.builds(Bandwidth, tokens, st.integers(0, 10**12))
timings = st.builds(
    Timing,
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.lists(nonblank, max_size=2).map(tuple),
    st.none() | nonblank,
)
generic_attributes = st.builds(Attribute, tokens.map(lambda t: "x-" + t), st.none() | texts)
known_attributes = st.sampled_from(
    [
        Attribute("rtpmap", "96 telephone-event/8000"),
        Attribute("rtpmap", "97 L16/16000/2"),
        Attribute("fmtp", "96 0-15"),
        Attribute("ptime", "20"),
        Attribute("maxptime", "22.5"),
        Attribute("rtcp", "9 IN IP6 ::1"),
        Attribute("rtcp-mux"),
        Attribute("crypto", "1 AES_CM_128_HMAC_SHA1_80 inline:abcd|2^20 KDR=1"),
        Attribute("fingerprint", "sha-256 0A:1B"),
        Attribute("setup", "actpass"),
        Attribute("sendonly"),
        Attribute("inactive"),
        Attribute("candidate", "1 1 udp 2122260223 127.0.0.1 54400 typ host"),
    ]
)
attribute_lists = st.lists(generic_attributes | known_attributes, max_size=6).map(tuple)


@st.composite
def media_descriptions(draw: st.DrawFn) -> MediaDescription:
    if draw(st.booleans()):
        proto = draw(st.sampled_from(["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF"]))
        formats = tuple(str(pt) for pt in draw(st.lists(st.integers(0, 127), min_size=1, max_size=5)))
    else:
        proto = draw(st.sampled_from(["udp", "udptl", "TCP/MSRP", "UDP/DTLS/SCTP"]))
        formats = tuple(draw(st.lists(tokens, min_size=1, max_size=3)))
    return MediaDescription(
        media=draw(st.sampled_from(["audio", "video", "image", "application"]) | tokens),
        port=draw(st.integers(0, 65535)),
        proto=proto,
        formats=formats,
        port_count=draw(st.none() | st.integers(1, 65535)),
        title=draw(st.none() | texts),
        connections=tuple(draw(st.lists(connections, max_size=2))),
        bandwidths=tuple(draw(st.lists(bandwidths, max_size=2))),
        key=draw(st.none() | texts),
        attributes=draw(attribute_lists),
    )


sessions = st.builds(
    SessionDescription,
    origin=st.builds(Origin, tokens, st.integers(0, 2**64), st.integers(0, 2**64), tokens, tokens, addresses),
    session_name=texts,
    information=st.none() | texts,
    uri=st.none() | texts,
    emails=st.lists(texts, max_size=2).map(tuple),
    phones=st.lists(texts, max_size=2).map(tuple),
    connection=st.none() | connections,
    bandwidths=st.lists(bandwidths, max_size=2).map(tuple),
    timing=st.lists(timings, min_size=1, max_size=3).map(tuple),
    key=st.none() | texts,
    attributes=attribute_lists,
    media=st.lists(media_descriptions(), max_size=4).map(tuple),
)


def exercise(sdp: SessionDescription) -> None:
    """Everything a parsed description offers must work without raising."""
    assert parse_sdp(sdp.to_bytes()) == sdp
    _ = (sdp.direction, sdp.fingerprints, sdp.setup)
    for media in sdp.media:
        _ = (media.rtpmaps(), media.ptime, media.maxptime, media.rtcp, media.rtcp_mux, media.crypto)
        _ = (media.fingerprints, media.setup, media.payload_types, sdp.direction_for(media))
        for fmt in media.formats:
            media.fmtp(fmt)
    hold_state(sdp)
    try:
        answer, _audio = answer_audio(
            sdp, local_address="127.0.0.1", local_port=20000, supported=DEFAULT_AUDIO_CODECS, session_id=1,
            session_version=1,
        )  # fmt: skip
    except SdpError as exc:
        assert exc.status in (400, 488)
    else:
        assert len(answer.media) == len(sdp.media)
        assert parse_sdp(answer.to_bytes()) == answer


@PROFILE
@given(sessions)
def test_generated_descriptions_round_trip(sdp: SessionDescription) -> None:
    data = sdp.to_bytes()
    assert parse_sdp(data) == sdp
    assert parse_sdp(data.replace(b"\r\n", b"\n")) == sdp
    exercise(sdp)


@PROFILE
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    try:
        sdp = parse_sdp(data)
    except SdpDecodeError as exc:
        assert exc.status in (400, 488) and exc.reason
    else:
        exercise(sdp)


@PROFILE
@given(st.sampled_from(ALL_BYTES), st.data())
def test_mutated_vectors_only_raise_decode_error(data: bytes, draw: st.DataObject) -> None:
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        op = draw.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw.draw(st.integers(0, len(buf)))
        if op == "flip" and at < len(buf):
            buf[at] = draw.draw(st.integers(0, 255))
        elif op == "insert":
            buf[at:at] = draw.draw(
                st.sampled_from([b" ", b"\r", b"\n", b"=", b":", b"/", b"a=", b"\x00", b"9" * 30])
            )
        elif op == "delete":
            del buf[at : at + draw.draw(st.integers(1, 8))]
        else:
            del buf[at:]
    try:
        sdp = parse_sdp(bytes(buf))
    except SdpDecodeError as exc:
        assert exc.status in (400, 488) and exc.reason
    else:
        exercise(sdp)


@PROFILE
@given(st.sampled_from(VALID_BYTES), st.data())
def test_every_line_prefix_of_a_valid_vector_parses_or_fails_cleanly(
    data: bytes, draw: st.DataObject
) -> None:
    cut = draw.draw(st.integers(0, len(data)))
    with contextlib.suppress(SdpDecodeError):
        exercise(parse_sdp(data[:cut]))
