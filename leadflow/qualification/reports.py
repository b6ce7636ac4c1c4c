"""The handoff reports in the report registry (``/api/reports/{name}``, ``leadflow report NAME``,
CSV and charts): SLA compliance and sales' rejection of MQLs. The numbers come from
:mod:`leadflow.qualification.handoff`, which also serves them under /api/qualification/reports."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.orm import Session

from leadflow.auth.principal import Principal
from leadflow.qualification import handoff as ho
from leadflow.reports.registry import Chart, Column, Param, ReportResult, register, user_names

FROM = Param("from", "date", help="First day (YYYY-MM-DD), by when the MQL entered the queue")
TO = Param("to", "date", help="Last day (YYYY-MM-DD), inclusive")


def _window(p: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    start: date | None = p.get("from")
    end: date | None = p.get("to")
    since = datetime.combine(start, time(0), tzinfo=UTC) if start else None
    until = datetime.combine(end + timedelta(days=1), time(0), tzinfo=UTC) if end else None
    return since, until


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 1)


@register(
    "handoff_sla",
    "MQL first-touch SLA compliance",
    params=(Param("by", "choice", "source", ("source", "owner")), FROM, TO),
)
def handoff_sla(session: Session, actor: Principal, p: dict[str, Any]) -> ReportResult:
    """Share of MQLs touched by sales within the first-touch SLA (business hours, the lead's
    time zone), by lead source or by owner; handoffs still inside their SLA are pending."""

    since, until = _window(p)
    doc = ho.sla_report(session, actor, since=since, until=until)
    groups = doc["by_source"] if p["by"] == "source" else doc["by_owner"]
    names: dict[Any, str] = {}
    if p["by"] == "owner":
        ids = {int(k) for k in groups if k.isdigit()}
        names = {str(k): v for k, v in user_names(session, set(ids)).items() if k is not None}
    rows = [
        {
            "group": names.get(key, key),
            "handoffs": v["handoffs"],
            "within_sla": v["within_sla"],
            "late": v["late"],
            "breached_open": v["breached_open"],
            "pending": v["pending"],
            "compliance": _pct(v["compliance"]),
        }
        for key, v in [*groups.items(), ("total", doc["total"])]
    ]
    return ReportResult(
        "MQL first-touch SLA compliance",
        [
            Column("group", "Source" if p["by"] == "source" else "Owner"),
            Column("handoffs", "MQLs", "int"),
            Column("within_sla", "Within SLA", "int"),
            Column("late", "Touched late", "int"),
            Column("breached_open", "Breached, untouched", "int"),
            Column("pending", "Pending", "int"),
            Column("compliance", "Compliance %", "pct"),
        ],
        rows,
        Chart("stacked", "group", ("within_sla", "late", "breached_open"), "First touch vs SLA", "MQLs"),
        notes=[f"{len(doc['breaches'])} breach(es); list them with GET /api/qualification/reports/sla"],
    )


@register("mql_rejections", "Sales rejection of MQLs by source and reason", params=(FROM, TO))
def mql_rejections(session: Session, actor: Principal, p: dict[str, Any]) -> ReportResult:
    """MQLs sales decided in the window: accepted (SAL) or rejected back to nurture, with the
    rejection rate by source and the most common reason, so marketing can refine scoring."""

    since, until = _window(p)
    doc = ho.rejection_report(session, actor, since=since, until=until)
    rows = [
        {
            "source": src,
            "decided": v["decided"],
            "accepted": v["accepted"],
            "rejected": v["rejected"],
            "rejection_rate": _pct(v["rejection_rate"]),
            "top_reason": next(iter(v["reasons"]), None),
        }
        for src, v in doc["by_source"].items()
    ]
    rows.append(
        {
            "source": "total",
            "decided": doc["decided"],
            "accepted": doc["decided"] - doc["rejected"],
            "rejected": doc["rejected"],
            "rejection_rate": _pct(doc["rejection_rate"]),
            "top_reason": next(iter(doc["by_reason"]), None),
        }
    )
    return ReportResult(
        "Sales rejection of MQLs",
        [
            Column("source", "Source"),
            Column("decided", "Decided", "int"),
            Column("accepted", "Accepted", "int"),
            Column("rejected", "Rejected", "int"),
            Column("rejection_rate", "Rejection %", "pct"),
            Column("top_reason", "Top reason"),
        ],
        rows,
        Chart("stacked", "source", ("accepted", "rejected"), "Sales verdicts on MQLs", "MQLs"),
        notes=[f"{k}: {v['rejected']} ({_pct(v['share'])}%)" for k, v in doc["by_reason"].items()],
    )
