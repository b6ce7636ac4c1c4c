"""Demo follow-up work: open tasks in the reps' inboxes and leads in the default sequence.

Set-based (two INSERTs per table) so ``make demo`` stays fast; deterministic for a seed.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from leadflow.cadences import service as cadences
from leadflow.cadences.models import Enrollment, Sequence, StepRun
from leadflow.core import cadence as core
from leadflow.core.calendar import WorkingHours, next_working_time
from leadflow.db.base import Database
from leadflow.leads.models import Lead
from leadflow.tasks.models import Task

# Stages whose leads a rep is actively working.
WORKED = ("mql", "sal", "sql")
TITLES = {
    "call": ["Call {name}: follow up on the demo request", "Call {name} back", "Discovery call prep: {name}"],
    "email": ["Send {name} the case study", "Email {name} the pricing sheet"],
    "todo": ["Research {company} before the next call", "Find the economic buyer at {company}"],
}


def add_follow_up(db: Database, *, now: datetime, seed: int = 42, share: float = 0.3) -> dict[str, int]:
    """Open tasks for about ``share`` of the worked leads that have an owner, and enroll a tenth
    of the MQLs in the default sequence (their first step due now)."""

    rng = random.Random(seed)
    with db.transaction() as s:
        rows = s.execute(
            select(Lead.id, Lead.owner_id, Lead.stage, Lead.first_name, Lead.last_name, Lead.company).where(
                Lead.stage.in_(WORKED), Lead.owner_id.is_not(None), Lead.merged_into_id.is_(None)
            )
        ).all()
        tasks: list[dict[str, Any]] = []
        for lead_id, owner, _stage, first, last, company in rows:
            if rng.random() >= share:
                continue
            kind = rng.choice(["call", "call", "email", "todo"])
            name = " ".join(p for p in (first, last) if p) or f"lead {lead_id}"
            title = rng.choice(TITLES[kind]).format(name=name, company=company or "the account")
            # A realistic inbox: some overdue, many due today, the rest this week.
            offset = rng.choice([-50, -26, -3, 1, 2, 4, 6, 26, 50, 74])
            tasks.append(
                {
                    "lead_id": lead_id,
                    "owner_id": owner,
                    "kind": kind,
                    "title": title[:300],
                    "due_at": now + timedelta(hours=offset),
                    "status": "open",
                    "source": "demo",
                    "created_at": now - timedelta(days=1),
                    "updated_at": now - timedelta(days=1),
                    "version": 1,
                }
            )
        if tasks:
            s.execute(insert(Task), tasks)
        # The default sequences (also the marketing email the default scoring model enrolls MQLs in).
        cadences.ensure_default_sequences(s)
        seq_id = s.scalar(select(Sequence.id).where(Sequence.key == core.DEFAULT_SEQUENCE["key"]))
        mqls = [r for r in rows if r[2] == "mql"]
        chosen = [r for r in mqls if rng.random() < 0.1]
        enrolled = 0
        if chosen:
            enrollment_ids = list(
                s.scalars(
                    insert(Enrollment).returning(Enrollment.id, sort_by_parameter_order=True),
                    [
                        {
                            "lead_id": r[0],
                            "sequence_id": seq_id,
                            "status": "active",
                            "source": "demo",
                            "enrolled_at": now,
                        }
                        for r in chosen
                    ],
                )
            )
            due = next_working_time(now, WorkingHours())
            s.execute(
                insert(StepRun),
                [
                    {
                        "enrollment_id": eid,
                        "lead_id": r[0],
                        "step_index": 0,
                        "kind": "call",
                        "due_at": due,
                        "status": "pending",
                        "created_at": now,
                    }
                    for eid, r in zip(enrollment_ids, chosen, strict=True)
                ],
            )
            enrolled = len(chosen)
    return {"tasks": len(tasks), "enrollments": enrolled}
