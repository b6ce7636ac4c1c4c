"""The demo's deals: pipelines, opportunities in open stages, won and lost with reasons, evidence
linked to real opportunity ids, and the reports working on them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from leadflow.auth.principal import SYSTEM
from leadflow.db.base import Base, Database
from leadflow.demo import DemoSummary, load_demo
from leadflow.leads.models import Lead, StageChange
from leadflow.pipeline.models import (
    BuyingSignal,
    Opportunity,
    OpportunityStageChange,
    Pipeline,
    PipelineStage,
)
from leadflow.reports import registry

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


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
    summary = load_demo(database, leads=800, seed=42, now=NOW)
    yield database, summary
    _empty(database)


def test_deals_in_every_status_with_reasons(demo: tuple[Database, DemoSummary]) -> None:
    db, summary = demo
    assert set(summary.opportunities) == {"open", "won", "lost"}
    with db.transaction() as s:
        assert {p for p in s.scalars(select(Pipeline.key))} == {"sales", "enterprise"}
        opps = list(s.scalars(select(Opportunity)))
        stages = {st.id: st for st in s.scalars(select(PipelineStage))}
        for o in opps:
            st = stages[o.stage_id]
            assert st.kind == o.status
            assert (o.close_reason is not None) == (o.status != "open")
            assert (o.closed_at is not None) == (o.status != "open")
            lead = s.get(Lead, o.lead_id)
            assert lead is not None
            if o.status == "won":
                assert lead.stage == "customer"
            if o.status == "open":
                assert lead.stage == "opportunity"
            history = list(
                s.scalars(select(OpportunityStageChange).where(OpportunityStageChange.opportunity_id == o.id))
            )
            assert history[0].from_stage_id is None and history[-1].to_stage_id == o.stage_id
        open_kinds = {
            stages[o.stage_id].key for o in opps if o.status == "open" and stages[o.stage_id].pipeline_id == 1
        }
        assert len(open_kinds) >= 3
        # The lead's evidence names the real deal.
        for ch in s.scalars(select(StageChange).where(StageChange.to_stage.in_(("opportunity", "customer")))):
            if ch.evidence and ch.evidence.get("kind") in ("opportunity_opened", "deal_won"):
                opp = s.get(Opportunity, int(ch.evidence["opportunity_id"]))
                assert opp is not None and opp.lead_id == ch.lead_id
        assert s.scalar(select(BuyingSignal.id).limit(1)) is not None


def test_reports_over_the_demo(demo: tuple[Database, DemoSummary]) -> None:
    db, summary = demo
    with db.transaction() as s:
        funnel = registry.run(s, SYSTEM, "funnel", {"group_by": "total"})[2].rows[0]
        assert funnel["leads"] == summary.leads and funnel["won"] == summary.leads_by_stage["customer"]
        lost = registry.run(s, SYSTEM, "loss_reasons", {})[2].rows
        assert sum(r["deals"] for r in lost) == summary.opportunities["lost"]
        board = registry.run(s, SYSTEM, "leaderboard", {})[2].rows
        assert sum(r["won"] for r in board) == summary.opportunities["won"]
        assert registry.run(s, SYSTEM, "forecast", {})[2].rows
        velocity = registry.run(s, SYSTEM, "velocity", {})[2].rows
        assert all(r["median_days"] is not None for r in velocity if r["section"] == "lifecycle")
