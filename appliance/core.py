"""The appliance's SIP transaction user: what each request is for, and the survivable-mode probes.

Theory of operation. :class:`ApplianceCore` is sans-I/O. It owns the SIP endpoint, the B2BUA, the registrar
and the survivable-mode machine, feeds bytes into the endpoint and dispatches what comes out:

* REGISTER → the registrar (local phones and agents); OPTIONS outside a dialog → 200 (RFC 3261 §11.2);
  INVITE and in-dialog requests → call control; a request whose Require names an extension we lack → 420
  (§8.2.2.3); a method we know but do not serve → 405 with Allow; an unknown method → 501 (§8.2.1).
* The mode machine's probes become SIP OPTIONS to the cloud trunk. Any final response except 503 (§21.5.4:
  the peer is overloaded or down) proves the cloud reachable; 503, a timeout or a transport error counts as
  a miss. With an HTTPS health check configured (``https_probe``) each probe is a round of both: the glue
  starts the GET and reports it with :meth:`https_probe_result`; the round is answered when both answered
  and failed at the first failure.

The I/O glue (:mod:`appliance.runtime`) calls :meth:`receive` and :meth:`handle_timer`, sends
:meth:`datagrams_to_send` and re-arms one timer at :meth:`get_timer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, Protocol

from appliance.calls.b2bua import B2bua
from appliance.calls.context import ALLOW, SUPPORTED, SipContext
from appliance.sip.builder import make_request
from appliance.sip.dialog import uri_to_peer
from appliance.sip.events import (
    AckReceived,
    AckTimeout,
    CancelReceived,
    Peer,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionTimeout,
)
from appliance.sip.message import Request, Response
from appliance.sip.transaction import ClientTransaction, ServerTransaction
from appliance.sip.uri import SipUri
from appliance.wan.events import ModeChanged, SendProbe
from appliance.wan.mode import ModeMachine

log = logging.getLogger("appliance.core")

KNOWN_METHODS: Final = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "UPDATE", "INFO", "PRACK", "SUBSCRIBE",
     "NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
)  # fmt: skip
CALL_METHODS: Final = frozenset({"INVITE", "BYE", "UPDATE", "INFO"})
SUPPORTED_EXTENSIONS: Final = frozenset({"timer"})


class Registrar(Protocol):
    def handle_register(
        self, request: Request, *, source: tuple[str, int], transport: str, now: float
    ) -> Response: ...
    def get_timer(self) -> float | None: ...
    def expire(self, now: float) -> object: ...


class _Probe:
    """Marks a client transaction as a mode probe (``tu_data``)."""

    __slots__ = ("probe_id",)

    def __init__(self, probe_id: int) -> None:
        self.probe_id = probe_id


class ApplianceCore:
    def __init__(
        self,
        *,
        ctx: SipContext,
        b2bua: B2bua,
        mode: ModeMachine,
        registrar: Registrar | None,
        cloud_trunk: SipUri | None,
        on_mode_change: Callable[[ModeChanged], None] | None = None,
        before_send: Callable[[], None] | None = None,
        https_probe: Callable[[int], None] | None = None,
    ) -> None:
        """``before_send`` runs each time the SIP messages are collected for sending: the media commands
        it dispatches then leave before the SDP that tells a peer where to send RTP. ``https_probe``
        starts the HTTPS health check of a probe round (see :meth:`https_probe_result`)."""
        self.ctx = ctx
        self._before_send = before_send
        self.endpoint = ctx.endpoint
        self.b2bua = b2bua
        self.mode = mode
        self.registrar = registrar
        self.cloud_trunk = cloud_trunk
        self._on_mode_change = on_mode_change
        self._https_probe = https_probe
        self._round: tuple[int, set[str]] | None = None  # the probe round waiting for its parts
        self.mode_history: list[ModeChanged] = []

    # -------------------------------------------------------------------------------- I/O edge
    def start(self, now: float) -> None:
        """Act on what the machines queued at construction (the first cloud probe)."""
        self._drain(now)

    def receive(self, data: bytes, peer: Peer, now: float, *, stream: bool = False) -> None:
        self.endpoint.receive(data, peer, now, stream=stream)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self.b2bua.handle_timer(now)
        self.mode.handle_timer(now)
        if self.registrar is not None:
            due = self.registrar.get_timer()
            if due is not None and due <= now:
                self.registrar.expire(now)
        self._drain(now)

    def get_timer(self) -> float | None:
        deadlines = [self.endpoint.get_timer(), self.b2bua.get_timer(), self.mode.get_timer()]
        if self.registrar is not None:
            deadlines.append(self.registrar.get_timer())
        live = [d for d in deadlines if d is not None]
        return min(live) if live else None

    def datagrams_to_send(self) -> list[tuple[Peer, bytes]]:
        if self._before_send is not None:
            self._before_send()
        return self.endpoint.datagrams_to_send()

    # ------------------------------------------------------------------------------- dispatch
    def _drain(self, now: float) -> None:
        endpoint = self.endpoint
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, RequestReceived):
                self._request(event.transaction, now)
            elif isinstance(event, ResponseReceived):
                owner = event.transaction.tu_data
                if isinstance(owner, _Probe):
                    self._probe_result(owner, event.response.status, now)
                elif owner is not None:
                    owner.on_response(event.response, event.transaction, now)  # type: ignore[attr-defined]
            elif isinstance(event, AckReceived):
                # The INVITE server transaction already stopped retransmitting its 2xx; the leg may need the
                # answer an ACK carries after a delayed offer.
                tag = event.request.to.tag
                leg = self.b2bua.find_leg(event.request.call_id, tag) if tag else None
                if leg is not None:
                    leg.on_ack(event.request, now)
            elif isinstance(event, CancelReceived):
                owner = event.invite.tu_data
                if owner is not None:
                    owner.on_cancel(now)  # type: ignore[attr-defined]
            elif isinstance(event, TransactionTimeout):
                self._timeout(event.transaction, now)
            elif isinstance(event, AckTimeout):
                owner = event.transaction.tu_data
                if owner is not None:
                    owner.on_ack_timeout(now)  # type: ignore[attr-defined]
            elif isinstance(event, StrayResponse):
                self._stray(event.response)
        self._drain_mode(now)

    def _request(self, txn: ServerTransaction, now: float) -> None:
        request = txn.request
        method = request.method
        if method not in KNOWN_METHODS:
            txn.respond(501, extra=[("Allow", ALLOW)], to_tag=self.ctx.ids.tag())
            self.endpoint.observer.reject("unknown_method")
            return
        require = request.headers.get_all("require")
        unsupported = [tag for tag in require if tag.lower() not in SUPPORTED_EXTENSIONS]
        if unsupported and method not in ("CANCEL", "BYE"):
            txn.respond(420, extra=[("Unsupported", ", ".join(unsupported))], to_tag=self.ctx.ids.tag())
            return
        if method in CALL_METHODS or (method == "OPTIONS" and request.to.tag):
            self.b2bua.on_request(txn, now)
        elif method == "OPTIONS":
            txn.respond(
                200,
                to_tag=self.ctx.ids.tag(),
                extra=[("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", SUPPORTED),
                       ("User-Agent", self.ctx.user_agent)],
            )  # fmt: skip
        elif method == "REGISTER" and self.registrar is not None:
            peer = txn.peer
            response = self.registrar.handle_register(
                request, source=(peer.host, peer.port), transport=peer.transport, now=now
            )
            if response.status == 403 or (response.status == 401 and "authorization" in request.headers):
                self.endpoint.observer.reject("auth_failed")
            txn.send_response(response)
        else:
            txn.respond(405, extra=[("Allow", ALLOW)], to_tag=self.ctx.ids.tag())

    def _timeout(self, txn: ClientTransaction, now: float) -> None:
        owner = txn.tu_data
        if isinstance(owner, _Probe):
            self._probe_part(owner.probe_id, "sip", now, "no answer to OPTIONS")
        elif owner is not None:
            owner.on_timeout(txn, now)  # type: ignore[attr-defined]

    def _stray(self, response: Response) -> None:
        """A 2xx to an INVITE after its transaction ended: our ACK was lost, send it again."""
        if response.status // 100 != 2 or response.cseq[1] != "INVITE":
            return
        tag = response.from_.tag
        leg = self.b2bua.find_leg(response.call_id, tag) if tag else None
        if leg is not None:
            leg.resend_ack()

    # ---------------------------------------------------------------------------- mode probes
    def _drain_mode(self, now: float) -> None:
        while (event := self.mode.next_event()) is not None:
            if isinstance(event, SendProbe):
                self._send_probe(event.probe_id, now)
            elif isinstance(event, ModeChanged):
                log.warning("mode %s -> %s (%s)", event.old.name, event.new.name, event.reason)
                self.mode_history.append(event)
                del self.mode_history[:-64]
                if self._on_mode_change is not None:
                    self._on_mode_change(event)

    def https_probe_result(self, probe_id: int, answered: bool, reason: str, now: float) -> None:
        """The HTTPS health check of probe round ``probe_id`` ended (``reason`` says why it failed)."""
        self._probe_part(probe_id, "https", now, None if answered else reason)
        self._drain_mode(now)

    def _send_probe(self, probe_id: int, now: float) -> None:
        trunk = self.cloud_trunk
        if trunk is None:
            return
        self._round = (probe_id, {"sip", "https"} if self._https_probe is not None else {"sip"})
        if self._https_probe is not None:
            self._https_probe(probe_id)
        ctx = self.ctx
        peer = uri_to_peer(trunk)
        target = f"{trunk.scheme}:{trunk.host}" + (f":{trunk.port}" if trunk.port else "")
        request = make_request(
            "OPTIONS",
            target,
            via=ctx.via(peer.transport),
            from_=f"<sip:pop@{ctx.domain}>;tag={ctx.ids.tag()}",
            to=f"<{target}>",
            call_id=ctx.ids.call_id(),
            cseq=1,
            extra=[("User-Agent", ctx.user_agent)],
        )
        txn = self.endpoint.send_request(request, peer, now)
        txn.tu_data = _Probe(probe_id)

    def _probe_result(self, probe: _Probe, status: int, now: float) -> None:
        if status < 200:
            return
        self._probe_part(probe.probe_id, "sip", now, "503 from the cloud" if status == 503 else None)
        self._drain_mode(now)

    def _probe_part(self, probe_id: int, part: str, now: float, failure: str | None) -> None:
        """One part of a probe round ended (``failure`` None: answered); the mode machine hears the round's
        outcome at its first failure or once every part answered. Parts of an older round are dropped."""
        if self._round is None or self._round[0] != probe_id or part not in self._round[1]:
            return
        waiting = self._round[1]
        waiting.discard(part)
        if failure is not None:
            self._round = None
            self.mode.probe_failed(probe_id, now, failure)
        elif not waiting:
            self._round = None
            self.mode.probe_answered(probe_id, now)
