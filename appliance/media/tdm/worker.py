"""The TDM worker process: one span's B-channels joined to RTP, as asyncio glue around :class:`TdmBridge`.

Run as ``python -m appliance.media.tdm.worker --span N --b-socket PATH --control PATH --address 127.0.0.1
--ports MIN-MAX --timeslots 1-15,17-31`` for a simulated span, or with ``--driver dahdi --basechan C``
(and ``--dahdi-device``, default ``/dev/dahdi/channel``) instead of ``--b-socket`` for a span on a DAHDI
card (``--scheduling``: its CPU priority, :mod:`appliance.media.scheduling`). The worker binds every
timeslot's RTP/RTCP pair first (the ports are fixed, :func:`~appliance.media.tdm.layout.tdm_port`: call
control writes them into SDPs before the worker hears of a call; a pair another process holds is reported
in ``ready`` and its timeslot cannot open), opens the span's B-channels with
:func:`hw.e1.channels.open_bchannels` (the simulated span's ``spanN-b.sock``; on a card one
``/dev/dahdi/channel`` fd per timeslot, channel ``basechan + timeslot - 1``, read and written in 160-octet
blocks) and its Unix ``SOCK_SEQPACKET`` control socket, prints ``ready`` on stdout (or ``error: REASON``
and exits 1) and serves one control connection: it greets it with :class:`Ready` and reports the B link's
far end coming and going as :class:`LinkChanged` (one for a far end already there when the connection
came). When the control connection ends the worker exits with status 0 (it never outlives the control
process).

Audio law. The TDM side of the bridge is A-law, the law of E1 (G.711 §2; ITU-T G.704 spans): a simulated
span carries A-law by definition (DESIGN.md §5.2), and DAHDI sets the channels of an E1 span to A-law
(``DAHDI_LAW_ALAW``) and passes a clear channel's octets through as the line carries them.

The 20 ms tick. One timer for the span, not one per timeslot: deadlines come from the
:class:`~appliance.media.tdm.pacer.Pacer` on ``time.monotonic()``; the timer is armed with
``loop.call_at`` at the loop-clock equivalent of the deadline and, when it fires, the clock is read at
full resolution (uvloop's ``loop.time()`` has millisecond resolution and is read once per loop
iteration; :mod:`appliance.media.worker` explains the measurement) and the pacer says how many ticks to
run: a late timer runs the due tick and one catch-up at most, and skips the rest. The loop's timers have
millisecond resolution and a loop busy reading sockets runs them late, so the packet paths (an RTP
datagram, a B-channel frame: thousands a second on a full span) also compare the clock with the deadline
after their work and run a tick that is due, between two reads (as :mod:`appliance.media.worker` does for
IVR packets). Measured with 30 timeslots carrying audio both ways: about 10 % of a core; pacing error p50
0.35-0.55 ms and p99 1.7-4 ms at normal priority on a shared, loaded 2-core machine (where an idle
asyncio timer alone showed p99 1.3-3.7 ms), p99 0.7 ms under ``--scheduling realtime``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import logging
import math
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

from appliance.media.scheduling import POLICIES, Scheduling, apply_scheduling
from appliance.media.tdm.bridge import TdmBridge
from appliance.media.tdm.commands import handle
from appliance.media.tdm.control import MAX_MESSAGE_SIZE, LinkChanged, Message, Ready, encode
from appliance.media.tdm.layout import parse_timeslots, ports_needed
from appliance.media.tdm.pacer import Pacer
from hw.e1.channels import open_bchannels
from hw.e1.dahdi_channel import DeviceAccess
from hw.e1.driver import BChannelsSpec
from hw.e1.errors import E1Error
from hw.e1.links import BChannels
from hw.e1.sim import SimBChannels

log = logging.getLogger("appliance.media.tdm.worker")

_RECV_SIZE: Final = 2048
DAHDI_CHANNEL_DEVICE: Final = Path("/dev/dahdi/channel")
Pair = tuple[socket.socket, socket.socket]


@dataclass(frozen=True, slots=True)
class Options:
    """``b_socket`` is the simulated span's B-channel socket (``driver`` sim); ``basechan`` the DAHDI
    channel of a card span's timeslot 1 and ``dahdi_device`` the device its channels open (``driver``
    dahdi)."""

    span: int
    b_socket: Path | None
    control: str
    address: str
    ports: tuple[int, int]
    timeslots: tuple[int, ...]
    scheduling: Scheduling = "normal"
    driver: Literal["sim", "dahdi"] = "sim"
    basechan: int | None = None
    dahdi_device: Path = DAHDI_CHANNEL_DEVICE

    def bchannels(self) -> BChannelsSpec:
        """Where the span's B-channels are, for :func:`hw.e1.channels.open_bchannels`."""
        return BChannelsSpec(
            self.driver, self.span, self.timeslots, path=self.b_socket, basechan=self.basechan
        )


def bind_pairs(options: Options) -> tuple[dict[int, Pair], tuple[int, ...]]:
    """Bind each timeslot's RTP/RTCP pair; returns the pairs and the RTP ports another process held.
    Raises ``ValueError`` when the range is too small and ``OSError`` when the address is not the host's."""
    low, high = options.ports
    if high - low + 1 < ports_needed(options.timeslots):
        raise ValueError(f"ports {low}-{high} cannot hold {len(options.timeslots)} RTP/RTCP pairs")
    family = socket.AF_INET6 if ":" in options.address else socket.AF_INET
    pairs: dict[int, Pair] = {}
    unusable: list[int] = []
    for index, slot in enumerate(options.timeslots):
        port = low + 2 * index
        pair: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                pair.append(sock)
                sock.setblocking(False)
                sock.bind((options.address, p))
        except OSError as exc:
            for sock in pair:
                sock.close()
            if exc.errno != errno.EADDRINUSE:  # a port held by another process is reported; else fatal
                for rtp, rtcp in pairs.values():
                    rtp.close()
                    rtcp.close()
                raise
            unusable.append(port)
            continue
        pairs[slot] = (pair[0], pair[1])
    return pairs, tuple(unusable)


class TdmWorker:
    """The asyncio side of one span: control connection, RTP readers, the B link and the tick timer.
    ``access`` is how a card span's channels reach the kernel (the real device unless given)."""

    def __init__(
        self,
        options: Options,
        bridge: TdmBridge,
        pairs: dict[int, Pair],
        ready: Ready,
        *,
        access: DeviceAccess | None = None,
    ) -> None:
        self.options = options
        self.access = access if access is not None else DeviceAccess(device=options.dahdi_device)
        self.bridge = bridge
        self.pairs = pairs
        self.ready = ready
        self.loop = asyncio.get_running_loop()
        self.conn: socket.socket | None = None
        self.pacer = Pacer(time.monotonic())
        self._timer: asyncio.TimerHandle | None = None
        self._due = math.inf  # the next tick's deadline once ticking
        self.rtcp_received = 0
        self.blink: BChannels | None = None

    # --- BChannelHandler ----------------------------------------------------------------------------

    def frame_received(self, timeslot: int, samples: bytes) -> None:
        out = self.bridge.from_tdm(timeslot, samples)
        if out is not None:
            with contextlib.suppress(OSError):  # a full buffer or an unreachable peer loses this packet
                self.pairs[timeslot][0].sendto(*out)
        if time.monotonic() >= self._due:
            self._fired()

    def link_changed(self, up: bool) -> None:
        log.info("tdm worker span %d: B link %s", self.options.span, "up" if up else "down (LOS)")
        self.bridge.link_changed(up)
        self.send(LinkChanged(up))

    # --- sockets ------------------------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        if self.conn is None:
            return
        try:
            self.conn.send(encode(msg))
        except (BlockingIOError, BrokenPipeError, ConnectionError) as exc:
            log.warning("tdm worker span %d: control message dropped: %s", self.options.span, exc)

    def _rtp_readable(self, timeslot: int, sock: socket.socket) -> None:
        try:
            data, source = sock.recvfrom(_RECV_SIZE)
        except OSError:
            return  # nothing queued, or an ICMP error from an earlier send
        now = time.monotonic()
        self.bridge.from_rtp(timeslot, data, source, now)
        if now >= self._due:
            self._fired()

    def _rtcp_readable(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.recv(_RECV_SIZE)
            self.rtcp_received += 1  # RTCP is taken and counted; reports are not generated (yet)

    # --- the tick -----------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._due = self.pacer.deadline
        delay = self._due - time.monotonic()
        self._timer = self.loop.call_at(self.loop.time() + max(0.0, delay), self._fired)

    def _fired(self) -> None:
        now = time.monotonic()
        run, skip = self.pacer.fire(now)
        bridge, blink = self.bridge, self.blink
        for _ in range(skip):
            bridge.skip(now)
        for _ in range(run):
            frames = bridge.tick(now)
            if blink is not None and blink.up:
                for slot, frame in frames:
                    blink.send(slot, frame)
        self._arm()

    def extra_counters(self) -> dict[str, int]:
        extra = {"rtcp_received": self.rtcp_received}
        if isinstance(self.blink, SimBChannels):
            extra.update({f"b_link_{key}": value for key, value in asdict(self.blink.counters).items()})
        return extra

    # --- serving ------------------------------------------------------------------------------------

    async def serve(self) -> int:
        """Accept one control connection and serve it until it ends; then close everything. Returns the
        exit status: 0, or 1 when the B-channels could not be opened (``error: …`` printed)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.options.control)
        listener.bind(self.options.control)
        listener.listen(1)
        listener.setblocking(False)
        for slot, (rtp, rtcp) in self.pairs.items():
            self.loop.add_reader(rtp.fileno(), self._rtp_readable, slot, rtp)
            self.loop.add_reader(rtcp.fileno(), self._rtcp_readable, rtcp)
        try:
            # The B-channels are open before "ready", so a far end may connect as soon as the worker is up;
            # a link that came up before the control connection is reported right after the greeting.
            try:
                self.blink = await open_bchannels(self.options.bchannels(), self, access=self.access)
            except E1Error as exc:
                print(f"error: tdm worker span {self.options.span}: {exc}", flush=True)
                return 1
            # A card's channels are up from the start unless in alarm (a simulated span's link comes up
            # when its far end connects, and says so).
            self.bridge.link_changed(self.blink.up)
            print("ready", flush=True)
            conn, _ = await self.loop.sock_accept(listener)
            conn.setblocking(False)
            self.conn = conn
            self.send(self.ready)
            if self.blink.up:
                self.send(LinkChanged(True))
            self.pacer = Pacer(time.monotonic())
            self._arm()
            while True:
                try:
                    data = await self.loop.sock_recv(conn, MAX_MESSAGE_SIZE + 1)
                except ConnectionError as exc:
                    log.warning(
                        "tdm worker span %d: control connection lost (%s); exiting", self.options.span, exc
                    )
                    return 0
                if not data:
                    log.info("tdm worker span %d: control connection closed; exiting", self.options.span)
                    return 0
                self.send(handle(self.bridge, data, self.pacer.stats(), self.extra_counters()))
        finally:
            if self._timer is not None:
                self._timer.cancel()
            if self.blink is not None:
                await self.blink.close()
            for rtp, rtcp in self.pairs.values():
                for sock in (rtp, rtcp):
                    self.loop.remove_reader(sock.fileno())
                    sock.close()
            listener.close()
            if self.conn is not None:
                self.conn.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.options.control)


async def run(
    options: Options, pairs: dict[int, Pair], unusable: tuple[int, ...], *, access: DeviceAccess | None = None
) -> int:
    bridge = TdmBridge(
        timeslots=options.timeslots,
        ports_min=options.ports[0],
        rand=random.SystemRandom().getrandbits,
        unusable=frozenset(unusable),
    )
    ready = Ready(options.span, options.ports[0], options.timeslots, unusable)
    worker = TdmWorker(options, bridge, pairs, ready, access=access)
    # What start-up built lives as long as the process: kept out of every collection's work.
    gc.collect()
    gc.freeze()
    return await worker.serve()


def _ports(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep:
        raise ValueError(f"port range {text!r} is not MIN-MAX")
    return int(low), int(high)


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="appliance.media.tdm.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--span", type=int, required=True, help="the span number (for logs and ready)")
    parser.add_argument("--driver", choices=("sim", "dahdi"), default="sim", help="the span's backend")
    parser.add_argument("--b-socket", type=Path, help="the simulated span's B-channel socket path")
    parser.add_argument("--basechan", type=int, help="the DAHDI channel of the card span's timeslot 1")
    parser.add_argument(
        "--dahdi-device", type=Path, default=DAHDI_CHANNEL_DEVICE, help="DAHDI's channel device"
    )
    parser.add_argument("--control", required=True, help="the Unix SOCK_SEQPACKET control socket path")
    parser.add_argument("--address", required=True, help="the IP address RTP sockets bind to")
    parser.add_argument("--ports", type=_ports, required=True, help="the RTP port range MIN-MAX")
    parser.add_argument("--timeslots", type=parse_timeslots, default=parse_timeslots("1-15,17-31"))
    parser.add_argument("--scheduling", choices=POLICIES, default="normal", help="CPU scheduling")
    args = parser.parse_args(argv)
    if args.driver == "sim" and args.b_socket is None:
        parser.error("a simulated span needs --b-socket")
    if args.driver == "dahdi" and (args.basechan is None or args.basechan < 1):
        parser.error("a DAHDI span needs --basechan (its timeslot 1's channel number, from 1)")
    return Options(
        args.span, args.b_socket, args.control, args.address, args.ports, args.timeslots, args.scheduling,
        args.driver, args.basechan, args.dahdi_device,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None, *, access: DeviceAccess | None = None) -> int:
    """The worker process; ``access``: how a card span's channels reach the kernel (the real device)."""
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    # A Ctrl-C at a terminal reaches the whole process group; the worker stops when its control closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if (problem := apply_scheduling(options.scheduling)) is not None:
        log.warning("tdm worker span %d: %s", options.span, problem)
    try:
        pairs, unusable = bind_pairs(options)
    except (ValueError, OSError) as exc:
        print(f"error: tdm worker span {options.span}: {exc}", flush=True)
        return 1
    return _run_loop(run(options, pairs, unusable, access=access))


def _run_loop(main_coroutine: Coroutine[Any, Any, int]) -> int:
    """Run the worker on uvloop (a declared dependency), or on asyncio's own loop where it is missing."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main_coroutine)
    return uvloop.run(main_coroutine)


if __name__ == "__main__":
    sys.exit(main())
