"""The demo data set: every stage, legal evidenced histories, consistent engagement, determinism."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import User
from leadflow.auth.service import verify_password
from leadflow.core import lifecycle
from leadflow.core.contact import is_free_mail, normalize_email
from leadflow.core.engagement import ActivityType
from leadflow.core.lifecycle import BadReason, Origin, Stage
from leadflow.db.base import Base, Database
from leadflow.db.migrate import upgrade
from leadflow.demo import DEMO_PASSWORD, DemoError, DemoSummary, load_demo
from leadflow.demo.data import COUNTRIES
from leadflow.leads.models import Account, Activity, Lead, StageChange, WebForm

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LEADS = 2000


def _empty(db: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture(scope="module")
def demo(database: Database) -> Iterator[tuple[Database, DemoSummary]]:
    _empty(database)
    summary = load_demo(database, leads=LEADS, seed=42, now=NOW)
    yield database, summary
    _empty(database)


def _rows(db: Database, stmt: Any) -> list[Any]:
    with db.sessions() as s:
        return list(s.execute(stmt).all())


def _fresh_sqlite(path: Path) -> Database:
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    return db


# ---------------------------------------------------------------------------------- shape


def test_counts_are_near_what_was_asked(demo: tuple[Database, DemoSummary]) -> None:
    db, summary = demo
    with db.sessions() as s:
        leads = s.scalar(select(func.count()).select_from(Lead))
        accounts = s.scalar(select(func.count()).select_from(Account))
        activities = s.scalar(select(func.count()).select_from(Activity))
        changes = s.scalar(select(func.count()).select_from(StageChange))
        audits = s.scalar(select(func.count()).select_from(AuditEntry))
        forms = s.scalar(select(func.count()).select_from(WebForm))
    assert leads == summary.leads == LEADS
    assert accounts == summary.accounts and 250 <= accounts <= 350
    assert activities == summary.activities and 20 * LEADS <= activities <= 40 * LEADS
    assert changes == summary.stage_changes and changes > LEADS
    assert audits == summary.audit_entries
    assert forms == summary.web_forms > 0
    assert str(summary).startswith("13 users")


def test_every_stage_in_a_funnel_shape(demo: tuple[Database, DemoSummary]) -> None:
    db, summary = demo
    by_stage = Counter(dict(_rows(db, select(Lead.stage, func.count()).group_by(Lead.stage))))
    assert set(by_stage) == {s.value for s in Stage}
    assert by_stage == Counter(summary.leads_by_stage)
    early = by_stage["new"] + by_stage["cold"] + by_stage["mql"]
    assert early > 3 * (by_stage["sal"] + by_stage["sql"])
    assert by_stage["sal"] > by_stage["sql"] > by_stage["opportunity"] > by_stage["customer"] > 0
    by_origin = Counter(dict(_rows(db, select(Lead.origin, func.count()).group_by(Lead.origin))))
    assert 0.18 <= by_origin["sales"] / LEADS <= 0.32
    assert by_origin["marketing"] + by_origin["sales"] == LEADS


def test_users_teams_and_passwords(demo: tuple[Database, DemoSummary]) -> None:
    db, summary = demo
    users = _rows(db, select(User.id, User.email, User.role, User.team, User.password_hash))
    roles = Counter(u.role for u in users)
    assert roles["admin"] == 1 and roles["marketing"] == 2 and roles["manager"] == 2
    assert 6 <= roles["sales_rep"] <= 8
    assert {u.team for u in users if u.role in {"manager", "sales_rep"}} == {"EMEA", "Americas"}
    hashes = {u.password_hash for u in users}  # one argon2 hash shared by all demo users
    assert all(h and h.startswith("$argon2") and verify_password(h, DEMO_PASSWORD) for h in hashes)
    assert summary.admin_email in {u.email for u in users if u.role == "admin"}
    assert _rows(db, text("SELECT COUNT(*) FROM api_tokens"))[0][0] == 0


def test_accounts_have_committees_and_territory_owners(demo: tuple[Database, DemoSummary]) -> None:
    db, _ = demo
    teams = dict(_rows(db, select(User.id, User.team).where(User.role == "sales_rep")))
    accounts = _rows(db, select(Account.id, Account.domain, Account.country, Account.owner_id))
    for acc in accounts:
        assert acc.owner_id in teams
        assert teams[acc.owner_id] == COUNTRIES[acc.country][0]
        assert not is_free_mail(acc.domain)
    sizes = Counter(r[0] for r in _rows(db, select(Lead.account_id).where(Lead.account_id.is_not(None))))
    assert min(sizes.values()) >= 2
    leads = _rows(db, select(Lead.email, Lead.account_id, Lead.attributes, Lead.seniority))
    domains = {a.id: a.domain for a in accounts}
    roles = Counter()
    for ld in leads:
        if ld.account_id is not None and ld.attributes and "buying_role" in ld.attributes:
            assert ld.email.endswith("@" + domains[ld.account_id])
            roles[ld.attributes["buying_role"]] += 1
    assert set(roles) == {"decision_maker", "influencer", "user"}
    free = [ld for ld in leads if ld.account_id is None and is_free_mail(ld.email.rsplit("@", 1)[1])]
    assert len(free) > 50


def test_contact_data(demo: tuple[Database, DemoSummary]) -> None:
    db, _ = demo
    leads = _rows(
        db,
        select(
            Lead.email,
            Lead.stage,
            Lead.bad_reason,
            Lead.bad_candidate_reasons,
            Lead.consent,
            Lead.unsubscribed,
            Lead.owner_id,
            Lead.origin,
        ),
    )
    emails = [ld.email for ld in leads]
    assert len(set(emails)) == len(emails) == LEADS
    assert all(normalize_email(e) == e for e in emails)
    assert {ld.consent for ld in leads} == {"unknown", "granted", "denied"}
    assert all(ld.consent == "denied" for ld in leads if ld.unsubscribed)
    assert sum(ld.unsubscribed for ld in leads) > 20
    candidates = [ld for ld in leads if ld.bad_candidate_reasons]
    assert any(ld.stage != "bad" for ld in candidates)  # flagged, not yet confirmed
    bad = [ld for ld in leads if ld.stage == "bad"]
    assert {BadReason(ld.bad_reason) for ld in bad} == set(BadReason)
    assert all(ld.bad_reason is None for ld in leads if ld.stage != "bad")
    reps = set(r[0] for r in _rows(db, select(User.id).where(User.role == "sales_rep")))
    past_mql = {"sal", "sql", "opportunity", "customer"}
    assert all(ld.owner_id in reps for ld in leads if ld.stage in past_mql or ld.origin == "sales")
    # JSON columns hold SQL NULL, not the JSON text 'null', when empty.
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Lead).where(Lead.bad_candidate_reasons.is_(None)))


# ---------------------------------------------------------------------------------- histories


def test_histories_replay_through_the_lifecycle(demo: tuple[Database, DemoSummary]) -> None:
    db, _ = demo
    leads = {
        r.id: r
        for r in _rows(
            db,
            select(
                Lead.id, Lead.origin, Lead.stage, Lead.created_at, Lead.stage_changed_at, Lead.status_reason
            ),
        )
    }
    history: dict[int, list[Any]] = defaultdict(list)
    for r in _rows(db, select(StageChange).order_by(StageChange.at, StageChange.id)):
        history[r.StageChange.lead_id].append(r.StageChange)
    audits: dict[int, list[Any]] = defaultdict(list)
    creates = Counter()
    for a in _rows(
        db, select(AuditEntry).where(AuditEntry.entity_type == "lead").order_by(AuditEntry.at, AuditEntry.id)
    ):
        entry = a.AuditEntry
        if entry.action == "create":
            creates[entry.entity_id] += 1
        else:
            assert entry.action == "stage_change"
            audits[entry.entity_id].append(entry)
    assert set(history) == set(leads)
    assert all(creates[lid] == 1 for lid in leads)

    kinds_seen: set[str] = set()
    for lead_id, lead in leads.items():
        origin = Origin(lead.origin)
        rows = history[lead_id]
        first, moves = rows[0], rows[1:]
        assert first.from_stage is None and first.at == lead.created_at
        lifecycle.initial(
            Stage(first.to_stage),
            origin=origin,
            evidence=lifecycle.evidence_from_dict(first.evidence),
            reason=first.reason,
        )
        entries = audits[lead_id]
        assert len(entries) == len(moves)
        current = Stage(first.to_stage)
        previous_at = first.at
        for row, entry in zip(moves, entries, strict=True):
            assert row.from_stage == current.value
            assert row.at > previous_at
            assert entry.before["stage"] == row.from_stage and entry.after["stage"] == row.to_stage
            assert entry.at == row.at and entry.evidence == row.evidence and entry.reason == row.reason
            bad = entry.after.get("bad_reason")
            evidence = lifecycle.evidence_from_dict(row.evidence)
            if evidence is not None:
                kinds_seen.add(evidence.kind)
            lifecycle.transition(
                current,
                Stage(row.to_stage),
                origin=origin,
                evidence=evidence,
                reason=row.reason,
                bad_reason=BadReason(bad) if bad else None,
            )
            current, previous_at = Stage(row.to_stage), row.at
        assert current.value == lead.stage
        assert rows[-1].at == lead.stage_changed_at
        assert lead.status_reason == rows[-1].reason
        if origin is Origin.SALES:
            assert all(r.to_stage != "mql" for r in rows)
    assert kinds_seen >= {
        "score_threshold",
        "marketing_review",
        "needs_assessment",
        "discovery_call",
        "opportunity_opened",
        "deal_won",
    }


def test_activities_follow_the_story(demo: tuple[Database, DemoSummary]) -> None:
    db, _ = demo
    leads = {r.id: r for r in _rows(db, select(Lead.id, Lead.created_at, Lead.last_activity_at, Lead.stage))}
    acts: dict[int, list[Any]] = defaultdict(list)
    types = Counter()
    for a in _rows(
        db,
        select(
            Activity.lead_id, Activity.type, Activity.occurred_at, Activity.external_id, Activity.properties
        ),
    ):
        acts[a.lead_id].append(a)
        types[a.type] += 1
        assert a.external_id.startswith("demo-")
        assert isinstance(a.properties, dict)
    assert set(types) <= {t.value for t in ActivityType}
    for kind in (
        "page_view",
        "email_open",
        "email_click",
        "form_submit",
        "content_download",
        "webinar",
        "demo_request",
        "pricing_request",
        "trial_start",
        "call",
        "email_sent",
        "meeting",
    ):
        assert types[kind] > 0, kind
    assert any(a.properties.get("url") == "/pricing" for rows in acts.values() for a in rows)
    for lead_id, lead in leads.items():
        rows = acts.get(lead_id, [])
        assert lead.last_activity_at == (max(a.occurred_at for a in rows) if rows else None)
        for a in rows:
            assert lead.created_at <= a.occurred_at <= NOW
    # More engaged leads are further along.
    per_stage: dict[str, list[int]] = defaultdict(list)
    for lead_id, lead in leads.items():
        per_stage[lead.stage].append(len(acts.get(lead_id, [])))
    mean = {k: sum(v) / len(v) for k, v in per_stage.items()}
    assert mean["customer"] > mean["opportunity"] > mean["mql"] > mean["new"]
    assert mean["sql"] > mean["cold"]

    # The buying signals named by each opportunity's evidence happened before it opened.
    opened = _rows(
        db,
        select(StageChange.lead_id, StageChange.at, StageChange.evidence).where(
            StageChange.to_stage == "opportunity"
        ),
    )
    assert opened
    for lead_id, at, evidence in opened:
        before = {a.type for a in acts[lead_id] if a.occurred_at <= at}
        for signal in evidence["signals"]:
            if signal in {"demo_request", "pricing_request", "trial_start"}:
                assert signal in before


# ---------------------------------------------------------------------------------- safety


def test_refuses_a_database_that_holds_data(demo: tuple[Database, DemoSummary]) -> None:
    db, _ = demo
    with pytest.raises(DemoError, match="already holds data"):
        load_demo(db, leads=10)
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Lead)) == LEADS


def test_same_seed_same_data(tmp_path: Path) -> None:
    def emails(name: str, seed: int, now: datetime) -> list[str]:
        db = _fresh_sqlite(tmp_path / name)
        try:
            load_demo(db, leads=150, seed=seed, now=now)
            with db.sessions() as s:
                return list(s.scalars(select(Lead.email).order_by(Lead.id)))
        finally:
            db.dispose()

    first = emails("a.db", 7, NOW)
    assert len(first) == 150
    assert emails("b.db", 7, NOW) == first
    assert emails("c.db", 8, NOW) != first


def test_small_loads_still_cover_every_stage(tmp_path: Path) -> None:
    db = _fresh_sqlite(tmp_path / "small.db")
    try:
        summary = load_demo(db, leads=30, seed=1, now=NOW)
        assert summary.leads == 30
        assert all(n >= 1 for n in summary.leads_by_stage.values())
    finally:
        db.dispose()
