"""Whether a call may be forwarded by the kernel fast path (issue 3): a pure decision for the media worker.

The kernel can only rewrite addresses and ports (:mod:`appliance.media.fastpath_rules`). Anything else the
relay does to a packet -- SRTP, payload-type mapping, transcoding, recording, reporting DTMF -- keeps the
call in userspace. :func:`decide` lists every reason that applies, so one log line says all that keeps a call
off the fast path; the worker asks again whenever one of them may have changed (a re-INVITE, the second
remote latching, recording stopped).

Pure code: no sockets, no clocks.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from appliance.media.fastpath_rules import Address, FlowLeg


class Ineligible(enum.StrEnum):
    """Why a call stays in userspace."""

    SRTP = "srtp"
    """A leg is SRTP: packets must be decrypted/encrypted."""
    CODEC = "codec"
    """The legs negotiated different codecs or payload types: packets must be rewritten or transcoded."""
    EVENTS = "telephone-event"
    """The legs' telephone-event payload types differ: events must be rewritten."""
    DTMF = "dtmf-reporting"
    """Call control asked for DTMF reports: the worker must see every telephone-event packet."""
    RECORDING = "recording"
    """The call is recorded: the worker must see every packet."""
    NOT_LATCHED = "not-latched"
    """A remote has not been learnt yet: nothing to key the rules on."""
    NOT_IPV4 = "not-ipv4"
    """An address is not IPv4: the table is family ``ip``."""


@dataclass(frozen=True, slots=True)
class LegMedia:
    """What the eligibility decision needs to know about one leg: its negotiated codec and payload types
    (as in :class:`~appliance.media.control_events.LegSpec`), whether it is SRTP, its relay address and
    port, and the remote the userspace latch learnt (None while still waiting)."""

    codec: str
    codec_pt: int
    event_pt: int | None
    srtp: bool
    local: Address
    latched: Address | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`: ``reasons`` is empty exactly when the call may be kernel-forwarded,
    and then ``legs`` holds the two :class:`FlowLeg` to install."""

    reasons: tuple[Ineligible, ...]
    legs: tuple[FlowLeg, FlowLeg] | None

    @property
    def eligible(self) -> bool:
        """Whether the call may be handed to the kernel."""
        return not self.reasons


def decide(a: LegMedia, b: LegMedia, *, recording: bool, report_dtmf: bool) -> Decision:
    """Decide whether a call may be forwarded by the kernel fast path.

    A call is eligible when all hold: both legs plain RTP (no SRTP); the same codec with the same payload
    type on both legs (no payload-type mapping, no transcoding); the same telephone-event payload type on
    both legs (or none on both); no recording; no DTMF reporting requested; both remotes latched; every
    address IPv4. Every reason that fails is listed, so a log line says all that keeps the call in
    userspace. Hold does not matter: the kernel forwards whatever flows, and the worker's timeout rules
    already read hold from the SDP.
    """
    reasons: list[Ineligible] = []
    if a.srtp or b.srtp:
        reasons.append(Ineligible.SRTP)
    if a.codec_pt != b.codec_pt or a.codec.upper() != b.codec.upper():
        reasons.append(Ineligible.CODEC)
    if a.event_pt != b.event_pt:
        reasons.append(Ineligible.EVENTS)
    if report_dtmf:
        reasons.append(Ineligible.DTMF)
    if recording:
        reasons.append(Ineligible.RECORDING)
    if a.latched is None or b.latched is None:
        reasons.append(Ineligible.NOT_LATCHED)
    addresses = [leg.local for leg in (a, b)] + [leg.latched for leg in (a, b) if leg.latched is not None]
    if not all(_is_ipv4(host) for host, _ in addresses):
        reasons.append(Ineligible.NOT_IPV4)
    if reasons:
        return Decision(tuple(reasons), None)
    assert a.latched is not None and b.latched is not None  # checked above; narrows the type
    return Decision((), (FlowLeg(a.latched, a.local), FlowLeg(b.latched, b.local)))


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True
