"""IvrSession: prompts, menus, digit collection, barge-in and type-ahead, languages, hours, the loop guard.

The session is driven by hand: ``now`` starts at 0.0 and moves only when a test moves it; the wall clock is
a fixed instant unless a test sets it; the catalog is a dict-like fake that names files ``<lang>/<name>``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from appliance.ivr.actions import Action, HangUp, Persist, PlayFiles, SessionEnded
from appliance.ivr.model import (
    Announcement,
    BusinessHours,
    CollectDigits,
    Flow,
    Goto,
    Hangup,
    LanguageMenu,
    Menu,
    Node,
    Play,
    Schedule,
)
from appliance.ivr.session import IvrSession, SessionUsageError

WALL = datetime(2026, 11, 24, 10, 10, tzinfo=UTC).timestamp()  # a Tuesday, 11:10 in Berlin


class FakeCatalog:
    """Every prompt exists in every language, except ``missing`` (language, name) pairs."""

    def __init__(self, missing: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.missing = missing

    def path(self, language: str, name: str) -> str:
        if (language, name) in self.missing:
            raise KeyError(name)
        return f"{language}/{name}"

    def has(self, language: str, name: str) -> bool:
        return (language, name) not in self.missing


class Wall:
    def __init__(self, at: float = WALL) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def make(
    nodes: Mapping[str, Node],
    *,
    start: str = "start",
    caller: str | None = "+4930123456",
    language: str = "en",
    schedules: Mapping[str, Schedule] | None = None,
    wall: Wall | None = None,
    rescued: bool = False,
    catalog: FakeCatalog | None = None,
) -> IvrSession:
    flow = Flow(
        name="test",
        version=7,
        start=start,
        languages=("en", "de", "fr"),
        default_language="en",
        nodes=dict(nodes),
        schedules=dict(schedules or {}),
    )
    return IvrSession(
        flow=flow,
        catalog=catalog or FakeCatalog(),
        call_id="call-1",
        session_id="s1",
        caller=caller,
        language=language,
        caller_zone="Europe/Berlin",
        wall=wall or Wall(),
        rescued=rescued,
    )


def drain(session: IvrSession) -> list[Action]:
    out: list[Action] = []
    while (action := session.next_action()) is not None:
        out.append(action)
    return out


def plays(actions: list[Action]) -> list[PlayFiles]:
    return [a for a in actions if isinstance(a, PlayFiles)]


def only_play(session: IvrSession) -> PlayFiles:
    actions = drain(session)
    assert len(actions) == 1 and isinstance(actions[0], PlayFiles), actions
    return actions[0]


def session_record(actions: list[Action]) -> dict[str, Any]:
    """The session record, checking it is the last Persist and is followed by SessionEnded."""
    assert isinstance(actions[-1], SessionEnded)
    record = actions[-2]
    assert isinstance(record, Persist) and record.type == "ivr.session"
    return dict(record.body)


def feed(session: IvrSession, keys: str, now: float) -> None:
    for key in keys:
        session.dtmf(key, now)


BYE: Mapping[str, Node] = {"bye": Hangup(prompts=("goodbye",))}


def test_play_then_announcement_then_hangup_ends_with_the_session_record() -> None:
    s = make({"start": Play(("welcome",), next="info"), "info": Announcement(("closed",), next="bye"), **BYE})
    s.start(0.0)
    assert only_play(s) == PlayFiles(1, ("en/welcome",), barge_in=True)
    assert s.current_node == "start"
    s.play_done(1, "done", 2.0)
    assert only_play(s) == PlayFiles(2, ("en/closed",), barge_in=False)
    s.play_done(2, "done", 4.0)
    assert only_play(s) == PlayFiles(3, ("en/goodbye",), barge_in=False)
    assert not s.ended
    s.play_done(3, "done", 5.0)
    actions = drain(s)
    assert actions[0] == HangUp(16)
    record = session_record(actions)
    assert record["outcome"] == "hangup"
    assert s.ended and s.current_node is None
    assert s.path == ("start", "info", "bye")


def test_goto_moves_at_once_and_hangup_without_prompts_hangs_up_at_once() -> None:
    s = make({"start": Goto("end"), "end": Hangup(cause=17)})
    s.start(0.0)
    actions = drain(s)
    assert actions[0] == HangUp(17)
    assert s.path == ("start", "end")
    assert session_record(actions)["outcome"] == "hangup"


def test_stale_play_done_is_ignored() -> None:
    s = make({"start": Play(("welcome",), next="info"), "info": Announcement(("closed",), next="bye"), **BYE})
    s.start(0.0)
    drain(s)
    s.play_done(1, "done", 1.0)
    assert only_play(s).play_id == 2
    s.play_done(1, "stopped", 1.5)  # a late report for the replaced playback
    s.play_done(99, "done", 1.5)
    assert drain(s) == [] and s.current_node == "info"


MENU: Mapping[str, Node] = {
    "start": Menu(
        ("main_menu",),
        choices={"1": "one", "2": "two"},
        on_failure="fail",
        timeout=5.0,
        retries=2,
        invalid_prompts=("invalid_choice",),
        timeout_prompts=("no_input",),
    ),
    "one": Hangup(prompts=("goodbye",)),
    "two": Hangup(prompts=("closed",)),
    "fail": Hangup(prompts=("agents_unavailable",), cause=31),
}


def test_menu_timeout_starts_when_the_prompt_has_played() -> None:
    s = make(MENU)
    s.start(0.0)
    assert only_play(s) == PlayFiles(1, ("en/main_menu",), barge_in=True)
    assert s.get_timer() is None  # still playing: the caller has not heard the question yet
    s.handle_timer(100.0)
    assert drain(s) == []
    s.play_done(1, "done", 8.0)
    assert s.get_timer() == 13.0
    s.handle_timer(12.9)
    assert drain(s) == []
    s.handle_timer(13.0)
    assert only_play(s) == PlayFiles(2, ("en/no_input", "en/main_menu"), barge_in=True)
    s.play_done(2, "done", 15.0)
    s.dtmf("2", 16.0)
    assert only_play(s).files == ("en/closed",)
    assert s.path == ("start", "two")


def test_menu_invalid_and_timeouts_count_as_tries_then_on_failure() -> None:
    s = make(MENU)
    s.start(0.0)
    drain(s)
    s.play_done(1, "done", 1.0)
    s.dtmf("7", 2.0)
    assert only_play(s).files == ("en/invalid_choice", "en/main_menu")
    s.play_done(2, "done", 3.0)
    s.handle_timer(8.0)
    assert only_play(s).files == ("en/no_input", "en/main_menu")
    s.play_done(3, "done", 9.0)
    s.dtmf("#", 10.0)  # third failure: retries=2 are spent
    assert only_play(s).files == ("en/agents_unavailable",)
    assert s.current_node == "fail"


def test_barge_in_on_a_menu_prompt_acts_at_once_and_its_late_play_done_is_stale() -> None:
    s = make(MENU)
    s.start(0.0)
    drain(s)
    s.dtmf("1", 0.5)  # during the prompt
    assert only_play(s) == PlayFiles(2, ("en/goodbye",), barge_in=False)
    s.play_done(1, "barge_in", 0.5)
    assert drain(s) == [] and s.current_node == "one"
    s.play_done(2, "done", 2.0)
    assert drain(s)[0] == HangUp(16)


def test_barge_in_on_a_play_carries_the_key_into_the_next_menu() -> None:
    s = make({**MENU, "start": Play(("welcome",), next="menu"), "menu": MENU["start"]})
    s.start(0.0)
    drain(s)
    s.dtmf("2", 0.3)
    # The menu is answered by the key typed ahead: its prompt never plays.
    assert only_play(s).files == ("en/closed",)
    assert s.path == ("start", "menu", "two")


def test_a_play_cut_by_a_digits_start_waits_for_the_digit() -> None:
    s = make({**MENU, "start": Play(("welcome",), next="menu"), "menu": MENU["start"]})
    s.start(0.0)
    drain(s)
    s.play_done(1, "barge_in", 0.3)  # the worker stops at the digit's start ...
    assert drain(s) == [] and s.get_timer() == 2.3
    s.dtmf("2", 0.45)  # ... and reports the digit when it ends
    assert only_play(s).files == ("en/closed",)  # the menu's prompt never started
    assert s.path == ("start", "menu", "two")


def test_a_play_cut_by_a_digit_that_never_comes_carries_on() -> None:
    s = make({**MENU, "start": Play(("welcome",), next="menu"), "menu": MENU["start"]})
    s.start(0.0)
    drain(s)
    s.play_done(1, "barge_in", 0.3)
    s.handle_timer(2.3)
    assert only_play(s).files == ("en/main_menu",)


def test_type_ahead_feeds_a_menu_then_a_collection_and_skips_barge_in_plays() -> None:
    nodes: dict[str, Node] = {
        "start": Play(("welcome",), next="menu"),
        "menu": Menu(("main_menu",), choices={"1": "intro"}, on_failure="bye"),
        "intro": Play(("closed",), next="acct"),
        "acct": CollectDigits(("callback_enter_number",), variable="account", next="bye", on_failure="bye"),
        **BYE,
    }
    s = make(nodes)
    s.start(0.0)
    drain(s)
    feed(s, "1", 0.1)  # cuts the welcome
    feed(s, "42#", 0.2)  # arrives while the glue is still catching up: the menu has taken "1" already
    assert s.variables == {"account": "42"}
    assert s.path == ("start", "menu", "intro", "acct", "bye")


def test_a_play_without_barge_in_and_announcements_discard_keys() -> None:
    nodes: dict[str, Node] = {
        "start": Play(("welcome",), next="info", barge_in=False),
        "info": Announcement(("closed",), next="menu"),
        "menu": MENU["start"],
        **{k: v for k, v in MENU.items() if k != "start"},
    }
    s = make(nodes)
    s.start(0.0)
    drain(s)
    s.dtmf("1", 0.5)
    assert drain(s) == [] and s.current_node == "start"
    s.play_done(1, "done", 1.0)
    drain(s)
    s.dtmf("2", 1.5)
    assert drain(s) == [] and s.current_node == "info"
    s.play_done(2, "done", 3.0)
    assert only_play(s).files == ("en/main_menu",)  # the discarded keys did not answer the menu
    assert s.current_node == "menu"


COLLECT = CollectDigits(
    ("callback_enter_number",),
    variable="pin",
    next="ok",
    on_failure="fail",
    min_digits=3,
    max_digits=5,
    terminator="#",
    first_digit_timeout=6.0,
    inter_digit_timeout=2.0,
    retries=1,
    invalid_prompts=("invalid_choice",),
)
COLLECTING: Mapping[str, Node] = {"start": COLLECT, "ok": Hangup(), "fail": Hangup(cause=31)}


def test_collect_ends_at_max_digits() -> None:
    s = make(COLLECTING)
    s.start(0.0)
    drain(s)
    feed(s, "123456", 1.0)
    assert s.variables == {"pin": "12345"}
    assert drain(s)[0] == HangUp(16)


def test_collect_ends_at_the_terminator_which_is_not_stored() -> None:
    s = make(COLLECTING)
    s.start(0.0)
    drain(s)
    s.play_done(1, "done", 1.0)
    feed(s, "9876", 2.0)
    assert s.get_timer() == 4.0  # inter-digit timeout
    s.dtmf("#", 3.0)
    assert s.variables == {"pin": "9876"}


def test_collect_ends_at_the_inter_digit_timeout() -> None:
    s = make(COLLECTING)
    s.start(0.0)
    drain(s)
    s.play_done(1, "done", 1.0)
    assert s.get_timer() == 7.0  # first-digit timeout
    feed(s, "123", 5.0)
    s.handle_timer(6.9)
    assert s.variables == {}
    s.handle_timer(7.0)
    assert s.variables == {"pin": "123"}


def test_collect_too_few_digits_retries_then_fails() -> None:
    s = make(COLLECTING)
    s.start(0.0)
    drain(s)
    s.play_done(1, "done", 1.0)
    feed(s, "12#", 2.0)
    assert only_play(s).files == ("en/invalid_choice", "en/callback_enter_number")
    s.play_done(2, "done", 4.0)
    s.handle_timer(10.0)  # no digit at all: the second failed try, retries=1
    assert drain(s)[0] == HangUp(31)
    assert s.variables == {}


def test_language_menu_announces_each_choice_in_its_language_and_switches() -> None:
    nodes: dict[str, Node] = {
        "start": LanguageMenu(choices={"2": "de", "1": "en", "3": "fr"}, next="hello"),
        "hello": Play(("welcome",), next="bye"),
        **BYE,
    }
    s = make(nodes, language="en")
    s.start(0.0)
    assert only_play(s).files == (
        "en/language_option",
        "en/press_1",
        "de/language_option",
        "de/press_2",
        "fr/language_option",
        "fr/press_3",
    )
    s.dtmf("2", 3.0)
    assert s.language == "de"
    assert only_play(s).files == ("de/welcome",)
    s.play_done(2, "done", 5.0)
    assert only_play(s).files == ("de/goodbye",)
    s.play_done(3, "done", 6.0)
    assert session_record(drain(s))["language"] == "de"


def test_language_menu_asks_for_star_and_hash_in_each_language() -> None:
    nodes: dict[str, Node] = {"start": LanguageMenu(choices={"#": "fr", "*": "de"}, next="bye"), **BYE}
    s = make(nodes)
    s.start(0.0)
    assert only_play(s).files == (
        "fr/language_option",
        "fr/press_hash",
        "de/language_option",
        "de/press_star",
    )
    s.dtmf("#", 1.0)
    assert s.language == "fr"


def test_language_menu_without_a_choice_keeps_the_language() -> None:
    nodes: dict[str, Node] = {
        "start": LanguageMenu(choices={"1": "en", "2": "de"}, next="bye", timeout=4.0, retries=1),
        **BYE,
    }
    s = make(nodes, language="fr")
    s.start(0.0)
    drain(s)
    s.play_done(1, "done", 1.0)
    s.handle_timer(5.0)
    assert len(only_play(s).files) == 4  # asked once more
    s.play_done(2, "done", 6.0)
    s.dtmf("9", 7.0)
    assert s.language == "fr"
    assert only_play(s).files == ("fr/goodbye",)


BERLIN = Schedule(
    timezone="Europe/Berlin",
    weekly={0: ((9 * 60, 17 * 60),), 4: ((9 * 60, 17 * 60),), 6: ((0, 3 * 60),)},
)
HOURS: Mapping[str, Node] = {
    "start": BusinessHours("office", open="open", closed="shut"),
    "open": Hangup(cause=16),
    "shut": Hangup(cause=17),
}


@pytest.mark.parametrize(
    ("utc", "cause"),
    [
        # Friday before the spring change, CET (+01:00): 07:30 UTC is 08:30 local, closed; 08:30 UTC open.
        (datetime(2026, 3, 27, 7, 30, tzinfo=UTC), 17),
        (datetime(2026, 3, 27, 8, 30, tzinfo=UTC), 16),
        # Monday after it, CEST (+02:00): 07:30 UTC is 09:30 local, open.
        (datetime(2026, 3, 30, 7, 30, tzinfo=UTC), 16),
        (datetime(2026, 3, 30, 15, 30, tzinfo=UTC), 17),
        # Sunday 29 March, the change itself: open 00:00-03:00 local. 00:30 UTC is 01:30 CET, open;
        # 01:30 UTC is 03:30 CEST (02:00 CET jumped to 03:00 CEST), closed.
        (datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 16),
        (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), 17),
    ],
)
def test_business_hours_judge_the_wall_clock_in_the_schedules_zone(utc: datetime, cause: int) -> None:
    s = make(HOURS, schedules={"office": BERLIN}, wall=Wall(utc.timestamp()))
    s.start(0.0)
    assert drain(s)[0] == HangUp(cause)


def test_a_loop_without_input_is_cut_with_cause_41(caplog: pytest.LogCaptureFixture) -> None:
    s = make({"start": Goto("b"), "b": Goto("start")})
    with caplog.at_level(logging.ERROR, logger="appliance.ivr.session"):
        s.start(0.0)
    actions = drain(s)
    assert actions[0] == HangUp(41)
    assert session_record(actions)["outcome"] == "error"
    assert len(s.path) == 100
    assert any("loops without input" in r.getMessage() for r in caplog.records)


def test_a_play_loop_is_cut_too() -> None:
    s = make({"start": Play(("welcome",), next="start")})
    s.start(0.0)
    for play_id in range(1, 101):
        assert only_play(s).play_id == play_id
        s.play_done(play_id, "done", float(play_id))
    assert drain(s)[0] == HangUp(41)


def test_a_missing_node_hangs_up_with_cause_41() -> None:
    s = make({"start": Goto("nowhere")})
    s.start(0.0)
    assert drain(s)[0] == HangUp(41)


def test_a_prompt_missing_from_the_catalog_is_skipped() -> None:
    s = make(
        {"start": Play(("welcome", "closed"), next="bye"), **BYE},
        catalog=FakeCatalog(frozenset({("en", "welcome")})),
    )
    s.start(0.0)
    assert only_play(s).files == ("en/closed",)


def test_starting_twice_is_a_usage_error() -> None:
    s = make(BYE, start="bye")
    s.start(0.0)
    with pytest.raises(SessionUsageError):
        s.start(1.0)


def test_keys_that_are_not_keypad_keys_are_ignored() -> None:
    s = make(MENU)
    s.start(0.0)
    drain(s)
    s.dtmf("A", 1.0)
    assert drain(s) == [] and s.current_node == "start"


def test_business_hours_with_an_unknown_schedule_take_the_closed_branch() -> None:
    s = make(HOURS, schedules={"office": Schedule(timezone="Mars/Olympus_Mons", weekly={})})
    s.start(0.0)
    assert drain(s)[0] == HangUp(17)
    s = make(HOURS)
    s.start(0.0)
    assert drain(s)[0] == HangUp(17)


def test_a_loop_that_waits_for_the_caller_is_not_cut() -> None:
    nodes: dict[str, Node] = {
        "start": Menu(("main_menu",), choices={"1": "bye"}, on_failure="again", timeout=5.0, retries=0),
        "again": Goto("start"),
        **BYE,
    }
    s = make(nodes)
    s.start(0.0)
    now = 0.0
    for _ in range(150):
        play = only_play(s)
        s.play_done(play.play_id, "done", now)
        now += 5.0
        s.handle_timer(now)
    assert s.current_node == "start" and not s.ended
    assert len(s.path) == 301
