"""Write the sync API request vectors: ``valid/<rule>.<case>.cbor`` and ``invalid/<case>.cbor`` with
``invalid/expected.json`` (the rule each was sent as, the error code and the path). Run from the
repository root: ``python tests/vectors/sync/generate.py``."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2

HERE = Path(__file__).resolve().parent

VALID = {
    "ack-request.zero": {"upto": 0},
    "ack-request.large": {"upto": 2**64 - 1},
    "config-write.routing": {
        "replaces": 3,
        "version": 4,
        "content": {"routes": [{"match": "+49*", "destinations": ["cloud", "ivr:main"], "record": True}]},
        "confirm_within": 120,
    },
    "config-write.prompt": {"replaces": 0, "version": 1, "content": b"\xd5" * 160},
    "confirm-request.one": {"version": 1},
}

# name: (rule, raw bytes, code, path)
INVALID: dict[str, tuple[str, bytes, str, str | None]] = {
    "empty": ("ack-request", b"", "bad-cbor", None),
    "truncated-map": ("ack-request", bytes.fromhex("a1647570746f"), "bad-cbor", None),
    "trailing-bytes": ("ack-request", cbor2.dumps({"upto": 1}) + b"\x00", "bad-cbor", None),
    "indefinite-map": ("ack-request", bytes.fromhex("bf647570746f01ff"), "bad-cbor", None),
    "tagged-upto": ("ack-request", bytes.fromhex("a1647570746fc11a00000001"), "bad-cbor", None),
    "bignum-upto": ("ack-request", bytes.fromhex("a1647570746fc249010000000000000000"), "bad-cbor", None),
    "duplicate-key": ("ack-request", bytes.fromhex("a2647570746f01647570746f02"), "bad-cbor", None),
    "nan-content": (
        "config-write",
        cbor2.dumps({"replaces": 0, "version": 1, "content": 0.5})[:-9] + bytes.fromhex("f97e00"),
        "bad-cbor",
        None,
    ),
    "undefined": ("ack-request", bytes.fromhex("a1647570746ff7"), "bad-cbor", None),
    "bad-utf8-key": ("ack-request", bytes.fromhex("a164ff70746f01"), "bad-cbor", None),
    "upto-text": ("ack-request", cbor2.dumps({"upto": "x"}), "schema", "upto"),
    "upto-negative": ("ack-request", cbor2.dumps({"upto": -1}), "schema", "upto"),
    "upto-bool": ("ack-request", cbor2.dumps({"upto": True}), "schema", "upto"),
    "upto-missing": ("ack-request", cbor2.dumps({}), "schema", "upto"),
    "extra-key": ("ack-request", cbor2.dumps({"upto": 1, "since": 0}), "schema", "since"),
    "not-a-map": ("ack-request", cbor2.dumps([1]), "schema", None),
    "confirm-within-zero": (
        "config-write",
        cbor2.dumps({"replaces": 0, "version": 1, "content": {}, "confirm_within": 0}),
        "schema",
        "confirm_within",
    ),
    "version-not-above": (
        "config-write",
        cbor2.dumps({"replaces": 2, "version": 2, "content": {}}),
        "schema",
        "version",
    ),
    "content-missing": ("config-write", cbor2.dumps({"replaces": 0, "version": 1}), "schema", "content"),
    "confirm-version-float": ("confirm-request", cbor2.dumps({"version": 1.0}), "schema", "version"),
}


def main() -> None:
    for name, value in VALID.items():
        (HERE / "valid" / f"{name}.cbor").write_bytes(cbor2.dumps(value))
    expected = {}
    for name, (rule, raw, code, path) in INVALID.items():
        (HERE / "invalid" / f"{name}.cbor").write_bytes(raw)
        expected[name] = {"rule": rule, "error": code, "path": path}
    (HERE / "invalid" / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
