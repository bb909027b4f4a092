"""The sync service of the drain benchmark, in a process of its own as on the appliance.

``python -m bench.sync_serve --db FILE --state-dir DIR`` opens the outbox database ``FILE``, starts the
real :class:`appliance.sync.service.SyncService` on ``127.0.0.1`` (a port the kernel chooses) with TLS
from the site PKI under ``DIR`` (:func:`appliance.sync.pki.ensure_site_pki`, made if missing), prints
``ready https://127.0.0.1:PORT`` and serves until SIGTERM or SIGINT, then stops the service and closes the
database. The benchmark's client runs in its own process: on a small machine the two would otherwise
share one core and one event loop, which the appliance and the cloud never do.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from appliance.config.schema import SyncConfig
from appliance.store import Database, Outbox
from appliance.sync.pki import ensure_site_pki
from appliance.sync.service import SyncService
from bench.common import parser

LOOPBACK: Final = "127.0.0.1"
READY: Final = "ready"


def _status() -> Mapping[str, object]:
    return {"site": "bench", "mode": "online", "forced": None, "uplink": None}


async def serve(db_path: Path, state_dir: Path) -> None:
    pki = ensure_site_pki(state_dir, [LOOPBACK])
    config = SyncConfig(
        listen=LOOPBACK,
        port=0,
        certificate=str(pki.server_certificate),
        private_key=str(pki.server_key),
        client_ca=str(pki.ca_certificate),
    )
    db = await Database.open(db_path)
    try:
        outbox = Outbox(db)
        service = SyncService(
            config, state_dir, outbox=outbox, documents=None, status=_status, database=db, hosts=(LOOPBACK,)
        )
        host, port = await service.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        print(f"{READY} https://{host}:{port}", flush=True)
        await stop.wait()
        await service.stop()
        await outbox.close()
    finally:
        await db.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("bench.sync_serve", __doc__)
    p.add_argument("--db", type=Path, required=True, help="the outbox database")
    p.add_argument("--state-dir", type=Path, required=True, help="where the site PKI is (made if missing)")
    args = p.parse_args(argv)
    asyncio.run(serve(args.db, args.state_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
