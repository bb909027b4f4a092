"""SIP message parsing against the wire vectors in tests/vectors/sip/ (STYLE.md rule 11).

Valid vectors are parsed, checked field by field against the table below and serialized back to identical
octets; invalid ones must fail with the exact status and reason, carrying the partial message whenever its
start line and header fields were readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from appliance.sip.errors import DecodeError, MessageTooLarge
from appliance.sip.message import DEFAULT_MAX_SIZE, Headers, Request, Response, parse_message
from appliance.sip.uri import SipUri, TelUri
from tests.unit.vectors import load, names

CARRIER_FROM = ("Carrier", "sip:+15550001111@127.0.0.2", "9fxced76sl")
CARRIER_TO = (None, "sip:+15551234567@127.0.0.1", None)
CARRIER_VIA = ("UDP", "127.0.0.2", 5060, "z9hG4bK74bf9")
CARRIER_CALL_ID = "3848276298220188511@127.0.0.2"
SDP_LENGTH = 220


@dataclass(frozen=True)
class Valid:
    """What a valid vector must parse to."""

    start: tuple[str, str] | tuple[int, str]  # (method, Request-URI) or (status, reason)
    via: tuple[str, str, int | None, str]  # top Via: transport, host, port, branch
    from_: tuple[str | None, str, str | None]  # display name, URI, tag
    to: tuple[str | None, str, str | None]
    call_id: str
    cseq: tuple[int, str]
    body: int  # body length
    headers: Mapping[str, str | None] = field(default_factory=dict)  # Headers.get
    lists: Mapping[str, list[str]] = field(default_factory=dict)  # Headers.get_all
    dropped: int = 0  # octets after Content-Length, discarded (RFC 3261 §18.3)


def _carrier(
    start: tuple[str, str],
    cseq: tuple[int, str],
    body: int,
    *,
    headers: Mapping[str, str | None] | None = None,
    lists: Mapping[str, list[str]] | None = None,
) -> Valid:
    """A request from the carrier vectors' common header set."""
    return Valid(
        start, CARRIER_VIA, CARRIER_FROM, CARRIER_TO, CARRIER_CALL_ID, cseq, body, headers or {}, lists or {}
    )


LONG_USER = "u" * 300
# fmt: off
VALID: dict[str, Valid] = {
    "invite_sdp": _carrier(
        ("INVITE", "sip:+15551234567@127.0.0.1:5060;user=phone"), (1, "INVITE"), SDP_LENGTH,
        headers={"content-type": "application/sdp", "max-forwards": "70", "Content-Length": "220"},
        lists={"allow": ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"]},
    ),
    "options_no_body": _carrier(
        ("OPTIONS", "sip:127.0.0.1"), (1, "OPTIONS"), 0, headers={"accept": "application/sdp"}
    ),
    "compact_forms": Valid(
        ("INVITE", "sip:agent@127.0.0.1"), ("UDP", "127.0.0.2", 5060, "z9hG4bKcompact1"),
        ("Alice", "sip:alice@127.0.0.2", "a1"), (None, "sip:agent@127.0.0.1", None), "compact-1@127.0.0.2",
        (7, "INVITE"), SDP_LENGTH,
        headers={
            "Content-Type": "application/sdp", "c": "application/sdp", "subject": "compact header names",
        },
        lists={"supported": ["timer", "100rel"], "m": ["<sip:alice@127.0.0.2:5060>"], "l": ["220"]},
    ),
    "folded_headers": Valid(
        ("INVITE", "sip:agent@127.0.0.1"), ("UDP", "127.0.0.2", 5060, "z9hG4bKfold1"),
        ("Folded", "sip:caller@127.0.0.2", "f1"), (None, "sip:agent@127.0.0.1", None), "folded-1@127.0.0.2",
        (2, "INVITE"), 0,
        headers={
            "subject": "first line second line third line",
            "via": "SIP/2.0/UDP 127.0.0.2:5060 ;branch=z9hG4bKfold1", "cseq": "2 INVITE",
        },
    ),
    "comma_joined": Valid(
        ("INVITE", "sip:agent@127.0.0.1"), ("UDP", "127.0.0.3", 5060, "z9hG4bKproxy1"),
        (None, "sip:caller@127.0.0.2", "c1"), (None, "sip:agent@127.0.0.1", None), "comma-1@127.0.0.2",
        (1, "INVITE"), 0,
        lists={
            "via": [
                "SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bKproxy1",
                "SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKuac1",
                "SIP/2.0/TCP 127.0.0.4:5060;branch=z9hG4bKedge1",
            ],
            "route": ["<sip:127.0.0.3;lr>", "<sip:127.0.0.4;lr>", "<sip:127.0.0.1;lr>"],
            "record-route": ["<sip:127.0.0.3;lr>"],
            "contact": ["<sip:caller@127.0.0.2>;q=0.7", '"Desk, Second" <sip:desk@127.0.0.2>;q=0.3'],
            "allow": ["INVITE", "ACK", "BYE"],
        },
    ),
    "quoted_display": Valid(
        ("MESSAGE", "sip:agent@127.0.0.1"), ("UDP", "127.0.0.2", 5060, "z9hG4bKquote1"),
        ('Smith, John "JJ" \\ Jr.', "sip:jj@127.0.0.2", "q1"),
        ('Queue "Sales", EMEA', "sip:agent@127.0.0.1", None), "quoted-1@127.0.0.2", (1, "MESSAGE"),
        len("Grüße, 5 calls waiting".encode()), headers={"content-type": "text/plain;charset=utf-8"},
        lists={"contact": ['"A, B" <sip:ab@127.0.0.2>', '"C \\"D\\"" <sip:cd@127.0.0.2>']},
    ),
    "ipv6_refs": Valid(
        ("INVITE", "sip:agent@[::1]:5060;transport=udp"), ("UDP", "[::1]", 5070, "z9hG4bKv6a"),
        (None, "sip:caller@[::1]:5070", "v6"), (None, "sip:agent@[::1]", None), "v6-1@[::1]", (1, "INVITE"),
        SDP_LENGTH - 12,  # "IN IP4 127.0.0.2" -> "IN IP6 ::1", twice
        lists={"contact": ["<sip:caller@[::1]:5070>", "<sip:caller@[::ffff:127.0.0.2]>"]},
    ),
    "no_content_length_udp": _carrier(
        ("INVITE", "sip:agent@127.0.0.1"), (1, "INVITE"), SDP_LENGTH, headers={"content-length": None}
    ),
    "multipart_mixed": _carrier(
        ("INVITE", "sip:+15551234567@127.0.0.1;user=phone"), (1, "INVITE"), 447,
        headers={"content-type": "multipart/mixed;boundary=unique-boundary-1", "mime-version": "1.0"},
    ),
    "tel_uri": Valid(
        ("INVITE", "tel:+1-555-123-4567"), ("UDP", "127.0.0.2", 5060, "z9hG4bKtel1"),
        (None, "tel:5550001111;phone-context=+1555", "t1"), (None, "tel:+1-555-123-4567", None),
        "tel-1@127.0.0.2", (1, "INVITE"), 0, lists={"p-asserted-identity": ["<tel:+15550001111>"]},
    ),
    "sips_uri": Valid(
        ("INVITE", "sips:agent@localhost:5061"), ("TLS", "127.0.0.2", 5061, "z9hG4bKtls1"),
        (None, "sips:caller@localhost", "s1"), (None, "sips:agent@localhost", None), "sips-1@localhost",
        (1, "INVITE"), 0,
    ),
    "quoted_params": Valid(
        ("REGISTER", "sip:localhost"), ("TCP", "127.0.0.5", 5060, "z9hG4bKreg1"),
        (None, "sip:agent7@localhost", "r1"), (None, "sip:agent7@localhost", None), "reg-1@127.0.0.5",
        (3, "REGISTER"), 0, headers={"reason": 'Q.850;cause=16;text="Normal call clearing; \\"ok\\""'},
        lists={
            "contact": [
                '<sip:agent7@127.0.0.5:5060;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-'
                '000a95a0e128>";reg-id=1;expires=600'
            ]
        },
    ),
    "unknown_headers": _carrier(
        ("OPTIONS", "sip:127.0.0.1"), (1, "OPTIONS"), 0,
        headers={
            "x-tenant": "acme-42", "X-Empty": "", "newfangledheader": 'a;b,c;;d="e,f"',
            "P-Charging-Vector": "icid-value=1234bc9876e;icid-generated-at=127.0.0.2",
        },
    ),
    "mixed_case_names": Valid(
        ("BYE", "sip:agent@127.0.0.1"), ("UDP", "127.0.0.2", 5060, "z9hG4bKcase1"),
        (None, "sip:caller@127.0.0.2", "m1"), (None, "sip:agent@127.0.0.1", "m2"), "case-1@127.0.0.2",
        (4, "BYE"), 0, headers={"Max-Forwards": "70", "CONTENT-LENGTH": "0"},
    ),
    "response_100": Valid(
        (100, "Trying"), CARRIER_VIA, CARRIER_FROM, CARRIER_TO, CARRIER_CALL_ID, (1, "INVITE"), 0,
        headers={"via": "SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK74bf9;received=127.0.0.2"},
    ),
    "response_180": Valid(
        (180, "Ringing"), CARRIER_VIA, CARRIER_FROM, (None, "sip:+15551234567@127.0.0.1", "314159"),
        CARRIER_CALL_ID, (1, "INVITE"), 0, lists={"contact": ["<sip:127.0.0.1:5060>"]},
    ),
    "response_200_sdp": Valid(
        (200, "OK"), CARRIER_VIA, CARRIER_FROM, (None, "sip:+15551234567@127.0.0.1", "314159"),
        CARRIER_CALL_ID, (1, "INVITE"), SDP_LENGTH, lists={"record-route": ["<sip:127.0.0.3;lr>"]},
    ),
    "response_486": Valid(
        (486, "Busy Here"), CARRIER_VIA, CARRIER_FROM, (None, "sip:+15551234567@127.0.0.1", "8321234356"),
        CARRIER_CALL_ID, (1, "INVITE"), 0, headers={"reason": "Q.850;cause=17"},
    ),
    "torture_whitespace": Valid(
        ("INVITE", "sip:agent@127.0.0.1;unknownparam"), ("UDP", "127.0.0.2", None, "390skdjuw"),
        ('Quoted \\"', "sip:caller@127.0.0.2", "98asjd8"), (None, "sip:agent@127.0.0.1", "1918181833n"),
        "wsinv.ndaksdj@127.0.0.2", (9, "INVITE"), SDP_LENGTH,
        headers={
            "subject": "", "max-forwards": "0068",
            "newfangledheader": "newfangled value continued newfangled value",
            "unknownheaderwithunusualvalue": ";;,,;;,;",
            "route": "<sip:127.0.0.3;lr;unknownwith=value;unknown-no-value>",
        },
        lists={
            "via": [
                "SIP  /   2.0 /UDP 127.0.0.2;branch=390skdjuw",
                "SIP  / 2.0  / TCP     localhost   ; branch  =   z9hG4bK9ikj8",
                "SIP  /    2.0   / UDP  127.0.0.4   ; branch= z9hG4bK30239",
            ],
            "contact": [
                '"Quoted string \\"\\"" <sip:caller@127.0.0.2> ; newparam = newvalue ; secondparam ; q = 0.33'
            ],
        },
    ),
    "torture_wide_chars": Valid(
        (
            "!interesting-Method0123456789_*+`.%indeed'~",
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
            "@127.0.0.1",
        ),
        ("TCP", "localhost", None, "z9hG4bK-.!%66*_+`'~"),
        ("token1~` token2'+_ token3*%!.-", "sip:mundane@127.0.0.2", "_token~1'+`*%!-."),
        ('Quoted \\ back"slash', "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@127.0.0.1", None),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        (139122385, "!interesting-Method0123456789_*+`.%indeed'~"), 0,
        headers={"EXTENSIONHEADER-!.%*+_`'~": "\ufeff大停電", "max-forwards": "255"},
    ),
    "torture_escapes": Valid(
        ("INVITE", "sip:sips%3Auser%40localhost@127.0.0.1"), ("UDP", "127.0.0.2", 5060, "z9hG4bKkdjuw"),
        (None, "sip:I%20have%20spaces@127.0.0.2", "938"), (None, "sip:%75se%72@127.0.0.1", None),
        "esc01.239409asdfakjkn23onasd0-3234", (234234, "INVITE"), SDP_LENGTH,
        lists={"contact": ["<sip:cal%6Cer@127.0.0.2;%6C%72;n%61me=v%61lue%25%34%31>"]},
    ),
    "torture_escaped_null": Valid(
        ("REGISTER", "sip:localhost"), ("UDP", "127.0.0.5", 5060, "z9hG4bKkdjuw"),
        (None, "sip:null-%00-null@localhost", "839923423"), (None, "sip:null-%00-null@localhost", None),
        "escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd", (14398234, "REGISTER"), 0,
        lists={"contact": ["<sip:%00@127.0.0.5>", "<sip:%00%00@127.0.0.5>"]},
    ),
    "torture_percent_method": Valid(
        ("RE%47IST%45R", "sip:localhost"), ("TCP", "127.0.0.5", None, "z9hG4bK209%fzsnel234"),
        ("%Z%45", "sip:resource@localhost", "f232jadfj23"), ("%Z%45", "sip:resource@localhost", None),
        "esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf", (29344, "RE%47IST%45R"), 0,
        lists={"contact": ["<sip:alias1@127.0.0.5>", "<sip:alias2@127.0.0.5>", "<sip:alias3@127.0.0.5>"]},
    ),
    "torture_no_lws_display": Valid(
        ("OPTIONS", "sip:user@127.0.0.1"), ("UDP", "127.0.0.2", None, "z9hG4bKkdjuw"),
        ("caller", "sip:caller@127.0.0.2", "323"), (None, "sip:user@127.0.0.1", None),
        "lwsdisp.1234abcd@127.0.0.2", (60, "OPTIONS"), 0,
    ),
    "torture_long_values": Valid(
        ("INVITE", f"sip:{LONG_USER}@127.0.0.1:5060"),
        ("TCP", "127.0.0.2", 5060, "z9hG4bK" + "b" * 100 + "0"),
        ("Long Display " + "x" * 400, f"sip:{'f' * 300}@127.0.0.2", "tag" + "7" * 300),
        ("Long Display " + "x" * 400, f"sip:{LONG_USER}@127.0.0.1", None), "long-" + "c" * 500 + "@127.0.0.2",
        (1, "INVITE"), SDP_LENGTH, headers={"x-long-header": "v" * 2000},
        lists={
            "via": [f"SIP/2.0/TCP 127.0.0.{i + 2}:5060;branch=z9hG4bK{'b' * 100}{i}" for i in range(40)],
            "record-route": [f"<sip:127.0.0.{i + 2};lr>" for i in range(30)],
        },
    ),
    "torture_trailing_octets": Valid(
        ("REGISTER", "sip:localhost"), ("UDP", "127.0.0.5", 5060, "z9hG4bK73e8"),
        (None, "sip:j.user@localhost", "43251j3j324"), (None, "sip:j.user@localhost", None),
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412", (8, "REGISTER"), 0,
        lists={"contact": ["sip:j.user@127.0.0.5"]},
        dropped=len(load("valid", "torture_trailing_octets").split(b"\r\n\r\n", 1)[1]),
    ),
    "torture_semicolon_user": Valid(
        ("OPTIONS", "sip:user;par=u%40localhost@127.0.0.1"), ("UDP", "127.0.0.2", None, "z9hG4bKkdjuw"),
        (None, "sip:caller@127.0.0.2", "33242"), (None, "sip:j_user@127.0.0.1", None),
        "semiuri.0ha0isndaksdj", (8, "OPTIONS"), 0,
        lists={
            "accept": [
                "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
                "message/sip", "message/sipfrag",
            ]
        },
    ),
    "torture_transports": Valid(
        ("OPTIONS", "sip:user@127.0.0.1"), ("UDP", "t1.localhost", None, "z9hG4bKkdjuw"),
        (None, "sip:caller@127.0.0.2", "323"), (None, "sip:user@127.0.0.1", None),
        "transports.kijh4akdnaqjkwendsasfdj", (60, "OPTIONS"), 0,
        lists={
            "via": [
                "SIP/2.0/UDP t1.localhost;branch=z9hG4bKkdjuw",
                "SIP/2.0/SCTP t2.localhost;branch=z9hG4bKklasjdhf",
                "SIP/2.0/TLS t3.localhost;branch=z9hG4bK2980unddj",
                "SIP/2.0/UNKNOWN t4.localhost;branch=z9hG4bKasd0f3en",
                "SIP/2.0/TCP t5.localhost;branch=z9hG4bK0a9idfnee",
            ]
        },
    ),
    "torture_multipart_binary": Valid(
        ("MESSAGE", "sip:agent@127.0.0.1"), ("UDP", "127.0.0.2", 5060, "z9hG4bKmp17"),
        ("Queue Bot", "sip:bot@127.0.0.2", "2i3ja"), (None, "sip:agent@127.0.0.1", None),
        "mpart01.1234qwer@127.0.0.2", (1, "MESSAGE"), 474,
        headers={"content-type": "multipart/mixed;boundary=0b7e3c1d5a"},
    ),
    "torture_utf8_reason": Valid(
        (200, "= 2**3 * 5**2 но сто девяносто девять - простое"),
        ("UDP", "127.0.0.2", 5060, "z9hG4bK-39234-23523"), (None, "sip:caller@127.0.0.2", "2e3a0"),
        (None, "sip:user@127.0.0.1", "1299"), "unreason.1234ksdfak3j2erwedfsASdf", (35, "INVITE"), SDP_LENGTH,
    ),
    "torture_empty_reason": Valid(
        (100, ""), ("UDP", "127.0.0.2", 5060, "z9hG4bK-39234-23523"), (None, "sip:caller@127.0.0.2", "2e3a0"),
        (None, "sip:user@127.0.0.1", "1299"), "noreason.asndj203insdf99223ndf", (35, "INVITE"), 0,
    ),
    "torture_unknown_schemes_in_headers": Valid(
        ("OPTIONS", "sip:user@127.0.0.1"), ("UDP", "127.0.0.2", None, "z9hG4bKkdjuw"),
        (None, "http://localhost/callers/42", "3234233"), (None, "isbn:2983792873", None),
        "unksm2.daksdj@127.0.0.2", (234902, "OPTIONS"), 0,
    ),
    "torture_require": Valid(
        ("OPTIONS", "sip:user@127.0.0.1"), ("TLS", "127.0.0.2", None, "z9hG4bKkdjuw"),
        (None, "sip:caller@127.0.0.2", "242etr"), (None, "sip:j_user@127.0.0.1", None),
        "bext01.0ha0isndaksdj", (8, "OPTIONS"), 0,
        lists={
            "require": ["nothingSupportsThis", "nothingSupportsThisEither"],
            "proxy-require": ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"],
        },
    ),
    "torture_zero_max_forwards": Valid(
        ("OPTIONS", "sip:user@127.0.0.1"), ("UDP", "127.0.0.2", None, "z9hG4bKkdjuw2349i"),
        (None, "sip:caller@127.0.0.2", "3ghsd41"), (None, "sip:user@127.0.0.1", None),
        "zeromf.jfasdlfnm2o2l43r5u0asdfas", (39234321, "OPTIONS"), 0, headers={"max-forwards": "0"},
    ),
    "torture_broadcast_via": Valid(
        (200, "OK"), ("UDP", "127.0.0.2", None, "z9hG4bKjhja8781hjuaij65144"),
        (None, "sip:user@127.0.0.1", "1838"), (None, "sip:user@127.0.0.1", "2z3w0"),
        "bcast.0384840201234ksdfak3j2erwedfsASdf", (35, "OPTIONS"), 0,
    ),
    "torture_contact_params": Valid(
        ("REGISTER", "sip:localhost"), ("UDP", "127.0.0.5", 5060, "z9hG4bKkdjuw"),
        (None, "sip:agent@localhost", "2c1"), (None, "sip:agent@localhost", None), "cparam01.070ad8",
        (3, "REGISTER"), 0,
        lists={
            "contact": [
                "sip:+15551234567@127.0.0.5;unknownparam", "<sip:+15551234567@127.0.0.5;unknownparam>",
                "<sip:agent@127.0.0.5?Route=%3Csip:127.0.0.3%3E>",
            ]
        },
    ),
    "torture_unknown_types": Valid(
        ("INVITE", "sip:user@127.0.0.1"), ("UDP", "127.0.0.2", None, "z9hG4bKkdjuw"),
        (None, "sip:caller@127.0.0.2", "w0"), (None, "sip:user@127.0.0.1", None),
        "invut.0ha0isndaksdjadsfij34n23d", (235448, "INVITE"), 40,
        headers={
            "content-type": "application/unknownformat",
            "authorization": "NoOneKnowsThisScheme opaque-data=here",
        },
        lists={"accept": ["text/nobodyknowsthis"]},
    ),
}
# fmt: on

# case -> (status, reason, whether the partial message is attached)
INVALID: dict[str, tuple[int, str, bool]] = {
    "bad_request_line": (400, "Malformed request line", False),
    "bad_method": (400, "Malformed method in request line", False),
    "unknown_version": (505, "Version Not Supported ('SIP/3.0')", True),
    "unknown_version_response": (505, "Version Not Supported ('SIP/3.0')", False),
    "not_sip_version": (400, "Malformed SIP version in request line", False),
    "unknown_scheme": (416, "Unsupported URI Scheme 'xmpp'", True),
    "missing_via": (400, "Missing Via header", True),
    "missing_from": (400, "Missing From header", True),
    "missing_to": (400, "Missing To header", True),
    "missing_call_id": (400, "Missing Call-ID header", True),
    "missing_cseq": (400, "Missing CSeq header", True),
    "empty_via": (400, "Empty Via header", True),
    "cseq_method_mismatch": (400, "CSeq method does not match the request method", True),
    "cseq_not_a_number": (400, "Malformed CSeq header", True),
    "cseq_out_of_range": (400, "CSeq number out of range", True),
    "cseq_unicode_digits": (400, "Malformed CSeq header", True),
    "duplicate_call_id": (400, "Duplicate Call-ID header", True),
    "bad_call_id": (400, "Malformed Call-ID header", True),
    "content_length_exceeds_body": (400, "Content-Length exceeds the body", True),
    "content_length_negative": (400, "Malformed Content-Length header", True),
    "content_length_garbage": (400, "Malformed Content-Length header", True),
    "content_length_superscript": (400, "Malformed Content-Length header", True),
    "content_length_5000_digits": (400, "Content-Length exceeds the body", True),
    "bare_lf": (400, "Control character or bare CR/LF in the header block", False),
    "bare_cr": (400, "Control character or bare CR/LF in the header block", False),
    "lf_line_ends": (400, "Missing empty line after the headers", False),
    "no_empty_line": (400, "Missing empty line after the headers", False),
    "nul_byte": (400, "Control character or bare CR/LF in the header block", False),
    "non_utf8_header": (400, "Header block is not valid UTF-8", False),
    "unterminated_quote": (400, "Unterminated display name in From header", True),
    "bad_ipv6_via": (400, "Unterminated IPv6 reference in Via header", True),
    "bad_ipv6_request_uri": (400, "Malformed IPv6 reference '[::g]' in sip: URI", True),
    "ipv6_zone_request_uri": (400, "Malformed IPv6 reference '[fe80::1%eth0]' in sip: URI", True),
    "bad_port_via": (400, "Malformed port '70000' in Via header", True),
    "bad_port_request_uri": (400, "Malformed port '5o60' in sip: URI", True),
    "oversized": (513, f"Message Too Large ({len(load('invalid', 'oversized'))} > 65535 octets)", True),
    "max_forwards_garbage": (400, "Malformed Max-Forwards header", True),
    "max_forwards_too_large": (400, "Malformed Max-Forwards header", True),
    "missing_branch": (400, "Missing branch parameter in Via header", True),
    "malformed_header_line": (400, "Malformed header line 'ThisLineHasNoColon'", True),
    "malformed_header_name": (400, "Malformed header name 'Bad Name'", True),
    "bad_status_code": (400, "Malformed status line", False),
    "torture_extra_separators": (400, "Malformed parameter '' in Via header", True),
    "torture_content_length_larger": (400, "Content-Length exceeds the body", True),
    "torture_negative_content_length": (400, "Malformed Content-Length header", True),
    "torture_request_scalars": (400, "CSeq number out of range", True),
    "torture_response_scalars": (400, "CSeq number out of range", True),
    "torture_unterminated_display": (400, "Unterminated display name in To header", True),
    "torture_angle_request_uri": (400, "Malformed Request-URI", True),
    "torture_lws_request_uri": (400, "Malformed request line", False),
    "torture_multiple_sp": (400, "Malformed request line", False),
    "torture_trailing_sp": (400, "Malformed request line", False),
    "torture_request_uri_headers": (400, "Headers are not allowed in the Request-URI", True),
    "torture_spaces_in_addr_spec": (400, "Whitespace inside '<...>' in To header", True),
    "torture_non_token_display": (400, "Malformed display name in From header", True),
    "torture_unknown_version": (505, "Version Not Supported ('SIP/7.0')", True),
    "torture_cseq_mismatch": (400, "CSeq method does not match the request method", True),
    "torture_cseq_mismatch_unknown": (400, "CSeq method does not match the request method", True),
    "torture_big_code": (400, "Malformed status line", False),
    "torture_cookie_only_branch": (400, "Missing transaction identifier in Via branch", True),
    "torture_missing_headers": (400, "Missing From header", True),
    "torture_unknown_scheme": (416, "Unsupported URI Scheme 'nobodyknowsthisscheme'", True),
    "torture_atypical_scheme": (416, "Unsupported URI Scheme 'soap.beep'", True),
    "torture_multiple_values": (400, "Duplicate Max-Forwards header", True),
    "torture_multiple_content_length": (400, "Duplicate Content-Length header", True),
    "torture_rfc2543": (400, "Missing branch parameter in Via header", True),
}


def test_every_vector_file_is_tabled() -> None:
    assert names("valid") == sorted(VALID)
    assert names("invalid") == sorted(INVALID)


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_vector_fields(case: str) -> None:
    expect = VALID[case]
    data = load("valid", case)
    message = parse_message(data)
    if isinstance(expect.start[0], str):
        assert isinstance(message, Request)
        assert (message.method, message.uri) == expect.start
    else:
        assert isinstance(message, Response)
        assert (message.status, message.reason) == expect.start
    via = message.top_via
    assert (via.transport, via.host, via.port, via.branch) == expect.via
    assert (message.from_.display_name, message.from_.uri, message.from_.tag) == expect.from_
    assert (message.to.display_name, message.to.uri, message.to.tag) == expect.to
    assert message.call_id == expect.call_id
    assert message.cseq == expect.cseq
    assert len(message.body) == expect.body
    for name, value in expect.headers.items():
        assert message.headers.get(name) == value, name
    for name, values in expect.lists.items():
        assert message.headers.get_all(name) == values, name


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_vector_round_trips_to_identical_octets(case: str) -> None:
    data = load("valid", case)
    expect = VALID[case]
    assert parse_message(data).to_bytes() == data[: len(data) - expect.dropped]


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_vector_body_is_the_tail_of_the_datagram(case: str) -> None:
    data = load("valid", case)
    expect = VALID[case]
    message = parse_message(data)
    head_end = data.index(b"\r\n\r\n") + 4
    assert message.body == data[head_end : len(data) - expect.dropped]


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_vector_status_and_reason(case: str) -> None:
    status, reason, partial = INVALID[case]
    data = load("invalid", case)
    with pytest.raises(DecodeError) as info:
        parse_message(data)
    exc = info.value
    assert (exc.status, exc.reason) == (status, reason)
    assert str(exc) == reason
    if not partial:
        assert exc.partial is None
        return
    assert isinstance(exc.partial, Request | Response)
    # The partial message is the one on the wire: same start line, and its header fields are readable.
    assert exc.partial.start_line() == data.split(b"\r\n", 1)[0].decode()
    assert len(exc.partial.headers) > 0


@pytest.mark.parametrize(
    ("case", "call_id"),
    [
        ("unknown_version", CARRIER_CALL_ID),
        ("unknown_scheme", CARRIER_CALL_ID),
        ("oversized", CARRIER_CALL_ID),
        ("missing_branch", CARRIER_CALL_ID),
        ("torture_unknown_version", CARRIER_CALL_ID),
        ("torture_missing_headers", None),
    ],
)
def test_partial_message_addresses_the_error_response(case: str, call_id: str | None) -> None:
    with pytest.raises(DecodeError) as info:
        parse_message(load("invalid", case))
    partial = info.value.partial
    assert isinstance(partial, Request)
    assert partial.headers.get("call-id") == call_id
    assert partial.headers.get("via") is not None


def test_header_fault_keeps_the_fields_before_it() -> None:
    with pytest.raises(DecodeError) as info:
        parse_message(load("invalid", "malformed_header_line"))
    partial = info.value.partial
    assert partial is not None
    assert partial.headers.get("call-id") == CARRIER_CALL_ID
    assert partial.headers.get("content-length") is None  # after the fault


def test_decode_error_repr_names_status_and_reason() -> None:
    with pytest.raises(DecodeError) as info:
        parse_message(load("invalid", "unknown_scheme"))
    assert repr(info.value) == "DecodeError(416, \"Unsupported URI Scheme 'xmpp'\")"


def test_size_cap_is_inclusive() -> None:
    data = load("valid", "invite_sdp")
    assert parse_message(data, max_size=len(data)).call_id == CARRIER_CALL_ID
    with pytest.raises(MessageTooLarge) as info:
        parse_message(data, max_size=len(data) - 1)
    assert (info.value.status, info.value.size, info.value.limit) == (513, len(data), len(data) - 1)
    assert isinstance(info.value.partial, Request)


def test_oversized_garbage_has_no_partial() -> None:
    with pytest.raises(MessageTooLarge) as info:
        parse_message(b"\x00" * (DEFAULT_MAX_SIZE + 1))
    assert info.value.partial is None


def test_stream_transport_requires_content_length() -> None:
    data = load("valid", "no_content_length_udp")
    assert len(parse_message(data).body) == SDP_LENGTH
    with pytest.raises(DecodeError) as info:
        parse_message(data, stream=True)
    assert info.value.reason == "Missing Content-Length header on a stream transport"
    assert info.value.partial is not None


def test_stream_transport_accepts_exact_frame() -> None:
    data = load("valid", "invite_sdp")
    assert parse_message(data, stream=True).body == data[-SDP_LENGTH:]


def test_request_uri_is_parsed_and_kept_while_unchanged() -> None:
    message = parse_message(load("valid", "ipv6_refs"))
    assert isinstance(message, Request)
    uri = message.request_uri
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.host, uri.port, uri.transport) == ("agent", "[::1]", 5060, "udp")
    assert message.request_uri is uri
    message.uri = "tel:+15551234567"
    retargeted: object = message.request_uri
    assert retargeted == TelUri("+15551234567")


def test_request_uri_of_a_built_request_raises_decode_error() -> None:
    request = Request("OPTIONS", "sip:[::1", Headers())
    with pytest.raises(DecodeError, match="Unterminated IPv6 reference"):
        request.request_uri  # noqa: B018


def test_edited_message_keeps_untouched_lines_verbatim() -> None:
    message = parse_message(load("valid", "folded_headers"))
    message.headers.set("max-forwards", "69")
    message.headers.add("X-Queue", "sales")
    out = message.to_bytes()
    assert b"Subject: first line\r\n  second line\r\n\tthird line\r\n" in out
    assert b"Max-Forwards: 69\r\n" in out
    assert out.endswith(b"X-Queue: sales\r\n\r\n")
    again = parse_message(out)
    assert again.headers.get("max-forwards") == "69"
    assert again.to_bytes() == out


def test_pop_first_value_splits_a_comma_joined_via() -> None:
    message = parse_message(load("valid", "comma_joined"))
    assert message.headers.pop_first_value("via") == "SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bKproxy1"
    message.invalidate()
    assert message.top_via.branch == "z9hG4bKuac1"
    assert len(message.headers.get_all("via")) == 2


def test_leading_zeros_are_numbers_not_octal() -> None:
    data = load("valid", "invite_sdp").replace(b"Content-Length: 220", b"Content-Length: 000220")
    assert len(parse_message(data).body) == SDP_LENGTH


def test_short_content_length_truncates_a_datagram() -> None:
    data = load("valid", "invite_sdp").replace(b"Content-Length: 220", b"Content-Length: 4")
    assert parse_message(data).body == b"v=0\r"


def test_lowercase_version_is_accepted_and_kept() -> None:
    data = load("valid", "options_no_body").replace(b"SIP/2.0\r\n", b"sip/2.0\r\n", 1)
    message = parse_message(data)
    assert message.version == "sip/2.0"
    assert message.to_bytes() == data
