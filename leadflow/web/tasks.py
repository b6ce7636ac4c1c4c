"""Task inbox (due today and overdue, one-click outcomes), the lead page's tasks and sequence
enrollment, on ``leadflow.tasks.service`` and ``leadflow.cadences.service``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from leadflow.auth import service as auth
from leadflow.cadences import service as cadences
from leadflow.cadences.service import EnrollmentFilter
from leadflow.db.base import utcnow
from leadflow.errors import InvalidInput
from leadflow.leads.models import Lead
from leadflow.tasks import service as tasks
from leadflow.tasks.models import TaskKind, TaskStatus
from leadflow.tasks.service import CallOutcome, Due, Scope, TaskFilter
from leadflow.web.core import PREFIX, Ctx, CtxDep, redirect, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)

OUTCOMES = [o.value for o in CallOutcome]


@router.get("/tasks", response_class=HTMLResponse)
def inbox(ctx: CtxDep, due: str = "actionable", scope: str = "mine", cursor: str | None = None) -> Response:
    try:
        due_f = Due(due) if due != "all" else None
        scope_f = Scope(scope)
    except ValueError:
        raise InvalidInput("due", "unknown filter") from None
    now = utcnow()
    with ctx.db.transaction() as s:
        page = tasks.list_tasks(
            s, ctx.principal, TaskFilter(scope=scope_f, due=due_f), cursor=cursor, limit=100
        )
        lead_ids = {t.lead_id for t in page.items if t.lead_id is not None}
        names = {
            lead.id: lead
            for lead in (s.get(Lead, i) for i in lead_ids)  # tasks are visible only on visible leads
            if lead is not None
        }
        owners = {u.id: u for u in auth.list_users(s)}
    overdue = [t for t in page.items if t.due_at is not None and t.due_at < now]
    rest = [t for t in page.items if t not in overdue]
    return render(
        ctx,
        ctx.request,
        "tasks.html",
        nav="tasks",
        overdue=overdue,
        rest=rest,
        leads=names,
        owners=owners,
        due=due,
        scope=scope,
        outcomes=OUTCOMES,
        next_cursor=page.next_cursor,
        now=now,
    )


@router.post("/tasks/{task_id}/complete", response_class=HTMLResponse)
def complete(
    ctx: CtxDep,
    task_id: int,
    outcome: Annotated[str, Form()] = "",
    notes: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    with ctx.db.transaction() as s:
        task = tasks.complete_task(
            s, ctx.principal, task_id, outcome=outcome or None, notes=notes.strip() or None
        )
        title, done_outcome = task.title, task.outcome
    if ctx.is_htmx and not back:
        # The inbox swaps the row for this line: one click, no reload.
        label = f" ({done_outcome.replace('_', ' ')})" if done_outcome else ""
        return render(ctx, ctx.request, "_task_done.html", title=title, label=label)
    return redirect(ctx, back if back.startswith(PREFIX + "/") else PREFIX + "/tasks")


@router.post("/tasks/{task_id}/cancel", response_class=HTMLResponse)
def cancel(ctx: CtxDep, task_id: int, back: Annotated[str, Form()] = "") -> Response:
    with ctx.db.transaction() as s:
        task = tasks.cancel_task(s, ctx.principal, task_id, reason="cancelled in the web UI")
        title = task.title
    if ctx.is_htmx and not back:
        return render(ctx, ctx.request, "_task_done.html", title=title, label=" (cancelled)")
    return redirect(ctx, back if back.startswith(PREFIX + "/") else PREFIX + "/tasks")


@router.post("/leads/{lead_id}/tasks")
def add_task(
    ctx: CtxDep,
    lead_id: int,
    kind: Annotated[str, Form()] = "call",
    title: Annotated[str, Form()] = "",
    due_in_hours: Annotated[int, Form()] = 24,
) -> Response:
    if not 0 <= due_in_hours <= 24 * 365:
        raise InvalidInput("due_in_hours", "must be between 0 and 8760")
    with ctx.db.transaction() as s:
        tasks.create_task(
            s,
            ctx.principal,
            lead_id=lead_id,
            kind=kind,
            title=title or f"{kind} follow-up",
            due_at=utcnow() + timedelta(hours=due_in_hours),
        )
    return redirect(ctx, f"{PREFIX}/leads/{lead_id}")


@router.post("/leads/{lead_id}/enroll")
def enroll(ctx: CtxDep, lead_id: int, sequence: Annotated[str, Form()] = "") -> Response:
    if not sequence:
        raise InvalidInput("sequence", "choose a sequence")
    with ctx.db.transaction() as s:
        cadences.enroll(s, ctx.principal, lead_id, sequence, source="web")
    return redirect(ctx, f"{PREFIX}/leads/{lead_id}")


@router.post("/leads/{lead_id}/call")
def log_call(
    ctx: CtxDep,
    lead_id: int,
    outcome: Annotated[str, Form()] = "",
    notes: Annotated[str, Form()] = "",
) -> Response:
    with ctx.db.transaction() as s:
        tasks.log_call(s, ctx.principal, lead_id, outcome, notes=notes.strip() or None)
    return redirect(ctx, f"{PREFIX}/leads/{lead_id}")


def lead_tasks(session: Session, ctx: Ctx, lead: Lead) -> dict[str, Any]:
    """What the lead page shows of cadences: open tasks, enrollments, sequences to enroll in."""

    open_tasks = tasks.list_tasks(
        session, ctx.principal, TaskFilter(lead_id=lead.id, status=TaskStatus.OPEN), limit=20
    ).items
    enrollments = cadences.list_enrollments(
        session, ctx.principal, EnrollmentFilter(lead_id=lead.id), limit=10
    ).items
    sequences = {s.id: s for s in cadences.list_sequences(session, ctx.principal)}
    return {
        "tasks": open_tasks,
        "enrollments": enrollments,
        "sequences": sequences,
        "task_kinds": [k.value for k in TaskKind],
        "call_outcomes": OUTCOMES,
        "now": utcnow(),
    }


def overdue(due_at: datetime | None, now: datetime) -> bool:
    return due_at is not None and due_at < now
