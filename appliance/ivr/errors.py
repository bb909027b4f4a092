"""The IVR package's error tree (STYLE rule 8).

A flow document reaches the appliance from the cloud through the sync API (or from a file); it is accepted
whole or refused. :class:`FlowDecodeError` means the document is not a flow at all (a wrong type, an unknown
field, a value out of bounds) and names the one offending field by its path; :class:`FlowInvalidError` means
the document reads as a flow but its graph cannot be run (a target that does not exist, a loop that never
waits for the caller, a prompt missing in a language) and lists every such problem. Both carry the status the
sync API answers with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

ProblemCode = Literal[
    "unknown-node",
    "unreachable-node",
    "loop-without-input",
    "missing-prompt",
    "unknown-schedule",
    "unknown-agent-group",
    "bad-timezone",
    "bad-language",
]
"""What kind of graph-level problem a :class:`FlowProblem` is (stable: the cloud shows these to operators)."""


class IvrError(Exception):
    """Base of every error the IVR package raises on purpose."""


class FlowDecodeError(IvrError):
    """The document is not a valid flow (schema 1).

    ``path`` names the offending field from the document's root: map keys joined by dots, array indices in
    brackets, a key that is not a plain identifier quoted as JSON would (``nodes.menu.choices."7"``,
    ``schedules.office.weekly.mon[0][1]``); it is empty when the fault is in the document as a whole (not
    JSON, too large). ``reason`` says what was expected and what was found. ``status`` is the sync API's
    answer (422: the request was understood but its content refused).
    """

    status: int = 422

    def __init__(self, reason: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class UnsupportedContentType(FlowDecodeError):
    """The document came in a media type other than ``application/json`` or ``application/cbor`` (the sync
    API answers 415)."""

    status = 415


class FlowReadError(IvrError):
    """A flow file could not be read at all (missing, unreadable, a directory); ``path`` is the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FlowProblem:
    """One graph-level problem of a flow.

    ``node`` is the node it concerns (None for the flow as a whole: its languages, a schedule, the builtin
    prompts); ``message`` names the node, the field, the target or the language involved.
    """

    node: str | None
    code: ProblemCode
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class FlowInvalidError(IvrError):
    """The flow cannot be run; ``problems`` lists every problem found, in a deterministic order (see
    :func:`appliance.ivr.validate.validate_flow`). ``status`` is the sync API's answer."""

    status: Final = 422

    def __init__(self, problems: Iterable[FlowProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
