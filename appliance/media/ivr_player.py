"""Prompt playback for the IVR on a media worker leg: the audio file cache, the paced RTP stream, and the
deadline heap that paces every playing leg of a worker with one timer.

Theory of operation. Prompts are raw 8 kHz A-law files (the prompt catalog's format). :class:`AudioCache`
reads each file once and keeps it in memory, least recently used first out under a byte budget, keyed by
path, modification time and size so that a prompt replaced on disk (a cloud push) is read again.

:class:`RtpStream` is one leg's outgoing IVR stream: its own random SSRC (RFC 3550 §8), a sequence number
and a timestamp that continue across playbacks, and the leg's negotiated payload type. Between two
playbacks the timestamp advances by the samples of the pause, because it follows the sampling clock (RFC
3550 §5.1), and the first packet of each playback carries the marker bit (RFC 3551 §4.1: the first packet
of a talkspurt).

:class:`Playback` plays a list of files as one sequence of 20 ms packets of 160 octets (a packet may span
two files; the last one is padded with the law's silence octet); with ``loop`` it starts over after the
last file until stopped. Packet *n* is due exactly at ``start + n * PTIME``, computed from *n* and never
accumulated, so pacing cannot drift. A caller that fires late sends the missed packets at once if it is at
most :data:`MAX_CATCH_UP` behind; further behind it skips them, their timestamps passed over, and the next
packet carries the marker bit. A PCMU leg gets each packet through G.711 Table 4
(:data:`~appliance.media.g711.ALAW_TO_ULAW_TABLE`).

:class:`DeadlineHeap` keeps the earliest deadline of any number of keys (endpoints) in a binary heap with
lazy deletion, so that the worker keeps one ``loop.call_at`` for every playing leg: O(log n) per packet.

Pure code apart from the cache's file reads: ``now`` is a parameter.
"""

from __future__ import annotations

import heapq
import itertools
import os
import struct
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Final, Generic, TypeVar

from appliance.media.g711 import ALAW_SILENCE_OCTET, ALAW_TO_ULAW_TABLE, ULAW_SILENCE_OCTET
from appliance.media.rtp import MediaError

PTIME: Final = 0.020
"""Seconds of audio per packet."""
SAMPLES: Final = 160
"""Samples (and G.711 octets) per packet at 8 kHz."""
CLOCK_RATE: Final = 8000
MAX_CATCH_UP: Final = 5
"""Late packets sent in a burst before a playback skips instead (100 ms at 20 ms)."""
DEFAULT_CACHE_BYTES: Final = 64 * 1024 * 1024
MAX_FILE_BYTES: Final = 64 * 1024 * 1024
"""A prompt file above this size is refused (over two hours of audio)."""

_HEADER: Final = struct.Struct("!BBHII")


class PromptFileError(MediaError):
    """A prompt file that cannot be played (missing, unreadable, too large); the message names it."""


class AudioCache:
    """Prompt file contents by path, least recently used out once over ``max_bytes``.

    :meth:`load` stats the file on every call (a prompt replaced on disk is read again: the key is path,
    modification time in nanoseconds and size) and reads it only on a miss. A file larger than the whole
    budget is returned without being kept.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()

    def load(self, path: str) -> bytes:
        """The contents of ``path``; raises :class:`PromptFileError` naming it."""
        try:
            st = os.stat(path)
            key = (path, st.st_mtime_ns, st.st_size)
            data = self._entries.get(key)
            if data is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return data
            if st.st_size > MAX_FILE_BYTES:
                raise PromptFileError(f"prompt {path}: {st.st_size} octets is too large")
            with open(path, "rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise PromptFileError(f"prompt {path}: {exc.strerror or exc}") from None
        self.misses += 1
        if len(data) <= self.max_bytes:
            self._entries[key] = data
            self.size += len(data)
            while self.size > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self.size -= len(old)
        return data


class RtpStream:
    """One leg's outgoing IVR RTP stream (see the module docstring). ``ssrc``, ``initial_seq`` and
    ``initial_timestamp`` come from the caller: random in the worker (RFC 3550 §5.1, §8), fixed in tests.
    ``clock`` is the time the next timestamp stands for."""

    __slots__ = ("clock", "octets", "packets", "payload_type", "seq", "ssrc", "timestamp")

    def __init__(self, *, ssrc: int, payload_type: int, initial_seq: int, initial_timestamp: int) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError("payload type out of range 0-127")
        self.ssrc = ssrc & 0xFFFFFFFF
        self.payload_type = payload_type
        self.seq = initial_seq & 0xFFFF
        self.timestamp = initial_timestamp & 0xFFFFFFFF
        self.clock: float | None = None
        self.packets = 0
        self.octets = 0

    def begin(self, start: float) -> None:
        """A playback starts at ``start``: the timestamp passes over the pause since the last packet."""
        if self.clock is not None and start > self.clock:
            self.skip(round((start - self.clock) * CLOCK_RATE))
        self.clock = start

    def skip(self, samples: int) -> None:
        """Pass over ``samples`` not sent (the timestamp follows the clock, the sequence only packets)."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        if self.clock is not None:
            self.clock += samples / CLOCK_RATE

    def packet(self, payload: bytes, marker: bool) -> bytes:
        """The next packet carrying ``payload`` (one sample per octet)."""
        second = self.payload_type | 0x80 if marker else self.payload_type
        data = _HEADER.pack(0x80, second, self.seq, self.timestamp, self.ssrc) + payload
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + len(payload)) & 0xFFFFFFFF
        if self.clock is not None:
            self.clock += len(payload) / CLOCK_RATE
        self.packets += 1
        self.octets += len(payload)
        return data


class Playback:
    """One playback: ``audio`` (A-law, one bytes object per file) in 160-octet packets from ``start``.

    ``law`` is the leg's codec (``"PCMA"`` or ``"PCMU"``). :meth:`due` gives the packets due by ``now``;
    :attr:`finished` turns true once the last packet was taken (never with ``loop``, unless the audio is
    empty). ``play_id`` is None for the worker's own playbacks (the voicemail beep).
    """

    __slots__ = (
        "_audio",
        "_file",
        "_index",
        "_marker",
        "_max_catch_up",
        "_offset",
        "_silence",
        "_start",
        "_table",
        "barge_in",
        "finished",
        "loop",
        "play_id",
        "skipped",
    )

    def __init__(
        self,
        audio: Sequence[bytes],
        *,
        law: str,
        start: float,
        play_id: int | None = None,
        barge_in: bool = False,
        loop: bool = False,
        max_catch_up: int = MAX_CATCH_UP,
    ) -> None:
        self._audio = tuple(data for data in audio if data)
        self.set_law(law)
        self._start = start
        self._index = 0
        self._file = 0
        self._offset = 0
        self._marker = True
        self._max_catch_up = max_catch_up
        self.play_id = play_id
        self.barge_in = barge_in
        self.loop = loop
        self.skipped = 0
        self.finished = not self._audio

    def set_law(self, law: str) -> None:
        """The leg was re-negotiated to ``law``: the packets from now on are in it."""
        self._table = ALAW_TO_ULAW_TABLE if law.upper() == "PCMU" else None
        self._silence = bytes((ULAW_SILENCE_OCTET if self._table is not None else ALAW_SILENCE_OCTET,))

    @property
    def clock(self) -> float:
        """The due time of the packet after those taken: once finished, when the audio has played out."""
        return self._start + self._index * PTIME

    @property
    def next_due(self) -> float | None:
        """When the next packet is due; None once finished."""
        return None if self.finished else self._start + self._index * PTIME

    def _advance(self, step: int) -> None:
        self._offset += step
        if self._offset >= len(self._audio[self._file]):
            self._offset = 0
            self._file += 1
            if self._file == len(self._audio):
                if self.loop:
                    self._file = 0
                else:
                    self.finished = True

    def _take(self, size: int) -> bytes:
        """The next ``size`` octets of the sequence (fewer at the end without ``loop``)."""
        data = self._audio[self._file]
        start = self._offset
        end = start + size
        if end < len(data):  # the common case: inside one file, one slice
            self._offset = end
            return data[start:end]
        parts: list[bytes] = []
        while size > 0 and not self.finished:
            piece = self._audio[self._file][self._offset : self._offset + size]
            parts.append(piece)
            size -= len(piece)
            self._advance(len(piece))
        return b"".join(parts)

    def _skip(self, size: int) -> int:
        """Pass over the next ``size`` octets without building them; returns how many there were."""
        done = 0
        while done < size and not self.finished:
            step = min(size - done, len(self._audio[self._file]) - self._offset)
            done += step
            self._advance(step)
        return done

    def due(self, stream: RtpStream, now: float) -> list[bytes]:
        """The packets due by ``now`` as RTP datagrams of ``stream`` (catching up or skipping, see the
        module docstring)."""
        out: list[bytes] = []
        while not self.finished:
            late = now - (self._start + self._index * PTIME)
            if late < 0:
                break
            if late >= (self._max_catch_up + 1) * PTIME:
                behind = int(late / PTIME)  # later deadlines that have also passed
                stream.skip(self._skip(behind * SAMPLES))
                self._index += behind
                self.skipped += behind
                self._marker = True
                if self.finished:
                    break
            payload = self._take(SAMPLES)
            if self._table is not None:
                payload = payload.translate(self._table)
            if len(payload) < SAMPLES:
                payload += self._silence * (SAMPLES - len(payload))
            out.append(stream.packet(payload, self._marker))
            self._marker = False
            self._index += 1
        return out


K = TypeVar("K", bound=Hashable)


class DeadlineHeap(Generic[K]):
    """The earliest deadline of many keys: :meth:`set` a key's deadline (None removes it), :meth:`get_timer`
    the earliest, :meth:`pop_due` the keys due by ``now`` (removed: the caller sets them again)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._deadline: dict[K, float] = {}
        self._order: Callable[[], int] = itertools.count().__next__

    def __len__(self) -> int:
        return len(self._deadline)

    def set(self, key: K, deadline: float | None) -> None:
        if deadline is None:
            self._deadline.pop(key, None)
            return
        if self._deadline.get(key) == deadline:
            return
        self._deadline[key] = deadline
        heapq.heappush(self._heap, (deadline, self._order(), key))

    def _clean(self) -> None:
        heap, current = self._heap, self._deadline
        # Entries whose key moved or left are skipped here rather than searched for at each change.
        while heap and current.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)

    def get_timer(self) -> float | None:
        self._clean()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[K]:
        out: list[K] = []
        heap, current = self._heap, self._deadline
        while heap:
            deadline, _, key = heap[0]
            if current.get(key) != deadline:
                heapq.heappop(heap)
                continue
            if deadline > now:
                break
            heapq.heappop(heap)
            del current[key]
            out.append(key)
        return out
