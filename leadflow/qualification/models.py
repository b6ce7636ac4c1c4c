"""Needs assessments, discovery calls, qualification settings, per-lead qualification overrides
and the marketing -> sales handoff queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.db.base import Base, JSONType, UTCDateTime, utcnow


class QuestionnaireDef(Base):
    """A needs-assessment questionnaire (questions, answer types, order, qualifying rule)."""

    __tablename__ = "questionnaires"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    is_default: Mapped[bool] = mapped_column(default=False)
    # The public web form: posted to /forms/assessments/{public_key}, then 303 to redirect_url.
    public_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    redirect_url: Mapped[str | None] = mapped_column(String(1000))
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FrameworkDef(Base):
    """A discovery-call qualification framework (BANT, MEDDIC, CHAMP or custom)."""

    __tablename__ = "qualification_frameworks"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    is_default: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class QualificationSetting(Base):
    """Small JSON documents: the handoff SLA ("sla") and the ideal customer profile ("icp")."""

    __tablename__ = "qualification_settings"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AssessmentRecord(Base):
    """A completed needs assessment: the evidence of a move to SAL (or nurture/unqualified)."""

    __tablename__ = "needs_assessments"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    questionnaire_key: Mapped[str] = mapped_column(String(64))
    questionnaire_version: Mapped[int] = mapped_column(Integer, default=1)
    channel: Mapped[str] = mapped_column(String(20))  # web_form | api | call
    answers: Mapped[dict[str, Any]] = mapped_column(JSONType)
    outcome: Mapped[str] = mapped_column(String(20))  # sal | nurture | unqualified
    reason: Mapped[str | None] = mapped_column(Text)
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    applied_stage: Mapped[str | None] = mapped_column(String(20))
    not_applied_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_needs_assessments_lead_id", "lead_id", "id"),)


class DiscoveryCallRecord(Base):
    """A discovery call: each criterion's answer and rating, notes and the outcome."""

    __tablename__ = "discovery_calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    framework_key: Mapped[str] = mapped_column(String(64))
    framework_version: Mapped[int] = mapped_column(Integer, default=1)
    criteria: Mapped[dict[str, Any]] = mapped_column(JSONType)
    total: Mapped[int] = mapped_column(Integer, default=0)
    recommendation: Mapped[str] = mapped_column(String(20))  # sql | unqualified
    outcome: Mapped[str] = mapped_column(String(20))  # sql | unqualified | pending
    reason: Mapped[str | None] = mapped_column(Text)
    override_reason: Mapped[str | None] = mapped_column(Text)
    referral: Mapped[str | None] = mapped_column(Text)
    recommended_vendor: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text)
    held_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    applied_stage: Mapped[str | None] = mapped_column(String(20))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_discovery_calls_lead_id", "lead_id", "id"),)


class LeadQualification(Base):
    """What is stored per lead beyond the records: the buying role and manual level overrides.
    Derived level statuses are computed from the records when read, so they never go stale."""

    __tablename__ = "lead_qualifications"

    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    buying_role: Mapped[str | None] = mapped_column(String(20))
    buying_role_source: Mapped[str | None] = mapped_column(String(20))  # call | manual
    overrides: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Handoff(Base):
    """An MQL in the sales queue: the SLA clock for the first touch and sales' verdict."""

    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    source: Mapped[str | None] = mapped_column(String(100))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|accepted|rejected|closed
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sla_minutes: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    first_touch_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    touch_kind: Mapped[str | None] = mapped_column(String(30))
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    rejection_reason: Mapped[str | None] = mapped_column(String(40))
    rejection_note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_handoffs_lead_id", "lead_id", "id"),
        Index("ix_handoffs_status_due", "status", "due_at"),
        Index("ix_handoffs_queued_at", "queued_at"),
    )
