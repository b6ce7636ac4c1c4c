"""``/api/tasks``: the rep inbox (due today, overdue, mine, team) and task changes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from leadflow.auth.deps import DB, Actor
from leadflow.tasks import service as svc
from leadflow.tasks.models import TaskKind, TaskStatus
from leadflow.tasks.schemas import CallIn, TaskCancel, TaskComplete, TaskIn, TaskOut, TaskPage, TaskUpdate

router = APIRouter(prefix="/api", tags=["tasks"])


@router.get("/tasks", response_model=TaskPage, summary="The task inbox")
def list_tasks(
    db: DB,
    actor: Actor,
    scope: svc.Scope = svc.Scope.ALL,
    due: svc.Due | None = None,
    task_status: Annotated[TaskStatus | None, Query(alias="status")] = TaskStatus.OPEN,
    kind: TaskKind | None = None,
    lead_id: int | None = None,
    owner_id: int | None = None,
    source: str | None = None,
    tz: Annotated[str | None, Query(description="IANA time zone for 'today' (default: server's)")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Any:
    f = svc.TaskFilter(
        scope=scope,
        due=due,
        status=task_status,
        kind=kind,
        lead_id=lead_id,
        owner_id=owner_id,
        source=source,
        timezone=tz,
    )
    with db.transaction() as s:
        page = svc.list_tasks(s, actor, f, cursor=cursor, limit=limit)
        return {"items": [TaskOut.model_validate(t) for t in page.items], "next_cursor": page.next_cursor}


@router.post("/tasks", response_model=TaskOut, status_code=status.HTTP_201_CREATED)
def create_task(body: TaskIn, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        task = svc.create_task(s, actor, **body.model_dump())
        return TaskOut.model_validate(task)


@router.get("/tasks/{task_id}", response_model=TaskOut)
def get_task(task_id: int, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return TaskOut.model_validate(svc.get_task(s, actor, task_id))


@router.patch("/tasks/{task_id}", response_model=TaskOut)
def update_task(task_id: int, body: TaskUpdate, db: DB, actor: Actor) -> Any:
    changes = body.model_dump(exclude_unset=True)
    version = changes.pop("version", None)
    with db.transaction() as s:
        return TaskOut.model_validate(svc.update_task(s, actor, task_id, expected_version=version, **changes))


@router.post(
    "/tasks/{task_id}/complete", response_model=TaskOut, summary="Mark done (calls: with the outcome)"
)
def complete_task(task_id: int, body: TaskComplete, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return TaskOut.model_validate(
            svc.complete_task(s, actor, task_id, outcome=body.outcome, notes=body.notes)
        )


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut)
def cancel_task(task_id: int, body: TaskCancel, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return TaskOut.model_validate(svc.cancel_task(s, actor, task_id, reason=body.reason))


@router.post("/calls", status_code=status.HTTP_201_CREATED, summary="Log a call and its outcome")
def log_call(body: CallIn, db: DB, actor: Actor) -> dict[str, Any]:
    with db.transaction() as s:
        activity_id = svc.log_call(s, actor, body.lead_id, body.outcome, notes=body.notes)
    return {"activity_id": activity_id, "lead_id": body.lead_id, "outcome": body.outcome.value}
