"""Media inactivity per direction, and one-way audio, as deadlines on an injected clock.

Theory of operation. Call control learns that a leg is dead -- a cloud leg during a WAN cut, a phone that
lost power -- from the silence of its RTP, not from signalling that may never come. RFC 3550 §6.2 makes an
active sender transmit at least every few seconds; a relay therefore watches each direction separately:

* :class:`MediaTimeout` watches one direction. ``FLOWING``: each packet pushes the deadline to
  ``last activity + timeout``; reaching it moves to ``TIMED_OUT`` and emits :class:`MediaTimedOut` once
  for that silence. A packet then moves back to ``FLOWING`` and emits :class:`MediaResumed`.
  ``HELD``: the SDP put the direction on hold or made it inactive (RFC 3264 §8.4: sendonly, recvonly,
  inactive), so silence is expected and nothing times out; leaving hold restarts the clock from that moment.
* :class:`CallMediaWatch` pairs the two directions of a call and adds :class:`OneWayAudio` when one
  direction flows while the other has timed out -- the NAT/firewall fault call control reports as such
  rather than as a dead leg. "Flows" means a packet within the silent direction's timeout: with unequal
  timeouts a direction can still be ``FLOWING`` after it fell silent together with the other.

Each direction has its own timeout: a peer known to send continuously (a cloud media server sends comfort
noise, RFC 3389, rather than nothing) is declared dead after seconds, while a phone that may suppress
silence keeps a long one. A changed timeout (:meth:`MediaTimeout.set_timeout`) needs no transition: it
moves the ``FLOWING`` deadline to ``last activity + new timeout``, so silence that already lasted longer
than a shortened timeout is reported the next time the machine sees time.

The deadline is judged whenever the machine sees time: :meth:`MediaTimeout.handle_timer`, or a packet that
arrives after the deadline before the timer fired (the silence did last the full timeout, so it is
reported, immediately followed by the resumption).

Pure code: no sockets, no clocks; ``now`` is a parameter and :meth:`get_timer` gives the next deadline.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from appliance.media.rtp import MediaError

log = logging.getLogger("appliance.media.timeout")


class TimeoutStateError(MediaError):
    """The watch was driven into a transition its table forbids (a defect in the relay, not the peer)."""


@dataclass(frozen=True, slots=True)
class MediaTimedOut:
    """No packet in ``direction`` for the whole timeout; the silence began at ``since``."""

    direction: str
    since: float


@dataclass(frozen=True, slots=True)
class MediaResumed:
    """Packets flow again in ``direction`` after a reported timeout."""

    direction: str


@dataclass(frozen=True, slots=True)
class OneWayAudio:
    """Media flows in ``flowing`` while ``silent`` has timed out (silent since ``since``)."""

    flowing: str
    silent: str
    since: float


MediaEvent = MediaTimedOut | MediaResumed | OneWayAudio


class FlowState(enum.Enum):
    FLOWING = "flowing"
    TIMED_OUT = "timed-out"
    HELD = "held"


_TRANSITIONS: Final[dict[FlowState, frozenset[FlowState]]] = {
    FlowState.FLOWING: frozenset({FlowState.TIMED_OUT, FlowState.HELD}),
    FlowState.TIMED_OUT: frozenset({FlowState.FLOWING, FlowState.HELD}),
    FlowState.HELD: frozenset({FlowState.FLOWING}),
}


class MediaTimeout:
    """Inactivity of one media direction.

    ``timeout`` (seconds, positive) is how long the direction may stay silent; the clock starts at ``now``
    as if a packet had just arrived, so a direction that never carries a packet times out too.
    """

    __slots__ = ("_events", "direction", "last_activity", "state", "timeout")

    def __init__(self, timeout: float, *, now: float, direction: str = "rtp") -> None:
        if not timeout > 0:
            raise ValueError("media timeout must be positive")
        self.timeout = timeout
        self.direction = direction
        self.state = FlowState.FLOWING
        self.last_activity = now
        self._events: deque[MediaEvent] = deque()

    def _set_state(self, new: FlowState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise TimeoutStateError(
                f"media {self.direction}: illegal transition {self.state.name} -> {new.name}"
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug("media %s: %s -> %s", self.direction, self.state.name, new.name)
        self.state = new

    @property
    def deadline(self) -> float | None:
        """When the current silence becomes a timeout; None unless ``FLOWING``."""
        if self.state is FlowState.FLOWING:
            return self.last_activity + self.timeout
        return None

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` has something to do, or None."""
        return self.deadline

    def set_timeout(self, timeout: float) -> None:
        """Allow ``timeout`` seconds (positive) of silence from now on; the current silence is measured
        against it (see the theory of operation). The state does not change."""
        if not timeout > 0:
            raise ValueError("media timeout must be positive")
        self.timeout = timeout

    def handle_timer(self, now: float) -> None:
        """Time out if ``now`` has reached the deadline (exactly at the deadline counts)."""
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            self._set_state(FlowState.TIMED_OUT)
            self._events.append(MediaTimedOut(self.direction, self.last_activity))

    def packet(self, now: float) -> None:
        """A packet arrived in this direction at ``now``."""
        if self.state is FlowState.HELD:
            # Media on hold is not an error (music on hold is sendonly), but it does not arm the clock.
            self.last_activity = max(self.last_activity, now)
            return
        self.handle_timer(now)
        if self.state is FlowState.TIMED_OUT:
            self._set_state(FlowState.FLOWING)
            self._events.append(MediaResumed(self.direction))
        self.last_activity = max(self.last_activity, now)

    def set_hold(self, held: bool, now: float) -> None:
        """Enter or leave hold/inactive; leaving restarts the clock at ``now``. Repeating is a no-op."""
        if held:
            if self.state is not FlowState.HELD:
                self._set_state(FlowState.HELD)
        elif self.state is FlowState.HELD:
            self._set_state(FlowState.FLOWING)
            self.last_activity = now

    def next_event(self) -> MediaEvent | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None


class CallMediaWatch:
    """Both directions of one call, with one-way audio detection.

    ``forward`` and ``backward`` name the directions in the events (for instance ``"caller->callee"``);
    ``timeout`` is the silence allowed in each, unless ``timeouts`` gives a direction its own.
    :class:`OneWayAudio` is reported once each time the call enters the condition "one direction
    ``FLOWING`` with a packet within the other's timeout, the other ``TIMED_OUT``"; a held direction is
    never one-way audio.
    """

    __slots__ = ("_events", "_one_way", "directions")

    def __init__(
        self,
        timeout: float,
        *,
        now: float,
        forward: str = "forward",
        backward: str = "backward",
        timeouts: Mapping[str, float] | None = None,
    ) -> None:
        if forward == backward:
            raise ValueError("the two directions need distinct names")
        own = dict(timeouts or {})
        unknown = sorted(set(own) - {forward, backward})
        if unknown:
            raise ValueError(f"no media direction {unknown[0]!r} in this call")
        self.directions: dict[str, MediaTimeout] = {
            name: MediaTimeout(own.get(name, timeout), now=now, direction=name)
            for name in (forward, backward)
        }
        self._one_way = False
        self._events: deque[MediaEvent] = deque()

    def _watch(self, direction: str) -> MediaTimeout:
        try:
            return self.directions[direction]
        except KeyError:
            raise TimeoutStateError(f"no media direction {direction!r} in this call") from None

    def packet(self, direction: str, now: float) -> None:
        """A packet arrived in ``direction`` at ``now``."""
        self._advance(now)
        self._watch(direction).packet(now)
        self._collect(now)

    def set_hold(self, direction: str, held: bool, now: float) -> None:
        """Hold or release one direction (see :meth:`MediaTimeout.set_hold`)."""
        self._advance(now)
        self._watch(direction).set_hold(held, now)
        self._collect(now)

    def set_timeout(self, direction: str, timeout: float, now: float) -> None:
        """Give ``direction`` a new timeout (see :meth:`MediaTimeout.set_timeout`), after every deadline
        reached by ``now`` under the old ones was applied."""
        self._advance(now)
        self._watch(direction).set_timeout(timeout)
        self._collect(now)

    def get_timer(self) -> float | None:
        """The earliest deadline of either direction, or None."""
        timers = [t for t in (w.get_timer() for w in self.directions.values()) if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        """Apply every deadline reached by ``now``."""
        self._advance(now)
        self._collect(now)

    def next_event(self) -> MediaEvent | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def _advance(self, now: float) -> None:
        # Both directions see the time first, so a packet in one cannot hide the other's expiry.
        for watch in self.directions.values():
            watch.handle_timer(now)

    def _collect(self, now: float) -> None:
        for watch in self.directions.values():
            while (event := watch.next_event()) is not None:
                self._events.append(event)
        (a, wa), (b, wb) = self.directions.items()
        one_way: OneWayAudio | None = None
        if _flows_while(wa, wb, now):
            one_way = OneWayAudio(a, b, wb.last_activity)
        elif _flows_while(wb, wa, now):
            one_way = OneWayAudio(b, a, wa.last_activity)
        if one_way is not None and not self._one_way:
            log.info("media: one-way audio, %s flows, %s silent", one_way.flowing, one_way.silent)
            self._events.append(one_way)
        self._one_way = one_way is not None


def _flows_while(flowing: MediaTimeout, silent: MediaTimeout, now: float) -> bool:
    # With equal timeouts FLOWING alone implies the recent packet; with unequal ones it must be checked.
    return (
        flowing.state is FlowState.FLOWING
        and silent.state is FlowState.TIMED_OUT
        and now - flowing.last_activity < silent.timeout
    )
