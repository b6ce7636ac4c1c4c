"""What the UI needs beyond the feature services: saved segments, and the read-only aggregates
of the dashboards. Every lead query goes through ``leads.service.visibility_clause``, so a
chart shows the same leads the inbox would."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadflow.audit.service import record
from leadflow.auth.principal import Perm, Principal
from leadflow.core import lifecycle
from leadflow.errors import Conflict, InvalidInput, NotFound
from leadflow.leads.models import Lead, StageChange
from leadflow.leads.service import visibility_clause
from leadflow.scoring.models import LeadScore
from leadflow.web.models import SavedSegment

MAX_SEGMENTS = 50

# --------------------------------------------------------------------------------- segments


def list_segments(session: Session, actor: Principal) -> list[SavedSegment]:
    if actor.user_id is None:
        return []
    stmt = select(SavedSegment).where(SavedSegment.user_id == actor.user_id).order_by(SavedSegment.name)
    return list(session.scalars(stmt))


def save_segment(session: Session, actor: Principal, name: str, query: str) -> SavedSegment:
    actor.require(Perm.LEADS_READ)
    if actor.user_id is None:
        raise InvalidInput("name", "only a signed-in user can save segments")
    name = name.strip()
    if not name:
        raise InvalidInput("name", "is empty")
    if len(name) > 100:
        raise InvalidInput("name", "must have at most 100 characters")
    if len(query) > 2000:
        raise InvalidInput("query", "is too long")
    count = session.scalar(select(func.count()).where(SavedSegment.user_id == actor.user_id)) or 0
    if count >= MAX_SEGMENTS:
        raise InvalidInput("name", f"at most {MAX_SEGMENTS} saved segments per user; delete one first")
    seg = SavedSegment(user_id=actor.user_id, name=name, query=query.lstrip("?"))
    try:
        with session.begin_nested():
            session.add(seg)
            session.flush()
    except IntegrityError:
        raise Conflict(f"you already have a segment named {name!r}") from None
    record(session, actor, "web_segment", seg.id, "create", after={"name": name, "query": seg.query})
    return seg


def delete_segment(session: Session, actor: Principal, segment_id: int) -> None:
    seg = session.get(SavedSegment, segment_id)
    if seg is None or seg.user_id != actor.user_id:
        raise NotFound(f"segment {segment_id} not found")
    session.delete(seg)
    record(session, actor, "web_segment", segment_id, "delete", before={"name": seg.name})


# --------------------------------------------------------------------------------- scores


def scores_for(session: Session, ids: Sequence[int]) -> dict[int, LeadScore]:
    """Current scores of the given (already visible) leads, one query."""

    if not ids:
        return {}
    return {s.lead_id: s for s in session.scalars(select(LeadScore).where(LeadScore.lead_id.in_(ids)))}


# --------------------------------------------------------------------------------- dashboards


@dataclass
class Overview:
    stages: list[tuple[str, int]]
    sources: list[tuple[str, int]]
    score_buckets: list[tuple[str, int]]
    total: int
    conversions: list[tuple[str, str, float | None]]


def _visible(session: Session, actor: Principal, stmt: Any) -> Any:
    vis = visibility_clause(session, actor)
    return stmt if vis is None else stmt.where(vis)


def overview(session: Session, actor: Principal) -> Overview:
    """Stage counts (funnel), lead sources and score distribution of the leads ``actor`` sees."""

    actor.require(Perm.LEADS_READ)
    live = Lead.merged_into_id.is_(None)
    rows = session.execute(
        _visible(session, actor, select(Lead.stage, func.count()).where(live).group_by(Lead.stage))
    ).all()
    by_stage = {str(s): int(n) for s, n in rows}
    order = [s.value for s in lifecycle.FUNNEL] + sorted(s.value for s in lifecycle.SIDE_STATES)
    stages = [(s, by_stage.get(s, 0)) for s in order]
    total = sum(by_stage.values())

    src = func.coalesce(Lead.source, "(none)")
    rows = session.execute(
        _visible(session, actor, select(src, func.count()).where(live).group_by(src))
        .order_by(func.count().desc())
        .limit(12)
    ).all()
    sources = [(str(s), int(n)) for s, n in rows]

    bucket = case(
        (LeadScore.total < 20, "0-19"),
        (LeadScore.total < 40, "20-39"),
        (LeadScore.total < 60, "40-59"),
        (LeadScore.total < 80, "60-79"),
        else_="80-100",
    )
    rows = session.execute(
        _visible(
            session,
            actor,
            select(bucket, func.count())
            .join(Lead, Lead.id == LeadScore.lead_id)
            .where(live)
            .group_by(bucket),
        )
    ).all()
    got = {str(b): int(n) for b, n in rows}
    buckets = [(b, got.get(b, 0)) for b in ("0-19", "20-39", "40-59", "60-79", "80-100")]

    # Conversion between funnel steps: of the leads that ever entered a stage (stage history),
    # the share that entered the next one.
    funnel = [s.value for s in lifecycle.FUNNEL]
    rows = session.execute(
        _visible(
            session,
            actor,
            select(StageChange.to_stage, func.count(func.distinct(StageChange.lead_id)))
            .join(Lead, Lead.id == StageChange.lead_id)
            .where(live, StageChange.to_stage.in_(funnel))
            .group_by(StageChange.to_stage),
        )
    ).all()
    entered = {str(s): int(n) for s, n in rows}
    # A lead past a stage reached it even when it skipped it (sales-sourced leads skip MQL).
    reached = [
        max(entered.get(x, 0), sum(by_stage.get(y, 0) for y in funnel[i:])) for i, x in enumerate(funnel)
    ]
    conversions = [
        (funnel[i], funnel[i + 1], (reached[i + 1] / reached[i]) if reached[i] else None)
        for i in range(len(funnel) - 1)
    ]
    return Overview(stages, sources, buckets, total, conversions)
