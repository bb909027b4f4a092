"""The invalid SIP wire vectors, by case name (written to ``invalid/<case>.sip`` by ``generate.py``)."""

from __future__ import annotations

from sip_wire import SDP, message, request


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
