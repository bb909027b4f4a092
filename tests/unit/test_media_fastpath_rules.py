"""Kernel fast path without a kernel: eligibility, map layout, and the netlink messages decoded back."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL  # type: ignore[import-untyped]
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_NFTABLES  # type: ignore[import-untyped]
from pyroute2.netlink.nfnetlink.nfctsocket import (  # type: ignore[import-untyped]
    IPCTNL_MSG_CT_DELETE,
    IPCTNL_MSG_CT_GET,
    IPCTNL_MSG_CT_NEW,
    nfct_msg,
)
from pyroute2.netlink.nfnetlink.nftsocket import (  # type: ignore[import-untyped]
    NFT_MSG_DELSETELEM,
    NFT_MSG_DELTABLE,
    NFT_MSG_NEWCHAIN,
    NFT_MSG_NEWRULE,
    NFT_MSG_NEWSET,
    NFT_MSG_NEWSETELEM,
    NFT_MSG_NEWTABLE,
    nft_chain_msg,
    nft_rule_msg,
    nft_set_elem_list_msg,
    nft_set_msg,
    nft_table_msg,
)

from appliance.media.fastpath import FastPathConfig, FlowHandle, KernelFastPath
from appliance.media.fastpath_decide import Ineligible, LegMedia, decide
from appliance.media.fastpath_rules import (
    IPS_DST_NAT,
    IPS_SRC_NAT,
    NFNL_MSG_BATCH_BEGIN,
    NFNL_MSG_BATCH_END,
    NLMSG_ERROR,
    FastPathDecodeError,
    FastPathUsageError,
    FlowCounters,
    FlowLeg,
    conntrack_request,
    dnat_elements,
    grown,
    install_batch,
    map_key,
    map_value,
    remove_batch,
    setup_batch,
    snat_elements,
    teardown_batch,
)
from appliance.media.fastpath_wire import FlowMessages, Template, error_code, parse_conntrack, split_messages

RA = ("192.168.1.20", 40000)
RB = ("10.0.0.7", 50002)
LA = ("10.0.0.1", 20000)
LB = ("10.0.0.1", 20002)
LEG_A = FlowLeg(RA, LA)
LEG_B = FlowLeg(RB, LB)
# Small and deterministic by default (STYLE rule 12); a long run sets APPLIANCE_HYPOTHESIS_EXAMPLES.
SETTINGS = settings(
    max_examples=int(os.environ.get("APPLIANCE_HYPOTHESIS_EXAMPLES", "200")), deadline=None, derandomize=True
)


def leg(**changes: Any) -> LegMedia:
    fields: dict[str, Any] = {
        "codec": "PCMA",
        "codec_pt": 8,
        "event_pt": 101,
        "srtp": False,
        "local": LA,
        "latched": RA,
    }
    fields.update(changes)
    return LegMedia(**fields)


# --- eligibility -------------------------------------------------------------------------------------


def test_plain_rtp_same_codec_both_latched_is_eligible() -> None:
    decision = decide(leg(), leg(local=LB, latched=RB), recording=False, report_dtmf=False)
    assert decision.eligible
    assert decision.reasons == ()
    assert decision.legs == (LEG_A, LEG_B)


def test_codec_name_case_does_not_matter() -> None:
    assert decide(leg(codec="pcma"), leg(local=LB, latched=RB), recording=False, report_dtmf=False).eligible


@pytest.mark.parametrize(
    ("a", "b", "recording", "report_dtmf", "reason"),
    [
        (leg(srtp=True), leg(local=LB, latched=RB), False, False, Ineligible.SRTP),
        (leg(), leg(local=LB, latched=RB, codec="PCMU", codec_pt=0), False, False, Ineligible.CODEC),
        (leg(), leg(local=LB, latched=RB, codec_pt=96), False, False, Ineligible.CODEC),
        (leg(), leg(local=LB, latched=RB, event_pt=96), False, False, Ineligible.EVENTS),
        (leg(), leg(local=LB, latched=RB, event_pt=None), False, False, Ineligible.EVENTS),
        (leg(), leg(local=LB, latched=RB), True, False, Ineligible.RECORDING),
        (leg(), leg(local=LB, latched=RB), False, True, Ineligible.DTMF),
        (leg(latched=None), leg(local=LB, latched=RB), False, False, Ineligible.NOT_LATCHED),
        (leg(), leg(local=LB, latched=("2001:db8::5", 4000)), False, False, Ineligible.NOT_IPV4),
        (leg(local=("::1", 20000)), leg(local=LB, latched=RB), False, False, Ineligible.NOT_IPV4),
    ],
)
def test_each_processing_need_keeps_the_call_in_userspace(
    a: LegMedia, b: LegMedia, recording: bool, report_dtmf: bool, reason: Ineligible
) -> None:
    decision = decide(a, b, recording=recording, report_dtmf=report_dtmf)
    assert not decision.eligible
    assert decision.reasons == (reason,)
    assert decision.legs is None


def test_every_reason_is_listed() -> None:
    decision = decide(
        leg(srtp=True, latched=None),
        leg(local=LB, latched=RB, codec="PCMU", codec_pt=0, event_pt=None),
        recording=True,
        report_dtmf=True,
    )
    assert set(decision.reasons) == {
        Ineligible.SRTP,
        Ineligible.CODEC,
        Ineligible.EVENTS,
        Ineligible.RECORDING,
        Ineligible.DTMF,
        Ineligible.NOT_LATCHED,
    }


def test_no_telephone_events_on_either_leg_is_eligible() -> None:
    assert decide(
        leg(event_pt=None), leg(local=LB, latched=RB, event_pt=None), recording=False, report_dtmf=False
    ).eligible


@pytest.mark.parametrize(
    ("remote", "local"),
    [
        (("::1", 4000), LA),
        (("not-an-address", 4000), LA),
        (RA, ("10.0.0.1", 0)),
        (RA, ("10.0.0.1", 65536)),
    ],
)
def test_flow_leg_rejects_bad_addresses(remote: tuple[str, int], local: tuple[str, int]) -> None:
    with pytest.raises(FastPathUsageError):
        FlowLeg(remote, local)


# --- map layout ----------------------------------------------------------------------------------------


def test_map_key_is_two_address_port_fields_padded_to_registers() -> None:
    key = map_key(RA, LA)
    assert len(key) == 16
    assert key == (
        socket.inet_aton("192.168.1.20")
        + struct.pack("!H", 40000)
        + b"\0\0"
        + socket.inet_aton("10.0.0.1")
        + struct.pack("!H", 20000)
        + b"\0\0"
    )
    assert map_value(RB) == socket.inet_aton("10.0.0.7") + struct.pack("!H", 50002) + b"\0\0"


def test_elements_send_each_remote_to_the_other_from_the_other_port() -> None:
    assert dnat_elements(LEG_A, LEG_B) == [(map_key(RA, LA), map_value(RB)), (map_key(RB, LB), map_value(RA))]
    assert snat_elements(LEG_A, LEG_B) == [(map_key(RA, LA), map_value(LB)), (map_key(RB, LB), map_value(LA))]


# --- nf_tables messages --------------------------------------------------------------------------------

_NFT_CLASSES = {
    NFT_MSG_NEWTABLE: nft_table_msg,
    NFT_MSG_DELTABLE: nft_table_msg,
    NFT_MSG_NEWSET: nft_set_msg,
    NFT_MSG_NEWCHAIN: nft_chain_msg,
    NFT_MSG_NEWRULE: nft_rule_msg,
    NFT_MSG_NEWSETELEM: nft_set_elem_list_msg,
    NFT_MSG_DELSETELEM: nft_set_elem_list_msg,
}


def decode_batch(data: bytes) -> list[tuple[int, int, Any]]:
    """``(nft type, flags, decoded message)`` of each message between the batch markers."""
    messages = split_messages(data)
    assert messages[0][0] == NFNL_MSG_BATCH_BEGIN
    assert messages[-1][0] == NFNL_MSG_BATCH_END
    out = []
    for msg_type, _, raw in messages[1:-1]:
        assert msg_type >> 8 == NFNL_SUBSYS_NFTABLES
        msg = _NFT_CLASSES[msg_type & 0xFF](raw)
        msg.decode()
        assert msg["nfgen_family"] == 2
        out.append((msg_type & 0xFF, msg["header"]["flags"], msg))
    return out


def expression_names(rule: Any) -> list[str]:
    return [e.get_attr("NFTA_EXPR_NAME") for e in rule.get_attr("NFTA_RULE_EXPRESSIONS")]


def test_setup_replaces_a_stale_table_then_builds_maps_chains_and_rules() -> None:
    batch = setup_batch("appliance_media_w1", first_sequence=100)
    encoded = batch.encode()
    decoded = decode_batch(encoded.data)
    types = [t for t, _, _ in decoded]
    assert types == [
        NFT_MSG_NEWTABLE,
        NFT_MSG_DELTABLE,
        NFT_MSG_NEWTABLE,
        NFT_MSG_NEWSET,
        NFT_MSG_NEWSET,
        NFT_MSG_NEWCHAIN,
        NFT_MSG_NEWRULE,
        NFT_MSG_NEWCHAIN,
        NFT_MSG_NEWRULE,
        NFT_MSG_NEWCHAIN,
        NFT_MSG_NEWRULE,
    ]
    assert all(flags & NLM_F_ACK for _, flags, _ in decoded)
    assert encoded.begin_sequence == 100
    assert encoded.sequences == tuple(range(101, 112))
    assert encoded.next_sequence == 113
    for _, _, msg in decoded[:3]:
        assert msg.get_attr("NFTA_TABLE_NAME") == "appliance_media_w1"
    assert decoded[2][1] & NLM_F_EXCL
    sets = [msg for t, _, msg in decoded if t == NFT_MSG_NEWSET]
    assert [s.get_attr("NFTA_SET_NAME") for s in sets] == ["dnat_to", "snat_to"]
    for s in sets:
        assert s.get_attr("NFTA_SET_FLAGS") == {"NFT_SET_MAP"}
        assert (s.get_attr("NFTA_SET_KEY_LEN"), s.get_attr("NFTA_SET_DATA_LEN")) == (16, 8)
    chains = {msg.get_attr("NFTA_CHAIN_NAME"): msg for t, _, msg in decoded if t == NFT_MSG_NEWCHAIN}
    hooks = {
        name: (
            c.get_attr("NFTA_CHAIN_HOOK").get_attr("NFTA_HOOK_HOOKNUM"),
            c.get_attr("NFTA_CHAIN_HOOK").get_attr("NFTA_HOOK_PRIORITY"),
            c.get_attr("NFTA_CHAIN_TYPE"),
        )
        for name, c in chains.items()
    }
    # prerouting and output at dstnat, postrouting at srcnat.
    assert hooks == {"pre": (0, -100, "nat"), "out": (3, -100, "nat"), "post": (4, 100, "nat")}
    rules = {msg.get_attr("NFTA_RULE_CHAIN"): msg for t, _, msg in decoded if t == NFT_MSG_NEWRULE}
    dnat = ["meta", "cmp", "payload", "payload", "payload", "payload", "lookup", "nat"]
    assert expression_names(rules["pre"]) == dnat
    assert expression_names(rules["out"]) == dnat
    assert expression_names(rules["post"]) == ["meta", "cmp", "ct", "ct", "ct", "ct", "lookup", "nat"]


def test_rules_match_udp_and_nat_to_both_map_registers() -> None:
    decoded = decode_batch(setup_batch("t", first_sequence=1).encode().data)
    rules = {msg.get_attr("NFTA_RULE_CHAIN"): msg for t, _, msg in decoded if t == NFT_MSG_NEWRULE}
    for chain, map_name, nat_type in (
        ("pre", "dnat_to", "NFT_NAT_DNAT"),
        ("post", "snat_to", "NFT_NAT_SNAT"),
    ):
        exprs = rules[chain].get_attr("NFTA_RULE_EXPRESSIONS")
        cmp = exprs[1].get_attr("NFTA_EXPR_DATA")
        assert cmp.get_attr("NFTA_CMP_DATA").get_attr("NFTA_DATA_VALUE") == b"\x11"
        lookup = exprs[6].get_attr("NFTA_EXPR_DATA")
        assert lookup.get_attr("NFTA_LOOKUP_SET") == map_name
        nat = exprs[7].get_attr("NFTA_EXPR_DATA")
        assert nat.get_attr("NFTA_NAT_TYPE") == nat_type
        assert nat.get_attr("NFTA_NAT_REG_ADDR_MIN") == "NFT_REG_1"
        assert nat.get_attr("NFTA_NAT_REG_PROTO_MIN") == "NFT_REG32_01"
        assert nat.get_attr("NFTA_NAT_FLAGS") == {"NF_NAT_RANGE_MAP_IPS", "NF_NAT_RANGE_PROTO_SPECIFIED"}
    payloads = [e.get_attr("NFTA_EXPR_DATA") for e in rules["pre"].get_attr("NFTA_RULE_EXPRESSIONS")[2:6]]
    assert [(p.get_attr("NFTA_PAYLOAD_OFFSET"), p.get_attr("NFTA_PAYLOAD_LEN")) for p in payloads] == [
        (12, 4),
        (0, 2),
        (16, 4),
        (2, 2),
    ]
    cts = [e.get_attr("NFTA_EXPR_DATA") for e in rules["post"].get_attr("NFTA_RULE_EXPRESSIONS")[2:6]]
    assert [c.get_attr("NFTA_CT_KEY") for c in cts] == [
        "NFT_CT_SRC_IP",
        "NFT_CT_PROTO_SRC",
        "NFT_CT_DST_IP",
        "NFT_CT_PROTO_DST",
    ]
    assert {c.get_attr("NFTA_CT_DIRECTION") for c in cts} == {0}


def elements_of(msg: Any) -> list[tuple[bytes, bytes | None]]:
    out = []
    for elem in msg.get_attr("NFTA_SET_ELEM_LIST_ELEMENTS"):
        data = elem.get_attr("NFTA_SET_ELEM_DATA")
        out.append(
            (
                elem.get_attr("NFTA_SET_ELEM_KEY").get_attr("NFTA_DATA_VALUE"),
                None if data is None else data.get_attr("NFTA_DATA_VALUE"),
            )
        )
    return out


def test_install_adds_four_elements_exclusively_and_remove_deletes_their_keys() -> None:
    installed = decode_batch(install_batch("t", LEG_A, LEG_B, first_sequence=7).encode().data)
    assert [(t, m.get_attr("NFTA_SET_ELEM_LIST_SET")) for t, _, m in installed] == [
        (NFT_MSG_NEWSETELEM, "dnat_to"),
        (NFT_MSG_NEWSETELEM, "snat_to"),
    ]
    assert all(flags & NLM_F_CREATE and flags & NLM_F_EXCL for _, flags, _ in installed)
    assert elements_of(installed[0][2]) == dnat_elements(LEG_A, LEG_B)
    assert elements_of(installed[1][2]) == snat_elements(LEG_A, LEG_B)
    removed = decode_batch(remove_batch("t", LEG_A, LEG_B, first_sequence=7).encode().data)
    assert [t for t, _, _ in removed] == [NFT_MSG_DELSETELEM, NFT_MSG_DELSETELEM]
    assert elements_of(removed[0][2]) == [(key, None) for key, _ in dnat_elements(LEG_A, LEG_B)]


def test_teardown_deletes_the_table() -> None:
    ((msg_type, _, msg),) = decode_batch(teardown_batch("t", first_sequence=1).encode().data)
    assert msg_type == NFT_MSG_DELTABLE
    assert msg.get_attr("NFTA_TABLE_NAME") == "t"


# --- compiled messages ----------------------------------------------------------------------------------

ports = st.integers(1, 65535)
ipv4 = st.ip_addresses(v=4).map(str)
flow_legs = st.builds(FlowLeg, st.tuples(ipv4, ports), st.tuples(ipv4, ports))


@SETTINGS
@given(flow_legs, flow_legs, st.integers(1, 2**31))
def test_compiled_messages_are_byte_identical_to_pyroute2s(a: FlowLeg, b: FlowLeg, seq: int) -> None:
    messages = FlowMessages("appliance_media_w3")
    assert (
        messages.install(a, b, first_sequence=seq)
        == install_batch("appliance_media_w3", a, b, first_sequence=seq).encode()
    )
    assert (
        messages.remove(a, b, first_sequence=seq)
        == remove_batch("appliance_media_w3", a, b, first_sequence=seq).encode()
    )
    for delete in (True, False):
        assert messages.conntrack(a, delete=delete, sequence=seq) == conntrack_request(
            a, delete=delete, sequence=seq
        )


def test_a_template_refuses_ambiguous_placeholders_and_wrong_sizes() -> None:
    data = conntrack_request(LEG_A, delete=False, sequence=1)
    with pytest.raises(ValueError, match="exactly once"):
        Template(data + data, {"src": socket.inet_aton(RA[0])})
    with pytest.raises(ValueError, match="exactly once"):
        Template(data, {"absent": b"\xfe\xfe\xfe\xfe\xfe"})
    template = Template(data, {"src": socket.inet_aton(RA[0])})
    assert template.messages == 1
    with pytest.raises(ValueError, match="4 bytes"):
        template.render(1, {"src": b"\x01"})


# --- conntrack ---------------------------------------------------------------------------------------------


def test_conntrack_requests_name_the_remote_to_relay_tuple() -> None:
    for delete, msg_type in ((True, IPCTNL_MSG_CT_DELETE), (False, IPCTNL_MSG_CT_GET)):
        ((raw_type, seq, raw),) = split_messages(conntrack_request(LEG_B, delete=delete, sequence=42))
        assert (raw_type, seq) == (NFNL_SUBSYS_CTNETLINK << 8 | msg_type, 42)
        msg = nfct_msg(raw)
        msg.decode()
        assert bool(msg["header"]["flags"] & NLM_F_ACK) is delete
        orig = msg.get_attr("CTA_TUPLE_ORIG")
        ip = orig.get_attr("CTA_TUPLE_IP")
        proto = orig.get_attr("CTA_TUPLE_PROTO")
        assert (ip.get_attr("CTA_IP_V4_SRC"), proto.get_attr("CTA_PROTO_SRC_PORT")) == RB
        assert (ip.get_attr("CTA_IP_V4_DST"), proto.get_attr("CTA_PROTO_DST_PORT")) == LB
        assert proto.get_attr("CTA_PROTO_NUM") == 17


def entry(
    src: tuple[str, int], dst: tuple[str, int], orig: tuple[int, int], reply: tuple[int, int], **kw: Any
) -> bytes:
    """A conntrack entry as the kernel would send it."""
    msg = nfct_msg()
    msg["nfgen_family"] = socket.AF_INET
    msg["attrs"] = [
        [
            "CTA_TUPLE_ORIG",
            {
                "attrs": [
                    ("CTA_TUPLE_IP", {"attrs": [("CTA_IP_V4_SRC", src[0]), ("CTA_IP_V4_DST", dst[0])]}),
                    (
                        "CTA_TUPLE_PROTO",
                        {
                            "attrs": [
                                ("CTA_PROTO_NUM", 17),
                                ("CTA_PROTO_SRC_PORT", src[1]),
                                ("CTA_PROTO_DST_PORT", dst[1]),
                            ]
                        },
                    ),
                ]
            },
        ],
        # Attributes the parser has no use for, as a real entry carries them: skipped, not misread.
        ["CTA_TUPLE_REPLY", {"attrs": [("CTA_TUPLE_IP", {"attrs": [("CTA_IP_V4_SRC", dst[0])]})]}],
        ["CTA_TIMEOUT", 119],
        ["CTA_MARK", 0],
        ["CTA_STATUS", kw.get("status", IPS_SRC_NAT | IPS_DST_NAT)],
        [
            "CTA_COUNTERS_ORIG",
            {"attrs": [("CTA_COUNTERS_PACKETS", orig[0]), ("CTA_COUNTERS_BYTES", orig[1])]},
        ],
        [
            "CTA_COUNTERS_REPLY",
            {"attrs": [("CTA_COUNTERS_PACKETS", reply[0]), ("CTA_COUNTERS_BYTES", reply[1])]},
        ],
        ["CTA_ID", kw.get("entry_id", 7)],
    ]
    msg["header"]["type"] = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW
    msg.encode()
    return bytes(msg.data)


def test_counters_follow_whichever_leg_spoke_first() -> None:
    a_first = parse_conntrack(entry(RA, LA, (10, 2000), (4, 800)), LEG_A)
    assert a_first.entry_id == 7
    assert a_first.counters == FlowCounters(10, 2000, 4, 800, forwarding=True)
    b_first = parse_conntrack(entry(RB, LB, (10, 2000), (4, 800), entry_id=9), LEG_A)
    assert b_first.counters == FlowCounters(4, 800, 10, 2000, forwarding=True)


def test_an_entry_without_both_nats_is_not_the_fast_path() -> None:
    sample = parse_conntrack(entry(RA, LA, (1, 200), (0, 0), status=IPS_DST_NAT), LEG_A)
    assert not sample.counters.forwarding


def test_counters_add_up_and_keep_the_latest_forwarding_state() -> None:
    total = FlowCounters(1, 2, 3, 4, forwarding=True) + FlowCounters(10, 20, 30, 40, forwarding=False)
    assert total == FlowCounters(11, 22, 33, 44, forwarding=False)


def test_grown_names_the_directions_that_had_media() -> None:
    before = FlowCounters(10, 2000, 7, 1400)
    assert grown(before, before) == ()
    assert grown(before, FlowCounters(11, 2200, 7, 1400)) == ("a",)
    assert grown(before, FlowCounters(10, 2000, 9, 1800)) == ("b",)
    assert grown(before, FlowCounters(12, 2400, 8, 1600, forwarding=True)) == ("a", "b")


def test_parse_conntrack_rejects_what_is_not_an_entry() -> None:
    with pytest.raises(FastPathDecodeError):
        parse_conntrack(b"\x00" * 10, LEG_A)
    ack = struct.pack("=IHHII", 36, NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", 0) + b"\0" * 16
    with pytest.raises(FastPathDecodeError):
        parse_conntrack(ack, LEG_A)
    whole = entry(RA, LA, (1, 2), (3, 4))
    with pytest.raises(FastPathDecodeError):
        parse_conntrack(whole[:-8], LEG_A)


@SETTINGS
@given(st.binary(max_size=200))
def test_parsers_are_total_on_random_bytes(data: bytes) -> None:
    for parse in (lambda d: parse_conntrack(d, LEG_A), split_messages, error_code):
        with contextlib.suppress(FastPathDecodeError):
            parse(data)


@SETTINGS
@given(st.data())
def test_parse_conntrack_is_total_on_mutated_entries(data: st.DataObject) -> None:
    raw = bytearray(entry(RA, LA, (5, 500), (6, 600)))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(16, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(FastPathDecodeError):
        parse_conntrack(bytes(raw), LEG_A)


def test_netlink_errors_and_acks() -> None:
    ack = struct.pack("=IHHII", 36, NLMSG_ERROR, 0, 5, 0) + struct.pack("=i", 0) + b"\0" * 16
    refused = struct.pack("=IHHII", 36, NLMSG_ERROR, 0, 6, 0) + struct.pack("=i", -1) + b"\0" * 16
    messages = split_messages(ack + refused)
    assert [(t, s) for t, s, _ in messages] == [(NLMSG_ERROR, 5), (NLMSG_ERROR, 6)]
    assert [error_code(m) for _, _, m in messages] == [0, 1]
    with pytest.raises(FastPathDecodeError):
        split_messages(ack[:-4])
    with pytest.raises(FastPathDecodeError):
        error_code(ack[:18])


# --- the socket side's guard rails (no kernel needed) ----------------------------------------------------


def test_calls_before_open_or_for_unknown_calls_are_usage_errors() -> None:
    fastpath = KernelFastPath(FastPathConfig(table="t"))
    assert fastpath.table == "t"
    with pytest.raises(FastPathUsageError):
        fastpath.install("call-1", LEG_A, LEG_B)
    with pytest.raises(FastPathUsageError):
        fastpath.counters(FlowHandle("call-1", LEG_A, LEG_B))
    with pytest.raises(FastPathUsageError):
        fastpath.install("call-1", LEG_A, FlowLeg(RB, LA))
    fastpath.close()  # closing what never opened is harmless
