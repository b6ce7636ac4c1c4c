"""``leadflow tasks list|add|done|cancel`` and ``leadflow call``: the rep inbox from a terminal."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from leadflow.errors import InvalidInput
from leadflow.tasks import service as svc
from leadflow.tasks.models import TaskKind

tasks_app = typer.Typer(help="Tasks: the inbox (due today, overdue), add, complete.", no_args_is_help=True)
AsOption = Annotated[str | None, typer.Option("--as", help="Act as this user (email)")]


def _when(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(field, "is not an ISO 8601 timestamp") from None
    if when.tzinfo is None:
        raise InvalidInput(field, "must include a time zone offset, e.g. 2026-11-24T09:00+01:00")
    return when


def register(app: typer.Typer) -> None:
    from leadflow.cli import actor_for, console, handle_errors, open_db

    @tasks_app.command("list")
    @handle_errors
    def tasks_list(
        due: Annotated[svc.Due | None, typer.Option(help="today, overdue, upcoming, actionable")] = None,
        scope: Annotated[svc.Scope, typer.Option(help="mine, team or all visible")] = svc.Scope.ALL,
        lead: Annotated[int | None, typer.Option(help="Only this lead's tasks")] = None,
        tz: Annotated[str | None, typer.Option(help="Time zone for 'today'")] = None,
        limit: Annotated[int, typer.Option(help="At most this many")] = 50,
        as_user: AsOption = None,
    ) -> None:
        """The task inbox."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            page = svc.list_tasks(
                s, actor, svc.TaskFilter(scope=scope, due=due, lead_id=lead, timezone=tz), limit=limit
            )
            table = Table("id", "due", "kind", "lead", "owner", "title", "source")
            for t in page.items:
                table.add_row(
                    str(t.id),
                    t.due_at.strftime("%Y-%m-%d %H:%M") if t.due_at else "-",
                    t.kind,
                    str(t.lead_id or "-"),
                    str(t.owner_id or "-"),
                    t.title,
                    t.source,
                )
        console.print(table)
        console.print(f"{len(page.items)} task(s)")

    @tasks_app.command("add")
    @handle_errors
    def tasks_add(
        lead: Annotated[int, typer.Argument(help="Lead id")],
        title: Annotated[str, typer.Option(help="What to do")],
        kind: Annotated[TaskKind, typer.Option(help="call, email, meeting, todo")] = TaskKind.TODO,
        due: Annotated[str | None, typer.Option(help="Due time, ISO 8601 with offset")] = None,
        owner: Annotated[int | None, typer.Option(help="Owner user id (default: the lead's owner)")] = None,
        as_user: AsOption = None,
    ) -> None:
        """Open a task on a lead."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            task = svc.create_task(
                s, actor, lead_id=lead, kind=kind, title=title, due_at=_when(due, "--due"), owner_id=owner
            )
            console.print(f"task {task.id} opened for lead {lead} (owner {task.owner_id or '-'})")

    @tasks_app.command("done")
    @handle_errors
    def tasks_done(
        task_id: Annotated[int, typer.Argument(help="Task id")],
        outcome: Annotated[
            str | None, typer.Option(help="Calls: connected, voicemail, no_answer, wrong_number")
        ] = None,
        notes: Annotated[str | None, typer.Option(help="Notes")] = None,
        as_user: AsOption = None,
    ) -> None:
        """Complete a task (a call with its outcome counts as an attempt)."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            task = svc.complete_task(s, actor, task_id, outcome=outcome, notes=notes)
            console.print(f"task {task.id} done" + (f" ({task.outcome})" if task.outcome else ""))

    @tasks_app.command("cancel")
    @handle_errors
    def tasks_cancel(
        task_id: Annotated[int, typer.Argument(help="Task id")],
        reason: Annotated[str | None, typer.Option(help="Why")] = None,
        as_user: AsOption = None,
    ) -> None:
        """Cancel an open task."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            svc.cancel_task(s, actor, task_id, reason=reason)
        console.print(f"task {task_id} cancelled")

    @app.command("call")
    @handle_errors
    def call(
        lead: Annotated[int, typer.Argument(help="Lead id")],
        outcome: Annotated[
            svc.CallOutcome, typer.Option(help="connected, voicemail, no_answer, wrong_number")
        ],
        notes: Annotated[str | None, typer.Option(help="Notes")] = None,
        as_user: AsOption = None,
    ) -> None:
        """Log a call and its outcome on a lead."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            activity = svc.log_call(s, actor, lead, outcome, notes=notes)
        console.print(f"call logged on lead {lead} ({outcome.value}, activity {activity})")

    app.add_typer(tasks_app, name="tasks")
