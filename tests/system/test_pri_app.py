"""The appliance as ``make run`` starts it, with its default span (DESIGN.md §5.1): span 1 on the simulated
backend, user side, its D- and B-channel sockets under ``<state_dir>/run``. A network-side far end built
from the appliance's own stack (:class:`appliance.pri.farend.FarEnd`) connects, the D-channel comes up,
one call reaches the local IVR and hears its prompt on the B-channel, and the span's events are in the
outbox and its metrics; a clean stop removes the sockets."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cbor2
import pycddl
import pytest

from appliance.pri.farend import CallScript, FarEnd
from appliance.pri.q931_model import TypeOfNumber
from appliance.sync.client import SyncClient
from appliance.sync.client_types import ClientError
from tests import sync_pki
from tests.system.appliance_proc import RunningAppliance, start_appliance
from tests.system.pri_helpers import (
    eventually,
    logged_appliance,
    outbox_events,
    span_config,
    span_metric,
    wireshark_errors,
)
from tests.system.sipp import SIPP_BINARY, SippProcess

pytestmark = pytest.mark.system
RECORDS = Path(__file__).resolve().parents[2] / "appliance" / "calls" / "records.cddl"
# A caller that stays 3 s on the line: the default route takes +49... to the IVR, whose greeting plays.
SCENARIOS = Path(__file__).parent / "scenarios"
SCRIPT = CallScript(called="4930123456", called_type=TypeOfNumber.INTERNATIONAL, hold=3.0, timeout=20)


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[RunningAppliance]:
    # No [[spans]] and the default RTP range: the span as `make run` has it (the other tests give span 1
    # a random port range of its own, so that appliances running side by side do not meet).
    with logged_appliance(tmp_path, "") as app:
        yield app


def check(rule: str, body: Any) -> None:
    pycddl.Schema(f"root = {rule}\n" + RECORDS.read_text()).validate_cbor(cbor2.dumps(body))


async def test_a_far_end_on_the_default_span_reaches_the_ivr_and_the_span_reports(
    appliance: RunningAppliance,
) -> None:
    app = appliance
    run = app.state_dir / "run"
    (line,) = [b for b in app.banner if b.startswith("span 1 ")]
    assert "user side" in line and f"D-channel {run / 'span1-d.sock'}" in line
    assert f"B-channels {run / 'span1-b.sock'}" in line and "RTP ports 29936-29999" in line
    assert (run / "span1-d.sock").is_socket() and (run / "span1-b.sock").is_socket()

    def los() -> float:
        return span_metric(app, "appliance_span_alarm", alarm="los")

    def dchannel() -> float:
        return span_metric(app, "appliance_pri_dchannel_up")

    # No far end yet: loss of signal, declared as a red alarm.
    await eventually(lambda: los() == 1, within=10, what="LOS declared")
    far = FarEnd(directory=run, span=1)
    try:
        await far.start(within=10.0)
        await eventually(lambda: dchannel() == 1, within=10, what="D-channel up in the metrics")
        await eventually(lambda: los() == 0, within=10, what="LOS cleared")
        result = await far.place_call(SCRIPT)
    finally:
        await far.close()
    assert result.answered, result.line()  # CONNECT from the appliance: the IVR took the call
    assert result.heard.sound_frames > 10, result.line()  # the welcome prompt on the B-channel
    assert result.cleared_by == "far end" and result.released, result.line()
    # The far end gone: the D-channel is down and the span in alarm again.
    await eventually(lambda: dchannel() == 0, within=10, what="D-channel down")
    await eventually(lambda: los() == 1, within=10, what="LOS declared again")

    def events(kind: str, count: int) -> list[dict[str, Any]]:
        found = outbox_events(app, kind)
        return found if len(found) >= count else []

    alarms = await eventually(lambda: events("span.alarm", 3), within=10, what="three span.alarm events")
    assert [(a["alarm"], a["state"]) for a in alarms[:3]] == [("los", "raised"), ("los", "cleared"),
                                                              ("los", "raised")]  # fmt: skip
    assert alarms[1]["raised_at"] == alarms[0]["at"] and alarms[1]["duration_s"] > 0
    links = await eventually(lambda: events("span.dchannel", 2), within=10, what="two span.dchannel events")
    assert [(d["up"], d["reason"]) for d in links[:2]] == [(True, "established"), (False, "loss of signal")]
    for kind, bodies in (("span-alarm", alarms), ("span-dchannel", links)):
        for body in bodies:
            check(kind, body)
    (record,) = await eventually(lambda: events("call.record", 1), within=10, what="the call's record")
    assert record["route"] == "ivr" and record["callee"] == "+4930123456" and record["answered"]


def test_a_clean_stop_removes_the_span_sockets(tmp_path: Path) -> None:
    app = start_appliance(tmp_path, span_config())
    run = app.state_dir / "run"
    assert (run / "span1-d.sock").exists() and (run / "span1-b.sock").exists()
    err = app.stop()
    assert app.proc.returncode == 0, err[-3000:]
    assert not any(p.name.startswith("span1") for p in run.iterdir()), list(run.iterdir())


async def test_a_pushed_span_document_restarts_the_span_with_its_settings(tmp_path: Path) -> None:
    pki = sync_pki.site(tmp_path / "pki")
    config = (
        f'[sync]\nlisten = "127.0.0.1"\nport = 0\ncertificate = "{pki.server_certificate}"\n'
        f'private_key = "{pki.server_key}"\nclient_ca = "{pki.ca_certificate}"\n'
    )
    app = start_appliance(tmp_path, config + span_config())
    try:
        url = next(b for b in app.banner if b.startswith("sync API")).split()[-1].removesuffix("/sync/v1")
        settings = {"framing": "ccs", "line_code": "hdb3", "crc4": True, "side": "user",
                    "timing_priority": 1, "b_channels": [1, 2, 3, 4, 5]}  # fmt: skip
        client = SyncClient(url, ca=pki.ca_certificate, cert=pki.client_certificate, key=pki.client_key)
        async with client as c:
            result = await c.put_document("span", "1", settings, replaces=0, version=1)
            assert result["state"] == "applied", result
            # A span the configuration does not have: no driver, no ports for it; the document is refused.
            with pytest.raises(ClientError, match="span 2 is not configured") as refused:
                await c.put_document("span", "2", settings, replaces=0, version=1)
            assert refused.value.status == 422 and refused.value.code == "invalid-document"
        restarts = await eventually(lambda: outbox_events(app, "span.restart"), within=10, what="a restart")
        (restart,) = restarts
        check("span-restart", restart)
        assert restart["by"] == "settings" and restart["channels"] == [1, 2, 3, 4, 5]
        far = FarEnd(directory=app.state_dir / "run", span=1, timeslots=(1, 2, 3, 4, 5))
        try:
            await far.start(within=10.0)  # the restarted span's sockets are there again
            result_call = await far.place_call(replace(SCRIPT, hold=1.0))
        finally:
            await far.close()
        assert result_call.answered and result_call.channel in (1, 2, 3, 4, 5), result_call.line()
    finally:
        err = app.stop()
        (tmp_path / "appliance.log").write_text(err)


@pytest.mark.skipif(shutil.which(SIPP_BINARY) is None, reason="SIPp is not installed (sip-tester)")
async def test_a_sip_call_routed_to_pri_1_is_answered_by_the_far_end(tmp_path: Path) -> None:
    app = start_appliance(tmp_path, '[[routes]]\nmatch = "*"\ndestinations = ["pri:1"]\n' + span_config())
    try:
        far = FarEnd(directory=app.state_dir / "run", span=1)  # answers the calls the appliance places
        try:
            await far.start(within=10.0)
            uac = SippProcess.uac(
                SCENARIOS / "uac_call.xml", app.sip, workdir=tmp_path / "uac", max_calls=1, call_limit=1,
                duration_ms=1000, recv_timeout_ms=10000, service="+4930123456",
            )  # fmt: skip
            with uac:
                sipp = await asyncio.to_thread(uac.wait, 30)
            assert sipp.stats.successful == 1, sipp.describe()
            (incoming,) = far.incoming
            assert incoming.answered and incoming.channel is not None, incoming.line()
            assert incoming.called == "30123456", incoming.line()  # national: the span's country is DE
        finally:
            await far.close()
        (record,) = await eventually(lambda: outbox_events(app, "call.record"), within=10, what="call.record")
        assert record["route"] == "pri" and record["answered"], record
    finally:
        err = app.stop()
        (tmp_path / "appliance.log").write_text(err)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
async def test_the_appliance_traces_its_d_channel_and_its_b_channels_on_a_media_address_of_its_own(
    tmp_path: Path,
) -> None:
    # trace = true, and the media (and so the TDM worker) on 127.0.0.5: the call reaches the IVR and the
    # caller hears its prompt through the worker bound there (the SDP naming it: test_app_pri_trace.py).
    config = span_config().replace("number = 1\n", "number = 1\ntrace = true\n")
    config = config.replace("[media]\n", '[media]\naddress = "127.0.0.5"\n')
    app = start_appliance(tmp_path, config)
    pcap = app.state_dir / "trace" / "span1-d.pcap"
    try:
        far = FarEnd(directory=app.state_dir / "run", span=1)
        try:
            await far.start(within=10.0)
            result = await far.place_call(replace(SCRIPT, hold=2.0))
        finally:
            await far.close()
        assert result.answered and result.heard.sound_frames > 10, result.line()
        # Flushed per frame: the running appliance's capture reads whole, up to the far end's release.
        summary = await eventually(lambda: _released(pcap), within=10, what="RELEASE COMPLETE in the trace")
    finally:
        err = app.stop()
        (tmp_path / "appliance.log").write_text(err)
    # The call as the appliance (the user side) saw it, each message in its direction; SABME/UA first.
    lines = summary.splitlines()
    assert "func=SABME" in lines[0] and "Local User → Remote Network" in lines[0], lines[0]
    messages = [
        ("sent" if "Local User → Remote Network" in line else "received", line.rsplit("| ", 1)[1].strip())
        for line in lines
        if " Q.931 " in line
    ]
    assert messages == [
        ("received", "SETUP"), ("sent", "CALL PROCEEDING"), ("sent", "CONNECT"),
        ("received", "CONNECT ACKNOWLEDGE"), ("received", "DISCONNECT"), ("sent", "RELEASE"),
        ("received", "RELEASE COMPLETE"),
    ], summary  # fmt: skip
    assert wireshark_errors(pcap) == []


def _released(pcap: Path) -> str:
    """tshark's summary of the trace once it holds the call's RELEASE COMPLETE, else ""."""
    if not pcap.exists():
        return ""
    # A capture being written may end in half a record: tshark then says so and exits non-zero.
    args = ["tshark", "-r", str(pcap)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    return done.stdout if "RELEASE COMPLETE" in done.stdout else ""
