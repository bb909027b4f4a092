"""The sync API over real mutual TLS on 127.0.0.1: every endpoint, hostile bodies, shutdown."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import pytest

from appliance.config.schema import SyncConfig
from appliance.sync.service import SyncService
from tests.sync_server import CBOR, Site, running_site


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with running_site(tmp_path, max_body=4096) as running:
        yield running


async def test_health_and_status(site: Site) -> None:
    health = await site.call("GET", "health", rule="health")
    assert health["status"] == "ok" and health["mode"] == "online"
    await site.outbox.append("mode.changed", {"mode": "online"})
    status = await site.call("GET", "status", rule="status")
    assert status["site"] == "test-site" and status["uplink"] == "wan0"
    assert status["mode_since"] == "2024-11-24T20:26:40.000Z"
    assert status["outbox"]["last_seq"] == 1 and status["outbox"]["pending"] == 1
    assert status["certificate"]["sha256"] == site.service.tls.info.sha256  # type: ignore[union-attr]


async def test_events_in_batches_gap_free(site: Site) -> None:
    for n in range(5):
        await site.outbox.append("call.record", {"n": n, "d": 1.5})
    batch = await site.call("GET", "events?after=0&limit=3", rule="event-batch")
    assert [e["seq"] for e in batch["events"]] == [1, 2, 3]
    assert batch["events"][0]["body"] == {"n": 0, "d": 1.5} and batch["events"][0]["type"] == "call.record"
    assert (batch["first_seq"], batch["last_seq"], batch["acked_seq"]) == (1, 5, 0)
    rest = await site.call("GET", "events?after=3", rule="event-batch")
    assert [e["seq"] for e in rest["events"]] == [4, 5]
    assert len({e["id"] for e in batch["events"] + rest["events"]}) == 5
    empty = await site.call("GET", "events?after=5&wait=0", rule="event-batch")
    assert empty["events"] == []


@pytest.mark.parametrize(
    "query",
    [
        "after=9223372036854775808",
        "after=x",
        "after=%C2%B2",
        "limit=%D9%A1",
        "after=-1",
        "limit=0",
        "limit=10001",
        "wait=-1",
        "wait=nan",
    ],
)
async def test_bad_event_queries(site: Site, query: str) -> None:
    error = await site.call("GET", f"events?{query}", status=400)
    assert error["error"] == "bad-request"


async def test_long_poll_answers_when_an_event_is_appended(site: Site) -> None:
    poll = asyncio.create_task(site.call("GET", "events?after=0&wait=30", rule="event-batch"))
    await asyncio.sleep(0.05)  # let the request reach its wait; the answer does not depend on it
    assert not poll.done()
    await site.outbox.append("mode.changed", {"mode": "suspect"})
    batch = await asyncio.wait_for(poll, 5)
    assert [e["seq"] for e in batch["events"]] == [1]


async def test_stop_ends_open_long_polls_promptly(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        poll = asyncio.create_task(site.call("GET", "events?after=0&wait=30", rule="event-batch"))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await site.service.stop()
        batch = await asyncio.wait_for(poll, 5)
        assert batch["events"] == []
        assert loop.time() - started < 2


async def test_ack_prunes_replay_changes_nothing_and_beyond_last_is_refused(site: Site) -> None:
    for n in range(4):
        await site.outbox.append("call.record", {"n": n})
    assert await site.call("POST", "ack", body={"upto": 3}, rule="ack-response") == {
        "acked_seq": 3,
        "pruned": 3,
    }
    assert await site.call("POST", "ack", body={"upto": 3}, rule="ack-response") == {
        "acked_seq": 3,
        "pruned": 0,
    }
    assert await site.call("POST", "ack", body={"upto": 1}, rule="ack-response") == {
        "acked_seq": 3,
        "pruned": 0,
    }
    error = await site.call("POST", "ack", body={"upto": 5}, status=409)
    assert error["error"] == "ack-beyond-last"
    batch = await site.call("GET", "events?after=0", rule="event-batch")
    assert [e["seq"] for e in batch["events"]] == [4] and batch["first_seq"] == 4 and batch["acked_seq"] == 3


async def test_hostile_bodies(site: Site) -> None:
    error = await site.call("POST", "ack", data=b"\xa1\x64upto", status=400)
    assert error["error"] == "bad-cbor"
    error = await site.call("POST", "ack", data=cbor2.dumps({"upto": "x"}), status=400)
    assert (error["error"], error["path"]) == ("schema", "upto")
    error = await site.call("POST", "ack", data=cbor2.dumps({"upto": 1, "x": [0] * 5000}), status=413)
    assert error["error"] == "too-large"
    error = await site.call(
        "POST", "ack", data=b"{}", headers={"Content-Type": "application/json"}, status=415
    )
    assert error["error"] == "unsupported-media-type"
    error = await site.call("GET", "nowhere", status=404)
    assert error["error"] == "not-found"
    error = await site.call("DELETE", "ack", status=405)
    assert error["error"] == "method-not-allowed"


async def test_oversized_body_without_content_length_is_refused(site: Site) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"\x00" * 1000

    async with site.session.post(site.url("ack"), data=chunks(), headers={"Content-Type": CBOR}) as response:
        assert response.status == 413
        assert cbor2.loads(await response.read())["error"] == "too-large"


def _voicemail(site: Site, name: str, data: bytes) -> dict[str, object]:
    path = site.voicemail / name
    path.write_bytes(data)
    return {
        "record_id": name,
        "blob": {
            "path": str(path),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "key_id": "k1",
        },
    }


async def test_blob_ranges_etag_if_range_and_head(site: Site) -> None:
    data = bytes(range(256)) * 40
    await site.outbox.append("ivr.voicemail", _voicemail(site, "r1.vm", data))
    url = site.url("blobs/voicemail/r1.vm")
    etag = '"' + hashlib.sha256(data).hexdigest() + '"'
    async with site.session.get(url) as response:
        assert response.status == 200 and await response.read() == data
        assert response.headers["ETag"] == etag and response.headers["Accept-Ranges"] == "bytes"
    async with site.session.get(url, headers={"Range": "bytes=1000-", "If-Range": etag}) as response:
        assert response.status == 206 and await response.read() == data[1000:]
        assert response.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    async with site.session.get(url, headers={"Range": "bytes=10-19"}) as response:
        assert response.status == 206 and await response.read() == data[10:20]
    async with site.session.get(url, headers={"Range": "bytes=-5"}) as response:
        assert response.status == 206 and await response.read() == data[-5:]
    async with site.session.get(url, headers={"Range": "bytes=10-", "If-Range": '"stale"'}) as response:
        assert response.status == 200 and await response.read() == data
    async with site.session.get(url, headers={"Range": f"bytes={len(data)}-"}) as response:
        assert response.status == 416 and response.headers["Content-Range"] == f"bytes */{len(data)}"
        assert cbor2.loads(await response.read())["error"] == "bad-range"
    async with site.session.head(url) as response:
        assert response.status == 200 and response.headers["Content-Length"] == str(len(data))
        assert await response.read() == b""


@pytest.mark.parametrize(
    ("blob_id", "status"),
    [
        ("voicemail/nope.vm", 404),
        ("voicemail/.hidden", 400),
        ("voicemail/a%2F..%2Fx", 400),
        ("voicemail/..", 404),
        ("other/x.vm", 404),
        ("voicemail", 400),
    ],
)
async def test_blob_ids_cannot_leave_their_directory(site: Site, blob_id: str, status: int) -> None:
    (site.state_dir / "x").write_bytes(b"secret")
    error = await site.call("GET", f"blobs/{blob_id}", status=status)
    assert error["error"] in ("not-found", "bad-request")


async def test_ack_deletes_acknowledged_voicemail_blobs_only(site: Site) -> None:
    await site.outbox.append("ivr.voicemail", _voicemail(site, "a.vm", b"a" * 10))
    await site.outbox.append("call.record", {"n": 1})
    await site.outbox.append("ivr.voicemail", _voicemail(site, "b.vm", b"b" * 10))
    await site.call("POST", "ack", body={"upto": 2}, rule="ack-response")
    assert not (site.voicemail / "a.vm").exists() and (site.voicemail / "b.vm").exists()
    await site.call("GET", "blobs/voicemail/a.vm", status=404)


async def test_startup_sweep_removes_orphans_and_keeps_pending_blobs(site: Site) -> None:
    await site.outbox.append("ivr.voicemail", _voicemail(site, "kept.vm", b"k"))
    _voicemail(site, "orphan.vm", b"o")
    _voicemail(site, "fresh.vm", b"f")
    (site.voicemail / ".partial.tmp").write_bytes(b"p")
    for name in ("kept.vm", "orphan.vm", ".partial.tmp"):
        os.utime(site.voicemail / name, (1_000_000_000, 1_000_000_000))
    assert await site.service.sweep_blobs() == 1
    assert sorted(p.name for p in site.voicemail.iterdir()) == [".partial.tmp", "fresh.vm", "kept.vm"]


@pytest.fixture
async def recording_site(tmp_path: Path) -> AsyncIterator[Site]:
    state = tmp_path / "state"
    dirs = {"voicemail": state / "voicemail", "recording": state / "recordings"}
    async with running_site(tmp_path, blob_dirs=dirs) as running:
        dirs["recording"].mkdir()
        yield running


def _recording(site: Site, name: str, data: bytes) -> dict[str, object]:
    """A call.recording body as appliance/app.py appends it (records.cddl call-recording)."""
    path = site.state_dir / "recordings" / name
    path.write_bytes(data)
    return {"call_id": name, "path": str(path), "blob_id": f"recording/{name}", "duration": 1.5, "stats": []}


async def test_ack_deletes_acknowledged_call_recordings_and_keeps_pending_ones(recording_site: Site) -> None:
    site = recording_site
    recordings = site.state_dir / "recordings"
    await site.outbox.append("call.recording", _recording(site, "c1.rec", b"1" * 10))
    await site.outbox.append("ivr.voicemail", _voicemail(site, "v1.vm", b"v"))
    await site.outbox.append("call.recording", _recording(site, "c2.rec", b"2" * 10))
    await site.call("POST", "ack", body={"upto": 2}, rule="ack-response")
    assert not (recordings / "c1.rec").exists() and not (site.voicemail / "v1.vm").exists()
    assert (recordings / "c2.rec").read_bytes() == b"2" * 10
    await site.call("GET", "blobs/recording/c1.rec", status=404)
    async with site.session.get(site.url("blobs/recording/c2.rec")) as response:
        assert response.status == 200 and await response.read() == b"2" * 10
    await site.call("POST", "ack", body={"upto": 3}, rule="ack-response")
    assert list(recordings.iterdir()) == []


async def test_startup_sweep_removes_orphaned_recordings_and_keeps_fresh_ones(recording_site: Site) -> None:
    site = recording_site
    recordings = site.state_dir / "recordings"
    await site.outbox.append("call.recording", _recording(site, "kept.rec", b"k"))
    _recording(site, "orphan.rec", b"o")
    _recording(site, "fresh.rec", b"f")
    _voicemail(site, "orphan.vm", b"o")
    for path in (recordings / "kept.rec", recordings / "orphan.rec", site.voicemail / "orphan.vm"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    assert await site.service.sweep_blobs() == 2
    assert sorted(p.name for p in recordings.iterdir()) == ["fresh.rec", "kept.rec"]
    assert list(site.voicemail.iterdir()) == []


async def test_sweep_reads_the_outbox_feed_without_the_database(recording_site: Site) -> None:
    site = recording_site
    recordings = site.state_dir / "recordings"
    await site.outbox.append("call.recording", _recording(site, "kept.rec", b"k"))
    await site.outbox.append("ivr.voicemail", _voicemail(site, "kept.vm", b"k"))
    _recording(site, "orphan.rec", b"o")
    for path in (recordings / "kept.rec", recordings / "orphan.rec", site.voicemail / "kept.vm"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    service = SyncService(
        SyncConfig(port=0),
        site.state_dir,
        outbox=site.outbox,
        documents=None,
        status=dict,
        blob_dirs={"voicemail": site.voicemail, "recording": recordings},
    )
    assert await service.sweep_blobs() == 1
    assert sorted(p.name for p in recordings.iterdir()) == ["kept.rec"]
    assert [p.name for p in site.voicemail.iterdir()] == ["kept.vm"]


ROUTES = {"routes": [{"match": "*", "destinations": ["cloud"]}]}
PROMPT = b"\xd5" * 800  # 0.1 s of A-law silence


async def test_documents_put_get_list_confirm(site: Site) -> None:
    write = {"replaces": 0, "version": 1, "content": ROUTES}
    result = await site.call("PUT", "config/routing/default", body=write, rule="config-result")
    assert result == {"kind": "routing", "name": "default", "version": 1, "state": "applied"}
    assert len(site.routes) == 1
    replay = await site.call("PUT", "config/routing/default", body=write, rule="config-result")
    assert replay == result and len(site.routes) == 1
    document = await site.call("GET", "config/routing/default", rule="document")
    assert document["content"] == ROUTES and document["version"] == 1
    listed = await site.call("GET", "config", rule="document-list")
    assert [(d["kind"], d["name"], d["version"]) for d in listed["documents"]] == [("routing", "default", 1)]
    status = await site.call("GET", "status", rule="status")
    assert status["documents"] == listed["documents"]
    stale = await site.call(
        "PUT", "config/routing/default", body={"replaces": 0, "version": 2, "content": ROUTES}, status=412
    )
    assert (stale["error"], stale["current_version"]) == ("stale-version", 1)
    bad = {"routes": [{"match": "*", "destinations": ["bogus"]}]}
    invalid = await site.call(
        "PUT", "config/routing/default", body={"replaces": 1, "version": 2, "content": bad}, status=422
    )
    assert invalid["error"] == "invalid-document" and invalid["path"].startswith("content.routes")
    assert len(site.routes) == 1  # the running table is untouched
    assert (await site.call("GET", "config/routing/other", status=404))["error"] == "not-found"
    assert (await site.call("GET", "config/nonsense/x", status=404))["error"] == "not-found"
    schema = await site.call(
        "PUT",
        "config/routing/default",
        data=cbor2.dumps({"replaces": 1, "version": 2, "content": 1, "confirm_within": 0}),
        status=400,
    )
    assert (schema["error"], schema["path"]) == ("schema", "confirm_within")


async def test_prompt_confirmed_within_its_deadline(site: Site) -> None:
    write = {"replaces": 0, "version": 1, "content": PROMPT, "confirm_within": 60}
    pending = await site.call("PUT", "config/prompt/de/welcome", body=write, rule="config-result")
    assert pending["state"] == "pending-confirm" and "confirm_by" in pending
    again = await site.call(
        "PUT", "config/prompt/de/welcome", body={**write, "replaces": 1, "version": 2}, status=409
    )
    assert again["error"] == "confirm-pending"
    confirmed = await site.call(
        "POST", "config/prompt/de/welcome/confirm", body={"version": 1}, rule="config-result"
    )
    assert confirmed["state"] == "applied"
    twice = await site.call("POST", "config/prompt/de/welcome/confirm", body={"version": 1}, status=409)
    assert twice["error"] == "nothing-to-confirm"
    assert (await site.call("GET", "config/prompt/de/welcome", rule="document"))["content"] == PROMPT


async def test_unconfirmed_document_reverts_when_its_deadline_passes(site: Site) -> None:
    await site.call("PUT", "config/routing/default", body={"replaces": 0, "version": 1, "content": ROUTES})
    other = {
        "routes": [{"match": "+49*", "destinations": ["cloud"]}, {"match": "*", "destinations": ["cloud"]}]
    }
    write = {"replaces": 1, "version": 2, "content": other, "confirm_within": 30}
    await site.call("PUT", "config/routing/default", body=write, rule="config-result")
    assert site.documents.get_timer() == site.clock.now + 30
    site.clock.now += 31
    site.service._arm_documents_timer()  # the clock jumped; the timer is due at once
    for _ in range(200):
        document = await site.call("GET", "config/routing/default", rule="document")
        if document["version"] == 1:
            break
        await asyncio.sleep(0.01)
    assert document["version"] == 1 and "confirm_by" not in document
    assert site.routes[-1] == site.routes[0]


async def test_a_revert_that_fails_is_retried_a_second_later_not_at_once(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = {"replaces": 0, "version": 1, "content": ROUTES, "confirm_within": 30}
    await site.call("PUT", "config/routing/default", body=write, rule="config-result")
    calls: list[float] = []

    async def failing(now: float) -> None:
        calls.append(now)
        raise RuntimeError("database is locked")

    monkeypatch.setattr(site.documents, "handle_timer", failing)
    site.clock.now += 31
    site.service._arm_documents_timer()
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)  # the failed run's re-arming happens in the same step as its failure
    assert len(calls) == 1  # still due, but not retried in a tight loop
    timer = site.service._timer
    assert timer is not None
    assert timer.when() - asyncio.get_running_loop().time() > 0.5


async def test_documents_unavailable_without_a_store(tmp_path: Path) -> None:
    async with running_site(tmp_path, with_documents=False) as site:
        assert (await site.call("GET", "config", status=503))["error"] == "unavailable"
        status = await site.call("GET", "status", rule="status")
        assert status["documents"] == []


async def test_an_unexpected_fault_is_a_cbor_500_without_detail(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> None:
        raise RuntimeError("secret detail of the fault")

    monkeypatch.setattr(site.outbox, "stats", broken)
    error = await site.call("GET", "status", status=500)
    assert error["error"] == "internal" and "secret" not in error["message"]
    assert (await site.call("GET", "health", rule="health"))["status"] == "ok"


async def test_a_large_body_of_many_items_is_checked_off_the_event_loop(tmp_path: Path) -> None:
    async with running_site(tmp_path, max_body=512 * 1024) as site:
        write = cbor2.dumps({"replaces": 0, "version": 1, "content": [0] * 100_000})
        put = asyncio.create_task(site.call("PUT", "config/routing/default", data=write, status=422))
        health = await site.call("GET", "health", rule="health")  # served meanwhile
        assert health["status"] == "ok"
        assert (await put)["error"] == "invalid-document"
        error = await site.call("POST", "ack", data=b"\x9a\x00\x01\x86\xa0" + b"\x00" * 100_000, status=400)
        assert error["error"] == "schema"


async def test_a_download_cut_by_the_client_ends_quietly(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="appliance.sync.server")
    data = os.urandom(1024) * 8 * 1024  # 8 MiB: more than the sockets buffer
    await site.outbox.append("ivr.voicemail", _voicemail(site, "big.vm", data))
    response = await site.session.get(site.url("blobs/voicemail/big.vm"))
    assert response.status == 200
    await response.content.read(1024)
    response.close()  # the cloud lost its connection mid-transfer
    for _ in range(100):
        if any("transfer ended" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.02)
    assert any("transfer ended" in r.getMessage() for r in caplog.records)
    assert (await site.call("GET", "health", rule="health"))["status"] == "ok"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    async with site.session.get(
        site.url("blobs/voicemail/big.vm"), headers={"Range": "bytes=1000-"}
    ) as again:
        assert again.status == 206 and await again.read() == data[1000:]
