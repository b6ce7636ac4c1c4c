"""``leadflow sequences list|enroll|stop|run-due`` and ``leadflow worker``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from leadflow.cadences import service as svc

sequences_app = typer.Typer(
    help="Follow-up sequences: list, enroll, stop, run due steps.", no_args_is_help=True
)
AsOption = Annotated[str | None, typer.Option("--as", help="Act as this user (email)")]


def register(app: typer.Typer) -> None:
    from leadflow.cli import actor_for, console, handle_errors, open_db

    @sequences_app.command("list")
    @handle_errors
    def sequences_list(as_user: AsOption = None) -> None:
        """Sequences and their steps."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            table = Table("key", "name", "steps", "max attempts", "then", "active")
            for q in svc.list_sequences(s, actor):
                kinds = " ".join(
                    st["type"] + (f"({st['days']}d)" if st["type"] == "wait" else "") for st in q.steps
                )
                table.add_row(
                    q.key, q.name, kinds, str(q.max_attempts), q.on_exhausted, "yes" if q.active else "no"
                )
        console.print(table)

    @sequences_app.command("enroll")
    @handle_errors
    def sequences_enroll(
        sequence: Annotated[str, typer.Argument(help="Sequence key")],
        leads: Annotated[list[int], typer.Argument(help="Lead ids")],
        as_user: AsOption = None,
    ) -> None:
        """Enroll leads in a sequence (a lead already in it stays as it is)."""

        db = open_db()
        actor = actor_for(db, as_user)
        created = 0
        with db.transaction() as s:
            for lead_id in leads:
                _, new = svc.enroll(s, actor, lead_id, sequence)
                created += int(new)
        console.print(f"{created} enrolled, {len(leads) - created} already in {sequence}")

    @sequences_app.command("stop")
    @handle_errors
    def sequences_stop(
        enrollment: Annotated[int, typer.Argument(help="Enrollment id")],
        reason: Annotated[str | None, typer.Option(help="Why")] = None,
        as_user: AsOption = None,
    ) -> None:
        """Stop an enrollment by hand."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            svc.stop_enrollment(s, actor, enrollment, reason=reason)
        console.print(f"enrollment {enrollment} stopped")

    @sequences_app.command("run-due")
    @handle_errors
    def sequences_run_due() -> None:
        """Run the due steps once, in this process."""

        db = open_db()
        result = svc.run_due(db)
        console.print(json.dumps({"claimed": result.claimed, "flagged": result.flagged, **result.outcomes}))

    @app.command("worker")
    @handle_errors
    def worker(
        once: Annotated[bool, typer.Option("--once", help="Run every job once and exit")] = False,
        threads: Annotated[int | None, typer.Option(help="Worker threads")] = None,
    ) -> None:
        """Run background jobs (due sequence steps, webhooks, SLA checks) until stopped."""

        from leadflow.cadences import handlers
        from leadflow.jobs import Worker, install, make_queue, registered_jobs, run_all_once

        db = open_db()
        handlers.register(db)
        if once:
            console.print(json.dumps(run_all_once(db), default=str))
            return
        w = Worker(db, make_queue())
        install(w)
        names = ", ".join(j.name for j in registered_jobs())
        console.print(f"worker {svc.worker_id()} running jobs: {names}")
        w.run_forever(threads)

    app.add_typer(sequences_app, name="sequences")
