"""One relayed call inside a media worker: its legs' sockets, SRTP, recording and the packet path around the
relay core.

Theory of operation. A :class:`MediaCall` has up to two :class:`MediaLeg` objects (``"a"``, the caller, and
``"b"``, the callee). A leg owns its RTP socket and the RTCP socket on the port above it (RFC 3550 §11), the
negotiated :class:`~appliance.media.relay.LegConfig` once call control set it, and an
:class:`~appliance.media.srtp.SrtpContext` when the leg is SRTP (RFC 3711, SDES keys of RFC 4568). The
:class:`~appliance.media.relay.RelayCall` exists once both legs are configured. A phone may send as soon as
it has the answer (RFC 3264 §5), which can beat the worker's command for the answering leg by a moment, so
the first :data:`EARLY_PACKETS` datagrams before that are kept and relayed when the relay starts
(:meth:`MediaCall.take_early`); any beyond them are dropped (reason ``"not-ready"``).

Per datagram (:meth:`MediaCall.receive`):

1. From an SRTP leg it is unprotected with the peer's key; an authentication failure, a replay or any other
   refusal is dropped and counted (``"srtp-auth"``, ``"srtp-replay"``, ``"srtp"``) — so latching only
   ever learns from packets that authenticated.
2. The relay core checks, latches, counts and rewrites it (:meth:`RelayCall.receive` or
   :meth:`RelayCall.receive_rtcp`); its own drops are in :attr:`RelayCall.dropped`.
3. An RTP packet that is relayed and carries the leg's codec is written to the recording (plain payload,
   converted to the recording's G.711 law if the legs differ). An RTCP receiver report from the peer
   about our stream gives the ``out`` direction's loss and jitter (RFC 3550 §6.4.1).
4. Towards an SRTP leg the packet is protected with our key; the datagram goes out on the destination
   leg's socket, and that leg's ``out`` counters move.

While the kernel fast path forwards the call (:attr:`MediaCall.offload`), an RTP packet that still reaches
the worker is judged and counted by the relay but not sent.

IVR media (:mod:`appliance.media.ivr_endpoint`). A leg is in IVR mode while its endpoint plays or records,
or while it has no partner leg (an IVR-only call, or a caller whose other leg was dropped: the relay then
keeps the missing leg as a placeholder nothing is sent to). A leg in IVR mode is neither relayed from nor
relayed to: its packets still go through the relay core (latching, statistics, media timeout, RFC 4733
digits), and then to its endpoint instead of out. A leg's endpoint also sees its inbound audio while it
only runs an in-band DTMF detector, the call being relayed as usual. :attr:`MediaCall.inspect` says
whether any of this applies, so that a plain relayed call pays one attribute check for it per packet.

Nothing the network sends makes :meth:`MediaCall.receive` raise. Sockets are opened and closed by the
worker; this module only reads their objects to say where to send. Pure code otherwise: ``now`` is a
parameter.
"""

from __future__ import annotations

import base64
import binascii
import logging
import socket
from dataclasses import dataclass, field
from typing import Final

from appliance.media.control_events import SrtpKeys
from appliance.media.fastpath import FlowHandle
from appliance.media.fastpath_rules import FlowCounters
from appliance.media.g711 import ALAW_TO_ULAW_TABLE, ULAW_TO_ALAW_TABLE
from appliance.media.ivr_endpoint import IvrEndpoint
from appliance.media.latch import Address
from appliance.media.recording import RecordingUsageError, RecordingWriter
from appliance.media.relay import DROP_NO_DESTINATION, LegConfig, Outgoing, RelayCall
from appliance.media.srtp import SrtpContext, SrtpError

log = logging.getLogger("appliance.media.call")

LEGS: Final = ("a", "b")

DROP_NOT_READY: Final = "not-ready"
# A packet that reached the worker's socket while the kernel fast path carried its call (the instant of an
# install or withdrawal, or the packet that moved a latch): judged but not sent.
DROP_HANDOVER: Final = "handover"
# Datagrams kept per call before its relay starts: a few packet times of both legs' RTP and RTCP, bounded
# so that a port sprayed before the answer costs little memory.
EARLY_PACKETS: Final = 8
DROP_SRTP_AUTH: Final = "srtp-auth"
DROP_SRTP_REPLAY: Final = "srtp-replay"
DROP_SRTP: Final = "srtp"
DROP_SRTP_PROTECT: Final = "srtp-protect"
DROP_LATCH: Final = "latch"

G711: Final = frozenset({"PCMA", "PCMU"})
_TO_LAW: Final[dict[tuple[str, str], bytes]] = {
    ("PCMA", "PCMU"): ALAW_TO_ULAW_TABLE,
    ("PCMU", "PCMA"): ULAW_TO_ALAW_TABLE,
}
_RTCP_SR: Final = 200
_RTCP_RR: Final = 201

Send = tuple[socket.socket, bytes, Address]


class SrtpKeyError(ValueError):
    """SDES keys the worker cannot use (unknown suite, not base64 of 30 octets)."""


def srtp_context(keys: SrtpKeys) -> SrtpContext:
    """The SRTP transform of a leg: ``remote_key`` unprotects what the peer sends, ``local_key`` protects
    what the relay sends. Raises :class:`SrtpKeyError`."""
    try:
        remote = base64.b64decode(keys.remote_key.encode("ascii"), validate=True)
        local = base64.b64decode(keys.local_key.encode("ascii"), validate=True)
        return SrtpContext(remote, local, suite=keys.suite)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise SrtpKeyError(f"SRTP keys: {exc}") from None


@dataclass(slots=True)
class MediaLeg:
    """One leg's sockets, negotiated configuration and the counters of what the relay sent to it.

    ``srtp_keys``/``srtp`` are None for plain RTP. ``pooled`` says the RTP port came from the worker's
    allocator (the SDP commands) rather than from call control (``SetLeg``). ``peer_lost``/
    ``peer_jitter_ms`` are from the peer's latest RTCP receiver report about the stream we send it.
    ``ivr`` is the leg's IVR endpoint once it had IVR media or in-band detection (kept, so that its RTP
    stream continues across playbacks); ``inband`` whether call control asked for in-band DTMF detection.
    """

    name: str
    port: int
    rtp: socket.socket
    rtcp: socket.socket | None
    pooled: bool = False
    config: LegConfig | None = None
    hold: bool = False
    srtp_keys: SrtpKeys | None = None
    srtp: SrtpContext | None = None
    sent_packets: int = 0
    sent_octets: int = 0
    peer_lost: int = 0
    peer_jitter_ms: float = 0.0
    ivr: IvrEndpoint | None = None
    inband: bool = False

    def sockets(self) -> list[socket.socket]:
        return [self.rtp] if self.rtcp is None else [self.rtp, self.rtcp]


@dataclass(slots=True)
class CallOffload:
    """The kernel fast path's share of a call (:mod:`appliance.media.offload`): ``handle`` while installed;
    ``refused`` the reasons it stays in userspace until re-negotiated; ``done`` the counters of earlier
    installs, ``live`` those of the current one at the last poll (what the next poll compares against)."""

    handle: FlowHandle | None = None
    refused: tuple[str, ...] = ()
    done: FlowCounters = field(default_factory=FlowCounters)
    live: FlowCounters = field(default_factory=FlowCounters)

    @property
    def total(self) -> FlowCounters:
        return self.done + self.live


def _payload_bounds(data: bytes) -> tuple[int, int]:
    """Start and end of the payload of an RTP packet the relay accepted (its header is valid)."""
    first = data[0]
    header = 12 + ((first & 0x0F) << 2)
    if first & 0x10:
        header += 4 + ((data[header + 2] << 8 | data[header + 3]) << 2)
    end = len(data) - (data[-1] if first & 0x20 else 0)
    return header, end


class MediaCall:
    """The worker-side state of one call (see the module docstring).

    ``flags`` are the call's options (``"record"``, ``"dtmf-events"``, ``"no-fastpath"``); ``recorder`` is
    the open recording, if any; :attr:`dropped` counts this module's own drops (the relay core keeps its
    own); :attr:`relayed` counts every datagram sent, RTP and RTCP.
    """

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.legs: dict[str, MediaLeg] = {}
        self.flags: set[str] = set()
        self.relay: RelayCall | None = None
        self.recorder: RecordingWriter | None = None
        self.recording_path: str | None = None
        self.recording_failed = False
        self.dropped: dict[str, int] = {}
        self.relayed = 0
        self.early: list[tuple[str, bool, bytes, Address, float]] = []
        self.offload = CallOffload()
        # The relay's latch_epoch when the fast path last judged this call (-1: judge it again).
        self.latch_epoch = 0
        # Whether a leg has IVR media, in-band detection or no partner (see refresh_ivr).
        self.inspect = False

    # -- drop accounting ------------------------------------------------------------------------------

    def _drop(self, reason: str) -> list[Send]:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return []

    def _srtp_drop(self, exc: SrtpError, srtp: SrtpContext, before: tuple[int, int]) -> list[Send]:
        if srtp.auth_failures != before[0]:
            return self._drop(DROP_SRTP_AUTH)
        if srtp.replays != before[1]:
            return self._drop(DROP_SRTP_REPLAY)
        log.debug("call %s: SRTP refused a packet: %s", self.call_id, exc.reason)
        return self._drop(DROP_SRTP)

    def take_early(self) -> list[Send]:
        """Once the relay exists: what to send for the datagrams kept before it did, in arrival order (each
        judged as if it had arrived now, at its own arrival time)."""
        early, self.early = self.early, []
        sends: list[Send] = []
        for leg, rtcp, data, source, at in early:
            sends.extend(self.receive(leg, rtcp, data, source, at))
        return sends

    def drop_counts(self) -> dict[str, int]:
        """Every drop of this call by reason: this module's and the relay core's."""
        out = dict(self.dropped)
        if self.relay is not None:
            for reason, count in self.relay.dropped.items():
                out[reason] = out.get(reason, 0) + count
        return out

    # -- the packet path ------------------------------------------------------------------------------

    def receive(self, leg: str, rtcp: bool, data: bytes, source: Address, now: float) -> list[Send]:
        """One datagram received on ``leg``'s RTP (or, with ``rtcp``, RTCP) socket from ``source``;
        returns ``(socket, datagram, destination)`` to send. Never raises for network input."""
        relay = self.relay
        if relay is None:
            if len(self.early) < EARLY_PACKETS:
                self.early.append((leg, rtcp, data, source, now))
                return []
            return self._drop(DROP_NOT_READY)
        state = self.legs[leg]
        srtp = state.srtp
        if srtp is not None:
            before = (srtp.auth_failures, srtp.replays)
            try:
                data = srtp.unprotect_rtcp(data) if rtcp else srtp.unprotect(data)
            except SrtpError as exc:
                return self._srtp_drop(exc, srtp, before)
        if rtcp:
            outgoing = relay.receive_rtcp(leg, data, source, now)
            if outgoing:
                self._peer_report(state, data)
                if self.inspect:
                    outgoing = self._not_to_ivr(leg, outgoing)
        else:
            offload = self.offload
            if offload.handle is not None:
                # The kernel forwards this call. Its latched sources never reach this socket; the latch
                # judges what does with the kernel's counters as its witness (a successor's run is refused
                # while the incumbent still sends), and a move takes the call back to userspace
                # (Offloader.after_packets). Nothing is sent from here: a send would recreate the conntrack
                # entry that shadows the kernel's NAT. A packet the relay would have sent is counted as
                # lost to the hand-over, so that every packet not relayed is accounted for.
                if relay.receive(leg, data, source, now):
                    return self._drop(DROP_HANDOVER)
                return []
            outgoing = relay.receive(leg, data, source, now)
            if not outgoing:
                return []
            if self.inspect:
                outgoing = self._inspect(state, data, outgoing, now)
                if not outgoing:
                    return []
            if self.recorder is not None:
                self._record(state, data, now)
            if len(outgoing) == 1:
                # The common case, one plain RTP datagram out: the loop below without its branches.
                destination, plain, out_name = outgoing[0]
                out = self.legs[out_name]
                if out.srtp is None:
                    out.sent_packets += 1
                    if plain[0] == 0x80:  # the common header: no padding, extension or CSRC
                        out.sent_octets += len(plain) - 12
                    else:
                        start, end = _payload_bounds(plain)
                        out.sent_octets += end - start
                    self.relayed += 1
                    return [(out.rtp, plain, destination)]
        sends: list[Send] = []
        for destination, plain, out_name in outgoing:
            packet = plain
            out = self.legs[out_name]
            sock = out.rtcp if rtcp else out.rtp
            if sock is None:
                continue
            if not rtcp:
                out.sent_packets += 1
                if plain[0] == 0x80:  # the common header: no padding, extension or CSRC
                    out.sent_octets += len(plain) - 12
                else:
                    start, end = _payload_bounds(plain)
                    out.sent_octets += end - start
            if out.srtp is not None:
                try:
                    packet = out.srtp.protect_rtcp(packet) if rtcp else out.srtp.protect(packet)
                except SrtpError:
                    self._drop(DROP_SRTP_PROTECT)
                    continue
            self.relayed += 1
            sends.append((sock, packet, destination))
        return sends

    # -- IVR media ------------------------------------------------------------------------------------

    def ivr_mode(self, name: str) -> bool:
        """Whether leg ``name`` is in IVR mode (see the module docstring); a leg that is not there is."""
        leg = self.legs.get(name)
        if leg is None:
            return True
        if leg.ivr is not None and leg.ivr.active:
            return True
        return ("b" if name == "a" else "a") not in self.legs

    def reports_digit(self, name: str) -> bool:
        """Whether a digit that just ended on leg ``name`` is reported whatever ``"dtmf-events"`` says: the
        leg is in IVR mode, or was when the digit began (a barge-in stopped its playback)."""
        leg = self.legs.get(name)
        owed = leg is not None and leg.ivr is not None and leg.ivr.take_digit()
        return owed or (self.inspect and self.ivr_mode(name))

    def refresh_ivr(self) -> None:
        """Recompute :attr:`inspect` after an IVR command, a playback or recording ending, or a leg
        added or dropped."""
        inspect = any(name not in self.legs for name in LEGS) or any(
            leg.ivr is not None and (leg.ivr.active or leg.ivr.detector is not None)
            for leg in self.legs.values()
        )
        if self.inspect and not inspect:
            self.latch_epoch = -1  # relaying again: the fast path judges the call after its next packets
        self.inspect = inspect

    def _not_to_ivr(self, leg: str, outgoing: list[Outgoing]) -> list[Outgoing]:
        if self.ivr_mode(leg):
            return []
        return [out for out in outgoing if not self.ivr_mode(out[2])]

    def _inspect(self, state: MediaLeg, data: bytes, outgoing: list[Outgoing], now: float) -> list[Outgoing]:
        """An RTP packet the relay accepted from a call with IVR media: to the leg's endpoint, and out
        only between legs that are both relaying."""
        ivr, config = state.ivr, state.config
        if ivr is not None and config is not None:
            pt = data[1] & 0x7F
            if pt == config.codec_pt:
                if ivr.recorder is not None or ivr.detector is not None:  # else no one listens
                    start, end = _payload_bounds(data)
                    ivr.audio(data[start:end], now)
            elif pt == config.event_pt:
                start, end = _payload_bounds(data)
                ivr.telephone_event(int.from_bytes(data[4:8]), data[start:end])
        return self._not_to_ivr(state.name, outgoing)

    def ivr_sends(self, leg: MediaLeg, packets: list[bytes]) -> list[Send]:
        """The datagrams for ``packets`` of ``leg``'s endpoint: protected on an SRTP leg and addressed to
        the leg's latched source (its SDP address until one is learnt)."""
        relay = self.relay
        destination = relay.latches(leg.name).rtp.destination if relay is not None else None
        if destination is None:
            for _ in packets:
                self._drop(DROP_NO_DESTINATION)
            return []
        sends: list[Send] = []
        for packet in packets:
            leg.sent_packets += 1
            leg.sent_octets += len(packet) - 12
            out = packet
            if leg.srtp is not None:
                try:
                    out = leg.srtp.protect(packet)
                except SrtpError:
                    self._drop(DROP_SRTP_PROTECT)
                    continue
            sends.append((leg.rtp, out, destination))
        return sends

    def _record(self, state: MediaLeg, data: bytes, now: float) -> None:
        config = state.config
        recorder = self.recorder
        assert config is not None and recorder is not None
        if data[1] & 0x7F != config.codec_pt:
            return  # telephone-events and comfort noise are not audio samples
        start, end = _payload_bounds(data)
        payload = data[start:end]
        table = _TO_LAW.get((config.codec.upper(), recorder.header.codec))
        if table is not None:
            payload = payload.translate(table)
        try:
            recorder.write(LEGS.index(state.name), now, payload)
        except (OSError, RecordingUsageError) as exc:
            # A full disk must not stop the media: the call goes on unrecorded, and the file keeps every
            # chunk sealed so far (it reads as truncated: no final chunk).
            log.error("call %s: recording stopped: %s", self.call_id, exc)
            recorder.abort()
            self.recorder = None
            self.recording_failed = True

    @staticmethod
    def _peer_report(state: MediaLeg, data: bytes) -> None:
        # RFC 3550 §6.4: the first packet of a compound is an SR (report blocks after 20 octets of sender
        # info) or an RR; block 0 is taken as the peer's view of our stream, the only one a relay sends it.
        kind, count = data[1], data[0] & 0x1F
        offset = 28 if kind == _RTCP_SR else 8 if kind == _RTCP_RR else 0
        if not offset or not count or len(data) < offset + 24:
            return
        lost = int.from_bytes(data[offset + 5 : offset + 8], signed=True)
        jitter = int.from_bytes(data[offset + 12 : offset + 16])
        state.peer_lost = max(lost, 0)
        clock = 8000  # G.711 and telephone-event: the only clock rates this relay carries
        state.peer_jitter_ms = 1000.0 * jitter / clock
