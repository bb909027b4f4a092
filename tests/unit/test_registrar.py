"""The registrar, message level: REGISTER requests are written as bytes, parsed with ``parse_message``, fed
to the registrar, and the responses and bindings checked (RFC 3261 §10.3)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from email.utils import formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.sip.builder import IdFactory
from appliance.sip.digest import (
    DigestChallenge,
    DigestServer,
    authorization_for,
    ha1,
    parse_challenge,
    select_challenge,
)
from appliance.sip.errors import DecodeError, LocalProtocolError
from appliance.sip.headers import parse_name_addr
from appliance.sip.message import Request, Response, parse_message
from appliance.sip.registrar import Binding, Registrar

DOMAIN = "localhost"
PASSWORDS = {"alice": "wonderland", "bob": "builder", "carol": "singer"}
WALL_CLOCK = 1_767_225_600.0  # the Date header is taken from this injected clock
SOURCE = ("127.0.0.1", 5070)
FUZZ_EXAMPLES = int(os.environ.get("APPLIANCE_FUZZ_EXAMPLES", "300"))


def _credentials(username: str, algorithm: str) -> str | None:
    password = PASSWORDS.get(username)
    return None if password is None else ha1(username, DOMAIN, password, algorithm)


def _counter_bytes() -> Callable[[int], bytes]:
    counter = iter(range(1, 1 << 30))
    return lambda n: next(counter).to_bytes(n, "big")


def make_registrar(**overrides: object) -> Registrar:
    digest = DigestServer(
        realm=DOMAIN, secret=b"registrar test secret, 32 octets", nonce_lifetime=300.0,
        algorithms=["MD5", "SHA-256"], random_bytes=_counter_bytes(),
    )  # fmt: skip
    kwargs: dict[str, object] = {
        "domain": DOMAIN, "digest": digest, "credentials": _credentials, "min_expires": 60,
        "max_expires": 7200, "default_expires": 3600, "wall_clock": lambda: WALL_CLOCK,
        "ids": IdFactory(_counter_bytes()),
    }  # fmt: skip
    kwargs.update(overrides)
    return Registrar(**kwargs)  # type: ignore[arg-type]


def register_bytes(
    *,
    user: str = "alice",
    to: str | None = None,
    call_id: str = "reg-alice@127.0.0.1",
    cseq: int = 1,
    contacts: Sequence[str] = ("<sip:alice@127.0.0.1:5070>",),
    expires: str | int | None = None,
    authorization: str | None = None,
    request_uri: str = "sip:localhost",
    extra: Sequence[str] = (),
) -> bytes:
    lines = [
        f"REGISTER {request_uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK{call_id.partition('@')[0]}{cseq}",
        "Max-Forwards: 70",
        f"From: <sip:{user}@localhost>;tag=from{cseq}",
        f"To: {to or f'<sip:{user}@localhost>'}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *(f"Contact: {c}" for c in contacts),
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    lines.extend(extra)
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send(registrar: Registrar, data: bytes, now: float, *, transport: str = "udp") -> Response:
    request = parse_message(data)
    assert isinstance(request, Request)
    response = registrar.handle_register(request, source=SOURCE, transport=transport, now=now)
    # Every response is a well-formed message that survives the wire.
    again = parse_message(response.to_bytes())
    assert isinstance(again, Response) and again.status == response.status
    assert response.to.tag is not None  # responses to REGISTER carry a To tag
    assert response.call_id == request.call_id and response.cseq == request.cseq
    return response


class Phone:
    """A registering endpoint: answers the registrar's challenge, keeps its Call-ID and counts CSeq and nc."""

    def __init__(
        self,
        registrar: Registrar,
        *,
        user: str = "alice",
        password: str | None = None,
        algorithm: str = "SHA-256",
        call_id: str | None = None,
    ) -> None:
        self.registrar = registrar
        self.user = user
        self.password = password if password is not None else PASSWORDS[user]
        self.algorithm = algorithm
        self.call_id = call_id or f"reg-{user}@127.0.0.1"
        self.cseq = 0
        self.challenge: DigestChallenge | None = None
        self.nc = 0
        self.last_401: Response | None = None

    def next_request(self, **fields: object) -> bytes:
        """The bytes of the next REGISTER: CSeq and nc counted, answering the last challenge if any."""
        self.cseq += 1
        request_uri = str(fields.get("request_uri", "sip:localhost"))
        authorization = None
        if self.challenge is not None:
            self.nc += 1
            authorization = authorization_for(
                self.challenge, method="REGISTER", uri=request_uri, username=self.user,
                password=self.password, cnonce=f"cn{self.nc}", nc=self.nc,
            )  # fmt: skip
        return register_bytes(
            user=self.user, call_id=self.call_id, cseq=self.cseq, authorization=authorization, **fields  # type: ignore[arg-type]
        )  # fmt: skip

    def register(self, now: float, *, transport: str = "udp", **fields: object) -> Response:
        """Send a REGISTER; on a 401, take the challenge and send it again once."""
        response = send(self.registrar, self.next_request(**fields), now, transport=transport)
        if response.status == 401:
            self.last_401 = response
            challenges = [parse_challenge(v) for v in response.headers.get_lines("www-authenticate")]
            preferred = [c for c in challenges if c.algorithm == self.algorithm]
            self.challenge = preferred[0] if preferred else select_challenge(challenges)
            self.nc = 0
            response = send(self.registrar, self.next_request(**fields), now, transport=transport)
        return response


def contacts_of(response: Response) -> dict[str, str | None]:
    """Contact URI -> its expires parameter, for every Contact of a response."""
    out: dict[str, str | None] = {}
    for value in response.headers.get_all("contact"):
        contact = parse_name_addr(value, what="Contact")
        out[contact.uri] = contact.params.get("expires")
    return out


# ------------------------------------------------------------------------------------------ authentication


def test_first_register_is_challenged_with_both_algorithms() -> None:
    registrar = make_registrar()
    response = send(registrar, register_bytes(), 0.0)
    assert response.status == 401
    challenges = [parse_challenge(v) for v in response.headers.get_lines("www-authenticate")]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert all(c.realm == DOMAIN and c.qop == ("auth",) and not c.stale for c in challenges)
    assert response.headers.get("via") == "SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bKreg-alice1"
    assert registrar.count == 0 and registrar.lookup("alice", 0.0) == []


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_register_with_credentials_creates_a_binding(algorithm: str) -> None:
    registrar = make_registrar()
    phone = Phone(registrar, algorithm=algorithm)
    response = phone.register(10.0)
    assert response.status == 200
    assert contacts_of(response) == {"sip:alice@127.0.0.1:5070": "3600"}
    assert response.headers.get("date") == formatdate(WALL_CLOCK, usegmt=True)
    [binding] = registrar.lookup("alice", 10.0)
    assert binding == Binding(
        aor="sip:alice@localhost", contact=parse_name_addr("<sip:alice@127.0.0.1:5070>", what="Contact"),
        uri="sip:alice@127.0.0.1:5070", expires_at=3610.0, call_id="reg-alice@127.0.0.1", cseq=2, q=1.0,
        source=SOURCE, transport="udp", registered_at=10.0,
    )  # fmt: skip
    assert registrar.count == 1
    assert registrar.get_timer() == 3610.0


def test_another_users_credentials_are_forbidden() -> None:
    registrar = make_registrar()
    phone = Phone(registrar, user="alice")
    response = phone.register(0.0, to="<sip:bob@localhost>")
    assert response.status == 403
    assert "does not own" in response.reason
    assert registrar.lookup("bob", 0.0) == [] and registrar.lookup("alice", 0.0) == []


@pytest.mark.parametrize(
    ("user", "password"), [("alice", "guess"), ("mallory", "x")], ids=["password", "user"]
)
def test_wrong_credentials_are_challenged_again(user: str, password: str) -> None:
    registrar = make_registrar()
    response = Phone(registrar, user=user, password=password).register(0.0)
    assert response.status == 401
    assert not parse_challenge(response.headers.get_lines("www-authenticate")[0]).stale
    assert registrar.count == 0


def test_old_nonce_gets_a_stale_challenge_then_succeeds() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(0.0).status == 200
    old_nonce = phone.challenge.nonce if phone.challenge else None
    response = phone.register(400.0)  # the nonce is 400 s old, its lifetime is 300 s
    assert phone.last_401 is not None
    stale = [parse_challenge(v) for v in phone.last_401.headers.get_lines("www-authenticate")]
    assert all(c.stale for c in stale)
    assert response.status == 200
    assert phone.challenge is not None and phone.challenge.nonce != old_nonce


def test_replayed_register_is_refused() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    captured = phone.next_request()  # no challenge yet: 401
    assert send(registrar, captured, 0.0).status == 401
    assert phone.register(0.0).status == 200
    replayed = phone.next_request()
    assert send(registrar, replayed, 1.0).status == 200
    # The same bytes again: the nonce-count is used up.
    assert send(registrar, replayed, 2.0).status == 401


def test_digest_uri_must_be_the_request_uri() -> None:
    registrar = make_registrar()
    first = send(registrar, register_bytes(), 0.0)
    challenge = parse_challenge(first.headers.get_lines("www-authenticate")[0])
    auth = authorization_for(
        challenge, method="REGISTER", uri="sip:127.0.0.1", username="alice", password="wonderland", cnonce="c"
    )
    response = send(registrar, register_bytes(cseq=2, authorization=auth), 0.0)
    assert response.status == 400
    assert "digest uri" in response.reason


def test_malformed_authorization_is_a_400_naming_the_fault() -> None:
    registrar = make_registrar()
    malformed = 'Digest username="alice", realm="localhost"'
    response = send(registrar, register_bytes(authorization=malformed), 0.0)
    assert response.status == 400
    assert response.reason == "Bad Request (Malformed Authorization header: missing nonce)"


def test_credentials_for_another_realm_are_ignored() -> None:
    registrar = make_registrar()
    other = 'Digest username="alice", realm="carrier", nonce="n", uri="sip:localhost", response="00"'
    response = send(registrar, register_bytes(authorization=other), 0.0)
    assert response.status == 401


# ------------------------------------------------------------------------------------- bindings and expiry


def test_binding_expires_when_now_advances() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(0.0, expires=120).status == 200
    assert registrar.get_timer() == 120.0
    assert len(registrar.lookup("alice", 119.9)) == 1
    assert registrar.lookup("alice", 120.0) == []
    assert registrar.expire(119.0) == []
    assert registrar.count == 1
    [gone] = registrar.expire(120.0)
    assert gone.uri == "sip:alice@127.0.0.1:5070"
    assert registrar.count == 0 and registrar.get_timer() is None
    assert registrar.expire(10_000.0) == []


def test_refresh_extends_the_binding_and_keeps_its_registration_time() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(0.0, expires=600).status == 200
    response = phone.register(500.0, expires=600)
    assert response.status == 200
    assert contacts_of(response) == {"sip:alice@127.0.0.1:5070": "600"}
    [binding] = registrar.lookup("alice", 500.0)
    assert binding.expires_at == 1100.0 and binding.registered_at == 0.0 and binding.cseq == phone.cseq
    # The superseded deadline at 600 s is skipped: nothing expires then.
    assert registrar.expire(600.0) == []
    assert registrar.count == 1
    assert registrar.get_timer() == 1100.0


def test_200_lists_remaining_time_of_every_binding() -> None:
    registrar = make_registrar()
    desk = Phone(registrar, call_id="desk@127.0.0.1")
    soft = Phone(registrar, call_id="soft@127.0.0.1")
    assert desk.register(0.0, expires=1000).status == 200
    response = soft.register(250.0, contacts=["<sip:alice@127.0.0.2:5062;transport=tcp>"], expires=3600)
    assert response.status == 200
    assert contacts_of(response) == {
        "sip:alice@127.0.0.1:5070": "750",
        "sip:alice@127.0.0.2:5062;transport=tcp": "3600",
    }


def test_query_without_contact_lists_bindings_and_changes_nothing() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(0.0, expires=1000).status == 200
    response = phone.register(100.0, contacts=[])
    assert response.status == 200
    assert contacts_of(response) == {"sip:alice@127.0.0.1:5070": "900"}
    assert registrar.lookup("alice", 100.0)[0].expires_at == 1000.0


def test_removal_with_expires_zero() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(0.0, contacts=["<sip:alice@127.0.0.1:5070>", "<sip:alice@127.0.0.3>"]).status == 200
    response = phone.register(5.0, contacts=["<sip:alice@127.0.0.1:5070>;expires=0"])
    assert response.status == 200
    assert contacts_of(response) == {"sip:alice@127.0.0.3": "3595"}
    response = phone.register(6.0, contacts=["<sip:alice@127.0.0.3>"], expires=0)
    assert response.status == 200
    assert contacts_of(response) == {}
    assert registrar.count == 0 and registrar.get_timer() is None


def test_removal_with_wildcard() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(0.0, contacts=["<sip:alice@127.0.0.1:5070>", "<sip:alice@127.0.0.3>"]).status == 200
    assert registrar.count == 2
    response = phone.register(1.0, contacts=["*"], expires=0)
    assert response.status == 200
    assert response.headers.get_all("contact") == []
    assert registrar.count == 0 and registrar.lookup("alice", 1.0) == []


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [(["*"], None), (["*"], 60), (["*", "<sip:alice@127.0.0.1>"], 0)],
    ids=["no-expires", "nonzero-expires", "mixed"],
)
def test_wildcard_needs_expires_zero_and_no_other_contact(contacts: list[str], expires: int | None) -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(0.0).status == 200
    response = phone.register(1.0, contacts=contacts, expires=expires)
    assert response.status == 400
    assert registrar.count == 1


def test_interval_too_brief() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    response = phone.register(0.0, expires=30)
    assert response.status == 423
    assert response.reason == "Interval Too Brief"
    assert response.headers.get("min-expires") == "60"
    assert registrar.count == 0
    # One brief contact among good ones refuses the whole request.
    response = phone.register(0.0, contacts=["<sip:alice@127.0.0.1>", "<sip:alice@127.0.0.2>;expires=59"])
    assert response.status == 423 and registrar.count == 0
    assert phone.register(0.0, expires=60).status == 200


def test_long_intervals_are_clamped_and_malformed_ones_count_as_an_hour() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    response = phone.register(
        0.0,
        contacts=[
            "<sip:alice@127.0.0.1>;expires=100000",
            "<sip:alice@127.0.0.2>;expires=soon",
            "<sip:alice@127.0.0.3>;expires=99999999999999999999",
            "<sip:alice@127.0.0.4>",
        ],
        expires="Thu, 01 Dec 1994 16:00:00 GMT",
    )
    assert response.status == 200
    assert contacts_of(response) == {
        "sip:alice@127.0.0.1": "7200",
        "sip:alice@127.0.0.2": "3600",
        "sip:alice@127.0.0.3": "7200",
        "sip:alice@127.0.0.4": "3600",
    }


def test_out_of_order_register_is_refused_atomically() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(0.0, expires=600).status == 200
    auth_cseq = phone.cseq
    # §10.3 step 7: same Call-ID, CSeq not higher than the binding's -> the request fails, nothing changes.
    phone.cseq = auth_cseq - 2  # the next REGISTER goes out with CSeq == auth_cseq - 1
    response = phone.register(1.0, contacts=["<sip:alice@127.0.0.9>", "<sip:alice@127.0.0.1:5070>"])
    assert response.status == 500
    assert "out-of-order" in response.reason
    [binding] = registrar.lookup("alice", 1.0)
    assert binding.cseq == auth_cseq and binding.expires_at == 600.0
    # Equal CSeq is refused as well.
    phone.cseq = auth_cseq - 1
    assert phone.register(1.0).status == 500
    # A higher CSeq is accepted.
    phone.cseq = auth_cseq + 5
    assert phone.register(2.0, expires=600).status == 200
    assert registrar.lookup("alice", 2.0)[0].expires_at == 602.0


def test_out_of_order_wildcard_is_refused() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(0.0).status == 200
    phone.cseq -= 2
    assert phone.register(1.0, contacts=["*"], expires=0).status == 500
    assert registrar.count == 1


def test_new_call_id_replaces_the_binding_whatever_its_cseq() -> None:
    registrar = make_registrar()
    old = Phone(registrar, call_id="before-reboot@127.0.0.1")
    old.cseq = 100
    assert old.register(0.0).status == 200
    rebooted = Phone(registrar, call_id="after-reboot@127.0.0.1")
    assert rebooted.register(50.0).status == 200
    [binding] = registrar.lookup("alice", 50.0)
    assert binding.call_id == "after-reboot@127.0.0.1" and binding.cseq == 2
    assert binding.registered_at == 50.0


def test_multiple_contacts_and_q_ordering() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    response = phone.register(
        0.0,
        contacts=[
            '"Desk" <sip:alice@127.0.0.1:5070>;q=0.5, <sip:alice@127.0.0.2:5070>;q=1.0',
            '<sip:alice@127.0.0.3:5070>;q=0.8;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"',
        ],
    )
    assert response.status == 200
    assert len(contacts_of(response)) == 3
    assert [b.uri for b in registrar.lookup("alice", 1.0)] == [
        f"sip:alice@127.0.0.{i}:5070" for i in (2, 3, 1)
    ]
    # The 200 keeps each contact's parameters and display name.
    listed = [parse_name_addr(v, what="Contact") for v in response.headers.get_all("contact")]
    desk = next(c for c in listed if c.uri == "sip:alice@127.0.0.1:5070")
    assert desk.display_name == "Desk" and desk.params == {"q": "0.5", "expires": "3600"}
    # Equal q: the most recently registered first.
    second = Phone(registrar, call_id="second@127.0.0.1")
    assert second.register(10.0, contacts=["<sip:alice@127.0.0.4:5070>;q=1"]).status == 200
    assert [b.uri for b in registrar.lookup("alice", 11.0)] == [
        f"sip:alice@127.0.0.{i}:5070" for i in (4, 2, 3, 1)
    ]


def test_contacts_are_matched_by_uri_equivalence() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(0.0, contacts=["<sip:alice@127.0.0.1:5070;transport=udp>"]).status == 200
    response = phone.register(1.0, contacts=["<sip:%61lice@127.0.0.1:5070;Transport=UDP>"], expires=0)
    assert response.status == 200
    assert registrar.count == 0


@pytest.mark.parametrize(
    ("contact", "words"), [("<sip:alice@127.0.0.1>;q=1.5", "q value"), ("<tel:+15550100>", "Contact")]
)
def test_malformed_contact_is_a_400(contact: str, words: str) -> None:
    registrar = make_registrar()
    response = Phone(registrar).register(0.0, contacts=[contact])
    assert response.status == 400 and words in response.reason
    assert registrar.count == 0


# ---------------------------------------------------------------------------------------------- limits


def test_bindings_per_address_of_record_are_bounded() -> None:
    registrar = make_registrar(max_bindings_per_aor=2)
    phone = Phone(registrar)
    three = ["<sip:alice@127.0.0.1>", "<sip:alice@127.0.0.2>", "<sip:alice@127.0.0.3>"]
    response = phone.register(0.0, contacts=three)
    assert response.status == 403 and "more than 2 contacts" in response.reason
    assert registrar.count == 0
    assert phone.register(0.0, contacts=three[:2]).status == 200
    assert phone.register(1.0, contacts=three[2:]).status == 403
    # Refreshing and removing within the bound still work.
    assert phone.register(2.0, contacts=three[:2]).status == 200
    assert phone.register(3.0, contacts=[three[0] + ";expires=0", three[2]]).status == 200
    assert {b.uri for b in registrar.lookup("alice", 3.0)} == {"sip:alice@127.0.0.2", "sip:alice@127.0.0.3"}


def test_bindings_above_a_lowered_bound_may_still_be_refreshed() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    three = ["<sip:alice@127.0.0.1>", "<sip:alice@127.0.0.2>", "<sip:alice@127.0.0.3>"]
    assert phone.register(0.0, contacts=three).status == 200
    registrar.max_bindings_per_aor = 2
    assert phone.register(1.0, contacts=three).status == 200
    assert phone.register(2.0, contacts=[three[0] + ";expires=0"]).status == 200
    assert phone.register(3.0, contacts=["<sip:alice@127.0.0.4>"]).status == 403
    assert registrar.count == 2


def test_total_bindings_are_bounded() -> None:
    registrar = make_registrar(max_bindings_per_aor=2, max_bindings=3)
    alice = ["<sip:alice@127.0.0.1>", "<sip:alice@127.0.0.2>"]
    assert Phone(registrar).register(0.0, contacts=alice).status == 200
    bob = Phone(registrar, user="bob")
    assert bob.register(0.0, contacts=["<sip:bob@127.0.0.3>"]).status == 200
    response = bob.register(1.0, contacts=["<sip:bob@127.0.0.4>"])
    assert response.status == 503 and "full" in response.reason
    assert registrar.count == 3
    # Expired bindings make room again.
    assert registrar.expire(4000.0) and registrar.count == 0
    assert bob.register(4000.0, contacts=["<sip:bob@127.0.0.4>"]).status == 200


def test_many_refreshes_keep_the_deadline_heap_small() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    for i in range(200):
        assert phone.register(float(i), expires=3600).status == 200
    assert registrar.get_timer() == 199.0 + 3600.0
    assert len(registrar._deadlines) <= 2 * registrar.count + 64


# --------------------------------------------------------------------------------- domain, extensions, misuse


def test_request_uri_for_a_domain_not_served_is_404() -> None:
    registrar = make_registrar(serves_domain=lambda host: host.lower() in {"localhost", "127.0.0.1"})
    response = send(registrar, register_bytes(request_uri="sip:127.0.0.9"), 0.0)
    assert response.status == 404
    assert send(registrar, register_bytes(request_uri="sip:127.0.0.1"), 0.0).status == 401
    # By default every host is served.
    assert Phone(make_registrar()).register(0.0, request_uri="sip:127.0.0.9").status == 200


def test_tel_request_uri_is_416() -> None:
    response = send(make_registrar(), register_bytes(request_uri="tel:+15550100"), 0.0)
    assert response.status == 416
    assert response.reason.startswith("Unsupported URI Scheme")
    assert response.reason.count("Unsupported URI Scheme") == 1


def test_required_extension_is_420() -> None:
    registrar = make_registrar()
    response = send(registrar, register_bytes(extra=["Require: path, gruu"]), 0.0)
    assert response.status == 420
    assert response.headers.get("unsupported") == "path, gruu"


def test_to_without_user_is_404() -> None:
    # Authentication comes first (§10.3 steps 3-5); the Phone answers the challenge.
    assert Phone(make_registrar()).register(0.0, to="<sip:localhost>").status == 404


def test_transport_is_recorded_lower_case() -> None:
    registrar = make_registrar()
    assert Phone(registrar).register(1.0, transport="TLS").status == 200
    assert registrar.lookup("alice", 1.0)[0].transport == "tls"


def test_handle_register_refuses_other_methods() -> None:
    registrar = make_registrar()
    invite = parse_message(register_bytes().replace(b"REGISTER", b"INVITE"))
    assert isinstance(invite, Request)
    with pytest.raises(LocalProtocolError):
        registrar.handle_register(invite, source=SOURCE, transport="UDP", now=0.0)


def test_configuration_is_checked() -> None:
    with pytest.raises(LocalProtocolError):
        make_registrar(min_expires=600, default_expires=300)
    with pytest.raises(LocalProtocolError):
        make_registrar(max_bindings_per_aor=0)


def test_no_date_header_without_a_wall_clock() -> None:
    registrar = make_registrar(wall_clock=None)
    response = Phone(registrar).register(0.0)
    assert response.status == 200 and response.headers.get("date") is None


# ------------------------------------------------------------------------------------------------ robustness


def _authorized_register() -> bytes:
    phone = Phone(make_registrar())
    assert phone.register(0.0).status == 200
    contacts = ['"A" <sip:alice@127.0.0.1:5070;transport=udp>;q=0.5;expires=600, <sip:alice@127.0.0.2>']
    return phone.next_request(contacts=contacts, expires=3600)


@st.composite
def _mutated_register(draw: st.DrawFn) -> bytes:
    data = bytearray(_authorized_register())
    head_end = data.index(b"\r\n\r\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, head_end - 1))
        op = draw(st.sampled_from(["delete", "insert", "replace"]))
        octet = draw(st.sampled_from([*b'"\\,;=<>*:@ 0q', draw(st.integers(0x20, 0x7E))]))
        if op == "delete":
            del data[i]
            head_end -= 1
        elif op == "insert":
            data.insert(i, octet)
            head_end += 1
        else:
            data[i] = octet
    return bytes(data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True)
@given(_mutated_register())
def test_a_mangled_register_always_gets_a_response(data: bytes) -> None:
    try:
        request = parse_message(data)
    except DecodeError:
        return
    if not isinstance(request, Request) or request.method != "REGISTER":
        return
    registrar = make_registrar()
    response = registrar.handle_register(request, source=SOURCE, transport="udp", now=0.0)
    assert 200 <= response.status <= 699
    assert response.call_id == request.call_id and response.cseq == request.cseq
    assert response.headers.get_lines("via") == request.headers.get_lines("via")
