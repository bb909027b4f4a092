"""Q.931 timers: the defaults (ETSI EN 300 403-1 §9, Tables 9-1 and 9-2) as one frozen configuration value,
and what each call timer's expiry does (:class:`TimerProcedures`, one ``_tNNN`` method per timer).

Every timer runs on the ``now`` the span's glue passes in; the machine keeps deadlines, never sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.pri.q931_call import (
    CAUSE_INVALID_NUMBER,
    CAUSE_NO_ANSWER,
    CAUSE_NORMAL,
    CAUSE_OUT_OF_ORDER,
    CAUSE_RECOVERY_ON_TIMER,
    CAUSE_TEMPORARY_FAILURE,
    Call,
    MachineBase,
)
from appliance.pri.q931_model import CallStateValue as S
from appliance.pri.q931_model import Cause, MessageType


@dataclass(frozen=True, slots=True)
class Q931Timers:
    """Durations in seconds. The names are the standard's; the state each runs in is in the comment.

    ``t303_attempts``: how many times SETUP is sent before T303 gives up (Q.931 §5.1.1: repeated once).
    ``t308_attempts``: RELEASE likewise (§5.3.4). ``t316_attempts``: RESTART sends before the restart
    is abandoned (§5.5.1 leaves the count to the implementation). ``t322_attempts``: STATUS ENQUIRY sends
    before the call is cleared with cause 41 (§5.8.10).
    """

    t301: float = 180.0  # N7 call received: ALERTING received, no CONNECT (network side; minimum 3 min)
    t302: float = 15.0  # N2 overlap sending: restarted on each INFORMATION (ETSI 10-15 s)
    t303: float = 4.0  # U1/N6: SETUP sent, no answer
    t305: float = 30.0  # U11/N12: DISCONNECT sent (without in-band information)
    t306: float = 30.0  # N12: DISCONNECT with progress indicator 8 sent (network side)
    t308: float = 4.0  # U19/N19: RELEASE sent
    t309: float = 90.0  # active calls while the data link is down (Q.931 Table 9-1)
    t310: float = 30.0  # U3/N9: CALL PROCEEDING received
    t313: float = 4.0  # U8: CONNECT sent (user side)
    t316: float = 120.0  # REST1: RESTART sent
    t322: float = 4.0  # STATUS ENQUIRY sent
    t303_attempts: int = 2
    t308_attempts: int = 2
    t316_attempts: int = 2
    t322_attempts: int = 2


class TimerProcedures(MachineBase):
    """Expiry of the per-call timers; :meth:`~appliance.pri.q931.Q931.handle_timer` calls ``_t<number>``."""

    def _t301(self, call: Call, now: float) -> None:
        self._clear(call, CAUSE_NO_ANSWER, now)

    def _t302(self, call: Call, now: float) -> None:
        self._clear(call, CAUSE_INVALID_NUMBER, now)  # §5.1.3: the number is still incomplete

    def _t303(self, call: Call, now: float) -> None:
        """§5.1.1/§5.2.1: SETUP once more, then give up with cause 102."""
        if self._retry(call, "T303", self.timers.t303_attempts) and call.setup is not None:
            self._out.append(call.setup)
            self._start(call, "T303", now)
            return
        call.clearing_by(CAUSE_RECOVERY_ON_TIMER, self._location, local=True)
        self._send(call, MessageType.RELEASE_COMPLETE, cause=Cause(CAUSE_RECOVERY_ON_TIMER, self._location))
        self._release(call)

    def _t305(self, call: Call, now: float) -> None:
        """§5.3.3: no answer to DISCONNECT, RELEASE with its cause."""
        self._send_release(call, Cause(call.clear_cause or CAUSE_NORMAL, self._location), now)

    _t306 = _t305

    def _t308(self, call: Call, now: float) -> None:
        """§5.3.4.3: RELEASE once more, then the call reference and channel are released."""
        if self._retry(call, "T308", self.timers.t308_attempts):
            self._send(
                call, MessageType.RELEASE, cause=Cause(call.clear_cause or CAUSE_NORMAL, self._location)
            )
            self._start(call, "T308", now)
            return
        self._release(call)

    def _t309(self, call: Call, now: float) -> None:
        """§5.8.9: the data link did not come back in time."""
        call.clearing_by(CAUSE_OUT_OF_ORDER, self._location, local=True)
        self._release(call)

    def _t310(self, call: Call, now: float) -> None:
        self._clear(call, CAUSE_RECOVERY_ON_TIMER, now)

    _t313 = _t310

    def _t322(self, call: Call, now: float) -> None:
        """§5.8.10: STATUS ENQUIRY unanswered; repeated, then the call is cleared with cause 41."""
        if self._retry(call, "T322", self.timers.t322_attempts):
            self._send(call, MessageType.STATUS_ENQUIRY)
            self._start(call, "T322", now)
            return
        if call.state not in (self._disc_sent, S.RELEASE_REQUEST):
            self._clear(call, CAUSE_TEMPORARY_FAILURE, now)
