"""Access to the SIP wire vectors under ``tests/vectors/sip/`` (see ``generate.py`` there)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

SIP_VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "sip"


def names(kind: str) -> list[str]:
    """The case names of ``valid`` or ``invalid`` vectors, sorted."""
    return sorted(p.stem for p in (SIP_VECTORS / kind).glob("*.sip"))


@cache
def load(kind: str, name: str) -> bytes:
    return (SIP_VECTORS / kind / f"{name}.sip").read_bytes()


def all_of(kind: str) -> list[bytes]:
    return [load(kind, name) for name in names(kind)]
