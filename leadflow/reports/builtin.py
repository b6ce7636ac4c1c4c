"""The built-in reports: funnel, velocity, forecast, stale deals, attribution, leaderboard and
won/lost reasons. Each is one or a few SQL aggregates (both backends) over indexed columns; only
the folded results travel to Python."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import Session

from leadflow.auth.principal import Principal
from leadflow.core import pipeline as core
from leadflow.db.base import utcnow
from leadflow.pipeline import service as pipelines
from leadflow.pipeline.models import (
    Opportunity,
    OpportunityStageChange,
    OutcomeReason,
    Pipeline,
    PipelineStage,
)
from leadflow.reports.models import FunnelCount, StageDurationCount
from leadflow.reports.models import LeadFunnelFact as F
from leadflow.reports.registry import (
    Chart,
    Column,
    Param,
    ReportResult,
    owner_filter,
    register,
    scope_owner_ids,
    user_names,
)

Opp = Opportunity
FROM = Param("from", "month", help="First month (YYYY-MM)")
TO = Param("to", "month", help="Last month (YYYY-MM), inclusive")
PIPELINE = Param("pipeline", "str", help="Pipeline id or key (default: all)")

FUNNEL_STEPS: tuple[tuple[str, str, int], ...] = (
    ("leads", "Leads", 0),
    ("mql", "MQL", 1),
    ("sal", "SAL", 2),
    ("sql", "SQL", 3),
    ("opportunity", "Opportunity", 4),
    ("won", "Won", 5),
)


def _month_start(month: str) -> datetime:
    y, m = month.split("-")
    return datetime(int(y), int(m), 1, tzinfo=UTC)


def _month_after(month: str) -> datetime:
    start = _month_start(month)
    return (start + timedelta(days=32)).replace(day=1)


def _month_expr(session: Session, column: Any) -> ColumnElement[str]:
    if session.get_bind().dialect.name == "postgresql":
        expr: ColumnElement[str] = func.to_char(column, "YYYY-MM")
    else:
        expr = func.strftime("%Y-%m", column)
    return expr


def _days_expr(session: Session, start: Any, end: Any) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        expr: ColumnElement[Any] = func.extract("epoch", end - start) / 86400.0
    else:
        expr = func.julianday(end) - func.julianday(start)
    return expr


def _pipeline_id(session: Session, actor: Principal, ref: str | None) -> int | None:
    if not ref:
        return None
    return pipelines.get_pipeline(session, actor, ref).id


def _closed_between(stmt: Any, column: Any, p: dict[str, Any]) -> Any:
    if p.get("from"):
        stmt = stmt.where(column >= _month_start(p["from"]))
    if p.get("to"):
        stmt = stmt.where(column < _month_after(p["to"]))
    return stmt


def _days(hours: float | None) -> float | None:
    return None if hours is None else round(hours / 24.0, 1)


# ------------------------------------------------------------------------------ funnel


@register(
    "funnel",
    "Funnel conversion: lead -> MQL -> SAL -> SQL -> opportunity -> won",
    params=(
        Param("group_by", "choice", "cohort", ("cohort", "source", "campaign", "total"), "Rows by"),
        FROM,
        TO,
        Param("source", help="Only leads from this source"),
        Param("campaign", help="Only leads from this campaign"),
    ),
    refresh_facts=True,
)
def funnel(session: Session, actor: Principal, p: dict[str, Any]) -> ReportResult:
    """How many leads of each cohort month (the month they were created), source or campaign
    reached each funnel stage, and the conversion rate of every step. A lead counts as having
    reached a stage when it got there or further (sales-sourced leads skip MQL)."""

    group = p["group_by"]
    owners = scope_owner_ids(session, actor)
    # Everyone-sees-everything reads the summary counts; a scoped view the per-lead facts.
    src: Any = FunnelCount if owners is None else F
    gcol: Any = {"cohort": src.cohort_month, "source": src.source, "campaign": src.campaign}.get(group)
    label_col = gcol if gcol is not None else literal("total")
    counted = func.sum(src.n) if owners is None else func.count()
    stmt = select(label_col.label("g"), src.reached, counted).group_by(
        *([gcol] if gcol is not None else []), src.reached
    )
    if p["from"]:
        stmt = stmt.where(src.cohort_month >= p["from"])
    if p["to"]:
        stmt = stmt.where(src.cohort_month <= p["to"])
    if p["source"]:
        stmt = stmt.where(src.source == p["source"])
    if p["campaign"]:
        stmt = stmt.where(src.campaign == p["campaign"])
    vis = owner_filter(F.owner_id, owners)
    if vis is not None:
        stmt = stmt.where(vis)
    by_group: dict[str, list[int]] = defaultdict(lambda: [0] * 6)
    for g, reached, n in session.execute(stmt):
        by_group["(none)" if g in (None, "") else str(g)][int(reached)] += int(n)
    total = [0] * 6
    rows = []
    for g in sorted(by_group):
        counts = by_group[g]
        rows.append(_funnel_row(group, g, counts))
        total = [a + b for a, b in zip(total, counts, strict=True)]
    if group != "total":
        rows.append(_funnel_row(group, "total", total))
    else:
        rows = [_funnel_row(group, "total", total)]
    columns = [
        Column("group", {"cohort": "Cohort", "source": "Source", "campaign": "Campaign"}.get(group, ""))
    ]
    columns += [Column(k, label, "int") for k, label, _ in FUNNEL_STEPS]
    columns += [
        Column("lead_to_mql", "Lead>MQL %", "pct"),
        Column("mql_to_sal", "MQL>SAL %", "pct"),
        Column("sal_to_sql", "SAL>SQL %", "pct"),
        Column("sql_to_opportunity", "SQL>Opp %", "pct"),
        Column("opportunity_to_won", "Opp>Won %", "pct"),
        Column("lead_to_won", "Lead>Won %", "pct"),
    ]
    return ReportResult(
        "Funnel conversion",
        columns,
        rows,
        Chart("funnel", "group", tuple(k for k, _, _ in FUNNEL_STEPS), "Funnel", "leads"),
        notes=["a lead counts in every stage up to the furthest it reached"],
    )


def _funnel_row(group: str, label: str, counts: list[int]) -> dict[str, Any]:
    reached = [sum(counts[k:]) for k in range(6)]
    row: dict[str, Any] = {"group": label}
    for (key, _, _), n in zip(FUNNEL_STEPS, reached, strict=True):
        row[key] = n
    keys = [k for k, _, _ in FUNNEL_STEPS]
    names = ["lead_to_mql", "mql_to_sal", "sal_to_sql", "sql_to_opportunity", "opportunity_to_won"]
    for i, name in enumerate(names):
        row[name] = core.rate(row[keys[i + 1]], row[keys[i]])
    row["lead_to_won"] = core.rate(row["won"], row["leads"])
    return row


# ------------------------------------------------------------------------------ velocity


@register(
    "velocity",
    "Velocity: days spent in each stage (median, p90)",
    params=(FROM, TO, PIPELINE),
    refresh_facts=True,
)
def velocity(session: Session, actor: Principal, p: dict[str, Any]) -> ReportResult:
    """Median, 90th percentile and mean days spent in each lead stage before moving on (leads
    created in the cohort months given), then in each stage of the opportunity pipelines."""

    owners = scope_owner_ids(session, actor)
    rows: list[dict[str, Any]] = []
    lead_stages = (
        ("lead", "New / cold", F.hours_lead),
        ("mql", "MQL", F.hours_mql),
        ("sal", "SAL", F.hours_sal),
        ("sql", "SQL", F.hours_sql),
        ("opportunity", "Opportunity", F.hours_opp),
    )
    for key, label, col in lead_stages:
        stmt: Any
        if owners is None:  # the summary histograms
            D = StageDurationCount
            stmt = select(D.bucket, func.sum(D.n)).where(D.stage == key).group_by(D.bucket)
            month_col: Any = D.cohort_month
        else:  # the actor's own leads, bucketed the same way
            bucket = case((col < 48, col), (col < 2160, (col // 24) * 24), else_=(col // 168) * 168)
            stmt = (
                select(bucket, func.count()).where(col.is_not(None), F.owner_id.in_(owners)).group_by(bucket)
            )
            month_col = F.cohort_month
        if p["from"]:
            stmt = stmt.where(month_col >= p["from"])
        if p["to"]:
            stmt = stmt.where(month_col <= p["to"])
        rows.append(
            _velocity_row("lifecycle", key, label, [(int(h or 0), int(n)) for h, n in session.execute(stmt)])
        )
    pipe_id = _pipeline_id(session, actor, p["pipeline"])
    pipes = {x.id: x for x in session.scalars(select(Pipeline).order_by(Pipeline.id))}
    stages = session.scalars(
        select(PipelineStage)
        .where(PipelineStage.kind == "open", *([PipelineStage.pipeline_id == pipe_id] if pipe_id else []))
        .order_by(PipelineStage.pipeline_id, PipelineStage.position)
    ).all()
    if stages:
        osc = OpportunityStageChange
        stmt2 = (
            select(osc.from_stage_id, osc.duration_bucket, func.count())
            .where(osc.duration_bucket.is_not(None))
            .group_by(osc.from_stage_id, osc.duration_bucket)
        )
        if owners is None:  # all deals: the (from stage, bucket) index
            stmt2 = stmt2.where(osc.from_stage_id.in_([s.id for s in stages]))
        else:  # the actor's deals first (a few thousand), their moves by deal; stages filtered below
            stmt2 = stmt2.where(
                osc.opportunity_id.in_(select(Opportunity.id).where(Opportunity.owner_id.in_(owners)))
            )
        if p["from"]:
            stmt2 = stmt2.where(OpportunityStageChange.at >= _month_start(p["from"]))
        if p["to"]:
            stmt2 = stmt2.where(OpportunityStageChange.at < _month_after(p["to"]))
        hist: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for sid, h, n in session.execute(stmt2):
            hist[int(sid or 0)].append((int(h or 0), int(n)))
        for s in stages:
            rows.append(
                _velocity_row(f"pipeline {pipes[s.pipeline_id].key}", s.key, s.name, hist.get(s.id, []))
            )
    return ReportResult(
        "Velocity: days in stage",
        [
            Column("section", "Section"),
            Column("stage", "Stage"),
            Column("count", "Moved on", "int"),
            Column("median_days", "Median days", "days"),
            Column("p90_days", "p90 days", "days"),
            Column("mean_days", "Mean days", "days"),
        ],
        rows,
        Chart("bar", "stage", ("median_days", "p90_days"), "Days in stage", "days"),
        notes=["time from entering a stage to entering the next one; leads still in a stage are not counted"],
    )


def _velocity_row(section: str, key: str, label: str, hist: list[tuple[int, int]]) -> dict[str, Any]:
    n = sum(c for _, c in hist)
    mean = sum(h * c for h, c in hist) / n if n else None
    return {
        "section": section,
        "stage": label,
        "key": key,
        "count": n,
        "median_days": _days(core.percentile_from_histogram(hist, 0.5)),
        "p90_days": _days(core.percentile_from_histogram(hist, 0.9)),
        "mean_days": _days(mean),
    }


# ------------------------------------------------------------------------------ forecast


@register(
    "forecast",
    "Forecast: weighted pipeline by close month, owner and pipeline",
    params=(
        Param("group_by", "choice", "month", ("month", "owner", "pipeline", "month_owner", "month_pipeline")),
        FROM,
        TO,
        PIPELINE,
    ),
)
def forecast(session: Session, actor: Principal, p: dict[str, Any]) -> ReportResult:
    """Open deals by expected close month (won deals by the month they closed): count, amount,
    weighted amount (amount x probability) and the forecast categories pipeline, best case,
    commit and closed (won)."""

    month = Opp.forecast_month
    stmt = (
        select(
            month.label("month"),
            Opp.owner_id,
            Opp.pipeline_id,
            Opp.currency,
            Opp.forecast_category,
            Opp.status,
            func.count(),
            func.coalesce(func.sum(Opp.amount), 0),
            func.coalesce(func.sum(Opp.amount * Opp.probability / 100.0), 0),
        )
        .where(Opp.status.in_(("open", "won")))
        .group_by(month, Opp.owner_id, Opp.pipeline_id, Opp.currency, Opp.forecast_category, Opp.status)
    )
    pipe_id = _pipeline_id(session, actor, p["pipeline"])
    if pipe_id is not None:
        stmt = stmt.where(Opp.pipeline_id == pipe_id)
    vis = owner_filter(Opp.owner_id, scope_owner_ids(session, actor))
    if vis is not None:
        stmt = stmt.where(vis)
    if p["from"]:
        stmt = stmt.where(Opp.forecast_month >= p["from"])
    if p["to"]:
        stmt = stmt.where(Opp.forecast_month <= p["to"])
    group = p["group_by"]
    raw = session.execute(stmt).all()
    owners = user_names(session, {r[1] for r in raw})
    pipes = {x.id: x.key for x in session.scalars(select(Pipeline))}
    acc: dict[tuple[str, ...], dict[str, Any]] = {}
    for m, owner_id, pid, currency, category, status, n, amount, weighted in raw:
        key_parts = {
            "month": (m or "(none)",),
            "owner": (owners.get(owner_id, str(owner_id)),),
            "pipeline": (pipes.get(pid, str(pid)),),
            "month_owner": (m or "(none)", owners.get(owner_id, str(owner_id))),
            "month_pipeline": (m or "(none)", pipes.get(pid, str(pid))),
        }[group]
        key = (*key_parts, currency)
        row = acc.setdefault(
            key,
            {
                "group": " / ".join(key_parts),
                "currency": currency,
                "open_deals": 0,
                "open_amount": 0.0,
                "weighted": 0.0,
                "pipeline": 0.0,
                "best_case": 0.0,
                "commit": 0.0,
                "closed_won": 0.0,
                "won_deals": 0,
            },
        )
        if status == "won":
            row["closed_won"] += float(amount)
            row["won_deals"] += int(n)
            continue
        row["open_deals"] += int(n)
        row["open_amount"] += float(amount)
        row["weighted"] += float(weighted)
        if category in ("pipeline", "best_case", "commit"):
            row[category] += float(amount)
    rows = [acc[k] for k in sorted(acc)]
    for row in rows:
        for k in ("open_amount", "weighted", "pipeline", "best_case", "commit", "closed_won"):
            row[k] = round(row[k], 2)
    return ReportResult(
        "Forecast",
        [
            Column(
                "group",
                {"month": "Close month", "owner": "Owner", "pipeline": "Pipeline"}.get(group, "Group"),
            ),
            Column("currency", "Cur"),
            Column("open_deals", "Open deals", "int"),
            Column("open_amount", "Open amount", "money"),
            Column("weighted", "Weighted", "money"),
            Column("pipeline", "Pipeline", "money"),
            Column("best_case", "Best case", "money"),
            Column("commit", "Commit", "money"),
            Column("won_deals", "Won deals", "int"),
            Column("closed_won", "Closed won", "money"),
        ],
        rows,
        Chart("stacked", "group", ("closed_won", "commit", "best_case", "pipeline"), "Forecast", "amount"),
        notes=["amounts are not converted between currencies: one row per currency"],
    )


@register(
    "stale_deals",
    "Stale deals: open deals idle longer than their stage's rotting age",
    params=(PIPELINE, Param("limit", "int", 200)),
)
def stale_deals(session: Session, actor: Principal, p: dict[str, Any]) -> ReportResult:
    """Open deals with no stage move or edit for longer than their stage's rotting age, the
    longest idle first."""

    now = utcnow()
    pipe_id = _pipeline_id(session, actor, p["pipeline"])
    stages = list(
        session.scalars(
            select(PipelineStage).where(
                PipelineStage.kind == "open",
                PipelineStage.rotting_days.is_not(None),
                *([PipelineStage.pipeline_id == pipe_id] if pipe_id else []),
            )
        )
    )
    if not stages:
        return _stale_result([])
    # One index range per rotting stage (status, stage, last touch), merged here: every service
    # write sets last_activity_at, so it is the deal's last touch.
    limit = max(1, min(p["limit"], 5000))
    vis = pipelines.visibility_clause(actor)
    opps: list[Opportunity] = []
    for st in stages:
        stmt = (
            select(Opp)
            .where(
                Opp.status == "open",
                Opp.stage_id == st.id,
                Opp.last_activity_at < now - timedelta(days=st.rotting_days or 0),
            )
            .order_by(Opp.last_activity_at)
            .limit(limit)
        )
        if vis is not None:
            stmt = stmt.where(vis)
        opps.extend(session.scalars(stmt))
    opps.sort(key=lambda o: (o.last_activity_at or o.stage_entered_at, o.id))
    opps = opps[:limit]
    by_id = {s.id: s for s in stages}
    names = user_names(session, {o.owner_id for o in opps})
    today = now.date()
    rows = [
        {
            "id": o.id,
            "name": o.name,
            "owner": names.get(o.owner_id, str(o.owner_id)),
            "stage": by_id[o.stage_id].name,
            "amount": o.amount,
            "currency": o.currency,
            "idle_days": core.idle_days(o.stage_entered_at, o.last_activity_at, now),
            "rotting_days": by_id[o.stage_id].rotting_days,
            "expected_close_date": o.expected_close_date.isoformat() if o.expected_close_date else None,
            "overdue": bool(o.expected_close_date and o.expected_close_date < today),
        }
        for o in opps
    ]
    return _stale_result(rows)


def _stale_result(rows: list[dict[str, Any]]) -> ReportResult:
    return ReportResult(
        "Stale deals",
        [
            Column("id", "Id", "int"),
            Column("name", "Deal"),
            Column("owner", "Owner"),
            Column("stage", "Stage"),
            Column("amount", "Amount", "money"),
            Column("currency", "Cur"),
            Column("idle_days", "Idle days", "days"),
            Column("rotting_days", "Rots after", "int"),
            Column("expected_close_date", "Close date", "date"),
            Column("overdue", "Overdue"),
        ],
        rows,
        Chart("barh", "name", ("idle_days",), "Idle days of stale deals", "days"),
    )


# ------------------------------------------------------------------------------ attribution


@register(
    "attribution",
    "Attribution of won revenue: first touch and last touch source",
    params=(FROM, TO, PIPELINE),
)
def attribution(session: Session, actor: Principal, p: dict[str, Any]) -> ReportResult:
    """Won revenue credited to the lead's original source (first touch) and to the channel of
    the last marketing touch before the deal opened (last touch), deals closed in the months
    given."""

    owners = scope_owner_ids(session, actor)
    pipe_id = _pipeline_id(session, actor, p["pipeline"])
    out: dict[tuple[str, str], dict[str, Any]] = {}
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for model, col in (("first", Opp.first_touch_source), ("last", Opp.last_touch_source)):
        stmt = (
            select(col, Opp.currency, func.count(), func.coalesce(func.sum(Opp.amount), 0))
            .where(Opp.status == "won")
            .group_by(col, Opp.currency)
        )
        stmt = _closed_between(stmt, Opp.closed_at, p)
        if pipe_id is not None:
            stmt = stmt.where(Opp.pipeline_id == pipe_id)
        vis = owner_filter(Opp.owner_id, owners)
        if vis is not None:
            stmt = stmt.where(vis)
        for source, currency, n, amount in session.execute(stmt):
            key = (source or "(unknown)", currency)
            row = out.setdefault(
                key,
                {
                    "source": key[0],
                    "currency": currency,
                    "first_deals": 0,
                    "first_revenue": 0.0,
                    "first_share": None,
                    "last_deals": 0,
                    "last_revenue": 0.0,
                    "last_share": None,
                },
            )
            row[f"{model}_deals"] += int(n)
            row[f"{model}_revenue"] += round(float(amount), 2)
            totals[(model, currency)] += float(amount)
    for row in out.values():
        for model in ("first", "last"):
            whole = totals[(model, row["currency"])]
            row[f"{model}_share"] = round(100.0 * row[f"{model}_revenue"] / whole, 1) if whole else None
    rows = sorted(out.values(), key=lambda r: (-r["first_revenue"] - r["last_revenue"], r["source"]))
    return ReportResult(
        "Won revenue by source",
        [
            Column("source", "Source"),
            Column("currency", "Cur"),
            Column("first_deals", "First-touch deals", "int"),
            Column("first_revenue", "First-touch revenue", "money"),
            Column("first_share", "First %", "pct"),
            Column("last_deals", "Last-touch deals", "int"),
            Column("last_revenue", "Last-touch revenue", "money"),
            Column("last_share", "Last %", "pct"),
        ],
        rows,
        Chart("bar", "source", ("first_revenue", "last_revenue"), "Won revenue by source", "revenue"),
    )


# ------------------------------------------------------------------------------ leaderboard


@register("leaderboard", "Rep leaderboard", params=(FROM, TO, PIPELINE))
def leaderboard(session: Session, actor: Principal, p: dict[str, Any]) -> ReportResult:
    """Per owner: deals won and lost (closed in the months given), revenue, win rate, average
    deal size and sales cycle, and the open pipeline today."""

    owners = scope_owner_ids(session, actor)
    pipe_id = _pipeline_id(session, actor, p["pipeline"])
    cycle = _days_expr(session, Opp.created_at, Opp.closed_at)
    closed = (
        select(
            Opp.owner_id, Opp.status, func.count(), func.coalesce(func.sum(Opp.amount), 0), func.avg(cycle)
        )
        .where(Opp.status.in_(("won", "lost")))
        .group_by(Opp.owner_id, Opp.status)
    )
    closed = _closed_between(closed, Opp.closed_at, p)
    open_ = (
        select(
            Opp.owner_id,
            func.count(),
            func.coalesce(func.sum(Opp.amount), 0),
            func.coalesce(func.sum(Opp.amount * Opp.probability / 100.0), 0),
        )
        .where(Opp.status == "open")
        .group_by(Opp.owner_id)
    )
    for_filters = []
    if pipe_id is not None:
        for_filters.append(Opp.pipeline_id == pipe_id)
    vis = owner_filter(Opp.owner_id, owners)
    if vis is not None:
        for_filters.append(vis)
    closed, open_ = closed.where(*for_filters), open_.where(*for_filters)
    acc: dict[int | None, dict[str, Any]] = {}

    def row(owner: int | None) -> dict[str, Any]:
        return acc.setdefault(
            owner,
            {
                "owner_id": owner,
                "won": 0,
                "lost": 0,
                "revenue": 0.0,
                "win_rate": None,
                "avg_deal": None,
                "avg_cycle_days": None,
                "open_deals": 0,
                "open_amount": 0.0,
                "weighted": 0.0,
            },
        )

    for owner, status, n, amount, avg_cycle in session.execute(closed):
        r = row(owner)
        if status == "won":
            r["won"], r["revenue"] = int(n), round(float(amount), 2)
            r["avg_cycle_days"] = round(float(avg_cycle), 1) if avg_cycle is not None else None
        else:
            r["lost"] = int(n)
    for owner, n, amount, weighted in session.execute(open_):
        r = row(owner)
        r["open_deals"], r["open_amount"], r["weighted"] = (
            int(n),
            round(float(amount), 2),
            round(float(weighted), 2),
        )
    names = user_names(session, set(acc))
    rows = sorted(acc.values(), key=lambda r: (-r["revenue"], -r["won"], -r["weighted"]))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
        r["owner"] = names.get(r["owner_id"], str(r["owner_id"]))
        r["win_rate"] = core.rate(r["won"], r["won"] + r["lost"])
        r["avg_deal"] = round(r["revenue"] / r["won"], 2) if r["won"] else None
    return ReportResult(
        "Rep leaderboard",
        [
            Column("rank", "#", "int"),
            Column("owner", "Owner"),
            Column("won", "Won", "int"),
            Column("lost", "Lost", "int"),
            Column("win_rate", "Win %", "pct"),
            Column("revenue", "Revenue", "money"),
            Column("avg_deal", "Avg deal", "money"),
            Column("avg_cycle_days", "Avg cycle days", "days"),
            Column("open_deals", "Open", "int"),
            Column("open_amount", "Open amount", "money"),
            Column("weighted", "Weighted", "money"),
        ],
        rows,
        Chart("barh", "owner", ("revenue",), "Won revenue by rep", "revenue"),
        notes=["amounts of every currency are summed as they are"],
    )


# ------------------------------------------------------------------------------ reasons


@register(
    "loss_reasons",
    "Why deals are lost (or won)",
    params=(Param("kind", "choice", "lost", ("lost", "won")), FROM, TO, PIPELINE),
)
def loss_reasons(session: Session, actor: Principal, p: dict[str, Any]) -> ReportResult:
    """Closed deals by their lost (or won) reason: count, amount and share."""

    kind = p["kind"]
    stmt = (
        select(Opp.close_reason, func.count(), func.coalesce(func.sum(Opp.amount), 0))
        .where(Opp.status == kind)
        .group_by(Opp.close_reason)
    )
    stmt = _closed_between(stmt, Opp.closed_at, p)
    pipe_id = _pipeline_id(session, actor, p["pipeline"])
    if pipe_id is not None:
        stmt = stmt.where(Opp.pipeline_id == pipe_id)
    vis = owner_filter(Opp.owner_id, scope_owner_ids(session, actor))
    if vis is not None:
        stmt = stmt.where(vis)
    raw = session.execute(stmt).all()
    labels = {
        r.key: r.label for r in session.scalars(select(OutcomeReason).where(OutcomeReason.kind == kind))
    }
    whole = sum(int(n) for _, n, _ in raw)
    rows: list[dict[str, Any]] = sorted(
        (
            {
                "reason": key or "(none)",
                "label": labels.get(key or "", "(no reason given)"),
                "deals": int(n),
                "amount": round(float(amount), 2),
                "share": core.rate(int(n), whole),
            }
            for key, n, amount in raw
        ),
        key=lambda r: (-int(r["deals"]), str(r["reason"])),
    )
    return ReportResult(
        f"{'Loss' if kind == 'lost' else 'Win'} reasons",
        [
            Column("reason", "Reason"),
            Column("label", "Label"),
            Column("deals", "Deals", "int"),
            Column("amount", "Amount", "money"),
            Column("share", "Share %", "pct"),
        ],
        rows,
        Chart("barh", "label", ("deals",), f"{kind.capitalize()} reasons", "deals"),
    )
