"""The call routing table: number normalisation, pattern precedence and survivable-mode candidates."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.calls.routing import MAX_USER_PART, Route, RoutingError, RoutingTable


@dataclass(frozen=True)
class Dest:
    kind: str
    target: str


CLOUD = Dest("cloud", "")
TRUNK = Dest("trunk", "sip:carrier@127.0.0.1:5070")
PRI1 = Dest("pri", "1")
IVR_DEFAULT = Dest("ivr", "default")
IVR_BERLIN = Dest("ivr", "berlin")
IVR_EXT = Dest("ivr", "extensions")
SALES = Dest("agents", "sales")
DESK = Dest("agents", "desk")

ROUTES: list[tuple[str, list[Dest]]] = [
    ("*", [CLOUD, IVR_DEFAULT]),
    ("+49*", [CLOUD, PRI1]),
    ("+4930*", [CLOUD, IVR_BERLIN]),
    ("+49301234567", [SALES]),
    ("1001", [DESK]),
    ("10*", [IVR_EXT]),
]


def table(region: str = "DE", routes: list[tuple[str, list[Dest]]] | None = None) -> RoutingTable[Dest]:
    return RoutingTable(ROUTES if routes is None else routes, region=region)


# -- normalisation ------------------------------------------------------------------------------------------

NUMBERS = [
    # Germany: national, international, IDD, separators, the "(0)" convention, tel: forms.
    ("DE", "030 1234567", "+49301234567"),
    ("DE", "030/1234567", "+49301234567"),
    ("DE", "030-123 45 67", "+49301234567"),
    ("DE", "+49 (0)30 1234567", "+49301234567"),
    ("DE", "+49 30 1234567", "+49301234567"),
    ("DE", "0049 30 1234567", "+49301234567"),
    ("DE", "tel:+49-30-1234567", "+49301234567"),
    ("DE", "TEL:+49.30.1234567;ext=12", "+49301234567"),
    ("DE", "tel:1234567;phone-context=+49-30", "+49301234567"),
    ("DE", "%2B49301234567", "+49301234567"),
    ("DE", "0171 2345678", "+491712345678"),
    ("DE", "+44 20 7946 0000", "+442079460000"),
    ("DE", "+1 202-555-0100", "+12025550100"),
    # United Kingdom, dialled with the "(0)" convention.
    ("GB", "+44 (0)20 7946 0000", "+442079460000"),
    ("GB", "020 7946 0000", "+442079460000"),
    # Brazil: area code in parentheses, carrier selection code, international.
    ("BR", "(11) 91234-5678", "+5511912345678"),
    ("BR", "011 91234-5678", "+5511912345678"),
    ("BR", "0 15 11 91234-5678", "+5511912345678"),
    ("BR", "+55 11 91234-5678", "+5511912345678"),
    ("BR", "(21) 3456-7890", "+552134567890"),
    # Singapore: no trunk prefix at all.
    ("SG", "6123 4567", "+6561234567"),
    ("SG", "9123 4567", "+6591234567"),
    ("SG", "+65 6123 4567", "+6561234567"),
    ("SG", "+49 30 1234567", "+49301234567"),
    # United Arab Emirates: landline and mobile, national and international.
    ("AE", "04 234 5678", "+97142345678"),
    ("AE", "050 123 4567", "+971501234567"),
    ("AE", "+971 4 234 5678", "+97142345678"),
    ("AE", "00971 50 123 4567", "+971501234567"),
]


@pytest.mark.parametrize(("region", "dialled", "e164"), NUMBERS)
def test_numbers_normalise_to_e164(region: str, dialled: str, e164: str) -> None:
    assert table(region).normalise(dialled) == e164


NOT_NUMBERS = [
    ("DE", "alice"),
    ("DE", "1001"),  # an extension, not a German number
    ("SG", "1001"),
    ("US", "1001"),
    ("DE", "112"),
    ("DE", ""),
    ("DE", "+"),
    ("DE", "tel:"),
    ("DE", "*97"),
    ("DE", "030 1234567 ext 5"),
    ("US", "1-800-FLOWERS"),  # letters are a user name, never vanity digits
    ("DE", "+999 123"),  # no such country code
    ("DE", "+200000000001"),  # reads back as a different number each time
    ("DE", "20100000000000"),  # valid to the numbering plan, but 16 digits in E.164
    ("DE", "0" * (MAX_USER_PART + 1)),
    ("DE", "+49 30 1234567" + " " * MAX_USER_PART),
]


@pytest.mark.parametrize(("region", "dialled"), NOT_NUMBERS)
def test_non_numbers_normalise_to_none(region: str, dialled: str) -> None:
    assert table(region).normalise(dialled) is None


def test_region_is_checked_and_case_insensitive() -> None:
    assert table("de").region == "DE"
    with pytest.raises(RoutingError, match="region"):
        table("XX")


# -- lookup -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialled", "match", "number"),
    [
        ("030 1234567", "+49301234567", "+49301234567"),  # exact number
        ("+49 30 1234567", "+49301234567", "+49301234567"),
        ("030 7654321", "+4930*", "+49307654321"),  # longest prefix
        ("089 1234567", "+49*", "+49891234567"),  # shorter prefix
        ("+44 20 7946 0000", "*", "+442079460000"),  # default
        ("1001", "1001", "1001"),  # exact extension
        ("1002", "10*", "1002"),  # extension prefix
        ("alice", "*", "alice"),  # a user name falls to the default
    ],
)
def test_lookup_precedence(dialled: str, match: str, number: str) -> None:
    route = table().lookup(dialled)
    assert route is not None
    assert (route.match, route.number) == (match, number)
    assert list(route.destinations) == dict(ROUTES)[match]


def test_exact_beats_a_prefix_of_the_same_length() -> None:
    routes = [("+49301234567*", [PRI1]), ("+49301234567", [SALES]), ("+4930123456*", [IVR_BERLIN])]
    t = table(routes=routes)
    assert t.lookup("030 1234567") == Route("+49301234567", (SALES,), "+49301234567")
    assert t.lookup("030 12345678") == Route("+49301234567*", (PRI1,), "+493012345678")
    assert t.lookup("030 12345699") == Route("+4930123456*", (IVR_BERLIN,), "+493012345699")


def test_a_configured_extension_beats_reading_it_as_a_national_number() -> None:
    t = table("SG", [("61234567", [DESK]), ("+65*", [CLOUD])])
    assert t.normalise("61234567") == "+6561234567"
    assert t.lookup("61234567") == Route("61234567", (DESK,), "61234567")
    assert t.lookup("6123 4567") == Route("+65*", (CLOUD,), "+6561234567")


def test_no_route_is_none() -> None:
    t = table(routes=[("+49*", [CLOUD])])
    assert t.lookup("alice") is None
    assert t.lookup("+44 20 7946 0000") is None
    assert t.lookup("1" * (MAX_USER_PART + 1)) is None
    assert t.lookup("030 1234567") is not None
    assert RoutingTable([], region="DE").lookup("030 1234567") is None


def test_e164_prefix_does_not_match_extensions_and_vice_versa() -> None:
    t = table(routes=[("+1*", [CLOUD]), ("1*", [DESK])])
    assert t.lookup("1001") == Route("1*", (DESK,), "1001")
    assert t.lookup("+1 202 555 0100") == Route("+1*", (CLOUD,), "+12025550100")


def test_user_part_parameters_and_escapes_are_ignored() -> None:
    t = table()
    assert t.lookup("1001;isub=5") == Route("1001", (DESK,), "1001")
    assert t.lookup("%31001") == Route("1001", (DESK,), "1001")


# -- candidates ---------------------------------------------------------------------------------------------


def test_candidates_keep_order_and_skip_the_cloud_in_survivable_mode() -> None:
    t = table(routes=[("*", [CLOUD, TRUNK, IVR_DEFAULT, CLOUD, SALES, PRI1])])
    route = t.lookup("alice")
    assert route is not None
    assert t.candidates(route, cloud_available=True) == [CLOUD, TRUNK, IVR_DEFAULT, CLOUD, SALES, PRI1]
    assert t.candidates(route, cloud_available=False) == [TRUNK, IVR_DEFAULT, SALES, PRI1]


def test_a_cloud_only_route_has_no_candidates_in_survivable_mode() -> None:
    t = table(routes=[("*", [CLOUD])])
    route = t.lookup("alice")
    assert route is not None
    assert t.candidates(route, cloud_available=False) == []
    assert t.candidates(route, cloud_available=True) == [CLOUD]


# -- malformed tables ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([("+49 30*", [CLOUD])], "routes\\[0\\]: match"),
        ([("*", [CLOUD]), ("4*9", [CLOUD])], "routes\\[1\\]: match"),
        ([("**", [CLOUD])], "match"),
        ([("", [CLOUD])], "match"),
        ([("+49a", [CLOUD])], "match"),
        ([("+" + "1" * 16, [CLOUD])], "match"),
        ([("*", [CLOUD]), ("*", [IVR_DEFAULT])], "routes\\[1\\]: .*earlier route"),
        ([("1001", [DESK]), ("1001", [SALES])], "earlier route"),
        ([("*", [])], "at least one destination"),
        ([("*", [Dest("voicemail", "x")])], "unknown destination kind 'voicemail'"),
    ],
)
def test_malformed_routes_are_refused(routes: list[tuple[str, list[Dest]]], message: str) -> None:
    with pytest.raises(RoutingError, match=message):
        table(routes=routes)


# -- properties ---------------------------------------------------------------------------------------------

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
NUMBERISH = st.from_regex(
    r"\A(tel:|%2B)?\+?[0-9 ().\-/]{0,24}(;phone-context=\+?[0-9\-]{0,6})?\Z", fullmatch=True
)
REGIONS = st.sampled_from(["DE", "GB", "BR", "SG", "AE", "US"])


@settings(max_examples=400, deadline=None)
@given(user_part=st.text(max_size=200) | NUMBERISH, region=REGIONS)
def test_lookup_never_raises(user_part: str, region: str) -> None:
    t = table(region)
    route = t.lookup(user_part)
    assert route is not None  # the table has a default route
    assert route.match in dict(ROUTES)
    number = t.normalise(user_part)
    assert number is None or E164.fullmatch(number)


@settings(max_examples=300, deadline=None)
@given(user_part=NUMBERISH, region=REGIONS)
def test_normalise_is_idempotent(user_part: str, region: str) -> None:
    t = table(region)
    number = t.normalise(user_part)
    if number is not None:
        assert t.normalise(number) == number
        route = t.lookup(number)
        assert route is not None and route.number == number
