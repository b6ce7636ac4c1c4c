"""Validation and normalization of contact data (pure: no web or database imports).

Validation is done by maintained libraries (email-validator without DNS, phonenumbers, pycountry).
Bulk import validates hundreds of thousands of rows, and email-validator runs at ~19k addresses/s,
so plain ASCII addresses take a fast path: a strict pattern whose every match email-validator also
accepts (a property test holds the two together); anything else goes to email-validator.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import email_validator
import pycountry
from disposable_email_domains import blocklist as _DISPOSABLE

# Re-exported: contact data is imported from here; the phone code lives in its own module.
from leadflow.core.phones import Phone as Phone
from leadflow.core.phones import normalize_phone as normalize_phone

# Webmail providers: an address there says nothing about the person's company, so it never
# creates or matches a company account.
FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    [
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "yahoo.de",
        "yahoo.es",
        "yahoo.it",
        "yahoo.co.jp",
        "yahoo.com.br",
        "ymail.com",
        "rocketmail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "hotmail.de",
        "hotmail.it",
        "hotmail.es",
        "outlook.com",
        "outlook.fr",
        "outlook.de",
        "live.com",
        "live.co.uk",
        "live.fr",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "gmx.at",
        "gmx.ch",
        "web.de",
        "mail.com",
        "mail.ru",
        "yandex.ru",
        "yandex.com",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "zoho.com",
        "zohomail.com",
        "fastmail.com",
        "hey.com",
        "tutanota.com",
        "tuta.io",
        "qq.com",
        "163.com",
        "126.com",
        "sina.com",
        "naver.com",
        "daum.net",
        "hanmail.net",
        "free.fr",
        "orange.fr",
        "laposte.net",
        "wanadoo.fr",
        "sfr.fr",
        "libero.it",
        "virgilio.it",
        "t-online.de",
        "freenet.de",
        "seznam.cz",
        "wp.pl",
        "o2.pl",
        "interia.pl",
        "rediffmail.com",
        "uol.com.br",
        "bol.com.br",
        "terra.com.br",
        "btinternet.com",
        "sky.com",
        "virginmedia.com",
        "comcast.net",
        "verizon.net",
        "att.net",
        "sbcglobal.net",
        "bellsouth.net",
        "cox.net",
        "shaw.ca",
        "rogers.com",
        "bigpond.com",
        "optusnet.com.au",
        "xtra.co.nz",
    ]
)

# Domains that exist only in documentation or tests: a real person is not reachable there.
PLACEHOLDER_DOMAINS: frozenset[str] = frozenset(
    {"example.com", "example.org", "example.net", "test.com", "domain.com", "email.com", "nowhere.com"}
)
PLACEHOLDER_LOCALS: frozenset[str] = frozenset(
    {"test", "asdf", "noreply", "no-reply", "donotreply", "do-not-reply", "none", "null", "xxx", "fake"}
)
PLACEHOLDER_NAMES: frozenset[str] = frozenset(
    {"test", "asdf", "qwerty", "xxx", "none", "null", "n/a", "na", "unknown", "fake", "mickey mouse"}
)

_FAST_EMAIL = re.compile(
    r"(?P<local>[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})",
)
_SPECIAL_TLDS = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


class ContactError(ValueError):
    """A value that cannot be stored; ``field`` names the input field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# ------------------------------------------------------------------------------------- email


def _fast_email(value: str) -> str | None:
    """Return the normalized address when the strict ASCII pattern decides it, else None."""

    if len(value) > 254:
        return None
    m = _FAST_EMAIL.fullmatch(value)
    if m is None:
        return None
    local, domain = m.group("local"), m.group("domain")
    if len(local) > 64 or len(domain) > 253:
        return None
    tld = domain.rsplit(".", 1)[1]
    if tld in _SPECIAL_TLDS:
        return None
    # Hyphens in a label's 3rd and 4th places: Punycode ("xn--", shown in Unicode by
    # email-validator, and refused when not valid IDNA) or an invalid R-LDH label ("ab--cd").
    if "--" in domain and any(label[2:4] == "--" for label in domain.split(".")):
        return None
    return value


@lru_cache(maxsize=65536)
def _slow_email(value: str) -> str:
    try:
        info = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ContactError("email", str(exc)) from None
    # Addresses compare case-insensitively in practice (every CRM dedupes that way).
    return info.normalized.lower()


def normalize_email(raw: str) -> str:
    """Validate and normalize an email address, raising ContactError naming the field."""

    value = raw.strip().lower()
    if not value:
        raise ContactError("email", "is empty")
    if value.startswith("mailto:"):
        value = value[7:]
    fast = _fast_email(value)
    return fast if fast is not None else _slow_email(value)


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[1]


def is_free_mail(domain: str) -> bool:
    return domain in FREE_MAIL_DOMAINS


def is_disposable(domain: str) -> bool:
    return domain in _DISPOSABLE


# ------------------------------------------------------------------------------------- phone


# Phone, normalize_phone: leadflow.core.phones (the fast path every capture path shares).


# ------------------------------------------------------------------------------------- country

_COUNTRY_ALIASES = {
    "uk": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "great britain": "GB",
    "usa": "US",
    "u.s.": "US",
    "u.s.a.": "US",
    "united states of america": "US",
    "america": "US",
    "deutschland": "DE",
    "holland": "NL",
    "the netherlands": "NL",
    "south korea": "KR",
    "korea": "KR",
    "russia": "RU",
    "czech republic": "CZ",
    "españa": "ES",
    "brasil": "BR",
    "uae": "AE",
}


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


@lru_cache(maxsize=4096)
def normalize_country(raw: str) -> str:
    """ISO 3166-1 alpha-2 code from a code, alpha-3 code or English name."""

    value = raw.strip()
    if not value:
        raise ContactError("country", "is empty")
    alias = _COUNTRY_ALIASES.get(value.lower())
    if alias:
        return alias
    try:
        country = pycountry.countries.lookup(value)
    except LookupError:
        try:
            matches = pycountry.countries.search_fuzzy(value)
        except LookupError:
            raise ContactError("country", f"{value!r} is not a known country") from None
        # The fuzzy search also matches inside subdivision names ("none" gave Italy, "xx" Malta):
        # keep only countries whose own English name contains what was typed.
        folded = _fold(value)
        matches = [
            c
            for c in matches
            if any(folded in _fold(getattr(c, a, "")) for a in ("name", "official_name", "common_name"))
        ]
        if len(matches) != 1:
            raise ContactError("country", f"{value!r} is not a known country") from None
        country = matches[0]
    return str(country.alpha_2)


# ------------------------------------------------------------------------------------- names

_SPACES = re.compile(r"\s+")


# Names, titles and companies repeat all through a bulk import: the pure normalizers are cached
# (one million rows: identity's cost per row fell from 19.5 to 11.4 us).
@lru_cache(maxsize=65536)
def normalize_name(raw: str) -> str:
    """Collapse whitespace, and fix ALL-CAPS or all-lowercase names ("o'BRIEN" stays mixed)."""

    value = _SPACES.sub(" ", unicodedata.normalize("NFC", raw)).strip()
    if value and (value.isupper() or value.islower()) and any(c.isalpha() for c in value):
        value = _title(value)
    return value


def _title(value: str) -> str:
    out = []
    for word in value.split(" "):
        parts = re.split(r"([-'\u2019])", word.lower())
        out.append("".join(p[:1].upper() + p[1:] if p not in "-'\u2019" else p for p in parts))
    return " ".join(out)


_LEGAL_SUFFIXES = frozenset(
    [
        "inc",
        "incorporated",
        "llc",
        "ltd",
        "limited",
        "corp",
        "corporation",
        "co",
        "company",
        "gmbh",
        "ag",
        "sa",
        "sas",
        "sarl",
        "bv",
        "nv",
        "plc",
        "pty",
        "oy",
        "ab",
        "as",
        "aps",
        "spa",
        "srl",
        "kg",
        "ohg",
        "kk",
        "pte",
        "lp",
        "llp",
        "sl",
        "se",
    ]
)
_NON_WORD = re.compile(r"[^\w\s&]+")
_DOTTED_INITIALS = re.compile(r"\b(?:\w\.){2,}")  # "L.L.C.", "S.A.", "J.P."


@lru_cache(maxsize=65536)
def normalize_company(raw: str) -> str:
    """A matching key for company names: "ACME, Inc." and "Acme Incorporated" give "acme"."""

    value = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode() or raw
    value = _DOTTED_INITIALS.sub(lambda m: m.group().replace(".", ""), value.lower())
    words = _NON_WORD.sub(" ", value).split()
    while len(words) > 1 and (words[-1] in _LEGAL_SUFFIXES or words[-1] == "&"):  # "GmbH & Co. KG"
        words.pop()
    if words and words[0] == "the" and len(words) > 1:
        words.pop(0)
    return " ".join(words)


_DOMAIN_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_DOMAIN_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@lru_cache(maxsize=65536)
def normalize_domain(raw: str) -> str:
    """Registrable host from a URL or domain: "https://www.Acme.com/about" gives "acme.com"."""

    value = _DOMAIN_SCHEME.sub("", raw.strip().lower())
    value = value.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    value = value.rsplit("@", 1)[-1].split(":", 1)[0].rstrip(".")
    if value.startswith("www."):
        value = value[4:]
    if not value:
        raise ContactError("domain", "is empty")
    try:
        value = value.encode("idna").decode("ascii")
    except UnicodeError:
        raise ContactError("domain", f"{raw!r} is not a valid domain") from None
    labels = value.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(lbl) for lbl in labels) or labels[-1].isdigit():
        raise ContactError("domain", f"{raw!r} is not a valid domain")
    return value


# ------------------------------------------------------------------------------------- bad lead


def bad_lead_signals(
    *,
    email: str | None,
    phone: Phone | None,
    first_name: str | None,
    last_name: str | None,
) -> list[str]:
    """Reasons the contact data cannot reach a real person; empty when nothing is wrong.

    These mark a *candidate*: sales confirms before a lead moves to bad (seeds: only contact data
    that is outright wrong, or an obvious bad fit, makes a bad lead).
    """

    reasons: list[str] = []
    if email:
        local, domain = email.rsplit("@", 1)
        if domain in PLACEHOLDER_DOMAINS:
            reasons.append(f"email domain {domain} is a placeholder")
        elif is_disposable(domain):
            reasons.append(f"email domain {domain} is a disposable mailbox")
        if local in PLACEHOLDER_LOCALS:
            reasons.append(f"email {email} is not a person's mailbox")
    if phone is not None and phone.problem:
        reasons.append(phone.problem)
    full = " ".join(x for x in (first_name, last_name) if x).strip().lower()
    if full and (full in PLACEHOLDER_NAMES or (first_name or "").lower() in PLACEHOLDER_NAMES):
        reasons.append(f"name {full!r} is a placeholder")
    if not email and (phone is None or phone.e164 is None):
        reasons.append("no valid email or phone to reach the lead")
    return reasons
