"""The sync API as a service of the control process: TLS listener, certificate watch, document deadlines.

Theory of operation. :meth:`SyncService.start` settles the certificates (the configured files, or the
site's own CA made on first start, :func:`appliance.sync.pki.ensure_site_pki`), removes the voicemail and
recording files no pending event names (left by a crash between an acknowledgement and the deletion of its
blobs), and listens. While running it checks the certificate files every :data:`CERT_CHECK_EVERY` seconds and
loads a changed pair into the running TLS context (:mod:`appliance.sync.tls`), and it keeps one timer
for the document store's confirmation deadlines (``get_timer``/``handle_timer``). :meth:`stop` wakes every
held long poll (they answer an empty batch at once) and closes the listener and connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

from aiohttp import web

from appliance.config.schema import SyncConfig
from appliance.store.database import Database
from appliance.sync.blobs import BLOB_EVENTS, VOICEMAIL, BlobStore
from appliance.sync.pki import SitePki, ensure_site_pki
from appliance.sync.server import DocumentsApi, OutboxApi, SyncApi, read_blob_events
from appliance.sync.tls import ServerTls

DOCUMENTS_RETRY: Final = 1.0  # seconds before a failed revert of an unconfirmed document is tried again
log = logging.getLogger(__name__)

CERT_CHECK_EVERY: Final = 5.0
SHUTDOWN_GRACE: Final = 2.0
# A blob file younger than this may belong to an event not appended yet (a voicemail while its IVR
# session still runs, a recording between the media worker's reply and the append).
SWEEP_MIN_AGE: Final = 300.0


class TimedDocuments(DocumentsApi, Protocol):
    """A document store with confirmation deadlines (monotonic)."""

    def get_timer(self) -> float | None: ...
    async def handle_timer(self, now: float) -> None: ...


class SyncService:
    """The sync API listening on ``config.listen``:``config.port`` (0: any free port).

    ``status`` gives the site, serial, firmware, mode, mode_since, forced and uplink parts of ``status``;
    ``blob_dirs`` maps blob areas to directories (default: ``voicemail`` -> ``<state_dir>/voicemail``);
    ``database``, when given, is the outbox's, and the stored bodies of blob-bearing events
    (:data:`~appliance.sync.blobs.BLOB_EVENTS`) are found there with one query instead of a read of every
    event acknowledged. ``hosts`` are the addresses and names a
    self-made server certificate carries (default: the listen address and ``localhost``). ``wall`` is the
    wall clock; ``monotonic`` the clock of the documents' confirmation deadlines (default: the loop's). The
    service keeps the one timer of the document store (``get_timer``/``handle_timer``) while it runs.
    """

    def __init__(
        self,
        config: SyncConfig,
        state_dir: Path,
        *,
        outbox: OutboxApi,
        documents: TimedDocuments | None,
        status: Callable[[], Mapping[str, Any]],
        blob_dirs: Mapping[str, Path] | None = None,
        database: Database | None = None,
        hosts: tuple[str, ...] | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self._config = config
        self._state_dir = Path(state_dir)
        self._outbox = outbox
        self._documents = documents
        self._status = status
        dirs = blob_dirs if blob_dirs is not None else {VOICEMAIL: self._state_dir / VOICEMAIL}
        self._blobs = BlobStore(dirs)
        self._database = database
        self._hosts = hosts if hosts is not None else (config.listen, "localhost")
        self._wall = wall
        self._monotonic = monotonic
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self.tls: ServerTls | None = None
        self.pki: SitePki | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Listen; returns the address and port bound."""
        config = self._config
        if config.certificate:
            certificate, key, client_ca = (
                Path(config.certificate),
                Path(config.private_key),
                Path(config.client_ca),
            )
        else:
            self.pki = await asyncio.to_thread(ensure_site_pki, self._state_dir, self._hosts)
            certificate, key, client_ca = (
                self.pki.server_certificate,
                self.pki.server_key,
                self.pki.ca_certificate,
            )
            if config.client_ca:
                client_ca = Path(config.client_ca)
        self.tls = await asyncio.to_thread(ServerTls, certificate, key, client_ca)
        await self.sweep_blobs()
        loop = asyncio.get_running_loop()
        api = SyncApi(
            outbox=self._outbox,
            documents=self._documents,
            blobs=self._blobs,
            status=self._status,
            certificate=self._certificate,
            max_body=config.max_body,
            max_wait=config.max_wait,
            wall=self._wall,
            monotonic=self._now,
            closing=self._closing,
            blob_events=self._blob_events if self._database is not None else None,
            documents_changed=self._arm_documents_timer,
        )
        self._closing.clear()
        runner = web.AppRunner(api.application(), access_log=None, shutdown_timeout=SHUTDOWN_GRACE)
        await runner.setup()
        site = web.TCPSite(runner, config.listen, config.port, ssl_context=self.tls.context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._tasks.append(loop.create_task(self._watch_certificates(), name="sync-cert-watch"))
        self._arm_documents_timer()
        host, port = runner.addresses[0][:2]
        log.info("sync API listening on %s:%d (certificate %s)", host, port, self.tls.info.subject)
        return str(host), int(port)

    async def stop(self) -> None:
        """Answer held long polls, close every connection and stop listening."""
        self._closing.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = [*self._tasks, *([self._timer_task] if self._timer_task else [])]
        self._tasks, self._timer_task = [], None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def reload_certificates(self) -> bool:
        """Load the certificate files again now (SIGHUP); True if a good pair was loaded."""
        return self.tls.reload_certificates() if self.tls is not None else False

    def _certificate(self) -> Mapping[str, Any]:
        assert self.tls is not None
        return self.tls.info.as_message()

    async def _watch_certificates(self) -> None:
        while True:
            await asyncio.sleep(CERT_CHECK_EVERY)
            if self.tls is not None:
                await asyncio.to_thread(self.tls.check)

    # --- blobs --------------------------------------------------------------------------------------------

    async def _blob_events(self, after: int, upto: int) -> list[tuple[str, bytes]]:
        assert self._database is not None
        types = tuple(BLOB_EVENTS)
        rows = await self._database.fetchall(
            "SELECT type, body FROM outbox WHERE seq > ? AND seq <= ? "
            f"AND type IN ({', '.join('?' * len(types))}) ORDER BY seq",
            (after, upto, *types),
        )
        return [(str(row[0]), bytes(row[1])) for row in rows]

    async def sweep_blobs(self) -> int:
        """Delete the files of the blob areas of :data:`~appliance.sync.blobs.BLOB_EVENTS` (voicemails,
        recordings) that no pending event names and older than :data:`SWEEP_MIN_AGE`; returns how many."""
        started = self._wall() - SWEEP_MIN_AGE
        stats = await self._outbox.stats()
        if self._database is not None:
            events = await self._blob_events(stats.acked_seq, stats.last_seq)
        else:
            events = await read_blob_events(self._outbox, stats.acked_seq, stats.last_seq)
        keep = set(self._blobs.files_named(events))
        deleted = 0
        for area in self._blobs.swept_areas():
            deleted += await asyncio.to_thread(self._blobs.sweep, area, keep, older_than=started)
        return deleted

    # --- document confirmation deadlines -------------------------------------------------------------------

    def _now(self) -> float:
        """The clock of the documents' deadlines: ``monotonic`` if given, else the loop's."""
        return self._monotonic() if self._monotonic is not None else asyncio.get_running_loop().time()

    def _arm_documents_timer(self, not_before: float = 0.0) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._documents is None or self._closing.is_set():
            return
        deadline = self._documents.get_timer()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            delay = max(deadline - self._now(), not_before)
            self._timer = loop.call_at(loop.time() + delay, self._documents_due)

    def _documents_due(self) -> None:
        self._timer = None
        if self._timer_task is None or self._timer_task.done():
            self._timer_task = asyncio.get_running_loop().create_task(self._handle_documents_timer())

    async def _handle_documents_timer(self) -> None:
        assert self._documents is not None
        retry = 0.0
        try:
            await self._documents.handle_timer(self._now())
        except Exception:
            # The deadline stays due until its revert is stored; a database that keeps failing is
            # retried once a second, not in a tight loop.
            log.exception("reverting unconfirmed configuration documents failed")
            retry = DOCUMENTS_RETRY
        finally:
            self._arm_documents_timer(retry)
