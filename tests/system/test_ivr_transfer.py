"""The local IVR hands a caller to a group of local agents: real SIPp phones, RTP peers of the test.

With no cloud configured (SURVIVABLE) a caller from Germany hears the default flow's greeting and presses
0 for an agent. The flow's group ``local`` has two members, each a SIPp UAS at its own address: the
default flow rings them all at once (``ring_all``), each INVITE carrying the same offer (the relay's port
for the agent's leg). The first phone is busy (486); the second answers after a second's ringing, while
the caller hears the queue's music. From then on caller and agent hear each other through the relay, each
receiving the other's packets in order, the caller from the port the IVR's answer named (no re-INVITE: it
keeps its RTP session). The caller hangs up: the agent gets the BYE, and the session's record in the
outbox says the call went to that agent.

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


def config(busy: str, agent: str) -> str:
    low, high = rtp_range()
    return (
        f"[media]\nrtp_port_min = {low}\nrtp_port_max = {high}\nworkers = 1\n"
        f'[[agent_groups]]\nname = "local"\nmembers = ["{busy}", "{agent}"]\n'
    )


def in_order(indices: list[int]) -> bool:
    """Each packet once, in order, none lost (loopback, one relay)."""
    return bool(indices) and indices == list(range(indices[0], indices[0] + len(indices)))


async def test_a_caller_who_presses_0_rings_every_agent_and_talks_with_the_one_who_answers(
    tmp_path: Path,
) -> None:
    agent = await RtpPeer.open(2, address=AGENT_IP, event_pt=None)
    busy_port, agent_port = free_port(BUSY_IP), free_port(AGENT_IP)
    busy_uas = SippProcess.uas(
        SCENARIOS / "ivr_agent_uas_busy.xml", workdir=tmp_path / "busy", local_ip=BUSY_IP,
        local_port=busy_port, max_calls=1, trace_messages=True, recv_timeout_ms=60000,
    )  # fmt: skip
    scenario = write_scenario(SCENARIOS / "ivr_agent_uas.xml", tmp_path / "sc", agent.sdp(origin="agent"))
    agent_uas = SippProcess.uas(
        scenario,
        workdir=tmp_path / "agent", local_ip=AGENT_IP, local_port=agent_port, max_calls=1,
        trace_messages=True, recv_timeout_ms=60000, duration_ms=RING_MS,
    )  # fmt: skip
    member = f"sip:agent@{AGENT_IP}:{agent_port}"
    talking: asyncio.Task[int] | None = None
    try:
        with busy_uas, agent_uas:
            await asyncio.wait_for(busy_uas.wait_bound_async(), 5)
            await asyncio.wait_for(agent_uas.wait_bound_async(), 5)
            async with running(tmp_path, config(f"sip:busy@{BUSY_IP}:{busy_port}", member)) as apps:
                app = apps[0]
                async with calling(app, tmp_path / "caller", GERMAN, tag=1, scenario="ivr_uac_hangup.xml",
                                   hold_ms=HOLD_MS) as caller:  # fmt: skip
                    menu = await greeted(caller, "de")
                    caller.press("0")
                    # Queued: the caller hears the music while the agents' phones ring.
                    await caller.hears("shared", "music_on_hold", after=menu + 1, within=5)
                    at_busy = await sipp_received_sdp(busy_uas.workdir, "INVITE ", within=5)
                    at_agent = await sipp_received_sdp(agent_uas.workdir, "INVITE ", within=5)
                    assert at_agent.address == "127.0.0.1" and "127.0.0.2" not in at_agent.text, at_agent.text
                    assert at_busy.target == at_agent.target != caller.sdp.target
                    agent.set_remote(at_agent)
                    talking = asyncio.create_task(agent.talk())
                    await hear_each_other(caller.peer, agent, TALK)
                    assert in_order(caller.peer.indices_from(agent))
                    assert in_order(agent.indices_from(caller.peer))
                    assert {r.source for _, r in caller.peer.arrivals_from(agent)} == {caller.sdp.target}
                    # The caller hangs up (its SIPp fails on any request from the appliance before).
                    result = await caller.finished(within=30)
                    assert result.all_successful, result.describe()
                for uas in (agent_uas, busy_uas):  # the agent got the BYE; the busy phone its ACK
                    done = await uas.wait_async()
                    assert done.all_successful, done.describe()
                (record,) = await wait_outbox(app, "ivr.session", 1)
                assert record.body["outcome"] == "agent" and record.body["agent"] == member, record.body
    finally:
        agent.stop()
        if talking is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await talking
        agent.close()
