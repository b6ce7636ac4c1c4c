"""Dashboards: charts drawn by the vendored Chart.js from JSON the server computes. The pipeline
charts come from the report registry (``leadflow.reports.registry``): the same reports as the
API, the CLI and the PNG export, with the same rights and visibility."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from leadflow.errors import NotFound
from leadflow.reports import registry
from leadflow.reports.registry import ReportResult
from leadflow.web import service as web
from leadflow.web.core import PREFIX, CtxDep, render

router = APIRouter(prefix=PREFIX + "/dashboard", include_in_schema=False)

# (report name, parameters) shown on the dashboard, in order; a report that does not exist (its
# feature is not installed) or that the user may not read is left out.
REPORTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("funnel", {"group_by": "total"}),
    ("velocity", {}),
    ("forecast", {"group_by": "month"}),
    ("handoff_sla", {}),
    ("mql_rejections", {}),
    ("attribution", {}),
    ("stale_deals", {"limit": "15"}),
)


def chart(kind: str, labels: list[str], series: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """The JSON a <canvas data-chart> island holds (see static/app.js)."""

    return {"type": kind, "labels": labels, "series": series, **options}


def _number(v: Any) -> float:
    try:
        return float(v or 0)
    except (TypeError, ValueError):
        return 0.0


def report_chart(result: ReportResult) -> dict[str, Any] | None:
    """Chart.js JSON for a report's chart spec (bar, barh, stacked, line, funnel)."""

    spec = result.chart
    if spec is None or not result.rows:
        return None
    names = {c.key: c.label for c in result.columns}
    if spec.kind == "funnel":
        total = next((r for r in result.rows if r.get("group") == "total"), result.rows[-1])
        return chart(
            "bar",
            [names.get(k, k) for k in spec.y],
            [{"label": spec.ylabel or "count", "data": [_number(total.get(k)) for k in spec.y]}],
            horizontal=True,
        )
    rows = result.rows
    if spec.exclude_total and len(rows) > 1:
        rows = [r for r in rows if r.get(spec.x) != "total"]
    options: dict[str, Any] = {}
    if spec.kind == "barh":
        options["horizontal"] = True
    if spec.kind == "stacked":
        options["stacked"] = True
    return chart(
        "line" if spec.kind == "line" else "bar",
        [str(r.get(spec.x)) for r in rows],
        [{"label": names.get(k, k), "data": [_number(r.get(k)) for r in rows]} for k in spec.y],
        **options,
    )


@router.get("", response_class=HTMLResponse)
def dashboard(ctx: CtxDep) -> Response:
    """The lead charts at once; each pipeline report loads in its own request (HTMX, on load), so
    the page answers fast and a slow report delays only its own card."""

    with ctx.db.transaction() as s:
        ov = web.overview(s, ctx.principal)
    charts = {
        "chart-funnel": chart(
            "bar",
            [s.replace("_", " ") for s, _ in ov.stages],
            [{"label": "Leads", "data": [n for _, n in ov.stages]}],
        ),
        "chart-sources": chart(
            "doughnut", [s for s, _ in ov.sources], [{"label": "Leads", "data": [n for _, n in ov.sources]}]
        ),
        "chart-scores": chart(
            "bar",
            [b for b, _ in ov.score_buckets],
            [{"label": "Leads", "data": [n for _, n in ov.score_buckets]}],
        ),
    }
    available = []
    for name, _params in REPORTS:
        try:
            report = registry.get(name)
        except NotFound:
            continue
        if ctx.principal.can(report.permission):
            available.append({"name": name, "title": report.title})
    return render(
        ctx, ctx.request, "dashboard.html", nav="dashboard", ov=ov, charts=charts, reports=available
    )


@router.get("/reports/{name}", response_class=HTMLResponse)
def report_card(ctx: CtxDep, name: str) -> Response:
    params = dict(REPORTS).get(name)
    if params is None:
        raise NotFound(f"no dashboard report {name!r}")
    with ctx.db.transaction() as s:
        report, _p, result = registry.run(s, ctx.principal, name, params)
    spec = report_chart(result)
    chart_id = f"chart-report-{name}"
    return render(
        ctx,
        ctx.request,
        "_report_card.html",
        r={
            "name": name,
            "title": result.title or report.title,
            "result": result,
            "chart_id": chart_id if spec else None,
        },
        spec=spec,
    )
