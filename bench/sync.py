"""``make bench-sync``: durable appends, draining a backlog to the cloud, time from a WAN cut to SURVIVABLE.

Three parts, each run unless left out with ``--parts``:

1. **append** (:mod:`bench.sync_append`): ``--producers`` (200) concurrent tasks append call records
   (~300 B) to the outbox on a real database file for ``--append-seconds`` (10); latency is until the
   append returned, i.e. was fsync'd. Twice: back to back (``appends_per_s``, the ceiling, and
   ``append_p99_ms_saturated``: with every producer always waiting, p99 is at least producers / rate by
   Little's law, a measure of the queue the bench builds rather than of the store), then at
   ``--append-rate`` (2,000/s) offered: the headline ``append_p99_ms``, the latency a producer sees under a
   steady load ten times a full PoP's event rate. The same two loads then run against the peer, a naive
   outbox (stdlib ``sqlite3``, one fsync'd commit per event), and our appends/s are given as a ratio to its
   (``appends_ratio_to_peer``).
2. **drain** (:mod:`bench.sync_drain`): a backlog of ``--backlog`` (1,000,000) events is drained over
   loopback TLS from the real sync service by the reference client, once with its puller into its store
   and once with events+ack alone; the headline is the puller's unless the API alone went more than
   :data:`STORE_BOUND` times faster (the client's store was then the limit, and ``drain_client`` says so).
3. **wan** (:mod:`bench.sync_wan`): the appliance in a network namespace pair; the WAN is cut ``--cuts``
   times by carrier loss and by a silent drop, each timed to SURVIVABLE: median (the headline) and worst.

Progress lines go to stdout as the parts run, then one JSON line per measurement, and last the issue's
object: ``{"bench": "sync", "append_p99_ms": …, "appends_per_s": …, "drain_events_per_s": …,
"carrier_loss_to_survivable_s": …, "silent_drop_to_survivable_s": …}`` with the peer, the goals
(:data:`GOALS`), ``ratio_to_goal`` (measured / goal, per figure) and ``goal_met`` (per figure). A part not
run, or that failed, reports None and says why under ``notes``.

``--quick`` is a smoke run (seconds, not minutes): 20 producers for 1 s, a backlog of 2,000, one cut each.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

from bench.common import emit, parser, progress, ratio, rounded
from bench.sync_append import AppendResult, appends_of
from bench.sync_drain import CLIENTS, DrainResult, build_backlog, copy_database, measure_drain
from bench.sync_wan import KINDS, LOOPS, UVLOOP, Cut, ProbeSettings, measure_cuts, median_and_worst

PARTS: Final = ("append", "drain", "wan")
PEER: Final = "sqlite3, one fsync'd commit per event"
# The goals: (figure, goal, True when the figure must stay below it).
GOALS: Final[Mapping[str, tuple[float, bool]]] = {
    "append_p99_ms": (5.0, True),
    "drain_events_per_s": (20_000.0, False),
    "carrier_loss_to_survivable_s": (0.5, True),
    "silent_drop_to_survivable_s": (3.0, True),
}
NOTE_CHARS: Final = 200
# The client's store is taken to be the bottleneck of a drain when the API alone goes this much faster.
STORE_BOUND: Final = 1.2
QUICK: Final = {"producers": 20, "append_seconds": 1.0, "append_rate": 500.0, "backlog": 2_000, "cuts": 1}


@dataclass
class Results:
    """Every part's figures as they come in; :meth:`summary` is the issue's object."""

    appends: list[AppendResult] = field(default_factory=list)
    drains: list[DrainResult] = field(default_factory=list)
    cuts: list[Cut] = field(default_factory=list)
    figures: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def closed(self, target: str) -> AppendResult | None:
        """``target``'s back-to-back run: its ceiling, and the latency with every producer always waiting."""
        return next((r for r in self.appends if r.target == target and r.rate is None), None)

    def offered(self, target: str) -> AppendResult | None:
        return next((r for r in self.appends if r.target == target and r.rate is not None), None)

    def summary(self) -> dict[str, object]:
        ours, peer = self.closed("outbox"), self.closed("naive")
        steady, peer_steady = self.offered("outbox"), self.offered("naive")
        out: dict[str, object] = {
            "bench": "sync",
            "append_p99_ms": rounded(steady.p_ms(99)) if steady else None,
            "appends_per_s": rounded(ours.appends_per_s, 1) if ours else None,
            "drain_events_per_s": rounded(self.figures.get("drain_events_per_s"), 1),
            "carrier_loss_to_survivable_s": rounded(self.figures.get("carrier_loss_to_survivable_s")),
            "silent_drop_to_survivable_s": rounded(self.figures.get("silent_drop_to_survivable_s")),
            "append_p50_ms": rounded(steady.p_ms(50)) if steady else None,
            "append_producers": ours.producers if ours else None,
            "append_offered_per_s": steady.rate if steady else None,
            "append_p99_ms_saturated": rounded(ours.p_ms(99)) if ours else None,
            "peer": PEER,
            "peer_append_p99_ms": rounded(peer_steady.p_ms(99)) if peer_steady else None,
            "peer_appends_per_s": rounded(peer.appends_per_s, 1) if peer else None,
            "peer_append_p99_ms_saturated": rounded(peer.p_ms(99)) if peer else None,
            "appends_ratio_to_peer": ratio(
                ours.appends_per_s if ours else None, peer.appends_per_s if peer else None
            ),
        }
        out |= self.extra
        goals = {name: goal for name, (goal, _) in GOALS.items()}
        measured = {name: out.get(name) for name in GOALS}
        return out | {
            "goals": goals,
            "ratio_to_goal": {
                name: ratio(value, goals[name]) if isinstance(value, int | float) else None
                for name, value in measured.items()
            },
            "goal_met": {name: _met(name, value) for name, value in measured.items()},
            "notes": self.notes,
        }


def brief(exc: BaseException, limit: int = NOTE_CHARS) -> str:
    """``exc`` in one line for the notes: its first line, and its last when they differ (a process's
    start-up failure carries the tail of its log, whose last line is the error)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    text = lines[0] if len(lines) == 1 else f"{lines[0][:limit]} … {lines[-1]}"
    return f"{exc.__class__.__name__}: {text[: 2 * limit]}"


def _met(name: str, value: object) -> bool | None:
    if not isinstance(value, int | float):
        return None
    goal, below = GOALS[name]
    return value < goal if below else value >= goal


async def run_append(args: argparse.Namespace, workdir: Path, results: Results) -> None:
    progress(
        f"append: {args.producers} producers of call records for {args.append_seconds:g} s, back to back "
        f"then {args.append_rate:g}/s offered, on {workdir}"
    )
    for kind in ("outbox", "naive"):
        for rate in (None, args.append_rate):
            db = workdir / f"{kind}-{'max' if rate is None else 'rate'}.db"
            result = await appends_of(
                kind, db, producers=args.producers, seconds=args.append_seconds, rate=rate
            )
            progress(result.line())
            results.appends.append(result)
    ours, peer = results.closed("outbox"), results.closed("naive")
    if ours and peer:
        progress(f"  ours / peer: {ratio(ours.appends_per_s, peer.appends_per_s)}x the appends per second")


async def run_drain(args: argparse.Namespace, workdir: Path, results: Results) -> None:
    backlog = workdir / "backlog.db"
    progress(f"drain: building a backlog of {args.backlog:,} call records with Outbox.append_many")
    built = await build_backlog(backlog, args.backlog)
    progress(
        f"  built in {built:.1f} s ({args.backlog / built:,.0f} events/s), {backlog.stat().st_size:,} bytes"
    )
    results.extra |= {"drain_backlog": args.backlog, "backlog_build_s": rounded(built, 1)}
    for kind in CLIENTS:
        copy = copy_database(backlog, workdir / f"drain-{kind.replace('+', '-')}.db")
        try:
            result = await measure_drain(kind, copy, workdir, expected=args.backlog)
        except Exception as exc:  # reported with the part's figure as None, the other parts still run
            result = DrainResult(kind, 0, 0.0, None, brief(exc))
        finally:
            copy.unlink(missing_ok=True)
        progress(result.line())
        results.drains.append(result)
    rates = {d.client: d.events_per_s for d in results.drains}
    puller, api = rates.get("puller"), rates.get("events+ack")
    headline, client = puller, "puller"
    if api is not None and (puller is None or api > STORE_BOUND * puller):
        headline, client = api, "events+ack"
        results.notes.append(f"drain: the client's store was the bottleneck (puller {puller:.0f} events/s)")
    results.figures["drain_events_per_s"] = headline
    results.extra |= {
        "drain_client": client if headline is not None else None,
        "drain_puller_events_per_s": rounded(puller, 1),
        "drain_events_ack_events_per_s": rounded(api, 1),
    }
    for d in results.drains:
        if d.error:
            results.notes.append(f"drain {d.client}: {d.error}")


def run_wan(args: argparse.Namespace, workdir: Path, results: Results) -> None:
    """Synchronous on purpose: SIPp dies with the thread that started it, so it runs on the main thread."""
    probes = ProbeSettings(
        args.probe_interval, args.probe_timeout, args.probe_failures, args.probe_successes, args.hold_down
    )
    progress(
        f"wan: {args.cuts} cuts of each kind ({', '.join(KINDS)}), probes {probes}, the appliance on "
        f"{args.appliance_loop}"
    )
    try:
        results.cuts = measure_cuts(
            workdir / "wan", args.cuts, probes, loop=args.appliance_loop, on_cut=lambda c: progress(c.line())
        )
    except Exception as exc:  # the part's figures are None; the reason is in the notes
        results.notes.append(f"wan: {brief(exc)}")
        progress(f"  failed: {brief(exc)}")
    for kind in KINDS:
        median, worst = median_and_worst(results.cuts, kind)
        results.figures[f"{kind}_to_survivable_s"] = median
        results.extra[f"{kind}_worst_s"] = rounded(worst)
    results.extra |= {
        "cuts_per_kind": args.cuts,
        "probe_settings": asdict(probes),
        "appliance_loop": args.appliance_loop,
    }
    results.notes += [f"wan {c.kind}: {c.error}" for c in results.cuts if c.error]


async def run(args: argparse.Namespace) -> int:
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        progress(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
        return 2
    results = Results()
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-sync-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        if "append" in parts:
            await run_append(args, workdir, results)
        if "drain" in parts:
            await run_drain(args, workdir, results)
        if "wan" in parts:
            run_wan(args, workdir, results)
    for row in [r.row() for r in results.appends] + [d.row() for d in results.drains]:
        emit(row)
    for cut in results.cuts:
        emit(cut.row())
    emit(results.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = parser("bench.sync", __doc__)
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts to run")
    p.add_argument("--producers", type=int, default=200, help="concurrent appending tasks")
    p.add_argument("--append-seconds", type=float, default=10.0, help="appending window per target")
    p.add_argument(
        "--append-rate",
        type=float,
        default=2_000.0,
        help="appends/s offered in all, for the steady-load latency",
    )
    p.add_argument("--backlog", type=int, default=1_000_000, help="events in the backlog to drain")
    p.add_argument("--cuts", type=int, default=5, help="WAN cuts of each kind")
    defaults = ProbeSettings()
    p.add_argument("--probe-interval", type=float, default=defaults.interval, help="[cloud] probe_interval")
    p.add_argument("--probe-timeout", type=float, default=defaults.timeout, help="[cloud] probe_timeout")
    p.add_argument("--probe-failures", type=int, default=defaults.failures, help="[cloud] probe_failures")
    p.add_argument("--probe-successes", type=int, default=defaults.successes, help="[cloud] probe_successes")
    p.add_argument("--hold-down", type=float, default=defaults.hold_down, help="[cloud] hold_down")
    p.add_argument(
        "--appliance-loop",
        choices=LOOPS,
        default=UVLOOP,
        help="the appliance's event loop: uvloop as shipped (appliance run) or asyncio (sync_appliance)",
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=Path("var"),
        help="where the databases go (a disk, not tmpfs; default var/)",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: " + str(QUICK))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.dir = args.dir.resolve()  # the appliance of the WAN part runs in a directory of its own
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    numbers = (args.producers, args.append_seconds, args.append_rate, args.backlog, args.cuts)
    if min(numbers) <= 0:
        progress("--producers, --append-seconds, --append-rate, --backlog and --cuts must be positive")
        return 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
