"""Writes the SIP wire vectors of this folder: ``valid/<case>.sip`` and ``invalid/<case>.sip``.

The files are the reference; this script is how they were made, so that their octets (CRLF line ends, NUL,
non-UTF-8 octets, exact Content-Length values) are exact and a case can be changed and rewritten:

    .venv/bin/python tests/vectors/sip/generate.py

Cases named ``torture_*`` are the appliance's own equivalents of the RFC 4475 torture tests that apply to
it (the section is cited per case), addressed to loopback hosts. The expected values of every case are
tabled in ``tests/unit/test_sip_message.py``.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent

SDP = (
    b"v=0\r\n"
    b"o=- 3724394400 3724394400 IN IP4 127.0.0.2\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.2\r\n"
    b"t=0 0\r\n"
    b"m=audio 20000 RTP/AVP 8 0 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=sendrecv\r\n"
)
SDP6 = SDP.replace(b"IN IP4 127.0.0.2", b"IN IP6 ::1")


def message(head: str, body: bytes = b"") -> bytes:
    """Lines joined with CRLF, the empty line, then the body; ``{len}`` becomes the body's length."""
    lines = head.strip("\n").split("\n")
    text = "\r\n".join(lines).replace("{len}", str(len(body)))
    return text.encode("utf-8") + b"\r\n\r\n" + body


def request(
    start: str, extra: str = "", body: bytes = b"", *, method: str = "INVITE", length: bool = True
) -> bytes:
    """A request with the usual mandatory headers, ``extra`` header lines, and a Content-Length."""
    head = f"""{start}
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK74bf9
Max-Forwards: 70
From: "Carrier" <sip:+15550001111@127.0.0.2>;tag=9fxced76sl
To: <sip:+15551234567@127.0.0.1>
Call-ID: 3848276298220188511@127.0.0.2
CSeq: 1 {method}
{extra}"""
    if length:
        head += "\nContent-Length: {len}"
    return message(head.replace("\n\n", "\n"), body)


MULTIPART_SDP_ISUP = (
    b"--unique-boundary-1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"\r\n" + SDP + b"\r\n"
    b"--unique-boundary-1\r\n"
    b"Content-Type: application/ISUP;version=itu-t92+\r\n"
    b"Content-Disposition: signal;handling=optional\r\n"
    b"\r\n"
    b"\x01\x00\x49\x00\x00\x03\x02\x00\x07\x04\x10\x00\x33\x63\x21\x43\x00\x00\x03\x06\x0d\x03\x80\x90\xa2\x0a\x00\r\n"
    b"--unique-boundary-1--\r\n"
)

MULTIPART_BINARY = (
    b"--0b7e3c1d5a\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"Callback requested for queue 4\r\n"
    b"--0b7e3c1d5a\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n" + bytes(range(256)) + b"\r\n--0b7e3c1d5a--\r\n"
)


def long_values() -> bytes:
    """RFC 4475 §3.1.1.7: long values everywhere; many Via and Record-Route fields."""
    name = "Long Display " + "x" * 400
    tag = "tag" + "7" * 300
    call_id = "long-" + "c" * 500 + "@127.0.0.2"
    vias = "\n".join(
        f"Via: SIP/2.0/TCP 127.0.0.{i % 250 + 2}:5060;branch=z9hG4bK{'b' * 100}{i}" for i in range(40)
    )
    routes = ", ".join(f"<sip:127.0.0.{i % 250 + 2};lr>" for i in range(30))
    head = f"""INVITE sip:{"u" * 300}@127.0.0.1:5060 SIP/2.0
{vias}
Max-Forwards: 70
From: "{name}" <sip:{"f" * 300}@127.0.0.2>;tag={tag}
To: "{name}" <sip:{"u" * 300}@127.0.0.1>
Call-ID: {call_id}
CSeq: 1 INVITE
Record-Route: {routes}
Contact: <sip:{"c" * 300}@127.0.0.2:5060>
X-Long-Header: {"v" * 2000}
Content-Type: application/sdp
Content-Length: {{len}}"""
    return message(head, SDP)


VALID: dict[str, bytes] = {
    "invite_sdp": request(
        "INVITE sip:+15551234567@127.0.0.1:5060;user=phone SIP/2.0",
        "Contact: <sip:+15550001111@127.0.0.2:5060>\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS\n"
        "Content-Type: application/sdp",
        SDP,
    ),
    "options_no_body": request("OPTIONS sip:127.0.0.1 SIP/2.0", "Accept: application/sdp", method="OPTIONS"),
    "compact_forms": message(
        """INVITE sip:agent@127.0.0.1 SIP/2.0
v: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKcompact1
f: Alice <sip:alice@127.0.0.2>;tag=a1
t: <sip:agent@127.0.0.1>
i: compact-1@127.0.0.2
CSeq: 7 INVITE
Max-Forwards: 70
m: <sip:alice@127.0.0.2:5060>
k: timer, 100rel
s: compact header names
c: application/sdp
l: {len}""",
        SDP,
    ),
    "folded_headers": message(
        """INVITE sip:agent@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.2:5060
 ;branch=z9hG4bKfold1
Max-Forwards: 70
From: "Folded"
\t<sip:caller@127.0.0.2>;tag=f1
To: <sip:agent@127.0.0.1>
Call-ID: folded-1@127.0.0.2
CSeq: 2
   INVITE
Subject: first line
  second line
\tthird line
Content-Length: 0"""
    ),
    "comma_joined": message(
        """INVITE sip:agent@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bKproxy1, SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKuac1
Via: SIP/2.0/TCP 127.0.0.4:5060;branch=z9hG4bKedge1
Max-Forwards: 68
From: <sip:caller@127.0.0.2>;tag=c1
To: <sip:agent@127.0.0.1>
Call-ID: comma-1@127.0.0.2
CSeq: 1 INVITE
Route: <sip:127.0.0.3;lr>, <sip:127.0.0.4;lr>,<sip:127.0.0.1;lr>
Record-Route: <sip:127.0.0.3;lr>
Contact: <sip:caller@127.0.0.2>;q=0.7, "Desk, Second" <sip:desk@127.0.0.2>;q=0.3
Allow: INVITE,ACK , BYE
Content-Length: 0"""
    ),
    "quoted_display": message(
        """MESSAGE sip:agent@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKquote1
Max-Forwards: 70
From: "Smith, John \\"JJ\\" \\\\ Jr." <sip:jj@127.0.0.2>;tag=q1
To: "Queue \\"Sales\\", EMEA" <sip:agent@127.0.0.1>
Call-ID: quoted-1@127.0.0.2
CSeq: 1 MESSAGE
Contact: "A, B" <sip:ab@127.0.0.2>, "C \\"D\\"" <sip:cd@127.0.0.2>
Content-Type: text/plain;charset=utf-8
Content-Length: {len}""",
        "Grüße, 5 calls waiting".encode(),
    ),
    "ipv6_refs": message(
        """INVITE sip:agent@[::1]:5060;transport=udp SIP/2.0
Via: SIP/2.0/UDP [::1]:5070;branch=z9hG4bKv6a;received=::1;rport=5070
Max-Forwards: 70
From: <sip:caller@[::1]:5070>;tag=v6
To: <sip:agent@[::1]>
Call-ID: v6-1@[::1]
CSeq: 1 INVITE
Contact: <sip:caller@[::1]:5070>, <sip:caller@[::ffff:127.0.0.2]>
Content-Type: application/sdp
Content-Length: {len}""",
        SDP6,
    ),
    "no_content_length_udp": request(
        "INVITE sip:agent@127.0.0.1 SIP/2.0", "Content-Type: application/sdp", SDP, length=False
    ),
    "multipart_mixed": request(
        "INVITE sip:+15551234567@127.0.0.1;user=phone SIP/2.0",
        "MIME-Version: 1.0\nContent-Type: multipart/mixed;boundary=unique-boundary-1",
        MULTIPART_SDP_ISUP,
    ),
    "tel_uri": message(
        """INVITE tel:+1-555-123-4567 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKtel1
Max-Forwards: 70
From: <tel:5550001111;phone-context=+1555>;tag=t1
To: <tel:+1-555-123-4567>
Call-ID: tel-1@127.0.0.2
CSeq: 1 INVITE
P-Asserted-Identity: <tel:+15550001111>
Content-Length: 0"""
    ),
    "sips_uri": message(
        """INVITE sips:agent@localhost:5061 SIP/2.0
Via: SIP/2.0/TLS 127.0.0.2:5061;branch=z9hG4bKtls1
Max-Forwards: 70
From: <sips:caller@localhost>;tag=s1
To: <sips:agent@localhost>
Call-ID: sips-1@localhost
CSeq: 1 INVITE
Contact: <sips:caller@127.0.0.2:5061;transport=tls>
Content-Length: 0"""
    ),
    "quoted_params": message(
        """REGISTER sip:localhost SIP/2.0
Via: SIP/2.0/TCP 127.0.0.5:5060;branch=z9hG4bKreg1;alias
Max-Forwards: 70
From: <sip:agent7@localhost>;tag=r1
To: <sip:agent7@localhost>
Call-ID: reg-1@127.0.0.5
CSeq: 3 REGISTER
Contact: <sip:agent7@127.0.0.5:5060;transport=tcp>;\
+sip.instance="<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";reg-id=1;expires=600
Authorization: Digest username="agent7", realm="localhost", nonce="a1b2;c3,d4", \
uri="sip:localhost", response="6629fae49393a05397450978507c4ef1"
Reason: Q.850;cause=16;text="Normal call clearing; \\"ok\\""
Content-Length: 0"""
    ),
    "unknown_headers": request(
        "OPTIONS sip:127.0.0.1 SIP/2.0",
        "X-Tenant: acme-42\nX-Empty:\nP-Charging-Vector: icid-value=1234bc9876e;icid-generated-at=127.0.0.2\n"
        'NewFangledHeader: a;b,c;;d="e,f"',
        method="OPTIONS",
    ),
    "mixed_case_names": message(
        """BYE sip:agent@127.0.0.1 SIP/2.0
vIa: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKcase1
MAX-FORWARDS: 70
fRoM: <sip:caller@127.0.0.2>;tag=m1
TO: <sip:agent@127.0.0.1>;tag=m2
call-id: case-1@127.0.0.2
cSeQ: 4 BYE
CONTENT-length: 0"""
    ),
    "response_100": message(
        """SIP/2.0 100 Trying
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK74bf9;received=127.0.0.2
From: "Carrier" <sip:+15550001111@127.0.0.2>;tag=9fxced76sl
To: <sip:+15551234567@127.0.0.1>
Call-ID: 3848276298220188511@127.0.0.2
CSeq: 1 INVITE
Content-Length: 0"""
    ),
    "response_180": message(
        """SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK74bf9;received=127.0.0.2
From: "Carrier" <sip:+15550001111@127.0.0.2>;tag=9fxced76sl
To: <sip:+15551234567@127.0.0.1>;tag=314159
Call-ID: 3848276298220188511@127.0.0.2
CSeq: 1 INVITE
Contact: <sip:127.0.0.1:5060>
Content-Length: 0"""
    ),
    "response_200_sdp": message(
        """SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK74bf9;received=127.0.0.2
Record-Route: <sip:127.0.0.3;lr>
From: "Carrier" <sip:+15550001111@127.0.0.2>;tag=9fxced76sl
To: <sip:+15551234567@127.0.0.1>;tag=314159
Call-ID: 3848276298220188511@127.0.0.2
CSeq: 1 INVITE
Contact: <sip:127.0.0.1:5060>
Content-Type: application/sdp
Content-Length: {len}""",
        SDP,
    ),
    "response_486": message(
        """SIP/2.0 486 Busy Here
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK74bf9
From: "Carrier" <sip:+15550001111@127.0.0.2>;tag=9fxced76sl
To: <sip:+15551234567@127.0.0.1>;tag=8321234356
Call-ID: 3848276298220188511@127.0.0.2
CSeq: 1 INVITE
Reason: Q.850;cause=17
Content-Length: 0"""
    ),
    # RFC 4475 §3.1.1.1: whitespace, folding, compact forms, case and empty values all at once.
    "torture_whitespace": message(
        """INVITE sip:agent@127.0.0.1;unknownparam SIP/2.0
TO :
 sip:agent@127.0.0.1 ;   tag    = 1918181833n
from   : "Quoted \\\\\\""       <sip:caller@127.0.0.2>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@127.0.0.2
Content-Length   : {len}
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    127.0.0.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:127.0.0.3;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     localhost   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  127.0.0.4   ; branch=
 z9hG4bK30239
m:"Quoted string \\"\\"" <sip:caller@127.0.0.2> ; newparam =
      newvalue ;
  secondparam ; q = 0.33""",
        SDP,
    ),
    # RFC 4475 §3.1.1.2: every token character in method, tags, parameters and header names.
    "torture_wide_chars": message(
        """!interesting-Method0123456789_*+`.%indeed'~ \
sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@127.0.0.1 \
SIP/2.0
Via: SIP/2.0/TCP localhost;branch=z9hG4bK-.!%66*_+`'~
To: "Quoted \\\\ back\\"slash" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@127.0.0.1>
From: token1~` token2'+_ token3*%!.- <sip:mundane@127.0.0.2>;\
fromParam''~+*_!.-%="работающий";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~: \ufeff大停電
Content-Length: 0"""
    ),
    # RFC 4475 §3.1.1.3: valid %-escapes in the Request-URI, To, From and Contact.
    "torture_escapes": message(
        """INVITE sip:sips%3Auser%40localhost@127.0.0.1 SIP/2.0
To: sip:%75se%72@127.0.0.1
From: <sip:I%20have%20spaces@127.0.0.2>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@127.0.0.2;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: {len}""",
        SDP,
    ),
    # RFC 4475 §3.1.1.4: an escaped NUL (%00) in URIs is just three characters to the parser.
    "torture_escaped_null": message(
        """REGISTER sip:localhost SIP/2.0
To: sip:null-%00-null@localhost
From: sip:null-%00-null@localhost;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bKkdjuw
Contact: <sip:%00@127.0.0.5>
Contact: <sip:%00%00@127.0.0.5>
L:0"""
    ),
    # RFC 4475 §3.1.1.5: '%' that is not an escape, in a method and a display name.
    "torture_percent_method": message(
        """RE%47IST%45R sip:localhost SIP/2.0
To: "%Z%45" <sip:resource@localhost>
From: "%Z%45" <sip:resource@localhost>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP 127.0.0.5;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@127.0.0.5>
Contact: <sip:alias2@127.0.0.5>
Contact: <sip:alias3@127.0.0.5>
l: 0"""
    ),
    # RFC 4475 §3.1.1.6: no whitespace between a token display name and '<'.
    "torture_no_lws_display": message(
        """OPTIONS sip:user@127.0.0.1 SIP/2.0
To: sip:user@127.0.0.1
From: caller<sip:caller@127.0.0.2>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@127.0.0.2
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKkdjuw
l: 0"""
    ),
    "torture_long_values": long_values(),
    # RFC 4475 §3.1.1.8: octets past Content-Length in a datagram (here a second request) are discarded.
    "torture_trailing_octets": message(
        """REGISTER sip:localhost SIP/2.0
To: sip:j.user@localhost
From: sip:j.user@localhost;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@127.0.0.5
l: 0
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bK73e8""",
    )
    + request("INVITE sip:joe@localhost SIP/2.0", "Content-Type: application/sdp", SDP),
    # RFC 4475 §3.1.1.9: a semicolon-separated parameter in the user part of the Request-URI.
    "torture_semicolon_user": message(
        """OPTIONS sip:user;par=u%40localhost@127.0.0.1 SIP/2.0
To: sip:j_user@127.0.0.1
From: sip:caller@127.0.0.2;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKkdjuw
l: 0"""
    ),
    # RFC 4475 §3.1.1.10: transports the appliance does not speak, in Via fields it only relays.
    "torture_transports": message(
        """OPTIONS sip:user@127.0.0.1 SIP/2.0
To: sip:user@127.0.0.1
From: <sip:caller@127.0.0.2>;tag=323
Max-Forwards: 70
Call-ID: transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.localhost;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.localhost;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.localhost;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.localhost;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.localhost;branch=z9hG4bK0a9idfnee
l: 0"""
    ),
    # RFC 4475 §3.1.1.11: a multipart body whose second part is arbitrary binary.
    "torture_multipart_binary": message(
        """MESSAGE sip:agent@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKmp17
Max-Forwards: 70
From: "Queue Bot" <sip:bot@127.0.0.2>;tag=2i3ja
To: <sip:agent@127.0.0.1>
Call-ID: mpart01.1234qwer@127.0.0.2
CSeq: 1 MESSAGE
MIME-Version: 1.0
Content-Type: multipart/mixed;boundary=0b7e3c1d5a
Content-Length: {len}""",
        MULTIPART_BINARY,
    ),
    # RFC 4475 §3.1.1.12: a reason phrase in UTF-8 with unusual characters.
    "torture_utf8_reason": message(
        """SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-39234-23523
To: <sip:user@127.0.0.1>;tag=1299
From: <sip:caller@127.0.0.2>;tag=2e3a0
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
Contact: <sip:user@127.0.0.1:5060>
Content-Type: application/sdp
l: {len}""",
        SDP,
    ),
    # RFC 4475 §3.1.1.13: an empty reason phrase (the SP before it is still there).
    "torture_empty_reason": message(
        """SIP/2.0 100 \nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-39234-23523
To: <sip:user@127.0.0.1>;tag=1299
From: <sip:caller@127.0.0.2>;tag=2e3a0
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
Content-Length: 0"""
    ),
    # RFC 4475 §3.1.4.4: URIs of unknown schemes in To and From are opaque to the parser.
    "torture_unknown_schemes_in_headers": message(
        """OPTIONS sip:user@127.0.0.1 SIP/2.0
To: isbn:2983792873
From: <http://localhost/callers/42>;tag=3234233
Call-ID: unksm2.daksdj@127.0.0.2
CSeq: 234902 OPTIONS
Max-Forwards: 70
Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKkdjuw
l: 0"""
    ),
    # RFC 4475 §3.1.4.5: Require and Proxy-Require with unknown option tags parse; 420 is a later decision.
    "torture_require": message(
        """OPTIONS sip:user@127.0.0.1 SIP/2.0
To: sip:j_user@127.0.0.1
From: sip:caller@127.0.0.2;tag=242etr
Max-Forwards: 6
Call-ID: bext01.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/TLS 127.0.0.2;branch=z9hG4bKkdjuw
l: 0"""
    ),
    # RFC 4475 §3.1.4.11: Max-Forwards of zero is well formed (483 is a later decision).
    "torture_zero_max_forwards": message(
        """OPTIONS sip:user@127.0.0.1 SIP/2.0
To: sip:user@127.0.0.1
From: sip:caller@127.0.0.2;tag=3ghsd41
Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas
CSeq: 39234321 OPTIONS
Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKkdjuw2349i
Max-Forwards: 0
Content-Length: 0"""
    ),
    # RFC 4475 §3.1.4.10: a response whose Via names a broadcast address; the parser does not judge.
    "torture_broadcast_via": message(
        """SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKjhja8781hjuaij65144;received=255.255.255.255
From: <sip:user@127.0.0.1>;tag=1838
To: <sip:user@127.0.0.1>;tag=2z3w0
Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf
CSeq: 35 OPTIONS
Content-Length: 0"""
    ),
    # RFC 4475 §3.1.4.12-14: Contact parameters outside and inside '<>', and an escaped URI header.
    "torture_contact_params": message(
        """REGISTER sip:localhost SIP/2.0
Via: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:agent@localhost;tag=2c1
To: sip:agent@localhost
Call-ID: cparam01.070ad8
CSeq: 3 REGISTER
Contact: sip:+15551234567@127.0.0.5;unknownparam
Contact: <sip:+15551234567@127.0.0.5;unknownparam>
Contact: <sip:agent@127.0.0.5?Route=%3Csip:127.0.0.3%3E>
l: 0"""
    ),
    # RFC 4475 §3.1.4.6-7, 15: unknown Content-Type, Authorization scheme and Accept values parse.
    "torture_unknown_types": message(
        """INVITE sip:user@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: <sip:caller@127.0.0.2>;tag=w0
To: <sip:user@127.0.0.1>
Call-ID: invut.0ha0isndaksdjadsfij34n23d
CSeq: 235448 INVITE
Authorization: NoOneKnowsThisScheme opaque-data=here
Accept: text/nobodyknowsthis
Content-Type: application/unknownformat
Content-Length: {len}""",
        b'<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n',
    ),
}


def oversized() -> bytes:
    return request(
        "MESSAGE sip:agent@127.0.0.1 SIP/2.0", "Content-Type: text/plain", b"x" * 70000, method="MESSAGE"
    )


INVALID: dict[str, bytes] = {
    "bad_request_line": request("INVITE sip:agent@127.0.0.1", method="INVITE"),
    "bad_method": request("INV@TE sip:agent@127.0.0.1 SIP/2.0"),
    "unknown_version": request("OPTIONS sip:agent@127.0.0.1 SIP/3.0", method="OPTIONS"),
    "unknown_version_response": message(
        """SIP/3.0 200 OK
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK74bf9
From: <sip:a@127.0.0.2>;tag=1
To: <sip:b@127.0.0.1>;tag=2
Call-ID: v3@127.0.0.2
CSeq: 1 INVITE
Content-Length: 0"""
    ),
    "not_sip_version": request("OPTIONS sip:agent@127.0.0.1 HTTP/1.1", method="OPTIONS"),
    "unknown_scheme": request("OPTIONS xmpp:agent@127.0.0.1 SIP/2.0", method="OPTIONS"),
    "missing_via": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK74bf9\r\n", b""
    ),
    "missing_from": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b'From: "Carrier" <sip:+15550001111@127.0.0.2>;tag=9fxced76sl\r\n', b""
    ),
    "missing_to": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"To: <sip:+15551234567@127.0.0.1>\r\n", b""
    ),
    "missing_call_id": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Call-ID: 3848276298220188511@127.0.0.2\r\n", b""
    ),
    "missing_cseq": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"CSeq: 1 OPTIONS\r\n", b""
    ),
    "empty_via": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK74bf9", b"Via: "
    ),
    "cseq_method_mismatch": request("BYE sip:agent@127.0.0.1 SIP/2.0", method="INVITE"),
    "cseq_not_a_number": request("INVITE sip:agent@127.0.0.1 SIP/2.0", method="INVITE").replace(
        b"CSeq: 1 INVITE", b"CSeq: one INVITE"
    ),
    "cseq_out_of_range": request("INVITE sip:agent@127.0.0.1 SIP/2.0", method="INVITE").replace(
        b"CSeq: 1 INVITE", b"CSeq: 2147483648 INVITE"
    ),
    "cseq_unicode_digits": request("INVITE sip:agent@127.0.0.1 SIP/2.0").replace(
        b"CSeq: 1 INVITE", "CSeq: \u0661 INVITE".encode()
    ),
    "duplicate_call_id": request(
        "OPTIONS sip:agent@127.0.0.1 SIP/2.0", "Call-ID: second@127.0.0.2", method="OPTIONS"
    ),
    "bad_call_id": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Call-ID: 3848276298220188511@127.0.0.2", b"Call-ID: two words"
    ),
    # Content-Length counts the whole SDP; the datagram lost its last 10 octets.
    "content_length_exceeds_body": request("INVITE sip:agent@127.0.0.1 SIP/2.0", body=SDP)[:-10],
    "content_length_negative": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Content-Length: 0", b"Content-Length: -5"
    ),
    "content_length_garbage": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Content-Length: 0", b"Content-Length: 12abc"
    ),
    "content_length_superscript": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Content-Length: 0", "Content-Length: ²".encode()
    ),
    "content_length_5000_digits": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Content-Length: 0", b"Content-Length: " + b"9" * 5000
    ),
    "bare_lf": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n"
    ),
    "bare_cr": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r"
    ),
    "lf_line_ends": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(b"\r\n", b"\n"),
    "nul_byte": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"tag=9fxced76sl", b"tag=9fxc\x00ed76sl"
    ),
    "non_utf8_header": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b'"Carrier"', b'"Carri\xe9r"'
    ),
    "unterminated_quote": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b'"Carrier" <sip', b'"Carrier <sip'
    ),
    "bad_ipv6_via": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"127.0.0.2:5060;branch", b"[::1:5060;branch"
    ),
    "bad_ipv6_request_uri": request("OPTIONS sip:agent@[::g] SIP/2.0", method="OPTIONS"),
    "ipv6_zone_request_uri": request("OPTIONS sip:agent@[fe80::1%eth0] SIP/2.0", method="OPTIONS"),
    "bad_port_via": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"127.0.0.2:5060;branch", b"127.0.0.2:70000;branch"
    ),
    "bad_port_request_uri": request("OPTIONS sip:agent@127.0.0.1:5o60 SIP/2.0", method="OPTIONS"),
    "oversized": oversized(),
    "max_forwards_garbage": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Max-Forwards: 70", b"Max-Forwards: seventy"
    ),
    "max_forwards_too_large": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"Max-Forwards: 70", b"Max-Forwards: 256"
    ),
    "missing_branch": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b";branch=z9hG4bK74bf9", b""
    ),
    "malformed_header_line": request(
        "OPTIONS sip:agent@127.0.0.1 SIP/2.0", "ThisLineHasNoColon", method="OPTIONS"
    ),
    "malformed_header_name": request(
        "OPTIONS sip:agent@127.0.0.1 SIP/2.0", "Bad Name: value", method="OPTIONS"
    ),
    "no_empty_line": request("OPTIONS sip:agent@127.0.0.1 SIP/2.0", method="OPTIONS")[:-2],
    "bad_status_code": message(
        """SIP/2.0 20 OK
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK74bf9
From: <sip:a@127.0.0.2>;tag=1
To: <sip:b@127.0.0.1>;tag=2
Call-ID: sc@127.0.0.2
CSeq: 1 INVITE
Content-Length: 0"""
    ),
    # RFC 4475 §3.1.2.1: empty header parameters and list items.
    "torture_extra_separators": message(
        """INVITE sip:user@127.0.0.1 SIP/2.0
To: sip:j.user@127.0.0.1
From: sip:caller@127.0.0.2;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 127.0.0.2;;,;,,
Contact: "Joe" <sip:joe@127.0.0.2>;;;;
Content-Length: {len}
Content-Type: application/sdp""",
        SDP,
    ),
    # RFC 4475 §3.1.2.2: Content-Length far larger than the datagram.
    "torture_content_length_larger": message(
        """INVITE sip:user@127.0.0.1 SIP/2.0
Max-Forwards: 80
To: sip:j.user@127.0.0.1
From: sip:caller@127.0.0.2;tag=93942939o2
Contact: <sip:caller@127.0.0.2>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 9999""",
        SDP,
    ),
    # RFC 4475 §3.1.2.3: a negative Content-Length.
    "torture_negative_content_length": message(
        """INVITE sip:user@127.0.0.1 SIP/2.0
Max-Forwards: 254
To: sip:j.user@127.0.0.1
From: sip:caller@127.0.0.2;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKkdjuw
Contact: <sip:caller@127.0.0.2>
Content-Type: application/sdp
Content-Length: -999""",
        SDP,
    ),
    # RFC 4475 §3.1.2.4: request scalars far out of range.
    "torture_request_scalars": message(
        """REGISTER sip:localhost SIP/2.0
Via: SIP/2.0/TCP 127.0.0.5;branch=z9hG4bKkdjuw
Max-Forwards: 300
From: sip:user@localhost;tag=932comp
To: sip:user@localhost
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
CSeq: 36893488147419103232 REGISTER
Contact: <sip:user@127.0.0.5>;expires=280297596632815
Expires: 10000000000000000000000000000000000000000000000000
l: 0"""
    ),
    # RFC 4475 §3.1.2.5: response scalars far out of range.
    "torture_response_scalars": message(
        """SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP 127.0.0.5;branch=z9hG4bKzzxdiwo34sw;received=127.0.0.5
To: <sip:user@127.0.0.1>
From: <sip:other@127.0.0.2>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0"""
    ),
    # RFC 4475 §3.1.2.6: unterminated quoted display name.
    "torture_unterminated_display": message(
        """INVITE sip:user@127.0.0.1 SIP/2.0
To: "Mr. J. User <sip:j.user@127.0.0.1>
From: sip:caller@127.0.0.2;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@127.0.0.2:5060>
CSeq: 8 INVITE
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKkdjuw
Content-Type: application/sdp
Content-Length: {len}""",
        SDP,
    ),
    # RFC 4475 §3.1.2.7: the Request-URI enclosed in '<>'.
    "torture_angle_request_uri": request("INVITE <sip:user@127.0.0.1> SIP/2.0"),
    # RFC 4475 §3.1.2.8: whitespace inside the Request-URI.
    "torture_lws_request_uri": request("INVITE sip:user@127.0.0.1; lr SIP/2.0"),
    # RFC 4475 §3.1.2.9: several SP between Request-Line elements.
    "torture_multiple_sp": request("INVITE  sip:user@127.0.0.1  SIP/2.0"),
    # RFC 4475 §3.1.2.10: SP after the SIP version.
    "torture_trailing_sp": request("OPTIONS sip:user@127.0.0.1 SIP/2.0  ", method="OPTIONS"),
    # RFC 4475 §3.1.2.11: an escaped header in the Request-URI.
    "torture_request_uri_headers": request("INVITE sip:user@127.0.0.1?Route=%3Csip:127.0.0.3%3E SIP/2.0"),
    # RFC 4475 §3.1.2.14: whitespace inside '<>'.
    "torture_spaces_in_addr_spec": request("OPTIONS sip:user@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"To: <sip:+15551234567@127.0.0.1>", b'To: "Watson, Thomas" < sip:t.watson@127.0.0.1 >'
    ),
    # RFC 4475 §3.1.2.15: a display name with non-token characters and no quotes.
    "torture_non_token_display": request("OPTIONS sip:user@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b'From: "Carrier" <sip', b"From: Bell, Alexander <sip"
    ),
    # RFC 4475 §3.1.2.16: an unknown protocol version.
    "torture_unknown_version": request("OPTIONS sip:t.watson@127.0.0.1 SIP/7.0", method="OPTIONS"),
    # RFC 4475 §3.1.2.17-18: the CSeq method does not match the request method.
    "torture_cseq_mismatch": request("OPTIONS sip:user@127.0.0.1 SIP/2.0", method="INVITE"),
    "torture_cseq_mismatch_unknown": request("NEWMETHOD sip:user@127.0.0.1 SIP/2.0", method="INVITE"),
    # RFC 4475 §3.1.2.19: a ten-digit response code.
    "torture_big_code": message(
        """SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bK342392
From: <sip:user@127.0.0.1>;tag=1390203
To: <sip:user@127.0.0.1>;tag=3034
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
Content-Length: 0"""
    ),
    # RFC 4475 §3.1.3.1: the magic cookie alone as branch.
    "torture_cookie_only_branch": request("OPTIONS sip:user@127.0.0.1 SIP/2.0", method="OPTIONS").replace(
        b"branch=z9hG4bK74bf9", b"branch=z9hG4bK"
    ),
    # RFC 4475 §3.1.4.1: Call-ID, From and To missing.
    "torture_missing_headers": message(
        """REGISTER sip:localhost SIP/2.0
Via: SIP/2.0/UDP 127.0.0.5;branch=z9hG4bKkdjuw
CSeq: 193942 REGISTER
Max-Forwards: 70
l: 0"""
    ),
    # RFC 4475 §3.1.4.2-3: Request-URIs of unknown and atypical schemes.
    "torture_unknown_scheme": request(
        "OPTIONS nobodyknowsthisscheme:totallyopaquecontent SIP/2.0", method="OPTIONS"
    ),
    "torture_atypical_scheme": request("OPTIONS soap.beep://127.0.0.1:3002 SIP/2.0", method="OPTIONS"),
    # RFC 4475 §3.1.4.8: several values in single-value fields.
    "torture_multiple_values": message(
        """INVITE sip:user@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 122 INVITE
Call-ID: multi01.98asdh@127.0.0.2
To: sip:user@127.0.0.1
Call-ID: multi01.98asdh@127.0.0.3
From: sip:caller@127.0.0.2;tag=3413415
To: sip:other@127.0.0.1
Max-Forwards: 5
Content-Length: 0"""
    ),
    # RFC 4475 §3.1.4.9: two Content-Length fields.
    "torture_multiple_content_length": request(
        "OPTIONS sip:user@127.0.0.1 SIP/2.0", "l: 4", method="OPTIONS"
    ),
    # RFC 4475 §3.2.1: RFC 2543 syntax: no branch, so no transaction to match (a deliberate limit).
    "torture_rfc2543": message(
        """INVITE sip:user@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.2
From: <sip:caller@127.0.0.2>
To: <sip:user@127.0.0.1>
Call-ID: inv2543.1717@127.0.0.2
CSeq: 1 INVITE
Content-Length: 0"""
    ),
}


def main() -> None:
    for kind, cases in (("valid", VALID), ("invalid", INVALID)):
        folder = HERE / kind
        folder.mkdir(exist_ok=True)
        for stale in folder.glob("*.sip"):
            if stale.stem not in cases:
                stale.unlink()
        for name, data in cases.items():
            (folder / f"{name}.sip").write_bytes(data)


if __name__ == "__main__":
    main()
