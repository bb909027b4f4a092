"""In-band DTMF detection on G.711 audio (ITU-T Q.23/Q.24), for carriers and B-channels without RFC 4733.

Theory of operation. :class:`InbandDtmfDetector` is sans-I/O: the media worker feeds it the caller's G.711
payloads with the current time and gets back events. Octets are decoded through a 256-entry lookup array
(:data:`LINEAR_TABLE_A`, :data:`LINEAR_TABLE_U`, built from :mod:`appliance.media.g711`) and cut into
blocks of 80 samples (10 ms at 8 kHz), two per 20 ms packet. Payloads of any length are accepted: samples
left over after the last whole block wait for the next payload, so packet boundaries never need to line
up with tones or blocks, and no payload raises.

Each block goes through one matrix product (:func:`_filters`): a DFT evaluation at each of the eight DTMF
frequencies (the Goertzel filters) and, for every keypad pair, a least-squares fit of the two tones. A
block is a *hit* for a digit when all of these hold (thresholds after spandsp's and Asterisk's detectors,
which quote the AT&T receiver figures: 40 ms accepted, twist 8 dB normal / 4 dB reverse, S/N 15 dB,
±1.5% frequency accepted and ±3.5% refused, 26 dB of attenuation ridden through):

* relative peak: in the DFT, the strongest tone of each group (row: 697-941 Hz, column: 1209-1633 Hz)
  beats the others of its group by :data:`RELATIVE_PEAK_DB`; this picks the digit;
* level: in the fit of that pair, each tone is at least :data:`MIN_TONE_DBM0` (-36 dBm0: the usual
  -10 dBm0 sending level after 26 dB of attenuation);
* twist, high-group level minus low-group level, from the fit: at most +4 dB ("reverse twist") and at
  least -8 dB ("normal twist", the high group weakened by line loss), checked with 1 dB to spare for the
  reading error of off-frequency tones, so a pair beyond +5 dB or -9 dB is refused;
* purity: the fitted pair explains at least :data:`TONE_TO_TOTAL` (-0.85 dB, spandsp's figure) of the
  block's energy, which rejects speech, music and noise (talk-off);
* frequency, from the second block of a digit on: each tone's fitted phase moved from the previous
  block's by the nominal frequency's advance, within what a tone :data:`FREQUENCY_TOLERANCE` (2.5%, halfway
  between the ±1.5% that must be accepted and the ±3.5% that must be refused) off would drift in 10 ms. A
  10 ms block alone cannot tell 697 Hz from 721 Hz (a quarter of its 100 Hz resolution); the phase drift
  across blocks can, and stays unambiguous up to ±50 Hz, beyond which the purity test refuses anyway.

Timing (ITU-T Q.24's reception limits as applied here: tones of 40 ms or more are accepted, tones shorter
than 23 ms refused; breaks of up to 10 ms do not end a digit, pauses of 40 ms or more separate two). A
digit *starts* after :data:`START_BLOCKS` = 3 consecutive hits, the second and third coherent in frequency
with the one before: a 40 ms tone covers at least three whole 10 ms blocks wherever it falls, while a
23 ms tone covers at most two, and the blocks it only grazes (3 ms or less of tone) fail the purity test.
It *ends* after :data:`END_BLOCKS` = 3 blocks without it: a 10 ms break spoils at most two blocks, a
40 ms pause always three. The same digit after a pause is a second digit; a different digit with three
hits ends the first and starts itself.

Events (frozen dataclasses): :class:`DigitStarted` when a digit is recognised, so the worker can stop a
prompt at once (barge-in), and :class:`DigitEnded` with the tone's duration when it stops, as an RFC 4733
end event would report it. Every :class:`DigitStarted` is followed by exactly one :class:`DigitEnded`.
``duration_ms`` counts from the first to the last hit block, 10 ms each, so it is within one block of the
tone's length (plus lost packets, which are not counted). When payloads stop arriving during a digit (the
caller's leg went quiet, packets were lost) the digit ends :data:`IDLE_TIMEOUT` after the last payload's
audio ran out: ``get_timer``/``handle_timer`` as every timed machine here; :meth:`InbandDtmfDetector.flush`
ends it at once (the call is over).

Cost, in CPU time on the development machine: about 15 µs per 20 ms packet of tone, speech or noise, and
5 µs for a quiet packet (below -36 dBm0), which skips the filters: some 0.08% of a core per leg at 50
packets a second. ``test_feed_cost`` prints the figures.

Pure code: no sockets, no clocks; ``now`` is a parameter.
"""

from __future__ import annotations

import cmath
import logging
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from appliance.media.g711 import alaw_decode, ulaw_decode
from appliance.media.rtp import MediaError
from appliance.media.tones import DTMF_COLUMNS, DTMF_KEYPAD, DTMF_ROWS, RATE, Law, dbm0_power

log = logging.getLogger("appliance.media.inband")


def _table(decoded: list[int]) -> npt.NDArray[np.float64]:
    table = np.array(decoded, dtype=np.float64)
    table.flags.writeable = False
    return table


# Octet → 16-bit linear sample (as float64), for decoding a whole payload with one indexing operation.
LINEAR_TABLE_A: Final = _table(alaw_decode(bytes(range(256))))
LINEAR_TABLE_U: Final = _table(ulaw_decode(bytes(range(256))))

BLOCK_SAMPLES: Final = 80
BLOCK_MS: Final = BLOCK_SAMPLES * 1000 // RATE
START_BLOCKS: Final = 3
END_BLOCKS: Final = 3
IDLE_TIMEOUT: Final = 0.1
MIN_TONE_DBM0: Final = -36.0
MAX_REVERSE_TWIST_DB: Final = 4.0
MAX_NORMAL_TWIST_DB: Final = 8.0
RELATIVE_PEAK_DB: Final = 4.0
TONE_TO_TOTAL: Final = 0.82
FREQUENCY_TOLERANCE: Final = 0.025
ENERGY_FLOOR_DBM0: Final = -100.0

# A tone 1.5% off its nominal frequency reads up to 0.9 dB low in a 10 ms block (the DFT's sinc response at
# a quarter of a bin), so twist is checked with 1 dB to spare: tones at the limits are still accepted.
_TWIST_MARGIN_DB: Final = 1.0
_REVERSE_TWIST: Final = 10 ** ((MAX_REVERSE_TWIST_DB + _TWIST_MARGIN_DB) / 10)
_NORMAL_TWIST: Final = 10 ** ((MAX_NORMAL_TWIST_DB + _TWIST_MARGIN_DB) / 10)
_RELATIVE_PEAK: Final = 10 ** (RELATIVE_PEAK_DB / 10)
# Phase advance of each nominal DTMF frequency over one block, as a unit phasor, and the largest phase
# drift per block that a tone FREQUENCY_TOLERANCE off its frequency makes: 2π · Δf · 10 ms.
_ADVANCE: Final = tuple(
    cmath.rect(1.0, 2 * math.pi * f * BLOCK_SAMPLES / RATE) for f in DTMF_ROWS + DTMF_COLUMNS
)
_MAX_DRIFT: Final = tuple(
    2 * math.pi * FREQUENCY_TOLERANCE * f * BLOCK_SAMPLES / RATE for f in DTMF_ROWS + DTMF_COLUMNS
)


def _filters() -> npt.NDArray[np.float64]:
    """One matrix, applied to a block of 80 samples as ``block @ matrix``, giving 80 numbers:

    * columns 0-15: ``Σ x cos ωn`` then ``Σ x sin ωn`` at the eight DTMF frequencies (the Goertzel
      filters, unscaled);
    * columns 16-79: for each of the 16 keypad digits (row-major, 4 columns each), the least-squares fit
      of ``a cos ω_row n + b sin ω_row n + c cos ω_col n + d sin ω_col n`` to the block, as (a, b, c, d).

    The joint fit measures each tone of a pair without the other's spectral leakage, which in a 10 ms
    block reaches -20 dB and would move the measured twist of a weak high-group tone by ±2 dB.
    """
    n = np.arange(BLOCK_SAMPLES, dtype=np.float64)[:, None]
    omega = 2 * math.pi * np.array(DTMF_ROWS + DTMF_COLUMNS) / RATE
    cos, sin = np.cos(n * omega), np.sin(n * omega)
    fits = []
    for row in range(4):
        for column in range(4, 8):
            pair = np.hstack((cos[:, [row]], sin[:, [row]], cos[:, [column]], sin[:, [column]]))
            fits.append(np.linalg.pinv(pair).T)
    matrix = np.hstack((cos, sin, *fits))
    matrix.flags.writeable = False
    return matrix


_FILTERS: Final = _filters()


class InbandUsageError(MediaError):
    """The detector was misused (an unknown law); payloads themselves never raise."""


@dataclass(frozen=True, slots=True)
class DigitStarted:
    """A DTMF digit was recognised and is still sounding (barge-in may stop a prompt now)."""

    digit: str


@dataclass(frozen=True, slots=True)
class DigitEnded:
    """The digit of the previous :class:`DigitStarted` stopped after ``duration_ms`` of tone."""

    digit: str
    duration_ms: int


InbandEvent = DigitStarted | DigitEnded

# A block's hit: the digit, its row and column (0-3) and the fitted phasors ``a + jb`` of its two tones.
_Hit = tuple[str, int, int, complex, complex]


def _coherent(previous: _Hit | None, hit: _Hit) -> bool:
    """Whether ``hit`` continues the same two tones as the block before it, each within
    :data:`FREQUENCY_TOLERANCE` of its nominal frequency (judged by the phase it drifted across the block)."""
    if previous is None or previous[0] != hit[0]:
        return False
    _, row, column, low, high = hit
    for now, before, tone in ((low, previous[3], row), (high, previous[4], 4 + column)):
        # A tone at the nominal frequency advances by exactly _ADVANCE; the fitted phasor's angle
        # (atan2(b, a), the phase of R·cos(ωn - θ)) moves the other way, hence the conjugate.
        drift = now * before.conjugate() * _ADVANCE[tone]
        if abs(math.atan2(drift.imag, drift.real)) > _MAX_DRIFT[tone]:
            return False
    return True


def _table_for(law: Law) -> npt.NDArray[np.float64]:
    if law == "PCMA":
        return LINEAR_TABLE_A
    if law == "PCMU":
        return LINEAR_TABLE_U
    raise InbandUsageError(f"unknown G.711 law {law!r}")


def decode(payload: bytes, law: Law) -> npt.NDArray[np.float64]:
    """G.711 octets of ``law`` as 16-bit linear samples (float64). Raises :class:`InbandUsageError` for an
    unknown law."""
    return _table_for(law).take(np.frombuffer(payload, dtype=np.uint8))


def energy_dbm0(payload: bytes, law: Law) -> float:
    """Mean power of a G.711 frame in dBm0 (G.711 level scale, see :mod:`appliance.media.tones`).

    An empty frame, or one of zero power, gives :data:`ENERGY_FLOOR_DBM0` (-100), below any real signal:
    A-law's quietest codes decode to ±8 (about -66 dBm0)."""
    if not payload:
        return ENERGY_FLOOR_DBM0
    samples = decode(payload, law)
    power = float(np.dot(samples, samples)) / samples.size
    if power <= 0.0:
        return ENERGY_FLOOR_DBM0
    return max(ENERGY_FLOOR_DBM0, 10 * math.log10(power / dbm0_power(law)))


class InbandDtmfDetector:
    """DTMF digits in one stream of G.711 audio; see the module docstring for the tests and timing.

    ``law`` is ``"PCMA"`` or ``"PCMU"`` (anything else raises :class:`InbandUsageError`).
    """

    __slots__ = (
        "_block_index",
        "_candidate",
        "_candidate_count",
        "_candidate_first",
        "_current",
        "_current_first",
        "_current_last",
        "_last_feed",
        "_law",
        "_min_power",
        "_misses",
        "_pending",
        "_previous",
        "_table",
    )

    def __init__(self, law: Law) -> None:
        self._table = _table_for(law)
        self._law = law
        self._min_power = dbm0_power(law) * 10 ** (MIN_TONE_DBM0 / 10)
        self._pending: npt.NDArray[np.float64] = np.empty(0, dtype=np.float64)
        self._block_index = 0
        self._current: str | None = None
        self._current_first = 0
        self._current_last = 0
        self._misses = 0
        self._candidate: str | None = None
        self._candidate_first = 0
        self._candidate_count = 0
        self._previous: _Hit | None = None
        self._last_feed: float | None = None

    @property
    def law(self) -> Law:
        """The G.711 law of the audio this detector reads."""
        return self._law

    @property
    def digit(self) -> str | None:
        """The digit sounding now (between its :class:`DigitStarted` and :class:`DigitEnded`), or None."""
        return self._current

    def feed(self, payload: bytes, now: float) -> list[InbandEvent]:
        """Process one payload (any length, normally 160 octets) received at ``now``; return the events
        it completes, in order. Never raises."""
        events = self.handle_timer(now)
        # The next payload is due when this one's audio has played out.
        self._last_feed = now + len(payload) / RATE
        if not payload:
            return events
        samples = self._table.take(np.frombuffer(payload, dtype=np.uint8))
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        count = samples.size // BLOCK_SAMPLES
        whole = count * BLOCK_SAMPLES
        self._pending = samples[whole:].copy()
        if count:
            for hit in self._classify(samples[:whole].reshape(count, BLOCK_SAMPLES)):
                self._step(hit, events)
        return events

    def get_timer(self) -> float | None:
        """When a digit (or one being confirmed) is to be ended for lack of audio, or None:
        :data:`IDLE_TIMEOUT` after the audio of the last payload would have played out."""
        if self._last_feed is None or (self._current is None and self._candidate is None):
            return None
        return self._last_feed + IDLE_TIMEOUT

    def handle_timer(self, now: float) -> list[InbandEvent]:
        """End the digit if no payload came in time (see :meth:`get_timer`); a tone resumed after that is a
        new digit. Returns the events (at most one :class:`DigitEnded`)."""
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return []
        return self.flush()

    def flush(self) -> list[InbandEvent]:
        """End any digit now and forget partial audio (the stream stopped). Returns its
        :class:`DigitEnded`, if one was open."""
        events: list[InbandEvent] = []
        if self._current is not None:
            events.append(self._end(self._current))
        self._candidate = None
        self._candidate_count = 0
        self._previous = None
        self._pending = self._pending[:0]
        return events

    def _classify(self, blocks: npt.NDArray[np.float64]) -> list[_Hit | None]:
        """Each block's hit, or None."""
        energies = np.einsum("ij,ij->i", blocks, blocks).tolist()
        # Both tones at the minimum level carry more than that energy: quieter blocks skip the filters.
        floor = self._min_power * BLOCK_SAMPLES
        if max(energies) < floor:
            return [None] * len(energies)
        outputs = (blocks @ _FILTERS).tolist()
        return [
            self._hit(output, energy) if energy >= floor else None
            for output, energy in zip(outputs, energies, strict=True)
        ]

    def _hit(self, output: list[float], energy: float) -> _Hit | None:
        """The digit of one block from its filter outputs (see :func:`_filters`) and energy ``Σ x²``."""
        # Unscaled DFT powers: the relative-peak test compares them only with each other.
        dft = [c * c + s * s for c, s in zip(output[:8], output[8:16], strict=True)]
        rows, columns = dft[:4], dft[4:]
        low_peak, high_peak = max(rows), max(columns)
        if sorted(rows)[2] * _RELATIVE_PEAK > low_peak or sorted(columns)[2] * _RELATIVE_PEAK > high_peak:
            return None
        row, column = rows.index(low_peak), columns.index(high_peak)
        fit = 16 + 4 * (4 * row + column)
        a, b, c, d = output[fit : fit + 4]
        low, high = (a * a + b * b) / 2, (c * c + d * d) / 2
        if low < self._min_power or high < self._min_power:
            return None
        if high > low * _REVERSE_TWIST or low > high * _NORMAL_TWIST:
            return None
        # The energy the fitted pair explains (the residual is orthogonal to the fit): x·fit.
        explained = a * output[row] + b * output[8 + row] + c * output[4 + column] + d * output[12 + column]
        if explained < TONE_TO_TOTAL * energy:
            return None
        return DTMF_KEYPAD[row][column], row, column, complex(a, b), complex(c, d)

    def _step(self, hit: _Hit | None, events: list[InbandEvent]) -> None:
        index = self._block_index
        self._block_index += 1
        previous, self._previous = self._previous, hit
        digit = hit[0] if hit is not None else None
        if self._current is not None:
            if digit == self._current:
                self._current_last = index
                self._misses = 0
                self._candidate = None
                self._candidate_count = 0
                return
            self._misses += 1
            if self._misses >= END_BLOCKS:
                events.append(self._end(self._current))
        if hit is None or digit is None:
            self._candidate = None
            self._candidate_count = 0
            return
        if digit == self._candidate and _coherent(previous, hit):
            self._candidate_count += 1
        else:
            self._candidate = digit
            self._candidate_first = index
            self._candidate_count = 1
        if self._candidate_count >= START_BLOCKS:
            if self._current is not None:
                events.append(self._end(self._current))
            self._current = digit
            self._current_first = self._candidate_first
            self._current_last = index
            self._misses = 0
            self._candidate = None
            self._candidate_count = 0
            log.debug("in-band digit %s started", digit)
            events.append(DigitStarted(digit))

    def _end(self, digit: str) -> DigitEnded:
        duration = (self._current_last - self._current_first + 1) * BLOCK_MS
        self._current = None
        self._misses = 0
        log.debug("in-band digit %s ended after %d ms", digit, duration)
        return DigitEnded(digit, duration)
