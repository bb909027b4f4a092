"""The Q.921 data link entity: two peers in memory through establishment, data, loss, recovery and release."""

from __future__ import annotations

import logging

import pytest

from appliance.pri.errors import LocalProtocolError
from appliance.pri.lapd import Lapd, LapdState
from appliance.pri.lapd_codec import Frame, FrmrFrame, IFrame, SFrame, SKind, UFrame, UKind, decode, encode
from appliance.pri.lapd_events import (
    MDL_ERRORS,
    DataReceived,
    LinkError,
    LinkEstablished,
    LinkReleased,
    ReleaseReason,
    UnitDataReceived,
)
from appliance.pri.lapd_timers import LapdTimers
from tests.unit.test_pri_lapd_pair import Pair

S = LapdState


def codes(events: list[object]) -> list[str]:
    return [e.code for e in events if isinstance(e, LinkError)]


def kinds(frames: list[Frame]) -> list[str]:
    out = []
    for f in frames:
        if isinstance(f, IFrame):
            out.append(f"I{f.ns}")
        elif isinstance(f, SFrame | UFrame):
            out.append(f.kind.name + ("p" if f.pf and f.command else "f" if f.pf else ""))
        else:
            out.append("FRMR")
    return out


def inject(pair: Pair, to: str, frame: Frame) -> None:
    sender = "network" if to == "user" else "user"
    pair.side(to).receive(encode(frame, sender=sender), pair.now)  # type: ignore[arg-type]
    pair.pump()


def test_establishment_user_initiated() -> None:
    pair = Pair()
    pair.user.start(0.0)
    assert pair.user.state is S.AWAITING_ESTABLISHMENT
    pair.run(0.0)
    assert kinds(pair.sent("user")) == ["SABMEp"]
    assert kinds(pair.sent("network")) == ["UAf"]
    assert pair.take_events("user") == [LinkEstablished()]
    assert pair.take_events("network") == [LinkEstablished()]
    assert pair.user.established and pair.network.established
    assert pair.user.state is pair.network.state is S.MULTIPLE_FRAME_ESTABLISHED


def test_data_both_ways_beyond_the_window() -> None:
    pair = Pair()
    pair.establish()
    messages = [bytes([i]) * (i + 1) for i in range(20)]
    for m in messages:
        pair.user.send_data(m, pair.now)
        pair.network.send_data(m[::-1] + b"n", pair.now)
    pair.run(pair.now)
    assert pair.received["network"] == messages
    assert pair.received["user"] == [m[::-1] + b"n" for m in messages]
    assert pair.user.vs == pair.user.va == pair.network.vr == 20
    assert pair.network.vs == pair.network.va == pair.user.vr == 20
    assert pair.user.retransmissions == pair.network.retransmissions == 0


def test_window_limits_outstanding_frames() -> None:
    pair = Pair()
    pair.establish()
    for i in range(10):
        pair.user.send_data(bytes([i]), pair.now)
    frames = pair.user.frames_to_send()
    assert len(frames) == pair.user.timers.k == 7
    assert pair.user.vs == 7 and pair.user.va == 0
    for frame in frames:
        pair.network.receive(frame, pair.now)
    pair.run(pair.now)
    assert pair.received["network"] == [bytes([i]) for i in range(10)]


def test_sequence_numbers_wrap_modulo_128() -> None:
    pair = Pair()
    pair.establish()
    for i in range(300):
        pair.user.send_data(i.to_bytes(2, "big"), pair.now)
    pair.run(pair.now)
    assert pair.received["network"] == [i.to_bytes(2, "big") for i in range(300)]
    assert pair.user.vs == pair.user.va == 300 % 128


def test_lost_i_frame_is_recovered_by_rej() -> None:
    pair = Pair()
    pair.establish()
    lost = []

    def drop(sender: str, frame: Frame) -> bool:
        if sender == "user" and isinstance(frame, IFrame) and frame.ns == 2 and not lost:
            lost.append(frame)
            return True
        return False

    pair.drop = drop
    for i in range(5):
        pair.user.send_data(bytes([i]), pair.now)
    pair.run(pair.now)
    assert lost
    assert "REJ" in kinds(pair.sent("network"))
    assert pair.received["network"] == [bytes([i]) for i in range(5)]
    assert pair.user.retransmissions == 3  # go back N: frames 2, 3, 4
    assert pair.network.discarded == 2  # 3 and 4 arrived out of sequence; one REJ only (§5.6.4)
    assert kinds(pair.sent("network")).count("REJ") == 1


def test_lost_last_i_frame_t200_and_timer_recovery() -> None:
    pair = Pair()
    pair.establish()
    lossy = [True]
    pair.drop = lambda sender, frame: isinstance(frame, IFrame) and lossy[0]
    pair.user.send_data(b"setup", pair.now)
    pair.run(pair.now)
    assert pair.received["network"] == []
    pair.run(pair.now + 0.999)
    assert pair.user.state is S.MULTIPLE_FRAME_ESTABLISHED
    lossy[0] = False
    mark = len(pair.trace)
    pair.run(pair.now + 0.002)  # T200 expires: RR P=1 enquiry, RR F=1 answer, retransmission
    assert kinds(pair.sent("user", mark)) == ["RRp", "I0"]
    assert kinds(pair.sent("network", mark)) == ["RRf", "RR"]
    assert pair.received["network"] == [b"setup"]
    assert pair.user.state is S.MULTIPLE_FRAME_ESTABLISHED
    assert pair.user.retransmissions == 1


def test_lost_acknowledgement_does_not_duplicate() -> None:
    pair = Pair()
    pair.establish()
    dropped = []

    def drop(sender: str, frame: Frame) -> bool:
        if sender == "network" and isinstance(frame, SFrame) and not dropped:
            dropped.append(frame)
            return True
        return False

    pair.drop = drop
    pair.user.send_data(b"one", pair.now)
    pair.run(pair.now + 1.5)
    assert dropped
    assert pair.received["network"] == [b"one"]
    assert pair.user.va == 1 and pair.user.retransmissions == 0
    assert pair.user.state is S.MULTIPLE_FRAME_ESTABLISHED


def test_t203_polls_an_idle_link() -> None:
    pair = Pair()
    pair.establish()
    mark = len(pair.trace)
    pair.run(9.9)
    assert len(pair.trace) == mark
    pair.run(10.1)
    assert "RRp" in kinds(pair.sent("user", mark))
    assert "RRf" in kinds(pair.sent("network", mark))
    assert pair.user.state is pair.network.state is S.MULTIPLE_FRAME_ESTABLISHED
    assert pair.take_events("user") == [] and pair.take_events("network") == []


def test_unanswered_enquiries_then_failed_reestablishment_then_keep_up() -> None:
    pair = Pair()
    pair.establish()
    pair.drop = lambda sender, frame: sender == "network"
    pair.user.send_data(b"lost", pair.now)
    pair.run(1.0)  # T200: timer recovery
    assert pair.user.state is S.TIMER_RECOVERY
    pair.run(3.0)
    assert pair.user.state is S.TIMER_RECOVERY and pair.user.rc == 3
    pair.run(4.0)  # N200 = 3 enquiries unanswered: MDL-ERROR I, SABME
    assert pair.user.state is S.AWAITING_ESTABLISHMENT
    assert codes(pair.events["user"]) == ["I"]
    pair.run(8.0)  # SABME and three retransmissions unanswered: MDL-ERROR G, released
    assert pair.user.state is S.TEI_ASSIGNED
    events = pair.take_events("user")
    assert codes(events) == ["I", "G"]
    assert events[-1] == LinkReleased(ReleaseReason.FAILURE)
    assert pair.user.dropped_messages == 1
    assert kinds(pair.sent("user")).count("SABMEp") == 1 + 1 + 3
    pair.drop = lambda sender, frame: False
    pair.run(8.5)
    assert pair.user.state is S.TEI_ASSIGNED
    pair.run(9.0)  # keep-up: SABME again after T200
    assert pair.user.established
    assert pair.take_events("user") == [LinkEstablished()]
    # The network saw the user's SABME while established: peer initiated re-establishment (F).
    assert "F" in codes(pair.take_events("network"))


def _desc(code: str) -> str:
    return MDL_ERRORS[code]


def test_reestablishment_reports_lost_data_once() -> None:
    pair = Pair()
    pair.establish()
    pair.drop = lambda sender, frame: sender == "network"
    pair.user.send_data(b"lost", pair.now)
    pair.run(4.5)
    pair.drop = lambda sender, frame: False
    pair.run(5.5)
    events = pair.take_events("user")
    assert events == [LinkError("I", _desc("I")), LinkEstablished(reestablished=True)]
    # The network had V(S) = V(A) (it never sent anything): the reset is invisible to its layer 3. It saw
    # two SABMEs: the one whose UA was lost and its retransmission.
    f = LinkError("F", _desc("F"))
    assert pair.take_events("network") == [DataReceived(b"lost"), f, f]


def test_release_by_disc() -> None:
    pair = Pair()
    pair.establish()
    pair.user.stop(pair.now)
    assert pair.user.state is S.AWAITING_RELEASE
    pair.run(pair.now)
    assert kinds(pair.sent("user"))[-1] == "DISCp"
    assert kinds(pair.sent("network"))[-1] == "UAf"
    assert pair.take_events("user") == [LinkReleased(ReleaseReason.LOCAL)]
    assert pair.take_events("network") == [LinkReleased(ReleaseReason.PEER)]
    assert pair.user.state is pair.network.state is S.TEI_ASSIGNED
    # The user asked for the release: a SABME from the network is refused with DM until start().
    pair.network.start(pair.now)
    pair.run(pair.now)
    assert kinds(pair.sent("user"))[-1] == "DMf"
    assert pair.network.state is S.TEI_ASSIGNED
    assert pair.take_events("network") == []
    pair.user.start(pair.now)
    pair.run(pair.now)
    assert pair.user.established and pair.network.established


def test_disc_unanswered() -> None:
    pair = Pair()
    pair.establish()
    pair.drop = lambda sender, frame: sender == "network"
    pair.user.stop(0.0)
    pair.run(10.0)
    assert kinds(pair.sent("user")).count("DISCp") == 4
    assert codes(pair.events["user"]) == ["H"]
    assert pair.take_events("user")[-1] == LinkReleased(ReleaseReason.LOCAL)
    assert pair.user.state is S.TEI_ASSIGNED


def test_stop_while_establishing_and_dm_answer() -> None:
    pair = Pair()
    pair.user.start(0.0)
    pair.user.stop(0.0)
    pair.run(0.0)
    assert kinds(pair.sent("user")) == ["SABMEp", "DISCp"]
    assert kinds(pair.sent("network")) == ["UAf", "UAf"]
    assert pair.user.state is pair.network.state is S.TEI_ASSIGNED
    # The first UA completes the release; the second one finds the link released already.
    assert codes(pair.take_events("user")) == ["C"]
    assert pair.take_events("network") == [LinkEstablished(), LinkReleased(ReleaseReason.PEER)]


def test_sabme_collision() -> None:
    pair = Pair()
    pair.user.start(0.0)
    pair.network.start(0.0)
    pair.run(0.0)
    assert pair.user.established and pair.network.established
    assert pair.take_events("user") == [LinkEstablished()]
    assert pair.take_events("network") == [LinkEstablished()]
    pair.run(30.0)
    assert pair.user.established and pair.network.established


def test_disc_collision() -> None:
    pair = Pair()
    pair.establish()
    pair.user.stop(0.0)
    pair.network.stop(0.0)
    pair.run(0.0)
    assert pair.user.state is pair.network.state is S.TEI_ASSIGNED
    assert pair.take_events("user") == [LinkReleased(ReleaseReason.LOCAL)]
    assert pair.take_events("network") == [LinkReleased(ReleaseReason.LOCAL)]


def test_physical_down_and_up() -> None:
    pair = Pair()
    pair.establish()
    pair.network.send_data(b"x", pair.now)
    pair.user.physical_down(pair.now)
    assert pair.user.state is S.TEI_ASSIGNED
    assert pair.user.get_timer() is None
    pair.run(20.0)  # the network polls, re-establishes, fails and keeps trying; the user hears nothing
    assert pair.take_events("user") == [LinkReleased(ReleaseReason.PHYSICAL)]
    assert pair.user.frames_to_send() == []
    assert pair.user.discarded > 0
    assert not pair.network.established
    assert LinkReleased(ReleaseReason.FAILURE) in pair.events["network"]
    pair.user.physical_up(pair.now)
    pair.run(pair.now + 0.5)
    assert pair.user.established and pair.network.established
    assert pair.take_events("user") == [LinkEstablished()]


def test_physical_up_without_start_does_not_establish() -> None:
    pair = Pair()
    pair.user.physical_down(0.0)
    pair.user.start(0.0)
    assert pair.user.frames_to_send() == []
    pair.user.physical_up(0.0)
    assert pair.user.state is S.AWAITING_ESTABLISHMENT
    idle = Lapd(side="user")
    idle.physical_up(0.0)
    assert idle.frames_to_send() == []


def test_keep_up_off_stays_released() -> None:
    pair = Pair(keep_up=False)
    pair.establish()
    pair.network.stop(pair.now)
    pair.run(30.0)
    assert pair.user.state is S.TEI_ASSIGNED
    assert pair.take_events("user") == [LinkReleased(ReleaseReason.PEER)]


def test_peer_sabme_while_established_with_outstanding_frames() -> None:
    pair = Pair()
    pair.establish()
    pair.drop = lambda sender, frame: sender == "user"
    pair.user.send_data(b"in flight", pair.now)
    pair.pump()
    pair.drop = lambda sender, frame: False
    inject(pair, "user", UFrame(UKind.SABME, True, True))
    assert kinds(pair.sent("user"))[-1] == "UAf"
    events = pair.take_events("user")
    assert events == [LinkError("F", _desc("F")), LinkEstablished(reestablished=True)]
    assert pair.user.vs == pair.user.va == pair.user.vr == 0
    assert pair.user.dropped_messages == 1


def test_frmr_and_rejected_frames_reestablish() -> None:
    pair = Pair()
    pair.establish()
    inject(pair, "user", FrmrFrame(b"\x0d\x00", 0, 0, False, True, False, False, False, pf=True))
    assert codes(pair.take_events("user")) == ["K"]
    assert pair.user.established  # SABME answered at once by the network
    pair.user.receive(bytes.fromhex("00010d00"), pair.now)  # undefined supervisory function
    pair.pump()
    pair.user.receive(bytes.fromhex("0001" + "7f08"), pair.now)  # wrong C/R and info: L from network
    pair.pump()
    pair.user.receive(bytes.fromhex("00017308"), pair.now)  # UA with information: M
    pair.pump()
    pair.user.receive(bytes.fromhex("0001010000"), pair.now)  # RR of five octets: N
    pair.pump()
    pair.user.receive(bytes.fromhex("02010000") + bytes(261), pair.now)  # too long: O
    pair.pump()
    assert codes(pair.take_events("user")) == ["L", "L", "M", "N", "O"]
    assert pair.user.established and pair.network.established
    assert pair.user.discarded == 5
    # Q.921 §5.8.5/§5.8.6: every condition was met by re-establishment (SABME); no FRMR is ever sent
    assert "FRMR" not in kinds(pair.sent("user")) and kinds(pair.sent("user")).count("SABMEp") == 7


def test_invalid_frames_are_discarded_silently() -> None:
    pair = Pair()
    pair.establish()
    for frame in (
        b"",
        b"\x00",
        bytes.fromhex("010173"),
        bytes.fromhex("4001" + "7f"),
        bytes.fromhex("02ff03"),
    ):
        pair.user.receive(frame, pair.now)
    pair.pump()
    assert pair.user.discarded == 5
    assert pair.take_events("user") == []
    assert pair.user.established


def test_nr_error_reestablishes() -> None:
    pair = Pair()
    pair.establish()
    inject(pair, "user", SFrame(SKind.RR, 5, False, False))  # acknowledges frames never sent
    assert codes(pair.take_events("user")) == ["J"]
    assert pair.user.established
    inject(pair, "user", IFrame(0, 9, False, b"x"))
    assert codes(pair.take_events("user")) == ["J"]


def test_unsolicited_responses() -> None:
    pair = Pair()
    pair.establish()
    inject(pair, "user", UFrame(UKind.UA, True, False))
    inject(pair, "user", UFrame(UKind.UA, False, False))
    inject(pair, "user", UFrame(UKind.DM, True, False))
    inject(pair, "user", SFrame(SKind.RR, 0, True, False))
    assert codes(pair.take_events("user")) == ["C", "D", "B", "A"]
    assert pair.user.state is S.MULTIPLE_FRAME_ESTABLISHED
    inject(pair, "user", UFrame(UKind.DM, False, False))  # E: re-establish
    assert codes(pair.take_events("user")) == ["E"]
    assert pair.user.established
    inject(pair, "network", UFrame(UKind.UA, True, False))
    pair.network.stop(pair.now)
    pair.run(pair.now)
    idle = Lapd(side="user")
    idle.receive(encode(UFrame(UKind.DM, True, False), sender="network"), 0.0)
    idle.receive(encode(UFrame(UKind.UA, True, False), sender="network"), 0.0)
    assert [e.code for e in iter(idle.next_event, None) if isinstance(e, LinkError)] == ["B", "C"]


def test_dm_in_timer_recovery_reestablishes() -> None:
    pair = Pair()
    pair.establish()
    pair.drop = lambda sender, frame: sender == "network"
    pair.run(10.5)
    assert pair.user.state is S.TIMER_RECOVERY
    pair.drop = lambda sender, frame: False
    inject(pair, "user", UFrame(UKind.DM, True, False))
    assert codes(pair.take_events("user")) == ["B"]
    assert pair.user.established


def test_peer_busy_holds_transmission() -> None:
    pair = Pair()
    pair.establish()
    inject(pair, "user", SFrame(SKind.RNR, 0, False, False))
    assert pair.user.peer_busy
    pair.user.send_data(b"held", pair.now)
    assert pair.user.frames_to_send() == []
    mark = len(pair.trace)
    pair.drop = lambda sender, frame: (
        sender == "network" and isinstance(frame, SFrame) and frame.kind is SKind.RR
    )
    pair.run(pair.now + 1.0)  # T200: enquiry; the network answers RR F=1 (dropped here)
    assert kinds(pair.sent("user", mark)) == ["RRp"]
    assert pair.user.state is S.TIMER_RECOVERY
    inject(pair, "user", SFrame(SKind.RNR, 0, True, False))  # still busy: poll again on T200
    assert pair.user.state is S.MULTIPLE_FRAME_ESTABLISHED and pair.user.peer_busy
    pair.drop = lambda sender, frame: False
    pair.run(pair.now + 1.0)
    assert not pair.user.peer_busy
    assert pair.received["network"] == [b"held"]


def test_rej_and_rnr_commands_with_poll() -> None:
    pair = Pair()
    pair.establish()
    inject(pair, "user", SFrame(SKind.REJ, 0, True, True))
    assert kinds(pair.sent("user"))[-1] == "RRf"
    inject(pair, "network", SFrame(SKind.RNR, 0, True, True))
    assert pair.network.peer_busy
    inject(pair, "network", SFrame(SKind.RR, 0, False, True))
    assert not pair.network.peer_busy


def test_frames_before_establishment() -> None:
    lapd = Lapd(side="network")
    lapd.receive(encode(IFrame(0, 0, True, b"x"), sender="user"), 0.0)
    lapd.receive(encode(SFrame(SKind.RR, 0, True, True), sender="user"), 0.0)
    lapd.receive(encode(IFrame(0, 0, False, b"x"), sender="user"), 0.0)
    lapd.receive(encode(UFrame(UKind.DISC, True, True), sender="user"), 0.0)
    frames = lapd.frames_to_send()
    assert frames == [encode(UFrame(UKind.DM, True, False), sender="network")] * 3
    lapd.receive(encode(UFrame(UKind.UI, False, True, b"ui"), sender="user"), 0.0)
    lapd.receive(encode(UFrame(UKind.XID, False, True, b"x"), sender="user"), 0.0)
    assert lapd.next_event() == UnitDataReceived(b"ui")
    assert lapd.next_event() is None
    lapd.send_data(b"nowhere", 0.0)
    assert lapd.dropped_messages == 1


def test_data_queued_while_establishing() -> None:
    pair = Pair()
    pair.user.start(0.0)
    pair.user.send_data(b"early", 0.0)
    pair.run(0.0)
    assert pair.received["network"] == [b"early"]
    assert DataReceived(b"early") in pair.events["network"]


def test_api_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        Lapd(side="both")  # type: ignore[arg-type]
    lapd = Lapd(side="user")
    with pytest.raises(LocalProtocolError, match="N201"):
        lapd.send_data(bytes(261), 0.0)
    with pytest.raises(LocalProtocolError, match="illegal transition"):
        lapd._set_state(S.TIMER_RECOVERY)
    with pytest.raises(ValueError):
        LapdTimers(t200=5.0, t203=1.0)
    with pytest.raises(ValueError):
        LapdTimers(k=0)
    with pytest.raises(ValueError):
        LapdTimers(n200=0)
    with pytest.raises(ValueError):
        LapdTimers(n201=261)


def test_every_state_and_timer_is_visited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appliance.pri.lapd")
    pair = Pair()
    pair.establish()  # 4 -> 5 -> 7 (user), 4 -> 7 (network)
    pair.run(10.5)  # T203 -> 8 -> 7
    pair.drop = lambda sender, frame: sender == "network"
    pair.user.send_data(b"x", pair.now)
    pair.run(pair.now + 9.0)  # T200 in 7 and 8, N200 -> 5, T200 in 5 -> 4
    pair.drop = lambda sender, frame: False
    pair.run(pair.now + 2.0)  # keep-up retry -> 5 -> 7
    pair.user.stop(pair.now)  # 7 -> 6
    pair.run(pair.now)  # 6 -> 4
    transitions = {r.getMessage().split(": ", 1)[1] for r in caplog.records if "->" in r.getMessage()}
    expected = {
        "TEI_ASSIGNED -> AWAITING_ESTABLISHMENT",
        "AWAITING_ESTABLISHMENT -> MULTIPLE_FRAME_ESTABLISHED",
        "MULTIPLE_FRAME_ESTABLISHED -> TIMER_RECOVERY",
        "TIMER_RECOVERY -> MULTIPLE_FRAME_ESTABLISHED",
        "TIMER_RECOVERY -> AWAITING_ESTABLISHMENT",
        "AWAITING_ESTABLISHMENT -> TEI_ASSIGNED",
        "MULTIPLE_FRAME_ESTABLISHED -> AWAITING_RELEASE",
        "AWAITING_RELEASE -> TEI_ASSIGNED",
        "TEI_ASSIGNED -> MULTIPLE_FRAME_ESTABLISHED",
        "MULTIPLE_FRAME_ESTABLISHED -> TEI_ASSIGNED",
    }
    assert expected <= transitions


def test_poll_bits_on_i_frames_and_acknowledgement_in_timer_recovery() -> None:
    lapd = Lapd(side="user")
    lapd.start(0.0)
    lapd.frames_to_send()

    def feed(frame: Frame, now: float = 0.0) -> list[str]:
        lapd.receive(encode(frame, sender="network"), now)
        return kinds([decode(f, sender="user") for f in lapd.frames_to_send()])

    assert feed(UFrame(UKind.UA, True, False)) == []
    assert feed(IFrame(0, 0, True, b"polled")) == ["RRf"]  # in sequence, P=1: RR F=1 at once
    assert feed(IFrame(5, 0, False, b"gap")) == ["REJ"]  # out of sequence: REJ
    assert feed(IFrame(6, 0, True, b"gap")) == ["RRf"]  # again with P=1 while in reject: RR F=1 only
    assert [e for e in iter(lapd.next_event, None) if isinstance(e, DataReceived)] == [
        DataReceived(b"polled")
    ]
    # In timer recovery an I frame's N(R) still acknowledges, without leaving the state.
    lapd.send_data(b"a", 0.0)
    lapd.frames_to_send()
    lapd.handle_timer(1.0)
    assert lapd.state is S.TIMER_RECOVERY and lapd.va == 0
    feed(IFrame(1, 1, False, b"ack"), 1.1)
    assert lapd.va == 1 and lapd.state is S.TIMER_RECOVERY


def test_frmr_outside_multiple_frame_operation_is_discarded() -> None:
    lapd = Lapd(side="user")
    lapd.receive(
        encode(FrmrFrame(b"\x00\x00", 0, 0, False, True, False, False, False), sender="network"), 0.0
    )
    assert lapd.discarded == 1 and lapd.next_event() is None


def test_without_keep_up_physical_up_waits_for_start() -> None:
    pair = Pair(keep_up=False)
    pair.establish()
    pair.user.physical_down(pair.now)
    pair.user.physical_up(pair.now)
    assert pair.user.state is S.TEI_ASSIGNED and pair.user.frames_to_send() == []
    pair.user.physical_down(pair.now)
    pair.user.start(pair.now)
    pair.user.physical_up(pair.now)
    assert pair.user.state is S.AWAITING_ESTABLISHMENT


def test_transparent_reestablishment_keeps_unsent_messages() -> None:
    pair = Pair()
    pair.establish()
    inject(pair, "user", SFrame(SKind.RNR, 0, False, False))  # the peer is busy: the message waits
    pair.user.send_data(b"waiting", pair.now)
    assert pair.user.frames_to_send() == []
    inject(pair, "user", FrmrFrame(b"\x01\x00", 0, 0, False, False, False, False, True))  # K: re-establish
    # V(S) = V(A): nothing was lost, so layer 3 is not told, and the queued message goes out on the new link.
    assert pair.take_events("user") == [LinkError("K", _desc("K"))]
    assert pair.user.established and not pair.user.peer_busy
    assert pair.received["network"] == [b"waiting"]
    assert pair.user.dropped_messages == 0
