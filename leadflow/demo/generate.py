"""Pure generation of the demo data set: plans that refer to each other by list index.

Nothing here touches the database; :mod:`leadflow.demo.load` turns the plans into rows. Every
random choice comes from one ``random.Random(seed)``, and no set or dict is iterated in an order
that depends on hashing, so a seed always gives the same people, companies and histories.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import math
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import phonenumbers

from leadflow.core import lifecycle
from leadflow.core.contact import (
    Phone,
    bad_lead_signals,
    is_disposable,
    is_free_mail,
    normalize_company,
    normalize_email,
    normalize_phone,
)
from leadflow.core.engagement import ActivityType
from leadflow.core.lifecycle import (
    BadReason,
    DealWon,
    DiscoveryCall,
    Evidence,
    MarketingReview,
    NeedsAssessment,
    OpportunityOpened,
    Origin,
    ScoreThreshold,
    Stage,
)
from leadflow.demo import data

T = TypeVar("T")

MAX_AGE_DAYS = 365.0
MQL_THRESHOLD = 60.0
SCORE_MODEL = "demo-rules-1"

# Free-mail domains, most common first (a tuple: FREE_MAIL_DOMAINS is a set, unordered).
FREE_MAIL: tuple[tuple[str, float], ...] = (
    ("gmail.com", 50),
    ("outlook.com", 12),
    ("yahoo.com", 8),
    ("hotmail.com", 8),
    ("icloud.com", 6),
    ("gmx.de", 4),
    ("web.de", 3),
    ("orange.fr", 3),
    ("proton.me", 3),
    ("hotmail.co.uk", 3),
)
DISPOSABLE: tuple[str, ...] = ("mailinator.com", "yopmail.com", "guerrillamail.com", "10minutemail.com")

ADVANCED = frozenset({Stage.SAL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER})
SALES_SIDE = frozenset({Stage.SAL, Stage.SQL, Stage.OPPORTUNITY})


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------


@dataclass
class UserPlan:
    name: str
    email: str
    role: str
    team: str | None


@dataclass
class AccountPlan:
    name: str
    name_key: str
    domain: str
    industry: str
    employee_count: int
    annual_revenue: int
    country: str
    territory: str
    owner: int  # user index
    email_pattern: str
    weight: float
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class Step:
    """One row of stage history; ``source is None`` for the stage the lead was created in."""

    source: Stage | None
    stage: Stage
    at: datetime
    actor: int | None  # user index; None is the system (scoring, aging, web forms)
    reason: str | None = None
    bad_reason: BadReason | None = None
    evidence: Evidence | None = None
    label: str | None = None  # who acted, when not a user (a web form)


@dataclass
class FormPlan:
    key: str
    name: str
    source: str
    redirect_url: str
    creator: int  # user index


@dataclass
class ActivityPlan:
    type: str
    at: datetime
    properties: dict[str, Any]
    source: str
    actor: int | None


@dataclass
class LeadPlan:
    origin: Origin
    final: Stage
    kind: str  # account | freemail | invalid | bad_fit | competitor | duplicate
    bad_reason: BadReason | None = None
    candidate: bool = False  # unconfirmed bad-lead candidate (placeholder or broken contact data)
    account: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str = ""
    phone: str | None = None
    phone_raw: str | None = None
    job_title: str | None = None
    seniority: str | None = None
    department: str | None = None
    company: str | None = None
    country: str | None = None
    timezone: str | None = None
    territory: str = "EMEA"
    source: str = ""
    campaign: str | None = None
    form: int | None = None  # the web form that captured the lead
    rep: int = 0  # the rep who owns (or would own) the lead
    owner: int | None = None
    consent: str = "unknown"
    unsubscribed: bool = False
    bad_candidate_reasons: list[str] | None = None
    attributes: dict[str, Any] | None = None
    buying_role: str | None = None
    path: list[Stage] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    activities: list[ActivityPlan] = field(default_factory=list)
    bad_text: str | None = None  # what sales saw when confirming a bad lead
    opportunity_id: str | None = None
    deal_amount: float | None = None

    @property
    def created_at(self) -> datetime:
        return self.steps[0].at


@dataclass
class DemoData:
    users: list[UserPlan]
    forms: list[FormPlan]
    accounts: list[AccountPlan]
    leads: list[LeadPlan]  # in creation order


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalnum())


def _slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "-".join("".join(c if c.isalnum() else " " for c in folded).split())


def allocate(n: int, weights: Sequence[tuple[T, float]]) -> list[T]:
    """``n`` items in proportion to the weights, every item at least once when ``n`` allows."""

    total = sum(w for _, w in weights)
    raw = [n * w / total for _, w in weights]
    counts = [math.floor(x) for x in raw]
    if n >= len(weights):
        counts = [max(1, c) for c in counts]
    order = sorted(range(len(weights)), key=lambda i: (-(raw[i] - math.floor(raw[i])), i))
    i = 0
    while sum(counts) < n:
        counts[order[i % len(order)]] += 1
        i += 1
    while sum(counts) > n:
        big = max(range(len(counts)), key=lambda j: (counts[j], -j))
        counts[big] -= 1
    out: list[T] = []
    for (item, _), c in zip(weights, counts, strict=True):
        out.extend([item] * c)
    return out


class _Random:
    """``random.Random`` with the few helpers the generator needs, typed."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def random(self) -> float:
        return self.r.random()

    def uniform(self, a: float, b: float) -> float:
        return self.r.uniform(a, b)

    def randint(self, a: int, b: int) -> int:
        return self.r.randint(a, b)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def choice(self, items: Sequence[T]) -> T:
        return items[self.r.randrange(len(items))]

    def weighted(self, items: Sequence[tuple[T, float]]) -> T:
        # A linear scan: the tables are short, and this is the generator's hottest call.
        total = 0.0
        for _, w in items:
            total += w
        x = self.r.random() * total
        for item, w in items:
            x -= w
            if x < 0:
                return item
        return items[-1][0]

    def cumulative(self, cum: Sequence[float]) -> int:
        """An index drawn with the weights whose running sums are ``cum``."""

        return min(bisect.bisect(cum, self.r.random() * cum[-1]), len(cum) - 1)

    def sample(self, items: Sequence[T], k: int) -> list[T]:
        return self.r.sample(list(items), k)

    def shuffle(self, items: list[T]) -> None:
        self.r.shuffle(items)

    def poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        if lam > 30:
            return max(0, round(self.r.gauss(lam, math.sqrt(lam))))
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= self.r.random()
            if p <= limit:
                return k
            k += 1

    def days(self, lo: float, hi: float) -> timedelta:
        return timedelta(days=self.r.uniform(lo, hi))

    def between(self, start: datetime, end: datetime) -> datetime:
        span = (end - start).total_seconds()
        return start + timedelta(seconds=self.r.uniform(0, max(span, 0.0)))


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


class Generator:
    def __init__(self, *, leads: int, seed: int, now: datetime) -> None:
        if leads < 0:
            raise ValueError("leads must not be negative")
        self.n = leads
        self.rng = _Random(seed)
        self.now = now
        self.users: list[UserPlan] = []
        self.reps: dict[str, list[int]] = {t: [] for t in data.TEAMS}
        self.marketers: list[int] = []
        self.accounts: list[AccountPlan] = []
        self.forms: list[FormPlan] = []
        self.emails: set[str] = set()
        self.counter = 0
        self.phone_pool: dict[str, list[tuple[str, str]]] = {}

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter:05d}"

    # ----------------------------------------------------------------------------- users

    def make_users(self) -> None:
        for i, (name, local, role, team) in enumerate(data.USERS):
            self.users.append(UserPlan(name, f"{local}@{data.STAFF_DOMAIN}", role, team))
            if role == "sales_rep" and team:
                self.reps[team].append(i)
            elif role == "marketing":
                self.marketers.append(i)

    def make_forms(self) -> None:
        for name, source in data.WEB_FORMS:
            key = base64.urlsafe_b64encode(self.rng.r.getrandbits(96).to_bytes(12, "big")).decode()
            url = f"https://www.{data.STAFF_DOMAIN}/thanks/{_slug(name)}"
            self.forms.append(FormPlan(key, name, source, url, self.rng.choice(self.marketers)))

    def form_named(self, name: str) -> int:
        return next(i for i, f in enumerate(self.forms) if f.name == name)

    def pick_form(self, lead: LeadPlan) -> int | None:
        """The web form a marketing lead came in through, if any."""

        if lead.origin is Origin.SALES:
            return None
        src = lead.source
        if src == "webinar":
            return self.form_named("Webinar registration")
        if src == "content_download":
            return self.form_named("Gated content")
        if src in {"organic_search", "paid_search"}:
            return self.form_named("Newsletter signup" if self.rng.chance(0.4) else "Contact us")
        if src in {"website", "referral", "partner"}:
            return self.form_named("Contact us")
        return None  # LinkedIn lead-gen sync, trade-show badge imports

    # ----------------------------------------------------------------------------- accounts

    def make_accounts(self, count: int) -> None:
        rng = self.rng
        countries = tuple((c, float(v[1])) for c, v in data.COUNTRIES.items())
        industries = tuple(data.INDUSTRIES)
        keys: set[str] = set()
        domains: set[str] = set()
        rep_turn = dict.fromkeys(data.TEAMS, 0)
        attempts = 0
        # The word lists allow a few thousand distinct names; past that, stop (more leads per account).
        while len(self.accounts) < count and attempts < 50 * count:
            attempts += 1
            country = rng.weighted(countries)
            territory, _, _, _, suffixes, tld = data.COUNTRIES[country]
            industry = rng.choice(industries)
            words, revenue_per_head = data.INDUSTRIES[industry]
            stem = rng.choice(data.NAME_STEMS)
            word = rng.choice(words)
            base = f"{stem} {word}"
            key = normalize_company(base)
            if key in keys:
                continue
            suffix = rng.choice(suffixes)
            name = f"{base} {suffix}".strip()
            if industry == "Software" and rng.chance(0.4):
                tld = rng.choice(("io", "com", "ai", tld))
            elif tld != "com" and rng.chance(0.25):
                tld = "com"
            # Two-word labels: invented, and unlike one-word brands unlikely to be a famous site.
            joiner = "-" if rng.chance(0.6) else ""
            label = f"{_ascii(stem)}{joiner}{_ascii(word)}"
            domain = f"{label}.{tld}"
            if domain in domains or is_free_mail(domain) or is_disposable(domain):
                continue
            segment = rng.weighted(((0, 45), (1, 35), (2, 20)))
            lo, hi = ((8, 200), (200, 2000), (2000, 60000))[segment]
            employees = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            revenue = employees * revenue_per_head * math.exp(rng.uniform(-0.4, 0.4))
            revenue = round(revenue, -4) if revenue < 1e8 else round(revenue, -6)
            team_reps = self.reps[territory]
            owner = team_reps[rep_turn[territory] % len(team_reps)]
            rep_turn[territory] += 1
            pattern = rng.weighted(
                (("first.last", 55), ("flast", 20), ("first", 10), ("first_last", 8), ("firstl", 7))
            )
            keys.add(key)
            domains.add(domain)
            self.accounts.append(
                AccountPlan(
                    name=name,
                    name_key=normalize_company(name),
                    domain=domain,
                    industry=industry,
                    employee_count=employees,
                    annual_revenue=int(revenue),
                    country=country,
                    territory=territory,
                    owner=owner,
                    email_pattern=pattern,
                    weight=employees**0.3 * math.exp(rng.uniform(-0.6, 0.6)),
                )
            )

    # ----------------------------------------------------------------------------- people

    def person(self, country: str) -> tuple[str, str]:
        group = data.COUNTRIES[country][2]
        if country in {"US", "GB", "CA", "DE", "NL", "AE"} and self.rng.chance(0.25):
            group = "global"
        return self.rng.choice(data.FIRST_NAMES[group]), self.rng.choice(data.LAST_NAMES[group])

    def unique_email(self, local: str, domain: str) -> str:
        candidate = f"{local}@{domain}"
        n = 1
        while candidate in self.emails:
            n += 1
            candidate = f"{local}{n}@{domain}"
        email = normalize_email(candidate)
        self.emails.add(email)
        return email

    def corporate_local(self, first: str, last: str, pattern: str) -> str:
        f, last_a = _ascii(first), _ascii(last)
        return {
            "first.last": f"{f}.{last_a}",
            "flast": f"{f[:1]}{last_a}",
            "first": f,
            "first_last": f"{f}_{last_a}",
            "firstl": f"{f}{last_a[:1]}",
        }[pattern]

    def freemail_local(self, first: str, last: str) -> str:
        f, last_a = _ascii(first), _ascii(last)
        style = self.rng.randint(0, 4)
        if style == 0:
            return f"{f}.{last_a}"
        if style == 1:
            return f"{f}{last_a}{self.rng.randint(1, 99)}"
        if style == 2:
            return f"{f[:1]}.{last_a}"
        if style == 3:
            return f"{f}_{last_a}{self.rng.randint(1970, 2004)}"
        return f"{last_a}.{f}"

    def phone_for(self, country: str) -> tuple[str, str]:
        """A valid number (E.164, as typed) in a fictional or example range of the country."""

        pool = self.phone_pool.get(country)
        if pool is None:
            pool = self.phone_pool[country] = self._phone_pool(country)
        return self.rng.choice(pool)

    def _phone_pool(self, country: str) -> list[tuple[str, str]]:
        rng = self.rng
        out: list[tuple[str, str]] = []
        candidates: list[str] = []
        if country in {"US", "CA"}:
            codes = data.NANP_AREA_CODES if country == "US" else data.CA_AREA_CODES
            candidates = [f"+1{rng.choice(codes)}55501{rng.randint(0, 99):02d}" for _ in range(25)]
        elif country == "GB":
            candidates = [f"+4420794600{rng.randint(0, 99):02d}" for _ in range(25)]
        else:
            for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
                ex = phonenumbers.example_number_for_type(country, kind)
                if ex is None:
                    continue
                e164 = phonenumbers.format_number(ex, phonenumbers.PhoneNumberFormat.E164)
                candidates += [f"{e164[:-3]}{rng.randint(0, 999):03d}" for _ in range(12)]
        for cand in candidates:
            phone = normalize_phone(cand)
            if phone.e164 is None:
                continue
            num = phonenumbers.parse(phone.e164)
            fmt = (
                phonenumbers.PhoneNumberFormat.NATIONAL
                if rng.chance(0.5)
                else phonenumbers.PhoneNumberFormat.INTERNATIONAL
            )
            out.append((phone.e164, phonenumbers.format_number(num, fmt)))
        if not out:
            raise RuntimeError(f"no valid demo phone number for {country}")
        return out

    def office(self, t: datetime, territory: str, lo: datetime, hi: datetime) -> datetime:
        """``t`` moved to a weekday between 08:00 and 18:00 in the team's main time zone
        (CET for EMEA, US Eastern for the Americas, both as fixed UTC offsets), or ``t`` itself
        when the moved time would fall outside ``(lo, hi)``."""

        start_utc = 7 if territory == "EMEA" else 13
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        if day.weekday() == 5:  # Saturday to Friday, Sunday to Monday
            day -= timedelta(days=1)
        elif day.weekday() == 6:
            day += timedelta(days=1)
        moved = day + timedelta(hours=start_utc + self.rng.uniform(0, 10))
        return moved if lo < moved < hi else t

    # ----------------------------------------------------------------------------- leads

    def make_leads(self) -> list[LeadPlan]:
        rng = self.rng
        finals = allocate(self.n, data.STAGE_WEIGHTS)
        rng.shuffle(finals)
        leads: list[LeadPlan] = []
        for final in finals:
            origin = Origin.SALES if rng.chance(data.SALES_SHARE[final]) else Origin.MARKETING
            lead = LeadPlan(origin=origin, final=final, kind="account")
            if final is Stage.BAD:
                # Outbound lists go stale or overlap; reps do not prospect students or competitors.
                lead.bad_reason = rng.weighted(
                    data.BAD_REASON_WEIGHTS
                    if origin is Origin.MARKETING
                    else ((BadReason.INVALID_CONTACT_DATA, 65.0), (BadReason.DUPLICATE, 35.0))
                )
                lead.kind = {
                    BadReason.INVALID_CONTACT_DATA: "invalid",
                    BadReason.BAD_FIT: "bad_fit",
                    BadReason.COMPETITOR: "competitor",
                    BadReason.DUPLICATE: "duplicate",
                }[lead.bad_reason]
            elif final in {Stage.NEW, Stage.COLD} and rng.chance(0.06):
                lead.kind, lead.candidate = "invalid", True
            elif origin is Origin.MARKETING and rng.chance(0.13):
                lead.kind = "freemail"
            leads.append(lead)

        # Accounts: about 15 % as many as leads, each with a buying committee of two or more.
        account_leads = [i for i, ld in enumerate(leads) if ld.kind == "account"]
        invalid = [i for i, ld in enumerate(leads) if ld.kind == "invalid"]
        n_accounts = min(round(self.n * 0.15), len(account_leads) // 2)
        self.make_accounts(max(n_accounts, 0))
        if self.accounts:
            order = list(account_leads)
            rng.shuffle(order)
            cum = list(itertools.accumulate(acc.weight for acc in self.accounts))
            for pos, i in enumerate(order):
                leads[i].account = (
                    pos % len(self.accounts) if pos < 2 * len(self.accounts) else rng.cumulative(cum)
                )
            # Half the placeholder-data leads came in through a company's own form.
            for i in invalid:
                if leads[i].origin is Origin.SALES or rng.chance(0.5):
                    leads[i].account = rng.randint(0, len(self.accounts) - 1)
        else:
            for i in account_leads:
                leads[i].kind = "freemail"

        for lead in leads:
            if lead.kind != "duplicate":
                self.fill_person(lead)
                self.fill_history(lead)
        originals = [ld for ld in leads if ld.kind == "account" and ld.account is not None]
        for lead in leads:
            if lead.kind == "duplicate":
                self.fill_duplicate(lead, originals)
                self.fill_history(lead)
        for lead in leads:
            self.fill_activities(lead)
            self.fill_consent(lead)
            phone: Phone | None = None
            if lead.phone:
                phone = Phone(lead.phone, lead.phone_raw or lead.phone, None)
            elif lead.phone_raw:
                phone = normalize_phone(lead.phone_raw, lead.country)
            signals = bad_lead_signals(
                email=lead.email, phone=phone, first_name=lead.first_name, last_name=lead.last_name
            )
            lead.bad_candidate_reasons = signals or None
        leads.sort(key=lambda ld: ld.created_at)
        return leads

    def fill_person(self, lead: LeadPlan) -> None:
        rng = self.rng
        acc = self.accounts[lead.account] if lead.account is not None else None
        if acc is not None:
            country = acc.country
        else:
            country = rng.weighted(tuple((c, float(v[1])) for c, v in data.COUNTRIES.items()))
        territory, _, _, zones, _, _ = data.COUNTRIES[country]
        lead.country, lead.territory = country, territory
        lead.timezone = rng.choice(zones)
        lead.rep = acc.owner if acc is not None else rng.choice(self.reps[territory])
        first, last = self.person(country)
        lead.first_name, lead.last_name = first, last
        has_phone = rng.chance(0.9 if lead.origin is Origin.SALES else 0.55)
        if has_phone:
            lead.phone, lead.phone_raw = self.phone_for(country)

        if lead.kind == "account" and acc is not None:
            advanced = lead.final in ADVANCED or lead.final is Stage.RECYCLED
            role_w = (
                (("decision_maker", 45.0), ("influencer", 45.0), ("user", 10.0))
                if advanced
                else (("decision_maker", 15.0), ("influencer", 35.0), ("user", 50.0))
            )
            lead.buying_role = rng.weighted(role_w)
            self.set_title(lead, lead.buying_role)
            lead.company = acc.name
            lead.email = self.unique_email(self.corporate_local(first, last, acc.email_pattern), acc.domain)
        elif lead.kind == "freemail":
            lead.email = self.unique_email(self.freemail_local(first, last), rng.weighted(FREE_MAIL))
            if rng.chance(0.6):
                lead.buying_role = rng.weighted((("influencer", 40.0), ("user", 60.0)))
                self.set_title(lead, lead.buying_role)
                kind = rng.choice(("Studio", "Consulting", "Digital", "Partners"))
                lead.company = f"{rng.choice(data.NAME_STEMS)} {kind}"
        elif lead.kind == "invalid":
            self.fill_invalid(lead, acc)
        elif lead.kind == "bad_fit":
            if rng.chance(0.5):
                lead.job_title, lead.seniority = "Student", "student"
                lead.bad_text = "Student project, not a buyer"
            else:
                lead.job_title, lead.seniority, lead.department = "Owner", "executive", "Executive"
                lead.company = f"{last} {rng.choice(('Photography', 'Bakery', 'Handyman Services'))}"
                lead.bad_text = "Sole trader; far outside the ideal customer profile"
            lead.email = self.unique_email(self.freemail_local(first, last), rng.weighted(FREE_MAIL))
            lead.phone = lead.phone_raw = None
        elif lead.kind == "competitor":
            company, domain = rng.choice(data.COMPETITORS)
            lead.company = company
            self.set_title(lead, rng.weighted((("influencer", 60.0), ("user", 40.0))))
            lead.email = self.unique_email(self.corporate_local(first, last, "first.last"), domain)
        if lead.origin is Origin.MARKETING:
            lead.source = rng.weighted(data.MARKETING_SOURCES)
        else:
            lead.source = rng.weighted(data.SALES_SOURCES)
        if lead.buying_role is not None:
            lead.attributes = {"buying_role": lead.buying_role}

    def set_title(self, lead: LeadPlan, role: str) -> None:
        options = [t for t in data.TITLES if t[0] == role]
        _, title, seniority, department = self.rng.choice(options)
        lead.job_title, lead.seniority, lead.department = title, seniority, department

    def fill_invalid(self, lead: LeadPlan, acc: AccountPlan | None) -> None:
        """Contact data that cannot reach a person: placeholders, disposable mail, a broken phone."""

        rng = self.rng
        first, last = lead.first_name or "", lead.last_name or ""
        if acc is not None:
            lead.company = acc.name
            variant = rng.randint(0, 2)
            if variant == 0:
                lead.first_name, lead.last_name = "Test", "Test"
                lead.email = self.unique_email(rng.choice(("test", "asdf", "fake")), acc.domain)
                lead.bad_text = "Placeholder name and address typed into the form"
            elif variant == 1:
                lead.email = self.unique_email(rng.choice(("noreply", "no-reply", "donotreply")), acc.domain)
                lead.phone, lead.phone_raw = None, rng.choice(("12345", "000", "n/a"))
                lead.bad_text = "Role mailbox that nobody reads, and no usable phone number"
            else:
                lead.email = self.unique_email(
                    self.corporate_local(first, last, acc.email_pattern), acc.domain
                )
                lead.phone, lead.phone_raw = None, rng.choice(("12345", "0000000", "555"))
                lead.bad_text = "Email bounced and the phone number is not in service"
        else:
            variant = rng.randint(0, 1)
            if variant == 0:
                lead.email = self.unique_email(self.freemail_local(first, last), rng.choice(DISPOSABLE))
                lead.bad_text = "Disposable mailbox; no way to reach the person"
            else:
                lead.first_name, lead.last_name = rng.choice(
                    (("Asdf", "Asdf"), ("Mickey", "Mouse"), ("Xxx", None))
                )
                lead.email = self.unique_email(
                    f"{_ascii(lead.first_name or 'x')}{rng.randint(1, 9999)}", rng.choice(DISPOSABLE)
                )
                lead.phone, lead.phone_raw = None, rng.choice(("123", "999999"))
                lead.bad_text = "Fake name on a disposable mailbox"

    def fill_duplicate(self, lead: LeadPlan, originals: list[LeadPlan]) -> None:
        """The same person captured twice, under another address at the same company."""

        if not originals:
            lead.kind = "invalid"
            lead.bad_reason = BadReason.INVALID_CONTACT_DATA
            self.fill_person(lead)
            return
        orig = self.rng.choice(originals)
        assert orig.account is not None
        acc = self.accounts[orig.account]
        lead.account = orig.account
        lead.first_name, lead.last_name = orig.first_name, orig.last_name
        lead.job_title, lead.seniority, lead.department = orig.job_title, orig.seniority, orig.department
        lead.company, lead.country, lead.territory = orig.company, orig.country, orig.territory
        lead.timezone, lead.rep = orig.timezone, orig.rep
        lead.buying_role = orig.buying_role
        lead.attributes = {"buying_role": orig.buying_role, "duplicate_of": orig.email}
        patterns = [p for p in ("first.last", "flast", "first_last", "firstl") if p != acc.email_pattern]
        local = self.corporate_local(orig.first_name or "", orig.last_name or "", self.rng.choice(patterns))
        lead.email = self.unique_email(local, acc.domain)
        lead.source = self.rng.weighted(
            data.MARKETING_SOURCES if lead.origin is Origin.MARKETING else data.SALES_SOURCES
        )

    # ----------------------------------------------------------------------------- paths

    def top(self, origin: Origin) -> list[Stage]:
        """Stages before qualification."""

        if origin is Origin.MARKETING:
            return list(
                self.rng.weighted(
                    (
                        ((Stage.NEW,), 45.0),
                        ((Stage.NEW, Stage.COLD), 30.0),
                        ((Stage.COLD,), 8.0),
                        ((Stage.NURTURE,), 5.0),
                        ((Stage.NEW, Stage.NURTURE), 12.0),
                    )
                )
            )
        return list(self.rng.weighted((((Stage.COLD,), 50.0), ((Stage.NEW,), 25.0), ((), 25.0))))

    def road(self, origin: Origin, to: Stage, *, loops: bool = True) -> list[Stage]:
        """From creation along the funnel up to ``to``, sometimes with a detour."""

        rng = self.rng
        marketing = origin is Origin.MARKETING
        linear = [Stage.MQL, Stage.SAL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER]
        if not marketing:
            linear = linear[1:]
        entry = linear[0]
        upto = linear[: linear.index(to) + 1]
        path = self.top(origin)
        if loops and rng.chance(0.06) and to is not Stage.OPPORTUNITY:
            # A lost deal sent back to the top, now coming round again.
            path += [*linear[: linear.index(Stage.OPPORTUNITY) + 1], Stage.RECYCLED]
        elif loops and rng.chance(0.08):
            # Handed over, not ready, nurtured, qualified again.
            path += [entry, Stage.NURTURE]
        return path + upto

    def plan_path(self, lead: LeadPlan) -> list[Stage]:
        rng = self.rng
        origin, final = lead.origin, lead.final
        marketing = origin is Origin.MARKETING
        S = Stage
        if final is S.NEW:
            return [S.NEW]
        if final is S.COLD:
            if marketing:
                return [S.NEW, S.COLD] if rng.chance(0.85) else [S.COLD]
            return [S.COLD] if rng.chance(0.8) else [S.NEW, S.COLD]
        if final in {S.MQL, S.SAL, S.SQL, S.OPPORTUNITY, S.CUSTOMER}:
            return self.road(origin, final)
        if final is S.NURTURE:
            if marketing:
                return list(
                    rng.weighted(
                        (
                            ((S.NURTURE,), 12.0),
                            ((S.NEW, S.NURTURE), 20.0),
                            ((S.NEW, S.COLD, S.NURTURE), 18.0),
                            ((*self.road(origin, S.MQL, loops=False), S.NURTURE), 30.0),
                            ((*self.road(origin, S.SAL, loops=False), S.NURTURE), 13.0),
                            ((*self.road(origin, S.SQL, loops=False), S.NURTURE), 7.0),
                        )
                    )
                )
            return list(
                rng.weighted(
                    (
                        ((rng.choice((S.NEW, S.COLD)), S.NURTURE), 30.0),
                        ((*self.road(origin, S.SAL, loops=False), S.NURTURE), 50.0),
                        ((*self.road(origin, S.SQL, loops=False), S.NURTURE), 20.0),
                    )
                )
            )
        if final is S.UNQUALIFIED:
            options: list[tuple[tuple[Stage, ...], float]] = [
                ((*self.road(origin, S.SAL, loops=False), S.UNQUALIFIED), 50.0),
                ((*self.road(origin, S.SQL, loops=False), S.UNQUALIFIED), 15.0),
            ]
            if marketing:
                options.append(((*self.road(origin, S.MQL, loops=False), S.UNQUALIFIED), 35.0))
            else:
                options.append(((rng.choice((S.NEW, S.COLD)), S.UNQUALIFIED), 30.0))
            return list(rng.weighted(options))
        if final is S.BAD:
            if lead.bad_reason is BadReason.BAD_FIT and marketing and rng.chance(0.5):
                qualify = S.MQL if marketing else S.SAL
                return [*self.road(origin, qualify, loops=False), S.BAD]
            if marketing:
                return [S.NEW, S.BAD] if rng.chance(0.7) else [S.NEW, S.COLD, S.BAD]
            return [S.COLD, S.BAD] if rng.chance(0.6) else [S.NEW, S.BAD]
        # Recycled: a lost deal, a disqualified lead or a finished nurture track back at the top.
        return list(
            rng.weighted(
                (
                    ((*self.road(origin, S.OPPORTUNITY, loops=False), S.RECYCLED), 55.0),
                    ((*self.road(origin, S.SAL, loops=False), S.UNQUALIFIED, S.RECYCLED), 20.0),
                    (
                        (
                            *self.road(origin, S.MQL if marketing else S.SAL, loops=False),
                            S.NURTURE,
                            S.RECYCLED,
                        ),
                        25.0,
                    ),
                )
            )
        )

    def gap(self, prev: Stage, target: Stage) -> float:
        """Days between entering ``prev`` and entering ``target``."""

        u = self.rng.uniform
        S = Stage
        if target is S.COLD:
            return u(10, 30)
        if target is S.MQL:
            return {S.NEW: u(1, 30), S.COLD: u(10, 90)}.get(prev, u(20, 100))
        if target is S.SAL:
            return {S.MQL: u(0.3, 7), S.NEW: u(1, 20), S.COLD: u(3, 45)}.get(prev, u(20, 90))
        if target is S.SQL:
            return u(3, 21)
        if target is S.OPPORTUNITY:
            return u(2, 20)
        if target is S.CUSTOMER:
            return u(20, 90)
        if target is S.NURTURE:
            return {S.NEW: u(3, 30), S.COLD: u(10, 60), S.MQL: u(3, 20), S.SAL: u(5, 30)}.get(prev, u(7, 40))
        if target is S.UNQUALIFIED:
            return {S.MQL: u(1, 10), S.SAL: u(3, 21), S.SQL: u(5, 30)}.get(prev, u(2, 30))
        if target is S.BAD:
            return {S.NEW: u(0.2, 10), S.COLD: u(5, 40)}.get(prev, u(1, 15))
        if target is S.RECYCLED:
            return u(20, 90) if prev is S.OPPORTUNITY else u(45, 150)
        return u(1, 10)

    TAIL: dict[Stage, tuple[float, float]] = {
        Stage.NEW: (0.02, 20),
        Stage.MQL: (0.1, 120),
        Stage.SAL: (0.5, 45),
        Stage.SQL: (0.5, 45),
        Stage.OPPORTUNITY: (1, 75),
    }

    def fill_history(self, lead: LeadPlan) -> None:
        rng = self.rng
        path = self.plan_path(lead)
        lead.path = path
        gaps = [self.gap(a, b) for a, b in itertools.pairwise(path)]
        lo, hi = self.TAIL.get(lead.final, (0.1, MAX_AGE_DAYS))
        tail = lo + (hi - lo) * rng.random() ** 1.4
        total = sum(gaps)
        room = MAX_AGE_DAYS - 1.0
        if tail + total > room:
            tail = min(tail, max(lo, room * 0.1))
            scale = (room - tail) / total if total > room - tail else 1.0
            gaps = [g * scale for g in gaps]
            total = sum(gaps)
        created = self.now - timedelta(days=tail + total)
        times = [created]
        for g in gaps:
            times.append(times[-1] + timedelta(days=g))
        # Sales moves happen in the rep's office hours (when that keeps the order of events).
        for i in range(1, len(times)):
            if path[i] in ADVANCED:
                upper = times[i + 1] if i + 1 < len(times) else self.now
                times[i] = self.office(times[i], lead.territory, times[i - 1], upper)

        reached = set(path)
        owned = lead.origin is Origin.SALES or bool(reached & ADVANCED)
        if not owned and Stage.MQL in reached:
            owned = lead.final is not Stage.MQL or rng.chance(0.6)
        lead.owner = lead.rep if owned else None
        lead.campaign = self.campaign(lead, created)
        lead.form = self.pick_form(lead)

        steps: list[Step] = []
        for i, stage in enumerate(path):
            prev = path[i - 1] if i else None
            steps.append(self.make_step(lead, prev, stage, times[i]))
        lead.steps = steps

    def make_step(self, lead: LeadPlan, prev: Stage | None, target: Stage, at: datetime) -> Step:
        rng = self.rng
        S = Stage
        actor: int | None = None
        reason: str | None = None
        bad: BadReason | None = None
        ev: Evidence | None = None
        rep = lead.owner if lead.owner is not None else None
        marketer = rng.choice(self.marketers)
        label: str | None = None
        if prev is None:
            actor = lead.rep if lead.origin is Origin.SALES else None
            if lead.origin is Origin.MARKETING and lead.source == "trade_show":
                actor = marketer  # badge scans imported by marketing
            if lead.form is not None:
                form = self.forms[lead.form]
                label = f"web form {form.name!r} ({form.key})"
            if target is S.SAL:
                ev = self.needs_assessment(lead, qualified=True)
            elif target is S.NURTURE:
                reason = "Newsletter subscriber, no buying intent yet"
        elif target is S.COLD:
            actor = None
        elif target is S.MQL:
            review = (lead.source == "trade_show" and rng.chance(0.6)) or (
                prev is S.NURTURE and rng.chance(0.2)
            )
            if review:
                actor = marketer
                note = (
                    f"Spoke at the booth at {lead.campaign}; asked for a follow-up"
                    if lead.source == "trade_show"
                    else "Replied to the nurture email asking for a call"
                )
                ev = MarketingReview(note=note)
            else:
                ev = ScoreThreshold(
                    score=round(rng.uniform(MQL_THRESHOLD, 97.0), 1),
                    threshold=MQL_THRESHOLD,
                    model_version=SCORE_MODEL,
                )
        elif target is S.SAL:
            actor = rep
            ev = self.needs_assessment(lead, qualified=True)
        elif target is S.SQL:
            actor = rep
            ev = self.discovery_call(lead, at, qualified=True)
        elif target is S.OPPORTUNITY:
            actor = rep
            lead.opportunity_id = self.next_id("opp")
            kinds = ["demo_request", "pricing_request", "trial_start", "decision_timeline"]
            signals = tuple(
                sorted(rng.sample(kinds, rng.weighted(((1, 40.0), (2, 40.0), (3, 20.0)))), key=kinds.index)
            )
            ev = OpportunityOpened(opportunity_id=lead.opportunity_id, signals=signals)
        elif target is S.CUSTOMER:
            actor = rep
            lead.deal_amount = self.deal_amount(lead)
            ev = DealWon(opportunity_id=lead.opportunity_id, amount=lead.deal_amount)
        elif target is S.NURTURE:
            actor = rep if prev in SALES_SIDE else marketer
            reason = rng.choice(data.NURTURE_REASONS)
        elif target is S.UNQUALIFIED:
            actor = rep if rep is not None else marketer
            reason = rng.choice(data.UNQUALIFIED_REASONS)
            if prev is S.MQL:
                ev = self.needs_assessment(lead, qualified=False)
            elif prev is S.SAL:
                ev = self.discovery_call(lead, at, qualified=False)
        elif target is S.BAD:
            actor = rep if rep is not None else marketer
            bad = lead.bad_reason or BadReason.BAD_FIT
            reason = lead.bad_text or rng.choice(data.BAD_REASON_TEXTS[bad])
            if bad is BadReason.DUPLICATE and lead.attributes:
                reason = f"Duplicate of {lead.attributes.get('duplicate_of')}"
        elif target is S.RECYCLED:
            if prev is S.OPPORTUNITY:
                actor = rep
                reason = rng.choice(data.RECYCLE_REASONS_LOST)
            else:
                actor = marketer
                reason = rng.choice(data.RECYCLE_REASONS_OTHER)
        # The lifecycle decides; a plan it refuses is a bug in this generator.
        if prev is None:
            lifecycle.initial(target, origin=lead.origin, evidence=ev, reason=reason, bad_reason=bad)
        else:
            lifecycle.transition(prev, target, origin=lead.origin, evidence=ev, reason=reason, bad_reason=bad)
        return Step(prev, target, at, actor, reason, bad, ev, label)

    def needs_assessment(self, lead: LeadPlan, *, qualified: bool) -> NeedsAssessment:
        rng = self.rng
        answers = {
            "source": lead.source.replace("_", " "),
            "need": rng.choice(data.NEED_ANSWERS["need"]),
            "product_interest": rng.choice(data.NEED_ANSWERS["product_interest"]),
            "solution": rng.choice(data.NEED_ANSWERS["solution"]),
            "timeline": rng.choice(data.NEED_ANSWERS["timeline"]) if qualified else "No timeline",
        }
        return NeedsAssessment(assessment_id=self.next_id("na"), answers=answers, qualified=qualified)

    def discovery_call(self, lead: LeadPlan, at: datetime, *, qualified: bool) -> DiscoveryCall:
        rng = self.rng
        acc = self.accounts[lead.account] if lead.account is not None else None
        size = acc.employee_count if acc else 20
        budget = int(min(500_000, max(3_000, round(size * rng.uniform(8, 30), -3))))
        met = {"budget": True, "authority": True, "need": True, "timeline": True}
        if not qualified:
            for key in rng.sample(list(met), rng.randint(1, 2)):
                met[key] = False
        notes = {
            "budget": f"~${budget:,} approved" if met["budget"] else "No budget allocated this year",
            "authority": (
                "Speaking with the economic buyer"
                if lead.buying_role == "decision_maker"
                else "Champion; the VP signs"
                if met["authority"]
                else "No access to the decision maker"
            ),
            "need": rng.choice(data.NEED_ANSWERS["need"]) if met["need"] else "Current tool is good enough",
            "timeline": rng.choice(data.NEED_ANSWERS["timeline"]) if met["timeline"] else "No timeline",
        }
        criteria = {k: {"met": met[k], "note": notes[k]} for k in ("budget", "authority", "need", "timeline")}
        held = at - timedelta(minutes=rng.randint(20, 240))
        return DiscoveryCall(
            call_id=self.next_id("dc"),
            framework="BANT",
            criteria=criteria,
            outcome="qualified" if qualified else "unqualified",
            held_at=held,
        )

    def deal_amount(self, lead: LeadPlan) -> float:
        acc = self.accounts[lead.account] if lead.account is not None else None
        employees = acc.employee_count if acc else 15
        seats = max(5, round(employees * self.rng.uniform(0.02, 0.12)))
        return float(min(400_000, max(3_000, round(seats * 600, -2))))

    def campaign(self, lead: LeadPlan, created: datetime) -> str | None:
        rng = self.rng
        month = created.strftime("%Y-%m")
        quarter = f"{created.year}-Q{(created.month - 1) // 3 + 1}"
        src = lead.source
        if src == "webinar":
            return f"Webinar {month}: {rng.choice(data.WEBINARS)}"
        if src == "paid_search":
            return f"Google Ads - {rng.choice(data.SEARCH_CAMPAIGNS)}"
        if src == "linkedin":
            return f"LinkedIn - {rng.choice(data.LINKEDIN_CAMPAIGNS)}"
        if src == "trade_show":
            return f"{rng.choice(data.TRADE_SHOWS)} {created.year}"
        if src == "content_download":
            return f"Content - {rng.choice(data.ASSETS)[0]}"
        if src == "referral":
            return "Customer referral program"
        if src == "partner":
            return f"Partner - {rng.choice(data.PARTNERS)}"
        if src == "outbound":
            industry = self.accounts[lead.account].industry if lead.account is not None else "SMB"
            return f"Outbound {lead.territory} {industry} {quarter}"
        if src == "organic_search":
            return "SEO - Blog" if rng.chance(0.5) else None
        return None

    # ----------------------------------------------------------------------------- activities

    def fill_activities(self, lead: LeadPlan) -> None:
        acts = Activities(self, lead)
        acts.build()
        lead.activities = sorted(acts.items, key=lambda a: a.at)

    def fill_consent(self, lead: LeadPlan) -> None:
        rng = self.rng
        if lead.unsubscribed:
            lead.consent = "denied"
        elif lead.origin is Origin.SALES:
            lead.consent = "granted" if rng.chance(0.15) else "unknown"
        elif lead.territory == "EMEA":
            lead.consent = "granted" if rng.chance(0.75) else "unknown"
        else:
            lead.consent = "granted" if rng.chance(0.45) else "unknown"

    def generate(self) -> DemoData:
        self.make_users()
        self.make_forms()
        leads = self.make_leads()
        for lead in leads:
            if lead.account is None:
                continue
            acc = self.accounts[lead.account]
            first = lead.created_at - timedelta(hours=self.rng.uniform(0.5, 72))
            if acc.created_at is None or first < acc.created_at:
                acc.created_at = first
            if acc.updated_at is None or lead.created_at > acc.updated_at:
                acc.updated_at = lead.created_at
        for acc in self.accounts:
            acc.created_at = acc.created_at or self.now - timedelta(days=MAX_AGE_DAYS)
            acc.updated_at = acc.updated_at or acc.created_at
        return DemoData(self.users, self.forms, self.accounts, leads)


# Activity types; the vocabulary other features (scoring, timelines) can rely on.
WEB = "website"
EMAIL = "email"
CRM = "crm"

# Background activity per stage: (events per day, cap per stay, type mix).
Mix = tuple[tuple[str, float], ...]
MARKETING_MIX: Mix = (
    ("page_view", 45),
    ("email_open", 30),
    ("email_click", 10),
    ("content_download", 6),
    ("webinar", 4),
    ("form_submit", 2),
)
WORKING_MIX: Mix = (
    ("page_view", 30),
    ("email_open", 18),
    ("email_sent", 22),
    ("call", 12),
    ("note", 10),
    ("meeting", 6),
)
OPPORTUNITY_MIX: Mix = (
    ("meeting", 15),
    ("email_sent", 20),
    ("note", 15),
    ("call", 10),
    ("page_view", 25),
    ("email_open", 15),
)
CUSTOMER_MIX: Mix = (("page_view", 50), ("email_open", 30), ("meeting", 8), ("email_sent", 12))
QUIET_MIX: Mix = (("email_open", 60), ("page_view", 40))

BACKGROUND: dict[Stage, tuple[float, int, Mix]] = {
    Stage.NEW: (0.45, 12, MARKETING_MIX),
    Stage.COLD: (0.06, 8, MARKETING_MIX),
    Stage.MQL: (0.35, 30, (*MARKETING_MIX, ("email_sent", 14), ("call", 8))),
    Stage.SAL: (0.8, 30, WORKING_MIX),
    Stage.SQL: (0.9, 30, WORKING_MIX),
    Stage.OPPORTUNITY: (0.8, 45, OPPORTUNITY_MIX),
    Stage.CUSTOMER: (0.12, 30, CUSTOMER_MIX),
    Stage.NURTURE: (0.09, 20, MARKETING_MIX),
    Stage.UNQUALIFIED: (0.03, 6, QUIET_MIX),
    Stage.BAD: (0.0, 0, QUIET_MIX),
    Stage.RECYCLED: (0.07, 10, MARKETING_MIX),
}
ACTIVITY_TYPES = frozenset(t.value for t in ActivityType)
REP_TYPES = frozenset({"email_sent", "call", "meeting", "note"})


class Activities:
    """Engagement for one lead: capture, background per stage stay, and the signals behind each
    stage change (hot engagement before MQL, calls before SAL, the discovery meeting before SQL,
    demo/pricing/trial requests before the opportunity)."""

    def __init__(self, gen: Generator, lead: LeadPlan) -> None:
        self.gen = gen
        self.rng = gen.rng
        self.lead = lead
        self.items: list[ActivityPlan] = []
        self.engagement = math.exp(gen.rng.uniform(-0.5, 0.5))

    def add(
        self,
        kind: str,
        at: datetime,
        actor: int | None = None,
        *,
        within: tuple[datetime, datetime] | None = None,
        **props: Any,
    ) -> None:
        """Record one activity; a rep's touch moves into office hours when ``within`` allows."""

        if kind not in ACTIVITY_TYPES:
            raise ValueError(f"unknown activity type {kind!r}")
        if within is not None and kind in REP_TYPES:
            at = self.gen.office(at, self.lead.territory, *within)
        if at > self.gen.now:
            return
        at = max(at, self.lead.created_at)
        if kind in REP_TYPES and actor is None:
            actor = self.lead.owner if self.lead.owner is not None else self.lead.rep
        self.items.append(ActivityPlan(kind, at, self.properties(kind, props), self.source(kind), actor))

    @staticmethod
    def source(kind: str) -> str:
        if kind in {"email_open", "email_click"}:
            return EMAIL
        if kind.startswith("webinar"):
            return "webinar"
        if kind == "trial_start":
            return "product"
        if kind in REP_TYPES:
            return CRM
        return WEB

    def properties(self, kind: str, props: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        hot = self.lead.final in ADVANCED
        if kind == "page_view":
            props.setdefault(
                "url", rng.weighted(data.HOT_PAGES if hot and rng.chance(0.5) else data.WEB_PAGES)
            )
        elif kind == "email_open":
            props.setdefault("email", rng.choice(data.NEWSLETTERS))
        elif kind == "email_click":
            props.setdefault("email", rng.choice(data.NEWSLETTERS))
            props.setdefault("url", rng.weighted(data.WEB_PAGES))
        elif kind == "content_download":
            title, url = rng.choice(data.ASSETS)
            props.setdefault("asset", title)
            props.setdefault("url", url)
        elif kind == "webinar":
            props.setdefault("webinar", rng.choice(data.WEBINARS))
            props.setdefault("status", "attended")
        elif kind == "form_submit":
            props.setdefault("form", rng.choice(("newsletter", "contact-us", "gated-content")))
        elif kind == "call":
            outcome = props.setdefault(
                "outcome", rng.weighted((("connected", 45.0), ("voicemail", 35.0), ("no_answer", 20.0)))
            )
            props.setdefault("direction", "outbound")
            props.setdefault(
                "duration_s", rng.randint(300, 2400) if outcome == "connected" else rng.randint(0, 60)
            )
        elif kind == "email_sent":
            props.setdefault(
                "subject",
                rng.choice(
                    ("Following up", "Quick question", "Resources we discussed", "Next steps", "Proposal")
                ),
            )
        elif kind == "note":
            props.setdefault(
                "text",
                rng.choice(
                    (
                        "Replied: interested, asked for the security whitepaper",
                        "Replied: looping in their IT lead",
                        "Replied: wants pricing for 25 seats",
                        "Replied: busy this month, follow up in two weeks",
                        "Replied: shared current process and pain points",
                    )
                ),
            )
        elif kind == "meeting":
            props.setdefault(
                "title", rng.choice(("Check-in", "Product demo", "Technical deep dive", "Security review"))
            )
            props.setdefault("duration_min", rng.choice((30, 30, 45, 60)))
        return props

    def build(self) -> None:
        lead, rng = self.lead, self.rng
        steps = lead.steps
        self.capture()
        if steps[0].evidence is not None:
            self.before(steps[0], steps[0].at)
        for i, step in enumerate(steps):
            start = step.at
            end = steps[i + 1].at if i + 1 < len(steps) else self.gen.now
            if i + 1 < len(steps):
                self.before(steps[i + 1], start)
            rate, cap, mix = BACKGROUND[step.stage]
            if lead.origin is Origin.SALES and step.stage in {Stage.NEW, Stage.COLD}:
                rate, mix = rate * 0.3, (("page_view", 1.0),)
            if step.stage in {Stage.NEW, Stage.COLD, Stage.NURTURE} or lead.owner is None:
                mix = tuple(m for m in mix if m[0] not in REP_TYPES) or (("page_view", 1.0),)
            days = (end - start).total_seconds() / 86400
            n = min(cap, rng.poisson(rate * days * self.engagement))
            for _ in range(n):
                self.add(rng.weighted(mix), rng.between(start, end), within=(start, end))
            if step.stage is Stage.CUSTOMER:
                self.add(
                    "meeting", start + rng.days(3, 14), within=(start, end), title="Kickoff", duration_min=60
                )
        self.unsubscribe()

    def capture(self) -> None:
        lead, rng = self.lead, self.rng
        t = lead.created_at
        if lead.origin is Origin.SALES:
            return  # typed in by the rep; nobody has been contacted yet
        src = lead.source
        via: dict[str, Any] = {}
        if lead.form is not None:
            form = self.gen.forms[lead.form]
            via = {"form": form.name, "form_key": form.key}
        if src == "webinar":
            title = (lead.campaign or "").split(": ", 1)[-1] or rng.choice(data.WEBINARS)
            self.add("form_submit", t, url="/webinars", **via)
            self.add("webinar", t, webinar=title, status="registered")
            if rng.chance(0.65):
                self.add("webinar", t + rng.days(2, 14), webinar=title, status="attended")
        elif src == "content_download":
            title = (lead.campaign or "").removeprefix("Content - ")
            url = dict(data.ASSETS).get(title, "/resources")
            self.add("page_view", t - timedelta(minutes=3), url=url)
            self.add("form_submit", t, url=url, **via)
            self.add("content_download", t, asset=title, url=url)
        elif src in {"organic_search", "paid_search"}:
            medium = "cpc" if src == "paid_search" else "organic"
            url = rng.weighted(data.WEB_PAGES)
            self.add(
                "page_view",
                t - timedelta(minutes=rng.randint(2, 20)),
                url=url,
                utm_source="google",
                utm_medium=medium,
            )
            self.add("form_submit", t, url=url, **via)
        elif src == "linkedin":
            self.add("form_submit", t, form="LinkedIn lead gen form", campaign=lead.campaign)
        elif src == "trade_show":
            self.add("form_submit", t, form="Badge scan", event=lead.campaign)
        else:
            self.add("form_submit", t, url="/contact", **via)

    def before(self, step: Step, since: datetime) -> None:
        """The activity that justified entering ``step``, placed before it."""

        rng, at = self.rng, step.at
        window = max((at - since).total_seconds() / 86400, 0.01)

        def back(lo: float, hi: float) -> datetime:
            return at - timedelta(days=min(rng.uniform(lo, hi), window * 0.95))

        span = (since, at)

        ev = step.evidence
        if isinstance(ev, ScoreThreshold):
            for _ in range(rng.randint(3, 6)):
                self.add(
                    rng.weighted(
                        (
                            ("page_view", 3.0),
                            ("content_download", 2.0),
                            ("email_click", 2.0),
                            ("webinar", 1.0),
                        )
                    ),
                    back(0.05, 10),
                )
            self.add("page_view", back(0.01, 2), url="/pricing")
        elif isinstance(ev, NeedsAssessment) and step.source is None:
            # A sales-sourced lead entered straight at SAL after the rep's first call.
            self.add(
                "call", at, outcome="connected", purpose="needs_assessment", duration_s=rng.randint(900, 1800)
            )
        elif isinstance(ev, NeedsAssessment):
            for _ in range(rng.randint(0, 2)):
                self.add("email_sent", back(1, 6), within=span, subject="Following up on your interest")
            if rng.chance(0.4):
                self.add("call", back(0.5, 4), within=span, outcome="voicemail")
            self.add(
                "call",
                back(0.01, 0.3),
                within=span,
                outcome="connected",
                purpose="needs_assessment",
                duration_s=rng.randint(900, 1800),
            )
        elif isinstance(ev, DiscoveryCall):
            held = ev.held_at or at
            invite = max(since, held - timedelta(days=rng.uniform(1, 5)))
            self.add("email_sent", invite, within=(since, held), subject="Invitation: discovery call")
            self.add("meeting", held, title="Discovery call", purpose="discovery_call", duration_min=30)
        elif isinstance(ev, OpportunityOpened):
            for signal in ev.signals:
                when = back(0.05, 7)
                if signal == "demo_request":
                    form = self.gen.forms[self.gen.form_named("Request a demo")]
                    self.add("demo_request", when, url="/demo", form=form.name, form_key=form.key)
                elif signal == "pricing_request":
                    self.add("page_view", when - timedelta(minutes=5), url="/pricing")
                    self.add("pricing_request", when, url="/pricing", plan=rng.choice(data.PLANS))
                elif signal == "trial_start":
                    self.add("trial_start", when, plan=rng.choice(data.PLANS), seats=rng.choice((5, 10, 25)))
                else:
                    self.add("meeting", when, within=span, title="Decision timeline review", duration_min=45)
        elif isinstance(ev, DealWon):
            self.add("meeting", back(5, 20), within=span, title="Commercial negotiation", duration_min=60)
            self.add("email_sent", back(0.5, 4), within=span, subject="Order form for signature")
            self.add("note", back(0.01, 0.5), within=span, text="Signed order form received by email")

    def unsubscribe(self) -> None:
        lead, rng = self.lead, self.rng
        p = 0.0
        if lead.origin is Origin.MARKETING and lead.kind not in {"invalid", "competitor"}:
            p = {Stage.NURTURE: 0.15, Stage.COLD: 0.12, Stage.UNQUALIFIED: 0.12, Stage.RECYCLED: 0.08}.get(
                lead.final, 0.03
            )
        if not rng.chance(p):
            return
        start = lead.created_at + timedelta(days=1)
        if start >= self.gen.now:
            return
        t = rng.between(start, self.gen.now)
        self.items = [a for a in self.items if not (a.source == EMAIL and a.at >= t)]
        lead.attributes = {**(lead.attributes or {}), "unsubscribed_at": t.isoformat()}
        lead.unsubscribed = True


def generate(*, leads: int, seed: int, now: datetime) -> DemoData:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return Generator(leads=leads, seed=seed, now=now.astimezone(UTC)).generate()
