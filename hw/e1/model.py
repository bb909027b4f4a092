"""The E1 span and channel model: configuration, counters and loopbacks, whatever the backend.

An E1 frame (ITU-T G.704 §2.3) has 32 timeslots of 8 bits at 8 kHz: timeslot 0 carries the frame
alignment signal, the CRC-4 multiframe (G.704 §2.3.3, G.706 §4) and the remote alarm indication; with
common-channel signalling (CCS, ISDN PRI, Q.921/Q.931) timeslot 16 carries the D-channel and the other 30
are B-channels; with channel-associated signalling (CAS, G.704 §5.1.3) timeslot 16 carries the
per-channel ABCD bits in a 16-frame multiframe. Either way 16 is never a B-channel. The line code is HDB3
(G.703 §9, the standard for 2048 kbit/s) or, rarely, AMI.

Field names and values are those of the appliance's ``[[spans]]`` configuration, so that the control
process builds a :class:`SpanConfig` from it field by field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

from hw.e1.errors import SpanConfigError
from hw.e1.links import B_TIMESLOTS

Framing = Literal["ccs", "cas"]
LineCode = Literal["hdb3", "ami"]
Side = Literal["user", "network"]
SwitchType = Literal["euroisdn"]

D_TIMESLOT: Final = 16  # G.704 §5.1.2: timeslot 16 carries common-channel signalling
MAX_SPAN: Final = 255
MAX_TIMING_PRIORITY: Final = 31  # DAHDI's limit on system.conf's timing field


class Loopback(enum.Enum):
    """Where the span turns the signal back (the terms of DAHDI and of the framers' data sheets).

    - ``LOCAL``: what we transmit comes back to our own receiver, towards the line nothing of ours.
    - ``LINE``: what the far end transmits is returned to it at the line interface, D and B (the
      classic remote loopback a carrier asks for when testing the circuit).
    - ``PAYLOAD``: the B-channel payload from the far end is returned to it inside freshly generated
      framing (G.704 timeslot 0), the D-channel carries on as usual.
    """

    NONE = "none"
    LOCAL = "local"
    LINE = "line"
    PAYLOAD = "payload"


@dataclass(frozen=True, slots=True)
class SpanConfig:
    """One E1 span; :meth:`__post_init__` checks it and raises :class:`SpanConfigError` naming the fault.

    ``timing_priority``: 0 never takes the clock from this span; 1 is the first choice, 2 the next, …
    (DAHDI's system.conf ``timing`` field). ``lbo``: line build-out, 0 for E1 (only T1 has others).
    ``d_channel``: the timeslot of the D-channel, 16 on a CCS span and ``None`` on a CAS span.
    """

    number: int = 1
    framing: Framing = "ccs"
    line_code: LineCode = "hdb3"
    crc4: bool = True
    side: Side = "user"
    switch_type: SwitchType = "euroisdn"
    b_channels: tuple[int, ...] = B_TIMESLOTS
    timing_priority: int = 1
    d_channel: int | None = D_TIMESLOT
    lbo: int = 0

    def __post_init__(self) -> None:
        where = f"span {self.number}"
        if not 1 <= self.number <= MAX_SPAN:
            raise SpanConfigError(f"span number {self.number}: a span is numbered 1 to {MAX_SPAN}")
        _one_of(where, "framing", self.framing, ("ccs", "cas"))
        _one_of(where, "line_code", self.line_code, ("hdb3", "ami"))
        _one_of(where, "side", self.side, ("user", "network"))
        _one_of(where, "switch_type", self.switch_type, ("euroisdn",))
        if not isinstance(self.crc4, bool):
            raise SpanConfigError(f"{where}: crc4 is true or false, not {self.crc4!r}")
        if not 0 <= self.timing_priority <= MAX_TIMING_PRIORITY:
            raise SpanConfigError(
                f"{where}: timing_priority {self.timing_priority} is not 0 (never a clock source) "
                f"to {MAX_TIMING_PRIORITY}"
            )
        if self.lbo != 0:
            raise SpanConfigError(f"{where}: lbo {self.lbo}: an E1 span has no line build-out (0)")
        self._check_b_channels(where)
        if self.framing == "ccs" and self.d_channel != D_TIMESLOT:
            raise SpanConfigError(
                f"{where}: d_channel {self.d_channel}: a CCS span signals on timeslot 16 (G.704 §5.1.2)"
            )
        if self.framing == "cas" and self.d_channel is not None:
            raise SpanConfigError(f"{where}: d_channel {self.d_channel}: a CAS span has no D-channel")

    def _check_b_channels(self, where: str) -> None:
        if not self.b_channels:
            raise SpanConfigError(f"{where}: b_channels is empty; a span needs at least one B-channel")
        seen: set[int] = set()
        for slot in self.b_channels:
            if slot == D_TIMESLOT:
                raise SpanConfigError(f"{where}: b_channels: timeslot 16 is never a B-channel (G.704 §5)")
            if slot not in B_TIMESLOTS:
                raise SpanConfigError(f"{where}: b_channels: timeslot {slot!r} is not 1-15 or 17-31")
            if slot in seen:
                raise SpanConfigError(f"{where}: b_channels: timeslot {slot} is listed twice")
            seen.add(slot)

    @property
    def timing_source_candidate(self) -> bool:
        return self.timing_priority > 0


@dataclass(frozen=True, slots=True)
class SpanCounters:
    """Error counters of one span since it was started (a snapshot; the backend keeps the running ones).

    - ``crc4_errors``: CRC-4 blocks in error (G.706 §4.3, a sub-multiframe whose check bits disagree);
    - ``bipolar_violations``: line code violations (G.703 §9: two marks of the same polarity that are not
      an HDB3 substitution);
    - ``fas_errors``: frame alignment signal words received in error (G.706 §4.1);
    - ``e_bit_errors``: far-end block errors, the E-bits the far end sets for each CRC-4 block it got in
      error (G.704 §2.3.3.4);
    - ``slips``: controlled slips, a frame repeated or deleted because the clocks differ (G.822);
    - ``irq_misses``: interrupts the card missed (DAHDI only; a busy host loses audio).
    """

    crc4_errors: int = 0
    bipolar_violations: int = 0
    fas_errors: int = 0
    e_bit_errors: int = 0
    slips: int = 0
    irq_misses: int = 0

    def __add__(self, other: SpanCounters) -> SpanCounters:
        return SpanCounters(
            crc4_errors=self.crc4_errors + other.crc4_errors,
            bipolar_violations=self.bipolar_violations + other.bipolar_violations,
            fas_errors=self.fas_errors + other.fas_errors,
            e_bit_errors=self.e_bit_errors + other.e_bit_errors,
            slips=self.slips + other.slips,
            irq_misses=self.irq_misses + other.irq_misses,
        )


def _one_of(where: str, name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        choices = " or ".join(repr(a) for a in allowed)
        raise SpanConfigError(f"{where}: {name} is {choices}, not {value!r}")
