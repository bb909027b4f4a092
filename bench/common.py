"""What every benchmark prints the same way: its command line, percentiles, ratios, progress and the final
JSON line.

Contract. :func:`parser` is the ``argparse`` parser of ``python -m bench.<name>`` with the module
docstring's first line as description. :func:`percentile` is the nearest-rank percentile (the value at
rank ``ceil(q/100 × n)`` of the sorted samples, so p99 of 100 samples is the 99th and of 1,000 the
990th), None for no samples. :func:`ratio` is ``ours / other`` rounded, None when either is missing or the
divisor is zero. :func:`progress` writes one human line, flushed at once (a long run shows where it is);
:func:`emit` writes one JSON object on one line, the machine-readable result. :class:`OtherPrograms`
measures the CPU that programs other than the bench's own used during a window, so that a figure taken on
a busy machine says so.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from bench.relay import machine_busy_ticks
from bench.servers import clock_ticks_per_second

DIGITS: Final = 3


def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``python -m <module>``, described by the first line of ``doc``."""
    description = doc.strip().splitlines()[0] if doc else None
    return argparse.ArgumentParser(prog=f"python -m {module}", description=description)


def percentile(samples: Sequence[float], q: float) -> float | None:
    """Nearest-rank ``q``-th percentile (0 < q <= 100) of ``samples``, None if there are none."""
    if not 0 < q <= 100:
        raise ValueError(f"percentile needs 0 < q <= 100, not {q!r}")
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def rounded(value: float | None, digits: int = DIGITS) -> float | None:
    return None if value is None else round(value, digits)


def ratio(ours: float | None, other: float | None, digits: int = DIGITS) -> float | None:
    """``ours / other``, rounded; None when either is unknown or ``other`` is zero."""
    return round(ours / other, digits) if ours is not None and other else None


def progress(line: str) -> None:
    print(line, flush=True)


def emit(obj: Mapping[str, object]) -> None:
    print(json.dumps(obj), flush=True)


@dataclass(frozen=True)
class OtherPrograms:
    """The machine's busy CPU time at the start of a window; :meth:`cores` is what other programs used."""

    busy_ticks: int

    @classmethod
    def start(cls) -> OtherPrograms:
        return cls(machine_busy_ticks())

    def cores(self, accounted_s: float, wall_s: float) -> float | None:
        """Cores' worth of CPU over ``wall_s`` that the machine spent beyond ``accounted_s`` (the CPU
        seconds of the processes measured); None for an empty window."""
        if wall_s <= 0:
            return None
        spent = (machine_busy_ticks() - self.busy_ticks) / clock_ticks_per_second()
        return max(0.0, spent - accounted_s) / wall_s
