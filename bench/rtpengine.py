"""The relay benchmark's peer: Debian's ``rtpengine-daemon`` run userspace-only on loopback.

:class:`RtpEngine` starts the daemon in the foreground with a temporary configuration (interface
127.0.0.1, ``--table=-1`` so no kernel forwarding, a private port range, log to a file) and
:class:`NgClient` drives it over the ng control protocol: bencoded dictionaries over UDP, each prefixed by
a cookie that the reply echoes. :meth:`NgClient.bridge` sets up one call between two SDP offers and
returns the two relay ports rtpengine allocated, read from the SDP it returns.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

LOOPBACK: Final = "127.0.0.1"
BINARY: Final = "rtpengine"
NG_TIMEOUT_S: Final = 5.0
NG_DATAGRAM_MAX: Final = 65535

Bencodable = int | bytes | str | list["Bencodable"] | dict[str, "Bencodable"]
Decoded = int | bytes | list["Decoded"] | dict[bytes, "Decoded"]


class RtpEngineError(Exception):
    """rtpengine is missing, did not start, or answered an ng command with an error."""


class BencodeError(ValueError):
    """A datagram is not valid bencode."""


def bencode(value: Bencodable) -> bytes:
    """Encode ``value``; dictionary keys are sorted as bencode requires, strings are UTF-8."""
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(item) for item in value) + b"e"
    items = sorted((key.encode(), item) for key, item in value.items())
    return b"d" + b"".join(bencode(key) + bencode(item) for key, item in items) + b"e"


def bdecode(data: bytes) -> Decoded:
    """Decode one complete bencoded value; trailing bytes or truncation raise :class:`BencodeError`."""
    value, end = _decode_at(data, 0)
    if end != len(data):
        raise BencodeError(f"{len(data) - end} trailing bytes")
    return value


def _decode_at(data: bytes, pos: int) -> tuple[Decoded, int]:
    if pos >= len(data):
        raise BencodeError("truncated")
    lead = data[pos : pos + 1]
    if lead == b"i":
        end = data.find(b"e", pos)
        if end < 0:
            raise BencodeError("unterminated integer")
        try:
            return int(data[pos + 1 : end]), end + 1
        except ValueError as exc:
            raise BencodeError("bad integer") from exc
    if lead == b"l":
        items: list[Decoded] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos = _decode_at(data, pos)
            items.append(item)
        return items, pos + 1
    if lead == b"d":
        mapping: dict[bytes, Decoded] = {}
        pos += 1
        while data[pos : pos + 1] != b"e":
            key, pos = _decode_at(data, pos)
            if not isinstance(key, bytes):
                raise BencodeError("dictionary key is not a string")
            mapping[key], pos = _decode_at(data, pos)
        return mapping, pos + 1
    colon = data.find(b":", pos)
    if colon < 0 or not data[pos:colon].isdigit():
        raise BencodeError(f"unexpected byte {lead!r} at {pos}")
    start = colon + 1
    end = start + int(data[pos:colon])
    if end > len(data):
        raise BencodeError("truncated string")
    return data[start:end], end


def call_sdp(port: int, session_id: int) -> str:
    """A minimal G.711 (PCMU) audio offer from 127.0.0.1 ``port``, as the load generator's stream end."""
    return (
        "v=0\r\n"
        f"o=- {session_id} 1 IN IP4 {LOOPBACK}\r\n"
        "s=bench\r\n"
        f"c=IN IP4 {LOOPBACK}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


_AUDIO_PORT: Final = re.compile(r"^m=audio (\d+) ", re.MULTILINE)


def audio_port(sdp: str) -> int:
    """The port of the first ``m=audio`` line of ``sdp``."""
    match = _AUDIO_PORT.search(sdp)
    if match is None:
        raise RtpEngineError(f"no m=audio line in SDP: {sdp!r}")
    return int(match.group(1))


class NgClient:
    """A blocking ng-protocol client; one command in flight at a time (the bench sets calls up serially)."""

    def __init__(self, port: int, host: str = LOOPBACK, timeout: float = NG_TIMEOUT_S) -> None:
        self._address = (host, port)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.settimeout(timeout)
        # rtpengine caches replies by cookie: a cookie reused by another client would get a stale reply.
        self._prefix = os.urandom(6).hex()
        self._serial = 0

    def close(self) -> None:
        self._sock.close()

    def command(self, command: str, **fields: Bencodable) -> dict[bytes, Decoded]:
        """Send ``command`` with ``fields``; return the reply dictionary, raising if its result is not ok.

        Replies with a different cookie (a late answer to an earlier, timed-out command) are skipped.
        """
        self._serial += 1
        cookie = f"{self._prefix}_{self._serial}".encode()
        message = dict(fields)
        message["command"] = command
        self._sock.sendto(cookie + b" " + bencode(message), self._address)
        while True:
            try:
                datagram = self._sock.recv(NG_DATAGRAM_MAX)
            except TimeoutError as exc:
                raise RtpEngineError(f"no reply to ng {command!r} from {self._address}") from exc
            head, _, body = datagram.partition(b" ")
            if head == cookie:
                break
        reply = bdecode(body)
        if not isinstance(reply, dict):
            raise RtpEngineError(f"ng {command!r}: reply is not a dictionary")
        result = reply.get(b"result")
        if result not in (b"ok", b"pong"):
            reason = reply.get(b"error-reason", b"")
            raise RtpEngineError(f"ng {command!r} failed: {result!r} {reason!r}")
        return reply

    def ping(self) -> None:
        self.command("ping")

    def bridge(self, call_id: str, caller_port: int, callee_port: int) -> tuple[int, int]:
        """Set up ``call_id`` between streams at 127.0.0.1 ``caller_port`` and ``callee_port``.

        Returns ``(relay port the caller sends to, relay port the callee sends to)``.
        """
        offer = self.command(
            "offer",
            **{"call-id": call_id, "from-tag": "caller", "sdp": call_sdp(caller_port, 1)},
        )
        answer = self.command(
            "answer",
            **{
                "call-id": call_id,
                "from-tag": "caller",
                "to-tag": "callee",
                "sdp": call_sdp(callee_port, 2),
            },
        )
        # The offer's rewritten SDP goes to the callee: its port is where the callee sends.
        callee_side = audio_port(_sdp_of(offer))
        caller_side = audio_port(_sdp_of(answer))
        return caller_side, callee_side

    def delete(self, call_id: str) -> None:
        self.command("delete", **{"call-id": call_id})


def _sdp_of(reply: dict[bytes, Decoded]) -> str:
    sdp = reply.get(b"sdp")
    if not isinstance(sdp, bytes):
        raise RtpEngineError("ng reply carries no SDP")
    return sdp.decode()


def installed() -> str | None:
    """The path of the rtpengine binary, or None when ``rtpengine-daemon`` is not installed."""
    return shutil.which(BINARY) or next(
        (p for p in ("/usr/bin/rtpengine", "/usr/sbin/rtpengine") if os.access(p, os.X_OK)), None
    )


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int


class RtpEngine:
    """One rtpengine daemon, userspace only, on loopback; a context manager that stops it on exit."""

    def __init__(self, workdir: Path, ng_port: int, ports: PortRange) -> None:
        self.workdir = workdir
        self.ng_port = ng_port
        self.ports = ports
        self.log_path = workdir / "rtpengine.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def argv(self, binary: str) -> list[str]:
        config = self.workdir / "rtpengine.conf"
        # An empty [rtpengine] section keeps the daemon from reading the system-wide configuration.
        config.write_text("[rtpengine]\n")
        return [
            binary,
            f"--config-file={config}",
            f"--interface={LOOPBACK}",
            f"--listen-ng={LOOPBACK}:{self.ng_port}",
            "--foreground",
            "--table=-1",
            f"--port-min={self.ports.low}",
            f"--port-max={self.ports.high}",
            f"--pidfile={self.workdir / 'rtpengine.pid'}",
            "--log-stderr",
            "--log-level=4",
            "--num-threads=1",
            "--delete-delay=0",
        ]

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RtpEngineError("rtpengine is not running")
        return self._proc.pid

    def start(self, timeout: float = 10.0) -> NgClient:
        """Start the daemon; return a client once it answers ``ping``, else raise with its log."""
        binary = installed()
        if binary is None:
            raise RtpEngineError("rtpengine is not installed (apt-get install rtpengine-daemon)")
        log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            self.argv(binary), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        client = NgClient(self.ng_port, timeout=0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                client.ping()
            except RtpEngineError:
                continue
            client.close()
            return NgClient(self.ng_port)
        client.close()
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RtpEngineError(f"rtpengine did not start: {tail}")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> RtpEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
