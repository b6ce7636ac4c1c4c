"""HTTP routes for scoring models, rescoring and lead score explanations."""

from __future__ import annotations

import json
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Query, Request

from leadflow.auth.deps import DB, Actor
from leadflow.db.base import Database
from leadflow.errors import InvalidInput
from leadflow.scoring import service as svc
from leadflow.scoring.schemas import (
    ActivationOut,
    FiringOut,
    HistoryPoint,
    LeadScoreOut,
    ModelOut,
    ModelVersionOut,
    RescoreOut,
    StoredScore,
    ThresholdState,
)

router = APIRouter(prefix="/api", tags=["scoring"])

_DOC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
        "description": "The model document, as JSON or YAML (see docs/scoring.md).",
    }
}


async def _document(request: Request) -> Any:
    raw = await request.body()
    kind = request.headers.get("content-type", "application/json")
    try:
        if "yaml" in kind:
            return yaml.safe_load(raw.decode("utf-8"))
        return json.loads(raw or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(
            "body", f"not a valid {'YAML' if 'yaml' in kind else 'JSON'} document: {exc}"
        ) from None


def rescore_out(result: svc.RescoreResult) -> RescoreOut:
    return RescoreOut(
        model_version=result.model_version,
        leads=result.leads,
        changed=result.changed,
        crossings=result.crossings,
        actions=result.actions,
        seconds=round(result.seconds, 3),
        fit_carried=result.fit_carried,
        history_points=result.history,
        written=result.written,
    )


def _activate_then_rescore(
    db: Database, actor: Any, version: int | None, document: Any, rescore: bool
) -> ActivationOut:
    with db.transaction() as s:
        if document is not None:
            row = svc.save_model(s, actor, document, activate=version is None)
        else:
            assert version is not None
            row = svc.activate_version(s, actor, version)
        out = ModelVersionOut.model_validate(row)
    result = svc.rescore_all(db, actor) if rescore and out.active else None
    return ActivationOut(model=out, rescore=rescore_out(result) if result else None)


@router.get("/scoring/model", response_model=ModelOut, summary="The active scoring model")
def get_active(db: DB, actor: Actor) -> ModelOut:
    with db.transaction() as s:
        rows = [r for r in svc.list_versions(s, actor) if r.active]
        if rows:
            return ModelOut.model_validate(rows[0])
        active = svc.active_model(s)
        return ModelOut(
            version=0,
            name=active.model.name,
            active=True,
            created_by=None,
            created_at=None,
            activated_at=None,
            document=active.model.to_document(),
        )


@router.put(
    "/scoring/model",
    response_model=ActivationOut,
    summary="Store a new model version (JSON or YAML); by default activate it and rescore every lead",
    openapi_extra=_DOC_BODY,
)
async def put_model(
    request: Request,
    db: DB,
    actor: Actor,
    activate: Annotated[bool, Query(description="Make it the active model")] = True,
    rescore: Annotated[bool, Query(description="Rescore every lead after activating")] = True,
) -> ActivationOut:
    document = await _document(request)
    if not activate:
        with db.transaction() as s:
            row = svc.save_model(s, actor, document, activate=False)
            return ActivationOut(model=ModelVersionOut.model_validate(row))
    return _activate_then_rescore(db, actor, None, document, rescore)


@router.post(
    "/scoring/model/validate",
    summary="Check a model document without storing it (422 names each rule and field)",
    openapi_extra=_DOC_BODY,
)
async def validate_model(request: Request, actor: Actor) -> dict[str, Any]:
    model = svc.validate_document(await _document(request))
    return {"valid": True, "document": model.to_document()}


@router.get(
    "/scoring/models", response_model=list[ModelVersionOut], summary="Stored model versions, newest first"
)
def list_models(db: DB, actor: Actor) -> list[ModelVersionOut]:
    with db.transaction() as s:
        return [ModelVersionOut.model_validate(r) for r in svc.list_versions(s, actor)]


@router.get(
    "/scoring/models/{version}", response_model=ModelOut, summary="One model version with its document"
)
def get_model(version: int, db: DB, actor: Actor) -> ModelOut:
    with db.transaction() as s:
        return ModelOut.model_validate(svc.get_version(s, actor, version))


@router.post(
    "/scoring/models/{version}/activate",
    response_model=ActivationOut,
    summary="Activate a stored version (also a rollback) and by default rescore every lead",
)
def activate(
    version: int,
    db: DB,
    actor: Actor,
    rescore: Annotated[bool, Query(description="Rescore every lead after activating")] = True,
) -> ActivationOut:
    return _activate_then_rescore(db, actor, version, None, rescore)


@router.post(
    "/scoring/rescore", response_model=RescoreOut, summary="Rescore every lead with the active model"
)
def rescore_all(
    db: DB,
    actor: Actor,
    fire: Annotated[bool, Query(description="Act on threshold crossings (false: only update scores)")] = True,
) -> RescoreOut:
    return rescore_out(svc.rescore_all(db, actor, fire=fire))


@router.get(
    "/leads/{lead_id}/score",
    response_model=LeadScoreOut,
    tags=["leads"],
    summary="A lead's score explained: rules that fired, points, the events behind them; history",
)
def lead_score(
    lead_id: int,
    db: DB,
    actor: Actor,
    history_limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> LeadScoreOut:
    with db.transaction() as s:
        view = svc.explain(s, actor, lead_id, history_limit=history_limit)
        sc = view.score
        doc = sc.explanation()
        model = svc.active_model(s).model
        return LeadScoreOut(
            lead_id=lead_id,
            model_version=view.model_version,
            as_of=view.as_of,
            fit=doc["fit"],
            engagement=doc["engagement"],
            total=doc["total"],
            grade=sc.grade,
            fit_points=doc["fit_points"],
            engagement_points=doc["engagement_points"],
            reasons=doc["reasons"],
            thresholds=[
                ThresholdState(
                    id=t.id,
                    label=t.label or t.id,
                    score=t.score,
                    at=t.at,
                    hysteresis=t.hysteresis,
                    armed=view.armed.get(t.id, True),
                    actions=[a.type for a in t.actions],
                )
                for t in model.thresholds
            ],
            stored=StoredScore.model_validate(view.stored) if view.stored else None,
            history=[HistoryPoint.model_validate(h) for h in view.history],
            firings=[FiringOut.model_validate(f) for f in view.firings],
        )
