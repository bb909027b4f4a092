"""An appliance that cannot start says why and exits non-zero, rather than hanging half-started.

A hung start is the worst outcome for an unattended PoP box: systemd sees neither "ready" nor an exit, and
restarts nothing until its start timeout. These tests start the real entry point with a fault in place.
"""

from __future__ import annotations

import resource
import socket
import subprocess
from pathlib import Path

from tests.system.appliance_proc import APPLIANCE_BIN
from tests.system.sipp import free_port


def _run(tmp_path: Path, config: str, *, nofile: int | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "appliance.toml"
    path.write_text(f'state_dir = "{tmp_path / "var"}"\n{config}\n[metrics]\nport = 0\n[sync]\nport = 0\n')

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return subprocess.run(
        [str(APPLIANCE_BIN), "run", "--config", str(path)],
        check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path, preexec_fn=limit,
    )  # fmt: skip


def test_a_sip_port_held_by_another_process_ends_the_start_with_its_reason(tmp_path: Path) -> None:
    port = free_port(udp=True, tcp=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", port))
        done = _run(tmp_path, f'[sip]\nlisten = "127.0.0.1"\nudp_port = {port}\ntcp_port = {port}\n')
    assert done.returncode == 1, done.stderr[-2000:]
    assert "appliance: cannot start:" in done.stderr
    assert "appliance ready" not in done.stdout


def test_media_workers_that_cannot_hold_their_ports_end_the_start_naming_the_limit(
    tmp_path: Path,
) -> None:
    port = free_port(udp=True, tcp=True)
    low = 50000 if 40000 <= port <= 49999 else 40000  # 10000 ports, clear of the SIP port
    config = (
        f'[sip]\nlisten = "127.0.0.1"\nudp_port = {port}\ntcp_port = {port}\n'
        f"[media]\nworkers = 1\nrtp_port_min = {low}\nrtp_port_max = {low + 9999}\n"
    )
    done = _run(tmp_path, config, nofile=512)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "appliance: cannot start:" in done.stderr
    assert "RLIMIT_NOFILE" in done.stderr


def test_a_health_probe_ca_that_does_not_load_ends_the_start_naming_the_setting(tmp_path: Path) -> None:
    port = free_port(udp=True, tcp=True)
    junk = tmp_path / "junk-ca.pem"
    junk.write_text("not a certificate\n")
    config = (
        f'[sip]\nlisten = "127.0.0.1"\nudp_port = {port}\ntcp_port = {port}\n'
        f'[cloud]\ntrunk = "sip:127.0.0.1:{free_port(udp=True)}"\n'
        f'health_url = "https://127.0.0.1:9/health"\nhealth_ca = "{junk}"\n'
    )
    done = _run(tmp_path, config)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "appliance: cannot start: [cloud] health_ca" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_state_directory_too_deep_for_its_sockets_ends_the_start_naming_the_limit(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    port = free_port(udp=True, tcp=True)
    done = _run(deep, f'[sip]\nlisten = "127.0.0.1"\nudp_port = {port}\ntcp_port = {port}\n')
    assert done.returncode == 1, done.stderr[-2000:]
    assert (
        "appliance: cannot start:" in done.stderr
        and "over the 107 a Unix socket path may have" in done.stderr
    )
    assert "appliance ready" not in done.stdout
