"""G.711 companding (ITU-T G.711): A-law and µ-law to and from 16-bit linear PCM, and A-law ↔ µ-law.

Theory of operation. G.711 codes a 13-bit (A-law) or 14-bit (µ-law) linear sample as an octet: a sign bit,
a 3-bit segment number and a 4-bit step inside the segment. On the wire A-law octets have their even bits
inverted (XOR 0x55) and µ-law octets are wholly inverted (XOR 0xFF), which is why A-law silence is 0xD5 and
µ-law silence is 0xFF. Linear samples here are 16-bit: the 13/14-bit G.711 value shifted left by 3 or 2.

Decoding returns the centre of the coded interval (G.711 Tables 1a/2a, "decoder output value"); encoding
picks the interval whose decision values contain the sample, clipping beyond the top decision value.

A-law ↔ µ-law. G.711 Tables 3 and 4 map every code of one law to the code of the other law whose interval
contains the first code's decoder output value. That is exactly ``encode_other(decode_this(code))``, so the
two transcoding tables below are built that way once at import, and :func:`alaw_to_ulaw` /
:func:`ulaw_to_alaw` are one :meth:`bytes.translate` per frame (a single C call; 160 octets for 20 ms).
The sign bit is carried across unchanged (the tables are sign-symmetric, and µ-law's negative
zero stays negative). Properties that follow, and are tested: both maps are monotone in the decoded
value; A→µ→A returns 240 of the 256 codes (the others lie where one µ-law interval straddles two A-law
intervals and move by one step); µ→A→µ returns every code outside µ-law segment 0, where A-law's step is
twice µ-law's and pairs of codes merge; and applying either round trip twice gives the same as once.
Because A-law and µ-law full scale differ slightly (G.711 §3), a few codes near segment edges map one step
away from where a table drawn on the analogue scale would put them; the transcoding error stays within one
quantisation step of the target law.

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


def _alaw_to_ulaw_octet(octet: int) -> int:
    # Transcode the magnitude and carry the sign bit across, so that µ-law's negative zero and every
    # negative code stay negative (Tables 3/4 are sign-symmetric); A-law bit 7 set means positive.
    code = ulaw_encode_sample(abs(_ALAW_LINEAR[octet]))
    return code if octet & 0x80 else code & 0x7F


def _ulaw_to_alaw_octet(octet: int) -> int:
    # µ-law bit 7 set means positive; a negative A-law code differs from the positive one in bit 7 only.
    code = alaw_encode_sample(abs(_ULAW_LINEAR[octet]))
    return code if octet & 0x80 else code ^ 0x80


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
