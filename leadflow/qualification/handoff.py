"""Marketing -> sales handoff: the sales queue with a first-touch SLA, acceptance and rejection,
breach detection, and the SLA and rejection reports.

A lead entering MQL opens a handoff (inside the transition's transaction, through an
in-transaction event subscriber): the assignment rules route it, the SLA due time is computed in
business hours on the lead's clock, and the owner is asked for the first touch
(``task.requested``). The first sales touch (call, email sent, meeting) stops the clock; a move
to SAL accepts the handoff; a rejection returns the lead to marketing nurture with a reason code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from leadflow.assignment import service as assignment
from leadflow.audit.service import record, record_many
from leadflow.auth.principal import SYSTEM, Perm, Principal
from leadflow.core.engagement import ActivityType
from leadflow.core.lifecycle import Stage
from leadflow.db.base import utcnow
from leadflow.errors import Conflict, InvalidInput, NotFound
from leadflow.events import DomainEvent, emit, subscribe_in_transaction, subscribe_in_transaction_many
from leadflow.leads.models import Activity, Lead
from leadflow.leads.service import get_lead, transition_lead, visibility_clause
from leadflow.qualification import config
from leadflow.qualification.models import Handoff

# A sales touch stops the SLA clock. A note is not a touch: the lead heard nothing.
FIRST_TOUCHES = (ActivityType.CALL.value, ActivityType.EMAIL_SENT.value, ActivityType.MEETING.value)
ROUTER = Principal(user_id=None, label="assignment rules", role=SYSTEM.role)
_CHUNK = 2000  # lead ids per IN list (bind-parameter limits)


def _open(session: Session, lead_id: int) -> Handoff | None:
    return session.scalar(
        select(Handoff)
        .where(Handoff.lead_id == lead_id, Handoff.status == "queued")
        .order_by(Handoff.id.desc())
        .limit(1)
    )


def open_handoff(session: Session, lead: Lead, *, at: datetime | None = None) -> Handoff:
    """Queue ``lead`` for sales: route it, start the SLA clock, request the first touch."""

    return open_handoffs(session, [(lead, at)])[0]


def open_handoffs(session: Session, wanted: Sequence[tuple[Lead, datetime | None]]) -> list[Handoff]:
    """:func:`open_handoff` for many leads (each with the time it entered the queue), set-based:
    one look-up of their open handoffs, one routing of the unowned ones, the new handoffs
    inserted and audited together; still one audit entry, one ``task.requested`` and one
    ``handoff.queued`` per lead. A lead already queued keeps its handoff (idempotent). Returns
    the handoff of each lead given, in order. An error fails the whole set (the caller's unit
    of work: a set-based move to MQL falls back to one move at a time)."""

    if not wanted:
        return []
    ids = list(dict.fromkeys(lead.id for lead, _ in wanted))
    found: dict[int, Handoff] = {}
    for start in range(0, len(ids), _CHUNK):
        for h in session.scalars(
            select(Handoff)
            .where(Handoff.lead_id.in_(ids[start : start + _CHUNK]), Handoff.status == "queued")
            .order_by(Handoff.id)
        ):
            found[h.lead_id] = h  # the newest open one, as _open
    new: dict[int, tuple[Lead, datetime]] = {}
    for lead, at in wanted:
        if lead.id not in found and lead.id not in new:
            new[lead.id] = (lead, at or utcnow())
    if not new:
        return [found[lead.id] for lead, _ in wanted]
    unowned = [lid for lid, (lead, _) in new.items() if lead.owner_id is None]
    if unowned:
        # In the move's transaction: the audit of the assignment commits (or not) with the move.
        assignment.assign_many(session, ROUTER, unowned, trigger="mql", bump_version=False)
        # It expired the owners it set: read them back in one query, not one per lead.
        for start in range(0, len(unowned), _CHUNK):
            session.scalars(select(Lead).where(Lead.id.in_(unowned[start : start + _CHUNK]))).all()
    policy = config.handoff_policy(session)
    created: list[tuple[Lead, Handoff]] = []
    for lead, when in new.values():
        cal = policy.calendar(lead.timezone, lead.country)
        h = Handoff(
            lead_id=lead.id,
            source=lead.source,
            owner_id=lead.owner_id,
            status="queued",
            queued_at=when,
            due_at=cal.add(when, timedelta(minutes=policy.first_touch_minutes)),
            sla_minutes=policy.first_touch_minutes,
            timezone=cal.timezone,
        )
        created.append((lead, h))
        found[lead.id] = h
    session.add_all([h for _, h in created])
    session.flush()  # one multi-row INSERT: the ids for the audit and the events
    reason = f"MQL: first touch due within {policy.first_touch_minutes} business minutes"
    record_many(
        session,
        SYSTEM,
        [
            {
                "entity_type": "handoff",
                "entity_id": h.id,
                "action": "queued",
                "after": {
                    "lead_id": lead.id,
                    "owner_id": h.owner_id,
                    "due_at": h.due_at.isoformat(),
                    "timezone": h.timezone,
                },
                "reason": reason,
            }
            for lead, h in created
        ],
    )
    for lead, h in created:
        name = " ".join(x for x in (lead.first_name, lead.last_name) if x) or lead.email or f"lead {lead.id}"
        emit(
            session,
            "task.requested",
            lead_id=lead.id,
            owner_id=lead.owner_id,
            kind="call",
            title=f"First touch: new MQL {name}",
            due_at=h.due_at,
            source="handoff",
        )
        emit(
            session, "handoff.queued", lead_id=lead.id, handoff_id=h.id, owner_id=h.owner_id, due_at=h.due_at
        )
    return [found[lead.id] for lead, _ in wanted]


def _touch(h: Handoff, at: datetime, kind: str) -> None:
    if h.first_touch_at is None or at < h.first_touch_at:
        h.first_touch_at, h.touch_kind = at, kind
    if h.first_touch_at > h.due_at and h.breached_at is None:
        h.breached_at = h.first_touch_at


# ------------------------------------------------------------------------------ event reactions


def _on_stages_changed(session: Session, events: list[DomainEvent]) -> None:
    # A set-based move (a rescoring's moves to MQL) opens its leads' handoffs together.
    mql: list[tuple[Lead, datetime | None]] = []
    for ev in events:
        if ev.payload["target"] != Stage.MQL.value:
            _on_left_queue(session, ev)
            continue
        lead = session.get(Lead, ev.payload["lead_id"])
        if lead is not None:
            mql.append((lead, lead.stage_changed_at))
    open_handoffs(session, mql)


def _on_left_queue(session: Session, ev: DomainEvent) -> None:
    lead_id, target = ev.payload["lead_id"], ev.payload["target"]
    h = _open(session, lead_id)
    if h is None:
        return
    now = utcnow()
    if target in (Stage.SAL.value, Stage.SQL.value):
        # Sales accepted the lead: accepting it is a touch too.
        _touch(h, now, "accepted")
        h.status, h.decided_at = "accepted", now
    else:
        # Left the queue another way (nurture, unqualified, bad...): closed, not a sales verdict.
        h.status, h.decided_at = "closed", now
    record(session, SYSTEM, "handoff", h.id, h.status, after={"lead_id": lead_id, "stage": target})


def _on_activities(session: Session, ev: DomainEvent) -> None:
    ids = set(ev.payload.get("lead_ids") or ())
    if not ids:
        return
    # The open queue is small; the ingested batch may be large (bulk event ingest): intersect.
    open_rows = [
        h
        for h in session.scalars(
            select(Handoff).where(Handoff.status == "queued", Handoff.first_touch_at.is_(None))
        )
        if h.lead_id in ids
    ]
    for h in open_rows:
        row = session.execute(
            select(Activity.occurred_at, Activity.type)
            .where(
                Activity.lead_id == h.lead_id,
                Activity.type.in_(FIRST_TOUCHES),
                Activity.occurred_at >= h.queued_at,
            )
            .order_by(Activity.occurred_at)
            .limit(1)
        ).first()
        if row is not None:
            _touch(h, row[0], row[1])


def _on_imported(session: Session, ev: DomainEvent) -> None:
    # The import's writer publishes each committed chunk's new leads in one event; routing them
    # here, in that event's transaction, keeps the import path free of assignment code.
    created = ev.payload.get("created_ids") or []
    if created:
        assignment.assign_many(session, ROUTER, created, trigger="import")


_registered = False


def register() -> None:
    """Subscribe the handoff reactions inside the emitting transactions. Idempotent; called by
    the composition roots (API app, CLI) and anything else that moves leads (workers)."""

    global _registered
    if _registered:
        return
    subscribe_in_transaction_many("lead.stage_changed", _on_stages_changed)
    subscribe_in_transaction("activities.ingested", _on_activities)
    subscribe_in_transaction("leads.imported", _on_imported)
    _registered = True


# ------------------------------------------------------------------------------ sales actions


def _handoff_for(session: Session, actor: Principal, lead_id: int) -> tuple[Lead, Handoff]:
    lead = get_lead(session, actor, lead_id)
    h = _open(session, lead.id)
    if h is None:
        raise Conflict(f"lead {lead_id} is not waiting in the sales queue (no open handoff)")
    return lead, h


def touch(session: Session, actor: Principal, lead_id: int, *, at: datetime | None = None) -> Handoff:
    """Record the first touch by hand (a touch made outside Leadflow)."""

    actor.require(Perm.ACTIVITIES_WRITE)
    _, h = _handoff_for(session, actor, lead_id)
    when = at or utcnow()
    if when < h.queued_at:
        raise InvalidInput("at", "the touch cannot be before the lead entered the queue")
    _touch(h, when, "manual")
    record(session, actor, "handoff", h.id, "touch", after={"lead_id": lead_id, "at": when.isoformat()})
    return h


def reject(session: Session, actor: Principal, lead_id: int, reason: str, note: str | None = None) -> Handoff:
    """Sales rejects the MQL: the lead returns to marketing nurture with the reason code, which
    feeds the rejection report (so marketing can refine scoring)."""

    actor.require(Perm.LEADS_TRANSITION)
    lead, h = _handoff_for(session, actor, lead_id)
    policy = config.handoff_policy(session)
    if reason not in policy.rejection_reasons:
        raise InvalidInput("reason", f"must be one of {', '.join(policy.rejection_reasons)}")
    if reason == "other" and not (note or "").strip():
        raise InvalidInput("note", "say why when the reason is 'other'")
    now = utcnow()
    _touch(h, now, "rejected")
    h.status, h.decided_at, h.decided_by = "rejected", now, actor.user_id
    h.rejection_reason, h.rejection_note = reason, (note or "").strip()[:2000] or None
    session.flush()
    why = f"rejected by sales: {reason}" + (f" ({h.rejection_note})" if h.rejection_note else "")
    transition_lead(session, actor, lead.id, Stage.NURTURE, reason=why)
    record(
        session,
        actor,
        "handoff",
        h.id,
        "rejected",
        after={"lead_id": lead.id, "reason": reason},
        reason=h.rejection_note,
    )
    emit(session, "handoff.rejected", lead_id=lead.id, handoff_id=h.id, reason=reason, source=h.source)
    return h


def queue(
    session: Session,
    actor: Principal,
    *,
    owner_id: int | None = None,
    breached: bool | None = None,
    limit: int = 200,
) -> list[tuple[Handoff, Lead]]:
    """The sales queue: open handoffs the actor may see, the most urgent first."""

    actor.require(Perm.LEADS_READ)
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be between 1 and 1000")
    stmt = select(Handoff, Lead).join(Lead, Lead.id == Handoff.lead_id).where(Handoff.status == "queued")
    vis = visibility_clause(session, actor)
    if vis is not None:
        stmt = stmt.where(vis)
    if owner_id is not None:
        stmt = stmt.where(Lead.owner_id == owner_id)
    if breached is True:
        stmt = stmt.where(Handoff.first_touch_at.is_(None), Handoff.due_at < utcnow())
    rows = session.execute(stmt.order_by(Handoff.due_at, Handoff.id).limit(limit)).all()
    return [(h, lead) for h, lead in rows]


def history(session: Session, actor: Principal, lead_id: int) -> list[Handoff]:
    get_lead(session, actor, lead_id)
    return list(session.scalars(select(Handoff).where(Handoff.lead_id == lead_id).order_by(Handoff.id)))


@dataclass
class BreachCheck:
    breached: list[Handoff]
    checked_at: datetime


def check_breaches(session: Session, actor: Principal, *, now: datetime | None = None) -> BreachCheck:
    """Mark open handoffs whose first-touch deadline passed untouched (set-based), audit each
    and emit ``handoff.sla_breached`` (owners' managers, webhooks). Run it from the scheduler
    every few minutes; running it twice reports each breach once."""

    actor.require(Perm.LEADS_READ)
    when = now or utcnow()
    late = list(
        session.scalars(
            select(Handoff)
            .where(
                Handoff.status == "queued",
                Handoff.first_touch_at.is_(None),
                Handoff.breached_at.is_(None),
                Handoff.due_at < when,
            )
            .order_by(Handoff.due_at)
        )
    )
    if late:
        session.execute(
            update(Handoff)
            .where(Handoff.id.in_([h.id for h in late]))
            .values(breached_at=when)
            .execution_options(synchronize_session=False)
        )
        for h in late:
            h.breached_at = when
        record_many(
            session,
            actor,
            [
                {
                    "entity_type": "handoff",
                    "entity_id": h.id,
                    "action": "sla_breached",
                    "after": {"lead_id": h.lead_id, "due_at": h.due_at.isoformat(), "owner_id": h.owner_id},
                }
                for h in late
            ],
        )
        for h in late:
            emit(
                session,
                "handoff.sla_breached",
                lead_id=h.lead_id,
                handoff_id=h.id,
                owner_id=h.owner_id,
                due_at=h.due_at,
            )
    return BreachCheck(late, when)


# ------------------------------------------------------------------------------ reports


def _window(stmt: Select[Any], column: Any, since: datetime | None, until: datetime | None) -> Select[Any]:
    if since is not None:
        stmt = stmt.where(column >= since)
    if until is not None:
        stmt = stmt.where(column < until)
    return stmt


def sla_report(
    session: Session,
    actor: Principal,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Share of MQLs touched within the SLA, by source and by owner, and the breaches. Handoffs
    still inside their SLA are 'pending' and left out of the share."""

    actor.require(Perm.LEADS_READ)
    when = now or utcnow()
    stmt: Select[Any] = select(Handoff).join(Lead, Lead.id == Handoff.lead_id)
    vis = visibility_clause(session, actor)
    if vis is not None:
        stmt = stmt.where(vis)
    rows = list(session.scalars(_window(stmt, Handoff.queued_at, since, until).order_by(Handoff.id)))

    def bucket() -> dict[str, int]:
        return {"handoffs": 0, "within_sla": 0, "late": 0, "breached_open": 0, "pending": 0}

    total = bucket()
    by_source: dict[str, dict[str, int]] = defaultdict(bucket)
    by_owner: dict[str, dict[str, int]] = defaultdict(bucket)
    breaches: list[dict[str, Any]] = []
    for h in rows:
        if h.first_touch_at is not None:
            verdict = "within_sla" if h.first_touch_at <= h.due_at else "late"
        elif h.status != "queued":
            continue  # left the queue untouched by sales (e.g. closed by marketing): no verdict
        else:
            verdict = "breached_open" if h.due_at < when else "pending"
        for b in (
            total,
            by_source[h.source or "(none)"],
            by_owner[str(h.owner_id) if h.owner_id else "(unassigned)"],
        ):
            b["handoffs"] += 1
            b[verdict] += 1
        if verdict in ("late", "breached_open"):
            end = h.first_touch_at or when
            breaches.append(
                {
                    "handoff_id": h.id,
                    "lead_id": h.lead_id,
                    "owner_id": h.owner_id,
                    "source": h.source,
                    "queued_at": h.queued_at.isoformat(),
                    "due_at": h.due_at.isoformat(),
                    "first_touch_at": h.first_touch_at.isoformat() if h.first_touch_at else None,
                    "late_by_minutes": round((end - h.due_at).total_seconds() / 60, 1),
                    "open": h.first_touch_at is None,
                }
            )

    def with_rate(b: dict[str, int]) -> dict[str, Any]:
        decided = b["within_sla"] + b["late"] + b["breached_open"]
        return {**b, "compliance": round(b["within_sla"] / decided, 4) if decided else None}

    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "as_of": when.isoformat(),
        "total": with_rate(total),
        "by_source": {k: with_rate(v) for k, v in sorted(by_source.items())},
        "by_owner": {k: with_rate(v) for k, v in sorted(by_owner.items())},
        "breaches": breaches,
    }


def rejection_report(
    session: Session, actor: Principal, *, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """Sales' verdicts on MQLs: acceptance and rejection rate by source, and rejections by reason
    (overall and per source), over handoffs decided in the window."""

    actor.require(Perm.LEADS_READ)
    stmt: Select[Any] = (
        select(Handoff)
        .join(Lead, Lead.id == Handoff.lead_id)
        .where(Handoff.status.in_(("accepted", "rejected")))
    )
    vis = visibility_clause(session, actor)
    if vis is not None:
        stmt = stmt.where(vis)
    rows = list(session.scalars(_window(stmt, Handoff.decided_at, since, until)))
    by_source: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"accepted": 0, "rejected": 0, "reasons": defaultdict(int)}
    )
    reasons: dict[str, int] = defaultdict(int)
    for h in rows:
        b = by_source[h.source or "(none)"]
        b[h.status] += 1
        if h.status == "rejected":
            b["reasons"][h.rejection_reason or "other"] += 1
            reasons[h.rejection_reason or "other"] += 1
    rejected = sum(reasons.values())
    out_sources = {}
    for src, b in sorted(by_source.items()):
        decided = b["accepted"] + b["rejected"]
        out_sources[src] = {
            "decided": decided,
            "accepted": b["accepted"],
            "rejected": b["rejected"],
            "rejection_rate": round(b["rejected"] / decided, 4) if decided else None,
            "reasons": dict(sorted(b["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))),
        }
    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "decided": len(rows),
        "rejected": rejected,
        "rejection_rate": round(rejected / len(rows), 4) if rows else None,
        "by_source": out_sources,
        "by_reason": {
            k: {"rejected": v, "share": round(v / rejected, 4)}
            for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        },
    }


def get_handoff(session: Session, actor: Principal, handoff_id: int) -> Handoff:
    h = session.get(Handoff, handoff_id)
    if h is None:
        raise NotFound(f"handoff {handoff_id} not found")
    get_lead(session, actor, h.lead_id)
    return h
