"""Request and response bodies of the scoring API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    name: str
    active: bool
    created_by: int | None
    created_at: datetime | None
    activated_at: datetime | None


class ModelOut(ModelVersionOut):
    document: dict[str, Any]


class RescoreOut(BaseModel):
    model_version: int
    leads: int
    changed: int
    crossings: int
    actions: dict[str, int]
    seconds: float
    # Leads whose stored fit score was carried forward (their fit inputs and the fit rules did
    # not change) instead of computed from their attributes.
    fit_carried: int = 0
    history_points: int = 0
    # Scores written: a full rescore under the same model leaves a score whose move does not
    # show (a fraction of a point of decay) as stored.
    written: int = 0


class ActivationOut(BaseModel):
    model: ModelVersionOut
    rescore: RescoreOut | None = None


class HistoryPoint(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    fit: float
    engagement: float
    total: float
    model_version: int


class FiringOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    threshold_id: str
    action: str
    outcome: str
    detail: str | None
    score: float
    model_version: int
    payload: dict[str, Any] | None


class StoredScore(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    model_version: int
    fit: float
    engagement: float
    total: float
    grade: str
    computed_at: datetime


class ThresholdState(BaseModel):
    id: str
    label: str
    score: str
    at: float
    hysteresis: float
    armed: bool
    actions: list[str]


class LeadScoreOut(BaseModel):
    """The score now (computed with the active model), broken into the rules that fired."""

    lead_id: int
    model_version: int
    as_of: datetime
    fit: float
    engagement: float
    total: float
    grade: str
    fit_points: float
    engagement_points: float
    reasons: list[dict[str, Any]]
    thresholds: list[ThresholdState]
    stored: StoredScore | None
    history: list[HistoryPoint]
    firings: list[FiringOut]
