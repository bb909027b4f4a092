"""The far end's talker and listener: frames of silence, tone and in-band DTMF, and what a channel heard."""

from __future__ import annotations

import pytest

from appliance.media.tones import ToneError
from appliance.pri.farend_audio import ALAW_SILENCE, Listener, Talker, pacing_errors_ms, percentile
from hw.e1.links import FRAME_OCTETS


def test_silence_until_digits_are_pressed_then_each_digit_is_tone_and_pause() -> None:
    talker = Talker("silence", on_ms=100, off_ms=60)
    assert talker.next_frame() == ALAW_SILENCE and not talker.pressing
    talker.press("5#")
    frames = [talker.next_frame() for _ in range(16)]
    assert all(len(f) == FRAME_OCTETS for f in frames)
    tone = [f != ALAW_SILENCE for f in frames]
    assert tone == [True] * 5 + [False] * 3 + [True] * 5 + [False] * 3
    assert not talker.pressing and talker.digits_sent == "5#"


def test_a_listener_hears_the_talkers_digits_and_counts_sound() -> None:
    talker, listener = Talker("tone"), Listener(dtmf=True, keep_arrivals=True)
    talker.press("1234567890*#")
    for n in range(150):
        listener.feed(talker.next_frame(), n * 0.02)
    heard = listener.heard
    assert heard.digits == "1234567890*#"
    # The pauses between digits are silence (60 frames), the rest tone or digits.
    assert heard.frames == 150 and heard.sound_frames == 90 and heard.sound_ms == 1800
    assert heard.first_frame_at == 0.0 and heard.first_sound_at == 0.0
    assert len(heard.arrivals) == 150


def test_silence_is_not_sound_and_arrivals_are_kept_only_when_asked() -> None:
    listener = Listener()
    for n in range(10):
        listener.feed(ALAW_SILENCE, 1.0 + n * 0.02)
    assert listener.heard.frames == 10 and listener.heard.sound_frames == 0
    assert listener.heard.first_sound_at is None and listener.heard.arrivals == []


def test_pacing_errors_are_the_gaps_distance_from_20_ms() -> None:
    assert pacing_errors_ms([0.0, 0.020, 0.041, 0.060]) == pytest.approx([0.0, 1.0, 1.0])
    assert pacing_errors_ms([1.0]) == []
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([float(n) for n in range(1, 101)], 99) == 99.0
    assert percentile([7.0], 99) == 7.0 and percentile([], 99) == 0.0


def test_bad_audio_and_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="silence"):
        Talker("noise")  # type: ignore[arg-type]
    with pytest.raises(ToneError):
        Talker().press("X")
