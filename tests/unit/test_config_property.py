"""Property tests: the configuration loader is total and its accept/reject decisions are consistent.

The number of examples is small by default (CI); set APPLIANCE_HYPOTHESIS_EXAMPLES for a long run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from appliance.config import Config, ConfigError, Destination, load_config_text
from appliance.config import schema as schema_module

EXAMPLES = int(os.environ.get("APPLIANCE_HYPOTHESIS_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FULL = (Path(__file__).parent.parent / "vectors" / "config" / "full.toml").read_text()
PATH_RE = re.compile(r'(?:[A-Za-z0-9_-]+|"[^"]*")(?:\[\d+\])*(?:\.(?:[A-Za-z0-9_-]+|"[^"]*")(?:\[\d+\])*)*')


def _all_field_names() -> list[str]:
    names: set[str] = set()
    for obj in vars(schema_module).values():
        if isinstance(obj, type) and dataclasses.is_dataclass(obj):
            names.update(f.name for f in dataclasses.fields(obj))
    return sorted(names)


FIELD_NAMES = _all_field_names()
TABLES = [
    "site", "sip", "sip.rate_limit", "sip.timers", "sip.session_timer", "media", "cloud", "registrar",
    "metrics", "noc", "sync", "logging",
]  # fmt: skip
ARRAY_TABLES = ["registrar.users", "routes", "agent_groups"]
PLAUSIBLE_STRINGS = [
    "", "*", "+49*", "+4930", "cloud", "ivr:default", "agents:g", "pri:1", "trunk:sip:c@127.0.0.1",
    "sip:a@127.0.0.1", "sips:[::1]:5061", "127.0.0.1", "::1", "localhost", "Europe/Berlin", "UTC", "DE",
    "SHA-256", "MD5", "ring-all", "sequential", "debug", "json", "alice", "g", "0123456789abcdef" * 2,
    "follow", "sdes", "off",
]  # fmt: skip


def toml_string(s: str) -> str:
    # JSON string escapes are TOML basic-string escapes; a lone surrogate yields an invalid document,
    # which the loader must still reject cleanly.
    return json.dumps(s)


def toml_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.integers(min_value=-2, max_value=70000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(toml_float),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=30).map(toml_string),
    st.sampled_from(PLAUSIBLE_STRINGS).map(toml_string),
    st.just("1979-05-27T07:32:00Z"),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(st.sampled_from(FIELD_NAMES), inner), max_size=3).map(
            lambda kvs: "{" + ", ".join(f"{k} = {v}" for k, v in kvs) + "}"
        ),
    ),
    max_leaves=8,
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.from_regex(r"[a-z_]{1,8}", fullmatch=True))
lines = st.lists(st.tuples(keys, values).map(lambda kv: f"{kv[0]} = {kv[1]}"), max_size=5)
headers = st.one_of(
    st.sampled_from(TABLES).map(lambda t: f"[{t}]"),
    st.sampled_from(ARRAY_TABLES).map(lambda t: f"[[{t}]]"),
    keys.map(lambda k: f"[{k}]"),
)
documents = st.tuples(lines, st.lists(st.tuples(headers, lines), max_size=6)).map(
    lambda doc: "\n".join(doc[0] + [line for h, body in doc[1] for line in [h, *body]]) + "\n"
)


def assert_total(text: str) -> None:
    """The loader returns a Config or raises a ConfigError whose issues are well formed; nothing else."""
    try:
        config = load_config_text(text)
    except ConfigError as exc:
        assert exc.errors
        for issue in exc.errors:
            assert issue.message and "\n" not in issue.message
            assert issue.path == "" or PATH_RE.fullmatch(issue.path), issue.path
    else:
        assert isinstance(config, Config)


@SETTINGS
@given(documents)
@example(
    '[[routes]]\nmatch = "*"\ndestinations = ["agents:g"]\n[[agent_groups]]\nname = "g"\nmembers = ["g"]\n'
)
@example("[sip]\nlisten = {}\n[sip.timers]\nt1 = [[1]]\n")
def test_random_toml_documents_raise_only_config_error(text: str) -> None:
    assert_total(text)


@SETTINGS
@given(st.data())
def test_mutated_full_config_raises_only_config_error(data: st.DataObject) -> None:
    text = FULL
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        insert = data.draw(
            st.one_of(st.text(max_size=4), st.sampled_from(['"', "[", "]", "=", "\n", ",", "#"]))
        )
        text = text[:at] + insert + text[at + cut :]
    assert_total(text)


@SETTINGS
@given(st.text(max_size=200))
def test_random_text_raises_only_config_error(text: str) -> None:
    assert_total(text)


@SETTINGS
@given(st.integers(min_value=-(2**64), max_value=2**64))
def test_udp_port_is_accepted_exactly_when_in_range(port: int) -> None:
    try:
        config = load_config_text(f"[sip]\nudp_port = {port}\n")
    except ConfigError as exc:
        assert len(exc.errors) == 1 and exc.errors[0].path == "sip.udp_port"
        assert not 0 <= port <= 65535 or 20000 <= port <= 29999  # out of range, or inside the RTP range
    else:
        assert config.sip.udp_port == port
        assert 0 <= port <= 65535


@SETTINGS
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
def test_timers_accepted_exactly_when_positive_finite_and_ordered(t1: float, t2: float) -> None:
    try:
        config = load_config_text(f"[sip.timers]\nt1 = {toml_float(t1)}\nt2 = {toml_float(t2)}\n")
    except ConfigError as exc:
        assert {e.path for e in exc.errors} <= {"sip.timers.t1", "sip.timers.t2"}
        ok = all(math.isfinite(t) and t > 0 for t in (t1, t2)) and t1 <= t2
        assert not ok
    else:
        assert (config.sip.timers.t1, config.sip.timers.t2) == (t1, t2)
        assert 0 < t1 <= t2 and math.isfinite(t2)


destinations = st.one_of(
    st.just("cloud"),
    st.from_regex(r"(ivr|agents):[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True),
    st.integers(1, 255).map(lambda n: f"pri:{n}"),
    st.from_regex(r"trunk:sips?:[a-z]{1,8}@127\.0\.0\.[1-9](:[1-9][0-9]{0,3})?", fullmatch=True),
)


@SETTINGS
@given(destinations)
def test_destination_text_round_trips(text: str) -> None:
    d = Destination.parse(text)
    assert str(d) == text
    config = (
        load_config_text(f'[[routes]]\nmatch = "*"\ndestinations = ["{text}"]\n')
        if d.kind != "agents"
        else None
    )
    if config is not None:
        assert config.routes[0].destinations == (d,)


@pytest.mark.parametrize("match", ["*", "+4930", "+4930*", "+*", "1001", "10*", "alice", "#31#"])
def test_route_match_forms(match: str) -> None:
    config = load_config_text(f'[[routes]]\nmatch = "{match}"\ndestinations = ["ivr:default"]\n')
    assert config.routes[0].match == match


@SETTINGS
@given(st.one_of(st.text(max_size=20), st.from_regex(r"\+?[0-9a-z#]{0,16}\*?", fullmatch=True)))
def test_every_accepted_route_match_is_understood_by_the_router(match: str) -> None:
    routing = pytest.importorskip("appliance.calls.routing")
    doc = f'[[routes]]\nmatch = {toml_string(match)}\ndestinations = ["ivr:default"]\n'
    try:
        config = load_config_text(doc)
    except ConfigError:
        return
    table = routing.RoutingTable(
        [(r.match, r.destinations) for r in config.routes], region=config.site.region
    )
    assert table.region == "DE"
