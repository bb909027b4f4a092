"""Digest authentication: header vectors, the RFC 7616 §3.9.1 worked examples, the server's nonce and
replay rules, the client's answers, and parser totality."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.sip.digest import (
    AuthOutcome,
    DigestChallenge,
    DigestCredentials,
    DigestServer,
    authorization_for,
    format_challenge,
    format_credentials,
    ha1,
    parse_challenge,
    parse_credentials,
    select_challenge,
    uri_matches,
)
from appliance.sip.errors import DecodeError, LocalProtocolError

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "digest"
SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "localhost"
URI = "sip:localhost"
LIFETIME = 300.0
FUZZ_EXAMPLES = int(os.environ.get("APPLIANCE_FUZZ_EXAMPLES", "300"))

# RFC 7616 §3.9.1
RFC_PASSWORD = "Circle of Life"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_RESPONSES = {
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
}


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8").removesuffix("\n")


def _parser(path: Path) -> object:
    return parse_challenge if path.name.startswith("challenge") else parse_credentials


def _format(parsed: DigestChallenge | DigestCredentials) -> str:
    return format_challenge(parsed) if isinstance(parsed, DigestChallenge) else format_credentials(parsed)


def _counter_bytes() -> object:
    counter = iter(range(1, 1 << 30))
    return lambda n: next(counter).to_bytes(n, "big")


def _server(**overrides: object) -> DigestServer:
    kwargs: dict[str, object] = {
        "realm": REALM,
        "secret": SECRET,
        "nonce_lifetime": LIFETIME,
        "algorithms": ["MD5", "SHA-256"],
        "random_bytes": _counter_bytes(),
    }
    kwargs.update(overrides)
    return DigestServer(**kwargs)  # type: ignore[arg-type]


PASSWORDS = {"alice": "wonderland", "bob": "builder"}


class RecordingStore:
    """A credential store that remembers what it was asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def __call__(self, username: str, algorithm: str) -> str | None:
        self.asked.append((username, algorithm))
        password = PASSWORDS.get(username)
        return None if password is None else ha1(username, REALM, password, algorithm)


def _lookup(username: str, algorithm: str) -> str | None:
    password = PASSWORDS.get(username)
    return None if password is None else ha1(username, REALM, password, algorithm)


def _answer(
    server: DigestServer,
    now: float,
    *,
    algorithm: str = "SHA-256",
    username: str = "alice",
    password: str = "wonderland",
    nc: int = 1,
    uri: str = URI,
    stale: bool = False,
) -> DigestCredentials:
    challenges = [parse_challenge(v) for v in server.challenge(now, stale=stale)]
    challenge = next(c for c in challenges if c.algorithm == algorithm)
    value = authorization_for(
        challenge, method="REGISTER", uri=uri, username=username, password=password, cnonce="0a4f113b", nc=nc
    )
    return parse_credentials(value)


def _verify(server: DigestServer, credentials: DigestCredentials, now: float) -> AuthOutcome:
    return server.verify(credentials, method="REGISTER", ha1_lookup=_lookup, now=now).outcome


# --------------------------------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("path", sorted((VECTORS / "valid").glob("*.txt")), ids=lambda p: p.stem)
def test_valid_vector(path: Path) -> None:
    parsed = _parser(path)(_read(path))  # type: ignore[operator]
    expected = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    fields = dataclasses.asdict(parsed)
    if "qop" in expected and isinstance(expected["qop"], list):
        expected["qop"] = tuple(expected["qop"])
    assert fields == expected
    # Serializing and parsing again gives the same value.
    formatted = (
        format_challenge(parsed) if isinstance(parsed, DigestChallenge) else format_credentials(parsed)
    )
    assert _parser(path)(formatted) == parsed  # type: ignore[operator]


@pytest.mark.parametrize("path", sorted((VECTORS / "invalid").glob("*.txt")), ids=lambda p: p.stem)
def test_invalid_vector(path: Path) -> None:
    with pytest.raises(DecodeError) as info:
        _parser(path)(_read(path))  # type: ignore[operator]
    assert info.value.status == 400
    assert info.value.reason == _read(path.with_suffix(".reason"))


def test_every_invalid_vector_has_a_reason() -> None:
    texts = {p.stem for p in (VECTORS / "invalid").glob("*.txt")}
    reasons = {p.stem for p in (VECTORS / "invalid").glob("*.reason")}
    assert texts and texts == reasons


def test_proxy_header_names_appear_in_reasons() -> None:
    with pytest.raises(DecodeError, match=r"^Malformed Proxy-Authenticate header: missing nonce$"):
        parse_challenge('Digest realm="x"', header="Proxy-Authenticate")
    with pytest.raises(DecodeError, match=r"^Malformed Proxy-Authorization header: missing uri$"):
        parse_credentials('Digest username="a", realm="x", nonce="n"', header="Proxy-Authorization")


def test_control_characters_and_oversized_values_are_refused() -> None:
    with pytest.raises(DecodeError, match="control character"):
        parse_challenge('Digest realm="a\x00b", nonce="n"')
    with pytest.raises(DecodeError, match="longer than 4096"):
        parse_challenge('Digest realm="localhost", nonce="' + "n" * 5000 + '"')
    many = ", ".join(f"p{i}=1" for i in range(40))
    with pytest.raises(DecodeError, match="more than 32 parameters"):
        parse_challenge(f'Digest realm="localhost", nonce="n", {many}')


# ----------------------------------------------------------------------------------- RFC 7616 §3.9.1 examples


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_rfc7616_worked_example(algorithm: str) -> None:
    name = "sha256" if algorithm == "SHA-256" else "md5"
    challenge = parse_challenge(_read(VECTORS / "valid" / f"challenge-rfc7616-{name}.txt"))
    value = authorization_for(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password=RFC_PASSWORD,
        cnonce=RFC_CNONCE,
    )
    answer = parse_credentials(value)
    assert answer.response == RFC_RESPONSES[algorithm]
    # The answer carries everything the RFC's Authorization example does.
    rfc = parse_credentials(_read(VECTORS / "valid" / f"credentials-rfc7616-{name}.txt"))
    assert answer == rfc


# ------------------------------------------------------------------------------------------------ the server


def test_challenges_are_one_per_algorithm_strongest_first() -> None:
    server = _server(algorithms=["MD5", "SHA-256"])
    challenges = [parse_challenge(v) for v in server.challenge(0.0)]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert all(c.realm == REALM and c.qop == ("auth",) and not c.stale for c in challenges)
    assert challenges[0].nonce == challenges[1].nonce
    assert all(parse_challenge(v).stale for v in server.challenge(0.0, stale=True))
    # Each challenge gets a fresh nonce, so two clients never share a nonce-count.
    assert parse_challenge(server.challenge(0.0)[0]).nonce != challenges[0].nonce


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_round_trip_ok(algorithm: str) -> None:
    server = _server()
    store = RecordingStore()
    credentials = _answer(server, 0.0, algorithm=algorithm)
    result = server.verify(credentials, method="REGISTER", ha1_lookup=store, now=1.0)
    assert result.outcome is AuthOutcome.OK
    assert result.ok and result.username == "alice"
    assert store.asked == [("alice", algorithm)]


@pytest.mark.parametrize("algorithm", ["SHA-256-sess", "MD5-sess", "SHA-512-256"])
def test_round_trip_other_algorithms(algorithm: str) -> None:
    server = _server(algorithms=[algorithm])
    store = RecordingStore()
    credentials = _answer(server, 0.0, algorithm=algorithm)
    assert server.verify(credentials, method="REGISTER", ha1_lookup=store, now=1.0).outcome is AuthOutcome.OK
    # The credential store is asked for the base algorithm's HA1: the session key is derived per request.
    assert store.asked == [("alice", algorithm.removesuffix("-sess"))]


def test_wrong_password_fails() -> None:
    server = _server()
    result = server.verify(
        _answer(server, 0.0, password="guess"), method="REGISTER", ha1_lookup=_lookup, now=1.0
    )
    assert result.outcome is AuthOutcome.FAILED
    assert "wrong response" in result.reason


def test_wrong_method_fails() -> None:
    server = _server()
    credentials = _answer(server, 0.0)
    result = server.verify(credentials, method="INVITE", ha1_lookup=_lookup, now=1.0)
    assert result.outcome is AuthOutcome.FAILED


def test_unknown_user_fails() -> None:
    server = _server()
    result = server.verify(
        _answer(server, 0.0, username="mallory"), method="REGISTER", ha1_lookup=_lookup, now=1.0
    )
    assert result.outcome is AuthOutcome.FAILED
    assert result.reason == "unknown user"


def test_expired_nonce_is_stale_only_with_the_right_password() -> None:
    server = _server()
    good = _answer(server, 0.0)
    assert _verify(server, good, LIFETIME) is AuthOutcome.OK  # the boundary itself is still fresh
    server = _server()
    good = _answer(server, 0.0)
    result = server.verify(good, method="REGISTER", ha1_lookup=_lookup, now=LIFETIME + 1.0)
    assert result.outcome is AuthOutcome.STALE
    assert "old" in result.reason
    bad = _answer(server, 0.0, password="guess")
    assert _verify(server, bad, LIFETIME + 1.0) is AuthOutcome.FAILED
    # A fresh challenge then succeeds.
    assert _verify(server, _answer(server, LIFETIME + 1.0), LIFETIME + 2.0) is AuthOutcome.OK


def test_nonce_from_a_previous_clock_run_is_stale() -> None:
    server = _server()
    credentials = _answer(server, 5000.0)
    assert _verify(server, credentials, 10.0) is AuthOutcome.STALE


def test_forged_nonce_fails() -> None:
    server = _server()
    genuine = parse_challenge(server.challenge(0.0)[0])
    # Re-date the nonce: change its first character (the issue time) and answer it correctly.
    forged_nonce = ("B" if genuine.nonce[0] != "B" else "C") + genuine.nonce[1:]
    for nonce in (forged_nonce, "not-a-nonce", genuine.nonce[:-4]):
        forged = dataclasses.replace(genuine, nonce=nonce)
        value = authorization_for(
            forged, method="REGISTER", uri=URI, username="alice", password="wonderland", cnonce="c"
        )
        result = server.verify(parse_credentials(value), method="REGISTER", ha1_lookup=_lookup, now=1.0)
        assert result.outcome is AuthOutcome.FAILED
        assert result.reason == "nonce was not issued by this server"


def test_nonce_of_another_secret_or_realm_fails() -> None:
    other = _server(secret=b"another secret of 32 octets....!")
    credentials = _answer(other, 0.0)
    assert _verify(_server(), credentials, 1.0) is AuthOutcome.FAILED
    # The realm is inside the MAC: a nonce minted for another realm does not verify here.
    foreign = _server(realm="other")
    nonce = parse_challenge(foreign.challenge(0.0)[0]).nonce
    challenge = DigestChallenge(realm=REALM, nonce=nonce, algorithm="SHA-256", qop=("auth",))
    value = authorization_for(
        challenge, method="REGISTER", uri=URI, username="alice", password="wonderland", cnonce="c"
    )
    assert _verify(_server(), parse_credentials(value), 1.0) is AuthOutcome.FAILED


def test_replayed_nonce_count_fails() -> None:
    server = _server()
    first = _answer(server, 0.0, nc=1)
    assert _verify(server, first, 1.0) is AuthOutcome.OK
    result = server.verify(first, method="REGISTER", ha1_lookup=_lookup, now=2.0)
    assert result.outcome is AuthOutcome.FAILED
    assert "replayed" in result.reason
    challenge = DigestChallenge(realm=REALM, nonce=first.nonce, algorithm="SHA-256", qop=("auth",))

    def with_nc(nc: int) -> DigestCredentials:
        value = authorization_for(
            challenge, method="REGISTER", uri=URI, username="alice", password="wonderland", cnonce="c2", nc=nc
        )
        return parse_credentials(value)

    assert _verify(server, with_nc(3), 3.0) is AuthOutcome.OK
    assert _verify(server, with_nc(2), 4.0) is AuthOutcome.FAILED  # lower than seen
    assert _verify(server, with_nc(4), 5.0) is AuthOutcome.OK


def test_failed_attempts_do_not_consume_the_nonce_count() -> None:
    server = _server()
    nonce_owner = _answer(server, 0.0, password="guess", nc=9)
    assert _verify(server, nonce_owner, 1.0) is AuthOutcome.FAILED
    challenge = DigestChallenge(realm=REALM, nonce=nonce_owner.nonce, algorithm="SHA-256", qop=("auth",))
    value = authorization_for(
        challenge, method="REGISTER", uri=URI, username="alice", password="wonderland", cnonce="c"
    )
    assert _verify(server, parse_credentials(value), 2.0) is AuthOutcome.OK
    assert server.tracked_nonces == 1


def test_replay_map_is_bounded_and_eviction_never_reopens_a_nonce() -> None:
    server = _server(max_nonces=2)
    used = []
    for i in range(3):
        credentials = _answer(server, float(i))
        assert _verify(server, credentials, float(i) + 0.5) is AuthOutcome.OK
        used.append(credentials)
    assert server.tracked_nonces == 2
    # The evicted (oldest) nonce: its count is forgotten, so it is stale rather than replayable.
    assert _verify(server, used[0], 10.0) is AuthOutcome.STALE
    # The ones still tracked keep refusing replays.
    assert _verify(server, used[2], 10.0) is AuthOutcome.FAILED


def test_expired_nonce_counts_are_dropped() -> None:
    server = _server()
    for i in range(5):
        assert _verify(server, _answer(server, float(i)), float(i)) is AuthOutcome.OK
    assert server.tracked_nonces == 5
    later = LIFETIME + 10.0
    assert _verify(server, _answer(server, later), later) is AuthOutcome.OK
    assert server.tracked_nonces == 1


def test_algorithm_not_offered_fails() -> None:
    server = _server(algorithms=["SHA-256"])
    nonce = parse_challenge(server.challenge(0.0)[0]).nonce
    md5 = DigestChallenge(realm=REALM, nonce=nonce, algorithm="MD5", qop=("auth",))
    value = authorization_for(
        md5, method="REGISTER", uri=URI, username="alice", password="wonderland", cnonce="c"
    )
    result = server.verify(parse_credentials(value), method="REGISTER", ha1_lookup=_lookup, now=1.0)
    assert result.outcome is AuthOutcome.FAILED
    assert "not offered" in result.reason


def test_realm_mismatch_fails() -> None:
    server = _server()
    credentials = dataclasses.replace(_answer(server, 0.0), realm="other")
    assert _verify(server, credentials, 1.0) is AuthOutcome.FAILED


def test_answer_without_qop_fails_because_qop_auth_was_asked() -> None:
    server = _server()
    nonce = parse_challenge(server.challenge(0.0)[0]).nonce
    rfc2069 = DigestChallenge(realm=REALM, nonce=nonce, algorithm="SHA-256")
    value = authorization_for(
        rfc2069, method="REGISTER", uri=URI, username="alice", password="wonderland", cnonce="c"
    )
    result = server.verify(parse_credentials(value), method="REGISTER", ha1_lookup=_lookup, now=1.0)
    assert result.outcome is AuthOutcome.FAILED
    assert "qop=auth" in result.reason


def test_opaque_must_come_back() -> None:
    server = _server(opaque="ab12")
    challenge = parse_challenge(server.challenge(0.0)[0])
    assert challenge.opaque == "ab12"
    credentials = _answer(server, 0.0)
    assert credentials.opaque == "ab12"
    assert _verify(server, credentials, 1.0) is AuthOutcome.OK
    stripped = dataclasses.replace(_answer(server, 0.0), opaque=None)
    assert _verify(server, stripped, 1.0) is AuthOutcome.FAILED


def test_server_refuses_bad_configuration() -> None:
    with pytest.raises(LocalProtocolError):
        _server(secret=b"short")
    with pytest.raises(LocalProtocolError):
        _server(algorithms=["SHA-1"])
    with pytest.raises(LocalProtocolError):
        _server(algorithms=[])
    with pytest.raises(LocalProtocolError):
        _server(nonce_lifetime=0)


# ------------------------------------------------------------------------------------------------ the client


def _h(name: str, text: str) -> str:
    return hashlib.new(name, text.encode()).hexdigest()


def test_client_answers_rfc2069_challenge_without_qop() -> None:
    challenge = DigestChallenge(realm=REALM, nonce="n0nce", algorithm="MD5")
    answer = parse_credentials(
        authorization_for(
            challenge, method="INVITE", uri=URI, username="bob", password="builder", cnonce="ignored"
        )
    )
    assert answer.qop is None and answer.nc is None and answer.cnonce is None
    ha1_hex = _h("md5", f"bob:{REALM}:builder")
    assert answer.response == _h("md5", f"{ha1_hex}:n0nce:{_h('md5', f'INVITE:{URI}')}")


def test_client_answers_auth_int_with_the_body_hash() -> None:
    challenge = DigestChallenge(realm=REALM, nonce="n1", algorithm="SHA-256", qop=("auth-int",))
    body = b"v=0\r\n"
    answer = parse_credentials(
        authorization_for(
            challenge,
            method="INVITE",
            uri=URI,
            username="bob",
            password="builder",
            cnonce="cn",
            nc=2,
            body=body,
        )
    )
    assert answer.qop == "auth-int" and answer.nc == "00000002"
    ha1_hex = _h("sha256", f"bob:{REALM}:builder")
    ha2 = _h("sha256", f"INVITE:{URI}:{hashlib.sha256(body).hexdigest()}")
    assert answer.response == _h("sha256", f"{ha1_hex}:n1:00000002:cn:auth-int:{ha2}")


def test_client_prefers_auth_and_escapes_quotes() -> None:
    challenge = DigestChallenge(
        realm='a "quoted" realm', nonce="n", algorithm="MD5", qop=("auth-int", "auth")
    )
    value = authorization_for(challenge, method="REGISTER", uri=URI, username='x"y', password="p", cnonce="c")
    answer = parse_credentials(value)
    assert answer.qop == "auth" and answer.realm == 'a "quoted" realm' and answer.username == 'x"y'


def test_client_refuses_what_it_cannot_answer() -> None:
    with pytest.raises(LocalProtocolError):
        authorization_for(
            DigestChallenge(realm=REALM, nonce="n", algorithm="SHA3-512", qop=("auth",)),
            method="REGISTER", uri=URI, username="a", password="b", cnonce="c",
        )  # fmt: skip
    with pytest.raises(LocalProtocolError):
        authorization_for(
            DigestChallenge(realm=REALM, nonce="n", algorithm="MD5", qop=("auth-conf",)),
            method="REGISTER", uri=URI, username="a", password="b", cnonce="c",
        )  # fmt: skip
    with pytest.raises(LocalProtocolError):
        authorization_for(
            DigestChallenge(realm=REALM, nonce="n", algorithm="MD5", qop=("auth",)),
            method="REGISTER", uri=URI, username="a", password="b", cnonce="c", nc=0,
        )  # fmt: skip


def test_select_challenge_takes_the_topmost_supported() -> None:
    unknown = DigestChallenge(realm=REALM, nonce="n", algorithm="SHA3-512", qop=("auth",))
    sha = DigestChallenge(realm=REALM, nonce="n", algorithm="SHA-256", qop=("auth",))
    md5 = DigestChallenge(realm=REALM, nonce="n", algorithm="MD5", qop=("auth",))
    assert select_challenge([unknown, sha, md5]) is sha
    assert select_challenge([md5, sha]) is md5
    assert select_challenge([unknown]) is None


def test_ha1_session_variant_stores_the_base_value() -> None:
    assert ha1("a", "r", "p", "SHA-256-sess") == ha1("a", "r", "p", "sha-256") == _h("sha256", "a:r:p")
    with pytest.raises(LocalProtocolError):
        ha1("a", "r", "p", "SHA-1")


# ------------------------------------------------------------------------------------------------ uri_matches


@pytest.mark.parametrize(
    ("digest_uri", "request_uri", "expected"),
    [
        ("sip:localhost", "sip:localhost", True),
        ("sip:LocalHost", "sip:localhost", True),
        ("sip:%61lice@127.0.0.1", "sip:alice@127.0.0.1", True),
        ("sip:127.0.0.1;TRANSPORT=TCP", "sip:127.0.0.1;transport=tcp", True),
        ("sip:127.0.0.1:5060", "sip:127.0.0.1", False),
        ("sip:alice@127.0.0.1", "sip:Alice@127.0.0.1", False),
        ("sips:localhost", "sip:localhost", False),
        ("sip:127.0.0.2", "sip:127.0.0.1", False),
        ("not a uri", "sip:localhost", False),
    ],
)
def test_uri_matches(digest_uri: str, request_uri: str, expected: bool) -> None:
    credentials = DigestCredentials(username="a", realm=REALM, nonce="n", uri=digest_uri, response="00")
    assert uri_matches(credentials, request_uri) is expected


# ------------------------------------------------------------------------------------------ parser totality


def _valid_texts() -> list[str]:
    return [_read(p) for p in sorted((VECTORS / "valid").glob("*.txt"))]


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_valid_texts()))
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        op = draw(st.sampled_from(["delete", "insert", "replace", "truncate"]))
        ch = draw(st.sampled_from([*'"\\,= \t;:<>\x00\x7fé', draw(st.characters())]))
        if op == "delete":
            text = text[:i] + text[i + 1 :]
        elif op == "insert":
            text = text[:i] + ch + text[i:]
        elif op == "replace":
            text = text[:i] + ch + text[i + 1 :]
        else:
            text = text[:i]
    return text


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True)
@given(
    st.one_of(st.text(max_size=300), _mutated(), st.text(alphabet='Digest ,="\\abcnoqrealm', max_size=120))
)
def test_parsers_are_total(text: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        try:
            parsed = parse(text)
        except DecodeError as exc:
            assert exc.status == 400 and exc.reason.startswith("Malformed ")
        else:
            # Whatever parses also survives formatting and parsing again.
            assert parse(_format(parsed)) == parsed


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True)
@given(st.text(max_size=200))
def test_verify_is_total_on_parsed_garbage(text: str) -> None:
    server = _server()
    try:
        credentials = parse_credentials(text)
    except DecodeError:
        return
    assert (
        server.verify(credentials, method="REGISTER", ha1_lookup=_lookup, now=0.0).outcome
        is not AuthOutcome.OK
    )
