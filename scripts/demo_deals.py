"""Open deals for the demo's prospects so the kanban, the opportunity pages and the pipeline
reports have something to show: every lead at SQL or opportunity gets a deal, spread over the
stages of the default pipeline (some won, some lost, some left idle long enough to rot).

    LEADFLOW_DATABASE_URL=sqlite:///var/demo.db .venv/bin/python scripts/demo_deals.py
"""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select

from leadflow.auth.principal import SYSTEM
from leadflow.config import get_settings
from leadflow.db.base import Database, utcnow
from leadflow.leads.models import Lead
from leadflow.pipeline import service as pipeline
from leadflow.pipeline.models import Opportunity


def add_deals(db: Database, seed: int = 7) -> int:
    rng = random.Random(seed)
    with db.transaction() as s:
        if s.scalar(select(Opportunity.id).limit(1)) is not None:
            return 0
        pipe = pipeline.get_pipeline(s, SYSTEM, None)
        stages = [st for st in pipeline.stages_of(s, pipe.id)]
        open_keys = [st.key for st in stages if st.kind == "open"]
        won = next(st.key for st in stages if st.kind == "won")
        lost = next(st.key for st in stages if st.kind == "lost")
        loss_reasons = [r.key for r in pipeline.list_reasons(s, SYSTEM, "lost")]
        ids = list(s.scalars(select(Lead.id).where(Lead.stage.in_(["sql", "opportunity"])).order_by(Lead.id)))
    made = 0
    for lead_id in ids:
        with db.transaction() as s:
            lead = s.get(Lead, lead_id)
            assert lead is not None
            amount = float(rng.choice([8, 12, 15, 24, 30, 45, 60, 90, 120]) * 1000)
            close = (utcnow() + timedelta(days=rng.randint(5, 120))).date()
            opp = pipeline.convert_lead(
                s,
                SYSTEM,
                lead_id,
                pipeline.ConvertInput(
                    name=f"{lead.company or lead.last_name} — {rng.choice(['Pro', 'Team', 'Enterprise'])}",
                    amount=amount,
                    expected_close_date=close,
                    signals=rng.sample(
                        ["demo_request", "pricing_request", "trial_start"], k=rng.randint(0, 2)
                    ),
                ),
            )
            target = rng.choice(open_keys + open_keys + [won, lost])
            start = opp.stage_entered_at
            if target != open_keys[0]:
                pipeline.move_stage(
                    s,
                    SYSTEM,
                    opp.id,
                    target,
                    reason_key=rng.choice(loss_reasons) if target == lost else None,
                )
            # Some deals sat still for weeks: they rot on the board.
            if rng.random() < 0.3:
                back = timedelta(days=rng.randint(20, 60))
                opp.stage_entered_at = start - back
                opp.last_activity_at = start - back
            made += 1
    return made


if __name__ == "__main__":
    database = Database(get_settings().database_url)
    print(f"{add_deals(database)} deals opened")
