"""Accounts, leads, their engagement events and stage history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, func, select, text
from sqlalchemy.orm import Mapped, column_property, mapped_column

from leadflow.db.base import Base, JSONType, UTCDateTime, utcnow


class Account(Base):
    """An organization. B2B accounts hold several leads (the buying committee)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    name_key: Mapped[str] = mapped_column(String(300), index=True)
    domain: Mapped[str | None] = mapped_column(String(253), unique=True)
    industry: Mapped[str | None] = mapped_column(String(100))
    employee_count: Mapped[int | None] = mapped_column(Integer)
    annual_revenue: Mapped[int | None] = mapped_column(BigInteger)
    country: Mapped[str | None] = mapped_column(String(2))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Activity(Base):
    """An engagement event or a sales touch on a lead."""

    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(30))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    source: Mapped[str | None] = mapped_column(String(100))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        Index("ix_activities_lead_occurred", "lead_id", "occurred_at", "id"),
        Index("ix_activities_type_occurred", "type", "occurred_at"),
    )


class Lead(Base):
    __tablename__ = "leads"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    phone_raw: Mapped[str | None] = mapped_column(String(64))
    job_title: Mapped[str | None] = mapped_column(String(200))
    seniority: Mapped[str | None] = mapped_column(String(30))
    department: Mapped[str | None] = mapped_column(String(60))
    company: Mapped[str | None] = mapped_column(String(300))
    country: Mapped[str | None] = mapped_column(String(2))
    timezone: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(100))
    campaign: Mapped[str | None] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(10), default="marketing")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    stage: Mapped[str] = mapped_column(String(20), default="new")
    status_reason: Mapped[str | None] = mapped_column(Text)
    bad_reason: Mapped[str | None] = mapped_column(String(30))
    bad_candidate_reasons: Mapped[list[str] | None] = mapped_column(JSONType)
    consent: Mapped[str] = mapped_column(String(10), default="unknown")
    unsubscribed: Mapped[bool] = mapped_column(default=False)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    stage_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Derived, not stored: the latest event's time, one seek in ix_activities_lead_occurred. A
    # stored copy cost the event ingest an UPDATE of this wide row per touched lead (a random
    # page of the leads table each), about a fifth of its writes (docs/PERFORMANCE.md, round 6).
    last_activity_at: Mapped[datetime | None] = column_property(
        select(func.max(Activity.occurred_at))
        .where(Activity.lead_id == id)
        .correlate_except(Activity)
        .scalar_subquery()
    )
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"))
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id", ondelete="SET NULL"))
    version: Mapped[int] = mapped_column(Integer, default=1)

    # Keyset pagination orders by (column, id); each common filter/sort has its index.
    __table_args__ = (
        Index("ix_leads_stage_id", "stage", "id"),
        Index("ix_leads_owner_id_id", "owner_id", "id"),
        Index("ix_leads_created_at_id", "created_at", "id"),
        Index("ix_leads_updated_at_id", "updated_at", "id"),
        Index("ix_leads_last_name_id", "last_name", "id"),
        # The source filter and the source report, and the inbox filtered by source and unassigned
        # (or one owner), newest first: one page of this index instead of sorting every lead of
        # the source (4.9 s at 1M). A plain (source) index would be its prefix, so there is none.
        Index("ix_leads_source_owner_created_id", "source", "owner_id", "created_at", "id"),
        # A lead's history includes the leads merged into it (leads.service._history_ids). Partial:
        # almost every lead has none, and `merged_into_id = ?` implies the condition on both
        # databases, so imports and inserts skip this B-tree.
        Index(
            "ix_leads_merged_into_id",
            "merged_into_id",
            sqlite_where=text("merged_into_id IS NOT NULL"),
            postgresql_where=text("merged_into_id IS NOT NULL"),
        ),
    )


class StageChange(Base):
    """Stage history: the evidence of every move, and the raw data of velocity reports."""

    __tablename__ = "stage_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    from_stage: Mapped[str | None] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        Index("ix_stage_changes_lead_at", "lead_id", "at"),
        Index("ix_stage_changes_to_at", "to_stage", "at"),
    )


class ImportJob(Base):
    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(500))
    mapping: Mapped[str] = mapped_column(String(20))
    dry_run: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(20), default="running")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    # Rows processed so far while running (the progress any server process can show).
    rows_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # when rows_done was written
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error_report: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)


class WebForm(Base):
    """A public web-to-lead form, posted to ``/forms/{key}``."""

    __tablename__ = "web_forms"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    redirect_url: Mapped[str] = mapped_column(String(1000))
    source: Mapped[str | None] = mapped_column(String(100))
    campaign: Mapped[str | None] = mapped_column(String(200))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
