"""Outbox priorities and disk quota: thinning of metric events, refusals, pressure alarms with hysteresis."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from appliance.store import (
    Database,
    LocalProtocolError,
    Outbox,
    OutboxFullError,
    Pressure,
    Priority,
    priority_of,
)
from appliance.store.outbox_quota import (
    PRESSURE_EVENT,
    ROW_OVERHEAD_BYTES,
    SAMPLE_EVERY,
    Admission,
    Admitter,
    next_pressure,
    row_bytes,
)
from tests.unit.test_store_outbox import opened
from tests.unit.test_store_outbox_feed import make_outbox as feed_outbox

SETTINGS = settings(
    max_examples=int(os.environ.get("APPLIANCE_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # each example opens its own database
)
BODY: dict[str, Any] = {"v": "x" * 40}
ROW = row_bytes(len(cbor2.dumps(BODY, canonical=True)))
QUOTA = 100 * ROW


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with opened(tmp_path / "appliance.db") as database:
        yield database


def make_outbox(db: Database, quota_bytes: int | None = QUOTA) -> Outbox:
    return feed_outbox(db, quota_bytes)


@pytest.mark.parametrize(
    ("event_type", "priority"),
    [
        ("call.record", Priority.CRITICAL),
        ("ivr.voicemail", Priority.CRITICAL),
        ("ivr.callback", Priority.CRITICAL),
        ("ivr.survey", Priority.CRITICAL),
        ("ivr.session", Priority.CRITICAL),
        ("mode.changed", Priority.NORMAL),
        ("outbox.pressure", Priority.NORMAL),
        ("appliance.started", Priority.NORMAL),
        ("config.applied", Priority.NORMAL),
        ("calls", Priority.NORMAL),  # a prefix is a whole first component
        ("metrics.snapshot", Priority.BULK),
    ],
)
def test_priority_of(event_type: str, priority: Priority) -> None:
    assert priority_of(event_type) is priority


@pytest.mark.parametrize(
    ("current", "percent", "expected"),
    [
        (Pressure.NORMAL, 79, Pressure.NORMAL),
        (Pressure.NORMAL, 80, Pressure.THINNING),
        (Pressure.THINNING, 75, Pressure.THINNING),  # hysteresis: back to normal only below 70 %
        (Pressure.THINNING, 70, Pressure.THINNING),
        (Pressure.THINNING, 69, Pressure.NORMAL),
        (Pressure.THINNING, 99, Pressure.THINNING),
        (Pressure.NORMAL, 100, Pressure.FULL),
        (Pressure.FULL, 95, Pressure.FULL),  # back to thinning only below 90 %
        (Pressure.FULL, 89, Pressure.THINNING),
        (Pressure.FULL, 72, Pressure.THINNING),
        (Pressure.FULL, 10, Pressure.NORMAL),
    ],
)
def test_pressure_levels_have_hysteresis(current: Pressure, percent: int, expected: Pressure) -> None:
    assert next_pressure(current, percent * 100, 10_000) is expected
    assert next_pressure(current, 10**12, None) is Pressure.NORMAL  # no quota, no pressure


@SETTINGS
@given(st.lists(st.integers(min_value=0, max_value=12_000), max_size=60))
def test_level_changes_only_across_the_band_edges(walk: list[int]) -> None:
    quota, level = 10_000, Pressure.NORMAL
    for held in walk:
        new = next_pressure(level, held, quota)
        if new is not level:
            # Each change is justified by a threshold, never by noise inside a band.
            if new is Pressure.FULL:
                assert held >= quota
            elif new is Pressure.NORMAL:
                assert held < 0.7 * quota
            elif level is Pressure.NORMAL:
                assert held >= 0.8 * quota
            else:
                assert held < 0.9 * quota
        level = new
        assert level is next_pressure(level, held, quota)  # stable: asking again changes nothing


def test_bulk_events_are_sampled_one_in_n_per_type() -> None:
    admitter = Admitter()
    thinning = {"level": Pressure.THINNING, "held": 8_500, "quota": 10_000}
    kept = [admitter.admit("metrics.a", 1, **thinning) is Admission.KEEP for _ in range(3 * SAMPLE_EVERY)]
    assert [n for n, k in enumerate(kept) if k] == [0, SAMPLE_EVERY, 2 * SAMPLE_EVERY]
    assert admitter.admit("metrics.b", 1, **thinning) is Admission.KEEP  # each type sampled on its own
    assert admitter.thinned == {"critical": 0, "normal": 0, "bulk": 3 * SAMPLE_EVERY - 3}
    normal = {"level": Pressure.NORMAL, "held": 0, "quota": 10_000}
    assert admitter.admit("metrics.a", 1, **normal) is Admission.KEEP


def test_admission_by_priority_when_full() -> None:
    admitter = Admitter()
    full = {"level": Pressure.FULL, "held": 10_500, "quota": 10_000}
    assert admitter.admit("metrics.a", 1, **full) is Admission.REFUSE
    assert admitter.admit("mode.changed", 100, **full) is Admission.KEEP
    assert admitter.admit("mode.changed", 600, **full) is Admission.REFUSE  # past the 110 % ceiling
    assert admitter.admit("call.record", 10**6, **full) is Admission.KEEP
    assert admitter.admit("anything", 10**9, level=Pressure.NORMAL, held=0, quota=None) is Admission.KEEP
    # A burst accepted but not yet written counts: at 99.9 % an event that would fill the quota is refused.
    assert (
        admitter.admit("metrics.a", 20, level=Pressure.THINNING, held=9_990, quota=10_000) is Admission.REFUSE
    )
    assert admitter.refused == {"critical": 0, "normal": 1, "bulk": 2}
    with pytest.raises(ValueError):
        Admitter(sample_every=0)


async def pressure_events(outbox: Outbox) -> list[dict[str, Any]]:
    return [dict(e.body) for e in await outbox.read_after(0, 10_000) if e.type == PRESSURE_EVENT]


async def test_quota_thins_then_refuses_metrics_and_raises_alarms_once(db: Database) -> None:
    outbox = make_outbox(db)
    results = [await outbox.append_bulk("metrics.snapshot", BODY) for _ in range(79)]
    assert all(r is not None for r in results)
    assert (await outbox.stats()).pressure == "normal"
    # The 80th reaches 80 %: it is written (1st of its sample) with the alarm in the same transaction.
    assert await outbox.append_bulk("metrics.snapshot", BODY) is not None
    stats = await outbox.stats()
    assert stats.pressure == "thinning"
    assert await pressure_events(outbox) == [
        {"level": "thinning", "bytes": 80 * ROW, "quota_bytes": QUOTA, "pending": 81}
    ]
    alarm_row = stats.bytes - 80 * ROW
    assert alarm_row == row_bytes(len(cbor2.dumps((await pressure_events(outbox))[0], canonical=True)))
    kept = [await outbox.append_bulk("metrics.snapshot", BODY) is not None for _ in range(2 * SAMPLE_EVERY)]
    assert kept == ([False] * (SAMPLE_EVERY - 1) + [True]) * 2
    assert (await outbox.stats()).thinned["bulk"] == 2 * (SAMPLE_EVERY - 1)
    # NORMAL and CRITICAL events are never thinned; they take the outbox to full.
    while (await outbox.stats()).pressure != "full":
        await outbox.append("mode.changed", BODY)
    assert [e["level"] for e in await pressure_events(outbox)] == ["thinning", "full"]
    assert await outbox.append_bulk("metrics.snapshot", BODY) is None
    refused_before = (await outbox.stats()).refused["bulk"]
    assert refused_before >= 1
    # NORMAL up to the 110 % ceiling, then refused with an error; CRITICAL always.
    with pytest.raises(OutboxFullError) as info:
        for _ in range(20):
            await outbox.append("mode.changed", BODY)
    assert info.value.status == 507
    stats = await outbox.stats()
    assert QUOTA < stats.bytes <= 1.1 * QUOTA and stats.refused["normal"] == 1
    for _ in range(30):
        await outbox.append("call.record", BODY)
        await outbox.append("ivr.voicemail", BODY)
    assert (await outbox.stats()).bytes > 1.5 * QUOTA
    assert [e["level"] for e in await pressure_events(outbox)] == ["thinning", "full"]  # once per crossing


async def test_acknowledging_clears_the_alarm_below_seventy_percent(db: Database) -> None:
    outbox = make_outbox(db)
    for _ in range(85):
        await outbox.append("call.record", BODY)
    assert (await outbox.stats()).pressure == "thinning"  # the alarm is event 81
    await outbox.acknowledge(10)  # 75 events + the alarm: still above 70 %
    assert (await outbox.stats()).pressure == "thinning"
    await outbox.acknowledge(20)
    stats = await outbox.stats()
    assert stats.pressure == "normal"
    events = await outbox.read_after(0, 1000)
    assert events[-1].type == PRESSURE_EVENT and events[-1].seq == 87 == stats.last_seq
    cleared = events[-1].body
    assert (cleared["level"], cleared["pending"], cleared["quota_bytes"]) == ("normal", 67, QUOTA)
    assert 65 * ROW < cleared["bytes"] < 0.7 * QUOTA  # 65 records and the first alarm
    assert await outbox.wait_for_append(86, 0.0)  # the cleared event wakes a long poll like any other


async def test_the_level_survives_a_restart_without_repeating_the_alarm(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    db = await Database.open(path)
    outbox = make_outbox(db)
    for _ in range(90):
        await outbox.append("call.record", BODY)
    await outbox.acknowledge(15)  # 75 events + the alarm: between 70 and 80 %, still thinning
    await db.close()
    db = await Database.open(path)
    try:
        outbox = make_outbox(db)
        assert (await outbox.stats()).pressure == "thinning"
        await outbox.append("call.record", BODY)
        assert [e["level"] for e in await pressure_events(outbox)] == ["thinning"]
        await outbox.acknowledge(40)
        assert [e["level"] for e in await pressure_events(outbox)] == ["thinning", "normal"]
        # The quota lifted by configuration: the next write says so.
        unlimited = make_outbox(db, quota_bytes=None)
        await unlimited.acknowledge(41)
        assert (await unlimited.stats()).pressure == "normal"
    finally:
        await db.close()


async def test_append_takes_only_non_bulk_types_and_append_bulk_only_bulk(db: Database) -> None:
    outbox = make_outbox(db)
    with pytest.raises(LocalProtocolError, match="append_bulk"):
        await outbox.append("metrics.snapshot", {})
    with pytest.raises(LocalProtocolError, match="is not a bulk event type"):
        await outbox.append_bulk("call.record", {})
    with pytest.raises(LocalProtocolError, match="append_bulk"):
        await outbox.append_many([("mode.changed", {}), ("metrics.snapshot", {})])
    with pytest.raises(LocalProtocolError):
        Outbox(db, quota_bytes=0)
    assert await outbox.last_seq() == 0
    assert row_bytes(0) == ROW_OVERHEAD_BYTES


async def test_append_many_is_refused_whole_past_the_ceiling(db: Database) -> None:
    outbox = make_outbox(db)
    await outbox.append_many([("call.record", BODY)] * 105)
    with pytest.raises(OutboxFullError):
        await outbox.append_many([("mode.changed", BODY)] * 10)
    events = await outbox.append_many([("mode.changed", BODY)] * 3)
    assert [e.seq for e in events] == [107, 108, 109]  # 105 records, then the "full" alarm at 106


appends = st.tuples(
    st.sampled_from(["call.record", "ivr.callback", "mode.changed", "metrics.snapshot", "metrics.calls"]),
    st.integers(300, 1000),
)
operations = st.lists(
    st.one_of(
        appends,
        appends,
        st.tuples(st.just("ack"), st.floats(0.0, 1.0)),
        st.tuples(st.just("burst"), st.integers(1, 40)),  # concurrent appends, group-committed
    ),
    min_size=5,
    max_size=80,
)


async def offer(outbox: Outbox, event_type: str, body: dict[str, Any]) -> bool:
    """Append as a producer would; False only if refused or thinned as its priority allows."""
    if priority_of(event_type) is Priority.BULK:
        stored = await outbox.append_bulk(event_type, body)
        return stored is None or stored.type == event_type
    try:
        stored = await outbox.append(event_type, body)
    except OutboxFullError:
        return priority_of(event_type) is Priority.NORMAL  # CRITICAL events are never refused
    return stored.type == event_type


@SETTINGS
@given(ops=operations, rows=st.integers(20, 50))
async def test_counters_and_alarms_follow_any_sequence_of_appends_and_acks(
    tmp_path: Path, ops: list[tuple[str, Any]], rows: int
) -> None:
    quota = rows * ROW
    path = tmp_path / f"q-{os.urandom(6).hex()}.db"
    async with opened(path) as db:
        outbox = make_outbox(db, quota)
        seen_levels, read_upto = ["normal"], 0
        for op, arg in ops:
            if op == "burst":
                kinds = itertools.cycle(["metrics.snapshot", "call.record", "mode.changed"])
                burst = [offer(outbox, next(kinds), {"pad": "p" * 400}) for _ in range(arg)]
                assert all(await asyncio.gather(*burst))
            elif op == "ack":
                stats = await outbox.stats()
                await outbox.acknowledge(stats.acked_seq + round(arg * stats.pending))
            else:
                assert await offer(outbox, op, {"pad": "p" * arg})
            for raw in await outbox.read_raw_after(read_upto, 1000):  # what a cloud would see
                read_upto = raw.seq
                if raw.type == PRESSURE_EVENT:
                    level = cbor2.loads(raw.body)["level"]
                    assert level != seen_levels[-1]  # one event per change of level, never a repeat
                    seen_levels.append(level)
            stats = await outbox.stats()
            held = await outbox.read_raw_after(stats.acked_seq, 10_000)
            assert [e.seq for e in held] == list(range(stats.acked_seq + 1, stats.last_seq + 1))
            assert stats.bytes == sum(row_bytes(len(e.body)) for e in held)
            assert stats.pressure == seen_levels[-1]
            assert next_pressure(Pressure(stats.pressure), stats.bytes, quota) is Pressure(stats.pressure)
            if stats.pressure == "normal":
                assert stats.bytes < 0.8 * quota
        event(f"levels seen: {' '.join(dict.fromkeys(seen_levels))}")
