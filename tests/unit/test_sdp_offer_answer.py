"""RFC 3264 offer/answer for the appliance's audio stream: codec choice, rejection of other streams,
direction mirroring, hold detection and outgoing offers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appliance.sdp import (
    DEFAULT_AUDIO_CODECS,
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Attribute,
    Codec,
    Connection,
    Direction,
    NegotiatedAudio,
    RtpMap,
    SdpDecodeError,
    SdpNegotiationError,
    SessionDescription,
    answer_audio,
    hold_state,
    make_offer,
    parse_sdp,
)

VALID = Path(__file__).resolve().parent.parent / "vectors" / "sdp" / "valid"


def offer(*media_lines: str, session: str = "c=IN IP4 127.0.0.1") -> SessionDescription:
    head = ["v=0", "o=peer 11 22 IN IP4 127.0.0.1", "s=-", *([session] if session else []), "t=0 0"]
    return parse_sdp(("\r\n".join([*head, *media_lines]) + "\r\n").encode())


def answer(
    sdp: SessionDescription, supported: tuple[Codec, ...] = DEFAULT_AUDIO_CODECS
) -> tuple[SessionDescription, NegotiatedAudio]:
    return answer_audio(
        sdp, local_address="127.0.0.1", local_port=30000, supported=supported, session_id=7, session_version=9
    )


def test_carrier_offer_answer_bytes_and_negotiation() -> None:
    sdp, audio = answer(parse_sdp((VALID / "carrier_g711_dtmf.sdp").read_bytes()))
    assert audio == NegotiatedAudio(
        remote_address="127.0.0.1",
        remote_port=20000,
        remote_rtcp_port=20001,
        codec=PCMA,
        payload_type=8,
        ptime=20,
        dtmf_payload_type=101,
        direction=Direction.SENDRECV,
        media_index=0,
    )
    # The offer allows events 0-16; the appliance only handles the DTMF digits 0-15 (RFC 4733 §3.2).
    assert sdp.to_bytes() == (
        b"v=0\r\no=- 7 9 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )


def test_offerer_preference_order_wins() -> None:
    _, audio = answer(offer("m=audio 4000 RTP/AVP 18 0 8"))
    assert (audio.codec, audio.payload_type) == (PCMU, 0)
    _, audio = answer(offer("m=audio 4000 RTP/AVP 0 8"), supported=(PCMA, PCMU))
    assert audio.codec == PCMU


def test_static_payload_types_without_rtpmap() -> None:
    sdp, audio = answer(offer("m=audio 4000 RTP/AVP 8"))
    assert (audio.codec, audio.payload_type, audio.dtmf_payload_type) == (PCMA, 8, None)
    assert sdp.media[0].formats == ("8",)
    assert sdp.media[0].rtpmaps() == {8: RtpMap(8, "PCMA", 8000)}


def test_dynamic_payload_type_matched_by_rtpmap_name_case_insensitively() -> None:
    _, audio = answer(
        offer("m=audio 4000 RTP/AVP 96 97", "a=rtpmap:96 opus/48000/2", "a=rtpmap:97 pcmu/8000")
    )
    assert (audio.codec, audio.payload_type) == (PCMU, 97)


def test_rtpmap_overrides_the_static_meaning() -> None:
    # A peer that (against RFC 3551) maps 0 to something else: trust the rtpmap.
    _, audio = answer(offer("m=audio 4000 RTP/AVP 0 8", "a=rtpmap:0 G722/8000"))
    assert audio.codec == PCMA


def test_offerer_dtmf_payload_type_is_kept() -> None:
    sdp, audio = answer(offer("m=audio 4000 RTP/AVP 0 96", "a=rtpmap:96 telephone-event/8000"))
    assert audio.dtmf_payload_type == 96
    assert sdp.media[0].formats == ("0", "96")
    assert sdp.media[0].fmtp(96) == "0-15"


def test_dtmf_event_lists_are_intersected() -> None:
    sdp, audio = answer(
        offer("m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-9,11")
    )
    assert audio.dtmf_payload_type == 101
    assert sdp.media[0].fmtp(101) == "0-9,11"


def test_telephone_event_without_dtmf_digits_is_not_accepted() -> None:
    _, audio = answer(
        offer("m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 32-40")
    )
    assert audio.dtmf_payload_type is None


def test_telephone_event_at_another_clock_rate_is_not_accepted() -> None:
    _, audio = answer(offer("m=audio 4000 RTP/AVP 0 110", "a=rtpmap:110 telephone-event/48000"))
    assert audio.dtmf_payload_type is None


def test_dtmf_only_when_supported_lists_it() -> None:
    sdp, audio = answer(offer("m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000"), (PCMU,))
    assert audio.dtmf_payload_type is None
    assert sdp.media[0].formats == ("0",)


def test_other_streams_rejected_with_port_zero_same_order_and_count() -> None:
    sdp, audio = answer(
        offer(
            "m=video 5000 RTP/AVP 96",
            "a=rtpmap:96 H264/90000",
            "m=audio 4000 RTP/SAVP 0",
            "m=audio 4002 RTP/AVP 0",
            "m=audio 4004 RTP/AVP 8",
            "m=image 6000 udptl t38",
        )
    )
    assert audio.media_index == 2 and audio.remote_port == 4002
    assert [(m.media, m.port, m.proto, m.formats) for m in sdp.media] == [
        ("video", 0, "RTP/AVP", ("96",)),
        ("audio", 0, "RTP/SAVP", ("0",)),
        ("audio", 30000, "RTP/AVP", ("0",)),
        ("audio", 0, "RTP/AVP", ("8",)),  # the appliance takes one audio stream per call
        ("image", 0, "udptl", ("t38",)),
    ]
    assert all(m.attributes == () for i, m in enumerate(sdp.media) if i != 2)
    assert parse_sdp(sdp.to_bytes()) == sdp


def test_audio_stream_without_common_codec_is_rejected_and_next_one_tried() -> None:
    sdp, audio = answer(offer("m=audio 4000 RTP/AVP 18", "m=audio 4002 RTP/AVP 8"))
    assert audio.media_index == 1
    assert [m.port for m in sdp.media] == [0, 30000]


def test_disabled_stream_in_the_offer_is_not_accepted() -> None:
    sdp, audio = answer(offer("m=audio 0 RTP/AVP 8", "m=audio 4002 RTP/AVP 0"))
    assert (audio.media_index, audio.codec) == (1, PCMU)
    assert sdp.media[0].port == 0


def test_no_common_codec_is_488() -> None:
    with pytest.raises(SdpNegotiationError) as info:
        answer(offer("m=audio 4000 RTP/AVP 18 9"))
    assert (info.value.status, info.value.reason) == (488, "No common audio codec")


@pytest.mark.parametrize(
    "media",
    [(), ("m=video 5000 RTP/AVP 96",), ("m=audio 0 RTP/AVP 0",), ("m=audio 4000 UDP/TLS/RTP/SAVPF 0",)],
)
def test_no_usable_audio_stream_is_488(media: tuple[str, ...]) -> None:
    with pytest.raises(SdpNegotiationError) as info:
        answer(offer(*media))
    assert (info.value.status, info.value.reason) == (488, "No audio stream over RTP/AVP in the offer")


def test_missing_connection_is_400() -> None:
    with pytest.raises(SdpDecodeError) as info:
        answer(offer("m=audio 4000 RTP/AVP 0", session=""))
    assert (info.value.status, info.value.reason) == (400, "audio stream has no c= line")


def test_hostname_connection_is_488() -> None:
    with pytest.raises(SdpNegotiationError):
        answer(offer("m=audio 4000 RTP/AVP 0", session="c=IN IP4 localhost"))


def test_media_level_connection_wins_and_rtcp_attribute_is_used() -> None:
    _, audio = answer(offer("m=audio 4000 RTP/AVP 0", "c=IN IP4 127.0.0.5", "a=rtcp:4444"))
    assert (audio.remote_address, audio.remote_port, audio.remote_rtcp_port) == ("127.0.0.5", 4000, 4444)


def test_ipv6_offer_and_answer() -> None:
    sdp = parse_sdp((VALID / "ipv6_hold_sendonly.sdp").read_bytes())
    ans, audio = answer_audio(
        sdp,
        local_address="::1",
        local_port=30002,
        supported=DEFAULT_AUDIO_CODECS,
        session_id=1,
        session_version=1,
    )
    assert audio.remote_address == "::1" and audio.codec == PCMU and audio.dtmf_payload_type == 101
    assert ans.origin.addrtype == "IP6" and ans.connection == Connection("IN", "IP6", "::1")
    assert audio.direction is Direction.RECVONLY
    assert ans.media[0].direction is Direction.RECVONLY


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ("sendrecv", Direction.SENDRECV),
        ("sendonly", Direction.RECVONLY),
        ("recvonly", Direction.SENDONLY),
        ("inactive", Direction.INACTIVE),
    ],
)
def test_direction_is_mirrored(offered: str, expected: Direction) -> None:
    sdp, audio = answer(offer("m=audio 4000 RTP/AVP 0", f"a={offered}"))
    assert audio.direction is expected
    assert sdp.media[0].direction is expected


def test_session_level_direction_is_mirrored() -> None:
    data = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=sendonly\r\n"
    _, audio = answer(parse_sdp(data + b"m=audio 4000 RTP/AVP 0\r\n"))
    assert audio.direction is Direction.RECVONLY


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ("sendrecv", Direction.RECVONLY),
        ("sendonly", Direction.RECVONLY),
        ("recvonly", Direction.INACTIVE),
        ("inactive", Direction.INACTIVE),
    ],
)
def test_unspecified_address_means_never_send(offered: str, expected: Direction) -> None:
    _, audio = answer(offer("m=audio 4000 RTP/AVP 0", f"a={offered}", session="c=IN IP4 0.0.0.0"))
    assert audio.direction is expected
    assert audio.remote_address == "0.0.0.0"


@pytest.mark.parametrize(
    ("offered", "expected"), [(None, 20), ("30", 30), ("10", 10), ("25", 20), ("22.5", 20)]
)
def test_ptime(offered: str | None, expected: int) -> None:
    lines = ["m=audio 4000 RTP/AVP 0"] + ([f"a=ptime:{offered}"] if offered else [])
    sdp, audio = answer(offer(*lines))
    assert audio.ptime == expected
    assert sdp.media[0].ptime == expected


def test_answer_timing_equals_the_offer() -> None:
    data = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=3034423619 3042462419\r\n"
    sdp, _ = answer(parse_sdp(data + b"m=audio 4000 RTP/AVP 0\r\n"))
    assert [(t.start, t.stop) for t in sdp.timing] == [(3034423619, 3042462419)]


def test_make_offer_bytes_and_self_answer() -> None:
    sdp = make_offer(local_address="127.0.0.1", local_port=20000, session_id=42, session_version=1)
    assert sdp.to_bytes() == (
        b"v=0\r\no=- 42 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 20000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    _, audio = answer(parse_sdp(sdp.to_bytes()))
    assert (audio.codec, audio.payload_type, audio.dtmf_payload_type, audio.remote_port) == (
        PCMA,
        8,
        101,
        20000,
    )


def test_make_offer_options() -> None:
    sdp = make_offer(
        local_address="::1", local_port=20002, session_id=1, session_version=2,
        codecs=(PCMU, TELEPHONE_EVENT), dtmf_payload_type=96, ptime=30, direction=Direction.SENDONLY,
    )  # fmt: skip
    (media,) = sdp.media
    assert media.formats == ("0", "96")
    assert media.fmtp(96) == "0-15" and media.ptime == 30 and media.direction is Direction.SENDONLY
    assert sdp.connection == Connection("IN", "IP6", "::1")
    with pytest.raises(ValueError, match="no static payload type"):
        make_offer(
            local_address="::1", local_port=1, session_id=1, session_version=1, codecs=(Codec("opus", 48000),)
        )


def test_hold_state() -> None:
    active = make_offer(local_address="127.0.0.1", local_port=20000, session_id=1, session_version=1)
    assert not hold_state(active)
    for direction in (Direction.SENDONLY, Direction.INACTIVE):
        held = make_offer(
            local_address="127.0.0.1", local_port=20000, session_id=1, session_version=2, direction=direction
        )
        assert hold_state(held)
    assert not hold_state(
        make_offer(
            local_address="127.0.0.1",
            local_port=1,
            session_id=1,
            session_version=2,
            direction=Direction.RECVONLY,
        )
    )
    legacy = dataclasses.replace(active, connection=Connection("IN", "IP4", "0.0.0.0"))
    assert hold_state(legacy)
    session_level = dataclasses.replace(
        active,
        attributes=(Attribute("inactive"),),
        media=(dataclasses.replace(active.media[0], attributes=()),),
    )
    assert hold_state(session_level)
    disabled = dataclasses.replace(active, media=(dataclasses.replace(active.media[0], port=0),))
    assert not hold_state(disabled)
    assert not hold_state(dataclasses.replace(active, media=()))
