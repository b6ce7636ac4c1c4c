"""Scoring tables: model versions, current scores, score history and threshold firings."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import CreateIndex

from leadflow.db.base import Base, JSONType, UTCDateTime, utcnow


class ScoringModelVersion(Base):
    """One version of a scoring model document; exactly one is active at a time."""

    __tablename__ = "scoring_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    active: Mapped[bool] = mapped_column(default=False, index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LeadScore(Base):
    """A lead's current score under the model version that computed it."""

    __tablename__ = "lead_scores"

    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer)
    fit: Mapped[float] = mapped_column(Float)
    engagement: Mapped[float] = mapped_column(Float)
    total: Mapped[float] = mapped_column(Float)
    grade: Mapped[str] = mapped_column(String(1))
    # The rules that fired with their points (the full explanation, with the events behind each
    # rule, is computed on request from the lead's events).
    explanation: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    # Threshold id -> armed (true: the next upward crossing fires).
    armed: Mapped[dict[str, bool] | None] = mapped_column(JSONType)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_lead_scores_total", "total"),)


# A full rescore on SQLite that rewrites most scores drops this index while it writes and builds
# it again at the end (one sorted build instead of a random index update per score). A rescore
# killed in between leaves it missing: the next full rescore and every migration run (``leadflow
# init``/``serve``/CLI commands) build it again.
TOTAL_INDEX = next(ix for ix in cast(Table, LeadScore.__table__).indexes if ix.name == "ix_lead_scores_total")


def ensure_total_index(conn: Connection) -> None:
    """Create ``ix_lead_scores_total`` if it is missing (checked with a read first: no write lock
    when it is there)."""

    if all(ix["name"] != TOTAL_INDEX.name for ix in inspect(conn).get_indexes(LeadScore.__tablename__)):
        conn.execute(CreateIndex(TOTAL_INDEX, if_not_exists=True))


class ScoreHistory(Base):
    """A point of a lead's score over time (written when the score changes)."""

    __tablename__ = "score_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    fit: Mapped[float] = mapped_column(Float)
    engagement: Mapped[float] = mapped_column(Float)
    total: Mapped[float] = mapped_column(Float)
    model_version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_score_history_lead_at", "lead_id", "at"),)


class ThresholdFiring(Base):
    """One action of a threshold crossing, and what became of it."""

    __tablename__ = "threshold_firings"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    threshold_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(30))
    # done (applied here), emitted (a domain event for another feature), skipped (not legal or
    # not applicable for this lead, see detail), failed.
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    model_version: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        Index("ix_threshold_firings_lead_at", "lead_id", "at"),
        Index("ix_threshold_firings_at", "at"),
    )


class LeadEngagement(Base):
    """A lead's engagement rolled forward (see :mod:`leadflow.core.scoring`): per engagement rule,
    the decayed sums of its closed cap periods and its open period, relative to ``ref``, so that
    rescoring reads one row per lead instead of every event. ``ruleset`` is the
    :func:`~leadflow.core.scoring.engagement_key` of the rules the state was built for; a row of
    another ruleset is rebuilt from the lead's events when used."""

    __tablename__ = "lead_engagement"

    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    ruleset: Mapped[str] = mapped_column(String(32))
    ref: Mapped[float] = mapped_column(Float)  # epoch seconds the sums are relative to
    # The lead's events folded in: how many, the highest id, the latest occurred_at (epoch
    # seconds). A count that does not add up (events moved by a merge, or committed out of id
    # order) rebuilds the state from the events.
    events: Mapped[int] = mapped_column(Integer)
    last_event_id: Mapped[int] = mapped_column(Integer)
    max_at: Mapped[float] = mapped_column(Float)
    state: Mapped[bytes] = mapped_column(LargeBinary)  # float64, rules x STATE_FIELDS


class EngagementBuild(Base):
    """The ruleset whose state was last built for every lead from all events: with the active
    model's ruleset here, a full rescore needs no pass over the events."""

    __tablename__ = "engagement_builds"

    ruleset: Mapped[str] = mapped_column(String(32), primary_key=True)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
