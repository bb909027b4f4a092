"""Voicemail recording on a media worker leg: the caller's inbound audio into an encrypted file, ended by
time, silence or the caller.

Theory of operation. A :class:`VoicemailRecorder` opens ``<voicemail-dir>/<record_id>.vm`` when the
command arrives (an existing file is never overwritten) as a one-direction
:class:`~appliance.media.recording.RecordingWriter` under the voicemail key-encryption key, in the leg's
G.711 law. It records from :meth:`VoicemailRecorder.start` (after the beep, if one is played) and ends on
the first of:

* ``max_seconds`` after the start (``"max"``); frames arriving later are not kept;
* ``silence_seconds`` without a voiced frame (``"silence"``; 0 turns this off). A frame is voiced when its
  mean power is at least :data:`SILENCE_DBM0` (-45 dBm0, via
  :func:`~appliance.media.inband.energy_dbm0`); missing packets count as silence, since the time is the
  clock's, not the frames'. Silence counts from the start, not from the first voiced frame: a caller who
  never speaks ends the recording after ``silence_seconds`` with nothing kept, rather than after
  ``max_seconds`` of nothing. The silent tail of a recording ended by silence is trimmed: silent frames
  are held back (at most ``silence_seconds`` of them) and written only when a voiced frame follows;
* ``#`` (``"dtmf"``), the end of the command (``"stopped"``), or a write failure (``"error"``) — decided
  by the endpoint and passed to :meth:`VoicemailRecorder.finish`.

:meth:`VoicemailRecorder.finish` closes the writer, which seals the final chunk and fsyncs the file and
its directory, then reads the file back for its size and SHA-256, and returns the
:class:`~appliance.media.control_events.RecordDone` to report: a voicemail is announced only once it is
on disk. ``now`` is always a parameter.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from appliance.media.control_events import RecordDone, RecordEndReason
from appliance.media.inband import energy_dbm0
from appliance.media.recording import Codec, RecordingUsageError, RecordingWriter

log = logging.getLogger("appliance.media.ivr_recorder")

SILENCE_DBM0: Final = -45.0
"""A frame below this mean power is silence."""
SUFFIX: Final = ".vm"
CLOCK_RATE: Final = 8000


def file_digest(path: Path) -> tuple[int, str]:
    """The size and lower-case hex SHA-256 of the file at ``path``; ``(0, "")`` if it cannot be read."""
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as file:
            while chunk := file.read(1 << 16):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return 0, ""
    return size, digest.hexdigest()


class VoicemailRecorder:
    """One voicemail being recorded (see the module docstring). Raises ``OSError`` (the file exists, the
    directory is not writable) or :class:`~appliance.media.recording.RecordingUsageError` at
    construction."""

    def __init__(
        self,
        directory: Path,
        *,
        call_id: str,
        leg: str,
        record_id: str,
        law: Codec,
        kek: bytes,
        key_id: str,
        max_seconds: float,
        silence_seconds: float,
        end_on_hash: bool,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.path = directory / f"{record_id}{SUFFIX}"
        self.call_id = call_id
        self.leg = leg
        self.record_id = record_id
        self.law = law
        self.key_id = key_id
        self.max_seconds = max_seconds
        self.silence_seconds = silence_seconds
        self.end_on_hash = end_on_hash
        self.started: float | None = None
        self.samples = 0
        self._last_voice = 0.0
        self._held: list[tuple[float, bytes]] = []
        self._failed = False
        self._writer = RecordingWriter(
            self.path,
            kek=kek,
            key_id=key_id,
            call_id=call_id,
            codec=law,
            directions=1,
            random_bytes=random_bytes,
        )

    def start(self, now: float) -> None:
        """Recording begins at ``now`` (the beep, if any, has been played)."""
        if self.started is None:
            self.started = self._last_voice = now

    def get_timer(self) -> float | None:
        """When the recording ends by itself unless a frame comes first; None before :meth:`start`."""
        if self.started is None:
            return None
        due = self.started + self.max_seconds
        if self.silence_seconds > 0:
            due = min(due, self._last_voice + self.silence_seconds)
        return due

    def expired(self, now: float) -> RecordEndReason | None:
        """The reason the recording ends at ``now`` by time (max first), or None."""
        if self.started is None:
            return None
        if now >= self.started + self.max_seconds:
            return "max"
        if self.silence_seconds > 0 and now >= self._last_voice + self.silence_seconds:
            return "silence"
        return None

    def frame(self, payload: bytes, now: float) -> RecordEndReason | None:
        """One inbound audio frame at ``now``; returns the reason the recording ends, if it does."""
        if self.started is None or self._failed:
            return "error" if self._failed else None
        ended = self.expired(now)
        if ended is not None:
            return ended
        if self.silence_seconds > 0 and energy_dbm0(payload, self.law) < SILENCE_DBM0:
            self._held.append((now, payload))
            return None
        self._last_voice = now
        self._flush_held()
        self._write(now, payload)
        return "error" if self._failed else None

    def _flush_held(self) -> None:
        held, self._held = self._held, []
        for at, payload in held:
            self._write(at, payload)

    def _write(self, now: float, payload: bytes) -> None:
        if self._failed:
            return
        try:
            self._writer.write(0, now, payload)
        except (OSError, RecordingUsageError) as exc:
            log.error("call %s leg %s: voicemail %s failed: %s", self.call_id, self.leg, self.path, exc)
            self._writer.abort()
            self._failed = True
            return
        self.samples += len(payload)

    def finish(self, reason: RecordEndReason) -> RecordDone:
        """End the recording with ``reason``: keep or trim the held silence, close and sync the file, and
        describe it. After a failure the reason is ``"error"``."""
        if reason == "silence":
            self._held.clear()
        else:
            self._flush_held()
        if not self._failed:
            try:
                self._writer.close()
            except OSError as exc:
                log.error(
                    "call %s leg %s: voicemail %s not closed: %s", self.call_id, self.leg, self.path, exc
                )
                self._writer.abort()
                self._failed = True
        if self._failed:
            reason = "error"
        size, digest = file_digest(self.path)
        duration = self.samples / CLOCK_RATE
        log.info(
            "call %s leg %s: voicemail %s ended (%s) after %.2f s, %d octets",
            self.call_id, self.leg, self.path, reason, duration, size,
        )  # fmt: skip
        return RecordDone(
            self.call_id,
            self.leg,
            self.record_id,
            reason,
            duration,
            str(self.path),
            size,
            digest,
            self.key_id,
        )
