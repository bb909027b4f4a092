"""The IVR endpoint of one leg in a media worker: playback, voicemail recording, DTMF detection and
barge-in, sans-I/O.

Theory of operation. A leg normally relays; IVR commands put media of the worker's own on it (DESIGN.md
§2: the workers do IVR playback with exact 20 ms pacing, recording and DTMF detection), so that one caller
leg can be relayed, then played to, then relayed again without being answered twice. An
:class:`IvrEndpoint` holds, for one leg:

* at most one playback (:class:`~appliance.media.ivr_player.Playback`); a new one replaces it, and the old
  one is reported ``PlayDone(reason="stopped")``. Its packets go out on the leg's own RTP stream
  (:class:`~appliance.media.ivr_player.RtpStream`: its own SSRC, sequence and timestamp continuing across
  playbacks, the leg's payload type). The last packet sent ends it with ``"done"``.
* at most one recording (:class:`~appliance.media.ivr_recorder.VoicemailRecorder`), after a beep if asked:
  the beep is a playback of the worker's own that replaces any other (no ``PlayDone`` for it) and the
  recording starts when it has played out. A new recording replaces the old (``"stopped"``).
* optionally an in-band DTMF detector (:class:`~appliance.media.inband.InbandDtmfDetector`) on the leg's
  inbound audio: every digit it ends is reported as a :class:`~appliance.media.control_events.DtmfEvent`,
  the leg's ``"inband-dtmf"`` flag being the request for them.

Barge-in: the START of a digit -- the first RFC 4733 packet of a new event (a new RTP timestamp, RFC 4733
§2.5.1.2), or an in-band :class:`~appliance.media.inband.DigitStarted` -- stops a playback started with
``barge_in`` (``PlayDone(reason="barge_in")``); the digit itself is reported when it ends (by the relay's
RFC 4733 receiver, or by the detector). With ``end_on_hash`` the start of ``#`` ends a recording
(``"dtmf"``), so at most the first tens of milliseconds of an in-band ``#`` are in the file.

The worker feeds the leg's inbound codec frames to :meth:`IvrEndpoint.audio` and telephone-event packets
to :meth:`IvrEndpoint.telephone_event`, calls :meth:`IvrEndpoint.handle_timer` at
:meth:`IvrEndpoint.get_timer` (packets due, recording deadlines, the detector's idle end) and sends the
datagrams it returns; events to report are queued on :attr:`IvrEndpoint.events`. ``now`` is a parameter.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from appliance.media.control_events import DtmfEvent, PlayDone, PlayEndReason, RecordDone, RecordEndReason
from appliance.media.dtmf import DTMF_DIGITS
from appliance.media.g711 import ALAW_TO_ULAW_TABLE, ULAW_TO_ALAW_TABLE
from appliance.media.inband import DigitEnded, DigitStarted, InbandDtmfDetector, InbandEvent
from appliance.media.ivr_player import Playback, RtpStream
from appliance.media.ivr_recorder import VoicemailRecorder
from appliance.media.recording import Codec

log = logging.getLogger("appliance.media.ivr_endpoint")

IvrEvent = PlayDone | RecordDone | DtmfEvent
Finisher = Callable[[VoicemailRecorder, RecordEndReason], None]
"""Takes a recording that ended and its reason, to close and report it elsewhere (the worker: in a thread,
since closing syncs the file to disk, and that must not hold up any leg's pacing)."""
LAWS: Final = frozenset({"PCMA", "PCMU"})


class IvrEndpoint:
    """IVR media on one leg (see the module docstring). ``law`` is the leg's G.711 codec and
    ``payload_type`` its negotiated type; ``ssrc``, ``initial_seq`` and ``initial_timestamp`` start the
    outgoing stream (random in the worker). A recording that ends goes to ``finish``; without one it is
    closed at once and its ``RecordDone`` queued on :attr:`events`."""

    def __init__(
        self,
        *,
        call_id: str,
        leg: str,
        law: Codec,
        payload_type: int,
        ssrc: int,
        initial_seq: int,
        initial_timestamp: int,
        inband: bool = False,
        finish: Finisher | None = None,
    ) -> None:
        self.call_id = call_id
        self._finish = finish
        self.leg = leg
        self.law: Codec = law
        self.stream = RtpStream(
            ssrc=ssrc, payload_type=payload_type, initial_seq=initial_seq, initial_timestamp=initial_timestamp
        )
        self.playback: Playback | None = None
        self.recorder: VoicemailRecorder | None = None
        self.detector: InbandDtmfDetector | None = InbandDtmfDetector(law) if inband else None
        self.events: deque[IvrEvent] = deque()
        self._event_timestamp: int | None = None
        # A digit began while IVR media was on: it is reported at its end even if that stopped the media.
        self.owes_digit = False
        # A playback or recording ended since the owner last looked (its IVR mode may have changed).
        self.ended = False

    # -- state -----------------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether a playback (the beep included) or a recording is going on."""
        return self.playback is not None or self.recorder is not None

    def set_codec(self, law: Codec, payload_type: int) -> None:
        """The leg was re-negotiated: later packets use ``payload_type`` and ``law``, and so does the
        detector; a recording keeps its law (the new frames are transcoded, G.711 Tables 3/4)."""
        self.stream.payload_type = payload_type
        if law != self.law:
            self.law = law
            if self.playback is not None:
                self.playback.set_law(law)
            if self.detector is not None:
                self.detector = InbandDtmfDetector(law)

    def set_inband(self, on: bool) -> None:
        """Run the in-band DTMF detector on the inbound audio, or stop it."""
        if on and self.detector is None:
            self.detector = InbandDtmfDetector(self.law)
        elif not on:
            self.detector = None

    # -- commands --------------------------------------------------------------------------------------

    def _end_play(self, reason: PlayEndReason) -> None:
        playback, self.playback = self.playback, None
        if playback is not None:
            self.ended = True
            if playback.play_id is not None:
                self.events.append(PlayDone(self.call_id, self.leg, playback.play_id, reason))

    def _start(self, playback: Playback) -> None:
        self.stream.begin(playback.clock)
        self.playback = playback
        if playback.finished:  # nothing to play
            self._played_out()

    def play(self, play_id: int, audio: Sequence[bytes], *, barge_in: bool, loop: bool, now: float) -> None:
        """Play ``audio`` (A-law, one bytes per file) from ``now``, replacing any playback; the first packet
        is due at once, or when the previous packet's audio has played out if that is later. A beep being
        played for a recording is cut short and the recording starts now."""
        beep = self.playback is not None and self.playback.play_id is None
        self._end_play("stopped")
        if beep and self.recorder is not None:
            self.recorder.start(now)
        start = max(now, self.stream.clock) if self.stream.clock is not None else now
        self._start(Playback(audio, law=self.law, start=start, play_id=play_id, barge_in=barge_in, loop=loop))

    def record(self, recorder: VoicemailRecorder, *, beep: bytes | None, now: float) -> None:
        """Record with ``recorder``, replacing any recording; ``beep`` (A-law) is played first, replacing
        any playback, and the recording starts once it has played out."""
        self._end_record("stopped")
        self.recorder = recorder
        if beep is None:
            recorder.start(now)
            return
        self._end_play("stopped")
        start = max(now, self.stream.clock) if self.stream.clock is not None else now
        self._start(Playback((beep,), law=self.law, start=start))

    def stop(self) -> None:
        """Stop the playback and the recording (each reported ``"stopped"``)."""
        self._end_play("stopped")
        self._end_record("stopped")

    def _end_record(self, reason: RecordEndReason) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        self.ended = True
        if self.playback is not None and self.playback.play_id is None:
            self.playback = None  # the beep of this recording
        if self._finish is not None:
            self._finish(recorder, reason)
        else:
            self.events.append(recorder.finish(reason))

    def _played_out(self) -> None:
        playback = self.playback
        assert playback is not None and playback.finished
        if playback.play_id is None:
            self.playback = None
            if self.recorder is not None:
                self.recorder.start(playback.clock)
        else:
            self._end_play("done")

    # -- inbound ---------------------------------------------------------------------------------------

    def _digit_started(self, digit: str) -> None:
        if self.active:
            self.owes_digit = True
        playback = self.playback
        if playback is not None and playback.barge_in:
            log.debug("call %s leg %s: barge-in by %s", self.call_id, self.leg, digit)
            self._end_play("barge_in")
        recorder = self.recorder
        if recorder is not None and recorder.end_on_hash and digit == "#":
            self._end_record("dtmf")

    def _inband(self, events: list[InbandEvent]) -> None:
        for event in events:
            if isinstance(event, DigitStarted):
                self._digit_started(event.digit)
            elif isinstance(event, DigitEnded):
                self.events.append(DtmfEvent(self.call_id, self.leg, event.digit, event.duration_ms))

    def audio(self, payload: bytes, now: float) -> None:
        """One inbound codec frame at ``now``: to the detector first (a ``#`` ends the recording before its
        frame is kept), then to the recording."""
        if self.detector is not None:
            self._inband(self.detector.feed(payload, now))
        recorder = self.recorder
        if recorder is not None:
            if recorder.law != self.law:  # re-negotiated while recording: the file keeps its law
                payload = payload.translate(
                    ALAW_TO_ULAW_TABLE if recorder.law == "PCMU" else ULAW_TO_ALAW_TABLE
                )
            ended = recorder.frame(payload, now)
            if ended is not None:
                self._end_record(ended)

    def telephone_event(self, timestamp: int, payload: bytes) -> None:
        """One inbound RFC 4733 packet with RTP ``timestamp``: the first of a new event starts a digit
        (barge-in, ``#``). Its end is the relay's to report."""
        if timestamp == self._event_timestamp or not payload:
            return
        self._event_timestamp = timestamp
        if payload[0] < len(DTMF_DIGITS):
            self._digit_started(DTMF_DIGITS[payload[0]])

    def take_digit(self) -> bool:
        """Whether the RFC 4733 digit just ended began during IVR media (and so is reported); asking
        settles it."""
        owed, self.owes_digit = self.owes_digit, False
        return owed

    # -- time ------------------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next time :meth:`handle_timer` has work, or None."""
        playback = self.playback
        due = playback.next_due if playback is not None else None
        if self.recorder is None and self.detector is None:
            return due  # the common case: a prompt playing
        for other in (
            self.recorder.get_timer() if self.recorder is not None else None,
            self.detector.get_timer() if self.detector is not None else None,
        ):
            if other is not None and (due is None or other < due):
                due = other
        return due

    def handle_timer(self, now: float) -> list[bytes]:
        """The packets due by ``now`` (plain RTP, for the worker to protect and send), and every deadline
        reached: a playback played out, a recording's end, an in-band digit's idle end."""
        out: list[bytes] = []
        playback = self.playback
        if playback is not None:
            out = playback.due(self.stream, now)
            if playback.finished:
                self._played_out()
        recorder = self.recorder
        if recorder is not None:
            ended = recorder.expired(now)
            if ended is not None:
                self._end_record(ended)
        if self.detector is not None:
            self._inband(self.detector.handle_timer(now))
        return out

    def close(self) -> None:
        """The leg or call is released: everything stops (``"stopped"``)."""
        self.stop()
        self.detector = None
