"""IvrSession under random input: whatever the caller, the worker, the outbox and the agent queue report, in
whatever order, the session keeps its promises.

1. No exception escapes an input method.
2. Play ids only grow.
3. A confirmation (``voicemail_saved``, ``callback_saved``, ``survey_thanks``) plays only after an outcome
   of its kind was reported persisted.
4. Nothing plays over a recording or after either side hung up; the session hangs up at most once;
   nothing at all is asked for after ``SessionEnded``.
5. Once the caller is gone and every recording and persist is answered, the session has ended, with
   exactly one ``ivr.session`` record, right before ``SessionEnded``.
6. A digit collection reads the same keys whether they were typed ahead, over its prompt or after it.

The profile comes from ``HYPOTHESIS_PROFILE`` (see ``tests/unit/vectors.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from appliance.ivr.actions import Action, HangUp, Persist, PlayFiles, RecordMessage, SessionEnded
from appliance.ivr.flow_codec import default_flow
from appliance.ivr.model import CollectDigits, Flow, Hangup, Play, Survey, Transfer
from appliance.ivr.session import IvrSession
from tests.unit.test_ivr_session import FakeCatalog, Wall, make
from tests.unit.vectors import hypothesis_settings, soak_marks

pytestmark = soak_marks()
SETTINGS = hypothesis_settings()

KEYS = "0123456789*#"
PLAY_REASONS = ("done", "barge_in", "stopped", "error")
RECORD_REASONS = ("silence", "dtmf", "max", "stopped", "error")
CONFIRMS = {
    "voicemail_saved": "ivr.voicemail",
    "callback_saved": "ivr.callback",
    "survey_thanks": "ivr.survey",
}


def flow_with_survey() -> Flow:
    """The packaged default flow, with a survey after a local agent."""
    flow = default_flow()
    nodes = dict(flow.nodes)
    agents = nodes["agents"]
    assert isinstance(agents, Transfer)
    nodes["agents"] = replace(agents, after="survey")
    nodes["survey"] = Survey(
        questions=(("survey_q1",), ("survey_q2",), ("survey_q3",)),
        next="goodbye",
        thanks_prompts=("survey_thanks",),
    )
    return Flow(
        name=flow.name,
        version=flow.version,
        start=flow.start,
        languages=flow.languages,
        default_language=flow.default_language,
        nodes=nodes,
        schedules=flow.schedules,
    )


@dataclass
class Driver:
    session: IvrSession
    now: float = 0.0
    last_play: int = 0
    pending: dict[int, str] = field(default_factory=dict)
    recording: str | None = None
    kept: set[str] = field(default_factory=set)
    caller_gone: bool = False
    hung_up: bool = False
    ended: bool = False
    records: int = 0

    def pump(self) -> None:
        actions: list[Action] = []
        while (action := self.session.next_action()) is not None:
            actions.append(action)
        if self.ended:
            assert actions == []
        for i, action in enumerate(actions):
            match action:
                case PlayFiles():
                    assert action.play_id > self.last_play
                    assert not self.caller_gone and not self.hung_up
                    assert self.recording is None  # nothing plays over a recording
                    self.last_play = action.play_id
                    for file in action.files:
                        kind = CONFIRMS.get(file.rsplit("/", 1)[-1])
                        assert kind is None or kind in self.kept, (file, self.kept)
                case Persist(type="ivr.session"):
                    self.records += 1
                    assert isinstance(actions[i + 1], SessionEnded)
                case Persist():
                    self.pending[action.token] = action.type
                case RecordMessage():
                    self.recording = action.record_id
                case HangUp():
                    assert not self.hung_up  # once
                    self.hung_up = True
                case SessionEnded():
                    self.ended = True
                    assert self.session.ended
                case _:
                    pass

    def step(self, op: str, n: int) -> None:
        s = self.session
        match op:
            case "key":
                s.dtmf(KEYS[n % len(KEYS)], self.now)
            case "play_done":
                play_id = self.last_play - (n % 3 == 2)  # now and then a stale one
                s.play_done(play_id, PLAY_REASONS[n % len(PLAY_REASONS)], self.now)
            case "time":
                self.now += n % 40
                s.handle_timer(self.now)
            case "timer":
                if (deadline := s.get_timer()) is not None:
                    self.now = max(self.now, deadline)
                    s.handle_timer(self.now)
            case "record_done" if self.recording is not None:
                record_id, self.recording = self.recording, None
                blob = None if n % 5 == 4 else {"path": "p", "size": 1, "sha256": "0" * 64, "key_id": "k"}
                s.record_done(
                    record_id, RECORD_REASONS[n % len(RECORD_REASONS)], float(n % 9), blob, self.now
                )
            case "persisted" if self.pending:
                self.answer(sorted(self.pending)[n % len(self.pending)], ok=n % 4 != 3)
            case "position":
                s.transfer_position(1 + n % 5, self.now)
            case "answered":
                s.transfer_answered(f"agent-{n % 3}", self.now)
            case "agent_gone":
                s.transfer_ended(self.now)
            case "hang_up":
                self.caller_gone = True
                s.caller_hung_up(self.now)
            case _:
                pass
        self.pump()

    def answer(self, token: int, *, ok: bool) -> None:
        kind = self.pending.pop(token)
        if ok:
            self.kept.add(kind)
            self.session.persisted(token, self.now)
        else:
            self.session.persist_failed(token, "outbox unavailable", self.now)


# Keys, playback ends and timers weigh more: they are most of what a session sees.
OPS = st.sampled_from(
    [
        *("key", "key", "key", "play_done", "play_done", "time", "timer", "timer"),
        *("record_done", "persisted", "position", "answered", "agent_gone", "hang_up"),
    ]
)


@SETTINGS
@given(
    ops=st.lists(st.tuples(OPS, st.integers(0, 1000)), max_size=60), language=st.sampled_from(["en", "de"])
)
def test_random_inputs_keep_the_sessions_promises(ops: list[tuple[str, int]], language: str) -> None:
    session = IvrSession(
        flow=flow_with_survey(),
        catalog=FakeCatalog(),
        call_id="c",
        session_id="s",
        caller="+4930123456",
        language=language,
        caller_zone="Europe/Berlin",
        wall=Wall(datetime(2026, 3, 29, 0, 30, tzinfo=UTC).timestamp()),
    )
    driver = Driver(session)
    session.start(0.0)
    driver.pump()
    for op, n in ops:
        driver.step(op, n)
        timer = session.get_timer()
        assert timer is None or isinstance(timer, float)
    driver.step("hang_up", 0)
    while driver.recording is not None or driver.pending:
        driver.step("record_done", 1)
        if driver.pending:
            driver.answer(min(driver.pending), ok=True)
            driver.pump()
    assert driver.ended and session.ended
    assert driver.records == 1


def expected_collection(keys: str, max_digits: int) -> str:
    """What a collection of at most ``max_digits`` keys ended by ``#`` makes of ``keys``."""
    return keys.split("#", 1)[0][:max_digits]


@SETTINGS
@given(
    keys=st.text(alphabet=KEYS, min_size=1, max_size=12),
    when=st.sampled_from(["greeting", "question", "after"]),
    max_digits=st.integers(1, 8),
)
def test_a_collection_reads_the_same_keys_typed_ahead_or_live(keys: str, when: str, max_digits: int) -> None:
    """Whether the caller starts typing during the barge-in greeting (the first key is type-ahead), during
    the collection's own prompt (barge-in) or after it, the collection reads the keys alike: up to ``#`` or
    ``max_digits``, whichever comes first (no retry: a failed try ends the node)."""
    nodes = {
        "start": Play(("welcome",), next="collect"),
        "collect": CollectDigits(
            ("prompt",), variable="v", next="bye", on_failure="bye", max_digits=max_digits, retries=0
        ),
        "bye": Hangup(),
    }
    s = make(nodes)
    s.start(0.0)
    if when != "greeting":
        s.play_done(1, "done", 1.0)
    if when == "after":
        s.play_done(2, "done", 2.0)
    now = 2.0
    for key in keys:
        now += 0.5
        s.dtmf(key, now)
    s.handle_timer(now + 100.0)
    assert s.variables.get("v") == (expected_collection(keys, max_digits) or None)
    assert s.path[-1] == "bye"
