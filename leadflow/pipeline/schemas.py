"""Request and response bodies of the pipelines and opportunities API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["open", "won", "lost"]
Category = Literal["pipeline", "best_case", "commit", "closed", "omitted"]
SignalKind = Literal["demo_request", "pricing_request", "trial_start", "decision_timeline"]


class StageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(..., min_length=1, max_length=60, examples=["proposal"])
    name: str | None = Field(None, max_length=200)
    probability: int = Field(..., ge=0, le=100, description="Default win probability in percent")
    kind: Kind = "open"
    rotting_days: int | None = Field(None, ge=1, description="Flag a deal idle in this stage longer")
    forecast_category: Category | None = None


class StageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    name: str
    position: int
    probability: int
    kind: str
    rotting_days: int | None
    forecast_category: str


class PipelineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(..., min_length=1, max_length=60, examples=["enterprise"])
    name: str = Field(..., min_length=1, max_length=200)
    currency: str = Field("USD", min_length=3, max_length=3)
    is_default: bool = False
    stages: list[StageIn] | None = Field(None, description="Ordered stages; the six defaults when omitted")


class PipelineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    name: str
    currency: str
    is_default: bool
    active: bool
    version: int
    stages: list[StageOut] = []


class StagesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stages: list[StageIn]
    reason: str | None = Field(None, max_length=2000)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["won", "lost"]
    key: str = Field(..., min_length=1, max_length=60)
    label: str = Field(..., min_length=1, max_length=200)


class ReasonOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    key: str
    label: str


class NewAccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=300)
    domain: str | None = Field(None, max_length=253)
    industry: str | None = Field(None, max_length=100)
    employee_count: int | None = Field(None, ge=0)
    annual_revenue: int | None = Field(None, ge=0)
    country: str | None = Field(None, max_length=100)


class ConvertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=300, description="Default: '<account> - <pipeline>'")
    amount: float = Field(0.0, ge=0, lt=10**13)
    currency: str | None = Field(None, min_length=3, max_length=3, description="Default: the pipeline's")
    expected_close_date: date | None = Field(None, description="Default: 60 days from today")
    pipeline: int | str | None = Field(None, description="Pipeline id or key; default: the default pipeline")
    stage: str | None = Field(None, description="Stage key; default: the first open stage")
    owner_id: int | None = Field(None, description="Default: the lead's owner, else you")
    probability: int | None = Field(None, ge=0, le=100, description="Default: the stage's")
    forecast_category: Category | None = None
    account_id: int | None = Field(None, description="An existing account (only its empty fields are filled)")
    account: NewAccountIn | None = Field(None, description="Or a new account")
    contact_lead_id: int | None = Field(
        None, description="An existing contact of the account (only its empty fields are filled)"
    )
    signals: list[SignalKind] = []
    reason: str | None = Field(None, max_length=2000)


class OpportunityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    lead_id: int | None
    contact_lead_id: int | None
    account_id: int | None
    pipeline_id: int
    stage_id: int
    stage: str | None = None
    owner_id: int | None
    amount: float
    currency: str
    expected_close_date: date | None
    probability: int
    weighted_amount: float | None = None
    forecast_category: str
    status: str
    close_reason: str | None
    close_note: str | None
    closed_at: datetime | None
    stage_entered_at: datetime
    rotting: bool | None = None
    first_touch_source: str | None
    last_touch_source: str | None
    signals: list[str] | None
    created_at: datetime
    updated_at: datetime
    version: int


class OpportunityPage(BaseModel):
    items: list[OpportunityOut]
    next_cursor: str | None


class OpportunityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=300)
    amount: float | None = Field(None, ge=0, lt=10**13)
    currency: str | None = Field(None, min_length=3, max_length=3)
    expected_close_date: date | None = None
    owner_id: int | None = None
    probability: int | None = Field(None, ge=0, le=100)
    forecast_category: Category | None = None
    version: int | None = Field(None, description="The version you read; or send it in If-Match")
    reason: str | None = Field(None, max_length=2000)


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str = Field(..., examples=["closed_lost"])
    reason_key: str | None = Field(None, description="Won/lost reason key (required for closed lost)")
    reason: str | None = Field(None, max_length=2000, description="Why, in words")
    version: int | None = None
    lead_stage: Literal["recycled", "nurture", "unqualified"] | None = Field(
        None, description="On a loss: also move the lead out of the opportunity stage"
    )


class ReopenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str | None = Field(None, description="Open stage; default: the one it was closed from")
    reason: str = Field(..., min_length=1, max_length=2000)
    version: int | None = None


class StageSpanOut(BaseModel):
    stage_key: str
    stage_name: str
    entered_at: datetime
    left_at: datetime | None
    days: float
    actor_id: int | None
    reason: str | None
    reason_key: str | None


class SignalOut(BaseModel):
    kind: str
    occurred_at: datetime
    activity_id: int | None
    detail: dict[str, Any] | None


class ReadyOut(BaseModel):
    lead_id: int
    name: str
    company: str | None
    owner_id: int | None
    signals: list[SignalOut]


class DecisionTimelineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_date: date
    note: str | None = Field(None, max_length=2000)


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool = True
    signals: list[SignalKind] = ["demo_request", "pricing_request", "trial_start", "decision_timeline"]
    min_signals: int = Field(1, ge=1, le=4)
    pipeline: int | str | None = None
    stage: str | None = None
    amount: float = Field(0.0, ge=0, lt=10**13)
    close_in_days: int = Field(60, ge=1, le=3650)


class RuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    active: bool
    signals: list[str]
    min_signals: int
    pipeline_id: int
    stage_key: str | None
    amount: float
    close_in_days: int
