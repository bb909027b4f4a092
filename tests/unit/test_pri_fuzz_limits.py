"""Limits of the D-channel receive path against a far end that pushes at them: the largest frame a peer may
lawfully send, and how much a peer that never takes our frames can make us hold.

* a modulo-128 I-frame carrying N201 = 260 octets is 2 + 2 + 260 = 264 octets, and the span's
  ``MAX_LAPD_FRAME`` (``hw.e1.links``) carries it;
* a peer that stays busy (RNR, answering every poll with RNR F=1) while it sends messages cannot make the
  LAPD entity hold more than ``MAX_QUEUED`` answers (STYLE rule 9: untrusted input has size limits); the
  rest are discarded and counted.
"""

from __future__ import annotations

from appliance.pri import q931_codec
from appliance.pri.lapd import MAX_QUEUED
from appliance.pri.lapd_codec import N201, IFrame, SFrame, SKind, encode
from appliance.pri.q931_events import ProtocolFault
from appliance.pri.q931_model import Message, MessageType
from hw.e1.links import MAX_LAPD_FRAME
from tests.fuzz.pri_receive import Op, ReceivePath

ENQUIRIES = 20_000


def test_a_full_size_i_frame_fits_the_span() -> None:
    frame = encode(IFrame(ns=0, nr=0, p=False, info=bytes(N201)), sender="network")
    assert len(frame) == 264
    assert len(frame) <= MAX_LAPD_FRAME


def test_a_message_of_n201_octets_reaches_q931_through_lapd() -> None:
    """Up to the span's limit the machines take the largest message: 260 octets of zeros is ignored by
    Q.931 (not its protocol discriminator, §5.8.1) and the link stays in step."""
    path = ReceivePath("user")
    path.step(Op("message", bytes(N201)))
    assert path.lapd.vr == 1 and path.lapd.established
    enquiry = q931_codec.encode(Message(MessageType.STATUS_ENQUIRY, 9, False))
    path.step(Op("message", enquiry))
    assert [e.cause for e in path.events if isinstance(e, ProtocolFault)] == [0, 81]
    assert any(f[2] & 1 == 0 for f in path.sent[-2:]), "the enquiry answered in an I-frame"


def busy_peer_flood(path: ReceivePath, count: int) -> None:
    """The peer says it is busy, then sends ``count`` enquiries, acknowledging nothing and answering every
    poll with RNR F=1."""
    path.step(Op("frame", encode(SFrame(SKind.RNR, 0, False, False), sender="network")))
    for i in range(count):
        enquiry = q931_codec.encode(Message(MessageType.STATUS_ENQUIRY, 0x100 + i % 0x7000, False))
        lapd = path.lapd
        path.step(Op("frame", encode(IFrame(lapd.vr, lapd.va, False, enquiry), sender="network")))
        if i % 500 == 0:
            path.step(Op("wait", amount=1.1))  # T200: the busy peer is polled
            path.step(Op("frame", encode(SFrame(SKind.RNR, lapd.va, True, False), sender="network")))


def test_a_peer_that_stays_busy_cannot_grow_the_send_queue_without_bound() -> None:
    path = ReceivePath("user")
    busy_peer_flood(path, ENQUIRIES)
    held = len(path.lapd._queue) + len(path.lapd._unacked)
    assert held < ENQUIRIES // 2, f"{held} messages held for a peer that takes none"


def test_a_busy_peer_keeps_the_link() -> None:
    """Q.921 §5.6.5 / §5.8.3: a peer busy and answering the polls keeps multiple frame operation; nothing
    raises and no call is invented (the enquiries are on references not in use)."""
    path = ReceivePath("user")
    busy_peer_flood(path, 2000)
    assert path.lapd.established and path.lapd.peer_busy
    assert path.q931.calls == 0 and not path.reported
    # Every enquiry was answered; what the busy peer could not take beyond the bound was discarded.
    held = len(path.lapd._queue) + len(path.lapd._unacked)
    assert len(path.lapd._queue) <= MAX_QUEUED and path.lapd.dropped_messages == 2000 - held
