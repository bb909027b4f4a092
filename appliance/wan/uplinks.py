"""Which WAN uplink carries the default route: a primary, a backup, and a hold-down before going back.

Theory of operation. The selector is sans-I/O: the glue reports carrier per interface (from netlink, see
:mod:`appliance.wan.netlink`) and the outcome of each cloud probe round, which always leaves over the
active uplink; the selector answers with :class:`~appliance.wan.events.UseUplink` commands (the glue
replaces the default route, :mod:`appliance.wan.routes`) and :class:`~appliance.wan.events.UplinkChanged`
events (outbox, metrics). It starts on the primary and says so with one command at construction, so the
route is in a known state from the start. Carrier of both uplinks is taken as present until reported.

States (:class:`UplinkState`, allowed moves in :data:`TRANSITIONS`):

* PRIMARY — the default route uses the primary. Carrier loss on the primary switches to the backup at once
  when the backup has carrier; ``failover_after`` consecutive failed probe rounds switch likewise. With
  no carrier on the backup there is nothing better, and the selector stays until the backup gets carrier.
* BACKUP — on the backup, the primary has no carrier. Carrier on the primary starts REVERTING, or goes
  back to the primary at once if the backup has lost its own carrier meanwhile.
* REVERTING — on the backup, the primary has carrier and must keep it for ``revert_after`` seconds before
  the route goes back (the hold-down: a flapping primary never gets traffic back, each loss of carrier
  restarts the wait from BACKUP). A switch made because probes failed while the primary kept carrier
  enters REVERTING directly, its wait counted from the switch. Carrier loss or ``failover_after``
  failed probe rounds on the backup go back to the primary at once, since it has carrier.

Probe failures count only against the uplink that was active when the probe was sent; the count starts
again at every switch and at every answered round. After a switch made for failed probes, failed probes
switch no more until a round is answered or a carrier changes: rounds failing on both uplinks mean the
cloud is down, not an uplink, and switching back and forth would only disturb calls.

Every switch goes through one guarded setter that checks the table, logs ``OLD -> NEW`` and queues the
command and the event.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Final

from appliance.wan.errors import ModeConfigError, ModeError
from appliance.wan.events import UplinkChanged, UplinkEvent, UseUplink

_LOG: Final = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Uplink:
    """One WAN uplink: the default route via ``gateway`` on ``ifname`` with route priority ``metric``."""

    name: str
    ifname: str
    gateway: str
    metric: int = 0


class UplinkState(Enum):
    PRIMARY = "primary"
    BACKUP = "backup"
    REVERTING = "reverting"


TRANSITIONS: Final[dict[UplinkState, frozenset[UplinkState]]] = {
    # carrier lost on the primary; failed probes with the primary's carrier still up
    UplinkState.PRIMARY: frozenset({UplinkState.BACKUP, UplinkState.REVERTING}),
    # the primary's carrier came back (at once to PRIMARY when the backup has none)
    UplinkState.BACKUP: frozenset({UplinkState.REVERTING, UplinkState.PRIMARY}),
    # hold-down over, or the backup failed; the primary lost carrier again
    UplinkState.REVERTING: frozenset({UplinkState.PRIMARY, UplinkState.BACKUP}),
}


def check_transition(old: UplinkState, new: UplinkState) -> None:
    """Raise :class:`~appliance.wan.errors.ModeError` unless ``old -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[old]:
        raise ModeError(f"illegal uplink transition {old.name} -> {new.name}")


class UplinkSelector:
    """Primary/backup selection; every input takes the monotonic ``now``.

    The glue drains :meth:`next_event` after every call and keeps one timer at :meth:`get_timer`.
    """

    def __init__(
        self,
        *,
        primary: Uplink,
        backup: Uplink,
        failover_after: int,
        revert_after: float,
        now: float,
        logger: logging.Logger | None = None,
    ) -> None:
        if primary.ifname == backup.ifname or primary.name == backup.name:
            raise ModeConfigError("the primary and the backup uplink need distinct names and interfaces")
        if failover_after < 1:
            raise ModeConfigError(f"failover_after must be >= 1, not {failover_after!r}")
        if not revert_after >= 0:
            raise ModeConfigError(f"revert_after must be >= 0, not {revert_after!r}")
        self.primary = primary
        self.backup = backup
        self._failover_after = failover_after
        self._revert_after = revert_after
        self._log = logger if logger is not None else _LOG
        self._state = UplinkState.PRIMARY
        self._carrier = {primary.ifname: True, backup.ifname: True}
        self._failures = 0
        # Set by a switch made for failed probes, cleared by the next answer: while set, failed probes
        # switch no more, since failures on both uplinks mean the cloud is down, not an uplink.
        self._unproven = False
        self._revert_at: float | None = None
        self._events: deque[UplinkEvent] = deque()
        self._announce(None, primary, "start", now)

    # -- state ------------------------------------------------------------------------------------------

    @property
    def state(self) -> UplinkState:
        return self._state

    @property
    def active(self) -> Uplink:
        """The uplink the default route uses (or is about to, once the last command is applied)."""
        return self.primary if self._state is UplinkState.PRIMARY else self.backup

    def carrier(self, ifname: str) -> bool:
        return self._carrier.get(ifname, False)

    def next_event(self) -> UplinkEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The end of the hold-down while REVERTING, else None."""
        return self._revert_at

    # -- inputs -----------------------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        if self._revert_at is not None and now >= self._revert_at:
            reason = f"carrier up on {self.primary.ifname} for {self._revert_after:g} s"
            self._set_state(UplinkState.PRIMARY, now, reason)

    def carrier_changed(self, ifname: str, carrier: bool, now: float) -> None:
        """Carrier of ``ifname`` is now ``carrier``; other interfaces are ignored."""
        if ifname not in self._carrier or self._carrier[ifname] == carrier:
            return
        self.handle_timer(now)
        self._carrier[ifname] = carrier
        self._unproven = False
        primary = ifname == self.primary.ifname
        other = self._carrier[self.backup.ifname if primary else self.primary.ifname]
        state = self._state
        if primary and not carrier:
            if state is UplinkState.PRIMARY and other:
                self._set_state(UplinkState.BACKUP, now, f"carrier lost on {ifname}")
            elif state is UplinkState.REVERTING:
                self._set_state(UplinkState.BACKUP, now, f"carrier lost again on {ifname}")
        elif primary and state is UplinkState.BACKUP:
            if other:
                self._set_state(UplinkState.REVERTING, now, f"carrier back on {ifname}")
            else:
                self._set_state(UplinkState.PRIMARY, now, f"carrier back on {ifname}, none on the backup")
        elif not primary and not carrier and state is UplinkState.REVERTING:
            self._set_state(UplinkState.PRIMARY, now, f"carrier lost on {ifname}")
        elif not primary and carrier and state is UplinkState.PRIMARY and not other:
            self._set_state(UplinkState.BACKUP, now, f"carrier on {ifname}, none on the primary")

    def probe_answered(self, now: float) -> None:
        """A probe round over the active uplink was answered."""
        self.handle_timer(now)
        self._failures = 0
        self._unproven = False

    def probe_failed(self, now: float, reason: str) -> None:
        """A probe round over the active uplink failed (error, refusal or no answer in time)."""
        self.handle_timer(now)
        self._failures += 1
        if self._failures < self._failover_after or self._unproven:
            return
        why = f"{self._failures} probe rounds failed on {self.active.name}, last: {reason}"
        if self._state is UplinkState.PRIMARY and self._carrier[self.backup.ifname]:
            self._set_state(UplinkState.REVERTING, now, why)
            self._unproven = True
        elif self._state is UplinkState.REVERTING:
            self._set_state(UplinkState.PRIMARY, now, why)
            self._unproven = True

    # -- internals --------------------------------------------------------------------------------------

    def _set_state(self, new: UplinkState, now: float, reason: str) -> None:
        """The one guarded setter: check the table, log ``OLD -> NEW``, queue a switch if there is one."""
        old = self._state
        check_transition(old, new)
        self._log.info("uplink %s -> %s: %s", old.name, new.name, reason)
        before = self.active
        self._state = new
        self._revert_at = now + self._revert_after if new is UplinkState.REVERTING else None
        if self.active is not before:
            self._failures = 0
            self._announce(before, self.active, reason, now)

    def _announce(self, old: Uplink | None, new: Uplink, reason: str, now: float) -> None:
        self._events.append(UseUplink(new.name, new.gateway, new.ifname))
        self._events.append(UplinkChanged(old.name if old is not None else None, new.name, reason, now))
