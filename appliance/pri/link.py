"""The asyncio adapter of one span's D-channel: :class:`~hw.e1.links.DChannel` ↔ LAPD ↔ Q.931.

Thin by design (STYLE.md rule 4): it makes no protocol decision. Every input — a frame from the span, the
span's signal coming or going, a timer, a command of call control — is handled the same way:

1. read ``loop.time()`` once and feed the input to the machine it belongs to, with that ``now``;
2. pump until both machines are quiet: Q.931 messages to send become LAPD I-frames (``send_data``);
   LAPD's events become Q.931 input (``LinkEstablished`` → ``link_established``, ``LinkReleased`` →
   ``link_released``, ``DataReceived`` → ``receive``: Q.921 §4 DL-ESTABLISH/DL-RELEASE/DL-DATA
   indications); Q.931's events go to the owner's callback; LAPD's frames go to the D-channel;
3. re-arm one ``loop.call_at`` at the earlier of the two machines' deadlines.

The owner's callbacks may issue Q.931 commands from inside the pump (answer a SETUP at once): the pump
goes round again until nothing is left, so what they cause is sent before the adapter returns.

LAPD is started (SABME, Q.921 §5.5.1) when the span's signal comes up and left to keep the link up, as
PRI equipment does; the span losing its far end is a physical-layer deactivation for LAPD (Q.921 §5.8.9),
which releases the data link, which Q.931 handles per §5.8.9 (data link failure).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from appliance.pri.lapd_events import DataReceived, LapdEvent, LinkEstablished, LinkReleased, ReleaseReason
from appliance.pri.pcap import PcapWriter
from appliance.pri.q931_events import Q931Event
from hw.e1.links import DChannel

log = logging.getLogger(__name__)

T = TypeVar("T")


class LapdMachine(Protocol):
    """What the adapter uses of :class:`appliance.pri.lapd.Lapd`."""

    def start(self, now: float) -> None: ...

    def receive(self, frame: bytes, now: float) -> None: ...

    def send_data(self, data: bytes, now: float) -> None: ...

    def frames_to_send(self) -> list[bytes]: ...

    def next_event(self) -> LapdEvent | None: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def physical_down(self, now: float) -> None: ...

    def physical_up(self, now: float) -> None: ...


class Q931Machine(Protocol):
    """What the adapter uses of :class:`appliance.pri.q931.Q931` (its commands are the owner's)."""

    def link_established(self, now: float) -> None: ...

    def link_released(self, now: float) -> None: ...

    def physical_layer_lost(self, now: float) -> None: ...

    def receive(self, data: bytes, now: float) -> None: ...

    def data_to_send(self) -> list[bytes]: ...

    def next_event(self) -> Q931Event | None: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class PriLink:
    """Joins one span's D-channel, its LAPD machine and its Q.931 machine (implements
    :class:`hw.e1.links.DChannelHandler`).

    Contract:

    - Build the link, give it to the D-channel as its handler, then :meth:`attach` the channel (the sim
      backend takes its handler at construction). Inputs arriving before :meth:`attach` are fed to the
      machines; their frames are dropped, as a card drops what it cannot put on a line.
    - ``on_event`` receives every Q.931 event in order; ``on_dchannel`` (optional) the data link's state
      (true on LinkEstablished, false on LinkReleased); ``on_signal`` (optional) the span's far end
      present or gone. Callbacks run on the loop's thread inside the pump; an exception in one is logged
      and does not stop the pump.
    - Call-control commands on the Q.931 machine go through :meth:`run` (``link.run(lambda now:
      q931.connect(call, now=now))``), or are followed by :meth:`flush`, so that what they queue is sent.
    - ``trace`` (optional) receives every frame, sent and received, time-stamped by ``wall_clock``.
    - :meth:`close` cancels the timer; later inputs are ignored.
    """

    def __init__(
        self,
        *,
        lapd: LapdMachine,
        q931: Q931Machine,
        on_event: Callable[[Q931Event], None],
        on_dchannel: Callable[[bool], None] | None = None,
        on_signal: Callable[[bool], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        trace: PcapWriter | None = None,
        wall_clock: Callable[[], float] = time.time,
        span: int = 1,
    ) -> None:
        self._lapd = lapd
        self._q931 = q931
        self._on_event = on_event
        self._on_dchannel = on_dchannel
        self._on_signal = on_signal
        self._loop = loop
        self._trace = trace
        self._wall_clock = wall_clock
        self.span = span
        self._channel: DChannel | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._pumping = False
        self._closed = False
        self._signal = False
        self._dchannel_up = False
        self.release_reason: ReleaseReason | None = None  # why the D-channel last went down, while down

    # -- owner -----------------------------------------------------------------------------------------

    def attach(self, channel: DChannel) -> None:
        """Send on ``channel`` from now on; a channel already up counts as the signal coming up."""
        self._channel = channel
        if channel.up and not self._signal:
            self.link_changed(True)

    @property
    def lapd(self) -> LapdMachine:
        return self._lapd

    @property
    def q931(self) -> Q931Machine:
        return self._q931

    @property
    def signal(self) -> bool:
        """True while the span has its far end (the D-channel's link is up)."""
        return self._signal

    @property
    def dchannel_up(self) -> bool:
        """True while LAPD is in multiple-frame operation (between LinkEstablished and LinkReleased)."""
        return self._dchannel_up

    def time(self) -> float:
        """The clock the machines run on (the loop's)."""
        return self._get_loop().time()

    def run(self, command: Callable[[float], T]) -> T:
        """Run one command on the machines with the current time, then send what it queued."""
        now = self.time()
        result = command(now)
        self._pump(now)
        return result

    def flush(self) -> None:
        """Send what commands issued outside :meth:`run` queued, and re-arm the timer."""
        if not self._closed:
            self._pump(self.time())

    def close(self) -> None:
        """Stop: cancel the timer and ignore further inputs. The D-channel is the owner's to close."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = None

    # -- DChannelHandler -------------------------------------------------------------------------------

    def frame_received(self, frame: bytes) -> None:
        if self._closed:
            return
        now = self.time()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("span %d D rx %s", self.span, frame.hex())
        if self._trace is not None:
            self._trace.write(frame, sent=False, timestamp=self._wall_clock())
        self._lapd.receive(frame, now)
        self._pump(now)

    def link_changed(self, up: bool) -> None:
        if self._closed or up == self._signal:
            return
        now = self.time()
        self._signal = up
        log.info("span %d: far end %s", self.span, "present" if up else "gone (loss of signal)")
        if up:
            self._lapd.physical_up(now)
            self._lapd.start(now)
        else:
            self._q931.physical_layer_lost(now)  # the B-channels are gone too: calls end, cause 38
            self._lapd.physical_down(now)
        self._notify(self._on_signal, up)
        self._pump(now)

    # -- the pump --------------------------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        if self._pumping:  # a callback issued a command: the running pump picks up what it queued
            return
        self._pumping = True
        try:
            while self._pass(now):
                pass
        finally:
            self._pumping = False
        self._arm()

    def _pass(self, now: float) -> bool:
        """One round of moving data between the layers; false when there was nothing to move."""
        moved = False
        for message in self._q931.data_to_send():
            self._lapd.send_data(message, now)
            moved = True
        while (lapd_event := self._lapd.next_event()) is not None:
            self._lapd_event(lapd_event, now)
            moved = True
        while (event := self._q931.next_event()) is not None:
            self._notify(self._on_event, event)
            moved = True
        for frame in self._lapd.frames_to_send():
            self._send(frame)
            moved = True
        return moved

    def _lapd_event(self, event: LapdEvent, now: float) -> None:
        if isinstance(event, DataReceived):
            self._q931.receive(event.data, now)
        elif isinstance(event, LinkEstablished):
            log.info("span %d: D-channel established%s", self.span, " again" if event.reestablished else "")
            was_up, self._dchannel_up = self._dchannel_up, True
            self.release_reason = None
            self._q931.link_established(now)
            if not was_up:  # a re-establishment (Q.921 §5.7) is a new indication, not a new state
                self._notify(self._on_dchannel, True)
        elif isinstance(event, LinkReleased):
            log.info("span %d: D-channel released (%s)", self.span, event.reason.value)
            was_up, self._dchannel_up = self._dchannel_up, False
            self.release_reason = event.reason
            self._q931.link_released(now)
            if was_up:
                self._notify(self._on_dchannel, False)
        else:  # MDL-ERROR (the machine logs it) and UI frames, which Q.931 on a PRI does not use
            log.debug("span %d: LAPD %s", self.span, event)

    def _send(self, frame: bytes) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("span %d D tx %s", self.span, frame.hex())
        if self._trace is not None:
            self._trace.write(frame, sent=True, timestamp=self._wall_clock())
        if self._channel is not None:
            self._channel.send(frame)

    def _notify(self, callback: Callable[[T], None] | None, value: T) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception:  # the owner's bug must not stall the D-channel of the whole span
            log.exception("span %d: callback failed on %r", self.span, value)

    # -- timer -----------------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._closed:
            return
        deadlines = [d for d in (self._lapd.get_timer(), self._q931.get_timer()) if d is not None]
        deadline = min(deadlines) if deadlines else None
        if deadline == self._deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = deadline
        if deadline is not None:
            self._timer = self._get_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline, self._deadline = self._deadline, None
        if self._closed:
            return
        # The loop may run a call_at a little early (its clock resolution); never hand a machine a time
        # before the deadline it asked for, or it would ask again at once.
        now = self.time() if deadline is None else max(self.time(), deadline)
        for machine in (self._lapd, self._q931):
            due = machine.get_timer()
            if due is not None and due <= now:
                machine.handle_timer(now)
        self._pump(now)

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop
