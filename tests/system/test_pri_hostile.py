"""Hostile D-channel input against the running appliance (issue 6, "Hostile input").

The appliance runs as a real process with its default span 1 (sim, user side). The far end here is no
switch: :class:`RawFarEnd` holds the span's D-channel socket (the far end's client link of
:mod:`appliance.pri.farend_links`) and writes frames with the codecs directly, so that it can send anything.
It does just enough LAPD to stay on the link (UA to SABME, RR to what the appliance sends, the answer to an
enquiry) and keeps its own V(S)/V(R), so that a test can also get them wrong on purpose.

What is sent, and what the wire must show (the appliance is the user side: Q.931 §5.8, Q.921 §5.8):

1. LAPD: frames for another SAPI or TEI, too short, with EA bits wrong, or longer than a D-channel frame
   are discarded without an answer (Q.921 §5.8.4; the span drops the oversize one and an empty message,
   and refuses a second far end on its socket); an I-frame out of sequence is answered with REJ and not
   delivered (§5.8.1); an I-frame whose N(R) acknowledges what was never sent, a frame with an undefined
   control field, an RR with an information field and a UI frame with more than N201 octets of it make
   the appliance re-establish the link (SABME, §5.8.2/§5.8.5) — and Q.931 keeps working afterwards.
2. Q.931 in well-formed I-frames: a wrong protocol discriminator or a message too short is ignored
   (§5.8.1/§5.8.2); an unknown message type on a call is answered STATUS 97 (§5.8.4), on an unknown call
   reference RELEASE COMPLETE 81 (§5.8.3.2), as is any other message on one; a SETUP without bearer
   capability or channel identification is refused with RELEASE COMPLETE 96, one whose mandatory element
   is garbled with 100, one with an unknown comprehension-required element with 99 (§5.8.6.1, §5.8.6.2,
   §5.8.7.1); on an active call, an unknown optional element is acted on and reported with STATUS 99, a
   garbled one with STATUS 100 (§5.8.7.2), a message not allowed in the state with STATUS 101 (§5.8.4), a
   DISCONNECT without cause is acted on and answered with RELEASE cause 96 (§5.8.6.1). A SETUP without a
   called number is taken into overlap receiving (SETUP ACKNOWLEDGE, §5.2.4), or routed as it is with
   sending complete.
3. Floods: five thousand frames that are discarded, then two thousand messages on call references not in
   use, each answered (STATUS to an enquiry, RELEASE COMPLETE 81 to a DISCONNECT); forty SETUPs at once,
   thirty answered and ten refused with RELEASE COMPLETE 34.

Throughout the appliance does not die nor log a traceback, its protocol-fault counter counts by cause, and
afterwards a far end built from the appliance's own stack places a call that the IVR answers with its
greeting. Absence of an answer is shown by a marker: a STATUS ENQUIRY sent after the frame, whose STATUS
must be the next message on the wire.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final

import pytest

from appliance.pri import q931_codec
from appliance.pri.farend import CallScript
from appliance.pri.farend_links import FarEndDChannel
from appliance.pri.lapd_codec import MODULUS, Frame, IFrame, SFrame, SKind, UFrame, UKind, decode, encode
from appliance.pri.q931_model import CallStateValue, Cause, Message, MessageType
from tests.system.appliance_proc import RunningAppliance
from tests.system.pri_helpers import appliance_with_span, eventually, far_end_for, span_dir, span_metric

pytestmark = [pytest.mark.system, pytest.mark.timeout(90)]

NETWORK: Final = "network"
USER: Final = "user"
SETUP_CREF: Final = 0x21  # the far end's calls use 0x21 and up; 0x500 and up are enquiry markers
FLOOD: Final = 2000
SETUPS: Final = 40  # ten more than an E1 has B-channels


class RawFarEnd:
    """The network side of span 1's D-channel, frame by frame (implements DChannelHandler)."""

    def __init__(self, path: Path) -> None:
        self.channel = FarEndDChannel(path, self)
        self.vs = self.vr = 0
        self.frames: list[Frame] = []  # every frame the appliance sent, decoded
        self.messages: list[Message] = []  # the Q.931 messages of its in-sequence I-frames
        self.sabmes = 0
        self._marker = 0x500

    # -- DChannelHandler -------------------------------------------------------------------------------

    def link_changed(self, up: bool) -> None:
        pass

    def frame_received(self, data: bytes) -> None:
        frame = decode(data, sender=USER)
        self.frames.append(frame)
        if isinstance(frame, UFrame) and frame.kind is UKind.SABME:
            self.sabmes += 1
            self.vs = self.vr = 0
            self._send(UFrame(UKind.UA, pf=frame.pf, command=False))
        elif isinstance(frame, IFrame):
            if frame.ns == self.vr:
                self.vr = (self.vr + 1) % MODULUS
                self.messages.append(q931_codec.decode(frame.info, from_network=False).message)
            self._send(SFrame(SKind.RR, self.vr, pf=frame.p, command=False))
        elif isinstance(frame, SFrame) and frame.command and frame.pf:
            self._send(SFrame(SKind.RR, self.vr, pf=True, command=False))  # Q.921 §5.6.3.1 enquiry

    # -- sending ---------------------------------------------------------------------------------------

    def _send(self, frame: Frame) -> None:
        self.raw(encode(frame, sender=NETWORK))

    def raw(self, data: bytes) -> None:
        """Send ``data`` as one message; the socket buffer must have room (floods use :meth:`push`)."""
        dropped = self.channel.link.dropped
        self.channel.send(data)
        assert self.channel.link.dropped == dropped, "the D-channel socket's buffer is full"

    async def push(self, data: bytes) -> None:
        """Send ``data`` as soon as the socket buffer has room: a flood as fast as the appliance reads."""
        while True:
            dropped = self.channel.link.dropped
            self.channel.send(data)
            if self.channel.link.dropped == dropped:
                return
            await asyncio.sleep(0.001)

    def i_frame(self, info: bytes, *, ns: int | None = None, nr: int | None = None) -> None:
        """``info`` in an I-frame: in sequence (the next N(S)) unless ``ns`` is given, acknowledging all
        received unless ``nr`` is."""
        in_sequence = ns is None
        frame = IFrame(self.vs if ns is None else ns, self.vr if nr is None else nr, False, info)
        self._send(frame)
        if in_sequence:
            self.vs = (self.vs + 1) % MODULUS

    def q931(self, message: Message) -> None:
        self.i_frame(q931_codec.encode(message))

    def enquire(self) -> int:
        """A STATUS ENQUIRY on a call reference not in use (answered STATUS, state NULL, cause 30)."""
        self._marker += 1
        self.q931(Message(MessageType.STATUS_ENQUIRY, self._marker, False))
        return self._marker

    async def answer(self, within: float = 5.0) -> Message:
        """The next Q.931 message from the appliance."""
        count = len(self.messages)
        await eventually(lambda: len(self.messages) > count, within=within, what="an answer")
        return self.messages[count]

    def sabmes_above(self, count: int) -> bool:
        return self.sabmes > count

    def answered_since(self, count: int, n: int) -> bool:
        return len(self.messages) >= count + n

    async def only_marker_after(self, send: Callable[[], None]) -> None:
        """``send``, then a marker enquiry: its STATUS must be the next message (``send`` had no answer)."""
        count = len(self.messages)
        send()
        marker = self.enquire()
        await eventually(lambda: len(self.messages) > count, within=5, what="the marker's STATUS")
        first = self.messages[count]
        assert (first.type, first.call_reference) == (MessageType.STATUS, marker), first


def header(cref: int, kind: int, *, originator: bool = True) -> bytes:
    """Protocol discriminator, call reference (flag 0: from the side that allocated it), message type."""
    return bytes([0x08, 0x02, (0 if originator else 0x80) | cref >> 8, cref & 0xFF, kind])


def setup_octets(cref: int, channel: int, *, bearer: bytes = b"\x04\x03\x80\x90\xa3") -> bytes:
    """A SETUP as the network sends it: bearer (speech, A-law), exclusive channel, called number 100."""
    chan = bytes([0x18, 0x03, 0xA9, 0x83, 0x80 | channel])
    called = b"\x70\x04\x80" + b"100"
    return header(cref, MessageType.SETUP) + bearer + chan + called + b"\xa1"


def status_cause(message: Message) -> tuple[MessageType, int | None, bytes]:
    cause = message.cause
    return message.type, None if cause is None else cause.value, b"" if cause is None else cause.diagnostic


async def first_of(far: RawFarEnd, cref: int, *types: MessageType) -> Message:
    """The first message on ``cref`` of one of ``types`` (after the ones already read)."""
    start = len(far.messages)

    def found() -> list[Message]:
        return [m for m in far.messages[start:] if m.call_reference == cref and m.type in types]

    return (await eventually(found, within=8, what=f"{[t.name for t in types]} on {cref}"))[0]


async def test_hostile_d_channel_input_is_answered_per_q931_and_q921(tmp_path: Path) -> None:
    async with appliance_with_span(tmp_path) as app:
        far = RawFarEnd(span_dir(app) / "span1-d.sock")
        await far.channel.connect()
        try:
            await eventually(lambda: far.sabmes >= 1, within=10, what="the appliance's SABME")
            await eventually(lambda: dchannel(app) == 1, within=5, what="D-channel up")
            changes = span_metric(app, "appliance_pri_dchannel_changes_total")
            await lapd_garbage(far)
            await q931_garbage(far)
            await floods(far)
            await setup_flood(far)
            alive(app)
            # The appliance re-established the data link by itself each time, invisibly to call control.
            assert span_metric(app, "appliance_pri_dchannel_changes_total") == changes
            faults = {
                c: span_metric(app, "appliance_pri_protocol_faults_total", cause=str(c)) for c in FAULTS
            }
            assert all(faults[c] >= n for c, n in FAULTS.items()), faults
        finally:
            await far.channel.close()
        await eventually(lambda: dchannel(app) == 0, within=5, what="D-channel down")

        # A far end that behaves: the IVR answers it.
        normal = far_end_for(app, dtmf=False)
        try:
            await normal.start(within=10)
            result = await normal.place_call(CallScript(called="100", hold=1.5, timeout=20))
        finally:
            await normal.close()
        assert result.answered and result.heard.sound_frames > 10, result.line()
        alive(app)
    log = (tmp_path / "appliance.log").read_text()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


# The least each fault's cause is counted by the appliance's metric, over the whole run.
FAULTS = {81: FLOOD // 2, 96: 3, 97: 2, 99: 3, 100: 3, 101: 1}


def dchannel(app: RunningAppliance) -> float:
    return span_metric(app, "appliance_pri_dchannel_up")


def alive(app: RunningAppliance) -> None:
    assert app.proc.poll() is None, "the appliance died"


async def lapd_garbage(far: RawFarEnd) -> None:
    """Q.921 §5.8: discarded frames have no answer; bad sequence numbers and control fields are handled."""
    i_enquiry = q931_codec.encode(Message(MessageType.STATUS_ENQUIRY, 0x400, False))
    discarded = [
        bytes([63 << 2 | 2, 0x01, 0x00, 0x00]) + i_enquiry,  # SAPI 63 (§5.8.4 / §2.9 f)
        bytes([0x02, 5 << 1 | 1, 0x00, 0x00]) + i_enquiry,  # TEI 5
        bytes([0x02, 0x01]),  # no control field
        bytes([0x03, 0x01, 0x00, 0x00]),  # EA0 = 1
        bytes([0x02, 0x00, 0x00, 0x00]),  # EA1 = 0
        bytes([0x02, 0x01, 0x00, 0x00]) + bytes(300),  # longer than any D-channel frame: the span drops it
        bytes([0x02, 0x01, 0x02]),  # an I-frame with one control octet
        b"",  # an empty message on the span's socket: counted by the span, no frame
    ]
    for data in discarded:
        await far.only_marker_after(partial(far.raw, data))
    assert far.sabmes == 1

    # A second far end on the span's socket is refused (closed at once); the first keeps the link.
    intruder = RawFarEnd(far.channel.link.path)
    await intruder.channel.connect()
    await eventually(lambda: not intruder.channel.up, within=5, what="the second far end refused")
    await far.only_marker_after(lambda: None)

    # §5.8.1: N(S) ahead of V(R) is rejected (REJ, N(R) = what it expects) and the message not delivered.
    before = len(far.frames)
    far.i_frame(i_enquiry, ns=(far.vs + 3) % MODULUS)
    rej = await eventually(
        lambda: [f for f in far.frames[before:] if isinstance(f, SFrame) and f.kind is SKind.REJ],
        within=5,
        what="REJ",
    )
    assert rej[0].nr == far.vs
    await far.only_marker_after(lambda: None)

    # §5.8.2: N(R) acknowledging frames never sent (V(S) + 5): re-establishment (SABME), then it works.
    far.i_frame(i_enquiry, nr=(far.vr + 5) % MODULUS)
    await eventually(lambda: far.sabmes == 2, within=5, what="SABME after an N(R) error")
    await far.only_marker_after(lambda: None)

    # §5.8.5: an undefined control field (U frame 0xE3), an RR with an information field, a UI frame with an
    # information field longer than N201 (in a frame the span carries): re-established.
    overlong_ui = bytes([0x02, 0x01, 0x03]) + bytes(261)
    for data in (bytes([0x02, 0x01, 0xE3]), bytes([0x02, 0x01, 0x01, 0x00, 0xAA]), overlong_ui):
        sabmes = far.sabmes
        far.raw(data)
        await eventually(partial(far.sabmes_above, sabmes), within=5, what="SABME after FRMR condition")
        await far.only_marker_after(lambda: None)


async def q931_garbage(far: RawFarEnd) -> None:
    """Q.931 §5.8 inside well-formed I-frames."""
    # Ignored: another protocol discriminator, too short, a call reference length other than 2, and N201 =
    # 260 zeros (the largest information field, in the span's largest frame).
    for data in (b"\x09\x02\x00\x01\x75", b"\x08\x02\x00", b"\x08", b"\x08\x01\x01\x75", bytes(260)):
        await far.only_marker_after(partial(far.i_frame, data))

    # On call references not in use: RELEASE COMPLETE 81; an unknown message type there too.
    for kind in (MessageType.DISCONNECT, MessageType.CONNECT, MessageType.RELEASE, 0x33):
        far.i_frame(header(0x300, int(kind)) + (b"\x08\x02\x80\x90" if kind != 0x33 else b""))
        reply = await far.answer()
        assert reply.call_reference == 0x300 and status_cause(reply)[:2] == (MessageType.RELEASE_COMPLETE, 81)
    # A RELEASE COMPLETE on one is ignored (§5.8.3.2 c).
    await far.only_marker_after(lambda: far.i_frame(header(0x300, MessageType.RELEASE_COMPLETE)))

    # SETUPs refused with RELEASE COMPLETE and the cause: no bearer (96), no channel (96), garbled bearer
    # (100), a truncated bearer (100), an unknown comprehension-required element 0x0B in its place (99).
    chan = bytes([0x18, 0x03, 0xA9, 0x83, 0x85])
    refused = [
        (header(0x30, MessageType.SETUP) + chan + b"\x70\x04\x80100", 96, b"\x04"),
        (header(0x31, MessageType.SETUP) + b"\x04\x03\x80\x90\xa3\x70\x04\x80100", 96, b"\x18"),
        (setup_octets(0x32, 5, bearer=b"\x04\x01\xff"), 100, b"\x04"),
        (header(0x33, MessageType.SETUP) + b"\x04\x09\x80\x90", 100, b"\x04"),
        (setup_octets(0x34, 5, bearer=b"\x04\x03\x80\x90\xa3\x0b\x01\x00"), 99, b"\x0b"),
    ]
    for data, cause, diagnostic in refused:
        far.i_frame(data)
        reply = await far.answer()
        assert reply.call_reference == data[3] and not reply.from_originator, reply
        assert status_cause(reply) == (MessageType.RELEASE_COMPLETE, cause, diagnostic), reply

    # A SETUP without a called number: overlap receiving (§5.2.4), the number then comes in INFORMATION;
    # with sending complete, the empty number takes the default route (a span without DDI).
    bearer_chan = b"\x04\x03\x80\x90\xa3" + bytes([0x18, 0x03, 0xA9, 0x83, 0x89])
    far.i_frame(header(0x35, MessageType.SETUP) + bearer_chan)
    await first_of(far, 0x35, MessageType.SETUP_ACKNOWLEDGE)
    far.i_frame(header(0x35, MessageType.INFORMATION) + b"\xa1\x70\x04\x80100")
    await first_of(far, 0x35, MessageType.CONNECT)
    far.q931(Message(MessageType.RELEASE, 0x35, True, cause=Cause(16)))
    await first_of(far, 0x35, MessageType.RELEASE_COMPLETE)
    far.i_frame(header(0x36, MessageType.SETUP) + b"\xa1" + bearer_chan)
    await first_of(far, 0x36, MessageType.CONNECT)  # complete as it is: the default route, the IVR
    far.q931(Message(MessageType.RELEASE, 0x36, True, cause=Cause(16)))
    await first_of(far, 0x36, MessageType.RELEASE_COMPLETE)

    # A call the IVR answers, then faults on it.
    cref = SETUP_CREF
    far.i_frame(setup_octets(cref, 7))
    await first_of(far, cref, MessageType.CONNECT)
    far.q931(Message(MessageType.CONNECT_ACKNOWLEDGE, cref, True))
    checks: list[tuple[bytes, int, bytes]] = [
        (header(cref, 0x33), 97, b"\x33"),  # §5.8.4 unknown message type
        (header(cref, 0x7F), 97, b"\x7f"),
        (header(cref, MessageType.ALERTING), 101, bytes([MessageType.ALERTING])),  # §5.8.4 not in U10
        (header(cref, MessageType.INFORMATION) + b"\x73\x01\x00", 99, b"\x73"),  # §5.8.7.1 acted on
        (header(cref, MessageType.INFORMATION) + b"\x0b\x01\x00", 99, b"\x0b"),  # comprehension required
        (header(cref, MessageType.INFORMATION) + b"\x70\x02\x80Z", 100, b"\x70"),  # §5.8.7.2 bad digit
    ]
    for data, cause, diagnostic in checks:
        far.i_frame(data)
        status = await first_of(far, cref, MessageType.STATUS)
        assert status_cause(status) == (MessageType.STATUS, cause, diagnostic), status
        assert status.call_state is not None and status.call_state.state is CallStateValue.ACTIVE, status
    # §5.8.6.1: DISCONNECT without cause — cleared as if cause 31, the RELEASE carrying 96.
    far.i_frame(header(cref, MessageType.DISCONNECT))
    release = await first_of(far, cref, MessageType.RELEASE)
    assert status_cause(release) == (MessageType.RELEASE, 96, b"\x08"), release
    far.q931(Message(MessageType.RELEASE_COMPLETE, cref, True))
    await far.only_marker_after(lambda: None)

    # A SETUP on a channel in maintenance or busy is not what this tests; a call on the same channel again
    # is accepted, so the channel was freed.
    far.i_frame(setup_octets(cref + 1, 7))
    await first_of(far, cref + 1, MessageType.CONNECT)
    far.q931(Message(MessageType.DISCONNECT, cref + 1, True, cause=Cause(16)))
    await first_of(far, cref + 1, MessageType.RELEASE)
    far.q931(Message(MessageType.RELEASE_COMPLETE, cref + 1, True))


async def floods(far: RawFarEnd) -> None:
    """Thousands of frames: discarded garbage, then enquiries on unknown call references, each answered."""
    rng = random.Random(6)
    for _ in range(10):
        for _ in range(500):
            tei = rng.randrange(1, 127)
            await far.push(
                bytes([rng.randrange(64) << 2, tei << 1 | 1]) + rng.randbytes(rng.randrange(1, 40))
            )
        await far.only_marker_after(lambda: None)  # the socket drained, the link still in step
    # Enquiries answered STATUS 30 and unknown-reference DISCONNECTs answered RELEASE COMPLETE 81, in
    # bursts of fifty (what the appliance's window and the socket buffers hold), each burst all answered.
    answered = 0
    for burst in range(FLOOD // 50):
        count = len(far.messages)
        for i in range(50):
            cref = 0x1000 + burst * 50 + i
            if i % 2:
                far.q931(Message(MessageType.STATUS_ENQUIRY, cref, False))
            else:
                far.i_frame(header(cref, MessageType.DISCONNECT) + b"\x08\x02\x80\x90")
        await eventually(partial(far.answered_since, count, 50), within=10, what="a burst answered")
        answered += len(far.messages) - count
    assert answered == FLOOD


async def setup_flood(far: RawFarEnd) -> None:
    """More SETUPs at once than the span has B-channels, any channel: thirty are answered, the rest refused
    with RELEASE COMPLETE 34 (Q.931 §5.2.3.1: no circuit); once the far end releases them all, every
    channel is free again (the next call, after this, is answered)."""
    crefs = range(0x600, 0x600 + SETUPS)
    any_channel = b"\x18\x01\xa3"  # PRI, preferred, any channel (§4.5.13)
    for cref in crefs:
        far.i_frame(
            header(cref, MessageType.SETUP) + b"\x04\x03\x80\x90\xa3" + any_channel + b"\x70\x04\x80100\xa1"
        )
    kinds = (MessageType.CONNECT, MessageType.RELEASE_COMPLETE)

    def outcomes() -> dict[int, Message]:
        return {m.call_reference: m for m in far.messages if m.call_reference in crefs and m.type in kinds}

    await eventually(lambda: len(outcomes()) == SETUPS, within=20, what="every SETUP answered")
    done = outcomes()
    refused = [m for m in done.values() if m.type is MessageType.RELEASE_COMPLETE]
    assert len(refused) == SETUPS - 30 and all(status_cause(m)[1] == 34 for m in refused), refused
    answered = [cref for cref, m in done.items() if m.type is MessageType.CONNECT]
    start = len(far.messages)
    for cref in answered:
        far.q931(Message(MessageType.RELEASE, cref, True, cause=Cause(16)))

    def released() -> bool:
        done = {m.call_reference for m in far.messages[start:] if m.type is MessageType.RELEASE_COMPLETE}
        return done >= set(answered)

    await eventually(released, within=10, what="thirty calls released")
