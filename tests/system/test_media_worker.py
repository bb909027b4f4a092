"""The media worker process relays RTP both ways, and the supervisor replaces a worker that dies."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest

from appliance.media.control import encode
from appliance.media.control_events import (
    Answer,
    Delete,
    Direction,
    Error,
    ErrorCode,
    FirstPacket,
    MediaTimeout,
    Offer,
    Ok,
    Ping,
    WorkerEvent,
)
from appliance.media.rtp import RtpPacket
from appliance.media.sockets import RtpSocketPool
from appliance.media.supervisor import MediaSupervisor, MediaWorkerError, split_range
from appliance.media.worker import MediaWorker
from appliance.sdp.codec import parse_sdp

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
