"""A span's settings as the running span takes them: its D-channel trace (``trace = true``), the media
address its B-channels' SDP names and its announcement bound; the trace file's rotation and failures."""

from __future__ import annotations

import errno
import logging
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from appliance.app_pri_span import SpanTrace
from appliance.calls.events import Answer
from appliance.config.load import load_config_text
from appliance.pri.pcap import LINKTYPE_LINUX_LAPD
from appliance.pri.q931_events import CallConnected, CallReleased
from appliance.pri.q931_model import PartyNumber, TypeOfNumber
from tests.unit.test_app_pri_span import FarEnd, Harness, until

SABME = bytes([0x00, 0x01, 0x7F])  # user side's command: SAPI 0, C/R 0, TEI 0 (Q.921 §3.3.3)
UA = bytes([0x02, 0x01, 0x73])


def records(path: Path) -> list[tuple[int, bytes]]:
    """A pcap's records as (pseudo-header packet type, frame); checks the global header's link type."""
    data = path.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, linktype) == (0xA1B2C3D4, LINKTYPE_LINUX_LAPD)
    out, at = [], 24
    while at < len(data):
        _, _, captured, _ = struct.unpack_from("<IIII", data, at)
        record = data[at + 16 : at + 16 + captured]
        out.append((struct.unpack_from(">H", record)[0], record[16:]))
        at += 16 + captured
    return out


def test_each_frame_is_on_disk_as_soon_as_it_is_written(tmp_path: Path) -> None:
    trace = SpanTrace(tmp_path / "trace", span=3, side="user")
    trace.write(SABME, sent=True, timestamp=1.0)
    trace.write(UA, sent=False, timestamp=1.5)
    assert trace.path == tmp_path / "trace" / "span3-d.pcap"
    assert records(trace.path) == [(4, SABME), (0, UA)]  # read while the file is still open
    trace.close()
    trace.write(SABME, sent=True, timestamp=2.0)  # after close: not written, no error
    assert len(records(trace.path)) == 2


def test_a_new_start_begins_a_new_file_and_keeps_the_previous_one(tmp_path: Path) -> None:
    first = SpanTrace(tmp_path, span=1, side="network")
    first.write(SABME, sent=False, timestamp=1.0)
    first.close()
    second = SpanTrace(tmp_path, span=1, side="network")
    second.write(UA, sent=True, timestamp=2.0)
    second.close()
    assert records(tmp_path / "span1-d.pcap") == [(4, UA)]
    assert records(tmp_path / "span1-d.pcap.1") == [(0, SABME)]
    SpanTrace(tmp_path, span=1, side="network").close()  # only the one before is kept
    assert records(tmp_path / "span1-d.pcap.1") == [(4, UA)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["span1-d.pcap", "span1-d.pcap.1"]


def test_a_file_at_its_size_bound_is_rotated_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 24 octets of global header and 35 per record of a 3-octet frame: three records fit in 130.
    trace = SpanTrace(tmp_path, span=1, side="user", max_bytes=130)
    with caplog.at_level(logging.WARNING, logger="appliance.pri"):
        for n in range(5):
            trace.write(SABME if n % 2 == 0 else UA, sent=True, timestamp=float(n))
    trace.close()
    assert [frame for _, frame in records(tmp_path / "span1-d.pcap.1")] == [SABME, UA, SABME]
    assert [frame for _, frame in records(tmp_path / "span1-d.pcap")] == [UA, SABME]
    (warning,) = [r for r in caplog.records if "trace reached 130 bytes" in r.getMessage()]
    assert "span1-d.pcap.1" in warning.getMessage() and warning.levelno == logging.WARNING


def test_a_write_that_fails_ends_the_trace_but_not_the_span(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trace = SpanTrace(tmp_path, span=1, side="user")

    class Full:
        def tell(self) -> int:
            return 24

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            pass

    trace._out = trace._file = Full()  # type: ignore[assignment]
    with caplog.at_level(logging.ERROR, logger="appliance.pri"):
        trace.write(SABME, sent=True, timestamp=1.0)  # no exception
        trace.write(UA, sent=True, timestamp=2.0)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"span 1: D-channel trace {trace.path} ended: [Errno 28] No space left on device"
    ]


async def test_a_trace_that_cannot_be_opened_leaves_the_span_running_without_one(tmp_path: Path) -> None:
    (tmp_path / "trace").write_text("a file where the directory should be")
    h = Harness(tmp_path, load_config_text("[[spans]]\ntrace = true\n"))
    try:
        lines = await h.pri.start(calls=h.calls, after_event=h.after)
        assert lines[0].startswith("span 1 ") and h.pri.runners[1].link is not None
        assert h.pri.runners[1].trace is None
    finally:
        await h.close()


async def test_a_traced_span_on_its_own_media_address_with_its_announcement_bound(tmp_path: Path) -> None:
    config = load_config_text(
        '[[spans]]\ntrace = true\nannouncement_timeout = 12\n[media]\naddress = "127.0.0.5"\n'
    )
    h = Harness(tmp_path, config)
    await h.pri.start(calls=h.calls, after_event=h.after)
    pcap = tmp_path / "trace" / "span1-d.pcap"
    try:
        gateway = h.pri.runners[1].gateway
        assert gateway is not None and gateway.announcement_timeout == 12.0
        far = FarEnd(tmp_path / "run" / "span1-d.sock")
        try:
            await until(lambda: far.link.dchannel_up, "D-channel established")
            called = PartyNumber("30123456", TypeOfNumber.NATIONAL)
            ref = far.link.run(lambda now: far.q931.setup(called=called, now=now))
            await until(lambda: bool(h.calls.placed), "the call placed with call control")
            setup, leg, _ = h.calls.placed[0]
            assert b"c=IN IP4 127.0.0.5\r\n" in (setup.sdp or b"")  # where the TDM worker binds
            leg.handle(Answer(b"v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\n"
                              b"m=audio 40000 RTP/AVP 8\r\n"), far.link.time())  # fmt: skip
            h.pri.flush()
            await until(lambda: any(isinstance(e, CallConnected) for e in far.events), "CONNECT")
            far.link.run(lambda now: far.q931.disconnect(ref, 16, now=now))
            await until(lambda: any(isinstance(e, CallReleased) for e in far.events), "released")
            frames = [frame for _, frame in records(pcap)]  # the running span's capture
            assert frames[0] == SABME and len(frames) >= 10
        finally:
            await far.close()
    finally:
        await h.close()
    if shutil.which("tshark") is not None:  # pragma: no branch - .ci/run installs it
        summary = tshark("-r", str(pcap))
        for name in ("SETUP", "CALL PROCEEDING", "CONNECT", "DISCONNECT", "RELEASE", "RELEASE COMPLETE"):
            assert f"| {name}\n" in summary, (name, summary)
        expert = tshark("-r", str(pcap), "-q", "-z", "expert")
        assert "Errors (" not in expert and "Malformed" not in summary


def tshark(*args: Any) -> str:
    return subprocess.run(["tshark", *args], capture_output=True, text=True, check=True, timeout=120).stdout
