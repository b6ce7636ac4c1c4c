"""What the UI needs beyond the feature services: saved segments, and the read-only aggregates
of the dashboards. Every lead aggregate applies the leads' visibility rule
(``auth.ownership.owner_visibility``), so a chart shows the same leads the inbox would."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadflow.audit.service import record
from leadflow.auth.ownership import owner_visibility
from leadflow.auth.principal import Perm, Principal
from leadflow.core import lifecycle
from leadflow.errors import Conflict, InvalidInput, NotFound
from leadflow.reports.facts import refresh as refresh_facts
from leadflow.reports.models import FunnelCount, LeadFunnelFact
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


# Funnel steps in the order of the facts' ``reached`` (0 = a lead, ..., 5 = won: a customer).
_STEPS = ("lead", "mql", "sal", "sql", "opportunity", "customer")
_BUCKETS = (("0-19", 0, 20), ("20-39", 20, 40), ("40-59", 40, 60), ("60-79", 60, 80), ("80-100", 80, None))


def overview(session: Session, actor: Principal) -> Overview:
    """Stage counts (funnel), lead sources, score distribution and step conversions of the leads
    ``actor`` sees.

    Read from the reports feature's funnel facts (one narrow row per live lead, kept in step
    incrementally: ``reports.facts.refresh``) and its summary counts, never by scanning ``leads``
    and ``stage_changes``: at a million leads those scans took 33 s. Everyone-sees-everything
    reads the summaries (a few thousand rows); a scoped view reads the facts through indexes on
    (owner, stage, source, reached). The facts' owner is the lead's owner, so the
    visibility rule is the leads' (``auth.ownership.owner_visibility``) applied to it."""

    actor.require(Perm.LEADS_READ)
    refresh_facts(session)
    F = LeadFunnelFact
    vis = owner_visibility(actor, F.owner_id)

    def scoped(stmt: Any) -> Any:
        return stmt if vis is None else stmt.where(vis)

    by_stage, by_source, by_reached = Counter[str](), Counter[Any](), Counter[int]()
    if vis is None:
        for stage, n in session.execute(select(F.stage, func.count()).group_by(F.stage)):
            by_stage[str(stage)] += int(n)
        for source, n in session.execute(
            select(FunnelCount.source, func.sum(FunnelCount.n)).group_by(FunnelCount.source)
        ):
            by_source[source] += int(n or 0)
        for level, n in session.execute(
            select(FunnelCount.reached, func.sum(FunnelCount.n)).group_by(FunnelCount.reached)
        ):
            by_reached[int(level)] += int(n or 0)
    else:
        # One pass over the visible facts (covering index owner_id, stage, source, reached).
        stmt = select(F.stage, F.source, F.reached, func.count()).group_by(F.stage, F.source, F.reached)
        for stage, source, level, n in session.execute(scoped(stmt)):
            by_stage[str(stage)] += int(n)
            by_source[source] += int(n)
            by_reached[int(level)] += int(n)
    order = [s.value for s in lifecycle.FUNNEL] + sorted(s.value for s in lifecycle.SIDE_STATES)
    stages = [(s, by_stage.get(s, 0)) for s in order]
    total = sum(by_stage.values())

    counted: dict[str, int] = {}
    for s, n in by_source.items():
        key = str(s) if s else "(none)"
        counted[key] = counted.get(key, 0) + n
    sources = sorted(counted.items(), key=lambda x: (-x[1], x[0]))[:12]

    # Score buckets: for everyone-sees-everything, range counts on the lead_scores.total index
    # (no scan of leads); scoped, one pass over the visible facts joined to their scores.
    if vis is None:
        got: dict[str, int] = {}
        for label, lo, hi in _BUCKETS:
            cond = LeadScore.total >= lo if hi is None else and_(LeadScore.total >= lo, LeadScore.total < hi)
            got[label] = int(session.scalar(select(func.count()).select_from(LeadScore).where(cond)) or 0)
    else:
        bucket = case(
            *((LeadScore.total < hi, label) for label, _lo, hi in _BUCKETS if hi is not None), else_="80-100"
        )
        rows = session.execute(
            scoped(select(bucket, func.count()).join(F, F.lead_id == LeadScore.lead_id).group_by(bucket))
        ).all()
        got = {str(b): int(n) for b, n in rows}
    buckets = [(label, got.get(label, 0)) for label, _lo, _hi in _BUCKETS]

    # Conversion between funnel steps: of the leads that reached a step, the share that reached
    # the next one (``reached`` is the furthest step: a sales-sourced lead that skipped MQL and is
    # SAL counts as having passed MQL).
    reached = [sum(n for r, n in by_reached.items() if r >= level) for level in range(len(_STEPS))]
    conversions = [
        (_STEPS[i], _STEPS[i + 1], (reached[i + 1] / reached[i]) if reached[i] else None)
        for i in range(len(_STEPS) - 1)
    ]
    return Overview(stages, sources, buckets, total, conversions)
