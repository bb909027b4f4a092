"""IvrSession outcomes: voicemail, callback requests, agent transfer, survey, and the session record.

Each outcome must be committed to the outbox (``persisted``) before the caller hears it confirmed; these
tests assert the absence of the confirmation until then, not just its presence after.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from appliance.ivr.actions import (
    HangUp,
    LeaveQueue,
    Persist,
    PlayFiles,
    QueueForAgents,
    RecordMessage,
    SessionEnded,
    StopMedia,
)
from appliance.ivr.callback_slots import offer_slots
from appliance.ivr.model import (
    Announcement,
    CallbackRequest,
    Hangup,
    Node,
    Play,
    Schedule,
    Survey,
    Transfer,
    Voicemail,
)
from tests.unit.test_ivr_session import WALL, Wall, drain, feed, make, only_play, plays, session_record

BLOB: Mapping[str, Any] = {"path": "var/vm/s1-vm1.enc", "size": 4000, "sha256": "ab" * 32, "key_id": "k1"}

VOICEMAIL: Mapping[str, Node] = {
    "start": Voicemail(
        ("voicemail_prompt",),
        next="bye",
        max_seconds=60.0,
        silence_seconds=4.0,
        min_seconds=2.0,
        too_short_prompts=("voicemail_too_short",),
    ),
    "bye": Hangup(prompts=("goodbye",)),
}


def persist_of(actions: list[Any], type_: str) -> Persist:
    found = [a for a in actions if isinstance(a, Persist) and a.type == type_]
    assert len(found) == 1, actions
    return found[0]


def recording_session() -> Any:
    s = make(VOICEMAIL)
    s.start(0.0)
    assert only_play(s) == PlayFiles(1, ("en/voicemail_prompt",), barge_in=False)
    s.dtmf("5", 0.5)  # the prompt is not interruptible and the key means nothing
    assert drain(s) == []
    s.play_done(1, "done", 3.0)
    assert drain(s) == [
        RecordMessage(record_id="s1-vm1", max_seconds=60.0, silence_seconds=4.0, end_on_hash=True, beep=True)
    ]
    assert s.get_timer() is None  # the worker ends the recording
    return s


def test_voicemail_is_durable_before_the_caller_hears_it_saved() -> None:
    s = recording_session()
    s.record_done("s1-vm1", "dtmf", 12.5, BLOB, 15.5)
    actions = drain(s)
    assert plays(actions) == []  # no confirmation before the outbox has it
    persist = persist_of(actions, "ivr.voicemail")
    assert persist.body == {
        "call_id": "call-1",
        "session_id": "s1",
        "caller": "+4930123456",
        "language": "en",
        "node": "start",
        "record_id": "s1-vm1",
        "duration": 12.5,
        "blob": dict(BLOB),
        "recorded_at": "2026-11-24T10:10:00.000Z",
    }
    s.dtmf("1", 16.0)
    assert drain(s) == []
    s.persisted(persist.token, 16.5)
    assert only_play(s).files == ("en/voicemail_saved",)
    s.play_done(2, "done", 18.0)
    assert only_play(s).files == ("en/goodbye",)
    s.play_done(3, "done", 19.0)
    actions = drain(s)
    assert actions[0] == HangUp(16)
    assert session_record(actions)["outcome"] == "voicemail"


def test_a_too_short_voicemail_is_not_kept() -> None:
    s = recording_session()
    s.record_done("s1-vm1", "silence", 1.5, BLOB, 5.0)
    actions = drain(s)
    assert not [a for a in actions if isinstance(a, Persist)]
    assert only_play_of(actions).files == ("en/voicemail_too_short",)
    s.play_done(2, "done", 6.0)
    assert only_play(s).files == ("en/goodbye",)


def only_play_of(actions: list[Any]) -> PlayFiles:
    assert len(actions) == 1 and isinstance(actions[0], PlayFiles), actions
    return actions[0]


def test_caller_hanging_up_mid_recording_still_keeps_the_message() -> None:
    s = recording_session()
    s.caller_hung_up(10.0)
    assert drain(s) == [StopMedia()]
    assert not s.ended  # the recording is still to be reported
    s.record_done("s1-vm1", "stopped", 7.0, BLOB, 10.1)
    persist = persist_of(drain(s), "ivr.voicemail")
    assert not s.ended
    s.persisted(persist.token, 10.2)
    actions = drain(s)
    assert plays(actions) == []  # nobody to hear it
    record = session_record(actions)
    assert record["outcome"] == "voicemail"
    assert s.ended


def test_a_voicemail_that_cannot_be_kept_is_not_confirmed() -> None:
    s = recording_session()
    s.record_done("s1-vm1", "max", 60.0, BLOB, 63.0)
    persist = persist_of(drain(s), "ivr.voicemail")
    s.persist_failed(persist.token, "disk full", 63.1)
    actions = drain(s)
    assert plays(actions) == []
    assert actions[0] == HangUp(41)
    assert session_record(actions)["outcome"] == "hangup"


@pytest.mark.parametrize("duration", [0.0, 5.0])
def test_a_recording_error_hangs_up_without_confirmation(duration: float) -> None:
    s = recording_session()
    s.record_done("s1-vm1", "error", duration, None, 8.0)
    actions = drain(s)
    assert actions[0] == HangUp(41)  # not "too short": the caller did nothing wrong
    assert plays(actions) == []


def test_a_stale_record_done_is_ignored() -> None:
    s = recording_session()
    s.record_done("s1-vm9", "dtmf", 30.0, BLOB, 9.0)
    assert drain(s) == [] and not s.ended


CALLBACK: Mapping[str, Node] = {
    "start": CallbackRequest(
        next="bye", on_failure="sorry", offers=3, lead_minutes=60, timeout=5.0, retries=1
    ),
    "bye": Hangup(prompts=("goodbye",)),
    "sorry": Hangup(prompts=("agents_unavailable",), cause=31),
}
NUMBER_READ_BACK = (
    "en/callback_number_is",
    *(f"en/digit_{d}" for d in "4930123456"),
    "en/callback_confirm_number",
)


def test_callback_with_the_callers_own_number() -> None:
    s = make(CALLBACK)
    s.start(0.0)
    assert only_play(s) == PlayFiles(1, NUMBER_READ_BACK, barge_in=True)
    s.play_done(1, "done", 6.0)
    s.dtmf("1", 7.0)
    # 10:10 UTC is 11:10 in Berlin; an hour's lead makes 13:00 the first whole hour offered.
    assert only_play(s).files == (
        "en/callback_choose_time",
        *("en/day_today", "en/time_13", "en/press_1"),
        *("en/day_today", "en/time_14", "en/press_2"),
        *("en/day_today", "en/time_15", "en/press_3"),
    )
    s.play_done(2, "done", 12.0)
    s.dtmf("2", 13.0)
    actions = drain(s)
    assert plays(actions) == []
    persist = persist_of(actions, "ivr.callback")
    assert persist.body == {
        "call_id": "call-1",
        "session_id": "s1",
        "number": "+4930123456",
        "number_source": "caller",
        "language": "en",
        "slot_utc": "2026-11-24T13:00:00Z",
        "slot_local": "2026-11-24T14:00:00+01:00",
        "timezone": "Europe/Berlin",
        "requested_at": "2026-11-24T10:10:00.000Z",
    }
    s.persisted(persist.token, 13.5)
    assert only_play(s).files == ("en/callback_saved",)
    s.play_done(3, "done", 15.0)
    assert only_play(s).files == ("en/goodbye",)
    s.play_done(4, "done", 16.0)
    assert session_record(drain(s))["outcome"] == "callback"


def test_callback_with_a_keyed_number_and_slots_within_the_schedule() -> None:
    office = Schedule(timezone="Europe/Berlin", weekly={d: ((9 * 60, 12 * 60),) for d in range(5)})
    nodes = {
        **CALLBACK,
        "start": CallbackRequest(next="bye", on_failure="sorry", schedule="office", offers=2),
    }
    s = make(nodes, schedules={"office": office})
    s.start(0.0)
    drain(s)
    s.dtmf("2", 1.0)  # barge-in: another number
    assert only_play(s).files == ("en/callback_enter_number",)
    s.play_done(2, "done", 3.0)
    feed(s, "12", 4.0)
    s.dtmf("#", 5.0)  # too short: 3 digits at least
    assert only_play(s).files == ("en/invalid_choice", "en/callback_enter_number")
    feed(s, "0301234#", 6.0)
    expected = offer_slots(WALL, zone="Europe/Berlin", schedule=office, count=2, lead_minutes=60)
    assert [slot.hour for slot in expected] == [9, 10]
    assert only_play(s).files == (
        "en/callback_choose_time",
        *("en/day_tomorrow", "en/time_09", "en/press_1"),
        *("en/day_tomorrow", "en/time_10", "en/press_2"),
    )
    s.dtmf("1", 7.0)
    persist = persist_of(drain(s), "ivr.callback")
    assert (persist.body["number"], persist.body["number_source"]) == ("0301234", "keyed")
    assert persist.body["slot_utc"] == expected[0].utc_iso
    assert persist.body["slot_local"] == "2026-11-25T09:00:00+01:00"


def test_callback_without_a_known_number_asks_for_one() -> None:
    s = make(CALLBACK, caller=None)
    s.start(0.0)
    assert only_play(s).files == ("en/callback_enter_number",)


@pytest.mark.parametrize(
    "schedules",
    [
        {"never": Schedule(timezone="Europe/Berlin", weekly={})},  # no open hour in the next 14 days
        {"never": Schedule(timezone="Nowhere/Town", weekly={0: ((0, 1440),)})},  # not a zone
        {},  # not a schedule of the flow
    ],
)
def test_callback_with_no_hour_to_offer_goes_to_on_failure(schedules: dict[str, Schedule]) -> None:
    nodes = {**CALLBACK, "start": CallbackRequest(next="bye", on_failure="sorry", schedule="never")}
    s = make(nodes, schedules=schedules)
    s.start(0.0)
    drain(s)
    s.dtmf("1", 1.0)
    assert only_play(s).files == ("en/agents_unavailable",)


def test_callback_invalid_time_key_retries_then_fails() -> None:
    s = make(CALLBACK)
    s.start(0.0)
    drain(s)
    s.dtmf("1", 1.0)
    drain(s)
    s.dtmf("7", 2.0)  # only 1-3 offered
    assert only_play(s).files[0] == "en/invalid_choice"
    s.dtmf("0", 3.0)
    assert only_play(s).files == ("en/agents_unavailable",)


def test_a_callback_that_cannot_be_kept_goes_to_on_failure_unconfirmed() -> None:
    s = make(CALLBACK)
    s.start(0.0)
    drain(s)
    feed(s, "11", 1.0)
    persist = persist_of(drain(s), "ivr.callback")
    s.persist_failed(persist.token, "database locked", 2.0)
    assert only_play(s).files == ("en/agents_unavailable",)


SURVEY = Survey(
    questions=(("survey_q1",), ("survey_q2",), ("survey_q3",)),
    next="bye",
    intro_prompts=("survey_intro",),
    thanks_prompts=("survey_thanks",),
    timeout=5.0,
    retries=1,
)
TRANSFER: Mapping[str, Node] = {
    "start": Transfer("sales", fallback="vm", announce_every=30.0, max_wait=100.0, after="survey"),
    "vm": Play(("agents_unavailable",), next="bye"),
    "survey": SURVEY,
    "bye": Hangup(prompts=("goodbye",)),
}


def test_transfer_plays_music_and_announces_the_position_then_gives_up() -> None:
    s = make(TRANSFER)
    s.start(0.0)
    assert drain(s) == [
        QueueForAgents("sales", "ring_all"),
        PlayFiles(1, ("en/music_on_hold",), barge_in=False, loop=True),
    ]
    assert s.get_timer() == 30.0
    s.handle_timer(30.0)  # no position known yet: nothing to say
    assert drain(s) == []
    s.transfer_position(12, 31.0)
    assert s.get_timer() == 60.0
    s.handle_timer(60.0)
    assert only_play(s) == PlayFiles(2, ("en/queue_position", "en/digit_1", "en/digit_2"), barge_in=False)
    s.play_done(1, "stopped", 60.0)  # the music, replaced
    assert drain(s) == []
    s.play_done(2, "done", 63.0)
    assert only_play(s) == PlayFiles(3, ("en/music_on_hold",), barge_in=False, loop=True)
    s.dtmf("0", 70.0)  # keys mean nothing in the queue
    assert drain(s) == []
    s.handle_timer(90.0)
    assert only_play(s).files[0] == "en/queue_position"
    s.play_done(4, "done", 92.0)
    drain(s)
    assert s.get_timer() == 100.0
    s.handle_timer(100.0)
    actions = drain(s)
    assert actions[:2] == [LeaveQueue(), StopMedia()]
    assert only_play_of(actions[2:]).files == ("en/agents_unavailable",)
    assert s.current_node == "vm"


def test_a_group_without_reachable_agents_sends_the_caller_to_the_fallback_at_once() -> None:
    s = make(TRANSFER)
    s.start(0.0)
    drain(s)
    s.transfer_unavailable(0.1)
    actions = drain(s)
    assert actions[0] == StopMedia()
    assert only_play_of(actions[1:]) == PlayFiles(2, ("en/agents_unavailable",), barge_in=False)
    assert s.current_node == "start" and s.get_timer() is None  # no give-up, no announcement left
    s.play_done(2, "done", 3.0)
    assert s.current_node == "vm"
    s.transfer_unavailable(4.0)  # too late to matter
    s.transfer_answered("agent-1", 4.0)
    assert s.current_node == "vm"


def test_transfer_answered_then_ended_goes_on_to_the_survey() -> None:
    s = make(TRANSFER)
    s.start(0.0)
    drain(s)
    s.transfer_position(1, 1.0)
    s.transfer_answered("agent-7", 20.0)
    assert drain(s) == [StopMedia()]
    assert s.get_timer() is None  # the agent has the caller: no announcements, no give-up
    s.handle_timer(500.0)
    assert drain(s) == []
    s.transfer_ended(300.0)
    assert only_play(s).files == ("en/survey_intro", "en/survey_q1")
    assert s.current_node == "survey"


def test_transfer_answered_then_ended_without_after_hangs_up() -> None:
    s = make({**TRANSFER, "start": Transfer("sales", fallback="vm", strategy="longest_idle")})
    s.start(0.0)
    assert drain(s)[0] == QueueForAgents("sales", "longest_idle")
    s.transfer_answered("agent-2", 3.0)
    drain(s)
    s.transfer_ended(60.0)
    actions = drain(s)
    assert actions[0] == HangUp(16)
    record = session_record(actions)
    assert (record["outcome"], record["agent"]) == ("agent", "agent-2")


def test_caller_hanging_up_in_the_queue_leaves_it() -> None:
    s = make(TRANSFER)
    s.start(0.0)
    drain(s)
    s.caller_hung_up(5.0)
    actions = drain(s)
    assert actions[0] == LeaveQueue()
    assert session_record(actions)["outcome"] == "abandoned"


def surveyed(answers: str) -> tuple[Any, Persist]:
    s = make({"start": SURVEY, "bye": Hangup(prompts=("goodbye",))})
    s.start(0.0)
    assert only_play(s).files == ("en/survey_intro", "en/survey_q1")
    for key in answers:
        s.dtmf(key, 1.0)
    actions = drain(s)
    assert [p.files for p in plays(actions)] == [("en/survey_q2",), ("en/survey_q3",)]
    return s, persist_of(actions, "ivr.survey")


def test_survey_answers_are_durable_before_thanks() -> None:
    s, persist = surveyed("545")
    assert persist.body["answers"] == [5, 4, 5]
    assert persist.body["follow_up"] is False
    assert drain(s) == []
    s.persisted(persist.token, 2.0)
    assert only_play(s).files == ("en/survey_thanks",)


def test_survey_an_answer_below_3_flags_follow_up() -> None:
    _, persist = surveyed("524")
    assert persist.body["follow_up"] is True


def test_survey_invalid_keys_retry_and_unanswered_questions_are_none() -> None:
    s = make({"start": SURVEY, "bye": Hangup()})
    s.start(0.0)
    drain(s)
    s.dtmf("9", 1.0)  # invalid: asked again
    assert only_play(s).files == ("en/invalid_choice", "en/survey_q1")
    s.dtmf("0", 2.0)  # out of tries (retries=1): unanswered
    assert only_play(s).files == ("en/survey_q2",)
    s.dtmf("3", 3.0)
    assert only_play(s).files == ("en/survey_q3",)
    s.play_done(4, "done", 4.0)
    s.handle_timer(9.0)
    assert only_play(s).files == ("en/no_input", "en/survey_q3")
    s.play_done(5, "done", 10.0)
    s.handle_timer(15.0)
    persist = persist_of(drain(s), "ivr.survey")
    assert persist.body["answers"] == [None, 3, None]
    assert persist.body["follow_up"] is False


def test_the_session_record_sums_up_the_call() -> None:
    wall = Wall(datetime(2026, 11, 24, 10, 0, tzinfo=UTC).timestamp())
    s = make(
        {"start": Play(("welcome",), next="menu"), "menu": SURVEY, "bye": Hangup()},
        wall=wall,
        rescued=True,
        language="de",
    )
    s.start(0.0)
    drain(s)
    s.dtmf("4", 1.0)  # type-ahead into the survey
    feed(s, "*12", 2.0)
    persist = persist_of(drain(s), "ivr.survey")
    wall.at += 42.5
    s.persisted(persist.token, 42.5)
    drain(s)
    s.caller_hung_up(43.0)
    actions = drain(s)
    assert plays(actions) == []
    record = session_record(actions)
    assert record == {
        "call_id": "call-1",
        "session_id": "s1",
        "flow": "test",
        "flow_version": 7,
        "caller": "+4930123456",
        "language": "de",
        "rescued": True,
        "started": "2026-11-24T10:00:00.000Z",
        "ended": "2026-11-24T10:00:42.500Z",
        "duration": 42.5,
        "path": ["start", "menu"],
        "digits": "4*12",
        "truncated": False,
        "outcome": "abandoned",
        "agent": None,
        "variables": {},
    }
    assert actions[-2] != actions[-1] and isinstance(actions[-1], SessionEnded)
    s.dtmf("1", 44.0)
    s.persisted(persist.token, 44.0)
    s.caller_hung_up(44.0)
    assert drain(s) == []


def test_caller_hanging_up_before_start_still_writes_the_record() -> None:
    s = make({"start": Hangup()})
    s.caller_hung_up(0.0)
    assert session_record(drain(s))["path"] == []
    assert s.ended
    s.start(1.0)  # the glue may still start it: nothing happens
    assert drain(s) == []


def test_a_survey_cut_short_by_the_caller_keeps_what_was_answered() -> None:
    s = make({"start": SURVEY, "bye": Hangup()})
    s.start(0.0)
    drain(s)
    s.dtmf("1", 1.0)
    drain(s)
    s.caller_hung_up(2.0)
    actions = drain(s)
    assert plays(actions) == []
    persist = persist_of(actions, "ivr.survey")
    assert (persist.body["answers"], persist.body["follow_up"]) == ([1, None, None], True)
    assert not s.ended
    s.persisted(persist.token, 2.1)
    assert session_record(drain(s))["outcome"] == "abandoned"


def test_a_caller_hanging_up_during_the_goodbye_has_not_abandoned_the_call() -> None:
    s = make({"start": Hangup(prompts=("goodbye",))})
    s.start(0.0)
    drain(s)
    s.caller_hung_up(1.0)
    assert session_record(drain(s))["outcome"] == "hangup"


def test_caller_hanging_up_while_with_the_agent_ends_the_session_as_an_agent_call() -> None:
    s = make(TRANSFER)
    s.start(0.0)
    drain(s)
    s.transfer_answered("agent-3", 4.0)
    drain(s)
    s.caller_hung_up(90.0)
    actions = drain(s)
    assert not [a for a in actions if isinstance(a, LeaveQueue)]  # the queue already let go of the caller
    record = session_record(actions)
    assert (record["outcome"], record["agent"], record["path"]) == ("agent", "agent-3", ["start"])


def test_an_announcement_due_while_the_last_one_plays_replaces_it() -> None:
    s = make({**TRANSFER, "start": Transfer("sales", fallback="vm", announce_every=2.0, max_wait=100.0)})
    s.start(0.0)
    drain(s)
    s.transfer_position(3, 0.5)
    s.handle_timer(2.0)
    assert only_play(s).play_id == 2
    s.transfer_position(2, 3.0)
    s.handle_timer(4.0)
    assert only_play(s) == PlayFiles(3, ("en/queue_position", "en/digit_2"), barge_in=False)
    s.play_done(2, "stopped", 4.0)
    assert drain(s) == []
    s.play_done(3, "done", 5.0)
    assert only_play(s).files == ("en/music_on_hold",)


def test_the_session_record_keeps_at_most_1000_keys() -> None:
    s = make({"start": Announcement(("closed",), next="bye"), "bye": Hangup()})
    s.start(0.0)
    feed(s, "1234" * 300, 1.0)
    s.caller_hung_up(2.0)
    record = session_record(drain(s))
    assert (len(record["digits"]), record["truncated"]) == (1000, True)
    assert record["digits"].startswith("12341234")
