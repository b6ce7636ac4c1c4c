"""leads: index merged_into_id (a lead's history gathers the leads merged into it)

Without it every lead page and opportunity page scanned the whole leads table
(leads.service._history_ids): seconds at a million leads.

Revision ID: 8afa208784d2
Revises: e2572c928afb
Create Date: 2026-11-23 12:55:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8afa208784d2"
down_revision: str | None = "e2572c928afb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_leads_merged_into_id", "leads", ["merged_into_id"])


def downgrade() -> None:
    op.drop_index("ix_leads_merged_into_id", table_name="leads")
