"""A far end for a simulated span: the carrier's switch (or a PBX), built from the appliance's own stack.

It connects to a span's sockets (DESIGN.md §5.2) as the far end does, runs LAPD and Q.931 on the other side
(network by default, user by option) through the same adapter the appliance uses
(:class:`~appliance.pri.link.PriLink`), and drives calls the way a test, a benchmark or a field technician
needs: it places calls (SETUP with an exclusive channel and called/calling numbers, Q.931 §5.1.1), answers
the calls the appliance places, sends 20 ms A-law frames on each call's channel once it is connected
(silence or a tone, with in-band DTMF digits when a script says so), listens to each channel (frames,
sound, DTMF), hangs up with a cause, and can vanish (close both sockets: the appliance's span loses its
signal) and return.

Async API (one event loop)::

    far = FarEnd(directory=Path("var/run"), span=1)
    await far.start()                      # connect; returns once the D-channel is established
    results = await far.place_calls(30, CallScript(called="100", digits="111"))
    await far.vanish(); await far.come_back()
    await far.close()

Every call ends with a :class:`CallResult` (channel, answered, cause, who cleared, digits sent, what was
heard). Frames go out on one shared 20 ms schedule (``loop.call_at`` on absolute deadlines, never bursting
to catch up); what arrives is time-stamped on arrival, so a benchmark can read the appliance's pacing.
The command line (``python -m appliance.pri.farend --help``) is :mod:`appliance.pri.farend_cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final, Literal

from appliance.pri.errors import LocalProtocolError
from appliance.pri.farend_audio import FRAME_SECONDS, Audio, Heard, Listener, Talker
from appliance.pri.farend_links import FarEndBChannels, FarEndDChannel, FarEndLinkError
from appliance.pri.lapd import Lapd
from appliance.pri.link import PriLink
from appliance.pri.pcap import PcapWriter
from appliance.pri.q931 import Q931
from appliance.pri.q931_events import (
    CallConnected,
    CallDisconnecting,
    CallHandle,
    CallOffered,
    CallProceeding,
    CallReleased,
    ProtocolFault,
    Q931Event,
)
from appliance.pri.q931_model import PartyNumber, TypeOfNumber
from hw.e1.links import B_TIMESLOTS

log = logging.getLogger(__name__)

NORMAL_CLEARING: Final = 16
NO_CIRCUIT: Final = 34  # Q.850: no circuit/channel available
TEMPORARY_FAILURE: Final = 41
RECOVERY_ON_TIMER: Final = 102
_RELEASE_GRACE: Final = 15.0  # s to wait for the release after we hung up (T305 + T308 are longer)


@dataclass(frozen=True)
class CallScript:
    """What the far end does on one call it places.

    ``digits`` are sent in-band ``digits_after`` seconds after the channel first carries sound (a prompt),
    or after answer when nothing is heard within ``sound_wait``. ``hold``: seconds after answer before the
    far end hangs up with ``cause``; None waits for the appliance to clear. ``timeout``: the far end gives
    up (cause 102) if the call is not over by then.
    """

    called: str = "100"
    calling: str | None = "4930123456"
    called_type: TypeOfNumber = TypeOfNumber.UNKNOWN
    calling_type: TypeOfNumber = TypeOfNumber.INTERNATIONAL
    digits: str = ""
    digits_after: float = 0.5
    sound_wait: float = 10.0
    audio: Audio = "silence"
    hold: float | None = None
    cause: int = NORMAL_CLEARING
    timeout: float = 60.0


@dataclass
class CallResult:
    """How one call went (and, while it lasts, how it is going: ``heard`` fills as frames arrive).

    Times are the loop's clock; ``cleared_by`` is "far end", "appliance", or "vanished" for a call the far
    end forgot when it vanished (:meth:`FarEnd.vanish`)."""

    call: CallHandle
    direction: Literal["out", "in"]
    channel: int | None
    called: str | None = None
    calling: str | None = None
    answered: bool = False
    cause: int | None = None
    cleared_by: str | None = None
    digits_sent: str = ""
    digits_received: str = ""
    heard: Heard = field(default_factory=Heard)
    placed_at: float = 0.0
    answered_at: float | None = None
    released_at: float | None = None

    @property
    def released(self) -> bool:
        return self.released_at is not None

    def line(self) -> str:
        """One line for a technician: channel, answered, cause, digits, audio heard."""
        lasted = f"{self.released_at - self.placed_at:5.1f}s" if self.released_at is not None else "  -  "
        return (
            f"call {self.call:3d} {self.direction:3s} ch {self.channel or '-':>2} "
            f"{'answered' if self.answered else 'unanswered':10s} cause {self.cause or '-':>3} "
            f"by {self.cleared_by or '-':9s} after {lasted} sent '{self.digits_sent}' "
            f"heard {self.heard.sound_ms / 1000:5.1f}s of sound in {self.heard.frames} frames"
            + (f", DTMF '{self.heard.digits}'" if self.heard.digits else "")
        )


class _Call:
    """A call's live state on the far end."""

    def __init__(self, result: CallResult, talker: Talker, listener: Listener) -> None:
        self.result = result
        self.talker = talker
        self.listener = listener
        self.sending = False
        self.answered = asyncio.Event()
        self.sound = asyncio.Event()
        self.done = asyncio.Event()


class FarEnd:
    """The far end of span ``span`` whose sockets are in ``directory`` (see the module docstring).

    ``answer_incoming``: the calls the appliance places are answered (CALL PROCEEDING, ALERTING, CONNECT);
    false rejects them with cause 17 (user busy). ``dtmf`` runs a DTMF detector on every channel;
    ``keep_arrivals`` keeps each frame's arrival time in its call's :class:`Heard`. ``trace``: a binary file
    that receives a pcap of the D-channel as the far end sees it.
    """

    def __init__(
        self,
        *,
        directory: Path,
        span: int = 1,
        side: Literal["user", "network"] = "network",
        timeslots: tuple[int, ...] = B_TIMESLOTS,
        answer_incoming: bool = True,
        dtmf: bool = True,
        keep_arrivals: bool = False,
        audio: Audio = "silence",
        trace: BinaryIO | None = None,
    ) -> None:
        self.span = span
        self.side = side
        self._timeslots = timeslots
        self._answer_incoming = answer_incoming
        self._dtmf = dtmf
        self._keep_arrivals = keep_arrivals
        self._audio: Audio = audio
        self._trace = PcapWriter(trace, side=side) if trace is not None else None
        self._d_path = directory / f"span{span}-d.sock"
        self._b = FarEndBChannels(directory / f"span{span}-b.sock", _BHandler(self))
        self._q931, self._lapd, self._link, self._d = self._stack()
        self._calls: dict[CallHandle, _Call] = {}
        self._by_channel: dict[int, _Call] = {}
        self._dchannel = asyncio.Event()
        self._ticker: asyncio.TimerHandle | None = None
        self.incoming: list[CallResult] = []
        self.faults: list[ProtocolFault] = []
        self.dchannel_changes: list[tuple[float, bool]] = []
        self.late_ticks = 0  # ticks that ran a whole frame late (the far end's own pacing)

    def _stack(self) -> tuple[Q931, Lapd, PriLink, FarEndDChannel]:
        """A fresh signalling stack on the D-channel socket: no calls, LAPD in TEI-ASSIGNED."""
        q931 = Q931(side=self.side, b_channels=self._timeslots, span=self.span)
        lapd = Lapd(side=self.side, name=f"far end span {self.span}")
        link = PriLink(
            lapd=lapd,
            q931=q931,
            on_event=self._on_event,
            on_dchannel=self._on_dchannel,
            trace=self._trace,
            span=self.span,
        )
        d = FarEndDChannel(self._d_path, link)
        link.attach(d)
        return q931, lapd, link, d

    # -- connection ------------------------------------------------------------------------------------

    async def start(self, *, within: float = 10.0) -> None:
        """Connect to both sockets (retrying while the appliance is not yet listening) and wait for the
        D-channel to be established; raises TimeoutError otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        for link in (self._b, self._d):
            while True:
                try:
                    await link.connect()
                    break
                except FarEndLinkError:
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(0.05)
        self._start_ticker(loop)
        await self.wait_dchannel(within=max(0.1, deadline - loop.time()))

    async def wait_dchannel(self, *, within: float = 10.0) -> None:
        """Return once LAPD is in multiple-frame operation (SABME/UA done)."""
        await asyncio.wait_for(self._dchannel.wait(), within)

    @property
    def dchannel_up(self) -> bool:
        return self._link.dchannel_up

    async def vanish(self) -> None:
        """Close both sockets, as a far end that is switched off: the appliance's span loses its signal
        and clears its calls (cause 38). The far end comes back with a fresh stack and no calls: each call
        it had ends now (cause 41, temporary failure, cleared by "vanished")."""
        self._stop_ticker()
        now = self._link.time()
        for call in list(self._calls.values()):
            self._ended(call, TEMPORARY_FAILURE, "vanished", now)
        await self._d.close()
        await self._b.close()
        self._link.link_changed(False)  # the D-channel is down until come_back establishes it again
        self._link.close()
        self._q931, self._lapd, self._link, self._d = self._stack()

    async def come_back(self, *, within: float = 10.0) -> None:
        """Connect again after :meth:`vanish` (or after the appliance closed us) and wait for the
        D-channel."""
        await self.start(within=within)

    async def close(self) -> None:
        """Hang up nothing, close everything: the sockets, the timer and the ticker. Calls still up end
        as if the far end vanished (their :meth:`place_call` returns)."""
        self._stop_ticker()
        self._link.close()
        await self._d.close()
        await self._b.close()
        now = self._link.time()
        for call in list(self._calls.values()):
            self._ended(call, TEMPORARY_FAILURE, "vanished", now)

    # -- calls -----------------------------------------------------------------------------------------

    async def place_calls(self, n: int, script: CallScript = CallScript()) -> list[CallResult]:
        """Place ``n`` calls at once with ``script``; their results in the order placed."""
        return list(await asyncio.gather(*(self.place_call(script) for _ in range(n))))

    async def place_call(self, script: CallScript = CallScript()) -> CallResult:
        """Place one call and follow ``script`` until it is released; its result."""
        loop = asyncio.get_running_loop()
        call = self._setup(script)
        deadline = call.result.placed_at + script.timeout
        try:
            async with asyncio.timeout_at(deadline):
                await _first(call.answered, call.done)
                if call.answered.is_set():
                    await self._converse(call, script, loop)
                await call.done.wait()
        except TimeoutError:
            self.hang_up(call.result.call, RECOVERY_ON_TIMER)
        if not call.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.done.wait(), _RELEASE_GRACE)
        return call.result

    async def _converse(self, call: _Call, script: CallScript, loop: asyncio.AbstractEventLoop) -> None:
        """An answered call: the digits once a prompt is heard, then hold and hang up, as scripted."""
        if script.digits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(call.sound, call.done), script.sound_wait)
            await asyncio.sleep(script.digits_after)
            if call.done.is_set():
                return
            call.talker.press(script.digits)
            call.result.digits_sent = call.talker.digits_sent
        if script.hold is not None:
            end = (call.result.answered_at or loop.time()) + script.hold
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.done.wait(), max(0.0, end - loop.time()))
            self.hang_up(call.result.call, script.cause)

    def hang_up(self, call: CallHandle, cause: int = NORMAL_CLEARING) -> None:
        """Clear ``call`` with ``cause`` (DISCONNECT, or what the call's state calls for)."""
        live = self._calls.get(call)
        if live is None:
            return
        live.sending = False
        try:
            self._link.run(lambda now: self._q931.disconnect(call, cause, now=now))
        except LocalProtocolError as exc:  # already clearing: the machine finishes it
            log.info("far end: call %d not hung up: %s", call, exc)

    def press(self, call: CallHandle, digits: str) -> None:
        """Send ``digits`` in-band on ``call``'s channel now (after any still being sent)."""
        live = self._calls[call]
        live.talker.press(digits)
        live.result.digits_sent = live.talker.digits_sent

    def live_calls(self) -> list[CallResult]:
        """The calls not yet released, as they stand."""
        return [call.result for call in self._calls.values()]

    def _setup(self, script: CallScript) -> _Call:
        channel = self._free_channel()
        called = PartyNumber(script.called, type_of_number=script.called_type)
        calling = PartyNumber(script.calling, type_of_number=script.calling_type) if script.calling else None
        now = self._link.time()
        handle = self._q931.setup(
            called=called, calling=calling, channel=channel, exclusive=channel is not None, now=now
        )
        result = CallResult(handle, "out", channel, script.called, script.calling, placed_at=now)
        call = self._track(result, Talker(script.audio))
        self._link.flush()  # after tracking: the machine may have released it already (no channel)
        return call

    def _track(self, result: CallResult, talker: Talker) -> _Call:
        call = _Call(result, talker, Listener(dtmf=self._dtmf, keep_arrivals=self._keep_arrivals))
        result.heard = call.listener.heard  # what the channel carried so far, while the call lasts too
        self._calls[result.call] = call
        if result.channel is not None:
            self._by_channel[result.channel] = call
        return call

    def _free_channel(self) -> int | None:
        return next((ts for ts in self._timeslots if ts not in self._by_channel), None)

    # -- Q.931 events ----------------------------------------------------------------------------------

    def _on_event(self, event: Q931Event) -> None:
        now = self._link.time()
        if isinstance(event, ProtocolFault):
            self.faults.append(event)
            return
        if isinstance(event, CallOffered):
            self._offered(event, now)
            return
        call = self._calls.get(getattr(event, "call", -1))
        if call is None:
            return
        result = call.result
        if isinstance(event, CallProceeding) and result.channel != event.channel:
            self._by_channel.pop(result.channel or 0, None)
            result.channel = event.channel
            self._by_channel[event.channel] = call
        elif isinstance(event, CallConnected):
            result.answered, result.answered_at = True, now
            call.sending = True
            call.answered.set()
        elif isinstance(event, CallDisconnecting):
            self.hang_up(result.call, NORMAL_CLEARING)
        elif isinstance(event, CallReleased):
            self._ended(call, event.cause, "far end" if event.local else "appliance", now)

    def _ended(self, call: _Call, cause: int, by: str, now: float) -> None:
        result = call.result
        result.cause, result.released_at, result.cleared_by = cause, now, by
        call.sending = False
        self._calls.pop(result.call, None)
        if result.channel is not None and self._by_channel.get(result.channel) is call:
            del self._by_channel[result.channel]
        call.done.set()

    def _offered(self, event: CallOffered, now: float) -> None:
        result = CallResult(
            event.call,
            "in",
            event.channel,
            event.called.digits if event.called else None,
            event.calling.digits if event.calling else None,
            placed_at=now,
        )
        self.incoming.append(result)
        self._track(result, Talker(self._audio))
        if not self._answer_incoming:
            self._link.run(lambda t: self._q931.disconnect(event.call, 17, now=t))
            return
        self._link.run(lambda t: self._q931.proceeding(event.call, now=t))
        self._link.run(lambda t: self._q931.alerting(event.call, now=t))
        self._link.run(lambda t: self._q931.connect(event.call, now=t))

    def _on_dchannel(self, up: bool) -> None:
        self.dchannel_changes.append((self._link.time(), up))
        if up:
            self._dchannel.set()
        else:
            self._dchannel.clear()

    # -- B-channels ------------------------------------------------------------------------------------

    def _heard(self, timeslot: int, samples: bytes) -> None:
        call = self._by_channel.get(timeslot)
        if call is None:
            return
        call.listener.feed(samples, self._link.time())
        if call.listener.heard.first_sound_at is not None and not call.sound.is_set():
            call.sound.set()

    def _start_ticker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._ticker is None:
            self._ticker = loop.call_at(loop.time() + FRAME_SECONDS, self._tick, loop.time() + FRAME_SECONDS)

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def _tick(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        for ts, call in self._sending():
            self._b.send(ts, call.talker.next_frame())
        nxt = due + FRAME_SECONDS
        now = loop.time()
        if nxt <= now:  # a frame late or more: skip ahead rather than burst
            self.late_ticks += 1
            nxt = now + FRAME_SECONDS
        self._ticker = loop.call_at(nxt, self._tick, nxt)

    def _sending(self) -> Iterator[tuple[int, _Call]]:
        return ((ts, call) for ts, call in list(self._by_channel.items()) if call.sending)


class _BHandler:
    """The B-channels' handler (implements :class:`hw.e1.links.BChannelHandler`)."""

    def __init__(self, far: FarEnd) -> None:
        self._far = far

    def frame_received(self, timeslot: int, samples: bytes) -> None:
        self._far._heard(timeslot, samples)

    def link_changed(self, up: bool) -> None:
        log.info("far end span %d: B-channels %s", self._far.span, "connected" if up else "lost")


async def _first(*events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


if __name__ == "__main__":  # python -m appliance.pri.farend
    from appliance.pri.farend_cli import main

    raise SystemExit(main())
