"""The incremental refresh of the funnel facts (:class:`LeadFunnelFact`).

Why a fact table: the funnel and velocity reports ask, for every lead of a cohort, which stages it
reached and how long it spent in each. Computed from ``stage_changes`` that is a join of a
million leads with several million history rows (seconds on SQLite); from the facts it is a scan
of a covering index (tens of milliseconds).

How it stays in step, with no hook in the writers (imports, the demo loader and bulk paths write
``stage_changes`` directly): two watermarks. Every lead with a stage change newer than the last
seen ``stage_changes.id``, and every lead updated (``leads.updated_at``, which every service
change bumps: stage moves, merges, edits of source, campaign or owner) since the last refresh
minus a safety margin, is recomputed set-based before a report runs. Deleted leads leave by
``ON DELETE CASCADE``; merged-away leads are dropped. The margin covers transactions that commit
a little after a refresh read the watermark (PostgreSQL ids are not handed out in commit order).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from leadflow.db.base import utcnow
from leadflow.leads.models import Lead, StageChange
from leadflow.reports.models import LeadFunnelFact, ReportState

MARGIN = timedelta(minutes=5)
CHUNK = 5000
_SC_KEY = "funnel.stage_change_id"
_AT_KEY = "funnel.refreshed_at"


def month_sql(dialect: str, column: str) -> str:
    if dialect == "postgresql":
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM')"
    return f"strftime('%Y-%m', {column})"


def hours_sql(dialect: str, start: str, end: str) -> str:
    """Whole hours from ``start`` to ``end``; NULL unless both exist and end is not earlier."""

    if dialect == "postgresql":
        diff = f"CAST(FLOOR(EXTRACT(EPOCH FROM ({end} - {start})) / 3600) AS INTEGER)"
    else:
        diff = f"CAST((julianday({end}) - julianday({start})) * 24 AS INTEGER)"
    return f"CASE WHEN {start} IS NOT NULL AND {end} IS NOT NULL AND {end} >= {start} THEN {diff} END"


def _insert_sql(dialect: str, where: str) -> str:
    first = "\n".join(
        f"    MIN(CASE WHEN sc.to_stage = '{stage}' THEN sc.at END) AS {col},"
        for stage, col in (
            ("mql", "mql_at"),
            ("sal", "sal_at"),
            ("sql", "sql_at"),
            ("opportunity", "opp_at"),
            ("customer", "won_at"),
        )
    ).rstrip(",")
    h = hours_sql
    return f"""
INSERT INTO report_lead_funnel (
    lead_id, cohort_month, source, campaign, owner_id, origin, stage, reached, created_at,
    mql_at, sal_at, sql_at, opp_at, won_at, hours_lead, hours_mql, hours_sal, hours_sql, hours_opp)
SELECT id, {month_sql(dialect, "created_at")}, source, campaign, owner_id, origin, stage,
    CASE WHEN won_at IS NOT NULL THEN 5 WHEN opp_at IS NOT NULL THEN 4 WHEN sql_at IS NOT NULL THEN 3
         WHEN sal_at IS NOT NULL THEN 2 WHEN mql_at IS NOT NULL THEN 1 ELSE 0 END,
    created_at, mql_at, sal_at, sql_at, opp_at, won_at,
    {h(dialect, "created_at", "COALESCE(mql_at, sal_at)")},
    {h(dialect, "mql_at", "sal_at")},
    {h(dialect, "sal_at", "sql_at")},
    {h(dialect, "sql_at", "opp_at")},
    {h(dialect, "opp_at", "won_at")}
FROM (
  SELECT l.id, l.created_at, l.source, l.campaign, l.owner_id, l.origin, l.stage,
{first}
  FROM leads l LEFT JOIN stage_changes sc ON sc.lead_id = l.id
  WHERE l.merged_into_id IS NULL {where}
  GROUP BY l.id, l.created_at, l.source, l.campaign, l.owner_id, l.origin, l.stage
) t
"""


@dataclass(frozen=True)
class RefreshResult:
    full: bool
    leads: int
    seconds: float


def _state(session: Session) -> tuple[int | None, datetime | None]:
    sc = session.get(ReportState, _SC_KEY)
    at = session.get(ReportState, _AT_KEY)
    return (sc.int_value if sc else None), (at.at_value if at else None)


def _save(session: Session, stage_change_id: int, at: datetime) -> None:
    for key, int_value, at_value in ((_SC_KEY, stage_change_id, None), (_AT_KEY, None, at)):
        row = session.get(ReportState, key)
        if row is None:
            session.add(ReportState(key=key, int_value=int_value, at_value=at_value))
        else:
            row.int_value, row.at_value = int_value, at_value
    session.flush()


def refresh(session: Session, *, full: bool = False) -> RefreshResult:
    """Bring the funnel facts up to date (incrementally unless ``full`` or never built)."""

    started = time.perf_counter()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":  # one refresher at a time; the others wait and find little to do
        session.execute(text("SELECT pg_advisory_xact_lock(74125)"))
    now = utcnow()
    top = int(session.scalar(select(func.coalesce(func.max(StageChange.id), 0))) or 0)
    seen_id, seen_at = _state(session)
    if full or seen_id is None or seen_at is None:
        session.execute(delete(LeadFunnelFact))
        session.execute(text(_insert_sql(dialect, "")))
        _save(session, top, now)
        built = int(session.scalar(select(func.count()).select_from(LeadFunnelFact)) or 0)
        return RefreshResult(True, built, time.perf_counter() - started)
    ids: set[int] = set()
    if top > seen_id:
        ids.update(session.scalars(select(StageChange.lead_id).where(StageChange.id > seen_id).distinct()))
    ids.update(session.scalars(select(Lead.id).where(Lead.updated_at >= seen_at - MARGIN)))
    _recompute(session, dialect, sorted(ids))
    _save(session, top, now)
    return RefreshResult(False, len(ids), time.perf_counter() - started)


def _recompute(session: Session, dialect: str, ids: Sequence[int]) -> None:
    for i in range(0, len(ids), CHUNK):
        chunk = list(ids[i : i + CHUNK])
        session.execute(delete(LeadFunnelFact).where(LeadFunnelFact.lead_id.in_(chunk)))
        # Ids are integers from the database: safe to inline, and one statement per chunk.
        session.execute(text(_insert_sql(dialect, f"AND l.id IN ({', '.join(str(int(x)) for x in chunk)})")))
