"""SIP digest access authentication (RFC 3261 §22, RFC 7616, RFC 8760), both sides, sans-I/O.

Theory of operation. The server side (:class:`DigestServer`) issues *stateless* nonces: a nonce carries its
issue time, a random salt and an HMAC-SHA256 under the appliance's secret over both plus the realm, so that
its age and authenticity are checked without a table of issued nonces. The only state is a bounded map of
the highest nonce-count (``nc``) accepted per nonce, which rejects replays (RFC 7616 §3.4.5); it is filled
only by requests whose digest was correct, so a forger cannot fill it with junk. Challenges are offered
once per configured algorithm, strongest first (RFC 8760 §2.4: SHA-512-256, SHA-256, MD5), always with
``qop="auth"``.

:meth:`DigestServer.verify` answers :attr:`AuthOutcome.STALE` only when the digest was right for a nonce
that is too old, as RFC 7616 §3.3 asks: the client may then retry with the new nonce without asking its
user again. Anything else wrong is :attr:`AuthOutcome.FAILED` with a reason for the log; the reason is not
meant for the wire.

The client side (:func:`authorization_for`) answers a challenge from a carrier or the cloud, with
``qop=auth``, ``qop=auth-int`` or the RFC 2069 form without qop, whichever the challenge allows.

The header parsers are total: a value, or :class:`DecodeError` (status 400) naming the fault.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Final
from urllib.parse import unquote as pct_decode

from appliance.sip.errors import DecodeError, LocalProtocolError
from appliance.sip.grammar import TOKEN_RE, is_token, quote
from appliance.sip.uri import SipUri, TelUri, parse_uri

# hashlib names of the algorithms (RFC 7616 §3.2, RFC 8760 §2.2); a "-sess" variant hashes with its base.
_HASHES: Final = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_CANONICAL_ALGORITHMS: Final = {name.lower(): name for base in _HASHES for name in (base, f"{base}-sess")}
SUPPORTED_ALGORITHMS: Final = frozenset(_CANONICAL_ALGORITHMS.values())
# Most preferred first (RFC 8760 §2.4); a session variant right after its base.
_PREFERENCE: Final = ("SHA-512-256", "SHA-512-256-sess", "SHA-256", "SHA-256-sess", "MD5", "MD5-sess")

MAX_HEADER_LENGTH: Final = 4096
MAX_PARAMS: Final = 32
MAX_NC: Final = 0xFFFFFFFF

_NC_RE: Final = re.compile(r"[0-9A-Fa-f]{1,8}\Z")
_HEX_RE: Final = re.compile(r"[0-9A-Fa-f]+\Z")
_UNQUOTED_VALUE_RE: Final = re.compile(r"[^\s,\"]+")
_CTL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_WS: Final = " \t"

# Nonce layout: issue time (signed milliseconds, 8 octets) | salt (8 octets) | HMAC-SHA256 (32 octets),
# base64url without padding: 48 octets make exactly 64 characters.
_NONCE_TIME: Final = struct.Struct(">q")
_SALT_LEN: Final = 8
_NONCE_RAW_LEN: Final = _NONCE_TIME.size + _SALT_LEN + 32
_NONCE_RE: Final = re.compile(r"[A-Za-z0-9_-]{64}\Z")
# A nonce dated this far in the future comes from an earlier run of the monotonic clock: stale, not forged.
_CLOCK_SLACK: Final = 1.0


# --------------------------------------------------------------------------------------------- header values


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A parsed WWW-Authenticate / Proxy-Authenticate Digest value (RFC 7616 §3.3).

    ``algorithm`` is canonical ("SHA-256", "MD5-sess", ...) when known, otherwise as received; check
    :attr:`supported` before answering. ``qop`` holds the offered options lower-cased, empty for RFC 2069.
    """

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None

    @property
    def supported(self) -> bool:
        return self.algorithm in SUPPORTED_ALGORITHMS and (
            not self.qop or bool({"auth", "auth-int"} & set(self.qop))
        )


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """A parsed Authorization / Proxy-Authorization Digest value (RFC 7616 §3.4).

    ``nc`` is kept as sent (it is hashed as text); :attr:`nonce_count` is its value. ``response`` is
    lower-case hex. When ``qop`` is present, ``cnonce`` and ``nc`` are too (the parser enforces it).
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None

    @property
    def nonce_count(self) -> int | None:
        return int(self.nc, 16) if self.nc is not None else None


def parse_challenge(value: str, *, header: str = "WWW-Authenticate") -> DigestChallenge:
    """Parse a Digest challenge; ``header`` only names the header in error reasons."""
    params = _parse_digest_params(value, header=header)
    realm = _required(params, "realm", header)
    nonce = _required(params, "nonce", header)
    qop_text = params.get("qop")
    qop = tuple(q.strip().lower() for q in qop_text.split(",") if q.strip()) if qop_text is not None else ()
    if not all(is_token(q) for q in qop):
        raise DecodeError(f"Malformed {header} header: malformed qop")
    stale = params.get("stale", "false").lower() == "true"
    return DigestChallenge(
        realm=realm,
        nonce=nonce,
        algorithm=_algorithm(params, header),
        qop=qop,
        opaque=params.get("opaque"),
        stale=stale,
        domain=params.get("domain"),
    )


def parse_credentials(value: str, *, header: str = "Authorization") -> DigestCredentials:
    """Parse Digest credentials; ``header`` only names the header in error reasons."""
    params = _parse_digest_params(value, header=header)
    username, realm, nonce, uri, response = (
        _required(params, name, header) for name in ("username", "realm", "nonce", "uri", "response")
    )
    if _HEX_RE.match(response) is None:
        raise DecodeError(f"Malformed {header} header: response is not hexadecimal")
    qop = params.get("qop")
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        if not is_token(qop):
            raise DecodeError(f"Malformed {header} header: malformed qop")
        qop = qop.lower()
        # RFC 7616 §3.4: cnonce and nc MUST be sent with a qop.
        if cnonce is None:
            raise DecodeError(f"Malformed {header} header: missing cnonce")
        if nc is None:
            raise DecodeError(f"Malformed {header} header: missing nc")
    if nc is not None and _NC_RE.match(nc) is None:
        raise DecodeError(f"Malformed {header} header: malformed nc")
    return DigestCredentials(
        username=username,
        realm=realm,
        nonce=nonce,
        uri=uri,
        response=response.lower(),
        algorithm=_algorithm(params, header),
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=params.get("opaque"),
    )


def format_challenge(challenge: DigestChallenge) -> str:
    c = challenge
    qop = quote(",".join(c.qop)) if c.qop else None
    domain = quote(c.domain) if c.domain is not None else None
    return _format_params(
        ("realm", quote(c.realm)), ("nonce", quote(c.nonce)), ("opaque", _quote_opt(c.opaque)),
        ("stale", "true" if c.stale else None), ("algorithm", c.algorithm), ("qop", qop), ("domain", domain),
    )  # fmt: skip


def format_credentials(credentials: DigestCredentials) -> str:
    c = credentials
    return _format_params(
        ("username", quote(c.username)), ("realm", quote(c.realm)), ("nonce", quote(c.nonce)),
        ("uri", quote(c.uri)), ("response", quote(c.response)), ("algorithm", c.algorithm),
        ("cnonce", _quote_opt(c.cnonce)), ("opaque", _quote_opt(c.opaque)), ("qop", c.qop), ("nc", c.nc),
    )  # fmt: skip


def _quote_opt(text: str | None) -> str | None:
    return quote(text) if text is not None else None


def _format_params(*pairs: tuple[str, str | None]) -> str:
    return "Digest " + ", ".join(f"{name}={value}" for name, value in pairs if value is not None)


def _canonical_algorithm(text: str) -> str:
    return _CANONICAL_ALGORITHMS.get(text.lower(), text)


def _algorithm(params: dict[str, str], header: str) -> str:
    text = params.get("algorithm", "MD5")
    # RFC 3261 §25.1: algorithm = "algorithm" EQUAL ( "MD5" / "MD5-sess" / token )
    if not is_token(text):
        raise DecodeError(f"Malformed {header} header: malformed algorithm")
    return _canonical_algorithm(text)


def _required(params: dict[str, str], name: str, header: str) -> str:
    value = params.get(name)
    if value is None:
        raise DecodeError(f"Malformed {header} header: missing {name}")
    return value


def _parse_digest_params(value: str, *, header: str) -> dict[str, str]:
    """``Digest name=value, name="quoted", ...`` → lower-cased names to unquoted values.

    RFC 3261 §25.1 (digest-cln, dig-resp): names are case-insensitive; a value is a token or a
    quoted-string with backslash escapes, in which commas are plain text. Values are accepted quoted or
    not whatever the grammar says, as deployed clients differ. Empty list elements are skipped
    (RFC 7230 §7); a repeated parameter is refused, as the two copies could be read differently.
    """
    if len(value) > MAX_HEADER_LENGTH:
        raise DecodeError(f"Malformed {header} header: longer than {MAX_HEADER_LENGTH} characters")
    if _CTL_RE.search(value):
        raise DecodeError(f"Malformed {header} header: control character")
    text = value.strip(_WS)
    m = TOKEN_RE.match(text)
    if m is None:
        raise DecodeError(f"Malformed {header} header: missing scheme")
    scheme = m.group(0)
    if scheme.lower() != "digest":
        raise DecodeError(f"Malformed {header} header: unsupported scheme {scheme[:32]!r}")
    i = m.end()
    n = len(text)
    if i < n and text[i] not in _WS:
        raise DecodeError(f"Malformed {header} header: missing space after the scheme")
    params: dict[str, str] = {}
    while True:
        while i < n and (text[i] in _WS or text[i] == ","):
            i += 1
        if i >= n:
            break
        m = TOKEN_RE.match(text, i)
        if m is None:
            raise DecodeError(f"Malformed {header} header: expected a parameter name at offset {i}")
        name = m.group(0).lower()
        i = _skip_ws(text, m.end())
        if i >= n or text[i] != "=":
            raise DecodeError(f"Malformed {header} header: missing '=' after {name[:32]!r}")
        i = _skip_ws(text, i + 1)
        if i < n and text[i] == '"':
            param_value, i = _read_quoted(text, i, header, name)
        else:
            m = _UNQUOTED_VALUE_RE.match(text, i)
            if m is None:
                raise DecodeError(f"Malformed {header} header: empty value for {name[:32]!r}")
            param_value, i = m.group(0), m.end()
        if name in params:
            raise DecodeError(f"Malformed {header} header: duplicate {name[:32]!r}")
        if len(params) >= MAX_PARAMS:
            raise DecodeError(f"Malformed {header} header: more than {MAX_PARAMS} parameters")
        params[name] = param_value
        i = _skip_ws(text, i)
        if i < n and text[i] != ",":
            raise DecodeError(f"Malformed {header} header: expected ',' after {name[:32]!r}")
    if not params:
        raise DecodeError(f"Malformed {header} header: no parameters")
    return params


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _read_quoted(text: str, start: int, header: str, name: str) -> tuple[str, int]:
    """Read the quoted-string opening at ``start``; return its unescaped content and the index after it."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise DecodeError(f"Malformed {header} header: unterminated quoted string in {name[:32]!r}")


def select_challenge(challenges: Sequence[DigestChallenge]) -> DigestChallenge | None:
    """The challenge a client answers: the topmost one it supports (RFC 8760 §2.4), or None."""
    for challenge in challenges:
        if challenge.supported:
            return challenge
    return None


# -------------------------------------------------------------------------------------------- digest algebra


def _base_algorithm(algorithm: str) -> str:
    return algorithm[:-5] if algorithm.endswith("-sess") else algorithm


def _hash(algorithm: str, text: str) -> str:
    return hashlib.new(_HASHES[_base_algorithm(algorithm)], text.encode("utf-8")).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: str) -> str:
    """H(username:realm:password) in lower-case hex (RFC 7616 §3.4.2), what a credential store keeps.

    For a "-sess" algorithm this is the same value as for its base; the session key is derived per request.
    Raises :class:`LocalProtocolError` for an unsupported algorithm.
    """
    algorithm = _canonical_algorithm(algorithm)
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise LocalProtocolError(f"unsupported digest algorithm {algorithm!r}")
    return _hash(algorithm, f"{username}:{realm}:{password}")


def _request_digest(stored_ha1: str, c: DigestCredentials, method: str, body: bytes = b"") -> str:
    """The ``response`` value for ``c`` (RFC 7616 §3.4.1-3.4.3; the RFC 2069 form when it has no qop)."""
    algorithm = c.algorithm
    key = stored_ha1.lower()
    if algorithm.endswith("-sess"):
        key = _hash(algorithm, f"{key}:{c.nonce}:{c.cnonce or ''}")
    if c.qop == "auth-int":
        body_hash = hashlib.new(_HASHES[_base_algorithm(algorithm)], body).hexdigest()
        ha2 = _hash(algorithm, f"{method}:{c.uri}:{body_hash}")
    else:
        ha2 = _hash(algorithm, f"{method}:{c.uri}")
    if c.qop is None:
        return _hash(algorithm, f"{key}:{c.nonce}:{ha2}")
    return _hash(algorithm, f"{key}:{c.nonce}:{c.nc}:{c.cnonce}:{c.qop}:{ha2}")


def authorization_for(
    challenge: DigestChallenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The Authorization (or Proxy-Authorization) value answering ``challenge``.

    Uses ``qop=auth`` when offered, else ``auth-int`` (hashing ``body``), else the RFC 2069 form. The
    caller supplies a fresh random ``cnonce`` and counts ``nc`` per nonce. Raises
    :class:`LocalProtocolError` if the challenge's algorithm or qop options are all unsupported.
    """
    if not challenge.supported:
        raise LocalProtocolError(
            f"cannot answer a challenge with algorithm {challenge.algorithm!r} and qop {challenge.qop!r}"
        )
    if not 1 <= nc <= MAX_NC:
        raise LocalProtocolError(f"nonce-count {nc} out of range")
    qop: str | None = None
    if challenge.qop:
        qop = "auth" if "auth" in challenge.qop else "auth-int"
    unsigned = DigestCredentials(
        username=username, realm=challenge.realm, nonce=challenge.nonce, uri=uri, response="",
        algorithm=challenge.algorithm, qop=qop, nc=f"{nc:08x}" if qop is not None else None,
        # A session key needs a cnonce even without qop (RFC 2617 §3.2.2.2).
        cnonce=cnonce if qop is not None or challenge.algorithm.endswith("-sess") else None,
        opaque=challenge.opaque,
    )  # fmt: skip
    stored = ha1(username, challenge.realm, password, challenge.algorithm)
    return format_credentials(replace(unsigned, response=_request_digest(stored, unsigned, method, body)))


# ----------------------------------------------------------------------------------------------- server side


class AuthOutcome(Enum):
    OK = "ok"
    STALE = "stale"  # right digest, old nonce: re-challenge with stale=true
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """What :meth:`DigestServer.verify` concluded; ``reason`` is for the log, not for the wire."""

    outcome: AuthOutcome
    username: str | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.outcome is AuthOutcome.OK


class DigestServer:
    """Issues challenges and verifies credentials for one realm (RFC 3261 §22.4, RFC 7616 §3.3-3.4).

    ``secret`` keys the nonce MAC (at least 16 octets; a fresh random secret per run is fine: nonces from a
    previous run then fail and the client is challenged again). ``algorithms`` are those offered.
    ``max_nonces`` bounds the replay map; ``random_bytes`` salts nonces (inject a seeded one in tests).
    """

    def __init__(
        self,
        *,
        realm: str,
        secret: bytes,
        nonce_lifetime: float,
        algorithms: Sequence[str],
        opaque: str | None = None,
        max_nonces: int = 4096,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(secret) < 16:
            raise LocalProtocolError("the nonce secret must be at least 16 octets")
        if nonce_lifetime <= 0:
            raise LocalProtocolError("nonce_lifetime must be positive")
        if max_nonces < 1:
            raise LocalProtocolError("max_nonces must be at least 1")
        chosen = {_canonical_algorithm(a) for a in algorithms}
        unknown = chosen - SUPPORTED_ALGORITHMS
        if unknown or not chosen:
            raise LocalProtocolError(f"unsupported or missing digest algorithms: {sorted(unknown)!r}")
        self.realm = realm
        self.nonce_lifetime = nonce_lifetime
        self.algorithms: tuple[str, ...] = tuple(a for a in _PREFERENCE if a in chosen)
        self._secret = secret
        self._opaque = opaque
        self._max_nonces = max_nonces
        self._random_bytes = random_bytes
        # nonce -> (issue time, highest nc accepted); insertion order is first-use order, oldest first.
        self._counts: dict[str, tuple[float, int]] = {}
        # Nonces issued at or before this time whose counts may have been evicted: answered STALE.
        self._evicted_through = float("-inf")

    # Nonces ---------------------------------------------------------------------------------------------

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload + self.realm.encode("utf-8"), hashlib.sha256).digest()

    def new_nonce(self, now: float) -> str:
        payload = _NONCE_TIME.pack(round(now * 1000)) + self._random_bytes(_SALT_LEN)
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode("ascii")

    def _nonce_issued(self, nonce: str) -> float | None:
        """The issue time of a nonce this server made, or None if it is not one (forged or foreign)."""
        if _NONCE_RE.match(nonce) is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_RAW_LEN:
            return None
        split = _NONCE_TIME.size + _SALT_LEN
        payload, mac = raw[:split], raw[split:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        (millis,) = _NONCE_TIME.unpack(payload[: _NONCE_TIME.size])
        return float(millis) / 1000.0

    # Challenges -----------------------------------------------------------------------------------------

    def challenge(self, now: float, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate values, one per offered algorithm, most preferred first, sharing one nonce."""
        nonce = self.new_nonce(now)
        return [
            format_challenge(
                DigestChallenge(
                    realm=self.realm,
                    nonce=nonce,
                    algorithm=algorithm,
                    qop=("auth",),
                    opaque=self._opaque,
                    stale=stale,
                )
            )
            for algorithm in self.algorithms
        ]

    # Verification ---------------------------------------------------------------------------------------

    def verify(
        self,
        credentials: DigestCredentials,
        *,
        method: str,
        ha1_lookup: Callable[[str, str], str | None],
        now: float,
    ) -> AuthResult:
        """Check ``credentials`` for a request of ``method``; ``ha1_lookup(username, algorithm)`` gives the
        stored HA1 hex for the base algorithm ("SHA-256" also for "SHA-256-sess") or None.

        The caller checks the digest-uri against the Request-URI with :func:`uri_matches`. An OK result
        consumes the nonce-count: the same ``nc`` (or a lower one) on the same nonce then FAILs.
        """
        c = credentials
        user = c.username

        def failed(reason: str) -> AuthResult:
            return AuthResult(AuthOutcome.FAILED, user, reason)

        if c.realm != self.realm:
            return failed(f"realm {c.realm[:64]!r} is not {self.realm!r}")
        if c.algorithm not in self.algorithms:
            return failed(f"algorithm {c.algorithm[:32]!r} was not offered")
        issued = self._nonce_issued(c.nonce)
        if issued is None:
            return failed("nonce was not issued by this server")
        if self._opaque is not None and c.opaque != self._opaque:
            return failed("opaque does not match")
        if c.qop != "auth" or c.nc is None or c.cnonce is None:
            return failed("qop=auth with nc and cnonce is required")
        nc = int(c.nc, 16)
        if nc < 1:
            return failed("nonce-count must start at 1")
        stored = ha1_lookup(user, _base_algorithm(c.algorithm))
        if stored is None:
            return failed("unknown user")
        expected = _request_digest(stored, c, method)
        if not hmac.compare_digest(expected.encode("ascii"), c.response.encode("ascii")):
            return failed("wrong response digest (password or digest-uri)")
        # The digest is right: from here on a problem with the nonce is staleness (RFC 7616 §3.3 stale).
        age = now - issued
        if age > self.nonce_lifetime or age < -_CLOCK_SLACK:
            return AuthResult(AuthOutcome.STALE, user, f"nonce is {age:.0f} s old")
        entry = self._counts.get(c.nonce)
        if entry is None:
            if issued <= self._evicted_through:
                return AuthResult(AuthOutcome.STALE, user, "nonce-count state was evicted")
        elif nc <= entry[1]:
            return failed(f"nonce-count {nc} replayed (highest seen {entry[1]})")
        self._record(c.nonce, issued, nc, now)
        return AuthResult(AuthOutcome.OK, user, "ok")

    def _record(self, nonce: str, issued: float, nc: int, now: float) -> None:
        counts = self._counts
        if nonce in counts:
            counts[nonce] = (issued, nc)
            return
        # Entries are kept in first-use order, which follows issue order closely: drop expired ones from the
        # front (they can only be STALE now), then the oldest live ones while full. A live nonce whose count
        # is dropped must not start over at nc=1, so nonces issued up to its time are answered STALE.
        horizon = now - self.nonce_lifetime
        while counts:
            oldest = next(iter(counts))
            t, _ = counts[oldest]
            if t >= horizon and len(counts) < self._max_nonces:
                break
            del counts[oldest]
            if t >= horizon:
                self._evicted_through = max(self._evicted_through, t)
        counts[nonce] = (issued, nc)

    @property
    def tracked_nonces(self) -> int:
        return len(self._counts)


def uri_matches(credentials: DigestCredentials, request_uri: str) -> bool:
    """Whether the digest-uri names the Request-URI (RFC 3261 §22.4, RFC 7616 §3.4.6).

    SIP and tel URIs are compared by the RFC 3261 §19.1.4 rules that matter here (scheme, user with
    escapes decoded, host case-insensitively, port, parameters); other URIs must be identical text.
    """
    if credentials.uri == request_uri:
        return True
    try:
        a, b = parse_uri(credentials.uri), parse_uri(request_uri)
    except DecodeError:
        return False
    return _uri_key(a) == _uri_key(b)


def _uri_key(uri: SipUri | TelUri) -> tuple[object, ...]:
    params = tuple(sorted((k.lower(), (v or "").lower()) for k, v in uri.params.items()))
    if isinstance(uri, TelUri):
        return ("tel", uri.number.replace("-", "").replace(".", "").lower(), params)
    user = pct_decode(uri.user) if uri.user is not None else None
    headers = tuple(sorted(uri.headers))
    return (uri.scheme, user, uri.password, uri.host.lower(), uri.port, params, headers)
