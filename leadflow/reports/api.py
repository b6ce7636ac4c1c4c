"""``/api/reports``: the registry's reports as JSON, CSV or PNG."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from leadflow.auth.deps import DB, Actor
from leadflow.auth.principal import Perm
from leadflow.reports import registry
from leadflow.reports.render import to_csv, to_png

router = APIRouter(prefix="/api/reports", tags=["reports"])
_RESERVED = {"format"}


@router.get("", summary="The available reports and their parameters")
def list_reports(actor: Actor) -> list[dict[str, Any]]:
    actor.require(Perm.REPORTS_READ)
    return [
        {
            "name": r.name,
            "title": r.title,
            "description": r.description,
            "params": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "default": p.default,
                    "choices": list(p.choices),
                    "help": p.help,
                }
                for p in r.params
            ],
        }
        for r in registry.all_reports()
    ]


@router.get(
    "/{name}",
    summary="Run a report: JSON (default), CSV or a PNG chart; parameters as query strings",
    responses={200: {"content": {"text/csv": {}, "image/png": {}}}},
)
def run_report(
    name: str,
    request: Request,
    db: DB,
    actor: Actor,
    fmt: Annotated[str, Query(alias="format", pattern="^(json|csv|png)$")] = "json",
) -> Any:
    raw = {k: v for k, v in request.query_params.items() if k not in _RESERVED}
    with db.transaction() as s:
        report, params, result = registry.run(s, actor, name, raw)
    if fmt == "csv":
        return Response(
            to_csv(result),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{report.name}.csv"'},
        )
    if fmt == "png":
        return Response(to_png(result), media_type="image/png")
    return result.to_json(report.name, params)
