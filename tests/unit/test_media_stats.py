"""Per-direction RTP statistics (RFC 3550 A.1, A.3, A.8) and the G.107 MOS estimate, on worked examples
and hypothesis properties."""

from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media.stats import (
    MAX_DROPOUT,
    IntervalReport,
    StreamReport,
    StreamStats,
    delay_impairment,
    equipment_impairment,
    estimate_mos,
    r_to_mos,
)

_LONG = "APPLIANCE_FUZZ_EXAMPLES" in os.environ
PROFILE = settings(
    max_examples=int(os.environ.get("APPLIANCE_FUZZ_EXAMPLES", "200")), derandomize=not _LONG, deadline=None
)

RATE = 8000
SSRC = 0x11223344


def feed(stats: StreamStats, seqs: list[int], *, ssrc: int = SSRC, start: float = 0.0) -> list[bool]:
    """G.711 20 ms packets numbered ``seqs``, each arriving exactly on time for its sequence number."""
    out = []
    for seq in seqs:
        out.append(stats.update(seq, seq * 160, ssrc, 160, start + seq * 0.02, RATE))
    return out


# -- sequence tracking (A.1) and loss (A.3) --------------------------------------------------------------


def test_probation_then_counting() -> None:
    stats = StreamStats()
    assert feed(stats, [10]) == [False]  # first packet of a new source is on probation
    assert stats.expected == 0 and stats.received == 0
    assert feed(stats, [11, 12]) == [True, True]
    assert (stats.received, stats.expected, stats.lost) == (2, 2, 0)
    assert stats.extended_highest_seq == 12
    assert stats.packets == 3 and stats.octets == 480


def test_probation_restarts_on_a_non_sequential_packet() -> None:
    stats = StreamStats()
    assert feed(stats, [10, 50, 51, 52]) == [False, False, True, True]
    assert (stats.received, stats.expected) == (2, 2)
    assert stats.report().expected == 2


def test_loss_with_a_gap_and_interval_fraction() -> None:
    stats = StreamStats()
    feed(stats, [n for n in range(100, 110) if n not in (105, 106)])
    # base is 101 (100 was the probation packet): 101..109 expected, 105 and 106 missing.
    assert (stats.expected, stats.received, stats.lost) == (9, 7, 2)
    block = stats.interval_report()
    assert block == IntervalReport(
        ssrc=SSRC,
        fraction_lost=(2 << 8) // 9,
        cumulative_lost=2,
        extended_highest_seq=109,
        jitter=0,
        expected_interval=9,
        lost_interval=2,
    )
    feed(stats, list(range(110, 120)))
    block = stats.interval_report()
    assert (block.fraction_lost, block.cumulative_lost, block.expected_interval) == (0, 2, 10)
    # No packet since the last report: nothing expected, nothing lost.
    assert stats.interval_report().fraction_lost == 0


def test_reordering_within_max_misorder_is_late_not_lost() -> None:
    stats = StreamStats()
    assert feed(stats, [1, 2, 3, 5, 4, 6]) == [False, True, True, True, True, True]
    assert (stats.expected, stats.received, stats.lost) == (5, 5, 0)
    assert stats.late == 1 and stats.duplicates == 0
    assert stats.extended_highest_seq == 6


def test_late_packet_from_before_the_base_is_not_counted() -> None:
    stats = StreamStats()
    assert feed(stats, [5, 6, 4]) == [False, True, False]
    assert (stats.expected, stats.received, stats.lost) == (1, 1, 0)
    assert stats.late == 1


def test_wrap_of_the_16_bit_sequence_number() -> None:
    stats = StreamStats()
    seqs = [65533, 65534, 65535, 0, 1, 2]
    for i, seq in enumerate(seqs):
        stats.update(seq, i * 160, SSRC, 160, i * 0.02, RATE)
    assert stats.extended_highest_seq == 65536 + 2
    assert (stats.expected, stats.received, stats.lost) == (5, 5, 0)
    # A late packet from before the wrap is still recognised.
    stats.update(65535, 2 * 160, SSRC, 160, 0.2, RATE)
    assert stats.duplicates == 1 and stats.extended_highest_seq == 65538


def test_restart_after_a_big_jump_needs_two_sequential_packets() -> None:
    stats = StreamStats()
    feed(stats, list(range(10)))
    assert stats.update(20000, 0, SSRC, 160, 1.0, RATE) is False  # one stray packet is ignored
    assert stats.received == 9 and stats.restarts == 0
    assert stats.update(20001, 160, SSRC, 160, 1.02, RATE) is True  # the sender really restarted
    assert stats.restarts == 1
    assert (stats.expected, stats.received, stats.extended_highest_seq) == (1, 1, 20001)
    assert stats.update(20002, 320, SSRC, 160, 1.04, RATE) is True
    assert (stats.expected, stats.received, stats.lost) == (2, 2, 0)


def test_a_single_stray_jump_does_not_restart() -> None:
    stats = StreamStats()
    feed(stats, list(range(10)))
    assert stats.update(10 + MAX_DROPOUT, 0, SSRC, 160, 1.0, RATE) is False
    assert feed(stats, [10, 11], start=0.0) == [True, True]
    assert (stats.restarts, stats.expected, stats.received) == (0, 11, 11)


def test_duplicates_count_as_received_so_loss_goes_negative() -> None:
    stats = StreamStats()
    feed(stats, [1, 2, 3, 3, 2])
    assert stats.duplicates == 2 and stats.late == 0
    assert (stats.expected, stats.received, stats.lost) == (2, 4, -2)
    block = stats.interval_report()
    assert block.fraction_lost == 0 and block.cumulative_lost == -2


def test_a_new_ssrc_resets_tracking_and_is_counted() -> None:
    stats = StreamStats()
    feed(stats, [1, 2, 3, 4])
    feed(stats, [9000, 9001, 9002], ssrc=0x55)
    assert stats.ssrc == 0x55 and stats.ssrc_changes == 1
    assert (stats.expected, stats.received, stats.extended_highest_seq) == (2, 2, 9002)
    assert stats.packets == 7 and stats.octets == 7 * 160
    assert stats.first_arrival == 0.02 and stats.last_arrival == pytest.approx(9002 * 0.02)


# -- jitter (A.8) ------------------------------------------------------------------------------------------


def test_jitter_worked_example() -> None:
    stats = StreamStats()
    # 20 ms packets (160 timestamp units at 8 kHz); packet 2 arrives 5 ms late (40 units).
    arrivals = [0.000, 0.020, 0.045, 0.060, 0.080]
    for i, t in enumerate(arrivals):
        stats.update(i, i * 160, SSRC, 160, t, RATE)
    # Packet 0 is the probation packet; packet 1 sets the transit baseline (0).
    # Packet 2: D = 40, J = 40/16 = 2.5. Packet 3: D = 40, J = 2.5 + 37.5/16 = 4.84375.
    # Packet 4: D = 0, J = 4.84375 - 4.84375/16 = 4.541015625.
    assert stats.jitter == pytest.approx(4.541015625)
    assert stats.jitter_ms == pytest.approx(4.541015625 / 8)
    assert stats.interval_report().jitter == 4


def test_jitter_is_zero_for_a_perfect_stream_across_a_timestamp_wrap() -> None:
    stats = StreamStats()
    ts0 = (1 << 32) - 400
    for i in range(10):
        stats.update(i, (ts0 + i * 160) & 0xFFFFFFFF, SSRC, 160, 3.0 + i * 0.02, RATE)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_jitter_in_ms_uses_the_clock_rate() -> None:
    stats = StreamStats()
    arrivals = [0.0, 0.02, 0.05]  # packet 2 is 10 ms late
    for i, t in enumerate(arrivals):
        stats.update(i, i * 320, SSRC, 320, t, 16000)
    assert stats.jitter == pytest.approx(160 / 16)
    assert stats.jitter_ms == pytest.approx(10 / 16)


# -- MOS (G.107) -------------------------------------------------------------------------------------------


def test_mos_without_impairment_is_about_4_4() -> None:
    assert estimate_mos(0.0, 0.0) == pytest.approx(4.409, abs=0.002)
    assert r_to_mos(0.0) == 1.0 and r_to_mos(100.0) == 4.5 and r_to_mos(-5.0) == 1.0


def test_mos_decreases_with_loss_and_plc_helps() -> None:
    values = [estimate_mos(p, 0.0) for p in (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values)
    assert estimate_mos(2.0, 0.0, plc=True) > estimate_mos(2.0, 0.0)
    # G.107 random loss with Bpl 4.3: 1 % loss costs Ie,eff = 95/5.3 ≈ 17.9 rating points.
    assert equipment_impairment(1.0) == pytest.approx(95 / 5.3)
    assert equipment_impairment(-3.0) == 0.0


def test_mos_decreases_with_delay_and_jitter() -> None:
    assert delay_impairment(100.0) == 0.0
    assert delay_impairment(200.0) == pytest.approx(3.045, abs=0.01)
    assert estimate_mos(0.0, 0.0, 300.0) < estimate_mos(0.0, 0.0, 150.0) < estimate_mos(0.0, 0.0, 0.0)
    assert estimate_mos(0.0, 60.0) < estimate_mos(0.0, 0.0)


def test_report_snapshot() -> None:
    stats = StreamStats()
    assert stats.report().first_arrival is None and stats.report().ssrc is None
    feed(stats, list(range(50)))
    clean = stats.report()
    assert isinstance(clean, StreamReport)
    assert clean.mos == pytest.approx(4.409, abs=0.002) and clean.loss_percent == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        clean.mos = 5.0  # type: ignore[misc]
    feed(stats, [n for n in range(50, 100) if n % 10 != 0])  # 5 of 50 lost
    lossy = stats.report()
    assert lossy.lost == 5 and lossy.loss_percent == pytest.approx(500 / 99)
    assert lossy.mos < clean.mos
    assert clean.packets == 50  # the snapshot did not move


# -- properties --------------------------------------------------------------------------------------------


@st.composite
def arrival_orders(draw: st.DrawFn, *, duplicates: bool) -> tuple[int, list[int], int]:
    """(start sequence number, offsets in arrival order, duplicate copies): the first two offsets arrive
    first and in order (so probation ends on offset 1); later ones are dropped at random and displaced by
    at most 20 places, well within MAX_MISORDER."""
    start = draw(st.integers(0, 0xFFFF))
    n = draw(st.integers(2, 400))
    kept = [o for o in range(2, n) if draw(st.booleans()) or o == n - 1]
    copies = [o for o in kept if duplicates and draw(st.integers(0, 9)) == 0]
    later = kept + copies
    keys = [o + draw(st.integers(0, 20)) for o in later]
    order = [o for _, o in sorted(zip(keys, later, strict=True), key=lambda pair: pair[0])]
    return start, [0, 1, *order], len(copies)


@PROFILE
@given(arrival_orders(duplicates=False))
def test_received_plus_lost_is_expected_and_extended_seq_never_decreases(
    case: tuple[int, list[int], int],
) -> None:
    start, offsets, _ = case
    stats = StreamStats()
    highest = -1
    running_max = -1
    late = 0
    for i, off in enumerate(offsets):
        late += off < running_max
        running_max = max(running_max, off)
        stats.update((start + off) & 0xFFFF, 0, SSRC, 160, i * 0.02, RATE)
        assert stats.extended_highest_seq >= highest
        highest = stats.extended_highest_seq
    top = max(offsets)
    base = (start + 1) & 0xFFFF  # cycles count from the base, the second packet
    assert stats.extended_highest_seq == base + top - 1
    assert stats.expected == top  # offsets 1..top
    assert stats.received + stats.lost == stats.expected
    assert stats.lost == top - (len(offsets) - 1)  # every offset from 1 not delivered
    assert stats.late == late and stats.duplicates == 0


@PROFILE
@given(arrival_orders(duplicates=True))
def test_duplicates_are_counted_and_lower_the_loss(case: tuple[int, list[int], int]) -> None:
    start, offsets, copies = case
    stats = StreamStats()
    for i, off in enumerate(offsets):
        stats.update((start + off) & 0xFFFF, 0, SSRC, 160, i * 0.02, RATE)
    distinct = len(set(offsets)) - 1
    assert stats.duplicates == copies
    assert stats.lost == max(offsets) - distinct - copies
    block = stats.interval_report()
    assert block.cumulative_lost == stats.lost
    assert 0 <= block.fraction_lost <= 255


def test_a_gap_wider_than_the_seen_window_forgets_old_slots() -> None:
    stats = StreamStats()
    feed(stats, list(range(301)))  # every slot of the 256-slot window marked
    feed(stats, [1300, 1250])  # a 999-packet gap, then a packet 50 behind: late, never seen before
    assert stats.late == 1 and stats.duplicates == 0
    feed(stats, [1250])
    assert stats.duplicates == 1
    assert (stats.expected, stats.received) == (1300, 303)  # 1..300, 1300, 1250 twice


def test_cumulative_lost_is_clamped_to_24_bits_in_the_report_block() -> None:
    stats = StreamStats()
    seq = 1
    feed(stats, [0, 1])
    for i in range(2900):
        seq = (seq + MAX_DROPOUT - 1) & 0xFFFF  # the largest step still taken as a loss, not a restart
        stats.update(seq, 0, SSRC, 160, i * 0.02, RATE)
    assert stats.restarts == 0 and stats.lost > 0x7FFFFF
    block = stats.interval_report()
    assert block.cumulative_lost == 0x7FFFFF
    assert block.fraction_lost == 255  # 2998 of every 2999 lost: 255.9, capped to the 8-bit field
    assert stats.report().mos < 1.1
