"""The jitter buffer of one B-channel: RTP packets in, one 160-octet A-law frame out per 20 ms tick.

Theory of operation. The buffer is a window of :data:`CAP` samples (120 ms) of A-law starting at the
*playout point* (the RTP timestamp of the next sample to play, extended beyond 32 bits), with a mask of
the samples received. A packet is placed by its timestamp (RFC 3550 §5.1: the timestamp is the sampling
instant of its first octet), which reorders packets that arrive out of sequence-number order and
re-chunks any packetisation time (10, 30, 60 ms …) into 20 ms frames; the sequence number is not needed
for that. Unreceived samples read as A-law silence (0xD5), so a lost packet is a hole of silence.

States: ``IDLE`` (no packet yet, or the buffer ran dry), ``FILLING`` (playout waits until :data:`TARGET`,
40 ms, is buffered) and ``PLAYING`` (every :meth:`pop` plays the 160 samples at the playout point and
advances it). Choices, with reasons:

* **Fixed target, re-anchored per talk spurt.** When the buffer runs dry while playing, the playout point
  stops (the silence already played took the gap's time) and the next packet re-anchors it at that
  packet's timestamp; while filling, a packet older than the first one received (the first two packets
  of a call, reordered) moves the anchor back to it, never behind audio already played. A network stall
  therefore grows the delay by the stall rather than losing the stalled packets, and silence suppression
  gaps cost nothing; the cap bounds the growth.
* **Bounded depth, overflow drops the oldest.** A packet that would end beyond the window moves the
  playout point forward (the oldest audio is dropped, counted in samples): a sender whose clock runs fast
  or a burst after a stall cannot make the delay exceed 120 ms. Old audio is the least useful to a
  listener and to the IVR's digit detector alike.
* **Late and duplicate packets are dropped and counted**: late = wholly before the playout point (its
  slot was played, as silence); duplicate = every sample it carries already received.
* **Resynchronisation** on an SSRC change (RFC 3550 §8.2: a new source, whose timestamps bear no relation
  to the old ones) and on a timestamp that lands a whole window (120 ms) or more beyond the furthest sample
  received, or more than :data:`JUMP_BACK` behind the playout point (a sender that restarted its clock):
  the buffer is emptied and re-anchored.
* **Underrun conceals by repeating the last frame once**, then plays silence: one lost packet is less
  audible repeated than as a 20 ms hole (G.711 Appendix I repeats pitch periods; a whole frame is the
  cheap version of that); a longer loss must not buzz.
* **µ-law payloads** (payload types in ``ulaw_types``) are translated to A-law with G.711 Table 3.

Pure code: no clocks or sockets. ``now`` is taken for symmetry with the other machines and unused.
"""

from __future__ import annotations

import enum
from typing import Final

from appliance.media.g711 import ALAW_SILENCE_OCTET, ULAW_TO_ALAW_TABLE
from appliance.media.rtp import RtpPacket
from hw.e1.links import FRAME_OCTETS

TARGET: Final = 2 * FRAME_OCTETS  # 40 ms buffered before playout starts
CAP: Final = 6 * FRAME_OCTETS  # 120 ms at most buffered
JUMP_BACK: Final = (
    8000  # a timestamp more than 1 s behind the playout point is a new clock, not a late packet
)
_SILENCE: Final = bytes([ALAW_SILENCE_OCTET]) * CAP
_EMPTY_MASK: Final = bytes(CAP)
_FULL: Final = 1
_NO_FLOOR: Final = -(1 << 62)


class State(enum.Enum):
    IDLE = "idle"
    FILLING = "filling"
    PLAYING = "playing"


class JitterBuffer:
    """RTP → 160-octet A-law frames for one timeslot. :meth:`push` takes packets in any order; :meth:`pop`
    always returns exactly :data:`~hw.e1.links.FRAME_OCTETS` octets, and :attr:`depth` never exceeds
    :data:`CAP` samples. Counters are plain attributes (see :meth:`counters`)."""

    def __init__(self, *, ulaw_types: frozenset[int] = frozenset({0}), conceal: bool = True) -> None:
        self.ulaw_types = ulaw_types
        self.conceal = conceal
        self.state = State.IDLE
        self._window = bytearray(_SILENCE)
        self._mask = bytearray(_EMPTY_MASK)
        self._end = 0  # samples from the playout point to the end of the furthest sample received
        self._cursor = 0  # extended timestamp of the playout point
        self._floor = _NO_FLOOR  # the playout point after the last frame played: never moved back past it
        self._ssrc: int | None = None
        self._ref_ts = 0  # the 32-bit timestamp that _ref_ext extends
        self._ref_ext = 0
        self._last: bytes | None = None  # the last frame played from received audio, for concealment
        self.received = 0
        self.late = 0
        self.duplicate = 0
        self.empty = 0
        self.overflow_samples = 0
        self.underruns = 0
        self.concealed = 0
        self.resyncs = 0
        self.played = 0

    @property
    def depth(self) -> int:
        """Samples buffered from the playout point to the furthest one received (at most :data:`CAP`)."""
        return self._end

    def counters(self) -> dict[str, int]:
        return {
            "received": self.received,
            "late": self.late,
            "duplicate": self.duplicate,
            "empty": self.empty,
            "overflow_samples": self.overflow_samples,
            "underruns": self.underruns,
            "concealed": self.concealed,
            "resyncs": self.resyncs,
            "played": self.played,
        }

    def _extend(self, timestamp: int) -> int:
        """The timestamp extended beyond 32 bits, relative to the furthest one seen (RFC 3550 §A.1 does
        the same for sequence numbers): a delta within ±2^31 is taken as the nearer way round."""
        delta = ((timestamp - self._ref_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        ext = self._ref_ext + delta
        if delta > 0:
            self._ref_ts, self._ref_ext = timestamp, ext
        return ext

    def _anchor(self, packet: RtpPacket) -> int:
        """Empty the buffer and put the playout point at ``packet``'s timestamp."""
        self._ssrc = packet.ssrc
        self._ref_ts, self._ref_ext = packet.timestamp, 0
        self._cursor = 0
        self._floor = _NO_FLOOR
        self._window[:] = _SILENCE
        self._mask[:] = _EMPTY_MASK
        self._end = 0
        self.state = State.FILLING
        return 0

    def _advance(self, samples: int) -> None:
        """Move the playout point ``samples`` forward, dropping what was before it."""
        kept = max(0, CAP - samples)
        del self._window[: CAP - kept]
        self._window += _SILENCE[kept:]
        del self._mask[: CAP - kept]
        self._mask += _EMPTY_MASK[kept:]
        self._cursor += samples
        self._end = max(0, self._end - samples)

    def push(self, packet: RtpPacket, now: float) -> None:
        """Take one RTP packet of this timeslot's stream (the caller checked its source and payload type)."""
        del now
        payload = packet.payload
        if not payload:
            self.empty += 1
            return
        self.received += 1
        if packet.payload_type in self.ulaw_types:
            payload = payload.translate(ULAW_TO_ALAW_TABLE)
        if self._ssrc is None or packet.ssrc != self._ssrc:
            if self._ssrc is not None:
                self.resyncs += 1
            ext = self._anchor(packet)
        else:
            ext = self._extend(packet.timestamp)
        if len(payload) > CAP:  # a packet longer than the window: only its newest CAP samples can stay
            ext += len(payload) - CAP
            payload = payload[-CAP:]
        offset = ext - self._cursor
        if self.state is State.IDLE and offset >= 0:
            # The buffer ran dry: this packet starts a new talk spurt (see the module docstring).
            self._cursor += offset
            offset = 0
            self.state = State.FILLING
        elif offset - self._end >= CAP or offset < -JUMP_BACK:
            self.resyncs += 1
            offset = self._anchor(packet) + len(packet.payload) - len(payload)
        elif (
            self.state is State.FILLING
            and offset < 0
            and self._end - offset <= CAP
            and self._cursor + offset >= self._floor
        ):
            # Nothing played yet: a packet sent before the first one received (reordered) moves the
            # playout point back to it.
            self._window[:0] = _SILENCE[:-offset]
            del self._window[CAP:]
            self._mask[:0] = _EMPTY_MASK[:-offset]
            del self._mask[CAP:]
            self._cursor += offset
            self._end -= offset
            offset = 0
        if offset + len(payload) <= 0:
            self.late += 1
            return
        if offset < 0:  # partly played already: keep the part still ahead
            payload = payload[-offset:]
            offset = 0
        end = offset + len(payload)
        if end > CAP:
            excess = end - CAP
            self.overflow_samples += min(excess, self._end)
            self._advance(excess)
            offset -= excess
            end = CAP
        if self._mask.count(_FULL, offset, end) == end - offset:
            self.duplicate += 1
            return
        self._window[offset:end] = payload
        self._mask[offset:end] = b"\x01" * (end - offset)
        self._end = max(self._end, end)
        if self.state is not State.PLAYING:
            self.state = State.PLAYING if self._end >= TARGET else State.FILLING

    def pop(self, now: float) -> bytes:
        """The next 20 ms frame: received audio, a concealment frame, or silence; never anything but
        :data:`~hw.e1.links.FRAME_OCTETS` octets."""
        del now
        if self.state is not State.PLAYING:
            return _SILENCE[:FRAME_OCTETS]
        received = self._mask.count(_FULL, 0, FRAME_OCTETS)
        if received:
            frame = bytes(self._window[:FRAME_OCTETS])
            self._last = frame
            self.played += 1
        else:
            self.underruns += 1
            if self.conceal and self._last is not None:
                frame, self._last = self._last, None
                self.concealed += 1
            else:
                frame = _SILENCE[:FRAME_OCTETS]
        self._advance(FRAME_OCTETS)
        self._floor = self._cursor
        if self._end == 0:
            # Dry: the playout point waits for the next packet (which re-anchors it) instead of running
            # ahead of a sender that is only late.
            self.state = State.IDLE
        return frame

    def reset(self) -> None:
        """Forget the stream (the timeslot was closed or connected to another remote)."""
        self._ssrc = None
        self._window[:] = _SILENCE
        self._mask[:] = _EMPTY_MASK
        self._end = 0
        self._last = None
        self.state = State.IDLE
