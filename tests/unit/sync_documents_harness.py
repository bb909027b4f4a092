"""Shared set-up of the configuration document tests: a real SQLite file, the real owners over a real
IVR service, a recording outbox and hand-set clocks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import Config, RouteConfig, load_config_text
from appliance.ivr.service import IvrService
from appliance.store import Database
from appliance.sync.documents import DocumentOwner, DocumentStore, default_owners
from appliance.sync.documents.span import SpanSettings

CONFIG = """
[[agent_groups]]
name = "support"
members = ["sip:agent@127.0.0.1"]
"""

WALL0 = 1_800_000_000.0


class Wall:
    def __init__(self, now: float = WALL0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Recorder:
    """The outbox as the store sees it, and what the owners' callbacks were given."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    routes: list[tuple[RouteConfig, ...]] = field(default_factory=list)
    spans: list[tuple[str, SpanSettings | None]] = field(default_factory=list)

    async def append(self, type: str, body: Mapping[str, Any]) -> None:
        self.events.append((type, dict(body)))

    def types(self) -> list[str]:
        return [t for t, _ in self.events]


@dataclass
class Site:
    state_dir: Path
    db: Database
    store: DocumentStore
    ivr: IvrService
    config: Config
    wall: Wall
    rec: Recorder


def make_ivr(state_dir: Path, wall: Wall) -> IvrService:
    return IvrService.load(state_dir, by_country={}, site_zone="UTC", wall=wall, agent_groups=["support"])


async def open_site(state_dir: Path, wall: Wall, *, wrap: Any = None, rec: Recorder | None = None) -> Site:
    """A store over the database in ``state_dir`` (created or reopened); ``wrap`` may replace owners."""
    config = load_config_text(CONFIG)
    ivr = make_ivr(state_dir, wall)
    rec = rec or Recorder()
    owners: list[DocumentOwner] = default_owners(
        state_dir=state_dir,
        config=config,
        ivr=ivr,
        on_routes=rec.routes.append,
        on_span=lambda name, settings: rec.spans.append((name, settings)),
    )
    if wrap is not None:
        owners = [wrap(owner) for owner in owners]
    db = await Database.open(state_dir / "appliance.db", wall=wall)
    store = DocumentStore(db, owners=owners, append=rec.append, wall=wall)
    return Site(state_dir, db, store, ivr, config, wall, rec)


@asynccontextmanager
async def started_site(state_dir: Path) -> AsyncIterator[Site]:
    """A started store over a new database in ``state_dir``, closed on the way out."""
    site = await open_site(state_dir, Wall())
    await site.store.start(now=0.0)
    try:
        yield site
    finally:
        await site.db.close()


def flow_doc(name: str = "sales", version: int = 1, **changes: Any) -> dict[str, Any]:
    """A runnable flow with a schedule "office", English only, packaged prompts."""
    doc: dict[str, Any] = {
        "schema": 1,
        "name": name,
        "version": version,
        "start": "hours",
        "languages": ["en"],
        "default_language": "en",
        "schedules": {
            "office": {"timezone": "Europe/Berlin", "weekly": {"mon": [["09:00", "17:00"]]}},
        },
        "nodes": {
            "hours": {"type": "business_hours", "schedule": "office", "open": "menu", "closed": "bye"},
            "menu": {
                "type": "menu",
                "prompts": ["main_menu"],
                "choices": {"1": "bye"},
                "on_failure": "bye",
            },
            "bye": {"type": "hangup", "prompts": ["goodbye"]},
        },
    }
    doc.update(changes)
    return doc


def routing_doc(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"routes": list(routes) or [{"match": "*", "destinations": ["cloud", "ivr:default"]}]}


SPAN = {
    "framing": "ccs",
    "line_code": "hdb3",
    "crc4": True,
    "side": "user",
    "timing_priority": 1,
    "b_channels": [1, 2, 3, 17],
    "switch_type": "euroisdn",
}

HOURS = {
    "timezone": "Europe/Berlin",
    "weekly": {"mon": [["08:00", "20:00"]], "sat": []},
    "holidays": ["2026-12-25"],
}
