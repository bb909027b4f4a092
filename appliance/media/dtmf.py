"""RFC 4733 telephone-events: the payload codec, a receiver that reports each digit once, and a sender.

Theory of operation. A telephone-event payload (RFC 4733 §2.3) is four octets: the event code, the E (end)
bit, a reserved bit, a 6-bit volume and a 16-bit duration in RTP timestamp units. Every packet of one event
carries the same RTP timestamp, the event's start; the duration grows with each update (§2.5.1.2), and the
last report is sent three times with E set (§2.5.1.4). :func:`parse` is total: it returns a
:class:`TelephoneEvent` or raises :class:`DtmfDecodeError`.

:class:`DtmfReceiver` keys events by RTP timestamp. The first packet seen for a new timestamp opens the
event whether or not it carries the marker, since the start packet may be lost (§2.5.1.3); the first packet
with E set closes it and queues exactly one :class:`DtmfDigit`; the retransmitted ends and any late update
for a closed timestamp are ignored (§2.5.1.5). An event whose end packets are all lost is closed by the
next event's first packet or by an idle deadline (``get_timer``/``handle_timer``). An event longer than the
16-bit duration is sent as segments (§2.5.2.3): a new timestamp equal to the previous timestamp plus the
previous segment's duration, for the same event, continues the open event instead of starting a new digit.

:class:`DtmfSender` produces the packet sequence for one digit: a start packet with the marker bit, an
update every ``interval`` seconds, then three end packets, splitting the event into segments before the
duration field would overflow.

Pure code: no sockets, no clocks; ``now`` is a parameter.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

from appliance.media.rtp import MediaError

log = logging.getLogger("appliance.media.dtmf")

DTMF_DIGITS: Final = "0123456789*#ABCD"
PAYLOAD_SIZE: Final = 4
MAX_DURATION: Final = 0xFFFF
MAX_VOLUME: Final = 63
END_RETRANSMISSIONS: Final = 3
_PAYLOAD: Final = struct.Struct("!BBH")
_TIMESTAMP_MOD: Final = 1 << 32
# How many closed event timestamps are remembered to drop their retransmitted ends and late updates.
_CLOSED_MEMORY: Final = 8


class DtmfDecodeError(MediaError):
    """A telephone-event payload that cannot be parsed; ``reason`` names the fault. It is dropped."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DtmfUsageError(MediaError):
    """The caller misused the sender (an unknown digit, a negative duration, a digit while one is sent)."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 §2.3 payload: event code 0-255, end bit, volume 0-63 (−dBm0), duration 0-65535."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 0xFF:
            raise DtmfUsageError(f"event code {self.event} out of range 0-255")
        if not 0 <= self.volume <= MAX_VOLUME:
            raise DtmfUsageError(f"volume {self.volume} out of range 0-63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise DtmfUsageError(f"duration {self.duration} out of range 0-65535")

    @property
    def digit(self) -> str | None:
        """The DTMF character for codes 0-15 (RFC 4733 §3.2), None for any other event."""
        return DTMF_DIGITS[self.event] if self.event < len(DTMF_DIGITS) else None

    def serialize(self) -> bytes:
        """The four payload octets; the reserved bit is sent as zero (§2.3)."""
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


def parse(payload: bytes) -> TelephoneEvent:
    """Parse one telephone-event payload; raise :class:`DtmfDecodeError` for anything but four octets.

    The reserved bit is ignored on receipt, as §2.3 asks.
    """
    if len(payload) != PAYLOAD_SIZE:
        raise DtmfDecodeError(f"telephone-event payload is {len(payload)} octets, expected {PAYLOAD_SIZE}")
    event, flags, duration = _PAYLOAD.unpack(payload)
    return TelephoneEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


def serialize(event: TelephoneEvent) -> bytes:
    """The four payload octets of ``event``."""
    return event.serialize()


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A digit the far end pressed: ``started_at`` is the ``now`` of its first packet seen."""

    digit: str
    duration_ms: int
    started_at: float


@dataclass(slots=True)
class _OpenEvent:
    timestamp: int
    event: int
    started_at: float
    last_seen: float
    # Duration of the segments before the current one (§2.5.2.3), in timestamp units.
    earlier_segments: int = 0
    duration: int = 0


class DtmfReceiver:
    """Turns the telephone-event packets of one RTP stream into one :class:`DtmfDigit` per event.

    Feed every packet of the negotiated telephone-event payload type with :meth:`receive`; drain digits
    with :meth:`next_event`. Events other than 0-15 are tracked (so their retransmissions are dropped) but
    not reported. A payload that does not parse raises :class:`DtmfDecodeError` and changes nothing.
    """

    def __init__(self, *, clock_rate: int = 8000, idle_timeout: float = 0.5) -> None:
        self._clock_rate = clock_rate
        self._idle_timeout = idle_timeout
        self._open: _OpenEvent | None = None
        self._closed: deque[int] = deque(maxlen=_CLOSED_MEMORY)
        self._events: deque[DtmfDigit] = deque()

    def receive(self, timestamp: int, marker: bool, payload: bytes, now: float) -> None:
        """Account for one packet; ``marker`` is informative only, since the start packet may be lost."""
        report = parse(payload)
        if timestamp in self._closed:
            return
        current = self._open
        if current is not None and current.timestamp != timestamp:
            if self._continues(current, timestamp, report):
                log.debug("telephone-event %d continues at timestamp %d", report.event, timestamp)
                current.earlier_segments += current.duration
                current.timestamp = timestamp
                current.duration = 0
            else:
                log.debug("telephone-event at timestamp %d closed without an end packet", current.timestamp)
                self._close(current)
                current = None
        if current is None:
            current = _OpenEvent(timestamp=timestamp, event=report.event, started_at=now, last_seen=now)
            log.debug(
                "telephone-event %d opened at timestamp %d (marker %s)", report.event, timestamp, marker
            )
            self._open = current
        current.last_seen = now
        # Updates may arrive reordered; the duration only grows within an event (§2.5.1.2).
        current.duration = max(current.duration, report.duration)
        if report.end:
            self._close(current)

    def next_event(self) -> DtmfDigit | None:
        """The next completed digit, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When an open event whose end packets were all lost is closed, or None."""
        return None if self._open is None else self._open.last_seen + self._idle_timeout

    def handle_timer(self, now: float) -> None:
        """Close the open event if no packet for it has arrived within ``idle_timeout``."""
        deadline = self.get_timer()
        if self._open is not None and deadline is not None and now >= deadline:
            log.debug("telephone-event at timestamp %d idle, closed", self._open.timestamp)
            self._close(self._open)

    def _continues(self, current: _OpenEvent, timestamp: int, report: TelephoneEvent) -> bool:
        # §2.5.2.3: the next segment of a long event starts where the previous one's duration ended.
        return (
            report.event == current.event
            and current.duration > 0
            and timestamp == (current.timestamp + current.duration) % _TIMESTAMP_MOD
        )

    def _close(self, current: _OpenEvent) -> None:
        self._open = None
        self._closed.append(current.timestamp)
        total = current.earlier_segments + current.duration
        log.debug(
            "telephone-event %d at timestamp %d ended, %d units", current.event, current.timestamp, total
        )
        if current.event < len(DTMF_DIGITS):
            self._events.append(
                DtmfDigit(
                    digit=DTMF_DIGITS[current.event],
                    duration_ms=total * 1000 // self._clock_rate,
                    started_at=current.started_at,
                )
            )


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """One RTP packet to send on the telephone-event payload type: header fields and payload."""

    timestamp: int
    marker: bool
    payload: bytes


class DtmfSender:
    """Produces the RFC 4733 §2.5.1 packet sequence for one digit at a time.

    :meth:`send_digit` queues the start packet; the glue calls :meth:`handle_timer` at :meth:`get_timer`
    and sends whatever :meth:`packets_to_send` returns. ``max_segment`` (timestamp units) is where a long
    event is cut into a new segment (§2.5.2.3); it is a parameter only so that tests need not run 8 s.
    """

    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        interval: float = 0.05,
        volume: int = 10,
        max_segment: int = MAX_DURATION,
    ) -> None:
        self._clock_rate = clock_rate
        self._interval = interval
        self._volume = volume
        self._max_segment = max_segment
        self._pending: list[DtmfPacket] = []
        self._event = 0
        self._started = 0.0
        self._length = 0
        self._segment_timestamp = 0
        self._segment_offset = 0
        self._deadline: float | None = None

    @property
    def busy(self) -> bool:
        """True while a digit is being sent."""
        return self._deadline is not None

    def send_digit(self, digit: str, *, duration_ms: int, timestamp: int, now: float) -> None:
        """Start sending ``digit`` for ``duration_ms`` from RTP ``timestamp`` (the stream's clock now)."""
        if len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
            raise DtmfUsageError(f"not a DTMF digit: {digit!r}")
        if duration_ms <= 0:
            raise DtmfUsageError(f"duration must be positive, got {duration_ms} ms")
        if self.busy:
            raise DtmfUsageError("a digit is already being sent")
        self._event = DTMF_DIGITS.index(digit.upper())
        self._started = now
        self._length = duration_ms * self._clock_rate // 1000
        self._segment_timestamp = timestamp % _TIMESTAMP_MOD
        self._segment_offset = 0
        self._emit(marker=True, duration=0, end=False)
        self._deadline = now + self._interval

    def get_timer(self) -> float | None:
        """When the next update or the end packets are due, or None when idle."""
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """Queue the update (or the three end packets) due at ``now``."""
        if self._deadline is None or now < self._deadline:
            return
        elapsed = min(self._length, round((now - self._started) * self._clock_rate))
        while elapsed - self._segment_offset > self._max_segment:
            # Close this segment at the largest expressible duration and open the next one (§2.5.2.3).
            self._emit(marker=False, duration=self._max_segment, end=False)
            self._segment_timestamp = (self._segment_timestamp + self._max_segment) % _TIMESTAMP_MOD
            self._segment_offset += self._max_segment
        duration = elapsed - self._segment_offset
        if elapsed >= self._length:
            for _ in range(END_RETRANSMISSIONS):
                self._emit(marker=False, duration=duration, end=True)
            self._deadline = None
        else:
            self._emit(marker=False, duration=duration, end=False)
            self._deadline += self._interval

    def packets_to_send(self) -> list[DtmfPacket]:
        """The packets queued since the last call, in sending order."""
        packets, self._pending = self._pending, []
        return packets

    def _emit(self, *, marker: bool, duration: int, end: bool) -> None:
        report = TelephoneEvent(event=self._event, end=end, volume=self._volume, duration=duration)
        self._pending.append(DtmfPacket(self._segment_timestamp, marker, report.serialize()))
