"""The simulated span's D- and B-channel sockets (DESIGN.md §5.2), with real sockets in a temporary dir."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hw.e1.errors import LinkUsageError
from hw.e1.links import FRAME_OCTETS, MAX_LAPD_FRAME
from hw.e1.sim import SimBChannels, SimDChannel

SABME = bytes((0x00, 0x01, 0x7F))  # SAPI 0, C/R 0, TEI 0; SABME with P=1 (Q.921 §3.6.6)
UA = bytes((0x02, 0x01, 0x73))


class Recorder:
    """A D- and B-channel handler that keeps what it is given and wakes waiters."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.b_frames: list[tuple[int, bytes]] = []
        self.links: list[bool] = []
        self._changed = asyncio.Event()

    def frame_received(self, *args: object) -> None:
        if len(args) == 1:
            assert isinstance(args[0], bytes)
            self.frames.append(args[0])
        else:
            ts, samples = args
            assert isinstance(ts, int) and isinstance(samples, bytes)
            self.b_frames.append((ts, samples))
        self._changed.set()

    def link_changed(self, up: bool) -> None:
        self.links.append(up)
        self._changed.set()

    def wake(self) -> None:
        self._changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


async def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, os.fspath(path))
    return sock


async def far_end(link: SimDChannel | SimBChannels, handler: Recorder) -> socket.socket:
    """Connect a far end and wait until the span reports its link up."""
    sock = await connect(link.path)
    await handler.until(lambda: handler.links[-1:] == [True])
    return sock


async def recv(sock: socket.socket) -> bytes:
    async with asyncio.timeout(5):
        return await asyncio.get_running_loop().sock_recv(sock, 1024)


@pytest.fixture
async def dchan(tmp_path: Path) -> AsyncIterator[tuple[SimDChannel, Recorder]]:
    handler = Recorder()
    link = SimDChannel(tmp_path / "run" / "span1-d.sock", handler)
    await link.start()
    yield link, handler
    await link.close()


@pytest.fixture
async def bchan(tmp_path: Path) -> AsyncIterator[tuple[SimBChannels, Recorder]]:
    handler = Recorder()
    link = SimBChannels(tmp_path / "span1-b.sock", handler, timeslots=(1, 2, 17))
    await link.start()
    yield link, handler
    await link.close()


async def test_d_socket_is_created_with_its_directory_and_mode_0660(
    dchan: tuple[SimDChannel, Recorder],
) -> None:
    link, _ = dchan
    mode = link.path.lstat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    assert not link.up


async def test_d_frames_flow_both_ways(dchan: tuple[SimDChannel, Recorder]) -> None:
    link, handler = dchan
    far = await far_end(link, handler)
    assert link.up
    far.send(SABME)
    await handler.until(lambda: handler.frames == [SABME])
    link.send(UA)
    assert await recv(far) == UA
    assert link.counters.received == 1
    assert link.counters.sent == 1
    far.close()


async def test_far_end_closing_is_link_down_and_reconnecting_link_up(
    dchan: tuple[SimDChannel, Recorder],
) -> None:
    link, handler = dchan
    far = await far_end(link, handler)
    far.close()
    await handler.until(lambda: handler.links == [True, False])
    assert not link.up
    link.send(UA)  # no far end: dropped, counted, no exception
    assert link.counters.dropped_no_far_end == 1
    again = await connect(link.path)
    await handler.until(lambda: handler.links == [True, False, True])
    again.send(SABME)
    await handler.until(lambda: handler.frames == [SABME])
    assert link.counters.connections == 2
    again.close()


async def test_second_far_end_is_refused_while_one_is_connected(
    dchan: tuple[SimDChannel, Recorder],
) -> None:
    link, handler = dchan
    first = await far_end(link, handler)
    second = await connect(link.path)
    assert await recv(second) == b""  # closed at once by the span
    first.send(SABME)
    await handler.until(lambda: handler.frames == [SABME])
    assert link.counters.refused == 1
    assert handler.links == [True]
    first.close()
    second.close()


async def test_empty_and_oversize_d_messages_are_counted_and_dropped(
    dchan: tuple[SimDChannel, Recorder],
) -> None:
    link, handler = dchan
    far = await far_end(link, handler)
    far.send(b"")
    far.send(bytes(MAX_LAPD_FRAME + 1))
    biggest = bytes(MAX_LAPD_FRAME)
    far.send(biggest)
    await handler.until(lambda: handler.frames == [biggest])
    counters = link.counters
    assert (counters.rx_empty, counters.rx_oversize, counters.received) == (1, 1, 1)
    assert link.up  # an empty message is not a hang-up
    far.close()


async def test_d_send_rejects_frames_no_d_channel_carries(dchan: tuple[SimDChannel, Recorder]) -> None:
    link, _ = dchan
    with pytest.raises(LinkUsageError):
        link.send(b"")
    with pytest.raises(LinkUsageError):
        link.send(bytes(MAX_LAPD_FRAME + 1))


async def test_full_socket_buffer_drops_frames_without_blocking(
    dchan: tuple[SimDChannel, Recorder],
) -> None:
    link, handler = dchan
    far = await far_end(link, handler)
    for _ in range(10_000):  # the far end reads nothing
        link.send(bytes(MAX_LAPD_FRAME))
    counters = link.counters
    assert counters.dropped_full > 0
    assert counters.sent + counters.dropped_full == 10_000
    assert link.up
    far.close()


async def test_stale_socket_file_is_replaced_and_close_unlinks(tmp_path: Path) -> None:
    path = tmp_path / "span2-d.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stale.bind(os.fspath(path))
    stale.close()  # the file stays, as after a crash
    link = SimDChannel(path, Recorder())
    await link.start()
    far = await connect(path)
    far.close()
    await link.close()
    assert not path.exists()


async def test_a_regular_file_at_the_socket_path_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "span1-d.sock"
    path.write_text("not a socket")
    with pytest.raises(LinkUsageError):
        await SimDChannel(path, Recorder()).start()
    assert path.read_text() == "not a socket"


async def test_close_while_connected_closes_the_far_end(dchan: tuple[SimDChannel, Recorder]) -> None:
    link, handler = dchan
    far = await far_end(link, handler)
    await link.close()
    assert await recv(far) == b""
    assert handler.links == [True]  # a close we asked for is not reported as a loss
    far.close()


async def test_b_frames_flow_both_ways(bchan: tuple[SimBChannels, Recorder]) -> None:
    link, handler = bchan
    far = await far_end(link, handler)
    samples = bytes(range(FRAME_OCTETS))
    far.send(bytes((17,)) + samples)
    await handler.until(lambda: handler.b_frames == [(17, samples)])
    link.send(2, samples)
    assert await recv(far) == bytes((2,)) + samples
    far.close()
    await handler.until(lambda: handler.links == [True, False])


async def test_bad_b_messages_are_counted_and_dropped(bchan: tuple[SimBChannels, Recorder]) -> None:
    link, handler = bchan
    far = await far_end(link, handler)
    samples = bytes(FRAME_OCTETS)
    far.send(bytes((3,)) + samples)  # not one of this span's B-channels
    far.send(bytes((16,)) + samples)  # the D-channel's timeslot
    far.send(bytes((1,)) + samples[:-1])  # short
    far.send(bytes((1,)) + samples + b"\x00")  # long
    far.send(b"")
    far.send(bytes((1,)) + samples)
    await handler.until(lambda: len(handler.b_frames) == 1)
    counters = link.counters
    assert (counters.rx_bad_timeslot, counters.rx_bad_length, counters.rx_empty) == (2, 2, 1)
    assert counters.received == 1
    far.close()


async def test_b_send_rejects_a_timeslot_not_open_or_a_wrong_length(
    bchan: tuple[SimBChannels, Recorder],
) -> None:
    link, _ = bchan
    with pytest.raises(LinkUsageError):
        link.send(3, bytes(FRAME_OCTETS))
    with pytest.raises(LinkUsageError):
        link.send(1, bytes(FRAME_OCTETS - 1))
    link.send(1, bytes(FRAME_OCTETS))
    assert link.counters.dropped_no_far_end == 1


def test_b_channels_cannot_include_timeslot_0_or_16(tmp_path: Path) -> None:
    for bad in ((0,), (16,), (32,), ()):
        with pytest.raises(LinkUsageError):
            SimBChannels(tmp_path / "b.sock", Recorder(), timeslots=bad)


async def test_send_to_a_far_end_just_gone_is_link_down_once(dchan: tuple[SimDChannel, Recorder]) -> None:
    link, handler = dchan
    far = await far_end(link, handler)
    far.close()
    link.send(UA)  # before the reader has seen the close: EPIPE
    assert not link.up
    assert link.counters.dropped_no_far_end == 1
    await handler.until(lambda: handler.links == [True, False])
    await asyncio.sleep(0)
    assert handler.links == [True, False]
