"""appliance.config: every field rule and cross-field check reports its exact path and message."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, Destination, load_config_text


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    return [str(e) for e in info.value.errors]


def only_issue(text: str) -> str:
    found = issues_of(text)
    assert len(found) == 1, found
    return found[0]


# --- every field rule -------------------------------------------------------------------------------------

FIELD_CASES = [
    ('[site]\nname = ""', 'site.name: expected a non-empty site name, got "" (string)'),
    (
        '[site]\nserial = "A B"',
        "site.serial: expected a serial number of letters, digits, '-', '_' and '.', got \"A B\" (string)",
    ),
    (
        '[site]\ntimezone = "Mars/Olympus"',
        'site.timezone: expected an IANA time zone name such as "Europe/Berlin", got "Mars/Olympus" (string)',
    ),
    (
        '[site]\ntimezone = "../etc/passwd"',
        'site.timezone: expected an IANA time zone name such as "Europe/Berlin", '
        'got "../etc/passwd" (string)',
    ),
    (
        '[site]\nregion = "de"',
        'site.region: expected an ISO 3166 region code known to the numbering plan, such as "DE", '
        'got "de" (string)',
    ),
    ("[sip.rate_limit]\nenabled = 1", "sip.rate_limit.enabled: expected true or false, got 1 (integer)"),
    ("[sip.rate_limit]\nrate = 0", "sip.rate_limit.rate: expected a number greater than 0, got 0 (integer)"),
    (
        "[sip.rate_limit]\nrate = nan",
        "sip.rate_limit.rate: expected a number greater than 0, got nan (float)",
    ),
    (
        "[sip.rate_limit]\nrate = inf",
        "sip.rate_limit.rate: expected a number greater than 0, got inf (float)",
    ),
    (
        "[sip.rate_limit]\nburst = 0",
        "sip.rate_limit.burst: expected an integer of at least 1, got 0 (integer)",
    ),
    (
        "[sip.rate_limit]\nmax_sources = 1.5",
        "sip.rate_limit.max_sources: expected an integer of at least 1, got 1.5 (float)",
    ),
    ("[sip.timers]\nt1 = -0.5", "sip.timers.t1: expected a number greater than 0, got -0.5 (float)"),
    ("[sip.timers]\nt2 = true", "sip.timers.t2: expected a number greater than 0, got true (boolean)"),
    ('[sip.timers]\nt4 = "5"', 'sip.timers.t4: expected a number greater than 0, got "5" (string)'),
    (
        "[sip.session_timer]\nsession_expires = 89",
        "sip.session_timer.session_expires: expected an integer from 90 to 86400, got 89 (integer)",
    ),
    (
        "[sip.session_timer]\nmin_se = 60",
        "sip.session_timer.min_se: expected an integer from 90 to 86400, got 60 (integer)",
    ),
    (
        '[sip]\nlisten = "127.0.0.256"',
        'sip.listen: expected an IPv4 or IPv6 address, got "127.0.0.256" (string)',
    ),
    ('[sip]\nudp_port = "abc"', 'sip.udp_port: expected an integer from 0 to 65535, got "abc" (string)'),
    ("[sip]\ntcp_port = 65536", "sip.tcp_port: expected an integer from 0 to 65535, got 65536 (integer)"),
    ("[sip]\ntls_port = -1", "sip.tls_port: expected an integer from 0 to 65535, got -1 (integer)"),
    (
        '[sip]\ntls_certificate = "/nonexistent/cert.pem"\ntls_private_key = "/nonexistent/key.pem"',
        'sip.tls_certificate: expected the path of an existing file (or empty), got "/nonexistent/cert.pem" '
        "(string)\n"
        'sip.tls_private_key: expected the path of an existing file (or empty), got "/nonexistent/key.pem" '
        "(string)",
    ),
    (
        "[sip]\nmax_message_size = 262145",
        "sip.max_message_size: expected an integer from 1024 to 262144, got 262145 (integer)",
    ),
    (
        '[sip]\nuser_agent = "a\\r\\nX-Injected: 1"',
        "sip.user_agent: expected a printable string of 1 to 128 characters, "
        'got "a\\u000d\\u000aX-Injected: 1" (string)',
    ),
    ('[sip]\ndomain = "a..b"', 'sip.domain: expected a host name or IP address, got "a..b" (string)'),
    ('[sip]\ntrace = "yes"', 'sip.trace: expected true or false, got "yes" (string)'),
    ("[sip]\nrate_limit = 5", "sip.rate_limit: expected a table, got 5 (integer)"),
    (
        '[media]\naddress = "localhost"',
        'media.address: expected an IPv4 or IPv6 address, got "localhost" (string)',
    ),
    (
        "[media]\nrtp_port_min = 1000",
        "media.rtp_port_min: expected an even integer from 1024 to 65534, got 1000 (integer)",
    ),
    (
        "[media]\nrtp_port_max = 70000",
        "media.rtp_port_max: expected an integer from 1025 to 65535, got 70000 (integer)",
    ),
    ("[media]\nworkers = -1", "media.workers: expected an integer from 0 to 64, got -1 (integer)"),
    ("[media]\ntimeout = 0", "media.timeout: expected a number greater than 0, got 0 (integer)"),
    ('[media]\nrecord = "yes"', 'media.record: expected true or false, got "yes" (string)'),
    ("[media]\ntranscode = 1", "media.transcode: expected true or false, got 1 (integer)"),
    (
        '[media]\nrecording_key = "/nonexistent/kek"',
        "media.recording_key: expected the path of a 32-byte key file (or empty), "
        'got "/nonexistent/kek" (string); no such file',
    ),
    (
        '[[routes]]\nmatch = "*"\ndestinations = ["cloud"]\nsrtp = "dtls"',
        'routes[0].srtp: expected one of "follow", "off" or "sdes", got "dtls" (string)',
    ),
    (
        '[cloud]\ntrunk = "sip:cc@"',
        'cloud.trunk: expected "" (no cloud) or a sip: or sips: URI, got "sip:cc@" (string); '
        "Missing host in sip: URI",
    ),
    (
        '[cloud]\ntrunk = "tel:+4930123"',
        'cloud.trunk: expected "" (no cloud) or a sip: or sips: URI, got "tel:+4930123" (string); '
        "Expected a sip: or sips: URI, got 'tel:+4930123'",
    ),
    (
        "[cloud]\nprobe_interval = 0",
        "cloud.probe_interval: expected a number greater than 0, got 0 (integer)",
    ),
    (
        "[cloud]\nprobe_timeout = -1",
        "cloud.probe_timeout: expected a number greater than 0, got -1 (integer)",
    ),
    (
        "[cloud]\nprobe_failures = 0",
        "cloud.probe_failures: expected an integer of at least 1, got 0 (integer)",
    ),
    (
        "[cloud]\nprobe_successes = 0",
        "cloud.probe_successes: expected an integer of at least 1, got 0 (integer)",
    ),
    ("[cloud]\nhold_down = -0.1", "cloud.hold_down: expected a number of at least 0, got -0.1 (float)"),
    (
        "[registrar]\nmin_expires = 0",
        "registrar.min_expires: expected an integer of at least 1, got 0 (integer)",
    ),
    (
        "[registrar]\nnonce_lifetime = 0",
        "registrar.nonce_lifetime: expected a number greater than 0, got 0 (integer)",
    ),
    (
        "[registrar]\nalgorithms = []",
        'registrar.algorithms: expected a non-empty array of "SHA-256" and "MD5", got [] (array)',
    ),
    (
        '[registrar]\nalgorithms = ["SHA-256", "sha1"]',
        'registrar.algorithms[1]: expected "SHA-256" or "MD5", got "sha1" (string)',
    ),
    (
        '[registrar]\nalgorithms = "MD5"',
        'registrar.algorithms: expected a non-empty array of "SHA-256" and "MD5", got "MD5" (string)',
    ),
    (
        '[[registrar.users]]\nusername = "al ice"\npassword = "x"',
        "registrar.users[0].username: expected a SIP user name "
        '(letters, digits and -_.!~*\'()&=+$, up to 64), got "al ice" (string)',
    ),
    (
        '[[registrar.users]]\nusername = "alice"\nha1_md5 = "abc"',
        'registrar.users[0].ha1_md5: expected 32 hexadecimal digits (or empty), got "abc" (string)',
    ),
    (
        '[[registrar.users]]\nusername = "alice"\nha1_sha256 = "0123456789abcdef0123456789abcdef"',
        "registrar.users[0].ha1_sha256: expected 64 hexadecimal digits (or empty), "
        'got "0123456789abcdef0123456789abcdef" (string)',
    ),
    (
        '[[registrar.users]]\npassword = "x"',
        "registrar.users[0].username: missing; expected a SIP user name "
        "(letters, digits and -_.!~*'()&=+$, up to 64)",
    ),
    ("[registrar]\nusers = [1]", "registrar.users[0]: expected a table, got 1 (integer)"),
    (
        '[[routes]]\nmatch = "+49"',
        "routes[0].destinations: missing; expected a non-empty array of destinations",
    ),
    (
        '[[routes]]\nmatch = "+49 30*"\ndestinations = ["cloud"]',
        'routes[0].match: expected "*", "+<digits>", "+<digits>*", an extension or "<extension>*", '
        'got "+49 30*" (string)',
    ),
    ('routes = "cloud"', 'routes: expected a non-empty array of routes, got "cloud" (string)'),
    (
        '[[agent_groups]]\nname = "-x"\nmembers = ["sip:a@127.0.0.1"]',
        "agent_groups[0].name: expected a name of letters, digits, '_', '-' and '.' (up to 64), "
        'got "-x" (string)',
    ),
    (
        '[[agent_groups]]\nname = "x"\nmembers = []',
        "agent_groups[0].members: expected a non-empty array of agents, got [] (array)",
    ),
    (
        '[[agent_groups]]\nname = "x"\nmembers = ["sip:"]',
        'agent_groups[0].members[0]: expected a SIP user name or a sip: or sips: URI, got "sip:" (string); '
        "Missing host in sip: URI",
    ),
    (
        '[[agent_groups]]\nname = "x"\nmembers = ["sip:a@127.0.0.1"]\nstrategy = "random"',
        'agent_groups[0].strategy: expected one of "ring-all" or "sequential", got "random" (string)',
    ),
    (
        '[[agent_groups]]\nname = "x"\nmembers = ["sip:a@127.0.0.1"]\nring_timeout = 0',
        "agent_groups[0].ring_timeout: expected a number greater than 0, got 0 (integer)",
    ),
    ('[noc]\nlisten = "::1::"', 'noc.listen: expected an IPv4 or IPv6 address, got "::1::" (string)'),
    ("[sync]\nport = 1e3", "sync.port: expected an integer from 0 to 65535, got 1000.0 (float)"),
    ('[logging]\nformat = "xml"', 'logging.format: expected one of "json" or "text", got "xml" (string)'),
    ("state_dir = 5", "state_dir: expected a directory path, got 5 (integer)"),
    ("site = []", "site: expected a table, got [] (array)"),
    (
        "[sip]\nlisten = 1979-05-27T07:32:00Z",
        "sip.listen: expected an IPv4 or IPv6 address, got 1979-05-27 07:32:00+00:00 (date-time)",
    ),
]


@pytest.mark.parametrize(("text", "message"), FIELD_CASES, ids=[m.split(":")[0] for _, m in FIELD_CASES])
def test_field_rule_message(text: str, message: str) -> None:
    assert "\n".join(issues_of(text)) == message


# --- cross-field checks -----------------------------------------------------------------------------------

CROSS_CASES = [
    ("[sip.timers]\nt1 = 5\nt2 = 4", "sip.timers.t1: expected at most t2 = 4, got 5.0 (float)"),
    (
        "[sip.session_timer]\nsession_expires = 120\nmin_se = 600",
        "sip.session_timer.min_se: expected at most session_expires = 120, got 600 (integer)",
    ),
    (
        "[media]\nrtp_port_min = 30000\nrtp_port_max = 30000",
        "media.rtp_port_max: expected more than rtp_port_min = 30000, got 30000 (integer)",
    ),
    (
        "[registrar]\nmin_expires = 600\nmax_expires = 300",
        "registrar.max_expires: expected at least min_expires = 600, got 300 (integer)",
    ),
    (
        "[registrar]\ndefault_expires = 30",
        "registrar.default_expires: expected from min_expires = 60 to max_expires = 3600, got 30 (integer)",
    ),
    (
        '[registrar]\nalgorithms = ["MD5", "MD5"]',
        'registrar.algorithms[1]: expected an algorithm named once, got "MD5" (string) (also algorithms[0])',
    ),
    (
        '[[registrar.users]]\nusername = "a"\npassword = "x"\n'
        '[[registrar.users]]\nusername = "a"\npassword = "y"',
        'registrar.users[1].username: expected a unique user name, got "a" (string) (also users[0].username)',
    ),
    (
        '[[registrar.users]]\nusername = "alice"',
        "registrar.users[0]: expected at least one of password, ha1_md5 or ha1_sha256; got none",
    ),
    (
        '[[routes]]\nmatch = "*"\ndestinations = ["cloud"]\n'
        '[[routes]]\nmatch = "*"\ndestinations = ["ivr:x"]',
        'routes[1].match: expected a match used by one route, got "*" (string) (also routes[0].match)',
    ),
    (
        '[[agent_groups]]\nname = "g"\nmembers = ["sip:a@127.0.0.1"]\n'
        '[[agent_groups]]\nname = "g"\nmembers = ["sip:b@127.0.0.1"]',
        'agent_groups[1].name: expected a unique group name, got "g" (string) (also agent_groups[0].name)',
    ),
    (
        '[[agent_groups]]\nname = "g"\nmembers = ["sip:a@127.0.0.1"]\n'
        '[[routes]]\nmatch = "*"\ndestinations = ["agents:h"]',
        'routes[0].destinations[0]: expected an agent group defined in [[agent_groups]] ("g"), '
        'got "agents:h" (string)',
    ),
    (
        '[[agent_groups]]\nname = "g"\nmembers = ["carol"]',
        "agent_groups[0].members[0]: expected a user defined in [[registrar.users]] or a sip: URI, "
        'got "carol" (string)',
    ),
    ("[media]\nrecord = true", "media.recording_key: required when record is true"),
    (
        '[[routes]]\nmatch = "*"\ndestinations = ["cloud"]\nrecord = true',
        "routes[0].record: requires media.recording_key",
    ),
    ("[sync]\nport = 5060", "sync.port: expected a TCP port not used by sip.tcp_port, got 5060 (integer)"),
    (
        '[sync]\nport = 2222\nlisten = "0.0.0.0"',
        "sync.port: expected a TCP port not used by noc.port, got 2222 (integer)",
    ),
    (
        "[sip]\nudp_port = 25000",
        "sip.udp_port: expected a UDP port outside the media RTP port range, got 25000 (integer)",
    ),
]


@pytest.mark.parametrize(("text", "message"), CROSS_CASES, ids=[m.split(":")[0] for _, m in CROSS_CASES])
def test_cross_field_message(text: str, message: str) -> None:
    assert "\n".join(issues_of(text)) == message


def test_listeners_on_different_addresses_or_ephemeral_ports_do_not_clash() -> None:
    c = load_config_text('[sync]\nport = 2222\nlisten = "127.0.0.2"\n[noc]\nport = 0\n[metrics]\nport = 0\n')
    assert (c.sync.port, c.noc.port, c.metrics.port) == (2222, 0, 0)
    # The RTP range on another address does not clash with SIP's UDP port.
    c = load_config_text('[sip]\nudp_port = 25000\n[media]\naddress = "127.0.0.2"\n')
    assert c.sip.udp_port == 25000


def test_cloud_destination_is_allowed_without_a_trunk() -> None:
    c = load_config_text('[[routes]]\nmatch = "+49*"\ndestinations = ["cloud", "ivr:default"]\n')
    assert not c.cloud.configured
    assert c.routes[0].destinations[0] == Destination("cloud", "")


def test_tls_files_must_come_together_and_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("certificate")
    key.write_text("key")
    c = load_config_text(f'[sip]\ntls_certificate = "{cert}"\ntls_private_key = "{key}"\n')
    assert c.sip.tls_enabled and c.sip.tls_private_key == str(key)
    assert only_issue(f'[sip]\ntls_certificate = "{cert}"') == (
        "sip.tls_private_key: required when tls_certificate is set"
    )
    assert only_issue(f'[sip]\ntls_private_key = "{key}"') == (
        "sip.tls_certificate: required when tls_private_key is set"
    )
    monkeypatch.chdir(tmp_path)  # relative paths are relative to the working directory
    assert load_config_text(
        '[sip]\ntls_certificate = "cert.pem"\ntls_private_key = "key.pem"'
    ).sip.tls_enabled
    (tmp_path / "certs").mkdir()
    assert only_issue('[sip]\ntls_certificate = "certs"\ntls_private_key = "key.pem"') == (
        'sip.tls_certificate: expected the path of an existing file (or empty), got "certs" (string)'
    )
    # With TLS on, its port joins the TCP clash check.
    doc = f'[sip]\ntls_certificate = "{cert}"\ntls_private_key = "{key}"\ntls_port = 2222\n'
    assert only_issue(doc) == "noc.port: expected a TCP port not used by sip.tls_port, got 2222 (integer)"


def test_long_and_odd_values_are_shown_on_one_short_line() -> None:
    long = "x" * 300
    assert (
        only_issue(f'state_dir = "{long}"')
        == f'state_dir: expected a directory path, got "{"x" * 160}…" (string)'
    )
    assert only_issue('[site]\nname = "tab\\there"') == (
        'site.name: expected a non-empty site name, got "tab\\u0009here" (string)'
    )
    assert issues_of("[registrar]\nalgorithms = [1, true, 2.5, [3], {a = 1}]") == [
        'registrar.algorithms[0]: expected "SHA-256" or "MD5", got 1 (integer)',
        'registrar.algorithms[1]: expected "SHA-256" or "MD5", got true (boolean)',
        'registrar.algorithms[2]: expected "SHA-256" or "MD5", got 2.5 (float)',
        'registrar.algorithms[3]: expected "SHA-256" or "MD5", got [3] (array)',
        'registrar.algorithms[4]: expected "SHA-256" or "MD5", got a table',
    ]
    assert only_issue('[registrar]\nmin_expires = [1, true, 2.5, "s", [3], {a = 1}]') == (
        'registrar.min_expires: expected an integer of at least 1, got [1, true, 2.5, "s", […], {…}] (array)'
    )


def test_recording_needs_a_32_byte_key_file(tmp_path: Path) -> None:
    key = tmp_path / "kek"
    key.write_bytes(bytes(32))
    c = load_config_text(
        f'[media]\nrecord = true\nrecording_key = "{key}"\n'
        '[[routes]]\nmatch = "*"\ndestinations = ["cloud"]\nrecord = true\nsrtp = "sdes"\n'
    )
    assert c.media.record and c.media.recording_key == str(key)
    assert c.routes[0].record and c.routes[0].srtp == "sdes"
    # The recordings go under the state directory unless a directory is named.
    assert c.media.recording_path("var") == "var/recordings"
    key.write_bytes(bytes(31))
    assert only_issue(f'[media]\nrecording_key = "{key}"') == (
        f'media.recording_key: expected the path of a 32-byte key file (or empty), got "{key}" (string); '
        "it holds 31 bytes"
    )


def test_media_defaults_relay_with_one_worker_per_core_and_no_recording() -> None:
    c = load_config_text("")
    m = c.media
    assert (m.workers, m.timeout, m.record, m.recording_dir, m.recording_key, m.transcode, m.fastpath) == (
        0, 30.0, False, "", "", True, False,
    )  # fmt: skip
    assert all(r.srtp == "follow" and not r.record for r in c.routes)
