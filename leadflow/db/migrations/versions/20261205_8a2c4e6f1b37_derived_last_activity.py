"""leads.last_activity_at is derived from the events, no longer stored

Every ingested batch updated the wide lead row of each lead it touched (a random page of the
leads table per lead, about a fifth of the ingest's writes); the latest event's time is one seek
in ix_activities_lead_occurred, so the lead reads it from there (leadflow.leads.models.Lead).
Nothing indexed or filtered on the column. The downgrade stores it again from the events.

Revision ID: 8a2c4e6f1b37
Revises: 3f1d9a6c2b84
Create Date: 2026-12-05 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import leadflow.db.base

revision: str = "8a2c4e6f1b37"
down_revision: str | None = "3f1d9a6c2b84"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE on both (SQLite >= 3.35): batch mode would rebuild the table and lose its
    # fit_dirty triggers.
    op.execute("ALTER TABLE leads DROP COLUMN last_activity_at")


def downgrade() -> None:
    op.add_column(
        "leads", sa.Column("last_activity_at", leadflow.db.base.UTCDateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE leads SET last_activity_at = "
        "(SELECT max(occurred_at) FROM activities WHERE activities.lead_id = leads.id)"
    )
