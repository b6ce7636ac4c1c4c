"""The ``leadflow`` command line: the composition root for local administration."""

from __future__ import annotations

import csv
import functools
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.exc import DataError

from leadflow.auth import service as auth
from leadflow.auth.models import Role, User
from leadflow.auth.principal import Perm, Principal
from leadflow.cadences.cli import register as register_cadences
from leadflow.config import get_settings
from leadflow.core import lifecycle
from leadflow.core.lifecycle import BadReason, LifecycleError, Stage
from leadflow.db.base import Database
from leadflow.db.migrate import upgrade
from leadflow.errors import InvalidInput, LeadflowError
from leadflow.imports.cli import register as register_import
from leadflow.leads import service as leads
from leadflow.leads.models import Lead
from leadflow.leads.schemas import LeadOut
from leadflow.ops.cli import register as register_ops
from leadflow.pipeline.cli import register as register_pipeline
from leadflow.qualification.cli import register as register_qualification
from leadflow.reports.cli import register as register_reports
from leadflow.scoring.cli import register as register_scoring
from leadflow.tasks.cli import register as register_tasks
from leadflow.webhooks.cli import register as register_webhooks

app = typer.Typer(
    name="leadflow",
    help="Leadflow: lead -> prospect -> opportunity, with explained scores and evidence-backed stages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
leads_app = typer.Typer(help="Browse leads.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
user_app = typer.Typer(help="Users and roles.", no_args_is_help=True)
app.add_typer(leads_app, name="leads")
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")

console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

AsOption = Annotated[
    str | None, typer.Option("--as", help="Act as this user (email); default: an admin 'cli' actor")
]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")  # the message may quote user text
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Domain errors become a one-line message and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LifecycleError as exc:
            legal = ", ".join(s.value for s in exc.legal) or "none"
            raise fail(f"{exc.message} (legal moves from {exc.current.value}: {legal})") from None
        except LeadflowError as exc:
            raise fail(exc.message) from None
        except (DataError, OverflowError):  # e.g. an id beyond the database's integer column
            raise fail("a value is out of range for the database") from None

    return wrapper  # type: ignore[return-value]


def open_db(migrate: bool = True) -> Database:
    from leadflow.wiring import register_reactions

    db = Database(get_settings().database_url)
    if migrate:
        upgrade(db.engine)
    # The same reactions as the API's: a lead imported or moved here is scored, handed off...
    register_reactions(db)
    return db


def actor_for(db: Database, email: str | None) -> Principal:
    if email is None:
        return Principal(user_id=None, label=f"cli ({getpass.getuser()})", role=Role.ADMIN)
    with db.transaction() as s:
        user = s.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise InvalidInput("--as", f"no user with email {email}")
        return auth.principal_for(user)


# ----------------------------------------------------------------------------------- setup


@app.command()
@handle_errors
def init() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""

    db = open_db()
    console.print(
        f"[green]database ready[/] ({db.dialect}: {db.engine.url.render_as_string(hide_password=True)})"
    )
    db.dispose()


@app.command()
@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
) -> None:
    """Migrate, then serve the API (OpenAPI docs at /docs)."""

    import uvicorn

    from leadflow.api import create_app
    from leadflow.ops.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    db = open_db()
    h, p = host or settings.host, port or settings.port
    console.print(f"Leadflow on [bold]http://{h}:{p}[/]  (API docs: http://{h}:{p}/docs)")
    from leadflow.jobs import start_embedded_worker

    worker = start_embedded_worker(db)  # the embedded setup runs background jobs in-process
    try:
        uvicorn.run(create_app(db), host=h, port=p, log_level=settings.log_level, log_config=None)
    finally:
        worker.stop()


@app.command()
@handle_errors
def demo(
    leads_count: Annotated[int, typer.Option("--leads", help="How many demo leads")] = 2000,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve after loading")] = True,
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
) -> None:
    """Load realistic demo data into an empty database, print an admin token, and serve."""

    from leadflow.demo import load_demo

    db = open_db()
    with db.transaction() as s:
        existing = int(s.scalar(select(func.count()).select_from(Lead)) or 0)
        users = int(s.scalar(select(func.count()).select_from(User)) or 0)
    if existing == 0 and users == 0:
        with console.status(f"Loading {leads_count:,} demo leads with accounts and engagement history..."):
            summary = load_demo(db, leads=leads_count)
        console.print(f"[green]demo data loaded:[/] {summary}", soft_wrap=True)
    else:
        console.print(
            f"database already holds {existing:,} leads and {users:,} users; keeping them "
            "(point LEADFLOW_DATABASE_URL at a new file for a fresh demo)"
        )
    with db.transaction() as s:
        admin = s.scalar(select(User).where(User.role == Role.ADMIN.value).order_by(User.id).limit(1))
        if admin is None:
            admin = auth.create_user(
                s, actor_for(db, None), name="Admin", email="admin@leadflow.example.com", role=Role.ADMIN
            )
        issued = auth.create_token(s, actor_for(db, None), admin.id, name="demo")
        admin_email = admin.email
    console.print(f"admin user: [bold]{admin_email}[/]")
    console.print(f"admin API token: [bold yellow]{issued.token}[/]", soft_wrap=True)
    settings = get_settings()
    h, p = host or settings.host, port or settings.port
    console.print(
        f'try: curl -H "Authorization: Bearer {issued.token}" "http://{h}:{p}/api/leads?limit=5"',
        soft_wrap=True,
    )
    if serve_after:
        serve(host=h, port=p)


# ----------------------------------------------------------------------------------- users


@user_app.command("create")
@handle_errors
def user_create(
    email: Annotated[str, typer.Argument(help="Sign-in email")],
    name: Annotated[str, typer.Option(help="Full name")],
    role: Annotated[Role, typer.Option(help="admin, marketing, sales_rep or manager")],
    team: Annotated[str | None, typer.Option(help="Sales team")] = None,
    password: Annotated[
        bool, typer.Option("--password/--no-password", help="Prompt for a web sign-in password")
    ] = False,
) -> None:
    """Create a user."""

    pw = typer.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    db = open_db()
    with db.transaction() as s:
        user = auth.create_user(
            s, actor_for(db, None), name=name, email=email, role=role, team=team, password=pw
        )
        console.print(f"created user {user.id}: {user.email} ({user.role})")


@user_app.command("list")
@handle_errors
def user_list() -> None:
    """List users."""

    db = open_db()
    table = Table("id", "name", "email", "role", "team", "active")
    with db.transaction() as s:
        for u in auth.list_users(s):
            table.add_row(
                str(u.id), escape(u.name), u.email, u.role, escape(u.team or ""), "yes" if u.active else "no"
            )
    console.print(table)


@token_app.command("create")
@handle_errors
def token_create(
    email: Annotated[str, typer.Argument(help="The user the token acts as")],
    name: Annotated[str, typer.Option(help="A label for the token")] = "cli",
    scope: Annotated[
        list[str] | None, typer.Option(help="Limit to a right, e.g. leads:read (repeat)")
    ] = None,
) -> None:
    """Create an API token for a user; it is printed once."""

    db = open_db()
    with db.transaction() as s:
        user = s.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise InvalidInput("email", f"no user with email {email}")
        issued = auth.create_token(s, actor_for(db, None), user.id, name=name, scopes=scope or [])
    console.print(issued.token)


@token_app.command("revoke")
@handle_errors
def token_revoke(token_id: Annotated[int, typer.Argument(help="Token id")]) -> None:
    """Revoke an API token."""

    db = open_db()
    with db.transaction() as s:
        auth.revoke_token(s, actor_for(db, None), token_id)
    console.print(f"token {token_id} revoked")


# ----------------------------------------------------------------------------------- leads


def _filter(
    stage: list[Stage] | None, owner: int | None, source: str | None, q: str | None
) -> leads.LeadFilter:
    return leads.LeadFilter(stage=stage, owner_id=owner, source=source, q=q)


StageOpt = Annotated[list[Stage] | None, typer.Option("--stage", help="Filter by stage (repeat)")]


@leads_app.command("list")
@handle_errors
def leads_list(
    stage: StageOpt = None,
    owner: Annotated[int | None, typer.Option(help="Owner user id")] = None,
    source: Annotated[str | None, typer.Option(help="Lead source")] = None,
    q: Annotated[str | None, typer.Option(help="Prefix of name, email or company")] = None,
    sort: Annotated[str, typer.Option(help="id, created_at, updated_at, last_name; '-' = descending")] = "id",
    limit: Annotated[int, typer.Option(help="Rows")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page")] = None,
    as_user: AsOption = None,
) -> None:
    """List leads."""

    db = open_db()
    actor = actor_for(db, as_user)
    desc = sort.startswith("-")
    with db.transaction() as s:
        page = leads.list_leads(
            s,
            actor,
            _filter(stage, owner, source, q),
            sort=sort.lstrip("-"),
            descending=desc,
            cursor=cursor,
            limit=limit,
        )
        total = leads.count_leads(s, actor, _filter(stage, owner, source, q))
    table = Table(
        "id", "name", "email", "company", "stage", "source", "owner", "created", title=f"{total:,} leads"
    )
    for lead in page.items:
        table.add_row(
            str(lead.id),
            escape(" ".join(x for x in (lead.first_name, lead.last_name) if x)),
            lead.email or "",
            escape(lead.company or ""),
            lead.stage,
            escape(lead.source or ""),
            str(lead.owner_id or ""),
            lead.created_at.strftime("%Y-%m-%d"),
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"next page: --cursor {page.next_cursor}")


@leads_app.command("show")
@handle_errors
def leads_show(
    lead_id: Annotated[int, typer.Argument(help="Lead id")],
    as_user: AsOption = None,
) -> None:
    """Show a lead with its stage history."""

    db = open_db()
    actor = actor_for(db, as_user)
    with db.transaction() as s:
        lead = leads.get_lead(s, actor, lead_id)
        data = LeadOut.model_validate(lead).model_dump(mode="json")
        history = leads.stage_history(s, actor, lead_id)
        legal = lifecycle.legal_targets(Stage(lead.stage), lifecycle.Origin(lead.origin))
    table = Table(show_header=False, title=f"lead {lead_id}")
    for key, value in data.items():
        if value not in (None, "", [], {}):
            table.add_row(key, escape(json.dumps(value) if isinstance(value, dict | list) else str(value)))
    console.print(table)
    hist = Table("at", "from", "to", "reason", "evidence", title="stage history")
    for h in history:
        hist.add_row(
            h.at.strftime("%Y-%m-%d %H:%M"),
            h.from_stage or "",
            h.to_stage,
            escape(h.reason or ""),
            escape(json.dumps(h.evidence) if h.evidence else ""),
        )
    console.print(hist)
    console.print(f"legal next moves: {', '.join(s.value for s in legal) or 'none'}")


@app.command()
@handle_errors
def transition(
    lead_id: Annotated[int, typer.Argument(help="Lead id")],
    to: Annotated[Stage, typer.Argument(help="Target stage")],
    reason: Annotated[
        str | None, typer.Option(help="Why (required for nurture/unqualified/recycled)")
    ] = None,
    bad_reason: Annotated[BadReason | None, typer.Option(help="For bad: the typed reason")] = None,
    evidence: Annotated[
        str | None, typer.Option(help='Evidence JSON, e.g. \'{"kind":"needs_assessment","qualified":true}\'')
    ] = None,
    as_user: AsOption = None,
) -> None:
    """Move a lead to another lifecycle stage, with the evidence it requires."""

    try:
        data = json.loads(evidence) if evidence else None
        if data is not None and not isinstance(data, dict):
            raise ValueError('must be a JSON object, e.g. {"kind": "needs_assessment"}')
        ev = lifecycle.evidence_from_dict(data)
    except (ValueError, json.JSONDecodeError) as exc:
        raise InvalidInput("--evidence", str(exc)) from None
    db = open_db()
    actor = actor_for(db, as_user)
    with db.transaction() as s:
        lead = leads.transition_lead(s, actor, lead_id, to, evidence=ev, reason=reason, bad_reason=bad_reason)
        console.print(f"lead {lead.id} is now [bold]{lead.stage}[/] (version {lead.version})")


EXPORT_COLUMNS = list(LeadOut.model_fields)


def _iter_leads(
    db: Database, actor: Principal, f: leads.LeadFilter, batch: int = 1000
) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        with db.transaction() as s:
            page = leads.list_leads(s, actor, f, cursor=cursor, limit=batch)
            rows = [LeadOut.model_validate(x).model_dump(mode="json") for x in page.items]
        yield from rows
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


@app.command()
@handle_errors
def export(
    output: Annotated[Path | None, typer.Argument(help="File to write; '-' or nothing for stdout")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    stage: StageOpt = None,
    owner: Annotated[int | None, typer.Option(help="Owner user id")] = None,
    source: Annotated[str | None, typer.Option(help="Lead source")] = None,
    as_user: AsOption = None,
) -> None:
    """Export leads as CSV or JSON (streamed page by page)."""

    if fmt not in ("csv", "json"):
        raise InvalidInput("--format", "must be csv or json")
    db = open_db()
    actor = actor_for(db, as_user)
    if not actor.can(Perm.LEADS_EXPORT):
        raise fail("this user may not export leads")
    to_stdout = output is None or str(output) == "-"
    handle = sys.stdout if to_stdout else open(output, "w", newline="", encoding="utf-8")  # type: ignore[arg-type]  # noqa: SIM115
    n = 0
    try:
        rows = _iter_leads(db, actor, _filter(stage, owner, source, None))
        if fmt == "csv":
            writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
                )
                n += 1
        else:
            handle.write("[")
            for row in rows:
                handle.write(("," if n else "") + "\n" + json.dumps(row))
                n += 1
            handle.write("\n]\n")
    finally:
        if not to_stdout:
            handle.close()
    if not to_stdout:
        err.print(f"exported {n:,} leads to {output} at {datetime.now():%H:%M:%S}")


register_import(app)
register_scoring(app)
register_qualification(app)
register_webhooks(app)
register_pipeline(app)
register_reports(app)
register_tasks(app)
register_cadences(app)
register_ops(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
