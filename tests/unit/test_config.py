"""appliance.config: embedded defaults, TOML override, every rule's exact message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appliance.config import (
    AgentGroupConfig,
    Config,
    ConfigError,
    ConfigIssue,
    ConfigReadError,
    Destination,
    RouteConfig,
    ServiceListen,
    SyncConfig,
    check_file,
    load_config,
    load_config_text,
)
from appliance.config.schema import UplinkConfig, WanConfig

VECTORS = Path(__file__).parent.parent / "vectors" / "config"


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert info.value.errors, "a ConfigError always lists at least one issue"
    return [str(e) for e in info.value.errors]


def problems_of(text: str) -> list[str]:
    """The issues of ``text``, or none when it loads."""
    try:
        load_config_text(text)
    except ConfigError as exc:
        return [str(e) for e in exc.errors]
    return []


def only_issue(text: str) -> str:
    found = issues_of(text)
    assert len(found) == 1, found
    return found[0]


# --- defaults ---------------------------------------------------------------------------------------------


def test_defaults_match_the_make_run_contract() -> None:
    # DESIGN.md §5.1: with no file every service listens on loopback at these addresses.
    c = load_config(None)
    assert c == Config()
    assert (c.sip.listen, c.sip.udp_port, c.sip.tcp_port) == ("127.0.0.1", 5060, 5060)
    assert (c.media.address, c.media.rtp_port_min, c.media.rtp_port_max) == ("127.0.0.1", 20000, 29999)
    assert c.noc == ServiceListen("127.0.0.1", 2222)
    assert c.sync == SyncConfig()
    assert (
        c.wan == WanConfig() and c.wan.interfaces == () and not c.wan.failover
    )  # make run: no routes touched
    assert c.cloud.health_url == ""
    assert (c.sync.listen, c.sync.port, c.sync.certificate) == ("127.0.0.1", 8443, "")
    assert c.metrics == ServiceListen("127.0.0.1", 9464)
    assert c.state_dir == "var"
    assert not c.cloud.configured  # so the appliance starts in SURVIVABLE mode
    assert c.routes == (RouteConfig("*", (Destination("cloud", ""), Destination("ivr", "default"))),)
    assert c.registrar.algorithms == ("SHA-256", "MD5")
    assert c.sip.timers.t1 == 0.5 and c.sip.timers.t2 == 4.0 and c.sip.timers.t4 == 5.0
    assert c.sip.session_timer.session_expires == 1800 and c.sip.session_timer.min_se == 90
    assert c.logging.level == "info" and c.logging.format == "json"


def test_empty_document_is_the_defaults() -> None:
    assert load_config_text("") == Config()
    assert load_config_text("# nothing but a comment\n\n") == Config()


def test_config_is_frozen() -> None:
    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.sip.udp_port = 1  # type: ignore[misc]


def test_a_partial_table_keeps_the_other_defaults_of_that_table() -> None:
    c = load_config_text("[metrics]\nport = 19999\n[sip.timers]\nt4 = 9\n")
    assert c.metrics == ServiceListen("127.0.0.1", 19999)
    assert c.sip.timers.t4 == 9.0 and isinstance(c.sip.timers.t4, float)
    assert c.sip.timers.t1 == 0.5
    assert dataclasses.replace(c, metrics=Config().metrics, sip=Config().sip) == Config()


def test_full_override_file() -> None:
    c = load_config(VECTORS / "full.toml")
    assert c.state_dir == "var/site-a"
    assert (c.site.name, c.site.serial, c.site.timezone, c.site.region) == (
        "Berlin PoP 1",
        "PA-2024-0042",
        "Europe/Berlin",
        "DE",
    )
    s = c.sip
    assert (s.listen, s.udp_port, s.tcp_port, s.tls_port) == ("127.0.0.2", 5070, 5071, 5072)
    assert (s.max_message_size, s.user_agent, s.domain, s.trace) == (
        16384,
        "PoP-Appliance/0.1 berlin-1",
        "pop1.localhost",
        True,
    )
    assert not s.tls_enabled
    assert dataclasses.astuple(s.rate_limit) == (False, 250.5, 500, 2000)
    assert dataclasses.astuple(s.timers) == (0.25, 2.0, 2.5)
    assert dataclasses.astuple(s.session_timer) == (900, 120)
    assert dataclasses.astuple(c.media) == (
        "::1", 30000, 30999, 2, 12.5, False, "realtime", "var/site-a/rec", "", False, True,
    )  # fmt: skip
    assert c.cloud.configured and c.cloud.trunk == "sips:cc@localhost:5081;transport=tls"
    assert (c.cloud.probe_interval, c.cloud.probe_timeout, c.cloud.hold_down) == (10.0, 3.5, 0.0)
    assert (c.cloud.probe_failures, c.cloud.probe_successes, c.cloud.media_timeout) == (5, 3, 1.5)
    assert c.cloud.health_url == "https://cloud.localhost:8443/health"
    # Paths of existing files only: like [sync], the file fields stay "" here (see test_cloud_health_tls_*).
    assert (c.cloud.health_ca, c.cloud.health_certificate, c.cloud.health_private_key) == ("", "", "")
    w = c.wan
    assert (w.interfaces, w.failover, w.revert_after, w.failover_after) == (
        ("wan0", "wan1", "lan0"),
        True,
        120.5,
        3,
    )
    assert w.uplinks == (
        UplinkConfig("fibre", "wan0", "10.77.1.1", 10),
        UplinkConfig("lte", "wan1", "10.77.2.1", 20),
    )
    r = c.registrar
    assert (r.min_expires, r.max_expires, r.default_expires, r.nonce_lifetime) == (30, 7200, 600, 120.0)
    assert r.algorithms == ("MD5",)
    assert [u.username for u in r.users] == ["alice", "bob"]
    assert r.users[0].password == "correct horse" and r.users[0].ha1_md5 == ""
    assert r.users[1].ha1_md5 == "0123456789abcdef0123456789abcdef" and r.users[1].password == ""
    assert [(rt.srtp, rt.record) for rt in c.routes] == [("sdes", False), ("off", False), ("follow", False)]
    assert [(rt.match, [str(d) for d in rt.destinations]) for rt in c.routes] == [
        ("+4930*", ["cloud", "agents:berlin", "ivr:closed"]),
        ("+49301234567", ["pri:2"]),
        ("*", ["trunk:sip:carrier@127.0.0.3:5060", "ivr:default"]),
    ]
    assert c.agent_groups == (
        AgentGroupConfig("berlin", ("alice", "bob", "sip:carol@127.0.0.4"), "sequential", 15.5),
    )
    assert c.agent_group("berlin") is c.agent_groups[0] and c.agent_group("nope") is None
    assert (c.metrics, c.noc) == (ServiceListen("127.0.0.2", 19464), ServiceListen("::1", 12222))
    assert dataclasses.astuple(c.sync) == ("127.0.0.2", 18443, "", "", "", 1048576, 10.0, 64)
    assert (c.logging.level, c.logging.format) == ("debug", "text")
    assert c.ivr.rescue_flow == "rescue"
    assert [(e.country, e.languages) for e in c.ivr.languages] == [("CH", ("fr", "de")), ("DE", ("de",))]
    # Every setting in the file differs from its default, so the file really exercises each field.
    assert all(getattr(c, f.name) != getattr(Config(), f.name) for f in dataclasses.fields(Config))


# --- destinations -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [
        ("cloud", "cloud", ""),
        ("ivr:default", "ivr", "default"),
        ("agents:sales-2", "agents", "sales-2"),
        ("pri:1", "pri", "1"),
        ("pri:31", "pri", "31"),
        (
            "trunk:sip:carrier@127.0.0.1:5070;transport=tcp",
            "trunk",
            "sip:carrier@127.0.0.1:5070;transport=tcp",
        ),
        ("trunk:sips:[::1]", "trunk", "sips:[::1]"),
    ],
)
def test_destination_round_trip(text: str, kind: str, target: str) -> None:
    d = Destination.parse(text)
    assert (d.kind, d.target) == (kind, target)
    assert str(d) == text
    assert Destination.parse(str(d)) == d


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("cloud:x", '"cloud" takes no target'),
        ("ivr", ""),
        ("ivr:", "ivr name must be letters, digits, '_', '-' and '.'"),
        ("agents:a b", "agents name must be letters, digits, '_', '-' and '.'"),
        ("pri:0", "span number must be an integer from 1 to 255"),
        ("pri:x", "span number must be an integer from 1 to 255"),
        ("pri:256", "span number must be an integer from 1 to 255"),
        ("trunk:", "missing URI"),
        ("trunk:tel:+4930", "Expected a sip: or sips: URI, got 'tel:+4930'"),
        ("voicemail:1", ""),
        ("", ""),
    ],
)
def test_destination_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        Destination.parse(text)
    assert str(info.value) == reason
    dest = Destination.EXPECTED
    suffix = f"; {reason}" if reason else ""
    quoted = '"' + text + '"'
    doc = f'[[routes]]\nmatch = "*"\ndestinations = ["{text}"]\n'
    assert only_issue(doc) == f"routes[0].destinations[0]: expected {dest}, got {quoted} (string){suffix}"


@pytest.mark.parametrize("value", ["0", "-1.5", "86400.5", "inf"])
def test_cloud_media_timeout_is_seconds_up_to_a_day(value: str) -> None:
    assert issues_of(f"[cloud]\nmedia_timeout = {value}") == [
        f"cloud.media_timeout: expected a number greater than 0, at most 86400, got {value} "
        f"({'integer' if value == '0' else 'float'})"
    ]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("https://cloud.localhost/health", True),
        ("https://127.0.0.1:8443/sync/v1/health", True),
        ("http://cloud.localhost/health", False),
        ("https://", False),
        ("https://cloud.localhost:99999/", False),
        ("https://cloud localhost/", False),
        ("https://[::1/health", False),
    ],
)
def test_cloud_health_url_is_empty_or_https(value: str, ok: bool) -> None:
    issues = problems_of(f'[cloud]\nhealth_url = "{value}"')
    assert issues == (
        [] if ok else [f'cloud.health_url: expected "" or an https:// URL, got "{value}" (string)']
    )


def test_cloud_health_tls_files_must_exist(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "probe.pem", "probe.key"))
    for path in (ca, cert, key):
        path.write_text("PEM")
    doc = f'[cloud]\nhealth_ca = "{ca}"\nhealth_certificate = "{cert}"\nhealth_private_key = "{key}"\n'
    c = load_config_text(doc)
    assert (c.cloud.health_ca, c.cloud.health_certificate, c.cloud.health_private_key) == (
        str(ca),
        str(cert),
        str(key),
    )
    missing = tmp_path / "nope.pem"
    assert issues_of(f'[cloud]\nhealth_ca = "{missing}"\nhealth_certificate = "{tmp_path}"') == [
        f'cloud.health_ca: expected the path of an existing file (or empty), got "{missing}" (string)',
        f'cloud.health_certificate: expected the path of an existing file (or empty), got "{tmp_path}" '
        "(string)",
    ]


def test_cloud_health_tls_client_certificate_and_key_come_together(tmp_path: Path) -> None:
    pem = tmp_path / "probe.pem"
    pem.write_text("PEM")
    assert issues_of(f'[cloud]\nhealth_certificate = "{pem}"') == [
        "cloud.health_private_key: required when health_certificate is set"
    ]
    assert issues_of(f'[cloud]\nhealth_private_key = "{pem}"') == [
        "cloud.health_certificate: required when health_private_key is set"
    ]
    assert load_config_text(f'[cloud]\nhealth_ca = "{pem}"').cloud.health_ca == str(pem)  # a CA alone is fine


def test_probe_interval_must_cover_the_probe_timeout() -> None:
    assert issues_of("[cloud]\nprobe_interval = 1\nprobe_timeout = 1.5") == [
        "cloud.probe_interval: expected at least probe_timeout = 1.5, got 1.0 (float)"
    ]


WAN_UPLINKS = """
[[wan.uplinks]]
name = "fibre"
interface = "wan0"
gateway = "10.77.1.1"
[[wan.uplinks]]
name = "lte"
interface = "wan1"
gateway = "fd77::1"
"""


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ('[wan]\ninterfaces = ["wan0", "wan1"]\nfailover = true\n' + WAN_UPLINKS, []),
        ('[wan]\ninterfaces = ["wan0"]', []),
        (
            "[wan]\nfailover = true",
            ["wan.uplinks: two uplinks (primary, backup) are required when failover is true"],
        ),
        (
            '[wan]\ninterfaces = ["wan0", "wan0"]',
            ['wan.interfaces[1]: expected an interface named once, got "wan0" (string) (also interfaces[0])'],
        ),
        (
            '[wan]\ninterfaces = ["eth/0"]',
            ['wan.interfaces[0]: expected an interface name, got "eth/0" (string)'],
        ),
        (
            '[wan]\ninterfaces = ["wan0"]\n' + WAN_UPLINKS,
            ['wan.uplinks[1].interface: expected an interface listed in interfaces, got "wan1" (string)'],
        ),
        (
            '[wan]\ninterfaces = ["wan0"]\n'
            + WAN_UPLINKS.split("[[wan.uplinks]]")[1].join(["[[wan.uplinks]]", ""]),
            ["wan.uplinks: expected no uplinks or two (primary, backup); got 1"],
        ),
        (
            '[wan]\ninterfaces = ["wan0", "wan1"]\n' + WAN_UPLINKS.replace('"lte"', '"fibre"'),
            [
                'wan.uplinks[1].name: expected a unique uplink name, got "fibre" (string)'
                " (also uplinks[0].name)"
            ],
        ),
        ("[wan]\nrevert_after = -1", ["wan.revert_after: expected a number of at least 0, got -1 (integer)"]),
        (
            "[wan]\nfailover_after = 0",
            ["wan.failover_after: expected an integer of at least 1, got 0 (integer)"],
        ),
    ],
)
def test_wan_section(text: str, problems: list[str]) -> None:
    assert problems_of(text) == problems


# --- unknown keys, syntax errors, collection of issues ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sip]\nudp_prot = 5060", 'sip.udp_prot: unknown key; did you mean "udp_port"?'),
        ("[sip.timer]\nt1 = 1", 'sip.timer: unknown key; did you mean "timers"?'),
        ("[clouds]\ntrunk = ''", 'clouds: unknown key; did you mean "cloud"?'),
        ("statedir = 'x'", 'statedir: unknown key; did you mean "state_dir"?'),
        ("[[routes]]\nmatch = '*'\ndestination = ['cloud']", None),
        ("[logging]\nzzz = 1", "logging.zzz: unknown key; known keys are level, format"),
        (
            '[sip]\n"odd key" = 1',
            'sip."odd key": unknown key; known keys are '
            + ", ".join(f.name for f in dataclasses.fields(Config().sip)),
        ),
    ],
)
def test_unknown_keys(text: str, message: str | None) -> None:
    found = issues_of(text)
    if message is None:  # a misspelt required key: both the unknown key and the missing one are named
        assert found == [
            'routes[0].destination: unknown key; did you mean "destinations"?',
            "routes[0].destinations: missing; expected a non-empty array of destinations",
        ]
    else:
        assert found == [message]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sip]\nudp_port = 5060\ntcp_port =\n", "TOML syntax error at line 3, column 11: Invalid value"),
        ("[sip]\n[sip]\n", "TOML syntax error at line 2, column 5: Cannot declare ('sip',) twice"),
        ('state_dir = "unterminated\n', "TOML syntax error at line 1, column 26: Illegal character '\\n'"),
        ("x = [1,", "TOML syntax error at end of document: Invalid value"),
    ],
)
def test_toml_syntax_error_names_line_and_column(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert [str(e) for e in info.value.errors] == [message]
    assert info.value.errors[0] == ConfigIssue("", message)


def test_every_issue_is_collected_in_document_order() -> None:
    doc = """
[sip]
udp_port = -1
listen = "nowhere"
bogus = true

[sip.timers]
t2 = 0

[cloud]
trunk = "ftp://x"

[[registrar.users]]
username = "ok"
password = "pw"

[[registrar.users]]
username = ""
"""
    assert issues_of(doc) == [
        "sip.udp_port: expected an integer from 0 to 65535, got -1 (integer)",
        'sip.listen: expected an IPv4 or IPv6 address, got "nowhere" (string)',
        "sip.bogus: unknown key; known keys are "
        + ", ".join(f.name for f in dataclasses.fields(Config().sip)),
        "sip.timers.t2: expected a number greater than 0, got 0 (integer)",
        'cloud.trunk: expected "" (no cloud) or a sip: or sips: URI, got "ftp://x" (string); '
        "Unsupported URI Scheme 'ftp'",
        "registrar.users[1].username: expected a SIP user name "
        '(letters, digits and -_.!~*\'()&=+$, up to 64), got "" (string)',
    ]


def test_config_error_message_is_the_report() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("[sip]\nudp_port = 'x'\ntcp_port = 'y'")
    assert str(info.value) == (
        'sip.udp_port: expected an integer from 0 to 65535, got "x" (string)\n'
        'sip.tcp_port: expected an integer from 0 to 65535, got "y" (string)'
    )
    assert info.value.exit_code == 1


# --- files --------------------------------------------------------------------------------------------------


def test_load_config_from_path_and_str(tmp_path: Path) -> None:
    path = tmp_path / "appliance.toml"
    path.write_text('[site]\nname = "Hamburg"\n')
    assert load_config(path).site.name == "Hamburg"
    assert load_config(str(path)).site.name == "Hamburg"
    path.write_bytes(b'\xef\xbb\xbf[site]\nname = "BOM"\n')  # a byte-order mark some editors write
    assert load_config(path).site.name == "BOM"


def test_unreadable_file_is_a_read_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigReadError) as info:
        load_config(missing)
    assert info.value.exit_code == 2
    assert [str(e) for e in info.value.errors] == [f"cannot read {missing}: No such file or directory"]
    with pytest.raises(ConfigReadError):
        load_config(tmp_path)  # a directory


def test_file_that_is_not_utf8_or_too_large(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'[site]\nname = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert not isinstance(info.value, ConfigReadError)
    assert [str(e) for e in info.value.errors] == ["file is not UTF-8 text (byte 15)"]
    path.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(e) for e in info.value.errors] == ["file is larger than 1048576 bytes"]


def test_check_file_reports(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[sip]\nudp_port = 5080\n")
    assert check_file(good) == (True, f"OK: {good}")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sip]\nudp_port = 'x'\ntcp_port = 'y'\n")
    ok, report = check_file(bad)
    assert not ok
    assert report.splitlines() == [
        'sip.udp_port: expected an integer from 0 to 65535, got "x" (string)',
        'sip.tcp_port: expected an integer from 0 to 65535, got "y" (string)',
    ]
    ok, report = check_file(tmp_path / "nope.toml")
    assert not ok and report == f"cannot read {tmp_path / 'nope.toml'}: No such file or directory"
