"""The appliance as a process, seen by the cloud through the reference sync client: events out (the start,
a call's record), configuration in (a routing table, an IVR flow, a write reverted for want of a
confirmation), and a client certificate from an unknown CA refused."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pycddl
import pytest

from appliance.sync import pki as pki_mod
from appliance.sync.client import SyncClient, TransportError, client_ssl_context
from appliance.sync.client_types import Event
from appliance.sync.pki import SitePki
from tests import sync_pki
from tests.sync_schema import validate
from tests.system.appliance_proc import RunningAppliance, start_appliance
from tests.system.sipp import SIPP_BINARY, SippProcess

pytestmark = pytest.mark.system
SCENARIOS = Path(__file__).parent / "scenarios"
ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT / "appliance" / "calls" / "records.cddl"
DEFAULT_FLOW = ROOT / "appliance" / "ivr" / "flows" / "default.json"

if shutil.which(SIPP_BINARY) is None:  # pragma: no cover - .ci/run installs sip-tester
    pytest.skip("SIPp is not installed (Debian package sip-tester)", allow_module_level=True)


def validate_record(rule: str, body: Any) -> None:
    pycddl.Schema(f"root = {rule}\n" + RECORDS.read_text()).validate_cbor(cbor2.dumps(body))


@pytest.fixture
def pki(tmp_path: Path) -> SitePki:
    """Certificates made for the test (the appliance is configured with them, it makes none)."""
    return sync_pki.site(tmp_path / "pki")


@pytest.fixture
def appliance(tmp_path: Path, pki: SitePki) -> Iterator[RunningAppliance]:
    config = (
        f'[sync]\nlisten = "127.0.0.1"\nport = 0\ncertificate = "{pki.server_certificate}"\n'
        f'private_key = "{pki.server_key}"\nclient_ca = "{pki.ca_certificate}"\n'
        # The agent group the packaged flow transfers to: a pushed copy of it must name a real group.
        '[[agent_groups]]\nname = "local"\nmembers = ["sip:agent@127.0.0.1:5999"]\n'
    )
    app = start_appliance(tmp_path, config)
    yield app
    app.stop()


def sync_url(app: RunningAppliance) -> str:
    line = next(line for line in app.banner if line.startswith("sync API"))
    return line.split()[-1].removesuffix("/sync/v1")


@pytest.fixture
async def client(appliance: RunningAppliance, pki: SitePki) -> AsyncIterator[SyncClient]:
    async with SyncClient(
        sync_url(appliance), ca=pki.ca_certificate, cert=pki.client_certificate, key=pki.client_key
    ) as c:
        yield c


async def events_until(client: SyncClient, event_type: str, within: float = 20.0) -> list[Event]:
    """Every event up to the first of ``event_type``, long-polling for more (a process in real time)."""
    seen: list[Event] = []
    after = 0
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        batch = await client.events(after=after, wait=2)
        seen += batch.events
        if batch.events:
            after = batch.events[-1].seq
        if any(e.type == event_type for e in seen):
            return seen
    raise AssertionError(f"no {event_type} within {within} s: {[e.type for e in seen]}")


async def place_call(app: RunningAppliance, workdir: Path) -> None:
    uac = SippProcess.uac(
        SCENARIOS / "uac_call.xml", app.sip, workdir=workdir, max_calls=1, call_limit=1, duration_ms=500,
        recv_timeout_ms=10000, service="+4930123456",
    )  # fmt: skip
    with uac:
        result = await asyncio.to_thread(uac.wait, 30)
    assert result.stats.successful == 1, result.describe()


async def test_the_cloud_pulls_the_start_and_a_calls_record(
    appliance: RunningAppliance, client: SyncClient, tmp_path: Path
) -> None:
    started = await events_until(client, "appliance.started")
    assert [e.seq for e in started] == list(range(1, len(started) + 1))  # gap-free from the first
    (event,) = [e for e in started if e.type == "appliance.started"]
    validate_record("appliance-started", event.body)
    await place_call(appliance, tmp_path)
    events = await events_until(client, "call.record")
    (record,) = [e.body for e in events if e.type == "call.record"]
    validate_record("call-record", record)
    assert record["route"] == "ivr" and record["callee"] == "+4930123456"
    assert record["mode"] == "survivable" and record["answered"] is not None
    assert record["disconnect"] == "caller" and record["ivr_session"]
    assert record["media"], record  # the IVR leg's streams, from the media worker
    last = events[-1].seq
    ack = await client.ack(last)
    validate("ack-response", ack)
    status = await client.status()
    validate("status", status)
    assert status["outbox"]["acked_seq"] == last and status["mode"] == "survivable"


async def test_pushed_routing_and_flow_are_in_force_and_in_status(
    appliance: RunningAppliance, client: SyncClient, tmp_path: Path
) -> None:
    flow = json.loads(DEFAULT_FLOW.read_text())
    flow["name"] = "pushed"
    result = await client.put_document("ivr-flow", "pushed", flow, replaces=0, version=1)
    validate("config-result", result)
    assert result["state"] == "applied"
    routes = {
        "routes": [
            {"match": "+49*", "destinations": ["ivr:pushed"]},
            {"match": "*", "destinations": ["ivr:default"]},
        ]
    }
    result = await client.put_document("routing", "default", routes, replaces=0, version=1)
    assert result["state"] == "applied"
    status = await client.status()
    validate("status", status)
    running = {(d["kind"], d["name"]): d["version"] for d in status["documents"]}
    assert running == {("ivr-flow", "pushed"): 1, ("routing", "default"): 1}
    events = await events_until(client, "config.applied")
    assert [e.body.get("kind") for e in events if e.type == "config.applied"][:1] == ["ivr-flow"]
    # The next call is routed by the pushed table, to the pushed flow.
    await place_call(appliance, tmp_path)
    events = await events_until(client, "call.record")
    (record,) = [e.body for e in events if e.type == "call.record"]
    assert [(leg["kind"], leg["target"], leg["outcome"]) for leg in record["legs"]] == [
        ("ivr", "pushed", "answered")
    ]


async def test_a_write_not_confirmed_in_time_reverts(client: SyncClient) -> None:
    first = {"routes": [{"match": "*", "destinations": ["ivr:default"]}]}
    await client.put_document("routing", "default", first, replaces=0, version=1)
    second = {"routes": [{"match": "*", "destinations": ["cloud", "ivr:default"]}]}
    result = await client.put_document("routing", "default", second, replaces=1, version=2, confirm_within=1)
    validate("config-result", result)
    assert result["state"] == "pending-confirm" and "confirm_by" in result
    deadline = time.monotonic() + 15
    document = await client.get_document("routing", "default")
    while document is not None and document["version"] != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        document = await client.get_document("routing", "default")
    assert document is not None and document["version"] == 1 and document["content"] == first
    await events_until(client, "config.reverted")


async def test_a_client_certificate_from_an_unknown_ca_is_refused(
    appliance: RunningAppliance, pki: SitePki, tmp_path: Path
) -> None:
    foreign = sync_pki.foreign_client(tmp_path)
    url = sync_url(appliance)
    async with SyncClient(url, ca=pki.ca_certificate, cert=foreign.certificate, key=foreign.key) as c:
        with pytest.raises(TransportError):  # no HTTP answer at all
            await c.status()
    # In TLS 1.2 the handshake itself fails (in 1.3 the refusal follows the client's Finished).
    context = client_ssl_context(pki.ca_certificate, foreign.certificate, foreign.key)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    host, port = url.removeprefix("https://").rsplit(":", 1)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.open_connection(host, int(port), ssl=context)
    async with SyncClient(
        url, ca=pki.ca_certificate, cert=pki.client_certificate, key=pki.client_key
    ) as good:  # the site's own cloud client still gets in
        validate("health", await good.health())


async def test_a_rotated_certificate_is_served_after_sighup(
    appliance: RunningAppliance, client: SyncClient, pki: SitePki
) -> None:
    before = (await client.status())["certificate"]
    rotated = sync_pki.new_server(pki, "rotated")
    pki_mod.write_issued(rotated, pki.server_certificate, pki.server_key)
    appliance.proc.send_signal(signal.SIGHUP)
    async with SyncClient(
        sync_url(appliance), ca=pki.ca_certificate, cert=pki.client_certificate, key=pki.client_key
    ) as fresh:  # a new connection gets the new certificate; the process stays up
        for _ in range(50):  # the signal is handled in the process's own time
            now = (await fresh.status())["certificate"]
            if now != before:
                break
            await asyncio.sleep(0.2)
    assert now["subject"] != before["subject"] and "rotated" in now["subject"]
    assert appliance.proc.poll() is None
