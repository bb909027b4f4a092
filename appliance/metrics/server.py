"""The Prometheus scrape endpoint: ``GET /metrics`` over HTTP (DESIGN.md §5.1: 127.0.0.1:9464 by default).

A thin aiohttp adapter around :meth:`Metrics.render`; every other path is 404. Scrapes are not written
to the access log: a scraper every few seconds would drown the appliance's own log.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from appliance.metrics.registry import Metrics

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class MetricsServer:
    """A running metrics endpoint; made by :func:`start_metrics_server`."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        self.port = port
        """The TCP port actually bound (the kernel's choice when port 0 was asked for)."""

    async def close(self) -> None:
        """Stop listening and close open connections. Safe to call twice."""
        await self._runner.cleanup()


async def start_metrics_server(metrics: Metrics, host: str, port: int) -> MetricsServer:
    """Listen on ``host``:``port`` (0 = any free port) and serve ``metrics`` at ``/metrics``.

    Raises :class:`OSError` when the address cannot be bound.
    """

    async def handle_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", handle_metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return MetricsServer(runner, int(bound))
