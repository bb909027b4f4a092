"""SDP parser and serializer: wire vectors (tests/vectors/sdp), typed attribute views, serializer guards."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appliance.sdp import (
    Attribute,
    Bandwidth,
    Connection,
    Crypto,
    Direction,
    Fingerprint,
    LocalProtocolError,
    MediaDescription,
    Origin,
    Rtcp,
    RtpMap,
    SdpDecodeError,
    SessionDescription,
    Timing,
    parse_sdp,
)
from appliance.sdp.codec import MAX_SDP_SIZE

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "sdp"
VALID = sorted((VECTORS / "valid").glob("*.sdp"))
INVALID = sorted((VECTORS / "invalid").glob("*.sdp"))


def vector(name: str) -> bytes:
    return (VECTORS / "valid" / f"{name}.sdp").read_bytes()


# name -> (status, reason, line)
EXPECTED_ERRORS: dict[str, tuple[int, str, int | None]] = {
    "attribute_after_media_wrong_type": (400, "SDP line 8: 'c=' line out of order", 8),
    "bad_attribute_name": (400, "a= line: bad attribute name", 7),
    "bad_bandwidth": (400, "b= line: bad bandwidth", 5),
    "bad_fingerprint": (400, "a=fingerprint: bad value", 7),
    "bad_ptime": (400, "a=ptime: bad value", 7),
    "bad_rtpmap": (400, "a=rtpmap: bad value", 7),
    "bad_setup": (400, "a=setup: bad value", 7),
    "bad_time": (400, "t= line: bad time", 5),
    "bare_cr_in_line": (400, "SDP line 3: CR or NUL inside the line", 3),
    "connection_out_of_order": (400, "SDP line 5: 'c=' line out of order", 5),
    "duplicate_session_name": (400, "SDP line 4: expected 't=' line, found 's='", 4),
    "empty": (400, "SDP is empty", None),
    "media_bad_port_count": (400, "m= line: bad port count", 6),
    "media_no_formats": (400, "m= line: expected '<media> <port> <proto> <fmt> ...'", 6),
    "media_payload_type_128": (400, "m= line: bad payload type", 6),
    "media_port_out_of_range": (400, "m= line: bad port", 6),
    "missing_timing": (400, "SDP line 5: expected 't=' line, found 'm='", 5),
    "missing_version": (400, "SDP line 1: expected 'v=' line, found 'o='", 1),
    "not_type_value": (400, "SDP line 3: expected '<type>=<value>'", 3),
    "not_utf8": (400, "SDP is not valid UTF-8", None),
    "nul_in_line": (400, "SDP line 3: CR or NUL inside the line", 3),
    "origin_bad_session_id": (400, "o= line: bad session id", 2),
    "origin_five_fields": (400, "o= line: expected 6 fields", 2),
    "too_many_attributes": (488, "SDP has more than 256 attributes in one section", 263),
    "too_many_media": (488, "SDP has more than 64 media sections", 70),
    "unknown_type": (400, "SDP line 6: unknown type 'y='", 6),
    "unsupported_version": (400, "v= line: unsupported version '1'", 1),
}


def test_every_invalid_vector_has_an_expectation() -> None:
    assert {p.stem for p in INVALID} == set(EXPECTED_ERRORS)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_vectors_fail_with_exact_reason_and_status(path: Path) -> None:
    status, reason, line = EXPECTED_ERRORS[path.stem]
    with pytest.raises(SdpDecodeError) as info:
        parse_sdp(path.read_bytes())
    assert (info.value.status, info.value.reason, info.value.line) == (status, reason, line)


@pytest.mark.parametrize("path", [p for p in VALID if not p.stem.endswith("_lf")], ids=lambda p: p.stem)
def test_valid_crlf_vectors_round_trip_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    assert b"\r\n" in data
    assert parse_sdp(data).to_bytes() == data


def test_lf_only_vector_parses_like_its_crlf_twin() -> None:
    lf = vector("carrier_g711_dtmf_lf")
    assert b"\r" not in lf
    crlf = vector("carrier_g711_dtmf")
    assert parse_sdp(lf) == parse_sdp(crlf)
    assert parse_sdp(lf).to_bytes() == crlf


def test_carrier_offer_fields() -> None:
    sdp = parse_sdp(vector("carrier_g711_dtmf"))
    assert sdp.version == 0
    assert sdp.origin == Origin("carrier", 1712345678, 1712345679, "IN", "IP4", "127.0.0.1")
    assert sdp.session_name == "SBC call"
    assert sdp.connection == Connection("IN", "IP4", "127.0.0.1")
    assert sdp.timing == (Timing(0, 0),)
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.port_count, audio.proto) == ("audio", 20000, None, "RTP/AVP")
    assert audio.formats == ("8", "0", "18", "101")
    assert audio.payload_types == (8, 0, 18, 101)
    assert audio.rtpmaps() == {
        8: RtpMap(8, "PCMA", 8000),
        0: RtpMap(0, "PCMU", 8000),
        18: RtpMap(18, "G729", 8000),
        101: RtpMap(101, "telephone-event", 8000),
    }
    assert audio.fmtp(18) == "annexb=no"
    assert audio.fmtp("101") == "0-16"
    assert audio.fmtp(8) is None
    assert audio.ptime == 20.0
    assert audio.maxptime == 150.0
    assert audio.direction is Direction.SENDRECV
    assert sdp.connection_for(audio) == sdp.connection
    assert [a.name for a in audio.attributes] == [
        "rtpmap", "rtpmap", "rtpmap", "fmtp", "rtpmap", "fmtp", "ptime", "maxptime", "sendrecv",
    ]  # fmt: skip


def test_full_session_fields() -> None:
    sdp = parse_sdp(vector("full_session"))
    assert sdp.information == "A Seminar on the session description protocol"
    assert sdp.uri == "http://localhost/seminar/sdp.pdf"
    assert sdp.emails == ("j.doe@localhost (Jane Doe)", "noc@localhost")
    assert sdp.phones == ("+44 20 7946 0000",)
    assert sdp.bandwidths == (Bandwidth("CT", 128), Bandwidth("AS", 64))
    assert sdp.timing == (
        Timing(2873397496, 2873404696, ("7d 1h 0 25h",)),
        Timing(3034423619, 3042462419, ("604800 3600 0 90000",), "2882844526 -1h 2898848070 0"),
    )
    assert sdp.key == "prompt"
    assert sdp.attributes == (Attribute("recvonly"), Attribute("tool", "pop-appliance"))
    assert sdp.direction is Direction.RECVONLY
    audio, video, app = sdp.media
    assert audio.title == "voice"
    assert audio.connection == Connection("IN", "IP4", "127.0.0.2")
    assert audio.bandwidths == (Bandwidth("AS", 80),)
    assert audio.ptime == 30.0
    assert audio.direction is None
    # A stream without its own direction inherits the session's (RFC 3264 §5.1).
    assert sdp.direction_for(audio) is Direction.RECVONLY
    assert (video.port, video.port_count) == (51372, 2)
    assert [c.address for c in video.connections] == ["127.0.0.3", "127.0.0.4"]
    assert video.rtpmaps() == {99: RtpMap(99, "h263-1998", 90000)}
    assert (app.media, app.proto, app.formats, app.is_rtp) == ("application", "udp", ("wb",), False)
    assert app.payload_types == ()
    assert sdp.connection_for(app) == sdp.connection


def test_ipv6_and_session_level_fallbacks() -> None:
    sdp = parse_sdp(vector("ipv6_hold_sendonly"))
    assert sdp.origin.addrtype == "IP6"
    assert sdp.connection == Connection("IN", "IP6", "::1")
    (audio,) = sdp.media
    assert audio.connection is None
    assert sdp.connection_for(audio) == Connection("IN", "IP6", "::1")
    assert sdp.direction_for(audio) is Direction.SENDONLY
    assert audio.ptime is None


def test_webrtc_attributes_kept_in_order_with_typed_views() -> None:
    sdp = parse_sdp(vector("webrtc_dtls"))
    assert sdp.connection is None
    assert sdp.attribute("group") == "BUNDLE 0"
    assert sdp.attribute("msid-semantic") == " WMS"
    (audio,) = sdp.media
    assert audio.proto == "UDP/TLS/RTP/SAVPF" and audio.is_rtp
    assert audio.rtcp == Rtcp(9, Connection("IN", "IP4", "127.0.0.1"))
    assert audio.rtcp_mux
    assert audio.setup == "actpass"
    (fingerprint,) = audio.fingerprints
    assert fingerprint.hash_function == "sha-256"
    assert fingerprint.value.startswith("D2:FA:0E") and len(fingerprint.value) == 95
    assert audio.attribute("ice-ufrag") == "8hhY"
    assert audio.attribute_values("candidate") == [
        "1 1 udp 2122260223 127.0.0.1 54400 typ host generation 0",
        "2 1 udp 2122262783 ::1 54401 typ host generation 0",
    ]
    assert audio.rtpmaps()[111] == RtpMap(111, "opus", 48000, 2)
    assert audio.fmtp(111) == "minptime=10;useinbandfec=1"
    assert audio.attribute("rtcp-fb") == "111 transport-cc"
    assert audio.attribute("no-such") is None and not audio.has_attribute("no-such")


def test_sdes_crypto_and_rtcp_port() -> None:
    (audio,) = parse_sdp(vector("srtp_sdes_inactive")).media
    assert audio.crypto == (
        Crypto(1, "AES_CM_128_HMAC_SHA1_80", "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"),
        Crypto(
            2,
            "AES_CM_128_HMAC_SHA1_32",
            "inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32",
            ("KDR=1", "UNENCRYPTED_SRTCP"),
        ),
    )
    assert audio.rtcp == Rtcp(40001)
    assert audio.direction is Direction.INACTIVE
    assert audio.fingerprints == () and audio.setup is None and not audio.rtcp_mux


def test_t38_image_stream_and_disabled_audio() -> None:
    sdp = parse_sdp(vector("t38_image"))
    audio, image = sdp.media
    assert audio.port == 0
    assert (image.media, image.proto, image.formats) == ("image", "udptl", ("t38",))
    assert image.attribute("T38MaxBitRate") == "14400"


def test_whitespace_runs_in_structured_fields_are_normalised() -> None:
    data = b"v=0\no=-  1 2 IN IP4  127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0  0\nm=audio  4000 RTP/AVP 0  8 \n"
    sdp = parse_sdp(data)
    assert sdp.origin == Origin("-", 1, 2, "IN", "IP4", "127.0.0.1")
    assert sdp.media[0].formats == ("0", "8")
    assert sdp.to_bytes().splitlines()[-1] == b"m=audio 4000 RTP/AVP 0 8"


def test_trailing_blank_lines_and_missing_final_newline_are_accepted() -> None:
    lines = [b"v=0", b"o=- 1 1 IN IP4 127.0.0.1", b"s=-", b"t=0 0"]
    canonical = b"\r\n".join(lines) + b"\r\n"
    assert parse_sdp(b"\r\n".join(lines)).to_bytes() == canonical
    assert parse_sdp(canonical + b"\r\n\r\n").to_bytes() == canonical


def test_blank_line_in_the_middle_is_rejected() -> None:
    with pytest.raises(SdpDecodeError) as info:
        parse_sdp(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n\r\ns=-\r\nt=0 0\r\n")
    assert info.value.reason == "SDP line 3: expected '<type>=<value>'"


def test_size_cap_is_488() -> None:
    head = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    filler = b"a=x-pad:" + b"p" * 100 + b"\r\n"
    data = head + filler * (MAX_SDP_SIZE // len(filler) + 1)
    with pytest.raises(SdpDecodeError) as info:
        parse_sdp(data)
    assert (info.value.status, info.value.reason) == (488, "SDP exceeds 65536 octets")


def test_huge_numbers_are_rejected_not_converted() -> None:
    # int() of thousands of digits is slow or raises ValueError; the parser must refuse before converting.
    data = b"v=0\r\no=- " + b"9" * 5000 + b" 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    with pytest.raises(SdpDecodeError, match="bad session id"):
        parse_sdp(data)
    data = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:" + b"1" * 5000
    )
    with pytest.raises(SdpDecodeError, match="a=rtpmap: bad value"):
        parse_sdp(data)


def test_64_media_sections_and_256_attributes_are_within_the_caps() -> None:
    head = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    sdp = parse_sdp(head + b"m=audio 0 RTP/AVP 0\r\n" * 64)
    assert len(sdp.media) == 64
    sdp = parse_sdp(head + b"m=audio 1 RTP/AVP 0\r\n" + b"a=x\r\n" * 256)
    assert len(sdp.media[0].attributes) == 256


def test_rtpmap_channels_and_bad_channel_count() -> None:
    base = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96 "
    assert parse_sdp(base + b"L16/8000/2\r\n").media[0].rtpmaps()[96].channels == 2
    with pytest.raises(SdpDecodeError, match="a=rtpmap: bad channel count"):
        parse_sdp(base + b"L16/8000/stereo\r\n")


def test_known_attribute_without_value_is_rejected() -> None:
    data = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\na=ptime\r\n"
    with pytest.raises(SdpDecodeError) as info:
        parse_sdp(data)
    assert (info.value.reason, info.value.line) == ("a=ptime: missing value", 6)


def test_error_in_a_later_repeated_line_names_that_line() -> None:
    data = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nb=AS:1\r\nb=AS:x\r\nt=0 0\r\n"
    with pytest.raises(SdpDecodeError) as info:
        parse_sdp(data)
    assert info.value.line == 5


def test_typed_views_raise_decode_error_on_hand_built_bad_values() -> None:
    media = MediaDescription("audio", 1, "RTP/AVP", ("0",), attributes=(Attribute("ptime", "fast"),))
    with pytest.raises(SdpDecodeError, match="a=ptime: bad value"):
        _ = media.ptime


def test_serializer_refuses_line_breaks_in_values() -> None:
    sdp = SessionDescription(origin=Origin("-", 1, 1, "IN", "IP4", "127.0.0.1"), session_name="x\r\na=evil")
    with pytest.raises(LocalProtocolError) as info:
        sdp.to_bytes()
    assert info.value.status == 500
    media = MediaDescription("audio", 1, "RTP/AVP", ("0",), attributes=(Attribute("tool", "a\nb"),))
    with pytest.raises(LocalProtocolError):
        dataclasses.replace(sdp, session_name="-", media=(media,)).to_bytes()
    with pytest.raises(LocalProtocolError):
        dataclasses.replace(sdp, session_name="-", timing=()).to_bytes()


def test_built_description_serializes_in_rfc_order() -> None:
    media = MediaDescription(
        "audio", 4000, "RTP/AVP", ("0",), port_count=2, title="t",
        connections=(Connection("IN", "IP4", "127.0.0.1"),), bandwidths=(Bandwidth("TIAS", 64000),),
        key="prompt", attributes=(Attribute("sendonly"),),
    )  # fmt: skip
    sdp = SessionDescription(origin=Origin("-", 5, 6, "IN", "IP4", "127.0.0.1"), media=(media,))
    assert sdp.to_bytes() == (
        b"v=0\r\no=- 5 6 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        b"m=audio 4000/2 RTP/AVP 0\r\ni=t\r\nc=IN IP4 127.0.0.1\r\nb=TIAS:64000\r\nk=prompt\r\na=sendonly\r\n"
    )
    assert parse_sdp(sdp.to_bytes()) == sdp


def test_direction_helpers() -> None:
    assert Direction.SENDONLY.mirrored() is Direction.RECVONLY
    assert Direction.RECVONLY.mirrored() is Direction.SENDONLY
    assert Direction.SENDRECV.mirrored() is Direction.SENDRECV
    assert Direction.INACTIVE.mirrored() is Direction.INACTIVE
    assert Direction.SENDONLY.sends and not Direction.SENDONLY.receives
    assert Direction.of(sends=False, receives=True) is Direction.RECVONLY
    assert Direction.of(sends=False, receives=False) is Direction.INACTIVE


def test_connection_host_and_unspecified() -> None:
    assert Connection("IN", "IP4", "127.0.0.1/127/3").host == "127.0.0.1"
    assert Connection("IN", "IP4", "0.0.0.0").is_unspecified
    assert not Connection("IN", "IP6", "::1").is_unspecified


def test_fingerprint_view_value() -> None:
    attrs = (Attribute("fingerprint", "sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB"),)
    media = MediaDescription("audio", 1, "RTP/AVP", ("0",), attributes=attrs)
    assert media.fingerprints == (
        Fingerprint("sha-1", "4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB"),
    )
