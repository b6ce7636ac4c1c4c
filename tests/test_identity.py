"""normalize_lead: one function turns raw input from every capture path into column values.

Pure tests of the public functions of leadflow.core.identity (no database).
"""

from __future__ import annotations

import pytest

from leadflow.core.identity import SENIORITIES, infer_seniority, normalize_lead


@pytest.mark.parametrize(
    ("title", "level"),
    [
        ("CEO", "executive"),
        ("Chief Revenue Officer", "executive"),
        ("Co-Founder", "executive"),
        ("VP Sales", "vp"),
        ("Head of Marketing", "vp"),
        ("VP of Sales Operations Manager", "vp"),  # the more senior word wins
        ("Director, IT", "director"),
        ("Account Manager", "manager"),
        ("Team Lead", "manager"),
        ("Marketing Intern", "student"),
        ("Senior Software Engineer", "senior"),
        ("Sr. Developer", "senior"),
        ("Junior Analyst", "entry"),
        ("Marketing Coordinator", "entry"),
        ("Gardener", None),
    ],
)
def test_seniority_is_inferred_from_the_job_title(title: str, level: str | None) -> None:
    assert infer_seniority(title) == level
    norm = normalize_lead({"email": "a@acme.io", "job_title": title})
    assert norm.values.get("seniority") == level


def test_an_explicit_seniority_wins_over_the_inferred_one() -> None:
    norm = normalize_lead({"email": "a@acme.io", "job_title": "CEO", "seniority": " Manager "})
    assert norm.values["seniority"] == "manager"
    assert not norm.errors


def test_an_unknown_seniority_is_an_error_naming_the_field() -> None:
    norm = normalize_lead({"email": "a@acme.io", "seniority": "overlord"})
    assert [f for f, _ in norm.errors] == ["seniority"]
    assert all(level in dict(norm.errors)["seniority"] for level in SENIORITIES)


@pytest.mark.parametrize(
    ("phone", "country", "e164", "zone"),
    [
        ("+49 30 1234567", None, "+49301234567", "Europe/Berlin"),
        ("030 1234567", "DE", "+49301234567", "Europe/Berlin"),
        ("030 1234567", "germany", "+49301234567", "Europe/Berlin"),
        ("+44 20 7946 0958", None, "+442079460958", "Europe/London"),
        ("+1 212 555 0123", None, "+12125550123", "America/New_York"),
        ("+1 415 555 0100", "US", "+14155550100", "America/Los_Angeles"),
        # A toll-free number spans every US zone: no guess.
        ("+1 800 555 0100", None, "+18005550100", None),
    ],
)
def test_phone_becomes_e164_and_gives_the_time_zone(
    phone: str, country: str | None, e164: str, zone: str | None
) -> None:
    raw = {"email": "a@acme.io", "phone": phone}
    if country:
        raw["country"] = country
    norm = normalize_lead(raw)
    assert not norm.errors
    assert norm.values["phone"] == e164
    assert norm.values["phone_raw"] == phone
    assert norm.values.get("timezone") == zone


def test_a_given_time_zone_wins_over_the_phone() -> None:
    norm = normalize_lead({"phone": "+49 30 1234567", "timezone": "America/Chicago"})
    assert norm.values["timezone"] == "America/Chicago"


def test_a_bad_time_zone_is_an_error() -> None:
    norm = normalize_lead({"email": "a@acme.io", "timezone": "Mars/Olympus_Mons"})
    assert [f for f, _ in norm.errors] == ["timezone"]
    assert "timezone" not in norm.values


def test_an_invalid_phone_is_kept_raw_and_flagged_not_refused() -> None:
    norm = normalize_lead({"email": "ada@acme.io", "phone": "12", "country": "DE"})
    assert not norm.errors
    assert norm.values["phone"] is None
    assert norm.values["phone_raw"] == "12"
    reasons = norm.values["bad_candidate_reasons"]
    assert reasons and any("'12'" in r for r in reasons)


def test_names_emails_and_countries_are_normalized() -> None:
    norm = normalize_lead(
        {
            "first_name": "  ADA  ",
            "last_name": "lovelace",
            "email": "  Ada.Lovelace@ACME.io ",
            "country": "United Kingdom",
        }
    )
    assert not norm.errors
    assert norm.values["first_name"] == "Ada"
    assert norm.values["last_name"] == "Lovelace"
    assert norm.values["email"] == "ada.lovelace@acme.io"
    assert norm.values["country"] == "GB"
    assert norm.values["bad_candidate_reasons"] is None


def test_account_hints_come_from_the_email_domain_unless_free_mail() -> None:
    corporate = normalize_lead({"email": "ada@acme.io", "company": "ACME, Inc."})
    assert corporate.account_domain == "acme.io"
    assert corporate.company_key == "acme"
    free = normalize_lead({"email": "ada@gmail.com"})
    assert free.account_domain is None
    assert free.company_key is None
    free_with_company = normalize_lead({"email": "ada@gmail.com", "company": "Acme Incorporated"})
    assert free_with_company.account_domain is None
    assert free_with_company.company_key == "acme"


def test_the_website_names_the_account_before_the_email() -> None:
    norm = normalize_lead({"email": "ada@mail.acme-corp.io", "website": "https://www.Acme.com/about"})
    assert norm.account_domain == "acme.com"
    free_site = normalize_lead({"email": "ada@acme.io", "website": "https://gmail.com"})
    assert free_site.account_domain is None


def test_firmographics_go_to_the_account() -> None:
    norm = normalize_lead(
        {
            "email": "a@acme.io",
            "industry": " Software ",
            "employee_count": "1,200",
            "annual_revenue": "5_000_000",
            "country": "DEU",
        }
    )
    assert norm.account_values == {
        "industry": "Software",
        "employee_count": 1200,
        "annual_revenue": 5_000_000,
        "country": "DE",
    }


def test_every_field_error_is_collected_not_only_the_first() -> None:
    norm = normalize_lead(
        {
            "email": "not-an-address",
            "country": "Narnia",
            "timezone": "Nowhere/Land",
            "seniority": "overlord",
            "consent": "maybe",
            "unsubscribed": "perhaps",
            "employee_count": "lots",
            "annual_revenue": -5,
            "origin": "partner",
            "website": "not a domain",
            "first_name": "x" * 101,
        }
    )
    assert {f for f, _ in norm.errors} == {
        "email",
        "country",
        "timezone",
        "seniority",
        "consent",
        "unsubscribed",
        "employee_count",
        "annual_revenue",
        "origin",
        "website",
        "first_name",
    }
    assert dict(norm.errors)["annual_revenue"] == "must not be negative"


def test_a_contact_is_required_on_create_but_not_on_update() -> None:
    assert normalize_lead({"first_name": "Ada"}).errors == [
        ("email", "an email or a phone number is required")
    ]
    assert normalize_lead({"first_name": "Ada"}, require_contact=False).errors == []
    assert normalize_lead({"phone": "+49 30 1234567"}).errors == []


def test_absent_keys_stay_absent_so_updates_never_erase() -> None:
    norm = normalize_lead({"job_title": "CTO"}, require_contact=False)
    assert set(norm.values) == {"job_title", "seniority"}
    assert normalize_lead({}, require_contact=False).values == {}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"email": "ada@example.com"}, "placeholder"),
        ({"email": "test@acme.io"}, "not a person's mailbox"),
        ({"email": "ada@mailinator.com"}, "disposable"),
        ({"email": "ada@acme.io", "first_name": "Test"}, "name 'test' is a placeholder"),
        ({"phone": "12345", "country": "DE"}, "no valid email or phone"),
    ],
)
def test_bad_lead_candidates_carry_their_reasons(raw: dict[str, str], fragment: str) -> None:
    norm = normalize_lead(raw)
    assert not norm.errors
    reasons = norm.values["bad_candidate_reasons"]
    assert reasons is not None
    assert any(fragment in r for r in reasons), reasons


@pytest.mark.parametrize(
    ("value", "flag"), [("yes", True), ("1", True), ("on", True), ("no", False), ("0", False), (True, True)]
)
def test_unsubscribed_accepts_yes_no_values(value: object, flag: bool) -> None:
    assert normalize_lead({"email": "a@acme.io", "unsubscribed": value}).values["unsubscribed"] is flag


def test_origin_and_consent_are_normalized() -> None:
    norm = normalize_lead({"email": "a@acme.io", "origin": " SALES ", "consent": "Granted"})
    assert norm.values["origin"] == "sales"
    assert norm.values["consent"] == "granted"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("9007199254740993", 9007199254740993),  # 2**53 + 1: a float would round it
        ("1,250,000", 1250000),
        ("12.9", 12),
        (7, 7),
    ],
)
def test_numbers_are_read_exactly(raw: object, want: int) -> None:
    norm = normalize_lead({"email": "a@acme.io", "company": "Acme", "annual_revenue": raw})
    assert not norm.errors
    assert norm.account_values["annual_revenue"] == want


@pytest.mark.parametrize("raw", ["inf", "1e400", "NaN", "lots", "-5", str(2**63)])
def test_unusable_numbers_are_errors_naming_the_field(raw: str) -> None:
    norm = normalize_lead({"email": "a@acme.io", "company": "Acme", "annual_revenue": raw})
    assert [f for f, _ in norm.errors] == ["annual_revenue"]


def test_employee_count_must_fit_its_column() -> None:
    norm = normalize_lead({"email": "a@acme.io", "company": "Acme", "employee_count": str(2**31)})
    assert [f for f, _ in norm.errors] == ["employee_count"]
