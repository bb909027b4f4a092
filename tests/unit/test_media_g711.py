"""G.711 companding and A-law ↔ µ-law transcoding: known values, round trips, monotonicity, speed."""

from __future__ import annotations

import timeit
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.media import g711


def _alaw_codes_by_level() -> list[int]:
    return sorted(range(256), key=g711.alaw_decode_sample)


def _ulaw_codes_by_level() -> list[int]:
    return sorted(range(256), key=g711.ulaw_decode_sample)


def test_silence_octets() -> None:
    assert g711.alaw_encode([0]) == b"\xd5"
    assert g711.ulaw_encode([0]) == b"\xff"
    assert g711.alaw_decode(b"\xd5\x55") == [8, -8]
    assert g711.ulaw_decode(b"\xff\x7f") == [0, 0]


def test_extremes() -> None:
    assert g711.alaw_decode(b"\xaa\x2a") == [32256, -32256]
    assert g711.ulaw_decode(b"\x80\x00") == [32124, -32124]
    assert g711.alaw_encode([32767, -32768]) == b"\xaa\x2a"
    assert g711.ulaw_encode([32767, -32768]) == b"\x80\x00"
    # Samples beyond int16 clip rather than wrap.
    assert g711.alaw_encode([10**6, -(10**6)]) == b"\xaa\x2a"
    assert g711.ulaw_encode([10**6, -(10**6)]) == b"\x80\x00"


def test_known_mid_values() -> None:
    # Segment 4, step 0 of A-law: 13-bit interval 256-271, centre 264 (×8 in 16-bit).
    assert g711.alaw_decode_sample(0x40 ^ 0xD5) == 264 * 8
    # Segment 1, step 0 of µ-law (biased 64-67): decoder output 33 in 14-bit units (×4 in 16-bit).
    assert g711.ulaw_decode_sample(0x10 ^ 0xFF) == 33 * 4


def test_decode_is_monotone_in_code_order() -> None:
    positives_a = [g711.alaw_decode_sample(code ^ 0xD5) for code in range(128)]
    negatives_a = [g711.alaw_decode_sample(code ^ 0x55) for code in range(128)]
    assert positives_a == sorted(set(positives_a))
    assert negatives_a == sorted(set(negatives_a), reverse=True)
    positives_u = [g711.ulaw_decode_sample(code ^ 0xFF) for code in range(128)]
    negatives_u = [g711.ulaw_decode_sample(code ^ 0x7F) for code in range(128)]
    assert positives_u == sorted(set(positives_u))
    assert negatives_u == sorted(negatives_u, reverse=True)
    assert len(set(negatives_u)) == 128


def test_encode_decode_round_trip_every_code() -> None:
    for code in range(256):
        assert g711.alaw_encode_sample(g711.alaw_decode_sample(code)) == code
        decoded = g711.ulaw_decode_sample(code)
        # µ-law has a positive and a negative zero; both decode to 0 which encodes as positive zero.
        expected = 0xFF if code == 0x7F else code
        assert g711.ulaw_encode_sample(decoded) == expected


@given(st.integers(min_value=-32768, max_value=32767))
def test_encode_error_within_half_a_step(sample: int) -> None:
    for encode, decode in (
        (g711.alaw_encode_sample, g711.alaw_decode_sample),
        (g711.ulaw_encode_sample, g711.ulaw_decode_sample),
    ):
        decoded = decode(encode(sample))
        assert (decoded >= 0) == (sample >= 0) or abs(sample) <= 8
        # The coarsest step is 1024 (A-law segment 7 in 16-bit units), plus the clipped top.
        assert abs(decoded - sample) <= 1024


def test_transcoding_keeps_silence_and_sign() -> None:
    assert g711.alaw_to_ulaw(b"\xd5\x55") == b"\xfe\x7e"
    assert g711.ulaw_to_alaw(b"\xff\x7f") == b"\xd5\x55"
    for code in range(256):
        assert g711.alaw_to_ulaw(bytes([code]))[0] & 0x80 == code & 0x80
        assert g711.ulaw_to_alaw(bytes([code]))[0] & 0x80 == code & 0x80


def test_transcoding_extremes() -> None:
    assert g711.alaw_to_ulaw(b"\xaa\x2a") == b"\x80\x00"
    assert g711.ulaw_to_alaw(b"\x80\x00") == b"\xaa\x2a"


def test_transcoding_is_monotone() -> None:
    ulaw_levels = [g711.ulaw_decode_sample(u) for u in g711.alaw_to_ulaw(bytes(_alaw_codes_by_level()))]
    assert ulaw_levels == sorted(ulaw_levels)
    alaw_levels = [g711.alaw_decode_sample(a) for a in g711.ulaw_to_alaw(bytes(_ulaw_codes_by_level()))]
    assert alaw_levels == sorted(alaw_levels)


def _segment_of_alaw(code: int) -> int:
    return ((code ^ 0x55) & 0x70) >> 4


def _segment_of_ulaw(code: int) -> int:
    return (~code & 0x70) >> 4


def test_alaw_ulaw_alaw_round_trip() -> None:
    every = bytes(range(256))
    back = g711.ulaw_to_alaw(g711.alaw_to_ulaw(every))
    changed = {code for code in range(256) if back[code] != code}
    # 240 of 256 codes come back. The 16 that do not (8 per sign) lie where one µ-law interval straddles
    # two A-law intervals: the upper half of A-law segment 1 (µ-law's step is coarser there) and the top
    # step of segments 2, 3 and 5; segments 0, 4, 6 and 7 always come back.
    assert len(changed) == 16
    assert {_segment_of_alaw(code) for code in changed} == {1, 2, 3, 5}
    assert all(back[code] == code for code in range(256) if _segment_of_alaw(code) in (0, 4, 6, 7))
    # Where a code does not come back it moves by exactly one step, never across zero.
    for code in changed:
        assert abs(g711.alaw_decode_sample(back[code]) - g711.alaw_decode_sample(code)) <= 1024
        assert back[code] & 0x80 == code & 0x80


def test_ulaw_alaw_ulaw_round_trip() -> None:
    every = bytes(range(256))
    back = g711.alaw_to_ulaw(g711.ulaw_to_alaw(every))
    changed = {code for code in range(256) if back[code] != code}
    # A-law is at least as fine everywhere above µ-law segment 0; in segment 0 its step is twice µ-law's,
    # so pairs of µ-law codes merge (half of them, 8 per sign, come back changed), silence included.
    assert all(back[code] == code for code in range(256) if _segment_of_ulaw(code) >= 1)
    assert len(changed) == 16
    assert {_segment_of_ulaw(code) for code in changed} == {0}
    assert back[0xFF] == 0xFE


def test_round_trips_are_projections() -> None:
    every = bytes(range(256))
    once = g711.ulaw_to_alaw(g711.alaw_to_ulaw(every))
    assert g711.ulaw_to_alaw(g711.alaw_to_ulaw(once)) == once
    once_u = g711.alaw_to_ulaw(g711.ulaw_to_alaw(every))
    assert g711.alaw_to_ulaw(g711.ulaw_to_alaw(once_u)) == once_u


# Entries of G.711 Table 3 (µ-law code number → A-law code number) and Table 4 (A-law → µ-law) in the
# Recommendation's numbering (µ-law 0..127, A-law 1..128, by magnitude): each segment's first and last
# entries, the codes where two A-law codes share one µ-law code, and the rows corrected in 1994.
TABLE_3_ENTRIES = {
    0: 1,
    1: 1,
    15: 8,
    16: 9,
    31: 24,
    32: 25,
    33: 27,
    35: 31,
    36: 33,
    47: 44,
    48: 46,
    49: 48,
    50: 49,
    63: 62,
    64: 64,
    79: 79,
    80: 80,
    81: 82,
    95: 96,
    96: 97,
    111: 112,
    112: 113,
    127: 128,
}
TABLE_4_ENTRIES = {
    1: 1,
    2: 3,
    8: 15,
    9: 16,
    16: 23,
    17: 24,
    25: 32,
    26: 32,
    27: 33,
    32: 35,
    33: 36,
    45: 48,
    46: 48,
    47: 49,
    48: 49,
    63: 64,
    64: 64,
    65: 65,
    80: 80,
    81: 80,
    82: 81,
    96: 95,
    97: 96,
    128: 127,
}


def test_transcoding_tables_match_published_entries() -> None:
    for ulaw_number, alaw_number in TABLE_3_ENTRIES.items():
        assert g711.ULAW_TO_ALAW_NUMBER[ulaw_number] == alaw_number - 1, ulaw_number
        # Positive and negative octets on the wire (G.711 bit inversions).
        assert g711.ulaw_to_alaw(bytes([0xFF ^ ulaw_number])) == bytes([0xD5 ^ (alaw_number - 1)])
        assert g711.ulaw_to_alaw(bytes([0x7F ^ ulaw_number])) == bytes([0x55 ^ (alaw_number - 1)])
    for alaw_number, ulaw_number in TABLE_4_ENTRIES.items():
        assert g711.ALAW_TO_ULAW_NUMBER[alaw_number - 1] == ulaw_number, alaw_number
        assert g711.alaw_to_ulaw(bytes([0xD5 ^ (alaw_number - 1)])) == bytes([0xFF ^ ulaw_number])
        assert g711.alaw_to_ulaw(bytes([0x55 ^ (alaw_number - 1)])) == bytes([0x7F ^ ulaw_number])


def test_transcoding_picks_the_nearest_level_without_near_ties() -> None:
    # The rule holds with a clear margin (no two candidates within 1 % of a step), so the tables do not
    # hang on the floating-point value of the scale factor.
    alaw = g711._ALAW_LEVELS
    ulaw = g711._ULAW_LEVELS
    for source, target, table in (
        (alaw, ulaw, g711.ALAW_TO_ULAW_NUMBER),
        (ulaw, alaw, g711.ULAW_TO_ALAW_NUMBER),
    ):
        for number, level in enumerate(source):
            distances = sorted(abs(t - level) for t in target)
            assert abs(target[table[number]] - level) == distances[0]
            step = abs(target[min(table[number] + 1, 127)] - target[max(table[number] - 1, 0)]) / 2
            assert distances[1] - distances[0] > 0.01 * step


@pytest.mark.parametrize("convert", [g711.alaw_to_ulaw, g711.ulaw_to_alaw])
def test_frame_transcoding_speed(
    convert: Callable[[bytes], bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    frame = bytes(range(160))
    runs = 20000
    seconds = min(timeit.repeat(lambda: convert(frame), number=runs, repeat=3))
    nanoseconds = seconds / runs * 1e9
    with capsys.disabled():
        print(f"\n{convert.__name__}: {nanoseconds:.0f} ns per 160-octet frame")
    # One C call per frame: far below the 20 ms the frame lasts, and below a microsecond-scale budget.
    assert nanoseconds < 20_000
