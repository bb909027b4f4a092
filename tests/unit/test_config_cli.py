"""``appliance config check FILE``: report and exit code, called directly and as a process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config.cli import config_check_main, main

VECTORS = Path(__file__).parent.parent / "vectors" / "config"


def test_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(VECTORS / "full.toml")
    assert config_check_main(path) == 0
    assert capsys.readouterr().out == f"OK: {path}\n"


def test_invalid_file_prints_one_line_per_issue(capsys: pytest.CaptureFixture[str]) -> None:
    path = VECTORS / "invalid" / "many-issues.toml"
    assert config_check_main(str(path)) == 1
    assert capsys.readouterr().out == path.with_suffix(".expected").read_text()


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.toml"
    assert config_check_main(str(missing)) == 2
    assert capsys.readouterr().out == f"cannot read {missing}: No such file or directory\n"


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "code"),
    [("full.toml", 0), ("invalid/syntax-error.toml", 1), ("invalid/no-such-file.toml", 2)],
)
def test_as_a_process(name: str, code: int) -> None:
    path = VECTORS / name
    done = subprocess.run(
        [sys.executable, "-m", "appliance.config.cli", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stderr
    if code == 0:
        assert done.stdout == f"OK: {path}\n"
    elif code == 1:
        assert done.stdout == path.with_suffix(".expected").read_text()
    else:
        assert done.stdout.startswith(f"cannot read {path}: ")
    assert done.stderr == ""
