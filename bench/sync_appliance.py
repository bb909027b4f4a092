"""``appliance run`` on the standard asyncio event loop instead of uvloop, for the WAN part of the benchmark.

``python -m bench.sync_appliance --config FILE`` runs exactly what ``appliance run --config FILE`` runs
(:func:`appliance.app.serve` with the loaded configuration, announcing its banner on stdout and ending
with ``appliance ready``), on ``asyncio.run`` rather than ``uvloop.run``. uvloop cannot open a datagram
endpoint on a netlink socket (pyroute2 issue 1335, uvloop issue 676), so with ``[wan] interfaces`` set
the shipped command may fail to start its WAN monitor; this runs the same control process on the loop
pyroute2 supports, so that carrier loss is measured through netlink. Figures taken with it say so.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.app import serve
from appliance.config.load import load_config
from bench.common import parser


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("bench.sync_appliance", __doc__)
    p.add_argument("--config", type=Path, required=True, help="the appliance's configuration file")
    args = p.parse_args(argv)
    config = load_config(args.config)
    asyncio.run(serve(config, Path(config.state_dir), announce=lambda line: print(line, flush=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
