"""SRTP keyed by SDES (RFC 4568) for a media relay leg: the ``a=crypto`` attribute and the packet transform.

Theory of operation. With SDES each side writes, in its own SDP, the master key and salt it will use to
protect the media *it sends* (RFC 4568 §6.1); the other side uses that key to unprotect. The offerer lists
one or more ``a=crypto`` attributes in order of preference; the answerer picks the first it supports and
answers with the same tag and suite and a key of its own (RFC 4568 §7.1.2). So on each SRTP leg the relay
holds two keys: the peer's (inbound, for :meth:`SrtpContext.unprotect`) and ours (outbound, for
:meth:`SrtpContext.protect`).

:func:`parse_crypto` is total: it returns an :class:`SdesCrypto` or raises :class:`SrtpError` naming the
fault, so the SDP layer can skip an attribute it cannot honour and still answer with the next one. Only what
the relay can honour is accepted: the AES_CM_128_HMAC_SHA1_80 and _32 suites (RFC 4568 §6.2), one key
without MKI, the default key lifetimes, and no session parameter that weakens or changes the transform.

:class:`SrtpContext` wraps two libsrtp sessions (through ``pylibsrtp``); every failure comes out as
:class:`SrtpError`, and authentication failures and replays are counted, because a media worker drops such
packets and reports the counts instead of failing.

Pure code: no sockets, no clocks. Randomness for our keys is injected.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

import pylibsrtp

from appliance.media.rtp import MediaError

AES_CM_128_HMAC_SHA1_80: Final = "AES_CM_128_HMAC_SHA1_80"
AES_CM_128_HMAC_SHA1_32: Final = "AES_CM_128_HMAC_SHA1_32"

#: The suites the relay can key, most preferred first.
SUPPORTED_SUITES: Final[tuple[str, ...]] = (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32)

_PROFILES: Final[dict[str, int]] = {
    AES_CM_128_HMAC_SHA1_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    AES_CM_128_HMAC_SHA1_32: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}

#: Master key (16 octets) followed by master salt (14 octets) for both AES_CM_128 suites (RFC 4568 §6.2.1).
KEY_SALT_LENGTH: Final = 30

#: Lifetimes equal to the suites' maximum (RFC 4568 §6.2.1: 2^48 for SRTP, 2^31 for SRTCP). libsrtp
#: enforces those limits itself, so these are the only values whose meaning it honours.
_ACCEPTED_LIFETIMES: Final = frozenset({2**31, 2**48})

#: Largest datagram accepted; pylibsrtp's working buffer is 1500 octets and protection appends a trailer.
MAX_PACKET: Final = 1500
_MAX_PROTECT: Final = MAX_PACKET - pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN

_TAG_MAX: Final = 999_999_999  # 1*9DIGIT (RFC 4568 §9.1)
_ATTRIBUTE: Final = re.compile(
    r"([0-9]{1,9})[ \t]+([A-Za-z0-9_]+)[ \t]+(\S+)(?:[ \t]+(.*?))?[ \t]*", re.ASCII
)
_LIFETIME: Final = re.compile(r"(?:2\^([0-9]{1,2})|([0-9]{1,20}))", re.ASCII)
_WSH: Final = re.compile(r"WSH=([0-9]{1,9})", re.ASCII)
_MIN_WSH: Final = 64  # RFC 4568 §6.3.7: the window size hint is at least 64

# libsrtp's failure messages, as pylibsrtp reports them, sorted into what the media worker counts.
_AUTH_FAILURES: Final = frozenset({"authentication failure"})
_REPLAYS: Final = frozenset({"replay check failed (bad index)", "replay check failed (index too old)"})


class SrtpError(MediaError):
    """An ``a=crypto`` attribute the relay cannot honour, or a packet SRTP refuses; ``reason`` names it.

    A refused packet is dropped and counted, never answered; a refused attribute is skipped by the SDP
    layer, and if none is left the offer's SRTP stream is rejected.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SdesCrypto:
    """One accepted ``a=crypto`` attribute (RFC 4568 §9.1).

    ``key`` is the 30-octet master key||salt; ``lifetime`` is None when the attribute gave none;
    ``window_size_hint`` is the WSH session parameter (RFC 4568 §6.3.7), or None.
    """

    tag: int
    suite: str
    key: bytes
    lifetime: int | None = None
    window_size_hint: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.tag <= _TAG_MAX:
            raise ValueError("crypto tag out of range")
        if self.suite not in _PROFILES:
            raise ValueError(f"unsupported crypto suite {self.suite}")
        if len(self.key) != KEY_SALT_LENGTH:
            raise ValueError(f"key||salt must be {KEY_SALT_LENGTH} octets")
        if self.lifetime is not None and self.lifetime not in _ACCEPTED_LIFETIMES:
            raise ValueError("lifetime must be 2^31 or 2^48")
        if self.window_size_hint is not None and not _MIN_WSH <= self.window_size_hint <= _TAG_MAX:
            raise ValueError("window size hint out of range")

    def to_attribute(self) -> str:
        """The attribute value (after ``a=crypto:``) that :func:`parse_crypto` reads back to this value."""
        key_info = base64.b64encode(self.key).decode("ascii")
        if self.lifetime is not None:
            key_info += f"|2^{self.lifetime.bit_length() - 1}"
        value = f"{self.tag} {self.suite} inline:{key_info}"
        if self.window_size_hint is not None:
            value += f" WSH={self.window_size_hint}"
        return value


def parse_crypto(value: str) -> SdesCrypto:
    """Parse an ``a=crypto`` value: ``<tag> <suite> inline:<key||salt>[|lifetime][|MKI:len] [params]``.

    Total: returns an :class:`SdesCrypto` or raises :class:`SrtpError` whose reason names the fault.
    Refused with a reason: unknown suites, several keys, MKI, lifetimes other than 2^31 or 2^48, key
    material that is not base64 of exactly 30 octets, and session parameters other than WSH.
    """
    match = _ATTRIBUTE.fullmatch(value)
    if match is None:
        raise SrtpError("crypto attribute is not '<tag> <suite> <key-params> [params]'")
    tag_text, suite, key_params, params_text = match.groups()
    if suite not in _PROFILES:
        raise SrtpError(f"unsupported crypto suite {suite}")
    if ";" in key_params:
        # Several keys are only told apart by MKI (RFC 4568 §6.1), which the relay does not do.
        raise SrtpError("more than one key in a crypto attribute is not supported")
    method, sep, key_info = key_params.partition(":")
    if not sep or method != "inline":
        raise SrtpError("key method must be 'inline'")
    parts = key_info.split("|")
    if len(parts) > 3:
        raise SrtpError("too many '|' fields in key-info")
    key = _decode_key(parts[0])
    lifetime: int | None = None
    for extra in parts[1:]:
        if ":" in extra:
            raise SrtpError("MKI is not supported")
        if lifetime is not None:
            raise SrtpError("more than one lifetime in key-info")
        lifetime = _parse_lifetime(extra)
    window = _parse_session_params(params_text or "")
    return SdesCrypto(int(tag_text), suite, key, lifetime, window)


def _decode_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SrtpError("key||salt is not valid base64") from None
    if len(key) != KEY_SALT_LENGTH:
        raise SrtpError(f"key||salt is {len(key)} octets, expected {KEY_SALT_LENGTH}")
    return key


def _parse_lifetime(text: str) -> int:
    match = _LIFETIME.fullmatch(text)
    if match is None:
        raise SrtpError(f"lifetime {text!r} is not a number or a power of two")
    power, decimal = match.groups()
    lifetime = 2 ** int(power) if power is not None else int(decimal)
    if lifetime not in _ACCEPTED_LIFETIMES:
        raise SrtpError(f"lifetime {text} is not supported (only 2^31 or 2^48)")
    return lifetime


def _parse_session_params(text: str) -> int | None:
    window: int | None = None
    for param in text.split():
        match = _WSH.fullmatch(param)
        if match is None:
            # RFC 4568 §6.3: a crypto attribute with a session parameter the answerer does not support
            # is not acceptable; UNENCRYPTED_*, KDR and FEC parameters change the transform libsrtp applies.
            raise SrtpError(f"session parameter {param[:40]!r} is not supported")
        if window is not None:
            raise SrtpError("WSH given more than once")
        window = int(match.group(1))
        if window < _MIN_WSH:
            raise SrtpError(f"WSH={window} is below {_MIN_WSH}")
    return window


def make_crypto(
    tag: int, random_bytes: Callable[[int], bytes], *, suite: str = AES_CM_128_HMAC_SHA1_80
) -> tuple[str, bytes]:
    """Our own ``a=crypto`` value for an offer or answer, and the master key||salt we will protect with.

    ``random_bytes(n)`` must return ``n`` cryptographically random octets (``os.urandom`` or
    ``secrets.token_bytes`` in the appliance). Raises ``ValueError`` for a tag outside 0..999999999, an
    unsupported suite, or a ``random_bytes`` that returns the wrong length.
    """
    key = random_bytes(KEY_SALT_LENGTH)
    if len(key) != KEY_SALT_LENGTH:
        raise ValueError(f"random_bytes returned {len(key)} octets, expected {KEY_SALT_LENGTH}")
    return SdesCrypto(tag, suite, key).to_attribute(), key


def answer_crypto(
    offered: Sequence[SdesCrypto], *, suites: Collection[str] = SUPPORTED_SUITES
) -> SdesCrypto | None:
    """The offered attribute to accept: the first whose suite is in ``suites`` (RFC 4568 §7.1.2), or None.

    The answer then carries the same tag and suite with our key (:func:`make_crypto`); the chosen offer's
    key is the inbound key of the leg. None means the SRTP stream must be rejected.
    """
    for crypto in offered:
        if crypto.suite in suites:
            return crypto
    return None


class SrtpContext:
    """SRTP and SRTCP for one leg: ``inbound_key`` unprotects what the peer sends, ``outbound_key``
    protects what the relay sends. Both are 30-octet master key||salt values of ``suite``.

    Every method returns the transformed packet or raises :class:`SrtpError`; no ``pylibsrtp`` exception
    escapes. Inbound packets failing authentication or the replay check are counted in
    :attr:`auth_failures` and :attr:`replays`. Any SSRC is accepted in each direction (a peer may change
    SSRC mid-call); libsrtp only creates per-SSRC state for packets that authenticate.
    Raises ``ValueError`` at construction for a wrong key length or an unsupported suite.
    """

    __slots__ = ("_inbound", "_outbound", "auth_failures", "replays")

    def __init__(
        self, inbound_key: bytes, outbound_key: bytes, *, suite: str = AES_CM_128_HMAC_SHA1_80
    ) -> None:
        profile = _PROFILES.get(suite)
        if profile is None:
            raise ValueError(f"unsupported crypto suite {suite}")
        if len(inbound_key) != KEY_SALT_LENGTH or len(outbound_key) != KEY_SALT_LENGTH:
            raise ValueError(f"SRTP keys must be {KEY_SALT_LENGTH} octets of master key||salt")
        self._inbound = pylibsrtp.Session(
            pylibsrtp.Policy(bytes(inbound_key), pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
        )
        self._outbound = pylibsrtp.Session(
            pylibsrtp.Policy(bytes(outbound_key), pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
        )
        self.auth_failures = 0
        self.replays = 0

    def protect(self, packet: bytes) -> bytes:
        """SRTP packet for the RTP ``packet`` (a valid RTP header, at most 1352 octets)."""
        return self._outgoing(self._outbound.protect, packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        """SRTCP packet for the RTCP ``packet`` (a valid RTCP header, at most 1352 octets)."""
        return self._outgoing(self._outbound.protect_rtcp, packet)

    def unprotect(self, packet: bytes) -> bytes:
        """The RTP packet inside the SRTP ``packet``, authenticated and checked against replay."""
        return self._incoming(self._inbound.unprotect, packet)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """The RTCP packet inside the SRTCP ``packet``, authenticated and checked against replay."""
        return self._incoming(self._inbound.unprotect_rtcp, packet)

    @staticmethod
    def _outgoing(transform: Callable[[bytes], bytes], packet: bytes) -> bytes:
        if len(packet) > _MAX_PROTECT:
            raise SrtpError(f"packet of {len(packet)} octets is too long to protect")
        try:
            return transform(bytes(packet))
        except pylibsrtp.Error as exc:
            raise SrtpError(f"protect failed: {exc}") from None

    def _incoming(self, transform: Callable[[bytes], bytes], packet: bytes) -> bytes:
        if len(packet) > MAX_PACKET:
            raise SrtpError(f"packet of {len(packet)} octets is too long")
        try:
            return transform(bytes(packet))
        except pylibsrtp.Error as exc:
            reason = str(exc)
            if reason in _AUTH_FAILURES:
                self.auth_failures += 1
            elif reason in _REPLAYS:
                self.replays += 1
            raise SrtpError(reason) from None
