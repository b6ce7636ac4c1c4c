"""The inbox's view of the marketing → sales handoff SLA (``qualification.handoff``): which SLA
state a lead's latest handoff is in, as a filter condition on Lead and as a badge per row.

States of the lead's latest handoff:
  due       queued, not touched yet, due in more than ``DUE_SOON``
  due_soon  queued, not touched yet, due within ``DUE_SOON``
  breached  queued, not touched yet, past due
  met       touched (first call/email/meeting) in time, verdict pending or accepted
  late      touched after the due time
  accepted  sales accepted the lead (moved to SAL)
  rejected  sales rejected it back to marketing
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.orm import Session, aliased

from leadflow.errors import InvalidInput
from leadflow.leads.models import Lead
from leadflow.qualification.models import Handoff

DUE_SOON = timedelta(hours=1)
STATES = {
    "due": "Due",
    "due_soon": "Due soon (1 h)",
    "breached": "Breached",
    "met": "Touched in time",
    "late": "Touched late",
    "accepted": "Accepted",
    "rejected": "Rejected",
}


def _state_condition(state: str, now: datetime) -> ColumnElement[bool]:
    untouched = and_(Handoff.status == "queued", Handoff.first_touch_at.is_(None))
    match state:
        case "due":
            return and_(untouched, Handoff.due_at >= now + DUE_SOON)
        case "due_soon":
            return and_(untouched, Handoff.due_at >= now, Handoff.due_at < now + DUE_SOON)
        case "breached":
            return and_(untouched, Handoff.due_at < now)
        case "met":
            return and_(
                Handoff.status.in_(("queued", "accepted")),
                Handoff.first_touch_at.is_not(None),
                Handoff.first_touch_at <= Handoff.due_at,
            )
        case "late":
            return and_(Handoff.first_touch_at.is_not(None), Handoff.first_touch_at > Handoff.due_at)
        case "accepted":
            return Handoff.status == "accepted"
        case "rejected":
            return Handoff.status == "rejected"
    raise InvalidInput("sla", f"must be one of {', '.join(STATES)}")


def sla_condition(state: str, now: datetime) -> ColumnElement[bool]:
    """Leads whose latest handoff is in ``state`` (a condition on Lead for ``LeadFilter.where``)."""

    later = aliased(Handoff)
    newer = exists().where(later.lead_id == Handoff.lead_id, later.id > Handoff.id)
    return exists(select(Handoff.id).where(Handoff.lead_id == Lead.id, ~newer, _state_condition(state, now)))


@dataclass(frozen=True)
class Badge:
    state: str
    text: str
    title: str


def _badge(h: Handoff, now: datetime) -> Badge:
    due = h.due_at
    if h.status == "rejected":
        return Badge(
            "rejected", "rejected", f"rejected by sales: {(h.rejection_reason or '').replace('_', ' ')}"
        )
    if h.first_touch_at is not None:
        late = h.first_touch_at > due
        if h.status == "accepted":
            return Badge(
                "late" if late else "accepted", "accepted" + (" late" if late else ""), "sales accepted"
            )
        return Badge(
            "late" if late else "met",
            "touched late" if late else "touched in time",
            f"due {due:%Y-%m-%d %H:%M} UTC",
        )
    if h.status == "accepted":
        return Badge("accepted", "accepted", "sales accepted")
    if h.status != "queued":
        return Badge("closed", "handoff closed", "left the queue without a verdict")
    left = due - now
    if left < timedelta(0):
        return Badge("breached", f"SLA breached {_span(-left)} ago", f"was due {due:%Y-%m-%d %H:%M} UTC")
    state = "due_soon" if left < DUE_SOON else "due"
    return Badge(state, f"SLA due in {_span(left)}", f"due {due:%Y-%m-%d %H:%M} UTC")


def _span(d: timedelta) -> str:
    secs = int(d.total_seconds())
    if secs >= 86400:
        return f"{secs // 86400} d"
    if secs >= 3600:
        return f"{secs // 3600} h"
    return f"{max(secs // 60, 1)} min"


def badges(session: Session, lead_ids: Sequence[int], now: datetime) -> dict[int, Badge]:
    """The SLA badge of each (already visible) lead's latest handoff, one query."""

    if not lead_ids:
        return {}
    later = aliased(Handoff)
    newer = exists().where(later.lead_id == Handoff.lead_id, later.id > Handoff.id)
    rows = session.scalars(select(Handoff).where(Handoff.lead_id.in_(lead_ids), ~newer))
    return {h.lead_id: _badge(h, now) for h in rows}
