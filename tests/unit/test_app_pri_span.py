"""A running span wired as the control process wires it: the simulated span's sockets, the D-channel
(LAPD + Q.931 on the user side) and the PRI gateway, against a network-side far end built from the same
stack on a client socket; the TDM worker and call control are doubles that record what they are told."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from appliance.app_pri import PriWiring
from appliance.app_pri_span import TdmCommands
from appliance.calls.events import Answer, Disconnect, Fail, Setup
from appliance.calls.pri_leg import PriLeg
from appliance.config import Config
from appliance.config.load import load_config_text
from appliance.metrics import Metrics
from appliance.pri.lapd import Lapd
from appliance.pri.link import PriLink
from appliance.pri.q931 import Q931
from appliance.pri.q931_events import CallConnected, CallProceeding, CallReleased, Q931Event
from appliance.pri.q931_model import PartyNumber, TypeOfNumber
from appliance.sync.documents.errors import InvalidDocument
from appliance.sync.documents.span import SpanOwner, SpanSettings
from hw.e1.alarms import Alarm
from hw.e1.dahdi_channel import DeviceAccess
from hw.e1.driver import BChannelsSpec
from hw.e1.links import B_TIMESLOTS, MAX_LAPD_FRAME, DChannelHandler
from hw.e1.model import SpanCounters
from hw.e1.sim_span import SimSpan
from tests.unit.test_metrics import samples, value

DEADLINE = 5.0  # seconds of real time for the sockets and the 0.5 s alarm integration of the sim span


class FakeTdm:
    """The TDM worker: records commands; ports as the real layout gives them."""

    def __init__(self, ports: tuple[int, int], timeslots: tuple[int, ...]) -> None:
        self.ports, self.timeslots = ports, timeslots
        self.commands: list[tuple[Any, ...]] = []
        self.started = self.stopped = False
        self.on_lost: Callable[[tuple[int, ...]], None] = lambda timeslots: None

    async def start(self) -> object:
        self.started = True
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def open(self, timeslot: int, codec: str = "PCMA") -> int:
        self.commands.append(("open", timeslot, codec))
        return self.port(timeslot)

    async def connect(self, timeslot: int, host: str, port: int, payload_type: int = 8) -> None:
        self.commands.append(("connect", timeslot, host, port, payload_type))

    async def close(self, timeslot: int) -> None:
        self.commands.append(("close", timeslot))

    def port(self, timeslot: int) -> int:
        return self.ports[0] + 2 * self.timeslots.index(timeslot)


class FakeCalls:
    """Call control: a router from the configuration, calls recorded as placed."""

    def __init__(self, config: Config) -> None:
        from appliance.calls.routing import RoutingTable

        self.router = RoutingTable([(r.match, r.destinations) for r in config.routes], region="DE")
        self.placed: list[tuple[Setup, PriLeg, list[Any]]] = []

    def place_call(self, a_leg: Callable[[Any], Any], setup: Setup, now: float, *, ref: str = "") -> Any:
        events: list[Any] = []
        call = SimpleNamespace(id=f"c{len(self.placed)}", from_leg=lambda leg, e, now: events.append(e))
        leg = a_leg(call)
        self.placed.append((setup, leg, events))
        return call


class ClientD:
    """A far end's D-channel: a client SOCK_SEQPACKET socket on the span's D socket."""

    def __init__(self, path: Path, handler: DChannelHandler) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(str(path))
        self.sock.setblocking(False)
        self.handler = handler
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    @property
    def up(self) -> bool:
        return self.sock.fileno() >= 0

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def _read(self) -> None:
        try:
            data = self.sock.recv(MAX_LAPD_FRAME + 1)
        except BlockingIOError:
            return
        if data:
            self.handler.frame_received(data)

    async def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


class FarEnd:
    """The carrier's switch (network side) on ``where``, through ``channel`` (the simulated span's D socket
    by default)."""

    def __init__(self, where: Any, *, channel: Callable[[Any, DChannelHandler], Any] = ClientD) -> None:
        self.events: list[Q931Event] = []
        self.q931 = Q931(side="network", b_channels=B_TIMESLOTS)
        self.link = PriLink(lapd=Lapd(side="network"), q931=self.q931, on_event=self.events.append)
        self.channel = channel(where, self.link)
        self.link.attach(self.channel)

    async def close(self) -> None:
        self.link.close()
        await self.channel.close()


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE} s: {what}")
        await asyncio.sleep(0.01)


class Harness:
    def __init__(self, tmp_path: Path, config: Config, *, dahdi_access: DeviceAccess | None = None) -> None:
        self.metrics = Metrics(process_metrics=False)
        self.outbox: list[tuple[str, Mapping[str, Any]]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.loops: list[asyncio.Task[None]] = []
        self.tdms: list[FakeTdm] = []
        self.specs: list[BChannelsSpec] = []
        self.flushes = 0
        self.calls = FakeCalls(config)
        self.pri = PriWiring(
            config=config, state_dir=tmp_path, metrics=self.metrics, append=self.append, spawn=self.spawn,
            make_tdm=self.make_tdm, dahdi_access=dahdi_access,
        )  # fmt: skip

    async def append(self, event_type: str, body: Mapping[str, Any]) -> None:
        self.outbox.append((event_type, body))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        (self.loops if coro.__name__ == "_sample" else self.tasks).append(task)

    async def settle(self) -> None:
        """Wait for the outbox appends spawned so far (not the sampling loop, which runs forever)."""
        await asyncio.gather(*self.tasks)

    async def close(self) -> None:
        await self.pri.close()
        for task in self.loops:
            task.cancel()
        await asyncio.gather(*self.tasks, *self.loops, return_exceptions=True)

    def make_tdm(
        self,
        span: Any,
        ports: tuple[int, int],
        spec: BChannelsSpec,
        on_lost: Callable[[tuple[int, ...]], None],
    ) -> FakeTdm:
        if spec.backend == "sim":
            assert spec.path is not None and spec.path.name == f"span{span.number}-b.sock"
        self.specs.append(spec)
        tdm = FakeTdm(ports, span.b_channels)
        tdm.on_lost = on_lost
        self.tdms.append(tdm)
        return tdm

    def after(self) -> None:
        self.flushes += 1

    def kinds(self) -> list[str]:
        return [k for k, _ in self.outbox]

    def metric(self, name: str, **labels: str) -> float:
        return value(self.metrics, name, **labels)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, Config())
    lines = await h.pri.start(calls=h.calls, after_event=h.after)
    assert lines == [f"span 1         user side, sim: D-channel {tmp_path}/run/span1-d.sock, B-channels "
                     f"{tmp_path}/run/span1-b.sock; RTP ports 29936-29999"]  # fmt: skip
    yield h
    await h.close()


async def test_a_far_end_brings_the_d_channel_up_and_its_call_reaches_call_control(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    d_path = tmp_path / "run" / "span1-d.sock"
    assert d_path.is_socket() and h.tdms[0].started
    await until(lambda: "span.alarm" in h.kinds(), "LOS declared without a far end")
    assert h.metric("appliance_span_alarm", span="1", alarm="los") == 1
    far = FarEnd(d_path)
    try:
        await until(lambda: far.link.dchannel_up and h.metric("appliance_pri_dchannel_up", span="1") == 1,
                    "D-channel established")  # fmt: skip
        await until(lambda: h.metric("appliance_span_alarm", span="1", alarm="los") == 0, "LOS cleared")
        called = PartyNumber("30123456", TypeOfNumber.NATIONAL)
        ref = far.link.run(lambda now: far.q931.setup(called=called, channel=5, exclusive=True, now=now))
        await until(lambda: bool(h.calls.placed), "the call placed with call control")
        setup, leg, _ = h.calls.placed[0]
        assert setup.called == "+4930123456" and leg.channel == 5
        assert b"m=audio 29944 RTP/AVP 8 0" in (setup.sdp or b"")  # timeslot 5: the 5th pair of 29936-
        await until(lambda: any(isinstance(e, CallProceeding) for e in far.events), "CALL PROCEEDING")
        await until(lambda: ("open", 5, "PCMA") in h.tdms[0].commands, "timeslot 5 opened")
        # Call control answers: the CONNECT leaves on the next flush (before the SIP messages go out).
        leg.handle(Answer(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                          b"m=audio 40000 RTP/AVP 8\r\n"), far.link.time())  # fmt: skip
        h.pri.flush()
        await until(lambda: any(isinstance(e, CallConnected) for e in far.events), "CONNECT")
        assert ("connect", 5, "127.0.0.1", 40000, 8) in h.tdms[0].commands
        assert h.metric("appliance_pri_calls", span="1") == 1 and h.flushes > 0
        far.link.run(lambda now: far.q931.disconnect(ref, 16, now=now))
        await until(lambda: ("close", 5) in h.tdms[0].commands, "timeslot 5 closed")
        await until(lambda: any(isinstance(e, CallReleased) for e in far.events), "released")
    finally:
        await far.close()
    await until(lambda: h.metric("appliance_pri_dchannel_up", span="1") == 0, "D-channel down")
    await h.settle()
    downs = [b for k, b in h.outbox if k == "span.dchannel" and not b["up"]]
    assert downs and downs[-1]["reason"] == "loss of signal"


async def test_a_restart_from_the_far_end_and_a_faulty_message_are_reported(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    far = FarEnd(tmp_path / "run" / "span1-d.sock")
    try:
        await until(lambda: far.link.dchannel_up, "D-channel established")
        far.link.run(lambda now: far.q931.restart(None, now))
        await until(
            lambda: h.metric("appliance_span_restarts_total", span="1", reason="peer") == 1, "restart"
        )
        # A message type Q.931 does not define, on a call reference no call has: answered per §5.8.4.
        far.link.run(lambda now: far.link.lapd.send_data(bytes([0x08, 0x02, 0x00, 0x07, 0x7F]), now))
        await until(lambda: bool(faults(h)), "the fault counted")
    finally:
        await far.close()
    await h.settle()
    (restart,) = [b for k, b in h.outbox if k == "span.restart"]
    assert restart["by"] == "peer" and restart["channels"] == list(B_TIMESLOTS)


def faults(h: Harness) -> list[frozenset[tuple[str, str]]]:
    """The label sets of the protocol fault counters that are not zero."""
    return [
        k[1] for k, v in samples(h.metrics).items() if k[0] == "appliance_pri_protocol_faults_total" and v
    ]


async def test_the_calls_of_a_tdm_worker_that_died_are_cleared(harness: Harness, tmp_path: Path) -> None:
    h = harness
    far = FarEnd(tmp_path / "run" / "span1-d.sock")
    try:
        await until(lambda: far.link.dchannel_up, "D-channel established")
        called = PartyNumber("30123456", TypeOfNumber.NATIONAL)
        far.link.run(lambda now: far.q931.setup(called=called, channel=7, exclusive=True, now=now))
        await until(lambda: bool(h.calls.placed), "the call placed with call control")
        _, _, events = h.calls.placed[0]
        h.tdms[0].on_lost((7,))  # the worker died with timeslot 7 open: its audio is gone
        await until(lambda: any(isinstance(e, CallReleased) for e in far.events), "the call released")
        (released,) = [e for e in far.events if isinstance(e, CallReleased)]
        assert released.cause == 41  # temporary failure
        await until(lambda: bool(events), "call control told")
        assert isinstance(events[0], Disconnect | Fail) and events[0].cause.q850 == 41
    finally:
        await far.close()


async def test_span_settings_restart_that_span_and_a_removed_document_restores_the_configured_ones(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    h.pri.on_span("1", SpanSettings("ccs", "hdb3", True, "user", 1, (1, 2, 3)))
    await until(lambda: len(h.tdms) == 2 and h.tdms[1].started, "the span restarted")
    assert h.tdms[0].stopped and h.tdms[1].timeslots == (1, 2, 3)
    await h.settle()
    (restart,) = [b for k, b in h.outbox if k == "span.restart"]
    assert restart["by"] == "settings" and restart["channels"] == [1, 2, 3]
    assert (tmp_path / "run" / "span1-d.sock").is_socket()
    assert h.metric("appliance_span_restarts_total", span="1", reason="settings") == 1
    h.pri.on_span("1", SpanSettings("ccs", "hdb3", True, "user", 1, (1, 2, 3)))  # the same: no restart
    h.pri.on_span("1", None)
    await until(lambda: len(h.tdms) == 3 and h.tdms[2].started, "the configured settings back")
    assert h.tdms[2].timeslots == B_TIMESLOTS


async def test_a_document_for_a_span_not_configured_or_not_runnable_is_refused(harness: Harness) -> None:
    with pytest.raises(ValueError, match="span 2 is not configured"):
        harness.pri.on_span("2", SpanSettings("ccs", "hdb3", True, "user", 1, (1,)))
    with pytest.raises(ValueError, match="ccs"):
        harness.pri.on_span("1", SpanSettings("cas", "hdb3", True, "user", 1, (1,)))
    # The document owner asks first: such a document is invalid (422), never a failed apply (500).
    owner = SpanOwner(on_span=harness.pri.on_span, runnable=harness.pri.runnable)
    content = {"framing": "ccs", "line_code": "hdb3", "crc4": True, "side": "user", "timing_priority": 1,
               "b_channels": [1, 2]}  # fmt: skip
    with pytest.raises(InvalidDocument, match="span 2 is not configured"):
        owner.validate("2", content, version=1)
    assert owner.validate("1", content, version=1).b_channels == (1, 2)
    assert len(harness.tdms) == 1  # validating restarts nothing


async def test_close_removes_the_sockets_and_stops_the_tdm_worker(tmp_path: Path) -> None:
    h = Harness(tmp_path, Config())
    await h.pri.start(calls=h.calls, after_event=h.after)
    assert (tmp_path / "run" / "span1-d.sock").exists()
    assert h.pri.dial(1, SimpleNamespace(id="x"), Setup("+4930123456", ""), 0.0) is None  # type: ignore[arg-type]
    assert h.pri.dial(9, SimpleNamespace(id="x"), Setup("+4930123456", ""), 0.0) is None  # type: ignore[arg-type]
    await h.close()
    assert not (tmp_path / "run" / "span1-d.sock").exists() and h.tdms[0].stopped


async def test_a_span_that_cannot_start_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    # Span 2 is on a card whose dahdi_cfg is not installed.
    dahdi = f'[dahdi]\nsystem_conf = "{tmp_path}/system.conf"\ndahdi_cfg = "{tmp_path}/no-dahdi_cfg"\n'
    config = load_config_text(f'[[spans]]\nnumber = 1\n[[spans]]\nnumber = 2\ndriver = "dahdi"\n{dahdi}')
    h = Harness(tmp_path, config)
    lines = await h.pri.start(calls=h.calls, after_event=h.after)
    assert lines[0].startswith("span 1 ") and "RTP ports 29936-29999" in lines[0]
    assert lines[1].startswith("span 2         not started:") and "dahdi" in lines[1]
    assert h.pri.media_range == (20000, 29871)
    await h.close()


async def test_tdm_commands_go_out_in_order_and_a_failure_does_not_stop_the_next() -> None:
    tdm = FakeTdm((30000, 30063), B_TIMESLOTS)
    failing = {"n": 0}

    async def connect(timeslot: int, host: str, port: int, payload_type: int = 8) -> None:
        failing["n"] += 1
        raise OSError("worker gone")

    tdm.connect = connect  # type: ignore[method-assign]
    commands = TdmCommands(tdm, span=1)
    commands.start()
    commands.open(3, "PCMU")
    commands.connect(3, "127.0.0.1", 4000, 0)
    commands.close(3)
    assert commands.port_of(3) == 30004
    await until(lambda: commands.pending == 0 and len(tdm.commands) == 2, "commands sent")
    assert tdm.commands == [("open", 3, "PCMU"), ("close", 3)] and failing["n"] == 1
    await commands.stop()


async def test_injected_alarms_and_error_counters_reach_the_outbox_and_the_metrics(harness: Harness) -> None:
    h = harness
    runner = h.pri.runners[1]
    driver = runner.driver
    assert isinstance(driver, SimSpan)
    driver.inject_alarm(Alarm.AIS, True)  # blue: declared as reported (no integration time)
    assert h.metric("appliance_span_alarm", span="1", alarm="ais") == 1
    driver.inject_alarm(Alarm.AIS, False)
    driver.inject_counters(SpanCounters(crc4_errors=3, slips=1))
    runner.sample()
    assert h.metric("appliance_span_errors_total", span="1", counter="crc4_errors") == 3
    assert h.metric("appliance_span_errors_total", span="1", counter="slips") == 1
    await h.settle()
    ais = [b for k, b in h.outbox if k == "span.alarm" and b["alarm"] == "ais"]
    assert [b["state"] for b in ais] == ["raised", "cleared"]
