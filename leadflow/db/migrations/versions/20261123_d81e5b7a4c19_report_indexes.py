"""report indexes: stage-duration buckets of deals, owner-ordered covering indexes, stale deals

Revision ID: d81e5b7a4c19
Revises: c3f9a1d07e62
Create Date: 2026-11-23 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d81e5b7a4c19"
down_revision: str | None = "c3f9a1d07e62"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = [
    "status",
    "owner_id",
    "forecast_month",
    "pipeline_id",
    "currency",
    "forecast_category",
    "amount",
    "probability",
]
_CLOSED = [
    "status", "owner_id", "closed_at", "pipeline_id", "currency", "amount", "created_at", "close_reason",
    "first_touch_source", "last_touch_source",
]  # fmt: skip
_BUCKET = (
    "CASE WHEN seconds_in_previous IS NULL THEN NULL"
    " WHEN seconds_in_previous / 3600 < 48 THEN seconds_in_previous / 3600"
    " WHEN seconds_in_previous / 3600 < 2160 THEN (seconds_in_previous / 86400) * 24"
    " ELSE (seconds_in_previous / 604800) * 168 END"
)


def upgrade() -> None:
    with op.batch_alter_table("opportunity_stage_changes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duration_bucket", sa.Integer(), nullable=True))
        batch_op.drop_index("ix_opportunity_stage_changes_from")
    op.execute(f"UPDATE opportunity_stage_changes SET duration_bucket = {_BUCKET}")
    with op.batch_alter_table("opportunity_stage_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_opportunity_stage_changes_from_bucket", ["from_stage_id", "duration_bucket"], unique=False
        )
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.drop_index("ix_opportunities_report_open")
        batch_op.drop_index("ix_opportunities_report_closed")
        batch_op.create_index("ix_opportunities_report_open", _OPEN, unique=False)
        batch_op.create_index("ix_opportunities_report_closed", _CLOSED, unique=False)
        batch_op.create_index(
            "ix_opportunities_stale", ["status", "stage_id", "last_activity_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.drop_index("ix_opportunities_stale")
        batch_op.drop_index("ix_opportunities_report_closed")
        batch_op.drop_index("ix_opportunities_report_open")
        batch_op.create_index(
            "ix_opportunities_report_open",
            ["status", "forecast_month", "owner_id", "pipeline_id", "currency", "forecast_category", "amount",
             "probability"],
            unique=False,
        )  # fmt: skip
        batch_op.create_index(
            "ix_opportunities_report_closed",
            ["status", "closed_at", "owner_id", "pipeline_id", "currency", "close_reason", "amount",
             "created_at", "first_touch_source", "last_touch_source"],
            unique=False,
        )  # fmt: skip
    with op.batch_alter_table("opportunity_stage_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_opportunity_stage_changes_from_bucket")
        batch_op.create_index(
            "ix_opportunity_stage_changes_from", ["from_stage_id", "seconds_in_previous"], unique=False
        )
        batch_op.drop_column("duration_bucket")
