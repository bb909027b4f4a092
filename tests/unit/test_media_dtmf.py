"""RFC 4733 telephone-events: payload vectors, the receiver's once-per-event rule, and the sender."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.media.dtmf import (
    DtmfDecodeError,
    DtmfDigit,
    DtmfPacket,
    DtmfReceiver,
    DtmfSender,
    DtmfUsageError,
    TelephoneEvent,
    parse,
    serialize,
)

# RFC 4733 §2.3 layout: event, E|R|volume, duration (network order).
VECTORS = [
    (b"\x05\x0a\x00\xa0", TelephoneEvent(event=5, end=False, volume=10, duration=160)),
    (b"\x0b\x8a\x03\x20", TelephoneEvent(event=11, end=True, volume=10, duration=800)),
    (b"\x00\x3f\xff\xff", TelephoneEvent(event=0, end=False, volume=63, duration=0xFFFF)),
    (b"\x10\x80\x00\x00", TelephoneEvent(event=16, end=True, volume=0, duration=0)),
]


def _payload(event: int, duration: int, *, end: bool = False) -> bytes:
    return TelephoneEvent(event=event, end=end, volume=10, duration=duration).serialize()


@pytest.mark.parametrize(("wire", "value"), VECTORS)
def test_vectors_parse_and_round_trip(wire: bytes, value: TelephoneEvent) -> None:
    assert parse(wire) == value
    assert serialize(value) == wire


def test_digit_names() -> None:
    assert [TelephoneEvent(event=code).digit for code in range(16)] == list("0123456789*#ABCD")
    assert TelephoneEvent(event=16).digit is None


def test_reserved_bit_is_ignored_on_receipt() -> None:
    assert parse(b"\x01\x4a\x00\x10") == TelephoneEvent(event=1, end=False, volume=10, duration=16)
    assert parse(b"\x01\xca\x00\x10").end


@pytest.mark.parametrize("wire", [b"", b"\x01", b"\x01\x0a\x00", b"\x01\x0a\x00\xa0\x00"])
def test_wrong_length_is_a_decode_error(wire: bytes) -> None:
    with pytest.raises(DtmfDecodeError, match="octets"):
        parse(wire)


def test_out_of_range_fields_are_refused() -> None:
    with pytest.raises(DtmfUsageError):
        TelephoneEvent(event=256)
    with pytest.raises(DtmfUsageError):
        TelephoneEvent(event=1, volume=64)
    with pytest.raises(DtmfUsageError):
        TelephoneEvent(event=1, duration=0x10000)


@given(st.binary(max_size=12))
def test_parse_is_total(data: bytes) -> None:
    try:
        value = parse(data)
    except DtmfDecodeError:
        assert len(data) != 4
    else:
        assert len(data) == 4
        # Everything but the reserved bit survives a round trip.
        assert serialize(value) == bytes([data[0], data[1] & 0xBF]) + data[2:]


def _drain(receiver: DtmfReceiver) -> list[DtmfDigit]:
    digits = []
    while (digit := receiver.next_event()) is not None:
        digits.append(digit)
    return digits


def test_receiver_reports_once_despite_three_end_packets() -> None:
    receiver = DtmfReceiver()
    receiver.receive(1000, True, _payload(1, 0), 0.0)
    receiver.receive(1000, False, _payload(1, 400), 0.05)
    receiver.receive(1000, False, _payload(1, 800), 0.10)
    assert _drain(receiver) == []
    for n in range(3):
        receiver.receive(1000, False, _payload(1, 960, end=True), 0.12 + n * 0.001)
    assert _drain(receiver) == [DtmfDigit("1", 120, 0.0)]
    # A late update for the closed event is not a new digit either.
    receiver.receive(1000, False, _payload(1, 800), 0.2)
    assert _drain(receiver) == []
    assert receiver.get_timer() is None


def test_receiver_with_start_packet_lost() -> None:
    receiver = DtmfReceiver()
    receiver.receive(5000, False, _payload(9, 400), 1.05)
    receiver.receive(5000, False, _payload(9, 1600, end=True), 1.2)
    receiver.receive(5000, False, _payload(9, 1600, end=True), 1.21)
    assert _drain(receiver) == [DtmfDigit("9", 200, 1.05)]


def test_receiver_with_only_end_packets() -> None:
    receiver = DtmfReceiver()
    receiver.receive(7, False, _payload(11, 800, end=True), 3.0)
    receiver.receive(7, False, _payload(11, 800, end=True), 3.01)
    assert _drain(receiver) == [DtmfDigit("#", 100, 3.0)]


def test_receiver_new_event_with_new_timestamp_repeats_the_digit() -> None:
    receiver = DtmfReceiver()
    for timestamp, now in ((1000, 0.0), (3000, 0.5)):
        receiver.receive(timestamp, True, _payload(2, 0), now)
        receiver.receive(timestamp, False, _payload(2, 800, end=True), now + 0.1)
        receiver.receive(timestamp, False, _payload(2, 800, end=True), now + 0.11)
    assert _drain(receiver) == [DtmfDigit("2", 100, 0.0), DtmfDigit("2", 100, 0.5)]


def test_receiver_closes_event_whose_ends_are_lost_on_next_event() -> None:
    receiver = DtmfReceiver()
    receiver.receive(1000, True, _payload(3, 0), 0.0)
    receiver.receive(1000, False, _payload(3, 400), 0.05)
    receiver.receive(9000, True, _payload(4, 0), 1.0)
    assert _drain(receiver) == [DtmfDigit("3", 50, 0.0)]
    receiver.receive(9000, False, _payload(4, 800, end=True), 1.1)
    assert _drain(receiver) == [DtmfDigit("4", 100, 1.0)]


def test_receiver_idle_deadline_closes_event_without_end() -> None:
    receiver = DtmfReceiver(idle_timeout=0.5)
    receiver.receive(1000, True, _payload(5, 0), 0.0)
    receiver.receive(1000, False, _payload(5, 400), 0.05)
    assert receiver.get_timer() == pytest.approx(0.55)
    receiver.handle_timer(0.5)
    assert _drain(receiver) == []
    receiver.handle_timer(0.55)
    assert _drain(receiver) == [DtmfDigit("5", 50, 0.0)]
    assert receiver.get_timer() is None
    # Its retransmitted end arriving late is not reported again.
    receiver.receive(1000, False, _payload(5, 480, end=True), 0.6)
    assert _drain(receiver) == []


def test_receiver_ignores_non_dtmf_events_and_bad_payloads() -> None:
    receiver = DtmfReceiver()
    receiver.receive(1, True, _payload(16, 800, end=True), 0.0)
    with pytest.raises(DtmfDecodeError):
        receiver.receive(2, True, b"\x01", 0.1)
    assert _drain(receiver) == []
    assert receiver.get_timer() is None


def test_receiver_joins_segments_of_a_long_event() -> None:
    # §2.5.2.3: the second segment starts at the first one's timestamp plus 0xFFFF.
    receiver = DtmfReceiver()
    base = 0xFFFF_0000
    receiver.receive(base, True, _payload(0, 0), 0.0)
    receiver.receive(base, False, _payload(0, 0xFFFF), 8.19)
    second = (base + 0xFFFF) % (1 << 32)
    receiver.receive(second, False, _payload(0, 400), 8.24)
    receiver.receive(second, False, _payload(0, 8001, end=True), 9.19)
    assert _drain(receiver) == [DtmfDigit("0", (0xFFFF + 8001) * 1000 // 8000, 0.0)]


def _run(sender: DtmfSender, until: float) -> list[tuple[float, DtmfPacket]]:
    sent = [(0.0, packet) for packet in sender.packets_to_send()]
    while (deadline := sender.get_timer()) is not None and deadline <= until:
        sender.handle_timer(deadline)
        sent.extend((deadline, packet) for packet in sender.packets_to_send())
    return sent


def test_sender_sequence_for_a_digit() -> None:
    sender = DtmfSender()
    sender.send_digit("7", duration_ms=120, timestamp=4000, now=0.0)
    assert sender.busy
    sent = _run(sender, until=1.0)
    times = [when for when, _ in sent]
    assert times == pytest.approx([0.0, 0.05, 0.10, 0.15, 0.15, 0.15])
    assert [p.marker for _, p in sent] == [True, False, False, False, False, False]
    assert {p.timestamp for _, p in sent} == {4000}
    reports = [parse(p.payload) for _, p in sent]
    assert [r.duration for r in reports] == [0, 400, 800, 960, 960, 960]
    assert [r.end for r in reports] == [False, False, False, True, True, True]
    assert {r.event for r in reports} == {7}
    assert not sender.busy


def test_sender_and_receiver_agree_on_one_digit() -> None:
    sender = DtmfSender()
    receiver = DtmfReceiver()
    sender.send_digit("*", duration_ms=100, timestamp=123, now=0.0)
    for when, packet in _run(sender, until=1.0):
        receiver.receive(packet.timestamp, packet.marker, packet.payload, when)
    assert _drain(receiver) == [DtmfDigit("*", 100, 0.0)]


def test_sender_splits_long_event_into_segments() -> None:
    sender = DtmfSender(max_segment=1000, interval=0.05)
    sender.send_digit("D", duration_ms=300, timestamp=0xFFFF_FF00, now=0.0)
    sent = _run(sender, until=5.0)
    timestamps = [p.timestamp for _, p in sent]
    assert timestamps[0] == 0xFFFF_FF00
    assert set(timestamps) == {
        0xFFFF_FF00,
        (0xFFFF_FF00 + 1000) % (1 << 32),
        (0xFFFF_FF00 + 2000) % (1 << 32),
    }
    assert all(parse(p.payload).duration <= 1000 for _, p in sent)
    receiver = DtmfReceiver()
    for when, packet in sent:
        receiver.receive(packet.timestamp, packet.marker, packet.payload, when)
    assert _drain(receiver) == [DtmfDigit("D", 300, 0.0)]


def test_sender_refuses_misuse() -> None:
    sender = DtmfSender()
    with pytest.raises(DtmfUsageError):
        sender.send_digit("X", duration_ms=100, timestamp=0, now=0.0)
    with pytest.raises(DtmfUsageError):
        sender.send_digit("1", duration_ms=0, timestamp=0, now=0.0)
    sender.send_digit("a", duration_ms=100, timestamp=0, now=0.0)
    assert parse(sender.packets_to_send()[0].payload).event == 12
    with pytest.raises(DtmfUsageError):
        sender.send_digit("1", duration_ms=100, timestamp=0, now=0.01)


@given(
    digits=st.lists(st.sampled_from("0123456789*#ABCD"), min_size=1, max_size=4),
    duration_ms=st.integers(min_value=40, max_value=400),
    loss=st.data(),
)
def test_each_digit_reported_once_under_any_loss(
    digits: list[str], duration_ms: int, loss: st.DataObject
) -> None:
    # Every digit whose packets are not all lost is reported exactly once, in order, whatever is lost.
    sender = DtmfSender()
    receiver = DtmfReceiver(idle_timeout=0.5)
    expected = []
    now = 0.0
    timestamp = 1234
    for digit in digits:
        sender.send_digit(digit, duration_ms=duration_ms, timestamp=timestamp, now=now)
        packets = _run(sender, until=now + 10.0)
        kept = [loss.draw(st.booleans()) for _ in packets]
        if any(kept):
            expected.append(digit)
        for (when, packet), keep in zip(packets, kept, strict=True):
            if keep:
                receiver.receive(packet.timestamp, packet.marker, packet.payload, when + now)
        now += 1.0
        timestamp += 8000
        if (deadline := receiver.get_timer()) is not None and deadline <= now:
            receiver.handle_timer(now)
    if (deadline := receiver.get_timer()) is not None:
        receiver.handle_timer(deadline)
    assert [d.digit for d in _drain(receiver)] == expected


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.binary(min_size=3, max_size=5)), max_size=30))
def test_receiver_never_fails_on_hostile_sequences(packets: list[tuple[int, bool, bytes]]) -> None:
    receiver = DtmfReceiver()
    for index, (timestamp, marker, payload) in enumerate(packets):
        try:
            receiver.receive(timestamp * 1000, marker, payload, index * 0.02)
        except DtmfDecodeError:
            assert len(payload) != 4
    receiver.handle_timer(100.0)
    digits = _drain(receiver)
    assert receiver.get_timer() is None
    assert len(digits) <= len(packets)
    assert all(d.duration_ms >= 0 for d in digits)
