"""HTTP routes for predictive scoring: train, evaluate, model versions, a lead's prediction with
its top factors, rule point suggestions, applying them, and rolling back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from leadflow.auth.deps import DB, Actor
from leadflow.scoring import predictive as svc
from leadflow.scoring import suggest
from leadflow.scoring.api import rescore_out
from leadflow.scoring.schemas import RescoreOut

router = APIRouter(prefix="/api", tags=["predictive scoring"])


class TrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field("sql", description="sql (sql or later), opportunity (or later) or won (customer)")
    horizon_days: float = Field(90.0, description="A lead is positive when it reached the target this soon")
    test_fraction: float = Field(0.25, description="The newest leads held out for evaluation")
    cutoff: datetime | None = Field(None, description="Outcomes known up to here (default: now)")

    def params(self) -> svc.Params:
        return svc.Params(self.target, self.horizon_days, self.test_fraction, self.cutoff)


class TrainRequest(TrainIn):
    activate: bool = True


class ApplyRequest(TrainIn):
    rescore: bool = True


class PredictiveModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    target: str
    kind: str
    active: bool
    params: dict[str, Any]
    metrics: dict[str, Any]
    library_version: str
    n_train: int
    n_test: int
    positives: int
    created_by: int | None
    created_at: datetime
    activated_at: datetime | None


class FactorOut(BaseModel):
    feature: str
    label: str
    value: Any
    contribution: float = Field(description="Log-odds relative to the average training lead")


class PredictionOut(BaseModel):
    lead_id: int
    model_version: int
    target: str
    horizon_days: float
    probability: float
    factors: list[FactorOut]
    as_of: datetime


class ApplyOut(BaseModel):
    version: int
    previous: int
    holdout_auc_now: float
    holdout_auc_suggested: float
    suggestions: dict[str, Any]
    rescore: RescoreOut | None = None


class RollbackOut(BaseModel):
    rolled_back_from: int
    active_version: int


@router.post(
    "/scoring/predictive/train",
    response_model=PredictiveModelOut,
    status_code=201,
    summary="Train on outcomes (time split), evaluate on the hold-out, store a version",
)
def train(body: TrainRequest, db: DB, actor: Actor) -> PredictiveModelOut:
    with db.transaction() as s:
        row = svc.train(s, actor, body.params(), activate=body.activate)
        return PredictiveModelOut.model_validate(row)


@router.post(
    "/scoring/predictive/evaluate",
    summary="Rule score vs naive-Bayes frequencies vs trained model on one hold-out (ROC/PR AUC, lift, "
    "calibration)",
)
def evaluate(
    db: DB,
    actor: Actor,
    body: TrainIn | None = None,
    version: Annotated[int | None, Query(description="Evaluate this stored version on its own split")] = None,
) -> dict[str, Any]:
    with db.transaction() as s:
        return svc.evaluation(s, actor, body.params() if body else None, version=version)


@router.get(
    "/scoring/predictive/models",
    response_model=list[PredictiveModelOut],
    summary="Trained predictive model versions, newest first",
)
def list_models(db: DB, actor: Actor) -> list[PredictiveModelOut]:
    with db.transaction() as s:
        return [PredictiveModelOut.model_validate(r) for r in svc.list_versions(s, actor)]


@router.get("/scoring/predictive/models/{version}", response_model=PredictiveModelOut)
def get_model(version: int, db: DB, actor: Actor) -> PredictiveModelOut:
    with db.transaction() as s:
        return PredictiveModelOut.model_validate(svc.get_version(s, actor, version))


@router.post(
    "/scoring/predictive/models/{version}/activate",
    response_model=PredictiveModelOut,
    summary="Make a version answer predictions (also a rollback)",
)
def activate(version: int, db: DB, actor: Actor) -> PredictiveModelOut:
    with db.transaction() as s:
        return PredictiveModelOut.model_validate(svc.activate_version(s, actor, version))


@router.get(
    "/leads/{lead_id}/prediction",
    response_model=PredictionOut,
    tags=["leads"],
    summary="The probability the lead reaches the target, with its top contributing factors",
)
def prediction(
    lead_id: int, db: DB, actor: Actor, top: Annotated[int, Query(ge=1, le=50)] = svc.TOP_FACTORS
) -> PredictionOut:
    with db.transaction() as s:
        p = svc.predict_lead(s, actor, lead_id, top=top)
        return PredictionOut(
            lead_id=p.lead_id,
            model_version=p.model_version,
            target=p.target,
            horizon_days=p.horizon_days,
            probability=round(p.probability, 4),
            factors=[FactorOut(**f.__dict__) for f in p.factors],
            as_of=p.as_of,
        )


@router.post(
    "/scoring/suggestions",
    summary="Suggested point values per rule from outcomes, with the hold-out AUC gain of each",
)
def suggestions(db: DB, actor: Actor, body: TrainIn | None = None) -> dict[str, Any]:
    with db.transaction() as s:
        return suggest.suggest(s, actor, (body or TrainIn()).params()).to_dict()


@router.post(
    "/scoring/suggestions/apply",
    response_model=ApplyOut,
    summary="Store the suggested points as a new rule model version, activate it and rescore",
)
def apply(db: DB, actor: Actor, body: ApplyRequest | None = None) -> ApplyOut:
    req = body or ApplyRequest()
    applied = suggest.apply_suggestions(db, actor, req.params(), rescore=req.rescore)
    return ApplyOut(
        version=applied.version,
        previous=applied.previous,
        holdout_auc_now=round(applied.suggestions.holdout_auc_now, 4),
        holdout_auc_suggested=round(applied.suggestions.holdout_auc_suggested, 4),
        suggestions=applied.suggestions.to_dict(),
        rescore=rescore_out(applied.rescore) if applied.rescore else None,
    )


@router.post(
    "/scoring/rollback",
    response_model=RollbackOut,
    summary="Activate the rule model version that was active before the current one, and rescore",
)
def rollback(
    db: DB, actor: Actor, rescore: Annotated[bool, Query(description="Rescore every lead")] = True
) -> RollbackOut:
    source, target = suggest.rollback(db, actor, rescore=rescore)
    return RollbackOut(rolled_back_from=source, active_version=target)
