"""SIP over TCP and TLS (RFC 3261 §18) against the appliance process, from a plain socket client."""

from __future__ import annotations

import datetime
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.sip.message import Request, Response, parse_message
from appliance.sip.stream import StreamFramer
from tests.system.appliance_proc import start_appliance
from tests.system.sipp import free_port

pytestmark = pytest.mark.system

OFFER = (
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)


class StreamClient:
    """A minimal SIP user agent over one stream connection."""

    def __init__(self, sock: socket.socket, transport: str) -> None:
        self.sock = sock
        self.transport = transport
        self.local = sock.getsockname()
        self.framer = StreamFramer(65535)
        sock.settimeout(5.0)

    def send(self, text: str) -> None:
        head, _, body = text.partition("\r\n\r\n")
        self.sock.sendall(f"{head}\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}".encode())

    def recv(self) -> Request | Response:
        while (frame := self.framer.next_message()) is None:
            data = self.sock.recv(65535)
            assert data, "connection closed"
            self.framer.feed(data)
        return parse_message(frame, stream=True)

    def headers(self, method: str, cseq: int, branch: str, to_tag: str = "") -> str:
        host, port = self.local[0], self.local[1]
        to = "<sip:+4930123456@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        return (
            f"Via: SIP/2.0/{self.transport.upper()} {host}:{port};branch={branch}\r\n"
            f"From: <sip:caller@{host}>;tag=c1\r\nTo: {to}\r\nCall-ID: stream-{self.transport}\r\n"
            f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:caller@{host}:{port};transport={self.transport}>\r\n"
        )

    def call(self) -> None:
        """INVITE → 100, 200 (answered by the local IVR); ACK; BYE → 200."""
        uri = "sip:+4930123456@127.0.0.1"
        self.send(f"INVITE {uri} SIP/2.0\r\n{self.headers('INVITE', 1, 'z9hG4bKs1')}"
                  f"Content-Type: application/sdp\r\n\r\n{OFFER}")  # fmt: skip
        trying, ok = self.recv(), self.recv()
        assert isinstance(trying, Response) and trying.status == 100
        assert isinstance(ok, Response) and ok.status == 200 and b"m=audio" in ok.body
        tag = ok.to.tag or ""
        self.send(f"ACK {uri} SIP/2.0\r\n{self.headers('ACK', 1, 'z9hG4bKs2', tag)}\r\n")
        self.send(f"BYE {uri} SIP/2.0\r\n{self.headers('BYE', 2, 'z9hG4bKs3', tag)}\r\n")
        bye_ok = self.recv()
        assert isinstance(bye_ok, Response) and (bye_ok.status, bye_ok.cseq) == (200, (2, "BYE"))


def test_call_over_tcp(tmp_path: Path) -> None:
    app = start_appliance(tmp_path)
    try:
        with socket.create_connection(app.sip) as sock:
            client = StreamClient(sock, "tcp")
            client.sock.sendall(b"\r\n\r\n")  # RFC 5626 keep-alive ping: answered with a CRLF pong
            assert sock.recv(16) == b"\r\n"
            client.call()
        assert app.metric('appliance_calls_total{route="ivr"}') == 1
    finally:
        app.stop()


def test_message_without_content_length_closes_the_stream(tmp_path: Path) -> None:
    app = start_appliance(tmp_path)
    try:
        with socket.create_connection(app.sip) as sock:
            sock.settimeout(5.0)
            sock.sendall(
                b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKn\r\n\r\n"
            )
            assert sock.recv(100) == b""  # a stream that cannot be framed is closed (RFC 3261 §18.3)
    finally:
        app.stop()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "sip.crt", tmp_path / "sip.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_call_over_tls_when_a_certificate_is_configured(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls_port = free_port(udp=False, tcp=True)
    app = start_appliance(
        tmp_path, sip=f'tls_port = {tls_port}\ntls_certificate = "{cert}"\ntls_private_key = "{key}"'
    )
    try:
        assert any(line.startswith("SIP TLS") and line.endswith(f":{tls_port}") for line in app.banner)
        ctx = ssl.create_default_context(cafile=str(cert))
        with (
            socket.create_connection(("127.0.0.1", tls_port)) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            StreamClient(sock, "tls").call()
        assert app.metric('appliance_calls_total{route="ivr"}') == 1
    finally:
        app.stop()
