"""Throwaway network namespaces for system tests (STYLE.md rule 14: made by the test, always removed)."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def namespace(prefix: str) -> Iterator[str]:
    """A fresh namespace named ``<prefix>-<random>`` with ``lo`` up and IPv4 forwarding on (the media fast
    path refuses to start without it); deleted on exit whatever happened inside."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            ["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True, timeout=10
        )
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
