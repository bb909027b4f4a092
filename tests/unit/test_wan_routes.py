"""The route applier's parts that need no kernel: failover off leaves routes alone; families."""

from __future__ import annotations

import socket

from appliance.wan.events import UseUplink
from appliance.wan.routes import RouteApplier, default_route
from appliance.wan.uplinks import Uplink


async def test_failover_off_never_touches_the_routes() -> None:
    applier = RouteApplier([Uplink("fibre", "no-such-if0", "10.77.1.2")], enabled=False)
    assert await applier.apply(UseUplink("fibre", "10.77.1.2", "no-such-if0")) is False


def test_default_route_family_follows_the_gateway() -> None:
    assert default_route("10.77.1.2") == (socket.AF_INET, "0.0.0.0/0")
    assert default_route("fd77::1") == (socket.AF_INET6, "::/0")
