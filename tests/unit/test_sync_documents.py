"""The configuration document store: version preconditions, replay, atomic apply, confirm-or-revert,
restart; on a real SQLite file with the real owners (appliance/sync/documents)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from appliance.sync.documents import (
    ApplyFailed,
    ConfirmPending,
    DocumentOwner,
    InvalidDocument,
    Kind,
    NothingToConfirm,
    StaleVersion,
    UnknownKind,
)
from tests.sync_schema import validate
from tests.unit.sync_documents_harness import (
    SPAN,
    WALL0,
    Recorder,
    Site,
    Wall,
    flow_doc,
    open_site,
    routing_doc,
    started_site,
)

ROUTES_V2 = routing_doc(
    {"match": "+49*", "destinations": ["ivr:default"]}, {"match": "*", "destinations": ["cloud"]}
)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with started_site(tmp_path) as s:
        yield s


async def stored_row(site: Site, kind: str, name: str) -> tuple[Any, ...] | None:
    return await site.db.fetchone(
        "SELECT version, confirm_by, previous_version FROM config_documents WHERE kind = ? AND name = ?",
        (kind, name),
    )


async def test_new_document_is_applied_listed_and_reported(site: Site) -> None:
    result = await site.store.put("routing", "default", 0, 1, routing_doc(), None, now=1.0)
    assert (result.kind, result.name, result.version, result.state, result.confirm_by) == (
        "routing",
        "default",
        1,
        "applied",
        None,
    )
    validate("config-result", result.as_message())
    assert [str(d) for d in site.rec.routes[-1][0].destinations] == ["cloud", "ivr:default"]
    [info] = await site.store.list()
    assert (info.kind, info.name, info.version, info.applied_at) == ("routing", "default", 1, WALL0)
    assert info.sha256 == hashlib.sha256(cbor2.dumps(routing_doc(), canonical=True)).hexdigest()
    validate("document-list", {"documents": [i.as_message() for i in await site.store.list()]})
    document = await site.store.get("routing", "default")
    assert document is not None and document.content == routing_doc()
    validate("document", document.as_message())
    assert site.rec.events == [
        (
            "config.applied",
            {"kind": "routing", "name": "default", "version": 1, "replaces": 0, "sha256": info.sha256},
        )
    ]


async def test_stale_version_is_refused_with_the_running_version(site: Site) -> None:
    await site.store.put("routing", "default", 0, 3, routing_doc(), None, now=1.0)
    with pytest.raises(StaleVersion) as caught:
        await site.store.put("routing", "default", 2, 4, ROUTES_V2, None, now=2.0)
    assert (caught.value.status, caught.value.code, caught.value.current_version) == (412, "stale-version", 3)
    validate("error", caught.value.as_message())
    assert caught.value.as_message()["current_version"] == 3
    assert await stored_row(site, "routing", "default") == (3, None, None)
    assert len(site.rec.routes) == 1
    rejected = site.rec.events[-1]
    assert rejected[0] == "config.rejected"
    assert rejected[1]["reason"] == "stale-version" and rejected[1]["current_version"] == 3
    # A new document is written with replaces 0 only.
    with pytest.raises(StaleVersion) as caught:
        await site.store.put("span", "1", 1, 2, {}, None, now=3.0)
    assert caught.value.current_version == 0


async def test_same_version_with_other_content_is_stale_not_a_replay(site: Site) -> None:
    await site.store.put("routing", "default", 0, 1, routing_doc(), None, now=1.0)
    with pytest.raises(StaleVersion):
        await site.store.put("routing", "default", 0, 1, ROUTES_V2, None, now=2.0)


async def test_replay_of_the_running_version_changes_nothing(site: Site) -> None:
    first = await site.store.put("routing", "default", 0, 1, routing_doc(), None, now=1.0)
    site.wall.now += 100
    again = await site.store.put("routing", "default", 0, 1, routing_doc(), None, now=2.0)
    assert again == first
    [info] = await site.store.list()
    assert info.applied_at == WALL0
    assert site.rec.types() == ["config.applied"]
    assert len(site.rec.routes) == 1


async def test_version_must_be_above_replaces(site: Site) -> None:
    with pytest.raises(InvalidDocument) as caught:
        await site.store.put("routing", "default", 0, 0, routing_doc(), None, now=1.0)
    assert (caught.value.path, caught.value.message) == ("version", "version 0 is not above replaces 0")
    assert caught.value.status == 422 and caught.value.code == "invalid-document"
    assert await site.store.list() == []


async def test_unknown_kind_and_bad_names(site: Site) -> None:
    with pytest.raises(UnknownKind) as caught:
        await site.store.put("dialplan", "x", 0, 1, {}, None, now=1.0)
    assert caught.value.status == 404 and caught.value.code == "not-found"
    with pytest.raises(UnknownKind):
        await site.store.get("dialplan", "x")
    with pytest.raises(UnknownKind):
        await site.store.confirm("dialplan", "x", 1, now=1.0)
    with pytest.raises(InvalidDocument) as bad:
        await site.store.put("span", "../1", 0, 1, {}, None, now=1.0)
    assert bad.value.path is None
    assert bad.value.message == '"../1" is not a span document name (1-64 of A-Z a-z 0-9 _ . -)'
    assert "path" not in bad.value.as_message()
    with pytest.raises(InvalidDocument) as bad:
        await site.store.put("prompt", "welcome", 0, 1, b"\xd5", None, now=1.0)
    assert bad.value.message == '"welcome" is not a prompt document name ("<language>/<prompt>")'


async def test_content_that_is_not_plain_data_is_refused_with_its_path(site: Site) -> None:
    with pytest.raises(InvalidDocument) as caught:
        await site.store.put("routing", "default", 0, 1, {"routes": [{"match": float("nan")}]}, None, now=1.0)
    assert (caught.value.path, caught.value.message) == (
        "content.routes[0].match",
        "nan is not a finite number",
    )
    with pytest.raises(InvalidDocument) as caught:
        await site.store.put("routing", "default", 0, 1, {"routes": {1: "x"}}, None, now=1.0)
    assert (caught.value.path, caught.value.message) == ("content.routes", "a map key is int, not text")
    with pytest.raises(InvalidDocument) as caught:
        await site.store.put("routing", "default", 0, 1, {"routes": [2**70]}, None, now=1.0)
    assert caught.value.path == "content.routes[0]"
    with pytest.raises(InvalidDocument) as caught:
        await site.store.put("routing", "default", 0, 1, routing_doc(), 0, now=1.0)
    assert (caught.value.path, caught.value.message) == ("confirm_within", "expected seconds from 1 to 3600")


# --- atomicity --------------------------------------------------------------------------------------------


class FailingApply:
    """An owner whose apply raises (as a failed file write would, before the in-memory swap)."""

    def __init__(self, inner: DocumentOwner) -> None:
        self.inner = inner
        self.kind: Kind = inner.kind
        self.fail = False

    def validate(self, name: str, content: Any, *, version: int) -> object:
        return self.inner.validate(name, content, version=version)

    def apply(self, name: str, prepared: Any) -> None:
        if self.fail:
            raise OSError(28, "No space left on device")
        self.inner.apply(name, prepared)

    def remove(self, name: str) -> None:
        self.inner.remove(name)


async def test_a_failing_apply_leaves_the_previous_document_in_force(tmp_path: Path) -> None:
    owners: dict[str, FailingApply] = {}

    def wrap(owner: DocumentOwner) -> FailingApply:
        owners[owner.kind] = FailingApply(owner)
        return owners[owner.kind]

    site = await open_site(tmp_path, Wall(), wrap=wrap)
    try:
        await site.store.start(now=0.0)
        await site.store.put("ivr-flow", "sales", 0, 1, flow_doc(), None, now=1.0)
        owners["ivr-flow"].fail = True
        with pytest.raises(ApplyFailed) as caught:
            await site.store.put("ivr-flow", "sales", 1, 2, flow_doc(version=2), None, now=2.0)
        assert caught.value.status == 500 and caught.value.code == "internal"
        assert caught.value.message == (
            "version 2 could not be applied ([Errno 28] No space left on device); version 1 is in force"
        )
        assert site.ivr.flows["sales"].version == 1
        assert await stored_row(site, "ivr-flow", "sales") == (1, None, None)
        assert site.rec.types() == ["config.applied", "config.rejected"]
        # A new document whose apply fails is not stored at all.
        with pytest.raises(ApplyFailed):
            await site.store.put("ivr-flow", "other", 0, 1, flow_doc("other"), 30, now=3.0)
        assert await site.store.get("ivr-flow", "other") is None
        assert "other" not in site.ivr.flows
        assert site.store.get_timer() is None
    finally:
        await site.db.close()


async def test_a_failing_key_file_write_keeps_the_old_file_and_row(site: Site, monkeypatch: Any) -> None:
    from appliance.sync.documents import operator_keys

    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    doc = {"keys": [{"name": "alice", "key": key, "role": "admin"}]}
    await site.store.put("operator-keys", "noc", 0, 1, doc, None, now=1.0)
    path = site.state_dir / "noc" / "authorized_keys"
    before = path.read_bytes()

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(operator_keys, "write_atomically", full_disk)
    with pytest.raises(ApplyFailed):
        await site.store.put("operator-keys", "noc", 1, 2, {"keys": []}, None, now=2.0)
    assert path.read_bytes() == before
    assert await stored_row(site, "operator-keys", "noc") == (1, None, None)


# --- confirm within N s -----------------------------------------------------------------------------------


async def test_unconfirmed_write_reverts_at_its_deadline(site: Site) -> None:
    await site.store.put("routing", "default", 0, 1, routing_doc(), None, now=10.0)
    result = await site.store.put("routing", "default", 1, 2, ROUTES_V2, 30, now=100.0)
    assert (result.state, result.confirm_by) == ("pending-confirm", WALL0 + 30)
    validate("config-result", result.as_message())
    assert result.as_message()["confirm_by"] == "2027-01-15T08:00:30.000Z"
    [info] = await site.store.list()
    assert (info.version, info.confirm_by, info.previous_version) == (2, WALL0 + 30, 1)
    validate("document-info", info.as_message())
    assert site.store.get_timer() == 130.0
    assert len(site.rec.routes[-1]) == 2
    await site.store.handle_timer(129.9)
    assert (await site.store.list())[0].version == 2
    await site.store.handle_timer(130.0)
    assert site.store.get_timer() is None
    assert await stored_row(site, "routing", "default") == (1, None, None)
    assert len(site.rec.routes[-1]) == 1
    assert site.rec.events[-1] == (
        "config.reverted",
        {
            "kind": "routing",
            "name": "default",
            "version": 2,
            "restored_version": 1,
            "reason": "not confirmed in time",
        },
    )
    document = await site.store.get("routing", "default")
    assert document is not None and document.content == routing_doc() and document.confirm_by is None
    # The way is clear for the next write, from version 1.
    assert (await site.store.put("routing", "default", 1, 3, ROUTES_V2, None, now=200.0)).state == "applied"


async def test_confirmed_write_stays(site: Site) -> None:
    await site.store.put("routing", "default", 0, 1, routing_doc(), None, now=10.0)
    await site.store.put("routing", "default", 1, 2, ROUTES_V2, 30, now=100.0)
    with pytest.raises(NothingToConfirm):
        await site.store.confirm("routing", "default", 1, now=101.0)
    result = await site.store.confirm("routing", "default", 2, now=110.0)
    assert (result.version, result.state, result.confirm_by) == (2, "applied", None)
    assert site.store.get_timer() is None
    await site.store.handle_timer(1000.0)
    assert await stored_row(site, "routing", "default") == (2, None, None)
    assert site.rec.events[-1] == ("config.confirmed", {"kind": "routing", "name": "default", "version": 2})
    with pytest.raises(NothingToConfirm) as caught:
        await site.store.confirm("routing", "default", 2, now=111.0)
    assert caught.value.status == 409 and caught.value.code == "nothing-to-confirm"
    assert (
        caught.value.message
        == "version 2 is not waiting for a confirmation (version 2 is running, confirmed)"
    )
    with pytest.raises(NothingToConfirm):
        await site.store.confirm("routing", "nothing", 1, now=111.0)


async def test_writes_wait_while_a_confirmation_is_pending(site: Site) -> None:
    await site.store.put("routing", "default", 0, 1, routing_doc(), None, now=10.0)
    pending = await site.store.put("routing", "default", 1, 2, ROUTES_V2, 30, now=100.0)
    with pytest.raises(ConfirmPending) as caught:
        await site.store.put("routing", "default", 2, 3, routing_doc(), None, now=101.0)
    assert caught.value.status == 409 and caught.value.code == "confirm-pending"
    # The pending write itself, written again, is a replay.
    assert await site.store.put("routing", "default", 1, 2, ROUTES_V2, 30, now=102.0) == pending


async def test_a_new_document_not_confirmed_is_removed(site: Site) -> None:
    await site.store.put("ivr-flow", "sales", 0, 1, flow_doc(), 5, now=0.0)
    assert "sales" in site.ivr.flows
    await site.store.handle_timer(5.0)
    assert "sales" not in site.ivr.flows
    assert await site.store.list() == []
    assert site.rec.events[-1][1]["restored_version"] == 0


# --- restart ----------------------------------------------------------------------------------------------


async def test_start_applies_every_stored_document_again(tmp_path: Path) -> None:
    wall = Wall()
    first = await open_site(tmp_path, wall)
    await first.store.start(now=0.0)
    await first.store.put("prompt", "en/sales_welcome", 0, 1, b"\xd5" * 800, None, now=1.0)
    flow = flow_doc(nodes={**flow_doc()["nodes"], "bye": {"type": "hangup", "prompts": ["sales_welcome"]}})
    await first.store.put("ivr-flow", "sales", 0, 1, flow, None, now=1.0)
    await first.store.put("business-hours", "office", 0, 1, {"timezone": "UTC", "weekly": {}}, None, now=1.0)
    await first.db.close()
    prompt = tmp_path / "ivr" / "prompts" / "en" / "sales_welcome.alaw"
    prompt.unlink()  # the files are materialised from the database

    again = await open_site(tmp_path, wall)
    try:
        assert "sales" not in again.ivr.flows
        await again.store.start(now=0.0)
        assert again.ivr.flows["sales"].schedules["office"].timezone == "UTC"
        assert prompt.read_bytes() == b"\xd5" * 800
        assert [i.kind for i in await again.store.list()] == ["prompt", "business-hours", "ivr-flow"]
        assert again.rec.events == []
    finally:
        await again.db.close()


async def stop_while_pending(state_dir: Path, wall: Wall) -> None:
    """Routing version 1, then version 2 and a new span written to be confirmed within 60 s; then the
    appliance stops before the deadline."""
    first = await open_site(state_dir, wall)
    await first.store.start(now=0.0)
    await first.store.put("routing", "default", 0, 1, routing_doc(), None, now=1.0)
    await first.store.put("routing", "default", 1, 2, ROUTES_V2, 60, now=2.0)
    await first.store.put("span", "1", 0, 1, {**SPAN, "crc4": False}, 60, now=2.0)
    await first.db.close()


async def test_deadline_passed_while_down_reverts_at_start(tmp_path: Path) -> None:
    wall = Wall()
    await stop_while_pending(tmp_path, wall)

    wall.now += 61  # ...and is back after it
    rec = Recorder()
    again = await open_site(tmp_path, wall, rec=rec)
    try:
        await again.store.start(now=5.0)
        assert [(i.kind, i.version, i.confirm_by) for i in await again.store.list()] == [("routing", 1, None)]
        assert len(rec.routes) == 1 and len(rec.routes[0]) == 1
        assert rec.spans == [("1", None)]
        assert [(t, b["version"], b["restored_version"]) for t, b in rec.events] == [
            ("config.reverted", 2, 1),
            ("config.reverted", 1, 0),
        ]
        assert rec.events[0][1]["reason"] == "not confirmed in time (the deadline passed while stopped)"
        assert again.store.get_timer() is None
    finally:
        await again.db.close()


async def test_deadline_ahead_at_start_is_armed_for_the_time_left(tmp_path: Path) -> None:
    wall = Wall()
    await stop_while_pending(tmp_path, wall)

    wall.now += 20
    again = await open_site(tmp_path, wall)
    try:
        await again.store.start(now=1000.0)
        assert again.store.get_timer() == 1040.0
        assert len(again.rec.routes[-1]) == 2  # the pending version serves meanwhile
        await again.store.handle_timer(1040.0)
        assert [(i.kind, i.version, i.confirm_by) for i in await again.store.list()] == [("routing", 1, None)]
        assert len(again.rec.routes[-1]) == 1
    finally:
        await again.db.close()
