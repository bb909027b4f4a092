"""TDM → RTP: one 160-octet A-law frame of a timeslot becomes one RTP packet (RFC 3551 §4.5.14 PCMA/PCMU).

Theory of operation. The span delivers each timeslot's audio in 20 ms frames of 160 A-law octets
(:mod:`hw.e1.links`), so the packetiser needs no buffering: a frame is one packet, sent at once. The
payload is the frame as it is (PCMA) or translated octet by octet to µ-law with G.711 Table 4 (PCMU).
Sequence numbers go up by one and timestamps by 160 per packet from random starting values and a random
SSRC (RFC 3550 §5.1, §8.1), drawn by the caller so tests are deterministic. The marker bit is set on the
first packet of the stream and on the first after the span came back (RFC 3551 §4.1: the first packet of
a talk spurt; a far end that vanished and returned starts a new one).

Pure code: no clocks or sockets.
"""

from __future__ import annotations

from typing import Final, Literal

from appliance.media.g711 import ALAW_TO_ULAW_TABLE
from appliance.media.rtp import RtpSender

Codec = Literal["PCMA", "PCMU"]
CODECS: Final[frozenset[str]] = frozenset({"PCMA", "PCMU"})
STATIC_TYPES: Final[dict[str, int]] = {"PCMA": 8, "PCMU": 0}  # RFC 3551 Table 4


class Packetiser:
    """One timeslot's outgoing RTP stream."""

    __slots__ = ("_marker", "codec", "sender")

    def __init__(
        self, *, codec: Codec, payload_type: int, ssrc: int, initial_seq: int, initial_timestamp: int
    ) -> None:
        self.codec: Codec = codec
        self.sender = RtpSender(
            ssrc=ssrc, payload_type=payload_type, initial_seq=initial_seq, initial_timestamp=initial_timestamp
        )
        self._marker = True

    def restart(self) -> None:
        """The next packet starts a talk spurt (marker set): the span's far end came back."""
        self._marker = True

    def packet(self, frame: bytes) -> bytes:
        """The RTP datagram carrying ``frame`` (A-law octets; 160 for 20 ms, other lengths are sent as
        they are with the timestamp advanced by their length)."""
        payload = frame.translate(ALAW_TO_ULAW_TABLE) if self.codec == "PCMU" else frame
        marker, self._marker = self._marker, False
        return self.sender.next_packet(payload, samples=len(frame), marker=marker).serialize()
