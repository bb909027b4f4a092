"""Building blocks of the SIP wire vectors: message assembly, an SDP offer, multipart bodies."""

from __future__ import annotations

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
