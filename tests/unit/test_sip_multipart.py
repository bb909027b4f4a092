"""Multipart bodies (RFC 2046 §5.1, RFC 5621): the vectors' bodies, edge forms, errors, and properties."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.sip.errors import DecodeError, LocalProtocolError
from appliance.sip.message import parse_message
from appliance.sip.multipart import (
    BodyPart,
    build_multipart,
    is_multipart,
    media_type,
    multipart_boundary,
    parse_multipart,
)
from tests.unit.vectors import hypothesis_settings, load, soak_marks

pytestmark = soak_marks()
ISUP = bytes.fromhex("0100490000030200070410003363214300000306 0d038090a20a00".replace(" ", ""))


def _body_of(case: str) -> tuple[bytes, str]:
    message = parse_message(load("valid", case))
    content_type = message.headers.get("content-type")
    assert content_type is not None
    return message.body, content_type


def test_sdp_with_isup_vector() -> None:
    body, content_type = _body_of("multipart_mixed")
    parts = parse_multipart(body, content_type)
    sdp = parse_message(load("valid", "invite_sdp")).body
    assert parts == [
        BodyPart((("Content-Type", "application/sdp"),), sdp),
        BodyPart(
            (
                ("Content-Type", "application/ISUP;version=itu-t92+"),
                ("Content-Disposition", "signal;handling=optional"),
            ),
            ISUP,
        ),
    ]
    assert [p.media_type for p in parts] == ["application/sdp", "application/isup"]
    assert parts[1].content_disposition == "signal;handling=optional"


def test_binary_part_vector() -> None:
    body, content_type = _body_of("torture_multipart_binary")
    text, binary = parse_multipart(body, content_type)
    assert text.body == b"Callback requested for queue 4"
    assert text.header("content-transfer-encoding") == "binary"
    assert binary.content_type == "application/octet-stream"
    assert binary.body == bytes(range(256))  # CR, LF and "--" inside the octets are not delimiters


@pytest.mark.parametrize("case", ["multipart_mixed", "torture_multipart_binary"])
def test_vector_bodies_rebuild_identically(case: str) -> None:
    body, content_type = _body_of(case)
    parts = parse_multipart(body, content_type)
    assert build_multipart(parts, multipart_boundary(content_type)) == (body, content_type)


def test_preamble_epilogue_and_transport_padding_are_dropped() -> None:
    body = (
        b"This is the preamble.\r\n"
        b"--xyz  \t\r\n"
        b"Content-Type: text/plain\r\n\r\n"
        b"one\r\n"
        b"--xyz\r\n"
        b"\r\n"
        b"two, no headers\r\n"
        b"--xyz--  trailing words\r\n"
        b"This is the epilogue.\r\n"
    )
    assert parse_multipart(body, 'Multipart/Related; type="application/sdp"; Boundary="xyz"') == [
        BodyPart((("Content-Type", "text/plain"),), b"one"),
        BodyPart((), b"two, no headers"),
    ]


def test_empty_parts_and_folded_part_header() -> None:
    body = (
        b"--b\r\n\r\n"  # no headers, empty body
        b"\r\n--b\r\n"
        b"Content-Type: text/plain;\r\n charset=utf-8\r\n\r\n"  # headers, empty body
        b"\r\n--b--"
    )
    parts = parse_multipart(body, "multipart/mixed;boundary=b")
    assert parts == [BodyPart((), b""), BodyPart((("Content-Type", "text/plain; charset=utf-8"),), b"")]
    assert parts[0].media_type == "text/plain"  # RFC 2046 §5.1 default
    assert parts[0].content_type is None


def test_nested_multipart_is_parsed_again() -> None:
    inner, inner_type = build_multipart(
        [BodyPart.of("text/plain", b"hello"), BodyPart.of("text/html", b"<p>hello</p>")],
        "inner",
        subtype="alternative",
    )
    outer, outer_type = build_multipart(
        [BodyPart.of("application/sdp", b"v=0\r\n"), BodyPart.of(inner_type, inner)], "outer"
    )
    sdp, alternative = parse_multipart(outer, outer_type)
    assert sdp.body == b"v=0\r\n"
    assert is_multipart(alternative.content_type)
    assert alternative.content_type is not None
    html = parse_multipart(alternative.body, alternative.content_type)[1]
    assert html.body == b"<p>hello</p>"


def test_build_quotes_a_boundary_that_is_not_a_token() -> None:
    body, content_type = build_multipart([BodyPart.of("text/plain", b"x")], "a b:c")
    assert content_type == 'multipart/mixed;boundary="a b:c"'
    assert body == b"--a b:c\r\nContent-Type: text/plain\r\n\r\nx\r\n--a b:c--\r\n"
    assert parse_multipart(body, content_type) == [BodyPart.of("text/plain", b"x")]


def test_body_part_helpers() -> None:
    part = BodyPart.of("Application/PIDF+XML", b"<x/>", disposition="render;handling=optional")
    assert part.headers == (
        ("Content-Type", "Application/PIDF+XML"),
        ("Content-Disposition", "render;handling=optional"),
    )
    assert part.header("CONTENT-TYPE") == "Application/PIDF+XML"
    assert part.header("content-id") is None
    assert part.media_type == "application/pidf+xml"
    assert media_type(" Multipart/Mixed ; boundary=x") == "multipart/mixed"
    assert is_multipart("multipart/signed;boundary=x")
    assert not is_multipart("application/sdp")
    assert not is_multipart(None)


# (body, content type, max_parts) -> reason
INVALID: list[tuple[bytes, str, str]] = [
    (b"--b\r\n\r\nx\r\n--b--", "application/sdp", "Content-Type application/sdp is not multipart"),
    (b"", "multipart", "Malformed Content-Type of a multipart body"),
    (b"", "multipart/mi xed;boundary=b", "Malformed Content-Type of a multipart body"),
    (b"", "multipart/mixed", "Missing boundary parameter in multipart Content-Type"),
    (b"", "multipart/mixed;charset=utf-8", "Missing boundary parameter in multipart Content-Type"),
    (b"", 'multipart/mixed;boundary=""', "Malformed multipart boundary"),
    (b"", f'multipart/mixed;boundary="{"a" * 71}"', "Malformed multipart boundary"),
    (b"", 'multipart/mixed;boundary="space "', "Malformed multipart boundary"),
    (b"", 'multipart/mixed;boundary="caf\u00e9"', "Malformed multipart boundary"),
    (b"", "multipart/mixed;boundary=(b)", "Malformed value for parameter 'boundary' in Content-Type"),
    (b"no delimiter here", "multipart/mixed;boundary=b", "Missing opening boundary in multipart body"),
    (b"--b\r\n\r\nnever closed", "multipart/mixed;boundary=b", "Missing closing boundary in multipart body"),
    (b"--b\r\n--b--", "multipart/mixed;boundary=b", "Missing closing boundary in multipart body"),
    (b"--bX\r\n\r\nx\r\n--b--", "multipart/mixed;boundary=b", "Malformed boundary line in multipart body"),
    (b"--b", "multipart/mixed;boundary=b", "Malformed boundary line in multipart body"),
    (b"--b--\r\n", "multipart/mixed;boundary=b", "Multipart body without parts"),
    (
        b"--b\r\nNoColon\r\n\r\nx\r\n--b--",
        "multipart/mixed;boundary=b",
        "Malformed part header 'NoColon' in multipart body",
    ),
    (
        b"--b\r\nBad Name: x\r\n\r\nx\r\n--b--",
        "multipart/mixed;boundary=b",
        "Malformed part header 'Bad Name: x' in multipart body",
    ),
    (
        b"--b\r\nContent-Type: caf\xe9\r\n\r\nx\r\n--b--",
        "multipart/mixed;boundary=b",
        "Part headers in multipart body are not valid UTF-8",
    ),
    (
        b"--b\r\nContent-Type: a\x00b\r\n\r\nx\r\n--b--",
        "multipart/mixed;boundary=b",
        "Control character or bare CR/LF in part headers of multipart body",
    ),
    (
        b"--b\r\nContent-Type: a\nb\r\n\r\nx\r\n--b--",
        "multipart/mixed;boundary=b",
        "Control character or bare CR/LF in part headers of multipart body",
    ),
    (
        b"--b\r\n x: y\r\n\r\nz\r\n--b--",
        "multipart/mixed;boundary=b",
        "Part headers of multipart body start with a continuation line",
    ),
    (
        b"--b\r\nhello\r\n--b--",
        "multipart/mixed;boundary=b",
        "Missing empty line after part headers in multipart body",
    ),
]


@pytest.mark.parametrize(("body", "content_type", "reason"), INVALID)
def test_invalid_bodies(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_multipart(body, content_type)
    assert (info.value.status, info.value.reason) == (400, reason)


def test_part_count_is_capped() -> None:
    body, content_type = build_multipart([BodyPart((), b"%d" % i) for i in range(3)], "b")
    assert len(parse_multipart(body, content_type, max_parts=3)) == 3
    with pytest.raises(DecodeError, match="More than 2 parts in multipart body"):
        parse_multipart(body, content_type, max_parts=2)


@pytest.mark.parametrize(
    ("parts", "boundary", "subtype", "reason"),
    [
        ([], "b", "mixed", "at least one part"),
        ([BodyPart((), b"x")], "", "mixed", "Malformed multipart boundary"),
        ([BodyPart((), b"x")], "b" * 71, "mixed", "Malformed multipart boundary"),
        ([BodyPart((), b"x")], "b", "mi xed", "Malformed multipart subtype"),
        ([BodyPart((("Bad Name", "x"),), b"x")], "b", "mixed", "cannot be written on one line"),
        ([BodyPart((("X", "a\r\nb"),), b"x")], "b", "mixed", "cannot be written on one line"),
        ([BodyPart((("X", " padded"),), b"x")], "b", "mixed", "cannot be written on one line"),
        ([BodyPart((("X", "nul\x00"),), b"x")], "b", "mixed", "cannot be written on one line"),
        ([BodyPart((), b"a\r\n--b\r\nc")], "b", "mixed", "contains the multipart boundary"),
    ],
)
def test_build_refuses(parts: list[BodyPart], boundary: str, subtype: str, reason: str) -> None:
    with pytest.raises(LocalProtocolError, match=reason):
        build_multipart(parts, boundary, subtype=subtype)


TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
)
HEADER_VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"), max_size=30
).map(lambda v: v.strip(" \t"))
PART = st.builds(
    BodyPart,
    st.lists(st.tuples(TOKEN, HEADER_VALUE), max_size=4).map(tuple),
    st.binary(max_size=200),
)
BOUNDARY = st.from_regex(r"[0-9A-Za-z'()+_,\-./:=? ]{0,20}[0-9A-Za-z'()+_,\-./:=?]", fullmatch=True)


@hypothesis_settings()
@given(st.lists(PART, min_size=1, max_size=5), BOUNDARY)
def test_build_then_parse_gives_the_parts_back(parts: list[BodyPart], boundary: str) -> None:
    try:
        body, content_type = build_multipart(parts, boundary)
    except LocalProtocolError:
        # Only a body holding the delimiter is refused for these inputs.
        assert any(b"\r\n--" + boundary.encode() in b"\r\n" + p.body for p in parts)
        return
    assert parse_multipart(body, content_type) == parts
    assert build_multipart(parse_multipart(body, content_type), boundary) == (body, content_type)


@hypothesis_settings()
@given(
    st.binary(max_size=300), st.sampled_from(["multipart/mixed;boundary=b", 'multipart/mixed;boundary="a b"'])
)
def test_random_bodies_raise_only_decode_error(body: bytes, content_type: str) -> None:
    try:
        parts = parse_multipart(body, content_type)
    except DecodeError:
        return
    assert parts


@hypothesis_settings()
@given(st.data())
def test_mutated_vector_bodies_raise_only_decode_error(data: st.DataObject) -> None:
    body, content_type = _body_of(data.draw(st.sampled_from(["multipart_mixed", "torture_multipart_binary"])))
    at = data.draw(st.integers(min_value=0, max_value=len(body)))
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    if kind == "flip" and at < len(body):
        body = body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1 :]
    elif kind == "insert":
        body = body[:at] + data.draw(st.binary(min_size=1, max_size=8)) + body[at:]
    elif kind == "delete":
        body = body[:at] + body[at + data.draw(st.integers(1, 8)) :]
    else:
        body = body[:at]
    with contextlib.suppress(DecodeError):
        parse_multipart(body, content_type)
