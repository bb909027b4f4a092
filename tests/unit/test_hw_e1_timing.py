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
