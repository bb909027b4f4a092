"""Mutual TLS of the sync API: unknown clients are refused in the handshake; the appliance certificate
rotates without dropping open requests."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from pathlib import Path

import aiohttp
import pytest

from appliance.sync import pki
from tests import sync_pki
from tests.sync_server import Site, client_context, running_site


async def _refused(site: Site, context: ssl.SSLContext) -> None:
    """The request fails in TLS: the client sees a connection error, never an HTTP status."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        with pytest.raises((aiohttp.ClientConnectionError, ssl.SSLError, ConnectionError)):
            async with session.get(site.url("health")) as response:
                await response.read()
                pytest.fail(f"answered {response.status}")


async def test_unknown_ca_missing_and_expired_client_certificates_are_refused(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        foreign = sync_pki.foreign_client(tmp_path)
        await _refused(site, client_context(site.pki, foreign.certificate, foreign.key))
        await _refused(site, client_context(site.pki))
        expired = sync_pki.expired_client(tmp_path, site.pki)
        await _refused(site, client_context(site.pki, expired.certificate, expired.key))
        assert site.service.tls is not None
        assert site.service.tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
        await site.call("GET", "health", rule="health")  # the server still serves its cloud


async def _presented(site: Site) -> str:
    """SHA-256 of the certificate a new connection is shown."""
    context = client_context(site.pki, site.pki.client_certificate, site.pki.client_key)
    _reader, writer = await asyncio.open_connection(site.host, site.port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return hashlib.sha256(der).hexdigest()


async def test_rotation_keeps_open_requests_and_new_connections_see_the_new_certificate(
    tmp_path: Path,
) -> None:
    async with running_site(tmp_path) as site:
        old = await _presented(site)
        poll = asyncio.create_task(site.call("GET", "events?after=0&wait=30", rule="event-batch"))
        await asyncio.sleep(0.05)  # the long poll is open on its connection
        rotated = sync_pki.new_server(site.pki)
        pki.write_issued(rotated, site.pki.server_certificate, site.pki.server_key)
        assert site.service.reload_certificates()
        new = pki.fingerprint(rotated.certificate)
        assert new != old
        assert await _presented(site) == new
        assert not poll.done()
        await site.outbox.append("mode.changed", {"mode": "online"})
        batch = await asyncio.wait_for(poll, 5)
        assert [e["seq"] for e in batch["events"]] == [1]
        status = await site.call("GET", "status", rule="status")
        assert status["certificate"]["sha256"] == new and status["certificate"]["subject"] == "CN=rotated"


async def test_files_are_watched_by_mtime_and_a_bad_pair_keeps_the_running_one(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        tls = site.service.tls
        assert tls is not None
        assert not tls.check()  # nothing changed
        running = tls.info
        # A key that does not match: refused, the running pair stays.
        other = sync_pki.new_server(site.pki, "mismatch")
        site.pki.server_key.write_bytes(other.key_pem())
        assert not tls.check()
        assert tls.info == running
        assert await _presented(site) == running.sha256
        rotated = sync_pki.new_server(site.pki, "watched")
        pki.write_issued(rotated, site.pki.server_certificate, site.pki.server_key)
        stamp = os.stat(site.pki.server_certificate).st_mtime_ns + 1_000_000
        os.utime(site.pki.server_certificate, ns=(stamp, stamp))
        assert tls.check()
        assert await _presented(site) == pki.fingerprint(rotated.certificate)
