"""The whole D-channel receive path of one side, fed whatever a far end may send, with its invariants.

One :class:`ReceivePath` is one span's stack as the appliance runs it (:class:`~appliance.pri.lapd.Lapd`
under :class:`~appliance.pri.q931.Q931`, joined as :class:`~appliance.pri.link.PriLink` joins them, on an
injected clock), user or network side, with the data link established. A driver — the hypothesis property
test (``tests/unit/test_pri_fuzz.py``) or the coverage-guided runner (``tests/fuzz/run_pri.py``) — plays
the far end with :class:`Op` values: raw frames (LAPD decode), Q.931 octets inside a well-formed I-frame in
sequence (so that they reach the Q.931 decoder), time passing (every timer of both layers), call control's
commands and the physical layer coming and going.

The invariants, checked after every step (:meth:`ReceivePath.check`), raise :class:`InvariantBroken`:

* nothing raises out of the receive path, nor out of moving data between the layers (a message the
  machine queues must encode and fit an I-frame), and Q.931 never reports an internal error (its
  ``receive`` turns an exception of its own into a ProtocolFault with cause 111: a bug, not a peer's fault);
* every call reported to call control (an outgoing ``setup``, a ``CallOffered``) ends with exactly one
  ``CallReleased``, none is released that was never reported, and the machine holds exactly the calls
  reported and not yet released;
* no B-channel is held by two calls, nor by a call already released; the channel table and the calls agree;
  an offered channel is a B-channel;
* LAPD's sequence variables stay in range with at most k frames outstanding and at most ``MAX_QUEUED``
  messages waiting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from appliance.pri import q931_codec
from appliance.pri.errors import LocalProtocolError
from appliance.pri.lapd import MAX_QUEUED, Lapd
from appliance.pri.lapd_codec import MODULUS, N201, IFrame, UFrame, UKind, encode
from appliance.pri.lapd_events import DataReceived, LinkEstablished, LinkReleased
from appliance.pri.q931 import Q931
from appliance.pri.q931_events import CallOffered, CallReleased, ProtocolFault, Q931Event
from appliance.pri.q931_model import (
    BearerCapability,
    CallState,
    CallStateValue,
    Cause,
    ChannelId,
    Message,
    MessageType,
    PartyNumber,
    ProgressDescription,
    ProgressIndicator,
    RestartClass,
    RestartIndicator,
)
from hw.e1.links import B_TIMESLOTS

Side = Literal["user", "network"]
COMMANDS: Final = (
    "setup", "setup_acknowledge", "proceeding", "alerting", "progress", "connect", "disconnect",
    "information", "status_enquiry", "restart",
)  # fmt: skip
INTERNAL_ERROR: Final = "internal error"  # how Q931.receive reports an exception of its own


class InvariantBroken(AssertionError):
    """The receive path did something no input may make it do."""


@dataclass(frozen=True, slots=True)
class Op:
    """One step of the far end: ``kind`` is ``frame`` (``data`` is a raw LAPD frame), ``message`` (``data``
    is a Q.931 message sent in the next in-sequence I-frame), ``wait`` (``amount`` seconds pass),
    ``command`` (call control's ``COMMANDS[amount]`` on a live call picked by ``pick``), ``reset`` (the far
    end re-establishes: SABME), ``down`` / ``up`` (the physical layer)."""

    kind: Literal["frame", "message", "wait", "command", "reset", "down", "up"]
    data: bytes = b""
    amount: float = 0.0
    pick: int = 0


@dataclass
class ReceivePath:
    """One side's LAPD + Q.931 with the far end's frames fed in (see the module docstring)."""

    side: Side
    now: float = 0.0
    lapd: Lapd = field(init=False)
    q931: Q931 = field(init=False)
    sent: list[bytes] = field(default_factory=list)  # every frame this side transmitted
    events: list[Q931Event] = field(default_factory=list)
    reported: dict[int, int | None] = field(default_factory=dict)  # handle -> channel when reported
    released: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.lapd = Lapd(side=self.side)
        self.q931 = Q931(side=self.side, b_channels=B_TIMESLOTS)
        self.peer: Side = "network" if self.side == "user" else "user"
        self.lapd.start(self.now)
        self._pump()
        self.step(Op("frame", encode(UFrame(UKind.UA, pf=True, command=False), sender=self.peer)))
        if not self.lapd.established:  # pragma: no cover - the harness itself is wrong
            raise InvariantBroken("the data link did not come up")

    # -- the far end's steps ---------------------------------------------------------------------------

    def run(self, ops: list[Op]) -> None:
        for op in ops:
            self.step(op)

    def step(self, op: Op) -> None:
        """Apply one step, move everything between the layers, check the invariants."""
        with self._nothing_raises(op):
            if op.kind == "frame":
                self.lapd.receive(op.data, self.now)
            elif op.kind == "message":
                self.lapd.receive(self.i_frame(op.data), self.now)
            elif op.kind == "wait":
                self.now += max(0.0, op.amount)
                self._timers()
            elif op.kind == "command":
                self._command(COMMANDS[int(op.amount) % len(COMMANDS)], op.pick)
            elif op.kind == "reset":
                sabme = UFrame(UKind.SABME, pf=True, command=True)
                self.lapd.receive(encode(sabme, sender=self.peer), self.now)
            elif op.kind == "down":
                self.lapd.physical_down(self.now)
            else:
                self.lapd.physical_up(self.now)
            self._pump()
        self.check()

    def i_frame(self, info: bytes) -> bytes:
        """An I-frame the LAPD entity takes in sequence (N(S) = V(R)) acknowledging all it sent (N(R) =
        V(S)), carrying ``info`` (cut to N201)."""
        frame = IFrame(ns=self.lapd.vr, nr=self.lapd.vs, p=False, info=bytes(info[:N201]))
        return encode(frame, sender=self.peer)

    # -- the layers, as PriLink joins them -------------------------------------------------------------

    def _pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for message in self.q931.data_to_send():
                self.lapd.send_data(message, self.now)
                moved = True
            while (lapd_event := self.lapd.next_event()) is not None:
                moved = True
                if isinstance(lapd_event, DataReceived):
                    self.q931.receive(lapd_event.data, self.now)
                elif isinstance(lapd_event, LinkEstablished):
                    self.q931.link_established(self.now)
                elif isinstance(lapd_event, LinkReleased):
                    self.q931.link_released(self.now)
            while (event := self.q931.next_event()) is not None:
                moved = True
                self._event(event)
            frames = self.lapd.frames_to_send()
            self.sent.extend(frames)
            moved = moved or bool(frames)

    def _timers(self) -> None:
        for _ in range(1000):  # each expiry moves a deadline on; a thousand at one instant is a loop
            due = [m for m in (self.lapd, self.q931) if (t := m.get_timer()) is not None and t <= self.now]
            if not due:
                return
            for machine in due:
                machine.handle_timer(self.now)
            self._pump()
        raise InvariantBroken(f"timers due at {self.now} keep firing")

    def _command(self, name: str, pick: int) -> None:
        live = sorted(h for h in self.reported if h not in self.released)
        now = self.now
        with contextlib.suppress(LocalProtocolError):  # a command the call's state refuses: our misuse
            if name == "setup":
                channel = B_TIMESLOTS[pick % len(B_TIMESLOTS)] if pick % 3 else None
                handle = self.q931.setup(
                    called=PartyNumber("100"), channel=channel, exclusive=pick % 2 == 1, now=now
                )
                self._report(handle, self.q931.channel_of(handle))
            elif name == "restart":
                self.q931.restart(None if pick % 2 else (B_TIMESLOTS[pick % len(B_TIMESLOTS)],), now)
            elif live:
                call = live[pick % len(live)]
                if name == "setup_acknowledge":
                    self.q931.setup_acknowledge(call, now)
                elif name == "proceeding":
                    self.q931.proceeding(call, now)
                elif name == "alerting":
                    self.q931.alerting(call, inband=pick % 2 == 1, now=now)
                elif name == "progress":
                    self.q931.progress(call, ProgressDescription.IN_BAND_AVAILABLE, now)
                elif name == "connect":
                    self.q931.connect(call, now)
                elif name == "disconnect":
                    self.q931.disconnect(call, 16, inband=pick % 2 == 1, now=now)
                elif name == "information":
                    self.q931.information(call, "5", now=now)
                else:
                    self.q931.status_enquiry(call, now)

    # -- the invariants --------------------------------------------------------------------------------

    def _report(self, handle: int, channel: int | None) -> None:
        if handle in self.reported:
            raise InvariantBroken(f"call {handle} reported twice")
        self.reported[handle] = channel

    def _event(self, event: Q931Event) -> None:
        self.events.append(event)
        if isinstance(event, CallOffered):
            if event.channel not in B_TIMESLOTS:
                raise InvariantBroken(f"call {event.call} offered on {event.channel}, not a B-channel")
            self._report(event.call, event.channel)
        elif isinstance(event, CallReleased):
            if event.call not in self.reported:
                raise InvariantBroken(f"call {event.call} released, never reported")
            if event.call in self.released:
                raise InvariantBroken(f"call {event.call} released twice")
            self.released.add(event.call)
        elif isinstance(event, ProtocolFault) and event.detail.startswith(INTERNAL_ERROR):
            raise InvariantBroken(f"Q.931 {event.detail}")

    def check(self) -> None:
        """The invariants of the module docstring (those about the current state)."""
        live = [h for h in self.reported if h not in self.released]
        if self.q931.calls != len(live):
            raise InvariantBroken(f"machine has {self.q931.calls} calls, call control knows {len(live)}")
        holders: dict[int, int] = {}
        for handle in live:
            if self.q931.state_of(handle) is CallStateValue.NULL:
                raise InvariantBroken(f"call {handle} gone from the machine without CallReleased")
            channel = self.q931.channel_of(handle)
            if channel is not None:
                if channel in holders:
                    raise InvariantBroken(f"B{channel} held by calls {holders[channel]} and {handle}")
                holders[channel] = handle
        busy = self.q931.busy_channels()
        for channel, handle in busy.items():
            if handle in self.released:
                raise InvariantBroken(f"B{channel} still held by released call {handle}")
            if channel not in B_TIMESLOTS:
                raise InvariantBroken(f"B{channel} held by call {handle} is not a B-channel")
        for channel, handle in holders.items():
            if busy.get(channel) != handle:
                raise InvariantBroken(
                    f"call {handle} on B{channel}, which the channel table gives {busy.get(channel)}"
                )
        lapd = self.lapd
        if not all(0 <= v < MODULUS for v in (lapd.vs, lapd.va, lapd.vr)):
            raise InvariantBroken(f"LAPD variables out of range: {lapd.vs} {lapd.va} {lapd.vr}")
        if (lapd.vs - lapd.va) % MODULUS > lapd.timers.k:
            raise InvariantBroken(f"more than k outstanding: V(S) {lapd.vs} V(A) {lapd.va}")
        if len(lapd._queue) > MAX_QUEUED:
            raise InvariantBroken(f"{len(lapd._queue)} messages queued, more than {MAX_QUEUED}")

    @contextlib.contextmanager
    def _nothing_raises(self, op: Op) -> Iterator[None]:
        try:
            yield
        except InvariantBroken:
            raise
        except Exception as exc:
            raise InvariantBroken(f"{type(exc).__name__} out of the receive path on {op}: {exc}") from exc


# -- the far end's repertoire: well-formed messages, for the drivers to send as they are or mutated -----


def seed_messages() -> list[bytes]:
    """Encoded messages of every type either side sends, on call references 1-2 both ways and the global
    one: material for the drivers to mutate, so that calls get set up and taken down. Both directions'
    messages go to both sides: the wrong direction's is hostile input too."""
    out = [
        q931_codec.encode(m) for cref in (1, 2) for flag in (True, False) for m in _call_messages(cref, flag)
    ]
    every = RestartIndicator(RestartClass.ALL_INTERFACES)
    indicated = RestartIndicator(RestartClass.INDICATED_CHANNELS)
    for flag in (True, False):
        for m in (
            Message(MessageType.RESTART, 0, flag, restart=indicated, channel=ChannelId((1,))),
            Message(MessageType.RESTART, 0, flag, restart=every),
            Message(MessageType.RESTART_ACKNOWLEDGE, 0, flag, restart=every),
        ):
            out.append(q931_codec.encode(m))
    return out


def _call_messages(cref: int, flag: bool) -> list[Message]:
    channel = ChannelId((cref,), exclusive=True)
    cause = Cause(16)
    inband = (ProgressIndicator(ProgressDescription.IN_BAND_AVAILABLE),)
    t = MessageType
    messages = [
        Message(t.SETUP, cref, flag, bearer=BearerCapability(), channel=channel, called=PartyNumber("100")),
        Message(t.SETUP_ACKNOWLEDGE, cref, flag, channel=channel),
        Message(t.CALL_PROCEEDING, cref, flag, channel=channel),
        Message(t.ALERTING, cref, flag, channel=channel),
        Message(t.PROGRESS, cref, flag, progress=inband),
        Message(t.CONNECT, cref, flag, channel=channel),
        Message(t.CONNECT_ACKNOWLEDGE, cref, flag),
        Message(t.INFORMATION, cref, flag, called=PartyNumber("5")),
        Message(t.DISCONNECT, cref, flag, cause=cause),
        Message(t.DISCONNECT, cref, flag, cause=cause, progress=inband),
        Message(t.RELEASE, cref, flag, cause=cause),
        Message(t.RELEASE_COMPLETE, cref, flag, cause=cause),
        Message(t.STATUS_ENQUIRY, cref, flag),
    ]
    for state in (CallStateValue.NULL, CallStateValue.ACTIVE, CallStateValue.CALL_RECEIVED):
        messages.append(Message(t.STATUS, cref, flag, cause=Cause(30), call_state=CallState(state)))
    return messages
