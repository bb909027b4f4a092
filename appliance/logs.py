"""Structured logging for the appliance, on the standard :mod:`logging` module (STYLE.md rule 20).

Theory of operation. Code logs with ordinary ``logging.getLogger(__name__)`` calls. What a line is
about (the call, the SIP transaction, the E1 span, the peer) travels in a :mod:`contextvars` variable,
so it follows the asyncio task that handles the call without being passed to every function:
:func:`log_context` adds fields for the duration of a ``with`` block, :func:`bind` adds them for the rest
of the current task. A filter on the handler copies the context onto each record when it is emitted (in
the emitting task), and the formatter writes it out: one JSON object per line for the journal and log
shippers, or ``key=value`` text for a person at the console. Fields given per call with
``extra={"ctx": {...}}`` are written too and win over the context.

Conventional field names: ``call`` (the appliance's call id), ``txn`` (SIP transaction key), ``span``
(E1 span number), ``peer`` (``ip:port``).

:class:`SipTrace` is the signalling trace an operator switches on for one call or for all calls: every
SIP message sent or received for a traced call becomes one line on the ``appliance.sip.trace`` logger.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Final, Literal

TRACE_LOGGER: Final = "appliance.sip.trace"

# The only module-level object: a context variable is per task by construction, not shared state.
# Its value is never mutated in place; each change sets a new mapping.
_CONTEXT: Final[ContextVar[Mapping[str, object]]] = ContextVar(
    "appliance_log_context", default=MappingProxyType({})
)

# Keys of a JSON line that context fields may not overwrite; a colliding field is written as "ctx.<key>".
_RESERVED: Final = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})


def _merged(fields: Mapping[str, object]) -> Mapping[str, object]:
    merged = {**_CONTEXT.get(), **fields}
    # None removes a field, so that an inner block can drop e.g. the peer.
    return {k: v for k, v in merged.items() if v is not None}


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add ``fields`` to every log line emitted inside the block (a ``None`` value removes a field)."""
    token = _CONTEXT.set(_merged(fields))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: object) -> None:
    """Add ``fields`` to every later log line of the current context (the current asyncio task, since
    each task runs in a copy of its creator's context); a ``None`` value removes a field."""
    _CONTEXT.set(_merged(fields))


def current_context() -> Mapping[str, object]:
    """The fields in force here (read-only)."""
    return _CONTEXT.get()


class ContextFilter(logging.Filter):
    """Stamps each record with the log context of the code that emitted it (always passes the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context"):
            record.context = _CONTEXT.get()
        return True


def _fields(record: logging.LogRecord) -> dict[str, object]:
    context = getattr(record, "context", None)
    fields = dict(context if context is not None else _CONTEXT.get())
    extra = getattr(record, "ctx", None)
    if isinstance(extra, Mapping):
        fields.update(extra)
    return fields


class _ClockFormatter(logging.Formatter):
    def __init__(self, clock: Callable[[], float] | None) -> None:
        super().__init__()
        self._clock = clock

    def timestamp(self, record: logging.LogRecord) -> str:
        """RFC 3339 UTC with microseconds, from the injected wall clock or the record's creation time."""
        ts = self._clock() if self._clock is not None else record.created
        return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class JsonFormatter(_ClockFormatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, then the context fields, then
    ``exc``/``stack`` when present. Values JSON cannot represent are written as ``str(value)``."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__(clock)

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, object] = {
            "ts": self.timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, val in _fields(record).items():
            obj[f"ctx.{key}" if key in _RESERVED else key] = val
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exc"] = record.exc_text
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        # json.dumps escapes newlines inside strings, so a multi-line SIP message stays on one line.
        return json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(_ClockFormatter):
    """``<ts> <LEVEL> <logger>: <msg> key=value ...`` for a person reading the console."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__(clock)

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = _fields(record)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class _ApplianceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`setup_logging` installs; its type lets a second call find and replace it."""


def setup_logging(
    level: str,
    fmt: Literal["json", "text"],
    stream: IO[str] | None = None,
    *,
    clock: Callable[[], float] | None = None,
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (standard error by default; under
    systemd that is the journal) formatted as ``fmt``. ``clock`` is the wall clock for timestamps
    (seconds since the epoch); by default each record's creation time.

    Calling it again replaces the previous configuration instead of adding a second handler.
    Returns the installed handler. Raises :class:`ValueError` on an unknown level or format.
    """
    levels = logging.getLevelNamesMapping()
    numeric = levels.get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter(clock=clock)
    elif fmt == "text":
        formatter = TextFormatter(clock=clock)
    else:
        raise ValueError(f"unknown log format {fmt!r} (json or text)")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ApplianceHandler)]:
        root.removeHandler(old)
        old.close()
    handler = _ApplianceHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


class SipTrace:
    """A machine-readable SIP signalling trace, switched on per call or for all calls.

    Each traced message is one INFO record on ``logger`` (``appliance.sip.trace`` by default) whose
    message is the SIP text and whose fields are ``call``, ``dir`` (``in``/``out``), ``peer``
    (``ip:port``) and ``transport``; the JSON formatter therefore writes
    ``{"ts", "level", "logger", "msg", "call", "dir", "peer", "transport"}``. The logger is set to INFO
    when it has no level of its own, so a trace an operator asked for appears even when the appliance
    logs only warnings.

    ``call_id`` is the appliance's call identifier (the ``call`` log field), so both legs of a B2BUA call
    are traced together. At most ``max_calls`` calls are traced individually; enabling one more stops
    tracing the one enabled longest ago.
    """

    __slots__ = ("_all", "_calls", "_logger", "_max")

    def __init__(self, *, logger: logging.Logger | None = None, max_calls: int = 256) -> None:
        self._logger = logger if logger is not None else logging.getLogger(TRACE_LOGGER)
        if self._logger.level == logging.NOTSET:
            self._logger.setLevel(logging.INFO)
        self._max = max_calls
        self._calls: dict[str, None] = {}  # insertion-ordered set
        self._all = False

    def enable(self, call_id: str) -> None:
        self._calls.pop(call_id, None)
        self._calls[call_id] = None
        while len(self._calls) > self._max:
            del self._calls[next(iter(self._calls))]

    def disable(self, call_id: str) -> None:
        """Stop tracing ``call_id`` (also to be called when the call ends). No error if not traced."""
        self._calls.pop(call_id, None)

    def enable_all(self, on: bool) -> None:
        """Trace every call (``True``), or only those enabled one by one (``False``)."""
        self._all = on

    def enabled(self, call_id: str | None) -> bool:
        """Whether messages of ``call_id`` are traced; ``None`` (a message not matched to a call) is traced
        only when all calls are."""
        return self._all or (call_id is not None and call_id in self._calls)

    @property
    def traced_calls(self) -> frozenset[str]:
        return frozenset(self._calls)

    def record(
        self,
        call_id: str | None,
        direction: Literal["in", "out"],
        peer: tuple[str, int] | str,
        transport: str,
        msg: bytes | str,
    ) -> None:
        """Write one traced message, if ``call_id`` is traced. ``peer`` is ``(host, port)`` or already
        ``"ip:port"``; ``msg`` is the message as sent or received (bytes that are not UTF-8 are escaped)."""
        if not (self._all or (call_id is not None and call_id in self._calls)):
            return
        if direction not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
        if isinstance(peer, tuple):
            host, port = peer[0], peer[1]
            peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        text = msg.decode("utf-8", errors="backslashreplace") if isinstance(msg, bytes) else msg
        self._logger.info(
            text, extra={"ctx": {"call": call_id, "dir": direction, "peer": peer, "transport": transport}}
        )
