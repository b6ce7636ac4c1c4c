"""Reactions to other features' domain events. Each runs after the commit that raised the event,
in a transaction of its own, and is idempotent (a redelivered event changes nothing)."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from leadflow.cadences import service as svc
from leadflow.core import cadence as core
from leadflow.db.base import Database
from leadflow.errors import LeadflowError
from leadflow.events import DomainEvent, dispatch_depth, on_dispatch_end, subscribe, unsubscribe
from leadflow.tasks import service as tasks
from leadflow.tasks.models import TaskKind

log = logging.getLogger("leadflow.cadences")

_db: Database | None = None


def _due(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _key(*parts: Any) -> str:
    raw = "|".join(str(p) for p in parts)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


# The reactions to one commit's events share one transaction, each in a savepoint of its own
# (a failing one is undone alone, as before): a batch of ingested events that crosses hundreds of
# thresholds asks for hundreds of tasks and enrollments, and a commit (with its WAL write and
# after-commit work) per reaction cost more than the reactions. Committed when the dispatch of
# those events ends (events.on_dispatch_end).
_shared = threading.local()


def _shared_session(db: Database, depth: int) -> Session:
    open_: tuple[int, Any, Session] | None = getattr(_shared, "open", None)
    if open_ is not None and open_[0] == depth:
        return open_[2]
    ctx = db.transaction()
    session = ctx.__enter__()
    _shared.open = (depth, ctx, session)
    return session


def _end_of_dispatch(depth: int) -> None:
    open_: tuple[int, Any, Session] | None = getattr(_shared, "open", None)
    if open_ is None or open_[0] != depth:
        return
    _shared.open = None
    try:
        open_[1].__exit__(None, None, None)  # commit (its own events are dispatched then)
    except Exception:
        log.exception("cadence reactions could not be committed")


def _run(what: str, fn: Callable[[Session], object]) -> None:
    if _db is None:
        return
    depth = dispatch_depth()
    try:
        if depth:
            s = _shared_session(_db, depth)
            with s.begin_nested():
                fn(s)
        else:
            with _db.transaction() as s:
                fn(s)
    except LeadflowError as exc:  # e.g. the lead is gone or takes no follow-up: log, not crash
        log.info("%s not carried out: %s", what, exc.message)


def on_task_requested(ev: DomainEvent) -> None:
    p = ev.payload
    kind = str(p.get("kind") or p.get("task") or "todo")
    if kind not in {k.value for k in TaskKind}:
        kind = TaskKind.TODO.value
    source = "scoring" if ev.name == "scoring.task_requested" else str(p.get("source") or "event")
    due = _due(p.get("due_at"))
    key = _key(ev.name, p.get("lead_id"), kind, p.get("title"), due, p.get("threshold_id"), source)

    def act(s: Session) -> None:
        tasks.create_task(
            s,
            svc.WORKER,
            lead_id=int(p["lead_id"]),
            kind=kind,
            title=str(p.get("title") or f"Follow up ({source})")[:300],
            due_at=due,
            owner_id=p.get("owner_id"),
            source=source[:40],
            source_key=f"ev:{key}",
        )

    _run(ev.name, act)


def on_enrollment_requested(ev: DomainEvent) -> None:
    p = ev.payload
    source = "scoring" if ev.name.startswith("scoring.") else str(p.get("source") or "event")

    # A redelivered request finds the lead already active in the sequence and changes nothing.
    def act(s: Session) -> None:
        svc.enroll(s, svc.WORKER, int(p["lead_id"]), str(p["sequence"]), source=source[:40])

    _run(ev.name, act)


def on_stage_changed(ev: DomainEvent) -> None:
    p = ev.payload
    detail = f"stage {p.get('source')} -> {p.get('target')}"
    _run(
        ev.name,
        lambda s: svc.stop_for_leads(
            s, svc.WORKER, [int(p["lead_id"])], core.StopReason.STAGE_CHANGE, detail
        ),
    )


def on_activities(ev: DomainEvent) -> None:
    ids = [int(i) for i in ev.payload.get("lead_ids") or []]
    _run(ev.name, lambda s: svc.stop_on_engagement(s, ids))


def on_merged(ev: DomainEvent) -> None:
    loser = ev.payload.get("loser_id")
    if loser is not None:
        _run(
            ev.name,
            lambda s: svc.stop_for_leads(s, svc.WORKER, [int(loser)], core.StopReason.LEAD_CLOSED, "merged"),
        )


_SUBSCRIPTIONS: list[tuple[str, Callable[[DomainEvent], None]]] = [
    ("task.requested", on_task_requested),
    ("scoring.task_requested", on_task_requested),
    ("scoring.sequence_enrollment_requested", on_enrollment_requested),
    ("sequence.enrollment_requested", on_enrollment_requested),
    ("lead.stage_changed", on_stage_changed),
    ("activities.ingested", on_activities),
    ("lead.merged", on_merged),
]


def register(db: Database) -> None:
    """Subscribe (once per process) and point the handlers at ``db``."""

    global _db
    if _db is None:
        for name, handler in _SUBSCRIPTIONS:
            subscribe(name, handler)
        on_dispatch_end(_end_of_dispatch)
    _db = db


def unregister() -> None:
    global _db
    if _db is not None:
        for name, handler in _SUBSCRIPTIONS:
            unsubscribe(name, handler)
    _db = None
