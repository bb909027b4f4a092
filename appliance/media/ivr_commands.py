"""The media worker's IVR commands and the pacing of every endpoint it runs, sans-I/O.

:class:`IvrMedia` is the IVR half of :class:`~appliance.media.commands.MediaWorker`: it creates each leg's
:class:`~appliance.media.ivr_endpoint.IvrEndpoint` when first needed (a ``Play`` or ``Record``, or the
``"inband-dtmf"`` flag), carries out ``Play``, ``Record`` and ``StopMedia`` on it, and keeps every
endpoint's next deadline in one :class:`~appliance.media.ivr_player.DeadlineHeap`.

Pacing has its own timer rather than the worker's sweep: the sweep coalesces deadlines into passes at
least ``SWEEP_GAP`` (0.2 s) apart, which suits media timeouts but not packets due every 20 ms. The glue
keeps one ``loop.call_at`` at :meth:`IvrMedia.get_timer` (and looks again from the packet path of IVR
calls, see :mod:`appliance.media.worker`) and calls :meth:`IvrMedia.due`, which sends every packet due
across all endpoints: a heap pop per endpoint, so 500 playing legs cost 25 000 pops a second.

Events an IVR command causes (the replaced playback's ``PlayDone``, a stopped recording's ``RecordDone``)
queue on :attr:`IvrMedia.events` for the glue to send after the reply; those of packets and timers are
returned by :meth:`IvrMedia.after_packets` and :meth:`IvrMedia.due`. A recording that ends is closed --
its file and directory synced to disk, then read back for its digest -- by :attr:`IvrMedia.finish` when
the glue sets one (the worker does it in a thread and sends the ``RecordDone`` when it is done: an fsync
can take tens of milliseconds on flash, which no playing leg may wait for); otherwise at once. Prompt
files are read through one :class:`~appliance.media.ivr_player.AudioCache` per worker. ``now`` is always
a parameter.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from appliance.media.call import G711, MediaCall, MediaLeg, Send
from appliance.media.command_types import CommandFailedError, RecordingConfig
from appliance.media.control_events import ErrorCode, Play, Record, RecordEndReason, WorkerEvent
from appliance.media.ivr_endpoint import Finisher, IvrEndpoint
from appliance.media.ivr_player import AudioCache, DeadlineHeap, PromptFileError
from appliance.media.ivr_recorder import VoicemailRecorder
from appliance.media.recording import Codec, RecordingUsageError
from appliance.media.tones import beep as tone_beep

log = logging.getLogger("appliance.media.ivr_commands")


VoicemailConfig = RecordingConfig
"""Where voicemail files go and the key-encryption key that wraps each file's data key."""


def _beep() -> bytes:
    return tone_beep("PCMA")


class IvrMedia:
    """The worker's IVR endpoints, their pacing and the prompt cache (see the module docstring).

    ``voicemail`` None refuses ``Record``; ``randbits`` draws each stream's SSRC, first sequence number and
    timestamp (RFC 3550 §5.1, §8); ``beep`` gives the voicemail beep as A-law.
    """

    def __init__(
        self,
        *,
        voicemail: VoicemailConfig | None = None,
        cache: AudioCache | None = None,
        randbits: Callable[[int], int] = secrets.randbits,
        beep: Callable[[], bytes] = _beep,
    ) -> None:
        self.voicemail = voicemail
        self.cache = cache if cache is not None else AudioCache()
        self.heap: DeadlineHeap[IvrEndpoint] = DeadlineHeap()
        self.events: list[WorkerEvent] = []
        self._randbits = randbits
        self._beep_source = beep
        self._beep: bytes | None = None
        self._owners: dict[IvrEndpoint, tuple[MediaCall, MediaLeg]] = {}
        self.finish: Finisher | None = None

    # -- endpoints ---------------------------------------------------------------------------------------

    @staticmethod
    def _law(leg: MediaLeg) -> tuple[Codec, int]:
        config = leg.config
        if config is None:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, f"leg {leg.name!r} is not set up")
        codec = config.codec.upper()
        if codec not in G711:
            raise CommandFailedError(
                ErrorCode.BAD_MESSAGE, f"cannot play to or record {config.codec}: not G.711"
            )
        return ("PCMA" if codec == "PCMA" else "PCMU"), config.codec_pt

    def endpoint(self, call: MediaCall, leg: MediaLeg) -> IvrEndpoint:
        """``leg``'s endpoint, created on first use; raises :class:`CommandFailedError` for a leg that is not
        set up or not G.711."""
        law, pt = self._law(leg)
        ep = leg.ivr
        if ep is None:
            bits = self._randbits
            ep = leg.ivr = IvrEndpoint(
                call_id=call.call_id, leg=leg.name, law=law, payload_type=pt, ssrc=bits(32),
                initial_seq=bits(16), initial_timestamp=bits(32), inband=leg.inband, finish=self._finished,
            )  # fmt: skip
            self._owners[ep] = (call, leg)
        else:
            ep.set_codec(law, pt)
        return ep

    def _finished(self, recorder: VoicemailRecorder, reason: RecordEndReason) -> None:
        if self.finish is not None:
            self.finish(recorder, reason)
        else:
            self.events.append(recorder.finish(reason))

    def configure(self, call: MediaCall, leg: MediaLeg) -> None:
        """After a ``SetLeg``: the endpoint follows the leg's codec and ``inband`` flag. A leg that is not
        G.711 gets no in-band detector (its audio cannot be read)."""
        if leg.ivr is None and not leg.inband:
            return
        try:
            ep = self.endpoint(call, leg)
        except CommandFailedError as exc:
            log.warning("call %s leg %s: no in-band DTMF detection: %s", call.call_id, leg.name, exc.reason)
            return
        ep.set_inband(leg.inband)
        self.changed(call, ep)

    def changed(self, call: MediaCall, ep: IvrEndpoint) -> None:
        """An endpoint's state changed: its deadline is updated, its events queued, the call's IVR mode
        recomputed."""
        self.heap.set(ep, ep.get_timer())
        ep.ended = False
        while ep.events:
            self.events.append(ep.events.popleft())
        call.refresh_ivr()

    def forget(self, call: MediaCall, leg: MediaLeg) -> None:
        """``leg`` is released: its playback and recording stop (their events queued) and its endpoint
        goes."""
        ep = leg.ivr
        if ep is None:
            return
        ep.close()
        self.changed(call, ep)
        self.heap.set(ep, None)
        self._owners.pop(ep, None)
        leg.ivr = None

    # -- commands ----------------------------------------------------------------------------------------

    def play(self, call: MediaCall, leg: MediaLeg, msg: Play, now: float) -> None:
        """Carry out ``msg`` on ``leg``; every file is read before the current playback is touched, so a
        missing one (``BAD_MESSAGE`` naming it) changes nothing."""
        try:
            audio = [self.cache.load(path) for path in msg.files]
        except PromptFileError as exc:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, str(exc)) from None
        ep = self.endpoint(call, leg)
        ep.play(msg.play_id, audio, barge_in=msg.barge_in, loop=msg.loop, now=now)
        self.changed(call, ep)

    def record(self, call: MediaCall, leg: MediaLeg, msg: Record, now: float) -> None:
        """Carry out ``msg`` on ``leg``: the file is created now (an existing one is ``BAD_MESSAGE``)."""
        voicemail = self.voicemail
        if voicemail is None:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, "voicemail not configured")
        ep = self.endpoint(call, leg)
        try:
            recorder = VoicemailRecorder(
                voicemail.directory, call_id=call.call_id, leg=leg.name, record_id=msg.record_id, law=ep.law,
                kek=voicemail.kek, key_id=voicemail.key_id, max_seconds=msg.max_seconds,
                silence_seconds=msg.silence_seconds, end_on_hash=msg.end_on_hash,
            )  # fmt: skip
        except FileExistsError:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, f"voicemail {msg.record_id!r} exists") from None
        except (OSError, RecordingUsageError) as exc:
            raise CommandFailedError(ErrorCode.INTERNAL, f"voicemail not started: {exc}") from None
        beep = None
        if msg.beep:
            if self._beep is None:
                self._beep = self._beep_source()
            beep = self._beep
        ep.record(recorder, beep=beep, now=now)
        self.changed(call, ep)

    def stop(self, call: MediaCall, leg: MediaLeg) -> None:
        """Stop the playback and recording of ``leg``, if any."""
        if leg.ivr is not None:
            leg.ivr.stop()
            self.changed(call, leg.ivr)

    # -- packets and time --------------------------------------------------------------------------------

    def after_packets(self, call: MediaCall) -> list[WorkerEvent]:
        """After inbound packets of ``call`` (whose :attr:`~MediaCall.inspect` is set): the events its
        endpoints queued, with their deadlines updated (a barge-in or a recording's end moves them)."""
        for leg in call.legs.values():
            ep = leg.ivr
            if ep is not None and (ep.events or ep.ended):
                self.changed(call, ep)
        out, self.events = self.events, []
        return out

    def get_timer(self) -> float | None:
        """The earliest deadline of any endpoint, or None."""
        return self.heap.get_timer()

    def due(self, now: float) -> tuple[list[Send], list[WorkerEvent]]:
        """Everything due by ``now`` across the endpoints: the datagrams to send and the events."""
        sends: list[Send] = []
        heap, owners = self.heap, self._owners
        for ep in heap.pop_due(now):
            owner = owners.get(ep)
            if owner is None:
                continue
            call, leg = owner
            packets = ep.handle_timer(now)
            if packets:
                sends.extend(call.ivr_sends(leg, packets))
            if ep.events or ep.ended or not ep.active:
                self.changed(call, ep)  # an end: events to report, maybe a relay to resume
            else:
                heap.set(ep, ep.get_timer())
        events, self.events = self.events, []
        return sends, events
