"""RTP/RTCP port pair allocation from the media port range."""

from __future__ import annotations

import pytest

from appliance.media import PortAllocator, PortsExhaustedError


def test_pairs_are_even_rtp_ports_with_rtcp_inside_the_range() -> None:
    ports = PortAllocator(20001, 20008)  # odd start: first pair is 20002/20003; 20008 has no RTCP port left
    assert ports.capacity == 3
    assert [ports.allocate() for _ in range(3)] == [20002, 20004, 20006]
    assert ports.in_use == 3
    with pytest.raises(PortsExhaustedError):
        ports.allocate()


def test_allocation_is_round_robin_so_released_pairs_rest() -> None:
    ports = PortAllocator(20000, 20007)
    first = ports.allocate()
    ports.release(first)
    assert ports.allocate() == 20002  # not the pair just released
    assert ports.allocate() == 20004
    assert ports.allocate() == 20006
    assert ports.allocate() == 20000  # wrapped around to the free pair
    with pytest.raises(PortsExhaustedError):
        ports.allocate()
    ports.release(20004)
    assert ports.allocate() == 20004


def test_release_of_unallocated_port_is_a_bug() -> None:
    ports = PortAllocator(20000, 20001)
    with pytest.raises(ValueError, match="not allocated"):
        ports.release(20000)


@pytest.mark.parametrize(
    ("low", "high"), [(20000, 20000), (20001, 20002), (0, 10), (30000, 20000), (65535, 65535)]
)
def test_ranges_without_a_pair_are_refused(low: int, high: int) -> None:
    with pytest.raises(ValueError):
        PortAllocator(low, high)


def test_default_range_capacity() -> None:
    assert PortAllocator(20000, 29999).capacity == 5000
