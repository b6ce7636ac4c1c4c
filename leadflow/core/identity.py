"""Turn raw lead input (API, web form, CSV row) into normalized column values (pure).

One function serves every capture path, so a lead looks the same whichever door it came in by.
It collects every field error instead of stopping at the first, so an API answer or an import
error report can name them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadflow.core.contact import (
    ContactError,
    Phone,
    bad_lead_signals,
    email_domain,
    is_free_mail,
    normalize_company,
    normalize_country,
    normalize_domain,
    normalize_email,
    normalize_name,
)
from leadflow.core.lifecycle import Origin
from leadflow.core.phones import phone_and_timezone

CONSENT_VALUES = ("unknown", "granted", "denied")
SENIORITIES = ("executive", "vp", "director", "manager", "senior", "entry", "student", "other")

# First match wins; order puts the more senior words first ("VP of Sales Operations Manager").
_SENIORITY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "executive",
        re.compile(r"\b(ceo|cfo|cto|cio|cmo|coo|cro|chief|founder|co-founder|owner|president|partner)\b"),
    ),
    ("vp", re.compile(r"\b(vp|svp|evp|vice president|head of)\b")),
    ("director", re.compile(r"\bdirector\b")),
    ("manager", re.compile(r"\b(manager|lead|supervisor)\b")),
    ("student", re.compile(r"\b(student|intern|trainee)\b")),
    ("senior", re.compile(r"\b(senior|sr\.?|principal|staff)\b")),
    ("entry", re.compile(r"\b(junior|jr\.?|assistant|associate|coordinator|specialist|analyst)\b")),
)

LEAD_TEXT_LIMITS = {
    "first_name": 100,
    "last_name": 100,
    "job_title": 200,
    "department": 60,
    "company": 300,
    "source": 100,
    "campaign": 200,
}


@dataclass
class NormalizedLead:
    values: dict[str, Any] = field(default_factory=dict)  # Lead columns
    account_domain: str | None = None  # company domain from email or website (never free-mail)
    company_key: str | None = None  # normalized company name for account matching
    account_values: dict[str, Any] = field(default_factory=dict)  # firmographics from the input
    errors: list[tuple[str, str]] = field(default_factory=list)  # (field, reason)


@lru_cache(maxsize=16384)  # titles repeat all through a bulk import
def infer_seniority(job_title: str) -> str | None:
    title = job_title.lower()
    for level, pattern in _SENIORITY_PATTERNS:
        if pattern.search(title):
            return level
    return None


@lru_cache(maxsize=1024)
def _valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# Exclusive upper bounds of the columns: employee_count is INTEGER, annual_revenue BIGINT.
_INT_LIMITS = {"employee_count": 2**31, "annual_revenue": 2**63}


def _int(raw: Mapping[str, Any], key: str, out: NormalizedLead) -> int | None:
    value = raw.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        # Decimal, not float: exact above 2**53, and "1e400" or "inf" are refused, not a crash.
        exact = Decimal(str(value).replace(",", "").replace("_", "").strip())
    except InvalidOperation:
        out.errors.append((key, f"{value!r} is not a number"))
        return None
    if not exact.is_finite():
        out.errors.append((key, f"{value!r} is not a number"))
        return None
    if exact < 0:
        out.errors.append((key, "must not be negative"))
        return None
    limit = _INT_LIMITS.get(key, 2**63)
    if exact >= limit:
        out.errors.append((key, f"must be below {limit:,}"))
        return None
    return int(exact)


def _bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "y", "t", "on"}:
        return True
    if text in {"0", "false", "no", "n", "f", "off", ""}:
        return False
    return None


def normalize_lead(raw: Mapping[str, Any], *, require_contact: bool = True) -> NormalizedLead:
    """Normalize the keys of ``raw`` that are present; absent keys are left out of ``values``
    so an update never erases what it was not given."""

    out = NormalizedLead()
    v = out.values

    for key in ("first_name", "last_name"):
        if key in raw:
            text = _text(raw, key)
            v[key] = normalize_name(text) if text else None
    for key in ("job_title", "department", "source", "campaign"):
        if key in raw:
            v[key] = _text(raw, key)
    for key, limit in LEAD_TEXT_LIMITS.items():
        if key in raw and isinstance(raw[key], str) and len(raw[key].strip()) > limit:
            out.errors.append((key, f"is longer than {limit} characters"))

    country: str | None = None
    if "country" in raw:
        text = _text(raw, "country")
        if text:
            try:
                country = normalize_country(text)
            except ContactError as exc:
                out.errors.append(("country", exc.message))
        v["country"] = country

    email: str | None = None
    if "email" in raw:
        text = _text(raw, "email")
        if text:
            try:
                email = normalize_email(text)
            except ContactError as exc:
                out.errors.append(("email", exc.message))
        v["email"] = email

    phone: Phone | None = None
    phone_zone: str | None = None  # the zone the number implies, if it has just one
    if "phone" in raw:
        text = _text(raw, "phone")
        phone, phone_zone = phone_and_timezone(text, country) if text else (Phone(None, "", None), None)
        v["phone"] = phone.e164
        v["phone_raw"] = phone.raw or None

    if (
        require_contact
        and not email
        and not (phone and phone.raw)
        and not any(f == "email" for f, _ in out.errors)
    ):
        out.errors.append(("email", "an email or a phone number is required"))

    if "job_title" in raw and v.get("job_title") and not raw.get("seniority"):
        v["seniority"] = infer_seniority(v["job_title"])
    if raw.get("seniority"):
        level = str(raw["seniority"]).strip().lower()
        if level in SENIORITIES:
            v["seniority"] = level
        else:
            out.errors.append(("seniority", f"must be one of {', '.join(SENIORITIES)}"))

    if "timezone" in raw:
        tz = _text(raw, "timezone")
        if tz and not _valid_timezone(tz):
            out.errors.append(("timezone", f"{tz!r} is not an IANA time zone (e.g. Europe/Berlin)"))
        else:
            v["timezone"] = tz
    if not v.get("timezone") and phone_zone:
        v["timezone"] = phone_zone

    if raw.get("origin") is not None:
        try:
            v["origin"] = Origin(str(raw["origin"]).strip().lower()).value
        except ValueError:
            out.errors.append(("origin", "must be marketing or sales"))
    if raw.get("consent") is not None:
        consent = str(raw["consent"]).strip().lower()
        if consent in CONSENT_VALUES:
            v["consent"] = consent
        else:
            out.errors.append(("consent", f"must be one of {', '.join(CONSENT_VALUES)}"))
    if "unsubscribed" in raw and raw["unsubscribed"] is not None:
        flag = _bool(raw["unsubscribed"])
        if flag is None:
            out.errors.append(("unsubscribed", f"{raw['unsubscribed']!r} is not a yes/no value"))
        else:
            v["unsubscribed"] = flag

    # Account hints: company domain from the website, else from a non-free-mail address.
    company = _text(raw, "company")
    if "company" in raw:
        v["company"] = company
    website = _text(raw, "website")
    if website:
        try:
            out.account_domain = normalize_domain(website)
        except ContactError as exc:
            out.errors.append(("website", exc.message))
    if out.account_domain is None and email:
        domain = email_domain(email)
        if not is_free_mail(domain):
            out.account_domain = domain
    if out.account_domain and is_free_mail(out.account_domain):
        out.account_domain = None
    if company:
        out.company_key = normalize_company(company) or None
    industry = _text(raw, "industry")
    if industry:
        out.account_values["industry"] = industry
    for key in ("employee_count", "annual_revenue"):
        number = _int(raw, key, out)
        if number is not None:
            out.account_values[key] = number
    if country:
        out.account_values["country"] = country

    if "email" in raw or "phone" in raw or "first_name" in raw:
        reasons = bad_lead_signals(
            email=email,
            phone=phone,
            first_name=v.get("first_name"),
            last_name=v.get("last_name"),
        )
        v["bad_candidate_reasons"] = reasons or None
    return out
