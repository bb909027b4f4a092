"""A real media worker process plays prompts to a UDP socket on 127.0.0.1, records voicemail from it, and
moves a relayed caller into the IVR when the other leg is dropped."""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path

from appliance.media.control_events import (
    DropLeg,
    DtmfEvent,
    Error,
    ErrorCode,
    Play,
    PlayDone,
    Record,
    RecordDone,
    SetLeg,
)
from appliance.media.recording import RecordingReader, key_id_for
from appliance.media.rtp import RtpPacket
from appliance.media.tones import encode, sine
from tests.system.test_media_worker import Phone, audio, relay_pair, set_up_call, worker_process

KEK = bytes(range(32))
PACKETS = 50


def prompt_file(tmp_path: Path, packets: int = PACKETS) -> Path:
    path = tmp_path / "main_menu.alaw"
    path.write_bytes(bytes((5 * i + i // 160) % 251 + 1 for i in range(160 * packets)))
    return path


async def receive_played(phone: Phone, count: int) -> list[tuple[float, RtpPacket]]:
    out = []
    for _ in range(count):
        data = await phone.recv()
        out.append((time.monotonic(), RtpPacket.parse(data)))
    return out


def check_stream(played: list[tuple[float, RtpPacket]], audio_bytes: bytes, payload_type: int) -> None:
    packets = [p for _, p in played]
    assert b"".join(p.payload for p in packets) == audio_bytes
    assert all(len(p.payload) == 160 and p.payload_type == payload_type for p in packets)
    first = packets[0]
    assert first.marker and not any(p.marker for p in packets[1:])
    for n, p in enumerate(packets):
        assert p.ssrc == first.ssrc
        assert p.sequence_number == (first.sequence_number + n) & 0xFFFF
        assert p.timestamp == (first.timestamp + 160 * n) & 0xFFFFFFFF
    # Paced, not a burst: 50 packets of 20 ms take about a second to arrive.
    span = played[-1][0] - played[0][0]
    assert 0.8 < span < 1.5, span


async def test_worker_plays_a_prompt_paced_and_records_voicemail_until_hash(tmp_path: Path) -> None:
    voicemail = tmp_path / "vm"
    voicemail.mkdir()
    key = tmp_path / "vm.key"
    key.write_bytes(KEK)
    prompt = prompt_file(tmp_path)
    caller = Phone()
    args = ("--no-fastpath", "--voicemail-dir", str(voicemail), "--voicemail-key", str(key))
    async with worker_process(tmp_path, *args) as worker:
        port = relay_pair()
        await worker.ok(SetLeg("ivr-1", "a", caller.spec(port), ("dtmf-events",)))
        await worker.ok(Play("ivr-1", "a", 1, (str(prompt),), barge_in=True))
        played = await receive_played(caller, PACKETS)
        check_stream(played, prompt.read_bytes(), 8)
        assert await worker.next_event(PlayDone) == PlayDone("ivr-1", "a", 1, "done")

        bad = await worker.command(Play("ivr-1", "a", 2, (str(tmp_path / "none.alaw"),), barge_in=True))
        assert isinstance(bad, Error) and bad.code == ErrorCode.BAD_MESSAGE and "none.alaw" in bad.reason

        await worker.ok(Record("ivr-1", "a", "vm-1", 30.0, 0.0, end_on_hash=True, beep=False))
        relay = ("127.0.0.1", port)
        frames = [encode(sine(440, 20, -20.0, phase=n), "PCMA") for n in range(25)]
        for n, frame in enumerate(frames):
            caller.rtp.sendto(RtpPacket(8, n, n * 160, 0x77, frame).serialize(), relay)
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)  # the frames are in before the digit
        for n, (duration, end) in enumerate(((160, False), (800, True), (800, True), (800, True))):
            payload = struct.pack("!BBH", 11, (0x80 if end else 0) | 10, duration)
            caller.rtp.sendto(RtpPacket(101, 30 + n, 8000, 0x77, payload, marker=n == 0).serialize(), relay)
        # The digit's end and the closed file are reported in either order (the file is synced in a thread).
        seen = {type(e): e for e in [await worker.next_event(RecordDone | DtmfEvent) for _ in range(2)]}
        assert seen[DtmfEvent] == DtmfEvent("ivr-1", "a", "#", 100)
        done = seen[RecordDone]
        assert isinstance(done, RecordDone) and done.reason == "dtmf"
        assert done.path == str(voicemail / "vm-1.vm") and done.key_id == key_id_for(KEK)
        reader = RecordingReader(done.path, keks={key_id_for(KEK): KEK})
        assert b"".join(f.payload for f in reader) == b"".join(frames)
    caller.close()


async def test_dropped_leg_moves_the_caller_into_the_ivr_and_back(tmp_path: Path) -> None:
    prompt = prompt_file(tmp_path)
    caller, cloud = Phone(), Phone()
    async with worker_process(tmp_path, "--no-fastpath") as worker:
        port_a, _ = await set_up_call(worker, (caller, cloud))
        caller.rtp.sendto(audio(1, 0x11).serialize(), ("127.0.0.1", port_a))
        assert RtpPacket.parse(await cloud.recv()) == audio(1, 0x11)
        dropped = await worker.ok(DropLeg("call-1", "b"))
        assert dropped.stats is not None and {s.leg for s in dropped.stats} == {"b"}
        await worker.ok(Play("call-1", "a", 9, (str(prompt),), barge_in=False))
        played = await receive_played(caller, PACKETS)
        check_stream(played, prompt.read_bytes(), 8)
        assert await worker.next_event(PlayDone) == PlayDone("call-1", "a", 9, "done")
        agent = Phone()
        await worker.ok(SetLeg("call-1", "b", agent.spec(relay_pair())))
        caller.rtp.sendto(audio(2, 0x11).serialize(), ("127.0.0.1", port_a))
        assert RtpPacket.parse(await agent.recv()) == audio(2, 0x11)
        agent.close()
    caller.close()
    cloud.close()
