"""The TDM worker's command dispatch: one control datagram in, its reply out (sans-I/O).

Every datagram gets exactly one reply: a datagram that does not decode is answered with an ``Error``
(``BAD_MESSAGE``) carrying its ``request_id`` when that can be read; a command the bridge refuses with an
``Error`` carrying the bridge's code; events and replies sent as commands are refused the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from appliance.media.tdm.bridge import ErrorCode, TdmBridge, TdmCommandError
from appliance.media.tdm.control import (
    MAX_TEXT,
    Close,
    Connect,
    ControlDecodeError,
    Error,
    Ok,
    Open,
    Pacing,
    Reply,
    Stats,
    StatsReply,
    decode,
    request_id_of,
)
from appliance.media.tdm.pacer import PacingStats


def handle(
    bridge: TdmBridge, data: bytes, pacing: PacingStats, extra: Mapping[str, int] | None = None
) -> Reply:
    """Decode and carry out one command; ``pacing`` and ``extra`` counters (the B link's, RTCP) go into a
    stats reply."""
    try:
        msg = decode(data)
    except ControlDecodeError as exc:
        return Error(request_id_of(data), ErrorCode.BAD_MESSAGE, exc.reason[:MAX_TEXT])
    try:
        match msg:
            case Open():
                return Ok(msg.request_id, bridge.open(msg.timeslot, msg.codec))
            case Connect():
                bridge.connect(msg.timeslot, msg.host, msg.port, msg.payload_type)
                return Ok(msg.request_id)
            case Close():
                bridge.close(msg.timeslot)
                return Ok(msg.request_id)
            case Stats():
                counters = bridge.counters()
                counters.update(extra or {})
                return StatsReply(
                    msg.request_id,
                    tuple(sorted(counters.items())),
                    Pacing(pacing.p50_ms, pacing.p99_ms, pacing.max_ms, pacing.ticks, pacing.skipped),
                    bridge.open_timeslots,
                    bridge.link_up,
                )
    except TdmCommandError as exc:
        return Error(getattr(msg, "request_id", 0), exc.code, exc.reason[:MAX_TEXT])
    return Error(0, ErrorCode.BAD_MESSAGE, f"{type(msg).__name__} is not a command")
