"""Validation of sync API messages against ``appliance/sync/sync.cddl`` with pycddl (RFC 8610)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import cbor2
import pycddl

CDDL = Path(__file__).resolve().parent.parent / "appliance" / "sync" / "sync.cddl"


@functools.cache
def schema(rule: str) -> pycddl.Schema:
    """pycddl validates against the first rule, so each rule gets a schema of its own with it first."""
    return pycddl.Schema(f"root = {rule}\n" + CDDL.read_text())


def validate(rule: str, data: Any) -> None:
    """Raise ``pycddl.ValidationError`` unless ``data`` (a value, or CBOR bytes) matches ``rule``."""
    encoded = data if isinstance(data, bytes) else cbor2.dumps(data)
    schema(rule).validate_cbor(encoded)
