"""DAHDI's ``/etc/dahdi/system.conf`` from span configurations, written atomically, and ``dahdi_cfg``.

The file has the syntax of dahdi-tools' ``system.conf.sample`` as ``dahdi_cfg`` reads it:

- ``span=<span>,<timing>,<lbo>,<framing>,<coding>[,crc4]``: ``timing`` is the clock-source priority
  (0 never, 1 first, …), ``lbo`` 0 for E1, framing ``ccs``/``cas`` (G.704 §5.1), coding ``hdb3``/``ami``
  (G.703 §9), and ``crc4`` to use the CRC-4 multiframe (G.704 §2.3.3, G.706 §4);
- ``bchan=<channels>``: the clear 64 kbit/s channels that carry the calls' audio;
- ``hardhdlc=<channel>`` (a card with an HDLC controller) or ``dchan=<channel>`` (HDLC in DAHDI's software)
  for the D-channel on timeslot 16;
- ``loadzone=``/``defaultzone=``: the tone zone (``dahdi_cfg`` requires one; PRI calls do not use it).

No ``echocanceller=`` line: the appliance's media workers own the audio path and cancel echo (or not)
themselves; a kernel canceller would process the B-channels a second time.

DAHDI numbers channels across the whole box: span N's timeslot *t* is channel ``basechan + t - 1``, where
``basechan`` is read from sysfs (``/sys/bus/dahdi_spans/devices/span-N/basechan``); E1 spans registered in
order have ``basechan = 31 * (N - 1) + 1``, the default when sysfs is not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from hw.e1.errors import DahdiCfgError, DahdiError, SpanConfigError
from hw.e1.model import SpanConfig

E1_CHANNELS: Final = 31  # timeslots 1-31 of a G.704 frame are DAHDI channels; 0 is framing
HEADER: Final = "# Written by the appliance from its span configuration: edits here are overwritten.\n"

HdlcMode = Literal["hardhdlc", "dchan"]


@dataclass(frozen=True, slots=True)
class DahdiSettings:
    """Where the DAHDI backend finds things and how it configures the spans (all injectable for tests)."""

    system_conf: Path = Path("/etc/dahdi/system.conf")
    dahdi_cfg: Path = Path("/usr/sbin/dahdi_cfg")
    dahdi_cfg_timeout: float = 30.0
    sysfs_spans: Path = Path("/sys/bus/dahdi_spans/devices")
    proc_dahdi: Path = Path("/proc/dahdi")
    channel_device: Path = Path("/dev/dahdi/channel")
    ctl_device: Path = Path("/dev/dahdi/ctl")
    hdlc: HdlcMode = "hardhdlc"
    tone_zone: str = "us"
    poll_interval: float = 1.0  # seconds between reads of the spans' alarms and counters


def default_basechan(span: int) -> int:
    return E1_CHANNELS * (span - 1) + 1


def channel_ranges(channels: Iterable[int]) -> str:
    """``1,2,3,5`` → ``1-3,5``: the list syntax of system.conf."""
    parts: list[str] = []
    ordered = sorted(set(channels))
    start = prev = None
    for ch in [*ordered, None]:
        if start is not None and prev is not None and ch == prev + 1:
            prev = ch
            continue
        if start is not None and prev is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = ch
    return ",".join(parts)


def render_system_conf(
    spans: Sequence[SpanConfig],
    *,
    hdlc: HdlcMode = "hardhdlc",
    tone_zone: str = "us",
    basechans: Mapping[int, int] | None = None,
) -> str:
    """The text of system.conf for ``spans``; raises :class:`SpanConfigError` for what DAHDI cannot do."""
    if not spans:
        raise SpanConfigError("the dahdi backend needs at least one span")
    if not tone_zone.isalnum():
        raise SpanConfigError(f"tone zone {tone_zone!r} is not a DAHDI zone name")
    numbers = [s.number for s in spans]
    if len(set(numbers)) != len(numbers):
        raise SpanConfigError(f"span numbers are not unique: {numbers}")
    lines = [HEADER]
    for span in sorted(spans, key=lambda s: s.number):
        if span.framing != "ccs" or span.d_channel is None:
            raise SpanConfigError(f"span {span.number}: the dahdi backend drives CCS (ISDN PRI) spans only")
        base = (basechans or {}).get(span.number, default_basechan(span.number))
        fields = [
            f"span={span.number}",
            str(span.timing_priority),
            str(span.lbo),
            span.framing,
            span.line_code,
        ]
        if span.crc4:
            fields.append("crc4")
        lines.append(f"# span {span.number}: ETSI EuroISDN, {span.side} side\n")
        lines.append(",".join(fields) + "\n")
        lines.append(f"bchan={channel_ranges(base + ts - 1 for ts in span.b_channels)}\n")
        lines.append(f"{hdlc}={base + span.d_channel - 1}\n")
    lines.append(f"loadzone={tone_zone}\n")
    lines.append(f"defaultzone={tone_zone}\n")
    return "".join(lines)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: a temporary file beside it, fsync, rename, fsync of the directory.

    A reader (``dahdi_cfg``, or a box that loses power) sees the old file or the new one, never a part.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DahdiError(f"cannot write {path}: {exc.strerror or exc}") from exc


async def run_dahdi_cfg(settings: DahdiSettings) -> None:
    """Run ``dahdi_cfg -c <system.conf>``; raises :class:`DahdiCfgError` with what it said on failure."""
    argv = [os.fspath(settings.dahdi_cfg), "-c", os.fspath(settings.system_conf)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise DahdiCfgError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    try:
        _, err = await asyncio.wait_for(proc.communicate(), settings.dahdi_cfg_timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DahdiCfgError(f"{argv[0]} did not finish within {settings.dahdi_cfg_timeout:g} s") from None
    stderr = err.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        detail = stderr.splitlines()[-1] if stderr else "no message"
        raise DahdiCfgError(
            f"{argv[0]} failed with status {proc.returncode}: {detail}",
            returncode=proc.returncode,
            stderr=stderr,
        )
