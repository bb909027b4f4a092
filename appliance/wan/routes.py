"""Applies the uplink selector's :class:`~appliance.wan.events.UseUplink` to the kernel's main table.

Only where configured to (``[wan] failover = true``): ``make run`` and the tests that do not ask for it
never touch the host's routes (DESIGN.md §5.1). Applying a command first replaces the default route of the
chosen uplink's family (via its gateway, on its interface, with its metric) and then deletes the default
routes via the other uplinks, so there is no moment without a default route. A route via another uplink
that is already gone is fine; any other refusal raises :class:`~appliance.wan.errors.RouteError`.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Sequence
from typing import Any, Final

from appliance.wan.errors import RouteError
from appliance.wan.events import UseUplink
from appliance.wan.uplinks import Uplink

_LOG: Final = logging.getLogger(__name__)
# The route (ESRCH) or the interface (ENODEV) is gone already: what a delete wanted.
_ALREADY_GONE: Final = frozenset({errno.ESRCH, errno.ENODEV, errno.ENOENT})


def default_route(gateway: str) -> tuple[int, str]:
    """The address family and destination of a default route via ``gateway``."""
    if ipaddress.ip_address(gateway).version == 6:
        return socket.AF_INET6, "::/0"
    return socket.AF_INET, "0.0.0.0/0"


class RouteApplier:
    """Moves the default route between ``uplinks``; a no-op unless ``enabled``."""

    def __init__(self, uplinks: Sequence[Uplink], *, enabled: bool) -> None:
        self._uplinks = {u.name: u for u in uplinks}
        self.enabled = enabled

    async def apply(self, command: UseUplink) -> bool:
        """Make the default route follow ``command``; False when failover is off and nothing was done."""
        if not self.enabled:
            _LOG.info("failover off: default route left alone (uplink %s wanted)", command.name)
            return False
        from pyroute2 import AsyncIPRoute  # type: ignore[import-untyped]  # only where routes are applied

        chosen = self._uplinks.get(command.name, Uplink(command.name, command.ifname, command.gateway))
        family, dst = default_route(chosen.gateway)
        async with AsyncIPRoute() as ipr:
            index = await self._index(ipr, chosen.ifname)
            try:
                await ipr.route(
                    "replace",
                    family=family,
                    dst=dst,
                    gateway=chosen.gateway,
                    oif=index,
                    priority=chosen.metric,
                )
            except Exception as exc:
                raise RouteError(f"default route via {chosen.gateway} on {chosen.ifname}: {exc}") from exc
            for other in self._uplinks.values():
                if other.name != chosen.name and default_route(other.gateway)[0] == family:
                    await self._delete(ipr, other, dst)
        _LOG.info("default route via %s on %s (uplink %s)", chosen.gateway, chosen.ifname, chosen.name)
        return True

    @staticmethod
    async def _index(ipr: Any, ifname: str) -> int:
        found = await ipr.link_lookup(ifname=ifname)
        if not found:
            raise RouteError(f"no interface {ifname!r}")
        return int(found[0])

    @staticmethod
    async def _delete(ipr: Any, uplink: Uplink, dst: str) -> None:
        family, _ = default_route(uplink.gateway)
        try:
            await ipr.route("del", family=family, dst=dst, gateway=uplink.gateway, priority=uplink.metric)
        except Exception as exc:
            if getattr(exc, "code", None) in _ALREADY_GONE:
                return
            raise RouteError(f"removing the default route via {uplink.gateway}: {exc}") from exc
