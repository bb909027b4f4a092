"""RTP/RTCP port pair allocation from the media port range."""

from __future__ import annotations

import pytest

from appliance.calls.b2bua import MediaRefused
from appliance.calls.media_anchor import MediaAnchor
from appliance.media import PortAllocator, PortsExhaustedError
from appliance.media.control_events import SetLeg


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


def test_excluded_pairs_are_never_handed_out() -> None:
    ports = PortAllocator(20000, 20009)
    ports.exclude([20002, 20006])
    assert ports.excluded == {20002, 20006}
    assert [ports.allocate() for _ in range(3)] == [20000, 20004, 20008]
    with pytest.raises(PortsExhaustedError, match="2 unusable"):
        ports.allocate()
    ports.release(20004)
    assert ports.allocate() == 20004  # round-robin still walks past the excluded pairs


def test_exclusion_is_replaced_when_a_worker_reports_again() -> None:
    ports = PortAllocator(20000, 20005)
    ports.exclude([20000, 20002])
    assert ports.allocate() == 20004
    ports.exclude([])  # the restarted worker could bind them all
    assert {ports.allocate(), ports.allocate()} == {20000, 20002}


@pytest.mark.parametrize("port", [19998, 20001, 20010])
def test_excluding_a_port_that_is_no_pair_of_the_range_is_refused(port: int) -> None:
    ports = PortAllocator(20000, 20009)
    with pytest.raises(ValueError, match=str(port)):
        ports.exclude([20000, port])
    assert ports.excluded == frozenset()


def test_claimed_pairs_are_skipped_and_released_like_allocated_ones() -> None:
    ports = PortAllocator(20000, 20005)
    ports.claim(20000)
    assert ports.is_allocated(20000) and ports.allocate() == 20002
    with pytest.raises(ValueError, match="not a free pair"):
        ports.claim(20002)
    with pytest.raises(ValueError, match="not a free pair"):
        ports.claim(20001)
    ports.release(20000)
    assert not ports.is_allocated(20000)


def test_the_media_anchor_never_writes_a_pair_its_worker_could_not_bind_into_an_sdp() -> None:
    offer = (
        b"v=0\r\no=peer 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    )
    anchor = MediaAnchor(address="127.0.0.1", slices=[(30000, 30011)], worker_for=lambda call_id: 0)
    anchor.exclude(0, [30002, 30006])  # the worker's greeting: pairs another process held
    named = set()
    for n in range(3):
        # Sequential calls: the round-robin allocation walks the whole slice.
        to_b = anchor.sdp_from(f"c{n}", "a", offer)
        to_a = anchor.sdp_from(f"c{n}", "b", offer.replace(b"10.1.1.1", b"10.2.2.2"))
        named |= {int(body.split(b"m=audio ")[1].split(b" ")[0]) for body in (to_a, to_b)}
        assert {cmd.spec.local_port for _, cmd in anchor.commands if isinstance(cmd, SetLeg)} <= named
        anchor.commands.clear()
        anchor.release(f"c{n}")
    assert named == {30000, 30004, 30008, 30010}
    anchor.sdp_from("c-long", "a", offer)
    anchor.sdp_from("c-long-2", "a", offer)
    with pytest.raises(MediaRefused) as info:  # four usable pairs: two calls, not three
        anchor.sdp_from("c-third", "a", offer)
    assert info.value.status == 503
    with pytest.raises(ValueError, match="30001"):
        anchor.exclude(0, [30001])
