"""The reference cloud client against an appliance speaking the sync API over mutual TLS: every endpoint,
typed errors, resumable verified blob downloads, the pull loop (blobs and store before ack, back-off when
the appliance goes away) and the command run once as a process.

``ContractServer`` is a small in-memory appliance built from sync.cddl with the server's own codec,
error tree and PKI; each of its answers is validated against sync.cddl, so the client is tested against
the contract itself."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import cbor2
import pytest
from aiohttp import web

from appliance.store import RawEvent
from appliance.sync import codec
from appliance.sync.client import (
    BlobIntegrityError,
    ClientError,
    ClientStore,
    ProtocolError,
    Puller,
    PullReport,
    SyncClient,
    TransportError,
)
from appliance.sync.errors import AckBeyondLast, NotFound, SyncError, error_body
from tests import sync_pki
from tests.sync_schema import validate

ROOT = Path(__file__).resolve().parents[2]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ContractServer:
    """An appliance's sync API in memory: an outbox, blobs and documents."""

    events: list[RawEvent] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    documents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    acked: int = 0
    last: int = 0
    events_served: int = 0
    fail_next: int = 0  # answer this many requests with fail_status
    fail_status: int = 503  # 503 and 500 with the appliance's error body, others with a proxy's text
    fail_path: str = ""  # only requests whose path ends so fail
    blob_chunk_delay: float = 0.0
    acks: list[int] = field(default_factory=list)
    on_ack: Callable[[int], None] | None = None  # sees each acknowledgement before it is applied
    drop_acks: int = 0  # break the connection of this many acknowledgements, unapplied
    appended: asyncio.Condition = field(default_factory=asyncio.Condition)
    served: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_served(self, count: int) -> None:
        """Until ``count`` event requests have been answered or are being held."""
        async with self.served:
            await self.served.wait_for(lambda: self.events_served >= count)

    async def append(self, type_: str, body: dict[str, Any]) -> RawEvent:
        self.last += 1
        hlc = (int(time.time() * 1000) << 16) | 1
        raw = RawEvent(self.last, os.urandom(16).hex(), type_, hlc, time.time(), cbor2.dumps(body))
        self.events.append(raw)
        async with self.appended:
            self.appended.notify_all()
        return raw

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/sync/v1/health", self._health)
        app.router.add_get("/sync/v1/status", self._status)
        app.router.add_get("/sync/v1/events", self._events)
        app.router.add_post("/sync/v1/ack", self._ack)
        app.router.add_get("/sync/v1/blobs/{blob_id:.+}", self._blob)
        app.router.add_get("/sync/v1/config", self._list)
        app.router.add_post("/sync/v1/config/{kind}/{name:.+}/confirm", self._confirm)
        app.router.add_get("/sync/v1/config/{kind}/{name:.+}", self._get)
        app.router.add_put("/sync/v1/config/{kind}/{name:.+}", self._put)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.fail_next and request.path.endswith(self.fail_path):
            self.fail_next -= 1
            if self.fail_status == 503:
                return self._cbor({"error": "unavailable", "message": "starting"}, "error", status=503)
            if self.fail_status == 500:
                return self._cbor({"error": "internal", "message": "database locked"}, "error", status=500)
            return web.Response(text="upstream trouble", status=self.fail_status)
        try:
            return await handler(request)
        except SyncError as exc:
            status, body = error_body(exc)
            return self._cbor(body, "error", status=status)

    @staticmethod
    def _cbor(value: dict[str, Any], rule: str, status: int = 200) -> web.Response:
        validate(rule, value)
        return web.Response(body=cbor2.dumps(value), status=status, content_type="application/cbor")

    def _outbox(self) -> dict[str, Any]:
        held = [e for e in self.events if e.seq > self.acked]
        return {"first_seq": self.acked + 1, "last_seq": self.last, "acked_seq": self.acked,
                "pending": len(held), "bytes": sum(len(e.body) for e in held), "quota_bytes": 1 << 30,
                "pressure": "normal"}  # fmt: skip

    async def _health(self, request: web.Request) -> web.Response:
        return self._cbor({"status": "ok", "mode": "online", "time": codec.utc_time(time.time())}, "health")

    async def _status(self, request: web.Request) -> web.Response:
        now = codec.utc_time(time.time())
        return self._cbor(
            {"site": "test-site", "serial": "PX-1", "firmware": "0.1.0", "mode": "online",
             "mode_since": now, "forced": None, "uplink": None, "outbox": self._outbox(),
             "documents": [self._info(k, n) for k, n in self.documents], "time": now,
             "certificate": {"subject": "CN=127.0.0.1", "not_after": now, "sha256": "00" * 32}},
            "status",
        )  # fmt: skip

    async def _events(self, request: web.Request) -> web.Response:
        after = int(request.query.get("after", "0"))
        limit = int(request.query.get("limit", "1000"))
        wait = float(request.query.get("wait", "0"))
        self.events_served += 1
        async with self.served:
            self.served.notify_all()
        if wait > 0 and self.last <= after:
            async with self.appended:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.appended.wait_for(lambda: self.last > after), wait)
        chosen = [e for e in self.events if e.seq > max(after, self.acked)][:limit]
        body = codec.encode_event_batch(chosen, first_seq=self.acked + 1, last_seq=self.last,
                                        acked_seq=self.acked)  # fmt: skip
        validate("event-batch", body)
        return web.Response(body=body, content_type="application/cbor")

    async def _ack(self, request: web.Request) -> web.Response:
        if self.drop_acks:
            self.drop_acks -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        upto = codec.decode_ack(await request.read()).upto
        self.acks.append(upto)
        if self.on_ack is not None:
            self.on_ack(upto)
        if upto > self.last:
            raise AckBeyondLast(f"upto {upto} is beyond the last seq {self.last}", path="upto")
        pruned = 0
        if upto > self.acked:
            pruned = sum(1 for e in self.events if self.acked < e.seq <= upto)
            self.events = [e for e in self.events if e.seq > upto]
            self.acked = upto
        return self._cbor({"acked_seq": self.acked, "pruned": pruned}, "ack-response")

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        blob_id = request.match_info["blob_id"]
        data = self.blobs.get(blob_id)
        if data is None:
            raise NotFound(f"no blob {blob_id}")
        etag = '"' + hashlib.sha256(data).hexdigest() + '"'
        first, status = 0, 200
        wanted = request.headers.get("Range")
        if wanted and request.headers.get("If-Range", etag) == etag:
            first = int(wanted.removeprefix("bytes=").split("-")[0])
            if first >= len(data):
                response = self._cbor({"error": "bad-range", "message": "past the end"}, "error", status=416)
                response.headers["Content-Range"] = f"bytes */{len(data)}"
                return response
            status = 206
        response = web.StreamResponse(status=status, headers={"ETag": etag})
        response.content_type = "application/octet-stream"
        response.content_length = len(data) - first
        if status == 206:
            response.headers["Content-Range"] = f"bytes {first}-{len(data) - 1}/{len(data)}"
        await response.prepare(request)
        for start in range(first, len(data), 4096):
            await response.write(data[start : start + 4096])
            if self.blob_chunk_delay:
                await asyncio.sleep(self.blob_chunk_delay)
        await response.write_eof()
        return response

    def _info(self, kind: str, name: str) -> dict[str, Any]:
        doc = self.documents[kind, name]
        digest = hashlib.sha256(cbor2.dumps(doc["content"], canonical=True)).hexdigest()
        info = {"kind": kind, "name": name, "version": doc["version"], "applied_at": doc["applied_at"],
                "sha256": digest}  # fmt: skip
        if "confirm_by" in doc:
            info["confirm_by"] = doc["confirm_by"]
        return info

    async def _list(self, request: web.Request) -> web.Response:
        return self._cbor({"documents": [self._info(k, n) for k, n in self.documents]}, "document-list")

    def _doc(self, request: web.Request) -> tuple[str, str]:
        return request.match_info["kind"], request.match_info["name"]

    async def _get(self, request: web.Request) -> web.Response:
        kind, name = self._doc(request)
        doc = self.documents.get((kind, name))
        if doc is None:
            raise NotFound(f"no document {kind}/{name}")
        return self._cbor({"kind": kind, "name": name, **doc}, "document")

    def _result(self, kind: str, name: str) -> web.Response:
        doc = self.documents[kind, name]
        result = {"kind": kind, "name": name, "version": doc["version"],
                  "state": "pending-confirm" if "confirm_by" in doc else "applied"}  # fmt: skip
        if "confirm_by" in doc:
            result["confirm_by"] = doc["confirm_by"]
        return self._cbor(result, "config-result")

    async def _put(self, request: web.Request) -> web.Response:
        kind, name = self._doc(request)
        write = codec.decode_config_write(await request.read())
        running = self.documents.get((kind, name), {}).get("version", 0)
        if write.replaces != running:
            body = {"error": "stale-version", "message": f"running version is {running}",
                    "current_version": running}  # fmt: skip
            return self._cbor(body, "error", status=412)
        if not isinstance(write.content, dict) or "routes" not in write.content:
            body = {"error": "invalid-document", "message": "routes missing", "path": "content.routes"}
            return self._cbor(body, "error", status=422)
        doc: dict[str, Any] = {"version": write.version, "content": write.content,
                               "applied_at": codec.utc_time(time.time())}  # fmt: skip
        if write.confirm_within:
            doc["confirm_by"] = codec.utc_time(time.time() + write.confirm_within)
        self.documents[kind, name] = doc
        return self._result(kind, name)

    async def _confirm(self, request: web.Request) -> web.Response:
        kind, name = self._doc(request)
        version = codec.decode_confirm(await request.read()).version
        doc = self.documents.get((kind, name))
        if doc is None or doc["version"] != version or "confirm_by" not in doc:
            body = {"error": "nothing-to-confirm", "message": f"version {version} waits for nothing"}
            return self._cbor(body, "error", status=409)
        del doc["confirm_by"]
        return self._result(kind, name)


@dataclass
class Site:
    server: ContractServer
    url: str
    ca: Path
    cert: Path
    key: Path
    runner: web.AppRunner
    ssl: ssl.SSLContext

    def client(self, **kwargs: Any) -> SyncClient:
        return SyncClient(self.url, ca=self.ca, cert=self.cert, key=self.key, **kwargs)

    def argv(self) -> list[str]:
        return ["--url", self.url, "--ca", str(self.ca), "--cert", str(self.cert), "--key", str(self.key)]

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def start_again(self) -> None:
        """The appliance back on the same port after :meth:`stop`."""
        self.runner = web.AppRunner(self.server.app())
        await self.runner.setup()
        port = int(self.url.rsplit(":", 1)[1])
        await web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=self.ssl).start()


def server_ssl(paths: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(paths.ca_certificate))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(paths.server_certificate), str(paths.server_key))
    return context


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    paths = sync_pki.site(tmp_path / "state")
    server = ContractServer()
    runner = web.AppRunner(server.app())
    await runner.setup()
    context = server_ssl(paths)
    tcp = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await tcp.start()
    port = runner.addresses[0][1]
    made = Site(server, f"https://127.0.0.1:{port}", paths.ca_certificate, paths.client_certificate,
                paths.client_key, runner, context)  # fmt: skip
    yield made
    await made.runner.cleanup()


async def fill(server: ContractServer, count: int, *, voicemail_every: int = 0) -> None:
    for n in range(1, count + 1):
        if voicemail_every and n % voicemail_every == 0:
            name = f"{n:08d}.vm"
            server.blobs["voicemail/" + name] = os.urandom(20_000 + n)
            body = {"record_id": f"{n:032x}", "blob": {"path": f"/var/lib/pop/voicemail/{name}",
                    "size": 20_000 + n, "sha256": "00", "key_id": "k1"}}  # fmt: skip
            await server.append("ivr.voicemail", body)
        else:
            await server.append("call.record", {"call_id": f"call-{n}", "duration": n / 10})


async def test_health_status_and_events(site: Site) -> None:
    await fill(site.server, 5)
    async with site.client() as client:
        assert (await client.health())["status"] == "ok"
        status = await client.status()
        assert status["outbox"]["last_seq"] == 5
        batch = await client.events(after=0, limit=3)
        assert [e.seq for e in batch.events] == [1, 2, 3]
        assert batch.upto == 3
        assert (batch.first_seq, batch.last_seq, batch.acked_seq) == (1, 5, 0)
        first = batch.events[0]
        assert first.type == "call.record"
        assert first.body == {"call_id": "call-1", "duration": 0.1}
        assert first.id == site.server.events[0].id
        assert isinstance(first.created, float)
        assert await client.ack(3) == {"acked_seq": 3, "pruned": 3}
        assert await client.ack(2) == {"acked_seq": 3, "pruned": 0}  # a replay changes nothing
        rest = await client.events(after=3)
        assert [e.seq for e in rest.events] == [4, 5]
        assert rest.first_seq == 4


async def test_long_poll_returns_when_an_event_is_appended(site: Site) -> None:
    async with site.client() as client:
        waiting = asyncio.create_task(client.events(after=0, wait=30))
        await site.server.wait_served(1)
        await site.server.append("mode.changed", {"mode": "survivable"})
        batch = await asyncio.wait_for(waiting, 10)
        assert [e.type for e in batch.events] == ["mode.changed"]


async def test_errors_carry_status_code_message_and_path(site: Site) -> None:
    await fill(site.server, 2)
    async with site.client() as client:
        with pytest.raises(ClientError) as beyond:
            await client.ack(9)
        assert (beyond.value.status, beyond.value.code, beyond.value.path) == (409, "ack-beyond-last", "upto")
        assert "beyond" in beyond.value.message
        with pytest.raises(ClientError) as invalid:
            await client.put_document("routing", "main", {"rutes": []}, 0, 1)
        assert (invalid.value.status, invalid.value.code, invalid.value.path) == (
            422,
            "invalid-document",
            "content.routes",
        )
        with pytest.raises(ClientError) as missing:
            await client.blob("voicemail/none.vm", site.ca.parent / "none")
        assert (missing.value.status, missing.value.code) == (404, "not-found")


async def test_documents_put_get_list_confirm_and_stale_version(site: Site) -> None:
    routes = {"routes": [{"match": "*", "destinations": ["cloud"]}]}
    async with site.client() as client:
        assert await client.get_document("routing", "main") is None
        result = await client.put_document("routing", "main", routes, 0, 1, confirm_within=60)
        assert result["state"] == "pending-confirm"
        assert "confirm_by" in result
        assert (await client.confirm("routing", "main", 1))["state"] == "applied"
        with pytest.raises(ClientError) as nothing:
            await client.confirm("routing", "main", 1)
        assert nothing.value.code == "nothing-to-confirm"
        with pytest.raises(ClientError) as stale:
            await client.put_document("routing", "main", routes, 0, 2)
        assert (stale.value.status, stale.value.code, stale.value.current_version) == (
            412,
            "stale-version",
            1,
        )
        document = await client.get_document("routing", "main")
        assert document is not None
        assert (document["version"], document["content"]) == (1, routes)
        assert [(d["kind"], d["name"], d["version"]) for d in await client.list_documents()] == [
            ("routing", "main", 1)
        ]


async def test_blob_download_resumes_and_verifies(site: Site, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    site.server.blobs["voicemail/a.vm"] = data
    dest = tmp_path / "a.vm"
    etag = '"' + hashlib.sha256(data).hexdigest() + '"'
    # A download broken after 12,345 bytes left these behind.
    (tmp_path / "a.vm.part").write_bytes(data[:12_345])
    (tmp_path / "a.vm.etag").write_text(etag)
    async with site.client() as client:
        assert await client.blob("voicemail/a.vm", dest) == len(data)
        assert dest.read_bytes() == data
        assert not (tmp_path / "a.vm.part").exists()
        assert not (tmp_path / "a.vm.etag").exists()

        # The blob changed since the partial download: If-Range gets the whole new blob.
        (tmp_path / "b.part").write_bytes(b"old bytes")
        (tmp_path / "b.etag").write_text('"' + "0" * 64 + '"')
        assert await client.blob("voicemail/a.vm", tmp_path / "b") == len(data)
        assert (tmp_path / "b").read_bytes() == data

        # Whole but not yet renamed (416 on the resume): only the rename is left to do.
        (tmp_path / "c.part").write_bytes(data)
        (tmp_path / "c.etag").write_text(etag)
        assert await client.blob("voicemail/a.vm", tmp_path / "c") == len(data)
        assert (tmp_path / "c").read_bytes() == data

        # A partial file of other bytes does not hash to the ETag: refused, nothing left behind.
        (tmp_path / "d.part").write_bytes(b"x" * 100)
        (tmp_path / "d.etag").write_text(etag)
        with pytest.raises(BlobIntegrityError):
            await client.blob("voicemail/a.vm", tmp_path / "d")
        assert not (tmp_path / "d").exists()
        assert not (tmp_path / "d.part").exists()
        assert await client.blob("voicemail/a.vm", tmp_path / "d") == len(data)  # the next try starts over


async def test_unknown_server_and_unreachable_appliance(site: Site, tmp_path: Path) -> None:
    other = sync_pki.site(tmp_path / "other")
    async with SyncClient(site.url, ca=other.ca_certificate, cert=site.cert, key=site.key) as client:
        with pytest.raises(TransportError):  # the appliance's certificate is not from our CA
            await client.health()
    await site.stop()
    async with site.client(timeout=5) as client:
        with pytest.raises(TransportError):
            await client.health()


async def test_puller_fetches_blobs_stores_then_acknowledges(site: Site, tmp_path: Path) -> None:
    await fill(site.server, 25, voicemail_every=10)
    with ClientStore.open(tmp_path / "events.db") as store:
        async with site.client() as client:
            reports: list[PullReport] = []
            puller = Puller(client, store, tmp_path / "blobs", limit=10, wait=0)
            assert await puller.run(on_round=reports.append) == 25
        assert [r.stored for r in reports] == [10, 10, 5]
        assert [r.blobs for r in reports] == [1, 1, 0]
        assert site.server.acks == [10, 20, 25]
        assert [e.seq for e in store.iter_events()] == list(range(1, 26))
        for n in (10, 20):
            name = f"voicemail/{n:08d}.vm"
            assert (tmp_path / "blobs" / name).read_bytes() == site.server.blobs[name]


async def test_puller_acknowledges_what_a_crash_left_unacknowledged(site: Site, tmp_path: Path) -> None:
    await fill(site.server, 4)
    with ClientStore.open(tmp_path / "events.db") as store:
        async with site.client() as client:
            store.store(await client.events(after=0))  # stored, then the process died before the ack
            assert await Puller(client, store, wait=0).run() == 0
    assert site.server.acked == 4


async def test_puller_backs_off_and_keeps_its_position(site: Site, tmp_path: Path) -> None:
    await fill(site.server, 30)
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 3:
            await site.start_again()

    with ClientStore.open(tmp_path / "events.db") as store:
        async with site.client(timeout=5) as client:
            puller = Puller(client, store, limit=10, wait=0, sleep=sleep)
            await puller.pull_once()
            await site.stop()
            site.server.fail_next = 2  # and then it answers 503 twice while starting
            assert await puller.run() == 20
        assert delays == [0.1, 0.2, 0.4, 0.8, 1.6]
        assert [e.seq for e in store.iter_events()] == list(range(1, 31))
    assert site.server.acked == 30


async def test_puller_sends_a_lost_acknowledgement_again(site: Site, tmp_path: Path) -> None:
    await fill(site.server, 5)
    site.server.drop_acks = 1
    reports: list[PullReport] = []

    async def sleep(delay: float) -> None:
        pass

    with ClientStore.open(tmp_path / "events.db") as store:
        async with site.client() as client:
            assert await Puller(client, store, wait=0, sleep=sleep).run(on_round=reports.append) == 5
    assert site.server.acked == 5
    assert [(r.received, r.stored, r.acked_seq, r.acknowledged) for r in reports] == [(0, 0, 5, True)]


async def test_puller_stops_on_a_gap(site: Site, tmp_path: Path) -> None:
    await fill(site.server, 6)
    with ClientStore.open(tmp_path / "events.db") as store:
        async with site.client() as client:
            await client.ack(3)  # somebody else acknowledged 1..3: this empty store starts at 4
            assert await Puller(client, store, wait=0).run() == 3
            assert store.first_seq() == 4


def run_command(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.sync.client", *site.argv(), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip


async def test_command(site: Site, tmp_path: Path) -> None:
    await fill(site.server, 12, voicemail_every=5)
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"routes": [{"match": "*", "destinations": ["cloud"]}]}))
    db, blobs = tmp_path / "events.db", tmp_path / "blobs"

    def commands() -> list[subprocess.CompletedProcess[str]]:
        return [
            run_command(site, "pull", "--store", str(db), "--blobs", str(blobs), "--limit", "5"),
            run_command(site, "status"),
            run_command(site, "push", "routing", "main", str(routes), "--confirm-within", "30"),
            run_command(site, "confirm", "routing", "main", "1"),
            run_command(site, "push", "routing", "main", str(routes), "--replaces", "0"),
            run_command(site, "blob", "voicemail/00000005.vm", str(tmp_path / "vm")),
        ]

    pulled, status, pushed, confirmed, stale, blob = await asyncio.to_thread(commands)
    lines = [json.loads(line) for line in pulled.stdout.splitlines()]
    assert pulled.returncode == 0, pulled.stderr
    assert [line.get("stored") for line in lines] == [5, 5, 2, 12]
    assert lines[-1] == {"done": True, "stored": 12, "last_held": 12}
    assert (blobs / "voicemail" / "00000010.vm").exists()
    assert json.loads(status.stdout)["outbox"]["acked_seq"] == 12
    assert json.loads(pushed.stdout)["state"] == "pending-confirm"
    assert json.loads(confirmed.stdout)["state"] == "applied"
    assert stale.returncode == 1
    assert stale.stderr.count("\n") == 1
    assert "412 stale-version" in stale.stderr
    assert "Traceback" not in stale.stderr
    assert blob.returncode == 0
    assert (tmp_path / "vm").read_bytes() == site.server.blobs["voicemail/00000005.vm"]


def test_appliance_command_delegates(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from appliance.cli import main; sys.exit(main())",
         "sync-client", "--url", "http://127.0.0.1:9", "health"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("sync-client: ")
    assert len(done.stderr.splitlines()) == 1


async def test_client_outside_context_refuses() -> None:
    client = SyncClient("http://127.0.0.1:9")
    with pytest.raises(RuntimeError):
        await client.health()
    with pytest.raises(ValueError):
        SyncClient("https://127.0.0.1:9")


async def test_transport_error_when_connection_breaks(tmp_path: Path) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    app = web.Application()
    app.router.add_get("/sync/v1/health", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with SyncClient(f"http://127.0.0.1:{runner.addresses[0][1]}") as client:
            with pytest.raises(TransportError):
                await client.health()
    finally:
        await runner.cleanup()
    assert aiohttp  # the client's transport errors come from aiohttp's


@pytest.mark.parametrize("answer", ["416", "206-elsewhere"])
async def test_blob_does_not_loop_on_an_appliance_that_never_continues(answer: str, tmp_path: Path) -> None:
    async def blob(request: web.Request) -> web.Response:
        if answer == "416":
            body = cbor2.dumps({"error": "bad-range", "message": "no"})
            return web.Response(status=416, body=body, content_type="application/cbor")
        headers = {"ETag": '"' + "0" * 64 + '"', "Content-Range": "bytes 5-9/10"}
        return web.Response(status=206, body=b"12345", headers=headers)

    app = web.Application()
    app.router.add_get("/sync/v1/blobs/{blob_id:.+}", blob)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    (tmp_path / "x.part").write_bytes(b"abc")
    (tmp_path / "x.etag").write_text('"' + "0" * 64 + '"')
    try:
        async with SyncClient(f"http://127.0.0.1:{runner.addresses[0][1]}") as client:
            with pytest.raises((ClientError, ProtocolError)) as info:
                await client.blob("voicemail/x", tmp_path / "x")
    finally:
        await runner.cleanup()
    if answer == "416":
        assert isinstance(info.value, ClientError) and info.value.status == 416
    assert not (tmp_path / "x").exists()
