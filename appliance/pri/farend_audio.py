"""What the far end says and hears on one B-channel, 20 ms of A-law at a time.

:class:`Talker` makes the frames the far end sends on a call's channel: digital silence or a steady tone,
with in-band DTMF digits (ITU-T Q.23/Q.24: both tones at -10 dBm0, 100 ms on, 100 ms off by default) laid
over it when asked. :class:`Listener` reads what the appliance sends on a channel: how many frames came
and when, how many carried sound (mean power above :data:`SOUND_DBM0`), and, if asked, the DTMF digits in
them. Pure code: the caller passes the time each frame arrived.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Final, Literal

from appliance.media.inband import DigitStarted, InbandDtmfDetector, energy_dbm0
from appliance.media.tones import dtmf_tone, linear_to_alaw, sine
from hw.e1.links import FRAME_OCTETS

FRAME_SECONDS: Final = 0.020
ALAW_SILENCE: Final = bytes([0xD5]) * FRAME_OCTETS  # A-law's code for 0 (G.711 Table 1a, even bits inverted)
TONE_HZ: Final = 1000.0  # 20 whole cycles in a frame: every frame is the same
TONE_DBM0: Final = -15.0
DTMF_DBM0: Final = -10.0
# A frame is "sound" above this mean power: well over A-law's idle noise (its smallest codes are about
# -66 dBm0) and under any prompt's speech.
SOUND_DBM0: Final = -50.0

Audio = Literal["silence", "tone"]


@functools.cache
def _tone_frame() -> bytes:
    return linear_to_alaw(sine(TONE_HZ, FRAME_SECONDS * 1000, TONE_DBM0))


@functools.cache
def _digit_frames(digit: str, on_ms: int) -> tuple[bytes, ...]:
    """``digit``'s dual tone for ``on_ms`` (a multiple of 20 ms), as frames."""
    alaw = linear_to_alaw(dtmf_tone(digit, duration_ms=on_ms, level_dbm0=DTMF_DBM0))
    return tuple(alaw[i : i + FRAME_OCTETS] for i in range(0, len(alaw), FRAME_OCTETS))


class Talker:
    """The frames of one channel: ``audio`` as the background, digits in front of it when pressed.

    ``on_ms``/``off_ms`` are each digit's tone and the pause after it (rounded up to whole frames);
    Q.24 receivers take 40 ms or more of tone.
    """

    def __init__(self, audio: Audio = "silence", *, on_ms: int = 100, off_ms: int = 100) -> None:
        if audio not in ("silence", "tone"):
            raise ValueError(f"audio is 'silence' or 'tone', not {audio!r}")
        self._background = _tone_frame() if audio == "tone" else ALAW_SILENCE
        self._on = -(-on_ms // 20) * 20
        self._off_frames = -(-off_ms // 20)
        self._queue: deque[bytes] = deque()
        self.digits_sent = ""

    def press(self, digits: str) -> None:
        """Queue ``digits`` (0-9, *, #, A-D) after any still queued; raises ToneError for another key."""
        for digit in digits:
            self._queue.extend(_digit_frames(digit, self._on))
            self._queue.extend([ALAW_SILENCE] * self._off_frames)
        self.digits_sent += digits

    @property
    def pressing(self) -> bool:
        """True while queued digits are still being sent."""
        return bool(self._queue)

    def next_frame(self) -> bytes:
        """The next 20 ms to send."""
        return self._queue.popleft() if self._queue else self._background


@dataclass
class Heard:
    """What one channel carried towards the far end during one call."""

    frames: int = 0
    sound_frames: int = 0
    first_frame_at: float | None = None
    first_sound_at: float | None = None
    digits: str = ""
    arrivals: list[float] = field(default_factory=list)

    @property
    def sound_ms(self) -> int:
        return self.sound_frames * 20


class Listener:
    """Reads one channel's frames; ``dtmf`` runs a Q.24 detector over them, ``keep_arrivals`` keeps every
    frame's arrival time (for pacing figures)."""

    def __init__(self, *, dtmf: bool = False, keep_arrivals: bool = False) -> None:
        self.heard = Heard()
        self._detector = InbandDtmfDetector("PCMA") if dtmf else None
        self._keep_arrivals = keep_arrivals

    def feed(self, samples: bytes, now: float) -> None:
        heard = self.heard
        heard.frames += 1
        if heard.first_frame_at is None:
            heard.first_frame_at = now
        if self._keep_arrivals:
            heard.arrivals.append(now)
        if energy_dbm0(samples, "PCMA") > SOUND_DBM0:
            heard.sound_frames += 1
            if heard.first_sound_at is None:
                heard.first_sound_at = now
        if self._detector is not None:
            for event in self._detector.feed(samples, now):
                if isinstance(event, DigitStarted):
                    heard.digits += event.digit


def pacing_errors_ms(arrivals: list[float]) -> list[float]:
    """How far each gap between consecutive frames strayed from 20 ms, in milliseconds."""
    return [abs((b - a) - FRAME_SECONDS) * 1000 for a, b in itertools.pairwise(arrivals)]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100, nearest rank) of ``values``; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100), at least the first
    return ordered[int(rank) - 1]
