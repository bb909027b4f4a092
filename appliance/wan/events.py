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


# -- netlink (appliance.wan.netlink) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """An interface's state as the kernel reported it (RTM_NEWLINK/RTM_DELLINK, or the start-up dump).

    ``carrier`` is the lower layer being up (IFF_LOWER_UP, with an operational state of UP or UNKNOWN);
    ``admin_up`` is IFF_UP. A deleted interface is reported with both False.
    """

    ifname: str
    index: int
    carrier: bool
    admin_up: bool


@dataclass(frozen=True, slots=True)
class AddressChanged:
    """An address was added to (``present``) or removed from interface ``index``."""

    index: int
    family: int
    address: str
    prefixlen: int
    present: bool


@dataclass(frozen=True, slots=True)
class RouteChanged:
    """A route in the main table was added (``present``) or removed; ``dst`` is "" for a default route."""

    family: int
    dst: str
    dst_len: int
    gateway: str | None
    oif: int | None
    present: bool


NetlinkEvent: TypeAlias = LinkChanged | AddressChanged | RouteChanged


# -- uplink selection (appliance.wan.uplinks) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UseUplink:
    """Command: make the default route go via ``gateway`` on ``ifname`` (the uplink called ``name``)."""

    name: str
    gateway: str
    ifname: str


@dataclass(frozen=True, slots=True)
class UplinkChanged:
    """Event: the active uplink went from ``old`` (None at start) to ``new`` at monotonic time ``at``."""

    old: str | None
    new: str
    reason: str
    at: float


UplinkEvent: TypeAlias = UseUplink | UplinkChanged
