"""Call detail records: one ``call.record`` outbox event per call, built as the B2BUA runs it.

Theory of operation. :class:`CallRecords` follows each call from the initial INVITE to its end through a
handful of calls the B2BUA makes (:meth:`begin`, :meth:`trying`, :meth:`unavailable`, :meth:`answered`,
:meth:`leg_failed`, :meth:`rerouted`, :meth:`released`, :meth:`finish`). Times are taken on the B2BUA's
monotonic clock (``now``) and turned into wall-clock times once, when the call ends, with one reading of
the injected wall clock: a wall-clock step during a call then moves the whole record, never its duration.
The finished record (:class:`CallRecord`) is queued in :attr:`CallRecords.done`; the control process
appends it to the outbox after the flush that ended the call, adding the media workers' stream statistics
of the call once its media is torn down (:func:`media_stats`). The body is ``call-record`` of
``calls/records.cddl``.

Release causes are ITU-T Q.850 values (Q.850 §2.2.5) with the SIP status they map to (RFC 3398 §8.2.6.1).

PRI calls. The PRI gateway adds the span side of a call (:meth:`CallRecords.pri`, :meth:`pri_cleared`):
the record's ``pri`` map. A call whose caller is on a span has no SIP Call-ID: its record has the caller's
``pri`` map and no ``sip_call_id``. Its caller's leg is made before call control opens the record, so
:meth:`CallRecords.pri` may come first and waits for :meth:`begin`. One ``pri`` map per record: the
caller's when the caller is on a span, else the span the call last went out on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from appliance.calls import causes
from appliance.calls.causes import Cause
from appliance.ivr.records import iso_utc

# Who ended the call: the caller hung up (or cancelled), the callee hung up (or, for a call never answered,
# the last destination refused it), or the appliance did (no route, media lost, the IVR flow hung up).
SIDES: Final = frozenset({"caller", "callee", "appliance"})
# The most attempts kept per call: a route has a few destinations, an agent group a few members.
MAX_LEGS: Final = 32


class Answering(Protocol):
    """The leg that took the call (a SIP leg, an IVR leg with its ``session``)."""

    route_kind: str


class Destination(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def target(self) -> str: ...


@dataclass(slots=True)
class _Leg:
    kind: str
    target: str
    started: float | None  # None: not known to call control (a rescue: the record has the call's times)
    available: bool
    outcome: str = "tried"  # tried → answered | failed | unavailable | cancelled | rescued
    cause: Cause | None = None


@dataclass(slots=True)
class _Pri:
    """The span side of a call (``pri-call`` of records.cddl); ``q850``/``location`` as the far end sent."""

    span: int
    handle: int
    side: str  # "caller": the call came in on the span; "callee": it went out on it
    channel: int | None = None
    q850: int | None = None
    location: int | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"span": self.span, "side": self.side, "handle": self.handle}
        if self.channel is not None:
            body["channel"] = self.channel
        if self.q850 is not None:
            body["q850"] = self.q850
            body["location"] = self.location
        return body


@dataclass(slots=True)
class _Open:
    call_id: str
    sip_call_id: str
    caller: str | None
    callee: str
    mode: str
    created: float
    answered: float | None = None
    legs: list[_Leg] = field(default_factory=list)
    rescued: bool = False
    side: str | None = None
    cause: Cause | None = None
    ivr_session: str | None = None
    pri: _Pri | None = None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A finished call: ``body`` is the ``call.record`` event body, without media statistics."""

    call_id: str
    body: dict[str, Any]


def e164_or(number: str, normalise: Callable[[str], str | None]) -> str:
    """``number`` in E.164 form where it is a phone number, else as dialled (an extension, a user name)."""
    return (normalise(number) or number) if number else number


def media_stats(stats: Iterable[Any]) -> list[dict[str, Any]]:
    """The ``media-stream`` entries of a call's streams, one per leg and direction
    (:class:`~appliance.media.control_events.StreamStats`)."""
    return [
        {"leg": s.leg, "direction": s.direction.value, "packets": s.packets, "octets": s.octets,
         "lost": s.lost, "jitter_ms": s.jitter_ms}
        for s in stats
    ]  # fmt: skip


class CallRecords:
    """The records of the calls in progress, and of those finished but not yet taken (:attr:`done`).

    ``wall`` is the wall clock (POSIX seconds) and ``mode`` names the survivable-mode state ("online",
    "suspect", "survivable", "recovering"); without a wall clock no records are kept at all.
    """

    def __init__(
        self, *, wall: Callable[[], float] | None = None, mode: Callable[[], str] = lambda: "survivable"
    ) -> None:
        self.wall = wall
        self.mode = mode
        self.done: deque[CallRecord] = deque()
        self._open: dict[str, _Open] = {}
        self._pri_first: dict[str, _Pri] = {}  # a PRI caller's side, until its call's record is opened

    @property
    def active(self) -> int:
        return len(self._open)

    def begin(
        self, call_id: str, sip_call_id: str, caller: str, callee: str, now: float,
        normalise: Callable[[str], str | None],
    ) -> None:  # fmt: skip
        """A new call from ``caller`` (empty: withheld) to ``callee``, as the INVITE named them;
        ``sip_call_id`` is the INVITE's Call-ID (for a caller on a span: a reference the record omits)."""
        if self.wall is None:
            return
        self._open[call_id] = _Open(
            call_id, sip_call_id, e164_or(caller, normalise) or None, e164_or(callee, normalise),
            self.mode(), now, pri=self._pri_first.pop(call_id, None),
        )  # fmt: skip

    def pri(self, call_id: str, *, span: int, handle: int, side: str, channel: int | None = None) -> None:
        """The call is on PRI ``span`` as Q.931 call ``handle``, its caller (``side`` "caller", possibly
        before :meth:`begin`) or its callee ("callee"); again with ``channel`` once the B-channel is known.
        A caller's side is kept over any callee's."""
        if self.wall is None:
            return
        rec = self._open.get(call_id)
        if rec is None:
            if side == "caller":
                self._pri_first[call_id] = _Pri(span, handle, side, channel)
            return
        known = rec.pri
        if known is not None and (known.span, known.handle, known.side) == (span, handle, side):
            known.channel = channel if channel is not None else known.channel
        elif known is None or known.side != "caller":
            rec.pri = _Pri(span, handle, side, channel)

    def pri_cleared(self, call_id: str, *, span: int, handle: int, cause: int, location: int) -> None:
        """The far end on ``span`` cleared call ``handle`` with Q.850 ``cause`` at ``location`` (the first
        clearing message's cause: a DISCONNECT's, not the RELEASE's that may follow)."""
        rec = self._open.get(call_id)
        known = None if rec is None else rec.pri
        if known is not None and (known.span, known.handle) == (span, handle) and known.q850 is None:
            known.q850, known.location = cause, location

    def trying(self, call_id: str, dest: Destination, now: float) -> None:
        """A destination of the route is tried."""
        rec = self._open.get(call_id)
        if rec is not None and len(rec.legs) < MAX_LEGS:
            rec.legs.append(_Leg(dest.kind, dest.target, now, True))

    def unavailable(self, call_id: str) -> None:
        """The destination just tried could not be (no agent registered, the cloud unreachable, no such
        flow): the next one is tried at once."""
        rec = self._open.get(call_id)
        if rec is not None and rec.legs:
            leg = rec.legs[-1]
            leg.available = False
            leg.outcome = "unavailable"

    def answered(self, call_id: str, by: Answering, now: float) -> None:
        """The destination being tried answered, on leg ``by``."""
        rec = self._open.get(call_id)
        if rec is None:
            return
        rec.answered = now
        rec.ivr_session = rec.ivr_session or _session_id(by)
        leg = self._current(rec)
        if leg is not None:
            leg.outcome = "answered"
            leg.kind = by.route_kind

    def leg_failed(self, call_id: str, cause: Cause) -> None:
        """The destination being tried failed (every fork of it, for an agent group) with ``cause``."""
        rec = self._open.get(call_id)
        leg = None if rec is None else self._current(rec)
        if leg is not None:
            leg.outcome = "failed"
            leg.cause = cause

    def rerouted(self, call_id: str, to: Answering | None, target: str) -> None:
        """An answered call moved to another leg ``to``: its cloud leg failed and the caller was rescued
        into the local IVR (flow ``target``)."""
        rec = self._open.get(call_id)
        if rec is None or to is None:
            return
        rec.rescued = rec.rescued or to.route_kind == "ivr"
        rec.ivr_session = rec.ivr_session or _session_id(to)
        leg = self._current(rec)
        if leg is not None:
            leg.outcome = "rescued"
        if len(rec.legs) < MAX_LEGS:
            rec.legs.append(_Leg(to.route_kind, target, None, True, "answered"))

    def released(self, call_id: str, side: str, cause: Cause) -> None:
        """``side`` (one of :data:`SIDES`) ended the call with ``cause``; the first release counts."""
        rec = self._open.get(call_id)
        if rec is not None and rec.side is None:
            rec.side = side
            rec.cause = cause

    def failed(self, call_id: str, cause: Cause) -> None:
        """No destination answered: the caller is refused with ``cause``, the last destination's failure
        (then the callee's side) or the appliance's own (no route, nothing available)."""
        rec = self._open.get(call_id)
        if rec is None:
            return
        refused = any(leg.cause == cause for leg in rec.legs)
        self.released(call_id, "callee" if refused else "appliance", cause)

    def finish(self, call_id: str, now: float) -> CallRecord | None:
        """The call ended: its record is queued in :attr:`done` (and returned)."""
        rec = self._open.pop(call_id, None)
        if rec is None or self.wall is None:
            return None
        offset = self.wall() - now  # monotonic → wall, read once per record
        cause = rec.cause or causes.NORMAL_CLEARING
        for leg in rec.legs:
            if leg.outcome == "tried":
                leg.outcome = "cancelled"  # still ringing when the call ended (a caller's CANCEL)
        answered = rec.answered
        body: dict[str, Any] = {
            "call_id": rec.call_id,
            "sip_call_id": rec.sip_call_id,
            "direction": "inbound",
            "route": self._route(rec),
            "caller": rec.caller,
            "callee": rec.callee,
            "legs": [_leg_body(leg, offset) for leg in rec.legs],
            "created": iso_utc(rec.created + offset),
            "created_ts": round(rec.created + offset, 3),
            "answered": None if answered is None else iso_utc(answered + offset),
            "answered_ts": None if answered is None else round(answered + offset, 3),
            "ended": iso_utc(now + offset),
            "ended_ts": round(now + offset, 3),
            "duration": round(now - rec.created, 3),
            "billable": 0.0 if answered is None else round(now - answered, 3),
            "disconnect": rec.side or "appliance",
            "q850": cause.q850,
            # The final response the caller got to its INVITE: 200 once answered, whatever ended the call.
            "sip_status": 200 if answered is not None else cause.sip_status,
            "reason": cause.text,
            "mode": rec.mode,
            "rescued": rec.rescued,
            "ivr_session": rec.ivr_session,
        }
        if rec.pri is not None:
            if rec.pri.side == "caller":
                del body["sip_call_id"]  # the caller sent no INVITE
            body["pri"] = rec.pri.body()
        record = CallRecord(call_id, body)
        self.done.append(record)
        return record

    @staticmethod
    def _current(rec: _Open) -> _Leg | None:
        """The destination being tried: the last one that was available."""
        for leg in reversed(rec.legs):
            if leg.available:
                return leg
        return None

    @staticmethod
    def _route(rec: _Open) -> str:
        """Where the call ended up: the kind of the leg that had it last, or "none"."""
        for leg in reversed(rec.legs):
            if leg.outcome in ("answered", "rescued"):
                return leg.kind
        tried = [leg for leg in rec.legs if leg.available]
        return tried[-1].kind if tried else "none"


def _session_id(leg: object) -> str | None:
    """The IVR session id of an IVR leg (:class:`~appliance.ivr.session.IvrSession` ``session_id``)."""
    session_id = getattr(getattr(leg, "session", None), "session_id", None)
    return session_id if isinstance(session_id, str) else None


def _leg_body(leg: _Leg, offset: float) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": leg.kind,
        "target": leg.target,
        "outcome": leg.outcome,
    }
    if leg.started is not None:
        body["started"] = iso_utc(leg.started + offset)
    if leg.cause is not None:
        body["q850"] = leg.cause.q850
        body["sip_status"] = leg.cause.sip_status
    return body
