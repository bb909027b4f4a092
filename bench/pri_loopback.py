"""A loopback span for the PRI bench's calibration: the user side of simulated spans that answers every call
and sends each B-channel frame straight back.

``python -m bench.pri_loopback --dir DIR --spans 1,2`` listens on ``DIR/spanN-d.sock`` and
``DIR/spanN-b.sock`` as the appliance does (DESIGN.md §5.2, :class:`hw.e1.sim.SimDChannel` and
:class:`~hw.e1.sim.SimBChannels`), runs the appliance's own LAPD and Q.931 (user side) through
:class:`~appliance.pri.link.PriLink`, answers each SETUP (CALL PROCEEDING, CONNECT) and returns every frame
the far end sends on a timeslot, on that timeslot, as soon as it is read. It prints ``ready`` once it
listens and runs until SIGTERM or SIGINT.

What the far end then hears is its own sender's pacing (its ``loop.call_at`` schedule and its sends) plus
its own receive path's time stamping, with no appliance in between: the floor under the pacing figures it
measures on the appliance's spans. Nothing here is timed: the reflection costs one read and one send.
``--realtime`` runs it ``SCHED_FIFO``, as the bench runs its far ends, so that other programs do not add
their delays to the floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.pri.lapd import Lapd
from appliance.pri.link import PriLink
from appliance.pri.q931 import Q931
from appliance.pri.q931_events import CallOffered, Q931Event
from bench.common import parser
from hw.e1.links import B_TIMESLOTS
from hw.e1.sim import SimBChannels, SimDChannel

READY = "ready"


class LoopbackSpan:
    """One span's user side (see the module docstring); implements ``BChannelHandler`` for its frames."""

    def __init__(self, directory: Path, span: int) -> None:
        self.span = span
        self._q931 = Q931(side="user", b_channels=B_TIMESLOTS, span=span)
        self._link = PriLink(
            lapd=Lapd(side="user", name=f"loopback span {span}"),
            q931=self._q931,
            on_event=self._on_event,
            span=span,
        )
        self._d = SimDChannel(directory / f"span{span}-d.sock", self._link)
        self._b = SimBChannels(directory / f"span{span}-b.sock", self, timeslots=B_TIMESLOTS)
        self._link.attach(self._d)

    async def start(self) -> None:
        await self._d.start()
        await self._b.start()

    async def close(self) -> None:
        self._link.close()
        await self._d.close()
        await self._b.close()

    def _on_event(self, event: Q931Event) -> None:
        if isinstance(event, CallOffered):
            call = event.call
            self._link.run(lambda now: self._q931.proceeding(call, now=now))
            self._link.run(lambda now: self._q931.connect(call, now=now))

    # -- BChannelHandler --------------------------------------------------------------------------------

    def frame_received(self, timeslot: int, samples: bytes) -> None:
        self._b.send(timeslot, samples)

    def link_changed(self, up: bool) -> None:
        pass


async def serve(directory: Path, spans: Sequence[int]) -> None:
    """Run the loopback spans until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runners = [LoopbackSpan(directory, span) for span in spans]
    try:
        for runner in runners:
            await runner.start()
        print(READY, flush=True)
        await stop.wait()
    finally:
        for runner in runners:
            with contextlib.suppress(OSError):
                await runner.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("bench.pri_loopback", __doc__)
    p.add_argument("--dir", type=Path, required=True, help="where the spanN-d/-b sockets are made")
    p.add_argument("--spans", default="1,2", help="comma-separated span numbers")
    p.add_argument(
        "--realtime", action="store_true", help="run SCHED_FIFO priority 1 (root), as the bench's far ends do"
    )
    args = p.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.realtime:
        with contextlib.suppress(OSError):  # not root: the floor then carries this process's delays too
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    asyncio.run(serve(args.dir, [int(s) for s in args.spans.split(",") if s.strip()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
