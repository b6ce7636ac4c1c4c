"""Which CSV column feeds which lead field, and how other systems' stages map to ours (pure).

Header names are compared by a *key*: lowercase letters and digits only, so ``First Name``,
``first_name``, ``FirstName`` and ``FIRST-NAME`` are the same column. A preset (``salesforce``,
``hubspot``) names the columns of that system's export first; every preset then falls back to the
``auto`` synonyms, so a custom column such as ``Department`` is still recognized. A field takes the
first column that names it; later columns for the same field, and every unrecognized column, are
kept in ``Lead.attributes`` under their original header.

Stage values are mapped by the same kind of key (``Open - Not Contacted`` -> ``opennotcontacted``).
The tables below are the documented mapping (leadflow/imports/README.md repeats them for users).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from leadflow.core.lifecycle import Stage


class Mapping(StrEnum):
    AUTO = "auto"
    SALESFORCE = "salesforce"
    HUBSPOT = "hubspot"


# Fields a column can feed. Most are Lead columns handled by core.identity.normalize_lead;
# the others are import-specific and resolved here.
LEAD_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "job_title",
    "department",
    "seniority",
    "company",
    "country",
    "timezone",
    "source",
    "campaign",
    "origin",
    "consent",
    "unsubscribed",
    "website",
    "industry",
    "employee_count",
    "annual_revenue",
)
IMPORT_FIELDS = ("full_name", "mobile", "stage", "lead_status", "owner")
FIELDS = LEAD_FIELDS + IMPORT_FIELDS

_NON_KEY = re.compile(r"[^a-z0-9]+")


def key(text: str) -> str:
    """The comparison key of a header or a picklist value."""

    return _NON_KEY.sub("", text.strip().lower())


def _table(spec: dict[str, str]) -> dict[str, str]:
    """``{"first name, firstname": "first_name"}`` -> ``{"firstname": "first_name"}``."""

    out: dict[str, str] = {}
    for names, target in spec.items():
        assert target in FIELDS, target
        for name in names.split(","):
            out[key(name)] = target
    return out


AUTO_COLUMNS = _table(
    {
        "first name, first, given name, fname, forename, vorname, prenom": "first_name",
        "last name, last, surname, family name, lname, nachname, nom": "last_name",
        "name, full name, contact name, lead name": "full_name",
        "email, email address, e-mail, e-mail address, mail, work email, business email, "
        "email 1, primary email": "email",
        "phone, phone number, telephone, tel, business phone, work phone, office phone, "
        "direct phone, direct dial, phone 1": "phone",
        "mobile, mobile phone, mobile phone number, mobile number, cell, cell phone, cellphone": "mobile",
        "company, company name, organization, organisation, organization name, account, "
        "account name, employer": "company",
        "title, job title, position, job position, job role": "job_title",
        "department, dept, job function": "department",
        "seniority, seniority level, job level": "seniority",
        "country, country/region, country region, country code, country name, nation": "country",
        "timezone, time zone, tz": "timezone",
        "source, lead source, original source, channel, utm source": "source",
        "campaign, campaign name, utm campaign, primary campaign, primary campaign source": "campaign",
        "origin": "origin",
        "consent, marketing consent, gdpr consent": "consent",
        "unsubscribed, email opt out, opted out, opt out, has opted out of email, "
        "unsubscribed from all email, do not email": "unsubscribed",
        "website, website url, url, web, web site, company website, company domain, "
        "domain, company url": "website",
        "industry, sector": "industry",
        "employees, number of employees, no. of employees, employee count, employee size, "
        "company size, headcount, numberofemployees": "employee_count",
        "annual revenue, revenue, annualrevenue, yearly revenue": "annual_revenue",
        "owner, lead owner, contact owner, record owner, sales rep, assigned to, owner email": "owner",
        "stage, lifecycle stage, lifecyclestage, funnel stage": "stage",
        "lead status, status, leadstatus": "lead_status",
    }
)

SALESFORCE_COLUMNS = _table(
    {
        "first name, firstname": "first_name",
        "last name, lastname": "last_name",
        "name, full name": "full_name",
        "email": "email",
        "phone": "phone",
        "mobile, mobile phone, mobilephone": "mobile",
        "company, company / account": "company",
        "title": "job_title",
        "lead source, leadsource": "source",
        "lead status, status": "stage",
        "country, country code, countrycode": "country",
        "website": "website",
        "industry": "industry",
        "no. of employees, numberofemployees, number of employees, employees": "employee_count",
        "annual revenue, annualrevenue": "annual_revenue",
        "lead owner, owner, owner name, owner email, ownerid": "owner",
        "email opt out, hasoptedoutofemail": "unsubscribed",
        "campaign, campaign name, primary campaign source, last campaign": "campaign",
    }
)

HUBSPOT_COLUMNS = _table(
    {
        "first name, firstname": "first_name",
        "last name, lastname": "last_name",
        "email": "email",
        "phone number, phone": "phone",
        "mobile phone number, mobilephone": "mobile",
        "company name, company": "company",
        "job title, jobtitle": "job_title",
        "lifecycle stage, lifecyclestage": "stage",
        "lead status, hs_lead_status": "lead_status",
        "original source, hs_analytics_source": "source",
        "country/region, country": "country",
        "website url, website": "website",
        "industry": "industry",
        "number of employees, numberofemployees": "employee_count",
        "annual revenue, annualrevenue": "annual_revenue",
        "contact owner, hubspot owner, hubspot_owner_id": "owner",
        "unsubscribed from all email, hs_email_optout": "unsubscribed",
    }
)
# HubSpot's "Marketing contact status" is a billing flag (marketing vs non-marketing contact), not
# consent: it is kept in attributes. "Time Zone" holds HubSpot's own labels, not IANA names, and is
# kept in attributes too.
_HUBSPOT_KEEP = frozenset({key("marketing contact status"), key("time zone"), key("timezone")})

PRESET_COLUMNS: dict[Mapping, dict[str, str]] = {
    Mapping.AUTO: {},
    Mapping.SALESFORCE: SALESFORCE_COLUMNS,
    Mapping.HUBSPOT: HUBSPOT_COLUMNS,
}
SYSTEM_NAME = {Mapping.AUTO: "csv", Mapping.SALESFORCE: "salesforce", Mapping.HUBSPOT: "hubspot"}

# --------------------------------------------------------------------------------- stage values

OUR_STAGES: dict[str, Stage] = {s.value: s for s in Stage} | {"prospect": Stage.SQL}

# HubSpot lifecycle stages, by internal value and by label.
HUBSPOT_LIFECYCLE: dict[str, Stage] = {
    "subscriber": Stage.NEW,
    "lead": Stage.NEW,
    "marketingqualifiedlead": Stage.MQL,
    "salesqualifiedlead": Stage.SQL,
    "opportunity": Stage.OPPORTUNITY,
    "customer": Stage.CUSTOMER,
    "evangelist": Stage.CUSTOMER,
    "other": Stage.NEW,
}
# HubSpot lead status (hs_lead_status). Alone it sets the stage; next to a lifecycle stage it only
# moves a pre-SQL lead to a side state (unqualified, nurture), see HUBSPOT_STATUS_OVERRIDES.
HUBSPOT_LEAD_STATUS: dict[str, Stage] = {
    "new": Stage.NEW,
    "open": Stage.NEW,
    "inprogress": Stage.MQL,
    "attemptedtocontact": Stage.MQL,
    "connected": Stage.MQL,
    "opendeal": Stage.OPPORTUNITY,
    "unqualified": Stage.UNQUALIFIED,
    "badtiming": Stage.NURTURE,
}
HUBSPOT_STATUS_OVERRIDES = frozenset({Stage.UNQUALIFIED, Stage.NURTURE})
PRE_SQL = frozenset({Stage.NEW, Stage.COLD, Stage.MQL})

# Salesforce Lead Status: the default picklists (Classic and Lightning) by label and API value.
SALESFORCE_STATUS: dict[str, Stage] = {
    "opennotcontacted": Stage.COLD,
    "open": Stage.COLD,
    "new": Stage.NEW,
    "workingcontacted": Stage.MQL,
    "working": Stage.MQL,
    "contacted": Stage.MQL,
    "nurturing": Stage.NURTURE,
    "nurture": Stage.NURTURE,
    "qualified": Stage.SQL,
    "closedconverted": Stage.SQL,
    "converted": Stage.SQL,
    "closednotconverted": Stage.UNQUALIFIED,
    "unqualified": Stage.UNQUALIFIED,
    "disqualified": Stage.UNQUALIFIED,
}


def stage_tables(mapping: Mapping, field_name: str) -> list[tuple[str, dict[str, Stage]]]:
    """(system, table) pairs tried in order for a value of ``field_name`` (stage or lead_status)."""

    if mapping is Mapping.SALESFORCE:
        return [("salesforce", SALESFORCE_STATUS), ("leadflow", OUR_STAGES)]
    if mapping is Mapping.HUBSPOT:
        if field_name == "lead_status":
            return [("hubspot", HUBSPOT_LEAD_STATUS)]
        return [("hubspot", HUBSPOT_LIFECYCLE), ("leadflow", OUR_STAGES)]
    if field_name == "lead_status":
        return [("salesforce", SALESFORCE_STATUS), ("hubspot", HUBSPOT_LEAD_STATUS), ("leadflow", OUR_STAGES)]
    return [("leadflow", OUR_STAGES), ("hubspot", HUBSPOT_LIFECYCLE), ("salesforce", SALESFORCE_STATUS)]


def map_stage(mapping: Mapping, field_name: str, value: str) -> tuple[Stage, str] | None:
    """(stage, system the value belongs to), or None for a value no table knows."""

    k = key(value)
    for system, table in stage_tables(mapping, field_name):
        stage = table.get(k)
        if stage is not None:
            return stage, system
    return None


# --------------------------------------------------------------------------------- column plans


@dataclass(frozen=True)
class Column:
    index: int
    header: str
    field: str | None  # None: kept in attributes


@dataclass(frozen=True)
class ColumnPlan:
    mapping: Mapping
    columns: tuple[Column, ...]
    fields: dict[str, int] = field(default_factory=dict)  # field -> column index

    @property
    def width(self) -> int:
        return len(self.columns)

    def header_of(self, field_name: str) -> str:
        idx = self.fields.get(field_name)
        return self.columns[idx].header if idx is not None else field_name

    def describe(self) -> dict[str, str | None]:
        """Header -> field (None: attributes), for the summary."""

        return {c.header: c.field for c in self.columns}


def plan_columns(header: list[str], mapping: Mapping) -> ColumnPlan:
    preset = PRESET_COLUMNS[mapping]
    columns: list[Column] = []
    taken: dict[str, int] = {}
    for i, name in enumerate(header):
        k = key(name)
        target = preset.get(k)
        if target is None and not (mapping is Mapping.HUBSPOT and k in _HUBSPOT_KEEP):
            target = AUTO_COLUMNS.get(k)
        if target is not None and target in taken:
            target = None  # the first column for a field wins; the others go to attributes
        if target is not None:
            taken[target] = i
        columns.append(Column(i, name, target))
    # A lone status column in auto mode is the stage.
    if mapping is Mapping.AUTO and "stage" not in taken and "lead_status" in taken:
        idx = taken.pop("lead_status")
        taken["stage"] = idx
        columns[idx] = Column(idx, columns[idx].header, "stage")
    return ColumnPlan(mapping, tuple(columns), taken)
