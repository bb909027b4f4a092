"""Media for the appliance: RTP packets and port pairs here; the media workers in the submodules."""

from appliance.media.ports import PortAllocator, PortsExhaustedError
from appliance.media.rtp import MediaError, RtpDecodeError, RtpExtension, RtpPacket, RtpSender, parse_rtp

__all__ = [
    "MediaError",
    "PortAllocator",
    "PortsExhaustedError",
    "RtpDecodeError",
    "RtpExtension",
    "RtpPacket",
    "RtpSender",
    "parse_rtp",
]
