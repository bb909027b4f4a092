"""The registrar for local endpoints (RFC 3261 §10.3), sans-I/O.

Theory of operation. :meth:`Registrar.handle_register` takes one REGISTER and returns the response to send,
walking the §10.3 steps in order:

1. the Request-URI must name a domain the appliance serves (404 otherwise, §21.4.5);
2. a Require header asks for extensions the registrar does not support (420 with Unsupported);
3. the request is authenticated with digest (401 with one challenge per algorithm; stale=true when the
   digest was right but the nonce old; 400 when the digest-uri is not the Request-URI);
4. the authenticated user must own the address-of-record in To (403);
5. the To URI must be an address-of-record of this domain (404);
6. a wildcard Contact ``*`` is allowed only alone and with ``Expires: 0`` (400) and removes every binding;
7. each Contact gets its interval (its ``expires`` parameter, else the Expires header, else the default;
   malformed values count as 3600, §10.2.1.1), 423 with Min-Expires when ``0 < interval < min_expires``
   (and under an hour, as §10.3 step 7 allows), else clamped to ``max_expires``; then each binding is
   added, refreshed or removed. A binding last written under the same Call-ID with a CSeq not lower than
   the request's means the request is out of order: §10.3 says the update "MUST be aborted and the request
   fails", and since a failed update is answered 500 (§10.3 step 7, last paragraph), so is this one. All
   changes of a request are committed together or not at all;
8. 200 lists every current binding with its remaining ``expires`` and carries a Date header.

Every response gets a To tag. Bindings are kept per user of the served domain; expiry is a deadline the
glue arms from :meth:`Registrar.get_timer` and serves with :meth:`Registrar.expire`.
"""

from __future__ import annotations

import heapq
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final
from urllib.parse import unquote as pct_decode

from appliance.sip.builder import IdFactory, make_response, reason_phrase
from appliance.sip.digest import AuthOutcome, DigestCredentials, DigestServer, parse_credentials, uri_matches
from appliance.sip.errors import DecodeError, LocalProtocolError, SipError
from appliance.sip.grammar import unquote
from appliance.sip.headers import NameAddr, parse_contacts
from appliance.sip.message import Request, Response
from appliance.sip.uri import SipUri, parse_sip_uri, parse_uri

log = logging.getLogger(__name__)

# RFC 3261 §10.2.1.1: intervals above 2**32-1 may be read as 2**32-1; malformed ones count as 3600.
MAX_DELTA_SECONDS: Final = 2**32 - 1
MALFORMED_EXPIRES: Final = 3600
# RFC 3261 §10.3 step 7: 423 only for an interval below one hour.
ONE_HOUR: Final = 3600

_QVALUE_RE: Final = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")
_CTL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")

ContactKey = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Binding:
    """One contact bound to an address-of-record.

    ``registered_at`` is when the binding was created, or re-created by a REGISTER under a new Call-ID
    (the endpoint restarted); refreshes under the same Call-ID keep it.
    """

    aor: str
    contact: NameAddr
    uri: str
    expires_at: float
    call_id: str
    cseq: int
    q: float
    source: tuple[str, int]
    transport: str
    registered_at: float

    def remaining(self, now: float) -> int:
        """Whole seconds left, as written in the ``expires`` Contact parameter of a 200."""
        return max(0, round(self.expires_at - now))


class _RejectedError(SipError):
    """Ends REGISTER processing with a non-2xx response; never leaves this module."""

    def __init__(self, status: int, reason: str | None = None, extra: list[tuple[str, str]] | None = None):
        super().__init__(reason or reason_phrase(status))
        self.status = status
        self.reason = reason or reason_phrase(status)
        self.extra = extra or []


class Registrar:
    """The location service's writer: REGISTER in, response out, bindings kept in memory.

    ``credentials(username, algorithm)`` returns the stored HA1 hex or None. ``serves_domain(host)``
    decides whether a Request-URI or To host is ours; by default every host is accepted, because the
    appliance is addressed by its domain and by whichever of its IP addresses the endpoint was given.
    ``wall_clock()`` gives Unix time for the Date header (no Date header without it). Bindings are bounded
    per address-of-record (403 beyond) and in total (503 beyond).
    """

    def __init__(
        self,
        *,
        domain: str,
        digest: DigestServer,
        credentials: Callable[[str, str], str | None],
        min_expires: int,
        max_expires: int,
        default_expires: int,
        max_bindings_per_aor: int = 10,
        max_bindings: int = 10000,
        serves_domain: Callable[[str], bool] | None = None,
        wall_clock: Callable[[], float] | None = None,
        ids: IdFactory | None = None,
    ) -> None:
        if not 0 < min_expires <= default_expires <= max_expires:
            raise LocalProtocolError("need 0 < min_expires <= default_expires <= max_expires")
        if max_bindings_per_aor < 1 or max_bindings < max_bindings_per_aor:
            raise LocalProtocolError("need 1 <= max_bindings_per_aor <= max_bindings")
        self.domain = domain
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_bindings_per_aor = max_bindings_per_aor
        self.max_bindings = max_bindings
        self._digest = digest
        self._credentials = credentials
        self._serves = serves_domain
        self._wall_clock = wall_clock
        self._ids = ids if ids is not None else IdFactory()
        # user -> contact key -> binding; expired ones stay until expire() or the next REGISTER of the user.
        self._aors: dict[str, dict[ContactKey, Binding]] = {}
        self._total = 0
        # (expires_at, sequence, user, key); entries whose binding changed since are skipped when popped.
        self._deadlines: list[tuple[float, int, str, ContactKey]] = []
        self._sequence = 0

    # Queries ----------------------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Bindings held, counting expired ones not yet removed by :meth:`expire`."""
        return self._total

    def lookup(self, user: str, now: float) -> list[Binding]:
        """The live bindings of ``user``, highest q first, then the most recently registered."""
        live = [b for b in self._aors.get(user, {}).values() if b.expires_at > now]
        live.sort(key=lambda b: (-b.q, -b.registered_at))
        return live

    def get_timer(self) -> float | None:
        """The earliest binding expiry, or None when there is no binding."""
        heap = self._deadlines
        while heap and not self._is_current(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire(self, now: float) -> list[Binding]:
        """Remove and return the bindings whose time is up (``expires_at <= now``)."""
        removed: list[Binding] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._is_current(entry):
                continue
            _, _, user, key = entry
            bindings = self._aors[user]
            binding = bindings.pop(key)
            if not bindings:
                del self._aors[user]
            self._total -= 1
            removed.append(binding)
            log.info("binding expired", extra={"ctx": {"aor": binding.aor, "contact": binding.uri}})
        return removed

    def _is_current(self, entry: tuple[float, int, str, ContactKey]) -> bool:
        deadline, _, user, key = entry
        binding = self._aors.get(user, {}).get(key)
        return binding is not None and binding.expires_at == deadline

    # REGISTER ---------------------------------------------------------------------------------------------

    def handle_register(
        self, request: Request, *, source: tuple[str, int], transport: str, now: float
    ) -> Response:
        """The response to a REGISTER received from ``source`` over ``transport`` ("udp", "tcp", "tls", as in
        :class:`appliance.sip.events.Peer`; stored lower-cased).

        Never raises for a peer's fault: a malformed header becomes a 4xx naming it. Raises
        :class:`LocalProtocolError` if ``request`` is not a REGISTER.
        """
        if request.method != "REGISTER":
            raise LocalProtocolError(f"handle_register got a {request.method} request")
        to_tag = self._ids.tag()
        try:
            return self._register(request, source, transport.lower(), now, to_tag)
        except _RejectedError as exc:
            return self._reply(request, exc.status, to_tag, reason=exc.reason, extra=exc.extra)
        except DecodeError as exc:
            phrase = reason_phrase(exc.status)
            reason = exc.reason if exc.reason.startswith(phrase) else f"{phrase} ({exc.reason})"
            return self._reply(request, exc.status, to_tag, reason=reason)

    def _register(
        self, request: Request, source: tuple[str, int], transport: str, now: float, to_tag: str
    ) -> Response:
        # Step 1: the domain.
        request_uri = parse_sip_uri(request.uri)
        if not self._serves_host(request_uri.host):
            raise _RejectedError(404, "Not Found (domain not served here)")
        # Step 2: extensions; none are supported (path, outbound and gruu would be listed here).
        required = request.headers.get_all("require")
        if required:
            raise _RejectedError(420, extra=[("Unsupported", ", ".join(required))])
        # Steps 3 and 4: who is asking, and may they write this address-of-record?
        username = self._authenticate(request, now)
        user, aor = self._address_of_record(request)
        if username != user:
            log.warning(
                "REGISTER for another user refused", extra={"ctx": {"username": username, "aor": aor}}
            )
            raise _RejectedError(403, "Forbidden (authenticated user does not own this address-of-record)")
        call_id = request.call_id
        cseq, _ = request.cseq
        contacts = parse_contacts(request.headers.get_lines("contact"))
        header_expires = _expires_header(request)
        stored = self._aors.get(user, {})
        current = {k: b for k, b in stored.items() if b.expires_at > now}
        if contacts is None:
            # Step 6: "*" removes everything, still subject to the Call-ID/CSeq ordering rule.
            if header_expires != 0:
                raise _RejectedError(400, "Bad Request (wildcard Contact needs Expires: 0)")
            for binding in current.values():
                _check_order(binding, call_id, cseq)
            updated: dict[ContactKey, Binding] = {}
        else:
            updated = self._apply(
                current,
                contacts,
                header_expires,
                aor=aor,
                call_id=call_id,
                cseq=cseq,
                source=source,
                transport=transport,
                now=now,
            )
        self._check_limits(len(stored), len(current), len(updated))
        self._commit(user, stored, current, updated)
        return self._ok(request, to_tag, updated, now)

    def _serves_host(self, host: str) -> bool:
        return self._serves is None or self._serves(host)

    def _authenticate(self, request: Request, now: float) -> str:
        """The authenticated username, or a 401/400 rejection (RFC 3261 §22.4)."""
        credentials: DigestCredentials | None = None
        for value in request.headers.get_lines("authorization"):
            parsed = parse_credentials(value)
            # Credentials for other realms (proxies on the way) are not ours to judge (§22.3).
            if parsed.realm == self._digest.realm:
                credentials = parsed
                break
        if credentials is None:
            raise _RejectedError(401, extra=self._challenges(now, stale=False))
        if not uri_matches(credentials, request.uri):
            raise _RejectedError(400, "Bad Request (digest uri does not match the Request-URI)")
        result = self._digest.verify(credentials, method="REGISTER", ha1_lookup=self._credentials, now=now)
        if result.outcome is AuthOutcome.STALE:
            raise _RejectedError(401, extra=self._challenges(now, stale=True))
        if result.outcome is AuthOutcome.FAILED:
            log.warning(
                "REGISTER authentication failed",
                extra={"ctx": {"username": result.username, "why": result.reason}},
            )
            raise _RejectedError(401, extra=self._challenges(now, stale=False))
        return credentials.username

    def _challenges(self, now: float, *, stale: bool) -> list[tuple[str, str]]:
        return [("WWW-Authenticate", value) for value in self._digest.challenge(now, stale=stale)]

    def _address_of_record(self, request: Request) -> tuple[str, str]:
        """(user, canonical AOR) from the To header (§10.3 step 5), or a 404 rejection."""
        try:
            to_uri = parse_uri(request.to.uri)
        except DecodeError as exc:
            raise _RejectedError(400, f"Bad Request (To: {exc.reason})") from None
        if not isinstance(to_uri, SipUri) or to_uri.user is None:
            raise _RejectedError(404, "Not Found (To is not an address-of-record)")
        if not self._serves_host(to_uri.host):
            raise _RejectedError(404, "Not Found (address-of-record not in a served domain)")
        return pct_decode(to_uri.user), f"sip:{to_uri.user}@{self.domain}"

    def _apply(
        self,
        current: dict[ContactKey, Binding],
        contacts: list[NameAddr],
        header_expires: int | None,
        *,
        aor: str,
        call_id: str,
        cseq: int,
        source: tuple[str, int],
        transport: str,
        now: float,
    ) -> dict[ContactKey, Binding]:
        """Step 7 on a copy of the bindings: the would-be set after this request, or a rejection."""
        requested: list[tuple[NameAddr, ContactKey, int, float]] = []
        for contact in contacts:
            try:
                key = contact_key(parse_sip_uri(contact.uri))
            except DecodeError as exc:
                raise _RejectedError(400, f"Bad Request (Contact: {exc.reason})") from None
            expires = _contact_expires(contact, header_expires, self.default_expires)
            requested.append((contact, key, expires, _qvalue(contact)))
        if any(0 < expires < min(self.min_expires, ONE_HOUR) for _, _, expires, _ in requested):
            raise _RejectedError(423, extra=[("Min-Expires", str(self.min_expires))])
        updated = dict(current)
        for contact, key, expires, q in requested:
            existing = current.get(key)
            if existing is not None:
                _check_order(existing, call_id, cseq)
            if expires == 0:
                updated.pop(key, None)
                continue
            same_registration = existing is not None and existing.call_id == call_id
            updated[key] = Binding(
                aor=aor,
                contact=contact,
                uri=contact.uri,
                expires_at=now + min(expires, self.max_expires),
                call_id=call_id,
                cseq=cseq,
                q=q,
                source=source,
                transport=transport,
                registered_at=existing.registered_at if existing is not None and same_registration else now,
            )
        return updated

    def _check_limits(self, stored: int, live: int, after: int) -> None:
        # Only growth is refused: an endpoint may always refresh or remove what it has.
        if after <= live:
            return
        if after > self.max_bindings_per_aor:
            raise _RejectedError(
                403, f"Forbidden (more than {self.max_bindings_per_aor} contacts for this address-of-record)"
            )
        if self._total - stored + after > self.max_bindings:
            raise _RejectedError(503, "Service Unavailable (registrar full)")

    def _commit(
        self,
        user: str,
        stored: dict[ContactKey, Binding],
        current: dict[ContactKey, Binding],
        updated: dict[ContactKey, Binding],
    ) -> None:
        for key, binding in current.items():
            if key not in updated:
                log.info("binding removed", extra={"ctx": {"aor": binding.aor, "contact": binding.uri}})
        for key, binding in updated.items():
            previous = current.get(key)
            if previous is None:
                log.info("binding added", extra={"ctx": {"aor": binding.aor, "contact": binding.uri}})
            if previous is None or previous.expires_at != binding.expires_at:
                self._sequence += 1
                heapq.heappush(self._deadlines, (binding.expires_at, self._sequence, user, key))
        self._total += len(updated) - len(stored)
        if updated:
            self._aors[user] = updated
        else:
            self._aors.pop(user, None)
        if len(self._deadlines) > 2 * self._total + 64:
            # Refreshes leave superseded deadlines behind; rebuild so the heap stays proportional.
            self._deadlines = [e for e in self._deadlines if self._is_current(e)]
            heapq.heapify(self._deadlines)

    def _ok(self, request: Request, to_tag: str, bindings: dict[ContactKey, Binding], now: float) -> Response:
        ordered = sorted(bindings.values(), key=lambda b: (-b.q, -b.registered_at))
        extra: list[tuple[str, str]] = []
        for binding in ordered:
            params = {k: v for k, v in binding.contact.params.items() if k != "expires"}
            params["expires"] = str(binding.remaining(now))
            shown = NameAddr(uri=binding.uri, display_name=binding.contact.display_name, params=params)
            extra.append(("Contact", str(shown)))
        if self._wall_clock is not None:
            extra.append(("Date", formatdate(self._wall_clock(), usegmt=True)))
        return make_response(request, 200, to_tag=to_tag, extra=extra)

    def _reply(
        self,
        request: Request,
        status: int,
        to_tag: str,
        *,
        reason: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> Response:
        phrase = _CTL_RE.sub(" ", reason)[:160]
        return make_response(request, status, phrase, to_tag=to_tag, extra=extra)


def contact_key(uri: SipUri) -> ContactKey:
    """What makes two Contact URIs the same binding (RFC 3261 §10.3 step 7, §19.1.4): scheme, user with
    escapes decoded, password, host case-insensitively, port, parameters and headers."""
    params = tuple(sorted((k.lower(), (unquote(v) if v else "").lower()) for k, v in uri.params.items()))
    user = pct_decode(uri.user) if uri.user is not None else None
    return (uri.scheme, user, uri.password, uri.host.lower(), uri.port, params, tuple(sorted(uri.headers)))


def _check_order(existing: Binding, call_id: str, cseq: int) -> None:
    if existing.call_id == call_id and cseq <= existing.cseq:
        raise _RejectedError(
            500, f"Server Internal Error (out-of-order REGISTER: CSeq {cseq} not above {existing.cseq})"
        )


def _delta_seconds(text: str) -> int:
    text = unquote(text.strip())
    if not text.isascii() or not text.isdigit():
        return MALFORMED_EXPIRES
    # A longer number is above 2**32-1 anyway, and int() refuses very long digit strings.
    return MAX_DELTA_SECONDS if len(text) > 10 else min(int(text), MAX_DELTA_SECONDS)


def _expires_header(request: Request) -> int | None:
    value = request.headers.get("expires")
    return None if value is None else _delta_seconds(value)


def _contact_expires(contact: NameAddr, header_expires: int | None, default: int) -> int:
    if "expires" in contact.params:
        value = contact.params["expires"]
        return MALFORMED_EXPIRES if value is None else _delta_seconds(value)
    return header_expires if header_expires is not None else default


def _qvalue(contact: NameAddr) -> float:
    value = contact.params.get("q")
    if value is None:
        return 1.0
    if _QVALUE_RE.match(value) is None:
        raise _RejectedError(400, f"Bad Request (malformed q value {value[:16]!r} in Contact)")
    return float(value)
