"""Transaction state machines and timers A–M on an injected clock (RFC 3261 §17, RFC 6026)."""

from __future__ import annotations

import itertools

import pytest

from appliance.sip.builder import IdFactory, make_request
from appliance.sip.endpoint import SipEndpoint
from appliance.sip.errors import LocalProtocolError
from appliance.sip.events import (
    AckReceived,
    AckTimeout,
    CancelReceived,
    Peer,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionTimeout,
)
from appliance.sip.message import Request, Response, parse_message
from appliance.sip.transaction import ClientTransaction, ServerTransaction, TimerSettings, TxState

UAC = Peer("udp", "127.0.0.1", 5070)
UAC_TCP = Peer("tcp", "127.0.0.1", 5070)
SERVER = Peer("udp", "127.0.0.1", 5080)
T1, T2, T4 = 0.5, 4.0, 5.0


def endpoint() -> SipEndpoint:
    return SipEndpoint(timers=TimerSettings(T1, T2, T4), ids=IdFactory())


def invite_bytes(
    branch: str = "z9hG4bKabc", method: str = "INVITE", cseq: int = 1, to_tag: str = ""
) -> bytes:
    to = "<sip:+4930123@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:+4930123@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1@127.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def drain(ep: SipEndpoint) -> list[object]:
    out = []
    while (ev := ep.next_event()) is not None:
        out.append(ev)
    return out


def sent(ep: SipEndpoint) -> list[Request | Response]:
    return [parse_message(data) for _, data in ep.datagrams_to_send()]


def run_until(ep: SipEndpoint, end: float) -> list[tuple[float, Request | Response]]:
    """Advance the clock timer by timer up to ``end``; return what was sent and when."""
    log: list[tuple[float, Request | Response]] = []
    while (due := ep.get_timer()) is not None and due <= end:
        ep.handle_timer(due)
        log.extend((due, m) for m in sent(ep))
    return log


def client_request(ep: SipEndpoint, method: str, peer: Peer = SERVER) -> ClientTransaction:
    req = make_request(
        method, "sip:127.0.0.1:5080",
        via=f"SIP/2.0/{peer.transport.upper()} 127.0.0.1:5060;branch={ep.new_branch()}",
        from_="<sip:pop@localhost>;tag=t1", to="<sip:127.0.0.1:5080>", call_id="c1", cseq=1,
    )  # fmt: skip
    txn = ep.send_request(req, peer, 0.0)
    sent(ep)
    return txn


def respond_to(txn: ClientTransaction, status: int, to_tag: str = "b1") -> bytes:
    from appliance.sip.builder import make_response

    return make_response(txn.request, status, to_tag=to_tag if status > 100 else None).to_bytes()


# --------------------------------------------------------------------------------- client INVITE


def test_timer_a_doubles_and_timer_b_times_out() -> None:
    ep = endpoint()
    txn = client_request(ep, "INVITE")
    log = run_until(ep, 64 * T1)
    times = [t for t, m in log if isinstance(m, Request)]
    # Retransmissions at T1, 3T1, 7T1, 15T1, 31T1 (intervals 1,2,4,8,16 T1); Timer B at 64*T1 ends it.
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    events = drain(ep)
    assert [type(e) for e in events] == [TransactionTimeout]
    assert txn.state is TxState.TERMINATED
    assert ep.get_timer() is None


def test_provisional_stops_retransmission_and_timer_b() -> None:
    ep = endpoint()
    txn = client_request(ep, "INVITE")
    ep.receive(respond_to(txn, 180), SERVER, 0.1)
    assert txn.state is TxState.PROCEEDING
    assert isinstance(drain(ep)[0], ResponseReceived)
    assert run_until(ep, 100.0) == []
    assert txn.state is TxState.PROCEEDING  # only the TU's Timer C ends a ringing INVITE


def test_non_2xx_final_is_acked_and_timer_d_absorbs_retransmissions() -> None:
    ep = endpoint()
    txn = client_request(ep, "INVITE")
    ep.receive(respond_to(txn, 486), SERVER, 0.2)
    out = sent(ep)
    assert len(out) == 1 and isinstance(out[0], Request) and out[0].method == "ACK"
    ack = out[0]
    assert ack.top_via.branch == txn.branch  # §17.1.1.3: same branch as the INVITE
    assert ack.to.tag == "b1" and ack.cseq == (1, "ACK")
    assert [type(e) for e in drain(ep)] == [ResponseReceived]
    # A retransmitted 486 is answered with the ACK again, not passed to the TU.
    ep.receive(respond_to(txn, 486), SERVER, 1.0)
    assert [m.method for m in sent(ep)] == ["ACK"]  # type: ignore[union-attr]
    assert drain(ep) == []
    assert txn.state is TxState.COMPLETED
    ep.handle_timer(0.2 + 32.0)
    assert txn.state is TxState.TERMINATED


def test_2xx_enters_accepted_and_passes_every_2xx_to_the_tu() -> None:
    ep = endpoint()
    txn = client_request(ep, "INVITE")
    ep.receive(respond_to(txn, 200), SERVER, 0.3)
    assert txn.state is TxState.ACCEPTED
    assert sent(ep) == []  # the TU, not the transaction, ACKs a 2xx
    ep.receive(respond_to(txn, 200), SERVER, 0.8)
    assert [type(e) for e in drain(ep)] == [ResponseReceived, ResponseReceived]
    ep.handle_timer(0.3 + 64 * T1)  # Timer M
    assert txn.state is TxState.TERMINATED
    ep.receive(respond_to(txn, 200), SERVER, 40.0)
    assert [type(e) for e in drain(ep)] == [StrayResponse]


def test_reliable_transport_has_no_retransmissions_and_no_timer_d() -> None:
    ep = endpoint()
    txn = client_request(ep, "INVITE", UAC_TCP)
    assert ep.get_timer() == 64 * T1  # only Timer B
    ep.receive(respond_to(txn, 503), UAC_TCP, 0.1)
    sent(ep)
    ep.handle_timer(0.1)  # Timer D is zero on a reliable transport
    assert txn.state is TxState.TERMINATED


# ------------------------------------------------------------------------------ client non-INVITE


def test_timer_e_caps_at_t2_and_timer_f_times_out() -> None:
    ep = endpoint()
    txn = client_request(ep, "OPTIONS")
    log = run_until(ep, 64 * T1)
    times = [t for t, _ in log]
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]  # 0.5, 1, 2, 4, then capped at T2 = 4
    assert all(b - a == pytest.approx(T2) for a, b in itertools.pairwise(times[3:]))
    assert [type(e) for e in drain(ep)] == [TransactionTimeout]
    assert txn.state is TxState.TERMINATED


def test_timer_e_runs_at_t2_in_proceeding_then_timer_k() -> None:
    ep = endpoint()
    txn = client_request(ep, "BYE")
    ep.receive(respond_to(txn, 100), SERVER, 0.1)
    assert txn.state is TxState.PROCEEDING
    log = run_until(ep, 0.6)
    assert [t for t, _ in log] == [0.5]  # the first Timer E was armed in Trying
    log = run_until(ep, 8.6)
    assert [t for t, _ in log] == [4.5, 8.5]  # then every T2
    ep.receive(respond_to(txn, 200), SERVER, 9.0)
    assert txn.state is TxState.COMPLETED
    ep.handle_timer(9.0 + T4)
    assert txn.state is TxState.TERMINATED


# --------------------------------------------------------------------------------- server INVITE


def test_server_invite_sends_100_and_absorbs_retransmissions() -> None:
    ep = endpoint()
    ep.receive(invite_bytes(), UAC, 0.0)
    first = sent(ep)
    assert [m.status for m in first] == [100]  # type: ignore[union-attr]
    (event,) = drain(ep)
    assert isinstance(event, RequestReceived)
    ep.receive(invite_bytes(), UAC, 0.5)
    assert [m.status for m in sent(ep)] == [100]  # type: ignore[union-attr]
    assert drain(ep) == []


def test_server_invite_error_retransmits_with_timer_g_until_ack() -> None:
    ep = endpoint()
    ep.receive(invite_bytes(), UAC, 0.0)
    sent(ep)
    (event,) = drain(ep)
    txn = event.transaction  # type: ignore[attr-defined]
    txn.respond(486, to_tag="x1")
    sent(ep)
    log = run_until(ep, 8.0)
    assert [t for t, _ in log] == [0.5, 1.5, 3.5, 7.5]  # T1, then doubling, capped at T2
    ack = invite_bytes(method="ACK", to_tag="x1")
    ep.receive(ack, UAC, 8.0)
    assert txn.state is TxState.CONFIRMED
    assert drain(ep) == []  # the ACK for a non-2xx is the transaction's, not the TU's
    ep.handle_timer(8.0 + T4)  # Timer I
    assert txn.state is TxState.TERMINATED


def test_server_invite_timer_h_reports_missing_ack() -> None:
    ep = endpoint()
    ep.receive(invite_bytes(), UAC, 0.0)
    sent(ep)
    txn = drain(ep)[0].transaction  # type: ignore[attr-defined]
    txn.respond(404, to_tag="x1")
    run_until(ep, 64 * T1)
    assert [type(e) for e in drain(ep)] == [AckTimeout]
    assert txn.state is TxState.TERMINATED


def test_server_invite_2xx_retransmitted_until_ack_then_timer_l() -> None:
    ep = endpoint()
    ep.receive(invite_bytes(), UAC, 0.0)
    sent(ep)
    txn: ServerTransaction = drain(ep)[0].transaction  # type: ignore[attr-defined]
    txn.respond(200, to_tag="x1")
    sent(ep)
    assert txn.state is TxState.ACCEPTED
    log = run_until(ep, 2.0)
    assert [t for t, _ in log] == [0.5, 1.5]
    # ACK for the 2xx has its own branch; it is matched by Call-ID and CSeq and handed to the TU.
    ep.receive(invite_bytes(branch="z9hG4bKack", method="ACK", to_tag="x1"), UAC, 2.0)
    assert [type(e) for e in drain(ep)] == [AckReceived]
    assert run_until(ep, 64 * T1 - 0.1) == []  # no more 2xx retransmissions
    ep.handle_timer(64 * T1)
    assert txn.state is TxState.TERMINATED
    assert drain(ep) == []  # it was acknowledged: no AckTimeout


def test_server_cancel_matches_invite_and_481_otherwise() -> None:
    ep = endpoint()
    ep.receive(invite_bytes(), UAC, 0.0)
    sent(ep)
    invite_txn = drain(ep)[0].transaction  # type: ignore[attr-defined]
    ep.receive(invite_bytes(method="CANCEL"), UAC, 1.0)
    assert [m.status for m in sent(ep)] == [200]  # type: ignore[union-attr]
    (event,) = drain(ep)
    assert isinstance(event, CancelReceived) and event.invite is invite_txn
    ep.receive(invite_bytes(branch="z9hG4bKother", method="CANCEL"), UAC, 1.0)
    assert [m.status for m in sent(ep)] == [481]  # type: ignore[union-attr]


def test_server_non_invite_timer_j_and_retransmitted_final() -> None:
    ep = endpoint()
    ep.receive(invite_bytes(method="BYE", to_tag="x1"), UAC, 0.0)
    txn = drain(ep)[0].transaction  # type: ignore[attr-defined]
    txn.respond(200)
    assert [m.status for m in sent(ep)] == [200]  # type: ignore[union-attr]
    ep.receive(invite_bytes(method="BYE", to_tag="x1"), UAC, 1.0)
    assert [m.status for m in sent(ep)] == [200]  # type: ignore[union-attr]
    with pytest.raises(LocalProtocolError):
        txn.respond(500)
    ep.handle_timer(64 * T1)
    assert txn.state is TxState.TERMINATED
    assert ep.transaction_count == 0


def test_own_request_coming_back_is_a_loop() -> None:
    ep = endpoint()
    txn = client_request(ep, "INVITE")
    ep.receive(txn.request.to_bytes(), Peer("udp", "127.0.0.1", 5060), 0.1)
    (resp,) = sent(ep)
    assert isinstance(resp, Response) and resp.status == 482


def test_received_and_rport_are_stamped() -> None:
    ep = endpoint()
    ep.receive(invite_bytes(), Peer("udp", "127.0.0.2", 40000), 0.0)
    (trying,) = sent(ep)
    via = trying.top_via
    assert via.params["rport"] == "40000"
    assert via.params["received"] == "127.0.0.2"
