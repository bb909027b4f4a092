"""A WAN in a box: two throwaway network namespaces, the appliance's and the cloud's, joined by a veth pair.

Theory of operation. :class:`WanPair` makes ``app-<rand>`` and ``cloud-<rand>``, moves one end of a veth
pair into each (``10.77.<n>.1/24`` on the appliance side, ``10.77.<n>.2/24`` on the cloud side, ``n``
random so parallel runs read apart in logs), and brings ``lo`` and the veth ends up. The WAN is cut in the
two ways a branch office loses its uplink:

* :meth:`WanPair.cut_link` sets the *cloud* end of the veth down: the appliance's end loses carrier
  (``NO-CARRIER``, an RTM_NEWLINK on netlink), as when the modem or the cable goes;
* :meth:`WanPair.drop` loads an nftables table into the appliance's namespace that drops every packet to
  or from the cloud's address at the appliance's veth end: the link stays up and no sender is told, as
  when a router upstream black-holes the traffic.

:meth:`WanPair.restore_link` and :meth:`WanPair.undrop` undo them. Processes started with
:meth:`WanPair.run_in` run under ``ip netns exec``; every one of them, and anything else still living in
the namespaces, is killed when the pair is closed, and the namespaces are deleted then whatever happened
(STYLE.md rule 14). The pair is a context manager for synchronous tests (``with WanPair.create() as
wan``) and asynchronous ones (``async with WanPair.create() as wan``; set-up and tear-down then run in a
worker thread so the loop is not blocked).

On top of the pair, what the sync system tests and the benchmark start in it: the appliance itself
(:func:`start_appliance_in`, ``appliance run`` in the appliance's namespace, its mode read from its
metrics there; :func:`appliance_config`), the reference cloud client (:class:`CloudClient`, in the cloud's
namespace), SIPp (:class:`NamespacedSipp`), and the end-of-test account of what the outbox issued against
what the cloud holds (:func:`outbox_account`, :func:`check_exactly_once`). :func:`check_no_leftovers`
fails a test that leaves one of this process's namespaces behind.

Everything here needs root and iproute2 (``ip``) and, for :meth:`WanPair.drop`, nftables (``nft``);
:func:`skip_reason` says what is missing so a test can skip with a clear reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from appliance.sync.client_store import ClientStore
from appliance.sync.client_types import Event
from appliance.sync.pki import SitePki
from tests.system.sipp import LOOPBACK, Role, SippNotReadyError, SippProcess

T = TypeVar("T")

APP_PREFIX: Final = "app-"
CLOUD_PREFIX: Final = "cloud-"
_CUT_TABLE: Final = "wan_cut"
_IP_TIMEOUT: Final = 10.0
# Names of the namespaces this process made and has not deleted yet: what check_no_leftovers looks for.
# (Only this process's own: other test runs on the machine make namespaces of the same shape.)
_LIVE: Final[set[str]] = set()


def skip_reason(*, nft: bool = True) -> str | None:
    """Why the harness cannot run here (not root, no ``ip``, no ``nft``), or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if nft and shutil.which("nft") is None:
        return "nftables (nft) is not installed"
    return None


def _ip(*args: str, input_text: str | None = None) -> None:
    done = subprocess.run(
        ["ip", *args], input=input_text, capture_output=True, text=True, timeout=_IP_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def list_namespaces() -> set[str]:
    """The names of the network namespaces that exist now (``ip netns list``)."""
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True, timeout=_IP_TIMEOUT
    ).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def leftovers() -> set[str]:
    """Namespaces this process made that still exist: after a closed :class:`WanPair`, none."""
    return _LIVE & list_namespaces()


@contextlib.contextmanager
def check_no_leftovers() -> Iterator[None]:
    """Fail (AssertionError) if the block leaves a namespace of this harness behind; delete it then."""
    try:
        yield
    finally:
        left = leftovers()
        for name in left:
            _delete_namespace(name)
        assert not left, f"network namespaces left behind: {sorted(left)}"


def _namespace_pids(name: str) -> list[int]:
    done = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=_IP_TIMEOUT, check=False
    )
    return [int(p) for p in done.stdout.split() if p.isdigit()]


def _delete_namespace(name: str) -> None:
    """Kill whatever still runs in ``name`` (all of it was started by the harness's user) and delete it."""
    for _ in range(50):
        pids = _namespace_pids(name)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=_IP_TIMEOUT, check=False)
    _LIVE.discard(name)


@dataclass
class WanPair:
    """Two namespaces joined by a veth pair; see the module docstring. Make it with :meth:`create`."""

    app: str
    cloud: str
    subnet: int
    app_if: str
    cloud_if: str
    _procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    _link_cut: bool = False
    _dropping: str = ""  # the nftables family of the drop table in force, "" when none
    _open: bool = False

    @classmethod
    def create(cls, subnet: int | None = None) -> WanPair:
        """A pair not yet set up: entering the context (``with`` or ``async with``) builds it."""
        tag = secrets.token_hex(4)
        n = subnet if subnet is not None else 1 + secrets.randbelow(254)
        return cls(f"{APP_PREFIX}{tag}", f"{CLOUD_PREFIX}{tag}", n, f"wa{tag}", f"wc{tag}")

    @property
    def app_ip(self) -> str:
        """The appliance's WAN address (on ``app_if``, in the ``app`` namespace)."""
        return f"10.77.{self.subnet}.1"

    @property
    def cloud_ip(self) -> str:
        """The cloud's address (on ``cloud_if``, in the ``cloud`` namespace)."""
        return f"10.77.{self.subnet}.2"

    @property
    def link_cut(self) -> bool:
        return self._link_cut

    @property
    def dropping(self) -> bool:
        return bool(self._dropping)

    # -- life cycle --

    def open(self) -> None:
        """Make the namespaces, the veth pair and the addresses. On failure everything made is removed."""
        if self._open:
            raise RuntimeError("already open")
        self._open = True
        try:
            for name in (self.app, self.cloud):
                _LIVE.add(name)
                _ip("netns", "add", name)
                _ip("-n", name, "link", "set", "lo", "up")
            _ip(
                "link", "add", self.app_if, "netns", self.app, "type", "veth",
                "peer", "name", self.cloud_if, "netns", self.cloud,
            )  # fmt: skip
            for name, ifname, address in ((self.app, self.app_if, self.app_ip),
                                          (self.cloud, self.cloud_if, self.cloud_ip)):  # fmt: skip
                _ip("-n", name, "addr", "add", f"{address}/24", "dev", ifname)
                _ip("-n", name, "link", "set", ifname, "up")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Kill every process started in the namespaces and delete them. Safe to call more than once."""
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._procs.clear()
        for name in (self.app, self.cloud):
            if name in _LIVE:
                _delete_namespace(name)  # takes the veth pair with it
        self._open = False

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.open)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Shielded: a cancelled test must still delete its namespaces.
        await asyncio.shield(asyncio.to_thread(self.close))

    # -- running things inside --

    def command(self, ns: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside namespace ``ns`` (``ip netns exec``: the same pid once it has exec'd)."""
        if ns not in (self.app, self.cloud):
            raise ValueError(f"{ns!r} is not a namespace of this pair")
        return ["ip", "netns", "exec", ns, *argv]

    def run_in(self, ns: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``ns`` (``subprocess.Popen`` keyword arguments as given); killed on close."""
        proc: subprocess.Popen[Any] = subprocess.Popen(self.command(ns, argv), **popen_kwargs)
        self._procs.append(proc)
        return proc

    def check_in(self, ns: str, argv: Sequence[str], timeout: float = 30.0) -> str:
        """Run ``argv`` in ``ns`` to completion and return its standard output; raise if it fails."""
        done = subprocess.run(
            self.command(ns, argv), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {ns}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def call_in(self, ns: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a thread that has entered ``ns``: sockets it opens live there (a socket keeps
        the namespace it was made in). Blocks until ``fn`` returns; its exception is raised here."""
        result: list[T] = []
        error: list[BaseException] = []

        def run() -> None:
            from pyroute2.netns import setns  # type: ignore[import-untyped]

            try:
                setns(ns, flags=0)  # this thread only; it ends with the call
                result.append(fn(*args))
            except BaseException as exc:
                error.append(exc)

        thread = threading.Thread(target=run, name=f"in-{ns}", daemon=True)
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return result[0]

    # -- cutting the WAN --

    def cut_link(self) -> float:
        """Set the cloud end of the veth down: the appliance's end loses carrier at once. Returns
        ``time.monotonic()`` when the kernel has done it."""
        _ip("-n", self.cloud, "link", "set", self.cloud_if, "down")
        self._link_cut = True
        return time.monotonic()

    def restore_link(self) -> float:
        """Undo :meth:`cut_link`; returns ``time.monotonic()`` when the link is set up again."""
        _ip("-n", self.cloud, "link", "set", self.cloud_if, "up")
        self._link_cut = False
        return time.monotonic()

    def drop(self) -> float:
        """Drop, silently, every IP packet between the appliance and the cloud's address; the link stays
        up. Returns ``time.monotonic()`` when the rules are in force.

        The rules are a ``netdev`` table on the appliance's veth end (ingress and egress hooks) rather than
        an ``inet`` output chain: a drop in the output hook fails the sender's ``sendto`` with EPERM,
        which would tell the appliance what a black-holing router upstream never does. At the device, a
        datagram is accepted by the socket layer and vanishes. A kernel without the egress hook (before
        Linux 5.16) gets an ``inet`` input chain instead: what the appliance sends leaves, every answer
        is dropped on arrival, and the appliance is told nothing either."""
        dev, cloud = self.app_if, self.cloud_ip
        hook = "type filter hook {} device " + dev + " priority -500;"
        at_device = (
            f"table netdev {_CUT_TABLE} {{\n"
            f"  chain ingress {{ {hook.format('ingress')} ip saddr {cloud} drop; }}\n"
            f"  chain egress {{ {hook.format('egress')} ip daddr {cloud} drop; }}\n"
            "}\n"
        )
        on_arrival = (
            f"table inet {_CUT_TABLE} {{\n"
            f"  chain input {{ type filter hook input priority raw; ip saddr {cloud} drop; }}\n"
            "}\n"
        )
        errors = []
        for family, rules in (("netdev", at_device), ("inet", on_arrival)):
            done = subprocess.run(
                self.command(self.app, ["nft", "-f", "-"]),
                input=rules, capture_output=True, text=True, timeout=_IP_TIMEOUT, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                self._dropping = family
                return time.monotonic()
            errors.append(done.stderr.strip())
        raise RuntimeError(f"nft: {errors}")

    def undrop(self) -> float:
        """Remove the rules of :meth:`drop`; returns ``time.monotonic()`` when they are gone."""
        if self._dropping:
            self.check_in(
                self.app, ["nft", "delete", "table", self._dropping, _CUT_TABLE], timeout=_IP_TIMEOUT
            )
        self._dropping = ""
        return time.monotonic()

    def reachable(self, timeout: float = 1.0) -> bool:
        """Whether the cloud's kernel answers a TCP connection attempt from the appliance's namespace
        within ``timeout`` (a refusal is an answer: no listener is needed)."""

        def attempt() -> bool:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                try:
                    s.connect((self.cloud_ip, 9))
                except ConnectionRefusedError:
                    return True
                except OSError:
                    return False
                return True

        return self.call_in(self.app, attempt)


@contextlib.contextmanager
def wan_pair(subnet: int | None = None) -> Iterator[WanPair]:
    """``with wan_pair() as wan``: a :class:`WanPair` set up for the block and removed after it."""
    with WanPair.create(subnet) as pair:
        yield pair


# -- the appliance in the appliance's namespace ------------------------------------------------------------


@dataclass
class NamespacedAppliance:
    """The appliance process started by :func:`start_appliance_in` (``appliance run`` under ``ip netns
    exec``), its start-up banner, and its metrics read from inside its namespace."""

    wan: WanPair
    proc: subprocess.Popen[str]
    config_path: Path
    banner: list[str]
    stderr_path: Path

    @property
    def metrics_url(self) -> str:
        return next(line.split()[-1] for line in self.banner if line.startswith("metrics"))

    def metrics(self) -> dict[str, float]:
        """Every sample of the metrics endpoint, ``name{labels}`` → value."""

        def fetch() -> str:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                return response.read().decode()  # type: ignore[no-any-return]

        out: dict[str, float] = {}
        for line in self.wan.call_in(self.wan.app, fetch).splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    def mode(self) -> str | None:
        """The survivability mode the metrics show (``appliance_mode{mode=...}`` at 1)."""
        for name, value in self.metrics().items():
            if name.startswith("appliance_mode{") and value == 1:
                return name.split('mode="', 1)[1].split('"', 1)[0]
        return None

    def wait_mode(self, mode: str, timeout: float, poll: float = 0.02) -> float:
        """Poll until the mode is ``mode``; returns ``time.monotonic()`` then. AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.mode()
            if seen == mode:
                return time.monotonic()
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the appliance exited ({self.proc.returncode}): {self.stderr()[-3000:]}"
                )
            time.sleep(poll)
        raise AssertionError(f"mode stayed {seen} for {timeout} s, expected {mode}")

    def stderr(self) -> str:
        """What the process has written to standard error so far (its log)."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would, and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def start_appliance_in(
    wan: WanPair, workdir: Path, config: str, *, ready_timeout: float = 30.0, name: str = "appliance"
) -> NamespacedAppliance:
    """Write ``config`` (a whole TOML file) to ``workdir/<name>.toml`` and start ``appliance run`` with it
    in the appliance's namespace; return once it printed ``appliance ready`` (RuntimeError if it exits or
    takes longer than ``ready_timeout``). Its log goes to ``workdir/<name>.log``; the banner is kept."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}.toml"
    path.write_text(config)
    log_path = workdir / f"{name}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    binary = Path(sys.executable).parent / "appliance"
    with open(log_path, "ab") as log:
        proc: subprocess.Popen[str] = wan.run_in(
            wan.app, [str(binary), "run", "--config", str(path)],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=workdir,
        )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    # A reader thread: a pipe's buffered lines are invisible to select() once one is read. It keeps
    # draining after start-up so the process never blocks on a full pipe.
    banner: list[str] = []

    def pump() -> None:
        for line in proc.stdout or ():
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + ready_timeout
    while not banner or banner[-1] != "appliance ready":
        try:
            banner.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"the appliance did not start: {banner} {log_path.read_text(errors='replace')[-3000:]}"
            ) from None
    return NamespacedAppliance(wan, proc, path, banner, log_path)


@dataclass(frozen=True)
class OutboxAccount:
    """Where an appliance's outbox stands, read from its database once the appliance has stopped."""

    acked_seq: int
    last_seq: int
    held: list[tuple[int, str, str]]  # (seq, id, type) of every event still in the outbox, in seq order


def outbox_account(state_dir: Path) -> OutboxAccount:
    """Open ``<state_dir>/appliance.db`` (the appliance must not be running) and read its outbox."""
    from appliance.store import Database, Outbox

    async def read() -> OutboxAccount:
        db = await Database.open(state_dir / "appliance.db")
        try:
            outbox = Outbox(db)
            held: list[tuple[int, str, str]] = []
            after = 0
            while batch := await outbox.read_raw_after(after, 1000):
                held += [(e.seq, e.id, e.type) for e in batch]
                after = batch[-1].seq
            return OutboxAccount(await outbox.acked_seq(), await outbox.last_seq(), held)
        finally:
            await db.close()

    return asyncio.run(read())


def appliance_config(
    wan: WanPair, work: Path, *, site_name: str, sip_port: int, sync_port: int, pki: SitePki, extra: str = ""
) -> str:
    """An appliance configuration for the appliance's namespace: state in ``work/var``, SIP and the sync
    API (with ``pki``'s server certificate, cloud clients signed by its CA) on the WAN address, one media
    worker, metrics on the namespace's loopback. ``extra`` holds further tables (``[cloud]``, ``[wan]``)."""
    return f"""\
state_dir = "{work / "var"}"

[site]
name = "{site_name}"

[sip]
listen = "{wan.app_ip}"
udp_port = {sip_port}
tcp_port = {sip_port}

[media]
workers = 1
# A small port range: the worker binds all of it at every start.
rtp_port_min = 20000
rtp_port_max = 20999

[sync]
listen = "{wan.app_ip}"
port = {sync_port}
certificate = "{pki.server_certificate}"
private_key = "{pki.server_key}"
client_ca = "{pki.ca_certificate}"

[metrics]
listen = "127.0.0.1"
port = 0

{extra}"""


def check_exactly_once(events: Sequence[Event], account: OutboxAccount) -> None:
    """AssertionError unless the cloud's store (``events``) holds seq 1..acked_seq without a gap and the
    outbox holds the rest of what it issued (acked_seq+1..last_seq), every id once in all, no two events
    have the same type, HLC and body (one event sent twice under two ids), and HLCs rise with seq."""
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, account.acked_seq + 1)), "the store is not seq 1..acked without a gap"
    held = [seq for seq, _, _ in account.held]
    assert held == list(range(account.acked_seq + 1, account.last_seq + 1)), "the outbox lost an event"
    ids = Counter(e.id for e in events) + Counter(i for _, i, _ in account.held)
    assert not [i for i, n in ids.items() if n > 1], "an event id issued twice"
    content = Counter((e.type, e.hlc, repr(sorted(e.body.items()))) for e in events)
    assert not [c for c, n in content.items() if n > 1], "one event sent twice under two ids"
    hlcs = [e.hlc for e in events]
    assert all(a < b for a, b in itertools.pairwise(hlcs)), "HLC order disagrees with seq order"


# -- the reference cloud client in the cloud's namespace ---------------------------------------------------


@dataclass
class CloudClient:
    """The reference sync client (``python -m appliance.sync.client``) run in the cloud's namespace against
    the appliance's sync API at ``https://<app_ip>:<port>``, with the site PKI's CA and cloud certificate.

    :meth:`start_pull` runs ``pull --follow`` into the SQLite store ``store``; every JSON line it prints (one
    per batch) is kept in :attr:`reports`. :meth:`run` runs any other command and returns its answer."""

    wan: WanPair
    port: int
    ca: Path
    certificate: Path
    key: Path
    store: Path
    request_timeout: float = 5.0
    wait: float = 2.0
    proc: subprocess.Popen[str] | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    _lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    @property
    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "appliance.sync.client", "--timeout", f"{self.request_timeout:g}",
            "--url", f"https://{self.wan.app_ip}:{self.port}",
            "--ca", str(self.ca), "--cert", str(self.certificate), "--key", str(self.key),
        ]  # fmt: skip

    def start_pull(self) -> None:
        argv = [*self.argv, "pull", "--store", str(self.store), "--follow", "--wait", f"{self.wait:g}"]
        with open(self.log_path, "ab") as log:
            proc = self.wan.run_in(self.wan.cloud, argv, stdout=subprocess.PIPE, stderr=log, text=True)
        self.proc = proc

        def pump() -> None:
            for line in proc.stdout or ():
                self._lines.put(json.loads(line))

        threading.Thread(target=pump, daemon=True).start()

    @property
    def log_path(self) -> Path:
        """Where ``pull``'s standard error goes (next to the store)."""
        return self.store.with_suffix(".log")

    def run(self, *args: str) -> dict[str, Any]:
        """``args`` as a command of the client (``status``, ``health``...); its JSON answer."""
        answer: dict[str, Any] = json.loads(self.wan.check_in(self.wan.cloud, [*self.argv, *args]))
        return answer

    def _take(self, timeout: float) -> bool:
        try:
            self.reports.append(self._lines.get(timeout=timeout))
        except queue.Empty:
            return False
        return True

    def pulling(self) -> bool:
        """Whether ``pull --follow`` still runs (it ends only on an error retrying cannot cure)."""
        return self.proc is not None and self.proc.poll() is None

    def wait_batch(self, timeout: float) -> bool:
        """Block until the client reports a batch it received from now on; False after ``timeout``."""
        while self._take(0):
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._take(min(0.1, max(0.0, deadline - time.monotonic()))) and self.reports[-1]["received"]:
                return True
        return False

    def wait_caught_up(self, last_seq: int, timeout: float) -> dict[str, Any]:
        """Block until the client has stored and acknowledged ``last_seq``; its latest report then."""
        deadline = time.monotonic() + timeout
        while True:
            while self._take(0):
                pass
            last = self.reports[-1] if self.reports else {}
            if last.get("last_held", 0) >= last_seq and last.get("acked_seq", 0) >= last_seq:
                return last
            if not self.pulling():
                raise AssertionError(f"the sync client exited: {self.stop()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the client did not catch up with seq {last_seq}: {last}")
            self._take(0.1)

    def stop(self) -> str:
        """SIGTERM the pull (its store is durable after every batch); what it wrote to standard error."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        while self._take(0.05):
            pass
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[Event]:
        """Every event in the store, in seq order."""
        with ClientStore.open(self.store) as store:
            return list(store.iter_events())


# -- SIPp in a namespace -----------------------------------------------------------------------------------


class NamespacedSipp(SippProcess):
    """A :class:`~tests.system.sipp.SippProcess` run in namespace ``ns`` (under ``ip netns exec``, so its
    pid is SIPp's own) on ``local_ip:local_port`` there. Make it with :meth:`in_ns`."""

    ns: str

    @classmethod
    def in_ns(
        cls, ns: str, scenario: Path, *, role: Role, local_ip: str, local_port: int, workdir: Path,
        **options: Any,
    ) -> NamespacedSipp:  # fmt: skip
        """``options`` as for ``SippProcess``. The control socket's port is picked in the test's own
        namespace: the namespace is fresh, so that port is free there too."""
        sipp = cls(scenario, role=role, workdir=workdir, local_ip=LOOPBACK, local_port=local_port, **options)
        sipp.local_ip = local_ip
        sipp.ns = ns
        return sipp

    @property
    def argv(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *super().argv]

    def wait_bound(self, timeout: float = 5.0) -> Self:
        """Block until SIPp's SIP socket is bound (read from ``/proc/<pid>/net/udp``, which shows the
        socket table of SIPp's namespace)."""
        deadline = time.monotonic() + timeout
        wanted = f"{socket.inet_aton(self.local_ip)[::-1].hex().upper()}:{self.local_port:04X}"
        while True:
            try:
                table = Path(f"/proc/{self.pid}/net/udp").read_text()
            except OSError:
                table = ""
            if any(line.split()[1:2] == [wanted] for line in table.splitlines()[1:]):
                return self
            if not self.running:
                raise SippNotReadyError(f"SIPp exited before binding: {self.stop().describe()}")
            if time.monotonic() > deadline:
                raise SippNotReadyError(f"SIPp did not bind {self.local_ip}:{self.local_port} in {timeout} s")
            time.sleep(0.01)
