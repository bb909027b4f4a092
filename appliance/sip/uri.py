"""SIP, SIPS (RFC 3261 §19.1) and tel (RFC 3966) URIs.

``parse_uri`` is total: it returns a :class:`SipUri` or :class:`TelUri` or raises :class:`DecodeError` —
status 416 (Unsupported URI Scheme) for a well-formed URI of another scheme, 400 for a malformed one.
``str(uri)`` gives a canonical form that parses back to an equal value.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Final

from appliance.sip.errors import DecodeError
from appliance.sip.grammar import Params, format_params, parse_params

_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
# RFC 3261 §25.1 user = 1*( unreserved / escaped / user-unreserved )
_USER_RE: Final = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+\Z")
_PASSWORD_RE: Final = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*\Z")
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_HOSTNAME_RE: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?\Z")
_PORT_RE: Final = re.compile(r"[0-9]{1,5}\Z")
_TEL_NUMBER_RE: Final = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+\Z")
_HEADER_RE: Final = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|%[0-9A-Fa-f]{2})*\Z")


def parse_host(text: str, *, what: str) -> str:
    """Validate a host (hostname, IPv4 address or bracketed IPv6 reference) and return it as written."""
    if not text:
        raise DecodeError(f"Missing host in {what}")
    if text[0] == "[":
        if text[-1] != "]":
            raise DecodeError(f"Unterminated IPv6 reference in {what}")
        if "%" in text:
            # ipaddress accepts a zone index ("fe80::1%eth0"); the RFC 3261 §25.1 IPv6reference has none.
            raise DecodeError(f"Malformed IPv6 reference {text[:64]!r} in {what}")
        try:
            ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise DecodeError(f"Malformed IPv6 reference {text[:64]!r} in {what}") from None
        return text
    if _HOSTNAME_RE.match(text) is None:
        raise DecodeError(f"Malformed host {text[:64]!r} in {what}")
    return text


def split_hostport(text: str, *, what: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` where host may be an IPv6 reference; validate both parts."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise DecodeError(f"Unterminated IPv6 reference in {what}")
        host, rest = text[: close + 1], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise DecodeError(f"Unexpected text after IPv6 reference in {what}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
    host = parse_host(host, what=what)
    port: int | None = None
    if port_text is not None:
        if _PORT_RE.match(port_text) is None or int(port_text) > 65535:
            raise DecodeError(f"Malformed port {port_text[:16]!r} in {what}")
        port = int(port_text)
    return host, port


def format_host(host: str) -> str:
    """Bracket a bare IPv6 address so it can stand in a URI or Via (RFC 3261 §25.1 IPv6reference)."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


@dataclass(frozen=True, slots=True)
class SipUri:
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: Params = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def transport(self) -> str:
        t = self.params.get("transport")
        return t.lower() if t else ("tls" if self.secure else "udp")

    def with_params(self, **params: str | None) -> SipUri:
        merged = dict(self.params)
        merged.update(params)
        return replace(self, params=merged)

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(out)


@dataclass(frozen=True, slots=True)
class TelUri:
    number: str
    params: Params = field(default_factory=dict)

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    def __str__(self) -> str:
        return f"tel:{self.number}{format_params(self.params)}"


Uri = SipUri | TelUri


def uri_scheme(text: str) -> str | None:
    m = _SCHEME_RE.match(text)
    return m.group(1).lower() if m else None


def parse_uri(text: str) -> Uri:
    scheme = uri_scheme(text)
    if scheme is None:
        raise DecodeError(f"Malformed URI {text[:64]!r}: no scheme")
    rest = text[len(scheme) + 1 :]
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    raise DecodeError(f"Unsupported URI Scheme {scheme!r}", status=416)


def parse_sip_uri(text: str) -> SipUri:
    """Parse a URI that must be ``sip:`` or ``sips:`` (Contact, Route, a trunk address)."""
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise DecodeError(f"Expected a sip: or sips: URI, got {text[:64]!r}", status=416)
    return uri


def _parse_sip(scheme: str, rest: str) -> SipUri:
    what = f"{scheme}: URI"
    user: str | None = None
    password: str | None = None
    # "@" may appear nowhere in a SIP URI but after the userinfo (RFC 3261 §25.1), while "?" and ";" may
    # appear inside the user part: split the userinfo off first.
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not user or _USER_RE.match(user) is None:
            raise DecodeError(f"Malformed user part {userinfo[:64]!r} in {what}")
        if colon:
            if _PASSWORD_RE.match(pw) is None:
                raise DecodeError(f"Malformed password in {what}")
            password = pw
    headers: tuple[tuple[str, str], ...] = ()
    rest, qmark, header_text = rest.partition("?")
    if qmark:
        pairs = []
        for item in header_text.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq or not _HEADER_RE.match(name) or not _HEADER_RE.match(value):
                raise DecodeError(f"Malformed header {item[:64]!r} in {what}")
            pairs.append((name, value))
        headers = tuple(pairs)
    hostport, semi, param_text = rest.partition(";")
    host, port = split_hostport(hostport, what=what)
    params = parse_params(param_text, what=what) if semi else {}
    return SipUri(
        host=host, user=user, password=password, port=port, scheme=scheme, params=params, headers=headers
    )


def _parse_tel(rest: str) -> TelUri:
    number, semi, param_text = rest.partition(";")
    if not number or _TEL_NUMBER_RE.match(number) is None:
        raise DecodeError(f"Malformed telephone number {number[:64]!r} in tel: URI")
    params = parse_params(param_text, what="tel: URI") if semi else {}
    if not number.startswith("+") and "phone-context" not in params:
        # RFC 3966 §5.1.5: a local number needs a phone-context.
        raise DecodeError("Local number in tel: URI without phone-context")
    return TelUri(number=number, params=params)
