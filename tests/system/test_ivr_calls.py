"""The local failover IVR with real calls: SIPp callers whose media is the test's, prompts, keys, outcomes.

Each caller is a SIPp UAC (the signalling) and an :class:`~tests.system.rtp_peer.RtpPeer` (the phone's media)
that talks throughout the call, as a phone's microphone does, and presses keys as RFC 4733 telephone-events
(:meth:`~tests.system.rtp_peer.RtpPeer.talk`). What the IVR plays is checked against the prompt files
themselves: the payloads of the RTP a caller receives, put end to end, must be the file's octets.

* With no cloud configured (SURVIVABLE: DESIGN.md §5.1) a caller from Germany and one from Spain each hear
  the default flow in their language. The German one asks for a callback (menu 1, confirms its number with
  1, takes the first time offered with 1); the Spanish one leaves a voicemail (menu 2, speaks after the
  beep, ends with ``#``). A third caller, from the United States, is greeted in English, picks Spanish in
  the language menu (menu *) and asks for a callback in Spanish, at a time in New York; a fourth, from
  France, has a phone without telephone-events and asks for its callback with DTMF tones in its audio
  (in-band, ITU-T Q.23); a fifth, from Britain, hangs up in the middle of its voicemail. Each of the others
  is confirmed and hung up on by the IVR; the outbox holds the callbacks, both voicemails (each file
  encrypted at rest, decrypting to what its caller said) and a session record per call, and still does
  after the appliance is SIGKILLed and started again on the same state.
* A call the cloud answered is rescued into the local IVR when its cloud leg fails -- the cloud's media
  stops (a media timeout), the cloud hangs up with ``Reason: Q.850;cause=38``, or the cloud vanishes and
  its probes go unanswered (the appliance turns SURVIVABLE) -- within 3 s, on the caller's existing RTP
  session, with no BYE or re-INVITE to the caller; a plain BYE from the cloud is passed on to the caller
  instead. A call still ringing on a cloud that vanishes is answered by the IVR as soon as the appliance
  turns SURVIVABLE, not when its INVITE to the cloud times out.

Addresses: the callers 127.0.0.2, the cloud 127.0.0.3, the appliance and its media 127.0.0.1.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import hashlib
import itertools
import math
import random
import re
import shutil
import sqlite3
import time
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
import pytest

import appliance.ivr
from appliance.media.recording import RecordingReader
from tests.system.appliance_proc import RunningAppliance, start_appliance
from tests.system.rtp_peer import (
    LOOPBACK,
    PAYLOAD_BYTES,
    PCMA,
    AudioSdp,
    Received,
    RtpPeer,
    sipp_messages,
    sipp_received_sdp,
    write_scenario,
)
from tests.system.sipp import SIPP_BINARY, SippProcess, SippResult, free_port

pytestmark = [pytest.mark.system, pytest.mark.timeout(60)]

if shutil.which(SIPP_BINARY) is None:  # pragma: no cover - .ci/run installs sip-tester
    pytest.skip("SIPp is not installed (Debian package sip-tester)", allow_module_level=True)

from tests.system.test_media_calls import bound_udp_ports  # noqa: E402 - after the skip: it skips likewise

with warnings.catch_warnings():
    # audioop is deprecated (PEP 594) but is an A-law encoder independent of the appliance's own.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SCENARIOS = Path(__file__).parent / "scenarios"
PROMPTS = Path(appliance.ivr.__file__).parent / "prompts"
CALLED = "+4930555000"
GERMAN = "+4930123456"  # Berlin
SPANISH = "+34912345678"  # Madrid
AMERICAN = "+12124567890"  # New York: English first, then Spanish (the [ivr] languages' defaults)
FRENCH = "+33142345678"  # Paris
BRITISH = "+442071234567"  # London
HANG_UP_AFTER = 20000  # ms: the British caller hangs up while recording its voicemail
CALLER_IP = "127.0.0.2"
CLOUD_IP = "127.0.0.3"
EVENT_PT = 101
EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}  # RFC 4733 §3.2
# DTMF (ITU-T Q.23): each key is one low and one high frequency, in Hz.
DTMF = {key: (low, high) for row, low in zip(("123", "456", "789", "*0#"), (697, 770, 852, 941), strict=True)
        for key, high in zip(row, (1209, 1336, 1477), strict=True)}  # fmt: skip
ALAW_SILENCE = 0xD5
RESCUE_WITHIN = 3.0  # seconds from the cloud leg's failure to the caller hearing the IVR
QUIET = 0.3  # seconds without a packet after which a playback is taken as over
HOLD_MS = 6500  # how long a rescued caller stays: the cut, the rescue, and 2 s of the greeting heard


def prompt(language: str, name: str) -> bytes:
    """The audio of a packaged prompt: raw 8 kHz A-law."""
    return (PROMPTS / language / f"{name}.alaw").read_bytes()


def dtmf_tone(key: str, *, ms: int = 100) -> list[bytes]:
    """``key``'s DTMF tone for ``ms`` milliseconds in A-law payloads of 20 ms, each frequency at -10 dBm0
    (Q.24 asks a receiver to take -3 to -25 dBm0): made here, not by the appliance's tone generator."""
    low, high = DTMF[key]
    # A full-scale sine is +3.14 dBm0 in A-law (G.711), and audioop's 16-bit scale maps onto its range.
    amplitude = 32767 * 10 ** ((-10 - 3.14) / 20)
    samples = [
        round(amplitude * (math.sin(2 * math.pi * low * n / 8000) + math.sin(2 * math.pi * high * n / 8000)))
        for n in range(8 * ms)
    ]
    alaw = audioop.lin2alaw(array.array("h", samples).tobytes(), 2)
    return [alaw[i : i + PAYLOAD_BYTES] for i in range(0, len(alaw), PAYLOAD_BYTES)]


def middle(audio: bytes) -> bytes:
    """A tenth of a second from the middle of ``audio``: speech, not the silence prompts begin with."""
    return audio[len(audio) // 2 : len(audio) // 2 + 800]


def packets_of(audio: bytes) -> int:
    return -(-len(audio) // PAYLOAD_BYTES)


# -- callers --------------------------------------------------------------------------------------------


@dataclass
class Caller:
    """One caller on the line: its SIPp UAC, its talking RTP peer and the keys it is about to press."""

    number: str
    peer: RtpPeer
    uac: SippProcess
    sdp: AudioSdp  # the appliance's answer: where the caller's RTP goes and the IVR's comes from
    keys: asyncio.Queue[int | list[bytes]] = field(default_factory=asyncio.Queue)
    talking: asyncio.Task[int] | None = None

    def press(self, key: str) -> None:
        """Press ``key``: an RFC 4733 event when the call has telephone-events, else its DTMF tone."""
        self.keys.put_nowait(EVENTS[key] if self.peer.event_pt is not None else dtmf_tone(key))

    async def hears(self, language: str, name: str, *, after: int, within: float = 10.0) -> int:
        """Wait for prompt ``name`` to begin after packet ``after``; the index of its first packet."""
        try:
            return await self.peer.wait_audio(prompt(language, name), after=after, within=within)
        except TimeoutError as exc:
            raise AssertionError(f"{self.number} did not hear {language}/{name}: {exc}") from None

    async def finished(self, within: float = 15.0) -> SippResult:
        async with asyncio.timeout(within):
            return await self.uac.wait_async()


@contextlib.asynccontextmanager
async def calling(
    app: RunningAppliance,
    workdir: Path,
    number: str,
    *,
    tag: int,
    scenario: str = "ivr_uac.xml",
    hold_ms: int = 0,
    recv_timeout_ms: int = 40000,
    event_pt: int | None = EVENT_PT,
    srtp: bool = False,
) -> AsyncIterator[Caller]:
    """Place a call from ``number`` to the appliance and yield it once the caller knows where to send its
    RTP, talking from then on (a caller without ``event_pt`` offers no telephone-events: its keys are
    tones; with ``srtp`` it offers SRTP keyed by SDES); the peer and SIPp are closed on leaving."""
    peer = await RtpPeer.open(tag, address=CALLER_IP, event_pt=event_pt, srtp=srtp)
    try:
        uac = SippProcess.uac(
            write_scenario(SCENARIOS / scenario, workdir / "scenario", peer.sdp(origin="caller"),
                           caller=number),
            app.sip, workdir=workdir, local_ip=CALLER_IP, max_calls=1, service=CALLED,
            trace_messages=True, recv_timeout_ms=recv_timeout_ms, duration_ms=hold_ms,
        )  # fmt: skip
        with uac:
            sdp = await sipp_received_sdp(uac.workdir, "SIP/2.0 200", within=10)
            peer.set_remote(sdp)
            caller = Caller(number, peer, uac, sdp)
            caller.talking = asyncio.create_task(peer.talk(caller.keys))
            try:
                yield caller
            finally:
                peer.stop()
                await caller.talking
    finally:
        peer.close()


def assert_rtp_stream(packets: list[Received], source: tuple[str, int]) -> None:
    """One RTP stream of PCMA from ``source``: one SSRC, consecutive sequence numbers, timestamps 160 apart
    (20 ms at 8 kHz, RFC 3551 §4.5.14), 160 octets each."""
    assert packets
    assert {r.payload_type for r in packets} == {PCMA}
    assert {r.source for r in packets} == {source}
    assert len({r.ssrc for r in packets}) == 1
    assert {len(r.payload) for r in packets} == {PAYLOAD_BYTES}
    seqs = [(r.seq - packets[0].seq) & 0xFFFF for r in packets]
    assert seqs == list(range(len(packets))), f"sequence numbers not consecutive: {seqs}"
    steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(packets)}
    assert steps <= {PAYLOAD_BYTES}, f"timestamps step by {steps}"


def assert_played(caller: Caller, at: int, audio: bytes) -> None:
    """The packets from index ``at`` carry exactly ``audio``, the last one padded with A-law silence."""
    count = packets_of(audio)
    packets = caller.peer.received[at : at + count]
    assert len(packets) == count, f"{len(packets)} of the prompt's {count} packets arrived"
    played = b"".join(r.payload for r in packets)
    assert played[: len(audio)] == audio
    assert set(played[len(audio) :]) <= {ALAW_SILENCE}
    assert_rtp_stream(packets, caller.sdp.target)
    # A playback is a talkspurt: the marker bit on its first packet only (RFC 3551 §4.1).
    assert [r.marker for r in packets] == [True] + [False] * (count - 1)


async def hear_whole(
    caller: Caller, language: str, name: str, at: int, *, within: float = 15.0, seconds: float | None = None
) -> None:
    """Wait until all of prompt ``name`` (begun at packet ``at``), or its first ``seconds``, has arrived, and
    check it."""
    audio = prompt(language, name)
    if seconds is not None:
        audio = audio[: int(seconds / 0.02) * PAYLOAD_BYTES]
    await caller.peer.wait_received(at + packets_of(audio), within=within)
    assert_played(caller, at, audio)


# -- the outbox -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    seq: int
    id: str
    type: str
    body: dict[str, Any]
    created: float


def outbox(app: RunningAppliance) -> list[Event]:
    """Every event in the appliance's outbox, read from its database (WAL: beside a running appliance)."""
    db = sqlite3.connect(app.state_dir / "appliance.db", timeout=5)
    try:
        rows = db.execute("SELECT seq, id, type, body, created FROM outbox ORDER BY seq").fetchall()
    finally:
        db.close()
    return [Event(int(s), str(i), str(t), cbor2.loads(b), float(c)) for s, i, t, b, c in rows]


async def wait_outbox(app: RunningAppliance, type_: str, count: int, *, within: float = 5.0) -> list[Event]:
    """Wait until the outbox holds ``count`` events of ``type_``; those events."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        events = [e for e in outbox(app) if e.type == type_]
        if len(events) >= count:
            return events
        if loop.time() > deadline:
            raise AssertionError(f"the outbox holds {len(events)} {type_} events, expected {count}")
        await asyncio.sleep(0.05)


def only(events: list[Event], type_: str) -> Event:
    found = [e for e in events if e.type == type_]
    assert len(found) == 1, f"{len(found)} {type_} events in the outbox: {[e.type for e in events]}"
    return found[0]


# -- the appliance --------------------------------------------------------------------------------------


def rtp_range() -> tuple[int, int]:
    """300 ports in 10000-19999 that nothing holds now: below the kernel's ephemeral ports, and away from
    61000-65535, which the relay and IVR benchmarks take whole while they run."""
    bound = bound_udp_ports()
    for _ in range(200):
        base = random.randrange(10000, 19700, 2)
        if bound.isdisjoint(range(base, base + 300)):
            return base, base + 299
    raise OSError("no free range of 300 UDP ports in 10000-19999")


def media_config(extra: str = "") -> str:
    low, high = rtp_range()
    return f"[media]\nrtp_port_min = {low}\nrtp_port_max = {high}\nworkers = 1\n{extra}\n"


@contextlib.asynccontextmanager
async def running(tmp_path: Path, config: str) -> AsyncIterator[list[RunningAppliance]]:
    """The appliance (a list, so that a test may replace it with a restarted one); stopped on leaving, its
    stderr printed for a failing test."""
    apps = [start_appliance(tmp_path, config)]
    try:
        yield apps
    finally:
        for n, app in enumerate(apps):
            log = app.stop()
            (tmp_path / f"appliance-{n}.log").write_text(log)
            print(f"appliance {n} stderr (tail):\n{log[-6000:]}")  # shown by pytest when the test fails


async def until(condition: Callable[[], object], *, within: float, what: str) -> None:
    """Poll ``condition`` (a metric, a SIPp trace, the database: nothing to await) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not so after {within} s")
        await asyncio.sleep(0.01)


def wall_of(loop_time: float) -> float:
    """A loop time as wall time (both clocks read now; good to a millisecond)."""
    return time.time() - (asyncio.get_running_loop().time() - loop_time)


# -- survivable mode: languages, callback, voicemail, durability ------------------------------------------


async def greeted(caller: Caller, language: str) -> int:
    """The caller hears the default flow's greeting in ``language`` first and whole, then the main menu
    begins: the menu's first packet."""
    first = await caller.hears(language, "service_interruption", after=0)
    assert first == 0, f"{first} packets came before the first prompt"
    await hear_whole(caller, language, "service_interruption", first)
    return await caller.hears(language, "main_menu", after=first + 1)


async def confirmed(caller: Caller, language: str, name: str, at: int) -> None:
    """The caller hears confirmation ``name`` (begun at packet ``at``) whole, then the goodbye whole."""
    await hear_whole(caller, language, name, at)
    goodbye = await caller.hears(language, "goodbye", after=at + 1)
    await hear_whole(caller, language, "goodbye", goodbye)


async def ask_for_a_callback(
    caller: Caller, language: str, *, greeted_in: str | None = None, pick: str | None = None
) -> float:
    """Menu 1, confirm the calling number with 1, the first time offered with 1; the caller hears the
    request confirmed and a goodbye in ``language``, then the IVR's BYE. A caller greeted in another
    language first picks ``language`` with key ``pick`` in the language menu (menu *). The wall time the
    confirmation began."""
    menu = await greeted(caller, greeted_in or language)
    if pick is not None:
        caller.press("*")
        # The options in key order, each in its own language: "#" (Turkish) first.
        options = await caller.hears("tr", "language_option", after=menu + 1)
        caller.press(pick)
        menu = await caller.hears(language, "main_menu", after=options + 1)
    caller.press("1")
    confirm = await caller.hears(language, "callback_number_is", after=menu + 1)
    assert confirm - menu < packets_of(prompt(language, "main_menu")), "the key did not cut the menu short"
    caller.press("1")
    offer = await caller.hears(language, "callback_choose_time", after=confirm + 1)
    caller.press("1")
    saved = await caller.hears(language, "callback_saved", after=offer + 1)
    await confirmed(caller, language, "callback_saved", saved)
    return wall_of(caller.peer.received[saved].at)


@dataclass(frozen=True)
class Message:
    """A voicemail as its caller left it, in indices of the packets the caller sent (RtpPeer.payload)."""

    asked: int  # the packet being sent when the voicemail prompt began
    beep: int  # ... when the beep began
    quiet: int  # ... when the beep was over (QUIET s without a packet from the IVR)
    end: int  # the packet the # replaced; for a caller who hung up instead, the first one after the BYE
    hash: bool = True  # ended by the #, not by hanging up
    heard_saved: float = 0.0  # the wall time the caller began to hear it confirmed (after a #)


async def after_the_beep(caller: Caller, language: str) -> tuple[int, int, int, int]:
    """Menu 2: the caller hears the voicemail prompt whole and the beep. Returns once the beep is over (the
    recording runs): the ``asked``, ``beep`` and ``quiet`` of its :class:`Message`, and the index among
    the received packets where the beep began."""
    menu = await greeted(caller, language)
    caller.press("2")
    asked = await caller.hears(language, "voicemail_prompt", after=menu + 1)
    asked_index = caller.peer.next_index
    await hear_whole(caller, language, "voicemail_prompt", asked)
    beep = asked + packets_of(prompt(language, "voicemail_prompt"))
    await caller.peer.wait_received(beep + 1, within=5)  # the beep has begun
    beep_index = caller.peer.next_index
    await caller.peer.wait_quiet(QUIET, within=5)  # and ended: the recording runs
    return asked_index, beep_index, caller.peer.next_index, beep


async def leave_a_voicemail(caller: Caller, language: str) -> Message:
    """Menu 2; after the prompt and its beep the caller speaks for 2 s and presses #; the caller hears the
    message confirmed and a goodbye, then the IVR's BYE."""
    asked, beep_index, quiet, beep = await after_the_beep(caller, language)
    await asyncio.sleep(2.0)  # the caller's message
    caller.press("#")
    saved = await caller.hears(language, "voicemail_saved", after=beep + 1)
    await confirmed(caller, language, "voicemail_saved", saved)
    hash_index = next(index for index, event in caller.peer.keyed if event == EVENTS["#"])
    heard = wall_of(caller.peer.received[saved].at)
    return Message(asked, beep_index, quiet, hash_index, heard_saved=heard)


async def hang_up_while_recording(caller: Caller, language: str) -> Message:
    """Menu 2; after the prompt and its beep the caller speaks until it hangs up (its hold time is over),
    never pressing #."""
    asked, beep_index, quiet, _ = await after_the_beep(caller, language)
    result = await caller.finished(within=30)
    assert result.all_successful, result.describe()  # nothing from the IVR cut the message short
    return Message(asked, beep_index, quiet, caller.peer.next_index, hash=False)


def check_voicemail(app: RunningAppliance, blob: dict[str, Any], peer: RtpPeer, message: Message) -> None:
    """The voicemail file ``blob`` describes is under the state directory, encrypted, and decrypts with the
    appliance's voicemail key to what ``peer`` said from the end of the beep up to the # (or about to its
    hanging up)."""
    path = Path(blob["path"])
    assert path.parent == app.state_dir / "voicemail" and path.is_file(), blob
    data = path.read_bytes()
    assert len(data) == blob["size"]
    assert hashlib.sha256(data).hexdigest() == blob["sha256"]
    spoken = range(message.asked, message.end)
    assert not any(peer.payload(i) in data for i in spoken), "the voicemail file holds audio in the clear"
    kek = (app.state_dir / "keys" / "voicemail.kek").read_bytes()
    frames = [f.payload for f in RecordingReader(path, keks={blob["key_id"]: kek})]
    recorded = [i for i in spoken if peer.payload(i) in frames]
    assert recorded, "the voicemail holds none of what the caller said"
    # The message is the caller's audio from the end of the beep on: in order, none missing; after a #,
    # all of it up to the #.
    assert frames == [peer.payload(i) for i in recorded]
    assert recorded == list(range(recorded[0], recorded[-1] + 1)), "the recording lost audio"
    assert message.beep < recorded[0] <= message.quiet, (message, recorded[0])
    if message.hash:
        assert recorded[-1] == message.end - 1, "the recording lost the audio before the #"
    else:
        assert len(recorded) >= 100, f"a message of {len(recorded)} packets: it was cut short"


def check_callback(
    event: Event, language: str, zone: str, offsets: tuple[int, int], heard_saved: float
) -> None:
    """A callback request for the number the caller called from, in ``language``, for the first time
    offered: a whole hour in ``zone`` (whose UTC offset is one of ``offsets`` hours) at least an hour
    ahead, the same instant in UTC; kept before the caller heard it confirmed at ``heard_saved``."""
    body = event.body
    assert body["number_source"] == "caller" and body["language"] == language, body
    assert body["timezone"] == zone, body
    slot_local = datetime.fromisoformat(body["slot_local"])
    slot_utc = datetime.fromisoformat(body["slot_utc"].replace("Z", "+00:00"))
    assert slot_utc.utcoffset() == timedelta(0) and slot_local == slot_utc, body
    assert slot_local.utcoffset() in tuple(timedelta(hours=h) for h in offsets), body
    assert (slot_local.minute, slot_local.second) == (0, 0), body
    assert 3600 <= slot_utc.timestamp() - event.created <= 3600 + 2 * 3600, body
    assert event.created <= heard_saved + 0.05, (event.created, heard_saved)


async def test_callers_served_in_their_languages_leave_callbacks_and_voicemails_that_survive_sigkill(
    tmp_path: Path,
) -> None:
    config = media_config()
    async with running(tmp_path, config) as apps:
        app = apps[0]
        async with (
            calling(app, tmp_path / "de", GERMAN, tag=1) as german,
            calling(app, tmp_path / "es", SPANISH, tag=2) as spanish,
            calling(app, tmp_path / "us", AMERICAN, tag=3) as american,
            calling(app, tmp_path / "fr", FRENCH, tag=4, event_pt=None) as french,
            calling(
                app, tmp_path / "gb", BRITISH, tag=5, scenario="ivr_uac_hangup.xml", hold_ms=HANG_UP_AFTER
            ) as british,
        ):
            callback_heard, voicemail, picked_heard, tones_heard, hung_up = await asyncio.gather(
                ask_for_a_callback(german, "de"),
                leave_a_voicemail(spanish, "es"),
                ask_for_a_callback(american, "es", greeted_in="en", pick="2"),
                ask_for_a_callback(french, "fr"),
                hang_up_while_recording(british, "en"),
            )
            callers = (german, spanish, american, french, british)
            for caller in callers:
                result = await caller.finished()  # the IVR's BYE ended the call (the British one hung up)
                assert result.all_successful, result.describe()
        # The IVR's RTP to a caller is one stream from the answer to the BYE: one SSRC, and sequence numbers
        # that run on from one playback to the next (RFC 3550 §5.1).
        for caller in callers:
            ivr = caller.peer.received
            assert len({r.ssrc for r in ivr}) == 1
            assert [(r.seq - ivr[0].seq) & 0xFFFF for r in ivr] == list(range(len(ivr)))
        # Each heard its own language's greeting and never the other's.
        heard_de = b"".join(german.peer.payloads())
        heard_es = b"".join(spanish.peer.payloads())
        assert middle(prompt("es", "service_interruption")) not in heard_de
        assert middle(prompt("de", "service_interruption")) not in heard_es

        session_records = await wait_outbox(app, "ivr.session", 5)  # written as each session ends
        before = outbox(app)
        callbacks = {e.body["number"]: e for e in before if e.type == "ivr.callback"}
        assert sorted(callbacks) == sorted([GERMAN, AMERICAN, FRENCH]), before
        check_callback(callbacks[GERMAN], "de", "Europe/Berlin", (1, 2), callback_heard)  # CET, CEST
        check_callback(callbacks[AMERICAN], "es", "America/New_York", (-5, -4), picked_heard)  # EST, EDT
        check_callback(callbacks[FRENCH], "fr", "Europe/Paris", (1, 2), tones_heard)

        messages = {e.body["caller"]: e for e in before if e.type == "ivr.voicemail"}
        assert sorted(messages) == sorted([SPANISH, BRITISH]), before
        message = messages[SPANISH]
        assert message.body["language"] == "es"
        assert message.created <= voicemail.heard_saved + 0.05, (message.created, voicemail.heard_saved)
        check_voicemail(app, message.body["blob"], spanish.peer, voicemail)
        # The message of a caller who hung up instead of pressing # is kept all the same.
        assert messages[BRITISH].body["language"] == "en"
        check_voicemail(app, messages[BRITISH].body["blob"], british.peer, hung_up)

        by_caller = {e.body["caller"]: e.body for e in session_records}
        assert by_caller[GERMAN]["outcome"] == "callback" and by_caller[GERMAN]["language"] == "de"
        assert by_caller[GERMAN]["digits"] == "111" and not by_caller[GERMAN]["rescued"]
        assert by_caller[SPANISH]["outcome"] == "voicemail" and by_caller[SPANISH]["language"] == "es"
        assert by_caller[SPANISH]["digits"] == "2#"
        assert by_caller[AMERICAN]["outcome"] == "callback" and by_caller[AMERICAN]["language"] == "es"
        assert by_caller[AMERICAN]["digits"] == "*2111"
        assert by_caller[FRENCH]["outcome"] == "callback" and by_caller[FRENCH]["digits"] == "111"
        assert by_caller[BRITISH]["outcome"] == "voicemail" and by_caller[BRITISH]["digits"] == "2"

        # Durability: killed outright, then started again on the same state.
        app.proc.kill()
        app.proc.wait(timeout=10)
        apps.append(start_appliance(tmp_path, config))
        after = outbox(apps[-1])
        kept = {e.id: e for e in after}
        for event in (*callbacks.values(), *messages.values(), *session_records):
            assert kept.get(event.id) == event, f"{event.type} {event.seq} lost or changed by the restart"


# -- rescue -------------------------------------------------------------------------------------------------


@dataclass
class Cloud:
    """The cloud contact centre: a SIPp UAS and the agent's talking RTP peer."""

    uas: SippProcess
    peer: RtpPeer
    talking: asyncio.Task[int] | None = None


@contextlib.asynccontextmanager
async def cloud_online(
    tmp_path: Path,
    *,
    scenario: str,
    hold_ms: int = 0,
    reason: str | None = None,
    media_timeout: float = 1.0,
    cloud_media_timeout: float | None = None,
    srtp: bool = False,
) -> AsyncIterator[tuple[RunningAppliance, Cloud]]:
    """A cloud (a SIPp UAS that answers OPTIONS probes and calls, with SRTP if ``srtp``) and the appliance
    that routes to it, once the appliance has found it ONLINE. ``media_timeout`` is the relay's
    (``[media] timeout``), ``cloud_media_timeout`` the cloud leg's (``[cloud] media_timeout``; None: the
    same as the relay's)."""
    peer = await RtpPeer.open(3, address=CLOUD_IP, event_pt=EVENT_PT, srtp=srtp)
    port = free_port(CLOUD_IP)
    values = {} if reason is None else {"reason": reason}
    # No -m: SIPp counts each OPTIONS it answers as a call, and would stop answering them after the first.
    uas = SippProcess.uas(
        write_scenario(SCENARIOS / scenario, tmp_path / "cloud-scenario", peer.sdp(origin="cloud"), **values),
        workdir=tmp_path / "cloud", local_ip=CLOUD_IP, local_port=port, trace_messages=True,
        duration_ms=hold_ms, recv_timeout_ms=30000,
    )  # fmt: skip
    config = media_config(f"timeout = {media_timeout}") + (
        f'[cloud]\ntrunk = "sip:{CLOUD_IP}:{port}"\nprobe_interval = 0.5\nprobe_timeout = 0.4\n'
        f"probe_failures = 2\nmedia_timeout = {cloud_media_timeout or media_timeout}\n"
    )
    cloud = Cloud(uas, peer)
    try:
        with uas:
            await asyncio.wait_for(uas.wait_bound_async(), 5)
            async with running(tmp_path, config) as apps:
                await asyncio.to_thread(apps[0].wait_for, 'appliance_mode{mode="ONLINE"}', 1, 10.0)
                yield apps[0], cloud
    finally:
        peer.stop()
        if cloud.talking is not None:
            await cloud.talking
        peer.close()


async def answered_by_the_cloud(caller: Caller, cloud: Cloud) -> None:
    """The cloud's peer talks to the relay port its INVITE named; both hear each other through the relay."""
    at_cloud = await sipp_received_sdp(cloud.uas.workdir, "INVITE ", within=5)
    assert at_cloud.address == LOOPBACK, at_cloud.text
    cloud.peer.set_remote(at_cloud)
    cloud.talking = asyncio.create_task(cloud.peer.talk())
    await hear_each_other(caller.peer, cloud.peer, 10)


async def hear_each_other(one: RtpPeer, other: RtpPeer, packets: int) -> None:
    """Wait until each of two peers has received more than ``packets`` of the other's packets."""
    await until(
        lambda: one.indices_from(other)[packets:] and other.indices_from(one)[packets:],
        within=5, what=f"peers {one.tag} and {other.tag} hear each other",
    )  # fmt: skip


def from_ivr(caller: Caller, cloud: Cloud) -> list[Received]:
    """What the caller received that the cloud did not send."""
    return [r for r in caller.peer.received if r.payload[:1] != bytes([cloud.peer.tag])]


async def assert_rescued(app: RunningAppliance, caller: Caller, cloud: Cloud, cut: float, q850: int) -> None:
    """Within 3 s of the ``cut`` (wall time) the caller hears the rescue flow's greeting in its language
    (its first 2 s checked packet by packet) on the same RTP session (the relay port it was sending to, its
    own socket); counted and kept in the outbox with the Q.850 cause of the failure."""
    relayed = len(caller.peer.received)
    greeting = await caller.hears("de", "service_interruption", after=0, within=RESCUE_WITHIN + 2)
    after = wall_of(caller.peer.received[greeting].at) - cut
    assert after <= RESCUE_WITHIN, f"the IVR was heard {after:.3f} s after the cut"
    print(f"rescue: the IVR was heard {after:.3f} s after the cut")
    assert greeting >= relayed - 5  # after the cloud's audio (a few of its last packets may trail)
    await hear_whole(caller, "de", "service_interruption", greeting, seconds=2.0)
    assert {r.local_port for r in caller.peer.received} == {caller.peer.port}
    assert not caller.peer.undecryptable, f"{len(caller.peer.undecryptable)} packets failed to unprotect"
    assert {r.source for r in caller.peer.received} == {caller.sdp.target}
    await until(lambda: app.metric("appliance_calls_rescued_total") == 1, within=5, what="one call rescued")
    rescued = only(outbox(app), "call.rescued")
    assert rescued.body["flow"] == "default" and rescued.body["q850"] == q850, rescued.body


async def caller_kept_the_line(caller: Caller) -> None:
    """The caller hangs up itself at the end of its hold time: it received no BYE and no re-INVITE."""
    result = await caller.finished(within=20)
    assert result.all_successful, result.describe()
    received = [m.start_line for m in sipp_messages(caller.uac.workdir) if m.direction == "received"]
    assert not [line for line in received if line.startswith(("BYE ", "INVITE "))], received


async def session_rescued(app: RunningAppliance) -> None:
    """The IVR session of the rescued call, which its caller hung up, is recorded as rescued."""
    (record,) = await wait_outbox(app, "ivr.session", 1)
    assert record.body["caller"] == GERMAN and record.body["language"] == "de", record.body
    assert record.body["rescued"] is True and record.body["outcome"] == "abandoned", record.body


@pytest.mark.parametrize(
    ("srtp", "media_timeout", "cloud_media_timeout"),
    [(False, 1.0, None), (True, 1.0, None), (False, 30.0, 1.5)],
    ids=["rtp", "srtp", "cloud-leg-timeout"],
)
async def test_a_call_whose_cloud_media_stops_is_rescued_into_the_ivr(
    tmp_path: Path, srtp: bool, media_timeout: float, cloud_media_timeout: float | None
) -> None:
    # With SRTP (the relay follows the caller's profile on the cloud leg) the IVR's prompts reach the
    # caller protected under the key the caller's leg negotiated. With cloud-leg-timeout the relay's media
    # timeout is far off: only the cloud leg's own short one can rescue the call in time.
    async with cloud_online(
        tmp_path,
        scenario="media_uas.xml",
        srtp=srtp,
        media_timeout=media_timeout,
        cloud_media_timeout=cloud_media_timeout,
    ) as (app, cloud):
        async with calling(
            app, tmp_path / "caller", GERMAN, tag=1, scenario="ivr_uac_hangup.xml", hold_ms=HOLD_MS, srtp=srtp
        ) as caller:
            assert (caller.sdp.proto == "RTP/SAVP") == srtp, caller.sdp.text
            await answered_by_the_cloud(caller, cloud)
            cloud.peer.stop()  # the cut: the cloud's media is gone, its signalling says nothing
            assert cloud.talking is not None
            await cloud.talking
            assert cloud.peer.last_sent_at is not None
            await assert_rescued(app, caller, cloud, wall_of(cloud.peer.last_sent_at), 102)  # media timeout
            await caller_kept_the_line(caller)
        await session_rescued(app)
        # The failed cloud leg was released.
        messages = sipp_messages(cloud.uas.workdir)
        bye = [m for m in messages if m.start_line.startswith("BYE ")]
        assert bye and bye[0].direction == "received", [m.start_line for m in messages]


async def test_calls_on_a_cloud_that_vanishes_are_rescued_as_the_appliance_turns_survivable(
    tmp_path: Path,
) -> None:
    # A media timeout far off: the rescue must come from the probes' verdict, not from the call's media.
    async with cloud_online(tmp_path, scenario="media_uas.xml", media_timeout=30.0) as (app, cloud):
        async with calling(
            app, tmp_path / "caller", GERMAN, tag=1, scenario="ivr_uac_hangup.xml", hold_ms=HOLD_MS
        ) as caller:
            await answered_by_the_cloud(caller, cloud)
            cloud.uas.kill()  # the cloud is gone: its probes go unanswered, its media stops
            cloud.peer.stop()
            assert cloud.talking is not None
            await cloud.talking
            assert cloud.peer.last_sent_at is not None
            # Network out of order (Q.850 cause 38).
            await assert_rescued(app, caller, cloud, wall_of(cloud.peer.last_sent_at), 38)
            assert app.metric('appliance_mode{mode="SURVIVABLE"}') == 1
            await caller_kept_the_line(caller)
        await session_rescued(app)


async def test_a_call_ringing_on_a_cloud_that_vanishes_is_answered_by_the_ivr_at_once(tmp_path: Path) -> None:
    # The cloud rings for a minute, far past Timer B (32 s): only leaving the cloud as the appliance turns
    # SURVIVABLE answers the caller in time.
    async with cloud_online(tmp_path, scenario="media_uas.xml", hold_ms=60000) as (app, cloud):

        async def vanish_while_ringing() -> float:
            workdir = cloud.uas.workdir
            await until(lambda: sipp_sent_at(workdir, "SIP/2.0 180") is not None, within=10, what="it rang")
            cloud.uas.kill()  # its probes go unanswered, the INVITE is never answered
            return time.time()

        vanished = asyncio.create_task(vanish_while_ringing())
        async with calling(
            app, tmp_path / "caller", GERMAN, tag=1, scenario="ivr_uac_hangup.xml", hold_ms=3000
        ) as caller:
            cut = await vanished
            answered_after = time.time() - cut
            print(f"move: the IVR answered {answered_after:.3f} s after the cloud vanished")
            assert answered_after <= RESCUE_WITHIN + 2
            greeting = await caller.hears("de", "service_interruption", after=0)
            await hear_whole(caller, "de", "service_interruption", greeting, seconds=1.0)
            result = await caller.finished(within=20)
            assert result.all_successful, result.describe()
        received = [m.start_line for m in sipp_messages(caller.uac.workdir) if m.direction == "received"]
        assert "SIP/2.0 180 Ringing" in received, received
        (record,) = await wait_outbox(app, "call.record", 1)
        legs = [(leg["kind"], leg["outcome"], leg.get("q850")) for leg in record.body["legs"]]
        assert legs == [("cloud", "failed", 38), ("ivr", "answered", None)], record.body
        assert record.body["route"] == "ivr" and record.body["rescued"] is False, record.body
        assert app.metric("appliance_calls_rescued_total") == 0


def sipp_sent_at(workdir: Path, start: str) -> float | None:
    """The wall time at which SIPp in ``workdir`` logged sending the first message whose start line
    begins with ``start`` (its ``-trace_msg`` log stamps each message in local time), or None."""
    for log in workdir.glob("*_messages.log"):
        parts = re.split(r"^-{20,} ([0-9-]+ [0-9:.]+)\n", log.read_text(errors="replace"), flags=re.MULTILINE)
        for stamp, entry in zip(parts[1::2], parts[2::2], strict=False):
            head, _, message = entry.partition("\n\n")
            if " sent " in head and message.startswith(start):
                return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return None


async def cloud_bye_sent(cloud: Cloud, *, within: float = 10.0) -> float:
    """Wait for the cloud's SIPp to send its BYE; the wall time it did."""
    workdir = cloud.uas.workdir
    await until(lambda: sipp_sent_at(workdir, "BYE ") is not None, within=within, what="the cloud sent BYE")
    sent = sipp_sent_at(workdir, "BYE ")
    assert sent is not None
    return sent


async def test_a_call_the_cloud_hangs_up_on_with_a_failure_cause_is_rescued(tmp_path: Path) -> None:
    async with cloud_online(
        tmp_path, scenario="ivr_uas_cloud_bye.xml", hold_ms=1500, reason="Reason: Q.850;cause=38"
    ) as (app, cloud):
        async with calling(
            app, tmp_path / "caller", GERMAN, tag=1, scenario="ivr_uac_hangup.xml", hold_ms=HOLD_MS
        ) as caller:
            await answered_by_the_cloud(caller, cloud)
            cut = await cloud_bye_sent(cloud)
            cloud.peer.stop()
            await assert_rescued(app, caller, cloud, cut, 38)
            await caller_kept_the_line(caller)
        await session_rescued(app)
        # The cloud's BYE was answered.
        assert [m for m in sipp_messages(cloud.uas.workdir) if m.start_line.startswith("SIP/2.0 200")
                and m.headers.get("cseq", "").endswith(" BYE")]  # fmt: skip


async def test_a_plain_bye_from_the_cloud_hangs_up_the_caller(tmp_path: Path) -> None:
    async with cloud_online(
        tmp_path, scenario="ivr_uas_cloud_bye.xml", hold_ms=1500, reason="Subject: end of call"
    ) as (app, cloud):
        async with calling(app, tmp_path / "caller", GERMAN, tag=1, recv_timeout_ms=10000) as caller:
            await answered_by_the_cloud(caller, cloud)
            await cloud_bye_sent(cloud)
            cloud.peer.stop()
            result = await caller.finished(within=5)  # ivr_uac.xml: it waits for a BYE and answers it
            assert result.all_successful, result.describe()
            assert from_ivr(caller, cloud) == [], "the caller heard something other than the cloud"
        assert app.metric("appliance_calls_rescued_total") == 0
        assert not [e for e in outbox(app) if e.type == "call.rescued"]
