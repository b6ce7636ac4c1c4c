"""web UI: saved lead-inbox segments per user

Revision ID: e2572c928afb
Revises: 5d3d26642bf7
Create Date: 2026-11-23 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import leadflow.db.base

revision: str = "e2572c928afb"
down_revision: str | None = "5d3d26642bf7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("created_at", leadflow.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_web_segments_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_segments")),
    )
    op.create_index("ix_web_segments_user_name", "web_segments", ["user_id", "name"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_web_segments_user_name", table_name="web_segments")
    op.drop_table("web_segments")
