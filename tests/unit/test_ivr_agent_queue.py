"""The local agent queue, driven by hand with an injected clock."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from appliance.ivr.agent_queue import (
    AGENT_TRANSITIONS,
    CALLER_TRANSITIONS,
    AgentQueue,
    AgentQueueError,
    AgentState,
    CallerState,
    CancelRing,
    Connected,
    Position,
    QueueAction,
    QueueStateError,
    RejectAnswer,
    Ring,
    check_transition,
)
from tests.unit.vectors import soak_marks

pytestmark = soak_marks()

RING = 20.0


def drain(q: AgentQueue) -> list[QueueAction]:
    out: list[QueueAction] = []
    while (action := q.next_action()) is not None:
        out.append(action)
    return out


def rings(actions: list[QueueAction]) -> list[Ring]:
    return [a for a in actions if isinstance(a, Ring)]


def queue_with(agents: list[str], *, group: str = "sales", **kwargs: float) -> AgentQueue:
    q = AgentQueue(ring_timeout=RING, **kwargs)
    q.members_changed(group, agents, 0.0)
    assert drain(q) == []
    return q


def run_timers(q: AgentQueue, until: float) -> list[QueueAction]:
    """Fire every deadline up to ``until``, as the glue's timer would."""
    out: list[QueueAction] = []
    while (timer := q.get_timer()) is not None and timer <= until:
        q.handle_timer(timer)
        out += drain(q)
    return out


# -- ring_all ----------------------------------------------------------------------------------------------


def test_ring_all_rings_every_idle_agent_and_the_first_answer_wins() -> None:
    q = queue_with(["a1", "a2", "a3"])
    q.join("c1", "sales", "ring_all", 1.0)
    assert drain(q) == [Position("c1", 1), Ring("c1", ("a1", "a2", "a3"))]
    assert q.caller_state("c1") is CallerState.RINGING

    q.ring_answered("c1", "a2", 3.0)
    assert drain(q) == [Connected("c1", "a2"), CancelRing("c1", ("a1", "a3"))]
    assert q.caller_state("c1") is None
    assert q.agent_state("a2") is AgentState.BUSY
    assert q.agent_state("a1") is q.agent_state("a3") is AgentState.IDLE
    assert q.get_timer() is None


def test_ring_all_second_caller_waits_while_the_first_rings_everyone() -> None:
    q = queue_with(["a1", "a2"])
    q.join("c1", "sales", "ring_all", 0.0)
    q.join("c2", "sales", "ring_all", 0.0)
    assert drain(q) == [Position("c1", 1), Ring("c1", ("a1", "a2")), Position("c2", 2)]
    q.ring_answered("c1", "a1", 1.0)
    assert drain(q) == [
        Connected("c1", "a1"),
        CancelRing("c1", ("a2",)),
        Position("c2", 1),
        Ring("c2", ("a2",)),
    ]


def test_ring_all_adds_an_agent_that_frees_while_the_caller_rings() -> None:
    q = queue_with(["a1", "a2"])
    q.agent_busy("a2", 0.0)
    q.join("c1", "sales", "ring_all", 1.0)
    assert rings(drain(q)) == [Ring("c1", ("a1",))]
    q.agent_free("a2", 2.0)
    assert drain(q) == [Ring("c1", ("a2",))]
    assert q.ringing("c1") == ("a1", "a2")


def test_ring_all_timeout_cancels_every_ring_and_retries_after_the_delay() -> None:
    q = queue_with(["a1", "a2"], retry_delay=5.0)
    q.join("c1", "sales", "ring_all", 0.0)
    drain(q)
    assert q.get_timer() == RING
    q.handle_timer(RING)
    assert drain(q) == [CancelRing("c1", ("a1", "a2"))]
    assert q.caller_state("c1") is CallerState.WAITING
    assert q.get_timer() == RING + 5.0
    q.handle_timer(RING + 5.0)
    assert drain(q) == [Ring("c1", ("a1", "a2"))]


def test_ring_all_does_not_ring_a_refusing_agent_again_while_the_round_still_rings() -> None:
    q = queue_with(["a1", "a2"], retry_delay=0.0)
    q.join("c1", "sales", "ring_all", 0.0)
    drain(q)
    q.ring_failed("c1", "a1", 1.0)  # declined at once; a2 still rings
    assert drain(q) == []
    assert q.tried("c1") == {"a1", "a2"}
    q.ring_failed("c1", "a2", 2.0)  # the round is over: with no retry delay, the next starts at once
    assert drain(q) == [Ring("c1", ("a1", "a2"))]


# -- longest_idle ------------------------------------------------------------------------------------------


def test_longest_idle_rings_the_agent_idle_longest_counting_wrap_up() -> None:
    q = AgentQueue(ring_timeout=RING, wrap_up=30.0)
    q.members_changed("support", ["a1", "a2"], 0.0)
    q.agent_busy("a1", 0.0)
    q.agent_busy("a2", 0.0)
    q.agent_free("a2", 60.0)  # idle since 90
    q.agent_free("a1", 70.0)  # idle since 100
    assert q.agent_state("a1") is AgentState.WRAP_UP
    q.members_changed("support", ["a1", "a2", "a3"], 95.0)  # a3, never busy: idle since 95
    run_timers(q, 200.0)
    q.join("c1", "support", "longest_idle", 200.0)
    assert rings(drain(q)) == [Ring("c1", ("a2",))]
    q.ring_failed("c1", "a2", 201.0)
    assert drain(q) == [Ring("c1", ("a3",))]
    q.ring_failed("c1", "a3", 202.0)
    assert drain(q) == [Ring("c1", ("a1",))]


def test_longest_idle_agent_in_wrap_up_is_not_offered() -> None:
    q = AgentQueue(ring_timeout=RING, wrap_up=10.0)
    q.members_changed("support", ["a1", "a2"], 0.0)
    q.agent_busy("a1", 1.0)
    q.agent_free("a1", 2.0)  # wrap-up until 12: idle since 12, so a2 (idle since 0) is first anyway
    q.agent_busy("a2", 3.0)
    drain(q)
    q.join("c1", "support", "longest_idle", 5.0)
    assert drain(q) == [Position("c1", 1)]
    assert q.get_timer() == 12.0
    q.handle_timer(12.0)
    assert drain(q) == [Ring("c1", ("a1",))]


def test_members_reported_together_are_idle_in_the_order_given() -> None:
    q = queue_with(["b", "a", "c"], group="support")
    q.join("c1", "support", "longest_idle", 1.0)
    assert rings(drain(q)) == [Ring("c1", ("b",))]


def test_ring_timeout_moves_to_the_next_agent() -> None:
    q = queue_with(["a1", "a2", "a3"], group="support")
    q.join("c1", "support", "longest_idle", 0.0)
    assert rings(drain(q)) == [Ring("c1", ("a1",))]
    assert run_timers(q, RING) == [CancelRing("c1", ("a1",)), Ring("c1", ("a2",))]
    assert run_timers(q, 2 * RING) == [CancelRing("c1", ("a2",)), Ring("c1", ("a3",))]
    assert q.agent_state("a1") is AgentState.IDLE


def test_a_failed_agent_is_not_retried_until_every_other_idle_member_was_tried() -> None:
    q = queue_with(["a1", "a2"], group="support", retry_delay=5.0)
    q.join("c1", "support", "longest_idle", 0.0)
    drain(q)
    q.ring_failed("c1", "a1", 1.0)
    assert drain(q) == [Ring("c1", ("a2",))]
    q.ring_failed("c1", "a2", 2.0)
    assert drain(q) == []  # both tried: a new round 5 s after the last failure
    assert q.get_timer() == 7.0
    assert run_timers(q, 7.0) == [Ring("c1", ("a1",))]


def test_longest_idle_first_callers_each_ring_a_different_agent() -> None:
    q = queue_with(["a1", "a2"], group="support")
    for i, call in enumerate(("c1", "c2", "c3")):
        q.join(call, "support", "longest_idle", float(i))
    assert rings(drain(q)) == [Ring("c1", ("a1",)), Ring("c2", ("a2",))]


def test_an_agent_declined_by_one_caller_is_offered_to_the_next() -> None:
    q = queue_with(["a1", "a2"], group="support")
    q.join("c1", "support", "longest_idle", 0.0)
    q.join("c2", "support", "longest_idle", 0.0)
    drain(q)
    q.ring_failed("c1", "a1", 1.0)
    # c2 already rings a2 and c1 tried a1: a1 waits for c1's next round, offered to no one now.
    assert drain(q) == []
    q.ring_failed("c2", "a2", 2.0)
    assert drain(q) == [Ring("c1", ("a2",)), Ring("c2", ("a1",))]


# -- waiting, positions ------------------------------------------------------------------------------------


def busy_queue(callers: int) -> AgentQueue:
    q = queue_with(["a1", "a2"])
    q.agent_busy("a1", 0.0)
    q.agent_busy("a2", 0.0)
    for i in range(1, callers + 1):
        q.join(f"c{i}", "sales", "ring_all", float(i))
    return q


def test_all_agents_busy_callers_wait_with_positions() -> None:
    q = busy_queue(3)
    assert drain(q) == [Position("c1", 1), Position("c2", 2), Position("c3", 3)]
    assert q.queued("sales") == ("c1", "c2", "c3")
    assert q.get_timer() is None


def test_positions_move_up_as_callers_ahead_leave_or_connect() -> None:
    q = busy_queue(4)
    drain(q)
    q.leave("c2", 10.0)
    assert drain(q) == [Position("c3", 2), Position("c4", 3)]
    q.agent_free("a1", 11.0)
    assert drain(q) == [Ring("c1", ("a1",))]
    q.ring_answered("c1", "a1", 12.0)
    assert drain(q) == [Connected("c1", "a1"), Position("c3", 1), Position("c4", 2)]


def test_agent_freed_rings_the_head_caller() -> None:
    q = busy_queue(2)
    drain(q)
    q.agent_free("a2", 5.0)
    assert drain(q) == [Ring("c1", ("a2",))]


def test_positions_are_per_group() -> None:
    q = queue_with([])
    q.join("c1", "sales", "ring_all", 0.0)
    q.join("c2", "support", "ring_all", 0.0)
    q.join("c3", "sales", "ring_all", 0.0)
    assert drain(q) == [Position("c1", 1), Position("c2", 1), Position("c3", 2)]


# -- membership --------------------------------------------------------------------------------------------


def test_members_changed_adding_an_agent_serves_waiting_callers() -> None:
    q = queue_with([], group="support")
    q.join("c1", "support", "longest_idle", 0.0)
    q.join("c2", "support", "longest_idle", 1.0)
    drain(q)
    q.members_changed("support", ["a1"], 5.0)
    assert drain(q) == [Ring("c1", ("a1",))]
    q.members_changed("support", ["a1", "a2"], 6.0)
    assert drain(q) == [Ring("c2", ("a2",))]


def test_an_agent_leaving_the_group_while_ringing_counts_as_failed() -> None:
    q = queue_with(["a1", "a2"], group="support")
    q.join("c1", "support", "longest_idle", 0.0)
    drain(q)
    q.members_changed("support", ["a2"], 3.0)
    assert drain(q) == [CancelRing("c1", ("a1",)), Ring("c1", ("a2",))]
    assert q.members("support") == frozenset({"a2"})


def test_an_agent_in_two_groups_serves_the_caller_who_waited_longest() -> None:
    q = queue_with(["a1"], group="sales")
    q.members_changed("support", ["a1"], 0.0)
    q.agent_busy("a1", 0.0)
    q.join("c1", "support", "ring_all", 1.0)
    q.join("c2", "sales", "ring_all", 2.0)
    drain(q)
    q.agent_free("a1", 3.0)
    assert drain(q) == [Ring("c1", ("a1",))]
    # Leaving "sales" does not touch its ring for a "support" caller.
    q.members_changed("sales", [], 4.0)
    assert drain(q) == []
    assert q.ringing_for("a1") == "c1"


# -- agents' own calls -------------------------------------------------------------------------------------


def test_an_agent_taking_another_call_while_ringing_is_cancelled_and_skipped() -> None:
    q = queue_with(["a1", "a2"], group="support")
    q.join("c1", "support", "longest_idle", 0.0)
    drain(q)
    q.agent_busy("a1", 1.0)
    assert drain(q) == [CancelRing("c1", ("a1",)), Ring("c1", ("a2",))]
    assert q.agent_state("a1") is AgentState.BUSY


def test_agent_free_when_not_busy_is_ignored() -> None:
    q = queue_with(["a1"])
    q.agent_free("a1", 1.0)
    assert q.agent_state("a1") is AgentState.IDLE and drain(q) == []
    q.agent_free("ghost", 1.0)  # an agent never reported
    assert q.agent_state("ghost") is None and drain(q) == []


def test_connected_agent_is_busy_until_freed() -> None:
    q = queue_with(["a1"])
    q.join("c1", "sales", "ring_all", 0.0)
    q.ring_answered("c1", "a1", 1.0)
    drain(q)
    q.join("c2", "sales", "ring_all", 2.0)
    assert drain(q) == [Position("c2", 1)]
    q.agent_free("a1", 60.0)
    assert drain(q) == [Ring("c2", ("a1",))]


# -- leave, late answers, odd orders -----------------------------------------------------------------------


def test_leave_while_ringing_cancels_the_rings() -> None:
    q = queue_with(["a1", "a2"])
    q.join("c1", "sales", "ring_all", 0.0)
    drain(q)
    q.leave("c1", 4.0)
    assert drain(q) == [CancelRing("c1", ("a1", "a2"))]
    assert q.agent_state("a1") is q.agent_state("a2") is AgentState.IDLE
    assert q.get_timer() is None


def test_answer_after_cancel_is_rejected() -> None:
    q = queue_with(["a1", "a2"])
    q.join("c1", "sales", "ring_all", 0.0)
    q.ring_answered("c1", "a1", 1.0)
    drain(q)
    q.ring_answered("c1", "a2", 1.1)  # a2 picked up as its ring was cancelled
    assert drain(q) == [RejectAnswer("c1", "a2")]
    assert q.agent_state("a2") is AgentState.IDLE


def test_answer_after_leave_and_after_the_ring_timeout_is_rejected() -> None:
    q = queue_with(["a1", "a2"], group="support")
    q.join("c1", "support", "longest_idle", 0.0)
    drain(q)
    # Reported at the deadline, before the timer fired: the timeout wins, the next agent rings.
    q.ring_answered("c1", "a1", RING)
    assert drain(q) == [CancelRing("c1", ("a1",)), RejectAnswer("c1", "a1"), Ring("c1", ("a2",))]
    q.leave("c1", 21.0)
    drain(q)
    q.ring_answered("c1", "a2", 21.5)
    assert drain(q) == [RejectAnswer("c1", "a2")]


def test_unknown_callers_and_agents_are_ignored() -> None:
    q = queue_with(["a1"])
    q.leave("nobody", 0.0)
    q.ring_failed("nobody", "a1", 0.0)
    q.ring_failed("nobody", "ghost", 0.0)
    q.handle_timer(1.0)
    assert drain(q) == []
    q.ring_answered("nobody", "a1", 0.0)
    assert drain(q) == [RejectAnswer("nobody", "a1")]


@pytest.mark.parametrize(
    "late_input",
    [
        lambda q: q.ring_failed("c1", "a1", 25.0),
        lambda q: q.ring_failed("nobody", "a1", 25.0),
        lambda q: q.leave("nobody", 25.0),
        lambda q: q.agent_free("a2", 25.0),
        lambda q: q.agent_busy("ghost", 25.0),
    ],
)
def test_an_ignored_input_still_offers_what_its_deadlines_freed(
    late_input: Callable[[AgentQueue], None],
) -> None:
    q = queue_with(["a1", "a2"], group="support")
    q.join("c1", "support", "longest_idle", 0.0)
    drain(q)
    late_input(q)  # the glue's timer at 20 has not fired yet
    assert drain(q) == [CancelRing("c1", ("a1",)), Ring("c1", ("a2",))]
    assert q.get_timer() == 45.0


def test_a_failure_from_an_agent_ringing_for_someone_else_is_ignored() -> None:
    q = queue_with(["a1", "a2"], group="support")
    q.join("c1", "support", "longest_idle", 0.0)
    q.join("c2", "support", "longest_idle", 0.0)
    drain(q)
    q.ring_failed("c2", "a1", 1.0)
    assert drain(q) == [] and q.ringing_for("a1") == "c1"


def test_joining_twice_keeps_the_first_place() -> None:
    q = queue_with([])
    q.join("c1", "sales", "ring_all", 0.0)
    q.join("c2", "sales", "ring_all", 1.0)
    q.join("c1", "sales", "ring_all", 2.0)
    assert drain(q) == [Position("c1", 1), Position("c2", 2)]
    assert q.queued("sales") == ("c1", "c2")


def test_bad_strategy_and_configuration_raise() -> None:
    with pytest.raises(AgentQueueError):
        AgentQueue(ring_timeout=0.0)
    with pytest.raises(AgentQueueError):
        AgentQueue(wrap_up=-1.0)
    with pytest.raises(AgentQueueError):
        AgentQueue(retry_delay=-1.0)
    with pytest.raises(AgentQueueError, match="round_robin"):
        AgentQueue().join("c1", "sales", "round_robin", 0.0)


def test_transition_tables_are_guarded() -> None:
    check_transition(CALLER_TRANSITIONS, CallerState.WAITING, CallerState.RINGING)
    with pytest.raises(QueueStateError):
        check_transition(CALLER_TRANSITIONS, CallerState.CONNECTED, CallerState.WAITING)
    with pytest.raises(QueueStateError):
        check_transition(AGENT_TRANSITIONS, AgentState.WRAP_UP, AgentState.RINGING)


def test_transitions_are_logged_old_to_new(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appliance.ivr.agent_queue")
    q = queue_with(["a1"])
    q.join("c1", "sales", "ring_all", 0.0)
    q.ring_answered("c1", "a1", 1.0)
    messages = [r.getMessage() for r in caplog.records]
    assert "caller c1: WAITING -> RINGING" in messages
    assert "caller c1: RINGING -> CONNECTED" in messages
    assert "agent a1: RINGING -> BUSY" in messages


# -- random inputs -----------------------------------------------------------------------------------------

AGENTS = ("a1", "a2", "a3", "a4")
GROUPS = ("g1", "g2")
STRATEGY = st.sampled_from(["ring_all", "longest_idle"])


class AgentQueueModel(RuleBasedStateMachine):
    """Random inputs in any order. A model built from the inputs and the actions checks every action
    against what call control was told: an agent rings for at most one caller, busy, wrapping-up and
    connected agents are never rung, rings go to current members only, offers follow arrival order, free
    agents are not left idle while a caller could take them, and positions are always current. That offers
    in arrival order make connections in arrival order is checked with equal agents below."""

    @initialize(wrap_up=st.sampled_from([0.0, 7.0]), retry=st.sampled_from([0.0, 5.0]))
    def boot(self, wrap_up: float, retry: float) -> None:
        self.q = AgentQueue(ring_timeout=RING, wrap_up=wrap_up, retry_delay=retry)
        self.wrap_up = wrap_up
        self.now = 0.0
        self.seen = 0.0  # the latest time handed to the queue
        self.next_call = 0
        self.queue: list[tuple[str, str, str]] = []  # (call, group, strategy) in arrival order
        self.members: dict[str, frozenset[str]] = {}
        self.rings: dict[str, tuple[str, float]] = {}  # agent -> (call, deadline)
        self.busy: set[str] = set()
        self.free_at: dict[str, float] = {}  # agent -> end of its wrap-up
        self.idle_since: dict[str, float] = {}  # when each agent's idle clock started
        self.announced: dict[str, int] = {}
        self.reject: RejectAnswer | None = None  # the refusal the current input must bring

    # -- the model --------------------------------------------------------------------------------------

    def position(self, call: str) -> int:
        group = next(g for c, g, _ in self.queue if c == call)
        return [c for c, g, _ in self.queue if g == group].index(call) + 1

    def entry(self, call: str) -> tuple[str, str, str] | None:
        return next((e for e in self.queue if e[0] == call), None)

    def collect(self) -> list[QueueAction]:
        actions = drain(self.q)
        for action in actions:
            if isinstance(action, Ring):
                entry = self.entry(action.call_id)
                assert entry is not None, action
                for agent in action.agents:
                    assert agent not in self.rings, f"{agent} already rings for {self.rings[agent]}"
                    assert agent not in self.busy, f"busy {agent} rung"
                    assert self.free_at.get(agent, 0.0) <= self.seen, f"{agent} rung during wrap-up"
                    assert agent in self.members.get(entry[1], frozenset()), f"{agent} not a member"
                    self.rings[agent] = (action.call_id, self.seen + RING)
            elif isinstance(action, CancelRing):
                for agent in action.agents:
                    assert self.rings.pop(agent)[0] == action.call_id
            elif isinstance(action, Connected):
                assert self.rings.pop(action.agent)[0] == action.call_id
                self.queue = [e for e in self.queue if e[0] != action.call_id]
                self.busy.add(action.agent)
            elif isinstance(action, Position):
                assert self.position(action.call_id) == action.position
                self.announced[action.call_id] = action.position
            elif isinstance(action, RejectAnswer):
                assert action == self.reject
                self.reject = None
            else:
                raise AssertionError(f"unexpected {action}")
        self.check_offers([a for a in actions if isinstance(a, Ring)])
        self.check_longest_idle([a for a in actions if isinstance(a, Ring)])
        return actions

    def check_offers(self, rings: list[Ring]) -> None:
        """Offers follow arrival: an agent went to a later caller only when every earlier caller that could
        take it had tried it already in its round, or (longest_idle) was ringing another agent."""
        order = [c for c, _, _ in self.queue]
        for ring in rings:
            for call, group, strategy in self.queue[: order.index(ring.call_id)]:
                for agent in set(ring.agents) & self.members.get(group, frozenset()):
                    ringing_one = strategy == "longest_idle" and bool(self.q.ringing(call))
                    assert agent in self.q.tried(call) or ringing_one, (
                        f"{agent} offered to {ring} before {call}"
                    )

    def check_longest_idle(self, rings: list[Ring]) -> None:
        """A longest_idle caller rang the agent idle longest of those it could take: none still idle and
        untried for it has an older idle clock."""
        for ring in rings:
            entry = self.entry(ring.call_id)
            assert entry is not None
            if entry[2] != "longest_idle":
                continue
            assert len(ring.agents) == 1
            clock = self.idle_since[ring.agents[0]]
            for agent in self.members.get(entry[1], frozenset()) - self.q.tried(ring.call_id):
                if self.q.agent_state(agent) is AgentState.IDLE:
                    assert self.idle_since[agent] >= clock, f"{agent} idle longer than {ring.agents[0]}"

    def pick(self, data: st.DataObject, stale: bool) -> tuple[str, str]:
        """A ringing (caller, agent) pair, or with ``stale`` any pair, likely not ringing."""
        if stale or not self.rings:
            call = data.draw(st.sampled_from([f"c{i}" for i in range(self.next_call)] + ["gone"]))
            return call, data.draw(st.sampled_from(AGENTS))
        agent = data.draw(st.sampled_from(sorted(self.rings)))
        return self.rings[agent][0], agent

    def catch_up(self, timer_first: bool) -> None:
        """Before an input at ``now``: with ``timer_first`` the glue's timer fires first, otherwise the
        input itself has to process the deadlines due."""
        self.seen = self.now
        if timer_first:
            self.q.handle_timer(self.now)
            self.collect()

    def rings_now(self, call: str, agent: str) -> bool:
        """Whether ``agent`` rings for ``call`` and its ring has not timed out by ``now``."""
        ring = self.rings.get(agent)
        return ring is not None and ring[0] == call and ring[1] > self.now

    # -- rules ------------------------------------------------------------------------------------------

    @rule(dt=st.sampled_from([0.0, 1.0, 3.0, 7.0, RING]), fire_timers=st.booleans())
    def advance(self, dt: float, fire_timers: bool) -> None:
        target = self.now + dt
        while fire_timers and (timer := self.q.get_timer()) is not None and timer <= target:
            self.now = self.seen = max(self.seen, timer)
            self.q.handle_timer(self.now)
            self.collect()
        self.now = target

    @rule(group=st.sampled_from(GROUPS), strategy=STRATEGY, timer_first=st.booleans())
    def join(self, group: str, strategy: str, timer_first: bool) -> None:
        self.catch_up(timer_first)
        call = f"c{self.next_call}"
        self.next_call += 1
        self.queue.append((call, group, strategy))
        self.q.join(call, group, strategy, self.now)
        assert Position(call, self.position(call)) in self.collect()

    @rule(data=st.data(), timer_first=st.booleans())
    def leave(self, data: st.DataObject, timer_first: bool) -> None:
        self.catch_up(timer_first)
        calls = [c for c, _, _ in self.queue] + ["gone"]
        call = data.draw(st.sampled_from(calls))
        self.queue = [e for e in self.queue if e[0] != call]
        self.q.leave(call, self.now)
        self.collect()
        assert not any(c == call for c, _ in self.rings.values())

    @rule(
        group=st.sampled_from(GROUPS),
        agents=st.lists(st.sampled_from(AGENTS), unique=True, max_size=4),
        timer_first=st.booleans(),
    )
    def members_changed(self, group: str, agents: list[str], timer_first: bool) -> None:
        self.catch_up(timer_first)
        self.members[group] = frozenset(agents)
        for agent in agents:
            if agent not in self.busy and agent not in self.idle_since:
                self.idle_since[agent] = self.now
        self.q.members_changed(group, agents, self.now)
        self.collect()

    @rule(data=st.data(), stale=st.booleans(), timer_first=st.booleans())
    def answer(self, data: st.DataObject, stale: bool, timer_first: bool) -> None:
        self.catch_up(timer_first)
        call, agent = self.pick(data, stale)
        valid = self.rings_now(call, agent)
        self.reject = None if valid else RejectAnswer(call, agent)
        self.q.ring_answered(call, agent, self.now)
        actions = self.collect()
        assert self.reject is None, "the answer was not refused"
        if valid:
            assert Connected(call, agent) in actions
            assert self.q.agent_state(agent) is AgentState.BUSY

    @rule(data=st.data(), stale=st.booleans(), timer_first=st.booleans())
    def fail(self, data: st.DataObject, stale: bool, timer_first: bool) -> None:
        self.catch_up(timer_first)
        call, agent = self.pick(data, stale)
        if self.rings_now(call, agent):
            del self.rings[agent]
        self.q.ring_failed(call, agent, self.now)
        self.collect()

    @rule(agent=st.sampled_from(AGENTS), timer_first=st.booleans())
    def agent_busy(self, agent: str, timer_first: bool) -> None:
        self.catch_up(timer_first)
        self.busy.add(agent)
        self.free_at.pop(agent, None)
        self.q.agent_busy(agent, self.now)
        actions = self.collect()
        assert agent not in self.rings
        assert all(agent not in a.agents for a in actions if isinstance(a, Ring))

    @rule(agent=st.sampled_from(AGENTS), timer_first=st.booleans())
    def agent_free(self, agent: str, timer_first: bool) -> None:
        self.catch_up(timer_first)
        if agent in self.busy:
            self.busy.discard(agent)
            self.free_at[agent] = self.idle_since[agent] = self.now + self.wrap_up
        self.q.agent_free(agent, self.now)
        self.collect()

    # -- invariants -------------------------------------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "q"):
            return
        q = self.q
        for group in GROUPS:
            assert q.queued(group) == tuple(c for c, g, _ in self.queue if g == group)
            assert q.members(group) == self.members.get(group, frozenset())
        for call, _, _ in self.queue:
            assert self.announced[call] == self.position(call)
            assert set(q.ringing(call)) == {a for a, (c, _) in self.rings.items() if c == call}
        for agent in AGENTS:
            state = q.agent_state(agent)
            if agent in self.rings:
                assert state is AgentState.RINGING and q.ringing_for(agent) == self.rings[agent][0]
                assert self.rings[agent][1] > self.seen, "a ring outlived its timeout"
            elif agent in self.busy:
                assert state is AgentState.BUSY
            elif agent in self.free_at and self.free_at[agent] > self.seen:
                assert state is AgentState.WRAP_UP
            elif state is not None:
                assert state is AgentState.IDLE
        timer = q.get_timer()
        assert timer is None or timer > self.seen

    @invariant()
    def work_conserving(self) -> None:
        if not hasattr(self, "q"):
            return
        q = self.q
        # No idle member sits unoffered while a caller of its group could take it.
        for call, group, strategy in self.queue:
            if strategy == "longest_idle" and q.ringing(call):
                continue
            for agent in self.members.get(group, frozenset()):
                if q.agent_state(agent) is AgentState.IDLE:
                    assert agent in q.tried(call), f"idle {agent} not offered to waiting {call}"


# Small and deterministic by default; HYPOTHESIS_PROFILE=long explores at random, far longer (STYLE rule 12).
_LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
AgentQueueModel.TestCase.settings = settings(
    max_examples=5000 if _LONG else 200,
    stateful_step_count=80 if _LONG else 50,
    deadline=None,
    derandomize=not _LONG,
    database=None,
)
test_agent_queue_model = AgentQueueModel.TestCase


class EqualAgents:
    """Drives a queue whose agents are equal: each answers within the ring timeout, in the order it was
    rung, and none declines, goes busy or leaves its group while ringing."""

    def __init__(self) -> None:
        self.q = AgentQueue(ring_timeout=RING)
        self.now = 0.0
        self.queue: list[tuple[str, str]] = []  # (call, group) in arrival order
        self.pending: list[tuple[str, str]] = []  # rings not yet answered, oldest first: (call, agent)
        self.connected: list[str] = []
        self.calls = 0

    def run(self, op: tuple[Any, ...]) -> None:
        now = self.now
        ringing = {agent for _, agent in self.pending}
        match op:
            case ("join", group, strategy):
                self.calls += 1
                self.queue.append((f"c{self.calls}", group))
                self.q.join(f"c{self.calls}", group, strategy, now)
            case ("leave", index) if self.queue:
                self.q.leave(self.queue.pop(index % len(self.queue))[0], now)
            case ("members", group, agents):
                self.q.members_changed(group, sorted(agents | (ringing & self.q.members(group))), now)
            case ("busy", agent) if agent not in ringing:
                self.q.agent_busy(agent, now)
            case ("free", agent):
                self.q.agent_free(agent, now)
            case ("answer",) if self.pending:
                self.q.ring_answered(*self.pending[0], now)
        self.now += 0.3  # sixty inputs stay inside one ring timeout
        while (action := self.q.next_action()) is not None:
            if isinstance(action, Ring):
                self.pending += [(action.call_id, agent) for agent in action.agents]
            elif isinstance(action, CancelRing):
                self.pending = [
                    (c, a) for c, a in self.pending if c != action.call_id or a not in action.agents
                ]
            elif isinstance(action, Connected):
                group = next(g for c, g in self.queue if c == action.call_id)
                head = next(c for c, g in self.queue if g == group)
                assert action.call_id == head, f"{action.call_id} connected before {head}"
                self.queue = [(c, g) for c, g in self.queue if c != action.call_id]
                self.pending = [(c, a) for c, a in self.pending if a != action.agent]
                self.connected.append(action.call_id)


EQUAL_AGENT_INPUTS = st.one_of(
    st.tuples(st.just("join"), st.sampled_from(GROUPS), STRATEGY),
    st.tuples(st.just("join"), st.sampled_from(GROUPS), STRATEGY),
    st.tuples(st.just("leave"), st.integers(0, 9)),
    st.tuples(st.just("members"), st.sampled_from(GROUPS), st.frozensets(st.sampled_from(AGENTS))),
    st.tuples(st.just("busy"), st.sampled_from(AGENTS)),
    st.tuples(st.just("free"), st.sampled_from(AGENTS)),
    st.just(("answer",)),
    st.just(("answer",)),
    st.just(("answer",)),
)


@settings(max_examples=2000 if _LONG else 300, deadline=None, derandomize=not _LONG, database=None)
@given(
    members=st.tuples(*(st.frozensets(st.sampled_from(AGENTS), min_size=1) for _ in GROUPS)),
    script=st.lists(EQUAL_AGENT_INPUTS, min_size=20, max_size=60),
)
def test_equal_agents_connect_each_group_in_arrival_order(
    members: tuple[frozenset[str], ...], script: list[tuple[Any, ...]]
) -> None:
    """With equal agents, a caller is connected only when every caller ahead of it in its group is gone."""
    driver = EqualAgents()
    for op in [("members", g, m) for g, m in zip(GROUPS, members, strict=True)] + script:
        driver.run(op)
