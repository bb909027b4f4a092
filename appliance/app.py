"""Assembles the control process from its configuration and runs it until SIGTERM.

This is wiring only: every decision lives in the sans-I/O parts (SIP endpoint, B2BUA, registrar, mode
machine); this module builds them from :class:`~appliance.config.Config`, opens the sockets, the database
and the metrics endpoint, and reports where each service listens.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import gc
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from appliance import __version__
from appliance.app_pri import PriWiring
from appliance.app_records import CallRecordWriter
from appliance.app_sync import SnapshotGauges, SyncWiring
from appliance.calls.b2bua import B2bua
from appliance.calls.b2bua import Destination as RouteDestination
from appliance.calls.cdr import CallRecords, media_stats
from appliance.calls.context import SipContext
from appliance.calls.media_anchor import MediaAnchor, RouteMedia
from appliance.calls.routing import RoutingTable
from appliance.config import Config, RouteConfig
from appliance.config.schema import RECORDING_KEY_SIZE
from appliance.core import ApplianceCore
from appliance.durable import write_atomically
from appliance.ivr.agent_queue import AgentQueue
from appliance.ivr.service import IvrService
from appliance.logs import SipTrace, setup_logging
from appliance.media.control_events import (
    Command,
    Delete,
    DropLeg,
    ErrorCode,
    MediaTimeout,
    Ok,
    Play,
    Record,
    SetLeg,
    StopMedia,
    WorkerEvent,
    WorkerStats,
)
from appliance.media.supervisor import MediaSupervisor, MediaWorkerError
from appliance.metrics import Metrics, MetricsServer, start_metrics_server
from appliance.ratelimit import SourceRateLimiter
from appliance.sdnotify import Notifier
from appliance.sip.builder import IdFactory
from appliance.sip.dialog import uri_to_peer
from appliance.sip.digest import DigestServer, ha1
from appliance.sip.endpoint import SipEndpoint
from appliance.sip.errors import DecodeError
from appliance.sip.events import Peer
from appliance.sip.registrar import Registrar
from appliance.sip.transaction import TimerSettings
from appliance.sip.transport import SipTransports, load_tls_context
from appliance.sip.uri import parse_sip_uri
from appliance.store import Database, Outbox, OutboxFullError
from appliance.sync.blobs import RECORDING
from appliance.wan.events import ModeChanged
from appliance.wan.mode import Mode, ModeMachine

log = logging.getLogger("appliance")
GC_IDLE_INTERVAL = 60.0
GC_MAX_INTERVAL = 600.0
# The Call-ID of a raw message, for the signalling trace (which must see even messages that fail to parse).
_CALL_ID = re.compile(rb"\r\n(?:Call-ID|i)[ \t]*:[ \t]*([^\r]*)\r\n", re.IGNORECASE)


# The longest name of the Unix sockets under <state_dir>/run (media workers, spans, TDM workers).
_LONGEST_SOCKET: Final = "span255-tdm.sock"
# sockaddr_un.sun_path holds 108 octets with the terminating NUL (unix(7)).
_MAX_SOCKET_PATH: Final = 107


def check_socket_paths(run_dir: Path) -> None:
    """Refuse, naming the limit, a state directory too deep for the sockets under it: a media worker
    could not listen, and the start would fail far from its cause."""
    longest = os.fsencode(run_dir / _LONGEST_SOCKET)
    if len(longest) > _MAX_SOCKET_PATH:
        raise OSError(
            errno.ENAMETOOLONG,
            f"the state directory's sockets ({run_dir}/…) would be {len(longest)} octets long, over the "
            f"{_MAX_SOCKET_PATH} a Unix socket path may have: choose a shorter state_dir",
        )


@dataclass
class Appliance:
    """The running control process; :meth:`start` brings it up, :meth:`stop` takes it down."""

    config: Config
    state_dir: Path
    listening: list[str] = field(default_factory=list)
    notifier: Notifier | None = None  # systemd: the mode is shown in `systemctl status`

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        check_socket_paths(self.state_dir / "run")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = Metrics(site=cfg.site.name, serial=cfg.site.serial, version=__version__)
        self.db = await Database.open(self.state_dir / "appliance.db")
        self.outbox = Outbox(self.db, quota_bytes=SyncWiring.outbox_quota(cfg))
        self._tasks: set[asyncio.Task[None]] = set()
        self.records = CallRecordWriter(self.outbox, spawn=self._spawn)

        limiter = None
        if cfg.sip.rate_limit.enabled:
            rl = cfg.sip.rate_limit
            limiter = SourceRateLimiter(rate=rl.rate, burst=rl.burst, max_sources=rl.max_sources)
        trace = SipTrace()
        trace.enable_all(cfg.sip.trace)
        t = cfg.sip.timers
        endpoint = SipEndpoint(
            timers=TimerSettings(t.t1, t.t2, t.t4),
            ids=IdFactory(),
            max_message_size=cfg.sip.max_message_size,
            allow_source=limiter.allow if limiter is not None else None,
            observer=self.metrics,
            trace=self._tracer(trace) if cfg.sip.trace else None,
        )
        self.ctx = SipContext(
            endpoint=endpoint,
            ids=endpoint.ids,
            domain=cfg.sip.domain,
            user_agent=cfg.sip.user_agent,
            session_expires=cfg.sip.session_timer.session_expires,
            min_se=cfg.sip.session_timer.min_se,
        )
        now = loop.time()
        c = cfg.cloud
        self.mode = ModeMachine(
            cloud_configured=c.configured,
            probe_interval=c.probe_interval,
            probe_timeout=c.probe_timeout,
            probe_failures=c.probe_failures,
            probe_successes=c.probe_successes,
            hold_down=c.hold_down,
            now=now,
        )
        self.metrics.set_mode(self.mode.mode.name)
        self.sync = SyncWiring(
            config=cfg, state_dir=self.state_dir, db=self.db, outbox=self.outbox, metrics=self.metrics,
            mode=self.mode, append=self._append, spawn=self._spawn,
        )  # fmt: skip
        # The spans' TDM workers take the top of the RTP range: the media workers share what is below.
        self.pri = PriWiring(config=cfg, state_dir=self.state_dir, metrics=self.metrics, append=self._append,
                             spawn=self._spawn)  # fmt: skip
        self.registrar = self._registrar(cfg)
        m = cfg.media
        self.supervisor = MediaSupervisor(
            m.workers or os.cpu_count() or 1,
            m.address,
            self.pri.media_range,
            self.state_dir / "run",
            on_event=self._media_event,
            on_lost=self._media_lost,
            on_reserved=self._media_reserved,
            worker_args=self._worker_args(cfg),
        )
        # Before the workers start: each one's greeting (the pairs another process held) reaches the
        # anchor's allocator through _media_reserved before any port can be allocated.
        self.anchor = MediaAnchor(
            address=m.address,
            slices=self.supervisor.slices,
            worker_for=self.supervisor.worker_for,
            transcode=m.transcode,
            record=m.record,
            cloud_media_timeout=cfg.cloud.media_timeout,
        )
        await self.supervisor.start()
        self._media_started: dict[str, float] = {}
        self._stopping = False
        self.ivr = IvrService.load(
            self.state_dir,
            by_country={e.country: e.languages for e in cfg.ivr.languages},
            site_zone=cfg.site.timezone,
            wall=time.time,
            agent_groups=[g.name for g in cfg.agent_groups],
        )
        b2bua = B2bua(
            ctx=self.ctx,
            router=self._router(cfg.routes),
            cloud_available=lambda: self.mode.routes_to_cloud,
            cloud_trunk=c.trunk,
            agents=self._agents,
            observer=self.metrics,
            media_anchor=self.anchor,
            route_media=self._route_media(cfg.routes),
            ivr_sessions=self.ivr.session_for,
            rescue_flow=cfg.ivr.rescue_flow or None,
            # One queue for every group: an agent rings for one caller at a time, however many groups.
            agent_queue=AgentQueue(
                ring_timeout=max((g.ring_timeout for g in cfg.agent_groups), default=20.0)
            ),
            cdr=CallRecords(wall=time.time, mode=self._mode_name),
            pri=self.pri,
        )
        self.core = ApplianceCore(
            ctx=self.ctx,
            b2bua=b2bua,
            mode=self.mode,
            registrar=self.registrar,
            cloud_trunk=parse_sip_uri(c.trunk) if c.trunk else None,
            on_mode_change=self._mode_changed,
            before_send=self._relay_commands,
            https_probe=self.sync.wan.https_probe,
        )
        # Pushed flows, prompts and routes are in force before the first call can arrive.
        await self.sync.start_documents(
            ivr=self.ivr, on_routes=self._routes_changed, on_span=self.pri.on_span,
            span_runnable=self.pri.runnable, now=loop.time(),
        )  # fmt: skip
        tls = None
        if cfg.sip.tls_certificate:
            tls = load_tls_context(cfg.sip.tls_certificate, cfg.sip.tls_private_key)
        self.transports = SipTransports(
            self.core,
            max_message_size=cfg.sip.max_message_size,
            tls_context=tls,
            after_flush=self._persist_requests,
        )
        self.sync.wan.attach(self.core, self.transports.flush)
        host = cfg.sip.listen
        udp = await self.transports.listen_udp(host, cfg.sip.udp_port)
        tcp = await self.transports.listen_stream("tcp", host, cfg.sip.tcp_port)
        self.ctx.local.update(self.transports.addresses)
        self.listening.append(f"SIP UDP        {udp[0]}:{udp[1]}")
        self.listening.append(f"SIP TCP        {tcp[0]}:{tcp[1]}")
        if tls is not None:
            tls_addr = await self.transports.listen_stream("tls", host, cfg.sip.tls_port)
            self.ctx.local.update(self.transports.addresses)
            self.listening.append(f"SIP TLS        {tls_addr[0]}:{tls_addr[1]}")
        self.listening.append(f"RTP            {m.address} ports {m.rtp_port_min}-{m.rtp_port_max}")
        self.listening += await self.pri.start(calls=b2bua, after_event=self.transports.flush)
        self.metrics_server: MetricsServer = await start_metrics_server(
            self.metrics, cfg.metrics.listen, cfg.metrics.port
        )
        self.listening.append(
            f"metrics        http://{cfg.metrics.listen}:{self.metrics_server.port}/metrics"
        )
        self.listening += await self.sync.start_api()
        self.listening.append(f"database       {self.state_dir / 'appliance.db'}")
        self.listening.append(f"mode           {self.mode.mode.name}"
                              + ("" if c.configured else " (no cloud configured)"))  # fmt: skip
        self.core.start(loop.time())
        self.transports.flush()  # the first probe, if a cloud is configured
        self.listening += await self.sync.start_wan()  # carrier as the netlink dump finds it
        self._spawn(self._housekeeping())
        gauges = SnapshotGauges(calls_active=lambda: len(self.core.b2bua.calls), extra=self.pri.snapshot)
        self._spawn(self.sync.run_metrics(gauges))
        try:
            await self.outbox.append("appliance.started", {"version": __version__, "site": cfg.site.name})
        except OutboxFullError:  # an outbox past its ceiling must not keep the appliance from serving calls
            log.error("outbox full: the start of the appliance is not recorded")

    def _router(self, routes: tuple[RouteConfig, ...]) -> RoutingTable[RouteDestination]:
        return RoutingTable([(r.match, r.destinations) for r in routes], region=self.config.site.region)

    def _route_media(self, routes: tuple[RouteConfig, ...]) -> dict[str, RouteMedia]:
        return {r.match: RouteMedia(r.srtp, r.record or self.config.media.record) for r in routes}

    def _routes_changed(self, routes: tuple[RouteConfig, ...]) -> None:
        """A routing document was applied or reverted: new calls are routed by ``routes`` (calls in
        progress keep the destinations they were given)."""
        b2bua = self.core.b2bua
        b2bua.router, b2bua.route_media = self._router(routes), self._route_media(routes)
        log.info("routing table replaced: %d routes", len(routes))

    def _mode_name(self) -> str:
        """The current mode as the sync API names it ("online", "survivable", ...)."""
        return self.mode.mode.value

    def _registrar(self, cfg: Config) -> Registrar:
        users = {u.username: u for u in cfg.registrar.users}
        realm = cfg.sip.domain

        def credentials(username: str, algorithm: str) -> str | None:
            user = users.get(username)
            if user is None:
                return None
            stored = user.ha1_sha256 if algorithm.upper().startswith("SHA-256") else user.ha1_md5
            if stored:
                return stored
            return ha1(username, realm, user.password, algorithm) if user.password else None

        r = cfg.registrar
        digest = DigestServer(
            realm=realm, secret=os.urandom(32), nonce_lifetime=r.nonce_lifetime, algorithms=r.algorithms
        )
        return Registrar(
            domain=cfg.sip.domain,
            digest=digest,
            credentials=credentials,
            min_expires=r.min_expires,
            max_expires=r.max_expires,
            default_expires=r.default_expires,
            wall_clock=time.time,
            ids=self.ctx.ids,
        )

    def _agents(self, group_name: str) -> list[tuple[str, Peer]]:
        """Where to ring an agent group: every live binding of each member, or a member's own URI."""
        group = next((g for g in self.config.agent_groups if g.name == group_name), None)
        if group is None:
            return []
        now = asyncio.get_running_loop().time()
        out: list[tuple[str, Peer]] = []
        for member in group.members:
            if ":" in member:
                try:
                    out.append((member, uri_to_peer(parse_sip_uri(member))))
                except DecodeError:
                    continue
                continue
            for binding in self.registrar.lookup(member, now):
                # Send to where the REGISTER came from: a phone behind NAT is reachable there, not at
                # its Contact.
                out.append((binding.uri, Peer(binding.transport, binding.source[0], binding.source[1])))
        return out

    def _worker_args(self, cfg: Config) -> list[str]:
        m = cfg.media
        args = ["--media-timeout", f"{m.timeout:g}", "--scheduling", m.scheduling]
        if not m.fastpath:
            args.append("--no-fastpath")
        if m.recording_key:
            # Recording is set up whenever a key is configured, so any route may ask for it per call.
            directory = Path(m.recording_path(str(self.state_dir)))
            directory.mkdir(parents=True, exist_ok=True)
            args += ["--recording-dir", str(directory), "--recording-key", m.recording_key]
        voicemail = self.state_dir / "voicemail"
        voicemail.mkdir(parents=True, exist_ok=True)
        args += ["--voicemail-dir", str(voicemail), "--voicemail-key", self._voicemail_key(cfg)]
        return args

    def _voicemail_key(self, cfg: Config) -> str:
        """The voicemail key-encryption key file: configured, or generated once under ``keys/`` (0600)."""
        if cfg.ivr.voicemail_key:
            return cfg.ivr.voicemail_key
        keys = self.state_dir / "keys"
        keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = keys / "voicemail.kek"
        if not path.exists():
            # Whole or absent: a torn key would make every voicemail unreadable.
            write_atomically(path, os.urandom(RECORDING_KEY_SIZE), mode=0o600)
        return str(path)

    def _persist_requests(self) -> None:
        """After every flush of the SIP core: append what IVR sessions asked to keep; each session hears
        that its record is durable only once the outbox has committed it."""
        requests = self.core.b2bua.persist_requests
        while requests:
            call_id, token, kind, body = requests.popleft()
            self._spawn(self._persist(call_id, token, kind, body))
        self.records.take(self.core.b2bua.cdr.done)

    async def _persist(self, call_id: str, token: int, kind: str, body: Mapping[str, object]) -> None:
        try:
            await self.outbox.append(kind, body)
        except Exception as exc:  # the session must hear of it: its caller is waiting for a confirmation
            log.exception("outbox append of %s failed", kind, extra={"ctx": {"call": call_id}})
            self.core.b2bua.persist_failed(call_id, token, repr(exc), asyncio.get_running_loop().time())
        else:
            self.core.b2bua.persisted(call_id, token, asyncio.get_running_loop().time())
        self.transports.flush()

    def _relay_commands(self) -> None:
        """Before SIP messages go out: hand the workers what call control decided, in order per worker.

        The commands are written to the workers' sockets before the SDP that names the relay leaves, so a
        peer's first RTP packet finds its leg set.
        """
        relay = self.anchor.commands
        while relay:
            index, command = relay.popleft()
            future = self.supervisor.submit(index, command)
            future.add_done_callback(functools.partial(self._relay_reply, command))
            if isinstance(command, Delete):
                self.records.media_deleting(command.call_id, future)  # the call record's media statistics
        self.pri.flush()  # the Q.931 messages call control queued, after the media commands, like the SDP

    def _relay_reply(self, command: Command, done: asyncio.Future[Ok]) -> None:
        if done.cancelled() or self._stopping:
            return  # replies cut short by shutdown: the calls end with the process
        now = asyncio.get_running_loop().time()
        exc = done.exception()
        if exc is not None:
            reason = exc.reason if isinstance(exc, MediaWorkerError) else repr(exc)
            if isinstance(command, (Play, Record, StopMedia, DropLeg)):
                self.core.b2bua.ivr_command_failed(command.call_id, command, reason, now)
                self.transports.flush()
            elif isinstance(command, SetLeg):
                self.core.b2bua.media_failed(command.call_id, reason, now)
                self.transports.flush()
            elif isinstance(command, Delete) and not (
                isinstance(exc, MediaWorkerError) and exc.code == ErrorCode.UNKNOWN_CALL
            ):
                log.warning("media delete of %s failed: %s", command.call_id, reason)  # a restarted worker
            return
        if isinstance(command, SetLeg):
            self._media_started.setdefault(command.call_id, now)
        elif isinstance(command, Delete):
            self._media_deleted(command.call_id, done.result(), now)

    def _media_deleted(self, call_id: str, reply: Ok, now: float) -> None:
        started = self._media_started.pop(call_id, now)
        stats = reply.stats or ()
        for s in stats:
            self.metrics.media_stream_totals(s.direction.value, s.packets, s.octets, s.lost)
        if reply.recording is not None:
            body = {
                "call_id": call_id,
                "path": reply.recording,
                "blob_id": f"{RECORDING}/{Path(reply.recording).name}",  # fetched through the sync API
                "duration": round(now - started, 3),
                "stats": media_stats(stats),
            }
            self._spawn(self._append("call.recording", body))

    def _media_event(self, index: int, event: WorkerEvent) -> None:
        if self._stopping:
            return
        if isinstance(event, WorkerStats):
            self.metrics.worker_stats(index, event.packets_relayed, event.dropped)
            return
        if isinstance(event, MediaTimeout):
            self.metrics.media_timeout(one_way=event.one_way)
        self.core.b2bua.media_event(event.call_id, event, asyncio.get_running_loop().time())
        self.transports.flush()

    def _media_reserved(self, index: int, unusable: frozenset[int]) -> None:
        # At every start of a worker, first or restart: the pairs another process held are never written
        # into an SDP (a pair freed since is usable again).
        self.anchor.exclude(index, unusable)

    def _media_lost(self, index: int, call_ids: list[str]) -> None:
        if self._stopping:
            return
        now = asyncio.get_running_loop().time()
        for call_id in call_ids:
            self._media_started.pop(call_id, None)
            self.core.b2bua.media_failed(call_id, f"media worker {index} died", now)
        self.transports.flush()

    def _mode_changed(self, event: ModeChanged) -> None:
        self.metrics.set_mode(event.new.name)
        body = self.sync.mode_changed(event)
        if event.new is Mode.SURVIVABLE and event.old is not Mode.SURVIVABLE:
            # The cloud is gone: its calls leave it now (answered ones rescued), not one timeout later each.
            now = asyncio.get_running_loop().time()
            lost = self.core.b2bua.cloud_lost(event.reason, now)
            if lost.rescued or lost.moved:
                log.warning("cloud calls: %d rescued into the local IVR, %d still ringing moved to local "
                            "destinations: %s", lost.rescued, lost.moved, event.reason)  # fmt: skip
        if self.notifier is not None:
            self.notifier.status(f"mode {event.new.name}: {event.reason}")
        self._spawn(self._append("mode.changed", body))

    async def _append(self, kind: str, body: Mapping[str, object]) -> None:
        try:
            await self.outbox.append(kind, body)
        except Exception:  # an outbox over its hard ceiling, a failed disk: logged, the process goes on
            log.exception("outbox append of %s failed", kind)

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _housekeeping(self) -> None:
        """Gauges that are cheaper to sample once a second than to update per message, and the cycle
        collector: when no call is up, or every ``GC_MAX_INTERVAL`` seconds under continuous load."""
        loop = asyncio.get_running_loop()
        last_gc = loop.time()
        while True:
            self.metrics.set_transactions_active(self.ctx.endpoint.transaction_count)
            self.metrics.set_registrar_bindings(self.registrar.count)
            sup = self.supervisor
            self.metrics.set_media(
                relayed_calls=self.anchor.active, workers=sup.workers, running=sup.running_count,
                restarts=sup.restarts,
            )  # fmt: skip
            now = loop.time()
            if self.core.b2bua.transfer.refresh(now):  # agents registering or gone while callers wait
                self.transports.flush()
            idle = not self.core.b2bua.calls and now - last_gc > GC_IDLE_INTERVAL
            if idle or now - last_gc > GC_MAX_INTERVAL:
                started = time.perf_counter()
                found = gc.collect()
                last_gc = loop.time()
                log.info(
                    "cycle collection: %d objects in %.1f ms", found, (time.perf_counter() - started) * 1e3
                )
            await asyncio.sleep(1.0)

    @staticmethod
    def _tracer(trace: SipTrace) -> Callable[[str, Peer, bytes], None]:
        def record(direction: str, peer: Peer, data: bytes) -> None:
            match = _CALL_ID.search(data)
            call_id = match.group(1).decode("utf-8", "replace") if match else None
            trace.record(
                call_id, "in" if direction == "in" else "out", (peer.host, peer.port), peer.transport, data
            )

        return record

    async def abort(self) -> None:
        """Close whatever a failed :meth:`start` had opened (the database's thread above all, which would
        otherwise keep the process alive), so that the error ends the process."""
        self._stopping = True
        for task in list(getattr(self, "_tasks", ())):
            task.cancel()
        for name in ("pri", "transports", "supervisor", "metrics_server", "sync", "outbox", "db"):
            part = getattr(self, name, None)
            if part is None:
                continue
            try:
                await part.close()
            except Exception:  # the start already failed: report that error, not a second one
                log.exception("closing %s after a failed start", name)

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pri.close()  # the spans' calls end: their BYEs go out before the transports close
        await self.transports.close()
        await self.supervisor.close()
        await self.metrics_server.close()
        await self.sync.close()
        await self.outbox.close()
        await self.db.close()


async def serve(config: Config, state_dir: Path, *, announce: Callable[[str], None] = print) -> None:
    """Run the appliance until SIGTERM or SIGINT."""
    setup_logging(config.logging.level, config.logging.format)
    # The stop signals are handled before anything is announced: a supervisor may send SIGTERM the moment
    # it hears "ready", and that must be a clean stop, not the default action of the signal.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = Notifier.from_env()
    appliance = Appliance(config, state_dir, notifier=notifier)
    try:
        await appliance.start()
    except BaseException:
        await appliance.abort()
        raise
    # Reference counting frees every finished call: calls leave no reference cycle behind (B2bua._finish,
    # SipEndpoint._reap, and a test that counts cycles). The cycle collector's automatic passes would
    # walk every lingering transaction instead, pausing the loop for up to a second at a few hundred calls
    # a second, which callers hear as retransmissions. It runs on a schedule instead (_housekeeping), for
    # the rare cycle a library leaves; what exists at start lives as long as the process and is frozen.
    gc.collect()
    gc.freeze()
    gc.disable()
    loop.add_signal_handler(signal.SIGHUP, appliance.sync.reload_certificates)
    for line in appliance.listening:
        announce(line)
    announce("appliance ready")
    if notifier is not None:
        notifier.status(f"mode {appliance.mode.mode.name}")
        notifier.ready()
    watchdog = notifier.watchdog_interval() if notifier is not None else None
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=watchdog or 3600)
        except TimeoutError:
            if notifier is not None:
                notifier.watchdog()
    if notifier is not None:
        notifier.stopping()
    await appliance.stop()
