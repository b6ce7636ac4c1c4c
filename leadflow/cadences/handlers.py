"""Reactions to other features' domain events. Each runs after the commit that raised the event,
in a transaction of its own, and is idempotent (a redelivered event changes nothing)."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from leadflow.auth.principal import Principal
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


# The reactions to one commit's events share one transaction, committed when the dispatch of
# those events ends (events.on_dispatch_end): a batch of ingested events that crosses hundreds of
# thresholds asks for hundreds of tasks and enrollments, and a commit (with its WAL write and
# after-commit work) per reaction cost more than the reactions. The requests of one dispatch are
# gathered and carried out together at its end, set-based (one query per kind of look-up, bulk
# inserts, one audit call per kind), each kind in a savepoint: should a set fail, it is undone
# and its requests are carried out one at a time, each in a savepoint of its own (a failing one
# is undone alone, as when each event was handled on its own).
_shared = threading.local()


def _shared_session(db: Database, depth: int) -> Session:
    open_: tuple[int, Any, Session] | None = getattr(_shared, "open", None)
    if open_ is not None and open_[0] == depth:
        return open_[2]
    ctx = db.transaction()
    session = ctx.__enter__()
    _shared.open = (depth, ctx, session)
    return session


@dataclass(frozen=True)
class _Stop:
    what: str
    lead_ids: tuple[int, ...]
    reason: core.StopReason | None  # None: the engagement stop rules (stop_on_engagement)
    detail: str | None = None


@dataclass(frozen=True)
class _Enroll:
    what: str
    request: svc.EnrollRequest


@dataclass(frozen=True)
class _Task:
    what: str
    request: tasks.TaskRequest


_Op = _Stop | _Enroll | _Task


def _pending() -> dict[int, list[_Op]]:
    by_depth: dict[int, list[_Op]] | None = getattr(_shared, "pending", None)
    if by_depth is None:
        by_depth = _shared.pending = {}
    return by_depth


def _request(op: _Op) -> None:
    if _db is None:
        return
    depth = dispatch_depth()
    if depth:  # inside a dispatch: carried out with the others when it ends
        _pending().setdefault(depth, []).append(op)
    else:
        _run(op.what, lambda s: _one(s, op))


def _end_of_dispatch(depth: int) -> None:
    ops = _pending().pop(depth, None)
    if ops and _db is not None:
        try:
            _carry_out(_shared_session(_db, depth), ops)
        except Exception:
            log.exception("cadence reactions failed")
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
    try:
        with _db.transaction() as s:
            fn(s)
    except LeadflowError as exc:  # e.g. the lead is gone or takes no follow-up: log, not crash
        log.info("%s not carried out: %s", what, exc.message)


def _one(s: Session, op: _Op) -> None:
    """One request, as each event was handled on its own."""

    if isinstance(op, _Stop):
        if op.reason is None:
            svc.stop_on_engagement(s, list(op.lead_ids))
        else:
            svc.stop_for_leads(s, svc.WORKER, list(op.lead_ids), op.reason, op.detail)
    elif isinstance(op, _Enroll):
        r = op.request
        svc.enroll(s, svc.WORKER, r.lead_id, r.sequence, source=r.source, source_key=r.source_key)
    else:
        t = op.request
        tasks.create_task(
            s,
            svc.WORKER,
            lead_id=t.lead_id,
            kind=t.kind,
            title=t.title,
            due_at=t.due_at,
            owner_id=t.owner_id,
            source=t.source,
            source_key=t.source_key,
        )


@dataclass
class _Phase:
    """Requests that may be carried out together, stops first: a stop of a lead comes after an
    enrollment of it requested earlier (it ends that enrollment too), so it opens a new phase,
    as does a second kind of stop of the same lead (the first one's reason is the one kept)."""

    stops: dict[tuple[str, str | None], list[_Stop]] = field(default_factory=dict)
    enrolls: list[_Enroll] = field(default_factory=list)
    tasks: list[_Task] = field(default_factory=list)
    stopped: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    enrolled: set[int] = field(default_factory=set)

    def take(self, op: _Op) -> bool:
        if isinstance(op, _Enroll):
            self.enrolls.append(op)
            self.enrolled.add(op.request.lead_id)
        elif isinstance(op, _Task):
            self.tasks.append(op)
        else:
            key = (op.reason.value if op.reason else "engagement", op.detail)
            if any(i in self.enrolled or self.stopped.get(i, key) != key for i in op.lead_ids):
                return False
            self.stops.setdefault(key, []).append(op)
            self.stopped.update((i, key) for i in op.lead_ids)
        return True


def _phases(ops: list[_Op]) -> list[_Phase]:
    phases = [_Phase()]
    for op in ops:
        if not phases[-1].take(op):
            phases.append(_Phase())
            phases[-1].take(op)
    return phases


def _carry_out(s: Session, ops: list[_Op]) -> None:
    for phase in _phases(ops):
        for group in phase.stops.values():
            _together(s, group, _stops(group))
        if phase.enrolls:
            _together(s, phase.enrolls, _bulk(phase.enrolls, svc.enroll_many))
        if phase.tasks:
            _together(s, phase.tasks, _bulk(phase.tasks, tasks.create_tasks))


def _stops(group: list[_Stop]) -> Callable[[Session], None]:
    ids = sorted({i for op in group for i in op.lead_ids})
    first = group[0]

    def run(s: Session) -> None:
        if first.reason is None:
            svc.stop_on_engagement(s, ids)
        else:
            svc.stop_for_leads(s, svc.WORKER, ids, first.reason, first.detail)

    return run


def _bulk(
    ops: Sequence[_Enroll | _Task], carry_out: Callable[[Session, Principal, list[Any]], Sequence[Any]]
) -> Callable[[Session], None]:
    """The requests of ``ops`` in one set-based call (``enroll_many``, ``create_tasks``); a refused
    request is logged as a single one would be."""

    def run(s: Session) -> None:
        outcomes = carry_out(s, svc.WORKER, [op.request for op in ops])
        for op, outcome in zip(ops, outcomes, strict=True):
            if outcome.refused:
                log.info("%s not carried out: %s", op.what, outcome.refused)

    return run


def _together(s: Session, ops: Sequence[_Op], run: Callable[[Session], None]) -> None:
    try:
        with s.begin_nested():
            run(s)
        return
    except Exception:
        if len(ops) == 1:
            log.exception("%s failed", ops[0].what)
            return
        log.warning("%d %s requests failed together; one at a time", len(ops), ops[0].what, exc_info=True)
    for op in ops:
        try:
            with s.begin_nested():
                _one(s, op)
        except LeadflowError as exc:
            log.info("%s not carried out: %s", op.what, exc.message)
        except Exception:  # undone alone; the others go on
            log.exception("%s failed", op.what)


def on_task_requested(ev: DomainEvent) -> None:
    p = ev.payload
    kind = str(p.get("kind") or p.get("task") or "todo")
    if kind not in {k.value for k in TaskKind}:
        kind = TaskKind.TODO.value
    source = "scoring" if ev.name == "scoring.task_requested" else str(p.get("source") or "event")
    due = _due(p.get("due_at"))
    key = _key(ev.name, p.get("lead_id"), kind, p.get("title"), due, p.get("threshold_id"), source)
    request = tasks.TaskRequest(
        lead_id=int(p["lead_id"]),
        kind=kind,
        title=str(p.get("title") or f"Follow up ({source})")[:300],
        due_at=due,
        owner_id=p.get("owner_id"),
        source=source[:40],
        source_key=f"ev:{key}",
    )
    _request(_Task(ev.name, request))


def on_enrollment_requested(ev: DomainEvent) -> None:
    p = ev.payload
    source = "scoring" if ev.name.startswith("scoring.") else str(p.get("source") or "event")
    # A redelivered request finds the lead already active in the sequence and changes nothing.
    request = svc.EnrollRequest(int(p["lead_id"]), str(p["sequence"]), source=source[:40])
    _request(_Enroll(ev.name, request))


def on_stage_changed(ev: DomainEvent) -> None:
    p = ev.payload
    detail = f"stage {p.get('source')} -> {p.get('target')}"
    _request(_Stop(ev.name, (int(p["lead_id"]),), core.StopReason.STAGE_CHANGE, detail))


def on_activities(ev: DomainEvent) -> None:
    ids = tuple(int(i) for i in ev.payload.get("lead_ids") or [])
    _request(_Stop(ev.name, ids, None))


def on_merged(ev: DomainEvent) -> None:
    loser = ev.payload.get("loser_id")
    if loser is not None:
        _request(_Stop(ev.name, (int(loser),), core.StopReason.LEAD_CLOSED, "merged"))


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
