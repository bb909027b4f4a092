"""The local IVR hands a caller to a group of local agents: real SIPp phones, RTP peers of the test.

With no cloud configured (SURVIVABLE) a caller from Germany hears the default flow's greeting and presses
0 for an agent; it waits with the queue's music while the agents' phones (SIPp UASes, the members of the
flow's group ``local``) ring, all at once (the default flow's ``ring_all``), each INVITE carrying the same
offer (the relay's port for the agent's leg). An agent answers after a second's ringing; from then on
caller and agent hear each other through the relay, each receiving the other's packets in order, the
caller from the port the IVR's answer named (no re-INVITE: it keeps its RTP session). The session's record
in the outbox says the call went to that agent. Two endings:

* two phones, the first busy (486), the other answering; the caller hangs up and the agent gets the BYE;
* one phone, whose agent hangs up first: the caller is back in its session, and the default flow (nothing
  after its transfer) ends the call with the IVR's BYE, the only request the caller's SIPp accepts.

Addresses: the caller 127.0.0.2, the agents 127.0.0.5 (busy) and 127.0.0.6, the appliance and its media
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import pytest

from tests.system.rtp_peer import RtpPeer, sipp_received_sdp, write_scenario
from tests.system.sipp import SIPP_BINARY, SippProcess, free_port

pytestmark = [pytest.mark.system, pytest.mark.timeout(90)]

if shutil.which(SIPP_BINARY) is None:  # pragma: no cover - .ci/run installs sip-tester
    pytest.skip("SIPp is not installed (Debian package sip-tester)", allow_module_level=True)

from tests.system.test_ivr_calls import (  # noqa: E402 - after the skip: it skips likewise
    GERMAN,
    SCENARIOS,
    calling,
    greeted,
    hear_each_other,
    rtp_range,
    running,
    wait_outbox,
)

BUSY_IP = "127.0.0.5"
AGENT_IP = "127.0.0.6"
RING_MS = 1000  # the answering agent's phone rings this long
HOLD_MS = 14000  # the caller hangs up this long after its call was answered by the IVR
TALK = 25  # packets (0.5 s) each side must receive from the other


def config(members: list[str]) -> str:
    low, high = rtp_range()
    listed = ", ".join(f'"{m}"' for m in members)
    return (
        f"[media]\nrtp_port_min = {low}\nrtp_port_max = {high}\nworkers = 1\n"
        f'[[agent_groups]]\nname = "local"\nmembers = [{listed}]\n'
    )


def in_order(indices: list[int]) -> bool:
    """Each packet once, in order, none lost (loopback, one relay)."""
    return bool(indices) and indices == list(range(indices[0], indices[0] + len(indices)))


@pytest.mark.parametrize(
    ("agent_scenario", "caller_scenario", "busy_phone"),
    [
        # Two phones: the busy one refuses, the other answers; the caller hangs up after HOLD_MS.
        ("ivr_agent_uas.xml", "ivr_uac_hangup.xml", True),
        # One phone, which hangs up after 3 s: the caller is back in the flow, which ends the call.
        ("ivr_agent_uas_bye.xml", "ivr_uac.xml", False),
    ],
    ids=["caller-hangs-up", "agent-hangs-up"],
)
async def test_a_caller_who_presses_0_rings_every_agent_and_talks_with_the_one_who_answers(
    tmp_path: Path, agent_scenario: str, caller_scenario: str, busy_phone: bool
) -> None:
    agent = await RtpPeer.open(2, address=AGENT_IP, event_pt=None)
    busy_port, agent_port = free_port(BUSY_IP), free_port(AGENT_IP)
    phones: list[SippProcess] = []
    if busy_phone:
        phones.append(SippProcess.uas(
            SCENARIOS / "ivr_agent_uas_busy.xml", workdir=tmp_path / "busy", local_ip=BUSY_IP,
            local_port=busy_port, max_calls=1, trace_messages=True, recv_timeout_ms=60000,
        ))  # fmt: skip
    scenario = write_scenario(SCENARIOS / agent_scenario, tmp_path / "sc", agent.sdp(origin="agent"))
    agent_uas = SippProcess.uas(
        scenario,
        workdir=tmp_path / "agent", local_ip=AGENT_IP, local_port=agent_port, max_calls=1,
        trace_messages=True, recv_timeout_ms=60000, duration_ms=RING_MS,
    )  # fmt: skip
    phones.append(agent_uas)
    member = f"sip:agent@{AGENT_IP}:{agent_port}"
    members = [f"sip:busy@{BUSY_IP}:{busy_port}"] * busy_phone + [member]
    talking: asyncio.Task[int] | None = None
    try:
        with contextlib.ExitStack() as stack:
            for phone in phones:
                stack.enter_context(phone)
                await asyncio.wait_for(phone.wait_bound_async(), 5)
            async with running(tmp_path, config(members)) as apps:
                app = apps[0]
                async with calling(app, tmp_path / "caller", GERMAN, tag=1, scenario=caller_scenario,
                                   hold_ms=HOLD_MS) as caller:  # fmt: skip
                    menu = await greeted(caller, "de")
                    caller.press("0")
                    # Queued: the caller hears the music while the agents' phones ring.
                    await caller.hears("shared", "music_on_hold", after=menu + 1, within=5)
                    offers = [await sipp_received_sdp(p.workdir, "INVITE ", within=5) for p in phones]
                    at_agent = offers[-1]
                    assert at_agent.address == "127.0.0.1" and "127.0.0.2" not in at_agent.text, at_agent.text
                    # Every phone got the same offer: the relay's port for the agent's leg.
                    assert {o.target for o in offers} == {at_agent.target} != {caller.sdp.target}
                    agent.set_remote(at_agent)
                    talking = asyncio.create_task(agent.talk())
                    await hear_each_other(caller.peer, agent, TALK)
                    assert in_order(caller.peer.indices_from(agent))
                    assert in_order(agent.indices_from(caller.peer))
                    assert {r.source for _, r in caller.peer.arrivals_from(agent)} == {caller.sdp.target}
                    # The caller hangs up, or gets the IVR's BYE after the agent's; its SIPp fails on any
                    # other request from the appliance (no re-INVITE, no BYE before its time).
                    result = await caller.finished(within=30)
                    assert result.all_successful, result.describe()
                for phone in phones:  # the agent's BYE went through (either way); the busy phone's ACK came
                    done = await phone.wait_async()
                    assert done.all_successful, done.describe()
                (record,) = await wait_outbox(app, "ivr.session", 1)
                assert record.body["outcome"] == "agent" and record.body["agent"] == member, record.body
    finally:
        agent.stop()
        if talking is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await talking
        agent.close()
