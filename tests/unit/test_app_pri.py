"""The span wiring's pure parts: port slices, settings from documents, span events to the outbox (valid
against records.cddl) and the span metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

import cbor2
import pycddl
import pytest

from appliance.app_pri import span_plans, with_settings
from appliance.app_pri_events import SpanReporter, alarm_body, dchannel_body, restart_body
from appliance.app_pri_span import hw_span_config
from appliance.config import Config
from appliance.config.errors import ConfigError
from appliance.config.load import load_config_text
from appliance.config.spans import PORTS_PER_SPAN, SpanConfig, span_port_ranges
from appliance.metrics import Metrics
from appliance.metrics.pri import PriMetrics
from appliance.pri.q931_events import ChannelsRestarted, ProtocolFault
from appliance.sync.documents.span import SpanSettings
from hw.e1.alarms import Alarm, AlarmCleared, AlarmRaised
from hw.e1.errors import SpanConfigError
from tests.unit.test_metrics import value

RECORDS = Path(__file__).parents[2] / "appliance" / "calls" / "records.cddl"
T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z


def check(rule: str, body: Any) -> None:
    pycddl.Schema(f"root = {rule}\n" + RECORDS.read_text()).validate_cbor(cbor2.dumps(body))


# --- ports ----------------------------------------------------------------------------------------------


def test_each_span_takes_64_ports_from_the_top_and_the_media_workers_keep_the_rest() -> None:
    media, slices = span_port_ranges(20000, 29999, 2)
    assert slices == ((29936, 29999), (29872, 29935))
    assert media == (20000, 29871)
    assert all(low % 2 == 0 and high - low + 1 == PORTS_PER_SPAN for low, high in slices)


def test_an_even_top_port_is_left_out_so_that_every_slice_starts_even() -> None:
    media, slices = span_port_ranges(20000, 29998, 1)
    assert slices == ((29934, 29997),) and media == (20000, 29933)


def test_the_default_configuration_plans_span_1_at_the_top_of_the_default_range() -> None:
    media, (plan,) = span_plans(Config())
    assert plan.number == 1 and plan.ports == (29936, 29999) and media == (20000, 29935)


def test_no_spans_leave_the_whole_range_to_the_media_workers() -> None:
    media, plans = span_plans(load_config_text("spans = []\n"))
    assert media == (20000, 29999) and plans == ()


def test_a_range_too_small_for_the_spans_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text("[media]\nrtp_port_min = 20000\nrtp_port_max = 20099\nworkers = 20\n")
    assert "media.rtp_port_max" in str(err.value) and "64 per span" in str(err.value)
    load_config_text("[media]\nrtp_port_min = 20000\nrtp_port_max = 20099\nworkers = 18\n")  # 36 left
    load_config_text("spans = []\n[media]\nrtp_port_min = 20000\nrtp_port_max = 20019\n")


# --- settings -------------------------------------------------------------------------------------------


SETTINGS = SpanSettings("ccs", "ami", False, "network", 0, (1, 2, 3), "euroisdn")


def test_a_span_document_replaces_the_line_and_isdn_settings_but_not_the_numbering() -> None:
    span = SpanConfig(number=2, area_code="30")
    new = with_settings(span, SETTINGS)
    assert (new.number, new.area_code, new.driver) == (2, "30", "sim")
    assert (new.line_code, new.crc4, new.side, new.timing_priority, new.b_channels) == (
        "ami", False, "network", 0, (1, 2, 3),
    )  # fmt: skip
    hw = hw_span_config(new)
    assert hw.number == 2 and hw.side == "network" and hw.b_channels == (1, 2, 3) and hw.d_channel == 16


def test_cas_framing_cannot_run_pri() -> None:
    with pytest.raises(ValueError, match="ccs"):
        with_settings(SpanConfig(), SpanSettings("cas", "hdb3", True, "user", 1, (1,)))


def test_the_driver_refuses_what_the_configuration_should_have() -> None:
    with pytest.raises(SpanConfigError):
        hw_span_config(SpanConfig(b_channels=(16,)))


# --- bodies ---------------------------------------------------------------------------------------------


def test_alarm_bodies_say_when_it_was_raised_and_how_long_it_lasted() -> None:
    raised = alarm_body(AlarmRaised(1, Alarm.LOS, T0))
    check("span-alarm", raised)
    assert raised == {"span": 1, "alarm": "los", "state": "raised", "at": "2026-11-18T11:06:40.000Z"}
    cleared = alarm_body(AlarmCleared(1, Alarm.LOS, T0 + 12.5, since=T0))
    check("span-alarm", cleared)
    assert cleared["state"] == "cleared" and cleared["duration_s"] == 12.5
    assert cleared["raised_at"] == raised["at"] and cleared["at"] == "2026-11-18T11:06:52.500Z"


def test_dchannel_and_restart_bodies_are_valid() -> None:
    down = dchannel_body(3, False, "loss of signal", T0, None)
    check("span-dchannel", down)
    assert "down_s" not in down
    up = dchannel_body(3, True, "established", T0 + 2.25, T0)
    check("span-dchannel", up)
    assert up["down_s"] == 2.25
    body = restart_body(1, "peer", (17, 1, 2), T0)
    check("span-restart", body)
    assert body["channels"] == [1, 2, 17]


# --- the reporter ---------------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, Mapping[str, Any]]] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def append(self, event_type: str, body: Mapping[str, Any]) -> None:
        self.events.append((event_type, body))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))


def reporter(clock: list[float]) -> tuple[SpanReporter, Sink, Metrics]:
    metrics = Metrics(process_metrics=False)
    pri = PriMetrics()
    pri.register(metrics.registry)
    sink = Sink()
    r = SpanReporter(metrics=pri, append=sink.append, spawn=sink.spawn, wall=lambda: clock[0])
    r.add_span(1)
    return r, sink, metrics


async def test_span_events_reach_the_outbox_and_the_metrics() -> None:
    clock = [T0]
    r, sink, metrics = reporter(clock)
    assert value(metrics, "appliance_span_alarm", span="1", alarm="los") == 0
    assert value(metrics, "appliance_pri_dchannel_up", span="1") == 0
    r.span_event(AlarmRaised(1, Alarm.LOS, T0))
    assert value(metrics, "appliance_span_alarm", span="1", alarm="los") == 1
    r.span_event(AlarmCleared(1, Alarm.LOS, T0 + 1, since=T0))
    r.dchannel(1, True, "established")
    clock[0] += 5
    r.dchannel(1, False, "loss of signal")
    clock[0] += 2
    r.dchannel(1, True, "established")
    r.q931_event(1, ChannelsRestarted((1, 2), requested_by_peer=True))
    r.q931_event(1, ProtocolFault(None, 100, "bad channel identification"))
    r.q931_event(1, ProtocolFault(7, 100, "bad channel identification"))
    await asyncio.gather(*sink.tasks)
    kinds = [k for k, _ in sink.events]
    assert kinds == ["span.alarm", "span.alarm", "span.dchannel", "span.dchannel", "span.dchannel",
                     "span.restart"]  # fmt: skip
    for kind, body in sink.events:
        check(kind.replace(".", "-"), body)
    assert sink.events[4][1]["down_s"] == 2.0 and "down_s" not in sink.events[2][1]
    assert sink.events[5][1]["by"] == "peer"
    assert value(metrics, "appliance_span_alarm", span="1", alarm="los") == 0
    assert value(metrics, "appliance_span_alarm_changes_total", span="1", alarm="los") == 2
    assert value(metrics, "appliance_pri_dchannel_up", span="1") == 1
    assert value(metrics, "appliance_pri_dchannel_changes_total", span="1") == 3
    assert value(metrics, "appliance_span_restarts_total", span="1", reason="peer") == 1
    assert value(metrics, "appliance_pri_protocol_faults_total", span="1", cause="100") == 2


def test_span_metrics_refuse_what_a_caller_should_never_pass() -> None:
    pri = PriMetrics()
    with pytest.raises(ValueError):
        pri.alarm(1, "los", True)  # not added
    pri.add_span(1)
    for bad in (lambda: pri.alarm(1, "purple", True), lambda: pri.restart(1, "why"),
                lambda: pri.protocol_fault(1, 128), lambda: pri.set_errors(1, {"frobs": 1})):  # fmt: skip
        with pytest.raises(ValueError):
            bad()


def test_error_counters_never_go_down_across_a_driver_restart() -> None:
    metrics = Metrics(process_metrics=False)
    pri = PriMetrics()
    pri.register(metrics.registry)
    pri.add_span(2)
    pri.set_errors(2, {"crc4_errors": 5, "slips": 1})
    pri.set_calls(2, 7)
    assert value(metrics, "appliance_span_errors_total", span="2", counter="crc4_errors") == 5
    pri.retire_errors(2)
    pri.set_errors(2, {"crc4_errors": 2})
    assert value(metrics, "appliance_span_errors_total", span="2", counter="crc4_errors") == 7
    assert value(metrics, "appliance_span_errors_total", span="2", counter="slips") == 1
    assert value(metrics, "appliance_pri_calls", span="2") == 7


def test_the_snapshot_sums_the_spans_gauges() -> None:
    pri = PriMetrics()
    assert pri.snapshot() == {"pri_calls": 0, "spans_in_alarm": 0, "pri_dchannels_up": 0}
    for span in (1, 2):
        pri.add_span(span)
    pri.set_calls(1, 4)
    pri.set_calls(2, 3)
    pri.alarm(2, "los", True)
    pri.alarm(2, "rai", True)
    pri.dchannel(1, True)
    assert pri.snapshot() == {"pri_calls": 7, "spans_in_alarm": 1, "pri_dchannels_up": 1}
