"""Access to the SIP wire vectors under ``tests/vectors/sip/`` (see ``generate.py`` there)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

SIP_VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "sip"


def names(kind: str) -> list[str]:
    """The case names of ``valid`` or ``invalid`` vectors, sorted."""
    return sorted(p.stem for p in (SIP_VECTORS / kind).glob("*.sip"))


@cache
def load(kind: str, name: str) -> bytes:
    return (SIP_VECTORS / kind / f"{name}.sip").read_bytes()


def all_of(kind: str) -> list[bytes]:
    return [load(kind, name) for name in names(kind)]


def hypothesis_settings() -> settings:
    """Settings for the SIP parser properties, from the profile ``HYPOTHESIS_PROFILE`` names (STYLE rule 12).

    ``sip-ci`` (the default) is small and deterministic; ``long`` (``HYPOTHESIS_PROFILE=long``) runs many
    random examples. Each profile is registered once per process unless another suite registered one of
    that name already; the result is applied per test as a decorator, so that other suites' Hypothesis
    defaults are left alone.
    """
    _register("sip-ci", max_examples=200, derandomize=True, database=None, deadline=None, print_blob=True)
    _register(
        "long",
        max_examples=20_000,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    try:
        return settings(settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "sip-ci")))
    except InvalidArgument:  # a profile name of another suite, not registered in this process
        return settings(settings.get_profile("sip-ci"))


def _register(name: str, **options: Any) -> None:
    try:
        settings.get_profile(name)
    except InvalidArgument:
        settings.register_profile(name, **options)


def soak_marks() -> list[pytest.MarkDecorator]:
    """Marks for a module of properties: under the ``long`` profile, no per-test time limit."""
    if os.environ.get("HYPOTHESIS_PROFILE") == "long":
        return [pytest.mark.timeout(0)]
    return []
