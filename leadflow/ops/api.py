"""HTTP routes of the operations feature: the personal-data export."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from leadflow.auth.deps import DB, Actor
from leadflow.ops import privacy

router = APIRouter(prefix="/api", tags=["privacy"])


@router.get(
    "/leads/{lead_id}/export",
    summary="Everything held about a person (JSON): lead, merged duplicates, account, related "
    "records of every feature, audit trail",
)
def export_person(lead_id: int, db: DB, actor: Actor, reason: str | None = None) -> dict[str, Any]:
    with db.transaction() as s:
        return privacy.export_person(s, actor, lead_id, reason=reason)
