"""The protocol-neutral call-control event set.

Every gateway — SIP, PRI, WebRTC, the IVR — renders its protocol into these events and renders these events
back into its protocol; the B2BUA only ever joins two legs with them (STYLE.md rule 6). Media descriptions
travel as opaque SDP bytes: the media layer, not call control, interprets them.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.calls.causes import Cause


@dataclass(frozen=True, slots=True)
class Setup:
    """Try: a new call towards ``called`` (E.164 or an extension)."""

    called: str
    calling: str
    calling_name: str | None = None
    sdp: bytes | None = None
    max_forwards: int = 70
    session_expires: int | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """Call progress with early media (SIP 183, Q.931 PROGRESS)."""

    sdp: bytes | None = None


@dataclass(frozen=True, slots=True)
class Ringing:
    """The called party is alerted (SIP 180, Q.931 ALERTING)."""

    sdp: bytes | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """The called party answered (SIP 2xx, Q.931 CONNECT)."""

    sdp: bytes | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """A mid-call media change offered by one side (re-INVITE, UPDATE); the other side answers it with
    :class:`UpdateAnswer` or :class:`UpdateRejected`."""

    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class UpdateAnswer:
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class UpdateRejected:
    cause: Cause


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    duration_ms: int = 100


@dataclass(frozen=True, slots=True)
class Info:
    """An application payload passed through unchanged (SIP INFO other than DTMF)."""

    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Disconnect:
    """An established (or early) call is released by one side."""

    cause: Cause


@dataclass(frozen=True, slots=True)
class Fail:
    """The setup towards a destination failed; the B2BUA may try the next destination."""

    cause: Cause


@dataclass(frozen=True, slots=True)
class Redirect:
    """The destination asks the call to go elsewhere (SIP 3xx)."""

    targets: tuple[str, ...]


CallEvent = (
    Setup
    | Progress
    | Ringing
    | Answer
    | Update
    | UpdateAnswer
    | UpdateRejected
    | Dtmf
    | Info
    | Disconnect
    | Fail
    | Redirect
)
