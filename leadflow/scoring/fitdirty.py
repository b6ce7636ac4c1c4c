"""The leads whose fit inputs changed since their fit was computed (``fit_dirty``, marked by
database triggers: see :class:`leadflow.scoring.models.FitDirty`), for the full rescore."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from leadflow.scoring.models import FitDirty

_TABLE = cast(Table, FitDirty.__table__)


def take_fit_dirty(session: Session, lo: int, hi: int) -> list[int]:
    """Remove and return the marked lead ids in [lo, hi), sorted, with one ``DELETE ...
    RETURNING``: in the caller's transaction, so the marks come back if it rolls back. A lead
    marked by a transaction that commits after this statement stays marked for the next taker."""

    rows = session.execute(
        delete(_TABLE).where(_TABLE.c.lead_id >= lo, _TABLE.c.lead_id < hi).returning(_TABLE.c.lead_id)
    )
    return sorted(int(r[0]) for r in rows)


def fit_dirty_ids(session: Session, lo: int, hi: int) -> list[int]:
    """The marked lead ids in [lo, hi), sorted (read only)."""

    stmt = (
        select(_TABLE.c.lead_id)
        .where(_TABLE.c.lead_id >= lo, _TABLE.c.lead_id < hi)
        .order_by(_TABLE.c.lead_id)
    )
    return [int(i) for i in session.scalars(stmt)]
