"""Writes the invalid flow vectors (``invalid/*.json|cbor``) and their ``.expected`` errors.

Each case mutates the valid ``every_node.json`` vector (or is raw bytes); run from the repository root after
a deliberate change of messages, then review the diff of the ``.expected`` files:
``.venv/bin/python tests/vectors/ivr/generate_invalid.py``.
"""

from __future__ import annotations

import copy
import json
import pathlib
from collections.abc import Callable
from typing import Any

import cbor2

from appliance.ivr.errors import FlowDecodeError
from appliance.ivr.flow_codec import decode_flow_bytes

HERE = pathlib.Path(__file__).resolve().parent
V = HERE / "invalid"
BASE: dict[str, Any] = json.loads((HERE / "valid" / "every_node.json").read_text())
DEL = object()
Mutation = Callable[[Any], None]
"""A value that deletes the key instead."""


def case(
    name: str, mutate: Callable[[Any], None] | None = None, raw: bytes = b"", cbor: bool = False
) -> None:
    """Write vector ``name``: ``BASE`` changed by ``mutate`` (or ``raw``) and the error it must raise."""
    if mutate is not None:
        doc = copy.deepcopy(BASE)
        mutate(doc)
        raw = cbor2.dumps(doc) if cbor else (json.dumps(doc, indent=2) + "\n").encode()
    ext = "cbor" if cbor else "json"
    (V / f"{name}.{ext}").write_bytes(raw)
    try:
        decode_flow_bytes(raw, f"application/{ext}")
    except FlowDecodeError as e:
        (V / f"{name}.expected").write_text(f"{e}\n")
        print(f"{name:32} {e}")
    else:
        raise SystemExit(f"{name} decodes")


def setp(path: list[str | int], value: Any) -> Mutation:
    """A mutation setting (or, with DEL, deleting) the value at ``path``."""

    def mutate(doc: Any) -> None:
        for key in path[:-1]:
            doc = doc[key]
        if value is DEL:
            del doc[path[-1]]
        else:
            doc[path[-1]] = value

    return mutate


N = "nodes"
case("schema_2", setp(["schema"], 2))
case("schema_missing", setp(["schema"], DEL))
case("unknown_root_field", setp(["owner"], "ops"))
case("unknown_node_type", setp([N, "again", "type"], "jump"))
case("unknown_node_field", setp([N, "again", "delay"], 1))
case("node_type_missing", setp([N, "again", "type"], DEL))
case("next_missing", setp([N, "closed", "next"], DEL))
case("node_id_with_space", lambda d: d[N].__setitem__("bad id", {"type": "hangup"}))
case("menu_key_not_a_phone_key", setp([N, "menu", "choices", "A"], "menu"))
case("menu_choices_empty", setp([N, "menu", "choices"], {}))
case("menu_target_not_text", setp([N, "menu", "choices", "7"], 7))
case("timeout_zero", setp([N, "menu", "timeout"], 0))
case("timeout_over_600", setp([N, "menu", "timeout"], 600.5))
case("timeout_text", setp([N, "menu", "timeout"], "5"))
case("retries_10", setp([N, "menu", "retries"], 10))
case("retries_fraction", setp([N, "menu", "retries"], 1.5))
case("retries_boolean", setp([N, "menu", "retries"], True))
case("digits_33", setp([N, "account", "max_digits"], 33))
case("digits_min_above_max", setp([N, "account", "min_digits"], 11))
case("terminator_two_keys", setp([N, "account", "terminator"], "##"))
case("variable_upper_case", setp([N, "account", "variable"], "Account"))
case("max_seconds_601", setp([N, "voicemail", "max_seconds"], 601))
case("survey_two_questions", setp([N, "survey", "questions"], [["survey_q1"], ["survey_q2"]]))
case("survey_empty_question", setp([N, "survey", "questions", 1], []))
case("language_menu_not_offered", setp([N, "language", "choices", "4"], "fr"))
case("language_menu_twice", setp([N, "language", "choices", "4"], "en"))
case("default_language_not_offered", setp(["default_language"], "fr"))
case("language_duplicate", setp(["languages"], ["de", "en", "de"]))
case("language_bad_tag", setp(["languages", 2], "Portuguese"))
case("weekday_unknown", setp(["schedules", "office", "weekly", "monday"], []))
case("clock_25", setp(["schedules", "office", "weekly", "tue", 0, 1], "25:00"))
case("interval_reversed", setp(["schedules", "office", "weekly", "tue", 0], ["17:30", "08:00"]))
case("intervals_overlap", setp(["schedules", "office", "weekly", "mon", 1, 0], "11:00"))
case("holiday_not_a_date", setp(["schedules", "office", "holidays", 1], "2026-02-30"))
case("timezone_unknown", setp(["schedules", "office", "timezone"], "Mars/Olympus_Mons"))
case("timezone_path", setp(["schedules", "office", "timezone"], "../../etc/passwd"))
case("prompt_path_traversal", setp([N, "closed", "prompts", 0], "../../secret"))
case("prompts_empty_for_play", setp([N, "greeting", "prompts"], []))
case("strategy_unknown", setp([N, "agents", "strategy"], "random"))
case("max_wait_over_hour", setp([N, "agents", "max_wait"], 3601))
case("hangup_cause_0", setp([N, "end", "cause"], 0))
case("offers_10", setp([N, "callback", "offers"], 10))
case("version_0", setp(["version"], 0))
case("nodes_empty", setp(["nodes"], {}))
case("not_a_map", raw=b"[1, 2, 3]\n")
case("not_json", raw=b'{"schema": 1,}\n')
case("duplicate_key", raw=b'{"schema": 1, "schema": 1}\n')
case("nan", raw=b'{"schema": NaN}\n')
case("not_utf8", raw=b'{"name": "\xff"}\n')
case("deep_nesting", raw=b'{"schema": 1, "name": ' + b"[" * 40 + b"]" * 40 + b"}\n")
case("cbor_trailing", raw=cbor2.dumps({"schema": 1}) + b"\x00", cbor=True)
case("cbor_tag", raw=cbor2.dumps({"schema": 1, "version": cbor2.CBORTag(1000, 3)}), cbor=True)
case("cbor_non_text_key", raw=cbor2.dumps({"schema": 1, 7: 1}), cbor=True)
case("cbor_bytes_name", lambda d: d.__setitem__("name", b"default"), cbor=True)
case(
    "cbor_duplicate_key",
    raw=bytes.fromhex("a2 66736368656d6101 66736368656d6101".replace(" ", "")),
    cbor=True,
)
