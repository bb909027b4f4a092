"""The timing-source selector: best good span by priority, fallback, internal clock, revert."""

from __future__ import annotations

import pytest

from hw.e1.errors import SpanConfigError
from hw.e1.timing import TimingSelector, TimingSourceChanged


def drain(selector: TimingSelector) -> list[tuple[int | None, int | None]]:
    events: list[tuple[int | None, int | None]] = []
    while (event := selector.next_event()) is not None:
        assert isinstance(event, TimingSourceChanged)
        events.append((event.previous, event.source))
    return events


def test_highest_priority_good_span_times_the_box_with_fallback_and_revert() -> None:
    # span 1 first choice, span 2 second, span 3 never a source
    selector = TimingSelector({1: 1, 2: 2, 3: 0}, wall=lambda: 42.0)
    assert selector.source is None  # every span in alarm until told otherwise: internal clock
    selector.span_status(3, True)
    assert selector.source is None
    selector.span_status(2, True)
    assert selector.source == 2
    selector.span_status(1, True)
    assert selector.source == 1
    selector.span_status(1, False)  # the source goes into alarm: next one
    assert selector.source == 2
    selector.span_status(2, False)  # none left: internal
    assert selector.source is None
    selector.span_status(2, True)
    selector.span_status(1, True)  # the better one clears: revert
    assert selector.source == 1
    assert drain(selector) == [(None, 2), (2, 1), (1, 2), (2, None), (None, 2), (2, 1)]


def test_events_carry_the_wall_clock_and_unchanged_reports_are_silent() -> None:
    selector = TimingSelector({1: 1}, wall=lambda: 42.0)
    selector.span_status(1, True)
    selector.span_status(1, True)
    assert selector.next_event() == TimingSourceChanged(1, None, 42.0)
    assert selector.next_event() is None


def test_equal_priorities_go_to_the_lower_span_number() -> None:
    selector = TimingSelector({4: 1, 2: 1}, wall=lambda: 0.0)
    selector.span_status(4, True)
    selector.span_status(2, True)
    assert selector.source == 2


def test_unknown_span_and_negative_priority_are_refused() -> None:
    with pytest.raises(SpanConfigError):
        TimingSelector({1: -1}, wall=lambda: 0.0)
    with pytest.raises(SpanConfigError):
        TimingSelector({1: 1}, wall=lambda: 0.0).span_status(9, True)


def test_a_new_priority_chooses_the_source_again_with_an_event_when_it_changes() -> None:
    selector = TimingSelector({1: 1, 2: 2}, wall=lambda: 7.0)
    selector.span_status(1, True)
    selector.span_status(2, True)
    assert selector.source == 1 and drain(selector) == [(None, 1)]
    selector.set_priority(2, 1)  # a tie: the lower span number keeps it, nothing to report
    assert selector.source == 1 and drain(selector) == []
    selector.set_priority(1, 3)  # span 1 is now the second choice: span 2 takes the clock
    assert selector.source == 2 and selector.priority(1) == 3
    assert selector.next_event() == TimingSourceChanged(2, 1, 7.0)
    selector.set_priority(2, 0)  # never a source: back to span 1
    selector.set_priority(1, 0)  # neither: the internal clock
    assert selector.source is None and drain(selector) == [(2, 1), (1, None)]
    selector.set_priority(1, 0)  # unchanged: silent
    assert drain(selector) == []


def test_a_priority_for_an_unknown_span_or_below_0_is_refused() -> None:
    selector = TimingSelector({1: 1}, wall=lambda: 0.0)
    with pytest.raises(SpanConfigError, match="not known"):
        selector.set_priority(2, 1)
    with pytest.raises(SpanConfigError, match="below 0"):
        selector.set_priority(1, -1)
    assert selector.priority(1) == 1
