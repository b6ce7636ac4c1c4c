"""Reporting facts: one narrow row per lead with the first time it reached each funnel stage and
the hours it spent in each, kept in step with ``leads`` and ``stage_changes`` by an incremental
refresh (see :mod:`leadflow.reports.facts`), so funnel and velocity reports over a million leads
read small covering indexes instead of joining the stage history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.db.base import Base, UTCDateTime


class LeadFunnelFact(Base):
    __tablename__ = "report_lead_funnel"

    # No foreign key: an erased lead's row must outlive it until the refresh subtracts it from
    # the summaries (the refresh finds erasures in the audit trail).
    lead_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    cohort_month: Mapped[str] = mapped_column(String(7))
    source: Mapped[str | None] = mapped_column(String(100))
    campaign: Mapped[str | None] = mapped_column(String(200))
    owner_id: Mapped[int | None] = mapped_column(Integer)
    origin: Mapped[str | None] = mapped_column(String(10))
    stage: Mapped[str] = mapped_column(String(20))
    # 0 lead, 1 mql, 2 sal, 3 sql, 4 opportunity, 5 won (customer): the furthest stage reached.
    reached: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    mql_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sal_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sql_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    opp_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    won_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Whole hours spent in each stage before moving on (NULL while still there or never there).
    hours_lead: Mapped[int | None] = mapped_column(Integer)
    hours_mql: Mapped[int | None] = mapped_column(Integer)
    hours_sal: Mapped[int | None] = mapped_column(Integer)
    hours_sql: Mapped[int | None] = mapped_column(Integer)
    hours_opp: Mapped[int | None] = mapped_column(Integer)

    # Unscoped reports read the summaries below; a rep's or a manager's read this one index
    # (every column they need, so the table itself is never touched).
    __table_args__ = (
        Index(
            "ix_report_lead_funnel_owner_cover",
            "owner_id", "cohort_month", "reached", "source", "campaign",
            "hours_lead", "hours_mql", "hours_sal", "hours_sql", "hours_opp",
        ),
    )  # fmt: skip


class ReportState(Base):
    """Watermarks of the incremental fact refresh."""

    __tablename__ = "report_state"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    int_value: Mapped[int | None] = mapped_column(BigInteger)
    at_value: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FunnelCount(Base):
    """Leads per (cohort month, source, campaign, furthest stage reached): the funnel report for
    everyone who sees all leads reads these few thousand rows, not a million facts. Kept by the
    same refresh as the facts (deltas per refreshed chunk). NULL source/campaign are stored as ''
    so the key can be a primary key on both backends."""

    __tablename__ = "report_funnel_counts"

    cohort_month: Mapped[str] = mapped_column(String(7), primary_key=True)
    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    campaign: Mapped[str] = mapped_column(String(200), primary_key=True)
    reached: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class StageDurationCount(Base):
    """How many leads of a cohort spent ``bucket`` hours in a stage (whole hours under two days,
    whole days under 90 days, whole weeks beyond): the velocity report's histograms."""

    __tablename__ = "report_stage_durations"

    stage: Mapped[str] = mapped_column(String(20), primary_key=True)
    cohort_month: Mapped[str] = mapped_column(String(7), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)
