"""The valid SIP wire vectors, by case name (written to ``valid/<case>.sip`` by ``generate.py``)."""

from __future__ import annotations

from sip_wire import MULTIPART_BINARY, MULTIPART_SDP_ISUP, SDP, SDP6, long_values, message, request

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
