"""One span's B-channels joined to RTP: the commands, the two audio paths and the counters (sans-I/O).

Theory of operation. Every timeslot of the span has a fixed RTP port (:mod:`~appliance.media.tdm.layout`)
that the process binds at start. Call control *opens* a timeslot (arms it, choosing PCMA or PCMU towards
RTP), *connects* it to the remote RTP address its SDP named, and *closes* it when the call ends.

* TDM → RTP (:meth:`TdmBridge.from_tdm`): each frame the far end sends on a connected timeslot becomes one
  RTP packet for the remote, at once (:class:`~appliance.media.tdm.frames.Packetiser`). Frames of a
  timeslot that is not connected are dropped and counted.
* RTP → TDM (:meth:`TdmBridge.from_rtp`): symmetric RTP (RFC 4961) — only the connected remote's packets
  are taken; any other source's are dropped and counted, as are non-RTP datagrams and payload types other
  than PCMA (8), PCMU (0) or the one connected (comfort noise and telephone-events are not expected: the
  PRI leg's SDP offers neither, DTMF on PRI is in-band). Taken packets go to the timeslot's
  :class:`~appliance.media.tdm.jitter.JitterBuffer`.
* Each 20 ms tick (:meth:`TdmBridge.tick`) takes one frame from every open timeslot's buffer for the B
  link: audio, concealment or A-law silence, so an open B-channel always carries a signal.

Pure code: the SSRCs and initial sequence numbers and timestamps come from the injected ``rand``
(``random.getrandbits``-like), ``now`` is passed in.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Final

from appliance.media.rtp import MediaError, RtpDecodeError, RtpPacket
from appliance.media.tdm.frames import CODECS, STATIC_TYPES, Codec, Packetiser
from appliance.media.tdm.jitter import JitterBuffer
from appliance.media.tdm.layout import tdm_port

log = logging.getLogger("appliance.media.tdm")

_ALAW_TYPE: Final = STATIC_TYPES["PCMA"]
_ULAW_TYPE: Final = STATIC_TYPES["PCMU"]
Address = tuple[str, int]


class ErrorCode(enum.IntEnum):
    """The ``code`` of a TDM worker's error reply."""

    BAD_MESSAGE = 1
    """Not a valid control message."""
    UNKNOWN_TIMESLOT = 2
    """The timeslot is not one of the span's B-channels."""
    WRONG_STATE = 3
    """Open on an open timeslot, or connect/close on one that is not open."""
    PORT_UNAVAILABLE = 4
    """The timeslot's fixed RTP port is held by another process."""
    INTERNAL = 5
    """The worker failed while handling the command."""


class TdmCommandError(MediaError):
    """A command the bridge refuses; ``code`` is the error reply's."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Timeslot:
    """One B-channel's RTP endpoint."""

    __slots__ = ("codec", "jitter", "packetiser", "port", "remote", "slot", "stats")

    def __init__(self, slot: int, port: int) -> None:
        self.slot = slot
        self.port = port
        self.codec: Codec | None = None  # None: not open
        self.remote: Address | None = None
        self.packetiser: Packetiser | None = None
        self.jitter = JitterBuffer()
        self.stats = dict.fromkeys(_COUNTERS, 0)


_COUNTERS: Final = (
    "tdm_frames",  # frames from the B link on an open, connected timeslot (each sent as one RTP packet)
    "tdm_unconnected",  # frames on a timeslot not open or not connected: dropped
    "rtp_received",  # RTP packets taken into a jitter buffer
    "rtp_stranger",  # datagrams from a source other than the connected remote: dropped
    "rtp_invalid",  # datagrams that are not RTP: dropped
    "rtp_other_type",  # RTP of another payload type: dropped
    "tdm_sent",  # frames sent on the B link
)


class TdmBridge:
    """The B-channels of one span (``timeslots``, RTP ports from ``ports_min``; ``unusable``: ports another
    process held when the worker bound them, whose timeslots cannot be opened)."""

    def __init__(
        self,
        *,
        timeslots: tuple[int, ...],
        ports_min: int,
        rand: Callable[[int], int],
        unusable: frozenset[int] = frozenset(),
    ) -> None:
        self.timeslots = {slot: Timeslot(slot, tdm_port(ports_min, timeslots, slot)) for slot in timeslots}
        self.unusable = unusable
        self._rand = rand
        self._open: dict[int, Timeslot] = {}
        self.link_up = False
        self.closed_stats = dict.fromkeys(_COUNTERS, 0)  # counters of closed timeslots, kept for stats
        self.jitter_closed: dict[str, int] = {}

    @property
    def open_timeslots(self) -> tuple[int, ...]:
        return tuple(sorted(self._open))

    def _slot(self, timeslot: int) -> Timeslot:
        ts = self.timeslots.get(timeslot)
        if ts is None:
            raise TdmCommandError(ErrorCode.UNKNOWN_TIMESLOT, f"timeslot {timeslot} is not on this span")
        return ts

    def _opened(self, timeslot: int) -> Timeslot:
        ts = self._slot(timeslot)
        if ts.codec is None:
            raise TdmCommandError(ErrorCode.WRONG_STATE, f"timeslot {timeslot} is not open")
        return ts

    # --- commands -------------------------------------------------------------------------------------

    def open(self, timeslot: int, codec: str) -> int:
        """Arm ``timeslot`` with ``codec`` towards RTP; returns its RTP port."""
        ts = self._slot(timeslot)
        if codec not in CODECS:
            raise TdmCommandError(ErrorCode.BAD_MESSAGE, f"codec {codec!r} is not PCMA or PCMU")
        if ts.codec is not None:
            raise TdmCommandError(ErrorCode.WRONG_STATE, f"timeslot {timeslot} is already open")
        if ts.port in self.unusable:
            raise TdmCommandError(ErrorCode.PORT_UNAVAILABLE, f"port {ts.port} is held by another process")
        ts.codec = "PCMU" if codec == "PCMU" else "PCMA"
        ts.jitter = JitterBuffer()
        self._open[timeslot] = ts
        log.info("tdm: timeslot %d open (%s) on port %d", timeslot, codec, ts.port)
        return ts.port

    def connect(self, timeslot: int, host: str, port: int, payload_type: int) -> None:
        """Send ``timeslot``'s audio to ``host:port`` as ``payload_type`` and take only that source's RTP."""
        ts = self._opened(timeslot)
        if not 0 <= payload_type <= 127 or not 0 < port <= 0xFFFF:
            raise TdmCommandError(ErrorCode.BAD_MESSAGE, "payload type or port out of range")
        codec: Codec = "PCMU" if ts.codec == "PCMU" else "PCMA"
        if ts.remote != (host, port):
            ts.jitter.reset()  # a new remote is a new stream
        ts.remote = (host, port)
        # PT 0 is µ-law and 8 A-law whatever was connected; the connected type (dynamic, say) is the codec's.
        ulaw = {_ULAW_TYPE, payload_type} if codec == "PCMU" else {_ULAW_TYPE} - {payload_type}
        ts.jitter.ulaw_types = frozenset(ulaw)
        if ts.packetiser is None or ts.packetiser.sender.payload_type != payload_type:
            ts.packetiser = Packetiser(
                codec=codec,
                payload_type=payload_type,
                ssrc=self._rand(32),
                initial_seq=self._rand(16),
                initial_timestamp=self._rand(32),
            )
        log.info("tdm: timeslot %d connected to %s:%d (payload type %d)", timeslot, host, port, payload_type)

    def close(self, timeslot: int) -> None:
        """Disarm ``timeslot``: its RTP is dropped and its B-channel no longer sent from here."""
        ts = self._opened(timeslot)
        for key, value in ts.stats.items():
            self.closed_stats[key] += value
        for key, value in ts.jitter.counters().items():
            self.jitter_closed[key] = self.jitter_closed.get(key, 0) + value
        ts.stats = dict.fromkeys(_COUNTERS, 0)
        ts.codec = ts.remote = ts.packetiser = None
        ts.jitter = JitterBuffer()
        del self._open[timeslot]
        log.info("tdm: timeslot %d closed", timeslot)

    # --- the audio paths ------------------------------------------------------------------------------

    def from_tdm(self, timeslot: int, samples: bytes) -> tuple[bytes, Address] | None:
        """A frame from the B link: the RTP datagram to send and where, or None (dropped)."""
        ts = self._open.get(timeslot)
        if ts is None or ts.remote is None or ts.packetiser is None:
            if ts is not None:
                ts.stats["tdm_unconnected"] += 1
            return None
        ts.stats["tdm_frames"] += 1
        return ts.packetiser.packet(samples), ts.remote

    def from_rtp(self, timeslot: int, data: bytes, source: Address, now: float) -> None:
        """A datagram that arrived on ``timeslot``'s RTP port from ``source``."""
        ts = self._open.get(timeslot)
        if ts is None:
            return  # not armed: the port is idle, what arrives is a stranger's or a previous call's
        remote = ts.remote
        if remote is None or source[0] != remote[0] or source[1] != remote[1]:
            ts.stats["rtp_stranger"] += 1
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpDecodeError:
            ts.stats["rtp_invalid"] += 1
            return
        pt = packet.payload_type
        sender = ts.packetiser
        if pt not in (_ALAW_TYPE, _ULAW_TYPE) and (sender is None or pt != sender.sender.payload_type):
            ts.stats["rtp_other_type"] += 1
            return
        ts.stats["rtp_received"] += 1
        ts.jitter.push(packet, now)

    def tick(self, now: float) -> list[tuple[int, bytes]]:
        """One 20 ms tick: the frame of every open timeslot, for the B link."""
        out = []
        for slot, ts in self._open.items():
            out.append((slot, ts.jitter.pop(now)))
            ts.stats["tdm_sent"] += 1
        return out

    def skip(self, now: float) -> None:
        """A tick the pacer skipped: its frames are played into nothing, so every playout point keeps pace
        with its sender."""
        for ts in self._open.values():
            ts.jitter.pop(now)

    def link_changed(self, up: bool) -> None:
        """The far end of the B link came (``up``) or went; packets after its return start a talk spurt."""
        self.link_up = up
        if up:
            for ts in self._open.values():
                if ts.packetiser is not None:
                    ts.packetiser.restart()

    def counters(self) -> dict[str, int]:
        """Every counter summed over the span's timeslots, closed ones included; jitter buffer counters
        are prefixed ``jitter_``."""
        total = dict(self.closed_stats)
        jitter = dict(self.jitter_closed)
        for ts in self.timeslots.values():
            for key, value in ts.stats.items():
                total[key] += value
            if ts.codec is not None:
                for key, value in ts.jitter.counters().items():
                    jitter[key] = jitter.get(key, 0) + value
        total.update({f"jitter_{key}": value for key, value in jitter.items()})
        return total
