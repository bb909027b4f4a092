"""A small RTP endpoint for system tests: the phone behind a SIP peer, sending and checking real media.

Theory of operation. An :class:`RtpPeer` stands for the media side of one SIP endpoint (a SIPp instance
does the signalling). It owns a UDP socket on a loopback address (any of 127.0.0.0/8, so that each side of
a call can have an address of its own) whose port the SDP it writes names (SIPp's own ``[media_port]`` is
not used), and:

* sends a known G.711 stream (PCMA, or PCMU): packet ``i`` carries a payload that names the peer and ``i``
  (:meth:`RtpPeer.payload`), sequence number ``first_seq + i``, timestamp ``160 * i`` and the peer's SSRC,
  paced at a fixed interval against the loop clock; and, when its SDP names telephone-event, RFC 4733
  digits (:meth:`RtpPeer.digit`);
* records everything it receives (:class:`Received`: header fields, payload, source address, the local
  port it arrived on, arrival time) so a test can check what arrived, in which order and from where;
* optionally speaks SRTP (AES_CM_128_HMAC_SHA1_80 keyed by SDES, RFC 4568, through ``pylibsrtp``): it puts
  its own key in its SDP's ``a=crypto`` and unprotects what arrives with the key the other side's SDP gave;
  a packet that fails to unprotect is kept in :attr:`RtpPeer.undecryptable`, not in :attr:`received`;
  :meth:`RtpPeer.forged` makes packets under a key nobody negotiated;
* can move to a second socket (:meth:`RtpPeer.rebind`), as a NAT that re-maps the phone's port would, and
  keeps receiving on both;
* stops sending on demand (:meth:`RtpPeer.stop`), and tells when it sent its last packet.
* talks throughout a call with keys pressed on demand (:meth:`RtpPeer.talk`), as a caller of an IVR does,
  and finds where a known audio (a prompt file) begins among the packets it received
  (:meth:`RtpPeer.find_audio`, :meth:`RtpPeer.wait_audio`).

The module also carries the SIPp glue: :func:`write_scenario` fills a ``media_*.xml`` template from
``scenarios/`` with an SDP naming the peer (and, for a hold, its re-offer or answer), and
:func:`sipp_received_sdp` reads the SDP a SIPp instance received out of its ``-trace_msg`` log.
:func:`parse_sdp` is deliberately independent of the appliance's SDP code, which is what these tests check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

import pylibsrtp

LOOPBACK: Final = "127.0.0.1"
PCMA: Final = 8
PCMU: Final = 0
CODECS: Final = {PCMA: "PCMA", PCMU: "PCMU"}
PAYLOAD_BYTES: Final = 160  # 20 ms of G.711 at 8 kHz
SUITE: Final = "AES_CM_128_HMAC_SHA1_80"
KEY_SALT_LENGTH: Final = 30  # master key (16) || master salt (14), RFC 4568 §6.2.1

Address = tuple[str, int]


# -- SDP ------------------------------------------------------------------------------------------------


class SdpError(ValueError):
    """An SDP (or SIPp trace) the tests cannot read."""


@dataclass(frozen=True)
class AudioSdp:
    """What a test needs from a received SDP: the first audio stream's address, profile and keys."""

    address: str
    port: int
    proto: str
    payload_types: tuple[int, ...]
    rtpmap: dict[int, str]
    crypto: tuple[tuple[int, str, bytes], ...]  # (tag, suite, key||salt)
    direction: str  # sendrecv, sendonly, recvonly or inactive (media level, else session level)
    text: str

    @property
    def target(self) -> Address:
        return (self.address, self.port)

    def key(self, suite: str = SUITE) -> bytes:
        """The key||salt of the first ``a=crypto`` with ``suite``; SdpError if there is none."""
        for _tag, name, key in self.crypto:
            if name == suite:
                return key
        raise SdpError(f"no a=crypto with {suite} in:\n{self.text}")


_CRYPTO: Final = re.compile(r"([0-9]+) ([A-Za-z0-9_]+) inline:([A-Za-z0-9+/=]+)")


def parse_sdp(text: str) -> AudioSdp:
    """The first ``m=audio`` stream of ``text`` with its connection address; SdpError when unreadable."""
    session_address: str | None = None
    media_address: str | None = None
    audio: tuple[int, str, tuple[int, ...]] | None = None
    rtpmap: dict[int, str] = {}
    crypto: list[tuple[int, str, bytes]] = []
    session_direction = media_direction = None
    in_audio = False
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            if audio is not None:
                break  # only the first audio stream counts
            fields = line[2:].split()
            in_audio = len(fields) >= 4 and fields[0] == "audio"
            if in_audio:
                try:
                    audio = (int(fields[1]), fields[2], tuple(int(f) for f in fields[3:]))
                except ValueError:
                    raise SdpError(f"bad m= line {line!r}") from None
        elif line.startswith("c="):
            fields = line[2:].split()
            if len(fields) != 3 or fields[:2] != ["IN", "IP4"]:
                raise SdpError(f"bad c= line {line!r}")
            if in_audio:
                media_address = fields[2]
            elif audio is None:
                session_address = fields[2]
        elif line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            if in_audio:
                media_direction = line[2:]
            elif audio is None:
                session_direction = line[2:]
        elif in_audio and line.startswith("a=rtpmap:"):
            pt, _, encoding = line[len("a=rtpmap:") :].partition(" ")
            if pt.isdigit():
                rtpmap[int(pt)] = encoding.strip()
        elif in_audio and line.startswith("a=crypto:"):
            m = _CRYPTO.match(line[len("a=crypto:") :])
            if m is None:
                raise SdpError(f"bad a=crypto line {line!r}")
            crypto.append((int(m.group(1)), m.group(2), base64.b64decode(m.group(3))[:KEY_SALT_LENGTH]))
    address = media_address or session_address
    if audio is None or address is None:
        raise SdpError(f"no audio stream with an address in:\n{text}")
    port, proto, pts = audio
    direction = media_direction or session_direction or "sendrecv"
    return AudioSdp(address, port, proto, pts, rtpmap, tuple(crypto), direction, text)


# -- SIPp glue --------------------------------------------------------------------------------------------


def write_scenario(template: Path, out_dir: Path, sdp: str, **more: str) -> Path:
    """Copy the ``media_*.xml`` ``template`` into ``out_dir`` with ``sdp`` in place of ``%%SDP%%``, and
    each of ``more`` in place of its name in upper case (``sdp_hold=...`` for ``%%SDP_HOLD%%``).

    A placeholder alone on its line takes a multi-line value (an SDP): SIPp strips each line's leading
    blanks and ends lines with CRLF itself, and computes ``[len]`` from the body it sends, so the lines go
    in at the placeholder's indentation. Elsewhere (an attribute value) the value goes in as it is.
    Raises ValueError for a placeholder the template lacks or one left unfilled.
    """
    text = template.read_text()
    for name, value in {"sdp": sdp, **more}.items():
        mark = f"%%{name.upper()}%%"
        if mark not in text:
            raise ValueError(f"{template} has no {mark}")
        for line in [line for line in text.splitlines() if line.strip() == mark]:
            indent = line[: line.index(mark)]
            lines = value.replace("\r\n", "\n").strip("\n").split("\n")
            text = text.replace(line, "\n".join(indent + x for x in lines))
        text = text.replace(mark, value)
    left = re.search(r"%%[A-Z_]+%%", text)
    if left is not None:
        raise ValueError(f"{template}: {left.group()} left unfilled")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / template.name
    out.write_text(text)
    return out


@dataclass(frozen=True)
class TracedMessage:
    """One message from a SIPp ``-trace_msg`` log."""

    direction: str  # "sent" or "received"
    start_line: str
    headers: dict[str, str]  # lower-case name -> value (the last one of that name)
    body: str


def sipp_messages(workdir: Path) -> list[TracedMessage]:
    """The complete messages so far in the ``*_messages.log`` SIPp writes in ``workdir`` with -trace_msg.

    SIPp writes each message as a dashed line with a time stamp, ``UDP message sent (N bytes):`` or
    ``UDP message received [N] bytes :``, a blank line, then the message; the last entry may still be
    being written, so only entries followed by the next separator are returned.
    """
    logs = sorted(workdir.glob("*_messages.log"))
    if not logs:
        return []
    text = logs[-1].read_text(errors="replace")
    entries = re.split(r"^-{20,} [0-9-]+ [0-9:.]+\n", text, flags=re.MULTILINE)
    out = []
    for entry in entries[1:-1]:  # the last one may be incomplete
        head, _, message = entry.partition("\n\n")
        direction = "sent" if " sent " in head else "received"
        header_text, _, body = message.replace("\r\n", "\n").partition("\n\n")
        first, *header_lines = header_text.split("\n")
        headers = {}
        for line in header_lines:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        out.append(TracedMessage(direction, first.strip(), headers, body.strip("\n") + "\n"))
    return out


async def sipp_received(
    workdir: Path, start: str, *, method: str = "INVITE", nth: int = 1, within: float = 5.0
) -> TracedMessage:
    """Wait for SIPp in ``workdir`` to log the ``nth`` received message whose start line begins with
    ``start`` and whose CSeq names ``method``; raise TimeoutError (with what it did receive) if none comes
    in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        messages = sipp_messages(workdir)
        matching = [
            m
            for m in messages
            if m.direction == "received"
            and m.start_line.startswith(start)
            and m.headers.get("cseq", "").endswith(" " + method)
        ]
        if len(matching) >= nth:
            return matching[nth - 1]
        if loop.time() > deadline:
            seen = [f"{m.direction}: {m.start_line}" for m in messages]
            raise TimeoutError(f"SIPp in {workdir} received no {start!r} for {method} in {within} s: {seen}")
        await asyncio.sleep(0.01)


async def sipp_received_sdp(workdir: Path, start: str, *, nth: int = 1, within: float = 5.0) -> AudioSdp:
    """The SDP in the ``nth`` message starting with ``start`` (``"INVITE "``, ``"SIP/2.0 200"``) that SIPp
    in ``workdir`` received for an INVITE."""
    message = await sipp_received(workdir, start, nth=nth, within=within)
    return parse_sdp(message.body)


# -- RTP ------------------------------------------------------------------------------------------------


def _distinct_head(audio: bytes, packets: int) -> tuple[bytes, int]:
    """The start of ``audio`` that :meth:`RtpPeer.find_audio` looks for, and its length in packets: the
    packets that merely repeat its first octet, then ``packets`` more."""
    lead = len(audio) - len(audio.lstrip(audio[:1]))
    count = lead // PAYLOAD_BYTES + packets
    return audio[: count * PAYLOAD_BYTES], count


@dataclass(frozen=True)
class Received:
    """One RTP packet as it arrived (after SRTP unprotection when the peer speaks SRTP)."""

    seq: int
    timestamp: int
    ssrc: int
    payload_type: int
    payload: bytes
    source: Address
    local_port: int
    at: float  # loop time
    size: int  # datagram length on the wire
    marker: bool = False


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, peer: RtpPeer) -> None:
        self.peer = peer
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peer._on_datagram(data, (addr[0], addr[1]), self.port)


@dataclass
class RtpPeer:
    """An RTP endpoint on a loopback address; :meth:`open` it inside a running loop, ``close`` it after.

    ``tag`` (0..255) is written into every payload so that streams of different peers never compare
    equal; ``ssrc`` identifies its stream. ``srtp`` makes it protect what it sends with :attr:`local_key`
    (the key its SDP offers) and unprotect what it receives with the key given to :meth:`set_remote`.
    """

    tag: int
    ssrc: int
    srtp: bool = False
    address: str = LOOPBACK
    payload_type: int = PCMA
    event_pt: int | None = None
    first_seq: int = 1000
    received: list[Received] = field(default_factory=list)
    undecryptable: list[tuple[bytes, Address]] = field(default_factory=list)
    sent: int = 0
    last_sent_at: float | None = None
    local_key: bytes = b""
    remote: Address | None = None
    _sockets: list[_Socket] = field(default_factory=list)
    _send_via: int = 0
    _protect: pylibsrtp.Session | None = None
    _unprotect: pylibsrtp.Session | None = None
    # (index, RFC 4733 event, or None for a key sent as audio) of each key talk() sent
    keyed: list[tuple[int, int | None]] = field(default_factory=list)
    next_index: int = 0  # the index talk() sends next
    _stopped: bool = False
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def open(
        cls,
        tag: int,
        *,
        ssrc: int | None = None,
        srtp: bool = False,
        address: str = LOOPBACK,
        payload_type: int = PCMA,
        event_pt: int | None = None,
    ) -> RtpPeer:
        """A peer bound to a free port of ``address`` (any of 127.0.0.0/8 is this host) that speaks
        ``payload_type`` (:data:`PCMA` or :data:`PCMU`), and RFC 4733 telephone-events on ``event_pt``."""
        if payload_type not in CODECS:
            raise ValueError(f"payload type {payload_type} is not G.711")
        ssrc = ssrc if ssrc is not None else 0x5EED0000 + tag
        peer = cls(
            tag=tag, ssrc=ssrc, srtp=srtp, address=address, payload_type=payload_type, event_pt=event_pt
        )
        if srtp:
            peer.local_key = os.urandom(KEY_SALT_LENGTH)
            peer._protect = pylibsrtp.Session(
                pylibsrtp.Policy(
                    peer.local_key,
                    pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
                )
            )
        await peer._bind()
        return peer

    async def _bind(self) -> _Socket:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((self.address, 0))
        _, protocol = await loop.create_datagram_endpoint(lambda: _Socket(self), sock=sock)
        self._sockets.append(protocol)
        return protocol

    @property
    def port(self) -> int:
        """The port the SDP names: the first socket's, even after :meth:`rebind`."""
        return self._sockets[0].port

    @property
    def sending_port(self) -> int:
        return self._sockets[self._send_via].port

    def close(self) -> None:
        for sock in self._sockets:
            if sock.transport is not None:
                sock.transport.close()

    # -- SDP --

    def sdp(
        self,
        *,
        origin: str = "peer",
        session_id: int | None = None,
        version: int = 1,
        direction: str = "sendrecv",
    ) -> str:
        """This endpoint's SDP (offer or answer): its one G.711 codec on its port, and its SDES key when it
        does SRTP. A re-offer or its answer gives a higher ``version`` (RFC 3264 §8), and for a hold the
        ``direction`` ``sendonly``/``recvonly``/``inactive``."""
        sid = session_id if session_id is not None else 4000 + self.tag
        proto = "RTP/SAVP" if self.srtp else "RTP/AVP"
        lines = [
            "v=0",
            f"o={origin} {sid} {version} IN IP4 {self.address}",
            "s=-",
            f"c=IN IP4 {self.address}",
            "t=0 0",
            f"m=audio {self.port} {proto} {self.payload_type}"
            + ("" if self.event_pt is None else f" {self.event_pt}"),
            f"a=rtpmap:{self.payload_type} {CODECS[self.payload_type]}/8000",
        ]
        if self.event_pt is not None:
            lines += [f"a=rtpmap:{self.event_pt} telephone-event/8000", f"a=fmtp:{self.event_pt} 0-15"]
        lines.append("a=ptime:20")
        if self.srtp:
            lines.append(f"a=crypto:1 {SUITE} inline:{base64.b64encode(self.local_key).decode()}")
        lines.append(f"a={direction}")
        return "\r\n".join(lines) + "\r\n"

    def set_remote(self, sdp: AudioSdp) -> None:
        """Send to the address ``sdp`` names; with SRTP, unprotect with the key it gives."""
        self.remote = sdp.target
        if self.srtp:
            self._unprotect = pylibsrtp.Session(
                pylibsrtp.Policy(
                    sdp.key(),
                    pylibsrtp.Policy.SSRC_ANY_INBOUND,
                    srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
                )
            )

    # -- sending --

    def payload(self, index: int) -> bytes:
        """The 160-octet payload of packet ``index``: the peer's tag, the index, then a counter pattern.

        Every octet is a valid G.711 code. In A-law none decodes to zero (A-law has no zero level), so a
        gap of digital silence in a recording can be told from audio.
        """
        head = struct.pack("!BH", self.tag, index & 0xFFFF)
        rest = bytes((self.tag * 31 + index * 7 + k) & 0xFF for k in range(PAYLOAD_BYTES - len(head)))
        return head + rest

    def packet(self, index: int, *, payload: bytes | None = None) -> bytes:
        """The plain RTP packet ``index`` (before any SRTP protection)."""
        header = struct.pack(
            "!BBHII",
            0x80,
            self.payload_type,
            (self.first_seq + index) & 0xFFFF,
            (PAYLOAD_BYTES * index) & 0xFFFFFFFF,
            self.ssrc,
        )
        return header + (payload if payload is not None else self.payload(index))

    def send_one(self, index: int, *, to: Address | None = None) -> None:
        """Send packet ``index`` now, from the current socket to the remote (or ``to``)."""
        data = self.packet(index)
        if self._protect is not None:
            data = self._protect.protect(data)
        self.send_raw(data, to=to)
        self.sent += 1
        self.last_sent_at = asyncio.get_running_loop().time()

    def digit(self, index: int, event: int) -> list[bytes]:
        """An RFC 4733 digit as packets ``index``, ``index + 1``, ``index + 2`` (in the audio's sequence
        numbering): the start (marker bit set, RFC 4733 §2.5.1.3), an update and the end (E bit), all with
        the timestamp of the event's start and growing durations of 20, 40 and 60 ms, volume 10 dBm0."""
        if self.event_pt is None:
            raise RuntimeError("this peer negotiates no telephone-event")
        out = []
        for n, (end, duration) in enumerate(((False, 160), (False, 320), (True, 480))):
            header = struct.pack(
                "!BBHII",
                0x80,
                (0x80 if n == 0 else 0) | self.event_pt,
                (self.first_seq + index + n) & 0xFFFF,
                (PAYLOAD_BYTES * index) & 0xFFFFFFFF,
                self.ssrc,
            )
            out.append(header + struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration))
        return out

    def send_raw(self, data: bytes, *, to: Address | None = None) -> None:
        """Send ``data`` as it is from the current socket to the remote (or ``to``); not counted as sent."""
        target = to or self.remote
        if target is None:
            raise RuntimeError("no remote: call set_remote first")
        transport = self._sockets[self._send_via].transport
        assert transport is not None
        transport.sendto(data, target)

    def forged(self, index: int) -> bytes:
        """Packet ``index`` as SRTP under a key nobody negotiated: it must fail authentication."""
        session = pylibsrtp.Session(
            pylibsrtp.Policy(
                os.urandom(KEY_SALT_LENGTH),
                pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            )
        )
        return session.protect(self.packet(index))

    async def send(self, count: int, *, start: int = 0, interval: float = 0.02) -> int:
        """Send packets ``start .. start + count - 1`` paced ``interval`` apart; stops early after
        :meth:`stop`. Returns the index after the last packet sent."""
        loop = asyncio.get_running_loop()
        begin = loop.time()
        index = start
        for n in range(count):
            if self._stopped:
                break
            delay = begin + n * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._stopped:
                break
            self.send_one(index)
            index += 1
        return index

    def stop(self) -> None:
        """Stop sending (a running :meth:`send` returns before its next packet)."""
        self._stopped = True

    async def talk(
        self,
        keys: asyncio.Queue[int | Sequence[bytes]] | None = None,
        *,
        start: int = 0,
        interval: float = 0.02,
    ) -> int:
        """Send packets from ``start`` on, ``interval`` apart, until :meth:`stop`, as a phone's microphone
        does throughout a call. A key put on ``keys`` goes out in place of the next packets and is noted in
        :attr:`keyed`: an RFC 4733 event as :meth:`digit` (three packets; a phone mutes its audio while a key
        is down), or payloads (a DTMF tone in the audio, for a phone without telephone-events) one packet
        each. :attr:`next_index` follows the packet sent next. Plain RTP only (keys are not protected).
        Returns the index after the last packet sent."""
        loop = asyncio.get_running_loop()
        begin = loop.time()
        self.next_index = start
        pending: list[bytes] = []
        n = 0
        while not self._stopped:
            delay = begin + n * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._stopped:
                break
            if not pending and keys is not None and not keys.empty():
                key = keys.get_nowait()
                if isinstance(key, int):
                    pending = self.digit(self.next_index, key)
                    self.keyed.append((self.next_index, key))
                else:
                    pending = [self.packet(self.next_index + n, payload=p) for n, p in enumerate(key)]
                    self.keyed.append((self.next_index, None))
            if pending:
                self.send_raw(pending.pop(0))
                self.last_sent_at = loop.time()
            else:
                self.send_one(self.next_index)
            self.next_index += 1
            n += 1
        return self.next_index

    async def rebind(self) -> int:
        """Send from now on from a new socket (a new source port), still receiving on both; its port."""
        new = await self._bind()
        self._send_via = len(self._sockets) - 1
        return new.port

    # -- receiving --

    def _on_datagram(self, data: bytes, source: Address, local_port: int) -> None:
        size = len(data)
        if self._unprotect is not None:
            try:
                data = self._unprotect.unprotect(data)
            except pylibsrtp.Error:
                self.undecryptable.append((data, source))
                return
        if len(data) < 12 or data[0] >> 6 != 2:
            self.undecryptable.append((data, source))
            return
        _, marker_pt, seq, timestamp, ssrc = struct.unpack_from("!BBHII", data)
        csrc = (data[0] & 0x0F) * 4
        payload = data[12 + csrc :]
        if data[0] & 0x20 and payload:  # padding (RFC 3550 §5.1)
            payload = payload[: -payload[-1]]
        self.received.append(
            Received(
                seq, timestamp, ssrc, marker_pt & 0x7F, payload, source, local_port,
                asyncio.get_running_loop().time(), size, bool(marker_pt & 0x80),
            )
        )  # fmt: skip
        self._arrived.set()

    async def wait_received(self, count: int, *, within: float) -> None:
        """Wait until at least ``count`` packets have arrived; TimeoutError after ``within`` seconds."""
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

    def payloads(self) -> list[bytes]:
        return [r.payload for r in self.received]

    def find_audio(self, audio: bytes, *, after: int = 0, packets: int = 3) -> int | None:
        """The index in :attr:`received` of the first packet from ``after`` on whose payload, with the
        next ones', begins with ``audio``'s first ``packets`` packets (a playback starts on a packet
        boundary) after any that merely repeat its first octet (leading silence, which any pause matches);
        None if no such run has arrived."""
        head, count = _distinct_head(audio, packets)
        received = self.received
        for index in range(after, len(received)):
            if not head.startswith(received[index].payload[: len(head)]):
                continue
            run = b"".join(r.payload for r in received[index : index + count])
            if len(run) >= len(head) and run.startswith(head):
                return index
        return None

    async def wait_audio(self, audio: bytes, *, after: int = 0, within: float, packets: int = 3) -> int:
        """Wait for :meth:`find_audio` to find ``audio`` from packet ``after`` on; its index. TimeoutError
        (naming how many packets arrived) after ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                start = after
                _, count = _distinct_head(audio, packets)
                while (found := self.find_audio(audio, after=start, packets=packets)) is None:
                    # A run that did not match with all its packets in never will: search only the tail.
                    start = max(start, len(self.received) - count)
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"the audio sought did not arrive after packet {after} in {within} s "
                f"({len(self.received)} packets arrived)"
            ) from None
        return found

    async def wait_quiet(self, quiet: float, *, within: float) -> float:
        """Wait until nothing has arrived for ``quiet`` seconds; the loop time of the last arrival (or of
        the call if nothing ever arrived). TimeoutError after ``within`` seconds."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within):
            while True:
                last = self.received[-1].at if self.received else loop.time()
                remaining = last + quiet - loop.time()
                if remaining <= 0:
                    return last
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)

    def indices_from(self, other: RtpPeer) -> list[int]:
        """The indices of ``other``'s packets among those received, in arrival order (others skipped)."""
        return [index for index, _ in self.arrivals_from(other)]

    def arrivals_from(self, other: RtpPeer) -> list[tuple[int, Received]]:
        """``other``'s packets among those received, with their indices, in arrival order. A packet that
        carries ``other``'s tag but not exactly the payload it sent is left out, so a test comparing
        indices sees it as missing."""
        out = []
        for r in self.received:
            if len(r.payload) == PAYLOAD_BYTES and r.payload[0] == other.tag:
                index = struct.unpack_from("!H", r.payload, 1)[0]
                if r.payload == other.payload(index):
                    out.append((index, r))
        return out
