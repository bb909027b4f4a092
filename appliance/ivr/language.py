"""The caller's country, language and time zone, guessed from the calling number.

Theory of operation. The calling number (the From/P-Asserted-Identity user part, or a Q.931 calling party
number) is read with the ITU-T E.164 numbering metadata of the ``phonenumbers`` library; nothing here knows
a numbering plan or a zone itself. A number is read when it is in international form:

* ``+49301234567``, also with visual separators (RFC 3966 §5.1.1: ``+49-30-123 4567``, ``(``, ``)``, ``.``,
  ``/``), as a ``tel:`` URI with parameters, or as a ``sip:`` URI's user part;
* ``0049301234567``: ``00`` is the ITU-T E.164 international prefix most of the world dials;
* ``49301234567``: digits without the ``+`` that many trunks send, read as international only if that
  gives a *valid* number (so a short extension or a national number does not turn into a country).

A number with an explicit international prefix needs only a possible length for its country, since the
appliance's metadata may predate a new range. Anything else (anonymous, a user name, a national number: the
appliance has no region to read it in) has no country; the IVR then uses the flow's default language and
the configured default zone. Every function here is total: any text in, never an exception out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote

import phonenumbers
from phonenumbers import timezone as phone_zones

from appliance.ivr.hours import ScheduleError, load_zone

# E.164 numbers have at most 15 digits; this leaves room for separators, a URI scheme and parameters.
MAX_NUMBER_TEXT: Final = 128

_SEPARATORS: Final = re.compile(r"[\s\-.()/]")
_INTERNATIONAL: Final = re.compile(r"\+[0-9]{2,17}")
_DIGITS: Final = re.compile(r"[0-9]{2,17}")
# The region phonenumbers gives non-geographic numbers (+800 freephone, +882 networks): no country.
_NON_GEOGRAPHIC: Final = "001"
_UNKNOWN_ZONE: Final = "Etc/Unknown"


def country_of(number: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 country of calling number ``number`` (``"+4930123456"`` -> ``"DE"``), or None
    when it is unknown, anonymous or not an international number (see the module docstring)."""
    parsed = _parse(number)
    if parsed is None:
        return None
    region: str | None = phonenumbers.region_code_for_number(parsed)
    if region is None:
        # A possible but not (yet) valid number: its country code names the country if it has just one.
        regions = phonenumbers.region_codes_for_country_code(parsed.country_code)
        region = regions[0] if len(regions) == 1 else None
    return None if region in (None, _NON_GEOGRAPHIC) else region


def choose_language(
    number: str | None, *, by_country: Mapping[str, Sequence[str]], offered: Sequence[str], default: str
) -> str:
    """The language to greet the caller of ``number`` in.

    ``by_country`` maps an ISO country code to its languages in order of preference (the site's
    configuration); the first of those the flow ``offered`` wins, so a country whose first language the
    flow lacks falls to its second. An unknown country, or one with no offered language, gets ``default``.
    Country codes and language tags compare case-insensitively; the result is spelled as in ``offered``.
    """
    country = country_of(number)
    if country is None:
        return default
    wanted = next((langs for code, langs in by_country.items() if code.upper() == country), ())
    spelling = {lang.casefold(): lang for lang in reversed(offered)}
    for lang in wanted:
        chosen = spelling.get(lang.casefold())
        if chosen is not None:
            return chosen
    return default


def zone_of(number: str | None, *, default: str) -> str:
    """The IANA time zone of the caller of ``number`` (``"+4930123456"`` -> ``"Europe/Berlin"``), as the
    numbering metadata gives it for that number (for a country with several zones, the first it lists), or
    ``default`` when it is unknown. The name returned (other than ``default``) always loads with
    :func:`appliance.ivr.hours.load_zone`; it may be a tz database alias such as ``Asia/Calcutta``."""
    parsed = _parse(number)
    if parsed is None:
        return default
    for name in phone_zones.time_zones_for_number(parsed):
        if name == _UNKNOWN_ZONE:
            continue
        try:
            load_zone(name)
        except ScheduleError:
            continue  # the numbering metadata is newer than the tz database
        return str(name)
    return default


def _parse(number: str | None) -> Any | None:
    """The number as ``phonenumbers`` reads it (a ``PhoneNumber``), or None."""
    if not number or len(number) > MAX_NUMBER_TEXT:
        return None
    text = _user_part(number)
    if _INTERNATIONAL.fullmatch(text):
        candidate, strict = text, False
    elif text.startswith("00") and _DIGITS.fullmatch(text):
        candidate, strict = "+" + text[2:], False
    elif _DIGITS.fullmatch(text):
        candidate, strict = "+" + text, True
    else:
        return None
    try:
        parsed = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.is_valid_number(parsed) or (not strict and phonenumbers.is_possible_number(parsed)):
        return parsed
    return None


def _user_part(number: str) -> str:
    """``number`` without URI scheme, host, parameters and visual separators."""
    text = unquote(number).strip()
    scheme, colon, rest = text.partition(":")
    if colon and scheme.lower() in ("tel", "sip", "sips"):
        text = rest
    text = text.partition("@")[0].partition(";")[0]
    return _SEPARATORS.sub("", text)
