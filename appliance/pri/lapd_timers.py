"""The system parameters of a Q.921 data link (Q.921 §5.9), as a typed configuration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LapdTimers:
    """Q.921 §5.9 defaults for a primary rate interface.

    ``t200``: retransmission timer, seconds (§5.9.1, default 1 s); ``n200``: maximum retransmissions
    (§5.9.2, 3); ``t203``: maximum time without frame exchange before the link is polled (§5.9.8, 10 s);
    ``k``: maximum outstanding I frames (§5.9.5, 7 for SAPI 0 on a primary rate access);
    ``n201``: maximum information field octets (§5.9.3, 260).
    """

    t200: float = 1.0
    n200: int = 3
    t203: float = 10.0
    k: int = 7
    n201: int = 260

    def __post_init__(self) -> None:
        if not (self.t200 > 0 and self.t203 > self.t200):
            raise ValueError("timers need 0 < T200 < T203")
        if not 1 <= self.n200 <= 16:
            raise ValueError("N200 must be 1..16")
        if not 1 <= self.k <= 127:
            raise ValueError("k must be 1..127 (modulo 128)")
        if not 1 <= self.n201 <= 260:
            raise ValueError("N201 must be 1..260")
