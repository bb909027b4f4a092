"""Party numbers between ISDN type of number and E.164, with real numbers of several countries."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.pri.numbers import NumberError, SpanNumbering, from_isdn, to_isdn
from appliance.pri.q931_model import NumberingPlan, PartyNumber, Presentation, Screening, TypeOfNumber
from tests.unit.vectors import hypothesis_settings

SETTINGS = hypothesis_settings()
INTL, NATL, SUBS, UNKN = (TypeOfNumber.INTERNATIONAL, TypeOfNumber.NATIONAL, TypeOfNumber.SUBSCRIBER,
                          TypeOfNumber.UNKNOWN)  # fmt: skip

DE = SpanNumbering("DE", area_code="30")
BR = SpanNumbering("BR", area_code="11")
SG = SpanNumbering("SG")
AE = SpanNumbering("AE", area_code="4")

RECEIVED = [
    # Germany: 00 international, 0 trunk prefix, Berlin area code 30.
    (DE, INTL, "4930123456", "+4930123456"),
    (DE, NATL, "30123456", "+4930123456"),
    (DE, NATL, "030123456", "+4930123456"),  # a switch that leaves the trunk prefix in a national number
    (DE, SUBS, "123456", "+4930123456"),
    (DE, UNKN, "004930123456", "+4930123456"),
    (DE, UNKN, "0044 2079460000", "+442079460000"),
    (DE, UNKN, "030123456", "+4930123456"),
    (DE, UNKN, "1001", "1001"),  # an extension stays one
    (DE, UNKN, "112", "112"),  # a short service number too
    (DE, UNKN, "*31#", "*31#"),
    (DE, NATL, "15123456789", "+4915123456789"),
    # Brazil: several international prefixes with carrier codes (0015, 0021 ...), trunk prefix 0.
    (BR, INTL, "5511987654321", "+5511987654321"),
    (BR, NATL, "1123456789", "+551123456789"),
    (BR, SUBS, "23456789", "+551123456789"),
    (BR, UNKN, "01123456789", "+551123456789"),
    (BR, UNKN, "0211123456789", "+551123456789"),  # trunk prefix 0, carrier 21
    (BR, UNKN, "00154930123456", "+4930123456"),  # international via carrier 15
    # Singapore: no trunk prefix, no area codes.
    (SG, INTL, "6561234567", "+6561234567"),
    (SG, NATL, "61234567", "+6561234567"),
    (SG, UNKN, "61234567", "+6561234567"),
    (SG, UNKN, "0014930123456", "+4930123456"),
    (SG, SUBS, "61234567", "61234567"),  # no area code configured: as received
    # United Arab Emirates: 00 and 0, Dubai area code 4.
    (AE, INTL, "97142345678", "+97142345678"),
    (AE, NATL, "42345678", "+97142345678"),
    (AE, SUBS, "2345678", "+97142345678"),
    (AE, UNKN, "042345678", "+97142345678"),
    (AE, UNKN, "00966112345678", "+966112345678"),
]


@pytest.mark.parametrize(("numbering", "ton", "digits", "expected"), RECEIVED)
def test_received_numbers_become_e164_where_they_are_phone_numbers(
    numbering: SpanNumbering, ton: TypeOfNumber, digits: str, expected: str
) -> None:
    assert from_isdn(PartyNumber(digits.replace(" ", ""), ton), numbering) == expected


def test_private_plans_and_network_specific_numbers_pass_as_received() -> None:
    assert from_isdn(PartyNumber("4930123456", UNKN, NumberingPlan.PRIVATE), DE) == "4930123456"
    assert from_isdn(PartyNumber("0800", TypeOfNumber.NETWORK_SPECIFIC), DE) == "0800"


def test_withheld_or_absent_calling_numbers_are_anonymous() -> None:
    hidden = PartyNumber("30123456", NATL, presentation=Presentation.RESTRICTED)
    assert from_isdn(hidden, DE) == ""
    assert from_isdn(PartyNumber("", NATL, presentation=Presentation.NOT_AVAILABLE), DE) == ""
    assert from_isdn(None, DE) == ""
    assert from_isdn(PartyNumber(""), DE) == ""


@pytest.mark.parametrize(
    ("number", "message"),
    [
        (PartyNumber("49x0123", INTL), "number '49x0123' has characters other than 0-9, *, #, A-D"),
        (PartyNumber("9" * 40), "more than 32 digits"),
        (PartyNumber("0123456", INTL), "international number '0123456' is not 2 to 15 digits"),
        (PartyNumber("1234567890123456", INTL), "is not 2 to 15 digits"),
        (PartyNumber("2891234567", INTL), "international number '2891234567' has no known country code"),
    ],
)
def test_unreadable_numbers_are_refused_with_the_reason(number: PartyNumber, message: str) -> None:
    with pytest.raises(NumberError, match=message.replace("*", r"\*")):
        from_isdn(number, DE)


SENT = [
    (DE, "+4930123456", PartyNumber("30123456", NATL, NumberingPlan.ISDN)),
    (DE, "+442079460000", PartyNumber("442079460000", INTL, NumberingPlan.ISDN)),
    (DE, "1001", PartyNumber("1001", UNKN, NumberingPlan.ISDN)),
    (BR, "+5511987654321", PartyNumber("11987654321", NATL, NumberingPlan.ISDN)),
    (SG, "+6561234567", PartyNumber("61234567", NATL, NumberingPlan.ISDN)),
    (AE, "+4930123456", PartyNumber("4930123456", INTL, NumberingPlan.ISDN)),
    (SpanNumbering("DE", unknown_with_prefixes=True), "+4930123456", PartyNumber("030123456", UNKN)),
    (SpanNumbering("DE", unknown_with_prefixes=True), "+6561234567", PartyNumber("006561234567", UNKN)),
    (SpanNumbering("SG", unknown_with_prefixes=True), "+6561234567", PartyNumber("61234567", UNKN)),
    (
        SpanNumbering("BR", unknown_with_prefixes=True, international_prefix="0021"),
        "+4930123456",
        PartyNumber("00214930123456", UNKN),
    ),
]


@pytest.mark.parametrize(("numbering", "number", "expected"), SENT)
def test_called_numbers_are_national_at_home_and_international_abroad(
    numbering: SpanNumbering, number: str, expected: PartyNumber
) -> None:
    assert to_isdn(number, numbering) == expected


def test_calling_numbers_carry_presentation_and_screening() -> None:
    assert to_isdn("+4930123456", DE, calling=True) == PartyNumber(
        "30123456", NATL, NumberingPlan.ISDN, Presentation.ALLOWED, Screening.USER_NOT_SCREENED
    )
    anonymous = to_isdn("anonymous", DE, calling=True)
    assert anonymous.presentation is Presentation.RESTRICTED and anonymous.digits == ""
    assert to_isdn("", DE, calling=True) == anonymous


@pytest.mark.parametrize(
    ("numbering", "number", "message"),
    [
        (DE, "", "no called number"),
        (DE, "+49", "'\\+49' is not a possible E.164 number"),
        (DE, "+4", "is not a possible E.164 number"),
        (DE, "+4930123456789012", "is not a possible E.164 number"),
        (DE, "alice", "number 'alice' has characters other than"),
        (SpanNumbering("BR", unknown_with_prefixes=True), "+4930123456",
         "region BR has no single international prefix: configure one to send \\+4930123456"),
    ],
)  # fmt: skip
def test_numbers_that_cannot_be_sent_are_refused_with_the_reason(
    numbering: SpanNumbering, number: str, message: str
) -> None:
    with pytest.raises(NumberError, match=message):
        to_isdn(number, numbering)


def test_bad_span_settings_are_refused() -> None:
    with pytest.raises(NumberError, match="unknown region 'XX'"):
        SpanNumbering("XX")
    with pytest.raises(NumberError, match="area_code '3-0' is not 1 to 8 digits"):
        SpanNumbering("DE", area_code="3-0")


REGIONS = ("DE", "BR", "SG", "AE", "GB", "US", "FR", "IT", "IN", "JP", "AU", "ZA")
TYPES = (
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
)


def _example(region: str, kind: int) -> str | None:
    number = phonenumbers.example_number_for_type(region, kind)
    return None if number is None else phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


EXAMPLES = sorted({e for r in REGIONS for k in TYPES if (e := _example(r, k)) is not None})


@SETTINGS
@given(
    number=st.sampled_from(EXAMPLES),
    span=st.sampled_from(REGIONS),
    unknown=st.booleans(),
)
def test_valid_e164_numbers_survive_the_round_trip(number: str, span: str, unknown: bool) -> None:
    numbering = SpanNumbering(
        span, unknown_with_prefixes=unknown, international_prefix="00" if unknown else None
    )
    assert from_isdn(to_isdn(number, numbering), numbering) == number


@SETTINGS
@given(
    digits=st.text(alphabet="0123456789*#Ax+ ", max_size=40),
    ton=st.sampled_from(list(TypeOfNumber)),
    plan=st.sampled_from(list(NumberingPlan)),
    presentation=st.sampled_from([None, *Presentation]),
    span=st.sampled_from([DE, BR, SG, AE]),
)
def test_any_received_number_is_read_or_refused_never_crashes(
    digits: str,
    ton: TypeOfNumber,
    plan: NumberingPlan,
    presentation: Presentation | None,
    span: SpanNumbering,
) -> None:
    try:
        result = from_isdn(PartyNumber(digits, ton, plan, presentation), span)
    except NumberError:
        return
    assert isinstance(result, str)


@SETTINGS
@given(number=st.text(alphabet="+0123456789*#a ", max_size=40), calling=st.booleans())
def test_any_dialled_string_is_written_or_refused_never_crashes(number: str, calling: bool) -> None:
    try:
        party = to_isdn(number, DE, calling=calling)
    except NumberError:
        return
    assert isinstance(party, PartyNumber)
