"""A synthetic history with a known latent propensity, for tests and demos of predictive scoring.

Each lead gets a latent log-odds of becoming an SQL: a fit part (seniority, company size,
industry, free mail, source) plus an engagement propensity that is only visible through behaviour
(pricing page views, demo and pricing requests, trials, clicks). Whether it converts within the
outcome window is drawn from that probability; its events are a Poisson process over its active
span (until it converted, else for the whole window). Some behaviour is noise on purpose (page
views, email opens and content downloads do not depend on the latent; students attend webinars
more), so the built-in rule model, which gives them points, ranks worse than what the data
supports, and the suggested points should do better.

The generator writes accounts, leads, activities and stage history in bulk (no services, no
scoring); sales touches after a conversion are included, so a feature builder that leaks them
would be caught.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from leadflow.db.base import utcnow
from leadflow.leads.models import Account, Activity, Lead, StageChange

SENIORITY = (
    ("executive", 0.07, "Chief Revenue Officer", 1.2),
    ("vp", 0.08, "VP Sales", 1.2),
    ("director", 0.12, "Director of Marketing", 0.9),
    ("manager", 0.18, "Sales Manager", 0.3),
    ("senior", 0.15, "Senior Analyst", 0.1),
    ("entry", 0.30, "Analyst", 0.0),
    ("student", 0.10, "Student", -2.0),
)
INDUSTRY = (
    ("Software", 0.22, 0.7),
    ("Financial Services", 0.14, 0.6),
    ("Telecommunications", 0.08, 0.2),
    ("Manufacturing", 0.16, -0.2),
    ("Retail", 0.15, -0.4),
    ("Education", 0.12, -0.6),
    ("Healthcare", 0.13, 0.0),
)
SOURCE = (
    ("web", 0.35, 0.0),
    ("paid_search", 0.2, -0.3),
    ("event", 0.15, 0.2),
    ("partner", 0.12, 0.4),
    ("referral", 0.1, 0.7),
    ("webinar", 0.08, 0.0),
)
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "CA")
BASE_LOGIT = -2.8
FIT_SCALE = 1.4
ENGAGEMENT_WEIGHT = 1.6
FREE_MAIL_WEIGHT = -1.5
HORIZON_DAYS = 90.0


@dataclass
class SyntheticSummary:
    accounts: int = 0
    leads: int = 0
    activities: int = 0
    converted: int = 0
    # lead id -> the latent log-odds the outcome was drawn from (the signal to recover)
    latent: dict[int, float] = field(default_factory=dict)


def _choice(
    rng: np.random.Generator, table: tuple[tuple[object, ...], ...], n: int
) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
    p = np.array([float(str(row[1])) for row in table])
    out: np.ndarray[tuple[int], np.dtype[np.int64]] = rng.choice(len(table), size=n, p=p / p.sum())
    return out


def generate(
    session: Session,
    *,
    leads: int = 3000,
    seed: int = 7,
    now: datetime | None = None,
    days: float = 420.0,
    accounts: int | None = None,
) -> SyntheticSummary:
    """Write ``leads`` leads captured over the ``days`` before ``now`` (the newest have no
    closed outcome window yet), with their accounts, events and stage history."""

    rng = np.random.default_rng(seed)
    end = now or utcnow()
    n_acc = accounts or max(20, leads // 8)
    summary = SyntheticSummary()

    # Accounts: industry, size, revenue.
    ind = _choice(rng, INDUSTRY, n_acc)
    emp = np.clip(np.exp(rng.normal(math.log(300), 1.6, n_acc)), 2, 300_000).astype(np.int64)
    acc_rows = [
        {
            "name": f"Synthetic {seed}-{i} Ltd",
            "name_key": f"synthetic {seed}-{i}",
            "domain": f"syn{seed}-{i}.example",
            "industry": INDUSTRY[int(ind[i])][0],
            "employee_count": int(emp[i]),
            "annual_revenue": int(emp[i]) * int(rng.integers(80_000, 250_000)),
            "country": COUNTRIES[int(rng.integers(len(COUNTRIES)))],
            "created_at": end - timedelta(days=days + 30),
            "updated_at": end - timedelta(days=days + 30),
        }
        for i in range(n_acc)
    ]
    acc_ids = list(
        session.scalars(insert(Account).returning(Account.id, sort_by_parameter_order=True), acc_rows)
    )
    summary.accounts = n_acc
    acc_fit = np.array([INDUSTRY[int(i)][2] for i in ind]) + np.where((emp >= 50) & (emp <= 5000), 1.0, -0.3)

    # Leads: who they are, and the latent propensity.
    acc = rng.integers(0, n_acc, leads)
    sen = _choice(rng, SENIORITY, leads)
    src = _choice(rng, SOURCE, leads)
    free = rng.random(leads) < 0.25
    eta = rng.normal(0.0, 1.0, leads)  # engagement propensity: seen only through behaviour
    fit_z = (
        np.array([float(str(SENIORITY[int(s)][3])) for s in sen])
        + acc_fit[acc]
        + np.array([float(str(SOURCE[int(s)][2])) for s in src])
        + np.where(free, FREE_MAIL_WEIGHT, 0.0)
    )
    z = BASE_LOGIT + FIT_SCALE * fit_z + ENGAGEMENT_WEIGHT * eta
    converts = rng.random(leads) < 1.0 / (1.0 + np.exp(-z))
    created = np.array([end - timedelta(days=float(d)) for d in np.sort(rng.uniform(5.0, days, leads))[::-1]])
    conv_days = rng.uniform(5.0, HORIZON_DAYS - 5.0, leads)
    lead_rows = []
    for i in range(leads):
        s = SENIORITY[int(sen[i])]
        domain = "gmail.com" if free[i] else acc_rows[int(acc[i])]["domain"]
        lead_rows.append(
            {
                "email": f"lead{i}.s{seed}@{domain}",
                "first_name": f"Lead{i}",
                "last_name": f"Synthetic{seed}",
                "job_title": s[2],
                "seniority": s[0],
                "company": acc_rows[int(acc[i])]["name"],
                "source": SOURCE[int(src[i])][0],
                "origin": "marketing",
                "account_id": acc_ids[int(acc[i])],
                "stage": "new",
                "consent": "granted",
                "created_at": created[i],
                "updated_at": created[i],
                "stage_changed_at": created[i],
            }
        )
    lead_ids = list(session.scalars(insert(Lead).returning(Lead.id, sort_by_parameter_order=True), lead_rows))
    summary.leads = leads

    # Events: a Poisson process per type over the lead's active span (rate per day).
    student = sen == [r[0] for r in SENIORITY].index("student")
    rates: list[tuple[str, np.ndarray[tuple[int], np.dtype[np.float64]], str | None]] = [
        ("page_view", np.full(leads, 0.05), None),
        ("page_view", 0.06 * np.exp(1.0 * eta), "/pricing"),
        ("email_open", np.full(leads, 0.05), None),
        ("email_click", 0.02 * np.exp(0.8 * eta), None),
        ("form_submit", np.full(leads, 0.01), None),
        ("content_download", np.full(leads, 0.03), None),
        ("webinar", np.where(student, 0.03, 0.006), None),
        ("demo_request", 0.01 * np.exp(1.2 * eta), None),
        ("pricing_request", 0.005 * np.exp(1.2 * eta), None),
        ("trial_start", 0.004 * np.exp(1.0 * eta), None),
    ]
    span = np.where(converts, conv_days, HORIZON_DAYS + 30.0)
    act_rows = []
    horizon_end = [created[i] + timedelta(days=float(span[i])) for i in range(leads)]
    for etype, rate, url in rates:
        counts = rng.poisson(rate * span)
        who = np.repeat(np.arange(leads), counts)
        offsets = rng.uniform(0.0, 1.0, len(who)) * span[who]
        pages = rng.integers(0, 40, len(who))
        for i, off, page_no in zip(who.tolist(), offsets.tolist(), pages.tolist(), strict=True):
            at = created[i] + timedelta(days=off)
            if at >= end:
                continue
            page = url or (f"/blog/{page_no}" if etype == "page_view" else None)
            act_rows.append(
                {
                    "lead_id": lead_ids[i],
                    "type": etype,
                    "occurred_at": at,
                    "properties": {"url": page} if page else None,
                    "source": "synthetic",
                    "created_at": at,
                }
            )
    # Stage history: captured as new; converters go mql -> sal -> sql at their conversion time,
    # some on to opportunity and customer; sales touches follow a conversion.
    changes = []
    final = ["new"] * leads
    for i in range(leads):
        lid = lead_ids[i]
        changes.append(
            {"lead_id": lid, "from_stage": None, "to_stage": "new", "at": created[i], "reason": "synthetic"}
        )
        conv_at = horizon_end[i]
        if not converts[i] or conv_at >= end:
            if rng.random() < 0.25 and created[i] + timedelta(days=60) < end:
                at = created[i] + timedelta(days=60)
                changes.append(
                    {
                        "lead_id": lid,
                        "from_stage": "new",
                        "to_stage": "unqualified",
                        "at": at,
                        "reason": "synthetic",
                    }
                )
                final[i] = "unqualified"
            continue
        path = [
            ("new", "mql", conv_at - timedelta(days=2)),
            ("mql", "sal", conv_at - timedelta(days=1)),
            ("sal", "sql", conv_at),
        ]
        if rng.random() < 0.5 and conv_at + timedelta(days=10) < end:
            path.append(("sql", "opportunity", conv_at + timedelta(days=10)))
            if rng.random() < 0.5 and conv_at + timedelta(days=40) < end:
                path.append(("opportunity", "customer", conv_at + timedelta(days=40)))
        for src_stage, dst, at in path:
            changes.append(
                {"lead_id": lid, "from_stage": src_stage, "to_stage": dst, "at": at, "reason": "synthetic"}
            )
        final[i] = path[-1][1]
        summary.converted += 1
        for k in range(int(rng.integers(1, 4))):
            at = conv_at + timedelta(days=1 + 2 * k)
            if at < end:
                act_rows.append(
                    {
                        "lead_id": lid,
                        "type": "meeting" if k else "call",
                        "occurred_at": at,
                        "properties": None,
                        "source": "synthetic",
                        "created_at": at,
                    }
                )
    for chunk in range(0, len(act_rows), 20_000):
        session.execute(insert(Activity), act_rows[chunk : chunk + 20_000])
    session.execute(insert(StageChange), changes)
    by_stage: dict[str, list[int]] = {}
    for i, st in enumerate(final):
        if st != "new":
            by_stage.setdefault(st, []).append(lead_ids[i])
    for st, ids in by_stage.items():
        for chunk in range(0, len(ids), 5_000):
            session.execute(
                update(Lead)
                .where(Lead.id.in_(ids[chunk : chunk + 5_000]))
                .values(stage=st)
                .execution_options(synchronize_session=False)
            )
    summary.activities = len(act_rows)
    summary.latent = {lead_ids[i]: float(z[i]) for i in range(leads)}
    return summary
