"""sip:, sips: and tel: URIs (RFC 3261 §19.1, §25.1; RFC 3966): parse, validate, print back."""

from __future__ import annotations

import pytest

from appliance.sip.errors import DecodeError
from appliance.sip.uri import (
    SipUri,
    TelUri,
    Uri,
    format_host,
    parse_host,
    parse_sip_uri,
    parse_uri,
    split_hostport,
    uri_scheme,
)

WEIRD_USER = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
WEIRD_PASSWORD = "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"

VALID: dict[str, Uri] = {
    "sip:alice@127.0.0.1": SipUri(host="127.0.0.1", user="alice"),
    "sip:127.0.0.1:5060": SipUri(host="127.0.0.1", port=5060),
    "SIP:Alice@LOCALHOST;Transport=TCP": SipUri(host="LOCALHOST", user="Alice", params={"transport": "TCP"}),
    "sips:agent@localhost:5061": SipUri(host="localhost", user="agent", port=5061, scheme="sips"),
    "sip:alice:secret@127.0.0.1": SipUri(host="127.0.0.1", user="alice", password="secret"),
    "sip:[::1]:5070;lr": SipUri(host="[::1]", port=5070, params={"lr": None}),
    "sip:alice@[::ffff:127.0.0.2]": SipUri(host="[::ffff:127.0.0.2]", user="alice"),
    "sip:alice@127.0.0.1?subject=hi&priority=urgent": SipUri(
        host="127.0.0.1", user="alice", headers=(("subject", "hi"), ("priority", "urgent"))
    ),
    "sip:agent@127.0.0.5?Route=%3Csip:127.0.0.3%3E": SipUri(
        host="127.0.0.5", user="agent", headers=(("Route", "%3Csip:127.0.0.3%3E"),)
    ),
    # RFC 4475 §3.1.1.9: ';' and '=' inside the user part.
    "sip:user;par=u%40localhost@127.0.0.1": SipUri(host="127.0.0.1", user="user;par=u%40localhost"),
    # RFC 4475 §3.1.1.2: '?' in the user part is not the start of URI headers.
    f"sip:{WEIRD_USER}:{WEIRD_PASSWORD}@127.0.0.1": SipUri(
        host="127.0.0.1", user=WEIRD_USER, password=WEIRD_PASSWORD
    ),
    "sip:a?b=c@localhost": SipUri(host="localhost", user="a?b=c"),
    "sip:+15551234567@127.0.0.1;user=phone": SipUri(
        host="127.0.0.1", user="+15551234567", params={"user": "phone"}
    ),
    "sip:%00@127.0.0.5": SipUri(host="127.0.0.5", user="%00"),
    "sip:cal%6Cer@127.0.0.2;%6C%72;n%61me=v%61lue%25%34%31": SipUri(
        host="127.0.0.2", user="cal%6Cer", params={"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    ),
    "sip:localhost.": SipUri(host="localhost."),
    "sip:agent@localhost;maddr=[::1];ttl=1": SipUri(
        host="localhost", user="agent", params={"maddr": "[::1]", "ttl": "1"}
    ),
    "tel:+1-555-123-4567": TelUri(number="+1-555-123-4567"),
    "tel:5550001111;phone-context=+1555": TelUri(number="5550001111", params={"phone-context": "+1555"}),
    "TEL:+15551234567;ext=22;isub=1": TelUri(number="+15551234567", params={"ext": "22", "isub": "1"}),
}

# text -> (status, reason)
INVALID: dict[str, tuple[int, str]] = {
    "": (400, "Malformed URI '': no scheme"),
    "alice@localhost": (400, "Malformed URI 'alice@localhost': no scheme"),
    "xmpp:alice@localhost": (416, "Unsupported URI Scheme 'xmpp'"),
    "soap.beep://127.0.0.1:3002": (416, "Unsupported URI Scheme 'soap.beep'"),
    "sip:": (400, "Missing host in sip: URI"),
    "sip:alice@": (400, "Missing host in sip: URI"),
    "sips:alice@::1": (400, "Missing host in sips: URI"),
    "sip:@localhost": (400, "Malformed user part '' in sip: URI"),
    "sip:al ice@localhost": (400, "Malformed user part 'al ice' in sip: URI"),
    "sip:alice:pa ss@localhost": (400, "Malformed password in sip: URI"),
    "sip:alice@local_host": (400, "Malformed host 'local_host' in sip: URI"),
    "sip:alice@-localhost": (400, "Malformed host '-localhost' in sip: URI"),
    "sip:alice@localhost:": (400, "Malformed port '' in sip: URI"),
    "sip:alice@localhost:65536": (400, "Malformed port '65536' in sip: URI"),
    "sip:alice@localhost:123456": (400, "Malformed port '123456' in sip: URI"),
    "sip:alice@localhost:5o60": (400, "Malformed port '5o60' in sip: URI"),
    "sip:alice@localhost:\u0665060": (400, "Malformed port '\u0665060' in sip: URI"),
    "sip:alice@[::1": (400, "Unterminated IPv6 reference in sip: URI"),
    "sip:alice@[::1]x": (400, "Unexpected text after IPv6 reference in sip: URI"),
    "sip:alice@[::g]": (400, "Malformed IPv6 reference '[::g]' in sip: URI"),
    "sip:alice@[127.0.0.1]": (400, "Malformed IPv6 reference '[127.0.0.1]' in sip: URI"),
    "sip:alice@[fe80::1%eth0]": (400, "Malformed IPv6 reference '[fe80::1%eth0]' in sip: URI"),
    "sip:alice@localhost;=x": (400, "Malformed parameter '=x' in sip: URI"),
    "sip:alice@localhost;lr=": (400, "Empty value for parameter 'lr' in sip: URI"),
    "sip:alice@localhost;a=b c": (400, "Malformed value for parameter 'a' in sip: URI"),
    "sip:alice@localhost?subject": (400, "Malformed header 'subject' in sip: URI"),
    "sip:alice@localhost?a=<b>": (400, "Malformed header 'a=<b>' in sip: URI"),
    "tel:": (400, "Malformed telephone number '' in tel: URI"),
    "tel:+1 555": (400, "Malformed telephone number '+1 555' in tel: URI"),
    "tel:5551234": (400, "Local number in tel: URI without phone-context"),
}


@pytest.mark.parametrize("text", list(VALID))
def test_parse_valid(text: str) -> None:
    assert parse_uri(text) == VALID[text]


@pytest.mark.parametrize("text", list(VALID))
def test_printed_form_parses_back_equal(text: str) -> None:
    uri = parse_uri(text)
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@127.0.0.1",
        "sips:agent@localhost:5061",
        "sip:[::1]:5070;lr",
        "sip:alice@127.0.0.1?subject=hi&priority=urgent",
        "sip:+15551234567@127.0.0.1;user=phone",
        "tel:+1-555-123-4567",
    ],
)
def test_canonical_text_prints_identically(text: str) -> None:
    assert str(parse_uri(text)) == text


@pytest.mark.parametrize("text", list(INVALID))
def test_parse_invalid(text: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_uri(text)
    assert (info.value.status, info.value.reason) == INVALID[text]


def test_transport_defaults_by_scheme() -> None:
    assert parse_sip_uri("sip:a@localhost").transport == "udp"
    assert parse_sip_uri("sips:a@localhost").transport == "tls"
    assert parse_sip_uri("sip:a@localhost;transport=TCP").transport == "tcp"
    assert parse_sip_uri("sips:a@localhost").secure
    assert not parse_sip_uri("sip:a@localhost").secure


def test_parse_sip_uri_refuses_tel() -> None:
    with pytest.raises(DecodeError) as info:
        parse_sip_uri("tel:+15551234567")
    assert (info.value.status, info.value.reason) == (
        416,
        "Expected a sip: or sips: URI, got 'tel:+15551234567'",
    )


def test_with_params_merges_and_keeps_the_original() -> None:
    uri = parse_sip_uri("sip:a@localhost;lr")
    moved = uri.with_params(transport="tcp", lr=None)
    assert str(moved) == "sip:a@localhost;lr;transport=tcp"
    assert str(uri) == "sip:a@localhost;lr"


def test_tel_global_and_local() -> None:
    assert parse_uri("tel:+15551234567") == TelUri("+15551234567")
    assert TelUri("+15551234567").is_global
    assert not TelUri("5550001111", {"phone-context": "+1555"}).is_global


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost", ("localhost", None)),
        ("127.0.0.1:5060", ("127.0.0.1", 5060)),
        ("[::1]", ("[::1]", None)),
        ("[::1]:0", ("[::1]", 0)),
        ("[::1]:65535", ("[::1]", 65535)),
    ],
)
def test_split_hostport(text: str, expected: tuple[str, int | None]) -> None:
    assert split_hostport(text, what="test") == expected


def test_parse_host_and_format_host() -> None:
    assert parse_host("[::1]", what="test") == "[::1]"
    assert format_host("::1") == "[::1]"
    assert format_host("[::1]") == "[::1]"
    assert format_host("127.0.0.1") == "127.0.0.1"
    with pytest.raises(DecodeError, match="Missing host in test"):
        parse_host("", what="test")


@pytest.mark.parametrize(
    ("text", "scheme"),
    [
        ("SIPS:a@b", "sips"),
        ("tel:+1", "tel"),
        ("soap.beep://x", "soap.beep"),
        ("<sip:a@b>", None),
        ("", None),
    ],
)
def test_uri_scheme(text: str, scheme: str | None) -> None:
    assert uri_scheme(text) == scheme
