"""The offer/answer model for the appliance's audio calls (RFC 3264).

Theory of operation. The appliance terminates exactly one audio stream per call, carried over plain RTP
(``RTP/AVP``, RFC 3551) with G.711 A-law or µ-law and, when the peer offers it, RFC 4733 telephone-events.
:func:`answer_audio` walks the offer's ``m=`` lines in order, accepts the first usable audio stream and
rejects every other stream by answering it with port 0, keeping the same number and order of ``m=`` lines
(RFC 3264 §6). Within the accepted stream the offerer's preference order decides the codec (RFC 3264 §6.1)
and the offerer's payload type numbers are kept, static and dynamic alike. The direction is mirrored
(sendonly → recvonly …); an offer whose connection address is ``0.0.0.0`` means "send nothing to me"
(RFC 3264 §8.4), so the answer never claims to send then.

Everything here is pure: the caller supplies the local address, port and the session id and version
(RFC 8866 §5.2), so answers are deterministic and testable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from appliance.sdp.errors import SdpDecodeError, SdpNegotiationError
from appliance.sdp.model import (
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
)

AUDIO_PROTO: Final = "RTP/AVP"
DEFAULT_PTIME: Final = 20
DEFAULT_DTMF_PAYLOAD_TYPE: Final = 101
# RFC 4733 §3.2: events 0-15 are the DTMF digits 0-9, *, #, A-D; the only ones the appliance handles.
DTMF_EVENTS: Final = frozenset(range(16))
# Packet times (ms) the appliance's media workers pace G.711 at; any other offered ptime falls back to 20.
_PTIMES: Final = frozenset({10, 20, 30, 40, 50, 60})


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format by name (RFC 3551 §6, case-insensitive) and clock rate.

    ``static_payload_type`` is the RFC 3551 number the format is offered under when it has one.
    """

    name: str
    clock_rate: int
    static_payload_type: int | None = None
    channels: int = 1

    def matches(self, rtpmap: RtpMap) -> bool:
        return (
            rtpmap.encoding.lower() == self.name.lower()
            and rtpmap.clock_rate == self.clock_rate
            and (rtpmap.channels or 1) == self.channels
        )

    def rtpmap(self, payload_type: int) -> RtpMap:
        return RtpMap(payload_type, self.name, self.clock_rate, None if self.channels == 1 else self.channels)


PCMU: Final = Codec("PCMU", 8000, 0)
PCMA: Final = Codec("PCMA", 8000, 8)
TELEPHONE_EVENT: Final = Codec("telephone-event", 8000)
# What the appliance offers and accepts by default: A-law first, as E1 lines in its markets carry A-law.
DEFAULT_AUDIO_CODECS: Final = (PCMA, PCMU, TELEPHONE_EVENT)

# RFC 3551 §6 table 4: audio payload types with a static meaning, used when the offer has no rtpmap for them.
STATIC_AUDIO: Final = {
    0: RtpMap(0, "PCMU", 8000), 3: RtpMap(3, "GSM", 8000), 4: RtpMap(4, "G723", 8000),
    5: RtpMap(5, "DVI4", 8000), 6: RtpMap(6, "DVI4", 16000), 7: RtpMap(7, "LPC", 8000),
    8: RtpMap(8, "PCMA", 8000), 9: RtpMap(9, "G722", 8000), 10: RtpMap(10, "L16", 44100, 2),
    11: RtpMap(11, "L16", 44100), 12: RtpMap(12, "QCELP", 8000), 13: RtpMap(13, "CN", 8000),
    14: RtpMap(14, "MPA", 90000), 15: RtpMap(15, "G728", 8000), 16: RtpMap(16, "DVI4", 11025),
    17: RtpMap(17, "DVI4", 22050), 18: RtpMap(18, "G729", 8000),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class NegotiatedAudio:
    """The outcome of an offer/answer exchange for the call's audio stream.

    ``remote_address``/``remote_port`` are where to send RTP (the media-level ``c=``, else the session one);
    ``remote_rtcp_port`` is from ``a=rtcp`` (RFC 3605) or the RTP port + 1. ``ptime`` is the packet time in
    ms the peer asked for (default 20). ``direction`` is the appliance's own: ``direction.sends`` says
    whether to send RTP at all. ``media_index`` is the position of the stream among the ``m=`` lines.
    """

    remote_address: str
    remote_port: int
    remote_rtcp_port: int
    codec: Codec
    payload_type: int
    ptime: int
    dtmf_payload_type: int | None
    direction: Direction
    media_index: int


def answer_audio(
    offer: SessionDescription,
    *,
    local_address: str,
    local_port: int,
    supported: Sequence[Codec],
    session_id: int,
    session_version: int,
) -> tuple[SessionDescription, NegotiatedAudio]:
    """Answer ``offer`` with one audio stream on ``local_address``:``local_port``.

    ``supported`` lists the audio codecs the appliance can take, plus :data:`TELEPHONE_EVENT` when it wants
    RFC 4733 digits. Raises :class:`SdpNegotiationError` (488) when no ``m=audio`` stream over RTP/AVP
    shares a codec with ``supported``, and :class:`SdpDecodeError` (400) when the accepted stream has no
    connection address at either level.
    """
    audio_codecs = [c for c in supported if c.name.lower() != TELEPHONE_EVENT.name]
    want_dtmf = any(c.name.lower() == TELEPHONE_EVENT.name for c in supported)
    answered: list[MediaDescription] = []
    negotiated: NegotiatedAudio | None = None
    saw_audio = False
    for index, media in enumerate(offer.media):
        if negotiated is None and _is_candidate(media):
            saw_audio = True
            choice = _choose_codec(media, audio_codecs)
            if choice is not None:
                negotiated = _negotiate(offer, media, index, choice, want_dtmf)
                answered.append(_accepted_media(media, negotiated, local_port))
                continue
        answered.append(_rejected(media))
    if negotiated is None:
        if not saw_audio:
            raise SdpNegotiationError("No audio stream over RTP/AVP in the offer")
        raise SdpNegotiationError("No common audio codec")
    answer = SessionDescription(
        origin=_origin(local_address, session_id, session_version),
        session_name="-",
        connection=_connection(local_address),
        # RFC 3264 §6: the t= line of the answer must equal the offer's.
        timing=tuple(Timing(t.start, t.stop) for t in offer.timing),
        media=tuple(answered),
    )
    return answer, negotiated


def make_offer(
    *,
    local_address: str,
    local_port: int,
    session_id: int,
    session_version: int,
    codecs: Sequence[Codec] = DEFAULT_AUDIO_CODECS,
    dtmf_payload_type: int = DEFAULT_DTMF_PAYLOAD_TYPE,
    ptime: int = DEFAULT_PTIME,
    direction: Direction = Direction.SENDRECV,
) -> SessionDescription:
    """An offer for one audio stream: ``codecs`` in preference order under their static payload types,
    telephone-event under ``dtmf_payload_type`` (events 0-15), each with an rtpmap line."""
    formats: list[str] = []
    attributes: list[Attribute] = []
    for codec in codecs:
        if codec.name.lower() == TELEPHONE_EVENT.name:
            pt = dtmf_payload_type
        elif codec.static_payload_type is not None:
            pt = codec.static_payload_type
        else:
            raise ValueError(f"codec {codec.name} has no static payload type")
        formats.append(str(pt))
        attributes.append(Attribute("rtpmap", str(codec.rtpmap(pt))))
        if codec.name.lower() == TELEPHONE_EVENT.name:
            attributes.append(Attribute("fmtp", f"{pt} 0-15"))
    attributes.append(Attribute("ptime", str(ptime)))
    attributes.append(Attribute(direction.value))
    media = MediaDescription("audio", local_port, AUDIO_PROTO, tuple(formats), attributes=tuple(attributes))
    return SessionDescription(
        origin=_origin(local_address, session_id, session_version),
        session_name="-",
        connection=_connection(local_address),
        media=(media,),
    )


def hold_state(sdp: SessionDescription) -> bool:
    """True when ``sdp`` puts the call on hold: its first active audio stream is ``sendonly`` or
    ``inactive`` (RFC 3264 §8.4), or goes to the connection address ``0.0.0.0`` (the RFC 2543 way).

    A description without an active audio stream (none, or only port 0) is not a hold.
    """
    for media in sdp.media:
        if media.media == "audio" and media.port != 0:
            connection = sdp.connection_for(media)
            if connection is not None and connection.is_unspecified:
                return True
            return not sdp.direction_for(media).receives
    return False


def _is_candidate(media: MediaDescription) -> bool:
    return media.media == "audio" and media.port != 0 and media.proto.upper() == AUDIO_PROTO


def audio_formats(media: MediaDescription) -> tuple[RtpMap, ...]:
    """A stream's formats in order, each with its rtpmap or its RFC 3551 static meaning (formats with
    neither are left out)."""
    rtpmaps = media.rtpmaps()
    out = []
    for pt in media.payload_types:
        rtpmap = rtpmaps.get(pt) or STATIC_AUDIO.get(pt)
        if rtpmap is not None:
            out.append(rtpmap)
    return tuple(out)


def same_codec(a: RtpMap, b: RtpMap) -> bool:
    """Whether two formats name the same codec whatever their payload type numbers (RFC 3264 §6.1: the
    encoding name is compared case-insensitively, with the clock rate and channel count)."""
    return (
        a.encoding.lower() == b.encoding.lower()
        and a.clock_rate == b.clock_rate
        and (a.channels or 1) == (b.channels or 1)
    )


def _choose_codec(media: MediaDescription, codecs: Sequence[Codec]) -> tuple[Codec, int] | None:
    for rtpmap in audio_formats(media):
        for codec in codecs:
            if codec.matches(rtpmap):
                return codec, rtpmap.payload_type
    return None


def _negotiate(
    offer: SessionDescription, media: MediaDescription, index: int, choice: tuple[Codec, int], want_dtmf: bool
) -> NegotiatedAudio:
    codec, payload_type = choice
    dtmf = None
    if want_dtmf:
        for rtpmap in audio_formats(media):
            if TELEPHONE_EVENT.matches(rtpmap) and _dtmf_events(media.fmtp(rtpmap.payload_type)):
                dtmf = rtpmap.payload_type
                break
    connection = offer.connection_for(media)
    if connection is None:
        raise SdpDecodeError("audio stream has no c= line")
    try:
        ipaddress.ip_address(connection.host)
    except ValueError:
        raise SdpNegotiationError("audio stream: connection address is not an IP address") from None
    direction = offer.direction_for(media).mirrored()
    if connection.is_unspecified:
        # RFC 3264 §8.4: neither RTP nor RTCP is to be sent to this peer.
        direction = Direction.of(False, direction.receives)
    rtcp = media.rtcp
    ptime = media.ptime
    return NegotiatedAudio(
        remote_address=connection.host,
        remote_port=media.port,
        remote_rtcp_port=rtcp.port if rtcp is not None else media.port + 1,
        codec=codec,
        payload_type=payload_type,
        ptime=int(ptime) if ptime is not None and ptime in _PTIMES else DEFAULT_PTIME,
        dtmf_payload_type=dtmf,
        direction=direction,
        media_index=index,
    )


def _accepted_media(offered: MediaDescription, audio: NegotiatedAudio, local_port: int) -> MediaDescription:
    formats = [str(audio.payload_type)]
    attributes = [Attribute("rtpmap", str(audio.codec.rtpmap(audio.payload_type)))]
    if audio.dtmf_payload_type is not None:
        pt = audio.dtmf_payload_type
        formats.append(str(pt))
        attributes.append(Attribute("rtpmap", str(TELEPHONE_EVENT.rtpmap(pt))))
        attributes.append(Attribute("fmtp", f"{pt} {_ranges(_dtmf_events(offered.fmtp(pt)))}"))
    attributes.append(Attribute("ptime", str(audio.ptime)))
    attributes.append(Attribute(audio.direction.value))
    return MediaDescription("audio", local_port, offered.proto, tuple(formats), attributes=tuple(attributes))


def _rejected(offered: MediaDescription) -> MediaDescription:
    """RFC 3264 §6: a declined stream is answered with port 0 and the offered formats (the line needs one)."""
    return MediaDescription(offered.media, 0, offered.proto, offered.formats)


def _dtmf_events(offered: str | None) -> list[int]:
    """The events both sides support (RFC 4733 §2.4.1 fmtp ranges); an offer without a list means 0-15."""
    events = set(DTMF_EVENTS)
    if offered:
        wanted: set[int] = set()
        for item in offered.replace(" ", "").split(","):
            low, _, high = item.partition("-")
            if low.isascii() and low.isdigit() and len(low) <= 3:
                top = high if high.isascii() and high.isdigit() and len(high) <= 3 else low
                wanted.update(range(int(low), int(top) + 1))
        events &= wanted or DTMF_EVENTS
    return sorted(events)


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"``; ``values`` is sorted and not empty."""
    parts: list[str] = []
    start = prev = values[0]
    for v in [*values[1:], -2]:
        if v != prev + 1:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = v
        prev = v
    return ",".join(parts)


def _origin(address: str, session_id: int, session_version: int) -> Origin:
    return Origin("-", session_id, session_version, "IN", _addrtype(address), address)


def _connection(address: str) -> Connection:
    return Connection("IN", _addrtype(address), address)


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"
