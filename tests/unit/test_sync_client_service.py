"""The reference cloud client against the real sync service (outbox, document store, blobs, mutual TLS on
127.0.0.1): every endpoint, the pull loop with voicemail blobs, and the command as a process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.sync.client import ClientError, ClientStore, Puller, SyncClient
from appliance.sync.client_puller import blob_ids
from appliance.sync.client_types import Event
from tests.sync_server import Site, running_site

ROOT = Path(__file__).resolve().parents[2]
ROUTES = {"routes": [{"match": "*", "destinations": ["cloud"]}]}
PROMPT = b"\xd5" * 800  # 0.1 s of A-law silence


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with running_site(tmp_path) as running:
        yield running


def client(site: Site, **kwargs: float) -> SyncClient:
    pki = site.pki
    return SyncClient(
        site.base, ca=pki.ca_certificate, cert=pki.client_certificate, key=pki.client_key, **kwargs
    )


def argv(site: Site) -> list[str]:
    pki = site.pki
    return ["--url", site.base, "--ca", str(pki.ca_certificate), "--cert", str(pki.client_certificate),
            "--key", str(pki.client_key)]  # fmt: skip


async def voicemail(site: Site, name: str, data: bytes) -> None:
    path = site.voicemail / name
    path.write_bytes(data)
    blob = {"path": str(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "key_id": "k1"}
    await site.outbox.append("ivr.voicemail", {"record_id": name, "blob": blob})


async def test_events_and_acknowledgements(site: Site) -> None:
    for n in range(5):
        await site.outbox.append("call.record", {"n": n, "d": 1.5})
    async with client(site) as cloud:
        assert (await cloud.health())["status"] == "ok"
        assert (await cloud.status())["outbox"]["pending"] == 5
        batch = await cloud.events(after=0, limit=3)
        assert [(e.seq, e.type, e.body) for e in batch.events] == [
            (n + 1, "call.record", {"n": n, "d": 1.5}) for n in range(3)
        ]
        assert (batch.first_seq, batch.last_seq, batch.acked_seq) == (1, 5, 0)
        assert await cloud.ack(3) == {"acked_seq": 3, "pruned": 3}
        assert (await cloud.ack(3))["pruned"] == 0
        with pytest.raises(ClientError) as beyond:
            await cloud.ack(6)
        assert (beyond.value.status, beyond.value.code) == (409, "ack-beyond-last")
        held = asyncio.create_task(cloud.events(after=5, wait=10))  # answered by the next append
        await site.outbox.append("mode.changed", {"mode": "online"})
        assert [e.seq for e in (await asyncio.wait_for(held, 10)).events] == [6]


async def test_documents(site: Site) -> None:
    async with client(site) as cloud:
        assert await cloud.get_document("routing", "default") is None
        assert (await cloud.put_document("routing", "default", ROUTES, 0, 1))["state"] == "applied"
        assert site.routes and len(site.routes) == 1
        with pytest.raises(ClientError) as stale:
            await cloud.put_document("routing", "default", ROUTES, 0, 2)
        assert (stale.value.status, stale.value.code, stale.value.current_version) == (
            412,
            "stale-version",
            1,
        )
        bad = {"routes": [{"match": "*", "destinations": ["bogus"]}]}
        with pytest.raises(ClientError) as invalid:
            await cloud.put_document("routing", "default", bad, 1, 2)
        assert (invalid.value.status, invalid.value.code) == (422, "invalid-document")
        assert invalid.value.path is not None and invalid.value.path.startswith("content.routes")
        pending = await cloud.put_document("prompt", "de/welcome", PROMPT, 0, 1, confirm_within=60)
        assert pending["state"] == "pending-confirm"
        assert (await cloud.confirm("prompt", "de/welcome", 1))["state"] == "applied"
        document = await cloud.get_document("prompt", "de/welcome")
        assert document is not None and document["content"] == PROMPT
        listed = {(d["kind"], d["name"], d["version"]) for d in await cloud.list_documents()}
        assert listed == {("routing", "default", 1), ("prompt", "de/welcome", 1)}


async def test_puller_fetches_voicemail_before_the_acknowledgement_deletes_it(
    site: Site, tmp_path: Path
) -> None:
    blobs = {f"m{n}.vm": bytes([n]) * (70_000 + n) for n in range(3)}
    for n, (name, data) in enumerate(blobs.items()):
        await site.outbox.append("call.record", {"n": n})
        await voicemail(site, name, data)
    with ClientStore.open(tmp_path / "events.db") as store:
        async with client(site) as cloud:
            assert await Puller(cloud, store, tmp_path / "blobs", limit=2, wait=0).run() == 6
        assert [e.seq for e in store.iter_events()] == [1, 2, 3, 4, 5, 6]
    for name, data in blobs.items():
        assert (tmp_path / "blobs" / "voicemail" / name).read_bytes() == data
        assert not (site.voicemail / name).exists()  # acknowledged: the appliance let it go
    assert (await site.outbox.stats()).acked_seq == 6


async def test_blob_resumes_against_the_service(site: Site, tmp_path: Path) -> None:
    data = bytes(range(256)) * 500
    await voicemail(site, "r.vm", data)
    dest = tmp_path / "r.vm"
    (tmp_path / "r.vm.part").write_bytes(data[:5000])
    (tmp_path / "r.vm.etag").write_text('"' + hashlib.sha256(data).hexdigest() + '"')
    async with client(site) as cloud:
        assert await cloud.blob("voicemail/r.vm", dest) == len(data)
    assert dest.read_bytes() == data


def test_blob_ids_of_event_bodies() -> None:
    def event(type_: str, body: dict[str, object]) -> Event:
        return Event(1, "0" * 32, type_, 1, 1.0, body)

    assert blob_ids(event("ivr.voicemail", {"blob": {"path": "/var/lib/pop/voicemail/a1.vm"}})) == [
        "voicemail/a1.vm"
    ]
    assert blob_ids(event("call.recording", {"blob_id": "recording/c-1.rec"})) == ["recording/c-1.rec"]
    for hostile in ("../../etc/passwd", "recording/../x", "recording/.hidden", "/abs/x", "recording/a/b"):
        assert blob_ids(event("call.recording", {"blob_id": hostile})) == []
    assert blob_ids(event("ivr.voicemail", {"blob": {"path": "/x/.."}})) == []
    assert blob_ids(event("call.record", {"blob": {"path": "/x/a.vm"}})) == []


async def test_command_against_the_service(site: Site, tmp_path: Path) -> None:
    for n in range(7):
        await site.outbox.append("call.record", {"n": n})
    await voicemail(site, "c.vm", b"v" * 3000)
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(ROUTES))
    db = tmp_path / "events.db"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "appliance.sync.client", *argv(site), *args],
            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
        )  # fmt: skip

    def commands() -> list[subprocess.CompletedProcess[str]]:
        return [
            run("pull", "--store", str(db), "--blobs", str(tmp_path / "blobs"), "--limit", "3"),
            run("push", "routing", "default", str(routes)),
            run("push", "routing", "default", str(routes)),
            run("list"),
            run("get", "routing", "nothing"),
        ]

    pulled, first, second, listed, missing = await asyncio.to_thread(commands)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout.splitlines()[-1]) == {"done": True, "stored": 8, "last_held": 8}
    assert (tmp_path / "blobs" / "voicemail" / "c.vm").read_bytes() == b"v" * 3000
    assert json.loads(first.stdout)["version"] == 1
    assert json.loads(second.stdout)["version"] == 2  # --replaces defaults to the running version
    assert [d["version"] for d in json.loads(listed.stdout)["documents"]] == [2]
    assert (missing.returncode, missing.stderr.count("\n")) == (1, 1)
