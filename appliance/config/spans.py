"""The ``[[spans]]`` tables: the E1/PRI spans the appliance drives.

``make run`` has one span (DESIGN.md §5.1): span 1 on the simulated backend, user side (the carrier is the
network side), ETSI EuroISDN, CCS framing with HDB3 and CRC-4 (what E1 PRI carriers provision, ITU-T G.704
§2.3.3 and G.706 §4), B-channels on timeslots 1-15 and 17-31 (timeslot 16 carries the D-channel).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from appliance.config.rules import REJECT, Rule, expected, integer, non_empty_text, rule

Problem = tuple[str, str]

SIGNALLING_TIMESLOT: Final = 16
ALL_B_CHANNELS: Final = tuple(range(1, 16)) + tuple(range(17, 32))


def _b_channel(v: int) -> str | None:
    return None if 1 <= v <= 31 and v != SIGNALLING_TIMESLOT else "timeslot 16 carries the D-channel"


def _digits(v: str) -> str | None:
    return None if len(v) <= 8 and v.isascii() and (v == "" or v.isdigit()) else REJECT


# T306's value (EN 300 403-1 Table 9-1) is 30 s; a far end's announcement may run a few minutes at most.
ANNOUNCEMENT_TIMEOUT_RANGE: Final = (1.0, 300.0)


def _announcement_timeout(v: float) -> str | None:
    low, high = ANNOUNCEMENT_TIMEOUT_RANGE
    return None if math.isfinite(v) and low <= v <= high else REJECT


@dataclass(frozen=True)
class SpanConfig:
    """One E1 span: its driver, framing and the ISDN side and numbering it speaks on the D-channel."""

    number: int = field(default=1, metadata=integer(1, 255))
    # "sim": the software span of DESIGN.md §5.2 (Unix sockets under <state_dir>/run); "dahdi": a card.
    driver: Literal["sim", "dahdi"] = "sim"
    side: Literal["user", "network"] = "user"
    switch_type: Literal["euroisdn"] = "euroisdn"
    framing: Literal["ccs", "cas"] = "ccs"
    line_code: Literal["hdb3", "ami"] = "hdb3"
    crc4: bool = True
    # Clock source preference: 1 is tried first, 0 never recovers the clock from this span (DAHDI's
    # system.conf "timing" field).
    timing_priority: int = field(default=1, metadata=integer(0, 31))
    b_channels: tuple[int, ...] = field(
        default=ALL_B_CHANNELS,
        metadata=rule(
            "an array of timeslots 1-15 and 17-31",
            item=Rule("a timeslot from 1 to 31 other than 16", _b_channel),
        ),
    )
    # How called numbers go out in a SETUP: "ton" as national/international type of number without
    # prefixes (Q.931 §4.5.8), "unknown" as type unknown with the region's dialling prefixes, which some
    # carriers require.
    number_format: Literal["ton", "unknown"] = "ton"
    # Prepended to subscriber numbers (type of number "subscriber") to make them national, e.g. "30".
    area_code: str = field(default="", metadata=rule("up to 8 digits (or empty)", _digits))
    # Seconds a far end's announcement on DISCONNECT (progress indicator 8, Q.931 §5.3.4.1) is kept at most
    # before the appliance releases the call itself, in case the far end's RELEASE (its T306) never comes.
    announcement_timeout: float = field(
        default=30.0, metadata=rule("a number of seconds from 1 to 300", _announcement_timeout)
    )
    # Write the span's D-channel as a pcap under <state_dir>/trace (appliance.app_pri_span.SpanTrace).
    trace: bool = False

    def cross_check(self) -> Iterator[Problem]:
        seen: set[int] = set()
        for i, slot in enumerate(self.b_channels):
            if slot in seen:
                yield f"b_channels[{i}]", expected("a timeslot listed once", slot)
            seen.add(slot)
        if not self.b_channels:
            yield "b_channels", "at least one B-channel is required"
        if self.framing == "cas":
            yield "framing", 'only "ccs" is supported: the appliance signals with ISDN PRI on the D-channel'

    @property
    def name(self) -> str:
        return str(self.number)


DEFAULT_SPANS: Final = (SpanConfig(),)


@dataclass(frozen=True)
class DahdiConfig:
    """The ``[dahdi]`` table: where the spans with ``driver = "dahdi"`` find DAHDI (defaults: a standard
    installation). DAHDI configures every span of the box from one system.conf with one ``dahdi_cfg`` run."""

    system_conf: str = field(default="/etc/dahdi/system.conf", metadata=non_empty_text("a file path"))
    dahdi_cfg: str = field(default="/usr/sbin/dahdi_cfg", metadata=non_empty_text("a program path"))
    sysfs_spans: str = field(default="/sys/bus/dahdi_spans/devices", metadata=non_empty_text("a directory"))
    proc_dahdi: str = field(default="/proc/dahdi", metadata=non_empty_text("a directory path"))
    # The directory of DAHDI's devices: "channel" (one fd per D- or B-channel) and "ctl" (loopbacks).
    device_dir: str = field(default="/dev/dahdi", metadata=non_empty_text("a directory path"))
    # "hardhdlc" for a card with an HDLC controller for the D-channel, "dchan" for HDLC in software.
    hdlc: Literal["hardhdlc", "dchan"] = "hardhdlc"


def span_problems(spans: tuple[SpanConfig, ...]) -> Iterator[Problem]:
    """Span numbers are unique. A route's ``pri:<n>`` is not checked against them: spans also arrive as
    sync documents at run time, and a route to a span that is not there fails over to its next destination.
    """
    first: dict[int, int] = {}
    for i, span in enumerate(spans):
        if span.number in first:
            words = f"a unique span number (also spans[{first[span.number]}])"
            yield f"spans[{i}].number", expected(words, span.number)
        first.setdefault(span.number, i)


PORTS_PER_SPAN: Final = 64
"""RTP/RTCP ports a span's TDM worker holds: a pair per B-channel (30 on a full E1), rounded up."""


def span_port_ranges(
    rtp_port_min: int, rtp_port_max: int, spans: int
) -> tuple[tuple[int, int], tuple[tuple[int, int], ...]]:
    """Split the media RTP range: each span takes :data:`PORTS_PER_SPAN` ports from the top (the first
    span the highest slice), the media workers keep what is below. Returns ``(media range, span ranges)``;
    every span range starts on an even port (RTP even, RTCP the odd one above, RFC 3550 §11). The media
    range is empty (its high end below its low end) when the spans take it all."""
    top = rtp_port_max if rtp_port_max % 2 else rtp_port_max - 1  # the last whole even/odd pair
    slices = tuple((top + 1 - PORTS_PER_SPAN * (i + 1), top - PORTS_PER_SPAN * i) for i in range(spans))
    return (rtp_port_min, top - PORTS_PER_SPAN * spans), slices


def span_port_problems(rtp_port_min: int, rtp_port_max: int, workers: int, spans: int) -> Iterator[Problem]:
    """The RTP range holds every span's slice and a pair per media worker (``workers`` 0: one, the least
    a machine has; the process checks its real count when it starts)."""
    if not spans:
        return
    (low, high), _ = span_port_ranges(rtp_port_min, rtp_port_max, spans)
    need = PORTS_PER_SPAN * spans + 2 * max(workers, 1)
    if (high - low + 1) // 2 < max(workers, 1):
        words = f"at least {need} ports from rtp_port_min ({PORTS_PER_SPAN} per span and a pair per worker)"
        yield "media.rtp_port_max", expected(words, rtp_port_max)
