"""The WAN side of the control process in one object: the HTTPS part of the probes and the WAN monitor.

Wiring, in the order the control process builds things::

    wan = WanService(config, mode, on_event=append_to_outbox, observer=metrics.sync)
    core = ApplianceCore(..., mode=mode, https_probe=wan.https_probe)
    wan.attach(core, transports.flush)      # before core.start(): results and mode inputs reach the core
    core.start(now); transports.flush()
    await wan.start()                       # netlink dump, first uplink, route
    ...
    await wan.stop()

``wan.active_uplink`` is the ``uplink`` of the sync API's status. ``on_event(type, body)`` receives the
``wan.link`` and ``wan.uplink`` events and must not block (the control process spawns the append).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Protocol

from appliance.config.schema import Config
from appliance.wan.https_probe import HttpsProbe, health_ssl_context
from appliance.wan.mode import ModeMachine
from appliance.wan.monitor import EventSink, WanMonitor, WanObserver


class ProbeCore(Protocol):
    """What the service needs of :class:`appliance.core.ApplianceCore`."""

    def https_probe_result(self, probe_id: int, answered: bool, reason: str, now: float) -> None: ...
    def handle_timer(self, now: float) -> None: ...


class WanService:
    """Owns the :class:`HttpsProbe` (when ``[cloud] health_url`` is set) and the :class:`WanMonitor`.

    The probe's TLS context is built here, once, from ``[cloud] health_ca``, ``health_certificate`` and
    ``health_private_key`` unless ``ssl_context`` is given; a file that does not load raises
    :class:`appliance.wan.https_probe.HealthTlsError` before anything starts.
    """

    def __init__(
        self,
        config: Config,
        mode: ModeMachine,
        *,
        on_event: EventSink,
        observer: WanObserver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        cloud = config.cloud
        self._core: ProbeCore | None = None
        self._flush: Callable[[], None] = lambda: None
        self.https: HttpsProbe | None = None
        if cloud.configured and cloud.health_url:
            if ssl_context is None:
                ssl_context = health_ssl_context(
                    cloud.health_ca, cloud.health_certificate, cloud.health_private_key
                )
            self.https = HttpsProbe(
                cloud.health_url,
                timeout=cloud.probe_timeout,
                on_result=self._https_result,
                ssl_context=ssl_context,
            )
        self.monitor = WanMonitor(
            config.wan, mode, on_event=on_event, after_mode_input=self._mode_input, observer=observer
        )

    @property
    def https_probe(self) -> Callable[[int], None] | None:
        """The core's ``https_probe`` hook, None without a health URL."""
        return self.https.start if self.https is not None else None

    @property
    def active_uplink(self) -> str | None:
        return self.monitor.active_uplink

    def attach(self, core: ProbeCore, flush: Callable[[], None]) -> None:
        """Where results and mode inputs go: the core, then ``flush`` (send what it queued, re-arm)."""
        self._core = core
        self._flush = flush

    async def start(self) -> None:
        await self.monitor.start()

    async def stop(self) -> None:
        await self.monitor.stop()
        if self.https is not None:
            await self.https.close()

    def _https_result(self, probe_id: int, answered: bool, reason: str) -> None:
        if self._core is not None:
            self._core.https_probe_result(probe_id, answered, reason, asyncio.get_running_loop().time())
            self._flush()

    def _mode_input(self, now: float) -> None:
        if self._core is not None:
            self._core.handle_timer(now)
            self._flush()
