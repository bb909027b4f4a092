"""Properties of the SIP parsers (STYLE.md rule 12).

1. Generated valid messages survive ``parse_message(m.to_bytes())`` field by field and serialize again to
   the same octets.
2. The parsers are total: random bytes, mutated wire vectors and truncations give a value or DecodeError,
   never another exception; whatever does parse serializes and parses back to itself.

The profile comes from ``HYPOTHESIS_PROFILE`` (``sip-ci`` by default: 200 deterministic examples; ``long``
for a soak run), see ``tests/unit/vectors.py``.
"""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from appliance.sip.errors import DecodeError
from appliance.sip.grammar import parse_params, split_outside_quotes
from appliance.sip.headers import (
    BRANCH_COOKIE,
    NameAddr,
    Via,
    parse_contacts,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_list,
)
from appliance.sip.message import DEFAULT_MAX_SIZE, Headers, Request, Response, parse_message
from appliance.sip.stream import StreamFramer
from appliance.sip.uri import SipUri, TelUri, Uri, parse_uri
from tests.unit.vectors import all_of, hypothesis_settings, soak_marks

pytestmark = soak_marks()
SETTINGS = hypothesis_settings()

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
LOWER_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~"
tokens = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12)
param_names = st.text(alphabet=LOWER_TOKEN_CHARS, min_size=1, max_size=8)
params = st.dictionaries(param_names, st.none() | tokens, max_size=3)
# Text a peer may put in a header value or reason phrase: no control characters (category Cc), no lone
# surrogates; ends stripped like the parser strips them.
header_text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=24).map(
    lambda v: v.strip(" \t")
)

labels = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,6}[A-Za-z0-9])?", fullmatch=True)
hosts = st.one_of(
    st.integers(1, 254).map(lambda n: f"127.0.0.{n}"),
    st.sampled_from(["[::1]", "[::ffff:127.0.0.2]", "localhost", "[fe80::1:2]"]),
    st.lists(labels, min_size=1, max_size=3).map(lambda parts: ".".join([*parts, "localhost"])),
)
ports = st.none() | st.integers(0, 65535)
users = st.from_regex(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2}){1,12}", fullmatch=True)


@st.composite
def sip_uris(draw: st.DrawFn, *, with_headers: bool = True) -> SipUri:
    headers: tuple[tuple[str, str], ...] = ()
    if with_headers:
        headers = tuple(draw(st.lists(st.tuples(tokens.filter(lambda t: "%" not in t), tokens), max_size=2)))
    return SipUri(
        host=draw(hosts),
        user=draw(st.none() | users),
        port=draw(ports),
        scheme=draw(st.sampled_from(["sip", "sips"])),
        params=draw(params),
        headers=headers,
    )


tel_uris = st.builds(
    TelUri,
    st.from_regex(r"\+[0-9][0-9\-.()]{0,14}", fullmatch=True),
    params.filter(lambda p: "phone-context" not in p),
)
request_uris: st.SearchStrategy[Uri] = st.one_of(sip_uris(with_headers=False), tel_uris)
name_addrs = st.builds(
    NameAddr,
    st.one_of(sip_uris(), tel_uris).map(str),
    st.none() | header_text,
    params,
)
call_ids = st.from_regex(
    r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]{1,16}(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]{1,16})?",
    fullmatch=True,
)
vias = st.builds(
    Via,
    st.sampled_from(["UDP", "TCP", "TLS", "WS", "WSS", "SCTP"]),
    hosts,
    ports,
    st.tuples(tokens, params).map(lambda t: {**t[1], "branch": BRANCH_COOKIE + t[0]}),
)
extension_headers = st.lists(st.tuples(tokens.map(lambda t: "X-" + t), header_text), max_size=4)


@st.composite
def common_fields(draw: st.DrawFn, method: str) -> list[tuple[str, str]]:
    via_values = [str(v) for v in draw(st.lists(vias, min_size=1, max_size=3))]
    fields = [("Via", ", ".join(via_values))] if draw(st.booleans()) else [("Via", v) for v in via_values]
    fields += [
        ("From", str(draw(name_addrs).with_tag(draw(tokens)))),
        ("To", str(draw(name_addrs))),
        ("Call-ID", draw(call_ids)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    fields += draw(extension_headers)
    return fields


@st.composite
def requests(draw: st.DrawFn) -> tuple[Request, Uri]:
    method = draw(tokens)
    uri = draw(request_uris)
    fields = [("Max-Forwards", str(draw(st.integers(0, 255)))), *draw(common_fields(method))]
    body = draw(st.binary(max_size=64))
    if body:
        fields.append(("Content-Type", "application/octet-stream"))
    fields.append(("Content-Length", str(len(body))))
    order = draw(st.permutations(range(len(fields))))
    return Request(method, str(uri), Headers.from_pairs([fields[i] for i in order]), body), uri


@st.composite
def responses(draw: st.DrawFn) -> Response:
    fields = draw(common_fields(draw(tokens)))
    body = draw(st.binary(max_size=64))
    fields.append(("Content-Length", str(len(body))))
    return Response(draw(st.integers(100, 699)), draw(header_text), Headers.from_pairs(fields), body)


def assert_same_message(parsed: Request | Response, built: Request | Response) -> None:
    assert type(parsed) is type(built)
    assert parsed.start_line() == built.start_line()
    assert list(parsed.headers) == list(built.headers)
    assert parsed.body == built.body


@SETTINGS
@given(requests())
def test_generated_request_round_trips(case: tuple[Request, Uri]) -> None:
    built, uri = case
    wire = built.to_bytes()
    parsed = parse_message(wire)
    assert isinstance(parsed, Request)
    assert_same_message(parsed, built)
    assert (parsed.method, parsed.uri) == (built.method, built.uri)
    assert parsed.request_uri == uri
    assert parsed.top_via == parse_via(built.headers.get_all("via")[0])
    assert parsed.from_ == built.from_ and parsed.to == built.to
    assert parsed.cseq == built.cseq and parsed.call_id == built.call_id
    assert parsed.to_bytes() == wire


@SETTINGS
@given(responses())
def test_generated_response_round_trips(built: Response) -> None:
    wire = built.to_bytes()
    parsed = parse_message(wire, stream=True)
    assert isinstance(parsed, Response)
    assert_same_message(parsed, built)
    assert (parsed.status, parsed.reason) == (built.status, built.reason)
    assert parsed.from_ == built.from_ and parsed.to == built.to
    assert parsed.to_bytes() == wire


def check_total(data: bytes) -> None:
    """Parse must give a message that re-serializes to a fixed point, or DecodeError; nothing else."""
    try:
        message = parse_message(data)
    except DecodeError as exc:
        assert 400 <= exc.status <= 599
        assert exc.reason
        return
    wire = message.to_bytes()
    assert parse_message(wire).to_bytes() == wire
    # The views every layer reads were validated, so they cannot fail now.
    message.top_via  # noqa: B018
    assert message.cseq and message.call_id
    message.from_  # noqa: B018
    message.to  # noqa: B018
    if isinstance(message, Request):
        message.request_uri  # noqa: B018


VALID_VECTORS = all_of("valid")
INVALID_VECTORS = all_of("invalid")
INTERESTING = [
    b"\r\n",
    b"\r\n ",
    b":",
    b";",
    b",",
    b'"',
    b"\\",
    b"<",
    b">",
    b"\x00",
    b"\xff",
    b" ",
    b"@",
    b"[",
    b"]",
]


@st.composite
def mutated(draw: st.DrawFn, sources: list[bytes]) -> bytes:
    data = draw(st.sampled_from(sources))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if kind == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif kind == "insert":
            chunk = draw(st.sampled_from(INTERESTING) | st.binary(min_size=1, max_size=4))
            data = data[:at] + chunk + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 16)) :]
        else:
            data = data[:at]
    return data


@SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    check_total(data)


@SETTINGS
@given(st.sampled_from(VALID_VECTORS + INVALID_VECTORS), st.data())
def test_truncated_vectors_raise_only_decode_error(data: bytes, draw: st.DataObject) -> None:
    check_total(data[: draw.draw(st.integers(0, len(data)))])


@SETTINGS
@given(mutated(VALID_VECTORS))
def test_mutated_valid_vectors_raise_only_decode_error(data: bytes) -> None:
    check_total(data)


@SETTINGS
@given(mutated(INVALID_VECTORS))
def test_mutated_invalid_vectors_raise_only_decode_error(data: bytes) -> None:
    check_total(data)


@SETTINGS
@given(st.lists(mutated(VALID_VECTORS), min_size=1, max_size=3), st.integers(1, 64))
def test_stream_framer_raises_only_decode_error(messages: list[bytes], chunk: int) -> None:
    stream = b"".join(messages)
    framer = StreamFramer(DEFAULT_MAX_SIZE)
    framed = 0
    try:
        for at in range(0, len(stream), chunk):
            framer.feed(stream[at : at + chunk])
            while (frame := framer.next_message()) is not None:
                framed += len(frame)
                check_total(frame)
    except DecodeError:
        return
    assert framed + framer.buffered <= len(stream)


# Text built from the characters the URI and header grammars care about, so that random inputs reach
# deep into the parsers rather than failing on the first character.
GRAMMAR_CHARS = "sipteSIPT:;@?&=,.-_+%[]<>\"\\/ \t0123456789abcdefxyz!~*'()#\u00e9\u0661"
grammar_text = st.text(alphabet=GRAMMAR_CHARS, max_size=40)
uri_like = st.one_of(
    grammar_text,
    st.tuples(st.sampled_from(["sip:", "sips:", "tel:", "SIP:", "x:"]), grammar_text).map("".join),
    st.one_of(sip_uris(), tel_uris).map(str),
)


def mutate_text(text: str, data: st.DataObject) -> str:
    at = data.draw(st.integers(0, len(text)))
    return (
        text[:at]
        + data.draw(st.text(alphabet=GRAMMAR_CHARS, max_size=3))
        + text[at + data.draw(st.integers(0, 3)) :]
    )


@SETTINGS
@given(uri_like, st.data())
def test_parse_uri_is_total_and_prints_back(text: str, data: st.DataObject) -> None:
    for candidate in (text, mutate_text(text, data)):
        try:
            uri = parse_uri(candidate)
        except DecodeError as exc:
            assert exc.status in (400, 416)
            continue
        assert parse_uri(str(uri)) == uri


@SETTINGS
@given(st.one_of(grammar_text, vias.map(str), grammar_text.map(lambda t: "SIP/2.0/UDP " + t)), st.data())
def test_parse_via_is_total_and_prints_back(text: str, data: st.DataObject) -> None:
    for candidate in (text, mutate_text(text, data)):
        try:
            via = parse_via(candidate)
        except DecodeError:
            continue
        assert parse_via(str(via)) == via


@SETTINGS
@given(st.one_of(grammar_text, name_addrs.map(str)), st.data())
def test_parse_name_addr_is_total_and_prints_back(text: str, data: st.DataObject) -> None:
    for candidate in (text, mutate_text(text, data)):
        try:
            value = parse_name_addr(candidate, what="To")
        except DecodeError:
            continue
        assert parse_name_addr(str(value), what="To") == value


@SETTINGS
@given(grammar_text)
def test_other_header_parsers_are_total(text: str) -> None:
    for parse in (
        parse_cseq,
        split_list,
        lambda t: parse_params(t, what="test"),
        lambda t: parse_contacts([t]),
        lambda t: split_outside_quotes(t, ";"),
    ):
        with contextlib.suppress(DecodeError):
            parse(text)
