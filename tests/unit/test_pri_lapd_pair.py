"""Test harness (no tests here): two Q.921 data link entities, user and network side, back to back in memory.

``drop`` decides per frame (sender side, parsed frame) whether the wire loses it; every frame sent is kept
in ``trace`` (sender, octets, time) whether delivered or not, and each side's events in ``events``.
Time only moves in :meth:`Pair.run`, from deadline to deadline.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from hypothesis import HealthCheck, settings

from appliance.pri.lapd import Lapd
from appliance.pri.lapd_codec import Frame, decode
from appliance.pri.lapd_events import LapdEvent
from appliance.pri.lapd_timers import LapdTimers

Drop = Callable[[str, Frame], bool]


def lapd_settings(examples: int) -> settings:
    """Hypothesis settings for the LAPD properties (STYLE rule 12): ``examples`` deterministic examples by
    default; ``LAPD_EXAMPLES`` sets the count and ``HYPOTHESIS_PROFILE=long`` makes the search random."""
    return settings(
        max_examples=int(os.environ.get("LAPD_EXAMPLES", str(examples))),
        derandomize=os.environ.get("HYPOTHESIS_PROFILE") != "long",
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def never(sender: str, frame: Frame) -> bool:
    return False


class Pair:
    def __init__(self, *, timers: LapdTimers | None = None, keep_up: bool = True) -> None:
        kw = {"timers": timers} if timers else {}
        self.user = Lapd(side="user", name="user", keep_up=keep_up, **kw)
        self.network = Lapd(side="network", name="network", keep_up=keep_up, **kw)
        self.now = 0.0
        self.drop: Drop = never
        self.trace: list[tuple[str, bytes, float]] = []
        self.lost: set[int] = set()  # indexes into trace of the frames the wire lost
        self.events: dict[str, list[LapdEvent]] = {"user": [], "network": []}
        self.received: dict[str, list[bytes]] = {"user": [], "network": []}

    def side(self, name: str) -> Lapd:
        return self.user if name == "user" else self.network

    def pump(self) -> None:
        """Deliver frames both ways until both are quiet, collecting events."""
        moved = True
        while moved:
            moved = False
            for name, src, dst in (("user", self.user, self.network), ("network", self.network, self.user)):
                for frame in src.frames_to_send():
                    moved = True
                    self.trace.append((name, frame, self.now))
                    if self.drop(name, decode(frame, sender=name, sapi=None, tei=None)):  # type: ignore[arg-type]
                        self.lost.add(len(self.trace) - 1)
                    else:
                        dst.receive(frame, self.now)
            for name in ("user", "network"):
                while (event := self.side(name).next_event()) is not None:
                    self.events[name].append(event)
                    data = getattr(event, "data", None)
                    if data is not None:
                        self.received[name].append(data)

    def run(self, until: float) -> None:
        """Advance time to ``until``, firing each deadline on the way."""
        self.pump()
        while True:
            deadlines = [t for t in (self.user.get_timer(), self.network.get_timer()) if t is not None]
            if not deadlines or min(deadlines) > until:
                break
            self.now = max(self.now, min(deadlines))
            for lapd in (self.user, self.network):
                deadline = lapd.get_timer()
                if deadline is not None and deadline <= self.now:
                    lapd.handle_timer(self.now)
            self.pump()
        self.now = max(self.now, until)

    def take_events(self, name: str) -> list[LapdEvent]:
        events, self.events[name] = self.events[name], []
        return events

    def sent(self, name: str, since: int = 0) -> list[Frame]:
        """The frames ``name`` sent, parsed, from trace index ``since``."""
        return [decode(f, sender=s, sapi=None, tei=None) for s, f, _ in self.trace[since:] if s == name]  # type: ignore[arg-type]

    def establish(self) -> None:
        self.user.start(self.now)
        self.run(self.now)
        assert self.user.established and self.network.established
        self.take_events("user")
        self.take_events("network")
