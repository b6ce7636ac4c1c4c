"""engagement state rolled forward per lead (rescoring without a pass over the events)

Revision ID: 14fd5d5cc805
Revises: 5d3d26642bf7
Create Date: 2026-11-23 11:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import leadflow.db.base

revision: str = "14fd5d5cc805"
down_revision: str | None = "5d3d26642bf7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lead_engagement",
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("ruleset", sa.String(length=32), nullable=False),
        sa.Column("ref", sa.Float(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("last_event_id", sa.Integer(), nullable=False),
        sa.Column("max_at", sa.Float(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name=op.f("fk_lead_engagement_lead_id_leads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("lead_id", name=op.f("pk_lead_engagement")),
    )
    op.create_table(
        "engagement_builds",
        sa.Column("ruleset", sa.String(length=32), nullable=False),
        sa.Column("built_at", leadflow.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ruleset", name=op.f("pk_engagement_builds")),
    )


def downgrade() -> None:
    op.drop_table("engagement_builds")
    op.drop_table("lead_engagement")
