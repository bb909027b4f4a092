"""The media worker's calls and commands, sans-I/O: :class:`MediaWorker` (the process around it is
:mod:`appliance.media.worker`).

Command contract (one call has legs ``"a"``, the caller, and ``"b"``, the callee):

* ``SetLeg(call_id, leg, spec, flags)`` — the data-plane command; call control did the SDP work. The
  first one for a leg takes ``spec.local_port`` (RTP, even) and the port above it (RTCP) from the
  worker's ports (in the worker process, sockets bound when it started: :class:`PortReserve`); a pair it
  cannot have (held by another process, outside the slice, in use) is ``NO_PORTS``. A later one for the
  same leg applies a re-negotiation (new remote, codec, hold, SRTP keys); a changed ``local_port`` is
  ``BAD_MESSAGE``. The relay starts once both legs are set. Flags accumulate per call: ``"record"``
  (refused with ``BAD_MESSAGE`` when the worker has no recording directory and key, or the leg's codec
  is not G.711), ``"dtmf-events"`` (report digits), ``"no-fastpath"``; ``"inband-dtmf"`` is the leg's
  own and follows its latest ``SetLeg`` (detect digits in its inbound G.711 audio and report them); any
  other flag is ``BAD_MESSAGE``.
* ``Play``/``Record``/``StopMedia`` on one leg (:mod:`appliance.media.ivr_commands`): IVR media, on a leg
  that is set up with a G.711 codec. A call with one leg set gets its relay then, with a placeholder for
  the missing leg. ``Record`` is ``BAD_MESSAGE`` ``"voicemail not configured"`` without a voicemail
  directory and key; a missing prompt file is ``BAD_MESSAGE`` naming it. While a leg has IVR media or no
  partner, every digit from it is reported, whatever ``"dtmf-events"`` says.
* ``DropLeg(call_id, leg)`` releases one leg (its ports back to the worker) and keeps the call; the reply's
  ``stats`` are that leg's. The relay keeps a placeholder for it, so the other leg goes on in IVR mode
  until a ``SetLeg`` brings a new partner.
* ``Offer``/``Answer``/``Update`` — the older commands with worker-side SDP rewriting, kept for the relay
  benchmark: the worker allocates both legs' pairs from its ports at the offer, and turns each SDP into the
  same leg state ``SetLeg`` gives (the reply's ``sdp`` is the description for the other leg; ``ports`` its
  relay port). Of their flags only ``"record"`` and ``"dtmf-events"`` mean anything; others are ignored.
* ``Delete(call_id)`` frees the call; the reply carries the final ``stats`` (per leg, ``in`` = received
  from the leg's peer, ``out`` = sent to it; the ``out`` loss and jitter are the peer's RTCP receiver
  report's) and ``recording``, the path of the closed recording. ``Query`` returns the same figures.
* ``Ping`` is answered ``Ok``.

Given an :class:`~appliance.media.offload.Offloader` (the worker process opens one unless
``--no-fastpath``), every eligible call is handed to the kernel fast path once both remotes are latched;
its counters are polled with each stats report, feed the media timeouts and are added to the call's
statistics; a re-negotiation or a delete takes the call back.

A command that cannot be decoded is answered with an :class:`Error` (``request_id`` 0 when even that could
not be read) and never stops the worker. Every ``stats_interval`` (1 s) :meth:`MediaWorker.handle_timer`
yields a :class:`WorkerStats` with the drop counters by reason.

Sockets come from the ports object, but nothing is read or sent here: the glue reads them, hands each
datagram to :meth:`MediaCall.receive` and sends what it returns. ``now`` is always a parameter.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
from collections.abc import Callable
from typing import Any, Final

import cbor2

from appliance.media.call import G711, LEGS, MediaCall, MediaLeg, Send, SrtpKeyError, srtp_context
from appliance.media.command_types import CommandFailedError, RecordingConfig
from appliance.media.control import decode as decode_message
from appliance.media.control_events import (
    MAX_MESSAGE_SIZE,
    MAX_REQUEST_ID,
    Answer,
    ControlDecodeError,
    Delete,
    Direction,
    DropLeg,
    DtmfEvent,
    Error,
    ErrorCode,
    FirstPacket,
    MediaTimeout,
    Message,
    Offer,
    Ok,
    Ping,
    Play,
    Query,
    Record,
    Reply,
    SetLeg,
    SrtpKeys,
    SsrcChanged,
    StopMedia,
    StreamStats,
    Update,
    WorkerEvent,
    WorkerStats,
)
from appliance.media.fastpath_rules import IP_UDP_OVERHEAD
from appliance.media.ivr_commands import IvrMedia
from appliance.media.offload import Offloader
from appliance.media.ports import PortsExhaustedError
from appliance.media.recording import Codec, RecordingUsageError, RecordingWriter
from appliance.media.relay import DtmfReceived, LegConfig, RelayCall
from appliance.media.relay import FirstPacket as RelayFirstPacket
from appliance.media.relay import SsrcChanged as RelaySsrcChanged
from appliance.media.sockets import PortUnavailableError, RelayPorts
from appliance.media.srtp import SrtpContext
from appliance.media.timeout import MediaTimedOut
from appliance.sdp.codec import parse_sdp
from appliance.sdp.errors import SdpError
from appliance.sdp.model import Direction as SdpDirection
from appliance.sdp.model import SessionDescription
from appliance.sdp.relay import remote_endpoints, rewrite_for_relay

log = logging.getLogger("appliance.media.commands")

# How often the kernel counters of offloaded calls are read. A kernel-forwarded packet is seen only at a
# poll, so this bounds how late such a call's media timeout comes (on top of the sweep): ±0.5 s is promised.
# One read costs ~22 µs a call, so 1000 offloaded calls cost ~9 % of a core at this rate.
OFFLOAD_POLL: Final = 0.25

STATS_INTERVAL: Final = 1.0
FLAGS: Final = frozenset({"record", "dtmf-events", "no-fastpath", "inband-dtmf"})
_LEGACY_FLAGS: Final = frozenset({"record", "dtmf-events"})
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9_.-]")
# IPv4 and UDP headers and the fixed RTP header: kernel byte counters less this per packet is payload.
_KERNEL_OVERHEAD: Final = IP_UDP_OVERHEAD + 12


def _kernel_packets(call: MediaCall) -> int:
    # Read field by field: the report asks this of every call each second, and .total builds an object.
    done, live = call.offload.done, call.offload.live
    return done.a_packets + done.b_packets + live.a_packets + live.b_packets


def leg_config(sdp: SessionDescription) -> tuple[LegConfig, bool]:
    """The remote side of a leg from the first audio stream of the SDP it wrote, and whether that stream is
    on hold (not sendrecv); raises CommandFailedError."""
    try:
        endpoints = remote_endpoints(sdp)
    except SdpError as exc:
        raise CommandFailedError(ErrorCode.BAD_SDP, str(exc)) from None
    for ep in endpoints:
        if ep.media != "audio" or ep.port == 0 or not ep.codecs:
            continue
        event_pt = next((c.payload_type for c in ep.codecs if c.encoding.lower() == "telephone-event"), None)
        codec = next((c for c in ep.codecs if c.encoding.lower() != "telephone-event"), None)
        if codec is None:
            continue
        address = (ep.address, ep.port) if ep.accepts_media and ep.address is not None else None
        config = LegConfig(
            address=address, codec_pt=codec.payload_type, codec=codec.encoding, event_pt=event_pt
        )
        return config, ep.direction is not SdpDirection.SENDRECV
    raise CommandFailedError(ErrorCode.BAD_SDP, "no enabled audio stream with a codec")


def recording_name(call_id: str) -> str:
    """A file name for ``call_id``'s recording: the id with anything but ``[A-Za-z0-9_.-]`` replaced (and no
    leading dot), cut to 80 characters, plus a digest of the whole id so distinct ids never share a name."""
    safe = _SAFE_NAME.sub("_", call_id)[:80].lstrip(".") or "call"
    digest = hashlib.sha256(call_id.encode()).hexdigest()[:12]
    return f"{safe}-{digest}.rec"


def _parse(text: str) -> SessionDescription:
    try:
        return parse_sdp(text.encode())
    except SdpError as exc:
        raise CommandFailedError(ErrorCode.BAD_SDP, str(exc)) from None


def _placeholder(config: LegConfig) -> LegConfig:
    """The relay's stand-in for a leg that is not there: ``config``'s formats, and the discard port of an
    unspecified address as the destination the relay computes (the call never sends to a missing leg)."""
    return LegConfig(("0.0.0.0", 9), config.codec_pt, config.codec, config.event_pt)


def _request_id_of(data: bytes) -> int:
    """The request id of an undecodable command, when it can still be read; else 0."""
    try:
        raw: Any = cbor2.loads(data) if len(data) <= MAX_MESSAGE_SIZE else None
    except Exception:
        # Any garbage at all: the Error reply still goes out, with id 0.
        return 0
    rid = raw.get("request_id") if isinstance(raw, dict) else None
    if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid <= MAX_REQUEST_ID:
        return rid
    return 0


class MediaWorker:
    """The worker's calls and command handlers, sans-I/O: :meth:`handle` takes one control datagram and
    ``now`` and returns the reply. Every leg's sockets come from ``pool`` (a :class:`PortReserve` in the
    worker process) and go back to it when the call ends; each one is handed to
    ``watch(sock, call_id, leg, rtcp)`` for the glue to read (the call is in :attr:`calls` by then, so the
    glue may hold it) and to ``unwatch`` when the call is released, before the socket goes back.
    Packets go to :meth:`MediaCall.receive` of ``calls[call_id]``, then :meth:`packet_events`; deadlines
    are :meth:`next_deadline` / :meth:`handle_timer`, a sweep over the calls.
    """

    def __init__(
        self,
        pool: RelayPorts,
        *,
        media_timeout: float = 30.0,
        recording: RecordingConfig | None = None,
        worker_id: int = 0,
        offload: Offloader | None = None,
        start: float = 0.0,
        stats_interval: float = STATS_INTERVAL,
        watch: Callable[[socket.socket, str, str, bool], object] = lambda sock, call_id, leg, rtcp: None,
        unwatch: Callable[[socket.socket], object] = lambda sock: None,
        ivr: IvrMedia | None = None,
    ) -> None:
        self.pool = pool
        self.watch = watch
        self.unwatch = unwatch
        self.media_timeout = media_timeout
        self.recording = recording
        self.worker_id = worker_id
        self.offload = offload
        self.ivr = ivr if ivr is not None else IvrMedia()
        self.calls: dict[str, MediaCall] = {}
        # Datagrams a command released (those kept before a call's relay started), for the glue to send.
        self.early_sends: list[Send] = []
        self._session_version = 0
        self._stats_interval = stats_interval
        self._stats_due = start + stats_interval
        self._poll_due = start + OFFLOAD_POLL
        # Figures of calls already deleted, so that WorkerStats totals cover the worker's whole life.
        self._dropped_before: dict[str, int] = {}
        self._relayed_before = 0

    # -- commands ---------------------------------------------------------------------------------------

    def handle(self, data: bytes, now: float) -> Reply:
        """Decode one control datagram and act on it; always returns the reply to send."""
        try:
            msg = decode_message(data)
        except ControlDecodeError as exc:
            return Error(_request_id_of(data), int(ErrorCode.BAD_MESSAGE), exc.reason)
        rid = getattr(msg, "request_id", 0)
        try:
            return self._dispatch(msg, now)
        except CommandFailedError as exc:
            return Error(rid, int(exc.code), exc.reason)
        except Exception as exc:
            # A defect in one command must not take every call down with the worker.
            log.exception("media worker: command %r failed", msg)
            return Error(rid, int(ErrorCode.INTERNAL), f"{type(exc).__name__}: {exc}")

    def _dispatch(self, msg: Message, now: float) -> Reply:
        match msg:
            case Ping():
                return Ok(msg.request_id)
            case SetLeg():
                return self._set_leg(msg, now)
            case Offer():
                return self._offer(msg)
            case Answer():
                return self._answer(msg, now)
            case Update():
                return self._update(msg, now)
            case Delete():
                call = self._call(msg.call_id)
                stats = self._stats(call)
                self.release(msg.call_id)
                return Ok(msg.request_id, stats=stats, recording=call.recording_path)
            case Query():
                return Ok(msg.request_id, stats=self._stats(self._call(msg.call_id)))
            case Play():
                call, leg = self._leg(msg.call_id, msg.leg)
                self._ivr_relay(call, now)
                self.ivr.play(call, leg, msg, now)
                return Ok(msg.request_id)
            case Record():
                call, leg = self._leg(msg.call_id, msg.leg)
                self._ivr_relay(call, now)
                self.ivr.record(call, leg, msg, now)
                return Ok(msg.request_id)
            case StopMedia():
                call, leg = self._leg(msg.call_id, msg.leg)
                self.ivr.stop(call, leg)
                return Ok(msg.request_id)
            case DropLeg():
                return self._drop_leg(msg, now)
            case _:
                raise CommandFailedError(ErrorCode.BAD_MESSAGE, f"{type(msg).__name__} is not a command")

    def _call(self, call_id: str) -> MediaCall:
        call = self.calls.get(call_id)
        if call is None:
            raise CommandFailedError(ErrorCode.UNKNOWN_CALL, f"no call {call_id!r}")
        return call

    def _leg(self, call_id: str, name: str) -> tuple[MediaCall, MediaLeg]:
        call = self._call(call_id)
        leg = call.legs.get(name)
        if leg is None:
            raise CommandFailedError(ErrorCode.UNKNOWN_CALL, f"no leg {name!r} in call {call_id!r}")
        return call, leg

    def _ivr_relay(self, call: MediaCall, now: float) -> None:
        """Before IVR media on a call with one leg set: its relay, with a placeholder for the other leg
        (the same codec, an address nothing is sent to), so that the leg is latched, counted and timed
        like any other. The call leaves the kernel fast path while it has IVR media."""
        self._withdraw(call)
        if call.relay is not None:
            return
        legs = {name: leg for name, leg in call.legs.items() if leg.config is not None}
        configs = {name: leg.config for name, leg in legs.items() if leg.config is not None}
        if not configs:
            return  # nothing set up: the IVR command refuses the leg
        stand_in = _placeholder(next(iter(configs.values())))
        relay = call.relay = RelayCall(
            local_a=legs["a"].port if "a" in legs else 0,
            local_b=legs["b"].port if "b" in legs else 0,
            remote_a=configs.get("a", stand_in),
            remote_b=configs.get("b", stand_in),
            now=now,
            media_timeout=self.media_timeout,
        )
        for leg in legs.values():
            if leg.hold:
                relay.set_hold(leg.name, True, now)
        call.refresh_ivr()
        self.early_sends.extend(call.take_early())

    def _drop_leg(self, msg: DropLeg, now: float) -> Ok:
        call, leg = self._leg(msg.call_id, msg.leg)
        stats = tuple(s for s in self._stats(call) if s.leg == msg.leg)
        self._withdraw(call)
        self.ivr.forget(call, leg)
        for sock in leg.sockets():
            self.unwatch(sock)
        self.pool.give_back(leg.port)
        del call.legs[msg.leg]
        relay = call.relay
        if relay is not None and leg.config is not None:
            # The relay keeps the leg as a placeholder: nothing goes to it, and its hold no longer spares
            # the other leg's media timeout.
            relay.update_remote(msg.leg, _placeholder(leg.config))
            relay.set_hold(msg.leg, False, now)
            relay.set_timeout(msg.leg, None, now)
        call.refresh_ivr()
        log.info("media worker: call %s: leg %s dropped", call.call_id, msg.leg)
        return Ok(msg.request_id, stats=stats)

    def _set_leg(self, msg: SetLeg, now: float) -> Ok:
        spec = msg.spec
        if msg.leg not in LEGS:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, f"no leg {msg.leg!r} (expected 'a' or 'b')")
        unknown = sorted(set(msg.flags) - FLAGS)
        if unknown:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, f"unknown flag {unknown[0]!r}")
        if spec.local_port == 0 or spec.local_port & 1 or spec.local_port == 65535:
            raise CommandFailedError(
                ErrorCode.BAD_MESSAGE, f"local_port {spec.local_port} is not an even port"
            )
        try:
            config = LegConfig(
                spec.remote, spec.codec_pt, spec.codec, spec.event_pt, spec.rtcp_port, spec.timeout
            )
        except ValueError as exc:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, str(exc)) from None
        call = self.calls.get(msg.call_id)
        leg = call.legs.get(msg.leg) if call is not None else None
        if leg is not None and leg.port != spec.local_port:
            raise CommandFailedError(
                ErrorCode.BAD_MESSAGE, f"leg {msg.leg} is on port {leg.port}; local_port cannot change"
            )
        record = "record" in msg.flags or (call is not None and "record" in call.flags)
        if call is not None:
            self._withdraw(call)  # a re-negotiation: the call is judged again once it is applied
        if record:
            self._check_recordable(config)
        # Same keys keep the leg's context: a new one would forget the rollover counter and replay window.
        context = self._srtp(spec.srtp) if leg is None or spec.srtp != leg.srtp_keys else None
        # Everything that can be refused was checked; from here on the command takes effect.
        if call is None or leg is None:
            rtp, rtcp = self._take_pair(spec.local_port)
            if call is None:
                call = self.calls[msg.call_id] = MediaCall(msg.call_id)
            leg = self._add_leg(call, msg.leg, spec.local_port, rtp, rtcp, pooled=False)
        self._configure(call, leg, config, spec.hold, spec.srtp, now, context)
        call.flags |= set(msg.flags) - {"inband-dtmf"}
        leg.inband = "inband-dtmf" in msg.flags
        self.ivr.configure(call, leg)
        call.refresh_ivr()
        self._start_recording(call)
        return Ok(msg.request_id, ports=(spec.local_port,))

    @staticmethod
    def _srtp(keys: SrtpKeys | None) -> SrtpContext | None:
        try:
            return srtp_context(keys) if keys is not None else None
        except SrtpKeyError as exc:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, str(exc)) from None

    def _withdraw(self, call: MediaCall) -> None:
        # Whatever changed, the call is judged for the fast path again after its next packets.
        call.latch_epoch = -1
        if self.offload is not None:
            self.offload.withdraw(call)

    def _check_recordable(self, config: LegConfig) -> None:
        if self.recording is None:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, "recording not configured")
        if config.codec.upper() not in G711:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, f"cannot record {config.codec}: not G.711")

    def _take_pair(self, port: int) -> tuple[socket.socket, socket.socket]:
        """The sockets of ``port`` (RTP) and ``port + 1`` (RTCP), or NO_PORTS with nothing taken."""
        try:
            return self.pool.take_pair(port)
        except PortUnavailableError as exc:
            raise CommandFailedError(ErrorCode.NO_PORTS, str(exc)) from None

    def _add_leg(
        self,
        call: MediaCall,
        name: str,
        port: int,
        rtp: socket.socket,
        rtcp: socket.socket | None,
        *,
        pooled: bool,
    ) -> MediaLeg:
        leg = call.legs[name] = MediaLeg(name, port, rtp, rtcp, pooled=pooled)
        self.watch(rtp, call.call_id, name, False)
        if rtcp is not None:
            self.watch(rtcp, call.call_id, name, True)
        return leg

    def _configure(
        self,
        call: MediaCall,
        leg: MediaLeg,
        config: LegConfig,
        hold: bool,
        srtp: SrtpKeys | None,
        now: float,
        context: SrtpContext | None = None,
    ) -> None:
        """Apply one leg's negotiated state (``context``: the transform of ``srtp`` if already built); the
        relay starts when both legs have one."""
        if srtp != leg.srtp_keys:
            leg.srtp = context if context is not None else self._srtp(srtp)
            leg.srtp_keys = srtp
        leg.config = config
        relay = call.relay
        if relay is None:
            leg.hold = hold
            legs = [call.legs.get(name) for name in LEGS]
            if any(other is None or other.config is None for other in legs):
                return
            a, b = call.legs["a"], call.legs["b"]
            assert a.config is not None and b.config is not None
            relay = call.relay = RelayCall(
                local_a=a.port,
                local_b=b.port,
                remote_a=a.config,
                remote_b=b.config,
                now=now,
                media_timeout=self.media_timeout,
            )
            for other in (a, b):
                if other.hold:
                    relay.set_hold(other.name, True, now)
            self.early_sends.extend(call.take_early())
            return
        relay.update_remote(leg.name, config)
        relay.set_timeout(leg.name, config.timeout, now)
        if hold != leg.hold:
            leg.hold = hold
            relay.set_hold(leg.name, hold, now)

    def _start_recording(self, call: MediaCall) -> None:
        if "record" not in call.flags or call.recorder is not None or call.relay is None:
            return
        if call.recording_failed:
            return
        if self.recording is None:
            return
        a, b = call.legs["a"].config, call.legs["b"].config
        assert a is not None and b is not None
        codec: Codec = "PCMA" if a.codec.upper() == "PCMA" else "PCMU"
        if a.codec.upper() not in G711 or b.codec.upper() not in G711:
            log.warning("media worker: call %s not recorded: %s/%s", call.call_id, a.codec, b.codec)
            return
        base = self.recording.directory / recording_name(call.call_id)
        path = base
        for n in range(1, 1000):
            if not path.exists():
                break
            path = base.with_suffix(f".{n}.rec")  # a call id used again: the earlier file stays
        try:
            call.recorder = RecordingWriter(
                path, kek=self.recording.kek, key_id=self.recording.key_id, call_id=call.call_id, codec=codec
            )
        except (OSError, RecordingUsageError) as exc:
            raise CommandFailedError(ErrorCode.INTERNAL, f"recording not started: {exc}") from None
        call.recording_path = str(path)
        log.info("media worker: call %s recorded to %s", call.call_id, path)

    def _rewrite(self, sdp: SessionDescription, port: int) -> str:
        self._session_version += 1
        # Only the first stream is relayed; any other stream is rejected towards the far leg.
        first_audio = next((i for i, m in enumerate(sdp.media) if m.media == "audio" and m.port != 0), None)
        ports = [port if i == first_audio else None for i in range(len(sdp.media))]
        out = rewrite_for_relay(
            sdp,
            address=self.pool.address,
            ports=ports,
            session_id=sdp.origin.session_id,
            session_version=self._session_version,
        )
        return out.to_bytes().decode()

    def _legacy_flags(self, call: MediaCall, flags: tuple[str, ...]) -> None:
        wanted = set(flags) & _LEGACY_FLAGS
        if "record" in wanted and self.recording is None:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, "recording not configured")
        call.flags |= wanted

    def _offer(self, msg: Offer) -> Ok:
        if msg.leg != "a":
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, "an offer comes from leg 'a'")
        if msg.call_id in self.calls:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, f"call {msg.call_id!r} already offered")
        sdp = _parse(msg.sdp)
        config, hold = leg_config(sdp)
        call = MediaCall(msg.call_id)
        self._legacy_flags(call, msg.flags)
        pairs: dict[str, tuple[int, socket.socket, socket.socket]] = {}
        try:
            for leg in LEGS:
                port = self.pool.allocate()
                pairs[leg] = (port, *self.pool.take_pair(port))
        except (PortsExhaustedError, PortUnavailableError) as exc:
            for port, _, _ in pairs.values():
                self.pool.give_back(port)
            raise CommandFailedError(ErrorCode.NO_PORTS, str(exc)) from None
        self.calls[msg.call_id] = call
        ports = {name: port for name, (port, _, _) in pairs.items()}
        for name, (port, rtp, rtcp) in pairs.items():
            self._add_leg(call, name, port, rtp, rtcp, pooled=True)
        call.legs["a"].config = config
        call.legs["a"].hold = hold
        return Ok(msg.request_id, sdp=self._rewrite(sdp, ports["b"]), ports=(ports["b"],))

    def _answer(self, msg: Answer, now: float) -> Ok:
        call = self._call(msg.call_id)
        if msg.leg != "b":
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, "an answer comes from leg 'b'")
        if call.relay is not None:
            raise CommandFailedError(ErrorCode.BAD_MESSAGE, f"call {msg.call_id!r} already answered")
        sdp = _parse(msg.sdp)
        config, hold = leg_config(sdp)
        self._legacy_flags(call, msg.flags)
        self._configure(call, call.legs["b"], config, hold, None, now)
        self._start_recording(call)
        port = call.legs["a"].port
        return Ok(msg.request_id, sdp=self._rewrite(sdp, port), ports=(port,))

    def _update(self, msg: Update, now: float) -> Ok:
        call = self._call(msg.call_id)
        if call.relay is None or msg.leg not in LEGS:
            raise CommandFailedError(
                ErrorCode.BAD_MESSAGE, "update needs an answered call and leg 'a' or 'b'"
            )
        sdp = _parse(msg.sdp)
        config, hold = leg_config(sdp)
        leg = call.legs[msg.leg]
        self._withdraw(call)
        self._configure(call, leg, config, hold, leg.srtp_keys, now)
        port = call.legs["b" if msg.leg == "a" else "a"].port
        return Ok(msg.request_id, sdp=self._rewrite(sdp, port), ports=(port,))

    @staticmethod
    def _stats(call: MediaCall) -> tuple[StreamStats, ...]:
        out = []
        kernel = call.offload.total
        # What the kernel forwarded from each leg, as (packets, RTP payload octets): its counters are IP
        # bytes, so the IP, UDP and fixed RTP headers come off each packet.
        forwarded = {
            "a": (kernel.a_packets, max(kernel.a_bytes - _KERNEL_OVERHEAD * kernel.a_packets, 0)),
            "b": (kernel.b_packets, max(kernel.b_bytes - _KERNEL_OVERHEAD * kernel.b_packets, 0)),
        }
        for name in LEGS:
            leg = call.legs.get(name)
            if leg is None:
                continue
            packets, octets = forwarded[name]
            lost, jitter = 0, 0.0
            if call.relay is not None:
                r = call.relay.stats(name).report()
                packets, octets, lost, jitter = (
                    packets + r.packets,
                    octets + r.octets,
                    max(r.lost, 0),
                    r.jitter_ms,
                )
            out.append(StreamStats(name, Direction.IN, packets, octets, lost, jitter))
            sent, sent_octets = forwarded["b" if name == "a" else "a"]
            out.append(
                StreamStats(
                    name,
                    Direction.OUT,
                    leg.sent_packets + sent,
                    leg.sent_octets + sent_octets,
                    leg.peer_lost,
                    leg.peer_jitter_ms,
                )
            )
        return tuple(out)

    def release(self, call_id: str) -> None:
        """Forget a call, close its recording and give its ports back; each socket goes to ``unwatch``
        first, so that no readiness callback survives on a socket the next call gets (or on a file
        descriptor number the kernel reuses)."""
        call = self.calls.pop(call_id)
        self._withdraw(call)
        for leg in call.legs.values():
            self.ivr.forget(call, leg)
        if call.recorder is not None:
            try:
                call.recorder.close()
            except OSError:
                log.exception("media worker: call %s: recording %s not closed", call_id, call.recording_path)
            call.recorder = None
        for reason, count in call.drop_counts().items():
            self._dropped_before[reason] = self._dropped_before.get(reason, 0) + count
        self._relayed_before += call.relayed + _kernel_packets(call)
        for leg in call.legs.values():
            for sock in leg.sockets():
                self.unwatch(sock)
            self.pool.give_back(leg.port)

    # -- events, timers and the periodic report ---------------------------------------------------------

    @staticmethod
    def events_of(call: MediaCall, now: float) -> list[WorkerEvent]:
        """Take the relay's pending events as control events (events the protocol has no message for are
        logged and dropped: resumption and one-way audio are derived by call control from timeouts); DTMF
        is reported only when the call asked for ``"dtmf-events"``."""
        out: list[WorkerEvent] = []
        relay = call.relay
        if relay is None:
            return out
        call_id = call.call_id
        while (event := relay.next_event()) is not None:
            match event:
                case RelayFirstPacket():
                    out.append(FirstPacket(call_id, event.leg, Direction.IN, event.source))
                case RelaySsrcChanged():
                    out.append(SsrcChanged(call_id, event.leg, Direction.IN, event.old, event.new))
                case DtmfReceived():
                    if "dtmf-events" in call.flags or call.reports_digit(event.leg):
                        out.append(DtmfEvent(call_id, event.leg, event.digit, event.duration_ms))
                case MediaTimedOut() if event.direction not in call.legs:
                    pass  # a dropped leg's placeholder: nothing was expected from it
                case MediaTimedOut():
                    silent = max(now - event.since, 0.0)
                    other = "b" if event.direction == "a" else "a"
                    one_way = relay.recently_active(other, now)
                    out.append(MediaTimeout(call_id, event.direction, Direction.IN, silent, one_way))
                case _:
                    log.info("media worker: call %s: %s", call_id, event)
        return out

    def packet_events(self, call_id: str, now: float) -> list[WorkerEvent]:
        """After a batch of packets of ``call_id``: the fast path judgement if a latch moved, and the
        call's events. The glue makes the same two attribute checks inline and calls :meth:`latch_moved`
        and :meth:`events_of` only when they say so."""
        call = self.calls.get(call_id)
        if call is None or call.relay is None:
            return []
        if call.relay.latch_epoch != call.latch_epoch:
            self.latch_moved(call)
        return self.events_of(call, now) if call.relay.events else []

    def latch_moved(self, call: MediaCall) -> None:
        """A latch of ``call`` learnt or moved (or the call was re-negotiated): the offloader installs it
        if it became eligible, or takes it back if a remote moved."""
        relay = call.relay
        assert relay is not None
        call.latch_epoch = relay.latch_epoch
        if call.inspect:
            self._withdraw(call)  # IVR media or in-band detection: every packet stays in userspace
            call.latch_epoch = relay.latch_epoch
        elif self.offload is not None:
            self.offload.after_packets(call)

    def worker_stats(self) -> WorkerStats:
        """The periodic report: totals since the worker started, drops by reason."""
        dropped = dict(self._dropped_before)
        relayed = self._relayed_before
        streams = 0
        # Every call, every second: no per-call copies (most calls have dropped nothing).
        for call in self.calls.values():
            for counts in (call.dropped, call.relay.dropped if call.relay is not None else None):
                if counts:
                    for reason, count in counts.items():
                        dropped[reason] = dropped.get(reason, 0) + count
            relayed += call.relayed + _kernel_packets(call)
            streams += len(call.legs)
        return WorkerStats(
            self.worker_id,
            len(self.calls),
            streams,
            relayed,
            sum(dropped.values()),
            tuple(dropped.items()),
        )

    def next_deadline(self) -> float:
        """The earliest time :meth:`handle_timer` has work: the next stats report or a relay's
        :attr:`~appliance.media.relay.RelayCall.wake` (a lower bound: packets since only push media
        deadlines back). One pass over the calls, with no call per call; the glue asks after each timer
        and command, never per packet."""
        due = self._stats_due
        if self.offload is not None and self.calls and self._poll_due < due:
            due = self._poll_due
        for call in self.calls.values():
            relay = call.relay
            if relay is not None and relay.wake < due:
                due = relay.wake
        return due

    def handle_timer(self, now: float) -> list[WorkerEvent]:
        """The sweep: apply every relay deadline reached by ``now`` (an attribute comparison for the
        others), take every pending event (those commands queued too) and, when due, poll the kernel
        counters and make the stats report; returns the events to send."""
        out: list[WorkerEvent] = []
        if self.offload is not None and now >= self._poll_due:
            # Kernel-forwarded media counts as activity before any media timeout is judged; it is dated
            # at the poll, so the poll's period bounds how late a timeout of a kernel call can come.
            self.offload.poll(self.calls.values(), now)
            self._poll_due = now + OFFLOAD_POLL
        for call in self.calls.values():
            relay = call.relay
            if relay is None:
                continue
            if now >= relay.wake:
                relay.handle_timer(now)
            if relay.events:
                out.extend(self.events_of(call, now))
        if now >= self._stats_due:
            out.append(self.worker_stats())
            self._stats_due += self._stats_interval
            if self._stats_due <= now:  # the loop stalled: skip the missed reports, keep the cadence
                self._stats_due = now + self._stats_interval
        return out
