"""Task use cases: open, edit, complete (with a call outcome), cancel, and the rep inbox.

Visibility follows leads: a rep sees their own tasks and unassigned ones, a manager the team's,
marketing and admins everything; a task on a lead the actor cannot see is invisible too (404).
Every change is audited in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from leadflow.audit.service import record, record_many
from leadflow.auth.models import User
from leadflow.auth.ownership import require_assignable_owner
from leadflow.auth.principal import Perm, Principal, Visibility
from leadflow.clock import now as clock_now
from leadflow.core import consent
from leadflow.core.calendar import is_valid_zone, local_day_bounds, zone
from leadflow.core.engagement import ActivityType
from leadflow.db.pagination import Page, keyset, page_of
from leadflow.errors import InvalidInput, NotFound, StaleVersion
from leadflow.events import emit
from leadflow.leads.activities import log_activity
from leadflow.leads.models import Lead
from leadflow.leads.service import get_lead, get_leads, visibility_clause
from leadflow.tasks.models import Task, TaskKind, TaskStatus


class CallOutcome(StrEnum):
    CONNECTED = "connected"
    VOICEMAIL = "voicemail"
    NO_ANSWER = "no_answer"
    WRONG_NUMBER = "wrong_number"


# Bad-lead candidate reasons are sentences a reviewer reads (like the identity checks' ones).
WRONG_NUMBER_REASON = "wrong number reported on a call"

SNAPSHOT = ("lead_id", "owner_id", "kind", "title", "notes", "due_at", "status", "outcome")


def _snap(task: Task) -> dict[str, Any]:
    return {k: getattr(task, k) for k in SNAPSHOT}


# ------------------------------------------------------------------------------- visibility


def task_visibility(session: Session, actor: Principal) -> ColumnElement[bool] | None:
    """WHERE clause for the tasks ``actor`` may see (None: all)."""

    mode = actor.visibility
    if mode is Visibility.ALL:
        return None
    own = Task.owner_id == actor.user_id if actor.user_id is not None else Task.owner_id.is_(None)
    if mode is Visibility.OWN:
        lead_vis = visibility_clause(session, actor)
        visible_leads = select(Lead.id) if lead_vis is None else select(Lead.id).where(lead_vis)
        unassigned = and_(Task.owner_id.is_(None), Task.lead_id.in_(visible_leads))
        return or_(own, unassigned)
    if actor.team:
        team = select(User.id).where(User.team == actor.team)
        return or_(own, Task.owner_id.in_(team), Task.owner_id.is_(None))
    return or_(own, Task.owner_id.is_(None))


def _can_see(session: Session, actor: Principal, task: Task) -> bool:
    mode = actor.visibility
    if mode is Visibility.ALL or task.owner_id == actor.user_id:
        return True
    if task.owner_id is None:
        if task.lead_id is None:
            return True
        try:
            get_lead(session, actor, task.lead_id)
        except NotFound:
            return False
        return True
    if mode is Visibility.OWN:
        return False
    owner = session.get(User, task.owner_id)
    return owner is not None and actor.team is not None and owner.team == actor.team


def get_task(session: Session, actor: Principal, task_id: int, *, for_update: bool = False) -> Task:
    actor.require(Perm.LEADS_READ)
    task = session.get(Task, task_id, with_for_update=for_update)
    if task is None or not _can_see(session, actor, task):
        raise NotFound(f"task {task_id} not found")
    return task


def _check_owner(session: Session, actor: Principal, owner_id: int | None) -> None:
    require_assignable_owner(session, actor, owner_id, "tasks")


def _check_text(field: str, value: str | None, limit: int, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise InvalidInput(field, "is required")
        return None
    value = value.strip()
    if required and not value:
        raise InvalidInput(field, "must not be empty")
    if len(value) > limit:
        raise InvalidInput(field, f"is longer than {limit} characters")
    return value


# ------------------------------------------------------------------------------- changes


def create_task(
    session: Session,
    actor: Principal,
    *,
    lead_id: int | None,
    kind: TaskKind | str,
    title: str,
    due_at: datetime | None = None,
    owner_id: int | None = None,
    notes: str | None = None,
    duration_minutes: int | None = None,
    source: str = "manual",
    source_key: str | None = None,
    assign_default: bool = True,
) -> Task:
    """Open a task. Without an owner it goes to the lead's owner (or, for a person acting alone,
    to themselves). A ``source_key`` seen before returns the existing task (idempotent)."""

    actor.require(Perm.ACTIVITIES_WRITE)
    try:
        kind = TaskKind(kind)
    except ValueError:
        raise InvalidInput("kind", f"must be one of {', '.join(k.value for k in TaskKind)}") from None
    if source_key:
        existing = session.scalar(select(Task).where(Task.source_key == source_key))
        if existing is not None:
            return existing
    clean_title = _check_text("title", title, 300, required=True)
    clean_notes = _check_text("notes", notes, 10_000)
    if due_at is not None and due_at.tzinfo is None:
        raise InvalidInput("due_at", "must include a time zone offset")
    if duration_minutes is not None and not 1 <= duration_minutes <= 24 * 60:
        raise InvalidInput("duration_minutes", "must be between 1 and 1440")
    lead: Lead | None = None
    if lead_id is not None:
        lead = get_lead(session, actor, lead_id)
        if lead.merged_into_id is not None:
            raise InvalidInput("lead_id", f"lead {lead_id} was merged into lead {lead.merged_into_id}")
        # Nobody is asked to email a lead that opted out (a threshold's email task included).
        refusal = consent.email_refusal(lead, sending=False) if kind is TaskKind.EMAIL else None
        if refusal is not None:
            raise InvalidInput("kind", f"lead {lead_id} may not be emailed: {refusal}")
    if owner_id is None and assign_default:
        owner_id = lead.owner_id if lead is not None and lead.owner_id else actor.user_id
    if actor.user_id is not None:  # system actors (events, the worker) assign freely
        _check_owner(session, actor, owner_id)
    elif owner_id is not None and session.get(User, owner_id) is None:
        owner_id = None
    now = clock_now()
    task = Task(
        lead_id=lead_id,
        owner_id=owner_id,
        kind=kind.value,
        title=clean_title,
        notes=clean_notes,
        due_at=due_at,
        duration_minutes=duration_minutes if duration_minutes else (30 if kind is TaskKind.MEETING else None),
        status=TaskStatus.OPEN.value,
        source=source[:40],
        source_key=source_key,
        created_by=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(task)
    session.flush()
    record(session, actor, "task", task.id, "create", after=_snap(task))
    emit(session, "task.created", task_id=task.id, lead_id=lead_id, owner_id=owner_id, kind=kind.value)
    return task


@dataclass(frozen=True)
class TaskRequest:
    """One task for :func:`create_tasks` (the arguments of :func:`create_task`)."""

    lead_id: int | None
    kind: TaskKind | str
    title: str
    due_at: datetime | None = None
    owner_id: int | None = None
    notes: str | None = None
    source: str = "manual"
    source_key: str | None = None


@dataclass(frozen=True)
class TaskOutcome:
    """The task of one request (new or, for a source key seen before, the existing one) or,
    when refused, why (the message :func:`create_task` raises with)."""

    task: Task | None
    created: bool = False
    refused: str | None = None


def create_tasks(session: Session, actor: Principal, requests: list[TaskRequest]) -> list[TaskOutcome]:
    """:func:`create_task` for many requests (the tasks a batch of threshold crossings and MQL
    handoffs asks for), set-based: one query for the source keys seen before, one for the leads,
    one for the owners, the tasks inserted together and one audit call; still one audit entry
    and one ``task.created`` per task. The same checks and outcomes as one create_task per
    request in order, except that a refused request (merged lead, email to a lead that opted
    out, bad title...) is reported in its outcome instead of raised, and the others go on. For
    system actors (no user id) only: a person's requests go through create_task. Other errors
    fail the whole set: run it in a savepoint and fall back to create_task one at a time."""

    actor.require(Perm.ACTIVITIES_WRITE)
    if actor.user_id is not None:
        raise InvalidInput("actor", "create_tasks is for system actors; a person opens tasks one by one")
    keys = [r.source_key for r in requests if r.source_key]
    seen: dict[str, Task] = {}
    for start in range(0, len(keys), 2000):
        seen.update(
            (t.source_key, t)
            for t in session.scalars(select(Task).where(Task.source_key.in_(keys[start : start + 2000])))
            if t.source_key
        )
    leads = get_leads(session, actor, [r.lead_id for r in requests if r.lead_id is not None])
    wanted_owners = {r.owner_id for r in requests if r.owner_id is not None}
    wanted_owners |= {lead.owner_id for lead in leads.values() if lead.owner_id is not None}
    users: set[int] = set()
    owner_list = sorted(wanted_owners)
    for start in range(0, len(owner_list), 2000):
        users.update(session.scalars(select(User.id).where(User.id.in_(owner_list[start : start + 2000]))))
    now = clock_now()
    out: list[TaskOutcome] = []
    new: list[Task] = []
    kinds = ", ".join(k.value for k in TaskKind)
    for r in requests:
        try:
            try:
                kind = TaskKind(r.kind)
            except ValueError:
                raise InvalidInput("kind", f"must be one of {kinds}") from None
            if r.source_key and r.source_key in seen:
                out.append(TaskOutcome(seen[r.source_key]))
                continue
            clean_title = _check_text("title", r.title, 300, required=True)
            clean_notes = _check_text("notes", r.notes, 10_000)
            if r.due_at is not None and r.due_at.tzinfo is None:
                raise InvalidInput("due_at", "must include a time zone offset")
            lead: Lead | None = None
            if r.lead_id is not None:
                lead = leads.get(r.lead_id)
                if lead is None:
                    raise NotFound(f"lead {r.lead_id} not found")
                if lead.merged_into_id is not None:
                    raise InvalidInput(
                        "lead_id", f"lead {r.lead_id} was merged into lead {lead.merged_into_id}"
                    )
                refusal = consent.email_refusal(lead, sending=False) if kind is TaskKind.EMAIL else None
                if refusal is not None:
                    raise InvalidInput("kind", f"lead {r.lead_id} may not be emailed: {refusal}")
        except (InvalidInput, NotFound) as exc:
            out.append(TaskOutcome(None, refused=exc.message))
            continue
        owner_id = r.owner_id
        if owner_id is None:
            owner_id = lead.owner_id if lead is not None and lead.owner_id else None
        if owner_id is not None and owner_id not in users:  # system actors assign freely
            owner_id = None
        task = Task(
            lead_id=r.lead_id,
            owner_id=owner_id,
            kind=kind.value,
            title=clean_title,
            notes=clean_notes,
            due_at=r.due_at,
            duration_minutes=30 if kind is TaskKind.MEETING else None,
            status=TaskStatus.OPEN.value,
            source=r.source[:40],
            source_key=r.source_key,
            created_by=None,
            created_at=now,
            updated_at=now,
        )
        new.append(task)
        if r.source_key:
            seen[r.source_key] = task
        out.append(TaskOutcome(task, created=True))
    if new:
        session.add_all(new)
        session.flush()  # one multi-row INSERT: the ids for the audit and the events
        record_many(
            session,
            actor,
            [{"entity_type": "task", "entity_id": t.id, "action": "create", "after": _snap(t)} for t in new],
        )
        for t in new:
            emit(session, "task.created", task_id=t.id, lead_id=t.lead_id, owner_id=t.owner_id, kind=t.kind)
    return out


_UNSET: Any = object()


def update_task(
    session: Session,
    actor: Principal,
    task_id: int,
    *,
    expected_version: int | None = None,
    title: str | None = None,
    notes: str | None = _UNSET,
    due_at: datetime | None = _UNSET,
    owner_id: int | None = _UNSET,
) -> Task:
    actor.require(Perm.ACTIVITIES_WRITE)
    task = get_task(session, actor, task_id, for_update=True)
    if expected_version is not None and expected_version != task.version:
        raise StaleVersion(f"task {task_id} is at version {task.version}", current_version=task.version)
    if task.status != TaskStatus.OPEN.value:
        raise InvalidInput("status", f"task {task_id} is {task.status}; only open tasks are edited")
    before = _snap(task)
    if title is not None:
        task.title = _check_text("title", title, 300, required=True) or task.title
    if notes is not _UNSET:
        task.notes = _check_text("notes", notes, 10_000)
    if due_at is not _UNSET:
        if due_at is not None and due_at.tzinfo is None:
            raise InvalidInput("due_at", "must include a time zone offset")
        task.due_at = due_at
    if owner_id is not _UNSET:
        _check_owner(session, actor, owner_id)
        task.owner_id = owner_id
    task.updated_at = clock_now()
    task.version += 1
    record(session, actor, "task", task.id, "update", before=before, after=_snap(task))
    return task


def complete_task(
    session: Session,
    actor: Principal,
    task_id: int,
    *,
    outcome: CallOutcome | str | None = None,
    notes: str | None = None,
) -> Task:
    """Mark a task done. A call task takes its outcome, which is logged as a call activity on the
    lead (an attempt for any sequence the lead is in)."""

    actor.require(Perm.ACTIVITIES_WRITE)
    task = get_task(session, actor, task_id, for_update=True)
    if task.status != TaskStatus.OPEN.value:
        raise InvalidInput("status", f"task {task_id} is already {task.status}")
    before = _snap(task)
    if task.kind == TaskKind.CALL.value:
        if outcome is None or outcome not in {o.value for o in CallOutcome}:
            # Checked here too: a call task without a lead never reaches log_call's check.
            raise InvalidInput(
                "outcome", f"a call needs its outcome: {', '.join(o.value for o in CallOutcome)}"
            )
        if task.lead_id is not None:
            log_call(session, actor, task.lead_id, outcome, notes=notes, task_id=task.id)
        task.outcome = CallOutcome(outcome).value
    elif outcome is not None:
        task.outcome = _check_text("outcome", str(outcome), 30)
    if notes is not None:
        extra = _check_text("notes", notes, 10_000)
        task.notes = f"{task.notes}\n{extra}" if task.notes else extra
    now = clock_now()
    task.status = TaskStatus.DONE.value
    task.completed_at = now
    task.completed_by = actor.user_id
    task.updated_at = now
    task.version += 1
    record(session, actor, "task", task.id, "complete", before=before, after=_snap(task))
    emit(
        session,
        "task.completed",
        task_id=task.id,
        lead_id=task.lead_id,
        kind=task.kind,
        outcome=task.outcome,
        source=task.source,
    )
    return task


def cancel_task(session: Session, actor: Principal, task_id: int, *, reason: str | None = None) -> Task:
    actor.require(Perm.ACTIVITIES_WRITE)
    task = get_task(session, actor, task_id, for_update=True)
    if task.status != TaskStatus.OPEN.value:
        raise InvalidInput("status", f"task {task_id} is already {task.status}")
    before = _snap(task)
    task.status = TaskStatus.CANCELLED.value
    task.updated_at = clock_now()
    task.version += 1
    record(session, actor, "task", task.id, "cancel", before=before, after=_snap(task), reason=reason)
    return task


def log_call(
    session: Session,
    actor: Principal,
    lead_id: int,
    outcome: CallOutcome | str,
    *,
    notes: str | None = None,
    task_id: int | None = None,
    at: datetime | None = None,
) -> int:
    """Record a call and its outcome as a call activity; returns the activity id. A wrong number
    flags the lead as a bad-lead candidate and opens a review task: a person decides, the call
    does not move the lead to bad by itself."""

    try:
        result = CallOutcome(outcome)
    except ValueError:
        raise InvalidInput("outcome", f"must be one of {', '.join(o.value for o in CallOutcome)}") from None
    notes = _check_text("notes", notes, 10_000)
    props: dict[str, Any] = {"outcome": result.value}
    if notes:
        props["notes"] = notes
    if task_id is not None:
        props["task_id"] = task_id
    activity = log_activity(
        session, actor, lead_id, ActivityType.CALL, occurred_at=at or clock_now(), properties=props
    )
    record(session, actor, "lead", lead_id, "call_logged", after=props)
    if result is CallOutcome.WRONG_NUMBER:
        flag_bad_candidate(session, actor, lead_id, WRONG_NUMBER_REASON, activity_id=activity.id)
    emit(session, "call.logged", lead_id=lead_id, outcome=result.value, activity_id=activity.id)
    return activity.id


def flag_bad_candidate(
    session: Session, actor: Principal, lead_id: int, reason: str, *, activity_id: int | None = None
) -> None:
    lead = get_lead(session, actor, lead_id, for_update=True)
    reasons = list(lead.bad_candidate_reasons or [])
    if reason not in reasons:
        before = {"bad_candidate_reasons": list(reasons)}
        reasons.append(reason)
        lead.bad_candidate_reasons = reasons
        record(
            session,
            actor,
            "lead",
            lead_id,
            "flag_bad_candidate",
            before=before,
            after={"bad_candidate_reasons": reasons},
            reason=reason,
        )
    create_task(
        session,
        actor,
        lead_id=lead_id,
        kind=TaskKind.TODO,
        title="Review: wrong number. Fix the phone or mark the lead bad",
        due_at=clock_now(),
        owner_id=lead.owner_id,
        assign_default=False,
        source="call_outcome",
        source_key=f"bad_candidate:{lead_id}:{activity_id or reason[:100]}",
    )


# ------------------------------------------------------------------------------- inbox


class Due(StrEnum):
    TODAY = "today"  # due today, in the viewer's time zone (overdue ones not included)
    OVERDUE = "overdue"  # due before now, still open
    UPCOMING = "upcoming"  # due after today
    ACTIONABLE = "actionable"  # overdue or due today: what the rep should do now


class Scope(StrEnum):
    MINE = "mine"
    TEAM = "team"
    ALL = "all"  # everything the actor may see


@dataclass
class TaskFilter:
    scope: Scope = Scope.ALL
    due: Due | None = None
    status: TaskStatus | None = TaskStatus.OPEN
    kind: TaskKind | None = None
    lead_id: int | None = None
    owner_id: int | None = None
    source: str | None = None
    timezone: str | None = None


def list_tasks(
    session: Session,
    actor: Principal,
    f: TaskFilter,
    *,
    cursor: str | None = None,
    limit: int = 50,
    at: datetime | None = None,
) -> Page[Task]:
    """The inbox, ordered by due date (tasks without a due date first, then oldest due)."""

    actor.require(Perm.LEADS_READ)
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be between 1 and 1000")
    if f.timezone and not is_valid_zone(f.timezone):
        raise InvalidInput("tz", f"unknown time zone {f.timezone!r}")
    stmt = select(Task)
    vis = task_visibility(session, actor)
    if vis is not None:
        stmt = stmt.where(vis)
    if f.scope is Scope.MINE:
        if actor.user_id is None:
            raise InvalidInput("scope", "'mine' needs a signed-in user")
        stmt = stmt.where(Task.owner_id == actor.user_id)
    elif f.scope is Scope.TEAM:
        if actor.team:
            stmt = stmt.where(Task.owner_id.in_(select(User.id).where(User.team == actor.team)))
        elif actor.user_id is not None:
            stmt = stmt.where(Task.owner_id == actor.user_id)
    if f.status is not None:
        stmt = stmt.where(Task.status == f.status.value)
    if f.kind is not None:
        stmt = stmt.where(Task.kind == f.kind.value)
    if f.lead_id is not None:
        get_lead(session, actor, f.lead_id)
        stmt = stmt.where(Task.lead_id == f.lead_id)
    if f.owner_id is not None:
        stmt = stmt.where(Task.owner_id == f.owner_id)
    if f.source:
        stmt = stmt.where(Task.source == f.source)
    if f.due is not None:
        now = at or clock_now()
        tz_name = f.timezone or _default_tz()
        today: date = now.astimezone(zone(tz_name)).date()
        day_start, day_end = local_day_bounds(today, tz_name)
        if f.due is Due.TODAY:
            stmt = stmt.where(Task.due_at >= max(day_start, now), Task.due_at < day_end)
        elif f.due is Due.OVERDUE:
            stmt = stmt.where(Task.due_at < now)
        elif f.due is Due.UPCOMING:
            stmt = stmt.where(Task.due_at >= day_end)
        else:
            stmt = stmt.where(Task.due_at < day_end)
    rows = list(
        session.scalars(keyset(stmt, Task.due_at, Task.id, descending=False, cursor=cursor, limit=limit))
    )
    return page_of(rows, limit, lambda t: (t.due_at, t.id))


def _default_tz() -> str:
    from leadflow.config import get_settings

    return get_settings().default_timezone
