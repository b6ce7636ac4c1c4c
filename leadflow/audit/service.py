"""Writing and reading the audit trail. Every service that changes state calls ``record`` inside
the same transaction as the change, so the trail can never disagree with the data."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from leadflow.audit.models import AuditEntry
from leadflow.auth.principal import Principal
from leadflow.db.base import utcnow


def record(
    session: Session,
    actor: Principal,
    entity_type: str,
    entity_id: int,
    action: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
    evidence: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            at=utcnow(),
            actor_id=actor.user_id,
            actor_label=actor.label,
            entity_type=entity_type,
            entity_id=entity_id,
            action=action,
            before=before,
            after=after,
            reason=reason,
            evidence=evidence,
        )
    )


def record_many(session: Session, actor: Principal, rows: Iterable[dict[str, Any]]) -> None:
    """Bulk form of :func:`record` for set-based paths; each row holds entity_type, entity_id,
    action and optionally before/after/reason/evidence."""

    now = utcnow()
    payload = [
        {
            "at": now,
            "actor_id": actor.user_id,
            "actor_label": actor.label,
            "before": None,
            "after": None,
            "reason": None,
            "evidence": None,
            **row,
        }
        for row in rows
    ]
    if payload:
        session.execute(insert(AuditEntry), payload)


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields that differ, as (before, after) dicts."""

    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def trail(
    session: Session, entity_type: str, entity_ids: Sequence[int], limit: int = 500
) -> list[AuditEntry]:
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.entity_type == entity_type, AuditEntry.entity_id.in_(entity_ids))
        .order_by(AuditEntry.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))
