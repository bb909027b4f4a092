"""The span configuration checks and the counters snapshot."""

from __future__ import annotations

from typing import Any

import pytest

from hw.e1.errors import SpanConfigError
from hw.e1.links import B_TIMESLOTS
from hw.e1.model import SpanConfig, SpanCounters


def test_default_span_is_a_euroisdn_user_side_pri_with_30_b_channels() -> None:
    config = SpanConfig()
    assert (config.number, config.framing, config.line_code, config.crc4) == (1, "ccs", "hdb3", True)
    assert (config.side, config.switch_type, config.d_channel) == ("user", "euroisdn", 16)
    assert config.b_channels == B_TIMESLOTS
    assert len(config.b_channels) == 30
    assert 16 not in config.b_channels
    assert config.timing_source_candidate


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"number": 0}, "span number 0: a span is numbered 1 to 255"),
        ({"number": 256}, "span number 256"),
        ({"framing": "d4"}, "span 1: framing is 'ccs' or 'cas', not 'd4'"),
        ({"line_code": "b8zs"}, "span 1: line_code is 'hdb3' or 'ami', not 'b8zs'"),
        ({"side": "both"}, "span 1: side is 'user' or 'network', not 'both'"),
        ({"switch_type": "ni2"}, "span 1: switch_type is 'euroisdn', not 'ni2'"),
        ({"crc4": 1}, "span 1: crc4 is true or false, not 1"),
        ({"timing_priority": -1}, "span 1: timing_priority -1 is not 0 (never a clock source) to 31"),
        ({"timing_priority": 32}, "timing_priority 32"),
        ({"lbo": 3}, "span 1: lbo 3: an E1 span has no line build-out (0)"),
        ({"b_channels": ()}, "span 1: b_channels is empty"),
        ({"b_channels": (1, 16)}, "span 1: b_channels: timeslot 16 is never a B-channel (G.704 §5)"),
        ({"b_channels": (0,)}, "span 1: b_channels: timeslot 0 is not 1-15 or 17-31"),
        ({"b_channels": (32,)}, "timeslot 32 is not 1-15 or 17-31"),
        ({"b_channels": (1, 2, 1)}, "span 1: b_channels: timeslot 1 is listed twice"),
        ({"d_channel": 15}, "span 1: d_channel 15: a CCS span signals on timeslot 16"),
        ({"d_channel": None}, "d_channel None: a CCS span signals on timeslot 16"),
        ({"framing": "cas"}, "span 1: d_channel 16: a CAS span has no D-channel"),
    ],
)
def test_invalid_configuration_is_refused_naming_the_setting(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpanConfigError) as caught:
        SpanConfig(**changes)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_cas_span_without_d_channel_and_a_partial_span_are_valid() -> None:
    cas = SpanConfig(number=2, framing="cas", d_channel=None, line_code="ami", crc4=False, timing_priority=0)
    assert not cas.timing_source_candidate
    fractional = SpanConfig(b_channels=(1, 2, 3, 17))
    assert fractional.b_channels == (1, 2, 3, 17)


def test_counters_add_field_by_field() -> None:
    a = SpanCounters(crc4_errors=1, bipolar_violations=2, fas_errors=3, e_bit_errors=4, slips=5, irq_misses=6)
    b = SpanCounters(crc4_errors=10, slips=1)
    total = a + b
    assert total == SpanCounters(
        crc4_errors=11, bipolar_violations=2, fas_errors=3, e_bit_errors=4, slips=6, irq_misses=6
    )
