"""Tone generation: G.711 level calibration (dBm0), DTMF frequencies and twist, the beep, noise, encoding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from appliance.media import g711, tones
from appliance.media.inband import decode, energy_dbm0


def _level_dbm0(samples: np.ndarray, law: tones.Law = "PCMA") -> float:
    return 10 * math.log10(float(np.mean(np.square(samples))) / tones.dbm0_power(law))


def _peak_frequency(samples: np.ndarray, rate: int = tones.RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum)) * rate / samples.size


@pytest.mark.parametrize("law", ["PCMA", "PCMU"])
def test_theoretical_maximum_load_is_full_scale(law: tones.Law) -> None:
    # G.711 Tables 1/2 Note: +3.14 dBm0 (A-law) / +3.17 dBm0 (µ-law) peaks at the top of the coder's range.
    tmax = tones.ALAW_TMAX_DBM0 if law == "PCMA" else tones.ULAW_TMAX_DBM0
    full_scale = tones.ALAW_TMAX_LINEAR if law == "PCMA" else tones.ULAW_TMAX_LINEAR
    sine = tones.sine(250.0, 20, tmax, law=law)  # 250 Hz at 8 kHz: samples land on the peaks
    assert float(np.max(sine)) == pytest.approx(full_scale, rel=1e-9)
    assert tones.zero_dbm0_amplitude(law) / full_scale == pytest.approx(10 ** (-tmax / 20))


def test_zero_dbm0_amplitudes() -> None:
    assert tones.zero_dbm0_amplitude("PCMA") == pytest.approx(22827.06, abs=0.01)
    assert tones.zero_dbm0_amplitude("PCMU") == pytest.approx(22656.71, abs=0.01)


@pytest.mark.parametrize("law", ["PCMA", "PCMU"])
@pytest.mark.parametrize("level", [0.0, -10.0, -20.0, -30.0])
def test_sine_level_survives_g711(law: tones.Law, level: float) -> None:
    sine = tones.sine(1020.0, 1000, level, law=law)
    assert _level_dbm0(sine, law) == pytest.approx(level, abs=0.01)
    # Companding noise moves the level by well under a tenth of a dB at these levels.
    assert energy_dbm0(tones.encode(sine, law), law) == pytest.approx(level, abs=0.1)


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_dtmf_tone_frequencies(digit: str) -> None:
    low, high = tones.dtmf_frequencies(digit)
    assert low in tones.DTMF_ROWS
    assert high in tones.DTMF_COLUMNS
    samples = tones.dtmf_tone(digit, duration_ms=1000)
    assert samples.size == 8000
    low_part = _peak_frequency(samples - tones.sine(high, 1000, -10.0))
    high_part = _peak_frequency(samples - tones.sine(low, 1000, -10.0))
    assert low_part == pytest.approx(low, abs=1.0)
    assert high_part == pytest.approx(high, abs=1.0)


def test_keypad_layout() -> None:
    assert tones.dtmf_frequencies("1") == (697.0, 1209.0)
    assert tones.dtmf_frequencies("0") == (941.0, 1336.0)
    assert tones.dtmf_frequencies("#") == (941.0, 1477.0)
    assert tones.dtmf_frequencies("*") == (941.0, 1209.0)
    assert tones.dtmf_frequencies("d") == (941.0, 1633.0)


@pytest.mark.parametrize("twist", [-8.0, 0.0, 4.0])
def test_dtmf_levels_and_twist(twist: float) -> None:
    low, high = tones.dtmf_frequencies("5")
    samples = tones.dtmf_tone("5", duration_ms=1000, level_dbm0=-12.0, twist_db=twist)
    low_tone = samples - tones.sine(high, 1000, -12.0 + twist)
    high_tone = samples - tones.sine(low, 1000, -12.0)
    assert _level_dbm0(low_tone) == pytest.approx(-12.0, abs=0.01)
    assert _level_dbm0(high_tone) - _level_dbm0(low_tone) == pytest.approx(twist, abs=0.01)


@pytest.mark.parametrize("digit", ["", "E", "12", "x", " "])
def test_unknown_digit_refused(digit: str) -> None:
    with pytest.raises(tones.ToneError):
        tones.dtmf_tone(digit, duration_ms=50)


@pytest.mark.parametrize("duration", [-1.0, math.nan])
def test_bad_duration_refused(duration: float) -> None:
    with pytest.raises(tones.ToneError):
        tones.sine(1000.0, duration, -10.0)
    with pytest.raises(tones.ToneError):
        tones.silence(duration)


def test_bad_rate_refused() -> None:
    with pytest.raises(tones.ToneError):
        tones.dtmf_tone("1", duration_ms=40, rate=0)


def test_durations_round_to_whole_samples() -> None:
    assert tones.dtmf_tone("1", duration_ms=40).size == 320
    assert tones.sine(440.0, 0.1, -10.0).size == 1
    assert tones.silence(0).size == 0
    assert tones.dtmf_tone("1", duration_ms=20, rate=16000).size == 320


@pytest.mark.parametrize("law", ["PCMA", "PCMU"])
def test_beep(law: tones.Law) -> None:
    octets = tones.beep(law)
    assert len(octets) == tones.BEEP_MS * 8
    samples = decode(octets, law)
    assert _peak_frequency(samples) == pytest.approx(tones.BEEP_FREQUENCY, abs=4.0)
    # The middle is at the nominal level; the 5 ms ramps start and end near silence.
    assert _level_dbm0(samples[400:1600], law) == pytest.approx(tones.BEEP_LEVEL_DBM0, abs=0.1)
    assert abs(samples[0]) < 100
    assert abs(samples[-1]) < 500


def test_white_noise_level_and_determinism() -> None:
    first = tones.white_noise(2000, -20.0, np.random.default_rng(3))
    again = tones.white_noise(2000, -20.0, np.random.default_rng(3))
    assert np.array_equal(first, again)
    assert first.size == 16000
    assert _level_dbm0(first) == pytest.approx(-20.0, abs=0.1)
    # White: the power of the lower and upper halves of the band agree.
    spectrum = np.abs(np.fft.rfft(first)) ** 2
    half = spectrum.size // 2
    assert float(np.sum(spectrum[:half]) / np.sum(spectrum[half:])) == pytest.approx(1.0, abs=0.1)


def test_encoding_matches_g711() -> None:
    samples = list(range(-33000, 33000, 7))
    clipped = [max(-32768, min(32767, s)) for s in samples]
    assert tones.linear_to_alaw(samples) == g711.alaw_encode(clipped)
    assert tones.linear_to_ulaw(samples) == g711.ulaw_encode(clipped)
    assert tones.encode(samples, "PCMA") == g711.alaw_encode(clipped)
    assert tones.encode(samples, "PCMU") == g711.ulaw_encode(clipped)


def test_encoding_rounds_to_nearest() -> None:
    assert tones.linear_to_alaw([7.6]) == g711.alaw_encode([8])
    assert tones.linear_to_ulaw([-3.4, 1e9, -1e9]) == g711.ulaw_encode([-3, 32767, -32768])
    assert tones.linear_to_alaw([]) == b""


def test_silence_encodes_to_silence_octets() -> None:
    assert tones.linear_to_alaw(tones.silence(20)) == bytes([g711.ALAW_SILENCE_OCTET]) * 160
    assert tones.linear_to_ulaw(tones.silence(20)) == bytes([g711.ULAW_SILENCE_OCTET]) * 160
