"""The relay core of one call's media: two legs, latching, statistics, DTMF, transcoding, timeouts.

Theory of operation. A media worker owns one :class:`RelayCall` per call. Each leg (``"a"``, ``"b"``) has a
local relay port and a remote endpoint from its SDP (:class:`LegConfig`). :meth:`RelayCall.receive` takes
one datagram that arrived on a leg's RTP port and returns what to send, as ``(destination, datagram,
out_leg)`` tuples; the worker does the ``sendto``. Per packet:

1. The header is checked without building an :class:`~appliance.media.rtp.RtpPacket` (this is the hot
   path): too short, too long, not version 2, truncated CSRC/extension or bad padding is dropped and counted
   under a reason in :attr:`RelayCall.dropped`. Nothing the network sends makes ``receive`` raise.
2. The incoming leg's :class:`~appliance.media.latch.Latch` judges the source: it learns the phone's real
   (NATed) address and drops would-be hijackers (counted under ``"latch"``).
3. The incoming direction's :class:`~appliance.media.stats.StreamStats` and media timeout see the packet.
4. A telephone-event packet (RFC 4733) is fed to that leg's :class:`~appliance.media.dtmf.DtmfReceiver` and
   forwarded with its payload type mapped to the other leg's telephone-event type. A codec packet is
   forwarded with its payload type mapped to the other leg's codec type and, when one leg negotiated PCMA
   and the other PCMU, its payload transcoded octet for octet (G.711 Tables 3/4); sequence number,
   timestamp, SSRC, marker, CSRCs, extension and padding are kept. Any other payload type (comfort noise,
   say) is forwarded untouched. The destination is the other leg's latched address, or its SDP address
   until something was learnt.

RTCP arrives on the RTP port + 1 (RFC 3550 §11) and goes through :meth:`RelayCall.receive_rtcp`: its own
latch per leg, forwarded unchanged to the other leg's RTCP address.

Hold (:meth:`RelayCall.set_hold`): a leg whose SDP said sendonly/recvonly/inactive may leave either
direction silent, so while either leg is held neither direction times out; media still flows (music on
hold). :meth:`RelayCall.update_remote` applies a re-offer: a new address starts a fresh latch, new payload
types re-derive the mapping.

Events (:meth:`RelayCall.next_event`): :class:`FirstPacket`, :class:`SsrcChanged`, :class:`DtmfReceived`,
and the timeout module's :class:`~appliance.media.timeout.MediaTimedOut`,
:class:`~appliance.media.timeout.MediaResumed` and :class:`~appliance.media.timeout.OneWayAudio`, whose
direction is the name of the leg the media is received on; :attr:`RelayCall.events` is the queue itself, so
that a caller can see there is nothing to take without a call. Deadlines: :meth:`RelayCall.get_timer` and
:meth:`RelayCall.handle_timer`; :attr:`RelayCall.wake` is a lower bound of the next one kept up to date
without any call (a worker sweeping hundreds of calls compares it with ``now``), and
:attr:`RelayCall.latch_epoch` counts the RTP latches learnt or moved (the worker judges the call for the
kernel fast path only when it changed). Per packet, the common case -- the latched source, the next
sequence number, no deadline passed, the same codec both sides -- is a header unpack, a few comparisons,
the statistics update and one list of one tuple.

Pure code: no sockets, no clocks; ``now`` is a parameter.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

from appliance.media.dtmf import DtmfDecodeError, DtmfReceiver
from appliance.media.g711 import ALAW_TO_ULAW_TABLE, ULAW_TO_ALAW_TABLE
from appliance.media.latch import Address, Decision, LatchState, StreamLatches
from appliance.media.rtp import MediaError
from appliance.media.stats import StreamStats
from appliance.media.timeout import CallMediaWatch, FlowState, MediaEvent

log = logging.getLogger("appliance.media.relay")

Leg = Literal["a", "b"]
Outgoing = tuple[Address, bytes, str]

CLOCK_RATE: Final = 8000
# Ethernet MTU minus the IPv4 and UDP headers: a larger datagram arrived fragmented, which no phone does.
DEFAULT_MAX_PACKET: Final = 1472
DEFAULT_MEDIA_TIMEOUT: Final = 30.0
DEFAULT_RELATCH_AFTER: Final = 3
RTP_HEADER: Final = 12
RTCP_HEADER: Final = 8

# Drop reasons, the keys of RelayCall.dropped.
DROP_SHORT: Final = "short"
DROP_OVERSIZED: Final = "oversized"
DROP_VERSION: Final = "version"
DROP_TRUNCATED: Final = "truncated"
DROP_PADDING: Final = "padding"
DROP_LATCH: Final = "latch"
DROP_NO_DESTINATION: Final = "no-destination"
DROP_RTCP_TYPE: Final = "rtcp-type"
DROP_DTMF: Final = "dtmf-payload"

_G711_TABLES: Final[dict[tuple[str, str], bytes]] = {
    ("PCMA", "PCMU"): ALAW_TO_ULAW_TABLE,
    ("PCMU", "PCMA"): ULAW_TO_ALAW_TABLE,
}
_LEGS: Final = ("a", "b")
# RFC 3550 §5.1 fixed header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC -- in one call.
_RTP_FIXED: Final = struct.Struct("!BBHII").unpack_from


class RelayUsageError(MediaError):
    """The worker misused the relay (an unknown leg name); a defect in the caller, never the peer."""


@dataclass(frozen=True, slots=True)
class LegConfig:
    """The remote side of one leg as its SDP described it.

    ``address`` is the ``c=``/``m=`` endpoint (None while unknown or 0.0.0.0); ``codec`` is the encoding
    name of ``codec_pt`` (``"PCMA"``, ``"PCMU"``, ...); ``event_pt`` is the telephone-event payload type, None
    if not negotiated; ``rtcp_port`` is an ``a=rtcp`` port (RFC 3605), else RTP port + 1 is assumed;
    ``timeout`` the seconds of silence allowed from this leg's peer (positive), None for the call's
    ``media_timeout``.
    """

    address: Address | None
    codec_pt: int
    codec: str
    event_pt: int | None = None
    rtcp_port: int | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.codec_pt <= 127 or (self.event_pt is not None and not 0 <= self.event_pt <= 127):
            raise ValueError("payload type out of range 0-127")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError("media timeout must be positive")
        if self.event_pt == self.codec_pt:
            raise ValueError("codec and telephone-event need distinct payload types")


@dataclass(frozen=True, slots=True)
class FirstPacket:
    """The first RTP packet accepted on ``leg``, from ``source`` at ``at``."""

    leg: str
    source: Address
    at: float


@dataclass(frozen=True, slots=True)
class SsrcChanged:
    """The stream received on ``leg`` changed SSRC (a new stream, e.g. after a transfer or re-INVITE)."""

    leg: str
    old: int
    new: int


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A digit pressed on the far end of ``leg``, reported once per RFC 4733 event."""

    leg: str
    digit: str
    duration_ms: int
    started_at: float


RelayEvent = FirstPacket | SsrcChanged | DtmfReceived | MediaEvent


class _Route:
    """How packets received on one leg reach the other: payload type rewrites and transcoding tables.

    ``rewrite`` maps an incoming payload type to the outgoing second header octet's low 7 bits and the
    translation table for the payload (None: payload unchanged); a type absent from it is forwarded as it
    came, which is also what a type mapped to itself untranslated becomes.
    """

    __slots__ = ("event_pt", "rewrite")

    def __init__(self, incoming: LegConfig, outgoing: LegConfig) -> None:
        self.rewrite: dict[int, tuple[int, bytes | None]] = {
            incoming.codec_pt: (
                outgoing.codec_pt,
                _G711_TABLES.get((incoming.codec.upper(), outgoing.codec.upper())),
            )
        }
        self.event_pt = incoming.event_pt
        if incoming.event_pt is not None:
            # Without a telephone-event type on the other leg the events go through as they are; the
            # DTMF is still reported to call control from this side.
            out_event = outgoing.event_pt if outgoing.event_pt is not None else incoming.event_pt
            self.rewrite[incoming.event_pt] = (out_event, None)
        # A type that maps to itself untranslated needs no rewrite: such packets go out as they came.
        for pt, (out_pt, table) in list(self.rewrite.items()):
            if out_pt == pt and table is None:
                del self.rewrite[pt]


class _LegState:
    """What the relay keeps about one leg: its SDP, latches, received-direction stats, DTMF, hold."""

    __slots__ = (
        "config",
        "dtmf",
        "held",
        "last_ssrc",
        "latches",
        "name",
        "pending",
        "quiet_ok",
        "route",
        "stats",
    )

    def __init__(self, name: str, config: LegConfig, latches: StreamLatches) -> None:
        self.name = name
        self.config = config
        self.latches = latches
        self.stats = StreamStats()
        self.dtmf = DtmfReceiver(clock_rate=CLOCK_RATE)
        self.held = False
        self.last_ssrc: int | None = None
        self.route: _Route | None = None
        # The latest packet time not yet given to the media watch (see RelayCall._sync).
        self.pending: float | None = None
        # Whether a packet on this leg can leave the watch untold for now: neither direction is timed out
        # (a packet then changes no state and starts no one-way audio).
        self.quiet_ok = True


class RelayCall:
    """The worker-side media state of one call.

    ``local_a``/``local_b`` are the relay's own RTP ports for each leg (RTCP on the port + 1);
    ``media_timeout`` is the silence allowed per direction unless the leg's :attr:`LegConfig.timeout` gives
    its own (changed later by :meth:`set_timeout`); ``strict`` latching only accepts sources from
    the IP the SDP named (see :class:`~appliance.media.latch.Latch`), and falls back to open latching on a
    leg whose SDP address is unknown; ``relatch_after`` packets in a row from a new source with the
    latched SSRC follow a NAT rebinding.
    """

    __slots__ = (
        "_default_timeout",
        "_due",
        "_legs",
        "_other",
        "_watch",
        "dropped",
        "events",
        "latch_epoch",
        "local_ports",
        "max_packet",
        "relatch_after",
        "strict",
        "wake",
    )

    def __init__(
        self,
        *,
        local_a: int,
        local_b: int,
        remote_a: LegConfig,
        remote_b: LegConfig,
        now: float,
        media_timeout: float = DEFAULT_MEDIA_TIMEOUT,
        strict: bool = False,
        relatch_after: int = DEFAULT_RELATCH_AFTER,
        max_packet: int = DEFAULT_MAX_PACKET,
    ) -> None:
        if max_packet < RTP_HEADER:
            raise ValueError("max_packet below the RTP header size")
        self.local_ports: dict[str, int] = {"a": local_a, "b": local_b}
        self.strict = strict
        self.relatch_after = relatch_after
        self.max_packet = max_packet
        self._legs: dict[str, _LegState] = {
            "a": _LegState("a", remote_a, self._latches(remote_a)),
            "b": _LegState("b", remote_b, self._latches(remote_b)),
        }
        self._other: dict[str, _LegState] = {"a": self._legs["b"], "b": self._legs["a"]}
        self._route()
        self._default_timeout = media_timeout
        own = {leg: config.timeout for leg, config in (("a", remote_a), ("b", remote_b))}
        self._watch = CallMediaWatch(
            media_timeout,
            now=now,
            forward="a",
            backward="b",
            timeouts={leg: timeout for leg, timeout in own.items() if timeout is not None},
        )
        self._due = now + min(timeout or media_timeout for timeout in own.values())
        # The earliest time handle_timer may have work: never later than a real deadline, possibly earlier
        # (packets deferred in _LegState.pending only push deadlines back). The worker's sweep compares it.
        self.wake = self._due
        # Bumped whenever an RTP latch learns or moves: the worker re-judges the call for the fast path
        # only then, instead of after every batch.
        self.latch_epoch = 0
        self.dropped: dict[str, int] = {}
        # Pending events (next_event takes them); the glue looks at it to skip draining an empty queue.
        self.events: deque[RelayEvent] = deque()

    # -- configuration ------------------------------------------------------------------------------------

    def _latches(self, config: LegConfig) -> StreamLatches:
        return StreamLatches(
            config.address,
            rtcp_mux=False,
            strict=self.strict and config.address is not None,
            relatch_after=self.relatch_after,
            rtcp_port=config.rtcp_port,
        )

    def _route(self) -> None:
        a, b = self._legs["a"], self._legs["b"]
        a.route = _Route(a.config, b.config)
        b.route = _Route(b.config, a.config)

    def _leg(self, leg: str) -> _LegState:
        try:
            return self._legs[leg]
        except KeyError:
            raise RelayUsageError(f"no leg {leg!r} in this call (expected 'a' or 'b')") from None

    def update_remote(self, leg: str, config: LegConfig) -> None:
        """Apply a re-offer/answer for ``leg``: a changed address (or RTCP port) starts a fresh latch, so the
        new endpoint is learnt again; payload types and codecs re-derive both directions' mapping."""
        state = self._leg(leg)
        old = state.config
        if (config.address, config.rtcp_port) != (old.address, old.rtcp_port):
            log.info("relay leg %s: remote %s -> %s, latch restarts", leg, old.address, config.address)
            state.latches = self._latches(config)
            self.latch_epoch += 1
        state.config = config
        self._route()

    def set_timeout(self, leg: str, timeout: float | None, now: float) -> None:
        """Allow ``timeout`` seconds of silence from ``leg``'s peer from ``now`` on (None: the call's
        ``media_timeout``); silence already longer than a shortened timeout is reported at the next timer."""
        self._leg(leg)
        self._sync()
        self._watch.set_timeout(leg, self._default_timeout if timeout is None else timeout, now)
        self._refresh()
        self._drain()

    def set_hold(self, leg: str, held: bool, now: float) -> None:
        """Put ``leg`` on hold (its SDP said sendonly/recvonly/inactive) or take it off; while either leg is
        held no direction times out, and leaving hold restarts both directions' clocks at ``now``."""
        self._leg(leg).held = held
        any_held = self._legs["a"].held or self._legs["b"].held
        self._sync()
        for name in _LEGS:
            self._watch.set_hold(name, any_held, now)
        self._refresh()
        self._drain()

    def recently_active(self, leg: str, now: float, within: float = 1.0) -> bool:
        """Whether media arrived on ``leg`` in the last ``within`` seconds: with a timeout on the other leg,
        that is one-way audio rather than a call whose media stopped both ways."""
        self._leg(leg)
        self._sync()
        watch = self._watch.directions[leg]
        return watch.state is FlowState.FLOWING and now - watch.last_activity <= within

    def activity(self, leg: str, now: float) -> None:
        """Media arrived on ``leg`` by another path than :meth:`receive` (the kernel fast path forwarded it
        and its counters moved): the leg's direction is alive at ``now``, for the media timeouts."""
        self._leg(leg)
        self._sync()
        self._watch.packet(leg, now)
        self._refresh()
        self._drain()

    # -- the per-packet path ------------------------------------------------------------------------------

    def _drop(self, reason: str) -> list[Outgoing]:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return []

    def receive(self, leg: str, data: bytes, source: Address, now: float) -> list[Outgoing]:
        """One datagram received on ``leg``'s RTP port from ``source`` at ``now``; returns the datagrams to
        send as ``(destination, datagram, out_leg)``. Never raises for anything the network sends; an
        unknown ``leg`` raises :class:`RelayUsageError`."""
        size = len(data)
        if size < RTP_HEADER:
            return self._drop(DROP_SHORT)
        if size > self.max_packet:
            return self._drop(DROP_OVERSIZED)
        first, second, seq, timestamp, ssrc = _RTP_FIXED(data)
        if first >> 6 != 2:
            return self._drop(DROP_VERSION)
        header = RTP_HEADER + ((first & 0x0F) << 2)
        if first & 0x10:
            if size < header + 4:
                return self._drop(DROP_TRUNCATED)
            header += 4 + ((data[header + 2] << 8 | data[header + 3]) << 2)
        end = size
        if first & 0x20:
            # RFC 3550 §5.1: the last octet counts the padding octets, itself included.
            end -= data[-1]
            if data[-1] == 0:
                return self._drop(DROP_PADDING)
        if end < header:
            return self._drop(DROP_TRUNCATED)
        try:
            state = self._legs[leg]
        except KeyError:
            raise RelayUsageError(f"no leg {leg!r} in this call (expected 'a' or 'b')") from None
        latch = state.latches.rtp
        if source == latch.latched and latch.state is LatchState.LATCHED:
            # Latch.decide's answer for its latched source, without the call: FORWARD, and the SSRC noted.
            latch.latched_ssrc = ssrc
        else:
            decision = latch.decide(source, ssrc, now)
            if decision is not Decision.FORWARD:
                if decision is Decision.DROP:
                    return self._drop(DROP_LATCH)
                self.latch_epoch += 1  # LATCHED or RELATCHED
        pt = second & 0x7F
        if ssrc != state.last_ssrc:
            self._new_ssrc(state, ssrc, source, now)
        state.stats.update(seq, timestamp, ssrc, end - header, now, CLOCK_RATE)
        if now < self._due and state.quiet_ok:
            # The common case: before any deadline, a packet only moves its direction's last activity, so
            # the watch is told later (_sync) and the per-packet path stays a comparison.
            state.pending = now
        else:
            self._sync()
            self._watch.packet(leg, now)
            self._refresh()
            # A resumption, or a deadline the timer had not applied yet: the events leave with this packet.
            self._drain()
        route = state.route
        assert route is not None  # set in __init__, kept by update_remote
        if pt == route.event_pt:
            try:
                state.dtmf.receive(timestamp, bool(second & 0x80), data[header:end], now)
            except DtmfDecodeError:
                return self._drop(DROP_DTMF)
            self._drain()
            digit_due = state.dtmf.get_timer()
            if digit_due is not None and digit_due < self.wake:
                self.wake = digit_due
        other = self._other[leg]
        out_latch = other.latches.rtp
        destination = out_latch.latched  # Latch.destination, inlined
        if destination is None:
            destination = out_latch.expected
            if destination is None:
                return self._drop(DROP_NO_DESTINATION)
        rewrite = route.rewrite.get(pt)
        if rewrite is None:
            return [(destination, data, other.name)]
        out_pt, table = rewrite
        if table is not None:
            data = b"".join(
                (
                    data[:1],
                    bytes(((second & 0x80) | out_pt,)),
                    data[2:header],
                    data[header:end].translate(table),
                    data[end:],
                )
            )
        elif out_pt != pt:
            data = b"".join((data[:1], bytes(((second & 0x80) | out_pt,)), data[2:]))
        return [(destination, data, other.name)]

    def _new_ssrc(self, state: _LegState, ssrc: int, source: Address, now: float) -> None:
        # The rare branch: the leg's first packet or a new stream.
        if state.last_ssrc is None:
            log.info("relay leg %s: first packet from %s, ssrc %08x", state.name, source, ssrc)
            self.events.append(FirstPacket(state.name, source, now))
        else:
            log.info("relay leg %s: ssrc %08x -> %08x", state.name, state.last_ssrc, ssrc)
            self.events.append(SsrcChanged(state.name, state.last_ssrc, ssrc))
        state.last_ssrc = ssrc

    def receive_rtcp(self, leg: str, data: bytes, source: Address, now: float) -> list[Outgoing]:
        """One datagram received on ``leg``'s RTCP port (RTP port + 1); forwarded unchanged to the other
        leg's RTCP address after that leg's RTCP latch accepted the source. Never raises for network input."""
        size = len(data)
        if size < RTCP_HEADER:
            return self._drop(DROP_SHORT)
        if size > self.max_packet:
            return self._drop(DROP_OVERSIZED)
        if data[0] >> 6 != 2:
            return self._drop(DROP_VERSION)
        # A compound packet starts with SR or RR (RFC 3550 §6.1); anything from 192 to 207 is kept so that
        # reduced-size RTCP (RFC 5506) and feedback (RFC 4585) pass through too.
        if not 192 <= data[1] <= 207:
            return self._drop(DROP_RTCP_TYPE)
        state = self._leg(leg)
        ssrc = int.from_bytes(data[4:8])
        if state.latches.rtcp.decide(source, ssrc, now) is Decision.DROP:
            return self._drop(DROP_LATCH)
        other = self._other[leg]
        destination = other.latches.rtcp.destination
        if destination is None:
            return self._drop(DROP_NO_DESTINATION)
        return [(destination, data, other.name)]

    # -- events, timers and figures -----------------------------------------------------------------------

    def _sync(self) -> None:
        """Give the media watch the latest packet time of each leg it has not seen yet.

        Every deferred packet arrived before the earliest deadline and on a direction that had not timed
        out, so no transition happened in between: telling the watch only the latest one leaves it in the
        state it would have reached packet by packet.
        """
        for state in self._legs.values():
            if state.pending is not None:
                self._watch.packet(state.name, state.pending)
                state.pending = None
        self._refresh()

    def _refresh(self) -> None:
        due = self._watch.get_timer()
        wake = self._due = due if due is not None else float("inf")
        # With unequal timeouts a packet on a silent but not timed-out leg can start one-way audio against
        # the other, timed-out one: while either direction is timed out, every packet is told at once.
        quiet_ok = all(w.state is not FlowState.TIMED_OUT for w in self._watch.directions.values())
        for state in self._legs.values():
            state.quiet_ok = quiet_ok
            digit_due = state.dtmf.get_timer()
            if digit_due is not None and digit_due < wake:
                wake = digit_due
        self.wake = wake

    def _drain(self) -> None:
        events = self.events
        while (event := self._watch.next_event()) is not None:
            events.append(event)
        for state in self._legs.values():
            while (digit := state.dtmf.next_event()) is not None:
                events.append(DtmfReceived(state.name, digit.digit, digit.duration_ms, digit.started_at))

    def next_event(self) -> RelayEvent | None:
        """The oldest event not yet taken, or None."""
        return self.events.popleft() if self.events else None

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` has something to do (a media timeout, a DTMF event whose
        end packets were lost), or None. Exact, at the price of a dozen calls: a worker sweeping many
        calls compares ``now`` with :attr:`wake` instead, a lower bound kept without any call."""
        self._sync()
        timers = [self._watch.get_timer()]
        timers.extend(state.dtmf.get_timer() for state in self._legs.values())
        due = [t for t in timers if t is not None]
        return min(due) if due else None

    def handle_timer(self, now: float) -> None:
        """Apply every deadline reached by ``now``; the resulting events come out of :meth:`next_event`."""
        self._sync()
        self._watch.handle_timer(now)
        for state in self._legs.values():
            state.dtmf.handle_timer(now)
        self._refresh()
        self._drain()

    def stats(self, leg: str) -> StreamStats:
        """The statistics of the stream received on ``leg``."""
        return self._leg(leg).stats

    def latches(self, leg: str) -> StreamLatches:
        """The RTP and RTCP latches of ``leg`` (learnt addresses, drop and re-latch counters)."""
        return self._leg(leg).latches
