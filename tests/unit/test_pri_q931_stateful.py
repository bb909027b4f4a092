"""Q.931 user and network side back to back under random commands, deliveries, data link failures, restarts
and time advances (hypothesis.stateful), through the codec. Invariants: one CallReleased per reported call
and nothing after it; a B-channel never held by two calls; with the link up and nothing in flight, both
sides agree on which calls are active. Small and deterministic by default; HYPOTHESIS_PROFILE=long explores
at random, far longer (STYLE rule 12)."""

from __future__ import annotations

import contextlib
import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from appliance.pri.errors import LocalProtocolError
from appliance.pri.q931 import Q931
from appliance.pri.q931_call import RestartState
from appliance.pri.q931_events import CallOffered, CallReleased, ProtocolFault
from appliance.pri.q931_model import CallStateValue as S
from appliance.pri.q931_model import Message, PartyNumber, ProgressDescription
from tests.unit.test_pri_q931_machine import Pair

SIDES = st.sampled_from(["user", "network"])
COMMANDS = (
    "setup_acknowledge",
    "proceeding",
    "alerting",
    "connect",
    "disconnect",
    "information",
    "progress",
    "status_enquiry",
)


class BackToBack(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair(channels=(1, 2, 3), bytes_path=True)
        self.flight: dict[str, list[Message]] = {"user": [], "network": []}  # by sender, in order
        self.handles: dict[str, set[int]] = {"user": set(), "network": set()}
        self.released: dict[str, set[int]] = {"user": set(), "network": set()}
        self.link_up = True
        self.seen = {"user": 0, "network": 0}

    def machine(self, side: str) -> Q931:
        return self.pair.machine(side)

    def collect(self) -> None:
        """Move what each side queued onto the link (lost while the link is down) and check its events."""
        for side in ("user", "network"):
            sent = self.pair.take(side)
            if self.link_up:
                self.flight[side].extend(sent)
        self.pair.drain()
        for side in ("user", "network"):
            events = self.pair.events[side]
            for event in events[self.seen[side] :]:
                call = getattr(event, "call", None)
                if isinstance(event, CallOffered):
                    assert event.call not in self.handles[side]
                    self.handles[side].add(event.call)
                elif call is not None and not isinstance(event, ProtocolFault):
                    assert call not in self.released[side], f"{event} after the call's CallReleased"
                if isinstance(event, CallReleased):
                    self.released[side].add(event.call)
                assert not (isinstance(event, ProtocolFault) and event.cause == 111), event
            self.seen[side] = len(events)

    @rule(
        side=SIDES, channel=st.sampled_from([None, 1, 2, 3]), exclusive=st.booleans(), complete=st.booleans()
    )
    def place_call(self, side: str, channel: int | None, exclusive: bool, complete: bool) -> None:
        handle = self.machine(side).setup(
            called=PartyNumber("123"),
            channel=channel,
            exclusive=exclusive,
            sending_complete=complete,
            now=self.pair.now,
        )
        self.handles[side].add(handle)
        self.collect()

    @rule(side=SIDES, pick=st.integers(0, 50), command=st.sampled_from(COMMANDS))
    def command(self, side: str, pick: int, command: str) -> None:
        live = sorted(self.handles[side] - self.released[side])
        if not live:
            return
        call, machine, now = live[pick % len(live)], self.machine(side), self.pair.now
        try:
            if command == "disconnect":
                machine.disconnect(call, 16, now=now)
            elif command == "information":
                machine.information(call, "4", sending_complete=pick % 2 == 0, now=now)
            elif command == "progress":
                machine.progress(call, ProgressDescription.IN_BAND_AVAILABLE, now=now)
            elif command == "alerting":
                machine.alerting(call, inband=pick % 2 == 0, now=now)
            else:
                getattr(machine, command)(call, now=now)
        except LocalProtocolError:
            pass
        self.collect()

    @rule(sender=SIDES, count=st.integers(1, 4))
    def deliver(self, sender: str, count: int) -> None:
        receiver = "network" if sender == "user" else "user"
        batch, self.flight[sender] = self.flight[sender][:count], self.flight[sender][count:]
        self.pair.deliver(receiver, batch)
        self.collect()

    @rule()
    def settle(self) -> None:
        """Deliver everything in flight, both ways, until the link is quiet."""
        while self.link_up and (self.flight["user"] or self.flight["network"]):
            for sender in ("user", "network"):
                self.deliver(sender, len(self.flight[sender]))

    @rule(side=SIDES)
    def answer_everything(self, side: str) -> None:
        """Call control answers every call offered to ``side`` that is still ringing or proceeding."""
        for call in sorted(self.handles[side] - self.released[side]):
            with contextlib.suppress(LocalProtocolError):
                self.machine(side).connect(call, now=self.pair.now)
        self.collect()

    @rule(seconds=st.sampled_from([0.5, 3.0, 5.0, 20.0, 40.0, 200.0]))
    def advance(self, seconds: float) -> None:
        self.pair.advance(seconds)
        self.collect()

    @precondition(lambda self: self.link_up)
    @rule()
    def link_fails(self) -> None:
        self.link_up = False
        self.flight = {"user": [], "network": []}  # frames not acknowledged are lost with the link
        self.pair.user.link_released(self.pair.now)
        self.pair.net.link_released(self.pair.now)
        self.collect()

    @precondition(lambda self: not self.link_up)
    @rule()
    def link_returns(self) -> None:
        self.link_up = True
        self.pair.user.link_established(self.pair.now)
        self.pair.net.link_established(self.pair.now)
        self.collect()

    @rule(side=SIDES, channels=st.sampled_from([None, (1,), (2, 3)]))
    def restart(self, side: str, channels: tuple[int, ...] | None) -> None:
        machine = self.machine(side)
        if machine.restart_state is RestartState.REST0 and self.link_up:
            machine.restart(channels, now=self.pair.now)
        self.collect()

    def teardown(self) -> None:
        """Lose the link for longer than T309: every call either side ever reported is then released,
        each exactly once, and no channel is held."""
        self.settle()
        if self.link_up:
            self.link_fails()
        self.pair.advance(self.pair.user.timers.t309 + 1.0)
        self.collect()
        for side in ("user", "network"):
            assert self.handles[side] == self.released[side], side
            assert self.machine(side).calls == 0 and not self.machine(side).busy_channels()

    @invariant()
    def channels_never_double_booked(self) -> None:
        for side in ("user", "network"):
            machine = self.machine(side)
            live = self.handles[side] - self.released[side]
            held = [machine.channel_of(h) for h in live if machine.channel_of(h) is not None]
            assert len(held) == len(set(held)), f"{side}: {held}"
            assert machine.calls == len(live), f"{side}: {machine.calls} calls, {len(live)} reported live"
            for channel, handle in machine.busy_channels().items():
                assert machine.channel_of(handle) == channel

    @invariant()
    def both_sides_agree_on_active_calls_when_quiet(self) -> None:
        if not self.link_up or self.flight["user"] or self.flight["network"]:
            return
        user = {
            (cref, not ours) for (cref, ours), s in self.pair.user.call_references().items() if s is S.ACTIVE
        }
        net = {key for key, s in self.pair.net.call_references().items() if s is S.ACTIVE}
        assert user == net


_LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
BackToBack.TestCase.settings = settings(
    max_examples=2000 if _LONG else 60,
    stateful_step_count=80 if _LONG else 40,
    deadline=None,
    derandomize=not _LONG,
    database=None,
)
test_back_to_back = BackToBack.TestCase
