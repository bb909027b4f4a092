"""RTP packets (RFC 3550 §5) and the sender-side numbering of one RTP stream.

Theory of operation. :class:`RtpPacket` is the fixed header, the CSRC list, the optional header extension
(RFC 3550 §5.3.1), the payload and the padding, as a frozen value. :meth:`RtpPacket.parse` is total: it
returns a packet or raises :class:`RtpDecodeError` naming the fault, so a media worker drops a bad datagram
and counts it instead of failing. :class:`RtpSender` keeps what RFC 3550 §5.1 asks a sender to keep: a
sequence number that goes up by one per packet and a timestamp that goes up by the samples each packet
covers, both wrapping, both starting from random values the caller supplies (so tests are deterministic).

Pure code: no sockets, no clocks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

RTP_VERSION: Final = 2
HEADER_SIZE: Final = 12
_HEADER: Final = struct.Struct("!BBHII")
_EXTENSION: Final = struct.Struct("!HH")


class MediaError(Exception):
    """Base of every error raised by :mod:`appliance.media`."""


class RtpDecodeError(MediaError):
    """A datagram that is not an RTP packet; ``reason`` names the fault. It is dropped, never answered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """The header extension (RFC 3550 §5.3.1): a 16-bit profile-defined value and whole 32-bit words."""

    profile: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.profile <= 0xFFFF:
            raise ValueError("extension profile out of range")
        if len(self.data) % 4 or len(self.data) > 0xFFFF * 4:
            raise ValueError("extension data must be whole 32-bit words, at most 65535 of them")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet, version 2 (RFC 3550 §5.1).

    ``padding`` is the number of padding octets after the payload, the count octet included (0 = none,
    else 1..255); they are written as zeros followed by the count. Construction checks every field's range
    and raises ``ValueError``, so a packet that exists can always be serialized.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError("payload type out of range")
        if not 0 <= self.sequence_number <= 0xFFFF:
            raise ValueError("sequence number out of range")
        if not 0 <= self.timestamp <= 0xFFFFFFFF or not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise ValueError("timestamp or SSRC out of range")
        if len(self.csrcs) > 15 or any(not 0 <= c <= 0xFFFFFFFF for c in self.csrcs):
            raise ValueError("at most 15 CSRCs of 32 bits")
        if not 0 <= self.padding <= 255:
            raise ValueError("padding out of range")

    @property
    def version(self) -> int:
        return RTP_VERSION

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Decode one datagram; raises :class:`RtpDecodeError` and nothing else."""
        if len(data) < HEADER_SIZE:
            raise RtpDecodeError(f"RTP packet shorter than {HEADER_SIZE} octets")
        first, second, seq, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpDecodeError(f"RTP version {first >> 6}, expected 2")
        offset = HEADER_SIZE
        cc = first & 0x0F
        if len(data) < offset + 4 * cc:
            raise RtpDecodeError("RTP packet truncated in the CSRC list")
        csrcs = struct.unpack_from(f"!{cc}I", data, offset)
        offset += 4 * cc
        extension = None
        if first & 0x10:
            if len(data) < offset + 4:
                raise RtpDecodeError("RTP packet truncated in the extension header")
            profile, words = _EXTENSION.unpack_from(data, offset)
            offset += 4
            if len(data) < offset + 4 * words:
                raise RtpDecodeError("RTP packet truncated in the extension data")
            extension = RtpExtension(profile, data[offset : offset + 4 * words])
            offset += 4 * words
        end = len(data)
        padding = 0
        if first & 0x20:
            # RFC 3550 §5.1: the last octet counts the padding octets, itself included.
            padding = data[-1]
            if padding == 0:
                raise RtpDecodeError("RTP padding count is zero")
            if padding > end - offset:
                raise RtpDecodeError("RTP padding count exceeds the payload")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=data[offset:end],
            marker=bool(second & 0x80),
            csrcs=tuple(csrcs),
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        first = RTP_VERSION << 6 | len(self.csrcs)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        parts = [_HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc)]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            parts.append(_EXTENSION.pack(self.extension.profile, len(self.extension.data) // 4))
            parts.append(self.extension.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def parse_rtp(data: bytes) -> RtpPacket:
    """Module-level spelling of :meth:`RtpPacket.parse`."""
    return RtpPacket.parse(data)


class RtpSender:
    """Sequence number and timestamp bookkeeping for one outgoing stream (RFC 3550 §5.1).

    ``initial_seq`` and ``initial_timestamp`` should be random (RFC 3550 §5.1, against known-plaintext
    attacks on encryption); the caller draws them, and the SSRC (§8), so that this class stays deterministic.
    """

    __slots__ = ("next_seq", "next_timestamp", "octets_sent", "packets_sent", "payload_type", "ssrc")

    def __init__(self, *, ssrc: int, payload_type: int, initial_seq: int, initial_timestamp: int) -> None:
        if not 0 <= initial_seq <= 0xFFFF or not 0 <= initial_timestamp <= 0xFFFFFFFF:
            raise ValueError("initial sequence number or timestamp out of range")
        if not 0 <= ssrc <= 0xFFFFFFFF or not 0 <= payload_type <= 127:
            raise ValueError("SSRC or payload type out of range")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.next_seq = initial_seq
        self.next_timestamp = initial_timestamp
        # Counts for RTCP sender reports (RFC 3550 §6.4.1): packets and payload octets sent.
        self.packets_sent = 0
        self.octets_sent = 0

    def next_packet(self, payload: bytes, *, samples: int, marker: bool = False) -> RtpPacket:
        """The next packet, carrying ``payload`` that covers ``samples`` sampling instants; advances the
        sequence number by one and the timestamp by ``samples`` for the packet after it."""
        packet = RtpPacket(
            payload_type=self.payload_type,
            sequence_number=self.next_seq,
            timestamp=self.next_timestamp,
            ssrc=self.ssrc,
            payload=payload,
            marker=marker,
        )
        self.next_seq = (self.next_seq + 1) & 0xFFFF
        self.skip(samples)
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return packet

    def skip(self, samples: int) -> None:
        """Advance the timestamp over ``samples`` sampling instants that were not sent (RFC 3550 §5.1: the
        timestamp follows the sampling clock; the sequence number counts only packets sent)."""
        if samples < 0:
            raise ValueError("samples must not be negative")
        self.next_timestamp = (self.next_timestamp + samples) & 0xFFFFFFFF
