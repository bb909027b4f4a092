"""A DAHDI span's state as the kernel shows it: sysfs attributes and the ``/proc/dahdi/N`` report.

sysfs (dahdi-linux ``dahdi-sysfs.c``): ``/sys/bus/dahdi_spans/devices/span-N/`` has one value per file,
each ending in a newline: ``name``, ``desc`` (strings), ``spantype`` (``E1``, ``T1``, …), ``alarms``
(``0x%x``: the ``DAHDI_ALARM_*`` bits of ``dahdi/user.h``), ``lbo``, ``syncsrc`` (the span the card is
timed from, 0 for its own clock), ``is_digital``, ``is_sync_master``, ``basechan``, ``channels``,
``local_spanno`` (``%d``), ``lineconfig`` (e.g. ``CCS/HDB3/CRC4``) and ``linecompat`` (names separated
by spaces).

procfs (dahdi-linux ``dahdi-base.c``, ``dahdi_seq_show``): a first line
``Span N: <name> "<desc>" [(MASTER)] <coding>/<framing>[/CRC4] <alarms…> [ClockSource]``, then one line
per non-zero counter, ``\\tBPV count: %d``, ``\\tCRC4 error count: %d``, ``\\tE-bit error count: %d``,
``\\tFAS error count: %d``, ``\\tIRQ misses: %d``, ``\\tTiming slips: %d``, then a blank line and the
channels. A counter that is zero is not printed.

DAHDI's red alarm is LOS or loss of frame alignment; drivers that tell them apart add the detail bits
``DAHDI_ALARM_LOS``, ``DAHDI_ALARM_LFA`` and ``DAHDI_ALARM_LMFA`` (CRC-4 multiframe, G.706 §4.2) to it. A
red alarm without detail is reported as LOF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hw.e1.alarms import Alarm
from hw.e1.errors import DahdiError
from hw.e1.model import SpanCounters

# dahdi/user.h, "Alarm Condition bits"
ALARM_RECOVER: Final = 1 << 0
ALARM_LOOPBACK: Final = 1 << 1
ALARM_YELLOW: Final = 1 << 2
ALARM_RED: Final = 1 << 3
ALARM_BLUE: Final = 1 << 4
ALARM_NOTOPEN: Final = 1 << 5
ALARM_LOS: Final = 1 << 8
ALARM_LFA: Final = 1 << 9
ALARM_LMFA: Final = 1 << 10

_PROC_COUNTERS: Final = {
    "BPV count": "bipolar_violations",
    "CRC4 error count": "crc4_errors",
    "E-bit error count": "e_bit_errors",
    "FAS error count": "fas_errors",
    "IRQ misses": "irq_misses",
    "Timing slips": "slips",
}
_PROC_HEADER: Final = re.compile(r'^Span (\d+): (\S*) "(.*)"(.*)$')
_PROC_COUNTER: Final = re.compile(r"^\t([A-Za-z0-9 -]+): (-?\d+)$")


@dataclass(frozen=True, slots=True)
class SysfsSpan:
    """The attributes of ``span-N`` in sysfs."""

    number: int
    name: str
    description: str
    spantype: str
    alarm_bits: int
    lbo: int
    syncsrc: int
    is_sync_master: bool
    basechan: int
    channels: int
    lineconfig: tuple[str, ...]

    @property
    def defects(self) -> frozenset[Alarm]:
        return alarms_from_bits(self.alarm_bits)

    @property
    def timing_source(self) -> bool:
        """The card is timed from this span's received clock."""
        return self.syncsrc == self.number

    @property
    def configured(self) -> bool:
        return not self.alarm_bits & ALARM_NOTOPEN


@dataclass(frozen=True, slots=True)
class ProcSpan:
    """What ``/proc/dahdi/N`` says of a span (the channels' lines are not kept)."""

    number: int
    name: str
    description: str
    flags: tuple[str, ...]  # MASTER, the line config, alarm words, ClockSource
    counters: SpanCounters

    @property
    def clock_source(self) -> bool:
        return "ClockSource" in self.flags


def alarms_from_bits(bits: int) -> frozenset[Alarm]:
    """The defects a ``DAHDI_ALARM_*`` word reports (RECOVER, LOOPBACK and NOTOPEN are not defects)."""
    found: set[Alarm] = set()
    if bits & ALARM_RED:
        if bits & ALARM_LOS:
            found.add(Alarm.LOS)
        if bits & (ALARM_LFA | ALARM_LMFA) or not bits & ALARM_LOS:
            found.add(Alarm.LOF)
    if bits & ALARM_BLUE:
        found.add(Alarm.AIS)
    if bits & ALARM_YELLOW:
        found.add(Alarm.RAI)
    return frozenset(found)


def read_sysfs_span(root: Path, number: int) -> SysfsSpan:
    """Read ``<root>/span-<number>/``; raises :class:`DahdiError` naming the file that is missing or bad."""
    directory = root / f"span-{number}"

    def attr(name: str) -> str:
        try:
            return (directory / name).read_text(encoding="utf-8", errors="replace").rstrip("\n")
        except OSError as exc:
            raise DahdiError(f"span {number}: cannot read {directory / name}: {exc.strerror or exc}") from exc

    def integer(name: str, base: int = 10) -> int:
        text = attr(name)
        try:
            return int(text, base)
        except ValueError:
            raise DahdiError(f"span {number}: {directory / name} holds {text!r}, not a number") from None

    return SysfsSpan(
        number=number,
        name=attr("name"),
        description=attr("desc"),
        spantype=attr("spantype"),
        alarm_bits=integer("alarms", 16),
        lbo=integer("lbo"),
        syncsrc=integer("syncsrc"),
        is_sync_master=integer("is_sync_master") != 0,
        basechan=integer("basechan"),
        channels=integer("channels"),
        lineconfig=tuple(p for p in attr("lineconfig").split("/") if p),
    )


def sysfs_span_numbers(root: Path) -> tuple[int, ...]:
    """The spans registered with DAHDI (``span-N`` entries under ``root``), in order."""
    try:
        names = [p.name for p in root.iterdir()]
    except OSError as exc:
        raise DahdiError(f"cannot list DAHDI spans in {root}: {exc.strerror or exc}") from exc
    return tuple(sorted(int(n[5:]) for n in names if n.startswith("span-") and n[5:].isdigit()))


def parse_proc_span(text: str) -> ProcSpan:
    """Parse the text of ``/proc/dahdi/N``; raises :class:`DahdiError` if its first line is not a span's."""
    lines = text.split("\n")
    header = _PROC_HEADER.match(lines[0])
    if header is None:
        raise DahdiError(f"not a DAHDI span report: {lines[0][:80]!r}")
    values: dict[str, int] = {}
    for line in lines[1:]:
        if not line:
            break  # the counters end at the blank line before the channels
        counter = _PROC_COUNTER.match(line)
        if counter is not None and counter.group(1) in _PROC_COUNTERS:
            values[_PROC_COUNTERS[counter.group(1)]] = int(counter.group(2))
    flags = tuple(word.strip("()") for word in header.group(4).split())
    return ProcSpan(
        number=int(header.group(1)),
        name=header.group(2),
        description=header.group(3),
        flags=flags,
        counters=SpanCounters(**values),
    )


def read_proc_span(root: Path, number: int) -> ProcSpan:
    path = root / str(number)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DahdiError(f"span {number}: cannot read {path}: {exc.strerror or exc}") from exc
    report = parse_proc_span(text)
    if report.number != number:
        raise DahdiError(f"{path} reports span {report.number}, not {number}")
    return report
