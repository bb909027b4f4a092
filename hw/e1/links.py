"""The two data paths of a span, as the layers above see them, whatever the backend.

- The **D-channel** carries whole LAPD frames (Q.921 §2: address, control, information) without the HDLC
  flags, bit stuffing or FCS, which the card (or the simulated span, DESIGN.md §5.2) adds and checks.
- The **B-channels** carry 64 kbit/s A-law audio per timeslot, delivered and taken in 20 ms frames of
  :data:`FRAME_OCTETS` octets.

A backend calls its handler from the event loop's thread: a frame as it arrives, and the link's state
when it changes (``up`` false is a span without a far end: loss of signal on the simulated span, an alarm
or a closed channel on a card). Sending on a link that is down drops the frame; the backend counts it.
"""

from __future__ import annotations

from typing import Final, Protocol

FRAME_OCTETS: Final = 160  # 20 ms of 8 kHz A-law
# E1 timeslots that can be B-channels (ITU-T G.704 §5: 0 is framing, 16 the D-channel on a CCS span).
B_TIMESLOTS: Final = tuple(range(1, 16)) + tuple(range(17, 32))
MAX_LAPD_FRAME: Final = (
    2 + 2 + 260
)  # address 2 + control ≤ 2 + N201 = 260 octets of information (Q.921 §5.9.3)


class DChannelHandler(Protocol):
    def frame_received(self, frame: bytes) -> None: ...

    def link_changed(self, up: bool) -> None: ...


class DChannel(Protocol):
    """An open D-channel; :meth:`send` never blocks and never raises for a missing far end."""

    @property
    def up(self) -> bool: ...

    def send(self, frame: bytes) -> None: ...

    async def close(self) -> None: ...


class BChannelHandler(Protocol):
    def frame_received(self, timeslot: int, samples: bytes) -> None: ...

    def link_changed(self, up: bool) -> None: ...


class BChannels(Protocol):
    """The open B-channels of one span; :meth:`send` takes one 20 ms frame of one timeslot."""

    @property
    def up(self) -> bool: ...

    def send(self, timeslot: int, samples: bytes) -> None: ...

    async def close(self) -> None: ...
