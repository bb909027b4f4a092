"""Tone generation at calibrated G.711 levels: DTMF digits, sines, the voicemail beep and white noise.

Levels. The level scale of G.711 is dBm0, fixed by the theoretical maximum load of each law (ITU-T G.711
Tables 1 and 2, Note): a sine whose peaks reach the top of the coder's range, ±4096 A-law units or ±8159
µ-law units, is at +3.14 dBm0 (A-law) and +3.17 dBm0 (µ-law). Samples here are on the 16-bit linear scale
of :mod:`appliance.media.g711` (A-law units × 8, µ-law units × 4), so a 0 dBm0 sine has the peak amplitude
``32768 · 10^(-3.14/20) ≈ 22 827`` (A-law) or ``32636 · 10^(-3.17/20) ≈ 22 657`` (µ-law), i.e. 0.697 of
full scale; the two differ by 0.07 dB. A sine's level is its mean power ``amplitude² / 2`` against
that of the 0 dBm0 sine; :func:`dbm0_power` gives the reference power of each law.

DTMF (ITU-T Q.23): one frequency of the low group (697, 770, 852, 941 Hz: the keypad row) plus one of the
high group (1209, 1336, 1477, 1633 Hz: the column). ``level_dbm0`` is the level of the low-group tone;
``twist_db`` is the high-group level minus the low-group level.

Generators return ``numpy.float64`` arrays of linear samples (not yet rounded or clipped);
:func:`linear_to_alaw` / :func:`linear_to_ulaw` round, clip to int16 and encode with the G.711 coder of
:mod:`appliance.media.g711`, through a lookup array built from its encoder on first use.

Pure code: no I/O; randomness comes from the caller's ``numpy.random.Generator``.
"""

from __future__ import annotations

import functools
import math
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from appliance.media.g711 import alaw_encode, ulaw_encode

Law = Literal["PCMA", "PCMU"]
Samples = npt.NDArray[np.float64]

RATE: Final = 8000
# G.711 Tables 1 and 2, Note: theoretical maximum load, in dBm0, and its peak on the 16-bit linear scale.
ALAW_TMAX_DBM0: Final = 3.14
ULAW_TMAX_DBM0: Final = 3.17
ALAW_TMAX_LINEAR: Final = 4096 * 8
ULAW_TMAX_LINEAR: Final = 8159 * 4
ALAW_0DBM0_AMPLITUDE: Final = ALAW_TMAX_LINEAR * 10 ** (-ALAW_TMAX_DBM0 / 20)
ULAW_0DBM0_AMPLITUDE: Final = ULAW_TMAX_LINEAR * 10 ** (-ULAW_TMAX_DBM0 / 20)

DTMF_ROWS: Final = (697.0, 770.0, 852.0, 941.0)
DTMF_COLUMNS: Final = (1209.0, 1336.0, 1477.0, 1633.0)
# Q.23 Figure 1: the keypad, row by row.
DTMF_KEYPAD: Final = ("123A", "456B", "789C", "*0#D")

BEEP_FREQUENCY: Final = 1000.0
BEEP_MS: Final = 250
BEEP_LEVEL_DBM0: Final = -10.0
# Raised-cosine ramps at both ends of the beep, so it starts and stops without a click.
_BEEP_RAMP_MS: Final = 5


class ToneError(ValueError):
    """A tone that cannot be made: an unknown DTMF digit, a negative duration or a bad sample rate."""


def zero_dbm0_amplitude(law: Law = "PCMA") -> float:
    """Peak amplitude, on the 16-bit linear scale, of a 0 dBm0 sine in ``law`` (see the module docstring)."""
    return ALAW_0DBM0_AMPLITUDE if law == "PCMA" else ULAW_0DBM0_AMPLITUDE


def dbm0_power(law: Law = "PCMA") -> float:
    """Mean power (linear units squared) of a 0 dBm0 signal in ``law``: that of the 0 dBm0 sine."""
    return zero_dbm0_amplitude(law) ** 2 / 2


def dtmf_frequencies(digit: str) -> tuple[float, float]:
    """The (low-group, high-group) frequencies of a DTMF ``digit`` (``0-9 * # A-D``, case-insensitive)."""
    key = digit.upper()
    if len(key) == 1:
        for row, keys in enumerate(DTMF_KEYPAD):
            column = keys.find(key)
            if column >= 0:
                return DTMF_ROWS[row], DTMF_COLUMNS[column]
    raise ToneError(f"not a DTMF digit: {digit!r}")


def _sample_count(duration_ms: float, rate: int) -> int:
    if rate <= 0:
        raise ToneError(f"bad sample rate {rate}")
    if not duration_ms >= 0:  # also refuses NaN
        raise ToneError(f"bad duration {duration_ms} ms")
    return round(duration_ms * rate / 1000)


def sine(
    freq: float,
    duration_ms: float,
    level_dbm0: float,
    *,
    phase: float = 0.0,
    rate: int = RATE,
    law: Law = "PCMA",
) -> Samples:
    """A sine of ``freq`` Hz at ``level_dbm0`` lasting ``duration_ms`` (rounded to whole samples)."""
    n = np.arange(_sample_count(duration_ms, rate), dtype=np.float64)
    amplitude = zero_dbm0_amplitude(law) * 10 ** (level_dbm0 / 20)
    result: Samples = amplitude * np.sin(2 * math.pi * freq / rate * n + phase)
    return result


def dtmf_tone(
    digit: str,
    *,
    duration_ms: float,
    level_dbm0: float = -10.0,
    twist_db: float = 0.0,
    rate: int = RATE,
    law: Law = "PCMA",
) -> Samples:
    """The dual tone of ``digit``: low-group tone at ``level_dbm0``, high-group at ``level_dbm0 +
    twist_db``. Raises :class:`ToneError` for an unknown digit or a negative duration."""
    low, high = dtmf_frequencies(digit)
    return sine(low, duration_ms, level_dbm0, rate=rate, law=law) + sine(
        high, duration_ms, level_dbm0 + twist_db, rate=rate, law=law
    )


def silence(duration_ms: float, *, rate: int = RATE) -> Samples:
    """Digital silence (zeros) lasting ``duration_ms``."""
    return np.zeros(_sample_count(duration_ms, rate), dtype=np.float64)


def white_noise(
    duration_ms: float,
    level_dbm0: float,
    rng: np.random.Generator,
    *,
    rate: int = RATE,
    law: Law = "PCMA",
) -> Samples:
    """Gaussian white noise whose expected mean power is ``level_dbm0``, drawn from ``rng``."""
    sigma = math.sqrt(dbm0_power(law)) * 10 ** (level_dbm0 / 20)
    result: Samples = rng.normal(0.0, sigma, _sample_count(duration_ms, rate))
    return result


def beep(law: Law = "PCMA") -> bytes:
    """The voicemail beep as G.711 octets of ``law``: 1 kHz, 250 ms, -10 dBm0, with 5 ms ramps."""
    tone = sine(BEEP_FREQUENCY, BEEP_MS, BEEP_LEVEL_DBM0, law=law)
    ramp_len = _sample_count(_BEEP_RAMP_MS, RATE)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, ramp_len))
    tone[:ramp_len] *= ramp
    tone[-ramp_len:] *= ramp[::-1]
    return encode(tone, law)


@functools.cache
def _alaw_encoder() -> npt.NDArray[np.uint8]:
    # A-law codes the 13-bit value (sample >> 3): one entry per 8 linear steps, from -32768 up.
    table = np.frombuffer(alaw_encode(range(-32768, 32768, 8)), dtype=np.uint8)
    table.flags.writeable = False
    return table


@functools.cache
def _ulaw_encoder() -> npt.NDArray[np.uint8]:
    # µ-law codes the 14-bit value (sample >> 2).
    table = np.frombuffer(ulaw_encode(range(-32768, 32768, 4)), dtype=np.uint8)
    table.flags.writeable = False
    return table


def _to_int16(samples: npt.ArrayLike) -> npt.NDArray[np.int32]:
    values = np.rint(np.asarray(samples, dtype=np.float64))
    return np.clip(values, -32768, 32767).astype(np.int32)


def linear_to_alaw(samples: npt.ArrayLike) -> bytes:
    """Encode linear samples (rounded, clipped to int16) as A-law octets, as :func:`g711.alaw_encode`."""
    return bytes(_alaw_encoder()[(_to_int16(samples) + 32768) >> 3])


def linear_to_ulaw(samples: npt.ArrayLike) -> bytes:
    """Encode linear samples (rounded, clipped to int16) as µ-law octets, as :func:`g711.ulaw_encode`."""
    return bytes(_ulaw_encoder()[(_to_int16(samples) + 32768) >> 2])


def encode(samples: npt.ArrayLike, law: Law) -> bytes:
    """Encode linear samples as G.711 octets of ``law``."""
    return linear_to_alaw(samples) if law == "PCMA" else linear_to_ulaw(samples)
