"""Web UI state kept per user: saved inbox segments."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.db.base import Base, UTCDateTime, utcnow
from leadflow.reports.models import LeadFunnelFact


class SavedSegment(Base):
    """A named lead-inbox filter (its query string), private to the user who saved it."""

    __tablename__ = "web_segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    query: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_web_segments_user_name", "user_id", "name", unique=True),)


# An index the web UI's queries need on another feature's table (declared here, next to the
# revision that creates it, 20261123_67af6943b103_web_indexes.py; the inbox's source index made
# there is declared with the leads, leads/models.py): the dashboard's scoped lead charts (stage,
# source, funnel step) read the funnel facts of the visible owners through this one covering
# index, in one pass.
Index(
    "ix_report_lead_funnel_owner_stage",
    LeadFunnelFact.owner_id,
    LeadFunnelFact.stage,
    LeadFunnelFact.source,
    LeadFunnelFact.reached,
)
