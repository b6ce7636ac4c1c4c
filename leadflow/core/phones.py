"""Phone numbers: normalization to E.164 and the time zone a number implies (pure).

Every capture path (API, web form, CSV import) goes through :func:`normalize_phone` and
:func:`phone_and_timezone`. ``phonenumbers`` parses, validates and formats a number in ~60 us, and
finding its time zone costs as much again, because the library is written for any input in any
script. A bulk import of a million rows cannot afford that (it would be the slowest step by far),
so this module decides the common case itself: ASCII digits with ordinary punctuation and an
optional "x123"/"ext. 123" extension, in E.164/international form or in a region's national form.
It replays the library's own algorithm (``parse``, ``is_valid_number``, ``format_number(E164)``,
``time_zones_for_number``) over the library's own metadata, with each region's type patterns
compiled once into one regex per number length.

The fast path only ever *accepts*: it answers for numbers that are valid, and returns ``None``
for anything else (unusual shapes, international dialling prefixes, national prefixes that need a
transform rule, non-geographic numbers, invalid numbers), which then go through the library
(:func:`library_phone`), so error messages stay the library's. A property test
(tests/test_import_phones.py) holds both paths to the same answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType
from phonenumbers import timezone as pn_timezone
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

# Optional "(" and "+", then a digit, then digits and the usual separators; nothing else.
_SHAPE = re.compile(r"\(?(\+)?\(?[0-9][0-9 ().\-/]*")
_NON_DIGIT = re.compile(r"[^0-9]")
# A trailing extension in its common spellings: "x45", "ext. 45", "extension 45".
_EXTENSION = re.compile(r"(.*[0-9][).]?)[ \t,]*(?:x|ext\.?|extension)[ \t.:]*[0-9]{1,7}", re.IGNORECASE)
_UNKNOWN = PhoneNumberType.UNKNOWN
_TOO_SHORT, _POSSIBLE, _LOCAL_ONLY, _INVALID_LENGTH, _TOO_LONG = range(5)


@dataclass(frozen=True, slots=True)
class _Meta:
    region: str
    cc: int
    cc_str: str
    idd: re.Pattern[str] | None
    # National prefix for parsing; None when the region has none.
    npp: re.Pattern[str] | None
    transform: bool  # the national prefix has a transform rule
    general: re.Pattern[str] | None  # the general pattern alone (no length check)
    general_lengths: tuple[int, ...]
    local_lengths: frozenset[int]
    # Per national-number length: one pattern that fullmatches when the general description and
    # at least one number type match; the named group that matched is the type, tried in the
    # library's order (first match wins, as in phonenumbers._number_type_helper).
    typed: dict[int, re.Pattern[str] | None]
    leading_digits: re.Pattern[str] | None


@dataclass(frozen=True)
class Phone:
    e164: str | None  # None when the number cannot be valid
    raw: str
    problem: str | None = None


def library_phone(raw: str, country: str | None = None) -> Phone:
    """The reference: ``phonenumbers`` parse, validate and format, for any input.

    A number that cannot be valid is not refused: the lead keeps the raw value and is flagged as a
    bad-lead candidate (seeds: wrong contact data makes a bad lead, which sales then confirms).
    """

    value = raw.strip()
    if not value:
        return Phone(None, "", None)
    country = country.strip().upper() if country else None  # phonenumbers wants "DE", not "de"
    try:
        num = phonenumbers.parse(value, country)
    except phonenumbers.NumberParseException as exc:
        return Phone(None, value, f"phone {value!r} cannot be parsed: {exc._msg}")
    if not phonenumbers.is_valid_number(num):
        where = f" for {country}" if country and not value.startswith("+") else ""
        return Phone(None, value, f"phone {value!r} is not a valid number{where}")
    return Phone(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164), value, None)


def library_timezone(e164: str) -> str | None:
    """The reference time zone of a valid number: its only zone, else None."""

    return _single(list(pn_timezone.time_zones_for_number(phonenumbers.parse(e164))))


# phonenumbers._number_type_helper's order. Fixed line stands for FIXED_LINE and
# FIXED_LINE_OR_MOBILE alike: both are geographical, which is all the time zone lookup asks.
_TYPE_ORDER = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
    ("fixed_line", PhoneNumberType.FIXED_LINE),
    ("mobile", PhoneNumberType.MOBILE),
)
_KIND = dict(_TYPE_ORDER)
_MAX_NSN = 17


def _combined(md: object, length: int) -> re.Pattern[str] | None:
    """The general description and every type that admits ``length``, as one pattern."""

    general = getattr(md, "general_desc", None)
    g_pattern = getattr(general, "national_number_pattern", None)
    g_lengths = getattr(general, "possible_length", ()) or ()
    if not g_pattern or (g_lengths and length not in g_lengths):
        return None
    same = bool(getattr(md, "same_mobile_and_fixed_line_pattern", False))
    alternatives = []
    for name, _kind in _TYPE_ORDER:
        if name == "mobile" and same:
            continue  # the library skips mobile when it equals fixed line
        desc = getattr(md, name, None)
        pattern = getattr(desc, "national_number_pattern", None) if desc is not None else None
        lengths = getattr(desc, "possible_length", ()) or ()
        if not pattern or (lengths and length not in lengths):
            continue
        alternatives.append(f"(?P<{name}>{pattern})")
    if not alternatives:
        return None
    return re.compile(f"(?=(?:{g_pattern})\\Z)(?:{'|'.join(alternatives)})")


@lru_cache(maxsize=512)
def _meta(region: str) -> _Meta | None:
    md = PhoneMetadata.metadata_for_region(region, None)
    if md is None or md.general_desc is None or md.country_code is None:
        return None
    npp_text = md.national_prefix_for_parsing or None
    npp = re.compile(npp_text) if npp_text else None
    general = md.general_desc
    g_pattern = general.national_number_pattern
    return _Meta(
        region=region,
        cc=md.country_code,
        cc_str=str(md.country_code),
        idd=re.compile(md.international_prefix) if md.international_prefix else None,
        npp=npp,
        transform=bool(md.national_prefix_transform_rule),
        general=re.compile(g_pattern) if g_pattern else None,
        general_lengths=tuple(general.possible_length or ()),
        local_lengths=frozenset(general.possible_length_local_only or ()),
        typed={n: _combined(md, n) for n in range(_MAX_NSN + 1)},
        leading_digits=re.compile(md.leading_digits) if md.leading_digits is not None else None,
    )


def _pattern_matches(nsn: str, pattern: re.Pattern[str] | None) -> bool:
    """phonenumbers._match_national_number (the pattern only, no length check)."""

    return pattern is not None and pattern.fullmatch(nsn) is not None


def _number_type(nsn: str, m: _Meta) -> int:
    """phonenumbers._number_type_helper, except that FIXED_LINE_OR_MOBILE reads FIXED_LINE."""

    pattern = m.typed.get(len(nsn))
    if pattern is None:
        return _UNKNOWN
    match = pattern.fullmatch(nsn)
    if match is None or match.lastgroup is None:
        return _UNKNOWN
    return _KIND[match.lastgroup]


def _test_length(nsn: str, m: _Meta) -> int:
    """phonenumbers._test_number_length for the general description."""

    lengths = m.general_lengths
    n = len(nsn)
    if n in m.local_lengths:
        return _LOCAL_ONLY
    if not lengths:
        return _INVALID_LENGTH
    if lengths[0] == n:
        return _POSSIBLE
    if lengths[0] > n:
        return _TOO_SHORT
    if lengths[-1] < n:
        return _TOO_LONG
    return _POSSIBLE if n in lengths[1:] else _INVALID_LENGTH


def _country_code(digits: str) -> int | None:
    """phonenumbers._extract_country_code."""

    if not digits or digits[0] == "0":
        return None
    for i in range(1, min(len(digits), 3) + 1):
        cc = int(digits[:i])
        if cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return cc
    return None


def _strip_national_prefix(number: str, m: _Meta) -> str | None:
    """The number phonenumbers._maybe_strip_national_prefix_carrier_code returns, or None when a
    transform rule applies (not replayed here). The carrier code it also finds does not matter
    for E.164."""

    if m.npp is None or not number:
        return number
    prefix = m.npp.match(number)
    if prefix is None:
        return number
    if m.transform and prefix.groups()[-1] is not None:
        return None
    stripped = number[prefix.end() :]
    if _pattern_matches(number, m.general) and not _pattern_matches(stripped, m.general):
        return number
    return stripped


def _parse(raw: str, region: str | None) -> tuple[int, str] | None:
    """(country code, national significant number) as ``phonenumbers.parse`` finds them, or None
    when this input is not one the fast path replays."""

    value = raw.strip()
    if len(value) > 40:
        return None
    ext = _EXTENSION.fullmatch(value)
    if ext is not None:  # "415 555 0123 x45": E.164 leaves the extension out
        value = ext.group(1)
    shape = _SHAPE.fullmatch(value)
    if shape is None:
        return None
    digits = _NON_DIGIT.sub("", value)
    if not 4 <= len(digits) <= 17:
        return None
    national: str | None
    if shape.group(1):  # "+": the country code comes first
        cc = _country_code(digits)
        if cc is None:
            return None
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc]
        if regions[0] == "001":  # non-geographic entities
            return None
        m = _meta(regions[0])
        national = digits[len(str(cc)) :]
    else:
        if region is None:
            return None
        m = _meta(region)
        if m is None or (m.idd is not None and m.idd.match(digits)):
            return None  # an international dialling prefix: the library's own heuristics
        national = digits
        if digits.startswith(m.cc_str):
            # phonenumbers._maybe_extract_country_code: a national number that starts with the
            # country code loses it when that makes a better number.
            potential = _strip_national_prefix(digits[len(m.cc_str) :], m)
            if potential is None:
                return None
            if (
                not _pattern_matches(digits, m.general) and _pattern_matches(potential, m.general)
            ) or _test_length(digits, m) == _TOO_LONG:
                national = potential
    if m is None:
        return None
    potential = _strip_national_prefix(national, m)
    if potential is None:
        return None
    if _test_length(potential, m) not in (_TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH):
        national = potential
    if not 2 <= len(national) <= 17:
        return None
    return m.cc, national


def _valid_type(cc: int, nsn: str) -> int:
    """The number's type in the region the library assigns it to (UNKNOWN = invalid)."""

    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc, ())
    if len(regions) == 1:
        m = _meta(regions[0])
        return _UNKNOWN if m is None else _number_type(nsn, m)
    for region in regions:
        m = _meta(region)
        if m is None:
            continue
        if m.leading_digits is not None:
            if m.leading_digits.match(nsn):
                return _number_type(nsn, m)
        else:
            kind = _number_type(nsn, m)
            if kind != _UNKNOWN:
                return kind
    return _UNKNOWN


def fast_phone(raw: str, country: str | None) -> Phone | None:
    """The answer of :func:`library_phone` for a valid number, or None when undecided."""

    region = country.strip().upper() if country else None
    parsed = _parse(raw, region)
    if parsed is None:
        return None
    cc, nsn = parsed
    if _valid_type(cc, nsn) == _UNKNOWN:
        return None
    return Phone(f"+{cc}{nsn}", raw.strip(), None)


def normalize_phone(raw: str, country: str | None = None) -> Phone:
    """Parse a phone number to E.164 in the context of the lead's country (the fast path for the
    common case, the library for the rest; same answers)."""

    return fast_phone(raw, country) or library_phone(raw, country)


def _zones_for(cc: int, nsn: str, kind: int) -> list[str]:
    """phonenumbers.timezone.time_zones_for_number for a number of this type."""

    if kind == _UNKNOWN:
        return ["Etc/Unknown"]
    if not phonenumbers.is_number_type_geographical(kind, cc):
        code = str(cc)
        for n in range(TIMEZONE_LONGEST_PREFIX, 0, -1):
            zones = TIMEZONE_DATA.get(code[: 1 + n])
            if zones is not None:
                return list(zones)
        return ["Etc/Unknown"]
    number = f"{cc}{nsn}"
    for n in range(TIMEZONE_LONGEST_PREFIX, 0, -1):
        zones = TIMEZONE_DATA.get(number[:n])
        if zones is not None:
            return list(zones)
    return ["Etc/Unknown"]


def _single(zones: list[str]) -> str | None:
    return zones[0] if len(zones) == 1 and zones[0] != "Etc/Unknown" else None


def timezone_for(e164: str) -> str | None:
    """The time zone a valid number implies (identity infers it when none is given), parsing the
    E.164 form again as the library does: the number's only zone, else None."""

    parsed = _parse(e164, None)
    if parsed is None:
        return library_timezone(e164)
    cc, nsn = parsed
    return _single(_zones_for(cc, nsn, _valid_type(cc, nsn)))


def phone_and_timezone(raw: str, country: str | None) -> tuple[Phone, str | None]:
    """``normalize_phone(raw, country)`` and ``timezone_for`` its E.164 form, in one pass for
    the common case."""

    region = country.strip().upper() if country else None
    parsed = _parse(raw, region)
    if parsed is not None:
        cc, nsn = parsed
        kind = _valid_type(cc, nsn)
        if kind != _UNKNOWN:
            e164 = f"+{cc}{nsn}"
            # Parsing the E.164 form again reads the number in its country's main region; it
            # is the same number unless that region's national prefix strips once more.
            main = _meta(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc][0])
            again = _strip_national_prefix(nsn, main) if main is not None else None
            if again is not None and (
                again == nsn or _test_length(again, main) in (_TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH)  # type: ignore[arg-type]
            ):
                zone = _single(_zones_for(cc, nsn, kind))
            else:
                zone = timezone_for(e164)
            return Phone(e164, raw.strip(), None), zone
    phone = library_phone(raw, country)
    return phone, timezone_for(phone.e164) if phone.e164 else None
