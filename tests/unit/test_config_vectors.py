"""Configuration vectors: each invalid file is rejected with exactly the report in its ``.expected`` file."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, check_file, load_config

VECTORS = Path(__file__).parent.parent / "vectors" / "config"
INVALID = sorted((VECTORS / "invalid").glob("*.toml"))


def test_there_are_invalid_vectors() -> None:
    assert len(INVALID) >= 8


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_vector(path: Path) -> None:
    expected = path.with_suffix(".expected").read_text().rstrip("\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "\n".join(str(e) for e in info.value.errors) == expected
    assert check_file(path) == (False, expected)


def test_full_vector_is_valid_and_uses_loopback_only() -> None:
    assert check_file(VECTORS / "full.toml") == (True, f"OK: {VECTORS / 'full.toml'}")
    text = (VECTORS / "full.toml").read_text()
    assert "192.0.2." not in text and "example." not in text and "2001:db8" not in text
