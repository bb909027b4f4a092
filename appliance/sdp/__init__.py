"""SDP (RFC 8866) for the appliance: the session description model, its parser and serializer, and the
RFC 3264 offer/answer rules for the one audio stream a call carries. Pure code: no I/O, no clocks."""

from appliance.sdp.codec import MAX_ATTRIBUTES, MAX_MEDIA, MAX_SDP_SIZE, parse_sdp
from appliance.sdp.errors import LocalProtocolError, SdpDecodeError, SdpError, SdpNegotiationError
from appliance.sdp.model import (
    Attribute,
    Bandwidth,
    Connection,
    Crypto,
    Direction,
    Fingerprint,
    Fmtp,
    MediaDescription,
    Origin,
    Rtcp,
    RtpMap,
    SessionDescription,
    Timing,
)
from appliance.sdp.offer_answer import (
    DEFAULT_AUDIO_CODECS,
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Codec,
    NegotiatedAudio,
    answer_audio,
    hold_state,
    make_offer,
)

__all__ = [
    "DEFAULT_AUDIO_CODECS",
    "MAX_ATTRIBUTES",
    "MAX_MEDIA",
    "MAX_SDP_SIZE",
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT",
    "Attribute",
    "Bandwidth",
    "Codec",
    "Connection",
    "Crypto",
    "Direction",
    "Fingerprint",
    "Fmtp",
    "LocalProtocolError",
    "MediaDescription",
    "NegotiatedAudio",
    "Origin",
    "Rtcp",
    "RtpMap",
    "SdpDecodeError",
    "SdpError",
    "SdpNegotiationError",
    "SessionDescription",
    "Timing",
    "answer_audio",
    "hold_state",
    "make_offer",
    "parse_sdp",
]
