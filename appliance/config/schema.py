"""The appliance's configuration: frozen dataclasses with every default embedded.

``Config()`` is the configuration ``make run`` starts on (DESIGN.md §5.1): every service on loopback, no
cloud configured (so the appliance is in SURVIVABLE mode and answers calls with the default IVR flow).

Each field declares its rule beside it (:mod:`appliance.config.rules`); a check that spans several fields
lives in the owning class's ``cross_check``, which yields ``(relative path, message)`` pairs and is run by the
loader only once every field of the object is valid. Adding a setting is one line here: the loader builds
every class generically from its annotations (:mod:`appliance.config.load`).

Objects built directly in code are not validated; only documents that pass through the loader are.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal, Self
from urllib.parse import urlsplit

from appliance.config.rules import (
    NAME_RE,
    REJECT,
    USER_RE,
    Rule,
    choice,
    even_integer,
    expected,
    header_text_check,
    hex_digest,
    host_check,
    integer,
    ip_address,
    name,
    non_empty_array,
    non_empty_text,
    number,
    port,
    region_check,
    rule,
    sip_uri_check,
    sip_user,
    text,
    timezone_check,
)
from appliance.config.spans import DEFAULT_SPANS, DahdiConfig, SpanConfig, span_port_problems, span_problems
from appliance.media.scheduling import Scheduling

Problem = tuple[str, str]
"""A cross-field issue: the path relative to the checked object ("" for the object itself) and a message."""

DestinationKind = Literal["cloud", "ivr", "agents", "pri", "trunk"]
LogLevel = Literal["debug", "info", "warning", "error"]
SrtpPolicy = Literal["follow", "off", "sdes"]
DIGEST_ALGORITHMS = ("SHA-256", "MD5")


class TextValue:
    """A configuration value written in TOML as one string and parsed into a typed object."""

    EXPECTED: ClassVar[str]

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``text`` or raise ``ValueError`` whose message is the reason ("" when none is better)."""
        raise NotImplementedError


def _printable_or_empty(v: str) -> str | None:
    return None if v == "" or (len(v) <= 4096 and v.isprintable()) else REJECT


def _existing_file(v: str) -> str | None:
    if v == "":
        return None
    if "\0" in v or not os.path.isfile(v):
        return REJECT
    return None


@dataclass(frozen=True)
class SiteConfig:
    name: str = field(default="default", metadata=non_empty_text("a non-empty site name", max_len=64))
    serial: str = field(
        default="SIM-0001",
        metadata=rule("a serial number of letters, digits, '-', '_' and '.'", text(pattern=r"[\w.\-]{1,64}")),
    )
    timezone: str = field(
        default="UTC", metadata=rule('an IANA time zone name such as "Europe/Berlin"', timezone_check)
    )
    region: str = field(
        default="DE",
        metadata=rule('an ISO 3166 region code known to the numbering plan, such as "DE"', region_check),
    )


@dataclass(frozen=True)
class RateLimitConfig:
    """Per-source token bucket in front of the SIP parser."""

    enabled: bool = True
    rate: float = field(default=500.0, metadata=number(above=0))  # messages per second per source
    burst: int = field(default=1000, metadata=integer(1))
    max_sources: int = field(default=10000, metadata=integer(1))


@dataclass(frozen=True)
class TimerConfig:
    """RFC 3261 §17 transaction timers, in seconds."""

    t1: float = field(default=0.5, metadata=number(above=0))
    t2: float = field(default=4.0, metadata=number(above=0))
    t4: float = field(default=5.0, metadata=number(above=0))

    def cross_check(self) -> Iterator[Problem]:
        if self.t1 > self.t2:  # RFC 3261 §17.1.2.2: retransmissions back off from T1 up to T2
            yield "t1", expected(f"at most t2 = {self.t2:g}", self.t1)


@dataclass(frozen=True)
class SessionTimerConfig:
    """RFC 4028 session timers, in seconds; 90 s is the protocol's floor for Min-SE (§4)."""

    session_expires: int = field(default=1800, metadata=integer(90, 86400))
    min_se: int = field(default=90, metadata=integer(90, 86400))

    def cross_check(self) -> Iterator[Problem]:
        if self.min_se > self.session_expires:
            yield "min_se", expected(f"at most session_expires = {self.session_expires}", self.min_se)


@dataclass(frozen=True)
class SipConfig:
    listen: str = field(default="127.0.0.1", metadata=ip_address())
    udp_port: int = field(default=5060, metadata=port())
    tcp_port: int = field(default=5060, metadata=port())
    tls_port: int = field(default=5061, metadata=port())
    tls_certificate: str = field(
        default="", metadata=rule("the path of an existing file (or empty)", _existing_file)
    )
    tls_private_key: str = field(
        default="", metadata=rule("the path of an existing file (or empty)", _existing_file)
    )
    max_message_size: int = field(default=65535, metadata=integer(1024, 262144))
    user_agent: str = field(
        default="PoP-Appliance/0.1",
        metadata=rule("a printable string of 1 to 128 characters", header_text_check),
    )
    domain: str = field(default="localhost", metadata=rule("a host name or IP address", host_check))
    trace: bool = False
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    timers: TimerConfig = field(default_factory=TimerConfig)
    session_timer: SessionTimerConfig = field(default_factory=SessionTimerConfig)

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_certificate)

    def cross_check(self) -> Iterator[Problem]:
        # A certificate without its key (or the reverse) cannot serve TLS: refuse rather than start without.
        if self.tls_certificate and not self.tls_private_key:
            yield "tls_private_key", "required when tls_certificate is set"
        if self.tls_private_key and not self.tls_certificate:
            yield "tls_certificate", "required when tls_private_key is set"


RECORDING_KEY_SIZE = 32  # AES-256 key-encryption key (appliance.media.recording)
MAX_MEDIA_WORKERS = 64


def _key_file(v: str) -> str | None:
    if v == "":
        return None
    if "\0" in v or not os.path.isfile(v):
        return "no such file"
    try:
        size = os.path.getsize(v)
    except OSError:
        return "cannot read it"
    return None if size == RECORDING_KEY_SIZE else f"it holds {size} bytes"


@dataclass(frozen=True)
class MediaConfig:
    """The RTP relay: where it binds, how many worker processes carry it, timeouts and recording.

    Every relayed call's media is anchored at ``address``; each call leg takes one even RTP port (RTCP on
    the odd one above it) from ``rtp_port_min..rtp_port_max``, which is split between the workers and the
    local IVR.
    """

    address: str = field(default="127.0.0.1", metadata=ip_address())
    # RTP takes the even port and RTCP the odd one above it (RFC 3550 §11), so the range starts even.
    rtp_port_min: int = field(default=20000, metadata=even_integer(1024, 65534))
    rtp_port_max: int = field(default=29999, metadata=integer(1025, 65535))
    # Media worker processes; 0 runs one per CPU core (DESIGN.md §2).
    workers: int = field(default=0, metadata=integer(0, MAX_MEDIA_WORKERS))
    # Seconds without RTP on an answered, unheld call before the call is ended (rtpengine's --timeout).
    timeout: float = field(default=30.0, metadata=number(above=0))
    # Record every relayed call (a route's ``record`` records only that route's calls).
    record: bool = False
    # CPU scheduling of the media workers: "normal", "high" (nice -10) or "realtime" (SCHED_RR 1), see
    # appliance.media.scheduling; prompt pacing under load depends on it.
    scheduling: Scheduling = "normal"
    # Where encrypted recordings are written; "" means ``<state_dir>/recordings``.
    recording_dir: str = field(default="", metadata=rule("a directory path (or empty)", _printable_or_empty))
    # A file holding the 32-byte key that wraps each recording's own key; recording needs it.
    recording_key: str = field(
        default="", metadata=rule(f"the path of a {RECORDING_KEY_SIZE}-byte key file (or empty)", _key_file)
    )
    # Let the relay transcode G.711 A-law <-> µ-law when the two legs share no codec.
    transcode: bool = True
    # Let the workers hand plain RTP calls to the kernel (nftables NAT maps). Off by default: it installs
    # nftables tables on the host, which `make run` must never change (DESIGN.md §5.1); the image turns it on.
    fastpath: bool = False

    def cross_check(self) -> Iterator[Problem]:
        if self.rtp_port_min >= self.rtp_port_max:
            yield "rtp_port_max", expected(f"more than rtp_port_min = {self.rtp_port_min}", self.rtp_port_max)
        if self.record and not self.recording_key:
            yield "recording_key", "required when record is true"

    def recording_path(self, state_dir: str) -> str:
        """The directory recordings go to: ``recording_dir`` or ``<state_dir>/recordings``."""
        return self.recording_dir or os.path.join(state_dir, "recordings")


def _https_url_check(v: str) -> str | None:
    if v == "":
        return None
    try:
        parts = urlsplit(v)  # raises ValueError on an unbalanced "[" (an IPv6 literal)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return REJECT
    ok = parts.scheme == "https" and parts.hostname and v.isprintable() and " " not in v and len(v) <= 2048
    return None if ok else REJECT


def _file_or_empty() -> str:
    """A dataclass field holding "" or the path of an existing file (a PEM certificate, key or CA)."""
    return field(default="", metadata=rule("the path of an existing file (or empty)", _existing_file))


@dataclass(frozen=True)
class CloudConfig:
    """Where the cloud contact centre is and how the WAN monitor probes it."""

    trunk: str = field(default="", metadata=rule('"" (no cloud) or a sip: or sips: URI', sip_uri_check))
    probe_interval: float = field(default=5.0, metadata=number(above=0))
    probe_timeout: float = field(default=2.0, metadata=number(above=0))
    probe_failures: int = field(default=3, metadata=integer(1))
    probe_successes: int = field(default=2, metadata=integer(1))
    hold_down: float = field(default=30.0, metadata=number(least=0))
    # Seconds of silence from the cloud's side of an answered call before its media is declared gone and
    # the caller rescued into the local IVR (media.timeout still applies to phones and trunks). The cloud
    # sends RTP continuously, comfort noise included (RFC 3389), so this much silence means its media path
    # is gone: a rescued caller then hears the IVR within about this long.
    media_timeout: float = field(
        default=2.0,
        metadata=rule("a number greater than 0, at most 86400", lambda v: None if 0 < v <= 86400 else REJECT),
    )
    # The cloud's HTTPS health endpoint, probed with every SIP OPTIONS probe when set: a probe round is
    # answered only when both are (any 2xx within probe_timeout), so a cloud whose SBC answers while its
    # API is down still counts as down. "" probes with SIP OPTIONS alone.
    health_url: str = field(default="", metadata=rule('"" or an https:// URL', _https_url_check))
    # PEM: the CA certificates that sign the health endpoint's certificate, normally the cloud's private
    # CA (as for the sync API); "" trusts the system's CAs. Read once when the appliance starts.
    health_ca: str = _file_or_empty()
    # PEM: a client certificate chain and its private key that the probe presents, for a cloud whose
    # health endpoint requires mutual TLS; both or neither.
    health_certificate: str = _file_or_empty()
    health_private_key: str = _file_or_empty()

    @property
    def configured(self) -> bool:
        """False when no trunk is set: the appliance then stays in SURVIVABLE mode (DESIGN.md §5.1)."""
        return self.trunk != ""

    def cross_check(self) -> Iterator[Problem]:
        if self.probe_interval < self.probe_timeout:
            words = f"at least probe_timeout = {self.probe_timeout:g}"
            yield "probe_interval", expected(words, self.probe_interval)
        # A certificate without its key (or the reverse) cannot be presented: refuse rather than probe
        # without it and see every round fail.
        if bool(self.health_certificate) != bool(self.health_private_key):
            missing = "health_private_key" if self.health_certificate else "health_certificate"
            other = "health_certificate" if self.health_certificate else "health_private_key"
            yield missing, f"required when {other} is set"


_IFNAME_CHECK: Final = text(r"[^/:\s]{1,15}", max_len=15)  # IFNAMSIZ - 1; "/" and ":" are refused by Linux


@dataclass(frozen=True)
class UplinkConfig:
    """One WAN uplink for default-route failover; the first of ``[[wan.uplinks]]`` is the primary."""

    name: str = field(metadata=name())
    interface: str = field(metadata=rule("a network interface name", _IFNAME_CHECK))
    gateway: str = field(metadata=ip_address())
    # The default route's priority (RTA_PRIORITY) while this uplink carries it.
    metric: int = field(default=0, metadata=integer(0, 2**32 - 1))


@dataclass(frozen=True)
class WanConfig:
    """The WAN monitor: carrier of the WAN interfaces and primary/backup default-route failover.

    ``interfaces`` are watched for carrier over netlink: losing it makes the survivable mode SUSPECT at
    once (RFC 2863 operational state). Empty, as under ``make run``, watches nothing. With ``failover``
    the default route is moved between the two ``uplinks`` (primary first); without it the route is
    never touched (DESIGN.md §5.1), whatever the uplinks say.
    """

    interfaces: tuple[str, ...] = field(
        default=(),
        metadata=rule("an array of interface names", item=Rule("an interface name", _IFNAME_CHECK)),
    )
    failover: bool = False
    uplinks: tuple[UplinkConfig, ...] = ()
    # Seconds the primary must keep carrier before the route returns to it (hold-down against flapping).
    revert_after: float = field(default=60.0, metadata=number(least=0))
    # Consecutive failed probe rounds on the active uplink that move the route to the other uplink.
    failover_after: int = field(default=2, metadata=integer(1))

    def cross_check(self) -> Iterator[Problem]:
        yield from _duplicates("interfaces[{}]", self.interfaces, "an interface named once")
        if len(self.uplinks) not in (0, 2):
            yield "uplinks", f"expected no uplinks or two (primary, backup); got {len(self.uplinks)}"
        elif self.failover and not self.uplinks:
            yield "uplinks", "two uplinks (primary, backup) are required when failover is true"
        yield from _duplicates("uplinks[{}].name", [u.name for u in self.uplinks], "a unique uplink name")
        yield from _duplicates(
            "uplinks[{}].interface", [u.interface for u in self.uplinks], "an interface used by one uplink"
        )
        for i, uplink in enumerate(self.uplinks):
            if uplink.interface not in self.interfaces:
                words = "an interface listed in interfaces"
                yield f"uplinks[{i}].interface", expected(words, uplink.interface)


@dataclass(frozen=True)
class UserConfig:
    """A local SIP user (phone or agent) that registers with the appliance's registrar."""

    username: str = field(metadata=sip_user())
    password: str = field(
        default="",
        metadata=rule("a string of at most 256 characters", lambda v: None if len(v) <= 256 else REJECT),
    )
    ha1_md5: str = field(default="", metadata=hex_digest(32))
    ha1_sha256: str = field(default="", metadata=hex_digest(64))

    def cross_check(self) -> Iterator[Problem]:
        if not (self.password or self.ha1_md5 or self.ha1_sha256):
            yield "", "expected at least one of password, ha1_md5 or ha1_sha256; got none"


@dataclass(frozen=True)
class RegistrarConfig:
    """RFC 3261 §10 registrar and RFC 8760 digest authentication; expiry values in seconds."""

    min_expires: int = field(default=60, metadata=integer(1))
    max_expires: int = field(default=3600, metadata=integer(1))
    default_expires: int = field(default=3600, metadata=integer(1))
    nonce_lifetime: float = field(default=300.0, metadata=number(above=0))
    algorithms: tuple[str, ...] = field(
        default=DIGEST_ALGORITHMS,
        metadata=non_empty_array('a non-empty array of "SHA-256" and "MD5"', item=choice(DIGEST_ALGORITHMS)),
    )
    users: tuple[UserConfig, ...] = ()

    def cross_check(self) -> Iterator[Problem]:
        if self.min_expires > self.max_expires:
            yield "max_expires", expected(f"at least min_expires = {self.min_expires}", self.max_expires)
        elif not self.min_expires <= self.default_expires <= self.max_expires:
            words = f"from min_expires = {self.min_expires} to max_expires = {self.max_expires}"
            yield "default_expires", expected(words, self.default_expires)
        yield from _duplicates("algorithms[{}]", self.algorithms, "an algorithm named once")
        yield from _duplicates("users[{}].username", [u.username for u in self.users], "a unique user name")


@dataclass(frozen=True)
class Destination(TextValue):
    """Where a route sends a call.

    Written ``cloud``, ``ivr:<flow>``, ``agents:<group>``, ``pri:<span number>`` or ``trunk:<sip uri>``;
    ``str()`` gives that text back.
    """

    EXPECTED: ClassVar[str] = (
        'a destination "cloud", "ivr:<flow>", "agents:<group>", "pri:<span number>" or "trunk:<sip uri>"'
    )

    kind: DestinationKind
    target: str

    @classmethod
    def parse(cls, text: str) -> Self:
        kind, colon, target = text.partition(":")
        if kind == "cloud":
            if colon:
                raise ValueError('"cloud" takes no target')
            return cls("cloud", "")
        if not colon:
            raise ValueError(REJECT)
        if kind in {"ivr", "agents"}:
            if NAME_RE.fullmatch(target) is None:
                raise ValueError(f"{kind} name must be letters, digits, '_', '-' and '.'")
            return cls("ivr" if kind == "ivr" else "agents", target)
        if kind == "pri":
            if not target.isascii() or not target.isdigit() or not 1 <= int(target) <= 255:
                raise ValueError("span number must be an integer from 1 to 255")
            return cls("pri", str(int(target)))
        if kind == "trunk":
            reason = sip_uri_check(target) if target else "missing URI"
            if reason is not None:
                raise ValueError(reason)
            return cls("trunk", target)
        raise ValueError(REJECT)

    def __str__(self) -> str:
        return self.kind if self.kind == "cloud" else f"{self.kind}:{self.target}"


@dataclass(frozen=True)
class RouteConfig:
    """Calls whose called number matches ``match`` go to the first available of ``destinations``.

    ``match`` is ``*`` (any), ``+<digits>`` (an exact E.164 number), ``+<digits>*`` (an E.164 prefix), an
    extension or user name (exact), or ``<extension>*`` (an extension prefix).
    """

    # The patterns the call router understands (appliance.calls.routing): any number, an E.164 number or
    # prefix, a local extension (or user name) or extension prefix.
    match: str = field(
        metadata=rule(
            '"*", "+<digits>", "+<digits>*", an extension or "<extension>*"',
            text(pattern=r"\*|\+[0-9]{1,15}|\+[0-9]{0,15}\*|[0-9A-Za-z#._~\-]{1,64}\*?"),
        )
    )
    destinations: tuple[Destination, ...] = field(
        metadata=non_empty_array("a non-empty array of destinations")
    )
    # The media profile the far leg is offered: "follow" the caller's offer (SRTP if it used SRTP), "off"
    # (plain RTP/AVP) or "sdes" (RTP/SAVP with RFC 4568 keys).
    srtp: SrtpPolicy = "follow"
    # Record this route's calls (media.record records every call).
    record: bool = False


def _member_check(v: str) -> str | None:
    if USER_RE.fullmatch(v) is not None:
        return None
    if v.startswith(("sip:", "sips:")):
        return sip_uri_check(v)
    return REJECT


@dataclass(frozen=True)
class AgentGroupConfig:
    name: str = field(metadata=name())
    members: tuple[str, ...] = field(
        metadata=non_empty_array(
            "a non-empty array of agents", item=Rule("a SIP user name or a sip: or sips: URI", _member_check)
        )
    )
    strategy: Literal["ring-all", "sequential"] = "ring-all"
    ring_timeout: float = field(default=20.0, metadata=number(above=0))  # seconds


LANGUAGE_RE = r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?"


@dataclass(frozen=True)
class CountryLanguages:
    """The languages callers from ``country`` (ISO 3166 region of their number) are served in, best first;
    the first one the IVR flow offers is used."""

    country: str = field(metadata=rule('an ISO 3166 region code such as "DE"', region_check))
    languages: tuple[str, ...] = field(
        metadata=non_empty_array(
            "a non-empty array of language codes",
            item=Rule('a language code such as "de"', text(LANGUAGE_RE)),
        )
    )


def _country_languages(*pairs: tuple[str, str]) -> tuple[CountryLanguages, ...]:
    return tuple(CountryLanguages(c, tuple(langs.split())) for c, langs in pairs)


# Where the default prompts' eleven languages are spoken (first the language callers expect, then a
# second one many of them understand).
DEFAULT_COUNTRY_LANGUAGES: Final = _country_languages(
    ("DE", "de en"), ("AT", "de en"), ("CH", "de fr en"), ("LI", "de"), ("LU", "fr de"),
    ("ES", "es en"), ("MX", "es"), ("AR", "es"), ("CO", "es"), ("CL", "es"), ("PE", "es"), ("VE", "es"),
    ("EC", "es"), ("GT", "es"), ("CU", "es"), ("BO", "es"), ("DO", "es"), ("HN", "es"), ("PY", "es"),
    ("SV", "es"), ("NI", "es"), ("CR", "es"), ("PA", "es"), ("UY", "es"),
    ("BR", "pt"), ("PT", "pt"), ("AO", "pt"), ("MZ", "pt"),
    ("FR", "fr en"), ("BE", "fr de"), ("MC", "fr"), ("SN", "fr"), ("CI", "fr"), ("CM", "fr"), ("CA", "en fr"),
    ("AE", "ar en"), ("SA", "ar en"), ("EG", "ar en"), ("QA", "ar en"), ("KW", "ar en"), ("BH", "ar en"),
    ("OM", "ar en"), ("JO", "ar en"), ("LB", "ar fr"), ("MA", "ar fr"), ("DZ", "ar fr"), ("TN", "ar fr"),
    ("IQ", "ar"),
    ("CN", "zh"), ("TW", "zh"), ("HK", "zh en"), ("MO", "zh pt"), ("SG", "en zh"),
    ("JP", "ja"), ("IN", "hi en"), ("ID", "id"), ("TR", "tr"),
    ("US", "en es"), ("GB", "en"), ("IE", "en"), ("AU", "en"), ("NZ", "en"), ("ZA", "en"),
)  # fmt: skip


@dataclass(frozen=True)
class IvrConfig:
    """The local failover IVR (DESIGN.md §4): which flow answers rescued calls and how callers' languages
    are chosen. Flows and prompts the cloud pushes are kept under the state directory; the packaged
    default flow and prompts serve until then."""

    # Answered cloud calls whose cloud leg fails go to this flow; "" hangs them up instead.
    rescue_flow: str = field(default="default", metadata=rule("a flow name", text(r"[A-Za-z0-9_.\-]{0,64}")))
    # Callers whose country has no entry below (or anonymous callers) hear the flow's default language.
    languages: tuple[CountryLanguages, ...] = DEFAULT_COUNTRY_LANGUAGES
    # A file holding the 32-byte key that encrypts voicemail at rest; "" generates one under
    # <state_dir>/keys on first start.
    voicemail_key: str = field(default="", metadata=rule("a readable 32-byte key file", _key_file))


@dataclass(frozen=True)
class ServiceListen:
    """Where a TCP service (metrics, NOC SSH, sync API) listens."""

    listen: str = field(metadata=ip_address())
    port: int = field(metadata=port())


@dataclass(frozen=True)
class SyncConfig:
    """The sync API the central cloud connects to (DESIGN.md §5.3): HTTPS with client certificates, CBOR.

    With the three certificate paths empty the appliance makes its own private CA under
    ``<state_dir>/keys/sync`` on first start, a server certificate from it, and one cloud client
    certificate for the reference client (``make run`` prints where). A site enrolled with the cloud's CA
    names the files instead. The certificate and key files are read again when they change (or on
    SIGHUP), so a rotated certificate serves new connections without a restart.
    """

    listen: str = field(default="127.0.0.1", metadata=ip_address())
    port: int = field(default=8443, metadata=port())
    # PEM: the appliance's certificate chain and its private key.
    certificate: str = field(
        default="", metadata=rule("the path of an existing file (or empty)", _existing_file)
    )
    private_key: str = field(
        default="", metadata=rule("the path of an existing file (or empty)", _existing_file)
    )
    # PEM: the CA certificates that sign the cloud's client certificates; any other client is refused in
    # the TLS handshake.
    client_ca: str = field(
        default="", metadata=rule("the path of an existing file (or empty)", _existing_file)
    )
    # Largest request body accepted (a prompt is the largest document); larger ones get 413.
    max_body: int = field(default=4 * 1024 * 1024, metadata=integer(1024, 64 * 1024 * 1024))
    # Longest a long-poll for events is held open.
    max_wait: float = field(
        default=30.0,
        metadata=rule("a number greater than 0, at most 300", lambda v: None if 0 < v <= 300 else REJECT),
    )
    # Disk the outbox may use for events not yet acknowledged, in MiB. Near it, metric events are thinned
    # and an alarm is raised; call records, voicemail and callback requests are always kept.
    outbox_quota_mb: int = field(default=512, metadata=integer(1, 1024 * 1024))

    def cross_check(self) -> Iterator[Problem]:
        if bool(self.certificate) != bool(self.private_key):
            missing = "private_key" if self.certificate else "certificate"
            other = "certificate" if self.certificate else "private_key"
            yield missing, f"required when {other} is set"
        if self.certificate and not self.client_ca:
            yield "client_ca", "required when certificate is set (which CA signs the cloud's certificates)"


@dataclass(frozen=True)
class LoggingConfig:
    level: LogLevel = "info"
    format: Literal["json", "text"] = "json"


def _default_routes() -> tuple[RouteConfig, ...]:
    return (RouteConfig("*", (Destination("cloud", ""), Destination("ivr", "default"))),)


@dataclass(frozen=True)
class Config:
    site: SiteConfig = field(default_factory=SiteConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    wan: WanConfig = field(default_factory=WanConfig)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    routes: tuple[RouteConfig, ...] = field(
        default_factory=_default_routes, metadata=non_empty_array("a non-empty array of routes")
    )
    agent_groups: tuple[AgentGroupConfig, ...] = ()
    ivr: IvrConfig = field(default_factory=IvrConfig)
    metrics: ServiceListen = field(default_factory=lambda: ServiceListen("127.0.0.1", 9464))
    noc: ServiceListen = field(default_factory=lambda: ServiceListen("127.0.0.1", 2222))
    sync: SyncConfig = field(default_factory=SyncConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    state_dir: str = field(default="var", metadata=non_empty_text("a directory path"))
    spans: tuple[SpanConfig, ...] = DEFAULT_SPANS
    dahdi: DahdiConfig = field(default_factory=DahdiConfig)

    def agent_group(self, group: str) -> AgentGroupConfig | None:
        return next((g for g in self.agent_groups if g.name == group), None)

    def cross_check(self) -> Iterator[Problem]:
        yield from _duplicates(
            "routes[{}].match", [r.match for r in self.routes], "a match used by one route"
        )
        groups = [g.name for g in self.agent_groups]
        yield from _duplicates("agent_groups[{}].name", groups, "a unique group name")
        known = ", ".join(f'"{g}"' for g in groups) or "none defined"
        for i, route in enumerate(self.routes):
            for j, dest in enumerate(route.destinations):
                if dest.kind == "agents" and dest.target not in groups:
                    words = f"an agent group defined in [[agent_groups]] ({known})"
                    yield f"routes[{i}].destinations[{j}]", expected(words, str(dest))
        users = {u.username for u in self.registrar.users}
        for i, group in enumerate(self.agent_groups):
            for j, member in enumerate(group.members):
                # A bare name must be a local user, or the agent could never register to be rung.
                if USER_RE.fullmatch(member) is not None and member not in users:
                    words = "a user defined in [[registrar.users]] or a sip: URI"
                    yield f"agent_groups[{i}].members[{j}]", expected(words, member)
        for i, route in enumerate(self.routes):
            if route.record and not self.media.recording_key:
                yield f"routes[{i}].record", "requires media.recording_key"
        yield from self._listener_clashes()
        yield from span_problems(self.spans)
        m = self.media
        yield from span_port_problems(m.rtp_port_min, m.rtp_port_max, m.workers, len(self.spans))

    def _listener_clashes(self) -> Iterator[Problem]:
        tcp: list[tuple[str, str, int]] = [("sip.tcp_port", self.sip.listen, self.sip.tcp_port)]
        if self.sip.tls_enabled:
            tcp.append(("sip.tls_port", self.sip.listen, self.sip.tls_port))
        for svc in ("metrics", "noc", "sync"):
            listen: ServiceListen = getattr(self, svc)
            tcp.append((f"{svc}.port", listen.listen, listen.port))
        for i, (path, addr, port_) in enumerate(tcp):
            for other, other_addr, other_port in tcp[:i]:
                if port_ != 0 and port_ == other_port and _overlap(addr, other_addr):
                    yield path, expected(f"a TCP port not used by {other}", port_)
                    break
        m = self.media
        udp = self.sip.udp_port
        if udp and m.rtp_port_min <= udp <= m.rtp_port_max and _overlap(self.sip.listen, m.address):
            yield "sip.udp_port", expected("a UDP port outside the media RTP port range", udp)


def _overlap(a: str, b: str) -> bool:
    """Whether two listen addresses can collide: equal, or one is the wildcard of the same family."""
    x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    return x == y or (x.version == y.version and (x.is_unspecified or y.is_unspecified))


def _duplicates(path: str, values: list[str] | tuple[str, ...], words: str) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for i, v in enumerate(values):
        if v in first:
            yield path.format(i), f"{expected(words, v)} (also {path.format(first[v])})"
        else:
            first[v] = i
