"""The systemd units: the settings the appliance relies on, and `systemd-analyze verify` when available."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.sdnotify import Notifier

UNITS = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_BIN = "/opt/appliance/venv/bin/"


def load(name: str) -> configparser.ConfigParser:
    # systemd unit syntax is close enough to INI; strict=False tolerates repeated keys, interpolation=None
    # keeps '%' specifiers literal, and optionxform=str keeps the key case systemd requires.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    text = (UNITS / name).read_text()
    parser.read_string(text, source=name)
    return parser


def words(value: str) -> set[str]:
    return set(value.split())


def test_appliance_unit_is_notify_with_watchdog_and_restart() -> None:
    service = load("appliance.service")["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["Restart"] == "always"
    assert service["WatchdogSec"] == "30"
    assert service["ExecStart"] == (
        "/opt/appliance/venv/bin/appliance run --config /etc/appliance/appliance.toml"
        " --state-dir /var/lib/appliance"
    )
    assert service["WorkingDirectory"] == "/var/lib/appliance"
    # systemctl reload: SIGHUP, on which the sync API reads its certificates again.
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_watchdog_pings_fit_inside_the_watchdog_timeout(tmp_path: Path) -> None:
    seconds = int(load("appliance.service")["Service"]["WatchdogSec"])
    # What systemd passes to the process for this unit, and the interval the appliance derives from it.
    sock = str(tmp_path / "notify")
    notifier = Notifier.from_env({"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": str(seconds * 1_000_000)})
    assert notifier is not None
    with notifier:
        interval = notifier.watchdog_interval()
    assert interval is not None
    assert interval <= seconds / 2


def test_appliance_unit_restarts_forever() -> None:
    unit = load("appliance.service")
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"
    # Survivable mode: the appliance must not wait for the WAN before starting.
    assert "network-online.target" not in unit["Unit"].get("After", "")
    assert "network-online.target" not in unit["Unit"].get("Wants", "")


def test_appliance_unit_hardening() -> None:
    service = load("appliance.service")["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["ReadWritePaths"] == "/var/lib/appliance"
    caps = {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}
    assert words(service["CapabilityBoundingSet"]) == caps
    assert words(service["AmbientCapabilities"]) == caps
    assert words(service["RestrictAddressFamilies"]) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
        "AF_PACKET",
    }
    assert int(service["LimitNOFILE"]) >= 65536
    assert service["MemoryMax"]
    assert service.get("User") not in (None, "root")


def test_every_setting_says_why() -> None:
    """Each [Service] setting of the main unit is preceded by a comment (possibly shared with its group)."""
    lines = (UNITS / "appliance.service").read_text().splitlines()
    section = ""
    explained = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            section, explained = stripped, False
        elif stripped.startswith("#"):
            explained = True
        elif not stripped:
            explained = False
        elif section == "[Service]":
            assert explained, f"no comment for {stripped!r}"


def test_console_unit() -> None:
    unit = load("appliance-console.service")
    service = unit["Service"]
    assert service["ExecStart"] == "/opt/appliance/venv/bin/appliance-console --tty /dev/ttyS0"
    assert service["Restart"] == "always"
    assert "serial-getty@ttyS0.service" in unit["Unit"]["Conflicts"]
    # The console must work when the control process is down: no dependency on it.
    for key in ("Requires", "BindsTo", "PartOf", "Requisite", "After"):
        assert "appliance.service" not in words(unit["Unit"].get(key, ""))
    assert (UNITS / "appliance-console.service").read_text().startswith("#")


def test_sysusers_declares_the_service_user() -> None:
    user = load("appliance.service")["Service"]["User"]
    entries = [
        line.split()
        for line in (UNITS / "appliance.sysusers").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ["u", user] in [e[:2] for e in entries]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart= binaries exist; stand-ins take the installed venv's place.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("appliance", "appliance-console"):
        stub = bindir / name
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    units = []
    for name in ("appliance.service", "appliance-console.service"):
        copy = tmp_path / name
        copy.write_text((UNITS / name).read_text().replace(INSTALLED_BIN, f"{bindir}/"))
        units.append(str(copy))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 on unknown keys and unparsable values, only warning: any line about our units fails.
    ours = [line for line in (result.stdout + result.stderr).splitlines() if str(tmp_path) in line]
    assert result.returncode == 0, result.stderr
    assert ours == []
