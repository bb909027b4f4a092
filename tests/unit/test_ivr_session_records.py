"""The IVR's outbox bodies against their schema, ``appliance/ivr/records.cddl``.

Each body a session writes is checked with a small reader of the CDDL subset that file uses (closed maps of
named fields, ``/`` alternatives, ``tstr uint number bool null``, text literals, integer ranges, ``[* x]``,
``{ * tstr => tstr }`` and named rules), so a field added to :mod:`appliance.ivr.records` without the schema,
or the other way round, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from appliance.ivr import records
from appliance.ivr.actions import Persist
from appliance.ivr.model import CallbackRequest, Hangup, Survey, Transfer, Voicemail
from tests.unit.test_ivr_session import drain, feed, make

SCHEMA = (Path(records.__file__).parent / "records.cddl").read_text()
TIME_FORMATS = {
    "utc-time": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z"),
    "local-time": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"),
}


def _strip(text: str) -> str:
    return "\n".join(line.split(";", 1)[0].rstrip() for line in text.splitlines())


def _rules() -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Map rules (name -> field -> type expression, in order) and the other rules (name -> expression)."""
    text = _strip(SCHEMA)
    maps: dict[str, dict[str, str]] = {}
    for match in re.finditer(r"^([a-z-]+) = \{\n(.*?)^\}", text, re.M | re.S):
        maps[match.group(1)] = dict(re.findall(r"^\s+(\w+): (.+?),?$", match.group(2), re.M))
    others = dict(re.findall(r"^([a-z-]+) = ([^{\n].*)$", text, re.M))
    return maps, others


MAPS, OTHERS = _rules()


def conforms(expr: str, value: Any) -> bool:
    """Whether ``value`` is one of the alternatives of CDDL type expression ``expr``."""
    return any(_one(alt.strip(), value) for alt in expr.split(" / "))


def _one(expr: str, value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if expr in TIME_FORMATS:
        return isinstance(value, str) and TIME_FORMATS[expr].fullmatch(value) is not None
    if expr == "tstr":
        return isinstance(value, str)
    if expr == "uint":
        return number and isinstance(value, int) and value >= 0
    if expr == "number":
        return number
    if expr == "bool":
        return isinstance(value, bool)
    if expr == "null":
        return value is None
    if expr.startswith('"'):
        return value == expr.strip('"')
    if (bounds := re.fullmatch(r"(\d+)\.\.(\d+)", expr)) is not None:
        return number and isinstance(value, int) and int(bounds[1]) <= value <= int(bounds[2])
    if (item := re.fullmatch(r"\[\* ([\w-]+)\]", expr)) is not None:
        return isinstance(value, list) and all(conforms(item[1], v) for v in value)
    if expr == "{ * tstr => tstr }":
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    if expr in MAPS:
        return is_valid(expr, value)
    return conforms(OTHERS[expr], value)


def is_valid(rule: str, body: Any) -> bool:
    fields = MAPS[rule]
    return (
        isinstance(body, dict)
        and list(body) == list(fields)
        and all(conforms(fields[name], body[name]) for name in fields)
    )


def test_the_schema_reader_reads_every_rule() -> None:
    assert set(MAPS) == {"ivr-voicemail", "voicemail-blob", "ivr-callback", "ivr-survey", "ivr-session"}
    assert {"answer", "outcome", "language", "utc-time", "local-time"} <= set(OTHERS)
    assert not is_valid("voicemail-blob", {"path": "p", "size": -1, "sha256": "", "key_id": ""})
    assert not conforms("answer", 6) and conforms("answer", None) and not conforms("answer", True)
    body = records.callback_body(
        call_id="c",
        session_id="s",
        number="0301234",
        number_source="keyed",
        language="en",
        slot_utc="2026-11-25T08:00:00Z",
        slot_local="2026-11-25T09:00:00+01:00",
        timezone="Europe/Berlin",
        requested_at=0.0,
    )
    assert is_valid("ivr-callback", body)
    assert not is_valid("ivr-callback", {**body, "extra": 1})
    assert not is_valid("ivr-callback", {**body, "number_source": "guessed"})
    assert not is_valid("ivr-callback", {**body, "slot_local": "2026-11-25T09:00:00Z"})


BLOB = {"path": "var/vm/s1-vm1.enc", "size": 4000, "sha256": "ab" * 32, "key_id": "k1"}
SURVEY = Survey(questions=(("survey_q1",), ("survey_q2",), ("survey_q3",)), next="bye")


def persists(s: Any) -> list[Persist]:
    return [a for a in drain(s) if isinstance(a, Persist)]


def voicemail_run() -> list[Persist]:
    s = make({"start": Voicemail((), next="bye"), "bye": Hangup()}, caller=None)
    s.start(0.0)
    drain(s)
    s.record_done("s1-vm1", "silence", 9.25, BLOB, 10.0)
    out = persists(s)
    s.persisted(out[0].token, 10.0)
    s.caller_hung_up(11.0)
    return out + persists(s)


def callback_run() -> list[Persist]:
    s = make({"start": CallbackRequest(next="bye", on_failure="bye"), "bye": Hangup()})
    s.start(0.0)
    feed(s, "12", 1.0)
    feed(s, "0301234#1", 2.0)
    out = persists(s)
    s.persisted(out[0].token, 3.0)
    s.caller_hung_up(4.0)
    return out + persists(s)


def survey_after_agent_run() -> list[Persist]:
    s = make({"start": Transfer("sales", fallback="bye", after="survey"), "survey": SURVEY, "bye": Hangup()})
    s.start(0.0)
    s.transfer_answered("agent-1", 5.0)
    s.transfer_ended(50.0)
    feed(s, "41", 51.0)
    s.caller_hung_up(52.0)
    out = persists(s)
    s.persisted(out[0].token, 53.0)
    return out + persists(s)


@pytest.mark.parametrize("run", [voicemail_run, callback_run, survey_after_agent_run])
def test_every_body_a_session_writes_conforms_to_the_schema(run: Any) -> None:
    written = run()
    assert [p.type for p in written][-1] == records.SESSION
    assert len(written) == 2
    for persist in written:
        rule = persist.type.replace(".", "-")
        assert is_valid(rule, persist.body), (rule, persist.body)


def test_the_survey_after_an_agent_names_the_agent_and_the_session_its_outcome() -> None:
    survey, session = survey_after_agent_run()
    assert (survey.body["agent"], survey.body["answers"], survey.body["follow_up"]) == (
        "agent-1",
        [4, 1, None],
        True,
    )
    assert (session.body["outcome"], session.body["agent"]) == ("agent", "agent-1")
