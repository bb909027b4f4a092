"""The Q.921 data link entity of one PRI D-channel (point-to-point, TEI 0, SAPI 0), sans-I/O.

Theory of operation. ITU-T Q.921 §5 (ETSI EN 300 125), as its Annex B SDL draws it, for a link whose TEI is
fixed (a primary rate interface has no TEI management: the entity starts in state 4, TEI-ASSIGNED):

* **4 TEI-ASSIGNED** — no multiple frame operation. :meth:`Lapd.start` (DL-ESTABLISH request) sends
  SABME (P=1) and goes to 5; a peer's SABME is accepted with UA and goes to 7 (§5.5.1.2).
* **5 AWAITING-ESTABLISHMENT** — SABME sent, T200 running; retransmitted on T200 up to N200 times
  (§5.5.1.3), then the attempt fails (MDL-ERROR G). UA (F=1) → 7; DM (F=1) → 4. A crossing SABME is
  answered with UA (§5.5.5.1, collision of identical commands) and the link comes up on the peer's UA.
* **6 AWAITING-RELEASE** — DISC sent (§5.5.3.2); UA or DM (F=1) → 4; N200 exhaustion → 4 (MDL-ERROR H).
* **7 MULTIPLE-FRAME-ESTABLISHED** — I frames both ways with V(S), V(A), V(R) modulo 128 and at most k
  unacknowledged (§5.6.1); N(R) acknowledges (§5.6.3.2), REJ asks for go-back-N retransmission
  (§5.6.4), RNR marks the peer busy (§5.6.5). T200 runs while I frames are unacknowledged, T203
  while the link is idle (§5.6.7, §5.10); either expiring polls the peer (RR, P=1) and goes to 8.
* **8 TIMER-RECOVERY** — enquiries at T200 until a supervisory response with F=1 arrives (→ 7, retransmit
  from N(R), §5.8.3) or N200 have gone unanswered (MDL-ERROR I, re-establish).

Re-establishment (§5.7; the criteria are §5.7.1's): an N(R) error (J, §5.8.2), a FRMR received in
multiple frame operation (K, §5.8.6), a frame rejection condition (L–O, §5.8.5), an exhausted enquiry
(I, §5.8.3), an unsolicited DM F=0 (E, §5.8.7) or a DM F=1 in timer recovery (B) re-establishes the link:
SABME from state 7/8 to state 5, layer 3 not the initiator. A peer's SABME in 7/8 resets the variables at
once (F). In both cases (§5.7.2) management gets the MDL-ERROR, and layer 3 hears of it
(``LinkEstablished(reestablished=True)``, DL-ESTABLISH indication) only if unacknowledged I frames were lost
(V(S) ≠ V(A)), and every I queue is then discarded; otherwise the reset is invisible above and queued
messages are kept. The unsolicited responses that §5.8.7 says must not cause re-establishment are only
reported: a supervisory response with F=1 in state 7 (A), a DM F=1 in state 7 (B), a UA with F=1 outside
states 5 and 6 (C) or a UA with F=0 anywhere (D) (Table II.1).

Keep-up (``keep_up``, on by default; PRI practice as libpri and Asterisk do it): once :meth:`Lapd.start` has
been called, whenever the link falls back to state 4 (DISC or DM from the peer, a failed establishment)
and the physical layer is up, the entity tries again after T200, and on :meth:`Lapd.physical_up` at once.
:meth:`Lapd.stop` ends that until the next :meth:`Lapd.start`.

Frames that cannot be parsed are handled as :mod:`appliance.pri.lapd_codec` classifies them: discarded
(§5.8.4) or reported and — in state 7 or 8 — followed by re-establishment (§5.8.5). This entity never sends
FRMR: Q.921 §5.8.5 resolves the frame rejection condition by re-establishment, and a FRMR received is
answered the same way (§5.8.6). Nothing here raises on the peer's input.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from typing import Final, Literal

from appliance.pri.errors import LocalProtocolError
from appliance.pri.lapd_codec import (
    MODULUS,
    Frame,
    FrameRejected,
    FrmrFrame,
    IFrame,
    InvalidFrame,
    SFrame,
    SKind,
    UFrame,
    UKind,
    decode,
    encode,
)
from appliance.pri.lapd_events import (
    MDL_ERRORS,
    DataReceived,
    LapdEvent,
    LinkError,
    LinkEstablished,
    LinkReleased,
    ReleaseReason,
    UnitDataReceived,
)
from appliance.pri.lapd_timers import LapdTimers

log = logging.getLogger("appliance.pri.lapd")


class LapdState(enum.Enum):
    """Q.921 Annex B data link states (the numbers are the SDL's)."""

    TEI_ASSIGNED = 4
    AWAITING_ESTABLISHMENT = 5
    AWAITING_RELEASE = 6
    MULTIPLE_FRAME_ESTABLISHED = 7
    TIMER_RECOVERY = 8


_S = LapdState
_TRANSITIONS: Final[dict[LapdState, frozenset[LapdState]]] = {
    _S.TEI_ASSIGNED: frozenset({_S.AWAITING_ESTABLISHMENT, _S.MULTIPLE_FRAME_ESTABLISHED}),
    _S.AWAITING_ESTABLISHMENT: frozenset(
        {_S.TEI_ASSIGNED, _S.AWAITING_RELEASE, _S.MULTIPLE_FRAME_ESTABLISHED}
    ),
    _S.AWAITING_RELEASE: frozenset({_S.TEI_ASSIGNED, _S.AWAITING_ESTABLISHMENT}),
    _S.MULTIPLE_FRAME_ESTABLISHED: frozenset(
        {_S.TEI_ASSIGNED, _S.AWAITING_ESTABLISHMENT, _S.AWAITING_RELEASE, _S.TIMER_RECOVERY}
    ),
    _S.TIMER_RECOVERY: frozenset(
        {_S.TEI_ASSIGNED, _S.AWAITING_ESTABLISHMENT, _S.AWAITING_RELEASE, _S.MULTIPLE_FRAME_ESTABLISHED}
    ),
}
DEFAULT_TIMERS: Final = LapdTimers()
# Messages waiting for the window to open; a span's 30 calls never need more than a few dozen at once.
MAX_QUEUED: Final = 512
_UP: Final = frozenset({_S.MULTIPLE_FRAME_ESTABLISHED, _S.TIMER_RECOVERY})


class Lapd:
    """One data link entity: ``side`` is ours ("user" or "network"; it decides the C/R bit, Q.921 Table 1).

    Feed it :meth:`receive` (one frame from the D-channel), the commands :meth:`start`, :meth:`stop`,
    :meth:`send_data`, the physical layer's state and :meth:`handle_timer` at :meth:`get_timer`; drain
    :meth:`frames_to_send` and :meth:`next_event` after each call. The physical layer is assumed up until
    :meth:`physical_down` says otherwise. Counters: ``discarded`` (frames dropped as invalid or not
    expected in the state), ``retransmissions`` (I frames sent again), ``dropped_messages`` (messages
    given to :meth:`send_data` that were discarded, Q.921 §5.7.2: I queues discarded).
    """

    def __init__(
        self,
        *,
        side: Literal["user", "network"],
        timers: LapdTimers = DEFAULT_TIMERS,
        sapi: int = 0,
        tei: int = 0,
        keep_up: bool = True,
        name: str = "d",
    ) -> None:
        if side not in ("user", "network"):
            raise LocalProtocolError(f"side must be 'user' or 'network', not {side!r}")
        self.side: Literal["user", "network"] = side
        self._peer: Literal["user", "network"] = "network" if side == "user" else "user"
        self.timers = timers
        self.sapi, self.tei = sapi, tei
        self.keep_up = keep_up
        self.name = name
        self.state = LapdState.TEI_ASSIGNED
        self.vs = self.va = self.vr = 0
        self.rc = 0  # retransmission counter (§5.9.2)
        self.peer_busy = False
        self._reject = False  # reject exception condition (§5.8.1)
        self._ack_pending = False
        self._reported_up = False  # whether layer 3 was told the link is up
        self._wanted = False  # start() called and not stop()ped: keep-up applies
        self._refuse = False  # stop() called: a peer's SABME is answered with DM
        self._physical = True
        self._queue: deque[bytes] = deque()  # messages not yet sent
        self._unacked: deque[bytes] = deque()  # sent, N(S) from V(A) to V(S) - 1
        self._t200: float | None = None
        self._t203: float | None = None
        self._retry: float | None = None
        self._out: list[bytes] = []
        self._events: deque[LapdEvent] = deque()
        self.discarded = self.retransmissions = self.dropped_messages = 0

    # -- the state table ---------------------------------------------------------------------------

    def _set_state(self, new: LapdState) -> None:
        if new is self.state:
            return
        if new not in _TRANSITIONS[self.state]:
            raise LocalProtocolError(f"LAPD {self.name}: illegal transition {self.state.name} -> {new.name}")
        log.info("lapd %s (%s): %s -> %s", self.name, self.side, self.state.name, new.name)
        self.state = new

    @property
    def established(self) -> bool:
        """Multiple frame operation is up (state 7 or 8)."""
        return self.state in _UP

    # -- the API -----------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """DL-ESTABLISH request (§5.5.1.1): send SABME unless the link is up or being established."""
        self._wanted = True
        self._refuse = False
        self._retry = None
        if not self._physical:
            return  # established on physical_up
        if self.state is _S.TEI_ASSIGNED or self.state is _S.AWAITING_RELEASE:
            self._establish(now)

    def stop(self, now: float) -> None:
        """DL-RELEASE request (§5.5.3.1): send DISC (P=1); the release completes on UA or DM."""
        self._wanted = False
        self._refuse = True
        self._retry = None
        if self.state in (_S.MULTIPLE_FRAME_ESTABLISHED, _S.TIMER_RECOVERY, _S.AWAITING_ESTABLISHMENT):
            self._discard_queue()
            self.rc = 0
            self._send(UFrame(UKind.DISC, pf=True, command=True, sapi=self.sapi, tei=self.tei))
            self._t203 = None
            self._t200 = now + self.timers.t200
            self._set_state(_S.AWAITING_RELEASE)

    def send_data(self, data: bytes, now: float) -> None:
        """DL-DATA request (§5.6.1): queue one message as an I frame. While the link is being
        (re-)established the message waits; with the link released it is discarded (and counted)."""
        if len(data) > self.timers.n201:
            raise LocalProtocolError(f"message of {len(data)} octets exceeds N201 = {self.timers.n201}")
        if self.state in (_S.TEI_ASSIGNED, _S.AWAITING_RELEASE):
            self.dropped_messages += 1
            log.warning("lapd %s: message discarded, data link not established", self.name)
            return
        if len(self._queue) >= MAX_QUEUED:
            # A peer that stays busy (RNR answered to every poll, §5.6.5) may never take another frame;
            # what waits for it is bounded, the excess discarded like a message for a released link.
            self.dropped_messages += 1
            log.warning("lapd %s: message discarded, %d already wait for a busy peer", self.name, MAX_QUEUED)
            return
        self._queue.append(bytes(data))
        self._flush(now)

    def frames_to_send(self) -> list[bytes]:
        """The frames to transmit, in order, since the last call."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> LapdEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest pending deadline (T200, T203 or the keep-up retry), or None."""
        deadlines = [t for t in (self._t200, self._t203, self._retry) if t is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Run every deadline that is due at ``now``."""
        if self._retry is not None and now >= self._retry:
            self._retry = None
            if self.state is _S.TEI_ASSIGNED and self._wanted and self._physical:
                self._establish(now)
        if self._t200 is not None and now >= self._t200:
            self._t200 = None
            self._t200_expired(now)
        if self._t203 is not None and now >= self._t203:
            self._t203 = None
            if self.state is _S.MULTIPLE_FRAME_ESTABLISHED:
                # §5.10: idle link — poll the peer.
                self.rc = 0
                self._enquiry(now)
                self._set_state(_S.TIMER_RECOVERY)

    def physical_down(self, now: float) -> None:
        """PH-DEACTIVATE indication: everything stops; the link is released if it was up."""
        self._physical = False
        if not self.keep_up:
            self._wanted = False  # without keep-up, layer 3 asks again (start) once it wants the link
        self._t200 = self._t203 = self._retry = None
        self._discard_queue()
        self._to_tei_assigned(ReleaseReason.PHYSICAL, now, retry=False)

    def physical_up(self, now: float) -> None:
        """PH-ACTIVATE indication: establish the link now if :meth:`start` wants it (with keep-up, a link
        started before the physical layer went down; without, only a start made while it was down)."""
        self._physical = True
        if self._wanted and self.state is _S.TEI_ASSIGNED:
            self._establish(now)

    # -- receiving ---------------------------------------------------------------------------------

    def receive(self, frame: bytes, now: float) -> None:
        """One frame from the D-channel (address, control, information; no FCS)."""
        if not self._physical:
            self.discarded += 1
            return
        try:
            parsed = decode(frame, sender=self._peer, sapi=self.sapi, tei=self.tei)
        except InvalidFrame as exc:
            self.discarded += 1
            log.debug("lapd %s: invalid frame discarded (§5.8.4): %s", self.name, exc.reason)
            return
        except FrameRejected as exc:
            self.discarded += 1
            log.warning("lapd %s: frame rejected (§5.8.5): %s", self.name, exc.reason)
            self._mdl_error(exc.mdl_code or "L")
            if self.established:
                self._reestablish(now)
            return
        if isinstance(parsed, IFrame):
            self._on_i(parsed, now)
        elif isinstance(parsed, SFrame):
            self._on_s(parsed, now)
        elif isinstance(parsed, FrmrFrame):
            if self.established:  # §5.8.6: a FRMR in multiple frame operation re-establishes the link
                self._mdl_error("K")
                self._reestablish(now)
            else:
                self.discarded += 1
        else:
            self._on_u(parsed, now)
        self._flush(now)

    def _on_u(self, frame: UFrame, now: float) -> None:
        kind, state = frame.kind, self.state
        if kind is UKind.UI:
            self._events.append(UnitDataReceived(frame.info))
        elif kind is UKind.XID:
            self.discarded += 1  # XID: no parameter negotiation on this link
        elif kind is UKind.SABME:
            self._on_sabme(frame, now)
        elif kind is UKind.DISC:
            if state is _S.TEI_ASSIGNED or state is _S.AWAITING_ESTABLISHMENT:
                self._respond(UKind.DM, frame.pf)  # §5.5.4 (state 4) / §5.5.5.2 (different commands)
            elif state is _S.AWAITING_RELEASE:
                self._respond(UKind.UA, frame.pf)  # DISC collision (§5.5.5.1): release continues
            else:
                self._discard_queue()
                self._respond(UKind.UA, frame.pf)
                self._to_tei_assigned(ReleaseReason.PEER, now, retry=True)
        elif kind is UKind.UA:
            self._on_ua(frame, now)
        else:
            self._on_dm(frame, now)

    def _on_sabme(self, frame: UFrame, now: float) -> None:
        state = self.state
        if state is _S.AWAITING_RELEASE or (state is _S.TEI_ASSIGNED and self._refuse):
            # §5.5.5.2: SABME while releasing is refused; §5.5.1.2: so is one we are unable to accept
            self._respond(UKind.DM, frame.pf)
            return
        self._respond(UKind.UA, frame.pf)
        if state is _S.AWAITING_ESTABLISHMENT:
            return  # §5.5.5.1: identical commands crossed; the peer's UA completes ours
        lost = False
        if state in _UP:
            self._mdl_error("F")  # §5.7.1/§5.7.2 peer initiated re-establishment
            lost = self.vs != self.va
            if lost:
                self._discard_queue()
        self._clear_exceptions()
        self.vs = self.va = self.vr = 0
        self._t200 = None
        self._t203 = now + self.timers.t203
        self._retry = None
        self._set_state(_S.MULTIPLE_FRAME_ESTABLISHED)
        if not self._reported_up or lost:
            self._events.append(LinkEstablished(reestablished=self._reported_up))
            self._reported_up = True

    def _on_ua(self, frame: UFrame, now: float) -> None:
        state = self.state
        if not frame.pf or state not in (_S.AWAITING_ESTABLISHMENT, _S.AWAITING_RELEASE):
            self._mdl_error("C" if frame.pf else "D")  # unsolicited UA: reported only (§5.8.7, Table II.1)
            return
        self._t200 = None
        if state is _S.AWAITING_RELEASE:
            self._to_tei_assigned(ReleaseReason.LOCAL, now, retry=False)
            return
        lost = self.vs != self.va
        if lost:
            self._discard_queue()  # §5.7.2: unacknowledged frames are lost; layer 3 must learn of it
        self.vs = self.va = self.vr = 0
        self._t203 = now + self.timers.t203
        self._set_state(_S.MULTIPLE_FRAME_ESTABLISHED)
        if not self._reported_up or lost:
            self._events.append(LinkEstablished(reestablished=self._reported_up))
            self._reported_up = True

    def _on_dm(self, frame: UFrame, now: float) -> None:
        state = self.state
        if state is _S.TEI_ASSIGNED:
            if frame.pf:
                self._mdl_error("B")
            return
        if state is _S.AWAITING_ESTABLISHMENT or state is _S.AWAITING_RELEASE:
            if frame.pf:  # §5.5.1.2 refused / §5.5.3.2 already released
                self._t200 = None
                done = ReleaseReason.PEER if state is _S.AWAITING_ESTABLISHMENT else ReleaseReason.LOCAL
                self._discard_queue()
                self._to_tei_assigned(done, now, retry=state is _S.AWAITING_ESTABLISHMENT)
            return
        if frame.pf and state is _S.MULTIPLE_FRAME_ESTABLISHED:
            self._mdl_error("B")  # §5.8.7: an unsolicited DM F=1 is reported, not acted on
            return
        # §5.7.1: a DM F=1 in timer recovery, or an unsolicited DM F=0 (§5.8.7), re-establishes the link
        self._mdl_error("B" if frame.pf else "E")
        self._reestablish(now)

    def _on_i(self, frame: IFrame, now: float) -> None:
        if self.state not in _UP:
            self.discarded += 1
            if self.state is _S.TEI_ASSIGNED and frame.p:
                self._respond(UKind.DM, True)  # §5.5.4 (not established): DM with F=1
            return
        if frame.ns == self.vr:  # §5.6.2 in sequence
            self.vr = (self.vr + 1) % MODULUS
            self._reject = False
            self._events.append(DataReceived(frame.info))
            if frame.p:
                self._send_s(SKind.RR, command=False, pf=True)
            else:
                self._ack_pending = True
        else:  # §5.8.1 N(S) sequence error
            self.discarded += 1
            if self._reject:
                if frame.p:
                    self._send_s(SKind.RR, command=False, pf=True)
            else:
                self._reject = True
                self._send_s(SKind.REJ, command=False, pf=frame.p)
        if self._check_nr(frame.nr, now):
            self._update_va(frame.nr, now)

    def _on_s(self, frame: SFrame, now: float) -> None:
        if self.state not in _UP:
            self.discarded += 1
            if self.state is _S.TEI_ASSIGNED and frame.command and frame.pf:
                self._respond(UKind.DM, True)
            return
        self.peer_busy = frame.kind is SKind.RNR
        if frame.command and frame.pf:
            self._send_s(SKind.RR, command=False, pf=True)  # §5.1: a command with P=1 is answered F=1
        if not self._check_nr(frame.nr, now):
            return
        recovering = self.state is _S.TIMER_RECOVERY
        if recovering and not frame.command and frame.pf:
            # §5.8.3: the answer to our enquiry — back to state 7, retransmitting from N(R).
            self._acknowledge(frame.nr)
            self._set_state(_S.MULTIPLE_FRAME_ESTABLISHED)
            self.rc = 0
            if self.peer_busy:
                self._t203, self._t200 = None, now + self.timers.t200
            else:
                self._t200, self._t203 = None, now + self.timers.t203
                self._retransmit_from_va()
            return
        if not recovering and not frame.command and frame.pf:
            self._mdl_error("A")
        if recovering:
            self._acknowledge(frame.nr)
        elif frame.kind is SKind.REJ:
            self._acknowledge(frame.nr)
            self._t200, self._t203 = None, now + self.timers.t203
            self._retransmit_from_va()  # §5.6.4 go back N
        elif frame.kind is SKind.RNR:
            self._acknowledge(frame.nr)
            self._t203, self._t200 = None, now + self.timers.t200  # §5.6.5: poll the busy peer on T200
        else:
            self._update_va(frame.nr, now)

    # -- sequence numbers and timers ----------------------------------------------------------------

    def _check_nr(self, nr: int, now: float) -> bool:
        """§5.8.2: V(A) ≤ N(R) ≤ V(S); otherwise MDL-ERROR J and re-establishment."""
        if (nr - self.va) % MODULUS <= (self.vs - self.va) % MODULUS:
            return True
        self._mdl_error("J")
        self._reestablish(now)
        return False

    def _acknowledge(self, nr: int) -> None:
        for _ in range((nr - self.va) % MODULUS):
            self._unacked.popleft()
        self.va = nr

    def _update_va(self, nr: int, now: float) -> None:
        """§5.6.3.2 / Annex B: an acknowledgement in state 7 manages T200 and T203; in 8 only V(A)."""
        if self.state is not _S.MULTIPLE_FRAME_ESTABLISHED or self.peer_busy:
            self._acknowledge(nr)
            return
        if nr == self.vs:
            self._acknowledge(nr)
            self._t200, self._t203 = None, now + self.timers.t203
        elif nr != self.va:
            self._acknowledge(nr)
            self._t200 = now + self.timers.t200

    def _t200_expired(self, now: float) -> None:
        state = self.state
        if state is _S.AWAITING_ESTABLISHMENT or state is _S.AWAITING_RELEASE:
            if self.rc >= self.timers.n200:
                establishing = state is _S.AWAITING_ESTABLISHMENT
                self._mdl_error("G" if establishing else "H")
                self._discard_queue()
                reason = ReleaseReason.FAILURE if establishing else ReleaseReason.LOCAL
                self._to_tei_assigned(reason, now, retry=establishing)
                return
            self.rc += 1
            kind = UKind.SABME if state is _S.AWAITING_ESTABLISHMENT else UKind.DISC
            self._send(UFrame(kind, pf=True, command=True, sapi=self.sapi, tei=self.tei))
            self._t200 = now + self.timers.t200
        elif state is _S.MULTIPLE_FRAME_ESTABLISHED:
            self.rc = 0  # §5.6.7 timer recovery begins with an enquiry
            self._enquiry(now)
            self._set_state(_S.TIMER_RECOVERY)
        elif state is _S.TIMER_RECOVERY:
            if self.rc >= self.timers.n200:
                self._mdl_error("I")
                self._reestablish(now)
            else:
                self._enquiry(now)

    def _enquiry(self, now: float) -> None:
        """Transmit an enquiry: RR command with P=1 (§5.6.7), counting it, and restart T200."""
        self._send_s(SKind.RR, command=True, pf=True)
        self.rc += 1
        self._t203, self._t200 = None, now + self.timers.t200

    # -- actions -----------------------------------------------------------------------------------

    def _establish(self, now: float) -> None:
        """Annex B "establish data link": clear exceptions, RC = 0, SABME (P=1), T200, state 5."""
        self._clear_exceptions()
        self.rc = 0
        self._send(UFrame(UKind.SABME, pf=True, command=True, sapi=self.sapi, tei=self.tei))
        self._t203, self._t200 = None, now + self.timers.t200
        self._set_state(_S.AWAITING_ESTABLISHMENT)

    def _reestablish(self, now: float) -> None:
        """§5.7.2: layer 2 initiated re-establishment from state 7 or 8. V(S) and V(A) keep their values
        until the UA, which then decides whether messages were lost (Annex B: V(S) ≠ V(A))."""
        self._establish(now)

    def _to_tei_assigned(self, reason: ReleaseReason, now: float, *, retry: bool) -> None:
        self._t200 = self._t203 = None
        self._clear_exceptions()
        self._unacked.clear()
        self.vs = self.va = self.vr = 0
        self._set_state(_S.TEI_ASSIGNED)
        if self._reported_up:  # layer 3 hears of releases only of a link it was told is up
            self._events.append(LinkReleased(reason))
        self._reported_up = False
        if retry and self.keep_up and self._wanted and self._physical:
            self._retry = now + self.timers.t200

    def _clear_exceptions(self) -> None:
        self.peer_busy = self._reject = self._ack_pending = False

    def _discard_queue(self) -> None:
        self.dropped_messages += len(self._queue) + len(self._unacked)
        self._queue.clear()
        self._unacked.clear()
        self.vs = self.va

    def _retransmit_from_va(self) -> None:
        """Invoke retransmission (Annex B): V(S) = V(A); the unacknowledged frames are sent again."""
        self.retransmissions += len(self._unacked)
        self._queue.extendleft(reversed(self._unacked))
        self._unacked.clear()
        self.vs = self.va

    def _flush(self, now: float) -> None:
        """Send queued I frames while the window allows (§5.6.1), then any pending acknowledgement."""
        if self.state is _S.MULTIPLE_FRAME_ESTABLISHED and not self.peer_busy:
            while self._queue and (self.vs - self.va) % MODULUS < self.timers.k:
                data = self._queue.popleft()
                self._send(IFrame(self.vs, self.vr, False, data, sapi=self.sapi, tei=self.tei))
                self._unacked.append(data)
                self.vs = (self.vs + 1) % MODULUS
                self._ack_pending = False
                if self._t200 is None:
                    self._t203, self._t200 = None, now + self.timers.t200
        if self._ack_pending and self.established:
            self._send_s(SKind.RR, command=False, pf=False)
        self._ack_pending = False

    def _send_s(self, kind: SKind, *, command: bool, pf: bool) -> None:
        self._send(SFrame(kind, self.vr, pf, command, sapi=self.sapi, tei=self.tei))
        self._ack_pending = False

    def _respond(self, kind: UKind, pf: bool) -> None:
        self._send(UFrame(kind, pf=pf, command=False, sapi=self.sapi, tei=self.tei))

    def _send(self, frame: Frame) -> None:
        self._out.append(encode(frame, sender=self.side))

    def _mdl_error(self, code: str) -> None:
        log.warning("lapd %s: MDL-ERROR %s (%s) in %s", self.name, code, MDL_ERRORS[code], self.state.name)
        self._events.append(LinkError(code, MDL_ERRORS[code]))
