"""Span state read from a recorded DAHDI sysfs/procfs tree (tests/vectors/dahdi)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hw.e1.alarms import Alarm
from hw.e1.dahdi_status import (
    alarms_from_bits,
    parse_proc_span,
    read_proc_span,
    read_sysfs_span,
    sysfs_span_numbers,
)
from hw.e1.errors import DahdiError
from hw.e1.model import SpanCounters
from tests.unit.vectors import hypothesis_settings, soak_marks

pytestmark = soak_marks()
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dahdi"
SYSFS = VECTORS / "sysfs" / "bus" / "dahdi_spans" / "devices"
PROC = VECTORS / "proc" / "dahdi"


def test_span_in_red_alarm_reads_as_los_and_lof() -> None:
    span = read_sysfs_span(SYSFS, 1)
    assert (span.name, span.description, span.spantype) == ("TE4/0/1", "T4XXP (PCI) Card 0 Span 1", "E1")
    assert span.alarm_bits == 0x308
    assert span.defects == {Alarm.LOS, Alarm.LOF}
    assert (span.basechan, span.channels, span.lbo) == (1, 31, 0)
    assert span.lineconfig == ("CCS", "HDB3", "CRC4")
    assert span.is_sync_master and not span.timing_source
    assert span.configured


def test_span_up_is_the_clock_source_without_defects() -> None:
    span = read_sysfs_span(SYSFS, 2)
    assert span.defects == frozenset()
    assert span.timing_source
    assert span.basechan == 32
    assert sysfs_span_numbers(SYSFS) == (1, 2)


def test_procfs_counters_of_the_span_in_red() -> None:
    report = read_proc_span(PROC, 1)
    assert (report.number, report.name, report.description) == (1, "TE4/0/1", "T4XXP (PCI) Card 0 Span 1")
    assert report.flags == ("MASTER", "HDB3/CCS/CRC4", "RED")
    assert report.counters == SpanCounters(irq_misses=3)
    assert not report.clock_source


def test_procfs_counters_of_the_span_up() -> None:
    report = read_proc_span(PROC, 2)
    assert report.clock_source
    assert report.counters == SpanCounters(
        crc4_errors=5, bipolar_violations=12, fas_errors=1, e_bit_errors=2, slips=4, irq_misses=3
    )


@pytest.mark.parametrize(
    ("bits", "defects"),
    [
        (0x0, set()),
        (0x8, {Alarm.LOF}),  # red without detail
        (0x108, {Alarm.LOS}),
        (0x208, {Alarm.LOF}),
        (0x408, {Alarm.LOF}),  # CRC-4 multiframe alignment lost
        (0x10, {Alarm.AIS}),
        (0x4, {Alarm.RAI}),
        (0x1, set()),  # recovering
        (0x2, set()),  # loopback
        (0x20, set()),  # not open
        (0x100, set()),  # detail bits without red are not an alarm
    ],
)
def test_alarm_bits(bits: int, defects: set[Alarm]) -> None:
    assert alarms_from_bits(bits) == defects


def test_missing_span_and_bad_attribute_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DahdiError, match=r"span 7: cannot read .*span-7/name"):
        read_sysfs_span(SYSFS, 7)
    span = tmp_path / "span-1"
    span.mkdir()
    for f in SYSFS.joinpath("span-1").iterdir():
        span.joinpath(f.name).write_text(f.read_text())
    span.joinpath("alarms").write_text("RED\n")
    with pytest.raises(DahdiError, match=r"span 1: .*span-1/alarms holds 'RED', not a number"):
        read_sysfs_span(tmp_path, 1)


def test_proc_report_of_another_span_or_garbage_is_refused(tmp_path: Path) -> None:
    (tmp_path / "3").write_text((PROC / "2").read_text())
    with pytest.raises(DahdiError, match="reports span 2, not 3"):
        read_proc_span(tmp_path, 3)
    with pytest.raises(DahdiError, match="not a DAHDI span report"):
        parse_proc_span("hello\n")


@hypothesis_settings()
@given(st.text(max_size=300))
def test_proc_parser_returns_a_report_or_a_dahdi_error(text: str) -> None:
    try:
        report = parse_proc_span(text)
    except DahdiError:
        return
    assert report.number >= 0


@hypothesis_settings()
@given(st.binary(max_size=200), st.integers(0, 400))
def test_proc_parser_on_mutated_vectors(junk: bytes, cut: int) -> None:
    text = (PROC / "2").read_text()
    mutated = text[:cut] + junk.decode("latin-1") + text[cut:]
    with contextlib.suppress(DahdiError):
        parse_proc_span(mutated)
