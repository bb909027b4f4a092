"""The media worker's SetLeg command and packet path, sans-I/O: sockets are bound on 127.0.0.1 but packets
are handed to the call directly and the datagrams it returns are inspected, with ``now`` chosen by hand."""

from __future__ import annotations

import base64
import os
import random
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pylibsrtp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media import g711
from appliance.media.call import EARLY_PACKETS, MediaCall
from appliance.media.commands import MediaWorker, RecordingConfig, recording_name
from appliance.media.control import decode, encode
from appliance.media.control_events import (
    Delete,
    Direction,
    DtmfEvent,
    Error,
    ErrorCode,
    FirstPacket,
    LegSpec,
    MediaTimeout,
    Ok,
    Query,
    SetLeg,
    SrtpKeys,
    StreamStats,
    WorkerStats,
)
from appliance.media.fastpath import FlowHandle
from appliance.media.fastpath_rules import FlowLeg
from appliance.media.recording import Reason, RecordingError, RecordingReader, key_id_for
from appliance.media.rtp import RtpPacket
from appliance.media.worker import WorkerOptions, parse_args
from tests.socket_pool import RtpSocketPool

PHONE_A = ("127.0.0.1", 31000)
PHONE_B = ("127.0.0.1", 31002)
KEY_A_SENDS = bytes(range(30))  # the phone on leg a protects with this (the leg's remote_key)
KEY_RELAY_SENDS = bytes(range(100, 130))  # the relay protects towards leg a with this (its local_key)
KEK = bytes(range(32))


def free_pair() -> int:
    """An even port whose pair is free on 127.0.0.1 right now."""
    for _ in range(100):
        port = random.randrange(20000, 30000, 2)
        probes = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(sock)
                sock.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for sock in probes:
                sock.close()
        return port
    raise RuntimeError("no free port pair")


def is_bound(port: int) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return True
    finally:
        sock.close()
    return False


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[MediaWorker]:
    pool = RtpSocketPool("127.0.0.1", 30000, 30009)
    w = MediaWorker(pool, media_timeout=5.0, recording=RecordingConfig(tmp_path, KEK), worker_id=3)
    yield w
    for call_id in list(w.calls):
        w.release(call_id)
    pool.close()


def command(worker: MediaWorker, msg: object, now: float = 0.0) -> Ok | Error:
    reply = worker.handle(encode(msg), now)  # type: ignore[arg-type]
    assert decode(encode(reply)) == reply  # every reply is a valid message
    return reply


def set_leg(
    worker: MediaWorker,
    leg: str,
    port: int,
    *,
    remote: tuple[str, int] | None,
    codec: str = "PCMA",
    flags: tuple[str, ...] = (),
    hold: bool = False,
    srtp: SrtpKeys | None = None,
    now: float = 0.0,
    timeout: float | None = None,
) -> Ok | Error:
    pt = 8 if codec == "PCMA" else 0
    spec = LegSpec(port, remote, pt, codec, event_pt=101, hold=hold, srtp=srtp, timeout=timeout)
    return command(worker, SetLeg("call-1", leg, spec, flags, request_id=7), now)


def rtp(seq: int, payload: bytes, *, pt: int = 8, ssrc: int = 0x1234, marker: bool = False) -> bytes:
    return RtpPacket(pt, seq, seq * 160, ssrc, payload, marker=marker).serialize()


def relay(call: MediaCall, leg: str, data: bytes, source: tuple[str, int], now: float) -> list[bytes]:
    return [out for _, out, _ in call.receive(leg, False, data, source, now)]


@pytest.fixture
def ports() -> tuple[int, int]:
    a = free_pair()
    b = free_pair()
    while b == a:
        b = free_pair()
    return a, b


def test_set_leg_binds_both_ports_and_relays_once_both_legs_are_set(
    worker: MediaWorker, ports: tuple[int, int]
) -> None:
    port_a, port_b = ports
    assert set_leg(worker, "a", port_a, remote=PHONE_A) == Ok(7, ports=(port_a,))
    assert is_bound(port_a) and is_bound(port_a + 1)
    call = worker.calls["call-1"]
    assert call.relay is None
    # Leg b is not set yet: the caller's first packet (sent as soon as it had the answer) is kept ...
    assert relay(call, "a", rtp(1, b"\xd5" * 160), PHONE_A, 0.1) == []
    assert set_leg(worker, "b", port_b, remote=PHONE_B) == Ok(7, ports=(port_b,))
    assert is_bound(port_b) and is_bound(port_b + 1)
    # ... and relayed once leg b is: the glue sends what the command released.
    early, worker.early_sends = worker.early_sends, []
    assert [(sock.getsockname()[1], data, dest) for sock, data, dest in early] == [
        (port_b, rtp(1, b"\xd5" * 160), PHONE_B)
    ]
    sent = call.receive("a", False, rtp(2, b"\x01" * 160), PHONE_A, 0.2)
    assert [(sock.getsockname()[1], data, dest) for sock, data, dest in sent] == [
        (port_b, rtp(2, b"\x01" * 160), PHONE_B)
    ]
    back = call.receive("b", False, rtp(9, b"\x02" * 80, ssrc=0x99), PHONE_B, 0.3)
    assert [(sock.getsockname()[1], dest) for sock, _, dest in back] == [(port_a, PHONE_A)]
    query = command(worker, Query("call-1", request_id=8))
    assert isinstance(query, Ok) and query.stats is not None
    figures = {(s.leg, s.direction): (s.packets, s.octets) for s in query.stats}
    assert figures == {
        ("a", Direction.IN): (2, 320),
        ("a", Direction.OUT): (1, 80),
        ("b", Direction.IN): (1, 80),
        ("b", Direction.OUT): (2, 320),
    }
    assert worker.worker_stats().dropped == ()
    deleted = command(worker, Delete("call-1", request_id=9))
    assert isinstance(deleted, Ok) and deleted.stats == query.stats and deleted.recording is None
    assert worker.calls == {}
    assert not any(is_bound(p) for p in (port_a, port_a + 1, port_b, port_b + 1))


def test_refusals(worker: MediaWorker, ports: tuple[int, int]) -> None:
    port_a, port_b = ports
    assert set_leg(worker, "a", port_a, remote=PHONE_A) == Ok(7, ports=(port_a,))
    cases = [
        (set_leg(worker, "a", port_b, remote=PHONE_A), ErrorCode.BAD_MESSAGE, "local_port cannot change"),
        (set_leg(worker, "c", port_b, remote=PHONE_B), ErrorCode.BAD_MESSAGE, "no leg 'c'"),
        (set_leg(worker, "b", port_b, remote=PHONE_B, flags=("loud",)), ErrorCode.BAD_MESSAGE, "'loud'"),
        (set_leg(worker, "b", port_b + 1, remote=PHONE_B), ErrorCode.BAD_MESSAGE, "not an even port"),
        (
            set_leg(worker, "b", port_b, remote=PHONE_B, codec="G722", flags=("record",)),
            ErrorCode.BAD_MESSAGE,
            "not G.711",
        ),
    ]
    bad_keys = SrtpKeys("AES_CM_128_HMAC_SHA1_80", "bm90IGEga2V5", "bm90IGEga2V5")
    cases.append((set_leg(worker, "b", port_b, remote=PHONE_B, srtp=bad_keys), ErrorCode.BAD_MESSAGE, "SRTP"))
    for reply, code, text in cases:
        assert isinstance(reply, Error) and reply.code == code and reply.request_id == 7, reply
        assert text in reply.reason
    assert set(worker.calls["call-1"].legs) == {"a"}
    assert not is_bound(port_b)
    unconfigured = MediaWorker(worker.pool)
    refused = unconfigured.handle(
        encode(SetLeg("c2", "a", LegSpec(port_b, PHONE_B, 8, "PCMA"), ("record",), request_id=1)), 0.0
    )
    assert refused == Error(1, int(ErrorCode.BAD_MESSAGE), "recording not configured")
    assert unconfigured.calls == {} and not is_bound(port_b)


def test_bind_failure_is_no_ports_and_leaves_nothing_bound(
    worker: MediaWorker, ports: tuple[int, int]
) -> None:
    port_a, _ = ports
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", port_a + 1))  # the RTCP port is taken
    try:
        reply = set_leg(worker, "a", port_a, remote=PHONE_A)
        assert isinstance(reply, Error) and reply.code == ErrorCode.NO_PORTS
        assert worker.calls == {}
        assert not is_bound(port_a)
    finally:
        squatter.close()


def test_hold_suspends_timeouts_and_renegotiation_moves_the_remote(
    worker: MediaWorker, ports: tuple[int, int]
) -> None:
    port_a, port_b = ports
    set_leg(worker, "a", port_a, remote=PHONE_A, now=100.0)
    set_leg(worker, "b", port_b, remote=PHONE_B, hold=True, now=100.0)
    assert [e for e in worker.handle_timer(200.0) if isinstance(e, MediaTimeout)] == []
    # Off hold and a new address for leg b: packets from a now go there, and silence times out.
    moved = ("127.0.0.1", 31010)
    assert isinstance(set_leg(worker, "b", port_b, remote=moved, now=200.0), Ok)
    call = worker.calls["call-1"]
    assert [dest for _, _, dest in call.receive("a", False, rtp(1, b"\xd5"), PHONE_A, 200.5)] == [moved]
    assert call.relay is not None and call.relay.wake == 205.0  # as the hold ended; leg a's packet...
    timed_out = [e for e in worker.handle_timer(205.0) if isinstance(e, MediaTimeout)]
    assert [(e.leg, e.direction) for e in timed_out] == [("b", Direction.IN)]
    assert call.relay.wake == 205.5  # ...pushed its own deadline back, as the sweep found
    timed_out = [e for e in worker.handle_timer(206.0) if isinstance(e, MediaTimeout)]
    assert [(e.leg, e.direction) for e in timed_out] == [("a", Direction.IN)]


def test_a_leg_timeout_set_by_set_leg_and_changed_by_a_later_one(
    worker: MediaWorker, ports: tuple[int, int]
) -> None:
    port_a, port_b = ports
    set_leg(worker, "a", port_a, remote=PHONE_A, now=100.0)
    assert isinstance(set_leg(worker, "b", port_b, remote=PHONE_B, timeout=2.0, now=100.0), Ok)
    call = worker.calls["call-1"]
    assert call.relay is not None and call.relay.wake == 102.0  # leg b's own, not the worker's 5 s
    for i in range(10):
        call.receive("a", False, rtp(i, b"\xd5"), PHONE_A, 100.0 + i * 0.25)
    timed_out = [e for e in worker.handle_timer(102.0) if isinstance(e, MediaTimeout)]
    assert [(e.leg, e.one_way) for e in timed_out] == [("b", True)]
    assert timed_out[0].silent_for == 2.0
    # A re-SetLeg without the timeout gives leg b the worker's 5 s from then on.
    call.receive("b", False, rtp(1, b"\xd5"), PHONE_B, 103.0)
    assert isinstance(set_leg(worker, "b", port_b, remote=PHONE_B, now=103.0), Ok)
    assert [e for e in worker.handle_timer(107.9) if isinstance(e, MediaTimeout) and e.leg == "b"] == []
    timed_out = [e for e in worker.handle_timer(108.0) if isinstance(e, MediaTimeout)]
    assert [e.leg for e in timed_out] == ["b"]


def test_codec_change_transcodes(worker: MediaWorker, ports: tuple[int, int]) -> None:
    port_a, port_b = ports
    set_leg(worker, "a", port_a, remote=PHONE_A)
    set_leg(worker, "b", port_b, remote=PHONE_B)
    call = worker.calls["call-1"]
    payload = bytes(range(160))
    assert relay(call, "a", rtp(1, payload), PHONE_A, 0.1) == [rtp(1, payload)]
    set_leg(worker, "b", port_b, remote=PHONE_B, codec="PCMU")
    out = relay(call, "a", rtp(2, payload), PHONE_A, 0.2)
    assert out == [rtp(2, g711.alaw_to_ulaw(payload), pt=0)]


def _srtp_session(key: bytes, direction: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key, direction))


def test_srtp_leg_is_bridged_to_rtp_and_bad_packets_are_counted(
    worker: MediaWorker, ports: tuple[int, int]
) -> None:
    port_a, port_b = ports
    keys = SrtpKeys(
        "AES_CM_128_HMAC_SHA1_80",
        local_key=base64.b64encode(KEY_RELAY_SENDS).decode(),
        remote_key=base64.b64encode(KEY_A_SENDS).decode(),
    )
    set_leg(worker, "a", port_a, remote=PHONE_A, srtp=keys)
    set_leg(worker, "b", port_b, remote=PHONE_B)
    call = worker.calls["call-1"]
    phone_tx = _srtp_session(KEY_A_SENDS, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    phone_rx = _srtp_session(KEY_RELAY_SENDS, pylibsrtp.Policy.SSRC_ANY_INBOUND)
    for seq in range(5):
        plain = rtp(seq, bytes((seq + i) & 0xFF for i in range(160)))
        assert relay(call, "a", phone_tx.protect(plain), PHONE_A, 0.1 * seq) == [plain]
        reply = rtp(seq, bytes(160 - seq), ssrc=0x77)
        (protected,) = relay(call, "b", reply, PHONE_B, 0.1 * seq)
        assert protected != reply and phone_rx.unprotect(protected) == reply
    replayed = phone_tx.protect(rtp(10, b"\x00" * 160))
    assert relay(call, "a", replayed, PHONE_A, 1.0) != []
    assert relay(call, "a", replayed, PHONE_A, 1.1) == []
    forged = bytearray(phone_tx.protect(rtp(11, b"\x00" * 160)))
    forged[-1] ^= 1
    assert relay(call, "a", bytes(forged), PHONE_A, 1.2) == []
    assert relay(call, "a", os.urandom(3), PHONE_A, 1.3) == []
    assert relay(call, "a", rtp(12, b"plain" * 32), PHONE_A, 1.4) == []  # plain RTP on an SRTP leg
    counts = call.drop_counts()
    assert counts["srtp-replay"] == 1
    assert counts["srtp-auth"] == 2, counts
    assert counts["srtp"] == 1  # too short to hold an authentication tag
    assert sum(counts.values()) == 4
    # SRTCP too: an RR from the phone reaches leg b in the clear, and is the out direction's report.
    rr = struct.pack("!BBHI", 0x81, 201, 7, 0xAAAA) + struct.pack("!IIIIII", 0x77, 3, 12, 160, 0, 0)
    (sent,) = call.receive("a", True, phone_tx.protect_rtcp(rr), (PHONE_A[0], PHONE_A[1] + 1), 1.5)
    assert sent[1] == rr and sent[2] == (PHONE_B[0], PHONE_B[1] + 1)
    assert sent[0].getsockname()[1] == port_b + 1
    out_a = next(s for s in worker._stats(call) if s.leg == "a" and s.direction is Direction.OUT)
    assert out_a == StreamStats("a", Direction.OUT, 5, sum(160 - s for s in range(5)), 3, 20.0)


def test_recording_decrypts_to_both_directions(worker: MediaWorker, ports: tuple[int, int]) -> None:
    port_a, port_b = ports
    set_leg(worker, "a", port_a, remote=PHONE_A, flags=("record",))
    set_leg(worker, "b", port_b, remote=PHONE_B, codec="PCMU")
    call = worker.calls["call-1"]
    from_a = [bytes((seq + i) & 0xFF for i in range(160)) for seq in range(3)]
    from_b = [bytes((7 * seq + i) & 0xFF for i in range(160)) for seq in range(3)]
    for seq in range(3):
        relay(call, "a", rtp(seq, from_a[seq]), PHONE_A, 1.0 + 0.02 * seq)
        relay(call, "b", rtp(seq, from_b[seq], pt=0, ssrc=5), PHONE_B, 1.01 + 0.02 * seq)
    relay(call, "a", rtp(3, b"\x00\x0a\x00\xa0", pt=101), PHONE_A, 1.1)  # a DTMF event is not audio
    deleted = command(worker, Delete("call-1", request_id=2))
    assert isinstance(deleted, Ok) and deleted.recording is not None
    assert Path(deleted.recording).name == recording_name("call-1")
    reader = RecordingReader(deleted.recording, keks={key_id_for(KEK): KEK})
    assert reader.header.codec == "PCMA" and reader.header.call_id == "call-1"
    frames = list(reader)
    assert [f.payload for f in frames if f.direction == 0] == from_a
    # Leg b spoke µ-law; the recording holds it converted to the file's A-law.
    assert [f.payload for f in frames if f.direction == 1] == [g711.ulaw_to_alaw(p) for p in from_b]


def test_recording_names_are_safe() -> None:
    assert recording_name("abc@host").startswith("abc_host-")
    for hostile in ("../../etc/passwd", "/abs", ".hidden", "a" * 5000, "é\x00\n"):
        name = recording_name(hostile)
        assert "/" not in name and not name.startswith(".") and len(name) < 120
    assert recording_name("a/b") != recording_name("a_b")


def test_dtmf_events_only_with_the_flag(worker: MediaWorker, ports: tuple[int, int]) -> None:
    port_a, port_b = ports
    digit_end = bytes((5, 0x80 | 10, 0x03, 0x20))  # digit 5, end, 800 samples
    for flags, expected in (((), []), (("dtmf-events",), [DtmfEvent("call-1", "a", "5", 100)])):
        set_leg(worker, "a", port_a, remote=PHONE_A, flags=flags)
        set_leg(worker, "b", port_b, remote=PHONE_B)
        call = worker.calls["call-1"]
        relay(call, "a", rtp(1, digit_end, pt=101, marker=True), PHONE_A, 0.1)
        assert [e for e in worker.packet_events("call-1", 0.1) if isinstance(e, DtmfEvent)] == expected
        command(worker, Delete("call-1", request_id=3))


def test_the_sweep_closes_a_digit_whose_end_packets_were_lost(
    worker: MediaWorker, ports: tuple[int, int]
) -> None:
    port_a, port_b = ports
    set_leg(worker, "a", port_a, remote=PHONE_A, flags=("dtmf-events",))
    set_leg(worker, "b", port_b, remote=PHONE_B)
    call = worker.calls["call-1"]
    assert call.relay is not None and call.relay.wake == 5.0  # the media timeouts
    digit_start = bytes((5, 10, 0x01, 0x40))  # digit 5, no end bit, 320 samples so far
    relay(call, "a", rtp(1, digit_start, pt=101, marker=True), PHONE_A, 1.2)
    # The packet lowered the relay's wake without a call: the glue compares it with its armed timer.
    assert call.relay.wake == 1.7 and worker.next_deadline() == 1.0
    assert [type(e) for e in worker.packet_events("call-1", 1.2)] == [FirstPacket]  # no digit yet
    assert [e for e in worker.handle_timer(1.6) if isinstance(e, DtmfEvent)] == []
    assert worker.handle_timer(1.7) == [DtmfEvent("call-1", "a", "5", 40)]
    assert call.relay.wake == 5.0


def test_latch_epoch_moves_only_when_a_latch_learns_or_moves(
    worker: MediaWorker, ports: tuple[int, int]
) -> None:
    port_a, port_b = ports
    set_leg(worker, "a", port_a, remote=PHONE_A)
    set_leg(worker, "b", port_b, remote=PHONE_B)
    call = worker.calls["call-1"]
    relay_core = call.relay
    # The second SetLeg applied to a call that existed: it is judged after its next packets anyway.
    assert relay_core is not None and relay_core.latch_epoch == 0 and call.latch_epoch == -1
    relay(call, "a", rtp(1, b"\xd5" * 160), PHONE_A, 0.1)
    assert relay_core.latch_epoch == 1
    worker.packet_events("call-1", 0.1)  # the fast path's judgement (no offloader here) is recorded
    assert call.latch_epoch == 1
    for seq in range(2, 10):
        relay(call, "a", rtp(seq, b"\xd5" * 160), PHONE_A, 0.1 + seq * 0.02)
    assert relay_core.latch_epoch == 1  # the latched source: nothing to judge again
    moved = ("127.0.0.1", 31777)  # a NAT rebinding: the same SSRC from a new port, three in a row
    for seq in range(10, 13):
        relay(call, "a", rtp(seq, b"\xd5" * 160), moved, 0.5 + seq * 0.02)
    assert relay_core.latches("a").rtp.latched == moved and relay_core.latch_epoch == 2
    set_leg(worker, "b", port_b, remote=PHONE_B, codec="PCMU")  # a re-negotiation: judged again
    assert call.latch_epoch == -1


def test_worker_stats_every_second_with_drop_reasons(worker: MediaWorker, ports: tuple[int, int]) -> None:
    port_a, port_b = ports
    assert worker.next_deadline() == 1.0
    set_leg(worker, "a", port_a, remote=PHONE_A)
    set_leg(worker, "b", port_b, remote=PHONE_B)
    call = worker.calls["call-1"]
    relay(call, "a", rtp(1, b"\xd5" * 160), PHONE_A, 0.1)
    relay(call, "a", b"\x80", PHONE_A, 0.2)  # short
    relay(call, "a", rtp(2, b"\xd5" * 2000), PHONE_A, 0.3)  # oversized
    relay(call, "b", rtp(1, b"\xd5" * 160), PHONE_B, 0.4)
    relay(call, "b", rtp(2, b"\xd5" * 160, ssrc=0xBAD), ("127.0.0.1", 4444), 0.5)  # foreign source
    (stats,) = [e for e in worker.handle_timer(1.0) if isinstance(e, WorkerStats)]
    assert stats == WorkerStats(3, 1, 2, 2, 3, (("latch", 1), ("oversized", 1), ("short", 1)))
    assert decode(encode(stats)) == stats
    assert worker.next_deadline() == 2.0
    command(worker, Delete("call-1", request_id=4))
    (later,) = worker.handle_timer(2.0)
    assert later == WorkerStats(3, 0, 0, 2, 3, stats.dropped)  # totals outlive the call


def test_command_line_options(tmp_path: Path) -> None:
    base = ["--control", "/run/x.sock", "--address", "127.0.0.1", "--ports", "20000-20099"]
    defaults = parse_args(base)
    assert defaults == WorkerOptions("/run/x.sock", "127.0.0.1", (20000, 20099))
    assert defaults.media_timeout == 30.0 and defaults.recording is None and defaults.fastpath
    key = tmp_path / "kek"
    key.write_text(KEK.hex() + "\n")
    recording = ["--recording-dir", str(tmp_path), "--recording-key", str(key)]
    full = parse_args([*base, "--media-timeout", "1.5", *recording, "--no-fastpath", "--worker-id", "2"])
    assert full.media_timeout == 1.5 and not full.fastpath and full.worker_id == 2
    assert full.recording == RecordingConfig(tmp_path, KEK)
    short_key = tmp_path / "short"
    short_key.write_bytes(bytes(16))
    for bad in (
        ["--media-timeout", "0"],
        ["--media-timeout", "soon"],
        ["--recording-dir", str(tmp_path)],  # without a key
        ["--recording-dir", str(tmp_path), "--recording-key", str(tmp_path / "missing")],
        ["--recording-dir", str(tmp_path), "--recording-key", str(short_key)],
        ["--recording-dir", str(key), "--recording-key", str(key)],  # not a directory
    ):
        with pytest.raises(SystemExit) as exit_info:
            parse_args([*base, *bad])
        assert exit_info.value.code == 2


def test_a_failing_recording_disk_stops_the_recording_not_the_call(
    worker: MediaWorker, ports: tuple[int, int]
) -> None:
    port_a, port_b = ports
    set_leg(worker, "a", port_a, remote=PHONE_A, flags=("record",))
    set_leg(worker, "b", port_b, remote=PHONE_B)
    call = worker.calls["call-1"]
    recorder = call.recorder
    assert recorder is not None
    relay(call, "a", rtp(1, b"\x01" * 160), PHONE_A, 1.0)
    recorder._file.close()
    recorder._file = open("/dev/full", "wb")  # noqa: SIM115 - the disk fills under the writer
    assert relay(call, "a", rtp(2, b"\x02" * 160), PHONE_A, 2.5) == [rtp(2, b"\x02" * 160)]
    assert call.recorder is None and call.recording_failed
    assert relay(call, "a", rtp(3, b"\x03" * 160), PHONE_A, 2.6) == [rtp(3, b"\x03" * 160)]
    deleted = command(worker, Delete("call-1", request_id=5))
    assert isinstance(deleted, Ok) and deleted.recording is not None
    # What reached the file reads back as truncated, never as a complete recording.
    with pytest.raises(RecordingError) as info:
        list(RecordingReader(deleted.recording, keks={key_id_for(KEK): KEK}))
    assert info.value.reason is Reason.TRUNCATED


@pytest.fixture(scope="module")
def hostile_call() -> Iterator[MediaCall]:
    """One call, leg a SRTP and leg b plain, kept for every example (hypothesis runs many)."""
    pool = RtpSocketPool("127.0.0.1", 30010, 30019)
    worker = MediaWorker(pool)
    keys = SrtpKeys(
        "AES_CM_128_HMAC_SHA1_80",
        base64.b64encode(KEY_RELAY_SENDS).decode(),
        base64.b64encode(KEY_A_SENDS).decode(),
    )
    set_leg(worker, "a", free_pair(), remote=PHONE_A, srtp=keys)
    set_leg(worker, "b", free_pair(), remote=PHONE_B)
    yield worker.calls["call-1"]
    worker.release("call-1")
    pool.close()


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "300")), deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=1600),
        st.builds(rtp, st.integers(0, 0xFFFF), st.binary(max_size=200)),
    ),
    rtcp=st.booleans(),
    leg=st.sampled_from(["a", "b"]),
    port=st.integers(1, 65535),
)
def test_hostile_datagrams_never_raise(
    hostile_call: MediaCall, data: bytes, rtcp: bool, leg: str, port: int
) -> None:
    for _, out, _ in hostile_call.receive(leg, rtcp, data, ("127.0.0.1", port), 1.0):
        assert 8 <= len(out) <= 1600


def test_kernel_forwarded_call_sends_nothing_and_resists_hijack_while_its_source_is_alive(
    worker: MediaWorker, ports: tuple[int, int]
) -> None:
    port_a, port_b = ports
    set_leg(worker, "a", port_a, remote=PHONE_A)
    set_leg(worker, "b", port_b, remote=PHONE_B)
    call = worker.calls["call-1"]
    assert relay(call, "a", rtp(1, b"\xd5" * 160), PHONE_A, 0.1) != []
    assert relay(call, "b", rtp(1, b"\xd5" * 160, ssrc=0xB), PHONE_B, 0.1) != []
    # As the offloader leaves a call it installed (the kernel itself is not needed for this part): the
    # latch's witness is the kernel's count of packets forwarded from the latched phone.
    leg_a = FlowLeg(PHONE_A, ("127.0.0.1", port_a))
    leg_b = FlowLeg(PHONE_B, ("127.0.0.1", port_b))
    call.offload.handle = FlowHandle("call-1", leg_a, leg_b)
    assert call.relay is not None
    kernel_count = [100]
    call.relay.latches("a").rtp.witness = lambda: kernel_count[0]
    mover = ("127.0.0.1", 31999)
    latch_drops = call.drop_counts().get("latch", 0)
    for seq in range(2, 8):  # the latched SSRC from a new source while the phone still sends via the kernel
        kernel_count[0] += 1
        assert relay(call, "a", rtp(seq, b"\xd5" * 160), mover, 0.1 + seq * 0.02) == []
    assert call.relay.latches("a").rtp.latched == PHONE_A
    assert call.drop_counts()["latch"] == latch_drops + 6
    assert relay(call, "a", rtp(8, b"\xd5" * 160), PHONE_A, 0.3) == []  # a straggler: counted, not sent
    # The phone's NAT rebound: the kernel count stands still, and the run of three takes the latch over
    # exactly as in userspace (where it is sent; here the offloader then takes the call back).
    for seq in range(9, 12):
        assert relay(call, "a", rtp(seq, b"\xd5" * 160), mover, 2.0 + seq * 0.02) == []
    assert call.relay.latches("a").rtp.latched == mover


def test_packets_before_the_relay_starts_are_kept_up_to_a_bound() -> None:
    call = MediaCall("early")
    for seq in range(EARLY_PACKETS + 3):
        assert call.receive("a", False, rtp(seq, b"\xd5" * 160), PHONE_A, 0.01 * seq) == []
    assert [entry[2] for entry in call.early] == [rtp(seq, b"\xd5" * 160) for seq in range(EARLY_PACKETS)]
    assert call.drop_counts() == {"not-ready": 3}
