"""Frames written by the LAPD machines, as Wireshark's LAPD and Q.931 dissectors read them (tshark).

Two data link entities exchange a realistic D-channel conversation through the in-memory pair harness:
establishment, a SETUP and a CALL PROCEEDING (Q.931 octets written by hand below), acknowledgements, a lost
I frame recovered by REJ, an idle-link poll (T203) and the release. The user side's view is written as a
pcap (LINKTYPE_LINUX_LAPD) and tshark must decode every frame without a malformed packet or an expert item
of severity error.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.pri.lapd_codec import Frame, IFrame
from appliance.pri.pcap import PcapWriter
from tests.unit.test_pri_lapd_pair import Pair

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

# Q.931 SETUP from the user (ETSI EN 300 403-1 §3.1.14), octet by octet:
SETUP = bytes.fromhex(
    "08"  # protocol discriminator: Q.931
    "02 0001"  # call reference: two octets, flag 0 (sent by the originator), value 1
    "05"  # message type SETUP
    "a1"  # sending complete (single-octet element)
    "04 03 80 90 a3"  # bearer capability: CCITT, speech; circuit mode 64 kbit/s; layer 1 G.711 A-law
    "18 03 a9 83 81"  # channel identification: PRI, exclusive, B-channel 1
    "6c 0b 21 83 333132333435363738"  # calling: national, ISDN plan; allowed, network provided; 312345678
    "70 05 81 31323334"  # called: unknown type, ISDN plan; 1234
)
# CALL PROCEEDING from the network: call reference flag 1 (sent to the originator), channel confirmed.
CALL_PROCEEDING = bytes.fromhex("08 02 8001 02 18 03 a9 83 81")
# CONNECT from the network, then CONNECT ACKNOWLEDGE from the user.
CONNECT = bytes.fromhex("08 02 8001 07")
CONNECT_ACK = bytes.fromhex("08 02 0001 0f")


def tshark(*args: str) -> str:
    done = subprocess.run(["tshark", *args], capture_output=True, text=True, check=True, timeout=120)
    return done.stdout


def conversation() -> Pair:
    pair = Pair()
    pair.user.start(0.0)
    pair.run(0.0)
    pair.now = 0.1
    pair.user.send_data(SETUP, pair.now)
    pair.run(0.1)
    pair.now = 0.2
    pair.network.send_data(CALL_PROCEEDING, pair.now)
    pair.run(0.2)
    dropped: list[Frame] = []

    def drop_first_connect(sender: str, frame: Frame) -> bool:
        if sender == "network" and isinstance(frame, IFrame) and frame.info == CONNECT and not dropped:
            dropped.append(frame)
            return True
        return False

    pair.drop = drop_first_connect
    pair.now = 0.3
    pair.network.send_data(CONNECT, pair.now)
    pair.network.send_data(CALL_PROCEEDING[:3] + b"\x00" + CALL_PROCEEDING[4:], pair.now)  # a second call
    pair.run(0.3)
    pair.now = 0.4
    pair.user.send_data(CONNECT_ACK, pair.now)
    pair.run(11.0)  # T203 polls the idle link
    pair.user.stop(pair.now)
    pair.run(pair.now)
    assert dropped
    return pair


def test_tshark_decodes_the_conversation_without_errors(tmp_path: Path) -> None:
    pair = conversation()
    assert CONNECT in pair.received["user"] and SETUP in pair.received["network"]
    path = tmp_path / "d-channel.pcap"
    with path.open("wb") as f:
        writer = PcapWriter(f, side="user")
        for index, (sender, frame, when) in enumerate(pair.trace):
            if sender == "user" or index not in pair.lost:  # what the user side saw on its D-channel
                writer.write(frame, sent=sender == "user", timestamp=1_700_000_000 + when)
    summary = tshark("-r", str(path))
    for name in ("SABME", "UA", "SETUP", "CALL PROCEEDING", "CONNECT", "CONNECT ACKNOWLEDGE", "REJ", "DISC"):
        assert name in summary, name
    assert "func=RR" in summary
    detail = tshark("-r", str(path), "-V")
    assert "Malformed" not in detail
    assert "Severity level: Error" not in detail
    assert "Direction: User->Network" in detail and "Direction: Network->User" in detail
    assert "Called party number" in detail and "1234" in detail
    assert "Calling party number" in detail and "312345678" in detail
    expert = tshark("-r", str(path), "-q", "-z", "expert")
    assert "Errors (" not in expert
    assert "Malformed" not in expert
