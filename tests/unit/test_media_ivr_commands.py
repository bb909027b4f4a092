"""The media worker's IVR commands, sans-I/O: play, record, stop_media and drop_leg on real sockets bound
on 127.0.0.1, packets handed to the call directly, time advanced by hand."""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pylibsrtp
import pytest

from appliance.media.call import MediaCall
from appliance.media.commands import MediaWorker
from appliance.media.control import decode
from appliance.media.control_events import (
    Delete,
    Direction,
    DropLeg,
    DtmfEvent,
    Error,
    ErrorCode,
    MediaTimeout,
    Ok,
    Play,
    PlayDone,
    PortsReserved,
    Record,
    RecordDone,
    SrtpKeys,
    StopMedia,
    WorkerEvent,
)
from appliance.media.ivr_commands import IvrMedia, VoicemailConfig
from appliance.media.ivr_player import PTIME, SAMPLES
from appliance.media.ivr_recorder import VoicemailRecorder
from appliance.media.recording import RecordingReader, key_id_for
from appliance.media.rtp import RtpPacket
from appliance.media.tones import dtmf_tone, encode, sine
from appliance.media.worker import WorkerServer, parse_args
from tests.socket_pool import RtpSocketPool
from tests.unit.test_media_worker import (
    KEY_A_SENDS,
    KEY_RELAY_SENDS,
    PHONE_A,
    PHONE_B,
    command,
    free_pair,
    is_bound,
    relay,
    rtp,
    set_leg,
)

KEK = bytes(range(32))


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[MediaWorker]:
    pool = RtpSocketPool("127.0.0.1", 30000, 30009)
    voicemail = tmp_path / "vm"
    voicemail.mkdir()
    ivr = IvrMedia(
        voicemail=VoicemailConfig(voicemail, KEK), randbits=lambda bits: 0x1234 & ((1 << bits) - 1)
    )
    w = MediaWorker(pool, media_timeout=5.0, worker_id=3, ivr=ivr)
    yield w
    for call_id in list(w.calls):
        w.release(call_id)
    pool.close()


@pytest.fixture
def ports() -> tuple[int, int]:
    first = free_pair()
    return first, next(port for port in iter(free_pair, None) if port != first)


@pytest.fixture
def prompt(tmp_path: Path) -> Path:
    path = tmp_path / "main_menu.alaw"
    path.write_bytes(bytes((7 * i) % 200 + 1 for i in range(SAMPLES * 4)))
    return path


def te(seq: int, timestamp: int, event: int, duration: int, end: bool = False) -> bytes:
    """An RTP packet of payload type 101 carrying an RFC 4733 payload (the marker on a start)."""
    payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
    return RtpPacket(101, seq, timestamp, 0x1234, payload, marker=duration <= 160).serialize()


def digits(events: list[WorkerEvent]) -> list[WorkerEvent]:
    return [e for e in events if isinstance(e, DtmfEvent)]


def play_out(
    worker: MediaWorker, start: float, until: float
) -> tuple[list[tuple[bytes, tuple[str, int]]], list]:
    """Run the pacing timer at each deadline up to ``until``: the datagrams sent and the events."""
    sent: list[tuple[bytes, tuple[str, int]]] = []
    events: list[WorkerEvent] = []
    while (due := worker.ivr.get_timer()) is not None and due <= until:
        sends, happened = worker.ivr.due(max(due, start))
        sent.extend((data, destination) for _, data, destination in sends)
        events.extend(happened)
    return sent, events


def relayed_call(worker: MediaWorker, ports: tuple[int, int], flags: tuple[str, ...] = ()) -> MediaCall:
    set_leg(worker, "a", ports[0], remote=PHONE_A, flags=flags)
    set_leg(worker, "b", ports[1], remote=PHONE_B, flags=flags)
    return worker.calls["call-1"]


# --- refusals ---------------------------------------------------------------------------------------


def test_ivr_commands_on_an_unknown_call_or_leg_are_unknown_call(
    worker: MediaWorker, ports: tuple[int, int], prompt: Path
) -> None:
    messages = [
        Play("nope", "a", 1, (str(prompt),), True, request_id=3),
        Record("nope", "a", "vm1", 30.0, 3.0, True, True, request_id=3),
        StopMedia("nope", "a", request_id=3),
        DropLeg("nope", "a", request_id=3),
    ]
    for msg in messages:
        reply = command(worker, msg)
        assert isinstance(reply, Error) and reply.code == ErrorCode.UNKNOWN_CALL, msg
    set_leg(worker, "a", ports[0], remote=PHONE_A)
    reply = command(worker, Play("call-1", "b", 1, (str(prompt),), True, request_id=4))
    assert isinstance(reply, Error) and reply.code == ErrorCode.UNKNOWN_CALL
    reply = command(worker, DropLeg("call-1", "b", request_id=4))
    assert isinstance(reply, Error) and reply.code == ErrorCode.UNKNOWN_CALL


def test_missing_prompt_and_unconfigured_voicemail_are_bad_message(
    worker: MediaWorker, ports: tuple[int, int], tmp_path: Path
) -> None:
    set_leg(worker, "a", ports[0], remote=PHONE_A)
    missing = str(tmp_path / "nowhere.alaw")
    reply = command(worker, Play("call-1", "a", 1, (missing,), True, request_id=5))
    assert isinstance(reply, Error) and reply.code == ErrorCode.BAD_MESSAGE and missing in reply.reason
    worker.ivr.voicemail = None
    reply = command(worker, Record("call-1", "a", "vm1", 30.0, 3.0, True, True, request_id=6))
    assert reply == Error(6, ErrorCode.BAD_MESSAGE, "voicemail not configured")


def test_a_voicemail_name_in_use_is_refused(worker: MediaWorker, ports: tuple[int, int]) -> None:
    set_leg(worker, "a", ports[0], remote=PHONE_A)
    assert command(worker, Record("call-1", "a", "vm1", 30.0, 3.0, True, False, request_id=1)) == Ok(1)
    command(worker, StopMedia("call-1", "a", request_id=2))
    reply = command(worker, Record("call-1", "a", "vm1", 30.0, 3.0, True, False, request_id=3))
    assert isinstance(reply, Error) and reply.code == ErrorCode.BAD_MESSAGE and "exists" in reply.reason


# --- relaying around IVR media ----------------------------------------------------------------------


def test_relay_is_suspended_while_playing_and_resumes_after(
    worker: MediaWorker, ports: tuple[int, int], prompt: Path
) -> None:
    call = relayed_call(worker, ports)
    assert relay(call, "a", rtp(1, b"\x55" * 160), PHONE_A, 0.0)  # relayed to b
    assert relay(call, "b", rtp(1, b"\x55" * 160, ssrc=9), PHONE_B, 0.0)
    assert command(worker, Play("call-1", "a", 7, (str(prompt),), False, request_id=8), 0.1) == Ok(8)
    assert call.inspect and call.ivr_mode("a") and not call.ivr_mode("b")
    assert relay(call, "a", rtp(2, b"\x55" * 160), PHONE_A, 0.11) == []  # consumed by the IVR leg
    assert relay(call, "b", rtp(2, b"\x55" * 160, ssrc=9), PHONE_B, 0.11) == []  # a's outbound is the IVR's
    sent, events = play_out(worker, 0.1, 1.0)
    assert [destination for _, destination in sent] == [PHONE_A] * 4
    assert b"".join(data[12:] for data, _ in sent) == prompt.read_bytes()
    assert [struct.unpack("!I", data[8:12])[0] for data, _ in sent] == [0x1234] * 4  # the IVR's own SSRC
    assert events == [PlayDone("call-1", "a", 7, "done")]
    assert not call.inspect and call.latch_epoch == -1  # the fast path judges the call again
    assert relay(call, "a", rtp(3, b"\x55" * 160), PHONE_A, 1.0)
    assert relay(call, "b", rtp(3, b"\x55" * 160, ssrc=9), PHONE_B, 1.0)
    stats = {(s.leg, s.direction): s for s in worker._stats(call)}
    assert stats["a", Direction.OUT].packets == 1 + 4 + 1  # relayed, played, relayed
    assert stats["a", Direction.IN].packets == 3  # every packet counted, relayed or consumed


def test_a_new_play_stops_the_old_and_stop_media_stops_the_new(
    worker: MediaWorker, ports: tuple[int, int], prompt: Path
) -> None:
    relayed_call(worker, ports)
    command(worker, Play("call-1", "a", 1, (str(prompt),), False, loop=True, request_id=1), 0.0)
    command(worker, Play("call-1", "a", 2, (str(prompt),), False, loop=True, request_id=2), 0.0)
    assert worker.ivr.events == [PlayDone("call-1", "a", 1, "stopped")]
    worker.ivr.events.clear()
    play_out(worker, 0.0, 1.0)
    command(worker, StopMedia("call-1", "a", request_id=3), 1.0)
    assert worker.ivr.events == [PlayDone("call-1", "a", 2, "stopped")]
    assert worker.ivr.get_timer() is None


def test_barge_in_on_rfc4733_and_the_digit_is_reported_without_dtmf_events(
    worker: MediaWorker, ports: tuple[int, int], prompt: Path
) -> None:
    call = relayed_call(worker, ports)
    command(worker, Play("call-1", "a", 3, (str(prompt),), True, loop=True, request_id=1), 0.0)
    relay(call, "a", te(1, 8000, 5, 160), PHONE_A, 0.05)
    assert worker.ivr.after_packets(call) == [PlayDone("call-1", "a", 3, "barge_in")]
    assert digits(worker.packet_events("call-1", 0.05)) == []  # the digit is reported at its end
    for seq in (2, 3, 4):
        relay(call, "a", te(seq, 8000, 5, 800, end=True), PHONE_A, 0.1)
    assert digits(worker.packet_events("call-1", 0.1)) == [DtmfEvent("call-1", "a", "5", 100)]
    assert not call.inspect
    # Relaying again: a digit from a relayed leg is reported only with "dtmf-events".
    relay(call, "a", te(5, 16000, 6, 800, end=True), PHONE_A, 0.2)
    assert digits(worker.packet_events("call-1", 0.2)) == []


def test_inband_dtmf_flag_reports_digits_on_a_relayed_call(
    worker: MediaWorker, ports: tuple[int, int]
) -> None:
    set_leg(worker, "a", ports[0], remote=PHONE_A, flags=("inband-dtmf",))
    set_leg(worker, "b", ports[1], remote=PHONE_B)
    call = worker.calls["call-1"]
    assert call.inspect and call.legs["a"].inband and "inband-dtmf" not in call.flags
    audio = encode(dtmf_tone("9", duration_ms=120), "PCMA") + encode(sine(1000, 200, -70.0), "PCMA")
    events = []
    for n in range(len(audio) // SAMPLES):
        out = relay(call, "a", rtp(n + 1, audio[n * SAMPLES : (n + 1) * SAMPLES]), PHONE_A, n * PTIME)
        assert len(out) == 1  # still relayed to b
        events.extend(worker.ivr.after_packets(call))
    assert len(events) == 1 and isinstance(events[0], DtmfEvent) and events[0].digit == "9"
    set_leg(worker, "a", ports[0], remote=PHONE_A)  # the flag follows the latest SetLeg
    assert not call.legs["a"].inband and not call.inspect


# --- IVR-only calls and dropped legs ----------------------------------------------------------------


def test_an_ivr_only_call_gets_its_relay_at_the_first_play(
    worker: MediaWorker, ports: tuple[int, int], prompt: Path
) -> None:
    set_leg(worker, "a", ports[0], remote=None)
    call = worker.calls["call-1"]
    assert call.relay is None
    relay(call, "a", rtp(1, b"\x55" * 160), PHONE_A, 0.0)  # kept until the relay starts
    command(worker, Play("call-1", "a", 1, (str(prompt),), True, request_id=1), 0.01)
    assert call.relay is not None and call.inspect
    assert worker.early_sends == []  # the kept packet latched the caller and went nowhere
    sent, events = play_out(worker, 0.01, 1.0)
    assert {destination for _, destination in sent} == {PHONE_A}  # learnt: the SDP had no address
    assert events == [PlayDone("call-1", "a", 1, "done")]
    assert call.inspect and call.ivr_mode("a")  # no partner: still IVR mode
    relay(call, "a", te(2, 8000, 1, 800, end=True), PHONE_A, 1.0)
    assert digits(worker.packet_events("call-1", 1.0)) == [DtmfEvent("call-1", "a", "1", 100)]


def test_drop_leg_keeps_the_caller_and_a_new_leg_resumes_relaying(
    worker: MediaWorker, ports: tuple[int, int], prompt: Path
) -> None:
    call = relayed_call(worker, ports)
    relay(call, "a", rtp(1, b"\x55" * 160), PHONE_A, 0.0)
    relay(call, "b", rtp(1, b"\x55" * 160, ssrc=9), PHONE_B, 0.0)
    reply = command(worker, DropLeg("call-1", "b", request_id=4), 0.5)
    assert isinstance(reply, Ok) and reply.stats is not None
    assert {(s.leg, s.direction, s.packets) for s in reply.stats} == {
        ("b", Direction.IN, 1),
        ("b", Direction.OUT, 1),
    }
    assert "b" not in call.legs and call.inspect and call.ivr_mode("a")
    assert relay(call, "a", rtp(2, b"\x55" * 160), PHONE_A, 0.6) == []
    command(worker, Play("call-1", "a", 1, (str(prompt),), False, request_id=5), 0.6)
    sent, _ = play_out(worker, 0.6, 1.0)
    assert len(sent) == 4 and {d for _, d in sent} == {PHONE_A}
    # Long after: the caller's silence times out, the dropped leg's does not.
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        relay(call, "a", rtp(int(t) + 3, b"\x55" * 160), PHONE_A, t)
    timeouts = [e for e in worker.handle_timer(12.0) if isinstance(e, MediaTimeout)]
    assert timeouts == [MediaTimeout("call-1", "a", Direction.IN, 7.0, False)]
    # A new partner (a local agent) on another port: relaying resumes.
    port_c = free_pair()
    while port_c in ports:
        port_c = free_pair()
    phone_c = ("127.0.0.1", 31020)
    assert set_leg(worker, "b", port_c, remote=phone_c, now=13.0) == Ok(7, ports=(port_c,))
    assert not call.inspect
    out = call.receive("a", False, rtp(20, b"\x55" * 160), PHONE_A, 13.1)
    assert [destination for _, _, destination in out] == [phone_c]
    assert is_bound(port_c)


def test_record_voicemail_until_hash_through_the_worker(
    worker: MediaWorker, ports: tuple[int, int], tmp_path: Path
) -> None:
    call = relayed_call(worker, ports)
    reply = command(worker, Record("call-1", "a", "vm-7", 30.0, 0.0, True, False, request_id=2), 1.0)
    assert reply == Ok(2)
    frames = [encode(sine(440, 20, -20.0, phase=n), "PCMA") for n in range(10)]
    for n, frame in enumerate(frames):
        assert relay(call, "a", rtp(n + 1, frame), PHONE_A, 1.0 + n * PTIME) == []
    relay(call, "a", te(20, 8000, 11, 160), PHONE_A, 1.3)
    (done,) = worker.ivr.after_packets(call)
    assert isinstance(done, RecordDone) and done.reason == "dtmf" and done.key_id == key_id_for(KEK)
    assert done.path == str(tmp_path / "vm" / "vm-7.vm")
    reader = RecordingReader(done.path, keks={key_id_for(KEK): KEK})
    assert [f.payload for f in reader] == frames
    assert not call.inspect  # relaying again


def test_delete_stops_a_recording_and_reports_it(worker: MediaWorker, ports: tuple[int, int]) -> None:
    relayed_call(worker, ports)
    command(worker, Record("call-1", "a", "vm-8", 30.0, 0.0, True, True, request_id=2), 1.0)
    assert isinstance(command(worker, Delete("call-1", request_id=3), 2.0), Ok)
    (done,) = worker.ivr.events
    assert isinstance(done, RecordDone) and done.reason == "stopped" and done.size > 0
    assert worker.ivr.get_timer() is None


def test_worker_options_for_voicemail(tmp_path: Path) -> None:
    key = tmp_path / "vm.key"
    key.write_bytes(KEK)
    base = ["--control", "/tmp/x", "--address", "127.0.0.1", "--ports", "30000-30009"]
    options = parse_args([*base, "--voicemail-dir", str(tmp_path), "--voicemail-key", str(key)])
    assert options.voicemail == VoicemailConfig(tmp_path, KEK)
    assert parse_args(base).voicemail is None
    with pytest.raises(SystemExit):
        parse_args([*base, "--voicemail-dir", str(tmp_path)])


async def test_control_messages_wait_for_a_slow_control_process_in_order(worker: MediaWorker) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    theirs.setblocking(False)
    server = WorkerServer(worker, "/nonexistent", PortsReserved(3, 30000, 30009))
    server.conn = ours
    sent = [DtmfEvent("c", "a", "1234567890"[n % 10], n) for n in range(3000)]  # more than the buffer
    for event in sent:
        server.send(event)
    assert server._backlog  # the socket filled up; nothing was dropped
    received = []
    loop = asyncio.get_running_loop()
    while len(received) < len(sent):
        received.append(decode(await loop.sock_recv(theirs, 65536)))
    assert received == sent and not server._backlog
    ours.close()
    theirs.close()


def test_playback_to_an_srtp_leg_is_protected_with_its_key(
    worker: MediaWorker, ports: tuple[int, int], prompt: Path
) -> None:
    keys = SrtpKeys(
        "AES_CM_128_HMAC_SHA1_80",
        local_key=base64.b64encode(KEY_RELAY_SENDS).decode(),
        remote_key=base64.b64encode(KEY_A_SENDS).decode(),
    )
    set_leg(worker, "a", ports[0], remote=PHONE_A, srtp=keys)
    command(worker, Play("call-1", "a", 1, (str(prompt),), False, request_id=1), 0.0)
    sent, events = play_out(worker, 0.0, 1.0)
    phone_rx = pylibsrtp.Session(pylibsrtp.Policy(KEY_RELAY_SENDS, pylibsrtp.Policy.SSRC_ANY_INBOUND))
    plain = [phone_rx.unprotect(data) for data, _ in sent]
    assert b"".join(p[12:] for p in plain) == prompt.read_bytes()
    assert events == [PlayDone("call-1", "a", 1, "done")]


def test_an_ended_voicemail_goes_to_the_finisher_and_the_leg_relays_at_once(
    worker: MediaWorker, ports: tuple[int, int]
) -> None:
    pending: list[tuple[VoicemailRecorder, str]] = []
    worker.ivr.finish = lambda recorder, reason: pending.append((recorder, reason))
    call = relayed_call(worker, ports)
    command(worker, Record("call-1", "a", "vm-9", 30.0, 0.0, True, False, request_id=2), 1.0)
    relay(call, "a", rtp(1, encode(sine(440, 20, -20.0), "PCMA")), PHONE_A, 1.0)
    relay(call, "a", te(2, 8000, 11, 160), PHONE_A, 1.1)
    assert worker.ivr.after_packets(call) == []  # the file is closed elsewhere
    assert not call.inspect  # but the leg relays again now
    ((recorder, reason),) = pending
    done = recorder.finish(reason)  # type: ignore[arg-type]
    assert (done.record_id, done.reason, done.duration) == ("vm-9", "dtmf", 0.02)
