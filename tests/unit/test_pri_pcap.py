"""The D-channel pcap writer: the file layout octet by octet, and what tshark makes of it."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from appliance.pri.pcap import LINKTYPE_LINUX_LAPD, PcapWriter, sll_header

# Q.921 frames as the user side sends and receives them on TEI 0, SAPI 0 (hand-assembled):
# SABME command from the user (C/R=0): address 00 01, control 7F (SABME with P=1).
SABME_FROM_USER = bytes.fromhex("00017f")
# UA response from the network (C/R=0 on responses from the network): address 00 01, control 73 (F=1).
UA_FROM_NETWORK = bytes.fromhex("000173")


def test_global_header_is_classic_pcap_with_linux_lapd() -> None:
    out = io.BytesIO()
    PcapWriter(out, side="user")
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack("<IHHiIII", out.getvalue())
    assert (magic, major, minor, zone, sigfigs, snaplen) == (0xA1B2C3D4, 2, 4, 0, 0, 65535)
    assert linktype == LINKTYPE_LINUX_LAPD == 177


def test_nanosecond_magic_and_fraction() -> None:
    out = io.BytesIO()
    writer = PcapWriter(out, side="network", nanoseconds=True)
    writer.write(UA_FROM_NETWORK, sent=True, timestamp=12.000000123)
    data = out.getvalue()
    assert struct.unpack("<I", data[:4])[0] == 0xA1B23C4D
    assert struct.unpack("<IIII", data[24:40]) == (12, 123, 19, 19)


def test_record_carries_the_sll_header_then_the_frame() -> None:
    out = io.BytesIO()
    writer = PcapWriter(out, side="user")
    writer.write(SABME_FROM_USER, sent=True, timestamp=1.5)
    writer.write(UA_FROM_NETWORK, sent=False, timestamp=1.500250)
    data = out.getvalue()[24:]
    assert struct.unpack("<IIII", data[:16]) == (1, 500000, 19, 19)
    # pkttype 4 (outgoing), hatype 8445, halen 1, addr[0] 0 (we are the user), protocol 0x0030.
    assert data[16:32] == bytes.fromhex("0004 20fd 0001 0000000000000000 0030")
    assert data[32:35] == SABME_FROM_USER
    assert struct.unpack("<IIII", data[35:51]) == (1, 250 + 500000, 19, 19)
    assert data[51:67] == bytes.fromhex("0000 20fd 0001 0000000000000000 0030")
    assert writer.records == 2


def test_network_side_sets_the_address_octet() -> None:
    assert sll_header(sent=False, network=True)[6] == 1
    assert sll_header(sent=True, network=False)[6] == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="side"):
        PcapWriter(io.BytesIO(), side="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        PcapWriter(io.BytesIO(), side="user").write(b"\x00\x01\x7f", sent=True, timestamp=-1.0)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_direction_and_frame_types(tmp_path: Path) -> None:
    path = tmp_path / "d.pcap"
    with path.open("wb") as f:
        writer = PcapWriter(f, side="user")
        writer.write(SABME_FROM_USER, sent=True, timestamp=0.0)
        writer.write(UA_FROM_NETWORK, sent=False, timestamp=0.01)
    text = subprocess.run(
        ["tshark", "-r", str(path), "-V"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "Malformed" not in text
    assert "Direction: User->Network" in text
    assert "Direction: Network->User" in text
    assert "SABME" in text and "UA" in text
    assert "Command" in text and "Response" in text
