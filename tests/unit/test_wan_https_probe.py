"""The HTTPS health check against a local aiohttp server with a certificate from a throwaway CA, and the
TLS context built from ``[cloud] health_ca`` / ``health_certificate`` / ``health_private_key``."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from appliance.sync import pki
from appliance.wan.https_probe import HealthTlsError, HttpsProbe, health_ssl_context
from tests import sync_pki


@dataclass
class HealthServer:
    url: str
    client_ssl: ssl.SSLContext
    paths: pki.SitePki
    status: list[int] = field(default_factory=lambda: [200])
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    requested: asyncio.Event = field(default_factory=asyncio.Event)
    # The common name of the client certificate each request came with ("" without one).
    clients: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, *, mutual: bool = False) -> AsyncIterator[HealthServer]:
    """A health endpoint on 127.0.0.1 with a certificate from a throwaway site CA; with ``mutual`` it
    requires a client certificate from that CA in the handshake."""
    paths = sync_pki.site(tmp_path, ("127.0.0.1",))
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(paths.server_certificate, paths.server_key)
    if mutual:
        server_ssl.load_verify_locations(cafile=str(paths.ca_certificate))
        server_ssl.verify_mode = ssl.CERT_REQUIRED
    client_ssl = ssl.create_default_context(cafile=str(paths.ca_certificate))
    state = HealthServer("", client_ssl, paths)
    state.hold.set()

    async def handle(request: web.Request) -> web.Response:
        state.requested.set()
        peer = request.transport.get_extra_info("peercert") if request.transport is not None else None
        subject = dict(pair for rdn in peer["subject"] for pair in rdn) if peer else {}
        state.clients.append(str(subject.get("commonName", "")))
        await state.hold.wait()
        return web.Response(status=state.status[0], text="ok")

    app = web.Application()
    app.router.add_get("/health", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"https://127.0.0.1:{port}/health"
    try:
        yield state
    finally:
        state.hold.set()
        await runner.cleanup()


@pytest.fixture
async def health(tmp_path: Path) -> AsyncIterator[HealthServer]:
    async with serve(tmp_path) as state:
        yield state


class Results:
    def __init__(self) -> None:
        self.items: list[tuple[int, bool, str]] = []
        self.arrived = asyncio.Event()

    def __call__(self, probe_id: int, answered: bool, reason: str) -> None:
        self.items.append((probe_id, answered, reason))
        self.arrived.set()

    async def next(self) -> tuple[int, bool, str]:
        await asyncio.wait_for(self.arrived.wait(), 5.0)
        self.arrived.clear()
        return self.items[-1]


async def test_2xx_answers_the_round(health: HealthServer) -> None:
    results = Results()
    probe = HttpsProbe(health.url, timeout=2.0, on_result=results, ssl_context=health.client_ssl)
    try:
        probe.start(1)
        assert await results.next() == (1, True, "HTTP 200")
        health.status[0] = 204
        probe.start(2)
        assert await results.next() == (2, True, "HTTP 204")
    finally:
        await probe.close()


async def test_error_status_fails_the_round(health: HealthServer) -> None:
    health.status[0] = 503
    results = Results()
    probe = HttpsProbe(health.url, timeout=2.0, on_result=results, ssl_context=health.client_ssl)
    try:
        probe.start(7)
        assert await results.next() == (7, False, "HTTP 503 from the health check")
    finally:
        await probe.close()


async def test_no_answer_in_time_fails_the_round(health: HealthServer) -> None:
    health.hold.clear()
    results = Results()
    probe = HttpsProbe(health.url, timeout=0.2, on_result=results, ssl_context=health.client_ssl)
    try:
        probe.start(3)
        assert await results.next() == (3, False, "no HTTPS answer within 0.2 s")
    finally:
        await probe.close()


async def test_untrusted_certificate_fails_the_round(health: HealthServer) -> None:
    results = Results()
    probe = HttpsProbe(health.url, timeout=2.0, on_result=results)  # the system CAs do not know ours
    try:
        probe.start(4)
        probe_id, answered, reason = await results.next()
        assert (probe_id, answered) == (4, False) and "certificate" in reason.lower()
    finally:
        await probe.close()


async def test_refused_connection_fails_the_round(health: HealthServer) -> None:
    results = Results()
    url = health.url.rsplit(":", 1)[0] + ":1/health"
    probe = HttpsProbe(url, timeout=2.0, on_result=results, ssl_context=health.client_ssl)
    try:
        probe.start(5)
        probe_id, answered, reason = await results.next()
        assert (probe_id, answered) == (5, False) and reason.startswith("HTTPS health check failed")
    finally:
        await probe.close()


async def test_a_new_round_cancels_the_one_in_flight(health: HealthServer) -> None:
    health.hold.clear()
    results = Results()
    probe = HttpsProbe(health.url, timeout=5.0, on_result=results, ssl_context=health.client_ssl)
    try:
        probe.start(1)
        await asyncio.wait_for(health.requested.wait(), 5.0)
        probe.start(2)
        health.hold.set()
        assert await results.next() == (2, True, "HTTP 200")
        assert [r[0] for r in results.items] == [2]
    finally:
        await probe.close()


async def test_nothing_is_reported_after_close(health: HealthServer) -> None:
    health.hold.clear()
    results = Results()
    probe = HttpsProbe(health.url, timeout=5.0, on_result=results, ssl_context=health.client_ssl)
    probe.start(1)
    await probe.close()
    probe.start(2)
    health.hold.set()
    assert results.items == []


async def probe_once(url: str, ssl_context: ssl.SSLContext, probe_id: int = 1) -> tuple[int, bool, str]:
    results = Results()
    probe = HttpsProbe(url, timeout=2.0, on_result=results, ssl_context=ssl_context)
    try:
        probe.start(probe_id)
        return await results.next()
    finally:
        await probe.close()


async def test_health_ca_trusts_the_clouds_private_ca(health: HealthServer) -> None:
    context = health_ssl_context(str(health.paths.ca_certificate))
    assert await probe_once(health.url, context) == (1, True, "HTTP 200")
    # The same server with the system's CAs (health_ca = ""): the private CA is unknown, the round fails.
    _, answered, reason = await probe_once(health.url, health_ssl_context(), 2)
    assert not answered and "certificate verify failed" in reason
    assert health.clients == [""]  # only the first GET got through, and presented no client certificate


async def test_health_ca_alone_does_not_trust_the_system_cas(health: HealthServer, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    pki.write_issued(pki.make_ca("another CA"), other, tmp_path / "other-ca.key")
    _, answered, reason = await probe_once(health.url, health_ssl_context(str(other)))
    assert not answered and "certificate verify failed" in reason


async def test_mutual_tls_presents_the_client_certificate(tmp_path: Path) -> None:
    async with serve(tmp_path, mutual=True) as server:
        probe_cert = sync_pki.write_client(
            tmp_path, "probe", pki.issue(sync_pki.site_ca(server.paths), "health probe", client=True)
        )
        ca = str(server.paths.ca_certificate)
        context = health_ssl_context(ca, str(probe_cert.certificate), str(probe_cert.key))
        assert await probe_once(server.url, context) == (1, True, "HTTP 200")
        assert server.clients == ["health probe"]
        # Without a client certificate, or with one from a CA the cloud does not know, the handshake fails.
        for probe_id, without in ((2, health_ssl_context(ca)), (3, foreign_context(tmp_path, ca))):
            got_id, answered, reason = await probe_once(server.url, without, probe_id)
            assert (got_id, answered) == (probe_id, False) and reason.startswith("HTTPS health check failed")
        assert server.clients == ["health probe"]


def foreign_context(directory: Path, ca: str) -> ssl.SSLContext:
    foreign = sync_pki.foreign_client(directory)
    return health_ssl_context(ca, str(foreign.certificate), str(foreign.key))


def test_the_context_verifies_host_names_from_tls_1_2_on(health: HealthServer) -> None:
    context = health_ssl_context(str(health.paths.ca_certificate))
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_unloadable_files_raise_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(HealthTlsError) as info:
        health_ssl_context(str(junk))
    assert info.value.code == 78 and info.value.reason.startswith(f"[cloud] health_ca = '{junk}'")
    paths = sync_pki.site(tmp_path)
    with pytest.raises(HealthTlsError) as info:  # a certificate with a key that is not its own
        health_ssl_context("", str(paths.client_certificate), str(paths.server_key))
    assert "cannot load the client certificate" in info.value.reason
