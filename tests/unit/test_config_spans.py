"""appliance.config.spans: the [[spans]] tables, their defaults and every rule's message."""

from __future__ import annotations

import pytest

from appliance.config import Config, ConfigError, load_config_text
from appliance.config.spans import ALL_B_CHANNELS, SpanConfig


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    return [str(e) for e in info.value.errors]


def test_make_run_has_one_simulated_user_side_euroisdn_span() -> None:
    (span,) = Config().spans
    assert span == SpanConfig()
    assert (span.number, span.driver, span.side, span.switch_type) == (1, "sim", "user", "euroisdn")
    assert (span.framing, span.line_code, span.crc4) == ("ccs", "hdb3", True)
    assert span.b_channels == ALL_B_CHANNELS
    assert len(span.b_channels) == 30 and 16 not in span.b_channels and 0 not in span.b_channels


def test_spans_from_toml() -> None:
    config = load_config_text(
        '[[spans]]\nnumber = 1\n[[spans]]\nnumber = 2\nside = "network"\ndriver = "dahdi"\n'
        'b_channels = [1, 2, 3]\ntiming_priority = 0\nnumber_format = "unknown"\narea_code = "30"\n'
    )
    assert [s.number for s in config.spans] == [1, 2]
    second = config.spans[1]
    assert (second.side, second.driver, second.b_channels, second.timing_priority) == (
        "network",
        "dahdi",
        (1, 2, 3),
        0,
    )
    assert (second.number_format, second.area_code) == ("unknown", "30")


def test_the_announcement_bound_and_the_trace_are_per_span() -> None:
    assert (SpanConfig().announcement_timeout, SpanConfig().trace) == (30.0, False)  # T306's value; no trace
    config = load_config_text("[[spans]]\nannouncement_timeout = 12\ntrace = true\n[[spans]]\nnumber = 2\n")
    assert [(s.announcement_timeout, s.trace) for s in config.spans] == [(12.0, True), (30.0, False)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "b_channels = [16]",
            "spans[0].b_channels[0]: expected a timeslot from 1 to 31 other than 16, got 16",
        ),
        ("b_channels = [0]", "spans[0].b_channels[0]: expected a timeslot from 1 to 31 other than 16, got 0"),
        ("b_channels = [1, 2, 1]", "spans[0].b_channels[2]: expected a timeslot listed once, got 1"),
        ("b_channels = []", "spans[0].b_channels: at least one B-channel is required"),
        ('framing = "cas"', 'spans[0].framing: only "ccs" is supported'),
        ('side = "both"', "spans[0].side: expected"),
        ("number = 0", "spans[0].number: expected an integer from 1 to 255, got 0"),
        ('area_code = "3O"', 'spans[0].area_code: expected up to 8 digits (or empty), got "3O"'),
        ("timing_priority = 32", "spans[0].timing_priority: expected"),
        (
            "announcement_timeout = 0.5",
            "spans[0].announcement_timeout: expected a number of seconds from 1 to 300",
        ),
        (
            "announcement_timeout = 301",
            "spans[0].announcement_timeout: expected a number of seconds from 1 to 300",
        ),
        (
            "announcement_timeout = nan",
            "spans[0].announcement_timeout: expected a number of seconds from 1 to 300",
        ),
        ('trace = "yes"', "spans[0].trace: expected"),
    ],
)
def test_bad_span_settings_are_named_precisely(body: str, message: str) -> None:
    issues = issues_of(f"[[spans]]\n{body}\n")
    assert any(issue.startswith(message) for issue in issues), issues


def test_span_numbers_are_unique() -> None:
    issues = issues_of("[[spans]]\nnumber = 3\n[[spans]]\nnumber = 3\n")
    assert issues == ["spans[1].number: expected a unique span number (also spans[0]), got 3 (integer)"]
