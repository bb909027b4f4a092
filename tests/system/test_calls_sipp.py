"""The appliance as a process, driven by SIPp: calls, registration, hostile input, cloud and local routing."""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
from pathlib import Path

import pytest

from appliance.sip.message import Response, parse_message
from tests.system.appliance_proc import RunningAppliance, start_appliance
from tests.system.sipp import SIPP_BINARY, SippProcess, free_port

pytestmark = pytest.mark.system
SCENARIOS = Path(__file__).parent / "scenarios"

if shutil.which(SIPP_BINARY) is None:  # pragma: no cover - .ci/run installs sip-tester
    pytest.skip("SIPp is not installed (Debian package sip-tester)", allow_module_level=True)


@pytest.fixture
def appliance(tmp_path: Path) -> RunningAppliance:
    app = start_appliance(tmp_path)
    yield app  # type: ignore[misc]
    app.stop()


def place_calls(
    app: RunningAppliance, workdir: Path, *, calls: int, rate: float, hold_ms: int, timeout: float = 60.0
) -> object:
    uac = SippProcess.uac(
        SCENARIOS / "uac_call.xml", app.sip, workdir=workdir, rate=rate, max_calls=calls, call_limit=calls,
        duration_ms=hold_ms, recv_timeout_ms=10000, service="+4930123456",
    )  # fmt: skip
    with uac:
        return uac.wait(timeout)


def test_fifty_calls_answered_held_and_released(appliance: RunningAppliance, tmp_path: Path) -> None:
    result = place_calls(appliance, tmp_path, calls=50, rate=25, hold_ms=2000)
    assert result.stats.successful == 50, result.describe()  # type: ignore[attr-defined]
    assert result.stats.failed == 0  # type: ignore[attr-defined]
    metrics = appliance.metrics()
    assert metrics['appliance_calls_total{route="ivr"}'] == 50
    assert metrics['appliance_calls_active{route="ivr"}'] == 0
    assert metrics['appliance_sip_requests_total{direction="in",method="BYE"}'] == 50


def test_register_with_digest(tmp_path: Path) -> None:
    # SIPp 3.6 answers only the first challenge and only knows MD5, so this registrar offers MD5 alone;
    # SHA-256 (offered first by default, RFC 8760) is covered by the unit tests.
    config = (
        '[registrar]\nalgorithms = ["MD5"]\n'
        '[[registrar.users]]\nusername = "1001"\npassword = "s3cret-1001"\n'
    )
    app = start_appliance(tmp_path, config)
    try:
        uac = SippProcess.uac(
            SCENARIOS / "uac_register_digest.xml", app.sip, workdir=tmp_path, max_calls=1, service="1001",
            credentials=("1001", "s3cret-1001"), recv_timeout_ms=5000,
        )  # fmt: skip
        with uac:
            result = uac.wait(20)
        assert result.stats.successful == 1, result.describe()
        bad = SippProcess.uac(
            SCENARIOS / "uac_register_digest.xml", app.sip, workdir=tmp_path, max_calls=1, service="1001",
            credentials=("1001", "wrong"), recv_timeout_ms=3000,
        )  # fmt: skip
        with bad:
            assert bad.wait(20).stats.failed == 1
        assert app.metric('appliance_sip_rejects_total{reason="auth_failed"}') >= 1
        app.wait_for("appliance_registrar_bindings", 1)
    finally:
        app.stop()


GARBAGE = [
    b"\x00\x01\x02 not sip at all",
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\n\r\n",  # no mandatory headers: not even answerable
    b"INVITE sip:x@127.0.0.1 SIP/3.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKg\r\n\r\n",
    b"\xff" * 1400,
    b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n",
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n",
]


def test_garbage_in_the_middle_of_calls_does_not_disturb_them(
    appliance: RunningAppliance, tmp_path: Path
) -> None:
    uac = SippProcess.uac(
        SCENARIOS / "uac_call.xml", appliance.sip, workdir=tmp_path, rate=10, max_calls=10, call_limit=10,
        duration_ms=3000, recv_timeout_ms=10000, service="+4930123456",
    )  # fmt: skip
    with uac, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
        junk.bind(("127.0.0.1", 0))
        junk.settimeout(2.0)
        appliance.wait_for('appliance_calls_active{route="ivr"}', 10)  # all ten calls are up and held
        for data in GARBAGE * 20:
            junk.sendto(data, appliance.sip)
        # A malformed request that still names its Via, From, To, Call-ID and CSeq is answered 400 with
        # a reason phrase naming the fault.
        junk.sendto(
            b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKq\r\n"
            b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: bad1\r\n"
            b"CSeq: 1 INVITE\r\n\r\n",
            appliance.sip,
        )
        answer = parse_message(junk.recvfrom(65535)[0])
        assert isinstance(answer, Response)
        assert (answer.status, answer.reason) == (400, "CSeq method does not match the request method")
        result = uac.wait(60)
    assert result.stats.successful == 10 and result.stats.failed == 0, result.describe()
    assert appliance.metric('appliance_sip_rejects_total{reason="malformed"}') >= 80
    assert appliance.metric('appliance_sip_rejects_total{reason="version"}') == 20


def test_unknown_method_and_scheme_and_oversized(tmp_path: Path) -> None:
    app = start_appliance(tmp_path, sip="max_message_size = 4096")
    count = iter(range(1000))

    def ask(first_line: str, extra: bytes = b"") -> Response:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(3.0)
            method, n = first_line.split(maxsplit=1)[0], next(count)
            s.sendto(
                f"{first_line}\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{n}\r\n"
                f"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c-{n}\r\n"
                f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\n".encode()
                + extra
                + b"\r\n",
                app.sip,
            )
            message = parse_message(s.recvfrom(65535)[0])
            assert isinstance(message, Response)
            return message

    try:
        assert ask("FROBNICATE sip:x@127.0.0.1 SIP/2.0").status == 501
        scheme = ask("OPTIONS mailto:x@127.0.0.1 SIP/2.0")
        assert (scheme.status, scheme.reason) == (416, "Unsupported URI Scheme 'mailto'")
        assert ask("OPTIONS sip:x@127.0.0.1 SIP/2.0").status == 200
        huge = ask("OPTIONS sip:x@127.0.0.1 SIP/2.0", b"X-Padding: " + b"a" * 6000 + b"\r\n")
        assert huge.status == 513 and huge.reason.startswith("Message Too Large")
        version = ask("OPTIONS sip:x@127.0.0.1 SIP/3.0")
        assert version.status == 505
        assert app.metric('appliance_sip_rejects_total{reason="too_large"}') == 1
        assert app.metric('appliance_sip_rejects_total{reason="uri_scheme"}') == 1
        assert app.metric('appliance_sip_rejects_total{reason="unknown_method"}') == 1
    finally:
        app.stop()


def test_flood_from_one_source_is_rate_limited_without_hurting_others(tmp_path: Path) -> None:
    app = start_appliance(tmp_path, "[sip.rate_limit]\nrate = 50.0\nburst = 50\n")
    try:
        options = (
            b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:9;branch=z9hG4bKf%d\r\n"
            b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: f%d\r\n"
            b"CSeq: 1 OPTIONS\r\n\r\n"
        )
        caller = SippProcess.uac(
            SCENARIOS / "uac_options.xml", app.sip, workdir=tmp_path, max_calls=20, rate=20,
            recv_timeout_ms=3000,
        )  # fmt: skip
        with caller, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
            flood.bind(("127.0.0.2", 0))  # a source of its own: 127.0.0.2
            flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            started = time.monotonic()
            for i in range(2000):  # while the well-behaved caller sends its OPTIONS
                flood.sendto(options % (i, i), app.sip)
            flood.settimeout(1.0)
            answered = 0
            with contextlib.suppress(TimeoutError):
                while True:
                    flood.recvfrom(65535)
                    answered += 1
            elapsed = time.monotonic() - started
            outcome = caller.wait(30)
        assert outcome.stats.successful == 20, outcome.describe()  # the other source is not hurt
        # The flooder got at most its bucket: burst + rate * elapsed (the 1 s of listening included).
        assert 50 <= answered <= 50 + 50 * elapsed + 1
        assert app.metric('appliance_sip_rejects_total{reason="rate_limited"}') >= 2000 - answered - 500
    finally:
        app.stop()


def test_calls_go_to_the_cloud_when_online_and_to_the_ivr_when_it_is_unreachable(tmp_path: Path) -> None:
    cloud_port = free_port()
    cloud = SippProcess.uas(SCENARIOS / "uas_cloud.xml", workdir=tmp_path, local_port=cloud_port)
    config = (
        f'[cloud]\ntrunk = "sip:127.0.0.1:{cloud_port}"\nprobe_interval = 0.5\nprobe_timeout = 0.4\n'
        "probe_failures = 2\n"
    )
    with cloud:
        cloud.wait_bound()
        app = start_appliance(tmp_path, config)
        try:
            app.wait_for('appliance_mode{mode="ONLINE"}', 1)
            online = place_calls(app, tmp_path, calls=10, rate=10, hold_ms=500)
            assert online.stats.successful == 10, online.describe()  # type: ignore[attr-defined]
            assert app.metric('appliance_calls_total{route="cloud"}') == 10
            assert app.metric('appliance_calls_total{route="ivr"}') == 0
            cloud.kill()  # the cloud contact centre is gone
            app.wait_for('appliance_mode{mode="SURVIVABLE"}', 1)
            started = time.monotonic()
            local = place_calls(app, tmp_path, calls=10, rate=10, hold_ms=500)
            assert local.stats.successful == 10, local.describe()  # type: ignore[attr-defined]
            assert app.metric('appliance_calls_total{route="ivr"}') == 10
            assert app.metric('appliance_calls_total{route="cloud"}') == 10
            assert time.monotonic() - started < 30
        finally:
            app.stop()
