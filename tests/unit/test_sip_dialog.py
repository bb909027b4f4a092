"""Dialog state (RFC 3261 §12): creation on both sides, route sets, in-dialog requests, CSeq ordering."""

from __future__ import annotations

from appliance.sip.builder import make_request, make_response
from appliance.sip.dialog import Dialog, uri_to_peer
from appliance.sip.events import Peer
from appliance.sip.message import parse_message
from appliance.sip.uri import parse_sip_uri


def invite_with_record_route() -> bytes:
    request = make_request(
        "INVITE", "sip:bob@127.0.0.1", via="SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKd1",
        from_='"Alice" <sip:alice@127.0.0.1>;tag=a1', to="<sip:bob@127.0.0.1>", call_id="d-1", cseq=7,
        contact="<sip:alice@127.0.0.1:5070>",
        extra=[("Record-Route", "<sip:127.0.0.2;lr>, <sip:127.0.0.3;lr>")],
    )  # fmt: skip
    return request.to_bytes()


def test_uas_dialog_keeps_record_route_order_and_remote_seq() -> None:
    request = parse_message(invite_with_record_route())
    dialog = Dialog.as_uas(request, "b1")  # type: ignore[arg-type]
    assert dialog.key == ("d-1", "b1", "a1")
    assert dialog.route_set == ["<sip:127.0.0.2;lr>", "<sip:127.0.0.3;lr>"]
    assert dialog.remote_target == "sip:alice@127.0.0.1:5070"
    assert dialog.remote_seq == 7
    bye = dialog.create_request("BYE", via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx")
    assert bye.uri == "sip:alice@127.0.0.1:5070"
    assert bye.headers.get_all("route") == ["<sip:127.0.0.2;lr>", "<sip:127.0.0.3;lr>"]
    assert bye.from_.tag == "b1" and bye.to.tag == "a1" and bye.cseq == (1, "BYE")
    assert dialog.next_hop().host == "127.0.0.2"


def test_uac_dialog_reverses_record_route_and_counts_cseq() -> None:
    request = parse_message(invite_with_record_route())
    response = make_response(
        request, 200, to_tag="b1",  # type: ignore[arg-type]
        extra=[("Contact", "<sip:bob@127.0.0.1:5080>"),
               ("Record-Route", "<sip:127.0.0.2;lr>, <sip:127.0.0.3;lr>")],
    )  # fmt: skip
    dialog = Dialog.as_uac(request, parse_message(response.to_bytes()))  # type: ignore[arg-type]
    assert dialog.route_set == ["<sip:127.0.0.3;lr>", "<sip:127.0.0.2;lr>"]
    assert dialog.remote_target == "sip:bob@127.0.0.1:5080"
    first = dialog.create_request("INFO", via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1")
    second = dialog.create_request("INFO", via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK2")
    assert (first.cseq[0], second.cseq[0]) == (8, 9)
    ack = dialog.create_request("ACK", via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK3", cseq=7)
    assert ack.cseq == (7, "ACK") and dialog.local_seq == 9


def test_remote_cseq_must_not_go_backwards() -> None:
    dialog = Dialog.as_uas(parse_message(invite_with_record_route()), "b1")  # type: ignore[arg-type]
    assert dialog.accept_remote_seq(8)
    assert not dialog.accept_remote_seq(7)
    assert dialog.accept_remote_seq(8)  # equal is a retransmission matter for the transaction layer


def test_target_refresh_updates_remote_target() -> None:
    dialog = Dialog.as_uas(parse_message(invite_with_record_route()), "b1")  # type: ignore[arg-type]
    reinvite = make_request(
        "INVITE", "sip:pop@127.0.0.1", via="SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKd2",
        from_="<sip:alice@127.0.0.1>;tag=a1", to="<sip:bob@127.0.0.1>;tag=b1", call_id="d-1", cseq=8,
        contact="<sip:alice@127.0.0.9:6000>",
    )  # fmt: skip
    dialog.update_target(reinvite)
    assert dialog.remote_target == "sip:alice@127.0.0.9:6000"


def test_uri_to_peer() -> None:
    assert uri_to_peer(parse_sip_uri("sip:127.0.0.1:5080")) == Peer("udp", "127.0.0.1", 5080)
    assert uri_to_peer(parse_sip_uri("sip:x@localhost;transport=tcp")) == Peer("tcp", "127.0.0.1", 5060)
    assert uri_to_peer(parse_sip_uri("sips:[::1]")) == Peer("tls", "::1", 5061)
    assert uri_to_peer(parse_sip_uri("sip:x@127.0.0.5;maddr=127.0.0.6")) == Peer("udp", "127.0.0.6", 5060)
