"""Survivable mode: whether new calls go to the cloud or are answered on the appliance (DESIGN.md §4).

Theory of operation. The machine holds one of four modes and moves between them on evidence about the path
to the cloud contact centre:

* ONLINE — the cloud answers probes; new calls go to the cloud.
* SUSPECT — a probe was missed, a cloud leg's media timed out or a WAN link lost carrier. New calls still try
  the cloud first (call control fails them over to local destinations), because one lost probe is not an
  outage. ``probe_failures`` consecutive misses (the one that left ONLINE included) make it SURVIVABLE; one
  answer makes it ONLINE again.
* SURVIVABLE — the cloud is taken to be unreachable; new calls are answered locally (IVR, local agents).
  An answer starts RECOVERING.
* RECOVERING — the cloud answers again, but new calls stay local until the mode has held for ``hold_down``
  seconds *and* ``probe_successes`` consecutive probes were answered (the answer that started recovery
  counts), so a flapping WAN does not bounce callers between cloud and local. Any miss or carrier loss
  sends it back to SURVIVABLE.

Boot. With a cloud configured the machine starts SURVIVABLE, on *probation*: until the WAN has proven
itself, callers are better answered by the local IVR than sent into a WAN that may be dead. The first probe
goes out at construction. If a probe is answered before ``probe_failures`` consecutive misses, the machine
goes straight to ONLINE without the hold-down, because the hold-down guards against a WAN that just
failed, and a boot has no failure history (and no local backlog) to guard against. Once probation has seen
``probe_failures`` misses, recovery follows the ordinary path through RECOVERING. Without a cloud the
machine is SURVIVABLE for good and never probes (DESIGN.md §5.1).

Probes. One probe is outstanding at a time; it fails when ``probe_failed`` is reported or when no answer
came within ``probe_timeout`` (the machine keeps that deadline itself). In ONLINE probes go out every
``probe_interval``; in every other mode every ``max(probe_interval / 2, probe_timeout)``, because there the
time to notice a change is time callers spend on the wrong path (a dead cloud in SUSPECT, local answering
of a healthy cloud in SURVIVABLE and RECOVERING), while in ONLINE the probes only back up carrier events
and media timeouts and cost WAN bandwidth and cloud load across every PoP. The lower bound keeps at most
one probe outstanding. A link event sends a probe at once and supersedes the outstanding one: that probe
left over the path as it was before the event, so its answer proves nothing now. Answers and failures for
any probe other than the outstanding one are ignored.

Other evidence. Carrier loss on a WAN link (``link_down``) makes ONLINE SUSPECT and RECOVERING SURVIVABLE
at once, without counting as a miss: the appliance may have another uplink, and the probe it triggers
decides. When the glue knows no WAN link has carrier left (``no_path``), every mode becomes SURVIVABLE at
once: there is no path for a probe to prove. ``link_up`` proves nothing about the cloud and only triggers
a probe, and so does ``path_changed`` (the default route moved to another uplink). A media timeout on a
cloud leg counts as one missed probe, but at most once per probe sent: one WAN fault times out every cloud leg
at the same moment, and that is one observation, not one per call.

Operator override. ``force`` pins the mode to ONLINE or SURVIVABLE (NOC CLI) until ``clear_force``; while
pinned the machine neither probes nor moves. Clearing keeps the current mode and sends a probe at once,
so a pin to SURVIVABLE is left through RECOVERING and its hold-down like any outage.

Detection time. Carrier loss is seen as soon as netlink reports it (milliseconds). A silent drop (packets
lost, carrier kept) in ONLINE is noticed by probes alone; in the worst case (the drop right after an
answer) the last needed miss lands at ``probe_interval + (probe_failures - 1) * fast + probe_timeout``
after the drop, ``fast = max(probe_interval / 2, probe_timeout)``. With ``probe_interval = 1``,
``probe_timeout = 0.5`` and ``probe_failures = 2`` that is 1 + 0.5 + 0.5 = 2 s (2.5 s with 3 failures);
with the defaults (5 s, 2 s, 3) it is 5 + 2 * 2.5 + 2 = 12 s. A media timeout on a cloud leg
(``[cloud] media_timeout``) counts as a miss and can shorten it.

Every transition goes through one guarded setter that checks the table :data:`TRANSITIONS`, logs
``OLD -> NEW`` and queues a :class:`ModeChanged` event.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Final, TypeAlias

from appliance.wan.errors import ModeConfigError, ModeError
from appliance.wan.events import Event, ModeChanged, SendProbe

_LOG: Final = logging.getLogger(__name__)


class Mode(Enum):
    ONLINE = "online"
    SUSPECT = "suspect"
    SURVIVABLE = "survivable"
    RECOVERING = "recovering"


# Allowed transitions. Entries reached only by an operator override or by boot probation say so.
TRANSITIONS: Final[dict[Mode, frozenset[Mode]]] = {
    # a miss or carrier loss; carrier lost on the last WAN link, or forced SURVIVABLE
    Mode.ONLINE: frozenset({Mode.SUSPECT, Mode.SURVIVABLE}),
    # an answer; probe_failures consecutive misses or forced SURVIVABLE
    Mode.SUSPECT: frozenset({Mode.ONLINE, Mode.SURVIVABLE}),
    # an answer; ONLINE only on probation after boot or when forced
    Mode.SURVIVABLE: frozenset({Mode.RECOVERING, Mode.ONLINE}),
    # hold-down and probe_successes done, or forced; a miss, carrier loss or forced SURVIVABLE
    Mode.RECOVERING: frozenset({Mode.ONLINE, Mode.SURVIVABLE}),
}

# The modes an operator may pin: SUSPECT and RECOVERING describe evidence being gathered, not a choice.
FORCEABLE: Final = frozenset({Mode.ONLINE, Mode.SURVIVABLE})

_CLOUD_MODES: Final = frozenset({Mode.ONLINE, Mode.SUSPECT})

ProbeObserver: TypeAlias = Callable[[int, bool, str, float], None]
"""Told ``(probe_id, answered, reason, now)`` for every probe that counted: answered, failed or timed out
(not for superseded ones, nor for answers that came too late)."""


def check_transition(old: Mode, new: Mode) -> None:
    """Raise :class:`ModeError` unless ``old -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[old]:
        raise ModeError(f"illegal mode transition {old.name} -> {new.name}")


class ModeMachine:
    """The survivable-mode state machine; sans-I/O, every input takes the monotonic ``now``.

    The glue drains :meth:`next_event` after every call (sending a probe for each :class:`SendProbe`,
    recording each :class:`ModeChanged`) and keeps one timer armed at :meth:`get_timer`, calling
    :meth:`handle_timer` when it fires. Inputs first process every deadline up to ``now``, so an answer
    reported at or after its probe's deadline is late however the timer and the answer were ordered.
    """

    def __init__(
        self,
        *,
        cloud_configured: bool,
        probe_interval: float,
        probe_timeout: float,
        probe_failures: int,
        probe_successes: int,
        hold_down: float,
        now: float,
        logger: logging.Logger | None = None,
    ) -> None:
        if not probe_timeout > 0:
            raise ModeConfigError(f"probe_timeout must be > 0, not {probe_timeout!r}")
        if not probe_interval >= probe_timeout:
            raise ModeConfigError(
                f"probe_interval ({probe_interval!r}) must be >= probe_timeout ({probe_timeout!r})"
            )
        if probe_failures < 1 or probe_successes < 1:
            raise ModeConfigError("probe_failures and probe_successes must be >= 1")
        if not hold_down >= 0:
            raise ModeConfigError(f"hold_down must be >= 0, not {hold_down!r}")
        self._cloud = cloud_configured
        self._interval = probe_interval
        self._fast_interval = max(probe_interval / 2, probe_timeout)
        self._timeout = probe_timeout
        self._failures_needed = probe_failures
        self._successes_needed = probe_successes
        self._hold_down = hold_down
        self._log = logger if logger is not None else _LOG

        self._mode = Mode.SURVIVABLE
        self._events: deque[Event] = deque()
        self._forced: Mode | None = None
        self._probation = cloud_configured
        self._misses = 0  # consecutive misses since the last answer
        self._answers = 0  # consecutive answers since the last miss
        self._recovering_since: float | None = None
        self._next_probe_id = 1
        self._outstanding: int | None = None
        self._deadline: float | None = None
        self._last_sent = now
        self._media_miss_probe: int | None = None  # probe id a media timeout was last counted against
        self._down_links: set[str] = set()
        self._probe_observer: ProbeObserver | None = None
        if cloud_configured:
            self._send_probe(now)

    # -- state ------------------------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def routes_to_cloud(self) -> bool:
        """Whether new calls try the cloud first: in ONLINE, and in SUSPECT with failover to local."""
        return self._mode in _CLOUD_MODES

    @property
    def forced(self) -> Mode | None:
        """The mode an operator pinned, or None."""
        return self._forced

    @property
    def on_probation(self) -> bool:
        """Whether the machine is still in its boot probation (see the module docstring)."""
        return self._probation

    @property
    def outstanding_probe(self) -> int | None:
        """The id of the probe whose answer would count, or None."""
        return self._outstanding

    @property
    def down_links(self) -> frozenset[str]:
        """WAN interfaces reported without carrier."""
        return frozenset(self._down_links)

    def next_event(self) -> Event | None:
        """The next queued command or event, or None when the queue is empty."""
        return self._events.popleft() if self._events else None

    def set_probe_observer(self, observer: ProbeObserver | None) -> None:
        """Have ``observer`` told the outcome of every probe that counts (the uplink selector needs them)."""
        self._probe_observer = observer

    # -- timers -----------------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline (probe timeout, next probe, end of hold-down), or None."""
        if not self._cloud or self._forced is not None:
            return None
        timer = self._deadline if self._deadline is not None else self._probe_due()
        end = self._hold_down_end()
        if end is not None and self._answers >= self._successes_needed:
            timer = min(timer, end)
        return timer

    def handle_timer(self, now: float) -> None:
        """Process every deadline up to ``now``: probe timeout, end of hold-down, next probe."""
        if not self._cloud or self._forced is not None:
            return
        if self._deadline is not None and now >= self._deadline:
            probe_id = self._outstanding
            self._conclude()
            reason = f"probe {probe_id} unanswered after {self._timeout:g} s"
            self._observe(probe_id, False, reason, now)
            self._miss(now, reason)
        self._check_recovered(now)
        if self._outstanding is None and now >= self._probe_due():
            self._send_probe(now)

    # -- inputs -----------------------------------------------------------------------------------------

    def probe_answered(self, probe_id: int, now: float) -> None:
        """The cloud answered probe ``probe_id``; ignored unless it is the outstanding probe."""
        self.handle_timer(now)
        if probe_id != self._outstanding or self._outstanding is None:
            self._log.debug("ignoring answer to probe %d (outstanding: %s)", probe_id, self._outstanding)
            return
        self._conclude()
        self._observe(probe_id, True, "answered", now)
        self._answer(now, f"probe {probe_id} answered")

    def probe_failed(self, probe_id: int, now: float, reason: str) -> None:
        """Probe ``probe_id`` failed before its deadline (error response, refused, no route)."""
        self.handle_timer(now)
        if probe_id != self._outstanding or self._outstanding is None:
            self._log.debug("ignoring failure of probe %d (outstanding: %s)", probe_id, self._outstanding)
            return
        self._conclude()
        self._observe(probe_id, False, reason, now)
        self._miss(now, f"probe {probe_id} failed: {reason}")

    def link_down(self, now: float, ifname: str, *, no_path: bool = False) -> None:
        """A WAN link lost carrier: ONLINE becomes SUSPECT, RECOVERING SURVIVABLE; a probe goes out.

        ``no_path``: no WAN link has carrier any more, so no probe can get through; ONLINE and SUSPECT
        become SURVIVABLE at once instead of after ``probe_failures`` misses.
        """
        self._down_links.add(ifname)
        if not self._cloud or self._forced is not None:
            return
        self.handle_timer(now)
        reason = f"carrier lost on {ifname}" + (", no WAN link left" if no_path else "")
        self._answers = 0
        if no_path and self._mode is not Mode.SURVIVABLE:
            self._set_mode(Mode.SURVIVABLE, now, reason)
        elif self._mode is Mode.ONLINE:
            self._set_mode(Mode.SUSPECT, now, reason)
        elif self._mode is Mode.RECOVERING:
            self._set_mode(Mode.SURVIVABLE, now, reason)
        self._send_probe(now)

    def link_up(self, now: float, ifname: str) -> None:
        """A WAN link regained carrier: a probe goes out at once, the mode waits for its answer."""
        self._down_links.discard(ifname)
        if not self._cloud or self._forced is not None:
            return
        self.handle_timer(now)
        self._send_probe(now)

    def path_changed(self, now: float, reason: str) -> None:
        """The route to the cloud changed (another uplink): a probe goes out at once over the new path,
        superseding the outstanding one, which left over the old path."""
        if not self._cloud or self._forced is not None:
            return
        self.handle_timer(now)
        self._log.info("path to the cloud changed: %s", reason)
        self._send_probe(now)

    def cloud_leg_media_timeout(self, now: float) -> None:
        """Media stopped on a call leg to the cloud: one miss, at most once per probe sent."""
        if not self._cloud or self._forced is not None:
            return
        self.handle_timer(now)
        current = self._next_probe_id - 1
        if self._media_miss_probe == current:
            return
        self._media_miss_probe = current
        self._miss(now, "media timeout on a cloud leg")

    def force(self, mode: Mode, now: float, reason: str) -> None:
        """Pin the mode for an operator until :meth:`clear_force`; raises :class:`ModeError` if refused."""
        if mode not in FORCEABLE:
            raise ModeError(f"cannot force {mode.name}: only ONLINE or SURVIVABLE can be forced")
        if mode is Mode.ONLINE and not self._cloud:
            raise ModeError("cannot force ONLINE: no cloud is configured")
        self._forced = mode
        self._probation = False
        self._conclude()
        self._misses = self._answers = 0
        self._log.info("mode forced to %s: %s", mode.name, reason)
        if mode is not self._mode:
            self._set_mode(mode, now, f"forced by operator: {reason}")

    def clear_force(self, now: float) -> None:
        """Release an operator pin: the machine keeps its mode and probes at once."""
        if self._forced is None:
            return
        self._log.info("mode no longer forced (%s)", self._mode.name)
        self._forced = None
        self._misses = self._answers = 0
        if self._cloud:
            self._send_probe(now)

    # -- internals --------------------------------------------------------------------------------------

    def _probe_due(self) -> float:
        return self._last_sent + (self._interval if self._mode is Mode.ONLINE else self._fast_interval)

    def _hold_down_end(self) -> float | None:
        if self._recovering_since is None:
            return None
        return self._recovering_since + self._hold_down

    def _send_probe(self, now: float) -> None:
        if self._outstanding is not None:
            self._log.debug("probe %d superseded", self._outstanding)
        probe_id = self._next_probe_id
        self._next_probe_id += 1
        self._outstanding = probe_id
        self._deadline = now + self._timeout
        self._last_sent = now
        self._events.append(SendProbe(probe_id))

    def _observe(self, probe_id: int | None, answered: bool, reason: str, now: float) -> None:
        if self._probe_observer is not None and probe_id is not None:
            self._probe_observer(probe_id, answered, reason, now)

    def _conclude(self) -> None:
        self._outstanding = None
        self._deadline = None

    def _miss(self, now: float, reason: str) -> None:
        self._answers = 0
        self._misses += 1
        enough = self._misses >= self._failures_needed
        if self._mode is Mode.ONLINE:
            self._set_mode(Mode.SUSPECT, now, reason)
            if enough:
                self._set_mode(Mode.SURVIVABLE, now, f"{self._misses} consecutive misses, last: {reason}")
        elif self._mode is Mode.SUSPECT:
            if enough:
                self._set_mode(Mode.SURVIVABLE, now, f"{self._misses} consecutive misses, last: {reason}")
        elif self._mode is Mode.RECOVERING:
            self._set_mode(Mode.SURVIVABLE, now, reason)
        elif self._probation and enough:
            self._probation = False
            self._log.info(
                "boot probation over after %d misses; recovery will need the hold-down", self._misses
            )

    def _answer(self, now: float, reason: str) -> None:
        self._misses = 0
        self._answers += 1
        if self._mode is Mode.SUSPECT:
            self._set_mode(Mode.ONLINE, now, reason)
        elif self._mode is Mode.SURVIVABLE:
            if self._probation:
                self._set_mode(Mode.ONLINE, now, f"{reason}, first after boot")
            else:
                self._set_mode(Mode.RECOVERING, now, reason)
                self._check_recovered(now)
        elif self._mode is Mode.RECOVERING:
            self._check_recovered(now)

    def _check_recovered(self, now: float) -> None:
        end = self._hold_down_end()
        if end is None or now < end or self._answers < self._successes_needed:
            return
        self._set_mode(
            Mode.ONLINE,
            now,
            f"{self._answers} consecutive answers and {self._hold_down:g} s hold-down elapsed",
        )

    def _set_mode(self, new: Mode, now: float, reason: str) -> None:
        """The one guarded setter: check the table, log ``OLD -> NEW``, queue the event."""
        old = self._mode
        check_transition(old, new)
        self._log.info(
            "%s -> %s: %s", old.name, new.name, reason, extra={"old_mode": old.name, "new_mode": new.name}
        )
        self._mode = new
        self._probation = False
        self._recovering_since = now if new is Mode.RECOVERING else None
        self._events.append(ModeChanged(old, new, reason, now))
