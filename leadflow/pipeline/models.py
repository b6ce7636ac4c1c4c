"""Pipelines with ordered stages, opportunities, their stage history, win/loss reasons and the
buying signals that make a prospect opportunity-ready."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.core.pipeline import duration_bucket, month_key
from leadflow.db.base import Base, JSONType, UTCDateTime, utcnow


class Pipeline(Base):
    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    is_default: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class PipelineStage(Base):
    __tablename__ = "pipeline_stages"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    probability: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10), default="open")  # open | won | lost
    rotting_days: Mapped[int | None] = mapped_column(Integer)
    forecast_category: Mapped[str] = mapped_column(String(20), default="pipeline")
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        UniqueConstraint("pipeline_id", "key", name="uq_pipeline_stages_pipeline_key"),
        Index("ix_pipeline_stages_pipeline_position", "pipeline_id", "position"),
    )


class OutcomeReason(Base):
    """A configurable won or lost reason (seeded with common ones; admins add their own)."""

    __tablename__ = "outcome_reasons"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # won | lost
    key: Mapped[str] = mapped_column(String(60))
    label: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (UniqueConstraint("kind", "key", name="uq_outcome_reasons_kind_key"),)


class Opportunity(Base):
    __tablename__ = "opportunities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"), index=True)
    # The primary contact: the converted lead, or an existing lead of the account it was merged into.
    contact_lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="RESTRICT"))
    stage_id: Mapped[int] = mapped_column(ForeignKey("pipeline_stages.id", ondelete="RESTRICT"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    amount: Mapped[float] = mapped_column(Numeric(16, 2, asdecimal=False), default=0)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    expected_close_date: Mapped[date | None] = mapped_column(Date)
    probability: Mapped[int] = mapped_column(Integer)
    forecast_category: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | won | lost
    close_reason: Mapped[str | None] = mapped_column(String(60))
    close_note: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stage_entered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Attribution, fixed when the deal opens: the lead's original source (first touch) and the
    # channel of the last marketing touch before the conversion (last touch).
    first_touch_source: Mapped[str | None] = mapped_column(String(100))
    first_touch_campaign: Mapped[str | None] = mapped_column(String(200))
    last_touch_source: Mapped[str | None] = mapped_column(String(100))
    last_touch_campaign: Mapped[str | None] = mapped_column(String(200))
    signals: Mapped[list[str] | None] = mapped_column(JSONType)
    # YYYY-MM of the expected close date (open deals) or of the close (closed ones), kept by the
    # listener below: the forecast groups by it from a covering index, no date function per row.
    forecast_month: Mapped[str | None] = mapped_column(String(7))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        Index("ix_opportunities_status_close", "status", "expected_close_date"),
        Index("ix_opportunities_owner_status", "owner_id", "status"),
        Index("ix_opportunities_pipeline_stage", "pipeline_id", "stage_id"),
        Index("ix_opportunities_status_closed_at", "status", "closed_at"),
        # Covering indexes of the reports (read without touching the table), owner second so
        # that per-owner aggregates stream in index order.
        Index(
            "ix_opportunities_report_open",
            "status", "owner_id", "forecast_month", "pipeline_id", "currency", "forecast_category",
            "amount", "probability",
        ),
        Index(
            "ix_opportunities_report_closed",
            "status", "owner_id", "closed_at", "pipeline_id", "currency", "amount", "created_at",
            "close_reason", "first_touch_source", "last_touch_source",
        ),
        Index("ix_opportunities_stale", "status", "stage_id", "last_activity_at"),
    )  # fmt: skip


@event.listens_for(Opportunity, "before_insert")
@event.listens_for(Opportunity, "before_update")
def _forecast_month(_mapper: Any, _conn: Any, opp: Opportunity) -> None:
    opp.forecast_month = month_key(opp.expected_close_date if opp.status == "open" else opp.closed_at)


class OpportunityStageChange(Base):
    """Every stage move of a deal: who, when, why, and how long it sat in the stage it left."""

    __tablename__ = "opportunity_stage_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunities.id", ondelete="CASCADE"))
    from_stage_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_stages.id", ondelete="SET NULL"))
    to_stage_id: Mapped[int] = mapped_column(ForeignKey("pipeline_stages.id", ondelete="RESTRICT"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)
    reason_key: Mapped[str | None] = mapped_column(String(60))
    seconds_in_previous: Mapped[int | None] = mapped_column(Integer)
    duration_bucket: Mapped[int | None] = mapped_column(Integer)  # of seconds_in_previous, for velocity
    amount: Mapped[float | None] = mapped_column(Numeric(16, 2, asdecimal=False))

    __table_args__ = (
        Index("ix_opportunity_stage_changes_opp_at", "opportunity_id", "at"),
        Index("ix_opportunity_stage_changes_from_bucket", "from_stage_id", "duration_bucket"),
    )


@event.listens_for(OpportunityStageChange, "before_insert")
def _bucket(_mapper: Any, _conn: Any, change: OpportunityStageChange) -> None:
    change.duration_bucket = duration_bucket(change.seconds_in_previous)


class BuyingSignal(Base):
    """A buying signal seen on a lead (one per activity): the evidence that it is
    opportunity-ready."""

    __tablename__ = "buying_signals"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    activity_id: Mapped[int | None] = mapped_column(
        ForeignKey("activities.id", ondelete="SET NULL"), unique=True
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    opportunity_id: Mapped[int | None] = mapped_column(ForeignKey("opportunities.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_buying_signals_lead_occurred", "lead_id", "occurred_at"),)


class SignalRuleRow(Base):
    """The automatic conversion rule (one row per pipeline at most; inactive by default)."""

    __tablename__ = "opportunity_signal_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    signals: Mapped[list[str]] = mapped_column(JSONType)
    min_signals: Mapped[int] = mapped_column(Integer, default=1)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    stage_key: Mapped[str | None] = mapped_column(String(60))
    amount: Mapped[float] = mapped_column(Numeric(16, 2, asdecimal=False), default=0)
    close_in_days: Mapped[int] = mapped_column(Integer, default=60)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
