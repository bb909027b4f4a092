"""The IVR as the control process sees it: the flows in force, the prompt catalog, and a session per call.

Flows come from the package (the default flow) and from ``<state_dir>/ivr/flows/<name>.json`` (flow files
placed there; one replaces the packaged flow of the same name). Prompts come from the package and
from ``<state_dir>/ivr/prompts`` (pushed prompts override per language and name). Every flow is validated
against the catalog when loaded: an invalid stored flow is logged and left out rather than served half
right, so the packaged default still answers.

Flows and business hours pushed as configuration documents (:mod:`appliance.sync.documents`) are installed
at run time: :meth:`IvrService.install_flow` puts a flow in force over a loaded one of the same name (and
:meth:`IvrService.remove_flow` brings the loaded one back), :meth:`IvrService.set_hours` replaces the
schedule of that name in every flow that has one. The document store checks them before (the flow with
:func:`validate_flow`, against this service's catalog) and installs them again at each start, from the
database. A session keeps the flow it started with; only new calls see a change.

A caller's language is the first language configured for the country of their number that the flow
offers (:func:`appliance.ivr.language.choose_language`), else the flow's default; their time zone (for
callback times) comes from the number, else the site's zone.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from appliance.calls.events import Setup
from appliance.ivr.errors import IvrError
from appliance.ivr.flow_codec import default_flow, load_flow_file
from appliance.ivr.language import choose_language, zone_of
from appliance.ivr.model import Flow, Schedule
from appliance.ivr.prompts import PromptCatalog, default_dirs
from appliance.ivr.session import IvrSession
from appliance.ivr.validate import validate_flow

log = logging.getLogger("appliance.ivr")


class IvrService:
    """Builds :class:`IvrSession` objects for call control (``B2bua(ivr_sessions=service.session_for)``)."""

    def __init__(
        self,
        *,
        flows: Mapping[str, Flow],
        catalog: PromptCatalog,
        by_country: Mapping[str, Sequence[str]],
        site_zone: str,
        wall: Callable[[], float],
    ) -> None:
        self._loaded = dict(flows)
        self._pushed: dict[str, Flow] = {}
        self._hours: dict[str, Schedule] = {}
        self.flows: Mapping[str, Flow] = self._loaded
        self.catalog = catalog
        self.by_country = by_country
        self.site_zone = site_zone
        self.wall = wall

    @classmethod
    def load(
        cls,
        state_dir: Path,
        *,
        by_country: Mapping[str, Sequence[str]],
        site_zone: str,
        wall: Callable[[], float],
        agent_groups: Sequence[str] | None = None,
    ) -> IvrService:
        """The packaged default flow and prompts, overridden by what the cloud stored under ``state_dir``."""
        base = state_dir / "ivr"
        prompts_dir = base / "prompts"
        default = default_flow()
        catalog = PromptCatalog([*default_dirs(), prompts_dir], default_language=default.default_language)
        flows: dict[str, Flow] = {}
        candidates: list[Flow | Path] = [default]
        flows_dir = base / "flows"
        if flows_dir.is_dir():
            candidates += sorted(flows_dir.glob("*.json"))
        for source in candidates:
            try:
                flow = source if isinstance(source, Flow) else load_flow_file(source)
                # The packaged flow serves whatever the site configured: a transfer to a group the site
                # lacks finds no agent and goes to its fallback. A stored flow must name real groups.
                groups = None if source is default else agent_groups
                validate_flow(flow, catalog=catalog, agent_groups=groups)
            except (IvrError, OSError) as exc:
                log.error("IVR flow %s not loaded: %s", source, exc)
                continue
            flows[flow.name] = flow
        return cls(flows=flows, catalog=catalog, by_country=by_country, site_zone=site_zone, wall=wall)

    def install_flow(self, flow: Flow) -> None:
        """Put ``flow`` in force for new calls, over any flow of its name (checked already: the caller ran
        :func:`validate_flow` against :attr:`catalog`)."""
        self._pushed[flow.name] = flow
        self._refresh()

    def remove_flow(self, name: str) -> None:
        """Withdraw the flow installed as ``name``; the loaded one of that name (if any) serves again."""
        self._pushed.pop(name, None)
        self._refresh()

    def set_hours(self, name: str, schedule: Schedule) -> None:
        """Use ``schedule`` as the schedule ``name`` of every flow that has one (business hours pushed on
        their own); a flow without a schedule of that name is unaffected."""
        self._hours[name] = schedule
        self._refresh()

    def remove_hours(self, name: str) -> None:
        """Let each flow use its own schedule ``name`` again."""
        self._hours.pop(name, None)
        self._refresh()

    def _refresh(self) -> None:
        # One new mapping, swapped in whole: a session_for() never sees half an update.
        flows = {**self._loaded, **self._pushed}
        for name, flow in flows.items():
            overrides = {key: self._hours[key] for key in flow.schedules if key in self._hours}
            if overrides:
                flows[name] = dataclasses.replace(flow, schedules={**flow.schedules, **overrides})
        self.flows = flows

    def session_for(self, call_id: str, flow_name: str, setup: Setup, rescued: bool) -> IvrSession | None:
        flow = self.flows.get(flow_name)
        if flow is None:
            return None
        caller = setup.calling or None
        language = choose_language(
            caller, by_country=self.by_country, offered=flow.languages, default=flow.default_language
        )
        return IvrSession(
            flow=flow,
            catalog=self.catalog,
            call_id=call_id,
            session_id=uuid.uuid4().hex[:16],
            caller=caller,
            language=language,
            caller_zone=zone_of(caller, default=self.site_zone),
            wall=self.wall,
            rescued=rescued,
        )
