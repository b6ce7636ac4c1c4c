"""Request and response bodies of the qualification and assignment API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuestionnaireIn(Strict):
    definition: dict[str, Any] = Field(..., description="key, name, questions (ordered), rule, thank_you")
    make_default: bool = False
    redirect_url: str | None = Field(None, max_length=1000, description="Thank-you page of the public form")
    version: int | None = Field(None, description="The version you read (optimistic concurrency)")


class QuestionnaireOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    name: str
    definition: dict[str, Any]
    is_default: bool
    public_key: str | None
    redirect_url: str | None
    active: bool
    version: int
    post_url: str | None = None


class FrameworkIn(Strict):
    definition: dict[str, Any] | None = Field(None, description="key, name, criteria, min_total")
    preset: Literal["bant", "meddic", "champ"] | None = None
    make_default: bool = False
    version: int | None = None


class FrameworkOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    name: str
    definition: dict[str, Any]
    is_default: bool
    active: bool
    version: int


class SettingIn(Strict):
    value: dict[str, Any]
    version: int | None = None


class AssessmentIn(Strict):
    answers: dict[str, Any] = Field(
        ..., examples=[{"need": "Cut onboarding time", "timeline": "this_quarter"}]
    )
    questionnaire: str | None = Field(None, description="Questionnaire key; the default one when omitted")
    channel: Literal["api", "call"] = "api"
    apply: bool = Field(True, description="Make the stage move the assessment decides, when legal")


class AssessmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    lead_id: int
    questionnaire_key: str
    questionnaire_version: int
    channel: str
    answers: dict[str, Any]
    outcome: str
    reason: str | None
    checks: list[dict[str, Any]] | None
    applied_stage: str | None
    not_applied_reason: str | None
    created_by: int | None
    created_at: datetime


class AssessmentResultOut(BaseModel):
    assessment: AssessmentOut
    outcome: str
    reason: str
    applied: bool
    not_applied_reason: str | None
    stage: str
    follow_up_due_at: datetime | None


class CriterionIn(Strict):
    answer: str = Field("", max_length=5000)
    rating: int = Field(0, ge=0, le=3, description="0 not met / unknown, 1 weak, 2 met, 3 strong")


class CallIn(Strict):
    framework: str | None = Field(None, description="Framework key; the default (BANT) when omitted")
    criteria: dict[str, CriterionIn]
    outcome: Literal["sql", "unqualified", "pending"]
    reason: str | None = Field(None, max_length=2000, description="Required for unqualified")
    override_reason: str | None = Field(
        None, max_length=2000, description="Required against the recommendation"
    )
    referral: str | None = Field(None, max_length=2000)
    recommended_vendor: str | None = Field(None, max_length=200)
    notes: str | None = Field(None, max_length=20000)
    held_at: datetime | None = None
    buying_role: Literal["decision_maker", "influencer", "user", "unknown"] | None = None


class CallOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    lead_id: int
    framework_key: str
    framework_version: int
    criteria: dict[str, Any]
    total: int
    recommendation: str
    outcome: str
    reason: str | None
    override_reason: str | None
    referral: str | None
    recommended_vendor: str | None
    notes: str | None
    held_at: datetime
    applied_stage: str | None
    created_by: int | None
    created_at: datetime


class CallResultOut(BaseModel):
    call: CallOut
    recommendation: str
    recommendation_reason: str
    unmet: list[str]
    stage: str


class LevelIn(Strict):
    status: Literal["qualified", "partial", "unqualified", "unknown"] | None = Field(
        ..., description="null clears the override (back to the derived status)"
    )
    reason: str | None = Field(None, max_length=2000)


class RoleIn(Strict):
    role: Literal["decision_maker", "influencer", "user", "unknown"]
    reason: str = Field(..., max_length=2000)


class HandoffOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    lead_id: int
    source: str | None
    owner_id: int | None
    status: str
    queued_at: datetime
    due_at: datetime
    sla_minutes: int
    timezone: str
    first_touch_at: datetime | None
    touch_kind: str | None
    breached_at: datetime | None
    decided_at: datetime | None
    decided_by: int | None
    rejection_reason: str | None
    rejection_note: str | None


class QueueItemOut(BaseModel):
    handoff: HandoffOut
    lead_name: str | None
    email: str | None
    stage: str
    overdue: bool


class RejectIn(Strict):
    reason: str = Field(
        ..., max_length=40, description="A rejection reason key (settings: handoff.rejection_reasons)"
    )
    note: str | None = Field(None, max_length=2000)


class TouchIn(Strict):
    at: datetime | None = None


class BreachCheckOut(BaseModel):
    checked_at: datetime
    breached: list[HandoffOut]


class RuleIn(Strict):
    name: str = Field(..., max_length=200)
    strategy: Literal["account_owner", "user", "round_robin"]
    match: dict[str, list[str]] = Field(
        default_factory=dict, description="countries, regions, industries, sources"
    )
    user_id: int | None = None
    team: str | None = None


class RuleCreate(RuleIn):
    position: int | None = Field(None, ge=1, description="1 = evaluated first; default: last")


class RuleUpdate(RuleIn):
    active: bool | None = None
    version: int | None = None


class RuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    position: int
    name: str
    definition: dict[str, Any]
    active: bool
    last_user_id: int | None
    version: int


class OrderIn(Strict):
    ids: list[int]


class CapacityIn(Strict):
    max_open_leads: int | None = Field(..., ge=0, description="null removes the cap")


class ApplyIn(Strict):
    lead_ids: list[int] | None = Field(None, max_length=100_000)
    unassigned: bool = Field(False, description="Every unassigned open (MQL/SAL/SQL) lead")
    force: bool = Field(False, description="Re-route leads that already have an owner")


class DecisionOut(BaseModel):
    lead_id: int
    owner_id: int | None
    rule_id: int | None
    rule: str | None
    explanation: str


class ApplyOut(BaseModel):
    considered: int
    changed: int
    unassigned: int
    decisions: list[DecisionOut]
