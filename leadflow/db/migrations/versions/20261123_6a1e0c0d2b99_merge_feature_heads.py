"""merge feature heads: the features built in parallel each branched from the scoring revision;
this joins them so the next revision has one parent.

Revision ID: 6a1e0c0d2b99
Revises: 14fd5d5cc805, 1b7cc902cea3, 2e1b7bd0fc27, 4c621e10248c, 8afa208784d2, b7e41c09d2a5, d81e5b7a4c19
Create Date: 2026-11-23 13:34:12.022916
"""

from collections.abc import Sequence

revision: str = "6a1e0c0d2b99"
down_revision: tuple[str, ...] = (
    "14fd5d5cc805",  # engagement state (scoring)
    "1b7cc902cea3",  # webhooks and predictive models
    "2e1b7bd0fc27",  # idempotency keys
    "4c621e10248c",  # cadences and tasks
    "8afa208784d2",  # leads.merged_into_id index (web)
    "b7e41c09d2a5",  # qualification and assignment
    "d81e5b7a4c19",  # pipeline and report indexes
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
