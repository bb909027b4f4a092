"""Q.931 timers: the defaults of each side (ITU-T Q.931 §9, Table 9-1 network side and Table 9-2 user side;
ETSI EN 300 403-1 §9 keeps them) as one frozen configuration value, and what each call timer's expiry does
(:class:`TimerProcedures`, one ``_tNNN`` method per timer).

Every timer runs on the ``now`` the span's glue passes in; the machine keeps deadlines, never sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

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

_NETWORK_T310 = 10.0  # Q.931 Table 9-1: N9 incoming call proceeding, CALL PROCEEDING received


@dataclass(frozen=True, slots=True)
class Q931Timers:
    """Durations in seconds. The names are the standard's; the state each runs in is in the comment.

    The field defaults are the user side's (Table 9-2); :meth:`for_side` gives either side its own
    (Table 9-1 on the network side differs in T310). :class:`~appliance.pri.q931.Q931` built without
    ``timers`` takes :meth:`for_side` of its side.

    ``t303_attempts``: how many times SETUP is sent before T303 gives up (Tables 9-1/9-2: retransmitted on
    the first expiry). ``t308_attempts``: RELEASE likewise (Tables 9-1/9-2). ``t316_attempts``: RESTART
    sends before the restart is abandoned (§5.5.1: a default limit of two consecutive unsuccessful
    attempts). ``t322_attempts``: STATUS ENQUIRY sends before the call is cleared with cause 41 (§5.8.10
    leaves the number of retransmissions to the implementation).
    """

    t301: float = 180.0  # U4/N7 ALERTING received, no CONNECT (Table 9-1: minimum 3 min)
    t302: float = 15.0  # N2 (SETUP ACK sent), restarted on each INFORMATION (Table 9-1: 10-15 s)
    t303: float = 4.0  # U1/N6: SETUP sent, no answer (Tables 9-1/9-2: 4 s)
    t305: float = 30.0  # U11/N12: DISCONNECT sent without progress indicator 8 (30 s)
    t306: float = 30.0  # N12: DISCONNECT with progress indicator 8 sent (network side, 30 s)
    t308: float = 4.0  # U19/N19: RELEASE sent (4 s)
    t309: float = 90.0  # active calls while the data link is down (§5.8.9; 90 s as EuroISDN stacks run it)
    t310: float = 30.0  # U3: CALL PROCEEDING received (Table 9-2: 30-120 s; the network's N9 is 10 s)
    t313: float = 4.0  # U8: CONNECT sent (user side, Table 9-2: 4 s)
    t316: float = 120.0  # REST1: RESTART sent (Tables 9-1/9-2: 2 min)
    t322: float = 4.0  # STATUS ENQUIRY sent (4 s)
    t303_attempts: int = 2
    t308_attempts: int = 2
    t316_attempts: int = 2
    t322_attempts: int = 2

    @classmethod
    def for_side(cls, side: Literal["user", "network"], **overrides: Any) -> Q931Timers:
        """The standard defaults of ``side`` (Table 9-1 network, Table 9-2 user), with ``overrides``
        (field name -> value) on top."""
        base = cls(t310=_NETWORK_T310) if side == "network" else cls()
        return replace(base, **overrides)


class TimerProcedures(MachineBase):
    """Expiry of the per-call timers; :meth:`~appliance.pri.q931.Q931.handle_timer` calls ``_t<number>``."""

    def _t301(self, call: Call, now: float) -> None:
        self._clear(call, CAUSE_NO_ANSWER, now)

    def _t302(self, call: Call, now: float) -> None:
        """Table 9-1: clear if the call information is definitely incomplete, else CALL PROCEEDING. The
        machine does not know the numbering plan, so it takes the digits as incomplete and clears with
        cause 28 (§5.1.3); call control that can judge answers ``proceeding`` before T302 runs out."""
        self._clear(call, CAUSE_INVALID_NUMBER, now)

    def _t303(self, call: Call, now: float) -> None:
        """SETUP once more (Tables 9-1/9-2, first expiry), then give up with cause 102: the user side sends
        RELEASE COMPLETE and enters NULL (§5.1.1); the network side, its SETUP having gone out on a
        point-to-point data link, clears towards the called user as in §5.3.4 (DISCONNECT, §5.2.5.4 b)."""
        if self._retry(call, "T303", self.timers.t303_attempts) and call.setup is not None:
            self._out.append(call.setup)
            self._start(call, "T303", now)
            return
        if self.side == "network":
            self._clear(call, CAUSE_RECOVERY_ON_TIMER, now)
            return
        call.clearing_by(CAUSE_RECOVERY_ON_TIMER, self._location, local=True)
        self._send(call, MessageType.RELEASE_COMPLETE, cause=Cause(CAUSE_RECOVERY_ON_TIMER, self._location))
        self._release(call)

    def _t305(self, call: Call, now: float) -> None:
        """§5.3.3: no answer to DISCONNECT, RELEASE with its cause."""
        self._send_release(call, Cause(call.clear_cause or CAUSE_NORMAL, self._location), now)

    _t306 = _t305

    def _t308(self, call: Call, now: float) -> None:
        """RELEASE once more (Tables 9-1/9-2, first expiry); on the second expiry the B-channel is placed
        in the maintenance condition, the call reference released and the call enters NULL (§5.3.3 user,
        §5.3.4.3 network). The channel leaves maintenance only by a restart (§5.5, which "is usually
        invoked ... following the expiry of timer T308"); one for that channel is started here when none
        is running and the data link is up."""
        if self._retry(call, "T308", self.timers.t308_attempts):
            self._send(
                call, MessageType.RELEASE, cause=Cause(call.clear_cause or CAUSE_NORMAL, self._location)
            )
            self._start(call, "T308", now)
            return
        channel = call.channel
        self._release(call)
        if channel is not None:
            self._maintenance(channel, now)

    def _maintenance(self, channel: int, now: float) -> None:
        """Put ``channel`` in the maintenance condition and restart it if possible (provided by
        :class:`~appliance.pri.q931_channels.RestartProcedure`)."""
        raise NotImplementedError

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
