"""G.711 companding (ITU-T G.711): A-law and µ-law to and from 16-bit linear PCM, and A-law ↔ µ-law.

Theory of operation. G.711 codes a 13-bit (A-law) or 14-bit (µ-law) linear sample as an octet: a sign bit,
a 3-bit segment number and a 4-bit step inside the segment. On the wire A-law octets have their even bits
inverted (XOR 0x55) and µ-law octets are wholly inverted (XOR 0xFF), which is why A-law silence is 0xD5 and
µ-law silence is 0xFF. Linear samples here are 16-bit: the 13/14-bit G.711 value shifted left by 3 or 2.

Decoding returns the centre of the coded interval (G.711 Tables 1a/2a, "decoder output value"); encoding
picks the interval whose decision values contain the sample, clipping beyond the top decision value.

A-law ↔ µ-law (G.711 Tables 3 and 4). The normative tables number the codes of each law by magnitude —
A-law 1..128 and µ-law 0..127 — and map every code of one law to the code of the other whose decoder
output value is nearest in level. The two laws count their uniform steps on different scales: A-law's
4096 units span its theoretical maximum load of +3.14 dBm0 and µ-law's 8159 units span +3.17 dBm0 (G.711
Tables 1 and 2, Note on Tmax), so one A-law unit is 8159/4096 · 10^(-0.03/20) ≈ 1.985 µ-law units. The
tables are built from exactly that rule at import (:func:`_nearest`): decoder output values of Tables
1a/2a (segment start plus half a step), the A-law ones moved to the µ-law scale, nearest wins. The result
equals the published tables, including the 1994 corrections to the widely copied versions of
Tables 3 and 4 (A-law 80 → µ-law 80 and µ-law 80 → A-law 80, in G.711's numbering); the tests check a set
of published entries. Signs carry across unchanged (µ-law's negative zero stays negative).

Properties that follow, and are tested: both maps are monotone in level; µ→A→µ returns every code but
the even-numbered ones of µ-law segment 0 (0, 2, … 14), where A-law's step is twice µ-law's; A→µ→A
returns 240 of the 256 codes (the others lie where µ-law's step is coarser and two A-law codes share one
µ-law code); either round trip applied twice gives the same as once. :func:`alaw_to_ulaw` and
:func:`ulaw_to_alaw` are one :meth:`bytes.translate` per frame (a single C call; 160 octets for 20 ms).

Pure code: module-level tables are immutable ``bytes`` and ``tuple`` values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

ALAW_SILENCE_OCTET: Final = 0xD5
ULAW_SILENCE_OCTET: Final = 0xFF

# Top decision value of each segment, in the 13-bit A-law and 14-bit µ-law (biased) domains.
_ALAW_SEGMENT_END: Final = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
_ULAW_SEGMENT_END: Final = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
# µ-law encodes |x| + 33 (in 14-bit units) so that every segment is a power-of-two span (G.711 Table 2a).
_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 8159


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return len(ends)


def alaw_encode_sample(sample: int) -> int:
    """Encode one 16-bit linear sample (clipped to int16) as an A-law octet."""
    pcm = max(-32768, min(32767, sample)) >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    segment = _segment(pcm, _ALAW_SEGMENT_END)
    if segment >= 8:
        return 0x7F ^ mask
    step = (pcm >> 1) & 0x0F if segment < 2 else (pcm >> segment) & 0x0F
    return ((segment << 4) | step) ^ mask


def alaw_decode_sample(octet: int) -> int:
    """Decode one A-law octet to the 16-bit linear centre of its interval."""
    code = (octet & 0xFF) ^ 0x55
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


def ulaw_encode_sample(sample: int) -> int:
    """Encode one 16-bit linear sample (clipped to int16) as a µ-law octet."""
    pcm = max(-32768, min(32767, sample)) >> 2
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = _segment(pcm, _ULAW_SEGMENT_END)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((pcm >> (segment + 1)) & 0x0F)) ^ mask


def ulaw_decode_sample(octet: int) -> int:
    """Decode one µ-law octet to the 16-bit linear centre of its interval."""
    code = ~octet & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return _ULAW_BIAS - magnitude if code & 0x80 else magnitude - _ULAW_BIAS


_ALAW_LINEAR: Final = tuple(alaw_decode_sample(octet) for octet in range(256))
_ULAW_LINEAR: Final = tuple(ulaw_decode_sample(octet) for octet in range(256))


# G.711 Tables 1 and 2, Note: theoretical maximum load capacity of each law, in dBm0.
_ALAW_TMAX_DBM0: Final = 3.14
_ULAW_TMAX_DBM0: Final = 3.17
# µ-law units per A-law unit when both laws are put on the dBm0 scale.
_A_TO_U_UNITS: Final = 8159 / 4096 * 10 ** ((_ALAW_TMAX_DBM0 - _ULAW_TMAX_DBM0) / 20)


def _alaw_level(number: int) -> int:
    """Decoder output value (G.711 Table 1a, 4096 scale) of the A-law magnitude code ``number`` 0..127
    (G.711's code number minus one)."""
    segment, step = number >> 4, number & 0x0F
    if segment == 0:
        return 2 * step + 1
    return ((16 + step) << segment) + (1 << (segment - 1))


def _ulaw_level(number: int) -> int:
    """Decoder output value (G.711 Table 2a, 8159 scale) of the µ-law magnitude code ``number`` 0..127."""
    segment, step = number >> 4, number & 0x0F
    if number == 0:
        return 0
    if segment == 0:
        return 2 * step
    return (32 << segment) - 33 + (step << (segment + 1)) + (1 << segment)


def _nearest(level: float, levels: tuple[float, ...]) -> int:
    return min(range(len(levels)), key=lambda n: abs(levels[n] - level))


_ALAW_LEVELS: Final = tuple(_alaw_level(n) * _A_TO_U_UNITS for n in range(128))
_ULAW_LEVELS: Final = tuple(float(_ulaw_level(n)) for n in range(128))
# Magnitude code to magnitude code, by G.711 Tables 3 (µ→A) and 4 (A→µ).
ALAW_TO_ULAW_NUMBER: Final = tuple(_nearest(level, _ULAW_LEVELS) for level in _ALAW_LEVELS)
ULAW_TO_ALAW_NUMBER: Final = tuple(_nearest(level, _ALAW_LEVELS) for level in _ULAW_LEVELS)


def _alaw_to_ulaw_octet(octet: int) -> int:
    # On the wire an A-law magnitude number n is n ^ 0x55 with bit 7 set for positive; a µ-law one is
    # ~n, so bit 7 set is positive there too (G.711 §2 and §3 bit inversion).
    if octet & 0x80:
        return 0xFF ^ ALAW_TO_ULAW_NUMBER[octet ^ 0xD5]
    return 0x7F ^ ALAW_TO_ULAW_NUMBER[octet ^ 0x55]


def _ulaw_to_alaw_octet(octet: int) -> int:
    if octet & 0x80:
        return 0xD5 ^ ULAW_TO_ALAW_NUMBER[octet ^ 0xFF]
    return 0x55 ^ ULAW_TO_ALAW_NUMBER[octet ^ 0x7F]


ALAW_TO_ULAW_TABLE: Final = bytes(_alaw_to_ulaw_octet(octet) for octet in range(256))
ULAW_TO_ALAW_TABLE: Final = bytes(_ulaw_to_alaw_octet(octet) for octet in range(256))


def alaw_to_ulaw(frame: bytes) -> bytes:
    """Transcode A-law octets to µ-law octets per G.711 Table 4, one octet for one octet."""
    return frame.translate(ALAW_TO_ULAW_TABLE)


def ulaw_to_alaw(frame: bytes) -> bytes:
    """Transcode µ-law octets to A-law octets per G.711 Table 3, one octet for one octet."""
    return frame.translate(ULAW_TO_ALAW_TABLE)


def alaw_decode(frame: bytes) -> list[int]:
    """Decode A-law octets to 16-bit linear samples."""
    table = _ALAW_LINEAR
    return [table[octet] for octet in frame]


def ulaw_decode(frame: bytes) -> list[int]:
    """Decode µ-law octets to 16-bit linear samples."""
    table = _ULAW_LINEAR
    return [table[octet] for octet in frame]


def alaw_encode(samples: Iterable[int]) -> bytes:
    """Encode 16-bit linear samples (each clipped to int16) as A-law octets."""
    return bytes(alaw_encode_sample(sample) for sample in samples)


def ulaw_encode(samples: Iterable[int]) -> bytes:
    """Encode 16-bit linear samples (each clipped to int16) as µ-law octets."""
    return bytes(ulaw_encode_sample(sample) for sample in samples)
