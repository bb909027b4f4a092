"""Media the appliance terminates itself, for the local IVR destination.

Sans-I/O: :meth:`SilenceMedia.answer` negotiates the caller's offer (RFC 3264), allocates an RTP port and
queues a command for the media glue, which plays paced silence until :meth:`stop`. The real IVR engine
replaces the silence with prompts; the negotiation and port handling stay.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from appliance.calls.b2bua import MediaRefused
from appliance.media.ports import PortAllocator, PortsExhaustedError
from appliance.sdp import PCMA, PCMU, answer_audio, parse_sdp
from appliance.sdp.errors import SdpError


@dataclass(frozen=True, slots=True)
class StartSilence:
    stream_id: str
    local_port: int
    remote: tuple[str, int]
    payload_type: int
    silence_octet: int


@dataclass(frozen=True, slots=True)
class StopStream:
    stream_id: str
    local_port: int


MediaCommand = StartSilence | StopStream


class SilenceMedia:
    def __init__(self, *, address: str, ports: PortAllocator) -> None:
        self.address = address
        self.ports = ports
        self.commands: deque[MediaCommand] = deque()
        self._streams: dict[str, tuple[int, bytes]] = {}
        self._session_ids = itertools.count(1)

    def answer(self, stream_id: str, offer: bytes | None) -> bytes:
        if offer is None:
            raise MediaRefused(488, "No SDP offer (delayed offer is not supported by the local IVR)")
        try:
            sdp = parse_sdp(offer)
        except SdpError as exc:
            raise MediaRefused(exc.status if exc.status >= 400 else 488, exc.reason) from None
        # A new offer in the same call gets a fresh socket: the player owns the old one until it stops it.
        self.stop(stream_id)
        try:
            port = self.ports.allocate()
        except PortsExhaustedError:
            raise MediaRefused(503, "No RTP port free") from None
        try:
            answer, negotiated = answer_audio(
                sdp,
                local_address=self.address,
                local_port=port,
                supported=(PCMA, PCMU),
                session_id=next(self._session_ids),
                session_version=1,
            )
        except SdpError as exc:
            self.ports.release(port)
            raise MediaRefused(exc.status if exc.status >= 400 else 488, exc.reason) from None
        body = answer.to_bytes()
        self._streams[stream_id] = (port, body)
        octet = 0xFF if negotiated.codec.name.upper() == "PCMU" else 0xD5
        self.commands.append(
            StartSilence(stream_id, port, (negotiated.remote_address, negotiated.remote_port),
                         negotiated.payload_type, octet)
        )  # fmt: skip
        return body

    def stop(self, stream_id: str) -> None:
        entry = self._streams.pop(stream_id, None)
        if entry is not None:
            self.commands.append(StopStream(stream_id, entry[0]))
            self.ports.release(entry[0])

    @property
    def active(self) -> int:
        return len(self._streams)
