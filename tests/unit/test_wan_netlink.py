"""The rtnetlink translator, fed recorded messages (tests/vectors/wan) and hand-made edge cases."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.wan.events import AddressChanged, LinkChanged, RouteChanged
from appliance.wan.netlink import IFF_LOWER_UP, IFF_UP, flatten, has_carrier, translate

VECTORS = Path(__file__).parent.parent / "vectors" / "wan"


def recorded() -> list[dict[str, Any]]:
    """A veth pair in a namespace: dump, peer down, a default route, an IPv6 address, peer up, the IPv4
    address removed, the pair deleted (recorded with ``flatten`` and pruned to the attributes used)."""
    messages: list[dict[str, Any]] = json.loads((VECTORS / "netlink_veth_cut.json").read_text())
    return messages


def link(ifname: str, flags: int, operstate: str | None = "UP", event: str = "RTM_NEWLINK") -> dict[str, Any]:
    attrs: dict[str, Any] = {"IFLA_IFNAME": ifname}
    if operstate is not None:
        attrs["IFLA_OPERSTATE"] = operstate
    return {"event": event, "index": 7, "flags": flags, "family": 0, "attrs": attrs}


def test_recorded_carrier_sequence_of_the_watched_interface() -> None:
    events = [translate(m) for m in recorded()]
    wan0 = [(e.carrier, e.admin_up) for e in events if isinstance(e, LinkChanged) and e.ifname == "wan0"]
    # dump: up; peer down: no carrier (LOWERLAYERDOWN); peer up: carrier; pair deleted: down, then gone
    assert wan0 == [(True, True), (False, True), (True, True), (False, False), (False, False)]


def test_recorded_peer_taken_down_is_admin_down_without_carrier() -> None:
    events = [translate(m) for m in recorded()]
    peer = [e for e in events if isinstance(e, LinkChanged) and e.ifname == "wanpeer0"]
    assert peer[1] == LinkChanged("wanpeer0", 2, carrier=False, admin_up=False)
    # set up again while wan0 is still down: IFF_LOWER_UP but LOWERLAYERDOWN, so no carrier yet
    assert peer[2] == LinkChanged("wanpeer0", 2, carrier=False, admin_up=True)
    assert peer[3] == LinkChanged("wanpeer0", 2, carrier=True, admin_up=True)


def test_recorded_default_route_and_addresses() -> None:
    events = [translate(m) for m in recorded()]
    defaults = [e for e in events if isinstance(e, RouteChanged) and e.dst_len == 0]
    assert defaults == [RouteChanged(socket.AF_INET, "", 0, "10.77.1.2", 3, present=True)]
    v4 = [e for e in events if isinstance(e, AddressChanged) and e.family == socket.AF_INET]
    assert v4 == [AddressChanged(3, socket.AF_INET, "10.77.1.1", 24, present=False)]
    v6 = [e.address for e in events if isinstance(e, AddressChanged) and e.present]
    assert v6 == ["fd77::1"]


def test_recorded_local_and_multicast_tables_are_ignored() -> None:
    ignored = [m for m in recorded() if translate(m) is None]
    assert ignored and all(m["event"] in ("RTM_NEWROUTE", "RTM_DELROUTE") for m in ignored)
    assert {m["attrs"]["RTA_TABLE"] for m in ignored} == {255}


def test_carrier_needs_lower_up_and_an_operational_state() -> None:
    assert has_carrier(IFF_UP | IFF_LOWER_UP, "UP")
    assert has_carrier(IFF_UP | IFF_LOWER_UP, "UNKNOWN")  # drivers without operstate (tun, some PPP)
    assert has_carrier(IFF_UP | IFF_LOWER_UP, None)
    assert not has_carrier(IFF_UP | IFF_LOWER_UP, "LOWERLAYERDOWN")
    assert not has_carrier(IFF_UP | IFF_LOWER_UP, "DORMANT")
    assert not has_carrier(IFF_UP, "UP")
    assert not has_carrier(0, None)


def test_link_without_operstate_uses_the_flags() -> None:
    assert translate(link("eth1", IFF_UP | IFF_LOWER_UP, None)) == LinkChanged("eth1", 7, True, True)
    assert translate(link("eth1", IFF_UP, None)) == LinkChanged("eth1", 7, False, True)


def test_deleted_link_has_no_carrier_whatever_its_flags() -> None:
    message = link("eth1", IFF_UP | IFF_LOWER_UP, "UP", event="RTM_DELLINK")
    assert translate(message) == LinkChanged("eth1", 7, carrier=False, admin_up=False)


def test_point_to_point_address_is_the_local_one() -> None:
    message = {
        "event": "RTM_NEWADDR",
        "index": 4,
        "family": socket.AF_INET,
        "prefixlen": 32,
        "attrs": {"IFA_ADDRESS": "10.77.9.2", "IFA_LOCAL": "10.77.9.1"},
    }
    assert translate(message) == AddressChanged(4, socket.AF_INET, "10.77.9.1", 32, present=True)


def test_route_table_from_the_attribute_wins_over_the_header() -> None:
    base = {"event": "RTM_NEWROUTE", "family": socket.AF_INET, "dst_len": 0, "table": 252, "type": 1}
    assert translate({**base, "attrs": {"RTA_TABLE": 1000, "RTA_GATEWAY": "10.77.1.2"}}) is None
    main = translate({**base, "attrs": {"RTA_TABLE": 254, "RTA_GATEWAY": "10.77.1.2", "RTA_OIF": 3}})
    assert main == RouteChanged(socket.AF_INET, "", 0, "10.77.1.2", 3, present=True)


def test_non_unicast_routes_are_ignored() -> None:
    message = {"event": "RTM_NEWROUTE", "family": 2, "dst_len": 32, "table": 254, "type": 6, "attrs": {}}
    assert translate(message) is None  # RTN_PROHIBIT


def test_messages_of_other_kinds_or_missing_fields_are_ignored() -> None:
    assert translate({"event": "RTM_NEWNEIGH", "attrs": {}}) is None
    assert translate({"event": "RTM_NEWLINK", "index": 1, "flags": 1}) is None  # no name
    assert (
        translate({"event": "RTM_NEWLINK", "index": "1", "flags": 1, "attrs": {"IFLA_IFNAME": "x"}}) is None
    )
    assert translate({"event": "RTM_NEWADDR", "index": 1, "family": 2, "attrs": {"IFA_ADDRESS": "x"}}) is None
    assert translate({"event": "RTM_NEWROUTE", "table": 254, "attrs": {}}) is None
    assert translate({}) is None


class FakeMessage(dict[str, Any]):
    """The parts of a pyroute2 nlmsg that flatten reads: item access and ``attrs`` as name/value pairs."""


def test_flatten_keeps_header_fields_and_scalar_attributes() -> None:
    msg = FakeMessage(
        event="RTM_NEWLINK",
        index=3,
        flags=IFF_UP,
        family=0,
        header={"type": 16},
        attrs=[("IFLA_IFNAME", "wan0"), ("IFLA_STATS", {"rx": 1}), ("IFLA_IFNAME", "shadow")],
    )
    assert flatten(msg) == {
        "event": "RTM_NEWLINK",
        "index": 3,
        "flags": IFF_UP,
        "family": 0,
        "attrs": {"IFLA_IFNAME": "wan0"},
    }


scalars = st.one_of(st.none(), st.integers(-5, 1 << 20), st.text(max_size=8), st.booleans())


@settings(max_examples=300)
@given(
    event=st.sampled_from(
        ["RTM_NEWLINK", "RTM_DELLINK", "RTM_NEWADDR", "RTM_DELADDR", "RTM_NEWROUTE", "RTM_DELROUTE", "x"]
    ),
    fields=st.dictionaries(
        st.sampled_from(["index", "flags", "family", "prefixlen", "dst_len", "table"]), scalars
    ),
    attrs=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(
                [
                    "IFLA_IFNAME",
                    "IFLA_OPERSTATE",
                    "IFA_ADDRESS",
                    "IFA_LOCAL",
                    "RTA_TABLE",
                    "RTA_DST",
                    "RTA_GATEWAY",
                    "RTA_OIF",
                ]
            ),
            scalars,
        ),
    ),
)
def test_translate_is_total(event: str, fields: dict[str, Any], attrs: dict[str, Any] | None) -> None:
    result = translate({"event": event, **fields, "attrs": attrs})
    assert result is None or isinstance(result, (LinkChanged, AddressChanged, RouteChanged))


def test_the_watcher_runs_on_uvloop_the_control_process_loop() -> None:
    """The control process runs on uvloop, which refuses AF_NETLINK datagram endpoints: the watcher must
    read its own netlink sockets. The initial dump delivers at least the loopback interface."""
    import uvloop

    from appliance.wan.netlink import NetlinkWatcher

    async def watch() -> list[object]:
        events: list[object] = []
        watcher = NetlinkWatcher(on_event=events.append)
        await watcher.start()
        await watcher.stop()
        return events

    events = uvloop.run(watch())
    assert any(isinstance(e, LinkChanged) and e.ifname == "lo" and e.carrier for e in events)
