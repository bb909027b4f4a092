"""The reference cloud client against the real sync API: every event once, in order, blobs fetched and
verified before the acknowledgement deletes them on the appliance."""

from __future__ import annotations

import hashlib
from pathlib import Path

from appliance.sync.client import SyncClient
from appliance.sync.client_puller import Puller
from appliance.sync.client_store import ClientStore
from tests.sync_server import running_site


async def test_puller_holds_every_event_once_with_its_blobs(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        voicemails = {}
        for n in range(25):
            if n % 10 == 3:
                data = hashlib.sha256(str(n).encode()).digest() * 500
                path = site.voicemail / f"r{n}.vm"
                path.write_bytes(data)
                voicemails[path.name] = data
                blob = {"path": str(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                await site.outbox.append(
                    "ivr.voicemail", {"record_id": f"r{n}", "blob": {**blob, "key_id": "k"}}
                )
            else:
                await site.outbox.append("call.record", {"n": n})
        pki = site.pki
        client = SyncClient(site.base, ca=pki.ca_certificate, cert=pki.client_certificate, key=pki.client_key)
        blobs = tmp_path / "cloud-blobs"
        with ClientStore.open(tmp_path / "cloud.db") as store:
            async with client:
                puller = Puller(client, store, blobs, limit=7, wait=0)
                while store.last_seq < 25:
                    await puller.pull_once(wait=0)
                assert (await client.status())["outbox"]["acked_seq"] == 25
            held = list(store.iter_events())
        assert [e.seq for e in held] == list(range(1, 26))
        assert len({e.id for e in held}) == 25
        fetched = {p.name: p.read_bytes() for p in blobs.rglob("*.vm")}
        assert fetched == voicemails
        assert not list(site.voicemail.glob("*.vm"))  # acknowledged: deleted on the appliance
