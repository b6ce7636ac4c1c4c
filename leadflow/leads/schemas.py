"""Request and response bodies of the leads, accounts and activities API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from leadflow.core.engagement import ActivityType
from leadflow.core.lifecycle import BadReason, Origin, Stage


class LeadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    email: str | None = Field(None, max_length=254, examples=["ada@acme.io"])
    phone: str | None = Field(None, max_length=64, examples=["+1 415 555 0100"])
    job_title: str | None = Field(None, max_length=200)
    seniority: str | None = None
    department: str | None = Field(None, max_length=60)
    company: str | None = Field(None, max_length=300)
    website: str | None = Field(None, max_length=500)
    industry: str | None = Field(None, max_length=100)
    employee_count: int | None = Field(None, ge=0)
    annual_revenue: int | None = Field(None, ge=0)
    country: str | None = Field(None, max_length=100, examples=["DE"])
    timezone: str | None = Field(None, max_length=64, examples=["Europe/Berlin"])
    source: str | None = Field(None, max_length=100)
    campaign: str | None = Field(None, max_length=200)
    origin: Origin | None = None
    owner_id: int | None = None
    account_id: int | None = None
    consent: Literal["unknown", "granted", "denied"] | None = None
    unsubscribed: bool | None = None
    attributes: dict[str, Any] | None = None


class LeadCreate(LeadIn):
    stage: Stage = Stage.NEW
    reason: str | None = Field(None, max_length=2000)
    evidence: dict[str, Any] | None = None
    bad_reason: BadReason | None = None


class LeadUpdate(LeadIn):
    version: int | None = Field(None, description="The version you read; or send it in If-Match")
    reason: str | None = Field(None, max_length=2000)


class LeadOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    phone_raw: str | None
    job_title: str | None
    seniority: str | None
    department: str | None
    company: str | None
    country: str | None
    timezone: str | None
    source: str | None
    campaign: str | None
    origin: Origin
    owner_id: int | None
    account_id: int | None
    stage: Stage
    status_reason: str | None
    bad_reason: BadReason | None
    bad_candidate_reasons: list[str] | None
    consent: str
    unsubscribed: bool
    attributes: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    stage_changed_at: datetime
    last_activity_at: datetime | None
    merged_into_id: int | None
    version: int


class LeadPage(BaseModel):
    items: list[LeadOut]
    next_cursor: str | None
    total: int | None = None


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    leads: list[LeadIn] = Field(..., min_length=1, max_length=1000)
    on_duplicate: Literal["error", "update"] = "update"


class BatchItemOut(BaseModel):
    index: int
    status: Literal["created", "updated", "error"]
    lead_id: int | None
    errors: list[dict[str, Any]]


class BatchOut(BaseModel):
    created: int
    updated: int
    failed: int
    results: list[BatchItemOut]


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Stage
    reason: str | None = Field(None, max_length=2000)
    bad_reason: BadReason | None = None
    evidence: dict[str, Any] | None = Field(
        None,
        description="Typed evidence: {'kind': 'needs_assessment'|'discovery_call'|'score_threshold'|"
        "'marketing_review'|'opportunity_opened'|'deal_won', ...}",
        examples=[
            {"kind": "needs_assessment", "answers": {"need": "pipeline visibility"}, "qualified": True}
        ],
    )
    version: int | None = None


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loser_id: int
    reason: str | None = Field(None, max_length=2000)


class StageChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    lead_id: int
    from_stage: str | None
    to_stage: str
    at: datetime
    actor_id: int | None
    reason: str | None
    evidence: dict[str, Any] | None


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor_id: int | None
    actor_label: str
    entity_type: str
    entity_id: int
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None
    evidence: dict[str, Any] | None


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=300)
    domain: str | None = Field(None, max_length=253)
    industry: str | None = Field(None, max_length=100)
    employee_count: int | None = Field(None, ge=0)
    annual_revenue: int | None = Field(None, ge=0)
    country: str | None = Field(None, max_length=100)
    owner_id: int | None = None


class AccountCreate(AccountIn):
    name: str = Field(..., min_length=1, max_length=300)


class AccountUpdate(AccountIn):
    version: int | None = None


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    domain: str | None
    industry: str | None
    employee_count: int | None
    annual_revenue: int | None
    country: str | None
    owner_id: int | None
    created_at: datetime
    updated_at: datetime
    version: int
    lead_count: int | None = None


class AccountPage(BaseModel):
    items: list[AccountOut]
    next_cursor: str | None


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lead_id: int | None = None
    email: str | None = Field(None, max_length=254)
    type: ActivityType
    occurred_at: datetime | None = None
    properties: dict[str, Any] | None = None
    external_id: str | None = Field(None, max_length=200, description="Idempotency key of the event")
    source: str | None = Field(None, max_length=100)


class EventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(..., min_length=1, max_length=10_000)


class EventBatchOut(BaseModel):
    accepted: int
    duplicates: int
    errors: list[dict[str, Any]]


class ActivityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ActivityType
    occurred_at: datetime | None = None
    properties: dict[str, Any] | None = None


class ActivityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    lead_id: int
    type: str
    occurred_at: datetime
    properties: dict[str, Any] | None
    external_id: str | None
    source: str | None
    actor_id: int | None
    created_at: datetime


class ActivityPage(BaseModel):
    items: list[ActivityOut]
    next_cursor: str | None
