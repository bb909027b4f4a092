"""The local agent queue (ACD): callers the IVR transfers to a local agent group while the WAN is down.

Theory of operation. Call control drives one :class:`AgentQueue` for the whole appliance. The agents are
the SIP phones registered on the appliance; call control tells the queue which of them are reachable in
each group (:meth:`AgentQueue.members_changed`, re-sent whenever registrations change) and when an agent
takes or ends a call outside the queue (:meth:`~AgentQueue.agent_busy`, :meth:`~AgentQueue.agent_free`).
Callers :meth:`~AgentQueue.join` a group with a strategy and wait. The queue answers with actions
(:meth:`~AgentQueue.next_action`): :class:`Ring` (call control forks a leg to each agent named),
:class:`CancelRing`, :class:`Connected`, :class:`Position` and :class:`RejectAnswer`. It is sans-I/O:
every input takes the monotonic ``now``, and the queue keeps its own deadlines (:meth:`~AgentQueue.get_timer`,
:meth:`~AgentQueue.handle_timer`). Every input first processes the deadlines due by its ``now``, so the
outcome depends only on the times given, never on whether the timer or the input was delivered first: an
answer reported at or after its ring's deadline is too late.

Strategies, as the two ACDs this product is measured against name them:

* ``ring_all`` — Asterisk app_queue ``strategy=ringall``, FreeSWITCH mod_callcenter ``ring-all``: the caller
  rings every idle member at once; the first to answer gets the caller, the others' rings are cancelled. A
  member that becomes idle while the caller rings is rung as well.
* ``longest_idle`` — Asterisk ``leastrecent``, mod_callcenter ``longest-idle-agent``: the caller rings the
  one member idle longest; on failure or ring timeout, the member idle longest among those not yet tried
  for this caller. An agent's idle clock starts when it ends a call plus the wrap-up time
  (mod_callcenter's ``wrap-up-time``); an agent never busy is idle since it was first reported reachable.
  A ring that fails does not reset the clock.

Fairness. Callers are offered agents in arrival order (FIFO), across groups as well, so an agent in two
groups serves the caller who waited longest. One offer round walks the queued callers oldest first; each
takes from the idle agents of its group that it has not tried yet: a ``ring_all`` caller takes them all,
a ``longest_idle`` caller that is not ringing already takes the one idle longest. Hence with ``ring_all``
one caller at a time rings every idle member, and with ``longest_idle`` and N idle members the first N
callers each ring a different member. An agent ringing for one caller is never offered to another, and an
agent that failed for a caller is not rung for that caller again until every other idle member was tried
(as Asterisk marks the members it tried for a caller). It may be offered to the next caller
meanwhile: it did not take this one. When a caller has tried every idle member and rings none, a new round
starts ``retry_delay`` seconds after its last ring ended (Asterisk's ``retry``), so that a phone which
refuses at once (486 Busy Here, do-not-disturb) is not rung in a tight loop.

States. A caller is WAITING (queued, ringing no one), RINGING (one or more agents ring for it), then
CONNECTED or LEFT, after which the queue forgets it. An agent is IDLE (offered to callers), RINGING (for
exactly one caller), BUSY (on a call, in or outside the queue) or WRAP_UP (after a call, for
``wrap_up`` seconds). Allowed transitions are the tables :data:`CALLER_TRANSITIONS` and
:data:`AGENT_TRANSITIONS`; every change goes through one guarded setter that raises
:class:`QueueStateError` on an illegal one and logs ``OLD -> NEW``.

Positions. A caller's position is its 1-based place among the callers queued for its group (ringing ones
included). :class:`Position` goes out at join and whenever that place changes.

Input order. Call control and phones race: a phone may answer after its ring was cancelled, a caller may
hang up while an agent answers. Inputs about unknown callers, agents not ringing for that caller or
callers already gone are ignored (logged), except an answer, which is refused with :class:`RejectAnswer`
so call control hangs up that agent's leg. No input order raises; only a bad strategy or configuration
(a caller bug) does.

Glue (SIP). A :class:`Ring` is a parallel fork, one INVITE per agent; a :class:`CancelRing` CANCELs each
pending INVITE (RFC 3261 §9.1). A 2xx that crosses the CANCEL still establishes that dialog (§9.1; a fork
can bring several 2xx, §13.2.2.4): call control reports it as ``ring_answered`` and, given a
:class:`RejectAnswer`, ACKs and BYEs it. A final non-2xx (486, 480, 603, 408 ...) is ``ring_failed``.
:class:`Connected` bridges the caller to the agent's dialog; :class:`Position` is the session's
``transfer_position``. The queue needs no answer to any action.

Cost. Each input walks the queued callers and the agents once or twice: linear, which suits the tens of
callers an appliance holds in an outage (about 0.3 ms an input with 500 callers and 100 agents, logging
off).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal, TypeVar, cast

from appliance.ivr.errors import IvrError

_LOG: Final = logging.getLogger(__name__)

Strategy = Literal["ring_all", "longest_idle"]
STRATEGIES: Final[frozenset[str]] = frozenset({"ring_all", "longest_idle"})


# --- actions: queue -> call control ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ring:
    """Ring ``agents`` for caller ``call_id`` (one leg each). Each ends in ``ring_answered``,
    ``ring_failed`` or a :class:`CancelRing` from the queue."""

    call_id: str
    agents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CancelRing:
    """Stop ringing ``agents`` for ``call_id``: another agent answered, the caller left, the ring timed out
    or the agent became unavailable. The queue already counts these agents as no longer ringing."""

    call_id: str
    agents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Connected:
    """Bridge caller ``call_id`` to ``agent``. The caller has left the queue; the agent is busy until
    call control reports ``agent_free``."""

    call_id: str
    agent: str


@dataclass(frozen=True, slots=True)
class Position:
    """Caller ``call_id`` is now ``position`` (1-based) in its group's line."""

    call_id: str
    position: int


@dataclass(frozen=True, slots=True)
class RejectAnswer:
    """``agent`` answered a ring for ``call_id`` that is no longer offered (cancelled, timed out, the
    caller gone or connected elsewhere): hang up that agent's leg. The agent's state is unchanged."""

    call_id: str
    agent: str


QueueAction = Ring | CancelRing | Connected | Position | RejectAnswer


# --- errors ---------------------------------------------------------------------------------------------


class AgentQueueError(IvrError):
    """Base of the errors :class:`AgentQueue` raises: the caller of the API misused it (a bad strategy or
    configuration value; the package's local protocol error). Inputs in an unexpected order never raise."""


class QueueStateError(AgentQueueError):
    """An illegal state transition was attempted: a bug in this module, never a fault of the inputs."""


# --- states ---------------------------------------------------------------------------------------------


class CallerState(Enum):
    WAITING = "waiting"
    RINGING = "ringing"
    CONNECTED = "connected"
    LEFT = "left"


class AgentState(Enum):
    IDLE = "idle"
    RINGING = "ringing"
    BUSY = "busy"
    WRAP_UP = "wrap_up"


CALLER_TRANSITIONS: Final[dict[CallerState, frozenset[CallerState]]] = {
    # offered to an agent; gave up or hung up
    CallerState.WAITING: frozenset({CallerState.RINGING, CallerState.LEFT}),
    # every ring failed or timed out; an agent answered; gave up or hung up (rings cancelled)
    CallerState.RINGING: frozenset({CallerState.WAITING, CallerState.CONNECTED, CallerState.LEFT}),
    CallerState.CONNECTED: frozenset(),
    CallerState.LEFT: frozenset(),
}

AGENT_TRANSITIONS: Final[dict[AgentState, frozenset[AgentState]]] = {
    # offered to a caller; took a call outside the queue
    AgentState.IDLE: frozenset({AgentState.RINGING, AgentState.BUSY}),
    # failed, timed out, cancelled, left the group; answered, or took a call outside the queue
    AgentState.RINGING: frozenset({AgentState.IDLE, AgentState.BUSY}),
    # call ended, with or without wrap-up
    AgentState.BUSY: frozenset({AgentState.WRAP_UP, AgentState.IDLE}),
    # wrap-up over; took a call meanwhile
    AgentState.WRAP_UP: frozenset({AgentState.IDLE, AgentState.BUSY}),
}

_S = TypeVar("_S", CallerState, AgentState)


def check_transition(table: Mapping[_S, frozenset[_S]], old: _S, new: _S) -> None:
    """Raise :class:`QueueStateError` unless ``old -> new`` is allowed by ``table``."""
    if new not in table[old]:
        raise QueueStateError(f"illegal transition {old.name} -> {new.name}")


@dataclass(slots=True, eq=False)
class _Caller:
    call_id: str
    group: str
    strategy: Strategy
    state: CallerState = CallerState.WAITING
    ringing: dict[str, float] = field(default_factory=dict)  # agent -> ring deadline
    tried: set[str] = field(default_factory=set)  # agents rung in the current round
    last_ring_end: float = 0.0  # when the latest unsuccessful ring ended
    retry_at: float | None = None  # when a new round may start, once the current one is exhausted
    position: int = 0  # the last position announced (0: none yet)


@dataclass(slots=True, eq=False)
class _Agent:
    name: str
    state: AgentState
    idle_since: float
    idle_seq: int  # breaks ties between agents idle since the same instant: earlier reported first
    ringing_for: str | None = None
    wrap_up_until: float | None = None


class AgentQueue:
    """The queue of callers waiting for local agents; see the module docstring for the rules.

    Drain :meth:`next_action` after every input and keep one timer armed at :meth:`get_timer`, calling
    :meth:`handle_timer` when it fires. ``ring_timeout``: seconds an agent rings before the ring is
    cancelled and counted as a failure. ``wrap_up``: seconds after an agent's call ends before it is
    offered callers again. ``retry_delay``: seconds a caller that has tried every idle member waits after
    its last ring ended before those members are rung again.
    """

    def __init__(
        self,
        *,
        ring_timeout: float = 20.0,
        wrap_up: float = 0.0,
        retry_delay: float = 5.0,
        logger: logging.Logger | None = None,
    ) -> None:
        if not ring_timeout > 0:
            raise AgentQueueError(f"ring_timeout must be > 0, not {ring_timeout!r}")
        if not wrap_up >= 0:
            raise AgentQueueError(f"wrap_up must be >= 0, not {wrap_up!r}")
        if not retry_delay >= 0:
            raise AgentQueueError(f"retry_delay must be >= 0, not {retry_delay!r}")
        self._ring_timeout = ring_timeout
        self._wrap_up = wrap_up
        self._retry_delay = retry_delay
        self._log = logger if logger is not None else _LOG
        self._actions: deque[QueueAction] = deque()
        self._callers: dict[str, _Caller] = {}  # queued callers, in arrival order
        self._agents: dict[str, _Agent] = {}
        self._members: dict[str, frozenset[str]] = {}
        self._idle_seq = 0

    # -- reading ----------------------------------------------------------------------------------------

    def next_action(self) -> QueueAction | None:
        """The next action for call control, or None when there is none."""
        return self._actions.popleft() if self._actions else None

    def caller_state(self, call_id: str) -> CallerState | None:
        """A queued caller's state (WAITING or RINGING); None once connected, gone or never seen."""
        caller = self._callers.get(call_id)
        return caller.state if caller is not None else None

    def agent_state(self, agent: str) -> AgentState | None:
        """An agent's state, or None for an agent never reported."""
        record = self._agents.get(agent)
        return record.state if record is not None else None

    def ringing_for(self, agent: str) -> str | None:
        """The caller ``agent`` rings for, or None."""
        record = self._agents.get(agent)
        return record.ringing_for if record is not None else None

    def ringing(self, call_id: str) -> tuple[str, ...]:
        """The agents ringing for ``call_id``, in the order they were rung."""
        caller = self._callers.get(call_id)
        return tuple(caller.ringing) if caller is not None else ()

    def tried(self, call_id: str) -> frozenset[str]:
        """The agents rung for ``call_id`` in its current round (not offered it again until the next)."""
        caller = self._callers.get(call_id)
        return frozenset(caller.tried) if caller is not None else frozenset()

    def queued(self, group: str) -> tuple[str, ...]:
        """The callers queued for ``group``, first in line first."""
        return tuple(c.call_id for c in self._callers.values() if c.group == group)

    def members(self, group: str) -> frozenset[str]:
        """The agents last reported reachable in ``group``."""
        return self._members.get(group, frozenset())

    # -- timers -----------------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline (a ring timeout, the end of a wrap-up, a caller's next round), or None."""
        deadlines = [d for c in self._callers.values() for d in c.ringing.values()]
        deadlines += [c.retry_at for c in self._callers.values() if c.retry_at is not None]
        deadlines += [a.wrap_up_until for a in self._agents.values() if a.wrap_up_until is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Process every deadline up to ``now`` and offer the agents that freed."""
        self._advance(now)
        self._settle(now)

    # -- inputs -----------------------------------------------------------------------------------------

    def join(self, call_id: str, group: str, strategy: str, now: float) -> None:
        """Queue ``call_id`` at the end of ``group``'s line. Raises :class:`AgentQueueError` for a strategy
        not in :data:`STRATEGIES`. A caller already queued keeps its place (the repeat is ignored)."""
        if strategy not in STRATEGIES:
            raise AgentQueueError(f"unknown queue strategy {strategy!r}")
        self._advance(now)
        if call_id in self._callers:
            self._log.warning("caller %s is already queued; join ignored", call_id, extra=_ctx(call_id))
        else:
            self._callers[call_id] = _Caller(call_id, group, cast(Strategy, strategy))
            self._log.info("caller %s joined group %s (%s)", call_id, group, strategy, extra=_ctx(call_id))
        self._settle(now)

    def leave(self, call_id: str, now: float) -> None:
        """``call_id`` gave up, reached its maximum wait or hung up: its rings are cancelled."""
        self._advance(now)
        caller = self._callers.get(call_id)
        if caller is None:
            self._log.debug("leave of unqueued caller %s ignored", call_id, extra=_ctx(call_id))
        else:
            self._cancel_rings(caller, tuple(caller.ringing), now, requeue=False)
            self._remove(caller, CallerState.LEFT)
        self._settle(now)

    def members_changed(self, group: str, agents: Sequence[str], now: float) -> None:
        """``agents`` are the members of ``group`` now reachable. A member that left while ringing for a
        caller of this group counts as a failed ring (and is cancelled)."""
        self._advance(now)
        new = frozenset(agents)
        old = self._members.get(group, frozenset())
        for name in dict.fromkeys(agents):  # in the order given, once each
            if name not in self._agents:
                self._agents[name] = self._new_agent(name, AgentState.IDLE, now)
        for name in sorted(old - new):
            agent = self._agents[name]
            caller = self._callers.get(agent.ringing_for) if agent.ringing_for is not None else None
            if caller is not None and caller.group == group:
                self._log.info(
                    "agent %s left group %s while ringing", name, group, extra=_ctx(caller.call_id)
                )
                self._cancel_rings(caller, (name,), now)
        if new:
            self._members[group] = new
        else:
            self._members.pop(group, None)
        if new != old:
            self._log.info("group %s members: %s", group, ", ".join(sorted(new)) or "none")
        self._settle(now)

    def ring_answered(self, call_id: str, agent: str, now: float) -> None:
        """``agent`` answered its ring for ``call_id``: connect them and cancel the caller's other rings,
        or refuse the answer (:class:`RejectAnswer`) when that ring is no longer offered."""
        self._advance(now)
        caller = self._callers.get(call_id)
        if caller is None or agent not in caller.ringing:
            self._log.info("answer of %s for %s refused: not ringing", agent, call_id, extra=_ctx(call_id))
            self._actions.append(RejectAnswer(call_id, agent))
            self._settle(now)
            return
        self._actions.append(Connected(call_id, agent))
        self._cancel_rings(caller, tuple(a for a in caller.ringing if a != agent), now, requeue=False)
        del caller.ringing[agent]
        record = self._agents[agent]
        record.ringing_for = None
        self._set_agent(record, AgentState.BUSY)
        self._remove(caller, CallerState.CONNECTED)
        self._settle(now)

    def ring_failed(self, call_id: str, agent: str, now: float) -> None:
        """``agent``'s ring for ``call_id`` ended without an answer (busy, declined, error); ignored unless
        that agent rings for that caller."""
        self._advance(now)
        caller = self._callers.get(call_id)
        if caller is None or agent not in caller.ringing:
            self._log.debug("failure of %s for %s ignored: not ringing", agent, call_id, extra=_ctx(call_id))
        else:
            self._end_ring(caller, agent, now)
        self._settle(now)

    def agent_busy(self, agent: str, now: float) -> None:
        """``agent`` took a call outside the queue; a ring of it for a caller is cancelled."""
        self._advance(now)
        record = self._agents.get(agent)
        if record is None:
            self._agents[agent] = self._new_agent(agent, AgentState.BUSY, now)
        elif record.state is not AgentState.BUSY:
            if record.ringing_for is not None:
                self._cancel_rings(self._callers[record.ringing_for], (agent,), now)
            record.wrap_up_until = None
            self._set_agent(record, AgentState.BUSY)
        self._settle(now)

    def agent_free(self, agent: str, now: float) -> None:
        """``agent``'s call ended (a queue call or another): it is offered callers again after the
        wrap-up, and its idle time counts from then. Ignored unless the agent is busy."""
        self._advance(now)
        record = self._agents.get(agent)
        if record is None or record.state is not AgentState.BUSY:
            self._log.debug(
                "agent %s free while %s; ignored", agent, record.state.name if record else "unknown"
            )
        elif self._wrap_up > 0:
            record.wrap_up_until = now + self._wrap_up
            self._set_agent(record, AgentState.WRAP_UP)
        else:
            self._become_idle(record, now)
        self._settle(now)

    # -- internals --------------------------------------------------------------------------------------

    def _new_agent(self, name: str, state: AgentState, now: float) -> _Agent:
        self._idle_seq += 1
        self._log.info("agent %s reported, %s", name, state.name)
        return _Agent(name, state, idle_since=now, idle_seq=self._idle_seq)

    def _become_idle(self, agent: _Agent, since: float) -> None:
        self._idle_seq += 1
        agent.idle_since = since
        agent.idle_seq = self._idle_seq
        agent.wrap_up_until = None
        self._set_agent(agent, AgentState.IDLE)

    def _advance(self, now: float) -> None:
        """Process the deadlines due by ``now``: ring timeouts, ends of wrap-up, callers' next rounds.
        Every input starts here and ends in :meth:`_settle`, even one it then ignores, so that what the
        deadlines freed is offered at once."""
        for caller in list(self._callers.values()):
            expired = tuple(a for a, deadline in caller.ringing.items() if deadline <= now)
            if expired:
                self._log.info("ring timeout: %s", ", ".join(expired), extra=_ctx(caller.call_id))
                self._cancel_rings(caller, expired, now)
            if caller.retry_at is not None and caller.retry_at <= now:
                self._new_round(caller)
        for agent in self._agents.values():
            if agent.wrap_up_until is not None and agent.wrap_up_until <= now:
                self._become_idle(agent, agent.wrap_up_until)

    def _cancel_rings(
        self, caller: _Caller, agents: tuple[str, ...], now: float, *, requeue: bool = True
    ) -> None:
        """Cancel the rings of ``agents`` for ``caller`` (each counts as failed) and say so."""
        if not agents:
            return
        for agent in agents:
            self._end_ring(caller, agent, min(now, caller.ringing[agent]), requeue=requeue)
        self._actions.append(CancelRing(caller.call_id, agents))

    def _end_ring(self, caller: _Caller, agent: str, at: float, *, requeue: bool = True) -> None:
        """``agent`` stops ringing for ``caller`` without having answered; with ``requeue`` a caller left
        ringing no one waits again (without, it is about to leave the queue)."""
        del caller.ringing[agent]
        record = self._agents[agent]
        record.ringing_for = None
        self._set_agent(record, AgentState.IDLE)
        caller.last_ring_end = max(caller.last_ring_end, at)
        if requeue and not caller.ringing:
            self._set_caller(caller, CallerState.WAITING)

    def _new_round(self, caller: _Caller) -> None:
        """Forget which agents ``caller`` tried: each may be rung for it again (those ringing stay so)."""
        caller.tried = set(caller.ringing)
        caller.retry_at = None

    def _remove(self, caller: _Caller, state: CallerState) -> None:
        self._set_caller(caller, state)
        del self._callers[caller.call_id]

    def _idle_key(self, agent: str) -> tuple[float, int]:
        record = self._agents[agent]
        return (record.idle_since, record.idle_seq)

    def _settle(self, now: float) -> None:
        """After an input: announce changed positions, then offer the idle agents (module docstring)."""
        self._announce_positions()
        self._offer(now)

    def _announce_positions(self) -> None:
        places: dict[str, int] = {}
        for caller in self._callers.values():
            place = places[caller.group] = places.get(caller.group, 0) + 1
            if place != caller.position:
                caller.position = place
                self._actions.append(Position(caller.call_id, place))

    def _offer(self, now: float) -> None:
        pool = {a.name for a in self._agents.values() if a.state is AgentState.IDLE}
        for caller in list(self._callers.values()):
            if not pool:
                return
            available = pool & self._members.get(caller.group, frozenset())
            if not available:
                continue
            eligible = available - caller.tried
            if not eligible:
                if caller.ringing:
                    continue  # this round is still ringing
                if caller.retry_at is None:
                    caller.retry_at = caller.last_ring_end + self._retry_delay
                if caller.retry_at > now:
                    continue
                self._new_round(caller)
                eligible = available
            chosen: tuple[str, ...]
            if caller.strategy == "longest_idle":
                if caller.ringing:
                    continue
                chosen = (min(eligible, key=self._idle_key),)
            else:
                chosen = tuple(sorted(eligible, key=self._idle_key))
            self._ring(caller, chosen, now)
            pool.difference_update(chosen)

    def _ring(self, caller: _Caller, agents: Iterable[str], now: float) -> None:
        rung = tuple(agents)
        for name in rung:
            record = self._agents[name]
            self._set_agent(record, AgentState.RINGING)
            record.ringing_for = caller.call_id
            caller.ringing[name] = now + self._ring_timeout
            caller.tried.add(name)
        if caller.state is CallerState.WAITING:
            self._set_caller(caller, CallerState.RINGING)
        self._log.info("ringing %s", ", ".join(rung), extra=_ctx(caller.call_id))
        self._actions.append(Ring(caller.call_id, rung))

    def _set_caller(self, caller: _Caller, new: CallerState) -> None:
        """The one place a caller's state changes: checked against the table, logged."""
        check_transition(CALLER_TRANSITIONS, caller.state, new)
        self._log.info(
            "caller %s: %s -> %s", caller.call_id, caller.state.name, new.name, extra=_ctx(caller.call_id)
        )
        caller.state = new

    def _set_agent(self, agent: _Agent, new: AgentState) -> None:
        """The one place an agent's state changes: checked against the table, logged."""
        check_transition(AGENT_TRANSITIONS, agent.state, new)
        self._log.info("agent %s: %s -> %s", agent.name, agent.state.name, new.name)
        agent.state = new


def _ctx(call_id: str) -> dict[str, object]:
    return {"ctx": {"call": call_id}}
