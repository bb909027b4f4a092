"""The packaged default flow, walked with the packaged prompt catalog: every file a session asks to play
exists, in the caller's language (or the shared folder), along the paths these tests take through it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from appliance.ivr.actions import Action, Persist, PlayFiles, RecordMessage
from appliance.ivr.flow_codec import default_flow
from appliance.ivr.session import IvrSession
from tests.unit.test_ivr_session import WALL, Wall

prompts = pytest.importorskip("appliance.ivr.prompts")


@pytest.fixture
def session(caplog: pytest.LogCaptureFixture) -> IvrSession:
    flow = default_flow()
    catalog = prompts.PromptCatalog(prompts.default_dirs(), default_language=flow.default_language)
    caplog.set_level(logging.WARNING, logger="appliance.ivr.session")
    return IvrSession(
        flow=flow,
        catalog=catalog,
        call_id="call-1",
        session_id="s1",
        caller="+4930123456",
        language="de",
        caller_zone="Europe/Berlin",
        wall=Wall(WALL),
    )


def played(s: IvrSession) -> list[Action]:
    actions: list[Action] = []
    while (action := s.next_action()) is not None:
        actions.append(action)
        if isinstance(action, PlayFiles):
            for file in action.files:
                path = Path(file)
                assert path.is_file(), file
                assert path.parent.name in (s.language, "shared"), file
    return actions


def last_play(actions: list[Action]) -> PlayFiles:
    return [a for a in actions if isinstance(a, PlayFiles)][-1]


def test_callback_in_german(session: IvrSession, caplog: pytest.LogCaptureFixture) -> None:
    s = session
    s.start(0.0)
    assert [Path(f).name for f in last_play(played(s)).files] == ["service_interruption.alaw"]
    s.play_done(1, "done", 5.0)
    played(s)
    s.dtmf("1", 6.0)  # callback
    played(s)
    s.dtmf("1", 7.0)  # this number
    assert len(last_play(played(s)).files) == 1 + 3 * 3
    s.dtmf("1", 8.0)
    persist = next(a for a in played(s) if isinstance(a, Persist))
    s.persisted(persist.token, 8.5)
    played(s)
    assert not caplog.records  # no prompt was missing


def test_every_language_of_the_language_menu(session: IvrSession, caplog: pytest.LogCaptureFixture) -> None:
    s = session
    s.start(0.0)
    played(s)
    s.play_done(1, "done", 5.0)
    played(s)
    s.dtmf("*", 6.0)  # the language menu: every option in its own language
    options = s.next_action()
    assert isinstance(options, PlayFiles)
    assert len(options.files) == 2 * len(default_flow().languages)
    assert all(Path(f).is_file() for f in options.files)
    assert {Path(f).parent.name for f in options.files} == set(default_flow().languages)
    s.dtmf("#", 2.0)  # the last option
    assert s.language == "tr"
    played(s)
    s.dtmf("2", 3.0)  # voicemail, in Turkish
    actions = played(s)
    s.play_done(last_play(actions).play_id, "done", 6.0)
    assert isinstance(played(s)[-1], RecordMessage)
    assert not caplog.records
