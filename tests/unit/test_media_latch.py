"""Symmetric latching: learning, strict mode, re-latching on NAT rebinding, and hijack resistance."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media.latch import (
    Decision,
    Latch,
    LatchState,
    LatchStateError,
    StreamLatches,
    rtcp_expected,
)

SDP = ("127.0.0.1", 40000)
NAT = ("127.0.0.2", 31000)
REBOUND = ("127.0.0.2", 31002)
ATTACKER = ("127.0.0.9", 5004)
SSRC = 0x1234ABCD


def latched(*, ssrc: int | None = SSRC, strict: bool = False, relatch_after: int = 3) -> Latch:
    latch = Latch(SDP, strict=strict, relatch_after=relatch_after, window=1.0)
    assert latch.decide(NAT, ssrc, 0.0) is Decision.LATCHED
    return latch


def test_first_packet_from_any_source_latches() -> None:
    latch = Latch(SDP, strict=False, relatch_after=3)
    assert latch.state is LatchState.WAITING
    assert latch.latched is None
    assert latch.destination == SDP
    assert latch.decide(NAT, SSRC, 0.0) is Decision.LATCHED
    assert latch.state is LatchState.LATCHED
    assert latch.latched == NAT
    assert latch.latched_ssrc == SSRC
    assert latch.destination == NAT
    assert latch.decide(NAT, SSRC, 0.02) is Decision.FORWARD
    assert latch.dropped == 0


def test_latch_without_expected_address() -> None:
    latch = Latch(None, strict=False, relatch_after=3)
    assert latch.destination is None
    assert latch.decide(NAT, None, 0.0) is Decision.LATCHED
    assert latch.destination == NAT


def test_strict_mode_latches_only_from_the_sdp_ip() -> None:
    latch = Latch(SDP, strict=True, relatch_after=3)
    assert latch.decide(ATTACKER, SSRC, 0.0) is Decision.DROP
    assert latch.decide(NAT, SSRC, 0.01) is Decision.DROP
    assert latch.state is LatchState.WAITING
    assert latch.dropped == 2
    assert latch.dropped_unlatched == 2
    # Same IP, any port: NAT on the SDP's own host rewrote only the port.
    assert latch.decide(("127.0.0.1", 50000), SSRC, 0.02) is Decision.LATCHED
    assert latch.latched == ("127.0.0.1", 50000)


def test_strict_mode_never_relatches_to_a_foreign_ip() -> None:
    latch = Latch(SDP, strict=True, relatch_after=2, window=1.0)
    assert latch.decide(SDP, SSRC, 0.0) is Decision.LATCHED
    for i in range(10):
        assert latch.decide(ATTACKER, SSRC, 0.01 * (i + 1)) is Decision.DROP
    assert latch.latched == SDP
    assert latch.state is LatchState.LATCHED
    # A rebinding on the SDP's IP is followed.
    assert latch.decide(("127.0.0.1", 40002), SSRC, 0.5) is Decision.DROP
    assert latch.decide(("127.0.0.1", 40002), SSRC, 0.52) is Decision.RELATCHED


def test_constructor_rejects_unsafe_settings() -> None:
    with pytest.raises(ValueError, match="relatch_after"):
        Latch(SDP, strict=False, relatch_after=1)
    with pytest.raises(ValueError, match="strict"):
        Latch(None, strict=True, relatch_after=3)
    with pytest.raises(ValueError, match="window"):
        Latch(SDP, strict=False, relatch_after=3, window=0.0)


def test_consistent_nat_rebinding_relatches() -> None:
    latch = latched()
    assert latch.decide(REBOUND, SSRC, 1.0) is Decision.DROP
    assert latch.state is LatchState.PROBING
    assert latch.decide(REBOUND, SSRC, 1.02) is Decision.DROP
    assert latch.latched == NAT
    assert latch.decide(REBOUND, SSRC, 1.04) is Decision.RELATCHED
    assert latch.state is LatchState.LATCHED
    assert latch.latched == REBOUND
    assert latch.destination == REBOUND
    assert latch.relatches == 1
    assert latch.dropped == 2
    assert latch.decide(REBOUND, SSRC, 1.06) is Decision.FORWARD
    # The old mapping is now the foreigner.
    assert latch.decide(NAT, SSRC, 1.08) is Decision.DROP


def test_single_stray_packets_never_hijack() -> None:
    latch = latched()
    now = 0.0
    for i in range(50):
        now += 0.02
        source = ("127.0.0.9", 6000 + i)  # a new source every time
        assert latch.decide(source, SSRC, now) is Decision.DROP
    assert latch.latched == NAT
    assert latch.dropped == 50
    assert latch.relatches == 0


def test_different_ssrc_never_relatches() -> None:
    latch = latched()
    for i in range(20):
        assert latch.decide(ATTACKER, SSRC + 1, 0.02 * (i + 1)) is Decision.DROP
    assert latch.latched == NAT
    assert latch.state is LatchState.LATCHED


def test_packet_without_ssrc_cannot_move_a_stream_with_one() -> None:
    latch = latched()
    for i in range(5):
        assert latch.decide(ATTACKER, None, 0.02 * (i + 1)) is Decision.DROP
    assert latch.latched == NAT


def test_interleaving_with_the_live_stream_never_relatches() -> None:
    latch = latched()
    now = 0.0
    for _ in range(30):
        now += 0.01
        assert latch.decide(ATTACKER, SSRC, now) is Decision.DROP
        assert latch.state is LatchState.PROBING
        now += 0.01
        assert latch.decide(NAT, SSRC, now) is Decision.FORWARD
        assert latch.state is LatchState.LATCHED
    # Two attacker packets in a row, then the real stream again: still short of three.
    assert latch.decide(ATTACKER, SSRC, now + 0.01) is Decision.DROP
    assert latch.decide(ATTACKER, SSRC, now + 0.02) is Decision.DROP
    assert latch.decide(NAT, SSRC, now + 0.03) is Decision.FORWARD
    assert latch.decide(ATTACKER, SSRC, now + 0.04) is Decision.DROP
    assert latch.latched == NAT
    assert latch.relatches == 0


def test_two_foreign_sources_alternating_never_relatch() -> None:
    latch = latched()
    other = ("127.0.0.8", 7000)
    for i in range(20):
        src = ATTACKER if i % 2 else other
        assert latch.decide(src, SSRC, 0.01 * (i + 1)) is Decision.DROP
    assert latch.latched == NAT


def test_mismatched_ssrc_breaks_a_run() -> None:
    latch = latched()
    assert latch.decide(REBOUND, SSRC, 0.1) is Decision.DROP
    assert latch.decide(REBOUND, SSRC, 0.12) is Decision.DROP
    assert latch.decide(REBOUND, SSRC + 7, 0.14) is Decision.DROP
    assert latch.state is LatchState.LATCHED
    assert latch.decide(REBOUND, SSRC, 0.16) is Decision.DROP
    assert latch.decide(REBOUND, SSRC, 0.18) is Decision.DROP
    assert latch.decide(REBOUND, SSRC, 0.20) is Decision.RELATCHED


def test_run_must_fit_in_the_window() -> None:
    latch = latched()  # window 1.0
    assert latch.decide(REBOUND, SSRC, 1.0) is Decision.DROP
    assert latch.decide(REBOUND, SSRC, 1.5) is Decision.DROP
    # More than 1.0 s after the run's first packet: the run restarts with this one.
    assert latch.decide(REBOUND, SSRC, 2.0001) is Decision.DROP
    assert latch.latched == NAT
    assert latch.decide(REBOUND, SSRC, 2.5) is Decision.DROP
    assert latch.decide(REBOUND, SSRC, 2.9) is Decision.RELATCHED


def test_window_edge_is_inclusive() -> None:
    latch = latched()
    assert latch.decide(REBOUND, SSRC, 1.0) is Decision.DROP
    assert latch.decide(REBOUND, SSRC, 1.5) is Decision.DROP
    assert latch.decide(REBOUND, SSRC, 2.0) is Decision.RELATCHED


def test_stream_without_ssrc_relatches_on_a_consistent_one() -> None:
    latch = latched(ssrc=None)
    assert latch.latched_ssrc is None
    assert latch.decide(REBOUND, 5, 0.1) is Decision.DROP
    assert latch.decide(REBOUND, 6, 0.12) is Decision.DROP  # inconsistent: restarts the run
    assert latch.decide(REBOUND, 6, 0.14) is Decision.DROP
    assert latch.decide(REBOUND, 6, 0.16) is Decision.RELATCHED
    assert latch.latched_ssrc == 6


def test_latched_source_teaches_and_changes_its_ssrc() -> None:
    latch = latched(ssrc=None)
    assert latch.decide(NAT, 77, 0.02) is Decision.FORWARD
    assert latch.latched_ssrc == 77
    assert latch.decide(NAT, 78, 0.04) is Decision.FORWARD
    assert latch.latched_ssrc == 78
    for i in range(3):
        assert latch.decide(REBOUND, 77, 0.1 + i * 0.01) is Decision.DROP


def test_illegal_transition_raises() -> None:
    latch = Latch(SDP, strict=False, relatch_after=3)
    with pytest.raises(LatchStateError, match="WAITING -> PROBING"):
        latch._set_state(LatchState.PROBING)


def test_decision_forwards() -> None:
    assert [d for d in Decision if d.forwards] == [Decision.FORWARD, Decision.LATCHED, Decision.RELATCHED]


def test_rtcp_expected_addresses() -> None:
    assert rtcp_expected(SDP, rtcp_mux=False) == ("127.0.0.1", 40001)
    assert rtcp_expected(SDP, rtcp_mux=False, rtcp_port=40100) == ("127.0.0.1", 40100)
    assert rtcp_expected(SDP, rtcp_mux=True, rtcp_port=40100) == SDP
    assert rtcp_expected(None, rtcp_mux=False) is None


def test_rtcp_latches_independently() -> None:
    pair = StreamLatches(SDP, rtcp_mux=False, strict=False, relatch_after=3)
    assert pair.rtcp.expected == ("127.0.0.1", 40001)
    assert pair.rtp.decide(NAT, SSRC, 0.0) is Decision.LATCHED
    assert pair.rtcp.state is LatchState.WAITING
    assert pair.rtcp.decide(("127.0.0.2", 31001), SSRC, 0.5) is Decision.LATCHED
    assert pair.rtp.latched == NAT
    assert pair.rtcp.latched == ("127.0.0.2", 31001)
    muxed = StreamLatches(SDP, rtcp_mux=True, strict=True, relatch_after=3)
    assert muxed.rtcp.expected == SDP
    assert muxed.rtcp is not muxed.rtp


_SOURCES = [("127.0.0.1", 40000), ("127.0.0.2", 31000), ("127.0.0.2", 31002), ("127.0.0.9", 5004)]
_packets = st.lists(
    st.tuples(
        st.sampled_from(_SOURCES),
        st.sampled_from([None, 1, 2]),
        st.floats(min_value=0.0, max_value=0.8, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    packets=_packets,
    strict=st.booleans(),
    relatch_after=st.integers(min_value=2, max_value=5),
)
def test_random_sequences_never_raise_nor_relatch_without_a_full_run(
    packets: list[tuple[tuple[str, int], int | None, float]], strict: bool, relatch_after: int
) -> None:
    latch = Latch(SDP, strict=strict, relatch_after=relatch_after, window=1.0)
    history: list[tuple[tuple[str, int], int | None, float]] = []
    now = 0.0
    drops = 0
    for source, ssrc, dt in packets:
        now += dt
        before, before_ssrc = latch.latched, latch.latched_ssrc
        decision = latch.decide(source, ssrc, now)
        history.append((source, ssrc, now))
        drops += decision is Decision.DROP
        if decision is Decision.LATCHED:
            assert before is None
            assert not strict or source[0] == SDP[0]
        elif decision is Decision.RELATCHED:
            assert before is not None and source != before
            run = history[-relatch_after:]
            assert len(run) == relatch_after
            # The new source sent the last relatch_after packets, uninterrupted, one SSRC, in the window.
            assert all(s == source and x == ssrc for s, x, _ in run)
            assert now - run[0][2] <= 1.0
            assert before_ssrc is None or ssrc == before_ssrc
        else:
            assert latch.latched == before
            if decision is Decision.FORWARD:
                assert source == before
        assert latch.dropped == drops


def test_witness_refuses_a_run_while_the_incumbent_still_sends_and_allows_it_once_silent() -> None:
    # The kernel fast path forwards the incumbent's packets, so the latch counts them through its witness.
    latch = latched()
    forwarded = [40]
    latch.witness = lambda: forwarded[0]
    for t in (1.0, 1.02):
        assert latch.decide(REBOUND, SSRC, t) is Decision.DROP
        forwarded[0] += 1  # the incumbent is alive between the run's packets
    assert latch.decide(REBOUND, SSRC, 1.04) is Decision.DROP
    assert (latch.latched, latch.state, latch.relatches) == (NAT, LatchState.LATCHED, 0)
    # The incumbent fell silent: the next run of three moves the latch, no later than in userspace.
    assert latch.decide(REBOUND, SSRC, 1.10) is Decision.DROP
    assert latch.decide(REBOUND, SSRC, 1.12) is Decision.DROP
    assert latch.decide(REBOUND, SSRC, 1.14) is Decision.RELATCHED
    assert latch.latched == REBOUND


def test_an_unreadable_witness_leaves_the_userspace_rule() -> None:
    latch = latched()
    latch.witness = lambda: None
    assert [latch.decide(REBOUND, SSRC, 1.0 + i * 0.02) for i in range(3)] == [
        Decision.DROP,
        Decision.DROP,
        Decision.RELATCHED,
    ]
