"""Each kind of configuration document through the store to its owner: what a valid one changes in the
running appliance, and the exact path and message of each refusal (appliance/sync/documents)."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from appliance.sync.documents import InvalidDocument
from appliance.sync.documents.span import SpanSettings
from tests.sync_schema import validate
from tests.unit.sync_documents_harness import (
    HOURS,
    SPAN,
    Site,
    flow_doc,
    routing_doc,
    started_site,
)

ALICE = asyncssh.generate_private_key("ssh-ed25519")
BOB = asyncssh.generate_private_key("ssh-ed25519")
FIXED_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def public(key: asyncssh.SSHKey, comment: str = "") -> str:
    line = key.export_public_key("openssh").decode().strip()
    return f"{line} {comment}".strip()


def wav(rate: int, samples: bytes, *, fmt: int = 1, bits: int = 16) -> bytes:
    header = struct.pack("<HHIIHH", fmt, 1, rate, rate * bits // 8, bits // 8, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(header)) + header
    body += b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with started_site(tmp_path) as s:
        yield s


def with_node(node_id: str, node: dict[str, Any]) -> dict[str, Any]:
    return flow_doc(nodes={**flow_doc()["nodes"], node_id: node})


SAME_KEY_TWICE = {
    "keys": [
        {"name": "alice", "key": FIXED_KEY, "role": "admin"},
        {"name": "bob", "key": FIXED_KEY + " bob@laptop", "role": "viewer"},
    ]
}

INVALID: list[tuple[str, str, Any, str | None, str]] = [
    (
        "ivr-flow",
        "sales",
        with_node("menu", {"type": "menu", "prompts": [], "choices": {"1": "nowhere"}, "on_failure": "bye"}),
        "content.nodes.menu",
        "unknown-node: menu 'menu': key 1 goes to 'nowhere', which is not a node",
    ),
    (
        "ivr-flow",
        "sales",
        with_node("bye", {"type": "hangup", "cause": 300}),
        "content.nodes.bye.cause",
        "300 is out of range 1..127",
    ),
    (
        "ivr-flow",
        "sales",
        flow_doc(name="other"),
        "content.name",
        'the flow is named "other" but written as "sales"',
    ),
    (
        "ivr-flow",
        "sales",
        flow_doc(version=2),
        "content.version",
        "the flow says version 2 but is written as version 1",
    ),
    (
        "ivr-flow",
        "sales",
        with_node("menu", {"type": "transfer", "group": "sales", "fallback": "bye"}),
        "content.nodes.menu",
        "unknown-agent-group: transfer 'menu': agent group 'sales' is not configured (groups: support)",
    ),
    (
        "ivr-flow",
        "sales",
        with_node("bye", {"type": "hangup", "prompts": ["nope"]}),
        "content.nodes.bye",
        "missing-prompt: hangup 'bye': prompt 'nope' is missing in en",
    ),
    ("ivr-flow", "sales", [1], "content", "expected a map (a flow document), found an array"),
    ("prompt", "en/x", "text", "content", "expected a byte string (8 kHz A-law, or a WAV file), found text"),
    ("prompt", "EN/x", b"\xd5", None, "bad prompt language 'EN' (a prompt is named \"<language>/<prompt>\")"),
    ("prompt", "en/x", b"", "content", "prompt has no audio"),
    ("prompt", "en/x", wav(16000, b""), "content", "WAV must be 8000 Hz mono, not 16000 Hz with 1 channels"),
    (
        "routing",
        "default",
        routing_doc({"match": "+49x", "destinations": ["cloud"]}),
        "content.routes[0].match",
        'expected "*", "+<digits>", "+<digits>*", an extension or "<extension>*", got "+49x" (string)',
    ),
    (
        "routing",
        "default",
        routing_doc({"match": "*", "destinations": ["agents:sales"]}),
        "content.routes[0].destinations[0]",
        'expected an agent group defined in [[agent_groups]] ("support"), got "agents:sales" (string)',
    ),
    (
        "routing",
        "default",
        routing_doc({"match": "*", "destinations": ["cloud"]}, {"match": "*", "destinations": ["cloud"]}),
        "content.routes[1].match",
        'expected a match used by one route, got "*" (string) (also routes[0].match)',
    ),
    (
        "routing",
        "default",
        routing_doc({"match": "*", "destinations": ["cloud"], "record": True}),
        "content.routes[0].record",
        "requires media.recording_key",
    ),
    (
        "routing",
        "default",
        {"routes": []},
        "content.routes",
        "expected a non-empty array of routes, got [] (array)",
    ),
    (
        "routing",
        "default",
        routing_doc({"match": "*", "destinations": ["cloud"], "colour": 1}),
        "content.routes[0].colour",
        "unknown key; known keys are match, destinations, srtp, record",
    ),
    (
        "routing",
        "main",
        routing_doc(),
        None,
        'there is one routing table, the document "default", not "main"',
    ),
    ("routing", "default", {"rutes": []}, "content.rutes", "unknown field (allowed: routes)"),
    (
        "operator-keys",
        "noc",
        {"keys": [{"name": "alice", "key": "ssh-ed25519 AAAA", "role": "admin"}]},
        "content.keys[0].key",
        "not an SSH public key asyncssh can use (Invalid public key)",
    ),
    (
        "operator-keys",
        "noc",
        {"keys": [{"name": "alice", "key": FIXED_KEY, "role": "root"}]},
        "content.keys[0].role",
        'expected one of "admin", "operator", "viewer", found \'root\'',
    ),
    (
        "operator-keys",
        "noc",
        {"keys": [{"name": "al ice", "key": FIXED_KEY, "role": "admin"}]},
        "content.keys[0].name",
        "expected an operator name (1-64 of A-Z a-z 0-9 _ . @ + -), found 'al ice'",
    ),
    ("operator-keys", "noc", SAME_KEY_TWICE, "content.keys[1].key", "the same key as operator 'alice'"),
    ("operator-keys", "noc", {"keys": [{"name": "alice"}]}, "content.keys[0].key", "missing (required)"),
    (
        "business-hours",
        "office",
        {"timezone": "Europe/Berlin", "weekly": {"mon": [["09:00", "08:00"]]}},
        "content.weekly.mon[0][1]",
        "ends at 08:00, not after its start 09:00",
    ),
    (
        "business-hours",
        "office",
        {"timezone": "Mars/Base", "weekly": {}},
        "content.timezone",
        '"Mars/Base" is not an IANA time zone name',
    ),
    (
        "business-hours",
        "office",
        {"timezone": "UTC", "weekly": {"monday": []}},
        "content.weekly.monday",
        "unknown field (weekly has: mon, tue, wed, thu, fri, sat, sun)",
    ),
    (
        "business-hours",
        "9office",
        HOURS,
        None,
        '"9office" is not a valid schedule name (a letter or _, then letters, digits, _ or -; at most 64)',
    ),
    (
        "span",
        "1",
        {**SPAN, "b_channels": [1, 2, 16]},
        "content.b_channels[2]",
        "timeslot 16 carries the D-channel, never a B-channel",
    ),
    (
        "span",
        "1",
        {**SPAN, "framing": "cas", "switch_type": None},
        "content.switch_type",
        'expected one of "euroisdn", found null',
    ),
    (
        "span",
        "1",
        {**SPAN, "framing": "cas"},
        "content.switch_type",
        "a Q.931 switch type needs framing ccs (CAS has no D-channel)",
    ),
    (
        "span",
        "1",
        {**{k: v for k, v in SPAN.items() if k != "switch_type"}, "framing": "cas", "b_channels": [15, 16]},
        "content.b_channels[1]",
        "timeslot 16 carries the CAS signalling, never a B-channel",
    ),
    ("span", "1", {**SPAN, "b_channels": [1, 1]}, "content.b_channels[1]", "timeslot 1 is listed twice"),
    (
        "span",
        "1",
        {**SPAN, "timing_priority": 32},
        "content.timing_priority",
        "expected an integer from 0 to 31, found 32",
    ),
    ("span", "0", SPAN, None, 'a span document is named by its span number 1 to 255, not "0"'),
    ("span", "1", {k: v for k, v in SPAN.items() if k != "crc4"}, "content.crc4", "missing (required)"),
    ("span", "1", {**SPAN, "b_channels": []}, "content.b_channels", "0 items, expected 1 to 30"),
    ("span", "1", {**SPAN, "crc4": 1}, "content.crc4", "expected true or false, found an integer"),
]


@pytest.mark.parametrize(("kind", "name", "content", "path", "message"), INVALID)
async def test_invalid_document_is_refused_with_path_and_message(
    site: Site, kind: str, name: str, content: Any, path: str | None, message: str
) -> None:
    with pytest.raises(InvalidDocument) as caught:
        await site.store.put(kind, name, 0, 1, content, None, now=1.0)
    assert (caught.value.path, caught.value.message) == (path, message)
    validate("error", caught.value.as_message())
    assert await site.store.list() == []
    assert "sales" not in site.ivr.flows and site.rec.routes == [] and site.rec.spans == []
    assert not (site.state_dir / "noc").exists()
    [(event, body)] = site.rec.events
    assert event == "config.rejected"
    assert (body["kind"], body["reason"], body["message"], body.get("path")) == (
        kind,
        "invalid-document",
        message,
        path,
    )


async def test_a_refused_document_leaves_the_running_one(site: Site) -> None:
    await site.store.put("ivr-flow", "sales", 0, 1, flow_doc(), None, now=1.0)
    with pytest.raises(InvalidDocument):
        await site.store.put("ivr-flow", "sales", 1, 2, flow_doc(version=2, start="nowhere"), None, now=2.0)
    assert site.ivr.flows["sales"].version == 1
    assert [(i.name, i.version) for i in await site.store.list()] == [("sales", 1)]


# --- what each valid kind changes -------------------------------------------------------------------------


async def test_ivr_flow_is_installed_and_replaced(site: Site) -> None:
    await site.store.put("ivr-flow", "sales", 0, 1, flow_doc(), None, now=1.0)
    assert site.ivr.flows["sales"].version == 1
    assert site.ivr.flows["sales"].start == "hours"
    menu = {**flow_doc()["nodes"]["menu"], "retries": 5}
    await site.store.put("ivr-flow", "sales", 1, 2, {**with_node("menu", menu), "version": 2}, None, now=2.0)
    assert (site.ivr.flows["sales"].version, site.ivr.flows["sales"].nodes["menu"].retries) == (2, 5)  # type: ignore[union-attr]
    assert site.ivr.flows["default"].name == "default"  # the packaged flow is untouched


async def test_ivr_flow_named_default_overrides_the_packaged_one_until_removed(site: Site) -> None:
    packaged = site.ivr.flows["default"]
    await site.store.put("ivr-flow", "default", 0, 1, flow_doc("default"), 10, now=1.0)
    assert site.ivr.flows["default"].start == "hours"
    await site.store.handle_timer(11.0)  # not confirmed: removed, the packaged flow serves again
    assert site.ivr.flows["default"] is packaged


async def test_prompt_is_stored_converted_and_removed(site: Site) -> None:
    pcm = struct.pack("<4h", 0, 1000, -1000, 0)
    await site.store.put("prompt", "de/sales_welcome", 0, 1, wav(8000, pcm), 5, now=1.0)
    path = site.state_dir / "ivr" / "prompts" / "de" / "sales_welcome.alaw"
    assert len(path.read_bytes()) == 4
    assert site.ivr.catalog.has("de", "sales_welcome")
    await site.store.handle_timer(6.0)
    assert not path.exists()
    assert not site.ivr.catalog.has("de", "sales_welcome")


async def test_pushed_prompt_lets_a_flow_that_needs_it_validate(site: Site) -> None:
    flow = with_node("bye", {"type": "hangup", "prompts": ["sales_bye"]})
    with pytest.raises(InvalidDocument):
        await site.store.put("ivr-flow", "sales", 0, 1, flow, None, now=1.0)
    await site.store.put("prompt", "en/sales_bye", 0, 1, b"\xd5" * 160, None, now=2.0)
    assert (await site.store.put("ivr-flow", "sales", 0, 1, flow, None, now=3.0)).state == "applied"


async def test_routing_table_goes_to_the_router_and_back_to_the_file(site: Site) -> None:
    doc = routing_doc(
        {"match": "+4930*", "destinations": ["agents:support", "ivr:sales"], "srtp": "sdes"},
        {"match": "*", "destinations": ["cloud"]},
    )
    await site.store.put("routing", "default", 0, 1, doc, 5, now=1.0)
    first, second = site.rec.routes[-1]
    assert (first.match, [str(d) for d in first.destinations], first.srtp) == (
        "+4930*",
        ["agents:support", "ivr:sales"],
        "sdes",
    )
    assert second.match == "*"
    await site.store.handle_timer(6.0)
    assert site.rec.routes[-1] == site.config.routes


async def test_operator_keys_file_is_what_the_ssh_service_reads(site: Site) -> None:
    doc = {
        "keys": [
            {"name": "alice", "key": public(ALICE, "alice@laptop"), "role": "admin"},
            {"name": "bob.smith", "key": public(BOB), "role": "viewer"},
        ]
    }
    await site.store.put("operator-keys", "noc", 0, 1, doc, None, now=1.0)
    await site.store.put("operator-keys", "vendor", 0, 1, {"keys": []}, None, now=1.0)
    path = site.state_dir / "noc" / "authorized_keys"
    lines = path.read_text().splitlines()
    assert lines[1:] == [f'role="admin" {public(ALICE)} alice', f'role="viewer" {public(BOB)} bob.smith']
    assert path.stat().st_mode & 0o777 == 0o600
    authorized = asyncssh.read_authorized_keys(str(path))
    alice = authorized.validate(ALICE.convert_to_public(), "127.0.0.1", "127.0.0.1")
    assert alice is not None and alice["role"] == ["admin"]
    bob = authorized.validate(BOB.convert_to_public(), "127.0.0.1", "127.0.0.1")
    assert bob is not None and bob["role"] == ["viewer"]
    # Revoking a key is writing the next version without it.
    await site.store.put("operator-keys", "noc", 1, 2, {"keys": doc["keys"][:1]}, None, now=2.0)
    authorized = asyncssh.read_authorized_keys(str(path))
    assert authorized.validate(BOB.convert_to_public(), "127.0.0.1", "127.0.0.1") is None


async def test_business_hours_replace_the_schedule_in_every_flow_having_it(site: Site) -> None:
    await site.store.put("ivr-flow", "sales", 0, 1, flow_doc(), None, now=1.0)
    await site.store.put(
        "ivr-flow",
        "other",
        0,
        1,
        flow_doc(
            "other",
            schedules={},
            start="menu",
            nodes={"menu": flow_doc()["nodes"]["menu"], "bye": flow_doc()["nodes"]["bye"]},
        ),
        None,
        now=1.0,
    )
    await site.store.put("business-hours", "office", 0, 1, HOURS, 5, now=1.0)
    office = site.ivr.flows["sales"].schedules["office"]
    assert (office.timezone, dict(office.weekly), office.holidays) == (
        "Europe/Berlin",
        {0: ((480, 1200),), 5: ()},
        frozenset({"2026-12-25"}),
    )
    assert site.ivr.flows["other"].schedules == {}
    # A flow written later gets the override too.
    await site.store.put("ivr-flow", "sales", 1, 2, flow_doc(version=2), None, now=2.0)
    assert site.ivr.flows["sales"].schedules["office"] == office
    await site.store.handle_timer(6.0)
    assert dict(site.ivr.flows["sales"].schedules["office"].weekly) == {0: ((540, 1020),)}


async def test_span_settings_go_to_the_span_callback(site: Site) -> None:
    await site.store.put("span", "1", 0, 1, SPAN, None, now=1.0)
    cas = {k: v for k, v in SPAN.items() if k != "switch_type"} | {"framing": "cas", "line_code": "ami"}
    await site.store.put("span", "2", 0, 1, cas, None, now=1.0)
    assert site.rec.spans == [
        ("1", SpanSettings("ccs", "hdb3", True, "user", 1, (1, 2, 3, 17), "euroisdn")),
        ("2", SpanSettings("cas", "ami", True, "user", 1, (1, 2, 3, 17), None)),
    ]
