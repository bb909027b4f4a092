"""The caller's country, language and time zone from the calling number."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.ivr.hours import load_zone
from appliance.ivr.language import choose_language, country_of, zone_of
from tests.unit.test_ivr_hours import PROFILE

# (number, country, zone): fixed-line numbers in the capital or a big city, and a few mobiles.
NUMBERS = [
    ("+49 30 1234567", "DE", "Europe/Berlin"),
    ("+49 151 12345678", "DE", "Europe/Berlin"),
    ("+34 912 345 678", "ES", "Europe/Madrid"),
    ("+55 11 91234-5678", "BR", "America/Sao_Paulo"),
    ("+55 92 91234-5678", "BR", "America/Manaus"),
    ("+971 4 234 5678", "AE", "Asia/Dubai"),
    ("+971 50 123 4567", "AE", "Asia/Dubai"),
    ("+91 98765 43210", "IN", "Asia/Calcutta"),  # the tz database's alias of Asia/Kolkata
    ("+81 3-1234-5678", "JP", "Asia/Tokyo"),
    ("+86 138 1234 5678", "CN", "Asia/Shanghai"),
    ("+62 21 5551234", "ID", "Asia/Jakarta"),
    ("+90 212 123 45 67", "TR", "Europe/Istanbul"),
    ("+33 1 42 68 53 00", "FR", "Europe/Paris"),
    ("+1 212 555 1234", "US", "America/New_York"),
    ("+1 415 555 0123", "US", "America/Los_Angeles"),
    ("+1 416 555 1234", "CA", "America/Toronto"),
]
DEFAULT_ZONE = "Europe/Berlin"


@pytest.mark.parametrize(("number", "country", "zone"), NUMBERS)
def test_country_and_zone_of_international_numbers(number: str, country: str, zone: str) -> None:
    assert country_of(number) == country
    assert zone_of(number, default="UTC") == zone
    load_zone(zone_of(number, default="UTC"))


@pytest.mark.parametrize(
    "written",
    [
        "+49301234567",
        "0049301234567",
        "49301234567",
        "+49-30-1234567",
        "+49 (30) 123.45/67",
        "tel:+49-30-1234567",
        "tel:+49-30-1234567;ext=12",
        "sip:+49301234567@127.0.0.1;user=phone",
        "%2B49301234567",
        "  +49301234567  ",
    ],
)
def test_the_forms_a_number_arrives_in(written: str) -> None:
    assert country_of(written) == "DE"
    assert zone_of(written, default="UTC") == "Europe/Berlin"


@pytest.mark.parametrize(
    "number",
    [
        None,
        "",
        "anonymous",
        "Anonymous",
        "unknown",
        "restricted",
        "alice",
        "1001",  # an extension
        "030 1234567",  # a national number: no region to read it in
        "4912",  # digits without "+" that are no valid number
        "+",
        "00",
        "+49",
        "+999123456789",  # no such country code
        "+800 1234 5678",  # international freephone: no country
        "+49301234567" + "0" * 200,  # too long to be a number
        "tel:",
        "sip:@",
        "\x00",
    ],
)
def test_no_country_means_defaults(number: str | None) -> None:
    assert country_of(number) is None
    assert zone_of(number, default=DEFAULT_ZONE) == DEFAULT_ZONE
    assert choose_language(number, by_country={"DE": ["de"]}, offered=["de", "en"], default="en") == "en"


def test_digits_without_plus_need_a_valid_number() -> None:
    assert country_of("5511912345678") == "BR"
    assert country_of("33142685300") == "FR"
    # "+1 800 555" is too short for the North American plan; without "+" it is not read as international.
    assert country_of("1800555") is None


def test_possible_number_in_international_form_names_its_country() -> None:
    # +7 727 is Almaty; this number is of a possible length but not in the metadata's valid ranges.
    assert country_of("+7 727 123 4567") == "KZ"
    assert country_of("007 727 123 4567") == "KZ"
    assert zone_of("+7 727 123 4567", default=DEFAULT_ZONE) == DEFAULT_ZONE


def test_country_with_several_zones_gives_the_first_listed() -> None:
    # The metadata lists the Canaries before the mainland for Spanish mobiles.
    assert zone_of("+34 612 345 678", default="UTC") == "Atlantic/Canary"
    assert zone_of("+1 800 253 0000", default="UTC") == "America/Adak"


BY_COUNTRY = {
    "DE": ["de"],
    "AT": ["de"],
    "CH": ["de", "fr", "it"],
    "ES": ["es", "ca"],
    "BR": ["pt-BR", "es"],
    "AE": ["ar", "en"],
    "IN": ["hi", "en"],
    "FR": ["fr"],
    "TR": ["tr", "en"],
}
OFFERED = ["en", "de", "es", "fr", "pt-BR", "ar"]


@pytest.mark.parametrize(
    ("number", "language"),
    [
        ("+49301234567", "de"),
        ("+34912345678", "es"),
        ("+5511912345678", "pt-BR"),
        ("+97142345678", "ar"),
        ("+33142685300", "fr"),
        ("+919876543210", "en"),  # Hindi not offered: the country's second language
        ("+902121234567", "en"),
        ("+81312345678", "de"),  # Japan not configured: the default
        ("+12125551234", "de"),
    ],
)
def test_choose_language(number: str, language: str) -> None:
    assert choose_language(number, by_country=BY_COUNTRY, offered=OFFERED, default="de") == language


def test_country_order_of_preference_wins_over_the_flow_order() -> None:
    assert (
        choose_language("+41441234567", by_country=BY_COUNTRY, offered=["it", "fr", "de"], default="it")
        == "de"
    )
    assert choose_language("+41441234567", by_country=BY_COUNTRY, offered=["it", "fr"], default="en") == "fr"
    assert choose_language("+41441234567", by_country=BY_COUNTRY, offered=["it"], default="en") == "it"
    assert choose_language("+41441234567", by_country=BY_COUNTRY, offered=["en"], default="en") == "en"


def test_country_with_no_offered_language_gets_the_default() -> None:
    assert (
        choose_language("+34912345678", by_country={"ES": ["ca", "eu"]}, offered=["es", "en"], default="en")
        == "en"
    )
    assert choose_language("+34912345678", by_country={"ES": []}, offered=["es"], default="es") == "es"
    assert choose_language("+34912345678", by_country={}, offered=["es"], default="en") == "en"


def test_codes_compare_without_case_and_keep_the_flow_spelling() -> None:
    assert choose_language(
        "+5511912345678", by_country={"br": ["PT-br"]}, offered=["en", "pt-BR"], default="en"
    ) == ("pt-BR")


@PROFILE
@given(st.one_of(st.none(), st.text(max_size=40), st.text("+0123456789 -().", max_size=20)))
def test_any_text_never_raises(number: str | None) -> None:
    country = country_of(number)
    assert country is None or (len(country) == 2 and country.isupper())
    zone = zone_of(number, default="UTC")
    load_zone(zone)
    assert choose_language(number, by_country=BY_COUNTRY, offered=OFFERED, default="en") in OFFERED
