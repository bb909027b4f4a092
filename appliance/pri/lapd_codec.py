"""Q.921 (ETSI EN 300 125) LAPD frames ↔ octets, for the point-to-point data link of a primary rate interface.

A frame, as the span carries it (DESIGN.md §5.2: no flags, no FCS), is the address field (two octets,
Q.921 §3.3), the control field (one octet for U frames, two for I and S frames in modulo-128 operation,
§3.4 and Table 5) and, for I, UI, XID and FRMR frames, an information field of at most N201 = 260 octets
(§5.9.3).

Address field (§3.3): octet 1 is SAPI (bits 8–3), C/R (bit 2), EA0 = 0 (bit 1); octet 2 is TEI (bits
8–2), EA1 = 1 (bit 1). Whether a frame is a command or a response follows from its C/R bit *and* who sent
it (§3.3.2, Table 1): the network side sends commands with C/R = 1 and responses with C/R = 0, the user
side the reverse. So :func:`encode` and :func:`decode` take the sender's side and frames carry
``command`` rather than the raw bit.

Decoding is total: :func:`decode` returns a frame or raises a :class:`LapdDecodeError`, as one of two
kinds, since Q.921 treats faults two ways:

* :class:`InvalidFrame` — an *invalid frame* (§2.9: too short for its format, a one-octet address, EA bits
  wrong, a SAPI or TEI not served here): discarded without notice (§5.8.4).
* :class:`FrameRejected` — a frame that §5.8.5 reports (the frame rejection condition): an undefined
  control field (MDL-ERROR code L), an information field where none is permitted (M), a supervisory or
  unnumbered frame of wrong length (N), an information field longer than N201 (O). ``mdl_code`` names the
  Q.921 Table II.1 code; the data link entity then re-establishes the link. An invalid N(R) (code J) is
  detected by the state machine, which alone knows V(A) and V(S).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

from appliance.pri.errors import LapdDecodeError, LocalProtocolError

Side = Literal["user", "network"]

N201: Final = 260  # maximum octets of an information field (Q.921 §5.9.3)
MODULUS: Final = 128  # sequence numbers in multiple frame operation (§3.5.2)
SAPI_CALL_CONTROL: Final = 0  # Q.931 (§3.3.3, Table 2)


class InvalidFrame(LapdDecodeError):
    """An invalid frame (Q.921 §2.9): discarded silently (§5.8.4)."""

    mdl_code: str | None = None


class FrameRejected(LapdDecodeError):
    """A frame rejection condition (Q.921 §5.8.5), reported as MDL-ERROR ``mdl_code`` (Table II.1)."""

    def __init__(self, reason: str, *, mdl_code: Literal["L", "M", "N", "O"]) -> None:
        super().__init__(reason)
        self.mdl_code: str | None = mdl_code

    def __repr__(self) -> str:
        return f"FrameRejected({self.mdl_code}, {self.reason!r})"


class SKind(enum.Enum):
    """Supervisory functions (Q.921 Table 5: control octet 1 = 0000SS01)."""

    RR = 0x01
    RNR = 0x05
    REJ = 0x09


class UKind(enum.Enum):
    """Unnumbered functions (Q.921 Table 5: control octet with the P/F bit, 0x10, cleared)."""

    SABME = 0x6F
    DM = 0x0F
    UI = 0x03
    DISC = 0x43
    UA = 0x63
    XID = 0xAF


_FRMR: Final = 0x87
# Which unnumbered frames are commands, responses or either (Table 5) and which may carry information.
_U_COMMAND_ONLY: Final = frozenset({UKind.SABME, UKind.UI, UKind.DISC})
_U_RESPONSE_ONLY: Final = frozenset({UKind.DM, UKind.UA})
_U_WITH_INFO: Final = frozenset({UKind.UI, UKind.XID})


@dataclass(frozen=True, slots=True)
class IFrame:
    """An information frame (§3.6); always a command. ``p`` is the poll bit."""

    ns: int
    nr: int
    p: bool
    info: bytes
    sapi: int = 0
    tei: int = 0


@dataclass(frozen=True, slots=True)
class SFrame:
    """A supervisory frame: RR, RNR or REJ (§3.6), command (``pf`` = P) or response (F)."""

    kind: SKind
    nr: int
    pf: bool
    command: bool
    sapi: int = 0
    tei: int = 0


@dataclass(frozen=True, slots=True)
class UFrame:
    """An unnumbered frame other than FRMR (§3.6); ``info`` only for UI and XID."""

    kind: UKind
    pf: bool
    command: bool
    info: bytes = b""
    sapi: int = 0
    tei: int = 0


@dataclass(frozen=True, slots=True)
class FrmrFrame:
    """A frame reject response (§3.6) with its five-octet information field (modulo 128):
    the rejected frame's control field (two octets; a U frame's second octet is 0), V(S), V(R), whether
    the rejected frame was a response (``rejected_response``), and the W/X/Y/Z bits (W: undefined control
    field; X: information field not permitted; Y: information field too long; Z: invalid N(R))."""

    rejected_control: bytes
    vs: int
    vr: int
    rejected_response: bool
    w: bool
    x: bool
    y: bool
    z: bool
    pf: bool = False
    sapi: int = 0
    tei: int = 0
    command: bool = False


Frame = IFrame | SFrame | UFrame | FrmrFrame


def is_command(cr: int, sender: Side) -> bool:
    """Table 1: commands carry C/R = 1 from the network side, 0 from the user side."""
    return bool(cr) == (sender == "network")


def _cr_bit(command: bool, sender: Side) -> int:
    return 1 if command == (sender == "network") else 0


def _check(value: int, limit: int, name: str) -> None:
    if not 0 <= value < limit:
        raise LocalProtocolError(f"{name} {value} out of range 0..{limit - 1}")


def encode(frame: Frame, *, sender: Side) -> bytes:
    """The octets of ``frame`` as ``sender`` transmits it. Raises :class:`LocalProtocolError` for a field
    out of range, an information field longer than N201 or one on a frame that carries none."""
    _check(frame.sapi, 64, "SAPI")
    _check(frame.tei, 128, "TEI")
    command = True if isinstance(frame, IFrame) else frame.command
    address = bytes([frame.sapi << 2 | _cr_bit(command, sender) << 1, frame.tei << 1 | 1])
    if isinstance(frame, IFrame):
        _check(frame.ns, MODULUS, "N(S)")
        _check(frame.nr, MODULUS, "N(R)")
        control = bytes([frame.ns << 1, frame.nr << 1 | frame.p])
        info = frame.info
    elif isinstance(frame, SFrame):
        _check(frame.nr, MODULUS, "N(R)")
        control = bytes([frame.kind.value, frame.nr << 1 | frame.pf])
        info = b""
    elif isinstance(frame, UFrame):
        if frame.info and frame.kind not in _U_WITH_INFO:
            raise LocalProtocolError(f"{frame.kind.name} carries no information field")
        control = bytes([frame.kind.value | frame.pf << 4])
        info = frame.info
    else:
        _check(frame.vs, MODULUS, "V(S)")
        _check(frame.vr, MODULUS, "V(R)")
        if len(frame.rejected_control) != 2:
            raise LocalProtocolError("FRMR: the rejected control field is two octets")
        control = bytes([_FRMR | frame.pf << 4])
        wxyz = frame.w | frame.x << 1 | frame.y << 2 | frame.z << 3
        info = frame.rejected_control + bytes([frame.vs << 1, frame.vr << 1 | frame.rejected_response, wxyz])
    if len(info) > N201:
        raise LocalProtocolError(f"information field of {len(info)} octets exceeds N201 = {N201}")
    return address + control + info


def decode(data: bytes, *, sender: Side, sapi: int | None = 0, tei: int | None = 0) -> Frame:
    """Parse one frame that ``sender`` transmitted. ``sapi``/``tei`` are the only values served here
    (``None``: any); a frame for another is invalid (§2.9 f). Raises :class:`InvalidFrame` or
    :class:`FrameRejected`, nothing else."""
    if len(data) < 3:
        raise InvalidFrame(f"frame of {len(data)} octets is shorter than address and control")
    a1, a2, c1 = data[0], data[1], data[2]
    if a1 & 1:
        raise InvalidFrame("EA0 of address octet 1 is 1 (one-octet address field)")
    if not a2 & 1:
        raise InvalidFrame("EA1 of address octet 2 is 0 (address field longer than two octets)")
    frame_sapi, frame_tei = a1 >> 2, a2 >> 1
    if sapi is not None and frame_sapi != sapi:
        raise InvalidFrame(f"SAPI {frame_sapi} not served (expected {sapi})")
    if tei is not None and frame_tei != tei:
        raise InvalidFrame(f"TEI {frame_tei} not assigned here (expected {tei})")
    command = is_command(a1 >> 1 & 1, sender)
    if c1 & 0x03 != 0x03:  # I (bit 1 = 0) or S (bits 2..1 = 01): two control octets
        if len(data) < 4:
            raise InvalidFrame("frame with sequence numbers shorter than four octets")
        c2 = data[3]
        if not c1 & 1:
            return _decode_i(data, c1, c2, command, frame_sapi, frame_tei)
        return _decode_s(data, c1, c2, command, frame_sapi, frame_tei)
    return _decode_u(data, c1, command, frame_sapi, frame_tei)


def _decode_i(data: bytes, c1: int, c2: int, command: bool, sapi: int, tei: int) -> IFrame:
    if not command:
        raise FrameRejected("I frame sent as a response", mdl_code="L")
    info = data[4:]
    if len(info) > N201:
        raise FrameRejected(f"I frame information field of {len(info)} octets exceeds N201", mdl_code="O")
    return IFrame(ns=c1 >> 1, nr=c2 >> 1, p=bool(c2 & 1), info=bytes(info), sapi=sapi, tei=tei)


def _decode_s(data: bytes, c1: int, c2: int, command: bool, sapi: int, tei: int) -> SFrame:
    try:
        kind = SKind(c1)
    except ValueError:
        raise FrameRejected(f"undefined supervisory control field {c1:#04x}", mdl_code="L") from None
    if len(data) != 4:
        raise FrameRejected(f"{kind.name} frame of {len(data)} octets (expected 4)", mdl_code="N")
    return SFrame(kind=kind, nr=c2 >> 1, pf=bool(c2 & 1), command=command, sapi=sapi, tei=tei)


def _decode_u(data: bytes, c1: int, command: bool, sapi: int, tei: int) -> UFrame | FrmrFrame:
    pf = bool(c1 & 0x10)
    modifier = c1 & ~0x10 & 0xFF
    info = bytes(data[3:])
    if modifier == _FRMR:
        if command:
            raise FrameRejected("FRMR sent as a command", mdl_code="L")
        if len(info) != 5:
            raise FrameRejected(f"FRMR information field of {len(info)} octets (expected 5)", mdl_code="N")
        return FrmrFrame(
            rejected_control=info[:2],
            vs=info[2] >> 1,
            vr=info[3] >> 1,
            rejected_response=bool(info[3] & 1),
            w=bool(info[4] & 1),
            x=bool(info[4] & 2),
            y=bool(info[4] & 4),
            z=bool(info[4] & 8),
            pf=pf,
            sapi=sapi,
            tei=tei,
        )
    try:
        kind = UKind(modifier)
    except ValueError:
        raise FrameRejected(f"undefined unnumbered control field {c1:#04x}", mdl_code="L") from None
    if (command and kind in _U_RESPONSE_ONLY) or (not command and kind in _U_COMMAND_ONLY):
        role = "command" if command else "response"
        raise FrameRejected(f"{kind.name} sent as a {role}", mdl_code="L")
    if info and kind not in _U_WITH_INFO:
        raise FrameRejected(f"{kind.name} with an information field", mdl_code="M")
    if len(info) > N201:
        raise FrameRejected(f"{kind.name} information field of {len(info)} octets exceeds N201", mdl_code="O")
    return UFrame(kind=kind, pf=pf, command=command, info=info, sapi=sapi, tei=tei)
