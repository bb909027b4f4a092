"""The ``appliance`` command: ``appliance run`` starts the control process, ``appliance config check FILE``
validates a configuration file without starting anything, ``appliance sync-client ...`` is the reference
cloud client of the sync API (``python -m appliance.sync.client``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.config import ConfigError, load_config
from appliance.config.cli import config_check_main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="PoP edge appliance control process")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the appliance (embedded defaults unless --config is given)")
    run.add_argument("--config", help="TOML file overriding the embedded defaults")
    run.add_argument("--state-dir", help="where the database, keys and sockets live (default: state_dir)")
    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file")
    sync_client = sub.add_parser(
        "sync-client", help="the reference cloud client of the sync API", add_help=False
    )
    sync_client.add_argument("arguments", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sync-client"]:
        # Everything after the word belongs to the client's own parser (options before its command too).
        from appliance.sync.client_cli import main as sync_client_main

        return sync_client_main(argv[1:], prog="appliance sync-client")
    args = _parser().parse_args(argv)
    if args.command == "config":
        return config_check_main(args.file)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"appliance: invalid configuration {args.config}:", file=sys.stderr)
        for issue in exc.errors:
            print(f"  {issue.path}: {issue.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"appliance: cannot read {args.config}: {exc.strerror}", file=sys.stderr)
        return 2
    state_dir = Path(args.state_dir or config.state_dir)
    import uvloop

    from appliance.app import serve
    from appliance.media.supervisor import MediaWorkerError
    from appliance.wan.errors import WanError

    try:
        uvloop.run(serve(config, state_dir, announce=lambda line: print(line, flush=True)))
    except (OSError, MediaWorkerError, WanError) as exc:
        # A port taken, a state directory not writable, a media worker that cannot hold its ports, a
        # health-probe CA that does not load: say what, and exit non-zero so that systemd restarts the
        # unit or the technician sees it.
        print(f"appliance: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
