"""Owner of ``ivr-flow`` documents: a flow (schema 1, ``appliance/ivr/flow.cddl``) put in force in the
running :class:`~appliance.ivr.service.IvrService`.

A flow is read by :func:`~appliance.ivr.flow_codec.decode_flow` and checked by
:func:`~appliance.ivr.validate.validate_flow` against the service's prompt catalog (with the prompts
pushed so far) and the site's agent groups, exactly as a flow loaded from a file. The flow's own ``name``
must be the document's name, and its ``version`` the write's version, so that what the flow says of
itself and what the store says of it never disagree. Nothing is written to files: the database is the
truth and the store installs the flow again at every start.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from appliance.ivr.errors import FlowDecodeError, FlowInvalidError
from appliance.ivr.flow_codec import decode_flow
from appliance.ivr.model import Flow
from appliance.ivr.service import IvrService
from appliance.ivr.validate import validate_flow
from appliance.sync.documents.errors import InvalidDocument
from appliance.sync.documents.fields import wrong
from appliance.sync.documents.model import Kind, join


class IvrFlowOwner:
    """``ivr-flow`` documents into ``ivr`` (``install_flow`` / ``remove_flow``)."""

    kind: Kind = "ivr-flow"

    def __init__(self, ivr: IvrService, *, agent_groups: Collection[str] | None) -> None:
        self._ivr = ivr
        self._agent_groups = agent_groups

    def validate(self, name: str, content: Any, *, version: int) -> Flow:
        """The flow, or :class:`InvalidDocument`: the codec's path and reason for a document that is not
        a flow; for a flow that cannot run, the path of the first problem's node (``nodes.<id>``, or the
        content for a flow-wide problem) and every problem in the message."""
        if not isinstance(content, Mapping):
            raise wrong("a map (a flow document)", content, "")
        try:
            flow = decode_flow(content)
        except FlowDecodeError as exc:
            raise InvalidDocument(exc.reason, path=exc.path) from None
        if flow.name != name:
            raise InvalidDocument(f'the flow is named "{flow.name}" but written as "{name}"', path="name")
        if flow.version != version:
            raise InvalidDocument(
                f"the flow says version {flow.version} but is written as version {version}", path="version"
            )
        try:
            validate_flow(flow, catalog=self._ivr.catalog, agent_groups=self._agent_groups)
        except FlowInvalidError as exc:
            first = exc.problems[0]
            path = join("nodes", first.node) if first.node is not None else ""
            raise InvalidDocument("; ".join(str(p) for p in exc.problems), path=path) from None
        return flow

    def apply(self, name: str, prepared: Flow) -> None:
        self._ivr.install_flow(prepared)

    def remove(self, name: str) -> None:
        self._ivr.remove_flow(name)
