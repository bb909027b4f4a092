"""The HTTPS part of a cloud probe round: GET ``[cloud] health_url``, answered when a 2xx comes in time.

The core (:class:`appliance.core.ApplianceCore`) calls :meth:`HttpsProbe.start` with the round's probe id
when it sends the SIP OPTIONS; the outcome goes to ``on_result(probe_id, answered, reason)``, which the
glue passes on to :meth:`ApplianceCore.https_probe_result` with the loop's time. Each GET opens a new
connection (no keep-alive): a connection set up before the WAN changed would prove nothing about the
path now, and one probe every few seconds costs little. A round that a newer one superseded is
cancelled, so at most one GET is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Final

import aiohttp

_LOG: Final = logging.getLogger(__name__)

ProbeResult = Callable[[int, bool, str], None]


class HttpsProbe:
    """GETs ``url`` for each probe round, with ``timeout`` seconds for the whole exchange.

    ``ssl_context`` verifies the cloud (None: the system's CAs). :meth:`close` cancels the GET in flight
    and closes the session; results are no longer reported after it.
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
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
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
