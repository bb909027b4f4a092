"""The media worker's port reserve: the whole slice bound at start, the pairs another process holds reported
and never handed out, calls lent pre-bound sockets that come back drained."""

from __future__ import annotations

import contextlib
import random
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.media.commands import MediaWorker
from appliance.media.control import decode, encode
from appliance.media.control_events import Delete, Error, ErrorCode, LegSpec, Offer, Ok, SetLeg
from appliance.media.ports import PortsExhaustedError
from appliance.media.sockets import IDLE_BUFFER, PortReserve, PortUnavailableError, fd_budget

ADDRESS = "127.0.0.1"


def _free_slice() -> int:
    """The first port of 20 that no UDP socket holds now, in 30600-30999: clear of the kernel's ephemeral
    ports (32768-60999), the default range and the other unit tests' ports."""
    bound = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            bound |= {int(line.split()[1].rpartition(":")[2], 16) for line in f}
    for _ in range(100):
        base = random.randrange(30600, 30980, 2)
        if bound.isdisjoint(range(base, base + 20)):
            return base
    raise OSError("no 20 free UDP ports in 30600-30999")


# A slice of ten pairs.
LOW = _free_slice()
HIGH = LOW + 19
HELD_RTP = LOW + 10  # the test binds this RTP port before the reserve opens
HELD_RTCP = LOW + 7  # ... and the RTCP port of the pair LOW + 6
PHONE_A = ("127.0.0.1", 31100)
PHONE_B = ("127.0.0.1", 31102)
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)


@pytest.fixture
def held() -> Iterator[list[socket.socket]]:
    socks = []
    for port in (HELD_RTP, HELD_RTCP):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((ADDRESS, port))
        socks.append(sock)
    yield socks
    for sock in socks:
        sock.close()


@pytest.fixture
def reserve(held: list[socket.socket]) -> Iterator[PortReserve]:
    pool = PortReserve(ADDRESS, LOW, HIGH)
    pool.open()
    yield pool
    pool.close()


def command(worker: MediaWorker, msg: object) -> Ok | Error:
    reply = worker.handle(encode(msg), 0.0)  # type: ignore[arg-type]
    assert decode(encode(reply)) == reply
    return reply


def set_leg(worker: MediaWorker, call_id: str, leg: str, port: int, remote: tuple[str, int]) -> Ok | Error:
    return command(worker, SetLeg(call_id, leg, LegSpec(port, remote, 8, "PCMA"), request_id=1))


def is_bound(port: int) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((ADDRESS, port))
    except OSError:
        return True
    finally:
        sock.close()
    return False


def test_the_whole_slice_is_bound_and_held_pairs_are_reported(reserve: PortReserve) -> None:
    assert reserve.unusable == {HELD_RTP, HELD_RTCP - 1}
    assert reserve.capacity == 10
    # Every port is bound, by the reserve or the test, except the other half of each held pair: a pair is
    # used whole or not at all.
    assert [port for port in range(LOW, HIGH + 1) if not is_bound(port)] == [HELD_RTCP - 1, HELD_RTP + 1]


def test_a_held_pair_is_never_handed_out(reserve: PortReserve) -> None:
    handed = [reserve.allocate() for _ in range(8)]
    assert sorted(handed) == [p for p in range(LOW, HIGH, 2) if p not in (HELD_RTP, HELD_RTCP - 1)]
    with pytest.raises(PortsExhaustedError):
        reserve.allocate()
    with pytest.raises(PortUnavailableError, match="held by another process"):
        reserve.take_pair(HELD_RTP)


def test_set_leg_on_a_held_pair_is_no_ports_and_takes_nothing(reserve: PortReserve) -> None:
    worker = MediaWorker(reserve)
    reply = set_leg(worker, "c1", "a", HELD_RTCP - 1, PHONE_A)
    assert isinstance(reply, Error) and reply.code == ErrorCode.NO_PORTS
    assert "held by another process" in reply.reason
    assert worker.calls == {} and reserve.in_use == 0


def test_set_leg_lends_the_reserved_sockets_and_delete_keeps_them_bound(reserve: PortReserve) -> None:
    worker = MediaWorker(reserve)
    assert isinstance(set_leg(worker, "c1", "a", LOW, PHONE_A), Ok)
    assert isinstance(set_leg(worker, "c1", "b", LOW + 2, PHONE_B), Ok)
    leg = worker.calls["c1"].legs["a"]
    assert leg.rtp.getsockname() == (ADDRESS, LOW) and leg.rtcp is not None
    assert leg.rtcp.getsockname() == (ADDRESS, LOW + 1)
    assert reserve.in_use == 2
    # The legacy SDP commands allocate around the pairs SetLeg took.
    offered = command(worker, Offer("c2", "a", SDP.format(port=PHONE_A[1]), request_id=2))
    assert isinstance(offered, Ok) and offered.ports is not None
    assert offered.ports[0] not in (LOW, LOW + 2, HELD_RTP, HELD_RTCP - 1)
    taken = set_leg(worker, "c3", "a", LOW, PHONE_A)
    assert isinstance(taken, Error) and taken.code == ErrorCode.NO_PORTS and "in use" in taken.reason
    odd = set_leg(worker, "c3", "a", LOW + 1, PHONE_A)
    assert isinstance(odd, Error) and odd.code == ErrorCode.BAD_MESSAGE
    assert isinstance(command(worker, Delete("c1", request_id=3)), Ok)
    assert isinstance(command(worker, Delete("c2", request_id=4)), Ok)
    assert reserve.in_use == 0
    assert is_bound(LOW) and is_bound(LOW + 1)  # back in the reserve, not closed


def test_a_pair_outside_the_slice_is_bound_when_taken_and_closed_when_given_back(
    reserve: PortReserve, held: list[socket.socket]
) -> None:
    # Call control only names ports of the worker's slice; tools that choose their own still work.
    worker = MediaWorker(reserve)
    assert isinstance(set_leg(worker, "c1", "a", HIGH + 1, PHONE_A), Ok)
    assert is_bound(HIGH + 1) and is_bound(HIGH + 2)
    again = set_leg(worker, "c2", "a", HIGH + 1, PHONE_A)
    assert isinstance(again, Error) and again.code == ErrorCode.NO_PORTS and "in use" in again.reason
    worker.release("c1")
    assert not is_bound(HIGH + 1) and not is_bound(HIGH + 2)
    held[0].close()  # the held pair stays unusable for this reserve even once its holder is gone
    unusable = set_leg(worker, "c3", "a", HELD_RTP, PHONE_A)
    assert isinstance(unusable, Error) and unusable.code == ErrorCode.NO_PORTS


def test_a_pair_has_a_small_buffer_while_idle_and_the_working_one_in_use(reserve: PortReserve) -> None:
    rtp, rtcp = reserve.take_pair(LOW)
    working = rtp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    reserve.give_back(LOW)
    idle = rtp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert idle <= 4 * IDLE_BUFFER < working
    assert rtcp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == idle


def test_a_released_pairs_queued_packets_never_reach_the_next_call(reserve: PortReserve) -> None:
    worker = MediaWorker(reserve)
    set_leg(worker, "c1", "a", LOW, PHONE_A)
    set_leg(worker, "c1", "b", LOW + 2, PHONE_B)
    old = worker.calls["c1"].legs["a"]
    assert isinstance(command(worker, Delete("c1", request_id=2)), Ok)
    # The previous call's phone is still sending to the relay port after the call ended.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as late:
        late.bind((ADDRESS, PHONE_A[1]))
        for port in (LOW, LOW + 1):
            late.sendto(b"\x80\x08late packet of c1", (ADDRESS, port))
        assert old.rtp.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # queued on the idle pair
        assert old.rtcp is not None and old.rtcp.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT)

        set_leg(worker, "c2", "a", LOW, PHONE_A)
        set_leg(worker, "c2", "b", LOW + 2, PHONE_B)
    new = worker.calls["c2"].legs["a"]
    assert new.rtp is old.rtp  # the same socket, lent again ...
    for sock in new.sockets():
        with pytest.raises(BlockingIOError):  # ... with nothing of c1's left for the glue to relay
            sock.recv(64, socket.MSG_DONTWAIT)
    worker.release("c2")


def worker_command(control: Path, ports: str, nofile: tuple[int | None, int | None]) -> list[str]:
    """The worker's command line, run after ``RLIMIT_NOFILE`` is set to ``nofile`` (None: keep)."""
    limit = (
        "import resource, runpy, sys\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        f"want = {nofile!r}\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (want[0] or soft, want[1] or hard))\n"
        "sys.argv[0] = 'appliance.media.worker'\n"
        "runpy.run_module('appliance.media.worker', run_name='__main__')\n"
    )
    args = ["--control", str(control), "--address", ADDRESS, "--ports", ports, "--no-fastpath"]
    return [sys.executable, "-c", limit, *args]


def test_a_worker_that_may_not_hold_its_slice_says_so_instead_of_ready(tmp_path: Path) -> None:
    # 1000 pairs need more than 256 descriptors whatever the soft limit is raised to.
    done = subprocess.run(
        worker_command(tmp_path / "w.sock", "30000-31999", (256, 256)),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    line = done.stdout.decode().strip()
    assert line.startswith("error: media worker 0:")
    assert f"needs {fd_budget(1000)} file descriptors" in line and "RLIMIT_NOFILE allows 256" in line
    assert not (tmp_path / "w.sock").exists()


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    process = subprocess.Popen(
        worker_command(tmp_path / "w.sock", "30200-30599", (128, None)), stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"  # 400 sockets, with a soft limit of 128
        soft = int(Path(f"/proc/{process.pid}/limits").read_text().split("Max open files")[1].split()[0])
        assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    finally:
        process.kill()
        process.wait()
        with contextlib.suppress(FileNotFoundError):
            (tmp_path / "w.sock").unlink()
