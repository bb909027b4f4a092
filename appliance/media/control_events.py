"""The messages of the media control protocol, and its errors.

The control process drives each media worker over a Unix ``SOCK_SEQPACKET`` socket, one CBOR map per
datagram (DESIGN.md §2; the command set follows the rtpengine ng protocol: offer, answer, delete, query,
ping). There are three kinds of message:

* **commands**, control → worker, each with a ``request_id`` the reply repeats: :class:`SetLeg`,
  :class:`Offer`, :class:`Answer`, :class:`Update`, :class:`Delete`, :class:`Query`, :class:`Ping`, and
  the IVR media commands on one leg :class:`Play`, :class:`Record`, :class:`StopMedia`, :class:`DropLeg`;
* **replies**, worker → control: :class:`Ok` or :class:`Error`, carrying the command's ``request_id``;
* **events**, worker → control, unsolicited and without a ``request_id``: :class:`MediaTimeout`,
  :class:`DtmfEvent`, :class:`FirstPacket`, :class:`SsrcChanged`, :class:`WorkerStats`, :class:`PlayDone`,
  :class:`RecordDone`;
* **the greeting**, worker → control, the first datagram on every control connection and never again:
  :class:`PortsReserved`, the pairs of the worker's slice it could not bind (call control must never put
  them in an SDP).

A command's ``request_id`` is assigned by :class:`~appliance.media.control.ControlChannel`; build commands
with the default ``0`` and let the channel number them. The wire schema is ``control.cddl``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, Literal

from appliance.media.rtp import MediaError

MAX_MESSAGE_SIZE: Final = 65536
"""A control datagram is refused above this many octets."""

MAX_DEPTH: Final = 8
"""A control message nests arrays and maps at most this deep (the top-level map is depth 1)."""

MAX_REQUEST_ID: Final = 0xFFFFFFFF
"""Request ids are unsigned 32-bit integers."""

DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
"""The RFC 4733 §3.2 DTMF events 0–15 as the characters call control uses."""

RECORD_ID: Final = re.compile(r"[A-Za-z0-9_.-]{1,96}")
"""What a :class:`Record` command's ``record_id`` must fully match: it names the file
``<voicemail-dir>/<record_id>.vm``, so it holds no path separator."""

MAX_LEG_TIMEOUT: Final = 86400.0
"""A :class:`LegSpec` ``timeout`` is at most a day (seconds): longer is no timeout, and a typo."""

MAX_PLAY_FILES: Final = 64
"""A :class:`Play` command names at most this many files."""

PlayEndReason = Literal["done", "barge_in", "stopped", "error"]
PLAY_END_REASONS: Final[frozenset[str]] = frozenset({"done", "barge_in", "stopped", "error"})
RecordEndReason = Literal["silence", "dtmf", "max", "stopped", "error"]
RECORD_END_REASONS: Final[frozenset[str]] = frozenset({"silence", "dtmf", "max", "stopped", "error"})


class ControlError(MediaError):
    """Base of every error raised by the media control protocol."""


class LocalProtocolError(ControlError):
    """The caller misused the control API (for example, sent an event or a reply as a command)."""


class ErrorCode(enum.IntEnum):
    """The ``code`` of an :class:`Error` reply. Receivers accept codes not listed here as plain ints."""

    BAD_MESSAGE = 1
    """The command was not a valid control message; the worker could not act on it."""
    UNKNOWN_CALL = 2
    """No call (or leg) with that ``call_id`` exists on the worker."""
    BAD_SDP = 3
    """The SDP in an offer, answer or update could not be parsed or negotiated."""
    NO_PORTS = 4
    """The worker's RTP port range is exhausted."""
    INTERNAL = 5
    """The worker failed while handling the command; the call's media state is unknown."""


class ControlDecodeError(ControlError):
    """A datagram that is not a valid control message.

    ``reason`` is the full text, starting with the path of the bad field (``offer.flags[2]: expected
    text``); ``path`` is that path alone (empty when the fault is in the datagram as a whole). ``code`` is
    the :class:`ErrorCode` a worker answers with when it can still read the ``request_id``.
    """

    code: Final = ErrorCode.BAD_MESSAGE

    def __init__(self, reason: str, *, path: str = "") -> None:
        full = f"{path}: {reason}" if path else reason
        super().__init__(full)
        self.reason = full
        self.path = path

    def __repr__(self) -> str:
        return f"ControlDecodeError({self.reason!r})"


class Direction(enum.StrEnum):
    """Which way a stream flows, seen from the relay: ``in`` comes from the leg's peer, ``out`` goes to it."""

    IN = "in"
    OUT = "out"


# --- commands ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """SDES keying of one SRTP leg (RFC 4568): ``suite`` (``"AES_CM_128_HMAC_SHA1_80"``), ``local_key`` the
    base64 master key and salt the appliance gave the leg in its ``a=crypto`` (it protects what the relay
    sends there) and ``remote_key`` the leg's own (it unprotects what the leg sends)."""

    suite: str
    local_key: str
    remote_key: str


@dataclass(frozen=True, slots=True)
class LegSpec:
    """One leg of a relayed call, fully negotiated by call control.

    ``local_port`` is the relay's RTP port for the leg on the worker's address (RTCP on the port above it);
    ``remote`` the peer's RTP endpoint from its SDP (None while unknown or held with a null address);
    ``rtcp_port`` its ``a=rtcp`` port (None: RTP port + 1); ``codec_pt``/``codec`` the negotiated audio
    format on this leg (the same payload type both ways, RFC 3264 §6.1); ``event_pt`` its telephone-event
    payload type (None if not negotiated); ``hold`` whether its SDP put the stream on hold
    (sendonly/recvonly/inactive); ``srtp`` its SDES keys, None for plain RTP; ``timeout`` the seconds of
    silence from the leg's peer before a :class:`MediaTimeout` for the leg (more than 0, at most
    :data:`MAX_LEG_TIMEOUT`), None for the worker's ``--media-timeout``.
    """

    local_port: int
    remote: tuple[str, int] | None
    codec_pt: int
    codec: str
    event_pt: int | None = None
    rtcp_port: int | None = None
    hold: bool = False
    srtp: SrtpKeys | None = None
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class SetLeg:
    """Create or change one leg of a call from call control's negotiated view (the data-plane command).

    The first ``SetLeg`` of a call creates it and binds ``spec.local_port`` (and the RTCP port above it); a
    later one for the same leg applies a re-negotiation (the local port cannot change). Packets flow once
    both legs are set. ``flags`` are call options: ``"record"`` (write both directions to an encrypted
    recording), ``"dtmf-events"`` (report RFC 4733 digits to call control), ``"no-fastpath"`` (keep the
    call's packets in userspace), ``"inband-dtmf"`` (also detect digits in this leg's inbound audio and
    report them like RFC 4733 ones); unknown flags are refused.
    """

    call_id: str
    leg: str
    spec: LegSpec
    flags: tuple[str, ...] = ()
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Offer:
    """Open or extend a leg with the peer's SDP offer; the reply's ``sdp`` is rewritten to the relay.

    ``flags`` are the worker options in order (``"symmetric"``, ``"record"``, ``"srtp"``, …); unknown flags
    are the worker's to refuse.
    """

    call_id: str
    leg: str
    sdp: str
    flags: tuple[str, ...] = ()
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """Complete a leg's offer/answer with the peer's SDP answer (RFC 3264 §6)."""

    call_id: str
    leg: str
    sdp: str
    flags: tuple[str, ...] = ()
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Update:
    """A re-offer on an established leg (hold, resume, codec change, RFC 3264 §8)."""

    call_id: str
    leg: str
    sdp: str
    flags: tuple[str, ...] = ()
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Release one leg's ports, or the whole call when ``leg`` is None; the reply carries final stats."""

    call_id: str
    leg: str | None = None
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Query:
    """Ask for a call's per-stream statistics without changing it."""

    call_id: str
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness check; a worker that does not answer in time is restarted."""

    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Play:
    """Play ``files`` (raw 8 kHz A-law, the prompt catalog's format) one after the other to ``leg``,
    replacing any playback there (the old one ends with ``PlayDone(reason="stopped")``); ``loop`` starts
    over after the last file until stopped. With ``barge_in`` the start of a DTMF digit from the leg stops
    it (``"barge_in"``). The end is reported by :class:`PlayDone` with the same ``play_id``. While the leg
    plays it is not relayed to; 1..:data:`MAX_PLAY_FILES` files."""

    call_id: str
    leg: str
    play_id: int
    files: tuple[str, ...]
    barge_in: bool
    loop: bool = False
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Record:
    """Record ``leg``'s inbound audio into the encrypted voicemail file ``<voicemail-dir>/<record_id>.vm``
    (``record_id`` matches :data:`RECORD_ID`), after a beep if ``beep``. It ends after ``max_seconds``
    (> 0), after ``silence_seconds`` of silence (0: never on silence), on ``#`` if ``end_on_hash``, on
    :class:`StopMedia` or when the leg goes; :class:`RecordDone` reports it."""

    call_id: str
    leg: str
    record_id: str
    max_seconds: float
    silence_seconds: float
    end_on_hash: bool
    beep: bool
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class StopMedia:
    """Stop any playback and recording on ``leg`` (each reports its end with reason ``"stopped"``)."""

    call_id: str
    leg: str
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class DropLeg:
    """Release one leg (its ports go back to the worker) and keep the call and its other leg; the reply's
    ``stats`` are the dropped leg's streams."""

    call_id: str
    leg: str
    request_id: int = 0


# --- replies ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamStats:
    """One direction of one leg's RTP stream: counts since the leg opened, RFC 3550 §6.4.1 jitter."""

    leg: str
    direction: Direction
    packets: int
    octets: int
    lost: int
    jitter_ms: float


@dataclass(frozen=True, slots=True)
class Ok:
    """A command succeeded. ``sdp`` is the rewritten SDP (offer, answer, update); ``ports`` the relay's
    local RTP ports for the leg; ``stats`` the streams (query, delete); ``recording`` the path of the call's
    finished recording file (delete of a recorded call). Absent parts are None."""

    request_id: int
    sdp: str | None = None
    ports: tuple[int, ...] | None = None
    stats: tuple[StreamStats, ...] | None = None
    recording: str | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """A command failed; ``code`` is an :class:`ErrorCode` value (or a newer one), ``reason`` free text."""

    request_id: int
    code: int
    reason: str


# --- events -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaTimeout:
    """No RTP in ``direction`` on a leg for ``silent_for`` seconds (not raised while the leg is on hold).

    ``one_way`` is true when the other leg's media still flows: one-way audio (a NAT or firewall fault, or
    one side's media path gone), as opposed to a call whose media stopped both ways.
    """

    call_id: str
    leg: str
    direction: Direction
    silent_for: float
    one_way: bool = False


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """A completed DTMF digit on a leg (RFC 4733 end event, or in-band detection)."""

    call_id: str
    leg: str
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class FirstPacket:
    """The first RTP packet in ``direction`` on a leg; ``source`` is the latched (host, port)."""

    call_id: str
    leg: str
    direction: Direction
    source: tuple[str, int]


@dataclass(frozen=True, slots=True)
class SsrcChanged:
    """The SSRC of a stream changed (RFC 3550 §8.2): a re-INVITE, a transfer or a restarted peer."""

    call_id: str
    leg: str
    direction: Direction
    old_ssrc: int
    new_ssrc: int


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """A worker's periodic load report; packet counts are totals since the worker started.

    ``dropped`` splits ``packets_dropped`` by reason (``"latch"``, ``"short"``, ``"srtp-auth"``, …) as
    ``(reason, count)`` pairs; they are kept sorted by reason so that equal reports compare equal.
    """

    worker_id: int
    calls: int
    streams: int
    packets_relayed: int
    packets_dropped: int
    dropped: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        # A frozen dataclass: normalise through object.__setattr__, once, at construction.
        object.__setattr__(self, "dropped", tuple(sorted(self.dropped)))


@dataclass(frozen=True, slots=True)
class PlayDone:
    """The playback ``play_id`` on a leg ended: ``"done"`` (the last file played, never for a loop),
    ``"barge_in"`` (a digit started), ``"stopped"`` (replaced, StopMedia, the leg or call released),
    ``"error"`` (the worker could not go on)."""

    call_id: str
    leg: str
    play_id: int
    reason: PlayEndReason


@dataclass(frozen=True, slots=True)
class RecordDone:
    """The recording ``record_id`` on a leg ended with ``reason`` (``"silence"``, ``"dtmf"``, ``"max"``,
    ``"stopped"``, ``"error"``); the file at ``path`` is closed and synced to disk. ``duration`` is the
    seconds of audio kept, ``size`` and ``sha256`` (lower-case hex) describe the file as written, and
    ``key_id`` names the key-encryption key that wraps its data key. After an ``"error"`` with no file,
    ``size`` is 0 and ``sha256`` empty."""

    call_id: str
    leg: str
    record_id: str
    reason: RecordEndReason
    duration: float
    path: str
    size: int
    sha256: str
    key_id: str


@dataclass(frozen=True, slots=True)
class PortsReserved:
    """The worker bound its slice ``first_port..last_port`` at start, except the pairs whose (even) RTP
    ports are in ``unusable`` (another process held them). Kept sorted, so equal reports compare equal."""

    worker_id: int
    first_port: int
    last_port: int
    unusable: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "unusable", tuple(sorted(set(self.unusable))))


Command = SetLeg | Offer | Answer | Update | Delete | Query | Ping | Play | Record | StopMedia | DropLeg
Reply = Ok | Error
WorkerEvent = MediaTimeout | DtmfEvent | FirstPacket | SsrcChanged | WorkerStats | PlayDone | RecordDone
Message = Command | Reply | WorkerEvent | PortsReserved
