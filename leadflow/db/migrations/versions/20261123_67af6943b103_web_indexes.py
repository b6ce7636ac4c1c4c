"""web: indexes for the inbox's source filter and the dashboard's lead counts

- ix_leads_source_created_id: the inbox filtered by source (with unassigned or an owner) and
  sorted by creation walks it backwards and stops after a page, instead of sorting every lead of
  the source (4.9 s at a million leads).
- ix_report_lead_funnel_stage_owner: the dashboard's leads-by-stage counts read the reports
  feature's funnel facts through this index only (scoped by owner for reps and managers).

Revision ID: 67af6943b103
Revises: 6a1e0c0d2b99
Create Date: 2026-11-23 15:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "67af6943b103"
down_revision: str | None = "6a1e0c0d2b99"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_leads_source_created_id", "leads", ["source", "created_at", "id"])
    op.create_index("ix_report_lead_funnel_stage_owner", "report_lead_funnel", ["stage", "owner_id"])


def downgrade() -> None:
    op.drop_index("ix_report_lead_funnel_stage_owner", table_name="report_lead_funnel")
    op.drop_index("ix_leads_source_created_id", table_name="leads")
