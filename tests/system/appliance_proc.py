"""Start the appliance as a real process through its command-line entry point (the one ``make run`` uses)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.system.sipp import free_port

APPLIANCE_BIN = Path(sys.executable).parent / "appliance"
_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) ([0-9.eE+\-]+|NaN|\+Inf|-Inf)$")


@dataclass
class RunningAppliance:
    proc: subprocess.Popen[str]
    sip_port: int
    metrics_url: str
    state_dir: Path
    banner: list[str] = field(default_factory=list)
    # stderr, read as it comes by a thread: an appliance that logs more than a pipe holds would otherwise
    # block in a log write and stop serving.
    log_lines: list[str] = field(default_factory=list)
    _log_reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.proc.stderr is not None:
            self._log_reader = threading.Thread(
                target=self.log_lines.extend, args=(self.proc.stderr,), daemon=True
            )
            self._log_reader.start()

    @property
    def log(self) -> str:
        """What the process wrote to stderr so far (all of it once it exited and :meth:`stop` returned)."""
        return "".join(self.log_lines)

    @property
    def sip(self) -> tuple[str, int]:
        return ("127.0.0.1", self.sip_port)

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        out = {}
        for line in text.splitlines():
            m = _METRIC_LINE.match(line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)

    def wait_for(self, name: str, value: float, timeout: float = 20.0) -> None:
        """Poll the metrics endpoint until ``name`` reads ``value`` (the process works in real time)."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.metric(name)
            if seen == value:
                return
            time.sleep(0.1)
        raise AssertionError(f"{name} stayed {seen}, expected {value}")

    def stop(self) -> str:
        """SIGTERM, wait, and return what the process wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_reader is not None:
            self._log_reader.join(timeout=5)
        return self.log


def start_appliance(
    tmp_path: Path,
    config: str = "",
    *,
    sip: str = "",
    ready_timeout: float = 20.0,
    env: dict[str, str] | None = None,
) -> RunningAppliance:
    """Start the appliance on a free SIP port with state in ``tmp_path``. ``sip`` holds extra keys of the
    ``[sip]`` table, ``config`` any other tables; metrics listen on an ephemeral port unless configured."""
    sip_port = free_port(udp=True, tcp=True)
    state_dir = tmp_path / "var"
    # A test that gives the media its own RTP range has it whole for the media workers: no span carves
    # its TDM ports from it (appliance.config.spans.span_port_ranges) unless the test configures spans.
    spans = "spans = []\n" if "rtp_port_min" in config and "spans" not in config else ""
    text = (
        f'state_dir = "{state_dir}"\n{spans}'
        f'[sip]\nlisten = "127.0.0.1"\nudp_port = {sip_port}\ntcp_port = {sip_port}\n{sip}\n{config}\n'
    )
    if "[metrics]" not in text:
        text += "\n[metrics]\nport = 0\n"
    if "[sync]" not in text:
        text += "\n[sync]\nport = 0\n"  # the sync API's 8443 is one per machine
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen(
        [str(APPLIANCE_BIN), "run", "--config", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    banner: list[str] = []
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    # A reader thread, because a pipe's buffered lines are invisible to select() once one is read.
    threading.Thread(
        target=lambda: [lines.put(x.rstrip("\n")) for x in proc.stdout or ()], daemon=True
    ).start()
    deadline = time.monotonic() + ready_timeout
    while not banner or banner[-1] != "appliance ready":
        try:
            banner.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            proc.kill()
            proc.wait()
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"appliance did not start: {banner} {err[-2000:]}") from None
    metrics_url = next(line.split()[-1] for line in banner if line.startswith("metrics"))
    return RunningAppliance(proc, sip_port, metrics_url, state_dir, banner)
