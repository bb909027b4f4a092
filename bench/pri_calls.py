"""The PRI bench's callers: one far end per span places every call, presses digits and hears the audio.

Contract. :func:`drive` connects one :class:`~appliance.pri.farend.FarEnd` (network side, the appliance's
own stack) to each span's sockets in ``directory``, places ``calls_per_span`` calls on each at once (every
B-channel, each from its own calling number, :func:`calling`), and once every call is answered (or
``answer_within`` has passed) keeps them up for ``warmup`` then ``seconds``: the measured window, whose
start and end it reports to the caller's ``on_window`` (to sample CPU counters exactly there; the pacing
window opens :data:`SETTLE_S` later, once the frames that queued while the counters were read are
drained, and closes before the last sample). Meanwhile
every answered call presses ``digits`` in-band every ``digit_every`` seconds, the calls staggered evenly
over that period, the first press once the welcome announcement is over (``first_digit_after``). After
the window the presses stop, the last digits are let out, and the far ends hang
every call up (cause 16) and close. The returned :class:`Drive` holds each call's result (its frames'
arrival times on the far end's loop clock, the same clock as the window's bounds) and what the far ends
cost.

The far ends run on the caller's event loop; its clock must have sub-millisecond resolution (the standard
asyncio loop's ``time.monotonic()``; uvloop's ``loop.time()`` counts milliseconds), as frames are
time-stamped with it when read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from appliance.pri.farend import CallResult, CallScript, FarEnd
from appliance.pri.farend_links import FarEndLinkError
from appliance.pri.q931_events import CallHandle
from bench.pri_pacing import Pacing, pacing

POLL_S: Final = 0.05
LAST_DIGITS_S: Final = 1.0  # after the presses stop: the longest press (2 keys, 400 ms) and its detection
HANG_UP_WITHIN_S: Final = 20.0
CONNECT_WITHIN_S: Final = 15.0
SETTLE_S: Final = 0.1


class DriveError(Exception):
    """The far ends could not reach the spans, or no call was answered; the message says which."""


@dataclass(frozen=True)
class Plan:
    """What the callers do (see the module docstring)."""

    spans: tuple[int, ...] = (1, 2)
    calls_per_span: int = 30
    seconds: float = 20.0
    warmup: float = 3.0
    digits: str = "*1"
    digit_every: float = 4.0
    # The first press comes after the welcome announcement (4.6 s in German, the callers' language): a key
    # that cuts the announcement short is not the menu's, and a "1" kept as type-ahead would take the
    # caller to the callback node, which ends the call.
    first_digit_after: float = 5.5
    answer_within: float = 30.0
    called: str = "100"


@dataclass
class Drive:
    """One run's calls and the far ends' own figures."""

    results: list[CallResult] = field(default_factory=list)  # of the calls that ended (all, normally)
    placed: int = 0
    window: tuple[float, float] = (0.0, 0.0)
    answered_in_s: float | None = None  # from the first SETUP until the last call was answered
    farend_cpu_s: float = 0.0  # the far ends' (this process's) CPU over the window
    late_ticks: int = 0  # the far ends' own sending ticks that ran a whole frame late

    @property
    def answered(self) -> int:
        return sum(r.answered for r in self.results)

    @property
    def cleared_early(self) -> int:
        """Answered calls the appliance (or the far end) cleared before the window's end."""
        end = self.window[1]
        return sum(r.answered and r.released_at is not None and r.released_at < end for r in self.results)

    @property
    def held(self) -> int:
        """Calls up from answer through the window's end."""
        return self.answered - self.cleared_early

    @property
    def digits_sent(self) -> int:
        return sum(len(r.digits_sent) for r in self.results)

    def pacing(self) -> Pacing:
        """The window's pacing over every answered call's channel."""
        start, end = self.window
        return pacing((r.heard.arrivals for r in self.results if r.answered), start, end)


def calling(span: int, index: int) -> str:
    """Call ``index`` of span ``span``'s calling number, sent as international: +49 30 1234 SIII."""
    return f"4930123{span % 10}{index:03d}"


async def drive(
    directory: Path, plan: Plan, *, on_window: Callable[[bool], None] = lambda started: None
) -> Drive:
    """Run ``plan`` against the spans in ``directory`` (see the module docstring); raises
    :class:`DriveError` when a span cannot be reached or no call is answered."""
    loop = asyncio.get_running_loop()
    fars = [FarEnd(directory=directory, span=s, dtmf=False, keep_arrivals=True) for s in plan.spans]
    out = Drive()
    try:
        for far in fars:
            try:
                await far.start(within=CONNECT_WITHIN_S)
            except (FarEndLinkError, TimeoutError) as exc:
                raise DriveError(
                    f"span {far.span}: no D-channel via {directory}: {exc or 'timed out'}"
                ) from exc
        placed_at = loop.time()
        calls = [
            asyncio.create_task(
                far.place_call(
                    CallScript(
                        called=plan.called,
                        calling=calling(far.span, i),
                        timeout=plan.answer_within + plan.warmup + plan.seconds + 3 * HANG_UP_WITHIN_S,
                    )
                )
            )
            for far in fars
            for i in range(plan.calls_per_span)
        ]
        total = out.placed = len(calls)
        while _answered(fars) < total and loop.time() - placed_at < plan.answer_within:
            if all(c.done() for c in calls):
                break
            await asyncio.sleep(POLL_S)
        if _answered(fars) == total:
            out.answered_in_s = loop.time() - placed_at
        live = [(far, r.call) for far in fars for r in far.live_calls() if r.answered]
        if not live:
            raise DriveError(f"none of {total} calls was answered within {plan.answer_within:g} s")
        presses = [
            asyncio.create_task(press_every(_presser(far, call, plan.digits), plan, i / len(live)))
            for i, (far, call) in enumerate(live)
        ]
        late0 = sum(far.late_ticks for far in fars)
        await asyncio.sleep(plan.warmup)
        cpu0 = time.process_time()
        on_window(True)
        # Frames that queued while on_window read its counters are read, and stamped, late: the pacing
        # window opens once they are drained.
        await asyncio.sleep(SETTLE_S)
        start = loop.time()
        await asyncio.sleep(plan.seconds - SETTLE_S)
        end = loop.time()
        on_window(False)
        out.farend_cpu_s = time.process_time() - cpu0
        out.window = (start, end)
        out.late_ticks = sum(far.late_ticks for far in fars) - late0
        for task in presses:
            task.cancel()
        await asyncio.sleep(LAST_DIGITS_S)
        for far in fars:
            for r in far.live_calls():
                far.hang_up(r.call)
        done, _ = await asyncio.wait(calls, timeout=HANG_UP_WITHIN_S)
        out.results = [c.result() for c in calls if c in done]
        return out
    finally:
        for far in fars:
            with contextlib.suppress(OSError):
                await far.close()


def _answered(fars: Sequence[FarEnd]) -> int:
    return sum(r.answered for far in fars for r in far.live_calls())


def _presser(far: FarEnd, call: CallHandle, digits: str) -> Callable[[], None]:
    def press() -> None:
        with contextlib.suppress(KeyError):  # the call ended meanwhile
            far.press(call, digits)

    return press


async def press_every(press: Callable[[], None], plan: Plan, phase: float) -> None:
    """Call ``press`` every ``plan.digit_every`` seconds, the first ``plan.first_digit_after`` seconds and
    ``phase`` (0 to 1) of that period from now: callers given evenly spread phases press evenly spread over
    time. Runs until cancelled."""
    await asyncio.sleep(plan.first_digit_after + phase * plan.digit_every)
    while True:
        press()
        await asyncio.sleep(plan.digit_every)
