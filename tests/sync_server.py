"""A running sync API for tests: the real outbox on a temporary database, the site PKI, mutual TLS on
127.0.0.1, a client session with the cloud's certificate, and a small document store in memory."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import cbor2

from appliance.config.schema import SyncConfig
from appliance.store.database import Database
from appliance.store.outbox import Outbox
from appliance.sync.pki import SitePki
from appliance.sync.service import SyncService
from tests.sync_schema import validate

CBOR = "application/cbor"


class MemoryDocumentError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def as_message(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


@dataclass
class _Doc:
    kind: str
    name: str
    version: int
    content: Any
    applied_at: float
    confirm_by: float | None = None
    deadline: float | None = None

    def as_message(self) -> dict[str, Any]:
        body = {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "content": self.content,
            "applied_at": "2026-11-24T21:30:00.000Z",
        }
        if self.confirm_by is not None:
            body["confirm_by"] = "2026-11-24T21:31:00.000Z"
        return body


@dataclass
class _Info:
    doc: _Doc

    def as_message(self) -> dict[str, Any]:
        body = {
            "kind": self.doc.kind,
            "name": self.doc.name,
            "version": self.doc.version,
            "sha256": "00" * 32,
            "applied_at": "2026-11-24T21:30:00.000Z",
        }
        if self.doc.confirm_by is not None:
            body.update(confirm_by="2026-11-24T21:31:00.000Z", previous_version=0)
        return body


@dataclass
class _Result:
    doc: _Doc

    def as_message(self) -> dict[str, Any]:
        body = {
            "kind": self.doc.kind,
            "name": self.doc.name,
            "version": self.doc.version,
            "state": "pending-confirm" if self.doc.deadline is not None else "applied",
        }
        if self.doc.deadline is not None:
            body["confirm_by"] = "2026-11-24T21:31:00.000Z"
        return body


@dataclass
class MemoryDocuments:
    """The DocumentStore interface over a dict: kinds "routing" and "prompt"; content {"bad": ...} is
    refused at path content.bad; unconfirmed writes are removed when due."""

    docs: dict[tuple[str, str], _Doc] = field(default_factory=dict)
    timer_calls: list[float] = field(default_factory=list)

    def _check_kind(self, kind: str) -> None:
        if kind not in ("routing", "prompt"):
            raise MemoryDocumentError(404, "not-found", f"no document kind {kind}")

    async def put(
        self,
        kind: str,
        name: str,
        replaces: int,
        version: int,
        content: Any,
        confirm_within: float | None,
        now: float,
    ) -> _Result:
        self._check_kind(kind)
        current = self.docs.get((kind, name))
        running = current.version if current else 0
        if current is not None and current.version == version and current.content == content:
            return _Result(current)
        if replaces != running:
            raise MemoryDocumentError(412, "stale-version", "stale", path="replaces", current_version=running)
        if current is not None and current.deadline is not None:
            raise MemoryDocumentError(409, "confirm-pending", "pending")
        if isinstance(content, dict) and "bad" in content:
            raise MemoryDocumentError(422, "invalid-document", "bad is bad", path="content.bad")
        deadline = now + confirm_within if confirm_within else None
        doc = _Doc(kind, name, version, content, 0.0, 1.0 if deadline else None, deadline)
        self.docs[(kind, name)] = doc
        return _Result(doc)

    async def confirm(self, kind: str, name: str, version: int, now: float) -> _Result:
        self._check_kind(kind)
        doc = self.docs.get((kind, name))
        if doc is None or doc.version != version or doc.deadline is None:
            raise MemoryDocumentError(409, "nothing-to-confirm", "nothing")
        doc.deadline = doc.confirm_by = None
        return _Result(doc)

    async def get(self, kind: str, name: str) -> _Doc | None:
        self._check_kind(kind)
        return self.docs.get((kind, name))

    async def list(self) -> list[_Info]:
        return [_Info(d) for d in self.docs.values()]

    def get_timer(self) -> float | None:
        return min((d.deadline for d in self.docs.values() if d.deadline is not None), default=None)

    async def handle_timer(self, now: float) -> None:
        self.timer_calls.append(now)
        for key, doc in list(self.docs.items()):
            if doc.deadline is not None and doc.deadline <= now:
                del self.docs[key]


@dataclass
class Site:
    state_dir: Path
    db: Database
    outbox: Outbox
    documents: MemoryDocuments
    service: SyncService
    base: str
    host: str
    port: int
    session: aiohttp.ClientSession

    @property
    def pki(self) -> SitePki:
        assert self.service.pki is not None
        return self.service.pki

    @property
    def voicemail(self) -> Path:
        return self.state_dir / "voicemail"

    def url(self, path: str) -> str:
        return f"{self.base}/sync/v1/{path}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        rule: str | None = None,
        body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        status: int = 200,
    ) -> Any:
        """One request; asserts the status and validates the CBOR answer against ``rule`` (``error``
        for any status >= 400) and returns it decoded."""
        sent = headers or {}
        if body is not None:
            validate(_request_rule(method, path), body)
            data = cbor2.dumps(body)
        if data is not None:
            sent = {"Content-Type": CBOR, **sent}
        async with self.session.request(method, self.url(path), data=data, headers=sent) as response:
            raw = await response.read()
            assert response.status == status, (response.status, raw[:300])
            assert response.content_type == CBOR
            validate("error" if status >= 400 else (rule or "any"), raw)
            return cbor2.loads(raw)


def _request_rule(method: str, path: str) -> str:
    if path == "ack":
        return "ack-request"
    return "confirm-request" if path.endswith("/confirm") else "config-write"


def client_context(pki: SitePki, certificate: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_certificate))
    if certificate is not None and key is not None:
        context.load_cert_chain(str(certificate), str(key))
    return context


@asynccontextmanager
async def running_site(
    tmp_path: Path,
    *,
    max_body: int = 64 * 1024,
    max_wait: float = 30.0,
    status: dict[str, Any] | None = None,
    with_documents: bool = True,
) -> AsyncIterator[Site]:
    state_dir = tmp_path / "state"
    (state_dir / "voicemail").mkdir(parents=True)
    db = await Database.open(state_dir / "appliance.db")
    outbox = Outbox(db, quota_bytes=64 * 1024 * 1024)
    documents = MemoryDocuments()
    parts = status or {
        "site": "test-site",
        "serial": "SN1",
        "firmware": "1.0",
        "mode": "online",
        "mode_since": 1732480000.0,
        "forced": None,
        "uplink": "wan0",
    }
    config = SyncConfig(port=0, max_body=max_body, max_wait=max_wait)
    service = SyncService(
        config,
        state_dir,
        outbox=outbox,
        documents=documents if with_documents else None,
        status=lambda: parts,
        database=db,
        hosts=("127.0.0.1", "localhost"),
    )
    host, port = await service.start()
    assert service.pki is not None
    context = client_context(service.pki, service.pki.client_certificate, service.pki.client_key)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
    try:
        yield Site(state_dir, db, outbox, documents, service, f"https://{host}:{port}", host, port, session)
    finally:
        await session.close()
        await service.stop()
        await outbox.close()
        await db.close()
