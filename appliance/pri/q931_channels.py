"""The span's B-channel table, channel negotiation and the restart procedure (Q.931 §5.1.2, §5.2.3, §5.5;
ETSI EN 300 403-1 §5.1.2 and §5.2.3.1 on a primary rate interface).

Each B-channel (E1 timeslot) is idle, held by one call (by handle), blocked by a RESTART this side sent
(§5.5.1: no call uses it until RESTART ACKNOWLEDGE), or in the maintenance condition: after T308 expired
twice (Q.931 Tables 9-1/9-2, §5.3.3, §5.3.4.3) or after a RESTART for it went unacknowledged T316 after
T316 (§5.5.1: out of service until maintenance action). Only a restart brings a channel out of maintenance:
our RESTART acknowledged, or the peer's RESTART naming it. A channel is never held by two calls: every
reservation goes through :meth:`ChannelTable.reserve`, which refuses a busy one.

Negotiation (:func:`choose`), the same rule on both sides for the channel the peer indicated:

* indicated and idle: take it;
* indicated, busy, **exclusive**: cause 44 (requested circuit/channel not available);
* indicated, busy, **preferred** (or "any channel"): another idle channel, which the answering side puts
  in its first response as exclusive;
* no idle channel at all: cause 34 (no circuit/channel available).

Glare (both sides' SETUPs cross, naming the same channel) follows Q.931 Annex D.3 (written for symmetric
arrangements, where one side is designated the network), as libpri's users do on a PRI: an exclusive
indication beats a preferred one, and between equals the network side's SETUP is awarded the channel. The
side that yields lets the crossing SETUP take the channel its own unanswered SETUP had proposed
(:meth:`ChannelTable.steal`) and takes the alternate channel named in the peer's first response; when both
were exclusive the user's SETUP is cleared with RELEASE COMPLETE cause 34.

Restart (Q.931 §5.5, :class:`RestartProcedure`) runs on the global call reference: REST0 -> REST1 (RESTART
sent, T316, repeated ``t316_attempts`` times) -> REST0 on RESTART ACKNOWLEDGE, or when T316 gives up (the
channels then stay out of service, §5.5.1); a received RESTART passes REST2 while the calls on the
channels are released, then RESTART ACKNOWLEDGE.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.pri.errors import LocalProtocolError
from appliance.pri.q931_call import (
    CAUSE_MANDATORY_MISSING,
    CAUSE_RECOVERY_ON_TIMER,
    CAUSE_TEMPORARY_FAILURE,
    RESTART_TRANSITIONS,
    RestartState,
)
from appliance.pri.q931_events import ChannelsRestarted, ProtocolFault
from appliance.pri.q931_model import (
    GLOBAL_CALL_REFERENCE,
    CallState,
    Cause,
    ChannelId,
    Decoded,
    Message,
    MessageType,
    RestartClass,
    RestartIndicator,
)
from appliance.pri.q931_model import CallStateValue as S
from appliance.pri.q931_timers import TimerProcedures

if TYPE_CHECKING:
    from appliance.pri.q931_status import Answer

_LOG = logging.getLogger("appliance.pri.q931")
CAUSE_NO_CIRCUIT = 34
CAUSE_CHANNEL_NOT_AVAILABLE = 44


@dataclass(frozen=True, slots=True)
class Chosen:
    """The outcome of negotiation: a channel, or the cause to refuse the call with."""

    channel: int | None
    cause: int | None = None


class ChannelTable:
    """Which call holds which B-channel. ``b_channels`` are the span's timeslots in hunting order."""

    def __init__(self, b_channels: tuple[int, ...]) -> None:
        if len(set(b_channels)) != len(b_channels) or not b_channels:
            raise LocalProtocolError(f"B-channels must be distinct and at least one: {b_channels!r}")
        self.b_channels = b_channels
        self._owner: dict[int, int] = {}
        self._blocked: set[int] = set()
        self._maintenance: set[int] = set()

    def owner(self, channel: int) -> int | None:
        return self._owner.get(channel)

    def idle(self, channel: int) -> bool:
        return (
            channel in self.b_channels
            and channel not in self._owner
            and channel not in self._blocked
            and channel not in self._maintenance
        )

    def first_idle(self, *, avoid: int | None = None) -> int | None:
        for channel in self.b_channels:
            if channel != avoid and self.idle(channel):
                return channel
        return None

    def reserve(self, channel: int, call: int) -> None:
        if not self.idle(channel):
            raise LocalProtocolError(f"B-channel {channel} is not idle")
        self._owner[channel] = call

    def release(self, channel: int | None, call: int) -> None:
        """Free ``channel`` if ``call`` holds it (a call that lost its channel to glare holds none)."""
        if channel is not None and self._owner.get(channel) == call:
            del self._owner[channel]

    def steal(self, channel: int, call: int) -> int | None:
        """Give ``channel`` to ``call`` and return the call that held it (glare, network side wins)."""
        previous = self._owner.get(channel)
        self._owner[channel] = call
        return previous

    def block(self, channels: tuple[int, ...]) -> None:
        """RESTART sent for these channels (§5.5.1): unusable until acknowledged."""
        self._blocked.update(c for c in channels if c in self.b_channels)

    def unblock(self, channels: tuple[int, ...]) -> None:
        """The RESTART for these channels ended without its acknowledgement or a verdict (the data link
        went): back to what they were before it, maintenance included."""
        self._blocked.difference_update(channels)

    def maintain(self, channels: tuple[int, ...]) -> None:
        """Place these channels in the maintenance condition (see the module docstring)."""
        self._maintenance.update(c for c in channels if c in self.b_channels)
        self._blocked.difference_update(channels)

    def restored(self, channels: tuple[int, ...]) -> None:
        """A restart of these channels completed (§5.5): they are idle and in service again."""
        self._blocked.difference_update(channels)
        self._maintenance.difference_update(channels)

    def in_maintenance(self) -> tuple[int, ...]:
        """The channels in the maintenance condition, in hunting order."""
        return tuple(c for c in self.b_channels if c in self._maintenance)

    def busy(self) -> dict[int, int]:
        """A copy of channel -> call handle for every held channel."""
        return dict(self._owner)


def choose(table: ChannelTable, requested: int | None, *, exclusive: bool) -> Chosen:
    """Negotiate the channel for an offered call (see the module docstring); ``requested`` None = any."""
    if requested is not None and table.idle(requested):
        return Chosen(requested)
    if requested is not None and exclusive:
        return Chosen(None, CAUSE_CHANNEL_NOT_AVAILABLE)
    other = table.first_idle(avoid=requested)
    if other is None:
        return Chosen(None, CAUSE_NO_CIRCUIT)
    return Chosen(other)


class RestartProcedure(TimerProcedures):
    """The global call reference: RESTART / RESTART ACKNOWLEDGE in both directions (Q.931 §5.5)."""

    _restart: RestartState
    _restart_channels: tuple[int, ...]
    _restart_message: Message | None
    _restart_deadline: float | None
    _restart_attempts: int

    def restart(self, channels: tuple[int, ...] | None, now: float) -> None:
        """RESTART (§5.5.1) for ``channels`` (class 0) or the whole interface (class 7, None). The calls on
        them are released at once (cause 41); the channels stay blocked until RESTART ACKNOWLEDGE."""
        if self._restart is not RestartState.REST0 or not self._link_up:
            raise LocalProtocolError(
                f"span {self.span}: restart in {self._restart.name}, link up {self._link_up}"
            )
        targets = self._channels.b_channels if channels is None else channels
        if not targets or any(ch not in self._channels.b_channels for ch in targets):
            raise LocalProtocolError(f"span {self.span}: no such B-channels {channels!r}")
        self._release_channels(None if channels is None else targets)
        self._channels.block(targets)
        self._restart_channels = targets
        self._restart_attempts = 1
        restart_class = RestartClass.ALL_INTERFACES if channels is None else RestartClass.INDICATED_CHANNELS
        self._restart_message = Message(
            MessageType.RESTART,
            GLOBAL_CALL_REFERENCE,
            True,
            channel=None if channels is None else ChannelId(targets, exclusive=True),
            restart=RestartIndicator(restart_class),
        )
        self._set_restart(RestartState.REST1)
        self._out.append(self._restart_message)
        self._restart_deadline = now + self.timers.t316

    def _on_restart(self, decoded: Decoded, answer: Answer | None) -> None:
        """§5.5.2: release the calls on the indicated channels (or all), acknowledge, report."""
        msg = decoded.message
        indicated = msg.restart is not None and msg.restart.restart_class is RestartClass.INDICATED_CHANNELS
        channels = msg.channel.channels if msg.channel is not None else ()
        bad = [ch for ch in channels if ch not in self._channels.b_channels]
        if (
            msg.restart is None
            or (answer is not None and answer.fatal)
            or (indicated and not channels)
            or bad
        ):
            cause = answer.cause if answer is not None else (100 if bad else CAUSE_MANDATORY_MISSING)
            diag = b"\x18" if bad or (indicated and not channels) else b"\x79"
            self._events.append(ProtocolFault(None, cause, "RESTART not acted on"))
            self._out.append(self._global_status(Cause(cause, self._location, diag)))
            return
        # REST2 while the calls are released; a RESTART crossing ours (REST1) is served without leaving REST1
        crossing = self._restart is RestartState.REST1
        if not crossing:
            self._set_restart(RestartState.REST2)
        targets = channels if indicated else self._channels.b_channels
        self._release_channels(targets if indicated else None)
        self._out.append(
            Message(
                MessageType.RESTART_ACKNOWLEDGE,
                GLOBAL_CALL_REFERENCE,
                False,
                channel=msg.channel,
                restart=msg.restart,
            )
        )
        self._channels.restored(targets)  # §5.5.2: the channels return to the idle condition
        if not crossing:
            self._set_restart(RestartState.REST0)
        self._events.append(ChannelsRestarted(targets, requested_by_peer=True))

    def _release_channels(self, channels: tuple[int, ...] | None) -> None:
        """Release locally every call on ``channels`` (None: every call on the interface), cause 41."""
        for call in list(self._calls.values()):
            if channels is None or call.channel in channels:
                call.clearing_by(CAUSE_TEMPORARY_FAILURE, self._location, local=True)
                self._release(call)

    def _t316(self, now: float) -> None:
        """§5.5.1: RESTART is repeated on T316 expiry up to ``t316_attempts`` sends; then no further attempt
        is made, management hears of it (:class:`ProtocolFault` cause 102) and the channels are out of
        service until maintenance action (here: a later :meth:`restart`, or the peer's RESTART)."""
        if self._restart_attempts < self.timers.t316_attempts and self._restart_message is not None:
            self._restart_attempts += 1
            self._out.append(self._restart_message)
            self._restart_deadline = now + self.timers.t316
            return
        self._events.append(ProtocolFault(None, CAUSE_RECOVERY_ON_TIMER, "RESTART not acknowledged (T316)"))
        self._channels.maintain(self._restart_channels)
        self._end_restart(peer=False, completed=False)

    def _end_restart(self, *, peer: bool, completed: bool) -> None:
        """Back to REST0. Acknowledged, the channels are idle and in service (§5.5.1); abandoned with the
        data link, they are as before the RESTART; given up on T316, :meth:`_t316` has put them in
        maintenance."""
        if completed:
            self._channels.restored(self._restart_channels)
        else:
            self._channels.unblock(self._restart_channels)
        self._restart_deadline = None
        self._set_restart(RestartState.REST0)
        if completed:
            self._events.append(ChannelsRestarted(self._restart_channels, requested_by_peer=peer))
        self._restart_channels = ()

    def _maintenance(self, channel: int, now: float) -> None:
        """T308 expired twice (Tables 9-1/9-2): ``channel`` is in the maintenance condition. A RESTART for
        it starts at once when the global call reference is free and the data link up (§5.5); otherwise
        it waits for the next restart that covers it."""
        self._events.append(
            ProtocolFault(None, CAUSE_RECOVERY_ON_TIMER, f"no answer to RELEASE (T308): B-channel {channel}")
        )
        self._channels.maintain((channel,))
        if self._restart is RestartState.REST0 and self._link_up:
            self.restart((channel,), now)

    @property
    def channels_in_maintenance(self) -> tuple[int, ...]:
        """B-channels out of service until a restart covers them (see the module docstring)."""
        return self._channels.in_maintenance()

    def _set_restart(self, new: RestartState) -> None:
        if new not in RESTART_TRANSITIONS[self._restart]:
            raise LocalProtocolError(
                f"span {self.span}: illegal restart transition {self._restart.name} -> {new.name}"
            )
        _LOG.info("span %d global CR: %s -> %s", self.span, self._restart.name, new.name)
        self._restart = new

    def _global_status(self, cause: Cause) -> Message:
        state = {
            RestartState.REST0: S.NULL,
            RestartState.REST1: S.RESTART_REQUEST,
            RestartState.REST2: S.RESTART,
        }
        return Message(
            MessageType.STATUS,
            GLOBAL_CALL_REFERENCE,
            False,
            cause=cause,
            call_state=CallState(state[self._restart]),
        )


def glare_yields(side: str, *, ours_exclusive: bool, incoming_exclusive: bool) -> bool:
    """Whether our own unanswered SETUP yields its channel to the peer's crossing SETUP: Q.931 Annex D.3,
    the network side being the network — an exclusive indication beats a preferred one, and between equals
    the network's SETUP is awarded the channel. The call that yields takes the alternate channel the peer's
    first response names (or is cleared, cause 34, when both are exclusive)."""
    if incoming_exclusive != ours_exclusive:
        return incoming_exclusive
    return side == "user"
