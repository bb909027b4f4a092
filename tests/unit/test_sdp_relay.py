"""Tests for the media relay's SDP rewriting: addresses replaced, media negotiation untouched, holds kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from appliance.sdp import (
    Attribute,
    Connection,
    Direction,
    LocalProtocolError,
    MediaDescription,
    Origin,
    RtpMap,
    SdpDecodeError,
    SdpError,
    SessionDescription,
    parse_sdp,
)
from appliance.sdp.relay import MediaEndpoint, payload_map, remote_endpoints, rewrite_for_relay

CARRIER_OFFER = (
    b"v=0\r\n"
    b"o=carrier 1234 5678 IN IP4 127.0.0.20\r\n"
    b"s=call\r\n"
    b"c=IN IP4 127.0.0.20\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 0 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=maxptime:40\r\n"
    b"a=rtcp:40001 IN IP4 127.0.0.21\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
    b"a=x-carrier-tag:7\r\n"
    b"a=sendrecv\r\n"
)

IPV6_PHONE = (
    b"v=0\r\n"
    b"o=phone 99 1 IN IP6 ::1\r\n"
    b"s=-\r\n"
    b"t=0 0\r\n"
    b"m=audio 30000 RTP/AVP 0 96\r\n"
    b"c=IN IP6 ::1\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:96 telephone-event/8000\r\n"
    b"m=video 30002 RTP/AVP 97\r\n"
    b"c=IN IP6 ::1\r\n"
    b"a=rtpmap:97 H264/90000\r\n"
)

WEBRTC_OFFER = (
    b"v=0\r\n"
    b"o=- 4611731400430051336 2 IN IP4 127.0.0.30\r\n"
    b"s=-\r\n"
    b"t=0 0\r\n"
    b"a=group:BUNDLE 0\r\n"
    b"a=ice-lite\r\n"
    b"a=ice-options:trickle\r\n"
    b"m=audio 9 UDP/TLS/RTP/SAVPF 111 8 0 110\r\n"
    b"c=IN IP4 127.0.0.30\r\n"
    b"a=rtcp:9 IN IP4 127.0.0.30\r\n"
    b"a=candidate:1 1 udp 2122260223 127.0.0.30 54400 typ host generation 0\r\n"
    b"a=candidate:2 1 udp 2122262783 ::1 54401 typ host generation 0\r\n"
    b"a=end-of-candidates\r\n"
    b"a=ice-ufrag:8hhY\r\n"
    b"a=ice-pwd:asd88fgpdd777uzjYhagZg\r\n"
    b"a=setup:actpass\r\n"
    b"a=mid:0\r\n"
    b"a=sendrecv\r\n"
    b"a=rtcp-mux\r\n"
    b"a=rtpmap:111 opus/48000/2\r\n"
    b"a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:110 telephone-event/48000\r\n"
)

ICE = {"ice-ufrag", "ice-pwd", "ice-options", "ice-lite", "candidate", "end-of-candidates"}


def relay(sdp: SessionDescription, *ports: int | None, **kwargs: bool | None) -> SessionDescription:
    out = rewrite_for_relay(sdp, address="127.0.0.1", ports=ports, session_id=42, session_version=1, **kwargs)  # type: ignore[arg-type]
    assert parse_sdp(out.to_bytes()) == out
    return out


def names(attributes: tuple[Attribute, ...]) -> list[str]:
    return [a.name for a in attributes]


def test_carrier_offer_names_the_relay_and_keeps_the_codecs() -> None:
    offer = parse_sdp(CARRIER_OFFER)
    out = relay(offer, 20000)
    assert out.origin == Origin("-", 42, 1, "IN", "IP4", "127.0.0.1")
    assert out.connection == Connection("IN", "IP4", "127.0.0.1")
    assert out.session_name == "call"
    (m,) = out.media
    assert (m.port, m.formats) == (20000, ("8", "0", "101"))
    assert m.rtcp is not None and (m.rtcp.port, m.rtcp.connection) == (20001, None)
    assert m.crypto == ()
    assert names(m.attributes) == [
        *("rtpmap", "rtpmap", "rtpmap", "fmtp", "ptime", "maxptime", "rtcp", "x-carrier-tag", "sendrecv")
    ]
    assert (m.fmtp(101), m.ptime, m.maxptime) == ("0-15", 20.0, 40.0)
    assert b"127.0.0.2" not in out.to_bytes()


def test_crypto_kept_when_asked() -> None:
    out = relay(parse_sdp(CARRIER_OFFER), 20000, keep_crypto=True)
    assert len(out.media[0].crypto) == 1


def test_ipv6_phone_gets_an_ipv6_relay_and_media_level_connections() -> None:
    offer = parse_sdp(IPV6_PHONE)
    out = rewrite_for_relay(offer, address="::1", ports=[20000, None], session_id=7, session_version=3)
    assert out.origin == Origin("-", 7, 3, "IN", "IP6", "::1")
    assert out.connection == Connection("IN", "IP6", "::1")
    audio, video = out.media
    assert audio.connections == (Connection("IN", "IP6", "::1"),)
    assert (audio.port, audio.formats, audio.rtpmaps()[96].encoding) == (
        20000,
        ("0", "96"),
        "telephone-event",
    )
    # The rejected video stream keeps its formats (RFC 3264 §6) and loses its attributes.
    assert (video.port, video.formats, video.attributes) == (0, ("97",), ())
    assert parse_sdp(out.to_bytes()) == out


def test_ipv4_relay_for_an_ipv6_leg_rewrites_the_address_type() -> None:
    out = relay(parse_sdp(IPV6_PHONE), 20000, 20002)
    assert out.origin.addrtype == "IP4"
    assert all(c == Connection("IN", "IP4", "127.0.0.1") for m in out.media for c in m.connections)
    assert b"::1" not in out.to_bytes()


def test_webrtc_offer_loses_ice_at_both_levels() -> None:
    out = relay(parse_sdp(WEBRTC_OFFER), 20000)
    assert not ICE & set(names(out.attributes))
    (m,) = out.media
    assert not ICE & set(names(m.attributes))
    assert "group" in names(out.attributes) and "mid" in names(m.attributes)
    # rtcp-mux is kept as offered, so RTCP shares the RTP port.
    assert m.rtcp_mux and m.rtcp is not None and m.rtcp.port == 20000
    assert b"127.0.0.30" not in out.to_bytes()


def test_ice_kept_when_the_far_leg_does_ice() -> None:
    out = relay(parse_sdp(WEBRTC_OFFER), 20000, strip_ice=False)
    assert "ice-lite" in names(out.attributes)
    assert names(out.media[0].attributes).count("candidate") == 2


@pytest.mark.parametrize(
    ("offered", "wanted", "has_mux", "rtcp_port"),
    [
        (True, None, True, 20000),
        (True, False, False, 20001),
        (False, True, True, 20000),
        (False, None, False, 20001),
    ],
)
def test_rtcp_mux_follows_the_caller(
    offered: bool, wanted: bool | None, has_mux: bool, rtcp_port: int
) -> None:
    attributes = (Attribute("rtcp", "5001"), *([Attribute("rtcp-mux")] if offered else []))
    sdp = SessionDescription(
        origin=Origin("-", 1, 1, "IN", "IP4", "127.0.0.9"),
        connection=Connection("IN", "IP4", "127.0.0.9"),
        media=(MediaDescription("audio", 5000, "RTP/AVP", ("0",), attributes=attributes),),
    )
    (m,) = relay(sdp, 20000, rtcp_mux=wanted).media
    assert m.rtcp_mux is has_mux
    assert names(m.attributes).count("rtcp-mux") == int(has_mux)
    assert m.rtcp is not None and m.rtcp.port == rtcp_port


def _hold(connection: str, direction: str | None) -> SessionDescription:
    text = (
        f"v=0\r\no=- 1 2 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 {connection}\r\nt=0 0\r\n"
        f"m=audio 5000 RTP/AVP 0\r\n" + (f"a={direction}\r\n" if direction else "")
    )
    return parse_sdp(text.encode())


@pytest.mark.parametrize(
    ("connection", "direction", "expected"),
    [
        ("0.0.0.0", None, Direction.SENDONLY),
        ("0.0.0.0", "sendrecv", Direction.SENDONLY),
        ("0.0.0.0", "recvonly", Direction.INACTIVE),
        ("0.0.0.0", "inactive", Direction.INACTIVE),
        ("0.0.0.0", "sendonly", Direction.SENDONLY),
        ("127.0.0.9", "sendonly", Direction.SENDONLY),
        ("127.0.0.9", "inactive", Direction.INACTIVE),
        ("127.0.0.9", "recvonly", Direction.RECVONLY),
        ("127.0.0.9", None, Direction.SENDRECV),
    ],
)
def test_hold_keeps_its_meaning(connection: str, direction: str | None, expected: Direction) -> None:
    out = relay(_hold(connection, direction), 20000)
    (m,) = out.media
    assert out.connection == Connection("IN", "IP4", "127.0.0.1")
    assert out.direction_for(m) is expected
    assert [d for d in names(m.attributes) if d in Direction.__members__.values()] == (
        [expected.value] if direction or connection == "0.0.0.0" else []
    )


def test_ipv6_unspecified_hold() -> None:
    sdp = parse_sdp(b"v=0\r\no=- 1 2 IN IP6 ::1\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP6 ::\r\n")
    out = rewrite_for_relay(sdp, address="::1", ports=[20000], session_id=1, session_version=3)
    assert out.media[0].connections == (Connection("IN", "IP6", "::1"),)
    assert out.direction_for(out.media[0]) is Direction.SENDONLY


def test_reoffer_keeps_session_id_and_bumps_version() -> None:
    offer = parse_sdp(CARRIER_OFFER)
    first = rewrite_for_relay(offer, address="127.0.0.1", ports=[20000], session_id=42, session_version=1)
    held = parse_sdp(CARRIER_OFFER.replace(b"a=sendrecv", b"a=sendonly").replace(b"5678", b"5679"))
    second = rewrite_for_relay(held, address="127.0.0.1", ports=[20000], session_id=42, session_version=2)
    assert (first.origin.session_id, second.origin.session_id) == (42, 42)
    assert second.origin.session_version == first.origin.session_version + 1
    assert second.direction_for(second.media[0]) is Direction.SENDONLY
    assert first.media[0].port == second.media[0].port


def test_stream_disabled_by_the_writer_stays_disabled() -> None:
    sdp = parse_sdp(IPV6_PHONE.replace(b"m=video 30002", b"m=video 0"))
    out = relay(sdp, 20000, 20002)
    assert out.media[1].port == 0


@pytest.mark.parametrize(
    ("kwargs", "fault"),
    [
        ({"address": "relay.local"}, "not an IP"),
        ({"address": "0.0.0.0"}, "unspecified"),
        ({"ports": [20000, 20002]}, "2 given"),
        ({"ports": [65535]}, "out of range"),
        ({"ports": [0]}, "out of range"),
        ({"session_id": -1}, "out of range"),
        ({"session_version": 2**63}, "out of range"),
    ],
)
def test_caller_mistakes_raise_local_protocol_error(kwargs: dict[str, object], fault: str) -> None:
    args: dict[str, object] = {
        "address": "127.0.0.1",
        "ports": [20000],
        "session_id": 1,
        "session_version": 1,
    }
    args.update(kwargs)
    with pytest.raises(LocalProtocolError, match=fault) as caught:
        rewrite_for_relay(parse_sdp(CARRIER_OFFER), **args)  # type: ignore[arg-type]
    assert caught.value.status == 500


def test_remote_endpoints_of_a_carrier_offer() -> None:
    (endpoint,) = remote_endpoints(parse_sdp(CARRIER_OFFER))
    assert endpoint == MediaEndpoint(
        index=0,
        media="audio",
        proto="RTP/AVP",
        address="127.0.0.20",
        port=40000,
        rtcp_address="127.0.0.21",
        rtcp_port=40001,
        rtcp_mux=False,
        direction=Direction.SENDRECV,
        codecs=(RtpMap(8, "PCMA", 8000), RtpMap(0, "PCMU", 8000), RtpMap(101, "telephone-event", 8000)),
    )
    assert endpoint.accepts_media


def test_remote_endpoints_mux_default_rtcp_disabled_and_hold() -> None:
    audio, video = remote_endpoints(parse_sdp(IPV6_PHONE.replace(b"m=video 30002", b"m=video 0")))
    assert (audio.address, audio.port, audio.rtcp_port, audio.rtcp_address) == ("::1", 30000, 30001, "::1")
    assert audio.codecs[0] == RtpMap(0, "PCMU", 8000)
    assert video.port == 0 and not video.accepts_media
    (webrtc,) = remote_endpoints(parse_sdp(WEBRTC_OFFER))
    assert (webrtc.rtcp_mux, webrtc.rtcp_port) == (True, 9)
    (held,) = remote_endpoints(_hold("0.0.0.0", None))
    assert held.direction is Direction.SENDONLY and not held.accepts_media
    text = b"v=0\r\no=- 1 2 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n"
    text += b"m=audio 5000 RTP/AVP 8 18 96\r\n"
    (static,) = remote_endpoints(parse_sdp(text + b"a=rtcp-mux\r\n"))
    assert static.codecs == (RtpMap(8, "PCMA", 8000), RtpMap(18, "G729", 8000))
    assert static.rtcp_port == 5000


def test_remote_endpoints_without_connection_is_a_decode_error() -> None:
    sdp = SessionDescription(
        origin=Origin("-", 1, 1, "IN", "IP4", "127.0.0.9"),
        media=(MediaDescription("audio", 5000, "RTP/AVP", ("0",)),),
    )
    with pytest.raises(SdpDecodeError) as caught:
        remote_endpoints(sdp)
    assert caught.value.status == 400


def _audio(formats: str, *attributes: str) -> MediaDescription:
    return MediaDescription(
        "audio",
        5000,
        "RTP/AVP",
        tuple(formats.split()),
        attributes=tuple(Attribute(*a.split(":", 1)) for a in attributes),
    )


def test_payload_map_translates_dynamic_types() -> None:
    carrier = _audio("8 0 101", "rtpmap:101 telephone-event/8000", "fmtp:101 0-15")
    phone = _audio("0 96 8", "rtpmap:0 PCMU/8000", "rtpmap:96 telephone-event/8000", "rtpmap:8 pcma/8000")
    assert payload_map(carrier, phone) == {8: 8, 0: 0, 101: 96}
    assert payload_map(phone, carrier) == {0: 0, 96: 101, 8: 8}


def test_payload_map_respects_rate_channels_and_fmtp() -> None:
    offer = _audio(
        "111 110 101 102",
        "rtpmap:111 opus/48000/2",
        "rtpmap:110 telephone-event/48000",
        "rtpmap:101 telephone-event/8000",
        "rtpmap:102 telephone-event/8000",
        "fmtp:101 0-15",
        "fmtp:102 0-16",
    )
    answer = _audio(
        "96 97 98 99",
        "rtpmap:96 opus/48000",
        "rtpmap:97 telephone-event/8000",
        "rtpmap:98 telephone-event/8000",
        "rtpmap:99 telephone-event/48000",
        "fmtp:97 0-16",
        "fmtp:98 0-15",
    )
    # opus/48000/2 is not opus/48000 (one channel); equal fmtp wins over position.
    assert payload_map(offer, answer) == {110: 99, 101: 98, 102: 97}
    assert payload_map(offer, _audio("9", "rtpmap:9 G722/8000")) == {}


# --- properties ---

TOKEN = "!#$%&'*+-.^_`{|}~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
tokens = st.text(TOKEN, min_size=1, max_size=8)
hosts = st.sampled_from(["127.0.0.20", "127.0.0.21", "0.0.0.0", "::", "::2", "peer.invalid"])
connections = st.builds(Connection, st.just("IN"), st.sampled_from(["IP4", "IP6"]), hosts)
attributes = st.sampled_from(
    [
        Attribute("rtpmap", "96 telephone-event/8000"),
        Attribute("fmtp", "96 0-15"),
        Attribute("ptime", "20"),
        Attribute("rtcp", "9 IN IP4 127.0.0.22"),
        Attribute("rtcp", "7001"),
        Attribute("rtcp-mux"),
        Attribute("crypto", "1 AES_CM_128_HMAC_SHA1_80 inline:abcd"),
        Attribute("candidate", "1 1 udp 2122260223 127.0.0.23 54400 typ host"),
        Attribute("ice-ufrag", "abcd"),
        Attribute("ice-lite"),
        Attribute("sendonly"),
        Attribute("recvonly"),
        Attribute("inactive"),
    ]
) | st.builds(Attribute, tokens.map(lambda t: "x-" + t), st.none() | tokens)
media = st.builds(
    MediaDescription,
    media=st.sampled_from(["audio", "video", "image"]),
    port=st.integers(0, 65535),
    proto=st.sampled_from(["RTP/AVP", "RTP/SAVP", "udptl"]),
    formats=st.lists(st.integers(0, 127).map(str), min_size=1, max_size=4).map(tuple),
    port_count=st.none() | st.integers(1, 4),
    connections=st.lists(connections, max_size=2).map(tuple),
    attributes=st.lists(attributes, max_size=6).map(tuple),
)
sessions = st.builds(
    SessionDescription,
    origin=st.builds(
        Origin, tokens, st.integers(0, 2**64), st.integers(0, 2**64), st.just("IN"), tokens, hosts
    ),
    connection=st.none() | connections,
    attributes=st.lists(attributes, max_size=3).map(tuple),
    media=st.lists(media, max_size=4).map(tuple),
)


@settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions, st.data(), st.booleans(), st.none() | st.booleans(), st.sampled_from(["127.0.0.1", "::1"]))
def test_rewriting_any_description_leaves_only_relay_addresses(
    generated: SessionDescription, data: st.DataObject, strip_ice: bool, mux: bool | None, address: str
) -> None:
    try:
        sdp = parse_sdp(generated.to_bytes())
    except SdpError:
        assume(False)
        return
    ports = [data.draw(st.none() | st.integers(1, 65534)) for _ in sdp.media]
    try:
        out = rewrite_for_relay(
            sdp,
            address=address,
            ports=ports,
            session_id=9,
            session_version=10,
            strip_ice=strip_ice,
            rtcp_mux=mux,
        )
    except SdpError:
        return
    assert parse_sdp(out.to_bytes()) == out
    relay_connection = Connection("IN", "IP6" if ":" in address else "IP4", address)
    assert out.origin == Origin("-", 9, 10, "IN", relay_connection.addrtype, address)
    assert out.connection == relay_connection
    for before, after, port in zip(sdp.media, out.media, ports, strict=True):
        assert after.connections in ((), (relay_connection,))
        assert after.formats == before.formats
        assert after.port == (0 if port is None or before.port == 0 else port)
        rtcp = after.rtcp
        assert rtcp is None or (rtcp.connection is None and rtcp.port in (port, (port or 0) + 1))
        assert not after.crypto
        if strip_ice:
            assert not ICE & set(names(after.attributes))
        if after.port != 0:
            # The writer's media negotiation passes through in order.
            assert after.attribute_values("rtpmap") == before.attribute_values("rtpmap")
            assert after.attribute_values("fmtp") == before.attribute_values("fmtp")
            assert out.direction_for(after).sends == sdp.direction_for(before).sends
    remote_endpoints(out)


VALID_VECTORS = sorted((Path(__file__).resolve().parent.parent / "vectors" / "sdp" / "valid").glob("*.sdp"))


@pytest.mark.parametrize("path", VALID_VECTORS, ids=lambda p: p.stem)
def test_stored_vectors_rewrite_to_relay_addresses_only(path: Path) -> None:
    sdp = parse_sdp(path.read_bytes())
    out = rewrite_for_relay(
        sdp,
        address="127.0.0.5",
        ports=[20000 + 2 * i for i in range(len(sdp.media))],
        session_id=1,
        session_version=1,
    )
    assert parse_sdp(out.to_bytes()) == out
    lines = out.to_bytes().decode().split("\r\n")
    addressed = [line for line in lines if line.startswith(("o=", "c="))]
    assert addressed and all(line.endswith("IN IP4 127.0.0.5") for line in addressed)
    assert all(line[7:].isdigit() for line in lines if line.startswith("a=rtcp:"))
    assert [m.port for m in out.media] == [
        0 if m.port == 0 else 20000 + 2 * i for i, m in enumerate(sdp.media)
    ]
    assert [m.formats for m in out.media] == [m.formats for m in sdp.media]
