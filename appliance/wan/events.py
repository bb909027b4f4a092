"""Events and commands the survivable-mode machine emits (STYLE.md rule 7).

``SendProbe`` is a command: the glue sends one cloud probe (SIP OPTIONS or an HTTPS request to the sync API)
tagged with ``probe_id`` and reports its outcome back with ``probe_answered`` or ``probe_failed``.
``ModeChanged`` is an event: the glue writes it to the outbox, shows it on the NOC CLI and tells call
control, which reads :attr:`ModeMachine.routes_to_cloud` for every new call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from appliance.wan.mode import Mode


@dataclass(frozen=True, slots=True)
class SendProbe:
    """Send one probe to the cloud now; its answer must be reported under ``probe_id``."""

    probe_id: int


@dataclass(frozen=True, slots=True)
class ModeChanged:
    """The mode went from ``old`` to ``new`` at monotonic time ``at``; ``reason`` is for humans and logs."""

    old: Mode
    new: Mode
    reason: str
    at: float


Event: TypeAlias = SendProbe | ModeChanged
