"""The call routing table: which destinations a called number tries, and in what order.

Theory of operation. A route is a match pattern and an ordered list of destinations (kinds ``cloud``,
``ivr``, ``agents``, ``pri`` and ``trunk``). The called user part of an inbound call (a SIP Request-URI
user, a tel: number or a Q.931 called party number) is normalised to E.164 where it is a phone number,
and looked up:

1. an *exact extension* pattern equal to the user part as dialled (``1001``, ``alice``) wins outright, so
   a configured extension is never reinterpreted as a short national number;
2. otherwise the lookup key is the E.164 form (or the user part itself when it is not a phone number), and
   an *exact* pattern (``+4930123``) beats any prefix;
3. then the longest *prefix* pattern (``+4930*``; a prefix without ``+``, such as ``10*``, matches
   extensions and user names);
4. then the default ``*``; with none of these the call has no route.

Normalisation follows ITU-T E.164 with the numbering plan of the site's ``region`` (the ``phonenumbers``
library): visual separators (RFC 3966 §5.1.1: ``-``, ``.``, ``(``, ``)``, plus spaces and ``/``) are
ignored, a ``tel:`` prefix and its parameters are dropped, and a local tel: number whose ``phone-context``
is a global number prefix (RFC 3966 §5.1.5) is completed with it. A number dialled in international form
(``+`` or the region's international prefix such as ``00``) is accepted if its length is possible for that
country, because the caller named the country and the appliance's numbering metadata may predate a new
range. A number dialled in national form must be a *valid* number of the region: that is what tells a
national number from a short extension like ``1001``. Letters are never read as vanity digits: a user part
with letters is a user name.

In survivable mode :meth:`RoutingTable.candidates` drops ``cloud`` destinations, so a call falls through to
the local ones; ``trunk`` destinations (a carrier trunk, not the cloud) are always kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar
from urllib.parse import unquote

import phonenumbers

KINDS: Final = frozenset({"cloud", "ivr", "agents", "pri", "trunk"})

# Longest user part looked at. E.164 numbers have at most 15 digits; this leaves room for separators,
# a tel: prefix and parameters. Anything longer is not a number anyone dialled.
MAX_USER_PART: Final = 128
NORMALISE_CACHE_SIZE: Final = 4096

_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")
_E164_EXACT: Final = re.compile(r"\+[0-9]{1,15}")
_E164_PREFIX: Final = re.compile(r"\+[0-9]{0,15}\*")
_EXTENSION_EXACT: Final = re.compile(r"[0-9A-Za-z#._~-]{1,64}")
_EXTENSION_PREFIX: Final = re.compile(r"[0-9A-Za-z#._~-]{1,64}\*")
_SEPARATORS: Final = re.compile(r"[\s\-.()/]")
_DIALLABLE: Final = re.compile(r"\+?[0-9]{1,20}")
_INTERNATIONAL: Final = frozenset(
    {
        phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_PLUS_SIGN,
        phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_IDD,
    }
)


class Destination(Protocol):
    """Anything a route can send a call to; ``kind`` is one of :data:`KINDS`."""

    @property
    def kind(self) -> str: ...

    @property
    def target(self) -> str: ...


D = TypeVar("D", bound=Destination)
E = TypeVar("E", bound=Destination)
D_co = TypeVar("D_co", bound=Destination, covariant=True)


class HasDestinations(Protocol[D_co]):
    """A route as :meth:`RoutingTable.candidates` needs it: its ordered destinations."""

    @property
    def destinations(self) -> Sequence[D_co]: ...


class RoutingError(ValueError):
    """A route in the table is malformed; ``index`` is its position in the list given to the table."""

    def __init__(self, reason: str, *, index: int | None = None) -> None:
        super().__init__(reason if index is None else f"routes[{index}]: {reason}")
        self.reason = reason
        self.index = index


@dataclass(frozen=True, slots=True)
class Route(Generic[D]):
    """The route a call matched: the pattern, its destinations and the number as routed.

    ``number`` is the E.164 form of the called number, or the user part as dialled for an extension or
    a user name.
    """

    match: str
    destinations: tuple[D, ...]
    number: str


class RoutingTable(Generic[D]):
    """An immutable routing table for one site; raises :class:`RoutingError` on a malformed route.

    ``routes`` is a sequence of ``(match, destinations)``; ``match`` is ``*``, ``+<digits>*`` (E.164
    prefix), ``+<digits>`` (exact number), ``<extension>`` (exact) or ``<extension>*`` (extension prefix).
    ``region`` is the ISO 3166 code whose numbering plan national numbers are read in.
    """

    __slots__ = ("_exact", "_longest", "_normalised", "_prefixes", "_region")

    def __init__(self, routes: Iterable[tuple[str, Sequence[D]]], *, region: str) -> None:
        region = region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise RoutingError(f"unknown region {region!r}")
        self._region = region
        self._exact: dict[str, tuple[str, tuple[D, ...]]] = {}
        self._prefixes: dict[str, tuple[str, tuple[D, ...]]] = {}
        for index, (match, destinations) in enumerate(routes):
            entry = (match, _checked_destinations(destinations, index))
            if match == "*":
                table, key = self._prefixes, ""
            elif _E164_EXACT.fullmatch(match) or _EXTENSION_EXACT.fullmatch(match):
                table, key = self._exact, match
            elif _E164_PREFIX.fullmatch(match) or _EXTENSION_PREFIX.fullmatch(match):
                table, key = self._prefixes, match[:-1]
            else:
                raise RoutingError(
                    f'match {match!r} is not "*", "+<digits>", "+<digits>*", an extension or "<extension>*"',
                    index=index,
                )
            if key in table:
                raise RoutingError(f"match {match!r} is used by an earlier route", index=index)
            table[key] = entry
        self._longest = max((len(k) for k in self._prefixes), default=0)
        # Reading a number with the numbering metadata costs tens of microseconds; callers dial the same
        # service numbers over and over, so the last answers are kept (bounded: the keys come from the wire).
        self._normalised: dict[str, str | None] = {}

    @property
    def region(self) -> str:
        return self._region

    def normalise(self, number: str) -> str | None:
        """The E.164 form of a dialled number, or None when it is not a phone number of the region.

        Total: never raises, whatever the input.
        """
        cache = self._normalised
        if number in cache:
            return cache[number]
        result = self._normalise(number)
        if len(cache) >= NORMALISE_CACHE_SIZE:
            del cache[next(iter(cache))]  # oldest first: dicts keep insertion order
        cache[number] = result
        return result

    def _normalise(self, number: str) -> str | None:
        if len(number) > MAX_USER_PART:
            return None
        text = unquote(number).strip()
        if text[:4].lower() == "tel:":
            text = text[4:]
        text, _, params = text.partition(";")
        cleaned = _SEPARATORS.sub("", text)
        if _DIALLABLE.fullmatch(cleaned) is None:
            return None
        if not cleaned.startswith("+"):
            context = _global_phone_context(params)
            if context is not None:
                cleaned = context + cleaned
        try:
            parsed = phonenumbers.parse(cleaned, self._region, keep_raw_input=True)
        except phonenumbers.NumberParseException:
            return None
        if parsed.country_code_source in _INTERNATIONAL:
            acceptable = phonenumbers.is_possible_number(parsed)
        else:
            acceptable = phonenumbers.is_valid_number(parsed)
        if not acceptable:
            return None
        e164: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        # The numbering metadata accepts a few national numbers longer than E.164 allows (ITU-T E.164 §6:
        # at most 15 digits); such a number cannot be sent on as E.164, nor matched by a route.
        if _E164.fullmatch(e164) is None:
            return None
        # Some digit strings (runs of zeros after a country code with a "0" trunk prefix) lose another
        # digit each time they are read; a real number reads back as itself, so routing is stable.
        try:
            again = phonenumbers.parse(e164, None)
        except phonenumbers.NumberParseException:
            return None
        if phonenumbers.format_number(again, phonenumbers.PhoneNumberFormat.E164) != e164:
            return None
        return e164

    def lookup(self, user_part: str) -> Route[D] | None:
        """The route for a called user part, or None when no route matches. Never raises."""
        if len(user_part) > MAX_USER_PART:
            return None
        raw = unquote(user_part).partition(";")[0].strip()
        entry = self._exact.get(raw)
        if entry is not None and not raw.startswith("+"):
            return Route(entry[0], entry[1], raw)
        key = self.normalise(user_part) or raw
        entry = self._exact.get(key)
        if entry is None:
            for length in range(min(len(key), self._longest), -1, -1):
                entry = self._prefixes.get(key[:length])
                if entry is not None:
                    break
        if entry is None:
            return None
        return Route(entry[0], entry[1], key)

    def candidates(self, route: HasDestinations[E], *, cloud_available: bool) -> list[E]:
        """The destinations to try in order; ``cloud`` ones only while the cloud is available."""
        return [d for d in route.destinations if cloud_available or d.kind != "cloud"]


def _checked_destinations(destinations: Sequence[D], index: int) -> tuple[D, ...]:
    checked = tuple(destinations)
    if not checked:
        raise RoutingError("a route needs at least one destination", index=index)
    for dest in checked:
        if dest.kind not in KINDS:
            raise RoutingError(f"unknown destination kind {dest.kind!r}", index=index)
    return checked


def _global_phone_context(params: str) -> str | None:
    """The ``+<digits>`` of a ``phone-context`` tel: parameter (RFC 3966 §5.1.5), or None."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "phone-context":
            digits = _SEPARATORS.sub("", value)
            if _DIALLABLE.fullmatch(digits) and digits.startswith("+"):
                return digits
    return None
