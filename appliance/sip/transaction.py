"""The four SIP transaction state machines (RFC 3261 §17, amended by RFC 6026).

Theory of operation. A transaction is one request and its responses. Client transactions retransmit the
request over unreliable transports (Timers A and E) until a response comes, give up after 64*T1 (Timers B
and F), and linger a while after the final response to absorb retransmissions (Timers D and K). Server
transactions absorb request retransmissions by re-sending their last response, retransmit a final response
to an INVITE until it is acknowledged (Timer G, bounded by H), and linger (Timers I and J).

RFC 6026 replaces the "2xx terminates the INVITE transaction" rule with an Accepted state (Timers L and M)
in which 2xx retransmissions and the ACKs for them are passed to the TU; on the server side the Accepted
state also retransmits the 2xx until the ACK arrives (the UAS core duty of RFC 3261 §13.3.1.4, kept here so
that every retransmission timer of the stack lives in one place).

Timers are deadlines on the injected clock: a transaction asks its host to ``schedule`` a named timer and the
host calls :meth:`fire` when the deadline passes. No module here reads a clock or touches a socket.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Final, Protocol

from appliance.sip.builder import make_response
from appliance.sip.errors import LocalProtocolError
from appliance.sip.events import AckTimeout, Peer, ResponseReceived, TransactionTimeout
from appliance.sip.message import Headers, Request, Response

if TYPE_CHECKING:
    from appliance.sip.events import SipEvent

log = logging.getLogger("appliance.sip.transaction")


class TxState(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


S = TxState
# Allowed transitions per machine: RFC 3261 figures 5-8 with the RFC 6026 Accepted state.
CLIENT_INVITE: Final = {
    S.CALLING: {S.PROCEEDING, S.COMPLETED, S.ACCEPTED, S.TERMINATED},
    S.PROCEEDING: {S.COMPLETED, S.ACCEPTED, S.TERMINATED},
    S.COMPLETED: {S.TERMINATED},
    S.ACCEPTED: {S.TERMINATED},
    S.TERMINATED: set(),
}
CLIENT_NON_INVITE: Final = {
    S.TRYING: {S.PROCEEDING, S.COMPLETED, S.TERMINATED},
    S.PROCEEDING: {S.COMPLETED, S.TERMINATED},
    S.COMPLETED: {S.TERMINATED},
    S.TERMINATED: set(),
}
SERVER_INVITE: Final = {
    S.PROCEEDING: {S.COMPLETED, S.ACCEPTED, S.TERMINATED},
    S.COMPLETED: {S.CONFIRMED, S.TERMINATED},
    S.CONFIRMED: {S.TERMINATED},
    S.ACCEPTED: {S.TERMINATED},
    S.TERMINATED: set(),
}
SERVER_NON_INVITE: Final = {
    S.TRYING: {S.PROCEEDING, S.COMPLETED, S.TERMINATED},
    S.PROCEEDING: {S.COMPLETED, S.TERMINATED},
    S.COMPLETED: {S.TERMINATED},
    S.TERMINATED: set(),
}


class TimerSettings:
    """T1, T2, T4 of RFC 3261 §17.1.1.1 / table 4; everything else derives from them."""

    __slots__ = ("t1", "t2", "t4")

    def __init__(self, t1: float = 0.5, t2: float = 4.0, t4: float = 5.0) -> None:
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J, L, M."""
        return 64 * self.t1


class TransactionHost(Protocol):
    """What a transaction needs from the layer that owns it."""

    timers: TimerSettings

    def send(self, peer: Peer, data: bytes) -> None: ...
    def schedule(self, txn: Transaction, name: str, delay: float) -> None: ...
    def cancel_timer(self, txn: Transaction, name: str) -> None: ...
    def emit(self, event: SipEvent) -> None: ...
    def terminated(self, txn: Transaction) -> None: ...
    def response_sent(self, status: int) -> None: ...
    def accepted(self, txn: ServerTransaction) -> None: ...


class Transaction:
    """State common to the four machines."""

    __slots__ = (
        "_host",
        "_table",
        "branch",
        "key",
        "last_sent",
        "peer",
        "request",
        "state",
        "timers",
        "tu_data",
    )

    @property
    def kind(self) -> str:
        side = "server" if isinstance(self, ServerTransaction) else "client"
        return f"{side}-{self.request.method.lower()}"

    def __init__(
        self,
        host: TransactionHost,
        request: Request,
        peer: Peer,
        key: tuple[str, ...],
        state: TxState,
        table: dict[TxState, set[TxState]],
    ) -> None:
        self._host = host
        self._table = table
        self.request = request
        self.peer = peer
        self.key = key
        self.branch = key[0]
        self.state = state
        self.last_sent: bytes | None = None
        # Named timers currently armed; values are opaque handles owned by the host.
        self.timers: dict[str, object] = {}
        # The TU's object for this transaction (a call leg, a probe): events route to it without lookups.
        self.tu_data: object = None

    @property
    def reliable(self) -> bool:
        return self.peer.transport != "udp"

    def _set_state(self, new: TxState) -> None:
        if new not in self._table[self.state]:
            raise LocalProtocolError(
                f"{self.kind} {self.branch}: illegal transition {self.state.name} -> {new.name}"
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s: %s -> %s", self.kind, self.branch, self.state.name, new.name)
        self.state = new
        if new is S.TERMINATED:
            for name in list(self.timers):
                self._host.cancel_timer(self, name)
            self._host.terminated(self)

    def _transmit(self, data: bytes) -> None:
        self.last_sent = data
        self._host.send(self.peer, data)

    def fire(self, name: str, now: float) -> None:
        """Called by the host when timer ``name`` expires."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.branch} {self.request.method} {self.state.name}>"


class ClientTransaction(Transaction):
    """Client INVITE (§17.1.1) and non-INVITE (§17.1.2) transactions."""

    __slots__ = ("_interval", "cancel_pending", "is_invite", "last_response")

    def __init__(self, host: TransactionHost, request: Request, peer: Peer, key: tuple[str, ...]) -> None:
        self.is_invite = request.method == "INVITE"
        super().__init__(
            host,
            request,
            peer,
            key,
            S.CALLING if self.is_invite else S.TRYING,
            CLIENT_INVITE if self.is_invite else CLIENT_NON_INVITE,
        )
        self.last_response: Response | None = None
        self.cancel_pending = False
        # Opaque slot for the TU (the call leg that owns this transaction), so events route without lookups.
        self._interval = host.timers.t1

    def start(self) -> None:
        """Send the request and arm the retransmission and timeout timers (A/B or E/F)."""
        self._transmit(self.request.to_bytes())
        if not self.reliable:
            self._host.schedule(self, "A" if self.is_invite else "E", self._interval)
        self._host.schedule(self, "B" if self.is_invite else "F", self._host.timers.timeout)

    def receive(self, response: Response) -> None:
        status = response.status
        state = self.state
        if self.is_invite:
            if status < 200:
                if state in (S.CALLING, S.PROCEEDING):
                    if state is S.CALLING:
                        self._set_state(S.PROCEEDING)
                        # §17.1.1.2: a provisional stops retransmissions; Timer B only runs in Calling.
                        self._host.cancel_timer(self, "A")
                        self._host.cancel_timer(self, "B")
                    self.last_response = response
                    self._host.emit(ResponseReceived(response, self))
            elif status < 300:
                if state in (S.CALLING, S.PROCEEDING):
                    self._host.cancel_timer(self, "A")
                    self._host.cancel_timer(self, "B")
                    self._set_state(S.ACCEPTED)
                    self._host.schedule(self, "M", self._host.timers.timeout)
                    self.last_response = response
                    self._host.emit(ResponseReceived(response, self))
                elif state is S.ACCEPTED:
                    # RFC 6026 §8.4: every 2xx (retransmission or fork) goes to the TU, which re-ACKs.
                    self._host.emit(ResponseReceived(response, self))
            elif state in (S.CALLING, S.PROCEEDING):
                self._host.cancel_timer(self, "A")
                self._host.cancel_timer(self, "B")
                self._set_state(S.COMPLETED)
                self.last_response = response
                self._send_ack(response)
                self._host.schedule(self, "D", 0.0 if self.reliable else 32.0)
                self._host.emit(ResponseReceived(response, self))
            elif state is S.COMPLETED:
                self._send_ack(response)  # §17.1.1.2: retransmitted final → retransmit the ACK
            return
        # non-INVITE
        if state not in (S.TRYING, S.PROCEEDING):
            return  # retransmissions in Completed are absorbed
        self.last_response = response
        if status < 200:
            if state is S.TRYING:
                self._set_state(S.PROCEEDING)
            self._host.emit(ResponseReceived(response, self))
            return
        self._host.cancel_timer(self, "E")
        self._host.cancel_timer(self, "F")
        self._set_state(S.COMPLETED)
        self._host.emit(ResponseReceived(response, self))
        if self.reliable:
            self._set_state(S.TERMINATED)
        else:
            self._host.schedule(self, "K", self._host.timers.t4)

    def _send_ack(self, response: Response) -> None:
        """§17.1.1.3: the ACK for a non-2xx final response, built by the transaction itself."""
        req = self.request.headers
        fields: list[tuple[str, str]] = [("Via", req.get_lines("via")[0]), ("Max-Forwards", "70")]
        fields += [(key, req.get(key) or "") for key in ("From", "Call-ID")]
        fields.append(("To", response.headers.get("to") or ""))
        fields.append(("CSeq", f"{self.request.cseq[0]} ACK"))
        fields += [("Route", route) for route in req.get_lines("route")]
        fields.append(("Content-Length", "0"))
        ack = Request("ACK", self.request.uri, Headers.from_pairs(fields))
        self._host.send(self.peer, ack.to_bytes())

    def fire(self, name: str, now: float) -> None:
        self.timers.pop(name, None)
        timers = self._host.timers
        if name == "A" and self.state is S.CALLING:
            assert self.last_sent is not None
            self._host.send(self.peer, self.last_sent)
            self._interval *= 2
            self._host.schedule(self, "A", self._interval)
        elif name == "E" and self.state in (S.TRYING, S.PROCEEDING):
            assert self.last_sent is not None
            self._host.send(self.peer, self.last_sent)
            self._interval = timers.t2 if self.state is S.PROCEEDING else min(2 * self._interval, timers.t2)
            self._host.schedule(self, "E", self._interval)
        elif name in ("B", "F") and self.state in (S.CALLING, S.TRYING, S.PROCEEDING):
            self._set_state(S.TERMINATED)
            self._host.emit(TransactionTimeout(self))
        elif name in ("D", "K", "M") and self.state in (S.COMPLETED, S.ACCEPTED):
            self._set_state(S.TERMINATED)


class ServerTransaction(Transaction):
    """Server INVITE (§17.2.1) and non-INVITE (§17.2.2) transactions."""

    __slots__ = ("_interval", "acked", "is_invite", "last_response", "local_tag")

    def __init__(self, host: TransactionHost, request: Request, peer: Peer, key: tuple[str, ...]) -> None:
        self.is_invite = request.method == "INVITE"
        super().__init__(
            host,
            request,
            peer,
            key,
            S.PROCEEDING if self.is_invite else S.TRYING,
            SERVER_INVITE if self.is_invite else SERVER_NON_INVITE,
        )
        self.last_response: Response | None = None
        self.local_tag: str | None = None
        self.acked = False
        self._interval = host.timers.t1

    def retransmission(self) -> None:
        """The request arrived again: re-send the last response, if any (§17.2.1, §17.2.2)."""
        if self.last_sent is not None and self.state is not S.CONFIRMED:
            self._host.send(self.peer, self.last_sent)

    def respond(
        self, status: int, reason: str | None = None, *, extra: list[tuple[str, str]] | None = None,
        body: bytes = b"", content_type: str | None = None, to_tag: str | None = None,
    ) -> Response:  # fmt: skip
        """Build and send a response to this transaction's request; returns it."""
        response = make_response(
            self.request, status, reason, to_tag=to_tag if status > 100 else None, extra=extra, body=body,
            content_type=content_type,
        )  # fmt: skip
        self.send_response(response)
        return response

    def send_response(self, response: Response) -> None:
        state = self.state
        status = response.status
        if state not in (S.TRYING, S.PROCEEDING):
            raise LocalProtocolError(f"{self.kind} {self.branch}: cannot send {status} in {state.name}")
        self.last_response = response
        self._host.response_sent(status)
        self._transmit(response.to_bytes())
        if status < 200:
            if state is S.TRYING:
                self._set_state(S.PROCEEDING)
            return
        timers = self._host.timers
        if self.is_invite:
            if status < 300:
                self._set_state(S.ACCEPTED)
                self._host.accepted(self)
                if not self.reliable:
                    self._host.schedule(self, "G2xx", timers.t1)
                self._host.schedule(self, "L", timers.timeout)
            else:
                self._set_state(S.COMPLETED)
                if not self.reliable:
                    self._host.schedule(self, "G", timers.t1)
                self._host.schedule(self, "H", timers.timeout)
            return
        self._set_state(S.COMPLETED)
        if self.reliable:
            self._set_state(S.TERMINATED)
        else:
            self._host.schedule(self, "J", timers.timeout)

    def ack(self) -> None:
        """An ACK arrived for this INVITE transaction's final response."""
        self.acked = True
        if self.state is S.COMPLETED:
            self._host.cancel_timer(self, "G")
            self._host.cancel_timer(self, "H")
            self._set_state(S.CONFIRMED)
            if self.reliable:
                self._set_state(S.TERMINATED)
            else:
                self._host.schedule(self, "I", self._host.timers.t4)
        elif self.state is S.ACCEPTED:
            # The 2xx is acknowledged: stop retransmitting it; linger until Timer L for late retransmissions.
            self._host.cancel_timer(self, "G2xx")

    def fire(self, name: str, now: float) -> None:
        self.timers.pop(name, None)
        timers = self._host.timers
        state = self.state
        if name in ("G", "G2xx") and state in (S.COMPLETED, S.ACCEPTED):
            assert self.last_sent is not None
            self._host.send(self.peer, self.last_sent)
            self._interval = min(2 * self._interval, timers.t2)
            self._host.schedule(self, name, self._interval)
        elif name == "H" and state is S.COMPLETED:
            self._set_state(S.TERMINATED)
            self._host.emit(AckTimeout(self))
        elif name == "L" and state is S.ACCEPTED:
            self._set_state(S.TERMINATED)
            if not self.acked:
                self._host.emit(AckTimeout(self))
        elif (name == "I" and state is S.CONFIRMED) or (name == "J" and state is S.COMPLETED):
            self._set_state(S.TERMINATED)
