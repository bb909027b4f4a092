"""Flow documents: the vectors, every node type, the edge caps, and the decoder's totality as properties."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.ivr import flow_codec
from appliance.ivr.errors import FlowDecodeError, FlowReadError, IvrError, UnsupportedContentType
from appliance.ivr.flow_codec import (
    MAX_DOCUMENT_SIZE,
    decode_flow,
    decode_flow_bytes,
    default_flow,
    encode_flow,
    encode_flow_json,
    load_flow_file,
)
from appliance.ivr.model import (
    NODE_TYPES,
    Announcement,
    BusinessHours,
    CallbackRequest,
    CollectDigits,
    Flow,
    Goto,
    Hangup,
    LanguageMenu,
    Menu,
    Play,
    Schedule,
    Survey,
    Transfer,
    Voicemail,
)
from tests.unit.vectors import hypothesis_settings, soak_marks

pytestmark = soak_marks()

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "ivr"
VALID_JSON = sorted((VECTORS / "valid").glob("*.json"))
INVALID = sorted(p for p in (VECTORS / "invalid").iterdir() if p.suffix in (".json", ".cbor"))


def _content_type(path: Path) -> str:
    return "application/cbor" if path.suffix == ".cbor" else "application/json"


def _flow(nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "schema": 1,
        "name": "t",
        "version": 1,
        "start": next(iter(nodes)),
        "languages": ["en", "de"],
        "default_language": "en",
        "nodes": nodes,
        **extra,
    }


def _decode_error(doc: Any) -> FlowDecodeError:
    with pytest.raises(FlowDecodeError) as info:
        decode_flow(doc)
    return info.value


# --- vectors ----------------------------------------------------------------------------------------------


def test_there_are_vectors() -> None:
    assert len(VALID_JSON) >= 2
    assert len(INVALID) >= 40


@pytest.mark.parametrize("path", VALID_JSON, ids=[p.stem for p in VALID_JSON])
def test_valid_json_vector_round_trips_to_identical_bytes(path: Path) -> None:
    data = path.read_bytes()
    flow = decode_flow_bytes(data, "application/json")
    assert encode_flow_json(flow) == data
    assert decode_flow(encode_flow(flow)) == flow
    assert load_flow_file(path) == flow


def test_valid_cbor_vector_is_the_json_vector_and_round_trips() -> None:
    data = (VECTORS / "valid" / "every_node.cbor").read_bytes()
    flow = decode_flow_bytes(data, "application/cbor")
    assert flow == load_flow_file(VECTORS / "valid" / "every_node.json")
    assert cbor2.dumps(encode_flow(flow)) == data


def test_every_node_vector_field_by_field() -> None:
    flow = load_flow_file(VECTORS / "valid" / "every_node.json")
    assert (flow.name, flow.version, flow.start, flow.schema) == ("every-node.v2", 42, "hours", 1)
    assert flow.languages == ("de", "en", "pt-BR") and flow.default_language == "de"
    office = flow.schedules["office"]
    assert office == Schedule(
        "Europe/Berlin",
        {0: ((480, 720), (780, 1050)), 1: ((480, 1050),), 5: ((600, 1440),), 6: ()},
        frozenset({"2026-12-24", "2026-12-25"}),
    )
    assert flow.schedules["callbacks"].weekly == {4: ((0, 1440),)}
    nodes = flow.nodes
    assert nodes["hours"] == BusinessHours("office", "greeting", "closed")
    assert nodes["closed"] == Announcement(("closed", "goodbye"), "end")
    assert nodes["greeting"] == Play(("welcome_de", "welcome_tail"), "language", barge_in=False)
    assert nodes["language"] == LanguageMenu(
        {"1": "de", "2": "en", "3": "pt-BR"}, "menu", "language_choice", 4.0, 0
    )
    menu = nodes["menu"]
    assert isinstance(menu, Menu)
    assert list(menu.choices) == ["1", "2", "3", "0", "*", "#"]
    assert (menu.on_failure, menu.timeout, menu.retries) == ("voicemail", 7.5, 3)
    assert (menu.invalid_prompts, menu.timeout_prompts) == (("invalid_choice",), ("no_input",))
    assert nodes["again"] == Goto("menu")
    assert nodes["account"] == CollectDigits(
        ("enter_account",), "account_number", "agents", "menu", 6, 10, None, 8.0, 2.5, 1, ("invalid_account",)
    )
    assert nodes["callback"] == CallbackRequest(
        "survey", "voicemail", "callbacks", False, 4, 30, 6.0, 1, ("callback_saved", "thank_you")
    )
    assert nodes["voicemail"] == Voicemail(
        ("voicemail_prompt",), "end", 300.0, 4.0, 0.0, False, False, (), ("voicemail_too_short",)
    )
    assert nodes["agents"] == Transfer(
        "billing", "voicemail", "longest_idle", "hold_jazz", 0.0, 900.0, "survey"
    )
    assert nodes["survey"] == Survey(
        (("survey_q1",), ("survey_q2", "scale_1_5"), ("survey_q3",)),
        "end",
        ("survey_intro",),
        ("survey_thanks",),
        10.0,
        2,
    )
    assert nodes["end"] == Hangup(("goodbye",), 31)
    assert {type(node) for node in nodes.values()} == set(NODE_TYPES.values())


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_vector_is_refused_with_the_exact_error(path: Path) -> None:
    expected = path.with_suffix(".expected").read_text().rstrip("\n")
    with pytest.raises(FlowDecodeError) as info:
        decode_flow_bytes(path.read_bytes(), _content_type(path))
    assert str(info.value) == expected
    assert info.value.status == 422
    if info.value.path:
        assert expected == f"{info.value.path}: {info.value.reason}"


def test_error_path_quotes_keys_that_are_not_identifiers() -> None:
    doc = _flow(
        {"main-menu": {"type": "menu", "prompts": [], "choices": {"7": 1}, "on_failure": "main-menu"}}
    )
    error = _decode_error(doc)
    assert error.path == 'nodes."main-menu".choices."7"'
    assert error.reason == "expected text, found an integer"


# --- the default flow -------------------------------------------------------------------------------------


def test_default_flow_is_the_documented_one() -> None:
    flow = default_flow()
    assert flow.name == "default"
    assert flow.languages == ("en", "es", "pt", "fr", "de", "ar", "zh", "ja", "hi", "id", "tr")
    assert flow.default_language == "en"
    welcome = flow.nodes[flow.start]
    assert welcome == Announcement(("service_interruption",), "menu")
    menu = flow.nodes["menu"]
    assert isinstance(menu, Menu)
    assert menu.prompts == ("main_menu",)
    assert (menu.invalid_prompts, menu.timeout_prompts, menu.on_failure) == (
        ("invalid_choice",),
        ("no_input",),
        "voicemail",
    )
    callback, voicemail, agents = (flow.nodes[menu.choices[key]] for key in "120")
    assert isinstance(callback, CallbackRequest) and callback.next == "goodbye"
    assert isinstance(voicemail, Voicemail)
    assert voicemail.prompts == ("voicemail_prompt",) and voicemail.next == "goodbye"
    assert isinstance(agents, Transfer)
    assert (agents.group, agents.strategy, agents.fallback) == ("local", "ring_all", "voicemail")
    assert flow.nodes["goodbye"] == Hangup(("goodbye",))
    language = flow.nodes[menu.choices["*"]]
    assert isinstance(language, LanguageMenu) and language.next == "menu"
    assert sorted(language.choices.values()) == sorted(flow.languages)


def test_default_flow_file_is_canonical() -> None:
    path = Path(flow_codec.__file__).parent / "flows" / "default.json"
    assert encode_flow_json(default_flow()) == path.read_bytes()


# --- the schema in CDDL ----------------------------------------------------------------------------------


def _cddl_maps() -> dict[str, list[str]]:
    """Each map rule of ``flow.cddl`` (``name = { ... }``) with its field names in order; a node rule is
    named by its ``type`` value."""
    text = (Path(flow_codec.__file__).parent / "flow.cddl").read_text()
    maps: dict[str, list[str]] = {}
    for match in re.finditer(r"^([a-z-]+) = \{\n(.*?)^\}", text, re.M | re.S):
        body = match.group(2)
        kind = re.search(r'^\s*type: "(\w+)"', body, re.M)
        maps[kind.group(1) if kind else match.group(1)] = re.findall(r"^\s*(?:\? )?(\w+):", body, re.M)
    return maps


def test_cddl_schema_names_every_field_the_codec_reads() -> None:
    maps = _cddl_maps()
    for kind, cls in NODE_TYPES.items():
        assert maps[kind] == ["type", *(f.name for f in dataclasses.fields(cls))], kind
    assert maps["schedule"] == ["timezone", "weekly", "holidays"]
    assert maps["flow"] == list(encode_flow(load_flow_file(VECTORS / "valid" / "every_node.json")))


# --- node types, defaults, numbers ------------------------------------------------------------------------

MINIMAL_NODES: dict[str, tuple[dict[str, Any], Any]] = {
    "play": ({"prompts": ["p"], "next": "n"}, Play(("p",), "n")),
    "announcement": ({"prompts": ["p"], "next": "n"}, Announcement(("p",), "n")),
    "menu": ({"prompts": [], "choices": {"1": "n"}, "on_failure": "n"}, Menu((), {"1": "n"}, "n")),
    "collect": (
        {"prompts": [], "variable": "v", "next": "n", "on_failure": "n"},
        CollectDigits((), "v", "n", "n"),
    ),
    "language_menu": ({"choices": {"1": "de"}, "next": "n"}, LanguageMenu({"1": "de"}, "n")),
    "business_hours": ({"schedule": "s", "open": "n", "closed": "n"}, BusinessHours("s", "n", "n")),
    "voicemail": ({"prompts": [], "next": "n"}, Voicemail((), "n")),
    "callback": ({"next": "n", "on_failure": "n"}, CallbackRequest("n", "n")),
    "transfer": ({"group": "g", "fallback": "n"}, Transfer("g", "n")),
    "survey": ({"questions": [["a"], ["b"], ["c"]], "next": "n"}, Survey((("a",), ("b",), ("c",)), "n")),
    "hangup": ({}, Hangup()),
    "goto": ({"target": "n"}, Goto("n")),
}


def test_minimal_nodes_cover_every_type() -> None:
    assert set(MINIMAL_NODES) == set(NODE_TYPES)


@pytest.mark.parametrize("kind", sorted(MINIMAL_NODES))
def test_node_type_reads_with_defaults_and_writes_back_minimal(kind: str) -> None:
    fields, expected = MINIMAL_NODES[kind]
    doc = _flow({"x": {"type": kind, **fields}, "n": {"type": "hangup"}})
    flow = decode_flow(doc)
    assert flow.nodes["x"] == expected
    assert encode_flow(flow)["nodes"]["x"] == {"type": kind, **fields}


@pytest.mark.parametrize("kind", sorted(MINIMAL_NODES))
def test_node_type_unknown_field_names_the_allowed_ones(kind: str) -> None:
    fields, expected = MINIMAL_NODES[kind]
    error = _decode_error(_flow({"x": {"type": kind, **fields, "zzz": 1}}))
    assert error.path == "nodes.x.zzz"
    names = ", ".join(["type", *(f for f in type(expected).__dataclass_fields__)])
    assert error.reason == f"unknown field (a {kind} node has: {names})"


@pytest.mark.parametrize("kind", sorted(k for k, (fields, _) in MINIMAL_NODES.items() if fields))
def test_node_type_required_fields_are_required(kind: str) -> None:
    fields, _ = MINIMAL_NODES[kind]
    first = next(iter(fields))
    error = _decode_error(_flow({"x": {"type": kind, **{k: v for k, v in fields.items() if k != first}}}))
    assert (error.path, error.reason) == (f"nodes.x.{first}", "missing (required)")


def test_integral_numbers_read_as_integers_and_any_number_as_seconds() -> None:
    doc = _flow(
        {
            "m": {
                "type": "menu",
                "prompts": [],
                "choices": {"1": "m"},
                "on_failure": "m",
                "retries": 2.0,
                "timeout": 5,
            }
        }
    )
    menu = decode_flow(doc).nodes["m"]
    assert isinstance(menu, Menu)
    assert menu.retries == 2 and type(menu.retries) is int
    assert menu.timeout == 5.0 and type(menu.timeout) is float


def test_encoding_writes_whole_seconds_as_integers_and_leaves_defaults_out() -> None:
    flow = Flow("f", 3, "m", ("en",), "en", {"m": Menu(("a",), {"1": "m"}, "m", timeout=8.0, retries=2)})
    assert encode_flow(flow)["nodes"]["m"] == {
        "type": "menu",
        "prompts": ["a"],
        "choices": {"1": "m"},
        "on_failure": "m",
        "timeout": 8,
    }


def test_null_means_none_where_none_is_a_value() -> None:
    fields = {"prompts": [], "variable": "v", "next": "c", "on_failure": "c", "terminator": None}
    collect = decode_flow(_flow({"c": {"type": "collect", **fields}})).nodes["c"]
    assert isinstance(collect, CollectDigits) and collect.terminator is None
    transfer = decode_flow(_flow({"t": {"type": "transfer", "group": "g", "fallback": "t", "after": None}}))
    assert transfer.nodes["t"] == Transfer("g", "t")
    error = _decode_error(_flow({"p": {"type": "play", "prompts": ["a"], "next": None}}))
    assert (error.path, error.reason) == ("nodes.p.next", "expected text, found null")


def test_non_finite_and_huge_numbers_are_refused() -> None:
    for value, reason in [
        (float("inf"), "inf seconds is out of range (0, 600]"),
        (float("nan"), "nan seconds is out of range (0, 600]"),
        (10**40, "an integer of 133 bits seconds is out of range (0, 600]"),
    ]:
        error = _decode_error(
            _flow(
                {
                    "m": {
                        "type": "menu",
                        "prompts": [],
                        "choices": {"1": "m"},
                        "on_failure": "m",
                        "timeout": value,
                    }
                }
            )
        )
        assert (error.path, error.reason) == ("nodes.m.timeout", reason)


def test_schedule_bounds_and_holidays() -> None:
    def schedule(**fields: Any) -> dict[str, Any]:
        return _flow({"h": {"type": "hangup"}}, schedules={"s": {"timezone": "UTC", "weekly": {}, **fields}})

    assert decode_flow(schedule()).schedules["s"] == Schedule("UTC", {})
    error = _decode_error(schedule(weekly={"mon": [["09:00", "09:00"]]}))
    assert (error.path, error.reason) == (
        "schedules.s.weekly.mon[0][1]",
        "ends at 09:00, not after its start 09:00",
    )
    error = _decode_error(schedule(weekly={"mon": [["24:00", "24:00"]]}))
    assert error.path == "schedules.s.weekly.mon[0][1]"
    error = _decode_error(schedule(holidays=["2026-01-01", "2026-01-01"]))
    assert (error.path, error.reason) == ("schedules.s.holidays[1]", '"2026-01-01" is listed twice')
    error = _decode_error(schedule(holidays=["20260101"]))
    assert error.reason == '"20260101" is not a date "YYYY-MM-DD"'
    error = _decode_error(schedule(weekly={"mon": [["09:00"]]}))
    assert error.reason == 'expected ["HH:MM", "HH:MM"], found 1 items'


# --- the edge: bytes, content types, files ----------------------------------------------------------------


def test_size_cap_applies_before_parsing() -> None:
    data = b" " * (MAX_DOCUMENT_SIZE + 1)
    for content_type in ("application/json", "application/cbor"):
        with pytest.raises(FlowDecodeError) as info:
            decode_flow_bytes(data, content_type)
        assert (
            str(info.value)
            == f"document too large ({MAX_DOCUMENT_SIZE + 1} octets, at most {MAX_DOCUMENT_SIZE})"
        )


def test_content_type_parameters_are_ignored_and_others_refused_with_415() -> None:
    data = (VECTORS / "valid" / "minimal.json").read_bytes()
    assert decode_flow_bytes(data, "Application/JSON; charset=utf-8").name == "minimal"
    with pytest.raises(UnsupportedContentType) as info:
        decode_flow_bytes(data, "text/plain")
    assert info.value.status == 415 and isinstance(info.value, FlowDecodeError)


def test_cbor_nesting_is_capped() -> None:
    with pytest.raises(FlowDecodeError) as info:
        decode_flow_bytes(b"\x81" * 40 + b"\x01", "application/cbor")
    assert "nesting depth" in str(info.value)


def test_unreadable_files_raise_flow_read_error(tmp_path: Path) -> None:
    with pytest.raises(FlowReadError) as info:
        load_flow_file(tmp_path / "absent.json")
    assert info.value.path == str(tmp_path / "absent.json") and isinstance(info.value, IvrError)
    with pytest.raises(FlowReadError):
        load_flow_file(tmp_path)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (MAX_DOCUMENT_SIZE + 10))
    with pytest.raises(FlowDecodeError, match="document too large"):
        load_flow_file(path)


# --- properties -------------------------------------------------------------------------------------------

_ids = st.sampled_from(["a", "b", "node_c", "d-1"])
_prompt_names = st.sampled_from(["p", "main_menu", "x-1", "Z9"])
_prompts = st.lists(_prompt_names, max_size=3)
_some_prompts = st.lists(_prompt_names, min_size=1, max_size=3)
_seconds = st.one_of(st.integers(1, 600), st.floats(0.001, 600, allow_nan=False, allow_infinity=False))
_retries = st.integers(0, 9)
_keys = st.sampled_from(sorted("0123456789*#"))


def _node(kind: str, required: dict[str, Any], optional: dict[str, Any]) -> Any:
    return st.fixed_dictionaries({"type": st.just(kind), **required}, optional=optional)


_nodes = st.one_of(
    _node("play", {"prompts": _some_prompts, "next": _ids}, {"barge_in": st.booleans()}),
    _node("announcement", {"prompts": _some_prompts, "next": _ids}, {}),
    _node(
        "menu",
        {"prompts": _prompts, "choices": st.dictionaries(_keys, _ids, min_size=1), "on_failure": _ids},
        {"timeout": _seconds, "retries": _retries, "invalid_prompts": _prompts, "timeout_prompts": _prompts},
    ),
    _node(
        "collect",
        {
            "prompts": _prompts,
            "variable": st.sampled_from(["v", "account_no"]),
            "next": _ids,
            "on_failure": _ids,
        },
        {
            "min_digits": st.integers(1, 5),
            "max_digits": st.integers(5, 32),
            "terminator": st.one_of(st.none(), _keys),
            "first_digit_timeout": _seconds,
            "inter_digit_timeout": _seconds,
            "retries": _retries,
            "invalid_prompts": _prompts,
        },
    ),
    _node(
        "language_menu",
        {"choices": st.sampled_from([{"1": "en"}, {"2": "de", "#": "en"}]), "next": _ids},
        {"prompt": _prompt_names, "timeout": _seconds, "retries": _retries},
    ),
    _node("business_hours", {"schedule": st.sampled_from(["s", "other"]), "open": _ids, "closed": _ids}, {}),
    _node(
        "voicemail",
        {"prompts": _prompts, "next": _ids},
        {
            "max_seconds": st.integers(1, 600),
            "silence_seconds": _seconds,
            "min_seconds": st.floats(0, 1),
            "beep": st.booleans(),
            "end_on_hash": st.booleans(),
            "saved_prompts": _prompts,
            "too_short_prompts": _prompts,
        },
    ),
    _node(
        "callback",
        {"next": _ids, "on_failure": _ids},
        {
            "schedule": st.one_of(st.none(), st.just("s")),
            "confirm_number": st.booleans(),
            "offers": st.integers(1, 9),
            "lead_minutes": st.integers(0, 10080),
            "timeout": _seconds,
            "retries": _retries,
            "saved_prompts": _prompts,
        },
    ),
    _node(
        "transfer",
        {"group": st.sampled_from(["local", "g-2"]), "fallback": _ids},
        {
            "strategy": st.sampled_from(["ring_all", "longest_idle"]),
            "music": _prompt_names,
            "announce_every": st.integers(0, 600),
            "max_wait": st.integers(1, 3600),
            "after": st.one_of(st.none(), _ids),
        },
    ),
    _node(
        "survey",
        {"questions": st.lists(_some_prompts, min_size=3, max_size=3), "next": _ids},
        {"intro_prompts": _prompts, "thanks_prompts": _prompts, "timeout": _seconds, "retries": _retries},
    ),
    _node("hangup", {}, {"prompts": _prompts, "cause": st.integers(1, 127)}),
    _node("goto", {"target": _ids}, {}),
)
_clock = st.integers(0, 1439).map(lambda m: f"{m // 60:02d}:{m % 60:02d}")
_schedules = st.fixed_dictionaries(
    {
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/Sao_Paulo"]),
        "weekly": st.dictionaries(
            st.sampled_from(["mon", "tue", "sun"]),
            st.sampled_from([[], [["09:00", "17:00"]], [["00:00", "12:00"], ["12:00", "24:00"]]]),
        ),
    },
    optional={"holidays": st.lists(st.dates().map(str), max_size=3, unique=True)},
)
_documents = st.fixed_dictionaries(
    {
        "schema": st.just(1),
        "name": st.sampled_from(["default", "f.v2"]),
        "version": st.integers(1, 2**53),
        "start": _ids,
        "languages": st.just(["en", "de"]),
        "default_language": st.sampled_from(["en", "de"]),
        "nodes": st.dictionaries(_ids, _nodes, min_size=1),
    },
    optional={"schedules": st.dictionaries(st.sampled_from(["s", "night"]), _schedules)},
)

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


def _decode_total(doc: Any) -> None:
    with contextlib.suppress(FlowDecodeError):
        decode_flow(doc)


@hypothesis_settings()
@given(_documents)
def test_generated_documents_decode_and_round_trip(doc: dict[str, Any]) -> None:
    flow = decode_flow(doc)
    again = encode_flow(flow)
    assert decode_flow(again) == flow
    assert encode_flow(decode_flow(again)) == again
    assert decode_flow_bytes(encode_flow_json(flow), "application/json") == flow
    assert decode_flow_bytes(cbor2.dumps(again), "application/cbor") == flow


@hypothesis_settings()
@given(_json_values)
def test_random_values_decode_or_raise_decode_error(value: Any) -> None:
    _decode_total(value)
    _decode_total(_flow({"x": value}))
    _decode_total(_flow({"x": {"type": "menu", "prompts": [], "choices": value, "on_failure": "x"}}))


@hypothesis_settings()
@given(_documents, st.data())
def test_mutated_documents_decode_or_raise_decode_error(doc: dict[str, Any], data: st.DataObject) -> None:
    # Replace or delete one value somewhere in a valid document (a copy: strategies share their constants).
    doc = copy.deepcopy(doc)
    container: Any = doc
    while True:
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        if data.draw(st.booleans()) or not isinstance(container[key], dict | list):
            if isinstance(container, dict) and data.draw(st.booleans()):
                del container[key]
            else:
                container[key] = data.draw(_json_values)
            break
        container = container[key]
    _decode_total(doc)


@hypothesis_settings()
@given(st.binary(max_size=300), st.sampled_from(["application/json", "application/cbor"]))
def test_random_bytes_decode_or_raise_decode_error(data: bytes, content_type: str) -> None:
    with contextlib.suppress(FlowDecodeError):
        decode_flow_bytes(data, content_type)


@hypothesis_settings()
@given(st.sampled_from([*VALID_JSON, VECTORS / "valid" / "every_node.cbor"]), st.data())
def test_truncated_and_flipped_vectors_decode_or_raise_decode_error(path: Path, data: st.DataObject) -> None:
    raw = bytearray(path.read_bytes())
    cut = data.draw(st.integers(0, len(raw)))
    flip = data.draw(st.integers(0, len(raw) - 1))
    raw[flip] ^= data.draw(st.integers(1, 255))
    for sample in (bytes(raw[:cut]), bytes(raw)):
        with contextlib.suppress(FlowDecodeError):
            decode_flow_bytes(sample, _content_type(path))


# --- the documentation ------------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "ivr-flows.md"


def test_documented_example_flow_reads() -> None:
    example = re.search(r"```json\n(\{\n  \"schema\".*?)```", DOC.read_text(), re.S)
    assert example is not None
    flow = decode_flow_bytes(example.group(1).encode(), "application/json")
    assert flow.schedules["office"].weekly == {0: ((540, 1050),)}


def test_documented_error_messages_are_the_vectors() -> None:
    block = DOC.read_text().split("### 1. Reading")[1].split("```")[1]
    expected = {p.read_text().rstrip("\n") for p in (VECTORS / "invalid").glob("*.expected")}
    documented = [line for line in block.strip().splitlines() if not line.startswith("document too large")]
    assert len(documented) >= 15
    assert [line for line in documented if line not in expected] == []
