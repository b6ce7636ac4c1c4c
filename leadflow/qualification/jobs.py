"""The periodic SLA breach check, in the worker's job registry (every 5 minutes)."""

from __future__ import annotations

from datetime import datetime

from leadflow.auth.models import Role
from leadflow.auth.principal import Principal
from leadflow.db.base import Database
from leadflow.jobs import register_job
from leadflow.qualification import handoff

CHECKER = Principal(user_id=None, label="SLA breach check", role=Role.ADMIN)


def check_sla_breaches(db: Database, now: datetime) -> int:
    with db.transaction() as s:
        return len(handoff.check_breaches(s, CHECKER, now=now).breached)


# A worker that moves leads (sequences, rescoring) must queue MQLs for sales like the API does.
handoff.register()
register_job("qualification.sla_breaches", 300, check_sla_breaches)
