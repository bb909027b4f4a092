"""The HTTPS health check against a local aiohttp server with a certificate from a throwaway CA."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from appliance.sync import pki
from appliance.wan.https_probe import HttpsProbe


@dataclass
class HealthServer:
    url: str
    client_ssl: ssl.SSLContext
    status: list[int] = field(default_factory=lambda: [200])
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    requested: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def health(tmp_path: Path) -> AsyncIterator[HealthServer]:
    paths = pki.ensure_site_pki(tmp_path, ("127.0.0.1",), site="wan-test")
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(paths.server_certificate, paths.server_key)
    client_ssl = ssl.create_default_context(cafile=str(paths.ca_certificate))
    state = HealthServer("", client_ssl)
    state.hold.set()

    async def handle(request: web.Request) -> web.Response:
        state.requested.set()
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
