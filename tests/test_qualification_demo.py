"""The demo data set carries qualification records: the needs assessments and discovery calls
that SAL/SQL stage changes cite, buying roles, and MQL handoffs with their SLA verdicts."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from leadflow.auth.principal import SYSTEM
from leadflow.db.base import Database
from leadflow.demo import load_demo
from leadflow.leads.models import Account, StageChange
from leadflow.qualification import handoff, service
from leadflow.qualification.models import AssessmentRecord, DiscoveryCallRecord, Handoff, LeadQualification

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_demo_stage_changes_cite_stored_records(db: Database) -> None:
    load_demo(db, leads=400, seed=7, now=NOW)
    with db.transaction() as s:
        assessments = {a.id: a for a in s.scalars(select(AssessmentRecord))}
        calls = {c.id: c for c in s.scalars(select(DiscoveryCallRecord))}
        cited = 0
        for change in s.scalars(select(StageChange).where(StageChange.to_stage.in_(("sal", "sql")))):
            ev = change.evidence or {}
            if ev.get("kind") == "needs_assessment":
                rec = assessments[int(ev["assessment_id"])]
                assert rec.lead_id == change.lead_id and rec.outcome == "sal"
                cited += 1
            elif ev.get("kind") == "discovery_call":
                call = calls[int(ev["call_id"])]
                assert call.lead_id == change.lead_id and call.outcome == "sql"
                cited += 1
        assert cited > 20
        assert s.scalar(select(func.count()).select_from(LeadQualification)) > 50
        statuses = dict(s.execute(select(Handoff.status, func.count()).group_by(Handoff.status)).all())
        assert statuses.get("accepted", 0) > 0
        report = handoff.sla_report(s, SYSTEM, now=NOW)
        assert report["total"]["compliance"] is not None
        account_id = s.scalar(select(Account.id).order_by(Account.id).limit(1))
        assert account_id is not None
        committee = service.committee(s, SYSTEM, account_id)
        assert committee["members"]
