"""Graph-level checks of a flow: can the interpreter run it for every caller in every language it offers?

:func:`validate_flow` is the second half of accepting a flow (the first is
:func:`appliance.ivr.flow_codec.decode_flow`, which checks each field on its own). It also serves flows
built in code, so it checks again what a document could not get wrong (language tags, time zones).
Every problem is collected, not just the first, so that whoever wrote the flow fixes it in one pass.

Problem order is deterministic: the flow's languages, its schedules, ``start``, the builtin prompts
(language by language), then node by node in the flow's order (targets, schedule, agent group, language
menu choices, prompts by name), then unreachable nodes, then loops without input (each loop once, at its
first node in the flow's order).
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from collections.abc import Collection, Iterator, Mapping
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.ivr.actions import BUILTIN_PROMPTS, PromptCatalog
from appliance.ivr.errors import FlowInvalidError, FlowProblem
from appliance.ivr.model import (
    NODE_TYPES,
    BusinessHours,
    CallbackRequest,
    Flow,
    LanguageMenu,
    Menu,
    Node,
    Transfer,
    prompt_names,
    successors,
    takes_input,
)

_LANGUAGE: Final = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}")
"""A BCP 47 tag as the catalog's folders use it: a primary language, then a script or region or both."""
_TIMEZONE: Final = re.compile(r"[A-Za-z0-9_+-]{1,30}(/[A-Za-z0-9_+-]{1,30}){0,2}")
"""The shape of an IANA zone name; checked before the name goes near the zoneinfo search path."""

_REFERENCE_FIELDS: Final = ("next", "on_failure", "open", "closed", "fallback", "after", "target")
"""The node fields that name another node (with a menu's choices)."""

_TYPE_NAMES: Final[Mapping[type[Node], str]] = {cls: name for name, cls in NODE_TYPES.items()}


def language_tag_ok(tag: str) -> bool:
    """Whether ``tag`` is a language tag the catalog can hold (``en``, ``pt-BR``, ``zh-Hant-TW``)."""
    return _LANGUAGE.fullmatch(tag) is not None


def timezone_ok(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this build knows (the ``tzdata`` package or the system's)."""
    if _TIMEZONE.fullmatch(name) is None:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as "Europe"
        return False
    return True


def validate_flow(
    flow: Flow, *, catalog: PromptCatalog | None, agent_groups: Collection[str] | None = None
) -> None:
    """Raise :class:`FlowInvalidError` listing every problem of ``flow``; return None if it has none.

    Checks: the languages are tags and the default is among them; every schedule's time zone exists;
    ``start`` and every target exist; every node is reachable from ``start`` (not reported when ``start``
    itself is unknown: everything would be); no cycle passes only through nodes that do not wait for the
    caller (:func:`appliance.ivr.model.takes_input`); every schedule a node names is in ``flow.schedules``;
    every agent group is in ``agent_groups`` (unless None); every language a language menu offers is the
    flow's. With a ``catalog``, every prompt a node names and every builtin prompt exist in every language
    the flow offers (``catalog.has``); a transfer's music is language-neutral and only has to resolve
    (``catalog.path`` in the default language).
    """
    problems = [*_flow_problems(flow, catalog)]
    for node_id, node in flow.nodes.items():
        problems.extend(_node_problems(flow, node_id, node, catalog, agent_groups))
    if flow.start in flow.nodes:
        reached = _reachable(flow)
        problems.extend(
            FlowProblem(node_id, "unreachable-node", f"{_name(flow, node_id)} cannot be reached from start")
            for node_id in flow.nodes
            if node_id not in reached
        )
    problems.extend(_loops(flow))
    if problems:
        raise FlowInvalidError(problems)


def _name(flow: Flow, node_id: str) -> str:
    """``menu 'main'``: a node by its type and id, as messages name it."""
    return f"{_TYPE_NAMES[type(flow.nodes[node_id])]} {node_id!r}"


def _flow_problems(flow: Flow, catalog: PromptCatalog | None) -> Iterator[FlowProblem]:
    offered = ", ".join(flow.languages)
    for i, language in enumerate(flow.languages):
        if not language_tag_ok(language):
            yield FlowProblem(None, "bad-language", f"languages[{i}] {language!r} is not a language tag")
        elif language in flow.languages[:i]:
            yield FlowProblem(None, "bad-language", f"languages[{i}] {language!r} is listed twice")
    if flow.default_language not in flow.languages:
        message = f"default language {flow.default_language!r} is not one the flow offers ({offered})"
        yield FlowProblem(None, "bad-language", message)
    for name, schedule in flow.schedules.items():
        if not timezone_ok(schedule.timezone):
            message = f"schedule {name!r}: {schedule.timezone!r} is not an IANA time zone"
            yield FlowProblem(None, "bad-timezone", message)
    if flow.start not in flow.nodes:
        yield FlowProblem(None, "unknown-node", f"start goes to {flow.start!r}, which is not a node")
    if catalog is not None:
        # A builtin prompt a node names too is reported at the node, once.
        builtins = BUILTIN_PROMPTS.difference(*(prompt_names(node) for node in flow.nodes.values()))
        for language in flow.languages:
            missing = sorted(name for name in builtins if not catalog.has(language, name))
            if missing:
                message = f"language {language!r} lacks builtin prompts: {', '.join(missing)}"
                yield FlowProblem(None, "missing-prompt", message)


def _targets(node: Node) -> Iterator[tuple[str, str]]:
    """Every (field, node id) ``node`` refers to; the same ids as :func:`appliance.ivr.model.successors`."""
    if isinstance(node, Menu):
        yield from ((f"key {key}", target) for key, target in node.choices.items())
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if f.name in _REFERENCE_FIELDS and value is not None:
            yield f.name, value


def _node_problems(
    flow: Flow,
    node_id: str,
    node: Node,
    catalog: PromptCatalog | None,
    agent_groups: Collection[str] | None,
) -> Iterator[FlowProblem]:
    name = _name(flow, node_id)
    for field, target in _targets(node):
        if target not in flow.nodes:
            yield FlowProblem(
                node_id, "unknown-node", f"{name}: {field} goes to {target!r}, which is not a node"
            )
    schedule = node.schedule if isinstance(node, BusinessHours | CallbackRequest) else None
    if schedule is not None and schedule not in flow.schedules:
        defined = ", ".join(flow.schedules) or "none"
        message = f"{name}: schedule {schedule!r} is not defined (schedules: {defined})"
        yield FlowProblem(node_id, "unknown-schedule", message)
    if isinstance(node, Transfer) and agent_groups is not None and node.group not in agent_groups:
        known = ", ".join(sorted(agent_groups)) or "none"
        yield FlowProblem(
            node_id,
            "unknown-agent-group",
            f"{name}: agent group {node.group!r} is not configured (groups: {known})",
        )
    if isinstance(node, LanguageMenu):
        for key, language in node.choices.items():
            if language not in flow.languages:
                message = f"{name}: key {key} offers {language!r}, which the flow does not offer"
                yield FlowProblem(node_id, "bad-language", message)
    if catalog is None:
        return
    music = node.music if isinstance(node, Transfer) else None
    for prompt in sorted(prompt_names(node) - {music}):
        missing = [language for language in flow.languages if not catalog.has(language, prompt)]
        if missing:
            message = f"{name}: prompt {prompt!r} is missing in {', '.join(missing)}"
            yield FlowProblem(node_id, "missing-prompt", message)
    if music is not None:
        try:
            catalog.path(flow.default_language, music)
        except KeyError:
            yield FlowProblem(node_id, "missing-prompt", f"{name}: music {music!r} is not in the catalog")


def _reachable(flow: Flow) -> set[str]:
    reached = {flow.start}
    queue = deque([flow.start])
    while queue:
        for target in successors(flow.nodes[queue.popleft()]):
            if target in flow.nodes and target not in reached:
                reached.add(target)
                queue.append(target)
    return reached


def _loops(flow: Flow) -> Iterator[FlowProblem]:
    """Each cycle made only of nodes that do not wait for the caller, once (as its strongly connected
    component), at its first node in the flow's order, with one such cycle spelled out."""
    # The graph of nodes that pass straight through; a cycle without input is a cycle in it.
    edges = {
        node_id: [
            t for t in dict.fromkeys(successors(node)) if t in flow.nodes and not takes_input(flow.nodes[t])
        ]
        for node_id, node in flow.nodes.items()
        if not takes_input(node)
    }
    reach = {node_id: _reach(node_id, edges) for node_id in edges}
    reported: set[str] = set()
    for node_id in edges:
        if node_id in reported or node_id not in reach[node_id]:
            continue
        component = {other for other in reach[node_id] if node_id in reach[other]}
        reported |= component
        cycle = " -> ".join(_name(flow, step) for step in _cycle(node_id, edges, component))
        message = f"{cycle} loops without waiting for the caller (no menu, collect or other input on the way)"
        yield FlowProblem(node_id, "loop-without-input", message)


def _reach(origin: str, edges: Mapping[str, list[str]]) -> set[str]:
    """The nodes reachable from ``origin`` in one step or more (``origin`` itself only through a cycle)."""
    seen: set[str] = set()
    queue = deque(edges[origin])
    while queue:
        node_id = queue.popleft()
        if node_id not in seen:
            seen.add(node_id)
            queue.extend(edges[node_id])
    return seen


def _cycle(origin: str, edges: Mapping[str, list[str]], within: set[str]) -> list[str]:
    """A shortest cycle from ``origin`` back to it through ``within`` (breadth first, so deterministic)."""
    parents: dict[str, str] = {}
    queue = deque([origin])
    while queue:
        node_id = queue.popleft()
        for target in edges[node_id]:
            if target == origin:
                path = [node_id]
                while path[-1] != origin:
                    path.append(parents[path[-1]])
                return [*reversed(path), origin]
            if target in within and target not in parents:
                parents[target] = node_id
                queue.append(target)
    raise AssertionError(f"{origin!r} is on no cycle")  # callers pass a node that reaches itself
