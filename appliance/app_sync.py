"""The control process's side of the cloud and the WAN: configuration documents, the sync API, the WAN
monitor and the metrics snapshot.

Wiring only (issue 5): the parts are :class:`~appliance.sync.documents.DocumentStore` (owners bound to the
running appliance by :func:`~appliance.sync.documents.default_owners`), the sync API's
:class:`~appliance.sync.service.SyncService` (HTTPS with client certificates, CBOR),
:class:`~appliance.wan.service.WanService` (the HTTPS health probe and the WAN monitor) and the outbox;
this module builds them from the configuration and starts them in the order the appliance needs:

1. :meth:`SyncWiring.start_documents`, before SIP listens: every stored document (pushed flows, prompts,
   the routing table) is in force when the first call arrives;
2. :meth:`SyncWiring.start_wan`, once SIP listens (the probes it triggers need the sockets): the
   ``wan.link`` and ``wan.uplink`` events go to the outbox with the time they happened (``at``), and to the
   metrics; the WAN monitor idles when ``[wan]`` watches nothing;
3. :meth:`SyncWiring.start_api`: the cloud may connect;
4. :meth:`SyncWiring.run_metrics`, a task: outbox gauges every :data:`OUTBOX_GAUGES_EVERY` seconds and a
   ``metrics.snapshot`` BULK event every :data:`SNAPSHOT_EVERY` seconds (thinned by the outbox under quota
   pressure; the cloud's trend lines, and a steady exercise of the thinning).

It also keeps what the sync API's status says about the mode (since when, pinned or not) and turns each
mode transition into the ``mode.changed`` body (``calls/records.cddl``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from appliance import __version__
from appliance.config import Config
from appliance.ivr.records import iso_utc
from appliance.ivr.service import IvrService
from appliance.metrics import Metrics
from appliance.store import Database, Outbox
from appliance.sync.blobs import RECORDING, VOICEMAIL
from appliance.sync.documents import DocumentStore, default_owners
from appliance.sync.documents.owners import no_span
from appliance.sync.documents.routing import Routes
from appliance.sync.documents.span import SpanSettings
from appliance.sync.service import SyncService
from appliance.wan.events import ModeChanged
from appliance.wan.mode import ModeMachine
from appliance.wan.service import WanService

log = logging.getLogger("appliance.sync")

SNAPSHOT_EVERY: Final = 60.0
OUTBOX_GAUGES_EVERY: Final = 5.0
MIB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SnapshotGauges:
    """What the snapshot reads of the running appliance besides the outbox."""

    calls_active: Callable[[], int]
    extra: Callable[[], Mapping[str, float]] = dict


class SyncWiring:
    """The cloud-facing parts of one control process (see the module doc).

    ``mode`` is the running survivable-mode machine; ``append(type, body)`` appends an outbox event and
    logs its failure; ``spawn`` runs a coroutine as a task of the process; ``wall`` is the wall clock.
    """

    def __init__(
        self,
        *,
        config: Config,
        state_dir: Path,
        db: Database,
        outbox: Outbox,
        metrics: Metrics,
        mode: ModeMachine,
        append: Callable[[str, Mapping[str, Any]], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.db = db
        self.outbox = outbox
        self.metrics = metrics
        self.mode = mode
        self.append = append
        self.spawn = spawn
        self.wall = wall
        self.mode_since = wall()
        self.documents: DocumentStore | None = None
        self.service: SyncService | None = None
        # Built now: the SIP core takes its HTTPS probe hook (``wan.https_probe``) and ``wan.attach``es.
        self.wan = WanService(config, mode, on_event=self._wan_event, observer=metrics.sync)

    @staticmethod
    def outbox_quota(config: Config) -> int:
        """The outbox quota in bytes, from ``[sync] outbox_quota_mb``."""
        return config.sync.outbox_quota_mb * MIB

    # --- start and stop -----------------------------------------------------------------------------------

    async def start_documents(
        self,
        *,
        ivr: IvrService,
        on_routes: Callable[[Routes], None],
        on_span: Callable[[str, SpanSettings | None], None] = no_span,
        span_runnable: Callable[[str, SpanSettings], None] | None = None,
        now: float,
    ) -> None:
        """Build the document store with its owners bound to ``ivr``, ``on_routes`` (which swaps the call
        router's table), ``on_span`` (which restarts a span with new settings; ``span_runnable`` refuses
        the settings it could not run) and put every stored document in force. ``now``: the monotonic
        clock."""
        owners = default_owners(
            state_dir=self.state_dir, config=self.config, ivr=ivr, on_routes=on_routes, on_span=on_span,
            span_runnable=span_runnable,
        )  # fmt: skip
        self.documents = DocumentStore(self.db, owners=owners, append=self.outbox.append, wall=self.wall)
        await self.documents.start(now)

    async def start_wan(self) -> list[str]:
        """Start the WAN monitor (attached to the SIP core already); returns the line ``make run`` prints."""
        await self.wan.start()
        wan = self.config.wan
        if not wan.interfaces and not wan.uplinks:
            return []
        uplinks = " / ".join(f"{u.name} ({u.interface})" for u in wan.uplinks) or "none"
        failover = "failover on" if wan.failover else "failover off"
        return [f"WAN            links {', '.join(wan.interfaces) or 'none'}; uplinks {uplinks}, {failover}"]

    def _wan_event(self, event_type: str, body: Mapping[str, object]) -> None:
        self.spawn(self.append(event_type, {**body, "at": iso_utc(self.wall())}))

    async def start_api(self) -> list[str]:
        """Listen for the cloud; returns the lines ``make run`` prints (where it listens, and where the
        cloud's client certificate, key and CA were written when the appliance made its own)."""
        self.service = SyncService(
            self.config.sync,
            self.state_dir,
            outbox=self.outbox,
            documents=self.documents,
            status=self.status,
            blob_dirs=self.blob_dirs(),
            database=self.db,
            wall=self.wall,
        )
        host, port = await self.service.start()
        lines = [f"sync API       https://{host}:{port}/sync/v1"]
        pki = self.service.pki
        if pki is not None:
            lines += [
                f"sync cloud CA  {pki.ca_certificate}",
                f"sync client    certificate {pki.client_certificate}, key {pki.client_key}",
            ]
        return lines

    def blob_dirs(self) -> dict[str, Path]:
        """The blob areas: voicemail always, call recordings when a recording key is configured."""
        dirs = {VOICEMAIL: self.state_dir / VOICEMAIL}
        media = self.config.media
        if media.recording_key:
            dirs[RECORDING] = Path(media.recording_path(str(self.state_dir)))
        return dirs

    def reload_certificates(self) -> None:
        """SIGHUP: load the sync API's certificate and key again (a rotation without downtime)."""
        if self.service is not None:
            loaded = self.service.reload_certificates()
            log.info("sync API certificates %s", "reloaded" if loaded else "unchanged (reload failed)")

    async def close(self) -> None:
        """Stop the health checks, the WAN monitor and the sync API (held long polls are answered first)."""
        await self.wan.stop()
        if self.service is not None:
            service, self.service = self.service, None
            await service.stop()

    # --- status and mode ----------------------------------------------------------------------------------

    def status(self) -> Mapping[str, Any]:
        """The site, mode and uplink parts of the sync API's ``status``."""
        site = self.config.site
        forced = self.mode.forced
        return {
            "site": site.name,
            "serial": site.serial,
            "firmware": __version__,
            "mode": self.mode.mode.value,
            "mode_since": self.mode_since,
            "forced": forced.value if forced is not None else None,
            "uplink": self.wan.active_uplink,
        }

    def mode_changed(self, event: ModeChanged) -> dict[str, Any]:
        """Count the transition and return its ``mode.changed`` body: the modes as the sync API names
        them, when (``at``) and how long the old mode lasted (``since_s``)."""
        wall = self.wall()
        since, self.mode_since = wall - self.mode_since, wall
        self.metrics.sync.mode_transition(event.old.value, event.new.value)
        return {
            "old": event.old.value,
            "new": event.new.value,
            "reason": event.reason,
            "at": iso_utc(wall),
            "since_s": round(max(since, 0.0), 3),
        }

    # --- metrics ------------------------------------------------------------------------------------------

    async def run_metrics(self, gauges: SnapshotGauges) -> None:
        """Forever: the outbox gauges every :data:`OUTBOX_GAUGES_EVERY` s, a snapshot every
        :data:`SNAPSHOT_EVERY` s (the first one a snapshot period after start)."""
        loop = asyncio.get_running_loop()
        next_snapshot = loop.time() + SNAPSHOT_EVERY
        while True:
            try:
                stats = await self.outbox.stats()
                self.metrics.sync.set_outbox(stats)
                if loop.time() >= next_snapshot:
                    next_snapshot += SNAPSHOT_EVERY
                    await self.snapshot(gauges, stats)
            except Exception:  # a full disk must not end the gauges for good
                log.exception("outbox metrics failed")
            await asyncio.sleep(OUTBOX_GAUGES_EVERY)

    async def snapshot(self, gauges: SnapshotGauges, stats: Any | None = None) -> bool:
        """Append one ``metrics.snapshot``; False when the outbox thinned it."""
        if stats is None:
            stats = await self.outbox.stats()
        body: dict[str, Any] = {
            **{k: v for k, v in gauges.extra().items() if isinstance(v, int | float)},
            "at": iso_utc(self.wall()),
            "mode": self.mode.mode.value,
            "calls_active": gauges.calls_active(),
            "outbox_pending": stats.pending,
            "outbox_bytes": stats.bytes,
            "outbox_pressure": str(stats.pressure),
        }
        appended = await self.outbox.append_bulk("metrics.snapshot", body) is not None
        self.metrics.sync.snapshot(appended=appended)
        return appended
