"""The reference cloud client as a command: ``python -m appliance.sync.client`` (also ``appliance
sync-client``).

    --url https://127.0.0.1:8443 --ca CA --cert CERT --key KEY [--timeout S] [-v] <command>
    health | status | list | get KIND NAME | push KIND NAME FILE [--replaces N] [--version N]
    [--confirm-within S] | confirm KIND NAME VERSION | blob ID OUT
    pull --store DB [--blobs DIR] [--follow] [--limit N] [--wait S]

Answers are printed as JSON (one line per batch for ``pull``). Exit status 0 on success, 1 with a
one-line message on standard error otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Any

import cbor2

from appliance.sync.client import SyncClient
from appliance.sync.client_puller import Puller, PullReport
from appliance.sync.client_store import ClientStore, ClientStoreError
from appliance.sync.client_types import SyncClientError


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="reference cloud client of the sync API")
    parser.add_argument("--url", required=True, help="the appliance, e.g. https://127.0.0.1:8443")
    parser.add_argument("--ca", help="the site CA certificate that signed the appliance's certificate")
    parser.add_argument("--cert", help="the cloud's client certificate")
    parser.add_argument("--key", help="its private key")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and progress on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("health", help="GET /sync/v1/health")
    sub.add_parser("status", help="GET /sync/v1/status")
    sub.add_parser("list", help="the pushed configuration documents")
    get = sub.add_parser("get", help="one configuration document")
    get.add_argument("kind")
    get.add_argument("name")
    push = sub.add_parser("push", help="write a configuration document from a JSON or CBOR file")
    push.add_argument("kind")
    push.add_argument("name")
    push.add_argument("file", help=".json, .cbor, or (for a prompt) the audio file itself")
    push.add_argument("--replaces", type=int, help="the running version (default: asked)")
    push.add_argument("--version", type=int, help="the new version (default: replaces + 1)")
    push.add_argument("--confirm-within", type=int, help="seconds; reverted unless confirmed in time")
    confirm = sub.add_parser("confirm", help="confirm a write made with --confirm-within")
    confirm.add_argument("kind")
    confirm.add_argument("name")
    confirm.add_argument("version", type=int)
    blob = sub.add_parser("blob", help="download a blob (resumable)")
    blob.add_argument("id", help="e.g. voicemail/<file name>")
    blob.add_argument("out")
    pull = sub.add_parser("pull", help="pull events into a store, fetch blobs, acknowledge")
    pull.add_argument("--store", required=True, help="the SQLite file holding the events")
    pull.add_argument("--blobs", help="where blobs go (not fetched without it)")
    pull.add_argument("--follow", action="store_true", help="keep pulling (long poll) until stopped")
    pull.add_argument("--limit", type=int, default=1000, help="events per batch (1..10000)")
    pull.add_argument("--wait", type=float, default=20.0, help="long-poll seconds with --follow")
    return parser


def main(argv: list[str] | None = None, *, prog: str = "python -m appliance.sync.client") -> int:
    args = _parser(prog).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(_run(args))
    except (SyncClientError, ClientStoreError, OSError, ValueError, sqlite3.Error) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the appliance put in its message
        print(f"{prog.rsplit(maxsplit=1)[-1]}: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _print(value: Any) -> None:
    print(json.dumps(value, default=_json_default, sort_keys=True), flush=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def _read_content(kind: str, file: str) -> Any:
    data = Path(file).read_bytes()
    suffix = Path(file).suffix.lower()
    if suffix == ".json":
        return json.loads(data)
    if suffix == ".cbor":
        return cbor2.loads(data)
    if kind == "prompt":
        return data  # the audio itself (sync.cddl prompt-content)
    try:
        return json.loads(data)
    except ValueError:
        return cbor2.loads(data)


async def _run(args: argparse.Namespace) -> int:
    async with SyncClient(args.url, ca=args.ca, cert=args.cert, key=args.key, timeout=args.timeout) as client:
        command = args.command
        if command == "health":
            _print(await client.health())
        elif command == "status":
            _print(await client.status())
        elif command == "list":
            _print({"documents": await client.list_documents()})
        elif command == "get":
            document = await client.get_document(args.kind, args.name)
            if document is None:
                raise ValueError(f"no document {args.kind}/{args.name}")
            _print(document)
        elif command == "push":
            content = _read_content(args.kind, args.file)
            replaces = args.replaces
            if replaces is None:
                running = await client.get_document(args.kind, args.name)
                replaces = int(running["version"]) if running is not None else 0
            version = args.version if args.version is not None else replaces + 1
            _print(
                await client.put_document(
                    args.kind, args.name, content, replaces, version, confirm_within=args.confirm_within
                )
            )
        elif command == "confirm":
            _print(await client.confirm(args.kind, args.name, args.version))
        elif command == "blob":
            size = await client.blob(args.id, args.out)
            _print({"blob": args.id, "path": args.out, "size": size})
        else:
            return await _pull(client, args)
    return 0


async def _pull(client: SyncClient, args: argparse.Namespace) -> int:
    with ClientStore.open(args.store) as store:
        puller = Puller(client, store, args.blobs, limit=args.limit, wait=args.wait)

        def report(round_: PullReport) -> None:
            _print(round_.as_json())

        total = await puller.run(follow=args.follow, on_round=report)
        _print({"done": True, "stored": total, "last_held": store.last_seq})
    return 0
