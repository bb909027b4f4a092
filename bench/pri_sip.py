"""The PRI bench's SIP peer: the same callers reaching the IVR over SIP/RTP instead of a PRI span.

Contract. :class:`SipCallers` places ``n`` calls at once from one UDP socket (RFC 3261 over UDP, the
minimum a UAC does: INVITE with an SDP offer of PCMA alone — no telephone-event, so digits are in-band as
on PRI — ACK to every 2xx, 200 to the appliance's BYE, a BYE of its own to hang up) and gives each call its
own RTP socket. Once answered, each call sends the same audio as the PRI far end, frame for frame
(:class:`appliance.pri.farend_audio.Talker`: A-law silence with in-band DTMF digits when pressed), one
RTP packet every 20 ms on a shared schedule, and counts what the IVR plays back. Call ``i`` calls from
``+<calling(span, i)>`` (:func:`bench.pri_calls.calling`) so the IVR's session records name it.

Not a SIP stack: no retransmission of the INVITE (loopback does not lose datagrams at this rate; a call
not answered within the caller's deadline counts as unanswered), no authentication, no Record-Route.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct
from dataclasses import dataclass, field
from typing import Final

from appliance.pri.farend_audio import FRAME_SECONDS, Talker

LOOPBACK: Final = "127.0.0.1"
PCMA: Final = 8
_RTP_HEADER: Final = struct.Struct("!BBHII")
_COMPACT: Final = {"i": "call-id", "m": "contact", "t": "to", "f": "from", "v": "via", "l": "content-length"}


@dataclass
class SipCall:
    """One call's dialog and media."""

    index: int
    caller: str
    call_id: str
    tag: str
    branch: str
    talker: Talker = field(default_factory=Talker)
    rtp: asyncio.DatagramTransport | None = None
    rtp_port: int = 0
    remote_rtp: tuple[str, int] | None = None
    remote_tag: str = ""
    contact: str = ""
    answered: bool = False
    ended: bool = False
    frames_sent: int = 0
    frames_received: int = 0
    seq: int = 0
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def digits_sent(self) -> str:
        return self.talker.digits_sent


def parse(data: bytes) -> tuple[str, dict[str, str], str]:
    """``(start line, headers (lower-case long names, first value of each), body)`` of a SIP message."""
    text = data.decode(errors="replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers.setdefault(_COMPACT.get(key, key), value.strip())
    return lines[0], headers, body


def sdp_target(body: str) -> tuple[str, int] | None:
    """The audio stream's address and port in an SDP (session or media ``c=``, first ``m=audio``)."""
    address, port = None, None
    for line in body.splitlines():
        if line.startswith("c=IN IP4 "):
            address = line.split()[2]
        elif line.startswith("m=audio ") and port is None and line.split()[1].isdigit():
            port = int(line.split()[1])
    return (address, port) if address is not None and port is not None else None


def tag_of(header: str) -> str:
    for param in header.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "tag":
            return value
    return ""


def uri_of(contact: str) -> str:
    """The URI of a Contact header value (name-addr or addr-spec)."""
    if "<" in contact:
        return contact.partition("<")[2].partition(">")[0]
    return contact.split(";", maxsplit=1)[0].strip()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: object) -> None:
        self._on = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert callable(self._on)
        self._on(data, addr)


class SipCallers:
    """``n`` callers of the appliance at ``server`` (see the module docstring)."""

    def __init__(self, server: tuple[str, int], callers: list[str], called: str = "100") -> None:
        self.server = server
        self.called = called
        self.calls = [
            SipCall(i, caller, f"{secrets.token_hex(8)}@bench", secrets.token_hex(4), "")
            for i, caller in enumerate(callers)
        ]
        self._by_id = {c.call_id: c for c in self.calls}
        self._sip: asyncio.DatagramTransport | None = None
        self._port = 0
        self._ticker: asyncio.TimerHandle | None = None
        self._all_answered = asyncio.Event()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._on_sip), local_addr=(LOOPBACK, 0)
        )
        self._sip = transport
        self._port = transport.get_extra_info("sockname")[1]
        for call in self.calls:
            rtp, _ = await loop.create_datagram_endpoint(
                lambda c=call: _Datagrams(lambda data, addr: self._on_rtp(c)),  # type: ignore[misc]
                local_addr=(LOOPBACK, 0),
            )
            call.rtp = rtp
            call.rtp_port = rtp.get_extra_info("sockname")[1]
        due = loop.time() + FRAME_SECONDS
        self._ticker = loop.call_at(due, self._tick, due)

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for call in self.calls:
            if call.rtp is not None:
                call.rtp.close()
        if self._sip is not None:
            self._sip.close()

    # -- calls ---------------------------------------------------------------------------------------------

    def invite_all(self) -> None:
        for call in self.calls:
            call.branch = "z9hG4bK" + secrets.token_hex(8)
            sdp = (
                f"v=0\r\no=bench {call.index} 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
                f"m=audio {call.rtp_port} RTP/AVP {PCMA}\r\na=rtpmap:{PCMA} PCMA/8000\r\na=ptime:20\r\n"
                "a=sendrecv\r\n"
            )
            self._send(call, "INVITE", f"sip:{self.called}@{self.server[0]}:{self.server[1]}", 1, sdp)

    def hang_up_all(self) -> None:
        for call in self.calls:
            if call.answered and not call.ended:
                call.branch = "z9hG4bK" + secrets.token_hex(8)
                self._send(call, "BYE", call.contact, 2)

    @property
    def answered(self) -> int:
        return sum(c.answered for c in self.calls)

    async def wait_answered(self, within: float) -> None:
        """Return once every call is answered, or after ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_answered.wait(), within)

    async def wait_ended(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in self.calls if c.answered)), within)

    def _send(self, call: SipCall, method: str, uri: str, cseq: int, body: str = "") -> None:
        to = f"<sip:{self.called}@{self.server[0]}>" + (f";tag={call.remote_tag}" if call.remote_tag else "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self._port};branch={call.branch};rport",
            f"From: <sip:{call.caller}@{LOOPBACK}>;tag={call.tag}",
            f"To: {to}",
            f"Call-ID: {call.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:caller@{LOOPBACK}:{self._port}>",
            "Max-Forwards: 70",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self._datagram("\r\n".join(lines) + "\r\n\r\n" + body)

    def _datagram(self, text: str) -> None:
        if self._sip is not None:
            self._sip.sendto(text.encode(), self.server)

    def _on_sip(self, data: bytes, _addr: tuple[str, int]) -> None:
        start, headers, body = parse(data)
        call = self._by_id.get(headers.get("call-id", ""))
        if call is None:
            return
        status = start.split()[1] if start.startswith("SIP/2.0 ") and len(start.split()) > 1 else ""
        if status.isdigit():
            self._response(call, int(status), headers, body)
        elif start.startswith("BYE "):
            self._reply_ok(headers)
            self._ended(call)

    def _response(self, call: SipCall, status: int, headers: dict[str, str], body: str) -> None:
        method = headers.get("cseq", "").partition(" ")[2].strip()
        if method == "INVITE" and 200 <= status < 300:
            call.remote_tag = tag_of(headers.get("to", ""))
            call.contact = uri_of(headers.get("contact", "")) or f"sip:{self.called}@{self.server[0]}"
            if not call.answered:
                call.remote_rtp = sdp_target(body)
                call.answered = True
                if self.answered == len(self.calls):
                    self._all_answered.set()
            call.branch = "z9hG4bK" + secrets.token_hex(8)
            self._send(call, "ACK", call.contact, 1)  # every 2xx retransmission gets its ACK (§13.2.2.4)
        elif (method == "INVITE" and status >= 300) or (method == "BYE" and status >= 200):
            self._ended(call)

    def _reply_ok(self, headers: dict[str, str]) -> None:
        lines = ["SIP/2.0 200 OK"] + [
            f"{name}: {headers[key]}"
            for name, key in (("Via", "via"), ("From", "from"), ("To", "to"), ("Call-ID", "call-id"))
            if key in headers
        ]
        lines += [f"CSeq: {headers.get('cseq', '')}", "Content-Length: 0"]
        self._datagram("\r\n".join(lines) + "\r\n\r\n")

    def _ended(self, call: SipCall) -> None:
        call.ended = True
        call.done.set()

    # -- media ---------------------------------------------------------------------------------------------

    def _on_rtp(self, call: SipCall) -> None:
        call.frames_received += 1

    def _tick(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        for call in self.calls:
            if call.answered and not call.ended and call.rtp is not None and call.remote_rtp is not None:
                header = _RTP_HEADER.pack(
                    0x80, PCMA, call.seq & 0xFFFF, (call.seq * 160) & 0xFFFFFFFF, call.ssrc
                )
                call.rtp.sendto(header + call.talker.next_frame(), call.remote_rtp)
                call.seq += 1
                call.frames_sent += 1
        nxt = due + FRAME_SECONDS
        if nxt <= loop.time():  # a frame late or more: skip ahead rather than burst, as the far end does
            nxt = loop.time() + FRAME_SECONDS
        self._ticker = loop.call_at(nxt, self._tick, nxt)
