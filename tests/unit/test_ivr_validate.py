"""The flow validator: every rule, all problems at once, in a deterministic order."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from appliance.ivr.actions import BUILTIN_PROMPTS, MUSIC_ON_HOLD
from appliance.ivr.errors import FlowInvalidError, FlowProblem
from appliance.ivr.flow_codec import default_flow, encode_flow, load_flow_file
from appliance.ivr.model import (
    Announcement,
    BusinessHours,
    CallbackRequest,
    CollectDigits,
    Flow,
    Goto,
    Hangup,
    LanguageMenu,
    Menu,
    Node,
    Play,
    Schedule,
    Survey,
    Transfer,
    Voicemail,
)
from appliance.ivr.validate import language_tag_ok, timezone_ok, validate_flow

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "ivr"
INVALID_GRAPHS = sorted((VECTORS / "invalid_graph").glob("*.json"))


class Catalog:
    """A prompt catalog in memory: ``prompts`` maps a language to the names it has; ``shared`` names
    resolve in any language through ``path`` only."""

    def __init__(self, prompts: Mapping[str, set[str]], shared: set[str] = frozenset(), default: str = "en"):
        self.prompts = prompts
        self.shared = shared
        self.default = default

    def has(self, language: str, name: str) -> bool:
        return name in self.prompts.get(language, set())

    def path(self, language: str, name: str) -> str:
        if name in self.shared:
            return f"shared/{name}.alaw"
        for lang in (language, self.default):
            if self.has(lang, name):
                return f"{lang}/{name}.alaw"
        raise KeyError(name)


def _flow(nodes: dict[str, Node], *, start: str | None = None, **fields: Any) -> Flow:
    options: dict[str, Any] = {"languages": ("en", "de"), "default_language": "en", **fields}
    return Flow("t", 1, start or next(iter(nodes)), nodes=nodes, **options)


def _problems(flow: Flow, **kwargs: Any) -> list[FlowProblem]:
    kwargs.setdefault("catalog", None)
    with pytest.raises(FlowInvalidError) as info:
        validate_flow(flow, **kwargs)
    assert info.value.status == 422
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return list(info.value.problems)


def _codes(flow: Flow, **kwargs: Any) -> list[tuple[str | None, str]]:
    return [(p.node, p.code) for p in _problems(flow, **kwargs)]


MENU = Menu(("main_menu",), {"1": "bye"}, "bye")
BYE = Hangup(("goodbye",))


# --- valid flows ------------------------------------------------------------------------------------------


def test_default_flow_is_valid_without_a_catalog_and_with_its_agent_group() -> None:
    validate_flow(default_flow(), catalog=None)
    validate_flow(default_flow(), catalog=None, agent_groups={"local"})


def test_every_node_vector_is_valid() -> None:
    validate_flow(
        load_flow_file(VECTORS / "valid" / "every_node.json"), catalog=None, agent_groups=["billing"]
    )


def test_complete_catalog_passes_and_music_on_hold_is_found_through_path() -> None:
    flow = default_flow()
    names = set(BUILTIN_PROMPTS)
    catalog = Catalog({language: names for language in flow.languages}, shared={MUSIC_ON_HOLD})
    validate_flow(flow, catalog=catalog)


# --- targets and reachability -----------------------------------------------------------------------------


def test_unknown_start() -> None:
    problems = _problems(_flow({"bye": BYE}, start="nowhere"))
    assert problems == [FlowProblem(None, "unknown-node", "start goes to 'nowhere', which is not a node")]


def test_unknown_targets_name_node_field_and_target() -> None:
    flow = _flow(
        {
            "menu": Menu((), {"1": "bye", "7": "lost"}, "gone"),
            "bye": BYE,
            "t": Transfer("g", "bye", after="later"),
        },
    )
    messages = [p.message for p in _problems(flow) if p.code == "unknown-node"]
    assert messages == [
        "menu 'menu': key 7 goes to 'lost', which is not a node",
        "menu 'menu': on_failure goes to 'gone', which is not a node",
        "transfer 't': after goes to 'later', which is not a node",
    ]


@pytest.mark.parametrize(
    "node",
    [
        Play(("p",), "x"),
        Announcement(("p",), "x"),
        CollectDigits((), "v", "bye", "x"),
        LanguageMenu({"1": "en"}, "x"),
        BusinessHours("s", "bye", "x"),
        Voicemail((), "x"),
        CallbackRequest("bye", "x"),
        Transfer("g", "x"),
        Survey((("a",), ("b",), ("c",)), "x"),
        Goto("x"),
    ],
    ids=lambda node: type(node).__name__,
)
def test_every_node_type_target_is_checked(node: Node) -> None:
    flow = _flow({"n": node, "bye": BYE}, schedules={"s": Schedule("UTC", {})})
    problems = [p for p in _problems(flow) if p.code == "unknown-node"]
    assert [(p.node, p.message.endswith("goes to 'x', which is not a node")) for p in problems] == [
        ("n", True)
    ]


def test_unreachable_nodes_in_flow_order() -> None:
    flow = _flow({"start": Goto("bye"), "island": Play(("p",), "bye"), "bye": BYE, "orphan": Hangup()})
    assert _problems(flow) == [
        FlowProblem("island", "unreachable-node", "play 'island' cannot be reached from start"),
        FlowProblem("orphan", "unreachable-node", "hangup 'orphan' cannot be reached from start"),
    ]


def test_unreachable_is_not_reported_when_start_is_unknown() -> None:
    assert _codes(_flow({"a": BYE, "b": BYE}, start="zz")) == [(None, "unknown-node")]


# --- loops ------------------------------------------------------------------------------------------------


def test_self_loop_goto() -> None:
    assert _problems(_flow({"spin": Goto("spin")})) == [
        FlowProblem(
            "spin",
            "loop-without-input",
            "goto 'spin' -> goto 'spin' loops without waiting for the caller "
            "(no menu, collect or other input on the way)",
        )
    ]


def test_goto_play_goto_loop() -> None:
    flow = _flow({"a": Goto("b"), "b": Play(("p",), "a")})
    problems = _problems(flow)
    assert [(p.node, p.code) for p in problems] == [("a", "loop-without-input")]
    assert problems[0].message.startswith("goto 'a' -> play 'b' -> goto 'a' loops")


def test_longer_cycle_reported_once_at_its_first_node_with_a_shortest_cycle() -> None:
    flow = _flow(
        {
            "entry": Announcement(("hello",), "hours"),
            "hours": BusinessHours("s", "tell", "again"),
            "tell": Play(("p",), "again"),
            "again": Goto("hours"),
        },
        schedules={"s": Schedule("UTC", {})},
    )
    problems = _problems(flow)
    assert [(p.node, p.code) for p in problems] == [("hours", "loop-without-input")]
    assert problems[0].message.startswith(
        "business_hours 'hours' -> goto 'again' -> business_hours 'hours' loops"
    )


def test_two_separate_loops_each_reported() -> None:
    flow = _flow(
        {"menu": Menu((), {"1": "a", "2": "c"}, "menu"), "a": Goto("b"), "b": Goto("a"), "c": Goto("c")},
    )
    assert _codes(flow) == [("a", "loop-without-input"), ("c", "loop-without-input")]


@pytest.mark.parametrize(
    "waiting",
    [
        Menu(("m",), {"1": "back"}, "back"),
        CollectDigits((), "v", "back", "back"),
        LanguageMenu({"1": "de"}, "back"),
        Voicemail((), "back"),
        CallbackRequest("back", "back"),
        Transfer("g", "back"),
        Survey((("a",), ("b",), ("c",)), "back"),
    ],
    ids=lambda node: type(node).__name__,
)
def test_loop_through_a_node_that_waits_for_input_is_fine(waiting: Node) -> None:
    validate_flow(_flow({"intro": Play(("p",), "wait"), "wait": waiting, "back": Goto("wait")}), catalog=None)


def test_loop_detour_through_input_does_not_hide_a_loop_without_it() -> None:
    flow = _flow({"m": Menu((), {"1": "a"}, "m"), "a": Goto("b"), "b": Play(("p",), "a")})
    assert _codes(flow) == [("a", "loop-without-input")]


# --- schedules, groups, languages, time zones -------------------------------------------------------------


def test_unknown_schedule_in_business_hours_and_callback() -> None:
    flow = _flow(
        {
            "h": BusinessHours("office", "cb", "cb"),
            "cb": CallbackRequest("bye", "bye", schedule="night"),
            "bye": BYE,
        },
        schedules={"day": Schedule("UTC", {})},
    )
    assert [p.message for p in _problems(flow)] == [
        "business_hours 'h': schedule 'office' is not defined (schedules: day)",
        "callback 'cb': schedule 'night' is not defined (schedules: day)",
    ]


def test_unknown_agent_group_only_when_groups_are_given() -> None:
    flow = _flow({"t": Transfer("sales", "bye"), "bye": BYE})
    validate_flow(flow, catalog=None)
    assert _problems(flow, agent_groups={"support", "local"}) == [
        FlowProblem(
            "t",
            "unknown-agent-group",
            "transfer 't': agent group 'sales' is not configured (groups: local, support)",
        )
    ]


def test_bad_languages() -> None:
    flow = _flow(
        {"lang": LanguageMenu({"1": "de", "2": "fr"}, "bye"), "bye": BYE},
        languages=("en", "EN!", "en"),
        default_language="de",
    )
    assert [(p.code, p.message) for p in _problems(flow)] == [
        ("bad-language", "languages[1] 'EN!' is not a language tag"),
        ("bad-language", "languages[2] 'en' is listed twice"),
        ("bad-language", "default language 'de' is not one the flow offers (en, EN!, en)"),
        ("bad-language", "language_menu 'lang': key 1 offers 'de', which the flow does not offer"),
        ("bad-language", "language_menu 'lang': key 2 offers 'fr', which the flow does not offer"),
    ]


def test_bad_timezone() -> None:
    flow = _flow(
        {"bye": BYE}, schedules={"s": Schedule("Mars/Olympus", {}), "ok": Schedule("Asia/Tokyo", {})}
    )
    assert _problems(flow) == [
        FlowProblem(None, "bad-timezone", "schedule 's': 'Mars/Olympus' is not an IANA time zone")
    ]


def test_language_and_timezone_predicates() -> None:
    assert all(map(language_tag_ok, ["en", "pt-BR", "zh-Hant-TW", "fil"]))
    assert not any(map(language_tag_ok, ["", "EN", "english", "en_US", "en-", "../en"]))
    assert all(map(timezone_ok, ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"]))
    assert not any(
        map(timezone_ok, ["", "Europe", "Mars/Base", "../etc/passwd", "/etc/localtime", "Europe/"])
    )


# --- prompts ----------------------------------------------------------------------------------------------


def _full(*languages: str) -> dict[str, set[str]]:
    return {language: set(BUILTIN_PROMPTS) for language in languages}


def test_prompt_missing_in_one_language_names_that_language() -> None:
    prompts = _full("en", "de")
    prompts["de"].discard("main_menu")
    prompts["en"].add("welcome")
    flow = _flow({"hi": Play(("welcome",), "menu"), "menu": MENU, "bye": BYE})
    assert _problems(flow, catalog=Catalog(prompts)) == [
        FlowProblem("hi", "missing-prompt", "play 'hi': prompt 'welcome' is missing in de"),
        FlowProblem("menu", "missing-prompt", "menu 'menu': prompt 'main_menu' is missing in de"),
    ]


def test_builtin_prompts_are_checked_per_language() -> None:
    prompts = _full("en")
    prompts["de"] = set(BUILTIN_PROMPTS) - {"digit_7", "time_13"}
    assert _problems(_flow({"bye": BYE}), catalog=Catalog(prompts)) == [
        FlowProblem(None, "missing-prompt", "language 'de' lacks builtin prompts: digit_7, time_13"),
    ]


def test_every_prompt_field_is_checked() -> None:
    survey = Survey((("q1",), ("q2",), ("q3",)), "bye", ("intro",), ("thanks",))
    voicemail = Voicemail(("vm",), "bye", saved_prompts=("saved",), too_short_prompts=("short",))
    menu = Menu(("m",), {"1": "vm"}, "sv", invalid_prompts=("inv",), timeout_prompts=("tmo",))
    flow = _flow({"menu": menu, "vm": voicemail, "sv": survey, "bye": BYE})
    catalog = Catalog(_full("en", "de"))
    missing = [p.message.split("'")[3] for p in _problems(flow, catalog=catalog)]
    assert missing == ["inv", "m", "tmo", "saved", "short", "vm", "intro", "q1", "q2", "q3", "thanks"]


def test_music_is_resolved_through_path_in_the_default_language() -> None:
    flow = _flow({"t": Transfer("g", "bye", music="jazz"), "bye": BYE})
    validate_flow(flow, catalog=Catalog(_full("en", "de"), shared={"jazz"}))
    prompts = _full("en", "de")
    prompts["en"].add("jazz")  # the default language has it: every caller hears it
    validate_flow(flow, catalog=Catalog(prompts))
    assert _problems(flow, catalog=Catalog(_full("en", "de"))) == [
        FlowProblem("t", "missing-prompt", "transfer 't': music 'jazz' is not in the catalog")
    ]


# --- all at once ------------------------------------------------------------------------------------------


def test_all_problems_are_reported_in_a_deterministic_order() -> None:
    prompts = _full("en", "de")
    prompts["de"] -= {"goodbye", "digit_1"}
    flow = _flow(
        {
            "menu": Menu(("main_menu",), {"1": "spin", "2": "nowhere"}, "bye"),
            "spin": Goto("spin"),
            "hours": BusinessHours("office", "bye", "bye"),
            "bye": BYE,
        },
        default_language="fr",
        schedules={"s": Schedule("No/Where", {})},
    )
    expected = [
        (None, "bad-language"),
        (None, "bad-timezone"),
        (None, "missing-prompt"),
        ("menu", "unknown-node"),
        ("hours", "unknown-schedule"),
        ("bye", "missing-prompt"),
        ("hours", "unreachable-node"),
        ("spin", "loop-without-input"),
    ]
    assert _codes(flow, catalog=Catalog(prompts)) == expected
    assert _codes(flow, catalog=Catalog(prompts)) == expected


@pytest.mark.parametrize("path", INVALID_GRAPHS, ids=[p.stem for p in INVALID_GRAPHS])
def test_invalid_graph_vector(path: Path) -> None:
    expected = path.with_suffix(".expected").read_text().rstrip("\n")
    flow = load_flow_file(path)
    problems = _problems(flow)
    assert "\n".join(f"{p.node or '-'} {p}" for p in problems) == expected
    assert encode_flow(flow)["name"] == path.stem.replace("_", "-")
