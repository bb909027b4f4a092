"""A call leg on a PRI span: one Q.931 call rendered into the call-control event set and back.

Theory of operation. A :class:`PriLeg` is either the caller's leg of a call that arrived on the span (an
incoming SETUP; ``route_kind`` ``"inbound"``) or the leg a call control destination ``pri:<span>`` opened
(our SETUP; ``route_kind`` ``"pri"``). It speaks to the span's Q.931 machine through :class:`Q931Commands`
and to the span's TDM worker through :class:`TdmMedia`; the PRI gateway (:mod:`appliance.calls.pri_gateway`)
hands it the machine's events for its call.

Media. Each B-channel (timeslot) has a fixed RTP port in the TDM worker, on the address the worker binds
(``[media] address``), so the leg's SDP is known as soon as its channel is: ``c=IN IP4 <address>`` (``IP6``
for an IPv6 address; the loopback of the family when the worker binds the wildcard, which an SDP cannot name
as a destination), ``m=audio <port> RTP/AVP 8 0`` (an answer names the one payload type it
chose), no telephone-event — DTMF on PRI is in-band and the IVR detects it in the audio. The TDM worker is
connected to the address and payload type the other side's SDP names.

Signalling, per RFC 3398 (ISUP/SIP, whose Q.850 causes and early-media rules apply to DSS1 alike):

=====================================  ============================================================
call control → Q.931 (incoming call)   Ringing → ALERTING (progress indicator 8 when it carries SDP:
                                       the SIP side's early media is played on the B-channel),
                                       Progress with SDP → PROGRESS (PI 8), Answer → CONNECT,
                                       Fail/Disconnect(cause) → DISCONNECT (cause.q850)
Q.931 → call control (our SETUP)       ALERTING → Ringing, PROGRESS → Progress (with the B-channel's
                                       SDP when a progress indicator 1 or 8 says in-band tones are
                                       there, §8.2.3/§8.2.4), CONNECT → Answer with the B-channel's
                                       SDP; a release before answer → Fail, after → Disconnect, with
                                       :func:`q850_cause` (§8.2.6.1)
=====================================  ============================================================

CALL PROCEEDING and SETUP ACKNOWLEDGE are hop-by-hop (RFC 3398 §8.2.2: the 100 Trying the SIP caller
already has says as much) and raise no call-control event. A clearing started by call control is not
reported back to it when the machine later says the call is released. ALERTING is 180 and PROGRESS 183
(RFC 3398 §8.2.3/§8.2.4: ALERTING says the called user is being alerted, "subscriber free"; PROGRESS
carries no such thing), each with the B-channel's SDP when in-band information is there. Causes the far
end gave reach call control with their Q.850 name as text and their location (:func:`q850_cause`), so that
a BYE or a final response carries ``Reason: Q.850;cause=..;text=..;location=..`` (RFC 3326 §2, RFC 6432,
RFC 8606) and a final response the cause's name as its reason phrase. The other way, a SIP release's
cause (a ``Reason: Q.850`` it carried, else its status mapped per RFC 3398 §7.2.4.1) goes in our
DISCONNECT with the location the machine gives every cause it sends: 0, user, as the appliance is the
user side of the span like a PBX. A calling number the network marks restricted reaches call control as
no number (``From: anonymous``); P-Asserted-Identity with ``Privacy: id`` (RFC 3325) would need a trust
setting per SIP destination and is not sent.

Announcements (Q.931 §5.3.4.1). A DISCONNECT with progress indicator 8 on our call says the network plays
an announcement on the B-channel ("the number you have dialled ..."). Before answer the SIP caller gets it
as early media (Progress with the B-channel's SDP: 183), after answer the audio simply stays; either way the
call is cleared when the far end releases it (its T306) or at the latest ``announcement_timeout`` seconds
after the DISCONNECT (:data:`ANNOUNCEMENT_TIMEOUT`, T306's value: we release with the received cause), and
call control hears the received cause only then (before answer: the final status from it, RFC 3398
§8.2.6.1). A call without a G.711 offer to send the announcement to is cleared at once. On a call from the
span (the caller is on PRI) there is nobody to hear an announcement: it is cleared at once too.

Media failures. The B-channel carries G.711 only (:data:`CODECS`). An answer without a G.711 stream (the
SIP callee's 200 to a PRI caller, or the ACK answering our offer) clears the PRI call with cause 65 (bearer
capability not implemented, :data:`NO_G711`, 488 in SIP) and call control with it (a BYE); a re-offer
without G.711 is refused (488) and the media stays. A SIP caller's delayed offer (no SDP in the INVITE) is
placed on the span all the same, as a PBX or gateway must: the B-channel offers G.711 in the answer (the
200 to the caller), the caller answers in its ACK (RFC 3261 §13.2.1); such a call has no early media (an
offer cannot go in an unreliable 18x).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Final, Protocol

from appliance.calls.causes import Cause
from appliance.calls.events import (
    Answer,
    CallEvent,
    Disconnect,
    Fail,
    Progress,
    Ringing,
    Update,
    UpdateAnswer,
    UpdateRejected,
)
from appliance.pri.errors import LocalProtocolError
from appliance.pri.q931_events import CallHandle
from appliance.pri.q931_model import ProgressDescription
from appliance.sdp.codec import parse_sdp
from appliance.sdp.errors import SdpError

if TYPE_CHECKING:
    from appliance.calls.b2bua import Call

log = logging.getLogger("appliance.calls.pri")

LOCALHOST: Final = "127.0.0.1"  # the TDM worker's address unless told otherwise (``[media] address``)
# G.711 payload types (RFC 3551 §6) by the codec name the TDM worker is opened with; A-law first, as the
# E1 B-channel carries it (ITU-T G.711 for 2048 kbit/s systems).
CODECS: Final = {8: "PCMA", 0: "PCMU"}
# Q.931 §4.5.23: in-band information (tones, announcements) is on the B-channel.
INBAND: Final = frozenset({ProgressDescription.NOT_END_TO_END_ISDN, ProgressDescription.IN_BAND_AVAILABLE})
# How long a far end's announcement (DISCONNECT with progress indicator 8) is kept at most: T306, the
# network side's own bound on it (EN 300 403-1 Table 9-1: 30 s), in case its RELEASE never comes.
ANNOUNCEMENT_TIMEOUT: Final = 30.0
# Q.850 names of the causes a span commonly gives (Q.850 Table 1), for the text of a SIP reason.
Q850_NAMES: Final = {
    1: "Unallocated number", 2: "No route to network", 3: "No route to destination",
    6: "Channel unacceptable", 16: "Normal call clearing", 17: "User busy", 18: "No user responding",
    19: "No answer from user",
    20: "Subscriber absent", 21: "Call rejected", 22: "Number changed", 27: "Destination out of order",
    28: "Invalid number format", 29: "Facility rejected", 31: "Normal, unspecified",
    34: "No circuit/channel available", 38: "Network out of order", 41: "Temporary failure",
    42: "Switching equipment congestion", 44: "Requested circuit/channel not available",
    47: "Resource unavailable, unspecified", 58: "Bearer capability not presently available",
    65: "Bearer capability not implemented", 79: "Service or option not implemented, unspecified",
    88: "Incompatible destination", 102: "Recovery on timer expiry", 111: "Protocol error, unspecified",
    127: "Interworking, unspecified",
}  # fmt: skip


def q850_cause(value: int, location: int | None = None) -> Cause:
    """Call control's cause for a Q.850 ``value`` a span gave: the RFC 3398 §8.2.6.1 status, its name, and
    the ``location`` it came with (a BYE's ``Reason`` carries it, RFC 8606)."""
    return Cause.from_q850(value, Q850_NAMES.get(value, f"Q.850 cause {value}"), location)


# No G.711 in an offer or an answer: the B-channel's bearer (speech, G.711 A-law) cannot be carried.
NO_G711: Final = q850_cause(65)


class TdmMedia(Protocol):
    """The span's TDM worker, as commands queued to it. ``port_of`` is the timeslot's fixed RTP port on
    the worker's address; ``open`` arms a timeslot with the RTP codec (``"PCMA"``/``"PCMU"``), ``connect``
    names the remote RTP address and payload type, ``close`` frees it."""

    def open(self, timeslot: int, codec: str) -> None: ...
    def connect(self, timeslot: int, host: str, port: int, payload_type: int) -> None: ...
    def close(self, timeslot: int) -> None: ...
    def port_of(self, timeslot: int) -> int: ...


class Q931Commands(Protocol):
    """The call-control commands of the span's Q.931 machine (:class:`appliance.pri.q931.Q931`) a leg
    uses; each raises :class:`~appliance.pri.errors.LocalProtocolError` when the call's state forbids it."""

    def alerting(self, call: CallHandle, *, inband: bool = False, now: float) -> None: ...
    def progress(self, call: CallHandle, description: ProgressDescription, now: float) -> None: ...
    def connect(self, call: CallHandle, now: float) -> None: ...
    def disconnect(self, call: CallHandle, cause: int, *, inband: bool = False, now: float) -> None: ...
    def channel_of(self, call: CallHandle) -> int | None: ...


def rtp_host(bound: str) -> str:
    """Where the TDM worker's RTP ends are reached, from the address it binds: that address, or for the
    wildcard (``0.0.0.0``, ``::``) the loopback of its family — an SDP connection address of all zeros
    would put the stream on hold (RFC 3264 §8.4), and call control's media workers are on this host.
    Raises ``ValueError`` for what is not an IP address."""
    address = ipaddress.ip_address(bound)
    if address.is_unspecified:
        return "::1" if address.version == 6 else LOCALHOST
    return str(address)


def tdm_sdp(
    port: int, payload_types: tuple[int, ...] = (8, 0), *, version: int = 1, address: str = LOCALHOST
) -> bytes:
    """The SDP of a B-channel's RTP end: ``address`` (an IP address, :func:`rtp_host`; ``IN IP6`` for an
    IPv6 one, RFC 8866 §5.7), ``port``, G.711, 20 ms packets."""
    kind = "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    maps = "".join(f"a=rtpmap:{pt} {CODECS[pt]}/8000\r\n" for pt in payload_types)
    formats = " ".join(str(pt) for pt in payload_types)
    return (
        f"v=0\r\no=- {port} {version} IN {kind} {address}\r\ns=-\r\nc=IN {kind} {address}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {formats}\r\n{maps}a=ptime:20\r\na=sendrecv\r\n"
    ).encode()


def remote_media(sdp: bytes) -> tuple[str, int, int] | None:
    """``(host, port, payload type)`` of the first audio stream of ``sdp`` that carries G.711 over RTP,
    the payload type the first G.711 one listed; None when there is none (or the SDP does not parse)."""
    try:
        session = parse_sdp(sdp)
    except SdpError:
        return None
    for media in session.media:
        if media.media != "audio" or not media.is_rtp or media.port == 0:
            continue
        connection = session.connection_for(media)
        types = [pt for pt in media.payload_types if pt in CODECS]
        if connection is not None and types:
            return connection.host, media.port, types[0]
    return None


class PriLeg:
    """One Q.931 call on a span as a call-control leg (see the module docstring)."""

    __slots__ = ("address", "announcement_timeout", "announcing", "answered", "call", "channel", "cleared",
                 "deadline", "opened", "payload_type", "q931", "ref", "remote", "route_kind", "span", "tdm",
                 "version")  # fmt: skip

    def __init__(
        self, call: Call, ref: CallHandle, *, q931: Q931Commands, tdm: TdmMedia, span: int, route_kind: str,
        channel: int | None = None, payload_type: int = 8, announcement_timeout: float = ANNOUNCEMENT_TIMEOUT,
        address: str = LOCALHOST,
    ) -> None:  # fmt: skip
        self.call = call
        self.address = address  # where the TDM worker's RTP ends are (rtp_host)
        self.ref = ref
        self.q931 = q931
        self.tdm = tdm
        self.span = span
        self.route_kind = route_kind
        self.channel = channel
        self.payload_type = payload_type  # what the TDM worker sends (the other side's choice)
        self.remote: tuple[str, int, int] | None = None  # where the TDM worker sends: host, port, type
        self.opened = False
        self.answered = False
        self.cleared = False  # call control cleared the call: its release is not reported back
        self.version = 1
        self.announcement_timeout = announcement_timeout
        self.announcing: tuple[int, int | None] | None = None  # the far end's cause, location meanwhile
        self.deadline: float | None = None  # when the announcement is cut (see the module docstring)

    @property
    def incoming(self) -> bool:
        return self.route_kind == "inbound"

    def __repr__(self) -> str:
        return f"PriLeg(span={self.span}, call={self.ref}, channel={self.channel})"

    # ------------------------------------------------------------------------------- media
    def open_channel(self, channel: int | None = None) -> int | None:
        """Open the call's timeslot in the TDM worker once its channel is known; the timeslot or None."""
        if channel is not None and channel != self.channel:
            self.close_channel()  # the far end chose another B-channel than the one we offered (§5.1.2)
            self.channel = channel
        if self.channel is None:
            self.channel = self.q931.channel_of(self.ref)
        if self.channel is not None and not self.opened:
            self.tdm.open(self.channel, CODECS[self.payload_type])
            self.opened = True
            if self.remote is not None:
                self.tdm.connect(self.channel, *self.remote)
        return self.channel

    def sdp(self) -> bytes | None:
        """This leg's SDP (the B-channel's RTP end), None while no channel is known."""
        channel = self.open_channel()
        if channel is None:
            return None
        offering = (self.incoming and not self.answered) or self.remote is None  # a delayed offer's answer
        types = (8, 0) if offering else (self.payload_type,)
        return tdm_sdp(self.tdm.port_of(channel), types, version=self.version, address=self.address)

    def connect_media(self, sdp: bytes | None) -> bool:
        """Point the TDM worker at the RTP end ``sdp`` names; False when it names no G.711 stream."""
        if sdp is None:
            return False
        remote = remote_media(sdp)
        if remote is None:
            log.warning("no G.711 stream in the SDP", extra={"ctx": self._ctx()})
            return False
        self.remote = remote
        self.payload_type = remote[2]
        if self.opened and self.channel is not None:
            self.tdm.connect(self.channel, *remote)
        else:
            self.open_channel()  # connects it
        return True

    def close_channel(self) -> None:
        if self.opened and self.channel is not None:
            self.tdm.close(self.channel)
        self.opened = False

    # ---------------------------------------------------------------------- from call control
    def handle(self, event: CallEvent, now: float) -> None:
        """An event call control sends this leg."""
        if self.cleared:
            return
        try:
            if isinstance(event, (Disconnect, Fail)):
                self.cleared = True
                self.deadline = None
                self.q931.disconnect(self.ref, event.cause.q850, now=now)
            elif isinstance(event, Ringing):
                inband = self.connect_media(event.sdp)
                self.q931.alerting(self.ref, inband=inband, now=now)
            elif isinstance(event, Progress):
                if self.connect_media(event.sdp):
                    self.q931.progress(self.ref, ProgressDescription.IN_BAND_AVAILABLE, now)
            elif isinstance(event, Answer):
                if not self.connect_media(event.sdp):
                    self._media_failed(now)  # the caller never hears silence as an answer
                    return
                self.answered = True
                self.q931.connect(self.ref, now)
            elif isinstance(event, UpdateAnswer):
                # The answer in the ACK to the B-channel's offer (a delayed offer, see the module docstring).
                if not self.connect_media(event.sdp):
                    self._media_failed(now)
            elif isinstance(event, Update):
                # The B-channel's end does not move; the other side's may (a re-INVITE after a transfer).
                if not self.connect_media(event.sdp):
                    self.call.from_leg(self, UpdateRejected(NO_G711), now)  # the agreed media stays
                    return
                self.version += 1
                self.call.from_leg(self, UpdateAnswer(self.sdp()), now)
            else:
                # DTMF is in-band on PRI (the IVR hears the tones on the B-channel); INFO has no Q.931 form.
                log.debug("%s not sent on PRI", type(event).__name__, extra={"ctx": self._ctx()})
        except LocalProtocolError as exc:
            # The call moved on at the span meanwhile (e.g. the far end cleared it in the same instant).
            log.info("%s not sent: %s", type(event).__name__, exc, extra={"ctx": self._ctx()})

    # ---------------------------------------------------------------------- from the span
    def proceeding(self, channel: int, now: float) -> None:
        """Our SETUP was accepted on ``channel``: its timeslot is opened and pointed at the offer."""
        self.open_channel(channel)

    def alerting(self, progress: tuple[ProgressDescription, ...], now: float) -> None:
        self.call.from_leg(self, Ringing(self._early_media(progress)), now)

    def in_band(self, progress: tuple[ProgressDescription, ...], now: float) -> None:
        """PROGRESS: early media when in-band information is on the B-channel, else nothing to tell."""
        sdp = self._early_media(progress)
        if sdp is not None:
            self.call.from_leg(self, Progress(sdp), now)

    def connected(self, now: float) -> None:
        """CONNECT (our call) or CONNECT ACKNOWLEDGE (the caller's): an outgoing call is answered."""
        if self.incoming or self.answered:
            return
        self.answered = True
        self.call.from_leg(self, Answer(self.sdp()), now)

    def disconnecting(self, cause: int, now: float, location: int | None = None) -> None:
        """The far end cleared with an announcement on the channel (see the module docstring): the caller
        hears it until the far end releases the call or :attr:`deadline`; without anyone to hear it (a call
        from the span, no G.711 offer) the call is released at once. ``location``: the cause's, received."""
        if self.cleared:
            return
        if self.incoming or self.remote is None:
            self._release_now(cause, location, now)
            return
        self.announcing = (cause, location)
        self.deadline = now + self.announcement_timeout
        if not self.answered:
            sdp = self.sdp()
            if sdp is not None:
                self.call.from_leg(self, Progress(sdp), now)  # 183: the announcement as early media

    def on_timer(self, now: float) -> None:
        """:attr:`deadline` passed: the announcement is cut, the call released with the far end's cause."""
        announcing = self.announcing
        self.deadline = None
        if announcing is not None and not self.cleared:
            self._release_now(*announcing, now=now)

    def released(self, cause: int, now: float, location: int | None = None) -> None:
        """The far end cleared the call with ``cause`` from ``location`` (None: the span lost the call, or
        a timer ended it): call control is told, once."""
        self.deadline = None
        if self.cleared:
            return
        self.cleared = True
        q850 = q850_cause(cause, location)
        event = Disconnect(q850) if self.incoming or self.answered else Fail(q850)
        self.call.from_leg(self, event, now)

    def _release_now(self, cause: int, location: int | None, now: float) -> None:
        """Call control hears of the far end's clearing, then the call is released (RELEASE)."""
        self.released(cause, now, location)
        try:
            self.q931.disconnect(self.ref, cause, now=now)
        except LocalProtocolError as exc:
            log.info("release not sent: %s", exc, extra={"ctx": self._ctx()})

    def _media_failed(self, now: float) -> None:
        """No G.711 in the other side's answer: the PRI call is cleared with cause 65 and so is the call
        (call control hears it as this leg's clearing: a BYE, or the next destination before answer)."""
        log.warning("no G.711 in the answer: call cleared", extra={"ctx": self._ctx()})
        self.deadline = None
        self.cleared = True
        try:
            self.q931.disconnect(self.ref, NO_G711.q850, now=now)
        finally:
            self.call.from_leg(self, Disconnect(NO_G711), now)

    def _early_media(self, progress: tuple[ProgressDescription, ...]) -> bytes | None:
        if not INBAND.intersection(progress) or self.remote is None:
            return None  # no tones, or a delayed offer: an offer cannot go in an unreliable 18x
        return self.sdp()

    def _ctx(self) -> dict[str, object]:
        return {"span": self.span, "q931_call": self.ref, "call": self.call.id if self.call else None}
