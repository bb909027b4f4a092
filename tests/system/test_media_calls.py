"""Calls through the appliance with real RTP: media anchored at the relay, latching, SRTP, recording, timeout.

Each test runs the appliance as a process, a SIPp caller (UAC) and a SIPp callee (UAS) reached through a
``trunk:`` route, and two :class:`~tests.system.rtp_peer.RtpPeer` endpoints that stand for the phones'
media: the SDP each SIPp instance sends names its peer's socket, and each peer sends to the relay port the
SDP its SIPp instance received (read from SIPp's message trace). So every packet the peers exchange has
crossed the appliance's media worker, and what arrives is compared with what was sent, payload by payload.
Beyond that: re-latching after a NAT rebinding and strangers kept out, SRTP bridged to RTP either way,
recordings that decrypt to the audio, media timeouts (and none while on hold), PCMA/PCMU transcoding with
RFC 4733 digits, relay ports other programs hold, and a media worker killed mid-call.

Each side has a loopback address of its own (caller 127.0.0.2, callee 127.0.0.3, appliance and relay
127.0.0.1), so that "topology hidden" is checkable: neither side's SDP nor its packets name the other.

The media workers relay in userspace here (``media.fastpath`` is off by default). To run the same tests
with the kernel fast path, which needs ``net.ipv4.ip_forward = 1``, give them a network namespace of their
own rather than changing the host::

    unshare -n sh -c 'ip link set lo up && sysctl -qw net.ipv4.ip_forward=1 &&
        MEDIA_TESTS_FASTPATH=1 .venv/bin/pytest -q tests/system/test_media_calls.py'
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import warnings
import wave
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.media.relay import DEFAULT_RELATCH_AFTER
from appliance.media.supervisor import split_range
from tests.system.appliance_proc import RunningAppliance, start_appliance
from tests.system.rtp_peer import (
    LOOPBACK,
    PAYLOAD_BYTES,
    PCMA,
    PCMU,
    AudioSdp,
    Received,
    RtpPeer,
    sipp_messages,
    sipp_received,
    sipp_received_sdp,
    write_scenario,
)
from tests.system.sipp import SIPP_BINARY, SippProcess, SippResult, free_port

with warnings.catch_warnings():
    # audioop is deprecated (PEP 594) but is an A-law decoder independent of the appliance's own.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

pytestmark = [pytest.mark.system, pytest.mark.timeout(30)]
SCENARIOS = Path(__file__).parent / "scenarios"
CALLED = "+4930123456"
RELAY = LOOPBACK  # [media] address, the default
CALLER_IP = "127.0.0.2"
CALLEE_IP = "127.0.0.3"
# Run with media.fastpath = true (see the module's docstring).
FASTPATH = os.environ.get("MEDIA_TESTS_FASTPATH") == "1"
SRTP_AUTH_TAG = 10  # AES_CM_128_HMAC_SHA1_80 appends an 80-bit tag (RFC 3711 §4.2)

if shutil.which(SIPP_BINARY) is None:  # pragma: no cover - .ci/run installs sip-tester
    pytest.skip("SIPp is not installed (Debian package sip-tester)", allow_module_level=True)


@dataclass
class Call:
    """One call set up through the appliance, with both peers pointed at the relay."""

    app: RunningAppliance
    uac: SippProcess
    uas: SippProcess
    caller: RtpPeer
    callee: RtpPeer
    at_caller: AudioSdp  # the SDP the caller got in the 200 OK
    at_callee: AudioSdp  # the SDP the callee got in the INVITE
    rtp_range: tuple[int, int]
    squatted: frozenset[int] = frozenset()  # relay-range ports another process held from the start
    log: str = ""  # the appliance's stderr, once it has stopped

    def assert_offloaded(self) -> None:
        """With MEDIA_TESTS_FASTPATH=1, that the kernel did carry this (eligible) call; call it after the
        call's ``async with`` block, when the log is complete."""
        if FASTPATH:
            assert "handed to the kernel fast path" in self.log, "the fast path never took the call"

    async def finished(self, within: float = 10.0) -> tuple[SippResult, SippResult]:
        """Wait for the caller and then the callee to end their call; both results."""
        async with asyncio.timeout(within):
            caller = await self.uac.wait_async()
            callee = await self.uas.wait_async()
        return caller, callee


def ip_forwarding() -> bool:
    """Whether this network namespace forwards IPv4, which the kernel fast path needs."""
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"


def bound_udp_ports() -> set[int]:
    """Every UDP port some socket on this host (this network namespace) is bound to, on any address."""
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)  # the header
            for line in f:
                fields = line.split(maxsplit=2)
                if len(fields) > 1:
                    ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def rtp_range() -> tuple[int, int]:
    """A range of 300 ports that nothing holds now, outside the kernel's ephemeral ports (32768-60999) and
    the default 20000-29999, picked at random so that parallel runs (and benchmarks) rarely meet."""
    bound = bound_udp_ports()  # once: a benchmark can hold thousands, and the table is read whole
    for _ in range(200):
        base = random.choice((random.randrange(10000, 19700, 2), random.randrange(61000, 65200, 2)))
        if bound.isdisjoint(range(base, base + 300)):
            return base, base + 299
    raise OSError("no free range of 300 UDP ports in 10000-19999 or 61000-65499")


@contextlib.asynccontextmanager
async def trunk_call(
    tmp_path: Path,
    caller: RtpPeer,
    callee: RtpPeer,
    *,
    route: str = "",
    media: str = "",
    hold_ms: int = 3000,
    uac_scenario: str = "media_uac.xml",
    uas_scenario: str = "media_uas.xml",
    uac_values: Mapping[str, str] | None = None,
    uas_values: Mapping[str, str] | None = None,
    recv_timeout_ms: int = 8000,
    squat_pairs: int = 0,
    workers: int = 1,
) -> AsyncIterator[Call]:
    """Place one call caller → appliance → callee over a trunk route and yield it once both peers know
    the relay's address. ``route`` adds keys to the ``[[routes]]`` table, ``media`` to ``[media]``;
    ``uac_values``/``uas_values`` fill the scenarios' other placeholders. ``squat_pairs`` RTP/RTCP pairs at
    the start of each of two workers' port slices are bound by the test before the appliance starts, as
    another program on the box might hold them. One media worker unless ``workers`` says otherwise: one
    call needs no more, and each worker is a process to start."""
    if FASTPATH:
        if not ip_forwarding():
            pytest.fail(
                "MEDIA_TESTS_FASTPATH=1 needs net.ipv4.ip_forward = 1: run in a namespace (docstring)"
            )
        media += "\nfastpath = true"
    low, high = rtp_range()
    squatters: list[socket.socket] = []
    media += f"\nworkers = {workers}"
    if squat_pairs:
        # The workers share the range in slices (appliance.media.supervisor).
        for first, _ in split_range(low, high, workers):
            for port in range(first, first + 2 * squat_pairs):
                squatters.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                squatters[-1].bind((RELAY, port))
    uas_port = free_port(CALLEE_IP)
    uas = SippProcess.uas(
        write_scenario(
            SCENARIOS / uas_scenario, tmp_path / "uas-scenario", callee.sdp(origin="callee"),
            **(uas_values or {}),
        ),
        workdir=tmp_path / "uas", local_ip=CALLEE_IP, local_port=uas_port, max_calls=1,
        trace_messages=True, recv_timeout_ms=recv_timeout_ms,
    )  # fmt: skip
    config = (
        f"[media]\nrtp_port_min = {low}\nrtp_port_max = {high}\n{media}\n"
        f'[[routes]]\nmatch = "*"\ndestinations = ["trunk:sip:{CALLEE_IP}:{uas_port}"]\n{route}\n'
    )
    app: RunningAppliance | None = None
    call: Call | None = None
    try:
        with uas:
            await asyncio.wait_for(uas.wait_bound_async(), 5)
            app = start_appliance(tmp_path, config)
            scenario = write_scenario(
                SCENARIOS / uac_scenario, tmp_path / "uac-scenario", caller.sdp(origin="caller"),
                **(uac_values or {}),
            )  # fmt: skip
            uac = SippProcess.uac(
                scenario, app.sip, workdir=tmp_path / "uac", local_ip=CALLER_IP, max_calls=1,
                duration_ms=hold_ms, service=CALLED, trace_messages=True, recv_timeout_ms=recv_timeout_ms,
            )  # fmt: skip
            with uac:
                at_callee = await sipp_received_sdp(uas.workdir, "INVITE ")
                at_caller = await sipp_received_sdp(uac.workdir, "SIP/2.0 200")
                caller.set_remote(at_caller)
                callee.set_remote(at_callee)
                held = frozenset(sock.getsockname()[1] for sock in squatters)
                call = Call(app, uac, uas, caller, callee, at_caller, at_callee, (low, high), held)
                yield call
    finally:
        if app is not None:
            with contextlib.suppress(OSError):
                figures = {k: v for k, v in app.metrics().items() if k.startswith("appliance_media")}
                print(f"appliance media metrics: {figures}")  # shown by pytest when the test fails
            log = app.stop()
            if call is not None:
                call.log = log
            (tmp_path / "appliance.log").write_text(log)
            print("appliance stderr (tail):\n" + log[-6000:])  # shown by pytest when the test fails
        caller.close()
        callee.close()
        for sock in squatters:
            sock.close()


@contextlib.asynccontextmanager
async def peers(
    *specs: tuple[int, str, bool], pcmu: Collection[int] = (), event_pt: int | None = None
) -> AsyncIterator[list[RtpPeer]]:
    """RTP peers, each ``(tag, address, srtp)``, closed on leaving; those whose tag is in ``pcmu`` speak
    PCMU, the others PCMA; all with telephone-events on ``event_pt`` if given."""
    opened = [
        await RtpPeer.open(
            tag, address=address, srtp=srtp, payload_type=PCMU if tag in pcmu else PCMA, event_pt=event_pt
        )
        for tag, address, srtp in specs
    ]
    try:
        yield opened
    finally:
        for peer in opened:
            peer.close()


def assert_relayed(call: Call) -> None:
    """Both SDPs name the relay (its address and an even port of the configured range) and nothing of the
    other side: not its address, port or origin."""
    low, high = call.rtp_range
    for sdp, other, origin in (
        (call.at_caller, call.callee, "callee"),
        (call.at_callee, call.caller, "caller"),
    ):
        assert sdp.address == RELAY, sdp.text
        assert low <= sdp.port <= high and sdp.port % 2 == 0, (
            f"SDP names port {sdp.port}, not an even port of the relay range {low}-{high} "
            f"(the other peer's port is {other.port}):\n{sdp.text}"
        )
        assert other.address not in sdp.text and f"o={origin} " not in sdp.text, sdp.text
        assert sdp.port not in call.squatted, f"SDP names port {sdp.port}, which another process holds"


def metric_sum(app: RunningAppliance, name: str, **labels: str) -> float:
    """The sum of ``name`` over every label set that includes ``labels`` (e.g. over all workers)."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for key, value in app.metrics().items():
        metric, _, rest = key.partition("{")
        if metric == name and all(w in rest for w in wanted):
            total += value
    return total


async def wait_metric(
    app: RunningAppliance, name: str, value: float, *, within: float = 3.0, **labels: str
) -> None:
    """Bounded wait for a metric (summed as :func:`metric_sum`) to read ``value``: the figures come from
    the workers' once-a-second reports and from each call's final statistics after hang-up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (seen := metric_sum(app, name, **labels)) != value:
        if loop.time() > deadline:
            raise AssertionError(f"{name}{labels or ''} reads {seen}, expected {value}")
        await asyncio.sleep(0.1)


def assert_successful(result: SippResult) -> None:
    assert result.all_successful, result.describe()


# -- (a) --------------------------------------------------------------------------------------------------


async def test_rtp_both_ways_through_the_relay_arrives_intact_and_in_order(tmp_path: Path) -> None:
    async with (
        peers((1, CALLER_IP, False), (2, CALLEE_IP, False)) as (caller, callee),
        trunk_call(tmp_path, caller, callee, squat_pairs=10, workers=2) as call,
    ):
        assert_relayed(call)  # and not on a port another program held when the appliance started
        await asyncio.gather(caller.send(100), callee.send(100))
        with contextlib.suppress(TimeoutError):
            await asyncio.gather(caller.wait_received(100, within=1), callee.wait_received(100, within=1))
        assert callee.indices_from(caller) == list(range(100))
        assert caller.indices_from(callee) == list(range(100))
        assert len(callee.received) == len(caller.received) == 100  # nothing else arrived
        # Each peer hears only the relay: the port its SDP named, never the other phone.
        assert {r.source for r in callee.received} == {call.at_callee.target}
        assert {r.source for r in caller.received} == {call.at_caller.target}
        assert {len(r.payload) for r in callee.received} == {PAYLOAD_BYTES}
        caller_result, callee_result = await call.finished()
        assert_successful(caller_result)
        assert_successful(callee_result)
        # The call's final statistics, per direction: 100 in from each leg's peer, 100 out to each.
        await wait_metric(call.app, "appliance_media_relayed_calls_active", 0)
        await wait_metric(call.app, "appliance_media_packets_total", 200, direction="in")
        await wait_metric(call.app, "appliance_media_packets_total", 200, direction="out")
        await wait_metric(call.app, "appliance_media_octets_total", 200 * PAYLOAD_BYTES, direction="in")
        await wait_metric(call.app, "appliance_media_packets_lost_total", 0, direction="in")
    call.assert_offloaded()  # with MEDIA_TESTS_FASTPATH=1


# -- (b) --------------------------------------------------------------------------------------------------


async def test_a_new_source_port_relatches_and_a_stranger_is_not_delivered(tmp_path: Path) -> None:
    async with (
        peers((1, CALLER_IP, False), (2, CALLEE_IP, False), (3, CALLER_IP, False)) as (
            caller,
            callee,
            stranger,
        ),
        trunk_call(tmp_path, caller, callee, hold_ms=4000) as call,
    ):
        assert_relayed(call)
        # Both sides latch first, so that a stranger meets latched ports on both legs.
        await asyncio.gather(caller.send(10), callee.send(10))
        with contextlib.suppress(TimeoutError):  # what arrived is checked below
            await asyncio.gather(caller.wait_received(10, within=1), callee.wait_received(10, within=1))

        async def stranger_bursts() -> None:
            # Bursts of five back to back, with an SSRC of its own, at both relay ports, between the
            # caller's packets: more than the re-latch run, but never a consistent stream of the SSRC.
            for burst in range(4):
                for i in range(5):
                    stranger.send_one(10 * burst + i, to=call.at_caller.target)
                    stranger.send_one(100 + 10 * burst + i, to=call.at_callee.target)
                await asyncio.sleep(0.05)

        await asyncio.gather(caller.send(20, start=10), callee.send(20, start=10), stranger_bursts())
        old_port = caller.sending_port
        new_port = await caller.rebind()  # the caller's NAT re-maps it to a new source port
        await asyncio.gather(caller.send(50, start=30), callee.send(50, start=30))
        await callee.send(10, start=80)  # after the move: these must reach the caller's new port
        with contextlib.suppress(TimeoutError):  # the last of them in flight; checked below
            await caller.wait_received(90, within=1)

        got = callee.indices_from(caller)
        assert got[:30] == list(range(30)), got
        after = got[30:]
        assert after, f"nothing the caller sent from its new port (packets 30-79) reached the callee: {got}"
        assert after == list(range(after[0], 80)), got
        print(f"re-latched: {after[0] - 30} packets from the new port dropped before it took over")
        # The first packets from the new port are held back until it proves itself, but not for long.
        assert 1 <= after[0] - 30 <= DEFAULT_RELATCH_AFTER, f"re-latched after {after[0] - 30} packets"
        assert stranger.tag not in {r.payload[0] for r in callee.received + caller.received}
        assert {r.source for r in callee.received} == {call.at_callee.target}

        heard = [(i, r.local_port) for i, r in caller.arrivals_from(callee)]
        assert [i for i, _ in heard] == list(range(90))
        late = [port for i, port in heard if i >= 80]
        assert late == [new_port] * 10, f"after re-latching the callee's audio went to {late}"
        assert all(port == old_port for i, port in heard if i < 30)
        # Every packet not relayed was counted as a latching drop: the stranger's 40 and the new port's
        # packets before it took over.
        # With the kernel fast path the packet that moved the latch reached the worker while the kernel still
        # carried the call: judged, not sent, and counted as lost to the hand-over instead.
        handover = 1 if FASTPATH else 0
        dropped = 40 + after[0] - 30 - handover
        await wait_metric(call.app, "appliance_media_worker_packets_dropped_total", dropped, reason="latch")
        if handover:
            await wait_metric(call.app, "appliance_media_worker_packets_dropped_total", 1, reason="handover")
        caller_result, callee_result = await call.finished()
    assert_successful(caller_result)
    assert_successful(callee_result)
    call.assert_offloaded()  # with MEDIA_TESTS_FASTPATH=1


# -- (c) --------------------------------------------------------------------------------------------------


async def test_srtp_caller_bridged_to_a_plain_rtp_callee(tmp_path: Path) -> None:
    async with (
        peers((1, CALLER_IP, True), (2, CALLEE_IP, False)) as (caller, callee),
        trunk_call(tmp_path, caller, callee, route='srtp = "off"') as call,
    ):
        assert_relayed(call)
        assert call.at_caller.proto == "RTP/SAVP" and call.at_caller.crypto, call.at_caller.text
        assert call.at_caller.key() != caller.local_key  # the relay keys its own direction
        assert call.at_callee.proto == "RTP/AVP" and not call.at_callee.crypto, call.at_callee.text
        await asyncio.gather(caller.send(50), callee.send(50))
        # Forgeries from the caller's own address (the latched source) fail SRTP authentication.
        for index in range(50, 55):
            caller.send_raw(caller.forged(index))
        with contextlib.suppress(TimeoutError):
            await asyncio.gather(caller.wait_received(50, within=1), callee.wait_received(50, within=1))
        # The callee gets plain RTP whose payloads are the caller's plaintext, and no forgery.
        assert callee.indices_from(caller) == list(range(50))
        assert {r.size for r in callee.received} == {12 + PAYLOAD_BYTES}
        # The caller gets SRTP: it authenticates and decrypts under the key the relay's SDP gave.
        assert not caller.undecryptable, f"{len(caller.undecryptable)} packets failed to unprotect"
        assert caller.indices_from(callee) == list(range(50))
        assert {r.size for r in caller.received} == {12 + PAYLOAD_BYTES + SRTP_AUTH_TAG}
        await wait_metric(call.app, "appliance_media_worker_packets_dropped_total", 5, reason="srtp-auth")
        caller_result, callee_result = await call.finished()
    assert_successful(caller_result)
    assert_successful(callee_result)


async def test_plain_caller_bridged_to_an_srtp_callee(tmp_path: Path) -> None:
    async with (
        peers((1, CALLER_IP, False), (2, CALLEE_IP, True)) as (caller, callee),
        trunk_call(tmp_path, caller, callee, route='srtp = "sdes"') as call,
    ):
        assert_relayed(call)
        # The relay offers the callee SDES-keyed SRTP (the test's callee answers with its own key, tag 1).
        assert call.at_callee.proto == "RTP/SAVP" and call.at_callee.crypto, call.at_callee.text
        assert call.at_callee.crypto[0][0] == 1, call.at_callee.text
        assert call.at_caller.proto == "RTP/AVP" and not call.at_caller.crypto, call.at_caller.text
        await asyncio.gather(caller.send(50), callee.send(50))
        with contextlib.suppress(TimeoutError):
            await asyncio.gather(caller.wait_received(50, within=1), callee.wait_received(50, within=1))
        # The callee gets SRTP that decrypts to the caller's payloads; the caller gets the callee's plaintext.
        assert not callee.undecryptable, f"{len(callee.undecryptable)} packets failed to unprotect"
        assert callee.indices_from(caller) == list(range(50))
        assert {r.size for r in callee.received} == {12 + PAYLOAD_BYTES + SRTP_AUTH_TAG}
        assert caller.indices_from(callee) == list(range(50))
        assert {r.size for r in caller.received} == {12 + PAYLOAD_BYTES}
        caller_result, callee_result = await call.finished()
    assert_successful(caller_result)
    assert_successful(callee_result)


# -- (d) --------------------------------------------------------------------------------------------------


def decrypt_recording(recording: Path, kek: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """The operator's command; without --key-id the KEK goes by its fingerprint, as the worker names it."""
    return subprocess.run(
        [sys.executable, "-m", "appliance.media.recording_cli", "decrypt", str(recording), str(out),
         "--key-file", str(kek)],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip


def channels(path: Path) -> tuple[bytes, bytes]:
    """The two 16-bit channels of a WAV, each with its digital silence (gaps) removed."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        frames = wav.readframes(wav.getnframes())
    samples = [frames[i : i + 2] for i in range(0, len(frames), 2)]
    zero = b"\x00\x00"
    return (
        b"".join(s for s in samples[0::2] if s != zero),
        b"".join(s for s in samples[1::2] if s != zero),
    )


async def test_recording_decrypts_to_the_audio_both_sides_sent(tmp_path: Path) -> None:
    kek = tmp_path / "recording.kek"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    recordings = tmp_path / "recordings"
    media = f'recording_key = "{kek}"\nrecording_dir = "{recordings}"'
    async with (
        peers((1, CALLER_IP, False), (2, CALLEE_IP, False)) as (caller, callee),
        trunk_call(tmp_path, caller, callee, route="record = true", media=media, hold_ms=2500) as call,
    ):
        assert_relayed(call)
        await asyncio.gather(caller.send(50), callee.send(50))
        with contextlib.suppress(TimeoutError):
            await asyncio.gather(caller.wait_received(50, within=1), callee.wait_received(50, within=1))
        assert callee.indices_from(caller) == list(range(50))
        assert caller.indices_from(callee) == list(range(50))
        caller_result, callee_result = await call.finished()
        assert_successful(caller_result)
        assert_successful(callee_result)
        # The call is over; the worker closes the file when call control deletes the call.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        wav = tmp_path / "call.wav"
        while True:
            files = sorted(recordings.glob("*.rec"))
            outcome = decrypt_recording(files[0], kek, wav) if len(files) == 1 else None
            if outcome is not None and outcome.returncode == 0:
                break
            if loop.time() > deadline:
                detail = outcome.stderr if outcome is not None else ""
                pytest.fail(f"no single complete recording in {recordings}: {files} {detail}")
            await asyncio.sleep(0.1)
    sent_by_caller = audioop.alaw2lin(b"".join(caller.payload(i) for i in range(50)), 2)
    sent_by_callee = audioop.alaw2lin(b"".join(callee.payload(i) for i in range(50)), 2)
    first, second = channels(wav)
    assert {first, second} == {sent_by_caller, sent_by_callee}, (
        f"channels of {len(first)} and {len(second)} octets; sent {len(sent_by_caller)} and "
        f"{len(sent_by_callee)}; caller's audio in channel 0: {first == sent_by_caller}, "
        f"in channel 1: {second == sent_by_caller}"
    )


# -- (e) --------------------------------------------------------------------------------------------------


async def test_media_timeout_hangs_up_within_the_configured_time(tmp_path: Path) -> None:
    timeout = 2.0
    async with (
        peers((1, CALLER_IP, False), (2, CALLEE_IP, False)) as (caller, callee),
        trunk_call(
            tmp_path,
            caller,
            callee,
            media=f"timeout = {timeout}",
            uac_scenario="media_uac_bye_in.xml",
            recv_timeout_ms=8000,
        ) as call,
    ):
        assert_relayed(call)
        loop = asyncio.get_running_loop()
        callee_talking = asyncio.create_task(callee.send(400))  # the callee keeps talking throughout
        try:
            await caller.send(25)
            assert caller.last_sent_at is not None
            last = caller.last_sent_at
            # The caller has gone silent. Bounded wait for the appliance's BYE, seen in SIPp's trace.
            await sipp_received(call.uac.workdir, "BYE ", method="BYE", within=timeout + 3)
            silent_for = loop.time() - last
        finally:
            callee.stop()
            await callee_talking
        assert abs(silent_for - timeout) <= 0.5, f"BYE came {silent_for:.3f} s after the last packet"
        print(f"media timeout: BYE {silent_for:.3f} s after the caller's last packet (timeout {timeout} s)")
        assert callee.indices_from(caller) == list(range(25))
        await wait_metric(call.app, "appliance_media_timeouts_total", 1)
        caller_result, callee_result = await call.finished()
    assert_successful(caller_result)
    assert_successful(callee_result)
    # The callee's leg was ended too.
    assert any(
        m.direction == "received" and m.start_line.startswith("BYE ") for m in sipp_messages(call.uas.workdir)
    )
    call.assert_offloaded()  # with MEDIA_TESTS_FASTPATH=1


# -- transcoding ------------------------------------------------------------------------------------------


def g711_linear(payload: bytes, payload_type: int) -> list[int]:
    """16-bit samples of a G.711 payload, by a decoder independent of the appliance's."""
    decoded = audioop.alaw2lin(payload, 2) if payload_type == PCMA else audioop.ulaw2lin(payload, 2)
    return [int.from_bytes(decoded[i : i + 2], sys.byteorder, signed=True) for i in range(0, len(decoded), 2)]


def assert_same_audio(sent: RtpPeer, received: list[Received], payload_type: int) -> None:
    """``received`` are ``sent``'s packets in order, in ``payload_type``, and sound the same: each sample
    within the two laws' quantisation (A-law and mu-law steps are at most 1/16 of the level, and mu-law
    resolves low levels finer than A-law's 16) of what was sent. Unconverted octets fail this: the two
    laws map the same octet to unrelated levels."""
    assert [r.payload_type for r in received] == [payload_type] * len(received)
    for index, packet in enumerate(received):
        want = g711_linear(sent.payload(index), sent.payload_type)
        got = g711_linear(packet.payload, payload_type)
        worst = max(abs(w - g) - max(32, abs(w) // 8) for w, g in zip(want, got, strict=True))
        assert worst <= 0, f"packet {index}: a sample is {worst} beyond the quantisation tolerance"


async def test_pcma_caller_and_pcmu_callee_are_transcoded_and_digits_pass(tmp_path: Path) -> None:
    async with (
        peers((1, CALLER_IP, False), (2, CALLEE_IP, False), pcmu={2}, event_pt=101) as (caller, callee),
        trunk_call(tmp_path, caller, callee) as call,
    ):
        assert_relayed(call)
        # The caller offered PCMA alone; the relay offers the callee PCMU as well (transcode = true by
        # default) and answers the caller with the codec it offered. Telephone-event rides along.
        assert call.at_callee.payload_types[0] == PCMA, call.at_callee.text
        assert PCMU in call.at_callee.payload_types, call.at_callee.text
        assert call.at_caller.payload_types == (PCMA, 101), call.at_caller.text
        assert call.at_callee.rtpmap.get(101) == "telephone-event/8000", call.at_callee.text
        await asyncio.gather(caller.send(50), callee.send(50))
        # Then each side presses a digit (5 and #): RFC 4733 events are relayed as they are, not
        # transcoded, with the payload type of each leg.
        digits = {caller.tag: caller.digit(50, 5), callee.tag: callee.digit(50, 11)}
        for peer in (caller, callee):
            for packet in digits[peer.tag]:
                peer.send_raw(packet)
        with contextlib.suppress(TimeoutError):
            await asyncio.gather(caller.wait_received(53, within=1), callee.wait_received(53, within=1))
        assert len(callee.received) == len(caller.received) == 53
        assert_same_audio(caller, callee.received[:50], PCMU)
        assert_same_audio(callee, caller.received[:50], PCMA)
        for sender, receiver in ((caller, callee), (callee, caller)):
            events = [(r.payload_type, r.marker, r.payload) for r in receiver.received[50:]]
            sent = [(101, n == 0, packet[12:]) for n, packet in enumerate(digits[sender.tag])]
            assert events == sent, f"tag {sender.tag}'s digit arrived as {events}"
        caller_result, callee_result = await call.finished()
    assert_successful(caller_result)
    assert_successful(callee_result)


# -- hold -------------------------------------------------------------------------------------------------


async def test_a_held_call_is_not_timed_out(tmp_path: Path) -> None:
    timeout = 1.0
    held_ms = 2000  # past the media timeout and its 0.5 s tolerance
    async with peers((1, CALLER_IP, False), (2, CALLEE_IP, False)) as (caller, callee):
        hold = {"sdp_hold": caller.sdp(origin="caller", version=2, direction="sendonly"), "talk_ms": "600"}
        held = {"sdp_hold": callee.sdp(origin="callee", version=2, direction="recvonly")}
        async with trunk_call(
            tmp_path, caller, callee, media=f"timeout = {timeout}", hold_ms=held_ms,
            uac_scenario="media_uac_hold.xml", uas_scenario="media_uas_hold.xml",
            uac_values=hold, uas_values=held,
        ) as call:  # fmt: skip
            assert_relayed(call)
            talking = asyncio.gather(caller.send(200), callee.send(200))
            # Both talk until the hold's re-INVITE has been answered, then fall silent, as phones do.
            reoffer = await sipp_received_sdp(call.uas.workdir, "INVITE ", nth=2)
            answer = await sipp_received_sdp(call.uac.workdir, "SIP/2.0 200", nth=2)
            caller.stop()
            callee.stop()
            await talking
            assert reoffer.direction == "sendonly" and reoffer.target == call.at_callee.target, reoffer.text
            assert answer.direction == "recvonly" and answer.target == call.at_caller.target, answer.text
            assert callee.indices_from(caller) == list(range(caller.sent))
            caller_result, callee_result = await call.finished()
            # The caller hung up after the hold; a BYE from the appliance would have failed its call.
            assert_successful(caller_result)
            assert_successful(callee_result)
            assert metric_sum(call.app, "appliance_media_timeouts_total") == 0
        call.assert_offloaded()  # with MEDIA_TESTS_FASTPATH=1


# -- a worker dies ----------------------------------------------------------------------------------------


def media_workers(app: RunningAppliance) -> list[int]:
    """The pids of the appliance's media worker processes (its children running appliance.media.worker)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (proc / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == app.proc.pid and b"appliance.media.worker" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
    return pids


async def test_a_dead_media_worker_ends_its_calls_and_is_replaced(tmp_path: Path) -> None:
    async with (
        peers((1, CALLER_IP, False), (2, CALLEE_IP, False)) as (caller, callee),
        trunk_call(tmp_path, caller, callee, uac_scenario="media_uac_bye_in.xml") as call,
    ):
        assert_relayed(call)
        await asyncio.gather(caller.send(10), callee.send(10))
        with contextlib.suppress(TimeoutError):
            await asyncio.gather(caller.wait_received(10, within=1), callee.wait_received(10, within=1))
        assert callee.indices_from(caller) == caller.indices_from(callee) == list(range(10))
        (worker,) = media_workers(call.app)  # one worker: it carries the call
        loop = asyncio.get_running_loop()
        os.kill(worker, signal.SIGKILL)
        killed_at = loop.time()
        # Its calls cannot carry media any more: call control ends them, both legs (bounded wait).
        await sipp_received(call.uac.workdir, "BYE ", method="BYE", within=3)
        ended_after = loop.time() - killed_at
        print(f"worker killed: BYE to the caller {ended_after:.3f} s later")
        assert ended_after < 1.0, f"the call outlived its worker by {ended_after:.3f} s"
        caller_result, callee_result = await call.finished()
        assert_successful(caller_result)
        assert_successful(callee_result)
        await wait_metric(call.app, "appliance_media_worker_restarts_total", 1)
        await wait_metric(call.app, "appliance_media_workers_running", 1)
        await wait_metric(call.app, "appliance_media_relayed_calls_active", 0)
        assert media_workers(call.app) not in ([], [worker])
