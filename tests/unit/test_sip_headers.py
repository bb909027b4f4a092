"""Typed SIP header views (Via, name-addr, CSeq, lists) and the shared grammar pieces."""

from __future__ import annotations

import pytest

from appliance.sip.errors import DecodeError
from appliance.sip.grammar import Params, format_params, parse_params, quote, split_outside_quotes, unquote
from appliance.sip.headers import (
    NameAddr,
    Via,
    parse_contacts,
    parse_cseq,
    parse_name_addr,
    parse_session_expires,
    parse_via,
    split_list,
)

VIA_VALID: dict[str, Via] = {
    "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport": Via(
        "UDP", "127.0.0.1", 5060, {"branch": "z9hG4bK1", "rport": None}
    ),
    "SIP/2.0/tcp localhost;branch=z9hG4bK2": Via("TCP", "localhost", None, {"branch": "z9hG4bK2"}),
    "SIP / 2.0 / UDP  127.0.0.2 ; branch = z9hG4bK3 ; received=127.0.0.9": Via(
        "UDP", "127.0.0.2", None, {"branch": "z9hG4bK3", "received": "127.0.0.9"}
    ),
    "SIP/2.0/UDP [::1]:5070;branch=z9hG4bK4;received=::1": Via(
        "UDP", "[::1]", 5070, {"branch": "z9hG4bK4", "received": "::1"}
    ),
    "sip/2.0/WSS 127.0.0.3;branch=z9hG4bK5": Via("WSS", "127.0.0.3", None, {"branch": "z9hG4bK5"}),
    "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK6;maddr=[::1];ttl=16": Via(
        "UDP", "127.0.0.1", None, {"branch": "z9hG4bK6", "maddr": "[::1]", "ttl": "16"}
    ),
    "SIP/2.0/UDP 127.0.0.1;branch": Via("UDP", "127.0.0.1", None, {"branch": None}),
    "SIP/2.0/UNKNOWN t4.localhost": Via("UNKNOWN", "t4.localhost"),
}

VIA_INVALID: dict[str, str] = {
    "": "Malformed Via header",
    "SIP/2.0 127.0.0.1": "Malformed Via header",
    "SIP/3.0/UDP 127.0.0.1": "Malformed Via header",
    "SIP/2.0/UDP": "Malformed Via header",
    "SIP/2.0/UDP\u00a0127.0.0.1;branch=z9hG4bK1": "Malformed Via header",
    "SIP/2.0/UDP 127.0.0.1 junk;branch=z9hG4bK1": "Malformed Via header",
    "SIP/2.0/UDP 127.0.0.1:99999;branch=z9hG4bK1": "Malformed port '99999' in Via header",
    "SIP/2.0/UDP [::1;branch=z9hG4bK1": "Unterminated IPv6 reference in Via header",
    "SIP/2.0/UDP 127.0.0.1;;": "Malformed parameter '' in Via header",
    'SIP/2.0/UDP 127.0.0.1;branch="z9hG4bK1': "Unterminated quoted string",
    "SIP/2.0/UDP 127.0.0.1;branch=": "Empty value for parameter 'branch' in Via header",
}


@pytest.mark.parametrize("text", list(VIA_VALID))
def test_parse_via(text: str) -> None:
    via = parse_via(text)
    assert via == VIA_VALID[text]
    assert parse_via(str(via)) == via


@pytest.mark.parametrize("text", list(VIA_INVALID))
def test_parse_via_invalid(text: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_via(text)
    assert (info.value.status, info.value.reason) == (400, VIA_INVALID[text])


def test_via_accessors_and_canonical_form() -> None:
    via = parse_via("SIP/2.0/udp [::1]:5062;branch=z9hG4bKx;received=127.0.0.9")
    assert (via.branch, via.received) == ("z9hG4bKx", "127.0.0.9")
    assert str(via) == "SIP/2.0/UDP [::1]:5062;branch=z9hG4bKx;received=127.0.0.9"
    assert str(Via("TCP", "::1", 5060)) == "SIP/2.0/TCP [::1]:5060"


NAME_ADDR_VALID: dict[str, NameAddr] = {
    '"Alice" <sip:alice@127.0.0.2>;tag=1': NameAddr("sip:alice@127.0.0.2", "Alice", {"tag": "1"}),
    "Alice Smith <sip:alice@127.0.0.2>": NameAddr("sip:alice@127.0.0.2", "Alice Smith"),
    "caller<sip:caller@127.0.0.2>;tag=323": NameAddr("sip:caller@127.0.0.2", "caller", {"tag": "323"}),
    "<sip:agent@127.0.0.1>": NameAddr("sip:agent@127.0.0.1"),
    "sip:agent@127.0.0.1;tag=9": NameAddr("sip:agent@127.0.0.1", None, {"tag": "9"}),
    '"Smith, John \\"JJ\\"" <sip:jj@127.0.0.2>': NameAddr("sip:jj@127.0.0.2", 'Smith, John "JJ"'),
    '"back\\\\slash" <sip:b@localhost>': NameAddr("sip:b@localhost", "back\\slash"),
    '"" <sip:a@localhost>': NameAddr("sip:a@localhost", ""),
    'sip:a@localhost;x="<b>"': NameAddr("sip:a@localhost", None, {"x": '"<b>"'}),
    "<sip:a@localhost;lr>;expires=60": NameAddr("sip:a@localhost;lr", None, {"expires": "60"}),
    '"Ünïcødé 名前" <sip:u@localhost>': NameAddr("sip:u@localhost", "Ünïcødé 名前"),
    "isbn:2983792873": NameAddr("isbn:2983792873"),
    "<sip:a@localhost>;tag": NameAddr("sip:a@localhost", None, {"tag": None}),
    '<sip:a@localhost> ; tag = x ; +sip.instance="<urn:uuid:1>"': NameAddr(
        "sip:a@localhost", None, {"tag": "x", "+sip.instance": '"<urn:uuid:1>"'}
    ),
}

NAME_ADDR_INVALID: dict[str, str] = {
    "": "Empty From header",
    "   ": "Empty From header",
    '"Alice <sip:a@localhost>': "Unterminated display name in From header",
    '"Alice\\" <sip:a@localhost>': "Unterminated display name in From header",
    '"Alice" sip:a@localhost': "Missing '<' after display name in From header",
    "Bell, Alexander <sip:a@localhost>": "Malformed display name in From header",
    '"A" B <sip:a@localhost>': "Malformed display name in From header",
    "<sip:a@localhost": "Unterminated '<' in From header",
    "< sip:a@localhost >": "Whitespace inside '<...>' in From header",
    "<sip:a@localhost\t>": "Whitespace inside '<...>' in From header",
    "<>": "Malformed URI in From header",
    "<sip:a@localhost> junk": "Unexpected text after URI in From header",
    "sip:a@localhost?Route=%3Csip:b%3E": "URI with headers or commas outside '<...>' in From header",
    "<sip:a@localhost>;=x": "Malformed parameter '=x' in From header",
    '<sip:a@localhost>;x="a"b"c"': "Malformed quoted value for parameter 'x' in From header",
    '<sip:a@localhost>;x="a"b"': "Unterminated quoted string",
    "nocolon": "Malformed URI in From header",
}


@pytest.mark.parametrize("text", list(NAME_ADDR_VALID))
def test_parse_name_addr(text: str) -> None:
    value = parse_name_addr(text, what="From")
    assert value == NAME_ADDR_VALID[text]
    assert parse_name_addr(str(value), what="From") == value


@pytest.mark.parametrize("text", list(NAME_ADDR_INVALID))
def test_parse_name_addr_invalid(text: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_name_addr(text, what="From")
    assert (info.value.status, info.value.reason) == (400, NAME_ADDR_INVALID[text])


def test_name_addr_with_tag_and_canonical_form() -> None:
    value = parse_name_addr("Smith <sip:s@localhost>;expires=5", what="To")
    tagged = value.with_tag("abc")
    assert tagged.tag == "abc" and value.tag is None
    assert str(tagged) == '"Smith" <sip:s@localhost>;expires=5;tag=abc'


CSEQ: dict[str, tuple[int, str]] = {
    "1 INVITE": (1, "INVITE"),
    "0009\tINVITE": (9, "INVITE"),
    "  42   BYE  ": (42, "BYE"),
    "2147483647 ACK": (2**31 - 1, "ACK"),
    "0000000000000000001 ACK": (1, "ACK"),
    "0 RE%47IST%45R": (0, "RE%47IST%45R"),
}

CSEQ_INVALID: dict[str, str] = {
    "2147483648 ACK": "CSeq number out of range",
    "36893488147419103232 REGISTER": "CSeq number out of range",
    "1" + "0" * 5000 + " ACK": "CSeq number out of range",
    "1 INV@TE": "Malformed CSeq method",
    "1INVITE": "Malformed CSeq header",
    "-1 INVITE": "Malformed CSeq header",
    "\u0661 INVITE": "Malformed CSeq header",
    "1 INVITE extra": "Malformed CSeq header",
    "INVITE": "Malformed CSeq header",
    "": "Malformed CSeq header",
}


@pytest.mark.parametrize("text", list(CSEQ))
def test_parse_cseq(text: str) -> None:
    assert parse_cseq(text) == CSEQ[text]


@pytest.mark.parametrize("text", list(CSEQ_INVALID))
def test_parse_cseq_invalid(text: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_cseq(text)
    assert info.value.reason == CSEQ_INVALID[text]


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("a, b,c", ["a", "b", "c"]),
        (" , ,a,, ", ["a"]),
        (
            '"x, y" <sip:a@localhost>, <sip:c@localhost?h=1,2>',
            ['"x, y" <sip:a@localhost>', "<sip:c@localhost?h=1,2>"],
        ),
        ('"a\\"," <sip:x@localhost>, b', ['"a\\"," <sip:x@localhost>', "b"]),
        ("", []),
    ],
)
def test_split_list(text: str, items: list[str]) -> None:
    assert split_list(text) == items


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('"unterminated, x', "Unterminated quoted string"),
        ("<sip:a@localhost, c", "Unterminated '<' in header value"),
    ],
)
def test_split_list_invalid(text: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        split_list(text)


def test_parse_contacts() -> None:
    assert parse_contacts(["*"]) is None
    assert parse_contacts([" * "]) is None
    contacts = parse_contacts(['<sip:a@localhost>, "B" <sip:b@127.0.0.1>;q=0.5', "sip:c@[::1];expires=0"])
    assert contacts == [
        NameAddr("sip:a@localhost"),
        NameAddr("sip:b@127.0.0.1", "B", {"q": "0.5"}),
        NameAddr("sip:c@[::1]", None, {"expires": "0"}),
    ]
    with pytest.raises(DecodeError, match="Wildcard Contact mixed with other contacts"):
        parse_contacts(["*, <sip:a@localhost>"])
    # RFC 4475 §3.1.2.13: a URI with an escaped header outside '<>'.
    with pytest.raises(DecodeError, match="URI with headers or commas outside"):
        parse_contacts(["sip:user@localhost?Route=%3Csip:127.0.0.3%3E"])


PARAMS: dict[str, Params] = {
    "a=1;B=Two;flag": {"a": "1", "b": "Two", "flag": None},
    'text="a;b"': {"text": '"a;b"'},
    " q = 0.5 ; lr ": {"q": "0.5", "lr": None},
    "received=[::1]": {"received": "[::1]"},
    "": {},
}


@pytest.mark.parametrize("text", list(PARAMS))
def test_parse_params(text: str) -> None:
    assert parse_params(text, what="test") == PARAMS[text]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a=1;;b", "Malformed parameter '' in test"),
        ("a b=1", "Malformed parameter 'a b=1' in test"),
        ("a=", "Empty value for parameter 'a' in test"),
        ("a=x y", "Malformed value for parameter 'a' in test"),
        ('a="x"y"z"', "Malformed quoted value for parameter 'a' in test"),
        ('a="x', "Unterminated quoted string"),
    ],
)
def test_parse_params_invalid(text: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_params(text, what="test")
    assert info.value.reason == reason


def test_format_params_round_trip() -> None:
    params: Params = {"transport": "tcp", "lr": None, "text": '"a;b"'}
    assert format_params(params) == ';transport=tcp;lr;text="a;b"'
    assert parse_params(format_params(params)[1:], what="test") == params


@pytest.mark.parametrize("text", ["", "plain", 'with "quotes"', "back\\slash", 'both \\" mixed', "名前"])
def test_quote_unquote_round_trip(text: str) -> None:
    quoted = quote(text)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert unquote(quoted) == text
    assert split_outside_quotes(f"{quoted},x", ",") == [quoted, "x"]


def test_unquote_leaves_unquoted_text() -> None:
    assert unquote("token") == "token"
    assert unquote('"') == '"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1800", (1800, None)), ("90;refresher=uac", (90, "uac")), (" 120 ; refresher=UAS;x=y", (120, "uas"))],
)
def test_session_expires(value: str, expected: tuple[int, str | None]) -> None:
    assert parse_session_expires(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "Malformed Session-Expires header"),
        ("abc", "Malformed Session-Expires header"),
        ("１２３", "Malformed Session-Expires header"),  # non-ASCII digits
        ("90;refresher=both", "Malformed refresher in Session-Expires header"),
    ],
)
def test_session_expires_rejects(value: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_session_expires(value)
    assert info.value.reason == reason
