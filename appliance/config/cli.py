"""``appliance config check FILE``: validate a configuration file without starting the appliance.

Prints ``OK: <path>`` or one line per issue and returns the exit code: 0 valid, 1 invalid, 2 unreadable.
"""

from __future__ import annotations

import sys

from appliance.config.errors import ConfigError
from appliance.config.load import load_config


def config_check_main(path: str) -> int:
    """Check ``path``, print the report to stdout, return the process exit code."""
    try:
        load_config(path)
    except ConfigError as exc:
        for issue in exc.errors:
            print(issue)
        return exc.exit_code
    print(f"OK: {path}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m appliance.config.cli FILE", file=sys.stderr)
        return 2
    return config_check_main(argv[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
