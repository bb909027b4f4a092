"""The local agent queue, driven by hand with an injected clock."""

from __future__ import annotations

import logging

import pytest

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


# -- longest_idle ------------------------------------------------------------------------------------------


def test_longest_idle_rings_the_agent_idle_longest_counting_wrap_up() -> None:
    q = AgentQueue(ring_timeout=RING, wrap_up=30.0)
    q.members_changed("support", ["a1", "a2", "a3"], 0.0)
    for agent, end in (("a1", 100.0), ("a2", 60.0), ("a3", 80.0)):
        q.agent_busy(agent, 0.0)
        q.agent_free(agent, end)
    assert q.agent_state("a2") is AgentState.WRAP_UP
    # idle since 90 (a2), 110 (a3), 130 (a1): all wrap-ups over by 200.
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
    q.agent_free("ghost", 1.0)  # an agent never reported: its call ended, now idle
    assert q.agent_state("ghost") is AgentState.IDLE


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
