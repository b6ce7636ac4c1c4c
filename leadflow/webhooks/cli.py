"""``leadflow webhooks list|show|redeliver|deliver``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from leadflow.webhooks import service as svc

webhooks_app = typer.Typer(
    help="Webhook deliveries: the delivery log, redeliver, send due.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    from leadflow.cli import actor_for, console, handle_errors, open_db

    @webhooks_app.command("list")
    @handle_errors
    def list_cmd(
        status: Annotated[str | None, typer.Option(help="pending, delivered or failed")] = None,
        lead: Annotated[int | None, typer.Option(help="Only this lead's deliveries")] = None,
        limit: Annotated[int, typer.Option(help="How many (newest first)")] = 50,
        as_user: Annotated[str | None, typer.Option("--as", help="Act as this user (email)")] = None,
    ) -> None:
        """Deliveries, newest first, with their state and last answer."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            rows = svc.list_deliveries(s, actor, status=status, lead_id=lead, limit=limit)
            counts = svc.counts(s, actor)
            table = Table("id", "event", "lead", "url", "status", "attempts", "last", "next attempt")
            for r in rows:
                last = str(r.last_status_code or "") or (r.last_error or "")[:40]
                table.add_row(
                    str(r.id),
                    r.event,
                    str(r.lead_id or ""),
                    r.url[:60],
                    r.status,
                    f"{r.attempts}/{r.max_attempts}",
                    last,
                    f"{r.next_attempt_at:%Y-%m-%d %H:%M:%S}" if r.next_attempt_at else "",
                )
        console.print(table)
        console.print(", ".join(f"{k} {v:,}" for k, v in counts.items()))

    @webhooks_app.command("show")
    @handle_errors
    def show(
        delivery_id: Annotated[int, typer.Argument(help="Delivery id")],
        as_user: Annotated[str | None, typer.Option("--as", help="Act as this user (email)")] = None,
    ) -> None:
        """One delivery: its body and the attempt log (status code, latency, error)."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            row = svc.get_delivery(s, actor, delivery_id)
            attempts = svc.attempts_of(s, row.id)
            console.print(
                f"delivery {row.id} ({row.uid}) {row.event} -> {row.url}: [bold]{row.status}[/] "
                f"after {row.attempts}/{row.max_attempts} attempt(s)"
            )
            console.print_json(json.dumps(json.loads(row.body)))
            table = Table("attempt", "at", "status", "latency ms", "error", "note")
            for a in attempts:
                note = "manual" if a.manual else ""
                if a.detail and "retry_in_seconds" in a.detail:
                    note += f" retry in {a.detail['retry_in_seconds']}s"
                if a.detail and a.detail.get("gave_up"):
                    note += " gave up"
                table.add_row(
                    str(a.attempt),
                    f"{a.at:%Y-%m-%d %H:%M:%S}",
                    str(a.status_code or ""),
                    f"{a.latency_ms:.1f}",
                    a.error or "",
                    note.strip(),
                )
            console.print(table)

    @webhooks_app.command("redeliver")
    @handle_errors
    def redeliver(
        delivery_id: Annotated[int, typer.Argument(help="Delivery id")],
        now: Annotated[
            bool, typer.Option("--now/--queue", help="Attempt at once, or leave it to the worker")
        ] = True,
        as_user: Annotated[str | None, typer.Option("--as", help="Act as this user (email)")] = None,
    ) -> None:
        """Send a delivery again (same id and body, signed afresh), with a fresh retry budget."""

        db = open_db()
        actor = actor_for(db, as_user)
        if now:
            row = svc.redeliver_now(db, actor, delivery_id)
            console.print(
                f"delivery {row.id}: {row.status}"
                + (f" (HTTP {row.last_status_code})" if row.last_status_code else "")
                + (f": {row.last_error}" if row.last_error and row.status != "delivered" else "")
            )
        else:
            with db.transaction() as s:
                svc.redeliver(s, actor, delivery_id, reason="manual redelivery")
            console.print(f"delivery {delivery_id} queued")

    @webhooks_app.command("deliver")
    @handle_errors
    def deliver(limit: Annotated[int, typer.Option(help="At most this many")] = 1000) -> None:
        """Send the deliveries that are due now (what the worker does periodically)."""

        db = open_db()
        run = svc.deliver_due(db, limit=limit)
        console.print(
            f"attempted {run.attempted}: delivered {run.delivered}, "
            f"retrying {run.retrying}, failed {run.failed}"
        )

    app.add_typer(webhooks_app, name="webhooks")
