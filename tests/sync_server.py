"""A running sync API for tests: the real outbox and document store (routing and prompts) on a temporary
database, the site PKI, mutual TLS on 127.0.0.1, and a client session with the cloud's certificate."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import cbor2

from appliance.config import Config
from appliance.config.schema import SyncConfig
from appliance.store.database import Database
from appliance.store.outbox import Outbox
from appliance.sync.documents import DocumentStore
from appliance.sync.documents.prompt import PromptOwner
from appliance.sync.documents.routing import RoutingOwner
from appliance.sync.pki import SitePki
from appliance.sync.service import SyncService
from tests.sync_schema import validate

CBOR = "application/cbor"


class Clock:
    """A monotonic clock advanced by hand, for the documents' confirmation deadlines."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Site:
    state_dir: Path
    db: Database
    outbox: Outbox
    documents: DocumentStore
    routes: list[Any]
    clock: Clock
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
    blob_dirs: dict[str, Path] | None = None,
) -> AsyncIterator[Site]:
    state_dir = tmp_path / "state"
    (state_dir / "voicemail").mkdir(parents=True)
    db = await Database.open(state_dir / "appliance.db")
    outbox = Outbox(db, quota_bytes=64 * 1024 * 1024)
    routes: list[Any] = []
    owners = [RoutingOwner(Config(), on_routes=routes.append), PromptOwner(state_dir / "ivr" / "prompts")]
    documents = DocumentStore(db, owners=owners, append=outbox.append, wall=lambda: 1732480000.0)
    clock = Clock()
    await documents.start(clock())
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
        blob_dirs=blob_dirs,
        database=db,
        hosts=("127.0.0.1", "localhost"),
        monotonic=clock,
    )
    host, port = await service.start()
    assert service.pki is not None
    context = client_context(service.pki, service.pki.client_certificate, service.pki.client_key)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
    try:
        yield Site(
            state_dir,
            db,
            outbox,
            documents,
            routes,
            clock,
            service,
            f"https://{host}:{port}",
            host,
            port,
            session,
        )
    finally:
        await session.close()
        await service.stop()
        await outbox.close()
        await db.close()
