"""The incremental refresh of the funnel facts (:class:`LeadFunnelFact`).

Why a fact table: the funnel and velocity reports ask, for every lead of a cohort, which stages it
reached and how long it spent in each. Computed from ``stage_changes`` that is a join of a
million leads with several million history rows (seconds on SQLite); from the facts it is a scan
of a covering index (tens of milliseconds).

The summaries (``report_funnel_counts``, ``report_stage_durations``: a few thousand rows) serve
the unscoped reports; each refreshed chunk moves them by the difference between its old and new
facts.

How it stays in step, with no hook in the writers (imports, the demo loader and bulk paths write
``stage_changes`` directly): two watermarks. Every lead with a stage change newer than the last
seen ``stage_changes.id``, and every lead updated (``leads.updated_at``, which every service
change bumps: stage moves, merges, edits of source, campaign or owner) since the last refresh
minus a safety margin, is recomputed set-based before a report runs. Erased leads are found in
the audit trail's erase entries (a third watermark); merged-away leads are dropped. The margin
covers transactions that commit a little after a refresh read the watermark (PostgreSQL ids
are not handed out in commit order).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from leadflow.audit.models import AuditEntry
from leadflow.db.base import utcnow
from leadflow.leads.models import Lead, StageChange
from leadflow.reports.models import FunnelCount, LeadFunnelFact, ReportState, StageDurationCount

MARGIN = timedelta(minutes=5)
CHUNK = 5000
_SC_KEY = "funnel.stage_change_id"
_AUDIT_KEY = "funnel.audit_id"
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


# Duration histograms: whole hours under two days, whole days under 90 days, whole weeks beyond
# (quantiles in days stay exact to the day; a few hundred buckets per stage and cohort).
DURATIONS = (
    ("lead", "hours_lead"),
    ("mql", "hours_mql"),
    ("sal", "hours_sal"),
    ("sql", "hours_sql"),
    ("opportunity", "hours_opp"),
)


def bucket_sql(h: str) -> str:
    return f"CASE WHEN {h} < 48 THEN {h} WHEN {h} < 2160 THEN ({h} / 24) * 24 ELSE ({h} / 168) * 168 END"


def _counts_sql(where: str) -> str:
    return (
        "SELECT cohort_month, COALESCE(source, ''), COALESCE(campaign, ''), reached, COUNT(*) "
        f"FROM report_lead_funnel {where} GROUP BY cohort_month, COALESCE(source, ''), "
        "COALESCE(campaign, ''), reached"
    )


def _durations_sql(where: str) -> str:
    cond = f"AND {where.removeprefix('WHERE ')}" if where else ""
    parts = [
        f"SELECT '{stage}', cohort_month, {bucket_sql(col)}, COUNT(*) FROM report_lead_funnel "
        f"WHERE {col} IS NOT NULL {cond} GROUP BY cohort_month, {bucket_sql(col)}"
        for stage, col in DURATIONS
    ]
    return " UNION ALL ".join(parts)


def _summaries(session: Session, where: str) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    counts: Counter[tuple[Any, ...]] = Counter()
    for *key, n in session.execute(text(_counts_sql(where))):
        counts[tuple(key)] += int(n)
    durations: Counter[tuple[Any, ...]] = Counter()
    for *key, n in session.execute(text(_durations_sql(where))):
        durations[(key[0], key[1], int(key[2]))] += int(n)
    return counts, durations


def _apply(session: Session, model: Any, keys: tuple[str, ...], deltas: Counter[tuple[Any, ...]]) -> None:
    rows = [{**dict(zip(keys, k, strict=True)), "n": d} for k, d in deltas.items() if d]
    if not rows:
        return
    table = model.__table__
    ins = pg_insert(table) if session.get_bind().dialect.name == "postgresql" else sqlite_insert(table)
    stmt = ins.on_conflict_do_update(index_elements=list(keys), set_={"n": table.c.n + ins.excluded.n})
    session.execute(stmt, rows)
    session.execute(delete(model).where(model.n <= 0))


def _rebuild_summaries(session: Session) -> None:
    session.execute(delete(FunnelCount))
    session.execute(delete(StageDurationCount))
    session.execute(
        text(
            f"INSERT INTO report_funnel_counts (cohort_month, source, campaign, reached, n) {_counts_sql('')}"
        )
    )
    session.execute(
        text(f"INSERT INTO report_stage_durations (stage, cohort_month, bucket, n) {_durations_sql('')}")
    )


@dataclass(frozen=True)
class RefreshResult:
    full: bool
    leads: int
    seconds: float


def _state(session: Session) -> tuple[int | None, datetime | None]:
    sc = session.get(ReportState, _SC_KEY)
    at = session.get(ReportState, _AT_KEY)
    return (sc.int_value if sc else None), (at.at_value if at else None)


def _save(session: Session, stage_change_id: int, at: datetime, audit_id: int) -> None:
    for key, int_value, at_value in (
        (_SC_KEY, stage_change_id, None),
        (_AT_KEY, None, at),
        (_AUDIT_KEY, audit_id, None),
    ):
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
    audit_top = int(session.scalar(select(func.coalesce(func.max(AuditEntry.id), 0))) or 0)
    seen_id, seen_at = _state(session)
    audit_row = session.get(ReportState, _AUDIT_KEY)
    seen_audit = audit_row.int_value if audit_row is not None else None
    if full or seen_id is None or seen_at is None:
        session.execute(delete(LeadFunnelFact))
        session.execute(text(_insert_sql(dialect, "")))
        _rebuild_summaries(session)
        _save(session, top, now, audit_top)
        built = int(session.scalar(select(func.count()).select_from(LeadFunnelFact)) or 0)
        return RefreshResult(True, built, time.perf_counter() - started)
    if session.scalar(select(FunnelCount.n).limit(1)) is None and session.scalar(
        select(LeadFunnelFact.lead_id).limit(1)
    ):  # facts built before the summaries existed (an upgrade): derive them once
        _rebuild_summaries(session)
    ids: set[int] = set()
    if top > seen_id:
        ids.update(session.scalars(select(StageChange.lead_id).where(StageChange.id > seen_id).distinct()))
    ids.update(session.scalars(select(Lead.id).where(Lead.updated_at >= seen_at - MARGIN)))
    if audit_top > (seen_audit or 0):  # erased leads: their facts leave, the summaries drop them
        ids.update(
            session.scalars(
                select(AuditEntry.entity_id).where(
                    AuditEntry.id > (seen_audit or 0),
                    AuditEntry.entity_type == "lead",
                    AuditEntry.action == "erase",
                )
            )
        )
    _recompute(session, dialect, sorted(ids))
    _save(session, top, now, audit_top)
    return RefreshResult(False, len(ids), time.perf_counter() - started)


def _recompute(session: Session, dialect: str, ids: Sequence[int]) -> None:
    """Recompute the facts of ``ids`` and move the summaries by the difference."""

    for i in range(0, len(ids), CHUNK):
        # Ids are integers from the database: safe to inline, and one statement per chunk.
        in_list = ", ".join(str(int(x)) for x in ids[i : i + CHUNK])
        old_counts, old_durations = _summaries(session, f"WHERE lead_id IN ({in_list})")
        session.execute(text(f"DELETE FROM report_lead_funnel WHERE lead_id IN ({in_list})"))
        session.execute(text(_insert_sql(dialect, f"AND l.id IN ({in_list})")))
        new_counts, new_durations = _summaries(session, f"WHERE lead_id IN ({in_list})")
        new_counts.subtract(old_counts)
        new_durations.subtract(old_durations)
        _apply(session, FunnelCount, ("cohort_month", "source", "campaign", "reached"), new_counts)
        _apply(session, StageDurationCount, ("stage", "cohort_month", "bucket"), new_durations)
