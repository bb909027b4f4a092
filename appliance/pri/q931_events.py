"""What the Q.931 machine (:mod:`appliance.pri.q931`) tells call control about a span's calls.

A call is named by a :data:`CallHandle`, an integer the machine allocates per span for the life of the
call, so that call control never deals with call reference values or their flag (an incoming and an
outgoing call may share a call reference value, Q.931 §4.3). Every call the machine reports ends with
exactly one :class:`CallReleased`, whoever cleared it and however (a message, a timer, a restart, the
data link lost).
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.pri.q931_model import BearerCapability, PartyNumber, ProgressDescription

CallHandle = int


@dataclass(frozen=True, slots=True)
class CallOffered:
    """A SETUP was accepted (Q.931 §5.2 incoming / §5.1 on the network side): the channel is already
    negotiated and reserved (``channel``: the B-channel's timeslot). The machine has sent nothing yet
    beyond what the procedure requires; call control answers with ``proceeding``/``setup_acknowledge``
    (overlap receiving, when ``sending_complete`` is false), ``alerting``, ``connect`` or ``disconnect``."""

    call: CallHandle
    channel: int
    called: PartyNumber | None
    calling: PartyNumber | None
    bearer: BearerCapability
    sending_complete: bool
    display: str | None = None
    progress: tuple[ProgressDescription, ...] = ()


@dataclass(frozen=True, slots=True)
class DigitsReceived:
    """Overlap receiving (Q.931 §5.2.4): more called-party digits in an INFORMATION message."""

    call: CallHandle
    digits: str
    sending_complete: bool


@dataclass(frozen=True, slots=True)
class CallProceeding:
    """Our SETUP was accepted (CALL PROCEEDING, or SETUP ACKNOWLEDGE when ``overlap``): ``channel`` is the
    B-channel the far end confirmed or chose (Q.931 §5.1.2)."""

    call: CallHandle
    channel: int
    overlap: bool = False


@dataclass(frozen=True, slots=True)
class CallAlerting:
    """ALERTING received; a progress indicator 1 or 8 means in-band tones are on the B-channel."""

    call: CallHandle
    progress: tuple[ProgressDescription, ...] = ()


@dataclass(frozen=True, slots=True)
class CallProgress:
    """PROGRESS received (Q.931 §5.1.6): in-band information (early media) or interworking."""

    call: CallHandle
    progress: tuple[ProgressDescription, ...]
    cause: int | None = None


@dataclass(frozen=True, slots=True)
class CallConnected:
    """The call is active: CONNECT received on an outgoing call, CONNECT ACKNOWLEDGE (or, where Q.931
    allows it, any message in state 8) on an incoming one."""

    call: CallHandle


@dataclass(frozen=True, slots=True)
class CallDisconnecting:
    """DISCONNECT with in-band information (progress indicator 8, Q.931 §5.3.4.1): the far end plays an
    announcement on the B-channel; call control may keep the channel's audio until it clears the call
    (``disconnect`` or ``release``) or the far end releases it (T306 on the network side)."""

    call: CallHandle
    cause: int
    progress: tuple[ProgressDescription, ...]
    location: int = 0  # the cause's Q.850 location, as received


@dataclass(frozen=True, slots=True)
class CallReleased:
    """The call is gone and its B-channel free. ``cause`` is the Q.850 value the far end gave or the one
    the machine chose (e.g. 102 on T303/T310 expiry, 41 on data link loss); ``location`` its Q.850
    location; ``local`` is true when this side started the clearing."""

    call: CallHandle
    cause: int
    location: int = 0
    local: bool = False


@dataclass(frozen=True, slots=True)
class ChannelsRestarted:
    """A RESTART procedure (Q.931 §5.5) completed in either direction: these B-channels are idle again and
    any call on them was released (each with its own :class:`CallReleased`)."""

    channels: tuple[int, ...]
    requested_by_peer: bool


@dataclass(frozen=True, slots=True)
class ProtocolFault:
    """A received message was faulty and answered per Q.931 §5.8 (ignored, STATUS, or the call cleared):
    for the span's counters and log, not for call control."""

    call: CallHandle | None
    cause: int
    detail: str


Q931Event = (
    CallOffered
    | DigitsReceived
    | CallProceeding
    | CallAlerting
    | CallProgress
    | CallConnected
    | CallDisconnecting
    | CallReleased
    | ChannelsRestarted
    | ProtocolFault
)
