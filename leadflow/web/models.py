"""Web UI state kept per user: saved inbox segments."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.db.base import Base, UTCDateTime, utcnow


class SavedSegment(Base):
    """A named lead-inbox filter (its query string), private to the user who saved it."""

    __tablename__ = "web_segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    query: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_web_segments_user_name", "user_id", "name", unique=True),)
