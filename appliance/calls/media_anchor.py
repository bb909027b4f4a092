"""Media anchoring: every SDP that crosses the B2BUA is rewritten so that both legs send RTP to the relay.

Theory of operation. Call control owns all SDP work; the media workers only move packets as told by
:class:`~appliance.media.control_events.SetLeg`. For each relayed call :class:`MediaAnchor` keeps the
RFC 3264 offer/answer state between the two legs, ``"a"`` (the caller's) and ``"b"`` (the callee's):

* an SDP from a leg while no offer is pending is an **offer**; it is forwarded to the other leg with the
  relay's address and the other leg's relay port (:func:`~appliance.sdp.relay.rewrite_for_relay`), ICE
  removed (RFC 8839: the candidates name the far leg) and SDES keys replaced by ours (RFC 4568 §5: a key
  protects one hop). When transcoding is allowed and the offer names only one of PCMA/PCMU, the other is
  appended, so the far leg may pick either and the worker converts (G.711 both ways);
* the other leg's SDP then **answers** it. The answer sent back names exactly one codec the offerer offered,
  with the offerer's payload-type numbers (RFC 3264 §6.1), plus telephone-event (RFC 4733) when the
  offerer offered it, each leg keeping its own number (a leg without it gets digits as SIP INFO). A
  second answer from the same leg (183 then 200, or a 200 from another fork) **re-answers** the offer;
* once an exchange completes, each leg's :class:`~appliance.media.control_events.LegSpec` is computed
  (remote RTP endpoint, codec, event payload type, RTCP port, hold, SRTP keys, and for a leg b that is
  the cloud its own media timeout) and a ``SetLeg`` is queued for every leg whose spec changed, on
  :attr:`MediaAnchor.commands` as ``(worker index, command)``.

Only the first enabled audio RTP stream is anchored; every other stream is forwarded disabled (port 0,
RFC 3264 §8.2), because a worker relays one stream per leg. Each leg gets one even RTP port (RTCP on the
odd one above, RFC 3550 §11; ``a=rtcp-mux`` is removed) from the slice of the call's worker.

The SRTP profile of a leg is what that leg wrote; a leg that has not written SDP yet is offered: for the
callee, the route's policy (``follow`` the caller, ``off``, ``sdes``); for the caller (delayed offer), the
callee's profile. Errors are :class:`~appliance.calls.b2bua.MediaRefused`: 488 for SDP that cannot be
parsed or negotiated (RFC 3261 §21.4.26), 503 when the worker's port slice is exhausted.

Sans-I/O: no sockets, no clock; randomness (session ids, SDES keys) is injected.
"""

from __future__ import annotations

import base64
import logging
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from appliance.calls.anchor_sdp import (
    AVP,
    SAVP,
    anchored_stream,
    check_stream,
    choose_crypto,
    codecs,
    cryptos,
    is_srtp,
    narrowed,
    telephone_event,
)
from appliance.calls.errors import MediaRefused
from appliance.media import srtp as sdes
from appliance.media.control_events import MAX_LEG_TIMEOUT, Delete, DropLeg, LegSpec, SetLeg, SrtpKeys
from appliance.media.control_events import Command as WorkerCommand
from appliance.media.ports import PortAllocator, PortsExhaustedError
from appliance.sdp import PCMA, PCMU, TELEPHONE_EVENT, answer_audio, parse_sdp
from appliance.sdp.errors import SdpError
from appliance.sdp.model import Attribute, Direction, MediaDescription, RtpMap, SessionDescription
from appliance.sdp.offer_answer import same_codec
from appliance.sdp.relay import rewrite_for_relay

log = logging.getLogger("appliance.calls.media")

LEGS: Final = ("a", "b")
SrtpPolicy = Literal["follow", "off", "sdes"]
Command = tuple[int, WorkerCommand]

_OUR_CRYPTO_TAG: Final = 1
_G711: Final = {"PCMA": 8, "PCMU": 0}
_OTHER_G711: Final = {"PCMA": "PCMU", "PCMU": "PCMA"}
# The leg flags of a caller whose media the appliance terminates (the local IVR): every digit is reported to
# call control, and listened for in the audio when the caller negotiated no RFC 4733 events.
_LOCAL_FLAGS: Final = ("dtmf-events",)
_LOCAL_FLAGS_INBAND: Final = ("dtmf-events", "inband-dtmf")
# Formats that are never "the" codec of a leg: RFC 4733 events and RFC 3389 comfort noise ride along.
_SIDE_FORMATS: Final = frozenset({"telephone-event", "cn"})
_RTP_FIELDS: Final = frozenset({"rtpmap", "fmtp", "crypto"})  # an answer's, rewritten for the offerer


@dataclass(frozen=True, slots=True)
class RouteMedia:
    """A route's media options: the SRTP profile the callee is offered and whether calls are recorded."""

    srtp: SrtpPolicy = "follow"
    record: bool = False


@dataclass(slots=True)
class _Leg:
    port: int
    session_id: int
    local_key: bytes  # our SDES master key||salt for this leg (protects what the relay sends it)
    version: int = 0
    sent: SessionDescription | None = None  # the last SDP given to this leg, without its o= version
    body: bytes = b""  # ... and as sent
    srtp: bool | None = None  # the leg's profile, None until it or we wrote one
    suite: str = sdes.AES_CM_128_HMAC_SHA1_80
    remote_key: bytes | None = None
    spec: LegSpec | None = None
    flags: tuple[str, ...] = ()
    written: SessionDescription | None = None  # the last SDP the leg itself wrote that was accepted


@dataclass(slots=True)
class _Exchange:
    """One offer: who made it, the stream anchored, the offer as written and as forwarded."""

    offerer: str
    index: int
    offer: SessionDescription
    forwarded: MediaDescription
    offerer_tag: int | None  # the offerer's chosen a=crypto tag (SRTP offerer)


@dataclass(slots=True)
class _Call:
    worker: int
    legs: dict[str, _Leg]
    options: RouteMedia
    pending: _Exchange | None = None
    last: _Exchange | None = None
    set_sent: bool = False
    specs: dict[str, LegSpec] = field(default_factory=dict)
    # The appliance terminates leg a's media itself (the local IVR): nothing is relayed to a leg b.
    local: bool = False
    # The offer to a leg b that the local caller is being transferred to, until an agent answers it.
    transfer: _Exchange | None = None
    # Leg b is the cloud: its spec carries the cloud's media timeout (MediaAnchor.mark_cloud).
    cloud: bool = False


def _crc_worker(workers: int) -> Callable[[str], int]:
    # The same choice as MediaSupervisor.worker_for: CRC-32, stable across restarts (unlike hash()).
    return lambda call_id: zlib.crc32(call_id.encode()) % workers


class MediaAnchor:
    """Offer/answer bookkeeping and relay port allocation for every anchored call.

    ``slices`` are the workers' RTP port ranges (index = worker index); ``worker_for(call_id)`` picks the
    worker (default: CRC-32 of the call id, as the supervisor does). ``record`` records every call;
    ``transcode`` allows PCMA↔PCMU. ``random_bytes(n)`` gives ``n`` random octets (SDES keys, session ids).
    ``cloud_media_timeout`` (seconds, 0 < s <= 86400) is the silence allowed from a leg b that is the cloud
    (:meth:`mark_cloud`) before the worker reports its media timeout; None, and every other leg: the
    worker's own timeout.
    """

    def __init__(
        self,
        *,
        address: str,
        slices: Sequence[tuple[int, int]],
        worker_for: Callable[[str], int] | None = None,
        transcode: bool = True,
        record: bool = False,
        random_bytes: Callable[[int], bytes] = os.urandom,
        cloud_media_timeout: float | None = None,
    ) -> None:
        if cloud_media_timeout is not None and not 0 < cloud_media_timeout <= MAX_LEG_TIMEOUT:
            raise ValueError(f"cloud_media_timeout must be in (0, {MAX_LEG_TIMEOUT:g}] seconds")
        self.cloud_media_timeout = cloud_media_timeout
        self.address = address
        self._ports = [PortAllocator(low, high) for low, high in slices]
        self._worker_for = worker_for or _crc_worker(len(slices))
        self.transcode = transcode
        self.record = record
        self._random = random_bytes
        self._calls: dict[str, _Call] = {}
        self.commands: deque[Command] = deque()

    # -------------------------------------------------------------------------------- public API
    @property
    def active(self) -> int:
        """Calls holding relay ports."""
        return len(self._calls)

    def has(self, call_id: str) -> bool:
        return call_id in self._calls

    def exclude(self, worker: int, rtp_ports: Iterable[int]) -> None:
        """Never allocate these pairs (by RTP port) of ``worker``'s slice: the worker could not bind them
        when it last started. Replaces that worker's previous exclusion."""
        self._ports[worker].exclude(rtp_ports)

    def calls_on(self, worker: int) -> list[str]:
        return [cid for cid, call in self._calls.items() if call.worker == worker]

    def configure(self, call_id: str, options: RouteMedia | None) -> None:
        """Set the route's media options for a call before its first SDP (later calls change nothing
        already negotiated); None takes the defaults. Raises :class:`MediaRefused` (503) without ports."""
        if options is None:
            options = RouteMedia(record=self.record)
        call = self._calls.get(call_id)
        if call is None:
            call = self._open(call_id, options)
        call.options = options

    def mark_cloud(self, call_id: str, cloud: bool) -> None:
        """Say whether the leg b being dialled for ``call_id`` is the cloud, before its SDP is exchanged: a
        cloud leg's media is watched with ``cloud_media_timeout`` from its next ``SetLeg`` on, so that a
        silent cloud is noticed (and the caller rescued) in seconds. A call not anchored is ignored."""
        call = self._calls.get(call_id)
        if call is not None:
            call.cloud = cloud

    def wants_info(self, call_id: str, leg: str) -> bool:
        """Whether ``leg`` negotiated no telephone-event, so digits must reach it as SIP INFO."""
        call = self._calls.get(call_id)
        spec = None if call is None else call.specs.get(leg)
        return spec is not None and spec.event_pt is None

    def sdp_from(self, call_id: str, leg: str, sdp: bytes, *, offer: bool | None = None) -> bytes:
        """The SDP to give the other leg for ``sdp`` written by ``leg``; raises :class:`MediaRefused`.

        ``offer=True`` says the SDP is a new offer (a re-INVITE or UPDATE); by default an SDP from the leg
        that did not make the pending (or last) offer answers it, and any other SDP is an offer.
        """
        if leg not in LEGS:
            raise ValueError(f"unknown leg {leg!r}")
        try:
            parsed = parse_sdp(sdp)
        except SdpError as exc:
            raise MediaRefused(488, f"SDP: {exc.reason}") from None
        call = self._calls.get(call_id) or self._open(call_id, RouteMedia(record=self.record))
        exchange = None
        if offer is not True:
            pending, last = call.pending, call.last
            if pending is not None and pending.offerer != leg:
                exchange = pending
            elif pending is None and last is not None and last.offerer != leg:
                exchange = last
        try:
            if exchange is not None:
                body = self._answer(call_id, call, exchange, leg, parsed)
            else:
                body = self._offer(call, leg, parsed)
        except SdpError as exc:
            raise MediaRefused(488, f"SDP: {exc.reason}") from None
        call.legs[leg].written = parsed
        return body

    # ------------------------------------------------------------------------- local media (IVR)
    def answer_local(self, call_id: str, offer: bytes, *, options: RouteMedia | None = None) -> bytes:
        """Answer the caller's (leg a's) ``offer`` with the appliance as the media end, for the local IVR.

        The caller's RTP then terminates on the call's worker, which plays prompts, records and detects
        digits on it. G.711 (A-law, then µ-law) plus telephone-event are accepted; a caller that offers no
        telephone-event gets in-band detection. A later offer from the caller (re-INVITE) re-answers on
        the same port. Raises :class:`MediaRefused`: 488 for SDP that cannot be answered (SRTP callers
        are not answered locally yet), 503 without a free port.
        """
        try:
            sdp = parse_sdp(offer)
        except SdpError as exc:
            raise MediaRefused(488, f"SDP: {exc.reason}") from None
        call = self._calls.get(call_id)
        if call is None:
            call = self._open(call_id, options or RouteMedia(record=self.record), legs=("a",))
        leg = call.legs["a"]
        try:
            answer, negotiated = answer_audio(
                sdp,
                local_address=self.address,
                local_port=leg.port,
                supported=(PCMA, PCMU, TELEPHONE_EVENT),
                session_id=leg.session_id,
                session_version=0,
            )
        except SdpError as exc:
            raise MediaRefused(exc.status if exc.status >= 400 else 488, f"SDP: {exc.reason}") from None
        call.local = True
        call.pending = call.last = None
        leg.written = sdp
        held = not negotiated.direction.sends or negotiated.remote_address in ("0.0.0.0", "::")
        spec = LegSpec(
            local_port=leg.port,
            remote=None if held else (negotiated.remote_address, negotiated.remote_port),
            codec_pt=negotiated.payload_type,
            codec=negotiated.codec.name.upper(),
            event_pt=negotiated.dtmf_payload_type,
            rtcp_port=negotiated.remote_rtcp_port,
            hold=held,
            srtp=None,
        )
        self._set_local(call_id, call, spec)
        if call.transfer is not None:
            # Agents ring for this caller with an offer made from its previous SDP: their answer is to
            # meet the caller where it is now (the offer they got names only the relay, so it stands).
            call.transfer = self._transfer_offer(call)[1]
        return self._send(leg, answer)

    def adopt_local(self, call_id: str) -> bool:
        """Take over a relayed call's caller leg for the local IVR (call rescue): leg b is dropped, leg a
        stays on its port with its negotiated codec, so the caller notices nothing but new audio.

        False (nothing changed) when the call is not anchored, leg a has no agreed media yet, or its codec
        is not G.711 (the IVR plays and records G.711 only).
        """
        if not self.can_adopt_local(call_id):
            return False
        call = self._calls[call_id]
        spec = call.specs["a"]
        b = call.legs.pop("b", None)
        if b is not None:
            self._ports[call.worker].release(b.port)
            if b.spec is not None:
                self.commands.append((call.worker, DropLeg(call_id, "b")))
        call.specs.pop("b", None)
        call.local = True
        call.pending = call.last = call.transfer = None
        self._set_local(call_id, call, spec)
        return True

    def can_adopt_local(self, call_id: str) -> bool:
        """Whether :meth:`adopt_local` would take the call."""
        call = self._calls.get(call_id)
        spec = None if call is None else call.specs.get("a")
        return spec is not None and spec.codec in _G711

    def is_local(self, call_id: str) -> bool:
        call = self._calls.get(call_id)
        return call is not None and call.local

    def local_command(self, call_id: str, command: WorkerCommand) -> bool:
        """Queue ``command`` (play, record, stop) for the worker that carries ``call_id``'s local media;
        False when the call has none."""
        call = self._calls.get(call_id)
        if call is None or not call.local:
            return False
        self.commands.append((call.worker, command))
        return True

    # ------------------------------------------------------------- transfer of a local caller
    def offer_from_local(self, call_id: str) -> bytes:
        """The offer for a new leg b of a call whose caller (leg a) the appliance answers itself: the local
        IVR hands the caller to an agent.

        It is the caller's last SDP narrowed to the codec the caller uses now (and telephone-event), with
        the other G.711 law added when transcoding: the caller keeps its port and codec, whichever law the
        agent picks, and is not re-INVITEd. Leg b's port is allocated on the first call and kept for the
        next (another agent rung gets the same offer). Leg a stays local (:meth:`local_command` still
        plays to it) until :meth:`answer_from_local`. Raises :class:`MediaRefused`: 488 when the call has
        no local caller leg with agreed media, 503 without a free port.
        """
        call = self._calls.get(call_id)
        caller = None if call is None else call.legs["a"]
        spec = None if call is None else call.specs.get("a")
        if call is None or caller is None or caller.written is None or spec is None or not call.local:
            raise MediaRefused(488, "No local caller media to transfer")
        if "b" not in call.legs:
            try:
                port = self._ports[call.worker].allocate()
            except PortsExhaustedError:
                raise MediaRefused(503, "No RTP port free") from None
            call.legs["b"] = _Leg(port, self._session_id(), self._random(sdes.KEY_SALT_LENGTH))
        body, call.transfer = self._transfer_offer(call)
        return body

    def _transfer_offer(self, call: _Call) -> tuple[bytes, _Exchange | None]:
        """The offer to leg b made from leg a's last SDP and agreed media, and its exchange, kept apart from
        the caller's own offer/answer state (a re-INVITE to the IVR is not this exchange's)."""
        caller, spec = call.legs["a"], call.specs["a"]
        assert caller.written is not None
        pending = call.pending
        try:
            body = self._offer(call, "a", narrowed(caller.written, spec))
        except SdpError as exc:
            raise MediaRefused(488, f"SDP: {exc.reason}") from None
        exchange, call.pending = call.pending, pending
        return body, exchange

    def answer_from_local(self, call_id: str, answer: bytes) -> None:
        """The agent's ``answer`` to :meth:`offer_from_local`: both legs are set (``SetLeg`` each) and the
        call is relayed from then on, every later SDP through :meth:`sdp_from`. A prompt still playing to
        the caller keeps the relay from reaching it until stopped (the worker's IVR media rule). Raises
        :class:`MediaRefused` (488) for an answer that cannot be used; the call then stays local."""
        call = self._calls.get(call_id)
        exchange = None if call is None else call.transfer
        if call is None or exchange is None:
            raise MediaRefused(488, "No transfer offer to answer")
        try:
            parsed = parse_sdp(answer)
            self._answer(call_id, call, exchange, "b", parsed)
        except SdpError as exc:
            raise MediaRefused(488, f"SDP: {exc.reason}") from None
        call.legs["b"].written = parsed
        call.transfer = None

    def _set_local(self, call_id: str, call: _Call, spec: LegSpec) -> None:
        leg = call.legs["a"]
        flags = _LOCAL_FLAGS if spec.event_pt is not None else _LOCAL_FLAGS_INBAND
        if call.options.record or self.record:
            flags = (*flags, "record")
        call.specs["a"] = spec
        if spec != leg.spec or flags != leg.flags:
            leg.spec, leg.flags = spec, flags
            call.set_sent = True
            self.commands.append((call.worker, SetLeg(call_id, "a", spec, flags)))

    def reject(self, call_id: str) -> None:
        """The pending offer was refused by the other leg: the last agreed media stays in force."""
        call = self._calls.get(call_id)
        if call is not None:
            call.pending = None

    def release(self, call_id: str) -> None:
        """Free the call's relay ports; queues a ``Delete`` if the worker was told about the call."""
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        for state in call.legs.values():
            self._ports[call.worker].release(state.port)
        if call.set_sent:
            self.commands.append((call.worker, Delete(call_id)))

    # -------------------------------------------------------------------------------- internals
    def _open(self, call_id: str, options: RouteMedia, legs: Sequence[str] = LEGS) -> _Call:
        worker = self._worker_for(call_id)
        allocator = self._ports[worker]
        ports: list[int] = []
        try:
            for _ in legs:
                ports.append(allocator.allocate())
        except PortsExhaustedError:
            for port in ports:
                allocator.release(port)
            raise MediaRefused(503, "No RTP port free") from None
        states = {
            name: _Leg(port, self._session_id(), self._random(sdes.KEY_SALT_LENGTH))
            for name, port in zip(legs, ports, strict=True)
        }
        call = _Call(worker, states, options)
        self._calls[call_id] = call
        return call

    def _session_id(self) -> int:
        # RFC 8866 §5.2: a numeric id unique to the originator; 62 bits keep it within o='s signed range.
        return int.from_bytes(self._random(8), "big") >> 2

    def _offer(self, call: _Call, leg: str, sdp: SessionDescription) -> bytes:
        other = _other(leg)
        index, media = anchored_stream(sdp)
        offerer_srtp = is_srtp(media)
        tag = None
        if offerer_srtp:
            chosen = choose_crypto(media)
            tag = chosen.tag
        target = call.legs[other]
        if target.srtp is None:
            policy = call.options.srtp if other == "b" else "follow"
            target.srtp = offerer_srtp if policy == "follow" else policy == "sdes"
        formats = list(media.formats)
        extra: list[Attribute] = []
        if self.transcode:
            names = {c.encoding.upper() for c in codecs(media)}
            for name, pt in _G711.items():
                if name not in names and _OTHER_G711[name] in names and str(pt) not in formats:
                    formats.append(str(pt))
                    extra.append(Attribute("rtpmap", f"{pt} {name}/8000"))
        keys = []
        if target.srtp:
            keys.append(self._crypto(_OUR_CRYPTO_TAG, target.suite, target.local_key))
        forwarded = self._rewrite(sdp, index, target, target.srtp, formats, extra + keys, answer=False)
        call.pending = _Exchange(leg, index, sdp, forwarded.media[index], tag)
        return self._send(target, forwarded)

    def _answer(
        self, call_id: str, call: _Call, exchange: _Exchange, leg: str, sdp: SessionDescription
    ) -> bytes:
        index = exchange.index
        if len(sdp.media) != len(exchange.offer.media):
            raise MediaRefused(488, "SDP answer does not have one m= line per offered stream")
        media = sdp.media[index]
        if media.port == 0:
            raise MediaRefused(488, "The audio stream was refused")
        check_stream(sdp, media)
        answerer = call.legs[leg]
        offerer_name = exchange.offerer
        offerer = call.legs[offerer_name]
        forwarded = exchange.forwarded
        answerer_srtp = is_srtp(media)
        if answerer_srtp != (forwarded.proto.upper() == SAVP):
            raise MediaRefused(488, f"SDP answer uses {media.proto}, offered {forwarded.proto}")
        if answerer_srtp:
            theirs = next((c for c in cryptos(media) if c.tag == _OUR_CRYPTO_TAG), None)
            if theirs is None or theirs.suite != answerer.suite:
                raise MediaRefused(488, "SDP answer has no a=crypto for the offered key")
            answer_key: bytes | None = theirs.key
        else:
            answer_key = None
        # The codec the answerer will send and receive, in its numbering; its twin in the offerer's.
        answer_codec = next((c for c in codecs(media) if c.encoding.lower() not in _SIDE_FORMATS), None)
        if answer_codec is None:
            raise MediaRefused(488, "SDP answer names no audio codec")
        offer_media = exchange.offer.media[index]
        offered = codecs(offer_media)
        offer_codec = next((c for c in offered if same_codec(c, answer_codec)), None)
        name = answer_codec.encoding.upper()
        if offer_codec is None and self.transcode and name in _OTHER_G711 and answer_codec.clock_rate == 8000:
            twin = _OTHER_G711[name]
            offer_codec = next(
                (c for c in offered if c.encoding.upper() == twin and c.clock_rate == 8000), None
            )
        if offer_codec is None:
            raise MediaRefused(488, f"SDP answer chose {answer_codec.encoding}, which was not offered")
        # Telephone-event stays on each leg that has it: when only one has, the worker reports the digits
        # it receives there ("dtmf-events") and call control sends them to the other leg as SIP INFO.
        answer_event = telephone_event(media)
        offer_event = telephone_event(offer_media)
        # The answer the offerer sees: one codec and the events, in the offerer's numbers and fmtp.
        formats = [str(offer_codec.payload_type)]
        extra = [Attribute("rtpmap", str(offer_codec))]
        fmtp = offer_media.fmtp(offer_codec.payload_type)
        if fmtp is not None:
            extra.append(Attribute("fmtp", f"{offer_codec.payload_type} {fmtp}"))
        if offer_event is not None:
            formats.append(str(offer_event.payload_type))
            extra.append(Attribute("rtpmap", str(offer_event)))
            fmtp = offer_media.fmtp(offer_event.payload_type)
            if fmtp is not None:
                extra.append(Attribute("fmtp", f"{offer_event.payload_type} {fmtp}"))
        offer_key: bytes | None = None
        if offerer_srtp := is_srtp(offer_media):
            chosen = choose_crypto(offer_media)
            offerer.suite = chosen.suite
            offer_key = chosen.key
            extra.append(self._crypto(chosen.tag, chosen.suite, offerer.local_key))
        rewritten = self._rewrite(sdp, index, offerer, offerer_srtp, formats, extra, answer=True)
        body = self._send(offerer, rewritten)
        # Commit: the exchange is complete (or re-answered) and each leg's spec follows from it.
        offerer.srtp, answerer.srtp = offerer_srtp, answerer_srtp
        offerer.remote_key, answerer.remote_key = offer_key, answer_key
        call.pending = None
        call.last = exchange
        self._spec(call, offerer_name, exchange.offer, index, offer_codec, offer_event)
        self._spec(call, leg, sdp, index, answer_codec, answer_event)
        self._emit(call_id, call)
        return body

    def _spec(
        self, call: _Call, leg: str, sdp: SessionDescription, index: int, codec: RtpMap, event: RtpMap | None
    ) -> None:
        state = call.legs[leg]
        media = sdp.media[index]
        connection = sdp.connection_for(media)  # present: the anchored stream was checked for one
        null = connection is None or connection.is_unspecified
        remote = None if null or connection is None else (connection.host, media.port)
        rtcp = media.rtcp
        keys = None
        if state.srtp and state.remote_key is not None:
            keys = SrtpKeys(state.suite, _b64(state.local_key), _b64(state.remote_key))
        call.specs[leg] = LegSpec(
            local_port=state.port,
            remote=remote,
            codec_pt=codec.payload_type,
            codec=codec.encoding.upper() if codec.encoding.upper() in _G711 else codec.encoding,
            event_pt=None if event is None else event.payload_type,
            rtcp_port=None if rtcp is None else rtcp.port,
            hold=null or sdp.direction_for(media) is not Direction.SENDRECV,
            srtp=keys,
            timeout=self.cloud_media_timeout if leg == "b" and call.cloud else None,
        )

    def _emit(self, call_id: str, call: _Call) -> None:
        """Queue a SetLeg for each leg whose spec or flags changed."""
        flags: list[str] = []
        if call.options.record or self.record:
            flags.append("record")
        a, b = call.specs["a"], call.specs["b"]
        if (a.event_pt is None) != (b.event_pt is None):
            # One leg sends RFC 4733 events the other cannot receive: the worker reports the digits and
            # call control relays them as SIP INFO (B2bua.media_event).
            flags.append("dtmf-events")
        for leg in LEGS:
            state, spec = call.legs[leg], call.specs[leg]
            if spec != state.spec or tuple(flags) != state.flags:
                state.spec, state.flags = spec, tuple(flags)
                call.set_sent = True
                self.commands.append((call.worker, SetLeg(call_id, leg, spec, tuple(flags))))

    def _rewrite(
        self,
        sdp: SessionDescription,
        index: int,
        leg: _Leg,
        use_srtp: bool,
        formats: list[str],
        extra: list[Attribute],
        *,
        answer: bool,
    ) -> SessionDescription:
        """``sdp`` for the other leg: relay address, ``port`` for stream ``index`` (the others disabled),
        the leg's profile and ``formats``. An offer keeps its rtpmap/fmtp lines and gains ``extra``; an
        answer's are replaced by ``extra``, which describes exactly ``formats``."""
        ports: list[int | None] = [None] * len(sdp.media)
        ports[index] = leg.port
        out = rewrite_for_relay(
            sdp, address=self.address, ports=ports, session_id=leg.session_id, session_version=0,
            rtcp_mux=False,
        )  # fmt: skip
        media = out.media[index]
        dropped = _RTP_FIELDS if answer else frozenset({"crypto"})
        kept = tuple(a for a in media.attributes if a.name not in dropped)
        media = replace(
            media, proto=SAVP if use_srtp else AVP, formats=tuple(formats), attributes=(*kept, *extra)
        )
        # The session's name, description, URI and contacts are the other side's: they stay there too.
        return replace(
            out, session_name="-", information=None, uri=None, emails=(), phones=(),
            media=(*out.media[:index], media, *out.media[index + 1 :]),
        )  # fmt: skip

    def _send(self, leg: _Leg, sdp: SessionDescription) -> bytes:
        """``sdp`` (written with the leg's session id and version 0) as sent, with its version: RFC 3264
        §8 wants it to grow when the description changes and to stay when it is repeated."""
        if sdp != leg.sent:
            leg.version += 1
            leg.sent = sdp
            leg.body = replace(sdp, origin=replace(sdp.origin, session_version=leg.version)).to_bytes()
        return leg.body

    @staticmethod
    def _crypto(tag: int, suite: str, key: bytes) -> Attribute:
        return Attribute("crypto", sdes.SdesCrypto(tag, suite, key).to_attribute())


def _other(leg: str) -> str:
    return "b" if leg == "a" else "a"


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")
