"""The owners of the document kinds, wired to the running appliance."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from appliance.config import Config
from appliance.ivr.service import IvrService
from appliance.sync.documents.business_hours import BusinessHoursOwner
from appliance.sync.documents.ivr_flow import IvrFlowOwner
from appliance.sync.documents.model import DocumentOwner
from appliance.sync.documents.operator_keys import OperatorKeysOwner
from appliance.sync.documents.prompt import PromptOwner
from appliance.sync.documents.routing import Routes, RoutingOwner
from appliance.sync.documents.span import SpanOwner, SpanSettings


def no_span(name: str, settings: SpanSettings | None) -> None:
    """The span callback until the E1 driver exists (issue 6): span settings are stored, not used."""


def default_owners(
    *,
    state_dir: Path,
    config: Config,
    ivr: IvrService,
    on_routes: Callable[[Routes], None],
    on_span: Callable[[str, SpanSettings | None], None] = no_span,
    span_runnable: Callable[[str, SpanSettings], None] | None = None,
) -> list[DocumentOwner]:
    """One owner per kind: flows, business hours into ``ivr``; prompts into ``<state_dir>/ivr/prompts``
    (the last folder of ``ivr``'s catalog); operator keys into ``<state_dir>/noc/authorized_keys``; routes
    to ``on_routes``; span settings to ``on_span`` (checked by ``span_runnable`` first, if given)."""
    return [
        PromptOwner(state_dir / "ivr" / "prompts"),
        BusinessHoursOwner(ivr),
        IvrFlowOwner(ivr, agent_groups=[g.name for g in config.agent_groups]),
        RoutingOwner(config, on_routes=on_routes),
        OperatorKeysOwner(state_dir / "noc" / "authorized_keys"),
        SpanOwner(on_span=on_span, runnable=span_runnable),
    ]
