"""Dashboards: charts drawn by the vendored Chart.js from JSON the server computes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from leadflow.web import service as web
from leadflow.web.core import PREFIX, CtxDep, render

router = APIRouter(prefix=PREFIX + "/dashboard", include_in_schema=False)


def chart(kind: str, labels: list[str], series: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """The JSON a <canvas data-chart> island holds (see static/app.js)."""

    return {"type": kind, "labels": labels, "series": series, **options}


@router.get("", response_class=HTMLResponse)
def dashboard(ctx: CtxDep) -> Response:
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
    return render(ctx, ctx.request, "dashboard.html", nav="dashboard", ov=ov, charts=charts)
