"""Party numbers between ISDN (type of number, numbering plan, digits) and call control (E.164 strings).

Theory of operation. A Q.931 party number (§4.5.8/§4.5.10) carries its digits with a *type of number*:
international digits start with the country code, national ones with the national significant number (no
trunk prefix), subscriber ones with the local number (no area code), and *unknown* means the digits are as
dialled: an international prefix (``00`` in most of Europe) or the national trunk prefix (``0``) may lead
them, per the numbering plan of the span's country (ITU-T E.164 §6 and the national plans that the
``phonenumbers`` metadata describes). Call control routes on E.164 (``+CC…``) where a number is a phone
number, so every received number is made E.164 when it can be (:func:`from_isdn`) and left as received
otherwise (a short service code, an extension on a private plan). A calling number whose presentation is
restricted (or not available) becomes the empty string, which call control reads as anonymous.

The way back (:func:`to_isdn`) names an E.164 number the way EN 300 403-1 carriers expect it in a SETUP:
a number of the span's own country as *national* with plan ISDN (E.164), any other as *international*;
some carriers want type *unknown* with the prefixes dialled instead
(:attr:`SpanNumbering.unknown_with_prefixes`).
A dialled string that is not E.164 (an extension, ``*``/``#`` codes) goes as *unknown*, as dialled.

Every function is total over its input: a value, or :class:`NumberError` naming what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import phonenumbers

from appliance.pri.errors import PriError
from appliance.pri.q931_model import NumberingPlan, PartyNumber, Presentation, Screening, TypeOfNumber

# Q.931 does not bound the digits, but no numbering plan needs more than E.164's 15 plus prefixes; a
# longer string is garbage, not a number.
MAX_DIGITS: Final = 32
_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")
_IA5_DIGITS: Final = re.compile(r"[0-9*#A-Da-d]*")
_PLAIN_PREFIX: Final = re.compile(r"[0-9]{1,4}")
_HIDDEN: Final = frozenset({Presentation.RESTRICTED, Presentation.NOT_AVAILABLE})
# Types of number whose digits are not read as a phone number: they are passed on as received.
_AS_RECEIVED: Final = frozenset({TypeOfNumber.NETWORK_SPECIFIC, TypeOfNumber.ABBREVIATED})


class NumberError(PriError):
    """A number that cannot be read or written as asked; ``reason`` says why, naming the number."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SpanNumbering:
    """How one span's numbers read. ``region`` is the ISO 3166 code of the span's country (``"DE"``);
    ``area_code`` completes *subscriber* numbers (``"30"`` for Berlin, without trunk prefix);
    ``national_prefix``/``international_prefix`` override the region's (needed to send *unknown* numbers
    in a region whose metadata lists several international prefixes, e.g. Brazil's carrier codes);
    ``unknown_with_prefixes`` sends type *unknown* with the prefixes instead of national/international."""

    region: str
    area_code: str | None = None
    national_prefix: str | None = None
    international_prefix: str | None = None
    unknown_with_prefixes: bool = False

    def __post_init__(self) -> None:
        if self.region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise NumberError(f"unknown region {self.region!r}")
        for name in ("area_code", "national_prefix", "international_prefix"):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(r"[0-9]{1,8}", value):
                raise NumberError(f"{name} {value!r} is not 1 to 8 digits")

    @property
    def country_code(self) -> int:
        code: int = phonenumbers.country_code_for_region(self.region.upper())
        return code

    def trunk_prefix(self) -> str | None:
        """The national (trunk) prefix dialled before a national number, or None when the region has none."""
        if self.national_prefix is not None:
            return self.national_prefix
        meta = phonenumbers.PhoneMetadata.metadata_for_region(self.region.upper())
        prefix = meta.national_prefix if meta is not None else None
        return prefix or None

    def idd_prefix(self) -> str | None:
        """The one international prefix to dial, or None when the region's metadata has no single one."""
        if self.international_prefix is not None:
            return self.international_prefix
        meta = phonenumbers.PhoneMetadata.metadata_for_region(self.region.upper())
        if meta is None:
            return None
        for prefix in (meta.preferred_international_prefix, meta.international_prefix):
            if prefix and _PLAIN_PREFIX.fullmatch(prefix):
                return str(prefix)
        return None


def from_isdn(number: PartyNumber | None, numbering: SpanNumbering) -> str:
    """The string call control routes on for a received party number.

    ``""`` for no number, an empty one, or a presentation-restricted one (anonymous); E.164 ``+CC…`` when
    the number is a possible phone number; otherwise the digits as received. Raises :class:`NumberError`
    for digits that are not IA5 dialling digits, too many digits, or an international number whose
    country code does not exist.
    """
    if number is None or number.presentation in _HIDDEN:
        return ""
    digits = number.digits
    if len(digits) > MAX_DIGITS:
        raise NumberError(f"number {digits[:MAX_DIGITS]!r}… has more than {MAX_DIGITS} digits")
    if _IA5_DIGITS.fullmatch(digits) is None:
        raise NumberError(f"number {digits!r} has characters other than 0-9, *, #, A-D")
    if not digits:
        return ""
    if (
        number.plan not in (NumberingPlan.ISDN, NumberingPlan.UNKNOWN)
        or number.type_of_number in _AS_RECEIVED
    ):
        return digits  # a private plan's extension, a network's service code: not E.164
    ton = number.type_of_number
    if ton is TypeOfNumber.INTERNATIONAL:
        return _international(digits)
    if not digits.isdigit():
        return digits  # *, # or A-D: a service code, as dialled
    if ton is TypeOfNumber.NATIONAL:
        return _national(digits, numbering) or digits
    if ton is TypeOfNumber.SUBSCRIBER:
        if numbering.area_code is None:
            return digits
        return _national(numbering.area_code + digits, numbering) or digits
    return _unknown(digits, numbering)


def _international(digits: str) -> str:
    e164 = "+" + digits
    if _E164.fullmatch(e164) is None:
        raise NumberError(f"international number {digits!r} is not 2 to 15 digits with a country code")
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        parsed = None
    code = parsed.country_code if parsed is not None else None
    if code is None or phonenumbers.region_code_for_country_code(code) == "ZZ":
        raise NumberError(f"international number {digits!r} has no known country code")
    return e164


def _national(digits: str, numbering: SpanNumbering) -> str | None:
    """E.164 for a national significant number of the span's country, or None when it is not a possible
    number there. A trunk prefix some switches leave in front of a national number is dropped when the
    number reads valid without it."""
    prefix = numbering.trunk_prefix()
    if prefix and digits.startswith(prefix):
        stripped = _checked(f"+{numbering.country_code}{digits[len(prefix) :]}", possible_only=False)
        if stripped is not None:
            return stripped
    return _checked(f"+{numbering.country_code}{digits}", possible_only=True)


def _unknown(digits: str, numbering: SpanNumbering) -> str:
    """Digits as dialled: an international prefix, a trunk prefix, or neither (a number valid in the
    region without its trunk prefix, as in regions that have none); else an extension or service code,
    passed on as received."""
    idd = numbering.idd_prefix()
    if idd and digits.startswith(idd) and len(digits) > len(idd):
        e164 = _checked("+" + digits[len(idd) :], possible_only=True)
        if e164 is not None:
            return e164
    trunk = numbering.trunk_prefix()
    if trunk and digits.startswith(trunk):
        e164 = _checked(f"+{numbering.country_code}{digits[len(trunk) :]}", possible_only=False)
        if e164 is not None:
            return e164
    elif not trunk:
        e164 = _checked(f"+{numbering.country_code}{digits}", possible_only=False)
        if e164 is not None:
            return e164
    if numbering.international_prefix is None and numbering.national_prefix is None:
        # The metadata's own parser knows the prefixes a plain string cannot say: several international
        # prefixes, carrier selection codes after the trunk prefix (Brazil's 0 + two digits).
        return _parse_in_region(digits, numbering.region) or digits
    return digits


def _parse_in_region(digits: str, region: str) -> str | None:
    try:
        parsed = phonenumbers.parse(digits, region.upper(), keep_raw_input=True)
    except phonenumbers.NumberParseException:
        return None
    source = parsed.country_code_source
    if source == phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_IDD:
        possible_only = True
    elif (
        source == phonenumbers.CountryCodeSource.FROM_DEFAULT_COUNTRY
        and parsed.preferred_domestic_carrier_code
    ):
        possible_only = False  # dialled with a trunk prefix and carrier code
    else:
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return _checked(e164, possible_only=possible_only)


def _checked(e164: str, *, possible_only: bool) -> str | None:
    """``e164`` when it is a valid (or, with ``possible_only``, a possible) number that reads back as
    itself, else None."""
    if _E164.fullmatch(e164) is None:
        return None
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    ok = phonenumbers.is_possible_number(parsed) if possible_only else phonenumbers.is_valid_number(parsed)
    if not ok or phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) != e164:
        return None
    return e164


def to_isdn(number: str, numbering: SpanNumbering, *, calling: bool = False) -> PartyNumber:
    """The party number for a SETUP from call control's ``number`` (E.164 or a dialled string).

    With ``calling``, an empty number or ``anonymous`` is sent presentation restricted (Q.931 §4.5.10,
    no digits); a calling number is marked user-provided, not screened. Raises :class:`NumberError` for an
    E.164 number that is not a possible number, characters that are not dialling digits, or type
    *unknown* with prefixes in a region without a single international prefix and none configured.
    """
    screening = Screening.USER_NOT_SCREENED if calling else None
    presentation = Presentation.ALLOWED if calling else None
    if calling and number in ("", "anonymous"):
        return PartyNumber(
            "", TypeOfNumber.UNKNOWN, NumberingPlan.UNKNOWN, Presentation.RESTRICTED, screening
        )
    if not number:
        raise NumberError("no called number")
    if len(number) > MAX_DIGITS:
        raise NumberError(f"number {number[:MAX_DIGITS]!r}… has more than {MAX_DIGITS} characters")
    if not number.startswith("+"):
        if _IA5_DIGITS.fullmatch(number) is None:
            raise NumberError(f"number {number!r} has characters other than 0-9, *, #, A-D")
        return PartyNumber(number, TypeOfNumber.UNKNOWN, NumberingPlan.ISDN, presentation, screening)
    if _checked(number, possible_only=True) is None:
        raise NumberError(f"{number!r} is not a possible E.164 number")
    parsed = phonenumbers.parse(number, None)
    nsn: str = phonenumbers.national_significant_number(parsed)
    domestic = parsed.country_code == numbering.country_code
    if numbering.unknown_with_prefixes:
        prefix = numbering.trunk_prefix() if domestic else numbering.idd_prefix()
        if prefix is None and not domestic:
            raise NumberError(
                f"region {numbering.region} has no single international prefix: "
                f"configure one to send {number}"
            )
        digits = (prefix or "") + (nsn if domestic else number[1:])
        return PartyNumber(digits, TypeOfNumber.UNKNOWN, NumberingPlan.ISDN, presentation, screening)
    if domestic:
        return PartyNumber(nsn, TypeOfNumber.NATIONAL, NumberingPlan.ISDN, presentation, screening)
    return PartyNumber(number[1:], TypeOfNumber.INTERNATIONAL, NumberingPlan.ISDN, presentation, screening)
