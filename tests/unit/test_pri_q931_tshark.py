"""Messages written by the Q.931 codec, as Wireshark's Q.931 dissector reads them (tshark).

Every message of the codec's wire vectors table (``VALID`` in ``test_pri_q931_codec.py``: SETUP en bloc
and overlap, multirate, CALL PROCEEDING, SETUP ACK, ALERTING, PROGRESS, CONNECT, CONNECT ACK, DISCONNECT,
RELEASE, RELEASE COMPLETE, RESTART, RESTART ACK, STATUS, STATUS ENQUIRY, INFORMATION, codeset 6) is encoded,
wrapped in a LAPD I-frame (SAPI 0, TEI 0) and written to a pcap with LINKTYPE_LINUX_LAPD (177). tshark must
decode every frame without a malformed packet or an expert item of severity error, and the fields it
prints (message type, call reference, called number digits, cause value, channel numbers) must be the
ones encoded.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from appliance.pri.lapd_codec import IFrame
from appliance.pri.lapd_codec import encode as encode_frame
from appliance.pri.pcap import PcapWriter
from appliance.pri.q931_codec import encode
from appliance.pri.q931_model import (
    Cause,
    ChannelId,
    Display,
    Location,
    Message,
    MessageType,
    PartyNumber,
    ProgressDescription,
    ProgressIndicator,
    TypeOfNumber,
)
from tests.unit.test_pri_q931_codec import VALID
from tests.unit.test_pri_q931_codec_properties import messages

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

T = MessageType
# A few more than the vectors: two progress indicators, a long display, a RESTART of many channels.
EXTRA: dict[str, Message] = {
    "alerting_two_progress": Message(
        T.ALERTING,
        0x7FFF,
        False,
        progress=(
            ProgressIndicator(ProgressDescription.NOT_END_TO_END_ISDN, Location.PUBLIC_REMOTE),
            ProgressIndicator(ProgressDescription.IN_BAND_AVAILABLE, Location.PUBLIC_REMOTE),
        ),
        display=Display("Ringing at the far end " * 3),
    ),
    "disconnect_no_circuit": Message(T.DISCONNECT, 300, False, cause=Cause(34, Location.PUBLIC_LOCAL)),
    "setup_international": Message(
        T.SETUP,
        0x1234,
        True,
        bearer=VALID["setup_en_bloc_network"].bearer,
        channel=ChannelId((31,), exclusive=False),
        called=PartyNumber("33123456789", TypeOfNumber.INTERNATIONAL),
        sending_complete=True,
    ),
    "restart_channels": Message(
        T.RESTART,
        0,
        True,
        channel=ChannelId(tuple(range(17, 32)), exclusive=True),
        restart=VALID["restart_two_channels"].restart,
    ),
}
MESSAGES = [*VALID.values(), *EXTRA.values()]
FIELDS = (
    "q931.message_type",
    "q931.call_ref",
    "q931.called_party_number.digits",
    "q931.cause_value",
    "q931.channel.number",
)


def tshark(*args: str) -> str:
    done = subprocess.run(["tshark", *args], capture_output=True, text=True, check=True, timeout=120)
    return done.stdout


def write_pcap(path: Path, messages: list[Message] = MESSAGES) -> None:
    """One I-frame per message, alternately sent by the user side (N(S) counting) and by the network."""
    with path.open("wb") as f:
        writer = PcapWriter(f, side="user")
        sent = received = 0
        for index, message in enumerate(messages):
            from_user = index % 2 == 0
            number = sent if from_user else received
            frame = IFrame(ns=number % 128, nr=0, p=False, info=encode(message))
            octets = encode_frame(frame, sender="user" if from_user else "network")
            writer.write(octets, sent=from_user, timestamp=1_700_000_000 + index / 10)
            sent, received = (sent + 1, received) if from_user else (sent, received + 1)


def expected_fields(message: Message) -> tuple[int, int, str, str, str]:
    """What tshark prints for the fields of :data:`FIELDS` (empty when the element is absent)."""
    called = message.called.digits if message.called else ""
    cause = str(message.cause.value) if message.cause else ""
    channels = ",".join(str(c) for c in message.channel.channels) if message.channel else ""
    return (message.type, message.call_reference, called, cause, channels)


def test_tshark_reads_every_message_as_encoded(tmp_path: Path) -> None:
    check_with_tshark(tmp_path / "q931.pcap", MESSAGES)


# A few batches of generated messages (typed elements only, every message type, every element value the
# model allows), one tshark run per batch. No shrinking: a batch that fails is reported as it is, rather
# than replayed through tshark many times (slow, and a loaded machine made the replays time out).
@settings(
    max_examples=3,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.generate),
)
@given(st.lists(messages(raw=False), min_size=60, max_size=60))
def test_tshark_reads_generated_messages_as_encoded(batch: list[Message]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        check_with_tshark(Path(directory) / "q931.pcap", [m for m in batch if len(encode(m)) <= 250])


def check_with_tshark(path: Path, messages: list[Message]) -> None:
    write_pcap(path, messages)
    detail = tshark("-r", str(path), "-V")
    assert "Malformed" not in detail
    assert "Severity level: Error" not in detail
    expert = tshark("-r", str(path), "-q", "-z", "expert")
    assert "Errors (" not in expert
    assert "Malformed" not in expert
    columns = ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    lines = tshark("-r", str(path), *columns, *(a for f in FIELDS for a in ("-e", f))).splitlines()
    assert len(lines) == len(messages)
    for line, message in zip(lines, messages, strict=True):
        message_type, call_reference, called, cause, channels = line.split("|")
        got = (int(message_type, 0), int(call_reference, 16), called, cause, channels)
        assert got == expected_fields(message), message


def test_tshark_names_the_message_types(tmp_path: Path) -> None:
    path = tmp_path / "q931.pcap"
    write_pcap(path)
    summary = tshark("-r", str(path))
    for name in (
        "SETUP ACKNOWLEDGE",
        "CALL PROCEEDING",
        "ALERTING",
        "PROGRESS",
        "CONNECT ACKNOWLEDGE",
        "DISCONNECT",
        "RELEASE COMPLETE",
        "RESTART ACKNOWLEDGE",
        "STATUS ENQUIRY",
        "INFORMATION",
    ):
        assert name in summary, name
