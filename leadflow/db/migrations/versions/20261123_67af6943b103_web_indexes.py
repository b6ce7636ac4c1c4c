"""web: indexes for the inbox's source filter and the dashboard's lead counts; import progress
on the import's row

- ix_leads_source_owner_created_id: the inbox filtered by source and unassigned (or one owner),
  newest first, reads one page of this index instead of sorting every lead of the source (4.9 s
  at a million leads).
- ix_report_lead_funnel_owner_stage: the dashboard's lead charts for a rep or a manager read the
  reports feature's funnel facts of the visible owners through this covering index, in one pass.
- imports.rows_done, imports.progress_at: the rows an import processed so far and when, written
  while it runs, so its progress survives a restart of the web process and shows from any server
  process (and an import whose process died is seen to have stopped).

Revision ID: 67af6943b103
Revises: 6a1e0c0d2b99
Create Date: 2026-11-23 15:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from leadflow.db.base import UTCDateTime

revision: str = "67af6943b103"
down_revision: str | None = "6a1e0c0d2b99"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_leads_source_owner_created_id", "leads", ["source", "owner_id", "created_at", "id"])
    op.create_index(
        "ix_report_lead_funnel_owner_stage", "report_lead_funnel", ["owner_id", "stage", "source", "reached"]
    )
    op.add_column("imports", sa.Column("rows_done", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("imports", sa.Column("progress_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imports") as batch:
        batch.drop_column("progress_at")
        batch.drop_column("rows_done")
    op.drop_index("ix_report_lead_funnel_owner_stage", table_name="report_lead_funnel")
    op.drop_index("ix_leads_source_owner_created_id", table_name="leads")
