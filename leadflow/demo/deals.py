"""Demo deals: the opportunities behind the demo leads that reached the opportunity stage.

A lead still at ``opportunity`` has an open deal somewhere in its pipeline (every open stage is
populated, and some deals sit idle past their rotting age); a customer's deal was won with a win
reason; a lead recycled (or sent to nurture) after its opportunity lost it with a loss reason. Big
deals run in an "Enterprise" pipeline with its own stages. The lead's OpportunityOpened and
DealWon evidence name the real opportunity ids (see :func:`link_evidence`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from leadflow.core import pipeline as core
from leadflow.core.engagement import SALES_TOUCHES
from leadflow.core.lifecycle import Stage
from leadflow.demo.generate import DemoData, LeadPlan
from leadflow.pipeline import service as pipelines
from leadflow.pipeline.models import Opportunity, OpportunityStageChange, Pipeline, PipelineStage

ENTERPRISE_STAGES: tuple[core.StageSpec, ...] = (
    core.StageSpec("discovery", "Discovery", 10, rotting_days=21),
    core.StageSpec("solution_design", "Solution design", 25, rotting_days=30),
    core.StageSpec("security_review", "Security review", 40, rotting_days=30),
    core.StageSpec(
        "proposal", "Proposal", 60, rotting_days=21, forecast_category=core.ForecastCategory.BEST_CASE
    ),
    core.StageSpec(
        "procurement", "Procurement", 85, rotting_days=30, forecast_category=core.ForecastCategory.COMMIT
    ),
    core.StageSpec(
        "closed_won", "Closed won", 100, core.StageKind.WON, forecast_category=core.ForecastCategory.CLOSED
    ),
    core.StageSpec(
        "closed_lost", "Closed lost", 0, core.StageKind.LOST, forecast_category=core.ForecastCategory.OMITTED
    ),
)
ENTERPRISE_FROM = 60_000.0
EURO = frozenset({"DE", "FR", "NL", "ES", "IT", "AT", "BE", "IE", "FI", "PT"})
# The demo's recycle texts after a lost deal, and the loss reason each one means.
LOSS_FROM_TEXT = {"competitor": "competitor", "postponed": "timing", "price": "price"}


@dataclass
class DealSummary:
    opportunities: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    id_map: dict[str, int] = field(default_factory=dict)  # plan opportunity id -> database id


def _loss_reason(text: str | None, rng: random.Random) -> str:
    low = (text or "").lower()
    for needle, key in LOSS_FROM_TEXT.items():
        if needle in low:
            return key
    return rng.choice(("no_decision", "no_budget", "missing_feature", "champion_left"))


def _last_touch(lead: LeadPlan, before: datetime) -> tuple[str | None, str | None]:
    touches = [
        a for a in lead.activities if a.at <= before and a.type not in {t.value for t in SALES_TOUCHES}
    ]
    if not touches:
        return lead.source, lead.campaign
    act = max(touches, key=lambda a: a.at)
    p = act.properties
    channel = p.get("utm_source") or p.get("source") or act.source or act.type
    campaign = p.get("campaign") or p.get("webinar") or p.get("form")
    return str(channel)[:100], (str(campaign)[:200] if campaign else None)


def write_deals(
    session: Session,
    plan: DemoData,
    lead_ids: list[int],
    user_ids: list[int],
    account_ids: list[int],
    now: datetime,
    seed: int,
) -> tuple[DealSummary, list[dict[str, Any]]]:
    """Insert the pipelines and deals; returns the summary and audit rows (at, actor index,
    entity id, action, after, reason) for the caller's audit trail."""

    rng = random.Random(seed + 5)
    sales = pipelines.ensure_defaults(session)
    enterprise = Pipeline(
        key="enterprise",
        name="Enterprise",
        currency="USD",
        is_default=False,
        active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(enterprise)
    session.flush()
    for i, spec in enumerate(ENTERPRISE_STAGES):
        session.add(pipelines._stage_row(enterprise.id, i, spec))
    session.flush()
    stages: dict[int, list[PipelineStage]] = {
        p.id: pipelines.stages_of(session, p.id) for p in (sales, enterprise)
    }
    summary = DealSummary()
    audits: list[dict[str, Any]] = []
    win_keys = [k for k, _ in core.DEFAULT_WIN_REASONS]
    for lead, lead_id in zip(plan.leads, lead_ids, strict=True):
        if lead.opportunity_id is None:
            continue
        steps = lead.steps
        idx = max(i for i, s in enumerate(steps) if s.stage is Stage.OPPORTUNITY)
        opened = steps[idx].at
        after = steps[idx + 1] if idx + 1 < len(steps) else None
        status = "open" if after is None else "won" if after.stage is Stage.CUSTOMER else "lost"
        if lead.deal_amount:
            amount = lead.deal_amount
        else:  # sized like the generator's won deals: seats from the account's head count
            acc = plan.accounts[lead.account] if lead.account is not None else None
            seats = max(5, round((acc.employee_count if acc else 15) * rng.uniform(0.02, 0.12)))
            amount = float(min(400_000, max(3_000, round(seats * 600, -2))))
        pipe = enterprise if amount >= ENTERPRISE_FROM else sales
        plist = stages[pipe.id]
        open_stages = [s for s in plist if s.kind == "open"]
        end = after.at if after is not None else now
        if status == "open":
            depth = rng.randint(1, len(open_stages))
            stale = rng.random() < 0.25
        else:
            depth = len(open_stages) if status == "won" else rng.randint(1, len(open_stages))
            stale = False
        span = max((end - opened).total_seconds(), 3600.0)
        cuts = sorted(rng.uniform(0.05, 0.95 if not stale else 0.4) for _ in range(depth - 1))
        enter = [opened, *(opened + timedelta(seconds=span * c) for c in cuts)]
        path = open_stages[:depth]
        if status != "open":
            path.append(next(s for s in plist if s.kind == status))
            enter.append(end)
        owner = user_ids[lead.owner] if lead.owner is not None else user_ids[lead.rep]
        reason = None
        if status == "won":
            reason = rng.choice(win_keys)
        elif status == "lost":
            reason = _loss_reason(after.reason if after else None, rng)
        last_src, last_campaign = _last_touch(lead, opened)
        company = lead.company or " ".join(p for p in (lead.first_name, lead.last_name) if p)
        signals = list(getattr(steps[idx].evidence, "signals", ()) or ()) or None
        opp = Opportunity(
            name=f"{company} - {pipe.name}",
            lead_id=lead_id,
            contact_lead_id=lead_id,
            account_id=account_ids[lead.account] if lead.account is not None else None,
            pipeline_id=pipe.id,
            stage_id=path[-1].id,
            owner_id=owner,
            amount=amount,
            currency="EUR" if lead.country in EURO else "USD",
            expected_close_date=(
                end if status != "open" else now + timedelta(days=rng.randint(-10, 120))
            ).date(),
            probability=path[-1].probability,
            forecast_category=path[-1].forecast_category,
            status=status,
            close_reason=reason,
            closed_at=end if status != "open" else None,
            stage_entered_at=enter[-1],
            last_activity_at=enter[-1],
            first_touch_source=lead.source,
            first_touch_campaign=lead.campaign,
            last_touch_source=last_src,
            last_touch_campaign=last_campaign,
            signals=signals,
            created_by=owner,
            created_at=opened,
            updated_at=enter[-1],
            version=len(path),
        )
        session.add(opp)
        session.flush()
        summary.id_map[lead.opportunity_id] = opp.id
        summary.opportunities += 1
        summary.by_status[status] = summary.by_status.get(status, 0) + 1
        for i, st in enumerate(path):
            session.add(
                OpportunityStageChange(
                    opportunity_id=opp.id,
                    from_stage_id=path[i - 1].id if i else None,
                    to_stage_id=st.id,
                    at=enter[i],
                    actor_id=owner,
                    reason=None if i else "opportunity opened",
                    reason_key=reason if st.kind != "open" else None,
                    seconds_in_previous=int((enter[i] - enter[i - 1]).total_seconds()) if i else None,
                    amount=amount,
                )
            )
        audits.append(
            {"at": opened, "actor": owner, "id": opp.id, "action": "create", "after": pipelines.snapshot(opp)}
        )
        if status != "open":
            audits.append(
                {
                    "at": end,
                    "actor": owner,
                    "id": opp.id,
                    "action": status,
                    "after": {"status": status, "close_reason": reason},
                }
            )
    session.flush()
    return summary, audits


def link_evidence(
    evidence: dict[str, Any] | None, plan_opportunity_id: str | None, summary: DealSummary
) -> None:
    """Point OpportunityOpened / DealWon evidence at the real opportunity id."""

    if evidence and evidence.get("kind") in ("opportunity_opened", "deal_won") and plan_opportunity_id:
        real = summary.id_map.get(plan_opportunity_id)
        if real is not None:
            evidence["opportunity_id"] = str(real)
