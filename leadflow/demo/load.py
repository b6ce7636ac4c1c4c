"""Write the generated demo data set into an empty database with bulk inserts."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import JSON, Insert, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import ApiToken, User
from leadflow.core.lifecycle import Origin, Stage, evidence_to_dict
from leadflow.db.base import Base, Database, utcnow
from leadflow.demo.data import DEMO_PASSWORD
from leadflow.demo.deals import link_evidence, write_deals
from leadflow.demo.generate import DemoData, LeadPlan, generate
from leadflow.errors import Conflict
from leadflow.leads.models import Account, Activity, ImportJob, Lead, StageChange, WebForm
from leadflow.leads.service import SNAPSHOT_FIELDS
from leadflow.pipeline import signals
from leadflow.qualification.demo import DemoRecords

SYSTEM_LABEL = "system"


class DemoError(Conflict):
    """The demo data cannot be loaded: the database already holds data. A domain error, so the
    CLI prints it as one line (exit code 2) rather than a traceback."""

    code = "demo_database_not_empty"


@dataclass(frozen=True)
class DemoSummary:
    users: int
    web_forms: int
    accounts: int
    leads: int
    activities: int
    stage_changes: int
    audit_entries: int
    leads_by_stage: dict[str, int]
    leads_by_origin: dict[str, int]
    admin_email: str
    password: str
    seed: int
    seconds: float
    user_emails: list[str] = field(default_factory=list)
    opportunities: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        stages = ", ".join(f"{k} {v:,}" for k, v in self.leads_by_stage.items())
        return (
            f"{self.users} users, {self.web_forms} web forms, {self.accounts:,} accounts, "
            f"{self.leads:,} leads ({stages}), {self.activities:,} activities, "
            f"{self.stage_changes:,} stage changes, {self.audit_entries:,} audit entries, "
            f"{sum(self.opportunities.values()):,} opportunities "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.opportunities.items()))}) "
            f"in {self.seconds:.1f} s (seed {self.seed}); every demo user signs in with the "
            f"password {self.password!r}, e.g. {self.admin_email}"
        )


# Tables that must be empty; a demo mixed into real data could never be told apart from it.
_CHECKED: tuple[type[Base], ...] = (
    User,
    ApiToken,
    Account,
    Lead,
    Activity,
    StageChange,
    AuditEntry,
    ImportJob,
    WebForm,
)


def _ensure_empty(session: Session) -> None:
    found = []
    for model in _CHECKED:
        count = session.scalar(select(func.count()).select_from(model))
        if count:
            found.append(f"{count} {model.__tablename__}")
    if found:
        raise DemoError(
            "refusing to load demo data into a database that already holds data "
            f"({', '.join(found)}); use a new, freshly migrated database"
        )


def _insert_stmt(model: Any) -> Insert:
    """A Core INSERT for ``model`` that stores None in JSON columns as SQL NULL.

    A JSON column binds None as the JSON text 'null' (``none_as_null`` is off in the shared
    type), which ``IS NULL`` filters would miss; binding through a ``none_as_null`` variant keeps
    every row's keys the same, so each table still goes in as one batched executemany.
    """

    table = model.__table__
    values = {}
    for col in table.columns:
        if isinstance(col.type, JSON):
            json_type = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
            values[col.name] = bindparam(col.name, type_=json_type)
    return insert(table).values(values) if values else insert(table)


def _insert_returning_ids(session: Session, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    if not rows:
        return []
    stmt = _insert_stmt(model).returning(model.__table__.c.id, sort_by_parameter_order=True)
    return list(session.scalars(stmt, rows).all())


def _copy_postgresql(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: COPY the rows in the session's transaction (psycopg's row-by-row pipelined
    executemany takes ~5 s for the activities; COPY well under one)."""

    from psycopg import sql
    from psycopg.types.json import Jsonb

    table = model.__table__
    cols = list(rows[0])
    json_cols = {c.name for c in table.columns if isinstance(c.type, JSON)}
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(c) for c in cols)
    )
    conn = session.connection().connection.driver_connection
    assert conn is not None
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for row in rows:
            copy.write_row([Jsonb(row[c]) if c in json_cols and row[c] is not None else row[c] for c in cols])


def _insert(session: Session, model: Any, rows: list[dict[str, Any]], chunk: int = 20_000) -> int:
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        _copy_postgresql(session, model, rows)
        return len(rows)
    stmt = _insert_stmt(model)
    for start in range(0, len(rows), chunk):
        session.execute(stmt, rows[start : start + chunk])
    return len(rows)


def _lead_row(lead: LeadPlan, user_ids: list[int], account_ids: list[int]) -> dict[str, Any]:
    last = lead.steps[-1]
    row: dict[str, Any] = {
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "email": lead.email,
        "phone": lead.phone,
        "phone_raw": lead.phone_raw,
        "job_title": lead.job_title,
        "seniority": lead.seniority,
        "department": lead.department,
        "company": lead.company,
        "country": lead.country,
        "timezone": lead.timezone,
        "source": lead.source,
        "campaign": lead.campaign,
        "origin": lead.origin.value,
        "owner_id": user_ids[lead.owner] if lead.owner is not None else None,
        "account_id": account_ids[lead.account] if lead.account is not None else None,
        "stage": last.stage.value,
        "status_reason": last.reason,
        "bad_reason": last.bad_reason.value if last.bad_reason is not None else None,
        "bad_candidate_reasons": lead.bad_candidate_reasons,
        "consent": lead.consent,
        "unsubscribed": lead.unsubscribed,
        "attributes": lead.attributes,
        "created_at": lead.created_at,
        "updated_at": max(last.at, lead.created_at),
        "stage_changed_at": last.at,
        "version": len(lead.steps),
    }
    return row


def load_demo(
    db: Database,
    *,
    leads: int = 2000,
    seed: int = 42,
    now: datetime | None = None,
) -> DemoSummary:
    """Fill an empty, migrated database with a realistic demo data set.

    Users (admin, marketing, two sales teams with their managers and reps, all with the password
    :data:`~leadflow.demo.data.DEMO_PASSWORD`), accounts with buying committees, ``leads`` leads in
    every lifecycle stage with a legal, evidenced stage history, engagement activities and the
    audit trail. The same ``seed`` gives the same data (timestamps are relative to ``now``).
    Raises :class:`DemoError` when the database is not empty. No API token is created.
    """

    started = time.perf_counter()
    now = now or utcnow()
    plan = generate(leads=leads, seed=seed, now=now)
    # One argon2 hash (~0.4 s with the library defaults, which the auth service verifies with)
    # is shared by every demo user: the password is public anyway, and hashing it per user
    # would be most of the load time.
    password_hash = PasswordHasher().hash(DEMO_PASSWORD)
    with db.transaction() as session:
        _ensure_empty(session)
        counts = _write(session, plan, password_hash, seed, now)
    from leadflow.demo.cadences import add_follow_up

    add_follow_up(db, now=now or utcnow(), seed=seed)  # open tasks and sequence enrollments
    by_stage = Counter(ld.steps[-1].stage.value for ld in plan.leads)
    by_origin = Counter(ld.origin.value for ld in plan.leads)
    admin = next(u for u in plan.users if u.role == "admin")
    return DemoSummary(
        users=len(plan.users),
        web_forms=counts["web_forms"],
        accounts=len(plan.accounts),
        leads=len(plan.leads),
        activities=counts["activities"],
        stage_changes=counts["stage_changes"],
        audit_entries=counts["audit"],
        leads_by_stage={s.value: by_stage.get(s.value, 0) for s in Stage},
        leads_by_origin=dict(sorted(by_origin.items())),
        admin_email=admin.email,
        password=DEMO_PASSWORD,
        seed=seed,
        seconds=round(time.perf_counter() - started, 3),
        user_emails=[u.email for u in plan.users],
        opportunities={k[4:]: v for k, v in counts.items() if k.startswith("opp_")},
    )


def _write(
    session: Session, plan: DemoData, password_hash: str, seed: int = 42, now: datetime | None = None
) -> dict[str, int]:
    first_at = min((ld.created_at for ld in plan.leads), default=utcnow())
    first_at = min([first_at, *(a.created_at for a in plan.accounts if a.created_at)])
    staff_at = first_at - timedelta(days=14)  # the team was set up before the first lead came in
    user_ids = _insert_returning_ids(
        session,
        User,
        [
            {
                "name": u.name,
                "email": u.email,
                "role": u.role,
                "team": u.team,
                "password_hash": password_hash,
                "active": True,
                "created_at": staff_at,
            }
            for u in plan.users
        ],
    )

    def who(index: int | None, label: str | None = None) -> tuple[int | None, str]:
        if index is None:
            return None, label or SYSTEM_LABEL
        return user_ids[index], plan.users[index].email

    audit_rows: list[dict[str, Any]] = []
    forms_at = staff_at + timedelta(days=2)
    form_ids = _insert_returning_ids(
        session,
        WebForm,
        [
            {
                "key": f.key,
                "name": f.name,
                "redirect_url": f.redirect_url,
                "source": f.source,
                "campaign": None,
                "owner_id": None,
                "active": True,
                "created_at": forms_at,
            }
            for f in plan.forms
        ],
    )
    for f, form_id in zip(plan.forms, form_ids, strict=True):
        audit_rows.append(
            _audit(
                forms_at, who(f.creator), "web_form", form_id, "create", after={"name": f.name, "key": f.key}
            )
        )

    account_ids = _insert_returning_ids(
        session,
        Account,
        [
            {
                "name": a.name,
                "name_key": a.name_key,
                "domain": a.domain,
                "industry": a.industry,
                "employee_count": a.employee_count,
                "annual_revenue": a.annual_revenue,
                "country": a.country,
                "owner_id": user_ids[a.owner],
                "created_at": a.created_at,
                "updated_at": a.updated_at,
                "version": 1,
            }
            for a in plan.accounts
        ],
    )
    for a, acc_id in zip(plan.accounts, account_ids, strict=True):
        audit_rows.append(
            _audit(
                a.created_at or first_at,
                who(None),
                "account",
                acc_id,
                "create",
                after={"name": a.name, "domain": a.domain},
            )
        )

    lead_rows = [_lead_row(ld, user_ids, account_ids) for ld in plan.leads]
    lead_ids = _insert_returning_ids(session, Lead, lead_rows)
    # Deals first: the leads' opportunity evidence names their real ids.
    deals, deal_audits = write_deals(session, plan, lead_ids, user_ids, account_ids, now or utcnow(), seed)
    emails = dict(zip(user_ids, (u.email for u in plan.users), strict=True))
    for d in deal_audits:
        who_ = (d["actor"], emails.get(d["actor"], SYSTEM_LABEL))
        audit_rows.append(_audit(d["at"], who_, "opportunity", d["id"], d["action"], after=d["after"]))

    # Needs assessments and discovery calls first: the stage changes cite their ids.
    records = DemoRecords()
    for lead, lead_id in zip(plan.leads, lead_ids, strict=True):
        records.add_lead(
            lead_id,
            lead.steps,
            owner_id=user_ids[lead.owner] if lead.owner is not None else None,
            actor_ids=[who(step.actor, step.label)[0] for step in lead.steps],
            buying_role=lead.buying_role,
            touches=[(act.type, act.at) for act in lead.activities],
            source=lead.source,
        )
    records.insert(session, _insert_returning_ids)

    stage_rows: list[dict[str, Any]] = []
    activity_rows: list[dict[str, Any]] = []
    for lead, lead_id, row in zip(plan.leads, lead_ids, lead_rows, strict=True):
        status: dict[str, Any] = {"stage": None, "status_reason": None, "bad_reason": None}
        for step in lead.steps:
            evidence = records.link(step.evidence, evidence_to_dict(step.evidence))
            link_evidence(evidence, lead.opportunity_id, deals)
            actor_id, label = who(step.actor, step.label)
            stage_rows.append(
                {
                    "lead_id": lead_id,
                    "from_stage": step.source.value if step.source is not None else None,
                    "to_stage": step.stage.value,
                    "at": step.at,
                    "actor_id": actor_id,
                    "reason": step.reason,
                    "evidence": evidence,
                }
            )
            after = {
                "stage": step.stage.value,
                "status_reason": step.reason,
                "bad_reason": step.bad_reason.value if step.bad_reason is not None else None,
            }
            if step.source is None:
                # The lead as it was stored: the service's snapshot of a new lead.
                created = {f: row.get(f) for f in SNAPSHOT_FIELDS}
                created.update(after)
                created["owner_id"] = user_ids[lead.rep] if lead.origin is Origin.SALES else None
                created["unsubscribed"] = False
                if lead.unsubscribed:
                    created["consent"] = "unknown"
                audit_rows.append(
                    _audit(
                        step.at,
                        (actor_id, label),
                        "lead",
                        lead_id,
                        "create",
                        after=created,
                        reason=step.reason,
                        evidence=evidence,
                    )
                )
            else:
                audit_rows.append(
                    _audit(
                        step.at,
                        (actor_id, label),
                        "lead",
                        lead_id,
                        "stage_change",
                        before=status,
                        after=after,
                        reason=step.reason,
                        evidence=evidence,
                    )
                )
            status = after
        for act in lead.activities:
            activity_rows.append(
                {
                    "lead_id": lead_id,
                    "type": act.type,
                    "occurred_at": act.at,
                    "properties": act.properties,
                    "external_id": None,
                    "source": act.source,
                    "actor_id": user_ids[act.actor] if act.actor is not None else None,
                    "created_at": act.at,
                }
            )
    # Ids grow with time, as they would in a CRM that has been in use for a year.
    stage_rows.sort(key=lambda r: r["at"])
    audit_rows.sort(key=lambda r: r["at"])
    activity_rows.sort(key=lambda r: r["occurred_at"])
    for n, arow in enumerate(activity_rows, 1):
        arow["external_id"] = f"demo-{n}"
    records.finish(session, _insert)
    counts = {
        "web_forms": len(form_ids),
        "stage_changes": _insert(session, StageChange, stage_rows),
        "activities": _insert(session, Activity, activity_rows),
        "audit": _insert(session, AuditEntry, audit_rows),
    }
    signals.scan(session)  # demo, pricing and trial activities become buying signals
    counts.update({f"opp_{k}": v for k, v in deals.by_status.items()})
    return counts


def _audit(
    at: datetime,
    who: tuple[int | None, str],
    entity_type: str,
    entity_id: int,
    action: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
    evidence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "at": at,
        "actor_id": who[0],
        "actor_label": who[1],
        "entity_type": entity_type,
        "entity_id": entity_id,
        "action": action,
        "before": before,
        "after": after,
        "reason": reason,
        "evidence": evidence,
    }
