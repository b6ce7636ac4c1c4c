"""The sequence worker's periodic job: flag interrupted steps, then run the due ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from leadflow.cadences import service as svc
from leadflow.db.base import Database
from leadflow.jobs import current_worker, register_job


def run_due_steps(db: Database, now: datetime) -> dict[str, Any]:
    """Each due step becomes a queue task when a worker runs (workers share a burst); without
    one it runs here. Either way execute_step's claim keeps every step at most once."""

    flagged = svc.flag_stale(db, now)
    ids = svc.due_step_ids(db, now)
    worker = current_worker()
    if worker is not None:
        for step_id in ids:
            worker.enqueue_step(step_id)
        return {"flagged": flagged, "enqueued": len(ids)}
    outcomes: dict[str, int] = {}
    for step_id in ids:
        outcome = svc.execute_step(db, step_id, now=now)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {"flagged": flagged, "outcomes": outcomes}


register_job("cadences.run_due_steps", 60, run_due_steps)
