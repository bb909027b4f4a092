"""The B-channels' SDP names the address the span's TDM worker binds (``[media] address``): IPv4 or IPv6,
the loopback of the family for a wildcard bind, on calls from the span and to it."""

from __future__ import annotations

import pytest

from appliance.calls.pri_leg import rtp_host, tdm_sdp
from appliance.sdp.codec import parse_sdp
from tests.unit.harness import CALLER, TRUNK2
from tests.unit.test_b2bua import statuses
from tests.unit.test_pri_gateway import Span
from tests.unit.test_pri_gateway_interworking import to_span


@pytest.mark.parametrize(
    ("bound", "host"),
    [("127.0.0.5", "127.0.0.5"), ("0.0.0.0", "127.0.0.1"), ("::1", "::1"), ("::", "::1"),
     ("0:0:0:0:0:0:0:1", "::1")],
)  # fmt: skip
def test_the_rtp_host_is_the_bound_address_or_the_loopback_of_its_family(bound: str, host: str) -> None:
    assert rtp_host(bound) == host


def test_a_bound_address_that_is_not_an_ip_address_is_refused() -> None:
    with pytest.raises(ValueError, match="localhost"):
        rtp_host("localhost")


@pytest.mark.parametrize(("address", "kind"), [("127.0.0.5", "IP4"), ("::1", "IP6")])
def test_the_sdp_names_the_address_with_its_address_type(address: str, kind: str) -> None:
    sdp = tdm_sdp(31006, address=address)
    assert f"o=- 31006 1 IN {kind} {address}\r\n".encode() in sdp
    assert f"c=IN {kind} {address}\r\n".encode() in sdp
    session = parse_sdp(sdp)
    connection = session.connection_for(session.media[0])
    assert connection is not None and connection.host == address


@pytest.mark.parametrize(
    ("media_address", "connection", "absent"),
    [
        ("127.0.0.5", b"c=IN IP4 127.0.0.5\r\n", b"127.0.0.1"),
        ("0.0.0.0", b"c=IN IP4 127.0.0.1\r\n", b"0.0.0.0"),
    ],
)
def test_a_call_from_the_span_offers_the_b_channel_on_the_media_address(
    media_address: str, connection: bytes, absent: bytes
) -> None:
    span = Span((("*", ("trunk:sip:127.0.0.1:5082",)),), media_address=media_address)
    span.call_in()
    span.exchange()
    (b_invite,) = span.h.requests(TRUNK2)
    assert connection in b_invite.body and absent not in b_invite.body
    assert b"m=audio 31002 RTP/AVP 8 0" in b_invite.body


def test_a_call_to_the_span_answers_with_the_b_channel_on_an_ipv6_media_address() -> None:
    span, ref, _ = to_span(media_address="::1")
    span.far.connect(ref, now=span.now)
    span.exchange()
    (answer,) = [r for r in span.h.take(CALLER) if statuses([r]) == [200]]
    assert b"c=IN IP6 ::1\r\n" in answer.body and b"IN IP4" not in answer.body
