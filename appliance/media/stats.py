"""Per-direction RTP stream statistics: sequence tracking, loss, jitter and an estimated MOS.

Theory of operation. One :class:`StreamStats` watches one direction of one relayed RTP stream. The media
worker calls :meth:`StreamStats.update` once per received packet with the header fields, the payload length
and the arrival time it read at the I/O edge; nothing here reads a clock (STYLE.md rule 2).

* Sequence tracking is RFC 3550 Appendix A.1: a new source is on probation until ``MIN_SEQUENTIAL``
  packets arrive in sequence; a forward step below ``MAX_DROPOUT`` advances the highest sequence number
  (counting a 16-bit wrap as a new cycle); a packet up to ``MAX_MISORDER`` behind the highest is late (or a
  duplicate) and still counted as received, as the RFC does, so cumulative loss can go negative; any other
  jump is ignored unless the next packet follows it, which means the sender restarted its numbering.
  Two refinements on the appendix, both so that the figures stay meaningful: a late packet numbered before
  the base sequence (it lost a race with the probation packets) is not counted, and a 256-slot bitmap of
  recent sequence numbers tells duplicates from late packets.
* Loss is Appendix A.3: expected = extended highest - base + 1, lost = expected - received, and
  :meth:`StreamStats.interval_report` computes the 8-bit fraction lost since the previous call, as a
  receiver report block carries it (RFC 3550 §6.4.1).
* Interarrival jitter is Appendix A.8 / §6.4.1: J += (|D| - J) / 16 over the relative transit times of
  consecutive counted packets, in timestamp units (the arrival time is converted with the clock rate).
* A new SSRC resets sequence tracking and jitter and is counted; packet and octet totals and the first
  arrival belong to the direction, so they carry on. A sequence restart on the same SSRC keeps the jitter
  (the clock did not change) but takes a new transit baseline.
* :func:`estimate_mos` is the ITU-T G.107 E-model reduced to what a relay can observe (see its docstring).

Per-packet cost matters (the relay sees 50 000 packets/s per worker): the common path of ``update`` is a
handful of integer and float operations on slotted attributes and creates no containers.

Pure code: no sockets, no clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

# RFC 3550 Appendix A.1 constants, with the values the appendix recommends.
RTP_SEQ_MOD: Final = 1 << 16
MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
MIN_SEQUENTIAL: Final = 2

# Recent sequence numbers remembered to tell a duplicate from a late packet; a power of two > MAX_MISORDER.
_SEEN_SLOTS: Final = 256
_SEEN_MASK: Final = _SEEN_SLOTS - 1
_SEEN_CLEAR: Final = bytes(_SEEN_SLOTS)

_TS_MOD: Final = 1 << 32
_TS_HALF: Final = 1 << 31

# Cumulative lost in a report block is a signed 24-bit field (RFC 3550 §6.4.1): clamp, never wrap.
_LOST_MAX: Final = 0x7FFFFF
_LOST_MIN: Final = -0x800000

# ITU-T G.107 (12/2011 and 06/2015 numbering): R = Ro - Is - Id - Ie,eff + A (§7.1) is 93.2 with every
# parameter at its §7.7 default value; Id is then the echo terms only, as no delay is assumed.
R_DEFAULT: Final = 93.2
# G.711 with random loss (ITU-T G.113 Appendix I): Ie = 0, packet-loss robustness Bpl = 4.3
# without packet loss concealment and 25.1 with it. The relay cannot know what the far endpoint conceals,
# so the estimate defaults to no PLC, the pessimistic figure (a PRI gateway or an old phone may not conceal).
IE_G711: Final = 0.0
BPL_G711_NO_PLC: Final = 4.3
BPL_G711_PLC: Final = 25.1
# Effective latency: jitter buffer sized at twice the jitter, plus 10 ms for packetisation/processing.
JITTER_BUFFER_FACTOR: Final = 2.0
PROCESSING_DELAY_MS: Final = 10.0


@dataclass(frozen=True, slots=True)
class IntervalReport:
    """What a receiver report block (RFC 3550 §6.4.1) says about the stream since the previous report.

    ``fraction_lost`` is 8-bit fixed point (lost/expected × 256, 0 when packets were duplicated rather than
    lost); ``cumulative_lost`` is clamped to the signed 24-bit field; ``extended_highest_seq`` is the 32-bit
    field; ``jitter`` is in timestamp units, truncated to an integer as the field carries it.
    """

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    extended_highest_seq: int
    jitter: int
    expected_interval: int
    lost_interval: int


@dataclass(frozen=True, slots=True)
class StreamReport:
    """A snapshot of one direction of one stream, for call records, metrics and the control process.

    ``packets``/``octets`` count every packet fed in (payload octets only), whatever its sequence number;
    ``received``, ``expected`` and ``lost`` are the RFC 3550 A.3 figures for the current SSRC since its
    sequence numbering was last (re)started; ``first_arrival``/``last_arrival`` are None before any packet.
    """

    ssrc: int | None
    packets: int
    octets: int
    first_arrival: float | None
    last_arrival: float | None
    ssrc_changes: int
    restarts: int
    duplicates: int
    late: int
    received: int
    expected: int
    lost: int
    extended_highest_seq: int
    jitter: float
    jitter_ms: float
    loss_percent: float
    r_factor: float
    mos: float


def delay_impairment(ta_ms: float) -> float:
    """G.107 §7.4 delay impairment Idd for an absolute one-way delay ``ta_ms`` (0 up to 100 ms).

    Idd = 25·{(1 + X^6)^(1/6) − 3·(1 + (X/3)^6)^(1/6) + 2} with X = log2(Ta / 100 ms). The echo terms
    Idte and Idle are left at their default-parameter contribution, which ``R_DEFAULT`` already includes.
    """
    if ta_ms <= 100.0:
        return 0.0
    x = math.log2(ta_ms / 100.0)
    sixth = 1.0 / 6.0
    return 25.0 * (math.pow(1.0 + x**6, sixth) - 3.0 * math.pow(1.0 + (x / 3.0) ** 6, sixth) + 2.0)


def equipment_impairment(loss_percent: float, *, bpl: float = BPL_G711_NO_PLC, ie: float = IE_G711) -> float:
    """G.107 §7.5 effective equipment impairment for random loss (BurstR = 1).

    Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl), with Ppl the packet-loss percentage (clamped to
    0..100; negative loss, i.e. duplicates, counts as none).
    """
    ppl = min(max(loss_percent, 0.0), 100.0)
    return ie + (95.0 - ie) * ppl / (ppl + bpl)


def r_to_mos(r: float) -> float:
    """G.107 Annex B (B-4): MOS_CQE from the rating R; 1 below R = 0, 4.5 from R = 100."""
    if r <= 0.0:
        return 1.0
    if r >= 100.0:
        return 4.5
    return 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6


def r_factor(loss_percent: float, jitter_ms: float, one_way_delay_ms: float, *, plc: bool = False) -> float:
    """The G.107 rating for a G.711 stream: R = 93.2 − Idd(Ta) − Ie,eff(Ppl).

    Ta is the effective one-way latency: 2 × jitter (the receiver's jitter buffer) + 10 ms + the one-way
    network delay the caller supplies (the relay sees only its own side of the path).
    """
    ta = JITTER_BUFFER_FACTOR * jitter_ms + PROCESSING_DELAY_MS + one_way_delay_ms
    bpl = BPL_G711_PLC if plc else BPL_G711_NO_PLC
    return R_DEFAULT - delay_impairment(ta) - equipment_impairment(loss_percent, bpl=bpl)


def estimate_mos(
    loss_percent: float, jitter_ms: float, one_way_delay_ms: float = 0.0, *, plc: bool = False
) -> float:
    """Estimated MOS (1.0 … 4.5) of a G.711 stream: :func:`r_factor` mapped by :func:`r_to_mos`.

    With no loss and little delay this is about 4.41 (R = 93.2); it falls as loss, jitter or delay grow.
    """
    return r_to_mos(r_factor(loss_percent, jitter_ms, one_way_delay_ms, plc=plc))


class StreamStats:
    """Statistics of one direction of one RTP stream; feed every packet to :meth:`update`.

    ``one_way_delay_ms`` is the network delay assumed beyond the relay for the MOS estimate; ``plc`` says
    whether the receiving endpoint is assumed to conceal lost packets (G.113 Bpl 25.1 instead of 4.3).
    """

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_clock_rate",
        "_cycles",
        "_expected_prior",
        "_jitter",
        "_max_seq",
        "_probation",
        "_received",
        "_received_prior",
        "_seen",
        "_ssrc",
        "_transit",
        "duplicates",
        "first_arrival",
        "last_arrival",
        "late",
        "octets",
        "one_way_delay_ms",
        "packets",
        "plc",
        "restarts",
        "ssrc_changes",
    )

    def __init__(self, *, one_way_delay_ms: float = 0.0, plc: bool = False) -> None:
        self.one_way_delay_ms = one_way_delay_ms
        self.plc = plc
        self.packets = 0
        self.octets = 0
        self.first_arrival: float | None = None
        self.last_arrival: float | None = None
        self.ssrc_changes = 0
        self.restarts = 0
        self.duplicates = 0
        self.late = 0
        self._ssrc: int | None = None
        self._clock_rate = 8000
        self._seen = bytearray(_SEEN_SLOTS)
        self._reset_source(0)

    # -- RFC 3550 A.1 -----------------------------------------------------------------------------------

    def _reset_source(self, seq: int) -> None:
        """A new source or SSRC: on probation from ``seq`` (A.1 "source initialization")."""
        self._init_seq(seq)
        self._max_seq = (seq - 1) & 0xFFFF
        self._probation = MIN_SEQUENTIAL
        self._jitter = 0.0
        self._transit: float | None = None

    def _init_seq(self, seq: int) -> None:
        """A.1 ``init_seq``: ``seq`` becomes the base of the loss figures."""
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = RTP_SEQ_MOD + 1  # so seq == bad_seq is false
        self._cycles = 0
        self._received = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._seen[:] = _SEEN_CLEAR
        self._seen[seq & _SEEN_MASK] = 1

    def update(
        self, seq: int, rtp_timestamp: int, ssrc: int, payload_len: int, arrival: float, clock_rate: int
    ) -> bool:
        """Account one packet; return True if it counts as received for the current source.

        ``seq`` (0..65535), ``rtp_timestamp`` (0..2^32-1) and ``ssrc`` are the header fields of a packet that
        parsed; ``arrival`` is its arrival time in seconds on any monotonic scale; ``clock_rate`` (> 0) is the
        payload type's RTP clock in Hz. Packets on probation, ignored jumps and late packets older than the
        base are counted in ``packets``/``octets`` but return False.
        """
        self.packets += 1
        self.octets += payload_len
        self.last_arrival = arrival
        self._clock_rate = clock_rate
        if ssrc != self._ssrc:
            # Also the very first packet (no SSRC yet): the rare branch, kept off the common path.
            if self._ssrc is None:
                self.first_arrival = arrival
            else:
                self.ssrc_changes += 1
            self._ssrc = ssrc
            self._reset_source(seq)

        max_seq = self._max_seq
        udelta = (seq - max_seq) & 0xFFFF
        if udelta == 1 and not self._probation:
            # The common case, the next packet in order: the in-order branch below, without the gap.
            self._seen[seq & _SEEN_MASK] = 1
            if not seq:
                self._cycles += RTP_SEQ_MOD
            self._max_seq = seq
        elif self._probation:
            # A.1: a source is valid only once MIN_SEQUENTIAL packets arrived in sequence.
            if udelta == 1:
                self._probation -= 1
                self._max_seq = seq
                if self._probation:
                    return False
                self._init_seq(seq)
            else:
                self._probation = MIN_SEQUENTIAL - 1
                self._max_seq = seq
                return False
        elif 0 < udelta < MAX_DROPOUT:
            # In order, possibly with a gap: forget the skipped numbers' slots, a wrap is a new cycle.
            seen = self._seen
            if udelta > 1:
                for k in range(max_seq + 1, max_seq + min(udelta, _SEEN_SLOTS)):
                    seen[k & _SEEN_MASK] = 0
            seen[seq & _SEEN_MASK] = 1
            if seq < max_seq:
                self._cycles += RTP_SEQ_MOD
            self._max_seq = seq
        elif udelta == 0:
            # The highest packet again: A.1 counts it as received; it is a duplicate.
            self.duplicates += 1
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # A large jump: accept it only if the next packet follows it (the sender restarted).
            if seq != self._bad_seq:
                self._bad_seq = (seq + 1) & 0xFFFF
                return False
            self._init_seq(seq)
            self.restarts += 1
            self._transit = None
        else:
            # Up to MAX_MISORDER behind the highest: late or duplicated.
            behind = RTP_SEQ_MOD - udelta
            if self._cycles + max_seq - behind < self._base_seq:
                self.late += 1
                return False
            slot = seq & _SEEN_MASK
            if self._seen[slot]:
                self.duplicates += 1
            else:
                self._seen[slot] = 1
                self.late += 1
        self._received += 1

        # A.8: interarrival jitter over consecutive counted packets, in timestamp units.
        transit = arrival * clock_rate - rtp_timestamp
        last = self._transit
        self._transit = transit
        if last is not None:
            d = transit - last
            if d < 0:
                d = -d
            # The timestamp wraps at 2^32: a difference beyond half the space is a wrap, not a leap.
            if d > _TS_HALF:
                d = _TS_MOD - d
            self._jitter += (d - self._jitter) * 0.0625
        return True

    # -- RFC 3550 A.3 and reports -----------------------------------------------------------------------

    @property
    def ssrc(self) -> int | None:
        """The SSRC currently tracked, None before the first packet."""
        return self._ssrc

    @property
    def extended_highest_seq(self) -> int:
        """Cycles + highest sequence number since the base (A.1); 0 while the source is on probation."""
        if self._probation:
            return 0
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        """A.3 packets expected since the base sequence number; 0 while the source is on probation."""
        if self._probation:
            return 0
        return self._cycles + self._max_seq - self._base_seq + 1

    @property
    def received(self) -> int:
        """A.1 packets counted as received, duplicates included."""
        return self._received

    @property
    def lost(self) -> int:
        """A.3 cumulative loss: expected − received; negative when duplicates outnumber losses."""
        return self.expected - self._received

    @property
    def jitter(self) -> float:
        """A.8 interarrival jitter in timestamp units."""
        return self._jitter

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter in milliseconds, at the clock rate of the last packet."""
        return self._jitter * 1000.0 / self._clock_rate

    def interval_report(self) -> IntervalReport:
        """The receiver-report block view since the previous call, which starts a new interval (A.3)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self._received - self._received_prior
        self._received_prior = self._received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min((lost_interval << 8) // expected_interval, 255)
        return IntervalReport(
            ssrc=self._ssrc or 0,
            fraction_lost=fraction,
            cumulative_lost=min(max(expected - self._received, _LOST_MIN), _LOST_MAX),
            extended_highest_seq=self.extended_highest_seq & 0xFFFFFFFF,
            jitter=int(self._jitter),
            expected_interval=expected_interval,
            lost_interval=lost_interval,
        )

    def report(self) -> StreamReport:
        """A snapshot of every figure, with the MOS estimated from cumulative loss and current jitter."""
        expected = self.expected
        lost = expected - self._received
        loss_percent = 100.0 * lost / expected if expected > 0 and lost > 0 else 0.0
        jitter_ms = self.jitter_ms
        r = r_factor(loss_percent, jitter_ms, self.one_way_delay_ms, plc=self.plc)
        return StreamReport(
            ssrc=self._ssrc,
            packets=self.packets,
            octets=self.octets,
            first_arrival=self.first_arrival,
            last_arrival=self.last_arrival,
            ssrc_changes=self.ssrc_changes,
            restarts=self.restarts,
            duplicates=self.duplicates,
            late=self.late,
            received=self._received,
            expected=expected,
            lost=lost,
            extended_highest_seq=self.extended_highest_seq,
            jitter=self._jitter,
            jitter_ms=jitter_ms,
            loss_percent=loss_percent,
            r_factor=r,
            mos=r_to_mos(r),
        )
