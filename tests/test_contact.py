"""Contact data: email, phone, country, company keys, domains and bad-lead signals."""

from __future__ import annotations

import string

import email_validator
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from leadflow.core.contact import (
    _FAST_EMAIL,
    ContactError,
    Phone,
    _fast_email,
    bad_lead_signals,
    email_domain,
    is_disposable,
    is_free_mail,
    normalize_company,
    normalize_country,
    normalize_domain,
    normalize_email,
    normalize_name,
    normalize_phone,
)


def reference(address: str) -> str | None:
    """email-validator's verdict (no DNS), lowercased like the CRM dedupes; None when refused."""

    try:
        info = email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    return info.normalized.lower()


# ------------------------------------------------------------------------------------- email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jane.doe@acme.com", "jane.doe@acme.com"),
        ("  Jane.Doe@Acme.COM \n", "jane.doe@acme.com"),
        ("MAILTO:sales@acme.io", "sales@acme.io"),
        ("o'brien+crm@eu.sub.acme.co.uk", "o'brien+crm@eu.sub.acme.co.uk"),
        ("a!#$%&'*+/=?^_`{|}~-z@x.org", "a!#$%&'*+/=?^_`{|}~-z@x.org"),
        ("first.middle.last@a-b.c-d.museum", "first.middle.last@a-b.c-d.museum"),
        ("x@1.com", "x@1.com"),
        # Non-ASCII goes through email-validator (slow path).
        ("José@Acme.com", "josé@acme.com"),
        ("info@münchen.de", "info@münchen.de"),
        # Punycode is given back in Unicode, the same as the address typed in Unicode.
        ("info@xn--mnchen-3ya.de", "info@münchen.de"),
    ],
)
def test_valid_emails_are_normalized(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "mailto:",
        "plainaddress",
        "@acme.com",
        "jane@",
        "jane@acme",
        "jane@@acme.com",
        "jane doe@acme.com",
        ".jane@acme.com",
        "jane.@acme.com",
        "ja..ne@acme.com",
        "jane@acme..com",
        "jane@-acme.com",
        "jane@acme-.com",
        "jane@acme.123",
        "jane@[127.0.0.1]",
        "jane@localhost",
        "jane@acme.test",
        "jane@acme.invalid",
        "jane@acme.local",
        "jane@hidden.onion",
        "jane@10.in-addr.arpa",
        "jane@ab--cd.com",
        "jane@xn--zz.com",
        "jane@" + "a" * 64 + ".com",
        "j@" + ".".join(["abcdefghi"] * 25) + ".com",
    ],
)
def test_invalid_emails_name_the_field(raw: str) -> None:
    with pytest.raises(ContactError) as info:
        normalize_email(raw)
    assert info.value.field == "email"
    assert str(info.value).startswith("email: ")
    assert info.value.message


def test_contact_error_is_a_value_error() -> None:
    err = ContactError("phone", "is odd")
    assert isinstance(err, ValueError)
    assert (err.field, err.message, str(err)) == ("phone", "is odd", "phone: is odd")


def test_email_helpers() -> None:
    assert email_domain("jane@eu.acme.com") == "eu.acme.com"
    assert is_free_mail("gmail.com") and is_free_mail("gmx.de")
    assert not is_free_mail("acme.com")
    assert is_disposable("mailinator.com")
    assert not is_disposable("acme.com")


# The fast pattern's alphabet, and edge cases around every limit it claims to enforce.
ATEXT = string.ascii_lowercase + string.digits + "!#$%&'*+/=?^_`{|}~-"
LDH = string.ascii_lowercase + string.digits + "-"
SPECIAL_TLDS = list(email_validator.SPECIAL_USE_DOMAIN_NAMES)

atoms = st.text(ATEXT, min_size=1, max_size=12) | st.text(ATEXT, min_size=20, max_size=64)
local_parts = st.lists(atoms, min_size=1, max_size=6).map(".".join)


@st.composite
def labels(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["plain", "plain", "hyphen34", "xn", "long", "single"]))
    if kind == "single":
        return draw(st.sampled_from(string.ascii_lowercase + string.digits))
    if kind == "hyphen34":  # "ab--cd": hyphens in the 3rd and 4th position
        return draw(st.text(LDH[:-1], min_size=2, max_size=2)) + "--" + draw(st.text(LDH[:-1], min_size=1))
    if kind == "xn":
        return "xn--" + draw(st.text(LDH[:-1], min_size=1, max_size=12))
    size = (1, 20) if kind == "plain" else (55, 66)
    middle = draw(st.text(LDH, min_size=max(0, size[0] - 2), max_size=size[1] - 2))
    return draw(st.sampled_from(LDH[:-1])) + middle + draw(st.sampled_from(LDH[:-1]))


tlds = (
    st.sampled_from(["com", "org", "io", "de", "co", "museum", "photography", "xn"])
    | st.sampled_from(SPECIAL_TLDS)
    | st.text(string.ascii_lowercase, min_size=2, max_size=63)
)
domains = st.builds(lambda ls, tld: ".".join([*ls, tld]), st.lists(labels(), min_size=1, max_size=5), tlds)
candidate_addresses = st.builds(lambda lp, d: f"{lp}@{d}", local_parts, domains)


@settings(max_examples=600)
@given(candidate_addresses | st.from_regex(_FAST_EMAIL, fullmatch=True))
def test_fast_path_only_accepts_what_email_validator_accepts(address: str) -> None:
    fast = _fast_email(address)
    event("fast path decided" if fast is not None else "left to email-validator")
    if fast is not None:
        assert reference(address) == fast


@settings(max_examples=400)
@given(candidate_addresses)
def test_normalize_email_agrees_with_email_validator(address: str) -> None:
    expected = reference(address)
    if expected is None:
        with pytest.raises(ContactError):
            normalize_email(address)
    else:
        assert normalize_email(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "a@" + "b" * 63 + ".com",
        "a" * 64 + "@acme.com",
        "a@" + ".".join(["b" * 63] * 3) + "." + "c" * 60,  # 254 characters in all
        "x@" + "a" * 61 + "." + "z" * 63,
        "a.b.c.d@e.f.g.h.io",
    ],
)
def test_fast_path_edges_match_email_validator(address: str) -> None:
    assert reference(address) == normalize_email(address)


# ------------------------------------------------------------------------------------- phone


@pytest.mark.parametrize(
    ("raw", "country", "e164"),
    [
        ("+1 650 253 0000", None, "+16502530000"),
        ("(650) 253-0000", "US", "+16502530000"),
        ("  +1 (415) 555-2671  ", None, "+14155552671"),
        ("030 1234567", "DE", "+49301234567"),
        ("030 1234567", "de", "+49301234567"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("0044 20 7946 0018", "GB", "+442079460018"),
        ("01 42 68 53 00", "FR", "+33142685300"),
        ("03-1234-5678", "JP", "+81312345678"),
        # An international number keeps its own country whatever the lead's country says.
        ("+49 30 1234567", "US", "+49301234567"),
        ("+1 415 555 2671", "DE", "+14155552671"),
    ],
)
def test_phone_numbers_become_e164(raw: str, country: str | None, e164: str) -> None:
    phone = normalize_phone(raw, country)
    assert phone == Phone(e164, raw.strip(), None)


def test_same_digits_differ_by_country() -> None:
    assert normalize_phone("030 1234567", "DE").e164 != normalize_phone("030 1234567", "GB").e164


@pytest.mark.parametrize(
    ("raw", "country", "fragment"),
    [
        ("650 253 0000", None, "cannot be parsed"),
        ("12", "US", "is not a valid number for US"),
        ("+1 555", None, "is not a valid number"),
        ("+99 123", None, "cannot be parsed"),
        ("call me maybe", "US", "cannot be parsed"),
    ],
)
def test_impossible_phone_numbers_are_kept_and_flagged(raw: str, country: str | None, fragment: str) -> None:
    phone = normalize_phone(raw, country)
    assert phone.e164 is None
    assert phone.raw == raw
    assert phone.problem is not None and fragment in phone.problem


def test_international_invalid_number_does_not_blame_the_country() -> None:
    problem = normalize_phone("+1 555", "US").problem
    assert problem is not None and "for US" not in problem


def test_empty_phone_is_not_a_problem() -> None:
    assert normalize_phone("   ", "US") == Phone(None, "", None)


# ------------------------------------------------------------------------------------- country


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        (" DEU ", "DE"),
        ("Germany", "DE"),
        ("germany", "DE"),
        ("Deutschland", "DE"),
        ("GBR", "GB"),
        ("United Kingdom", "GB"),
        ("UK", "GB"),
        ("England", "GB"),
        ("USA", "US"),
        ("u.s.a.", "US"),
        ("United States", "US"),
        ("United States of America", "US"),
        ("Holland", "NL"),
        ("The Netherlands", "NL"),
        ("Netherlands", "NL"),
        ("España", "ES"),
        ("Brasil", "BR"),
        ("UAE", "AE"),
        ("South Korea", "KR"),
        ("Russia", "RU"),
        ("Czech Republic", "CZ"),
        ("Czechia", "CZ"),
        ("Côte d'Ivoire", "CI"),
        ("Viet Nam", "VN"),
        ("Vietnam", "VN"),
        ("Iran", "IR"),
        ("Bolivia", "BO"),
        ("Taiwan", "TW"),
        ("France", "FR"),
        ("Japan", "JP"),
    ],
)
def test_countries_resolve_to_alpha2(raw: str, code: str) -> None:
    assert normalize_country(raw) == code


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "Narnia",
        "Atlantis",
        "xx",
        "zz",
        "none",
        "n/a",
        "unknown",
        "-",
        "?",
        "test",
        "united",
        "new",
    ],
)
def test_unknown_countries_are_refused(raw: str) -> None:
    with pytest.raises(ContactError) as info:
        normalize_country(raw)
    assert info.value.field == "country"


# ------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  JANE   DOE ", "Jane Doe"),
        ("jane doe", "Jane Doe"),
        ("mary-jane o'neil", "Mary-Jane O'Neil"),
        ("o'BRIEN", "o'BRIEN"),
        ("McDonald", "McDonald"),
        ("", ""),
        ("123", "123"),
    ],
)
def test_names_are_tidied(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


# ------------------------------------------------------------------------------------- company


@pytest.mark.parametrize(
    "raw",
    [
        "ACME, Inc.",
        "Acme Incorporated",
        "acme",
        "  ACME  ",
        "The Acme Company",
        "Acme LLC",
        "Acme L.L.C.",
        "Acme Corp.",
        "Acme Corporation",
        "Acme Ltd",
        "Acme Limited",
        "Acme GmbH",
        "Acme GmbH & Co. KG",
        "Acme S.A.",
        "Acme Pty. Ltd.",
        "ACME PLC",
    ],
)
def test_company_names_share_a_key(raw: str) -> None:
    assert normalize_company(raw) == "acme"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Société Générale S.A.", "Societe Generale SA"),
        ("Procter & Gamble Co.", "PROCTER & GAMBLE"),
        ("AT&T Inc.", "at&t"),
        ("J.P. Morgan", "JP Morgan"),
    ],
)
def test_company_keys_match(a: str, b: str) -> None:
    assert normalize_company(a) == normalize_company(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("Acme", "Acme Widgets"), ("Apple", "Applied Materials"), ("Acme Inc", "Inc Acme")],
)
def test_different_companies_keep_different_keys(a: str, b: str) -> None:
    assert normalize_company(a) != normalize_company(b)


@pytest.mark.parametrize(("raw", "expected"), [("Inc.", "inc"), ("The", "the"), ("Co.", "co")])
def test_a_lone_suffix_is_kept(raw: str, expected: str) -> None:
    assert normalize_company(raw) == expected


@given(
    name=st.text(string.ascii_letters + string.digits + " ,.-'", min_size=1, max_size=30).filter(
        lambda s: any(c.isalnum() for c in s)
    ),
    suffix=st.sampled_from(
        [", Inc.", " LLC", " L.L.C.", " Ltd.", " GmbH", " Corporation", " S.A.", " & Co."]
    ),
)
def test_company_key_ignores_case_punctuation_and_legal_form(name: str, suffix: str) -> None:
    key = normalize_company(name)
    assert key == normalize_company(name.upper()) == normalize_company(name.lower())
    assert normalize_company(name + suffix) == key


# ------------------------------------------------------------------------------------- domain


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("acme.com", "acme.com"),
        ("https://www.Acme.com/about", "acme.com"),
        ("http://acme.com", "acme.com"),
        ("HTTPS://ACME.COM/", "acme.com"),
        ("www.acme.co.uk", "acme.co.uk"),
        ("https://eu.acme.com/path?q=1#top", "eu.acme.com"),
        ("acme.com:8443", "acme.com"),
        ("https://user:secret@acme.com:8080/x", "acme.com"),
        ("acme.com?utm_source=x", "acme.com"),
        ("acme.com#pricing", "acme.com"),
        ("ACME.COM.", "acme.com"),
        ("  acme.com  ", "acme.com"),
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("https://www.münchen.de/", "xn--mnchen-3ya.de"),
    ],
)
def test_domains_from_urls(raw: str, expected: str) -> None:
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "https://",
        "localhost",
        "acme",
        "1.2.3.4",
        "acme..com",
        "-acme.com",
        "acme_corp.com",
        "a b.com",
    ],
)
def test_invalid_domains_name_the_field(raw: str) -> None:
    with pytest.raises(ContactError) as info:
        normalize_domain(raw)
    assert info.value.field == "domain"


# ------------------------------------------------------------------------------------- bad lead

GOOD_PHONE = normalize_phone("+1 650 253 0000")
BAD_PHONE = normalize_phone("12", "US")


def test_clean_contact_data_gives_no_signals() -> None:
    assert bad_lead_signals(email="jane@acme.com", phone=GOOD_PHONE, first_name="Jane", last_name="Doe") == []
    # Free mail says nothing about the person: it is not a bad lead.
    assert bad_lead_signals(email="jane@gmail.com", phone=None, first_name="Jane", last_name=None) == []
    # Either channel is enough to reach the lead.
    assert bad_lead_signals(email=None, phone=GOOD_PHONE, first_name=None, last_name=None) == []


@pytest.mark.parametrize(
    ("email", "fragment"),
    [
        ("jane@example.com", "placeholder"),
        ("jane@test.com", "placeholder"),
        ("jane@mailinator.com", "disposable"),
        ("test@acme.com", "not a person's mailbox"),
        ("noreply@acme.com", "not a person's mailbox"),
    ],
)
def test_email_signals(email: str, fragment: str) -> None:
    signals = bad_lead_signals(email=email, phone=None, first_name="Jane", last_name="Doe")
    assert len(signals) == 1
    assert fragment in signals[0]


@pytest.mark.parametrize(
    ("first", "last"),
    [("Test", "Smith"), ("asdf", None), ("Mickey", "Mouse"), ("N/A", None), (None, "Unknown")],
)
def test_placeholder_names_are_signals(first: str | None, last: str | None) -> None:
    signals = bad_lead_signals(email="jane@acme.com", phone=None, first_name=first, last_name=last)
    assert len(signals) == 1 and "placeholder" in signals[0]


@pytest.mark.parametrize(("first", "last"), [("Testa", "Rossi"), ("Nadia", "Nunez"), ("Mickey", "Rourke")])
def test_real_names_are_not_signals(first: str, last: str) -> None:
    assert bad_lead_signals(email="x@acme.com", phone=None, first_name=first, last_name=last) == []


def test_invalid_phone_is_a_signal_and_leaves_no_way_to_reach() -> None:
    signals = bad_lead_signals(email=None, phone=BAD_PHONE, first_name="Jane", last_name="Doe")
    assert BAD_PHONE.problem in signals
    assert "no valid email or phone to reach the lead" in signals
    with_email = bad_lead_signals(email="jane@acme.com", phone=BAD_PHONE, first_name="Jane", last_name="Doe")
    assert with_email == [BAD_PHONE.problem]


def test_no_contact_at_all_is_a_signal() -> None:
    assert bad_lead_signals(email=None, phone=None, first_name="Jane", last_name="Doe") == [
        "no valid email or phone to reach the lead"
    ]


def test_signals_accumulate() -> None:
    signals = bad_lead_signals(email="test@example.com", phone=BAD_PHONE, first_name="Test", last_name="Test")
    assert len(signals) == 4
