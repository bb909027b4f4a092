"""The media call tests again, with the media workers' kernel fast path carrying the plain RTP calls.

They run in a network namespace of their own (``unshare -n``), where IPv4 forwarding can be switched on
without touching the host: the fast path refuses to start without it. With ``MEDIA_TESTS_FASTPATH=1`` the
plain-RTP tests also check that the kernel did carry their call (see test_media_calls.py).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MEDIA_CALLS = Path(__file__).with_name("test_media_calls.py")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_the_media_call_tests_pass_with_the_kernel_fast_path(tmp_path: Path) -> None:
    inner = "ip link set lo up && sysctl -qw net.ipv4.ip_forward=1 && exec " + shlex.join(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(MEDIA_CALLS)]
    )
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", inner],
        env=dict(os.environ, MEDIA_TESTS_FASTPATH="1"),
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
