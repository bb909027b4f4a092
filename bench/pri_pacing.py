"""Pacing of B-channel audio as the far end hears it: each channel's frames against its own 20 ms clock.

A B-channel frame carries 160 A-law octets and nothing else — no sequence number, no timestamp — so a
channel's clock is its frame count: frame ``k`` (counted from the first frame of the measured window) is
due ``k × 20 ms`` after the first. With ``t_k`` its arrival time, its offset is
``o_k = (t_k − t_0) − k × 0.020`` and its **pacing error** ``|o_k − median(o)|``: the distance from the
channel's own 20 ms clock, as :mod:`bench.ivr` measures RTP against its 8 kHz timestamps. The median, not
the window's first frame, is the reference, so a channel whose first frame happened to be late does not
count that lateness into every other frame. A frame the sender skipped moves every later frame's offset
by 20 ms (skipped audio shows); two frames sent back to back show as one early.

**Lost frames** are those the channel's time in the window calls for and that did not come:
``round((t_last − t_0) / 0.020) + 1 − n`` for ``n`` frames from ``t_0`` to ``t_last`` (never negative).
**Due frames** are what the window's length calls for on every channel: fewer frames than that with none
lost means the frames came (and were read) late at one end of the window and not at the other.

Pure code: arrival times are passed in (seconds, any monotonic clock).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from bench.common import percentile

FRAME_SECONDS: Final = 0.020


def in_window(arrivals: Iterable[float], start: float, end: float) -> list[float]:
    """The arrival times in ``[start, end)``, in order."""
    return sorted(t for t in arrivals if start <= t < end)


def pacing_errors_ms(arrivals: Sequence[float]) -> list[float]:
    """Each frame's pacing error in milliseconds (see the module docstring); ``arrivals`` in order."""
    if not arrivals:
        return []
    t0 = arrivals[0]
    offsets = [(t - t0) - k * FRAME_SECONDS for k, t in enumerate(arrivals)]
    middle = statistics.median(offsets)
    return [abs(o - middle) * 1000 for o in offsets]


def frames_lost(arrivals: Sequence[float]) -> int:
    """Frames missing between the first and the last of ``arrivals`` (in order) on a 20 ms clock."""
    if len(arrivals) < 2:
        return 0
    due = round((arrivals[-1] - arrivals[0]) / FRAME_SECONDS) + 1
    return max(0, due - len(arrivals))


@dataclass(frozen=True)
class Pacing:
    """Pacing figures over every frame of every channel in one window (milliseconds)."""

    channels: int
    frames: int
    due: int  # frames the window's length calls for on every channel
    lost: int
    silent: int  # channels that carried no frame in the window
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None

    def row(self, prefix: str = "") -> dict[str, object]:
        """The figures as JSON-able keys, each name with ``prefix`` before it."""
        return {
            f"{prefix}p50_pacing_error_ms": _r(self.p50_ms),
            f"{prefix}p99_pacing_error_ms": _r(self.p99_ms),
            f"{prefix}p999_pacing_error_ms": _r(self.p999_ms),
            f"{prefix}max_pacing_error_ms": _r(self.max_ms),
            f"{prefix}frames": self.frames,
            f"{prefix}frames_due": self.due,
            f"{prefix}frames_lost": self.lost,
            f"{prefix}silent_channels": self.silent,
        }


def pacing(channels: Iterable[Sequence[float]], start: float, end: float) -> Pacing:
    """The window ``[start, end)``'s figures over ``channels`` (each a channel's arrival times)."""
    errors: list[float] = []
    count = lost = silent = frames = 0
    for arrivals in channels:
        count += 1
        window = in_window(arrivals, start, end)
        if not window:
            silent += 1
            continue
        frames += len(window)
        lost += frames_lost(window)
        errors.extend(pacing_errors_ms(window))
    return Pacing(
        channels=count,
        frames=frames,
        due=count * round((end - start) / FRAME_SECONDS),
        lost=lost,
        silent=silent,
        p50_ms=percentile(errors, 50),
        p99_ms=percentile(errors, 99),
        p999_ms=percentile(errors, 99.9),
        max_ms=max(errors) if errors else None,
    )


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
