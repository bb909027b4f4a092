"""Media for the appliance: RTP packets, port pairs, and the silence the placeholder local IVR plays.

:mod:`appliance.media.rtp` and :class:`~appliance.media.silence.SilenceSource` are sans-I/O; only
:class:`~appliance.media.silence.SilencePlayer` touches sockets and the event loop.
"""

from appliance.media.ports import PortAllocator, PortsExhaustedError
from appliance.media.rtp import MediaError, RtpDecodeError, RtpExtension, RtpPacket, RtpSender, parse_rtp
from appliance.media.silence import ALAW_SILENCE, ULAW_SILENCE, SilencePlayer, SilenceSource, StreamStats

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "MediaError",
    "PortAllocator",
    "PortsExhaustedError",
    "RtpDecodeError",
    "RtpExtension",
    "RtpPacket",
    "RtpSender",
    "SilencePlayer",
    "SilenceSource",
    "StreamStats",
    "parse_rtp",
]
