"""Property: whatever content a write carries, the document store answers with a result or one of its
typed errors, and a refused write leaves every stored document as it was (appliance/sync/documents)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from appliance.sync.documents import KINDS, DocumentError
from tests.unit.sync_documents_harness import HOURS, SPAN, Site, Wall, flow_doc, open_site, routing_doc

SETTINGS = settings(
    max_examples=int(os.environ.get("APPLIANCE_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NAMES = {
    "ivr-flow": "sales",
    "prompt": "en/sales_bye",
    "routing": "default",
    "operator-keys": "noc",
    "business-hours": "office",
    "span": "1",
}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
VALID: dict[str, Any] = {
    "ivr-flow": flow_doc(),
    "prompt": b"\xd5" * 160,
    "routing": routing_doc({"match": "+49*", "destinations": ["agents:support"]}),
    "operator-keys": {"keys": [{"name": "alice", "key": KEY, "role": "admin"}]},
    "business-hours": HOURS,
    "span": SPAN,
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=40)
    | st.sampled_from(
        ["*", "cloud", "ivr:default", "agents:support", "09:00", "24:00", "UTC", "mon", "ccs", 16]
    )
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=10) | st.sampled_from(["routes", "keys", "weekly", "nodes"]), inner, max_size=4
        )
    ),
    max_leaves=20,
)


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> Any:
    """The kind's valid document, or it with one value somewhere replaced by a random one, or random data."""
    doc = VALID[kind]
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(values)
    if choice == 1:
        return doc
    path: list[Any] = []
    node = doc
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        node = node[key]
    return _replace(doc, path, draw(values))


def _replace(doc: Any, path: list[Any], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _replace(doc[head], rest, value)}
    copy = list(doc)
    copy[head] = _replace(doc[head], rest, value)
    return copy


class Harness:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.TemporaryDirectory()
        self.site: Site = self.loop.run_until_complete(self._open(Path(self.dir.name)))

    @staticmethod
    async def _open(state_dir: Path) -> Site:
        site = await open_site(state_dir, Wall())
        await site.store.start(now=0.0)
        return site

    def write(self, kind: str, content: Any, confirm_within: int | None) -> None:
        self.loop.run_until_complete(self._write(kind, content, confirm_within))

    async def _write(self, kind: str, content: Any, confirm_within: int | None) -> None:
        store = self.site.store
        name = NAMES[kind]
        await store.handle_timer(float("inf"))  # nothing pending from an earlier example
        before = await store.list()
        current = next((i.version for i in before if (i.kind, i.name) == (kind, name)), 0)
        if kind == "ivr-flow" and isinstance(content, dict) and content.get("version") == 1:
            content = {**content, "version": current + 1}
        try:
            await store.put(kind, name, current, current + 1, content, confirm_within, now=1.0)
            event(f"{kind} accepted")
        except DocumentError as exc:
            event(f"{kind} refused: {exc.code}")
            assert exc.status in {404, 409, 412, 422}, exc
            assert await store.list() == before
            assert self.site.rec.events[-1][0] == "config.rejected"

    def close(self) -> None:
        self.loop.run_until_complete(self.site.db.close())
        self.loop.close()
        self.dir.cleanup()


@SETTINGS
@given(data=st.data())
def test_any_content_gets_a_result_or_a_typed_error(data: st.DataObject) -> None:
    harness = Harness()
    try:
        for _ in range(3):
            kind = data.draw(st.sampled_from(KINDS))
            content = data.draw(mutated(kind))
            confirm = data.draw(st.none() | st.integers(1, 3600))
            harness.write(kind, content, confirm)
    finally:
        harness.close()
