"""The IVR benchmark's load client: building and driving ``bench/ivrload.c``.

The client is C for the reason the relay benchmark's generator is (its header comment gives the details):
at a thousand sessions it sends and receives 100 000 packets a second, and its measurements must not be
its own jitter. It is built with the Makefile's flags into ``build/ivrload`` by :func:`build_client`
(rebuilt when older than its source), so ``python -m bench.ivr`` works without ``make``.

:class:`IvrLoadClient` runs one load of ``sessions`` callers; it speaks the same line protocol as the
relay generator (``ports`` … / ``dest`` … / ``running`` / ``measuring``, see
:class:`bench.loadgen.LoadGenerator`), one stream end per session: :meth:`~IvrLoadClient.start` binds the
callers' sockets, :meth:`~IvrLoadClient.connect` names the worker port each session sends to (its own
port: the calibration run, the client talking to itself), :meth:`~IvrLoadClient.begin` starts the callers
and returns when the measured window opens, :meth:`~IvrLoadClient.result` waits for :class:`ClientResult`.

Digit ``k`` of session ``i`` is :func:`digits_of` ``(i, …)[k]``; the result says how many each session
sent, so the driver can check every session's reported digits, in order.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final

from bench.loadgen import FINISH_MARGIN_S, START_TIMEOUT_S, LoadGenerator, LoadGenError, build

SOURCE: Final = Path(__file__).with_name("ivrload.c")
DEFAULT_BINARY: Final = Path(__file__).resolve().parent.parent / "build" / "ivrload"
DIGIT_CODES: Final = "0123456789*#"
"""The RFC 4733 §3.2 events 0–11 the client presses, as characters."""
DIGIT_MS: Final = 2000
CODEC_PT: Final = 8  # PCMA (RFC 3551 §6)
EVENT_PT: Final = 101  # telephone-event, the usual dynamic payload type
# A client busier than this, or sending later than this, limited the run itself.
SATURATED_CPU: Final = 0.9
SATURATED_LATE_MS: Final = 2.0


def build_client(binary: Path = DEFAULT_BINARY) -> Path:
    """Compile ``bench/ivrload.c`` into ``binary`` unless it is up to date; raises :class:`LoadGenError`."""
    return build(binary, source=SOURCE)


def digits_of(session: int, count: int) -> str:
    """The first ``count`` digits session ``session`` presses (the client's fixed sequence)."""
    return "".join(DIGIT_CODES[(session + k) % len(DIGIT_CODES)] for k in range(count))


@dataclass(frozen=True)
class ClientResult:
    """What the client measured in one run (its JSON line) and the digits each session sent (``digits``).

    Pacing errors are in µs (-1 when no audio arrived): ``pacing_*`` against each stream's median offset
    from its RTP clock, ``first_*`` against its first packet in the window (see bench/ivrload.c);
    ``lost`` counts sequence-number gaps in the window; ``digits_seen``/``digits_wrong`` count the
    telephone-events the client itself received, which only the calibration run does."""

    sessions: int
    seconds: float
    warmup_s: float
    sent: int
    received: int
    audio_received: int
    lost: int
    silent: int
    stalled: int
    socket_drops: int
    digits_sent: int
    digits_seen: int
    digits_wrong: int
    pacing_p50_us: int
    pacing_p99_us: int
    pacing_p999_us: int
    pacing_max_us: int
    first_p99_us: int
    first_max_us: int
    late_p99_us: int
    late_max_us: int
    cpu_s: float
    wall_s: float
    realtime: int
    digits: tuple[int, ...] = ()

    @classmethod
    def parse(cls, digits_line: str, json_line: str) -> ClientResult:
        """The client's last two lines; raises :class:`LoadGenError` on anything else."""
        words = digits_line.split()
        if not words or words[0] != "digits" or not all(w.isdigit() for w in words[1:]):
            raise LoadGenError(f"expected the digits each session sent, got {digits_line[:60]!r}")
        try:
            raw = json.loads(json_line)
        except ValueError:
            raise LoadGenError(f"client result is not JSON: {json_line!r}") from None
        numbers = {f.name: f.type for f in fields(cls) if f.name != "digits"}
        if not isinstance(raw, dict) or any(
            isinstance(raw.get(name), bool) or not isinstance(raw.get(name), int | float) for name in numbers
        ):
            raise LoadGenError(f"client result lacks a number: {json_line!r}")
        values = {
            name: float(raw[name]) if kind == "float" else int(raw[name]) for name, kind in numbers.items()
        }
        counts = tuple(int(w) for w in words[1:])
        if len(counts) != values["sessions"]:
            raise LoadGenError(f"{len(counts)} digit counts for {values['sessions']} sessions")
        return cls(**values, digits=counts)  # type: ignore[arg-type]

    @property
    def p99_pacing_error_ms(self) -> float | None:
        return None if self.pacing_p99_us < 0 else self.pacing_p99_us / 1000

    @property
    def max_pacing_error_ms(self) -> float | None:
        return None if self.pacing_p99_us < 0 else self.pacing_max_us / 1000

    @property
    def first_p99_pacing_error_ms(self) -> float | None:
        return None if self.first_p99_us < 0 else self.first_p99_us / 1000

    @property
    def cpu_share(self) -> float:
        """The client's CPU over its sending window, as a share of one core."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def saturated(self) -> bool:
        """True when the client, not the worker, may have limited the run: it was busy or sent late.

        Datagrams its sockets dropped (``socket_drops``) are not counted here: with the client keeping up,
        they come from the machine's UDP memory running out (``net.ipv4.udp_mem``), which a worker that
        falls behind its own receive queues causes."""
        return self.cpu_share > SATURATED_CPU or self.late_p99_us / 1000 > SATURATED_LATE_MS


class IvrLoadClient(LoadGenerator):
    """One run of the C client for ``sessions`` callers over ``seconds``; use ``async with``."""

    def __init__(
        self,
        sessions: int,
        seconds: float,
        *,
        binary: Path = DEFAULT_BINARY,
        warmup_ms: int = 0,
        digit_ms: int = DIGIT_MS,
        realtime: bool = True,
    ) -> None:
        super().__init__(sessions, seconds, binary=binary, realtime=realtime, warmup_ms=warmup_ms)
        self.sessions = sessions
        self.digit_ms = digit_ms
        self._dest = [None] * sessions

    async def __aenter__(self) -> IvrLoadClient:
        await self.start()
        return self

    async def start(self) -> None:
        """Spawn the client and read its callers' ports."""
        self._proc = await asyncio.create_subprocess_exec(
            str(self.binary),
            "--sessions", str(self.sessions),
            "--seconds", str(self.seconds),
            "--warmup-ms", str(self.warmup_ms),
            "--drain-ms", str(self.drain_ms),
            "--slot-us", str(self.slot_us),
            "--digit-ms", str(self.digit_ms),
            "--codec-pt", str(CODEC_PT),
            "--event-pt", str(EVENT_PT),
            "--rt", "1" if self.realtime else "0",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 20,  # the ports line of thousands of callers
        )  # fmt: skip
        words = (await self._line(START_TIMEOUT_S)).split()
        if not words or words[0] != "ports" or len(words) != self.sessions + 1:
            raise LoadGenError(f"expected the ports of {self.sessions} callers, got {words[:4]}...")
        self._ports = [int(w) for w in words[1:]]

    def port(self, session: int) -> int:
        """Session ``session``'s own UDP port (where the worker's prompt goes)."""
        return self._ports[session]

    def connect(self, session: int, worker_port: int) -> None:  # type: ignore[override]
        """Where session ``session`` sends its audio and digits: its leg's port on the worker."""
        self._dest[session] = worker_port

    async def result(self) -> ClientResult:  # type: ignore[override]
        """Wait for the run to end and return its figures."""
        digits = await self._line(self.seconds + self.drain_ms / 1000 + FINISH_MARGIN_S)
        line = await self._line(START_TIMEOUT_S)
        proc = self._running()
        await proc.wait()
        self._proc = None
        return ClientResult.parse(digits, line)
