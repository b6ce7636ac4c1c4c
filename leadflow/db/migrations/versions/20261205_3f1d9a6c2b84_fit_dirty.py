"""fit_dirty: the leads whose fit inputs changed, marked by triggers on leads and accounts

The nightly full rescore carries a lead's stored fit forward unless the lead is marked here. The
triggers (leadflow.scoring.models.fit_dirty_ddl, the one definition) mark a lead when a column its
fit reads changes, on any path that writes the database. Every existing lead is marked: fits
stored before the triggers existed cannot be trusted.

Revision ID: 3f1d9a6c2b84
Revises: 9c4e2b7d1a36
Create Date: 2026-12-05 07:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from leadflow.scoring.models import fit_dirty_ddl, fit_dirty_drop_ddl, mark_all_leads

revision: str = "3f1d9a6c2b84"
down_revision: str | None = "9c4e2b7d1a36"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fit_dirty",
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name=op.f("fk_fit_dirty_lead_id_leads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("lead_id", name=op.f("pk_fit_dirty")),
    )
    conn = op.get_bind()
    for sql in fit_dirty_ddl(conn.dialect.name):
        op.execute(sql)
    mark_all_leads(conn)


def downgrade() -> None:
    for sql in fit_dirty_drop_ddl(op.get_bind().dialect.name):
        op.execute(sql)
    op.drop_table("fit_dirty")
