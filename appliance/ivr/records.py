"""The outbox bodies an IVR session writes: one function per event type.

Each outcome the failover IVR takes from a caller is appended to the durable outbox (``Persist``) before the
caller hears it confirmed, and the cloud reads these events through the sync API once it is back. The
bodies are plain maps of CBOR/JSON-friendly values (str, int, float, bool, None, lists, maps) so the outbox
can encode them as they are; times are ISO 8601 UTC strings (``2026-03-29T01:00:00.000Z``) besides the
POSIX seconds where a consumer computes with them.

Event types: ``ivr.voicemail``, ``ivr.callback``, ``ivr.survey`` and ``ivr.session`` (one per session,
written last, summing it up). Their schema, the contract with the cloud, is ``records.cddl`` next to this
module; a change here goes there too (a test checks the two agree).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

VOICEMAIL: Final = "ivr.voicemail"
CALLBACK: Final = "ivr.callback"
SURVEY: Final = "ivr.survey"
SESSION: Final = "ivr.session"

FOLLOW_UP_BELOW: Final = 3
"""A survey answer below this flags the survey for follow-up."""


def iso_utc(posix: float) -> str:
    """``posix`` seconds as ISO 8601 UTC with milliseconds and a ``Z`` (RFC 3339 §5.6)."""
    return datetime.fromtimestamp(posix, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def voicemail_body(
    *,
    call_id: str,
    session_id: str,
    caller: str | None,
    language: str,
    node: str,
    record_id: str,
    duration: float,
    blob: Mapping[str, Any],
    recorded_at: float,
) -> dict[str, Any]:
    """A kept voicemail: who left it, how long it is, and the encrypted file (``blob``: path, size,
    sha256, key_id, as the media worker reported it after fsync). ``recorded_at`` is wall time (POSIX s)."""
    return {
        "call_id": call_id,
        "session_id": session_id,
        "caller": caller,
        "language": language,
        "node": node,
        "record_id": record_id,
        "duration": round(duration, 3),
        "blob": dict(blob),
        "recorded_at": iso_utc(recorded_at),
    }


def callback_body(
    *,
    call_id: str,
    session_id: str,
    number: str,
    number_source: str,
    language: str,
    slot_utc: str,
    slot_local: str,
    timezone: str,
    requested_at: float,
) -> dict[str, Any]:
    """A callback request: the ``number`` to call (``number_source`` ``"caller"`` when the caller confirmed
    the number it called from, ``"keyed"`` when it keyed one in), the chosen time as ISO UTC and as ISO
    local time in the caller's IANA ``timezone``, and when it was asked for (wall time, POSIX s)."""
    return {
        "call_id": call_id,
        "session_id": session_id,
        "number": number,
        "number_source": number_source,
        "language": language,
        "slot_utc": slot_utc,
        "slot_local": slot_local,
        "timezone": timezone,
        "requested_at": iso_utc(requested_at),
    }


def survey_body(
    *,
    call_id: str,
    session_id: str,
    caller: str | None,
    language: str,
    agent: str | None,
    answers: Sequence[int | None],
    answered_at: float,
) -> dict[str, Any]:
    """A post-call survey: ``answers`` 1–5 per question in order (None: not answered); ``follow_up`` is
    true when any answer is below :data:`FOLLOW_UP_BELOW`. ``agent`` is the local agent the caller spoke to,
    if any."""
    return {
        "call_id": call_id,
        "session_id": session_id,
        "caller": caller,
        "language": language,
        "agent": agent,
        "answers": list(answers),
        "follow_up": any(a is not None and a < FOLLOW_UP_BELOW for a in answers),
        "answered_at": iso_utc(answered_at),
    }


def session_body(
    *,
    call_id: str,
    session_id: str,
    flow: str,
    flow_version: int,
    caller: str | None,
    language: str,
    rescued: bool,
    started: float,
    ended: float,
    path: Sequence[str],
    digits: str,
    truncated: bool,
    outcome: str,
    agent: str | None,
    variables: Mapping[str, str],
) -> dict[str, Any]:
    """The summary of one session: the flow and version walked, the node ids in the order visited, every
    key the caller pressed (in order; ``truncated`` when either list was cut at the session's cap), the
    session's final language, and its ``outcome``: ``voicemail``,
    ``callback`` or ``agent`` when one was taken (the last one wins), else ``hangup`` (the flow ended the
    call), ``abandoned`` (the caller hung up first) or ``error`` (the flow was cut short). ``rescued``: the
    call reached the IVR from a failed cloud leg. ``started``/``ended`` are wall time (POSIX s)."""
    return {
        "call_id": call_id,
        "session_id": session_id,
        "flow": flow,
        "flow_version": flow_version,
        "caller": caller,
        "language": language,
        "rescued": rescued,
        "started": iso_utc(started),
        "ended": iso_utc(ended),
        "duration": round(max(0.0, ended - started), 3),
        "path": list(path),
        "digits": digits,
        "truncated": truncated,
        "outcome": outcome,
        "agent": agent,
        "variables": dict(variables),
    }
