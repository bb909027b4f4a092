"""A pcap writer for D-channel traces: LAPD frames as Wireshark's LAPD/Q.931 dissectors read them.

The file is the classic libpcap format (a 24-octet global header, then per record a 16-octet record
header and the captured octets; magic ``a1b2c3d4`` for microsecond or ``a1b23c4d`` for nanosecond time
stamps, written little-endian here as every reader accepts either byte order) with link type
``LINKTYPE_LINUX_LAPD`` (177). Each record starts with the 16-octet Linux "cooked" (SLL) header that the
Linux LAPD sockets produced, then the Q.921 frame without flags or FCS (address, control, information —
exactly the frames of the simulated span, DESIGN.md §5.2). The pseudo-header, all big-endian:

=======  ======  ==========================================================================
offset   octets  field
=======  ======  ==========================================================================
0        2       ``sll_pkttype``: 4 (``PACKET_OUTGOING``) for a frame we sent, 0 (``PACKET_HOST``)
                 for one we received
2        2       ``sll_hatype``: ``ARPHRD_LAPD`` = 8445
4        2       ``sll_halen``: 1
6        8       ``sll_addr``: octet 0 is 1 when we are the network side, 0 on the user side
14       2       ``sll_protocol``: ``ETH_P_LAPD`` = 0x0030 (Wireshark rejects the record otherwise)
=======  ======  ==========================================================================

From the direction and our side Wireshark knows whether a frame went user→network or network→user, and
so reads the C/R bit as command or response correctly (Q.921 §3.3.2, Table 1).

The writer does no I/O of its own beyond ``file.write`` and takes each time stamp from its caller.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Final, Literal

LINKTYPE_LINUX_LAPD: Final = 177
ARPHRD_LAPD: Final = 8445
ETH_P_LAPD: Final = 0x0030
PACKET_HOST: Final = 0
PACKET_OUTGOING: Final = 4
SLL_HEADER_LEN: Final = 16
SNAPLEN: Final = 65535

_MAGIC_USEC: Final = 0xA1B2C3D4
_MAGIC_NSEC: Final = 0xA1B23C4D
_GLOBAL: Final = struct.Struct("<IHHiIII")
_RECORD: Final = struct.Struct("<IIII")
_SLL: Final = struct.Struct(">HHH8sH")


def sll_header(*, sent: bool, network: bool) -> bytes:
    """The 16-octet LINUX_LAPD pseudo-header for one frame (see the module docstring)."""
    addr = bytes([1 if network else 0]) + bytes(7)
    return _SLL.pack(PACKET_OUTGOING if sent else PACKET_HOST, ARPHRD_LAPD, 1, addr, ETH_P_LAPD)


class PcapWriter:
    """Writes a pcap of one D-channel seen from one side (``side``: ours, "user" or "network").

    The global header is written at construction. :meth:`write` appends one frame: ``sent`` is true for a
    frame we transmitted, false for one we received; ``timestamp`` is seconds since the epoch (or any
    origin the caller chooses; a trace of a test starts at 0). ``nanoseconds`` selects the time stamp
    resolution. The caller owns ``file`` (opened for binary writing) and closes it.
    """

    def __init__(
        self, file: BinaryIO, *, side: Literal["user", "network"], nanoseconds: bool = False
    ) -> None:
        if side not in ("user", "network"):
            raise ValueError(f"side must be 'user' or 'network', not {side!r}")
        self._file = file
        self._network = side == "network"
        self._scale = 1_000_000_000 if nanoseconds else 1_000_000
        magic = _MAGIC_NSEC if nanoseconds else _MAGIC_USEC
        file.write(_GLOBAL.pack(magic, 2, 4, 0, 0, SNAPLEN, LINKTYPE_LINUX_LAPD))
        self.records = 0

    def write(self, frame: bytes, *, sent: bool, timestamp: float) -> None:
        """Append one LAPD frame (address, control, information; no FCS) as a record."""
        if timestamp < 0:
            raise ValueError("timestamp must not be negative")
        ticks = round(timestamp * self._scale)
        seconds, fraction = divmod(ticks, self._scale)
        data = sll_header(sent=sent, network=self._network) + bytes(frame)
        length = len(data)
        self._file.write(_RECORD.pack(seconds, fraction, min(length, SNAPLEN), length))
        self._file.write(data[:SNAPLEN])
        self.records += 1
