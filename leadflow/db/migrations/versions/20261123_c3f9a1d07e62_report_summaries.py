"""report summaries: funnel counts and stage-duration histograms

Revision ID: c3f9a1d07e62
Revises: b7e41c9a2d53
Create Date: 2026-11-23 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3f9a1d07e62"
down_revision: str | None = "b7e41c9a2d53"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_OLD_INDEXES = {
    "ix_report_lead_funnel_cohort": ["cohort_month", "reached"],
    "ix_report_lead_funnel_source": ["source", "reached", "cohort_month"],
    "ix_report_lead_funnel_campaign": ["campaign", "reached", "cohort_month"],
    "ix_report_lead_funnel_owner": ["owner_id", "cohort_month", "reached"],
    "ix_report_lead_funnel_h_lead": ["hours_lead"],
    "ix_report_lead_funnel_h_mql": ["hours_mql"],
    "ix_report_lead_funnel_h_sal": ["hours_sal"],
    "ix_report_lead_funnel_h_sql": ["hours_sql"],
    "ix_report_lead_funnel_h_opp": ["hours_opp"],
}


def upgrade() -> None:
    op.create_table(
        "report_funnel_counts",
        sa.Column("cohort_month", sa.String(length=7), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("reached", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "cohort_month", "source", "campaign", "reached", name=op.f("pk_report_funnel_counts")
        ),
    )
    op.create_table(
        "report_stage_durations",
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("cohort_month", sa.String(length=7), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stage", "cohort_month", "bucket", name=op.f("pk_report_stage_durations")),
    )
    # Facts outlive an erased lead until the refresh subtracts them from the summaries; the
    # unscoped reports read the summaries, the scoped ones one covering index.
    with op.batch_alter_table("report_lead_funnel", schema=None) as batch_op:
        batch_op.drop_constraint("fk_report_lead_funnel_lead_id_leads", type_="foreignkey")
        for name in _OLD_INDEXES:
            batch_op.drop_index(name)
        batch_op.create_index(
            "ix_report_lead_funnel_owner_cover",
            [
                "owner_id",
                "cohort_month",
                "reached",
                "source",
                "campaign",
                "hours_lead",
                "hours_mql",
                "hours_sal",
                "hours_sql",
                "hours_opp",
            ],
            unique=False,
        )
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("forecast_month", sa.String(length=7), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        opened, closed = (
            "to_char(expected_close_date, 'YYYY-MM')",
            "to_char(closed_at AT TIME ZONE 'UTC', 'YYYY-MM')",
        )
    else:
        opened, closed = "strftime('%Y-%m', expected_close_date)", "strftime('%Y-%m', closed_at)"
    month = f"CASE WHEN status = 'open' THEN {opened} ELSE {closed} END"
    op.execute(f"UPDATE opportunities SET forecast_month = {month}")
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.create_index(
            "ix_opportunities_report_open",
            [
                "status",
                "forecast_month",
                "owner_id",
                "pipeline_id",
                "currency",
                "forecast_category",
                "amount",
                "probability",
            ],
            unique=False,
        )
        batch_op.create_index(
            "ix_opportunities_report_closed",
            [
                "status",
                "closed_at",
                "owner_id",
                "pipeline_id",
                "currency",
                "close_reason",
                "amount",
                "created_at",
                "first_touch_source",
                "last_touch_source",
            ],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.drop_index("ix_opportunities_report_closed")
        batch_op.drop_index("ix_opportunities_report_open")
        batch_op.drop_column("forecast_month")
    with op.batch_alter_table("report_lead_funnel", schema=None) as batch_op:
        batch_op.drop_index("ix_report_lead_funnel_owner_cover")
        for name, columns in _OLD_INDEXES.items():
            batch_op.create_index(name, columns, unique=False)
        batch_op.create_foreign_key(
            "fk_report_lead_funnel_lead_id_leads", "leads", ["lead_id"], ["id"], ondelete="CASCADE"
        )
    op.drop_table("report_stage_durations")
    op.drop_table("report_funnel_counts")
