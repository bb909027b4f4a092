"""Structured logging: JSON lines, context fields per call/task, the per-call SIP trace."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from appliance.logs import (
    TRACE_LOGGER,
    SipTrace,
    bind,
    current_context,
    log_context,
    setup_logging,
)

CLOCK = 1_700_000_000.25  # 2023-11-14T22:13:20.25Z


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Leave the process-wide logging configuration as it was found."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    trace = logging.getLogger(TRACE_LOGGER)
    trace_level = trace.level
    yield
    for h in root.handlers:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    trace.setLevel(trace_level)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n") or text == ""
    return [json.loads(line) for line in text.splitlines()]


def setup(level: str = "debug") -> io.StringIO:
    stream = io.StringIO()
    setup_logging(level, "json", stream=stream, clock=lambda: CLOCK)
    return stream


def test_json_line_has_timestamp_level_logger_and_message() -> None:
    stream = setup()
    logging.getLogger("appliance.sip.endpoint").warning("listening on %s:%d", "127.0.0.1", 5060)
    [line] = json_lines(stream)
    assert line == {
        "ts": "2023-11-14T22:13:20.250000Z",
        "level": "WARNING",
        "logger": "appliance.sip.endpoint",
        "msg": "listening on 127.0.0.1:5060",
    }
    assert list(line) == ["ts", "level", "logger", "msg"]


def test_record_time_is_used_without_an_injected_clock() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream=stream)
    record = logging.LogRecord("appliance.x", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 0.5
    logging.getLogger("appliance.x").handle(record)
    assert json_lines(stream)[0]["ts"] == "1970-01-01T00:00:00.500000Z"


def test_level_filters_records() -> None:
    stream = setup("warning")
    log = logging.getLogger("appliance.calls")
    log.info("not shown")
    log.debug("not shown")
    log.error("shown")
    assert [line["msg"] for line in json_lines(stream)] == ["shown"]


def test_context_fields_nest_and_are_restored() -> None:
    stream = setup()
    log = logging.getLogger("appliance.calls")
    with log_context(call="c-1", peer="127.0.0.5:5060"):
        log.info("a")
        with log_context(txn="z9hG4bK-1", peer=None):
            log.info("b")
        log.info("c")
    log.info("d")
    a, b, c, d = json_lines(stream)
    assert (a["call"], a["peer"]) == ("c-1", "127.0.0.5:5060")
    assert b["call"] == "c-1"
    assert b["txn"] == "z9hG4bK-1"
    assert "peer" not in b
    assert c == {**a, "msg": "c"}
    assert "call" not in d
    assert current_context() == {}


def test_extra_ctx_fields_appear_and_win_over_the_context() -> None:
    stream = setup()
    with log_context(call="c-1", span=1):
        logging.getLogger("appliance.pri").info("setup", extra={"ctx": {"span": 2, "cause": 16}})
    [line] = json_lines(stream)
    assert (line["call"], line["span"], line["cause"]) == ("c-1", 2, 16)


def test_fields_may_not_overwrite_the_line_structure() -> None:
    stream = setup()
    with log_context(level="spoofed", msg="also"):
        logging.getLogger("appliance.x").info("real")
    [line] = json_lines(stream)
    assert (line["level"], line["msg"]) == ("INFO", "real")
    assert (line["ctx.level"], line["ctx.msg"]) == ("spoofed", "also")


def test_unserialisable_values_are_written_as_text() -> None:
    stream = setup()
    logging.getLogger("appliance.x").info("x", extra={"ctx": {"addr": ("127.0.0.1", 5060), "obj": object()}})
    [line] = json_lines(stream)
    assert line["addr"] == ["127.0.0.1", 5060]
    assert str(line["obj"]).startswith("<object object")


def test_exceptions_are_one_line_with_the_traceback() -> None:
    stream = setup()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("appliance.x").exception("failed")
    [line] = json_lines(stream)
    assert line["msg"] == "failed"
    assert "RuntimeError: boom" in str(line["exc"])
    assert stream.getvalue().count("\n") == 1


async def test_bind_is_per_task_and_captured_when_emitted() -> None:
    stream = setup()
    log = logging.getLogger("appliance.calls")
    first_logged = asyncio.Event()

    async def call(call_id: str, wait: asyncio.Event | None) -> None:
        bind(call=call_id)
        if wait is not None:
            await wait.wait()
        log.info("answered")
        first_logged.set()

    await asyncio.gather(call("c-2", first_logged), call("c-1", None))
    lines = json_lines(stream)
    assert [line["call"] for line in lines] == ["c-1", "c-2"]
    assert "call" not in current_context()


def test_text_format_for_the_console() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "text", stream=stream, clock=lambda: CLOCK)
    with log_context(call="c-1"):
        logging.getLogger("appliance.wan").info("mode %s -> %s", "ONLINE", "SUSPECT")
    assert stream.getvalue() == (
        "2023-11-14T22:13:20.250000Z INFO appliance.wan: mode ONLINE -> SUSPECT call=c-1\n"
    )


def test_setup_twice_replaces_instead_of_duplicating() -> None:
    first = setup()
    second = setup()
    logging.getLogger("appliance.x").info("once")
    assert first.getvalue() == ""
    assert len(json_lines(second)) == 1


def test_invalid_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        setup_logging("loud", "json", stream=io.StringIO())
    with pytest.raises(ValueError, match="format"):
        setup_logging("info", "xml", stream=io.StringIO())  # type: ignore[arg-type]


INVITE = (
    "INVITE sip:100@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bK-1\r\n"
    "Call-ID: a84b4c76e66710\r\n"
    "Content-Length: 0\r\n\r\n"
)


def test_trace_records_only_the_enabled_call() -> None:
    stream = setup("info")
    trace = SipTrace()
    assert not trace.enabled("c-1")
    trace.enable("c-1")
    assert trace.enabled("c-1")
    assert not trace.enabled("c-2")
    assert not trace.enabled(None)
    trace.record("c-1", "in", ("127.0.0.5", 5060), "udp", INVITE.encode())
    trace.record("c-2", "in", ("127.0.0.6", 5060), "udp", INVITE.encode())
    trace.record("c-1", "out", ("::1", 5061), "tcp", "SIP/2.0 100 Trying\r\n\r\n")
    first, second = json_lines(stream)
    assert first == {
        "ts": "2023-11-14T22:13:20.250000Z",
        "level": "INFO",
        "logger": "appliance.sip.trace",
        "msg": INVITE,
        "call": "c-1",
        "dir": "in",
        "peer": "127.0.0.5:5060",
        "transport": "udp",
    }
    assert (second["dir"], second["peer"], second["transport"]) == ("out", "[::1]:5061", "tcp")
    assert second["msg"] == "SIP/2.0 100 Trying\r\n\r\n"


def test_trace_all_calls_and_switch_off() -> None:
    stream = setup("info")
    trace = SipTrace()
    trace.enable_all(True)
    assert trace.enabled("anything")
    assert trace.enabled(None)
    trace.record(None, "in", "127.0.0.7:5060", "udp", b"garbage \xff\r\n")
    trace.enable_all(False)
    trace.record("c-3", "in", "127.0.0.7:5060", "udp", INVITE)
    [line] = json_lines(stream)
    assert line["call"] is None
    assert line["msg"] == "garbage \\xff\r\n"


def test_trace_disable_and_bounded_call_set() -> None:
    trace = SipTrace(max_calls=3)
    for i in range(5):
        trace.enable(f"c-{i}")
    assert trace.traced_calls == {"c-2", "c-3", "c-4"}
    trace.enable("c-2")  # re-enabling makes it the newest
    trace.enable("c-5")
    assert trace.traced_calls == {"c-2", "c-4", "c-5"}
    trace.disable("c-4")
    trace.disable("never-traced")
    assert not trace.enabled("c-4")
    assert trace.traced_calls == {"c-2", "c-5"}


def test_trace_appears_even_when_the_appliance_logs_only_warnings() -> None:
    stream = setup("warning")
    trace = SipTrace()
    trace.enable("c-1")
    trace.record("c-1", "in", ("127.0.0.5", 5060), "udp", INVITE)
    logging.getLogger("appliance.sip").info("not shown")
    assert [line["logger"] for line in json_lines(stream)] == [TRACE_LOGGER]


def test_trace_rejects_a_bad_direction() -> None:
    trace = SipTrace()
    trace.enable_all(True)
    with pytest.raises(ValueError, match="direction"):
        trace.record("c-1", "sideways", ("127.0.0.5", 5060), "udp", INVITE)  # type: ignore[arg-type]
