"""Validation of sync API messages against ``appliance/sync/sync.cddl`` with pycddl (RFC 8610)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import cbor2
import pycddl
from hypothesis import settings

CDDL = Path(__file__).resolve().parent.parent / "appliance" / "sync" / "sync.cddl"


@functools.cache
def schema(rule: str) -> pycddl.Schema:
    """pycddl validates against the first rule, so each rule gets a schema of its own with it first."""
    return pycddl.Schema(f"root = {rule}\n" + CDDL.read_text())


def validate(rule: str, data: Any) -> None:
    """Raise ``pycddl.ValidationError`` unless ``data`` (a value, or CBOR bytes) matches ``rule``."""
    encoded = data if isinstance(data, bytes) else cbor2.dumps(data)
    schema(rule).validate_cbor(encoded)


def examples(small: int, **extra: Any) -> settings:
    """Hypothesis settings for the sync API's properties (STYLE rule 12): ``small`` deterministic examples
    by default; ``HYPOTHESIS_PROFILE=long`` runs fifty times as many, random."""
    if os.environ.get("HYPOTHESIS_PROFILE") == "long":
        return settings(max_examples=small * 50, deadline=None, **extra)
    return settings(max_examples=small, derandomize=True, database=None, deadline=None, **extra)
