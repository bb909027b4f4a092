"""The SDP reading the media anchor does: which stream is anchored, its codecs, telephone-event and SDES
keys (RFC 3264, RFC 4733, RFC 4568), each check failing with :class:`~appliance.calls.b2bua.MediaRefused`
(488, RFC 3261 §21.4.26)."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import replace
from typing import Final

from appliance.calls.errors import MediaRefused
from appliance.media import srtp as sdes
from appliance.media.control_events import LegSpec
from appliance.sdp.model import Attribute, MediaDescription, RtpMap, SessionDescription
from appliance.sdp.offer_answer import audio_formats

AVP: Final = "RTP/AVP"
SAVP: Final = "RTP/SAVP"


def narrowed(sdp: SessionDescription, spec: LegSpec) -> SessionDescription:
    """``sdp`` with its anchored stream down to the codec and telephone-event of ``spec``."""
    index, media = anchored_stream(sdp)
    keep = {str(spec.codec_pt)} | (set() if spec.event_pt is None else {str(spec.event_pt)})

    def kept(attribute: Attribute) -> bool:
        if attribute.name not in ("rtpmap", "fmtp"):
            return True
        return (attribute.value or "").split(" ", 1)[0] in keep

    media = replace(
        media,
        formats=tuple(f for f in media.formats if f in keep),
        attributes=tuple(a for a in media.attributes if kept(a)),
    )
    return replace(sdp, media=(*sdp.media[:index], media, *sdp.media[index + 1 :]))


def anchored_stream(sdp: SessionDescription) -> tuple[int, MediaDescription]:
    """The index and description of the stream the relay carries: the first enabled RTP audio stream."""
    for index, media in enumerate(sdp.media):
        if media.media == "audio" and media.port != 0 and media.proto.upper() in (AVP, SAVP):
            check_stream(sdp, media)
            return index, media
    raise MediaRefused(488, "SDP offers no RTP/AVP or RTP/SAVP audio stream")


def check_stream(sdp: SessionDescription, media: MediaDescription) -> None:
    """Raise unless ``media`` has an IP address to send to and a payload format we know."""
    connection = sdp.connection_for(media)
    if connection is None:
        raise MediaRefused(488, "SDP audio stream has no c= line")
    try:
        ipaddress.ip_address(connection.host)
    except ValueError:
        raise MediaRefused(488, "SDP connection address is not an IP address") from None
    if not codecs(media):
        raise MediaRefused(488, "SDP audio stream names no known payload format")


def is_srtp(media: MediaDescription) -> bool:
    """Whether the stream is RTP/SAVP (SRTP keyed by SDES)."""
    return media.proto.upper() == SAVP


def cryptos(media: MediaDescription) -> list[sdes.SdesCrypto]:
    """The stream's usable ``a=crypto`` lines, in order."""
    out = []
    for value in media.attribute_values("crypto"):
        try:
            out.append(sdes.parse_crypto(value))
        except sdes.SrtpError:
            continue  # RFC 4568 §7.1.1: an attribute we cannot use is skipped, the next one may do
    return out


def choose_crypto(media: MediaDescription) -> sdes.SdesCrypto:
    """The ``a=crypto`` an answer takes from an SRTP offer; raises without a usable one."""
    chosen = sdes.answer_crypto(cryptos(media))
    if chosen is None:
        raise MediaRefused(488, "SDP offers no usable a=crypto (SDES) for RTP/SAVP")
    return chosen


# Cached: one exchange reads the same stream's formats several times, and parsing the rtpmap lines is most
# of the anchor's cost per call.
codecs = functools.lru_cache(maxsize=256)(audio_formats)


def telephone_event(media: MediaDescription) -> RtpMap | None:
    """The stream's RFC 4733 telephone-event format at 8 kHz, if it has one."""
    return next(
        (c for c in codecs(media) if c.encoding.lower() == "telephone-event" and c.clock_rate == 8000),
        None,
    )
