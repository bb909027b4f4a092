"""The HTTPS part of a cloud probe round: GET ``[cloud] health_url``, answered when a 2xx comes in time.

The core (:class:`appliance.core.ApplianceCore`) calls :meth:`HttpsProbe.start` with the round's probe id
when it sends the SIP OPTIONS; the outcome goes to ``on_result(probe_id, answered, reason)``, which the
glue passes on to :meth:`ApplianceCore.https_probe_result` with the loop's time. Each GET opens a new
connection (no keep-alive): a connection set up before the WAN changed would prove nothing about the
path now, and one probe every few seconds costs little. A round that a newer one superseded is
cancelled, so at most one GET is in flight.

The TLS context is built once, at start, by :func:`health_ssl_context` from ``[cloud] health_ca`` (the
cloud's private CA; "" trusts the system's CAs) and ``health_certificate`` / ``health_private_key`` (the
client certificate presented to a cloud that requires mutual TLS). The files are read then only: a
rotated file takes effect at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Final

import aiohttp

from appliance.wan.errors import EX_CONFIG, WanError

_LOG: Final = logging.getLogger(__name__)

ProbeResult = Callable[[int, bool, str], None]


class HealthTlsError(WanError):
    """A ``[cloud] health_*`` file is not usable PEM (unreadable, not a certificate, key not matching)."""

    code = EX_CONFIG


def health_ssl_context(ca: str = "", certificate: str = "", private_key: str = "") -> ssl.SSLContext:
    """The TLS context of the health GET: verify the cloud against ``ca`` (a PEM bundle; "" = the system's
    CAs) and, with ``certificate`` and ``private_key`` (both or neither), present that client certificate.

    The host name is checked against the URL's as always. Raises :class:`HealthTlsError` naming the
    setting whose file could not be loaded.
    """
    try:
        # With a cafile only that bundle is trusted: a private CA does not widen to the public ones.
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or None)
    except (OSError, ssl.SSLError) as exc:
        raise HealthTlsError(f"[cloud] health_ca = {ca!r}: cannot load the CA certificates: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certificate or private_key:
        try:
            context.load_cert_chain(certificate, private_key)
        except (OSError, ssl.SSLError) as exc:
            words = f"[cloud] health_certificate = {certificate!r}, health_private_key = {private_key!r}"
            raise HealthTlsError(f"{words}: cannot load the client certificate: {exc}") from exc
    return context


class HttpsProbe:
    """GETs ``url`` for each probe round, with ``timeout`` seconds for the whole exchange.

    ``ssl_context`` verifies the cloud (None: :func:`health_ssl_context` with the system's CAs); it is used
    for every GET, never rebuilt. :meth:`close` cancels the GET in flight and closes the session; results
    are no longer reported after it.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        on_result: ProbeResult,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._on_result = on_result
        self._ssl = ssl_context if ssl_context is not None else health_ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self, probe_id: int) -> None:
        """Start the GET of round ``probe_id`` (cancelling an older one still running)."""
        if self._closed:
            return
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._probe(probe_id))

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _probe(self, probe_id: int) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(force_close=True, ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        try:
            async with self._session.get(self.url, allow_redirects=False) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            self._report(probe_id, False, f"no HTTPS answer within {self._timeout.total:g} s")
            return
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            self._report(probe_id, False, f"HTTPS health check failed: {type(exc).__name__}: {exc}")
            return
        if 200 <= status < 300:
            self._report(probe_id, True, f"HTTP {status}")
        else:
            self._report(probe_id, False, f"HTTP {status} from the health check")

    def _report(self, probe_id: int, answered: bool, reason: str) -> None:
        if self._closed:
            return
        _LOG.debug("HTTPS probe %d: %s", probe_id, reason)
        self._on_result(probe_id, answered, reason)
