"""``python -m appliance.pri.farend``: test calls into a running appliance's simulated span.

A technician (or a script) connects the far end to a span's sockets, places calls that dial in-band
digits, and reads one line per call: channel, answered or not, the cause and who cleared, the digits
sent and the audio heard. Exit status 0 when every call was answered, 1 when one was not, 2 when the
span could not be reached or its D-channel did not come up.

    python -m appliance.pri.farend --dir var/run --span 1 --calls 30 --called 100 --digits 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from appliance.pri.farend import CallResult, CallScript, FarEnd
from appliance.pri.farend_audio import pacing_errors_ms, percentile
from appliance.pri.farend_links import FarEndLinkError
from appliance.pri.q931_model import TypeOfNumber

_TYPES = {t.name.lower(): t for t in TypeOfNumber}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m appliance.pri.farend",
        description="Place test calls into a simulated E1/PRI span as its far end (the carrier).",
    )
    p.add_argument("--dir", type=Path, default=Path("var/run"), help="where spanN-d/-b.sock are")
    p.add_argument("--span", type=int, default=1)
    p.add_argument("--side", choices=("network", "user"), default="network", help="the far end's side")
    p.add_argument("--calls", type=int, default=1, help="calls placed at once")
    p.add_argument("--called", default="100")
    p.add_argument("--called-type", choices=sorted(_TYPES), default="unknown")
    p.add_argument("--calling", default="4930123456", help="calling number ('' for none)")
    p.add_argument("--calling-type", choices=sorted(_TYPES), default="international")
    p.add_argument("--digits", default="", help="DTMF sent in-band once a prompt is heard")
    p.add_argument(
        "--digits-after", type=float, default=5.0,
        help="seconds after the first sound (the default IVR flow takes keys after its 4.5 s greeting)",
    )  # fmt: skip
    p.add_argument("--audio", choices=("silence", "tone"), default="silence")
    p.add_argument("--hold", type=float, default=None, help="hang up this long after answer")
    p.add_argument("--cause", type=int, default=16, help="Q.850 cause when the far end hangs up")
    p.add_argument("--timeout", type=float, default=60.0, help="give up on a call after this long")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--pacing", action="store_true", help="report how evenly the appliance's frames arrived")
    p.add_argument("--trace", type=Path, default=None, help="write a pcap of the D-channel here")
    p.add_argument("-v", "--verbose", action="store_true", help="log the stack (D-channel frames too)")
    return p


async def run(args: argparse.Namespace, out: TextIO) -> int:
    script = CallScript(
        called=args.called,
        calling=args.calling or None,
        called_type=_TYPES[args.called_type],
        calling_type=_TYPES[args.calling_type],
        digits=args.digits,
        digits_after=args.digits_after,
        audio=args.audio,
        hold=args.hold,
        cause=args.cause,
        timeout=args.timeout,
    )
    with contextlib.ExitStack() as stack:
        trace = stack.enter_context(args.trace.open("wb")) if args.trace else None
        far = FarEnd(
            directory=args.dir, span=args.span, side=args.side, trace=trace, keep_arrivals=args.pacing
        )
        try:
            await far.start(within=args.connect_timeout)
        except (FarEndLinkError, TimeoutError) as exc:
            print(f"span {args.span}: no D-channel via {args.dir}: {exc or 'timed out'}", file=out)
            await far.close()
            return 2
        print(f"span {args.span}: D-channel established ({args.side} side); placing {args.calls}", file=out)
        try:
            results = await far.place_calls(args.calls, script)
        finally:
            await far.close()
    for result in results:
        print(result.line(), file=out)
    print(summary(results), file=out)
    if args.pacing:
        print(pacing(results), file=out)
    return 0 if all(r.answered for r in results) else 1


def summary(results: Sequence[CallResult]) -> str:
    answered = sum(r.answered for r in results)
    heard = sum(r.heard.sound_frames > 0 for r in results)
    causes: dict[int | None, int] = {}
    for r in results:
        causes[r.cause] = causes.get(r.cause, 0) + 1
    listed = ", ".join(f"{c}: {n}" for c, n in sorted(causes.items(), key=lambda kv: kv[0] or 0))
    return f"{len(results)} calls, {answered} answered, {heard} with audio heard; causes {{{listed}}}"


def pacing(results: Sequence[CallResult]) -> str:
    """How far the gaps between the appliance's frames strayed from 20 ms, over every call's channel."""
    errors = [e for r in results for e in pacing_errors_ms(r.heard.arrivals)]
    return (
        f"pacing: {len(errors)} gaps, error p50 {percentile(errors, 50):.2f} ms, "
        f"p99 {percentile(errors, 99):.2f} ms, max {max(errors, default=0.0):.2f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(run(args, sys.stdout))
    except KeyboardInterrupt:
        return 130
