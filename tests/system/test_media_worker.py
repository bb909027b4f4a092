"""The media worker process relays RTP both ways, and the supervisor replaces a worker that dies."""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import cbor2
import pylibsrtp
import pytest

from appliance.media import g711
from appliance.media.commands import MediaWorker
from appliance.media.control import ControlChannel, EventReceived, ReplyReceived, encode
from appliance.media.control_events import (
    MAX_MESSAGE_SIZE,
    Answer,
    Command,
    Delete,
    Direction,
    Error,
    ErrorCode,
    FirstPacket,
    LegSpec,
    MediaTimeout,
    Offer,
    Ok,
    Ping,
    Query,
    SetLeg,
    SrtpKeys,
    WorkerEvent,
    WorkerStats,
)
from appliance.media.rtp import RtpPacket
from appliance.media.supervisor import MediaSupervisor, MediaWorkerError, split_range
from appliance.sdp.codec import parse_sdp
from tests.socket_pool import RtpSocketPool
from tests.system.netns import namespace

READ_TIMEOUT = 5.0


def phone_sdp(port: int, session: int) -> str:
    return (
        f"v=0\r\no=- {session} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=sendrecv\r\n"
    )


def relay_target(reply: Ok) -> tuple[str, int]:
    assert reply.sdp is not None
    sdp = parse_sdp(reply.sdp.encode())
    connection = sdp.connection_for(sdp.media[0])
    assert connection is not None
    return connection.host, sdp.media[0].port


@pytest.fixture
def phones() -> Iterator[tuple[socket.socket, socket.socket]]:
    pair = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(READ_TIMEOUT)
        pair.append(sock)
    yield pair[0], pair[1]
    for sock in pair:
        sock.close()


def port_range() -> tuple[int, int]:
    # The worker's pool skips ports another process holds, so a random slice is enough to avoid clashes.
    base = random.randrange(40000, 60000, 2)
    return base, base + 39


async def exchange(
    sender: socket.socket, target: tuple[str, int], receiver: socket.socket, ssrc: int
) -> None:
    for seq in range(50):
        packet = RtpPacket(8, seq, seq * 160, ssrc, bytes((seq + i) & 0xFF for i in range(160)))
        sender.sendto(packet.serialize(), target)
        data = await asyncio.to_thread(receiver.recv, 2048)
        assert RtpPacket.parse(data) == packet


def test_split_range_gives_each_worker_whole_pairs() -> None:
    assert split_range(10001, 10020, 3) == [(10002, 10007), (10008, 10013), (10014, 10019)]
    with pytest.raises(ValueError):
        split_range(10000, 10003, 3)


async def test_relays_both_ways_and_restarts_a_killed_worker(
    tmp_path: Path, phones: tuple[socket.socket, socket.socket]
) -> None:
    phone_a, phone_b = phones
    lost: list[tuple[int, list[str]]] = []
    events: list[WorkerEvent] = []
    lost_event = asyncio.Event()

    def on_lost(index: int, call_ids: list[str]) -> None:
        lost.append((index, call_ids))
        lost_event.set()

    async with MediaSupervisor(
        1, "127.0.0.1", port_range(), tmp_path, on_lost=on_lost, on_event=lambda _, e: events.append(e)
    ) as media:
        assert isinstance(await media.ping(0), Ok)

        offer = await media.offer("call-1", "a", phone_sdp(phone_a.getsockname()[1], 11))
        answer = await media.answer("call-1", "b", phone_sdp(phone_b.getsockname()[1], 22))
        towards_b = relay_target(offer)  # where phone b sends: leg b's relay port
        towards_a = relay_target(answer)  # where phone a sends: leg a's relay port
        assert towards_a[0] == towards_b[0] == "127.0.0.1"
        assert towards_a[1] != towards_b[1]
        assert answer.ports == (towards_a[1],) and offer.ports == (towards_b[1],)

        await exchange(phone_a, towards_a, phone_b, ssrc=0x1111)
        await exchange(phone_b, towards_b, phone_a, ssrc=0x2222)

        firsts = {(e.leg, e.source) for e in events if isinstance(e, FirstPacket)}
        assert firsts == {("a", phone_a.getsockname()), ("b", phone_b.getsockname())}

        stats = await media.query("call-1")
        assert stats.stats is not None
        assert {(s.leg, s.packets) for s in stats.stats} == {("a", 50), ("b", 50)}

        with pytest.raises(MediaWorkerError) as refused:
            await media.answer("no-such-call", "b", phone_sdp(4000, 1))
        assert refused.value.code == 2  # UNKNOWN_CALL

        pid = media.pid(0)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(lost_event.wait(), READ_TIMEOUT)
        assert lost == [(0, ["call-1"])]

        await asyncio.wait_for(media.running(0), 20.0)
        assert isinstance(await media.ping(0), Ok)
        new_pid = media.pid(0)
        assert new_pid is not None and new_pid != pid
    with pytest.raises(ProcessLookupError):
        os.kill(new_pid, 0)


def test_malformed_control_messages_get_an_error_reply() -> None:
    pool = RtpSocketPool("127.0.0.1", *port_range())
    try:
        worker = MediaWorker(pool)
        for garbage in (b"", b"\xff\x00", cbor2.dumps({"type": "nope", "request_id": 7})):
            reply = worker.handle(garbage, 0.0)
            assert isinstance(reply, Error) and reply.code == ErrorCode.BAD_MESSAGE
        assert worker.handle(cbor2.dumps({"type": "nope", "request_id": 7}), 0.0).request_id == 7
        bad_sdp = worker.handle(encode(Offer("c", "a", "not sdp", request_id=3)), 0.0)
        assert isinstance(bad_sdp, Error) and bad_sdp.code == ErrorCode.BAD_SDP and bad_sdp.request_id == 3
        assert worker.calls == {} and pool.in_use == 0
        assert worker.handle(encode(Ping(request_id=9)), 0.0) == Ok(9)
    finally:
        pool.close()


def test_worker_reports_media_timeouts_and_frees_ports_on_delete() -> None:
    pool = RtpSocketPool("127.0.0.1", *port_range())
    try:
        worker = MediaWorker(pool, media_timeout=5.0, start=100.0, stats_interval=10.0)
        offered = worker.handle(encode(Offer("c", "a", phone_sdp(4000, 1), request_id=1)), 100.0)
        assert isinstance(offered, Ok) and pool.in_use == 2
        answered = worker.handle(encode(Answer("c", "b", phone_sdp(4002, 2), request_id=2)), 100.0)
        assert isinstance(answered, Ok)
        assert worker.next_deadline() == 105.0
        timeouts = [e for e in worker.handle_timer(106.0) if isinstance(e, MediaTimeout)]
        assert {(e.leg, e.direction, e.silent_for) for e in timeouts} == {
            ("a", Direction.IN, 6.0),
            ("b", Direction.IN, 6.0),
        }
        deleted = worker.handle(encode(Delete("c", request_id=3)), 107.0)
        assert isinstance(deleted, Ok) and deleted.stats is not None and len(deleted.stats) == 4
        assert worker.calls == {} and pool.in_use == 0
        again = worker.handle(encode(Delete("c", request_id=4)), 107.0)
        assert isinstance(again, Error) and again.code == ErrorCode.UNKNOWN_CALL
    finally:
        pool.close()


# --- SetLeg calls through a real worker process -------------------------------------------------------
#
# Calls are set up by set_leg through a MediaSupervisor with one worker, started with the options each test
# needs. The kernel fast path test starts its worker inside a network namespace, which the supervisor
# cannot do, so there WorkerProcess drives the worker over its control socket as the supervisor would.

KEK = bytes(range(32))
KEY_PHONE_A = bytes(range(30))  # what the SRTP phone on leg a protects with (the leg's remote_key)
KEY_RELAY = bytes(range(50, 80))  # what the relay protects towards leg a with (the leg's local_key)


class Supervised:
    """One worker under a MediaSupervisor, with the WorkerProcess interface the tests use."""

    def __init__(self, media: MediaSupervisor, events: asyncio.Queue[WorkerEvent]) -> None:
        self.media = media
        self.events = events

    async def command(self, command: Command) -> Ok | Error:
        index = self.media.worker_for(command.call_id) if hasattr(command, "call_id") else 0
        try:
            return await self.media.send(index, command)
        except MediaWorkerError as exc:
            return Error(0, exc.code, exc.reason)

    async def ok(self, command: Command) -> Ok:
        reply = await self.command(command)
        assert isinstance(reply, Ok), reply
        return reply

    async def next_event(self, kind: type[WorkerEvent], within: float = READ_TIMEOUT) -> WorkerEvent:
        while True:
            event = await asyncio.wait_for(self.events.get(), within)
            if isinstance(event, kind):
                return event


@contextlib.asynccontextmanager
async def supervised(tmp_path: Path, *args: str) -> AsyncIterator[Supervised]:
    events: asyncio.Queue[WorkerEvent] = asyncio.Queue()
    async with MediaSupervisor(
        1,
        "127.0.0.1",
        port_range(),
        tmp_path / "run",
        worker_args=args,
        on_event=lambda _, event: events.put_nowait(event),
    ) as media:
        yield Supervised(media, events)


class WorkerProcess:
    """One ``appliance.media.worker`` process and a ControlChannel on its socket."""

    def __init__(self, process: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.channel = ControlChannel(timeout=READ_TIMEOUT)
        self.events: asyncio.Queue[WorkerEvent] = asyncio.Queue()
        self._waiters: dict[int, asyncio.Future[Ok | Error]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, tmp_path: Path, *args: str, prefix: tuple[str, ...] = ()) -> WorkerProcess:
        path = tmp_path / "worker.sock"
        low, high = port_range()
        process = await asyncio.create_subprocess_exec(
            *prefix, sys.executable, "-m", "appliance.media.worker", "--control", str(path), "--address",
            "127.0.0.1", "--ports", f"{low}-{high}", *args, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 20.0) == b"ready\n"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, str(path))
        return cls(process, sock)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while data := await loop.sock_recv(self.sock, MAX_MESSAGE_SIZE + 1):
            self.channel.receive(data, loop.time())
            while (event := self.channel.next_event()) is not None:
                if isinstance(event, ReplyReceived):
                    self._waiters.pop(event.command.request_id).set_result(event.reply)
                elif isinstance(event, EventReceived):
                    self.events.put_nowait(event.event)

    async def command(self, command: Command) -> Ok | Error:
        loop = asyncio.get_running_loop()
        rid = self.channel.send(command, loop.time())
        self._waiters[rid] = loop.create_future()
        for data in self.channel.data_to_send():
            await loop.sock_sendall(self.sock, data)
        return await asyncio.wait_for(self._waiters[rid], READ_TIMEOUT)

    async def ok(self, command: Command) -> Ok:
        reply = await self.command(command)
        assert isinstance(reply, Ok), reply
        return reply

    async def next_event(self, kind: type[WorkerEvent], within: float = READ_TIMEOUT) -> WorkerEvent:
        while True:
            event = await asyncio.wait_for(self.events.get(), within)
            if isinstance(event, kind):
                return event

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self.sock.close()  # the worker exits when its control connection closes
        try:
            await asyncio.wait_for(self.process.wait(), READ_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@contextlib.asynccontextmanager
async def worker_process(
    tmp_path: Path, *args: str, prefix: tuple[str, ...] = ()
) -> AsyncIterator[WorkerProcess]:
    worker = await WorkerProcess.start(tmp_path, *args, prefix=prefix)
    try:
        yield worker
    finally:
        await worker.close()


def udp_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(READ_TIMEOUT)
    return sock


def relay_pair() -> int:
    """An even port whose pair is free now, for call control to hand to the worker."""
    while True:
        port = random.randrange(20000, 40000, 2)
        try:
            udp_socket(port).close()
            udp_socket(port + 1).close()
        except OSError:
            continue
        return port


class Phone:
    """A test endpoint: an RTP socket and its RTCP socket, optionally SRTP."""

    def __init__(self, sockets: tuple[socket.socket, socket.socket] | None = None) -> None:
        self.rtp, self.rtcp = sockets if sockets is not None else (udp_socket(), udp_socket())

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.rtp.getsockname()
        return host, port

    def spec(self, relay_port: int, codec: str = "PCMA", srtp: SrtpKeys | None = None) -> LegSpec:
        pt = 8 if codec == "PCMA" else 0
        rtcp_port = self.rtcp.getsockname()[1]
        return LegSpec(relay_port, self.address, pt, codec, 101, rtcp_port=rtcp_port, srtp=srtp)

    async def recv(self, sock: socket.socket | None = None) -> bytes:
        data: bytes = await asyncio.to_thread((sock or self.rtp).recv, 2048)
        return data

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


@pytest.fixture
def phone_pair() -> Iterator[tuple[Phone, Phone]]:
    a, b = Phone(), Phone()
    yield a, b
    a.close()
    b.close()


async def set_up_call(
    worker: WorkerProcess | Supervised,
    phones: tuple[Phone, Phone],
    *,
    flags: tuple[str, ...] = (),
    srtp_a: SrtpKeys | None = None,
) -> tuple[int, int]:
    port_a, port_b = relay_pair(), relay_pair()
    while port_b == port_a:
        port_b = relay_pair()
    await worker.ok(SetLeg("call-1", "a", phones[0].spec(port_a, srtp=srtp_a), flags))
    await worker.ok(SetLeg("call-1", "b", phones[1].spec(port_b), flags))
    return port_a, port_b


def audio(seq: int, ssrc: int) -> RtpPacket:
    return RtpPacket(8, seq, seq * 160, ssrc, bytes((seq * 3 + i) & 0xFF for i in range(160)))


async def test_set_leg_call_relays_rtp_and_rtcp_and_survives_hostile_packets(
    tmp_path: Path, phone_pair: tuple[Phone, Phone]
) -> None:
    phone_a, phone_b = phone_pair
    async with supervised(tmp_path, "--no-fastpath") as worker:
        port_a, port_b = await set_up_call(worker, phone_pair)
        for seq in range(30):
            sent = audio(seq, 0xA)
            phone_a.rtp.sendto(sent.serialize(), ("127.0.0.1", port_a))
            assert RtpPacket.parse(await phone_b.recv()) == sent
            back = audio(seq, 0xB)
            phone_b.rtp.sendto(back.serialize(), ("127.0.0.1", port_b))
            assert RtpPacket.parse(await phone_a.recv()) == back
        # RTCP: an RR from each phone reaches the other phone's RTCP socket unchanged.
        rr_a = struct.pack("!BBHI", 0x81, 201, 7, 0xA) + struct.pack("!6I", 0xB, 0, 29, 80, 0, 0)
        phone_a.rtcp.sendto(rr_a, ("127.0.0.1", port_a + 1))
        assert await phone_b.recv(phone_b.rtcp) == rr_a
        rr_b = struct.pack("!BBHI", 0x81, 201, 7, 0xB) + struct.pack("!6I", 0xA, 2, 29, 160, 0, 0)
        phone_b.rtcp.sendto(rr_b, ("127.0.0.1", port_b + 1))
        assert await phone_a.recv(phone_a.rtcp) == rr_b
        # Hostile input: short, oversized, not version 2, from a stranger; none of it is relayed.
        with udp_socket() as stranger:
            for junk in (b"\x80", bytes(1600), b"\x00" * 40):
                phone_a.rtp.sendto(junk, ("127.0.0.1", port_a))
            for seq in range(30, 35):
                stranger.sendto(audio(seq, 0xEE).serialize(), ("127.0.0.1", port_a))
        phone_a.rtp.sendto(audio(40, 0xA).serialize(), ("127.0.0.1", port_a))
        assert RtpPacket.parse(await phone_b.recv()).sequence_number == 40  # nothing else came first
        stats = await worker.next_event(WorkerStats, 3.0)
        assert isinstance(stats, WorkerStats) and stats.worker_id == 0
        while dict(stats.dropped).get("latch", 0) < 5:
            stats = await worker.next_event(WorkerStats, 3.0)
            assert isinstance(stats, WorkerStats)
        assert dict(stats.dropped) == {"short": 1, "oversized": 1, "version": 1, "latch": 5}
        assert stats.packets_dropped == 8 and stats.packets_relayed == 63
        assert (stats.calls, stats.streams) == (1, 2)
        query = await worker.ok(Query("call-1"))
        assert query.stats is not None
        figures = {(s.leg, s.direction): (s.packets, s.lost, s.jitter_ms) for s in query.stats}
        assert figures[("a", Direction.IN)][0] == 31 and figures[("b", Direction.OUT)][0] == 31
        # Each out direction's loss and jitter are its phone's RR about what the relay sent it.
        assert figures[("a", Direction.OUT)] == (30, 0, 10.0)
        assert figures[("b", Direction.OUT)] == (31, 2, 20.0)
        deleted = await worker.ok(Delete("call-1"))
        assert deleted.stats is not None and deleted.recording is None
        assert await worker.ok(Ping()) == Ok(deleted.request_id + 1)


async def test_srtp_leg_bridged_to_rtp_leg(tmp_path: Path, phone_pair: tuple[Phone, Phone]) -> None:
    phone_a, phone_b = phone_pair
    keys = SrtpKeys(
        "AES_CM_128_HMAC_SHA1_80",
        base64.b64encode(KEY_RELAY).decode(),
        base64.b64encode(KEY_PHONE_A).decode(),
    )
    tx = pylibsrtp.Session(pylibsrtp.Policy(KEY_PHONE_A, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(KEY_RELAY, pylibsrtp.Policy.SSRC_ANY_INBOUND))
    async with supervised(tmp_path, "--no-fastpath") as worker:
        port_a, port_b = await set_up_call(worker, phone_pair, srtp_a=keys)
        for seq in range(20):
            sent = audio(seq, 0xA)
            phone_a.rtp.sendto(tx.protect(sent.serialize()), ("127.0.0.1", port_a))
            assert RtpPacket.parse(await phone_b.recv()) == sent
            back = audio(seq, 0xB)
            phone_b.rtp.sendto(back.serialize(), ("127.0.0.1", port_b))
            assert RtpPacket.parse(rx.unprotect(await phone_a.recv())) == back
        rr = struct.pack("!BBHI", 0x81, 201, 7, 0xA) + struct.pack("!6I", 0xB, 0, 19, 0, 0, 0)
        phone_a.rtcp.sendto(tx.protect_rtcp(rr), ("127.0.0.1", port_a + 1))
        assert await phone_b.recv(phone_b.rtcp) == rr
        sr = struct.pack("!BBHI", 0x80, 200, 6, 0xB) + bytes(20)
        phone_b.rtcp.sendto(sr, ("127.0.0.1", port_b + 1))
        assert rx.unprotect_rtcp(await phone_a.recv(phone_a.rtcp)) == sr
        # Plain RTP and a replay on the SRTP leg are dropped and counted.
        replay = tx.protect(audio(50, 0xA).serialize())
        phone_a.rtp.sendto(replay, ("127.0.0.1", port_a))
        assert RtpPacket.parse(await phone_b.recv()).sequence_number == 50
        phone_a.rtp.sendto(replay, ("127.0.0.1", port_a))
        phone_a.rtp.sendto(audio(51, 0xA).serialize(), ("127.0.0.1", port_a))
        stats = await worker.next_event(WorkerStats, 3.0)
        while len(stats.dropped) < 2:  # type: ignore[union-attr]
            stats = await worker.next_event(WorkerStats, 3.0)
        assert isinstance(stats, WorkerStats)
        assert dict(stats.dropped) == {"srtp-auth": 1, "srtp-replay": 1}


async def test_recording_decrypts_to_the_audio_sent(tmp_path: Path, phone_pair: tuple[Phone, Phone]) -> None:
    phone_a, phone_b = phone_pair
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    key_file = tmp_path / "kek"
    key_file.write_bytes(KEK)
    sent_a, sent_b = [], []
    args = ("--recording-dir", str(recordings), "--recording-key", str(key_file), "--no-fastpath")
    async with supervised(tmp_path, *args) as worker:
        port_a, port_b = await set_up_call(worker, phone_pair, flags=("record",))
        for seq in range(25):
            a, b = audio(seq, 0xA), audio(1000 + seq, 0xB)
            phone_a.rtp.sendto(a.serialize(), ("127.0.0.1", port_a))
            phone_b.rtp.sendto(b.serialize(), ("127.0.0.1", port_b))
            await phone_b.recv()
            await phone_a.recv()
            sent_a.append(a.payload)
            sent_b.append(b.payload)
        deleted = await worker.ok(Delete("call-1"))
    assert deleted.recording is not None and Path(deleted.recording).parent == recordings
    wav = tmp_path / "call.wav"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "appliance.media.recording_cli", "decrypt", deleted.recording, str(wav),
         "--key-file", str(key_file)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        samples = array.array("h", w.readframes(w.getnframes()))
    for channel, sent in ((samples[0::2], sent_a), (samples[1::2], sent_b)):
        # Frames follow each other (sent faster than real time); silence pads only the ends.
        audio_samples = list(channel)
        while audio_samples and audio_samples[0] == 0:
            audio_samples.pop(0)
        while audio_samples and audio_samples[-1] == 0:
            audio_samples.pop()
        assert audio_samples == g711.alaw_decode(b"".join(sent))


async def test_media_timeout_within_the_configured_time(
    tmp_path: Path, phone_pair: tuple[Phone, Phone]
) -> None:
    phone_a, phone_b = phone_pair
    loop = asyncio.get_running_loop()
    async with supervised(tmp_path, "--media-timeout", "1.0", "--no-fastpath") as worker:
        port_a, port_b = await set_up_call(worker, phone_pair)
        for seq in range(10):
            phone_a.rtp.sendto(audio(seq, 0xA).serialize(), ("127.0.0.1", port_a))
            phone_b.rtp.sendto(audio(seq, 0xB).serialize(), ("127.0.0.1", port_b))
            await phone_b.recv()
            await phone_a.recv()
        last = loop.time()
        seen: dict[str, tuple[float, float]] = {}
        while len(seen) < 2:
            event = await worker.next_event(MediaTimeout, 3.0)
            assert isinstance(event, MediaTimeout)
            seen[event.leg] = (loop.time() - last, event.silent_for)
        for waited, silent_for in seen.values():
            assert 0.5 <= waited <= 1.5
            assert 1.0 <= silent_for <= 1.5


# --- the kernel fast path, in a network namespace of the test's own ------------------------------------


def phones_in(netns: str) -> tuple[Phone, Phone]:
    """Two phones whose sockets live in ``netns`` (a socket keeps the namespace it was made in)."""
    made: list[socket.socket] = []

    def make() -> None:
        from pyroute2.netns import setns  # type: ignore[import-untyped]

        setns(netns, flags=0)  # this thread only
        made.extend(udp_socket() for _ in range(4))

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    assert len(made) == 4
    return Phone((made[0], made[1])), Phone((made[2], made[3]))


def map_elements(netns: str, table: str) -> int:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "ip", table],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    items = json.loads(done.stdout)["nftables"]
    return sum(len(item["map"].get("elem", [])) for item in items if "map" in item)


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
async def test_eligible_call_goes_to_the_kernel_and_comes_back_on_delete(tmp_path: Path) -> None:
    with namespace("media-worker") as netns:
        phone_a, phone_b = phones_in(netns)
        try:
            prefix = ("ip", "netns", "exec", netns)
            async with worker_process(tmp_path, "--media-timeout", "3", prefix=prefix) as worker:
                port_a, port_b = await set_up_call(worker, (phone_a, phone_b))
                table = "appliance_media_0"
                assert map_elements(netns, table) == 0
                sent = 0
                for seq in range(40):
                    a, b = audio(seq, 0xA), audio(seq, 0xB)
                    phone_a.rtp.sendto(a.serialize(), ("127.0.0.1", port_a))
                    assert RtpPacket.parse(await phone_b.recv()) == a
                    phone_b.rtp.sendto(b.serialize(), ("127.0.0.1", port_b))
                    assert RtpPacket.parse(await phone_a.recv()) == b
                    sent += 1
                    if seq == 0:
                        # Both remotes latched: the worker installs the call right after relaying this
                        # packet. A packet sent in that instant would reach its socket and be dropped
                        # there (it must not recreate the flow), so the phones wait for the rules.
                        for _ in range(100):
                            if await asyncio.to_thread(map_elements, netns, table) == 4:
                                break
                        assert map_elements(netns, table) == 4
                await worker.next_event(WorkerStats, 3.0)  # a poll of the kernel counters has run
                await worker.next_event(WorkerStats, 3.0)
                query = await worker.ok(Query("call-1"))
                assert query.stats is not None
                packets = {(s.leg, s.direction): s.packets for s in query.stats}
                assert packets == {(leg, d): sent for leg in "ab" for d in (Direction.IN, Direction.OUT)}
                octets = {s.octets for s in query.stats}
                assert octets == {160 * sent}
                # Kernel-forwarded media keeps the media timeout quiet; silence then ends it.
                silent = await worker.next_event(MediaTimeout, 8.0)
                assert isinstance(silent, MediaTimeout)
                deleted = await worker.ok(Delete("call-1"))
                assert deleted.stats == query.stats
                assert map_elements(netns, table) == 0
        finally:
            phone_a.close()
            phone_b.close()
