"""Per-direction media timeouts, hold, resumption and one-way audio, on a hand-driven clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media.timeout import (
    CallMediaWatch,
    FlowState,
    MediaEvent,
    MediaResumed,
    MediaTimedOut,
    MediaTimeout,
    OneWayAudio,
    TimeoutStateError,
)


def drain(machine: MediaTimeout | CallMediaWatch) -> list[MediaEvent]:
    events: list[MediaEvent] = []
    while (event := machine.next_event()) is not None:
        events.append(event)
    return events


def test_times_out_exactly_at_the_deadline() -> None:
    watch = MediaTimeout(5.0, now=0.0, direction="in")
    assert watch.get_timer() == 5.0
    watch.packet(1.0)
    assert watch.get_timer() == 6.0
    watch.handle_timer(5.999)
    assert watch.state is FlowState.FLOWING
    assert drain(watch) == []
    watch.handle_timer(6.0)
    assert watch.state is FlowState.TIMED_OUT
    assert drain(watch) == [MediaTimedOut("in", 1.0)]
    assert watch.get_timer() is None


def test_never_a_packet_still_times_out_from_the_start() -> None:
    watch = MediaTimeout(3.0, now=10.0)
    watch.handle_timer(13.0)
    assert drain(watch) == [MediaTimedOut("rtp", 10.0)]


def test_timeout_reported_once_per_silence() -> None:
    watch = MediaTimeout(2.0, now=0.0, direction="in")
    watch.handle_timer(2.0)
    watch.handle_timer(4.0)
    watch.handle_timer(100.0)
    assert drain(watch) == [MediaTimedOut("in", 0.0)]


def test_packet_resumes_and_rearms() -> None:
    watch = MediaTimeout(2.0, now=0.0, direction="in")
    watch.handle_timer(2.0)
    drain(watch)
    watch.packet(7.0)
    assert watch.state is FlowState.FLOWING
    assert drain(watch) == [MediaResumed("in")]
    assert watch.get_timer() == 9.0
    watch.handle_timer(9.0)
    assert drain(watch) == [MediaTimedOut("in", 7.0)]


def test_late_packet_after_missed_deadline_reports_the_silence() -> None:
    watch = MediaTimeout(2.0, now=0.0, direction="in")
    watch.packet(2.5)  # the timer never fired, yet the silence lasted the full timeout
    assert drain(watch) == [MediaTimedOut("in", 0.0), MediaResumed("in")]
    assert watch.get_timer() == 4.5


def test_packet_just_before_deadline_keeps_flowing() -> None:
    watch = MediaTimeout(2.0, now=0.0)
    watch.packet(1.999)
    watch.handle_timer(2.0)
    assert drain(watch) == []
    assert watch.state is FlowState.FLOWING


def test_hold_suppresses_timeout_and_resume_restarts_clock() -> None:
    watch = MediaTimeout(2.0, now=0.0, direction="in")
    watch.packet(1.0)
    watch.set_hold(True, 1.5)
    assert watch.state is FlowState.HELD
    assert watch.get_timer() is None
    watch.handle_timer(1000.0)
    assert drain(watch) == []
    watch.set_hold(False, 1000.0)
    assert watch.state is FlowState.FLOWING
    assert watch.get_timer() == 1002.0
    watch.handle_timer(1001.9)
    assert drain(watch) == []
    watch.handle_timer(1002.0)
    assert drain(watch) == [MediaTimedOut("in", 1000.0)]


def test_packets_while_held_do_not_resume_or_arm() -> None:
    watch = MediaTimeout(2.0, now=0.0)
    watch.handle_timer(2.0)
    watch.set_hold(True, 3.0)
    watch.packet(4.0)
    assert watch.state is FlowState.HELD
    assert drain(watch) == [MediaTimedOut("rtp", 0.0)]
    watch.set_hold(True, 5.0)  # repeated hold: no-op
    watch.set_hold(False, 6.0)
    watch.set_hold(False, 6.5)  # repeated resume: no-op, clock not moved again
    assert watch.get_timer() == 8.0


def test_hold_of_a_timed_out_direction() -> None:
    watch = MediaTimeout(2.0, now=0.0)
    watch.handle_timer(2.0)
    watch.set_hold(True, 3.0)
    watch.set_hold(False, 4.0)
    assert watch.state is FlowState.FLOWING
    assert drain(watch) == [MediaTimedOut("rtp", 0.0)]


def test_invalid_timeout_and_illegal_transition() -> None:
    with pytest.raises(ValueError):
        MediaTimeout(0.0, now=0.0)
    watch = MediaTimeout(1.0, now=0.0)
    watch.set_hold(True, 0.0)
    with pytest.raises(TimeoutStateError, match="HELD -> TIMED_OUT"):
        watch._set_state(FlowState.TIMED_OUT)


def test_call_reports_one_way_audio() -> None:
    call = CallMediaWatch(5.0, now=0.0, forward="a->b", backward="b->a")
    assert call.get_timer() == 5.0
    for i in range(1, 6):
        call.packet("a->b", float(i))
    call.handle_timer(5.0)
    assert drain(call) == [MediaTimedOut("b->a", 0.0), OneWayAudio("a->b", "b->a", 0.0)]
    call.packet("a->b", 6.0)
    assert drain(call) == []  # reported once per condition
    call.packet("b->a", 7.0)
    assert drain(call) == [MediaResumed("b->a")]
    # Now the other way round.
    call.packet("b->a", 11.0)
    call.handle_timer(11.0)
    assert drain(call) == [MediaTimedOut("a->b", 6.0), OneWayAudio("b->a", "a->b", 6.0)]


def test_call_both_directions_silent_is_not_one_way() -> None:
    call = CallMediaWatch(5.0, now=0.0)
    call.handle_timer(5.0)
    assert drain(call) == [MediaTimedOut("forward", 0.0), MediaTimedOut("backward", 0.0)]
    assert call.get_timer() is None


def test_call_resume_into_one_way() -> None:
    call = CallMediaWatch(5.0, now=0.0)
    call.handle_timer(5.0)
    drain(call)
    call.packet("forward", 8.0)
    assert drain(call) == [MediaResumed("forward"), OneWayAudio("forward", "backward", 0.0)]


def test_call_hold_is_not_one_way() -> None:
    call = CallMediaWatch(5.0, now=0.0)
    call.set_hold("backward", True, 0.5)
    for i in range(1, 20):
        call.packet("forward", float(i))
    call.handle_timer(20.0)
    assert drain(call) == []
    assert call.get_timer() == 24.0
    with pytest.raises(TimeoutStateError):
        call.packet("sideways", 21.0)
    with pytest.raises(ValueError):
        CallMediaWatch(5.0, now=0.0, forward="x", backward="x")


def test_packet_in_one_direction_does_not_hide_the_others_expiry() -> None:
    call = CallMediaWatch(2.0, now=0.0)
    call.packet("forward", 1.0)
    call.packet("forward", 2.5)  # backward's deadline (2.0) passed before this packet
    assert drain(call) == [MediaTimedOut("backward", 0.0), OneWayAudio("forward", "backward", 0.0)]


# --- a timeout per direction (a cloud leg's short one beside a phone's long one) ---------------------


def test_short_timeout_on_one_direction_fires_while_the_long_one_does_not() -> None:
    call = CallMediaWatch(30.0, now=0.0, forward="a", backward="b", timeouts={"b": 2.0})
    assert call.get_timer() == 2.0
    call.packet("b", 0.5)
    for i in range(1, 6):
        call.packet("a", float(i))  # the phone keeps talking; the cloud went silent at 0.5
    # a: the caller's direction still flows, so its silence is no fault: one-way audio, reported as such.
    assert drain(call) == [MediaTimedOut("b", 0.5), OneWayAudio("a", "b", 0.5)]
    assert call.directions["a"].state is FlowState.FLOWING
    call.handle_timer(34.999)
    assert drain(call) == []
    call.handle_timer(35.0)
    assert drain(call) == [MediaTimedOut("a", 5.0)]


def test_short_timeout_while_both_directions_are_silent() -> None:
    call = CallMediaWatch(30.0, now=0.0, forward="a", backward="b", timeouts={"b": 2.0})
    call.handle_timer(2.0)
    assert drain(call) == [MediaTimedOut("b", 0.0)]  # a's silence is still within its 30 s
    assert call.get_timer() == 30.0


def test_hold_suppresses_a_short_timeout() -> None:
    call = CallMediaWatch(30.0, now=0.0, forward="a", backward="b", timeouts={"b": 2.0})
    call.set_hold("b", True, 1.0)
    for i in range(1, 61):
        call.packet("a", float(i))  # music on hold one way, nothing from the held cloud
    assert drain(call) == []
    call.set_hold("b", False, 61.0)
    assert call.get_timer() == 63.0  # leaving hold restarts the short clock
    call.packet("a", 62.0)
    call.handle_timer(63.0)
    assert drain(call) == [MediaTimedOut("b", 61.0), OneWayAudio("a", "b", 61.0)]


def test_a_changed_timeout_applies_from_then_on() -> None:
    call = CallMediaWatch(30.0, now=0.0, forward="a", backward="b")
    call.packet("b", 4.0)
    call.set_timeout("b", 2.0, 5.0)  # silence since 4.0 is within the new timeout
    assert drain(call) == []
    assert call.directions["b"].get_timer() == 6.0
    call.set_timeout("b", 30.0, 5.5)  # lengthened again before it fired
    call.handle_timer(10.0)
    assert drain(call) == []
    call.set_timeout("b", 2.0, 10.0)  # silence already longer than the shortened timeout
    assert call.get_timer() == 6.0
    call.handle_timer(10.0)
    assert drain(call) == [MediaTimedOut("b", 4.0)]


def test_per_direction_timeouts_are_checked() -> None:
    with pytest.raises(ValueError, match="positive"):
        CallMediaWatch(30.0, now=0.0, timeouts={"backward": 0.0})
    with pytest.raises(ValueError, match="sideways"):
        CallMediaWatch(30.0, now=0.0, timeouts={"sideways": 2.0})
    call = CallMediaWatch(30.0, now=0.0)
    with pytest.raises(ValueError, match="positive"):
        call.set_timeout("forward", -1.0, 0.0)
    with pytest.raises(TimeoutStateError):
        call.set_timeout("sideways", 1.0, 0.0)


_actions = st.lists(
    st.tuples(
        st.sampled_from(["packet", "hold", "unhold", "timer"]),
        st.sampled_from(["forward", "backward"]),
        st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(actions=_actions, backward=st.sampled_from([0.5, 2.0, 5.0]))
def test_random_activity_never_raises_and_events_alternate(
    actions: list[tuple[str, str, float]], backward: float
) -> None:
    call = CallMediaWatch(2.0, now=0.0, timeouts={"backward": backward})
    timeouts = {"forward": 2.0, "backward": backward}
    now = 0.0
    last: dict[str, type | None] = {}
    for action, direction, dt in actions:
        now += dt
        was_held = call.directions[direction].state is FlowState.HELD
        if action == "packet":
            call.packet(direction, now)
        elif action in ("hold", "unhold"):
            call.set_hold(direction, action == "hold", now)
        else:
            call.handle_timer(now)
            timer = call.get_timer()
            assert timer is None or timer > now
        for event in drain(call):
            if isinstance(event, MediaResumed):
                # A resumption always follows a reported timeout of the same direction.
                assert last.get(event.direction) is MediaTimedOut
                last[event.direction] = MediaResumed
            elif isinstance(event, MediaTimedOut):
                # Once per silence: no second timeout without a resumption or a hold in between.
                assert last.get(event.direction) is not MediaTimedOut
                assert event.since + timeouts[event.direction] <= now
                last[event.direction] = MediaTimedOut
            else:
                assert event.flowing != event.silent
                assert call.directions[event.silent].state is FlowState.TIMED_OUT
                # The flowing direction did carry a packet within the silent one's timeout.
                assert now - call.directions[event.flowing].last_activity < timeouts[event.silent]
        if was_held != (call.directions[direction].state is FlowState.HELD):
            last[direction] = None  # a hold change ends one silence; the next may time out afresh
