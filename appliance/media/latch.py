"""Symmetric RTP/RTCP latching: learning where a leg's media really comes from, without being hijacked.

Theory of operation. A relay port expects media from the address the SDP named (RFC 4566 ``c=``/``m=``),
but a phone behind NAT sends from an address only its NAT knows. Symmetric RTP (RFC 4961) lets the relay
learn that address from the packets themselves and send the other direction back to it; RFC 7362 §3.2
("latching") describes the practice and its risk: whoever sends first, or sends later from elsewhere, could
steal the stream. :class:`Latch` applies these rules to one port:

* ``WAITING`` (nothing learnt): the first packet latches. In ``strict`` mode only a packet from the IP the
  SDP named may latch (any port, since NAT rewrites ports far more often than addresses); others drop.
* ``LATCHED``: packets from the latched source forward; a packet from anywhere else drops and is counted,
  and becomes a *candidate* for re-latching (state ``PROBING``) if its SSRC (RFC 3550 §8) equals the
  latched stream's, or, while the latched stream has not shown an SSRC, whatever SSRC it carries.
* ``PROBING``: the candidate re-latches once it has sent ``relatch_after`` packets in a row -- no packet
  from any other source in between, all with the matching SSRC, all within ``window`` seconds of the
  first. A packet from the latched source proves the old mapping alive and cancels the candidate; a packet
  from a third source, a different SSRC or a late one restarts the count. This is how a NAT rebinding
  (same phone, same SSRC, new port) is followed while a stray or interleaved packet never hijacks.

RTCP latches separately, with its own :class:`Latch`: on the RTP port + 1 (RFC 3550 §11), on the port an
``a=rtcp`` attribute names (RFC 3605), or on the RTP port itself with rtcp-mux (RFC 5761), where the caller
demultiplexes by packet type and feeds each packet to the right latch (:func:`rtcp_expected`).

Pure code: no sockets, no clocks; ``now`` is a parameter.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Final

from appliance.media.rtp import MediaError

log = logging.getLogger("appliance.media.latch")

Address = tuple[str, int]


class LatchStateError(MediaError):
    """The latch was driven into a transition its table forbids (a defect in the relay, not the peer)."""


class Decision(enum.Enum):
    """What the relay does with one received packet."""

    FORWARD = "forward"
    """From the latched source: relay it."""
    DROP = "drop"
    """From an unexpected source: discard it (it is counted)."""
    LATCHED = "latched"
    """The first accepted packet: the source is learnt now; relay it."""
    RELATCHED = "relatched"
    """A candidate source proved itself: the latch moves to it; relay it."""

    @property
    def forwards(self) -> bool:
        """Whether the packet is relayed."""
        return self is not Decision.DROP


class LatchState(enum.Enum):
    WAITING = "waiting"
    LATCHED = "latched"
    PROBING = "probing"


_TRANSITIONS: Final[dict[LatchState, frozenset[LatchState]]] = {
    LatchState.WAITING: frozenset({LatchState.LATCHED}),
    LatchState.LATCHED: frozenset({LatchState.PROBING}),
    # Back to LATCHED either on the old source (candidate cancelled) or on the candidate (re-latched).
    LatchState.PROBING: frozenset({LatchState.LATCHED}),
}

DEFAULT_WINDOW: Final = 2.0


class Latch:
    """The latching decision for one relay port (RTP, or RTCP).

    ``expected`` is the address the SDP named, or None when it named none usable (0.0.0.0, not yet
    answered); ``strict`` then cannot apply and raises ``ValueError``. ``relatch_after`` (at least 2, so a
    single packet can never move the latch) is the run of consecutive matching packets a new source must
    send within ``window`` seconds to take the latch over.

    Counters: ``dropped`` (every DROP), ``dropped_unlatched`` (drops before anything was learnt, i.e.
    strict mode refusing a foreign IP), ``relatches``.

    ``witness``, when set, counts the packets the latched source sent that this latch never sees (the
    kernel fast path forwards them, :mod:`appliance.media.offload`); it returns None when it cannot tell.
    In userspace a live incumbent interleaves with a would-be successor and so breaks its run; with a
    witness the same rule is checked by counting: a run whose witness count grew between its first and its
    last packet is refused.
    """

    __slots__ = (
        "_cand_count",
        "_cand_first",
        "_cand_source",
        "_cand_ssrc",
        "_cand_witness",
        "dropped",
        "dropped_unlatched",
        "expected",
        "latched",
        "latched_ssrc",
        "relatch_after",
        "relatches",
        "state",
        "strict",
        "window",
        "witness",
    )

    def __init__(
        self,
        expected: Address | None,
        *,
        strict: bool,
        relatch_after: int,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        if relatch_after < 2:
            raise ValueError("relatch_after must be at least 2, or a single packet could move the latch")
        if window <= 0:
            raise ValueError("window must be positive")
        if strict and expected is None:
            raise ValueError("strict latching needs the address the SDP named")
        self.expected = expected
        self.strict = strict
        self.relatch_after = relatch_after
        self.window = window
        self.state = LatchState.WAITING
        self.latched: Address | None = None
        self.latched_ssrc: int | None = None
        self.dropped = 0
        self.dropped_unlatched = 0
        self.relatches = 0
        self._cand_source: Address | None = None
        self._cand_ssrc: int | None = None
        self._cand_first = 0.0
        self._cand_count = 0
        self._cand_witness: int | None = None
        self.witness: Callable[[], int | None] | None = None

    @property
    def destination(self) -> Address | None:
        """Where the other direction's media is sent: the learnt source, else the SDP's address."""
        return self.latched if self.latched is not None else self.expected

    def _set_state(self, new: LatchState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise LatchStateError(f"latch: illegal transition {self.state.name} -> {new.name}")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("latch %s: %s -> %s", self.expected, self.state.name, new.name)
        self.state = new

    def decide(self, source: Address, ssrc: int | None, now: float) -> Decision:
        """Judge one packet from ``source`` carrying ``ssrc`` (None if the packet has none) at ``now``.

        Never raises for any input the network can produce: an unwanted packet is a DROP, counted.
        """
        if self.state is LatchState.WAITING:
            return self._first(source, ssrc)
        if source == self.latched:
            if self.state is LatchState.PROBING:
                # The old mapping still carries the stream: whoever else is sending is not its successor.
                self._clear_candidate()
                self._set_state(LatchState.LATCHED)
            if ssrc is not None:
                # The trusted source may legitimately change SSRC (a new stream after a re-INVITE).
                self.latched_ssrc = ssrc
            return Decision.FORWARD
        return self._foreign(source, ssrc, now)

    def _first(self, source: Address, ssrc: int | None) -> Decision:
        if self.strict and (self.expected is None or source[0] != self.expected[0]):
            self.dropped += 1
            self.dropped_unlatched += 1
            return Decision.DROP
        self.latched = source
        self.latched_ssrc = ssrc
        self._set_state(LatchState.LATCHED)
        return Decision.LATCHED

    def _foreign(self, source: Address, ssrc: int | None, now: float) -> Decision:
        self.dropped += 1
        if not self._may_succeed(source, ssrc):
            if self.state is LatchState.PROBING:
                self._clear_candidate()
                self._set_state(LatchState.LATCHED)
            return Decision.DROP
        continuing = (
            self.state is LatchState.PROBING
            and source == self._cand_source
            and ssrc == self._cand_ssrc
            and 0.0 <= now - self._cand_first <= self.window
        )
        if continuing:
            self._cand_count += 1
        else:
            # A new run starts with this packet (new source, changed SSRC, or the old run went stale).
            self._cand_source = source
            self._cand_ssrc = ssrc
            self._cand_first = now
            self._cand_count = 1
            self._cand_witness = self.witness() if self.witness is not None else None
            if self.state is LatchState.LATCHED:
                self._set_state(LatchState.PROBING)
        if self._cand_count < self.relatch_after:
            return Decision.DROP
        if self._cand_witness is not None and self.witness is not None:
            seen = self.witness()
            if seen is not None and seen != self._cand_witness:
                # The incumbent kept sending (through the kernel) during the run: not its successor.
                self._clear_candidate()
                self._set_state(LatchState.LATCHED)
                return Decision.DROP
        self.dropped -= 1  # this packet is relayed after all
        log.info("latch %s: re-latched %s -> %s (ssrc %s)", self.expected, self.latched, source, ssrc)
        self.latched = source
        self.latched_ssrc = ssrc
        self.relatches += 1
        self._clear_candidate()
        self._set_state(LatchState.LATCHED)
        return Decision.RELATCHED

    def _may_succeed(self, source: Address, ssrc: int | None) -> bool:
        """Whether a packet from a foreign ``source`` can count towards a re-latch at all."""
        if self.strict and self.expected is not None and source[0] != self.expected[0]:
            return False
        # With a known SSRC only the same stream may move; without one, any SSRC may start a run and the
        # run itself demands consistency.
        return self.latched_ssrc is None or ssrc == self.latched_ssrc

    def _clear_candidate(self) -> None:
        self._cand_source = None
        self._cand_ssrc = None
        self._cand_count = 0
        self._cand_witness = None


def rtcp_expected(rtp: Address | None, *, rtcp_mux: bool, rtcp_port: int | None = None) -> Address | None:
    """The address RTCP is expected from, given the SDP's RTP address.

    With rtcp-mux (RFC 5761 §5.1.3) RTCP shares the RTP port; else an ``a=rtcp`` port (RFC 3605) wins over
    the RTP port + 1 (RFC 3550 §11). None when the RTP address is unknown.
    """
    if rtp is None:
        return None
    if rtcp_mux:
        return rtp
    return (rtp[0], rtcp_port if rtcp_port is not None else rtp[1] + 1)


class StreamLatches:
    """The two latches of one media stream: RTP and its RTCP, learnt independently.

    With rtcp-mux both arrive on one port; the caller tells them apart (RFC 5761 §4: packet type 64..95 is
    RTCP) and calls :meth:`Latch.decide` on ``rtp`` or ``rtcp`` accordingly.
    """

    __slots__ = ("rtcp", "rtcp_mux", "rtp")

    def __init__(
        self,
        expected: Address | None,
        *,
        rtcp_mux: bool,
        strict: bool,
        relatch_after: int,
        rtcp_port: int | None = None,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        self.rtcp_mux = rtcp_mux
        self.rtp = Latch(expected, strict=strict, relatch_after=relatch_after, window=window)
        self.rtcp = Latch(
            rtcp_expected(expected, rtcp_mux=rtcp_mux, rtcp_port=rtcp_port),
            strict=strict,
            relatch_after=relatch_after,
            window=window,
        )
