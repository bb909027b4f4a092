"""CPU of the appliance's processes for the PRI bench: the control process and its media processes.

Contract. :class:`ProcessCpu` watches the control process ``pid``. :meth:`ProcessCpu.sample` reads
``/proc/<pid>/stat`` of the control process (its own ``utime + stime``: not its children's) and of each of
its children, each child with all its descendants and their reaped children, the child
classed by its command line: a span's TDM worker (``appliance.media.tdm.worker``), a media worker
(``appliance.media.worker``) or another process. Two samples give a :class:`CpuWindow`: each class's CPU
over the wall time between them as % of one core. A child present in one sample only counts from zero
(one that started) or is left out (one that ended: its last ticks are lost, and the window says
``restarted``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.servers import ProcStats, clock_ticks_per_second

TDM: Final = "tdm"
MEDIA: Final = "media"
OTHER: Final = "other"
_KINDS: Final = ((TDM, "appliance.media.tdm.worker"), (MEDIA, "appliance.media.worker"))


def kind_of(cmdline: str) -> str:
    """The class of a child process from its command line (arguments joined by spaces)."""
    return next((kind for kind, module in _KINDS if module in cmdline.split()), OTHER)


@dataclass(frozen=True)
class Sample:
    """Clock ticks at one instant: the control process's own, and each child's (pid -> (kind, ticks))."""

    control: int
    children: Mapping[int, tuple[str, int]]

    def since(self, before: Sample, wall_s: float) -> CpuWindow:
        """The CPU used from ``before`` to this sample over ``wall_s`` seconds of wall time."""
        tick = clock_ticks_per_second()
        by_kind = {TDM: 0, MEDIA: 0, OTHER: 0}
        counts = {TDM: 0, MEDIA: 0, OTHER: 0}
        for pid, (kind, ticks) in self.children.items():
            earlier = before.children.get(pid)
            by_kind[kind] += ticks - (earlier[1] if earlier is not None else 0)
            counts[kind] += 1
        restarted = any(pid not in self.children for pid in before.children)
        return CpuWindow(
            wall_s=wall_s,
            control_s=(self.control - before.control) / tick,
            tdm_s=by_kind[TDM] / tick,
            media_workers_s=by_kind[MEDIA] / tick,
            other_s=by_kind[OTHER] / tick,
            tdm_workers=counts[TDM],
            media_workers=counts[MEDIA],
            restarted=restarted,
        )


@dataclass(frozen=True)
class CpuWindow:
    """CPU seconds per class of process over ``wall_s`` seconds."""

    wall_s: float
    control_s: float
    tdm_s: float
    media_workers_s: float
    other_s: float
    tdm_workers: int
    media_workers: int
    restarted: bool

    def _percent(self, seconds: float) -> float:
        return 100 * seconds / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def control_percent(self) -> float:
        return self._percent(self.control_s)

    @property
    def media_percent(self) -> float:
        """The TDM workers and the media workers together."""
        return self._percent(self.tdm_s + self.media_workers_s)

    @property
    def accounted_s(self) -> float:
        """Every CPU second of the appliance's processes."""
        return self.control_s + self.tdm_s + self.media_workers_s + self.other_s

    def row(self) -> dict[str, object]:
        return {
            "control_cpu_percent": round(self.control_percent, 1),
            "media_cpu_percent": round(self.media_percent, 1),
            "tdm_cpu_percent": round(self._percent(self.tdm_s), 1),
            "media_workers_cpu_percent": round(self._percent(self.media_workers_s), 1),
            "other_children_cpu_percent": round(self._percent(self.other_s), 1),
            "tdm_workers": self.tdm_workers,
            "media_workers": self.media_workers,
            "media_restarted": self.restarted,
        }

    def describe(self) -> str:
        return (
            f"{self.tdm_workers} TDM workers {self._percent(self.tdm_s):.1f} %, {self.media_workers} media "
            f"workers {self._percent(self.media_workers_s):.1f} %"
            + (f", other children {self._percent(self.other_s):.1f} %" if self.other_s else "")
            + (", A MEDIA PROCESS ENDED IN THE WINDOW" if self.restarted else "")
        )


class ProcessCpu:
    """Samples the control process ``pid`` and its children (see the module docstring)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def sample(self) -> Sample:
        """One pass over ``/proc`` (a few milliseconds: the bench's loop is not reading meanwhile)."""
        procs = ProcStats.read()
        control = procs.stats[self.pid][1] if self.pid in procs.stats else 0
        children = {
            child: (self._kind(child), procs.tree_ticks(child)) for child in procs.children.get(self.pid, ())
        }
        return Sample(control, children)

    def _kind(self, pid: int) -> str:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return OTHER
        return kind_of(raw.replace(b"\0", b" ").decode(errors="replace"))
