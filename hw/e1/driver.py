"""The one interface the control process drives a span through, whatever the backend (``sim``, ``dahdi``).

Life cycle: :meth:`SpanDriver.configure` with a :class:`~hw.e1.model.SpanConfig`, then
:meth:`~SpanDriver.start`; :meth:`~SpanDriver.stop` ends it (and closes the channels opened on it).
Once started the span reports, through the ``on_event`` callback given to the backend's constructor,
every :data:`SpanEvent`: alarms raised and cleared (:mod:`hw.e1.alarms`), loopback changes, and timing
source changes when a :class:`~hw.e1.timing.TimingSelector` is shared between the spans.

The control process opens the D-channel with :meth:`~SpanDriver.open_dchannel`. The B-channels are for
a media process: :meth:`~SpanDriver.bchannels_spec` describes them in a picklable
:class:`BChannelsSpec` that the control process hands to the worker, which opens them with
:func:`hw.e1.channels.open_bchannels`; :meth:`~SpanDriver.open_bchannels` opens them in-process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from hw.e1.alarms import Alarm, AlarmCleared, AlarmRaised
from hw.e1.links import BChannelHandler, BChannels, DChannel, DChannelHandler
from hw.e1.model import Loopback, SpanConfig, SpanCounters
from hw.e1.timing import TimingSourceChanged


@dataclass(frozen=True, slots=True)
class LoopbackChanged:
    span: int
    loopback: Loopback
    previous: Loopback
    at: float  # wall-clock time


SpanEvent = AlarmRaised | AlarmCleared | LoopbackChanged | TimingSourceChanged
SpanEventCallback = Callable[[SpanEvent], None]


@dataclass(frozen=True, slots=True)
class SpanStatus:
    """A snapshot of one span.

    ``alarms`` maps each declared alarm to the wall-clock time it was raised; ``timing_source`` is true
    when the box takes its clock from this span; ``name``/``description`` are the backend's (a card's
    driver name, or the socket paths of a simulated span).
    """

    span: int
    running: bool
    alarms: Mapping[Alarm, float] = field(default_factory=dict)
    counters: SpanCounters = field(default_factory=SpanCounters)
    loopback: Loopback = Loopback.NONE
    timing_source: bool = False
    d_channel_up: bool = False
    name: str = ""
    description: str = ""

    @property
    def in_alarm(self) -> bool:
        return bool(self.alarms)


@dataclass(frozen=True, slots=True)
class BChannelsSpec:
    """Where a media process finds a span's B-channels.

    ``sim``: ``path`` is the span's B-channel socket. ``dahdi``: ``basechan`` is the DAHDI channel number
    of the span's timeslot 1, so timeslot *t* is channel ``basechan + t - 1``.
    """

    backend: Literal["sim", "dahdi"]
    span: int
    timeslots: tuple[int, ...]
    path: Path | None = None
    basechan: int | None = None


class SpanDriver(Protocol):
    """One E1 span. Methods raise :class:`hw.e1.errors.E1Error` subclasses, and only for our own misuse
    (:class:`~hw.e1.errors.SpanConfigError`, :class:`~hw.e1.errors.LinkUsageError`) or a backend that
    cannot act (:class:`~hw.e1.errors.DahdiError`); the line's state is reported as status and events."""

    @property
    def number(self) -> int: ...

    def configure(self, config: SpanConfig) -> None:
        """Take ``config`` (before :meth:`start`, or between :meth:`stop` and :meth:`start`)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> SpanStatus: ...

    def set_loopback(self, mode: Loopback) -> None:
        """Loop the span (``Loopback.NONE`` ends a loopback); reported as a :class:`LoopbackChanged`."""

    async def open_dchannel(self, handler: DChannelHandler) -> DChannel: ...

    async def open_bchannels(self, handler: BChannelHandler) -> BChannels: ...

    def bchannels_spec(self) -> BChannelsSpec: ...
