"""A stand-in for the DAHDI kernel driver under a directory, for processes that open a card's channels.

DAHDI's channels are character devices: ``open("/dev/dahdi/channel")``, then ``ioctl`` (``DAHDI_SPECIFY``,
``DAHDI_SET_BLOCKSIZE``, ``DAHDI_GET_PARAMS``, …) on the fd. Without the kernel module there is no such
device, and nothing in user space can answer an ``ioctl`` on a file (this kernel has no CUSE, and a
socket or FIFO answers DAHDI's requests with ``ENOTTY``). So the card's kernel interface — the device
opener and ``ioctl`` of :class:`hw.e1.dahdi_channel.DeviceAccess`, and nothing else — is replaced here in
the processes that drive the card (the control process and its TDM worker), by :func:`install`, called
from a ``sitecustomize`` module when ``FAKE_DAHDI_ROOT`` is set in the environment:

- ``<root>/dev/dahdi/channel`` opens as an unconnected Unix ``SOCK_SEQPACKET`` socket; ``DAHDI_SPECIFY``
  connects it to ``<root>/line/<channel>.sock``, where the test listens as the line side of the card
  (one connection per open channel; a datagram is one block or one HDLC frame with its FCS, as a read of
  the real device returns);
- ``DAHDI_GET_PARAMS`` gives a channel the signalling system.conf gave it (``<root>/etc/system.conf``,
  written by the appliance and applied by the fake ``dahdi_cfg``): ``hardhdlc``/``dchan`` channels are
  HDLC D-channels, ``bchan`` channels clear channels; a channel system.conf does not name is not there;
- ``DAHDI_SET_BLOCKSIZE``, ``DAHDI_MAINT`` are taken; ``DAHDI_GETEVENT`` has no event (the span's alarms
  are in the sysfs tree the test writes).

Reads and writes are the process's own ``os.read``/``os.write`` on the fd.
"""

from __future__ import annotations

import errno
import socket
import struct
from pathlib import Path

from hw.e1.dahdi_channel import (
    DAHDI_GET_PARAMS,
    DAHDI_GETEVENT,
    DAHDI_MAINT,
    DAHDI_SET_BLOCKSIZE,
    DAHDI_SPECIFY,
    PARAMS_FORMAT,
    SIG_CLEAR,
    SIG_HARDHDLC,
    SIG_HDLCFCS,
    DeviceAccess,
)

ENV = "FAKE_DAHDI_ROOT"
SITECUSTOMIZE = f"""import os
if os.environ.get("{ENV}"):
    from tests.system.test_pri_dahdi_kernel import install
    install(os.environ["{ENV}"])
"""


def line_path(root: Path, channo: int) -> Path:
    return root / "line" / f"{channo}.sock"


def sigtypes(system_conf: str) -> dict[int, int]:
    """Each channel's signalling from the text of system.conf (``bchan``, ``hardhdlc``, ``dchan``)."""
    kinds = {"bchan": SIG_CLEAR, "hardhdlc": SIG_HARDHDLC, "dchan": SIG_HDLCFCS}
    found: dict[int, int] = {}
    for line in system_conf.splitlines():
        key, _, value = line.partition("=")
        if key not in kinds:
            continue
        for part in value.split(","):
            low, _, high = part.partition("-")
            for channo in range(int(low), int(high or low) + 1):
                found[channo] = kinds[key]
    return found


class FakeKernel:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.devices = {root / "dev" / "dahdi" / "channel", root / "dev" / "dahdi" / "ctl"}
        self.channo: dict[int, int] = {}

    def open(self, path: Path) -> int:
        if Path(path) not in self.devices:
            raise FileNotFoundError(errno.ENOENT, "No such DAHDI device", str(path))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        return sock.detach()

    def ioctl(self, fd: int, request: int, arg: bytes) -> bytes:
        if request == DAHDI_SPECIFY:
            (channo,) = struct.unpack("=i", arg)
            sock = socket.socket(fileno=fd)
            try:
                sock.connect(str(line_path(self.root, channo)))
            except OSError:
                raise OSError(errno.ENXIO, "No such device or address") from None
            finally:
                sock.detach()
            self.channo[fd] = channo
            return arg
        if request == DAHDI_GET_PARAMS:
            channo = self.channo[fd]
            sigtype = sigtypes((self.root / "etc" / "system.conf").read_text()).get(channo)
            if sigtype is None:
                raise OSError(errno.ENXIO, "No such device or address")
            name = f"FAKE/0/1/{channo}".encode()
            return struct.pack(PARAMS_FORMAT, channo, 1, channo, sigtype, *([0] * 8), name, *([0] * 10), 0)
        if request == DAHDI_GETEVENT:
            return struct.pack("=i", 0)
        if request in (DAHDI_SET_BLOCKSIZE, DAHDI_MAINT):
            return arg
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")


def install(root: str | Path) -> None:
    """From now on a :class:`DeviceAccess` made without an opener and an ``ioctl`` uses the fake kernel
    under ``root`` (the dataclass's defaults are its ``__init__``'s)."""
    kernel = FakeKernel(Path(root))
    defaults = DeviceAccess.__init__.__defaults__
    assert defaults is not None and len(defaults) == 5  # device, open, ioctl, read, write
    DeviceAccess.__init__.__defaults__ = (defaults[0], kernel.open, kernel.ioctl, *defaults[3:])
