"""leads: two index B-trees fewer to maintain on every lead insert

- ix_leads_source (source) goes: it is the prefix of ix_leads_source_owner_created_id (source,
  owner_id, created_at, id), which serves every query the plain one served.
- ix_leads_merged_into_id becomes partial (merged_into_id IS NOT NULL): almost every lead has no
  merge target, the only lookup is `merged_into_id = ?` (a lead's history), which implies the
  condition on SQLite and PostgreSQL.

Each secondary index costs ~2 us of SQLite CPU per imported lead (docs/PERFORMANCE.md).

Revision ID: 9c4e2b7d1a36
Revises: 67af6943b103
Create Date: 2026-11-23 17:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9c4e2b7d1a36"
down_revision: str | None = "67af6943b103"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_NULL = sa.text("merged_into_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_leads_source", table_name="leads")
    op.drop_index("ix_leads_merged_into_id", table_name="leads")
    op.create_index(
        "ix_leads_merged_into_id",
        "leads",
        ["merged_into_id"],
        sqlite_where=_NOT_NULL,
        postgresql_where=_NOT_NULL,
    )


def downgrade() -> None:
    op.drop_index("ix_leads_merged_into_id", table_name="leads")
    op.create_index("ix_leads_merged_into_id", "leads", ["merged_into_id"])
    op.create_index("ix_leads_source", "leads", ["source"])
