"""The sans-I/O SIP endpoint: message intake, transaction matching and the timer heap.

Theory of operation. Bytes from any transport enter through :meth:`SipEndpoint.receive` together with the
peer they came from and the current time. The endpoint throttles floods per source address, parses (a
request it cannot parse is answered with the status and reason the parser names, RFC 3261 §8.2.2 / §21.4;
an unparseable response is dropped), stamps ``received``/``rport`` on the top Via (RFC 3261 §18.2.1,
RFC 3581 §4), matches the message to a transaction (§17.1.3, §17.2.3) and hands the TU what is new:
events come out of :meth:`next_event`, bytes to send out of :meth:`datagrams_to_send`.

All timers of all transactions sit in one heap; the I/O glue keeps one wake-up at :meth:`get_timer` and calls
:meth:`handle_timer`. Cancelled timers stay in the heap, marked dead, and are skipped when they surface —
cheaper than removing them on the hot path.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from appliance.sip.builder import IdFactory, make_response
from appliance.sip.errors import DecodeError
from appliance.sip.events import (
    AckReceived,
    CancelReceived,
    Peer,
    RequestReceived,
    SipEvent,
    StrayResponse,
)
from appliance.sip.grammar import split_outside_quotes
from appliance.sip.message import DEFAULT_MAX_SIZE, Headers, Request, Response, parse_message
from appliance.sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    TimerSettings,
    Transaction,
    TxState,
)

log = logging.getLogger("appliance.sip.endpoint")

_REJECT_REASON: Final = {400: "malformed", 416: "uri_scheme", 505: "version", 513: "too_large"}


class SipObserver(Protocol):
    """Counters the endpoint reports to (implemented by :class:`appliance.metrics.Metrics`)."""

    def reject(self, reason: str) -> None: ...
    def request(self, direction: str, method: str) -> None: ...
    def response(self, direction: str, status: int) -> None: ...


class NullObserver:
    def reject(self, reason: str) -> None:
        pass

    def request(self, direction: str, method: str) -> None:
        pass

    def response(self, direction: str, status: int) -> None:
        pass


class SipEndpoint:
    """Transport-independent SIP core shared by every SIP user of the appliance."""

    def __init__(
        self,
        *,
        timers: TimerSettings | None = None,
        ids: IdFactory | None = None,
        max_message_size: int = DEFAULT_MAX_SIZE,
        allow_source: Callable[[str, float], bool] | None = None,
        observer: SipObserver | None = None,
        trace: Callable[[str, Peer, bytes], None] | None = None,
    ) -> None:
        self.timers = timers or TimerSettings()
        self.ids = ids or IdFactory()
        self.max_message_size = max_message_size
        self._allow_source = allow_source
        self.observer: SipObserver = observer or NullObserver()
        self._trace = trace
        self._server: dict[tuple[str, ...], ServerTransaction] = {}
        self._client: dict[tuple[str, ...], ClientTransaction] = {}
        # Accepted INVITE server transactions by (Call-ID, CSeq number): where ACKs for 2xx are matched.
        self._accepted: dict[tuple[str, int], ServerTransaction] = {}
        self._events: deque[SipEvent] = deque()
        self._out: list[tuple[Peer, bytes]] = []
        self._heap: list[list[object]] = []
        self._seq = itertools.count()
        # Terminated transactions whose TU reference is dropped at the next input, once their last event
        # was handled: the TU's object and the transaction refer to each other, and a cycle per
        # transaction would be left to the cycle collector, whose pauses grow with the call rate.
        self._ended: list[Transaction] = []
        self.now = 0.0

    # ----------------------------------------------------------------------------------------- outputs
    def next_event(self) -> SipEvent | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[tuple[Peer, bytes]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap and not heap[0][4]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None  # type: ignore[return-value]

    def _reap(self) -> None:
        for txn in self._ended:
            txn.tu_data = None
        self._ended.clear()

    def handle_timer(self, now: float) -> None:
        self.now = now
        if self._ended:
            self._reap()
        heap = self._heap
        while heap and (heap[0][0] <= now or not heap[0][4]):  # type: ignore[operator]
            entry = heapq.heappop(heap)
            if entry[4]:
                txn: Transaction = entry[2]  # type: ignore[assignment]
                txn.fire(entry[3], now)  # type: ignore[arg-type]

    @property
    def transaction_count(self) -> int:
        return len(self._server) + len(self._client)

    # ------------------------------------------------------------------------------ TransactionHost
    def send(self, peer: Peer, data: bytes) -> None:
        if self._trace is not None:
            self._trace("out", peer, data)
        self._out.append((peer, data))

    def schedule(self, txn: Transaction, name: str, delay: float) -> None:
        old = txn.timers.get(name)
        if old is not None:
            old[4] = False  # type: ignore[index]
        entry: list[object] = [self.now + delay, next(self._seq), txn, name, True]
        txn.timers[name] = entry
        heapq.heappush(self._heap, entry)

    def cancel_timer(self, txn: Transaction, name: str) -> None:
        entry = txn.timers.pop(name, None)
        if entry is not None:
            entry[4] = False  # type: ignore[index]

    def emit(self, event: SipEvent) -> None:
        self._events.append(event)

    def terminated(self, txn: Transaction) -> None:
        self._ended.append(txn)
        if isinstance(txn, ServerTransaction):
            self._server.pop(txn.key, None)
            if txn.is_invite:
                self._accepted.pop((txn.request.call_id, txn.request.cseq[0]), None)
        else:
            self._client.pop(txn.key, None)

    def response_sent(self, status: int) -> None:
        self.observer.response("out", status)

    # ------------------------------------------------------------------------------------- TU commands
    def send_request(self, request: Request, peer: Peer, now: float) -> ClientTransaction:
        """Start a client transaction; the request's top Via must carry a fresh :meth:`new_branch`."""
        self.now = now
        key = (request.top_via.branch or "", request.method)
        txn = ClientTransaction(self, request, peer, key)
        self._client[key] = txn
        self.observer.request("out", request.method)
        txn.start()
        return txn

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        """Send outside any transaction: the ACK for a 2xx (§13.2.2.4), or a 2xx retransmission."""
        if isinstance(message, Request):
            self.observer.request("out", message.method)
        self.send(peer, message.to_bytes())

    def cancel(self, invite: ClientTransaction, now: float) -> ClientTransaction | None:
        """CANCEL a pending INVITE (§9.1). Before any provisional response it is deferred until one comes."""
        if invite.state is TxState.CALLING:
            invite.cancel_pending = True
            return None
        if invite.state is not TxState.PROCEEDING:
            return None
        src = invite.request.headers
        fields = [("Via", src.get_lines("via")[0]), ("Max-Forwards", "70")]
        fields += [(k, src.get(k) or "") for k in ("From", "To", "Call-ID")]
        fields.append(("CSeq", f"{invite.request.cseq[0]} CANCEL"))
        fields += [("Route", r) for r in src.get_lines("route")]
        fields.append(("Content-Length", "0"))
        cancel = Request("CANCEL", invite.request.uri, Headers.from_pairs(fields))
        return self.send_request(cancel, invite.peer, now)

    def new_branch(self) -> str:
        return self.ids.branch()

    # ------------------------------------------------------------------------------------------ intake
    def receive(self, data: bytes, peer: Peer, now: float, *, stream: bool = False) -> None:
        self.now = now
        if self._ended:
            self._reap()
        if self._allow_source is not None and not self._allow_source(peer.host, now):
            self.observer.reject("rate_limited")
            return
        if self._trace is not None:
            self._trace("in", peer, data)
        try:
            message = parse_message(data, max_size=self.max_message_size, stream=stream)
        except DecodeError as exc:
            self.observer.reject(_REJECT_REASON.get(exc.status, "malformed"))
            self._reject(exc, peer)
            return
        if isinstance(message, Request):
            self.observer.request("in", message.method)
            self._receive_request(message, peer)
        else:
            self.observer.response("in", message.status)
            self._receive_response(message, peer)

    def _receive_request(self, request: Request, peer: Peer) -> None:
        via = request.top_via
        branch = via.branch or ""
        method = request.method
        if (branch, method) in self._client or (method == "ACK" and (branch, "INVITE") in self._client):
            # Our own request came back to us: a routing loop through this appliance (§16.3 step 4 in spirit).
            self.observer.reject("loop")
            if method != "ACK":
                self._respond_stateless(request, peer, 482, "Loop Detected")
            return
        _stamp_via(request, peer)
        sent_by = f"{via.host}:{via.port or ''}"
        if method == "ACK":
            txn = self._server.get((branch, sent_by, "INVITE"))
            if txn is not None:
                txn.ack()
                if txn.state is not TxState.ACCEPTED:
                    return  # ACK for a non-2xx final: the transaction's business only (§17.2.1)
            else:
                accepted = self._accepted.get((request.call_id, request.cseq[0]))
                if accepted is not None:
                    accepted.ack()
            self._events.append(AckReceived(request, peer))
            return
        key = (branch, sent_by, method)
        existing = self._server.get(key)
        if existing is not None:
            existing.retransmission()
            return
        txn = ServerTransaction(self, request, peer, key)
        self._server[key] = txn
        if method == "INVITE":
            # §17.2.1: answer 100 at once so that the caller stops retransmitting while we route the call.
            txn.respond(100)
        elif method == "CANCEL":
            self._receive_cancel(request, txn, branch, sent_by)
            return
        self._events.append(RequestReceived(request, txn))

    def _receive_cancel(self, request: Request, txn: ServerTransaction, branch: str, sent_by: str) -> None:
        """§9.2: CANCEL matches the INVITE with the same top Via; 481 when there is none."""
        invite = self._server.get((branch, sent_by, "INVITE"))
        if invite is None:
            txn.respond(481)
            return
        txn.respond(200)
        if invite.state is TxState.PROCEEDING:
            self._events.append(CancelReceived(request, invite))

    def _receive_response(self, response: Response, peer: Peer) -> None:
        try:
            key = (response.top_via.branch or "", response.cseq[1])
        except DecodeError:
            self.observer.reject("malformed")
            return
        txn = self._client.get(key)
        if txn is None:
            self._events.append(StrayResponse(response, peer))
            return
        txn.receive(response)
        if txn.cancel_pending and txn.state is TxState.PROCEEDING:
            txn.cancel_pending = False
            self.cancel(txn, self.now)

    def accepted(self, txn: ServerTransaction) -> None:
        """Index an INVITE server transaction that sent a 2xx, so that the ACK for it can be matched."""
        self._accepted[(txn.request.call_id, txn.request.cseq[0])] = txn

    # ------------------------------------------------------------------------------------ rejections
    def _respond_stateless(self, request: Request, peer: Peer, status: int, reason: str) -> None:
        response = make_response(request, status, reason, to_tag=self.ids.tag())
        self.observer.response("out", status)
        self.send(peer, response.to_bytes())

    def _reject(self, exc: DecodeError, peer: Peer) -> None:
        partial = exc.partial
        if not isinstance(partial, Request) or partial.method == "ACK":
            return  # responses and ACKs are never answered (§8.1.3.1, §17.1.1.3)
        headers = partial.headers
        if not all(headers.get(h) for h in ("via", "from", "to", "call-id", "cseq")):
            log.debug("dropping unanswerable request from %s: %s", peer, exc.reason)
            return
        try:
            partial.top_via  # noqa: B018 - a response needs a parseable top Via to be routed
        except DecodeError:
            return
        _stamp_via(partial, peer)
        self._respond_stateless(partial, peer, exc.status, exc.reason)


def _stamp_via(request: Request, peer: Peer) -> None:
    """Add ``received`` and fill ``rport`` on the top Via (RFC 3261 §18.2.1, RFC 3581 §4)."""
    via = request.top_via
    needs_received = via.host.strip("[]") != peer.host
    needs_rport = "rport" in via.params and via.params["rport"] is None
    if not (needs_received or needs_rport):
        return
    headers = request.headers
    first = headers.get("via") or ""
    items = split_outside_quotes(first, ",")
    top = items[0].strip()
    if needs_rport:
        top = top.replace(";rport", f";rport={peer.port}", 1) if ";rport" in top else top
    if needs_received:
        top += f";received={peer.host}"
    items[0] = top
    headers.replace_first("via", ", ".join(i.strip() for i in items))
    request.invalidate()
