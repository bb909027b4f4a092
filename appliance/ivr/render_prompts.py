"""Render the default IVR prompts: texts in ``prompts/texts.toml`` spoken by espeak-ng, as 8 kHz A-law.

Run as ``python -m appliance.ivr.render_prompts [--out DIR] [--lang xx ...]`` (``make prompts``). For each
language it speaks every text with that language's espeak-ng voice into a temporary WAV file and turns it
into a telephone prompt:

1. **Resample** to 8 kHz with a windowed-sinc low-pass (Kaiser window, about 80 dB stop band from 4 kHz,
   pass band to 3.4 kHz, the G.712 telephone channel), evaluated as a rational polyphase filter. Taking every
   n-th sample instead would fold espeak's 4–11 kHz energy back into the speech band as aliasing.
2. **Trim** leading and trailing silence to :data:`MARGIN_SECONDS` on each side, so prompts played back to
   back (a day, then a time, then "press 1") run together at a natural pace.
3. **Level**: scale so the active speech level (the RMS of 10 ms frames within 40 dB of the loudest, a
   simplified ITU-T P.56 reading) is :data:`TARGET_DBFS`: RMS 2600 of 16-bit full scale, the level RFC 7874
   §4 gives for ITU-T G.169/G.115's active speech level of −19 dBm0, so prompts sound as loud as a talker on
   the same line. A look-ahead limiter then holds the rare peak above :data:`PEAK_CEILING_DBFS`.
4. **Encode** as A-law with :func:`appliance.media.g711.alaw_encode`.

It also synthesises the one shared prompt, ``shared/music_on_hold.alaw``: a gentle, deterministic melody
(sines with bell-like envelopes over a soft pad) that loops seamlessly.

Output is deterministic for a given espeak-ng version (the arithmetic is plain float64 numpy with no
threading or BLAS); ``manifest.json`` records that version and, per file, its text, size and SHA-256.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import wave
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np
import numpy.typing as npt

from appliance.ivr.actions import BUILTIN_PROMPTS, MUSIC_ON_HOLD
from appliance.ivr.prompts import RATE, SHARED, SUFFIX
from appliance.media import g711

Samples = npt.NDArray[np.float64]
"""Linear samples on the 16-bit scale (full scale ±32768), as float64."""

PASS_BAND_HZ: Final = 3400.0
STOP_BAND_HZ: Final = 4000.0
STOP_BAND_DB: Final = 80.0
MARGIN_SECONDS: Final = 0.1
TARGET_DBFS: Final = -22.0
"""Active speech level relative to the RMS of a full-scale square wave (RMS 2600 of 32768, RFC 7874 §4)."""
PEAK_CEILING_DBFS: Final = -1.0
MAX_LIMITING_DB: Final = 6.0
LIMITER_SECONDS: Final = 0.004
MUSIC_DBFS: Final = -27.0
"""Music on hold sits 5 dB below speech, as background."""
FULL_SCALE: Final = 32768.0
FRAME_SECONDS: Final = 0.01
ACTIVE_RANGE_DB: Final = 40.0
SILENCE_FLOOR_DBFS: Final = -60.0

PROMPTS_DIR: Final = Path(__file__).with_name("prompts")
TEXTS_FILE: Final = "texts.toml"
MANIFEST_FILE: Final = "manifest.json"

_CHUNK: Final = 4096


class RenderError(Exception):
    """Rendering failed: espeak-ng missing or failing, or a texts file that does not cover the prompts."""


@dataclass(frozen=True, slots=True)
class LanguageTexts:
    """One language of the texts file: the espeak-ng ``voice`` and the text of each prompt name."""

    voice: str
    texts: Mapping[str, str]


# --- texts ----------------------------------------------------------------------------------------------


def load_texts(path: Path) -> dict[str, LanguageTexts]:
    """Read the texts file; raises :class:`RenderError` unless every language has a voice and exactly the
    names of :data:`~appliance.ivr.actions.BUILTIN_PROMPTS`, each a non-empty string."""
    with path.open("rb") as file:
        document = tomllib.load(file)
    languages: dict[str, LanguageTexts] = {}
    for language, table in document.items():
        voice = table.get("voice") if isinstance(table, dict) else None
        texts = table.get("text") if isinstance(table, dict) else None
        if not isinstance(voice, str) or not isinstance(texts, dict):
            raise RenderError(f"{path}: [{language}] needs a voice and a [{language}.text] table")
        if set(texts) != BUILTIN_PROMPTS:
            missing = sorted(BUILTIN_PROMPTS - set(texts))
            extra = sorted(set(texts) - BUILTIN_PROMPTS)
            raise RenderError(f"{path}: [{language}.text] missing {missing}, unknown {extra}")
        for name, text in texts.items():
            if not isinstance(text, str) or not text.strip():
                raise RenderError(f"{path}: {language}.{name} is not a non-empty string")
        languages[language] = LanguageTexts(voice=voice, texts=dict(texts))
    return languages


# --- signal processing ----------------------------------------------------------------------------------


def _kaiser_beta(attenuation_db: float) -> float:
    # Kaiser's empirical formula for the window parameter giving the wanted stop-band attenuation.
    if attenuation_db > 50:
        return 0.1102 * (attenuation_db - 8.7)
    if attenuation_db >= 21:
        return 0.5842 * math.pow(attenuation_db - 21, 0.4) + 0.07886 * (attenuation_db - 21)
    return 0.0


def resample(samples: Samples, in_rate: int, out_rate: int = RATE) -> Samples:
    """Resample ``samples`` from ``in_rate`` to ``out_rate`` through a Kaiser-windowed sinc low-pass whose
    pass band ends at :data:`PASS_BAND_HZ` and stop band starts at :data:`STOP_BAND_HZ` (scaled with the
    lower of the two rates), with unity gain at DC.

    Output sample ``n`` is the filter centred on input position ``n * in_rate / out_rate``; the positions
    repeat their fractional part every ``out_rate / gcd`` samples, so one tap row per phase is built once.
    """
    if in_rate <= 0 or out_rate <= 0:
        raise ValueError("sample rates must be positive")
    if in_rate == out_rate or samples.size == 0:
        return samples.astype(np.float64, copy=True)
    scale = min(in_rate, out_rate) / RATE
    cutoff = (PASS_BAND_HZ + STOP_BAND_HZ) / 2 * scale / in_rate  # cycles per input sample
    transition = (STOP_BAND_HZ - PASS_BAND_HZ) * scale / in_rate
    # Kaiser's length estimate, in input samples, for the attenuation over the transition band.
    length = (STOP_BAND_DB - 7.95) / (2.285 * 2 * math.pi * transition)
    half = math.ceil(length / 2)
    beta = _kaiser_beta(STOP_BAND_DB)
    step = Fraction(in_rate, out_rate)
    phases = step.denominator  # distinct fractional positions
    offsets = np.arange(-half + 1, half + 1, dtype=np.int64)
    fractions = np.arange(phases, dtype=np.float64) / phases
    t = offsets[None, :].astype(np.float64) - fractions[:, None]
    window = np.where(
        np.abs(t) < half, np.i0(beta * np.sqrt(np.clip(1 - (t / half) ** 2, 0, None))) / np.i0(beta), 0.0
    )
    taps = 2 * cutoff * np.sinc(2 * cutoff * t) * window
    taps /= taps.sum(axis=1, keepdims=True)
    count = math.ceil(samples.size * step.denominator / step.numerator)
    padded = np.concatenate([np.zeros(half), samples.astype(np.float64), np.zeros(half + 1)])
    out = np.empty(count, dtype=np.float64)
    for start in range(0, count, _CHUNK):
        n = np.arange(start, min(start + _CHUNK, count), dtype=np.int64)
        position = n * step.numerator
        base = position // step.denominator
        phase = position % step.denominator
        index = base[:, None] + offsets[None, :] + half
        out[start : start + n.size] = (padded[index] * taps[phase]).sum(axis=1)
    return out


def _frame_levels(samples: Samples, rate: int) -> Samples:
    """RMS of each whole 10 ms frame, relative to full scale (linear)."""
    size = round(rate * FRAME_SECONDS)
    frames = samples[: samples.size // size * size].reshape(-1, size)
    levels: Samples = np.sqrt((frames**2).mean(axis=1)) / FULL_SCALE
    return levels


def _active_frames(levels: Samples) -> npt.NDArray[np.bool_]:
    if levels.size == 0:
        return np.zeros(0, dtype=np.bool_)
    floor = max(levels.max() * 10 ** (-ACTIVE_RANGE_DB / 20), 10 ** (SILENCE_FLOOR_DBFS / 20))
    active: npt.NDArray[np.bool_] = levels > floor
    return active


def trim(samples: Samples, rate: int = RATE, margin: float = MARGIN_SECONDS) -> Samples:
    """Cut leading and trailing silence down to ``margin`` seconds each side (padding with digital silence
    where the input had less). Silence is every 10 ms frame more than 40 dB below the loudest frame (or
    below −60 dBFS). All-silent input comes back as ``2 * margin`` of silence."""
    size = round(rate * FRAME_SECONDS)
    pad = round(rate * margin)
    active = np.flatnonzero(_active_frames(_frame_levels(samples, rate)))
    if active.size == 0:
        return np.zeros(2 * pad)
    first, last = int(active[0]) * size, (int(active[-1]) + 1) * size
    lead = samples[max(0, first - pad) : first]
    tail = samples[last : last + pad]
    return np.concatenate(
        [np.zeros(pad - lead.size), lead, samples[first:last], tail, np.zeros(pad - tail.size)]
    )


def active_level_dbfs(samples: Samples, rate: int = RATE) -> float:
    """The active speech level: RMS over the 10 ms frames within 40 dB of the loudest, in dBFS
    (−inf for silence)."""
    levels = _frame_levels(samples, rate)
    active = levels[_active_frames(levels)]
    if active.size == 0:
        return -math.inf
    return 20 * math.log10(math.sqrt(float((active**2).mean())))


def limit(samples: Samples, ceiling_dbfs: float = PEAK_CEILING_DBFS, rate: int = RATE) -> Samples:
    """Hold peaks at ``ceiling_dbfs`` with a look-ahead limiter: the gain each sample needs is taken as a
    running minimum over ±:data:`LIMITER_SECONDS`, then averaged over the same span, so the gain moves in
    smooth ramps (no clicks) and is never above what any sample in reach needs."""
    ceiling = FULL_SCALE * 10 ** (ceiling_dbfs / 20)
    magnitude = np.abs(samples)
    if samples.size == 0 or float(magnitude.max()) <= ceiling:
        return samples
    reach = max(1, round(rate * LIMITER_SECONDS))
    needed = np.minimum(1.0, ceiling / np.maximum(magnitude, 1e-9))
    padded = np.concatenate([np.ones(2 * reach), needed, np.ones(2 * reach)])
    floor = np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1).min(axis=1)
    # floor[reach + c] is the least gain needed[c - reach .. c + reach]; the average for sample n takes the
    # floors of centres n - reach/2 .. n + reach/2, each of which covers n, so it never exceeds needed[n].
    half = reach // 2
    kernel = np.full(2 * half + 1, 1 / (2 * half + 1))
    gain = np.convolve(floor, kernel, mode="same")[reach : reach + samples.size]
    return samples * np.minimum(gain, needed)


def normalise(samples: Samples, target_dbfs: float = TARGET_DBFS, rate: int = RATE) -> Samples:
    """Scale to an active level of ``target_dbfs`` and :func:`limit` the peaks; the limiter may take off
    at most :data:`MAX_LIMITING_DB` (quieter speech with sharper peaks ends below the target instead).
    Silence is returned unchanged."""
    level = active_level_dbfs(samples, rate)
    peak = float(np.abs(samples).max()) / FULL_SCALE if samples.size else 0.0
    if not math.isfinite(level) or peak == 0:
        return samples
    gain = min(10 ** ((target_dbfs - level) / 20), 10 ** ((PEAK_CEILING_DBFS + MAX_LIMITING_DB) / 20) / peak)
    return limit(samples * gain, PEAK_CEILING_DBFS, rate)


def _alaw_table() -> npt.NDArray[np.uint8]:
    # The A-law octet of every int16 value, from the G.711 encoder itself: one table lookup per sample.
    return np.frombuffer(g711.alaw_encode(range(-32768, 32768)), dtype=np.uint8)


def to_alaw(samples: Samples, table: npt.NDArray[np.uint8] | None = None) -> bytes:
    """Round to int16 (clipping) and encode as A-law."""
    lookup = _alaw_table() if table is None else table
    pcm = np.clip(np.rint(samples), -32768, 32767).astype(np.int64)
    return lookup[pcm + 32768].tobytes()


# --- music on hold --------------------------------------------------------------------------------------

_BEAT: Final = 0.375  # seconds per arpeggio note (eighth notes at 80 beats a minute)
# I–vi–IV–V in C, twice, the second time with the arpeggio turned downwards: 8 bars of 3 s, 24 s in all.
_CHORDS: Final = ((60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)) * 2
_ARPEGGIO_UP: Final = (0, 1, 2, 3, 2, 1, 2, 1)
_ARPEGGIO_DOWN: Final = (3, 2, 1, 0, 1, 2, 1, 2)


def _hz(midi: int) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _tone(freq: float, seconds: float, decay: float, attack: float, rate: int) -> Samples:
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    envelope = np.minimum(t / attack, 1.0) * np.exp(-t / decay)
    # A fundamental with two soft harmonics: a mellow bell that still carries above the 300 Hz band edge.
    wave_ = (
        np.sin(2 * np.pi * freq * t)
        + 0.3 * np.sin(2 * np.pi * 2 * freq * t)
        + 0.1 * np.sin(2 * np.pi * 3 * freq * t)
    )
    tone: Samples = wave_ * envelope
    return tone


def music_on_hold(rate: int = RATE) -> Samples:
    """A 24 s loop: arpeggiated I–vi–IV–V in C (an octave above middle C) over a soft sustained pad.
    Tails that ring past the end are folded onto the start, so looped playback has no seam."""
    bar = 8 * _BEAT
    total = round(len(_CHORDS) * bar * rate)
    out = np.zeros(total + round(4 * rate))
    for index, chord in enumerate(_CHORDS):
        bar_start = round(index * bar * rate)
        pattern = _ARPEGGIO_UP if index < len(_CHORDS) // 2 else _ARPEGGIO_DOWN
        notes = (*chord, chord[0] + 12)
        for beat, which in enumerate(pattern):
            note = _tone(_hz(notes[which] + 12), 2.0, decay=0.45, attack=0.008, rate=rate)
            start = bar_start + round(beat * _BEAT * rate)
            out[start : start + note.size] += note
        for midi in (chord[0], chord[2]):
            pad = _tone(_hz(midi), bar + 1.0, decay=2.5, attack=0.4, rate=rate) * 0.35
            out[bar_start : bar_start + pad.size] += pad
    looped = out[:total].copy()
    looped[: out.size - total] += out[total:]
    # The notes sum to a few units; bring them near the target first (normalise treats < -60 dBFS as silence).
    return normalise(looped * (FULL_SCALE / 8), MUSIC_DBFS, rate)


# --- espeak-ng ------------------------------------------------------------------------------------------


def espeak_version(program: str = "espeak-ng") -> str:
    """The espeak-ng version ("1.51"), from ``espeak-ng --version``."""
    try:
        result = subprocess.run([program, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RenderError(f"cannot run {program}: {exc}") from exc
    match = re.search(r"text-to-speech:\s*(\S+)", result.stdout)
    if match is None:
        raise RenderError(f"unexpected {program} --version output: {result.stdout!r}")
    return match.group(1)


def _read_wav(path: Path) -> tuple[Samples, int]:
    with wave.open(str(path), "rb") as reader:
        if reader.getsampwidth() != 2 or reader.getnchannels() != 1:
            raise RenderError(
                f"espeak-ng wrote {reader.getnchannels()} channels of {reader.getsampwidth()} B"
            )
        data = reader.readframes(reader.getnframes())
        rate = reader.getframerate()
    return np.frombuffer(data, dtype="<i2").astype(np.float64), rate


def speak(text: str, voice: str, *, program: str = "espeak-ng") -> tuple[Samples, int]:
    """Speak ``text`` with espeak-ng ``voice``; returns its samples and their rate. The text goes on
    standard input (``-b 1``: UTF-8), so no text is ever taken for an option."""
    with tempfile.TemporaryDirectory(prefix="prompt-") as scratch:
        path = Path(scratch) / "speech.wav"
        try:
            subprocess.run(
                [program, "-b", "1", "-v", voice, "-w", str(path)],
                input=text.encode(),
                capture_output=True,
                check=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise RenderError(f"{program} -v {voice} failed on {text!r}: {exc}") from exc
        return _read_wav(path)


def render_text(
    text: str, voice: str, *, program: str = "espeak-ng", table: npt.NDArray[np.uint8] | None = None
) -> bytes:
    """One prompt: speech → 8 kHz → trimmed → levelled → A-law (``table``: a prebuilt A-law table)."""
    samples, rate = speak(text, voice, program=program)
    return to_alaw(normalise(trim(resample(samples, rate, RATE))), table)


# --- output ---------------------------------------------------------------------------------------------


def _entry(data: bytes, text: str | None, voice: str | None) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "voice": voice, "text": text}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def render(
    out: Path,
    texts: Mapping[str, LanguageTexts],
    languages: Iterable[str] | None = None,
    *,
    program: str = "espeak-ng",
    log: TextIO | None = None,
) -> dict[str, Any]:
    """Render ``languages`` (default: all of ``texts``) and the shared music on hold into ``out``, remove
    ``.alaw`` files of those languages that have no text any more, and rewrite ``out/manifest.json``
    (entries of languages not rendered this time are kept). Returns the manifest."""
    chosen = list(texts) if languages is None else list(languages)
    unknown = sorted(set(chosen) - set(texts))
    if unknown:
        raise RenderError(f"no texts for {unknown}")
    manifest_path = out / MANIFEST_FILE
    files: dict[str, Any] = {}
    if manifest_path.exists():
        files = dict(json.loads(manifest_path.read_text(encoding="utf-8")).get("files", {}))
    version = espeak_version(program)
    table = _alaw_table()
    for language in chosen:
        entry = texts[language]
        folder = out / language
        for stale in folder.glob(f"*{SUFFIX}") if folder.is_dir() else ():
            if stale.stem not in entry.texts:
                stale.unlink()
        files = {key: value for key, value in files.items() if not key.startswith(f"{language}/")}
        names = sorted(entry.texts)
        # One espeak-ng process per prompt, a few at a time: each prompt's result depends on its text only.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            speak_one = functools.partial(render_text, voice=entry.voice, program=program, table=table)
            rendered = pool.map(speak_one, [entry.texts[name] for name in names])
            for name, data in zip(names, rendered, strict=True):
                _write(folder / f"{name}{SUFFIX}", data)
                files[f"{language}/{name}{SUFFIX}"] = _entry(data, entry.texts[name], entry.voice)
        if log is not None:
            print(f"{language}: {len(entry.texts)} prompts", file=log)
    music = to_alaw(music_on_hold(), table)
    _write(out / SHARED / f"{MUSIC_ON_HOLD}{SUFFIX}", music)
    files[f"{SHARED}/{MUSIC_ON_HOLD}{SUFFIX}"] = _entry(music, None, None)
    manifest = {
        "format": "G.711 A-law, 8000 Hz, mono, raw",
        "espeak_ng": version,
        "files": dict(sorted(files.items())),
    }
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``--out DIR`` (default: the packaged prompts folder), ``--lang xx`` (repeatable;
    default every language of the texts file), ``--texts FILE``."""
    parser = argparse.ArgumentParser(prog="python -m appliance.ivr.render_prompts", description=__doc__)
    parser.add_argument("--out", type=Path, default=PROMPTS_DIR)
    parser.add_argument("--lang", action="append", dest="languages")
    parser.add_argument("--texts", type=Path, default=PROMPTS_DIR / TEXTS_FILE)
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed (Debian: apt-get install espeak-ng)", file=sys.stderr)
        return 2
    try:
        render(args.out, load_texts(args.texts), args.languages, log=sys.stdout)
    except RenderError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
