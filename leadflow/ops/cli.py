"""``leadflow backup PATH``, ``leadflow restore PATH``, ``leadflow verify-backup PATH`` and
``leadflow privacy export|erase LEAD``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from leadflow.ops import backup as backups

privacy_app = typer.Typer(
    help="Personal data: export everything about a person, erase a person.", no_args_is_help=True
)

AsOption = Annotated[
    str | None, typer.Option("--as", help="Act as this user (email); default: an admin 'cli' actor")
]


def register(app: typer.Typer) -> None:
    """Add the operations commands (called by the composition root, leadflow.cli)."""

    # The root's helpers, imported late: leadflow.cli imports this module.
    from leadflow.cli import actor_for, console, err, fail, handle_errors, open_db

    def _tables(fp: backups.Fingerprint, title: str) -> Table:
        table = Table("table", "rows", "checksum", title=title)
        for name, f in fp.items():
            table.add_row(name, f"{f.rows:,}", f.checksum[:12])
        return table

    @app.command("backup")
    @handle_errors
    def backup_cmd(
        path: Annotated[Path, typer.Argument(help="Backup file to write (plus PATH.manifest.json)")],
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the summary line")] = False,
    ) -> None:
        """Back up the database while it runs (SQLite online backup API; PostgreSQL pg_dump -Fc)."""

        db = open_db()
        try:
            with console.status(f"backing up the {db.dialect} database..."):
                res = backups.backup(db, path)
        except backups.BackupError as exc:
            raise fail(str(exc), code=1) from None
        finally:
            db.dispose()
        if not quiet:
            console.print(_tables(res.tables, f"backup {res.path}"))
        console.print(
            f"[green]backup written[/]: {res.path} ({res.bytes:,} bytes, {res.rows:,} rows in "
            f"{len(res.tables)} tables; manifest {res.manifest})"
        )

    @app.command("verify-backup")
    @handle_errors
    def verify_cmd(path: Annotated[Path, typer.Argument(help="Backup file")]) -> None:
        """Check a backup against its manifest without restoring it."""

        try:
            fp = backups.verify(path)
        except backups.BackupError as exc:
            raise fail(str(exc), code=1) from None
        console.print(f"[green]backup ok[/]: {sum(f.rows for f in fp.values()):,} rows in {len(fp)} tables")

    @app.command("restore")
    @handle_errors
    def restore_cmd(
        path: Annotated[Path, typer.Argument(help="Backup file written by `leadflow backup`")],
        yes: Annotated[bool, typer.Option("--yes", help="Replace the current data without asking")] = False,
    ) -> None:
        """Replace the database's contents with a backup, then compare every table with the backup's
        manifest (exit 1 when they differ)."""

        if not path.exists():
            raise fail(f"{path} does not exist")
        if not yes and not typer.confirm(f"Replace ALL current data with {path}?"):
            raise fail("restore cancelled", code=1)
        db = open_db(migrate=False)
        try:
            with console.status(f"restoring into the {db.dialect} database..."):
                fp = backups.restore(db, path)
        except backups.BackupError as exc:
            raise fail(str(exc), code=1) from None
        finally:
            db.dispose()
        console.print(
            f"[green]restored and verified[/]: {sum(f.rows for f in fp.values()):,} rows in {len(fp)} "
            "tables match the backup's manifest"
        )

    @privacy_app.command("export")
    @handle_errors
    def privacy_export(
        lead_id: Annotated[int, typer.Argument(help="Lead id")],
        output: Annotated[Path | None, typer.Option("--output", "-o", help="File; default stdout")] = None,
        reason: Annotated[str | None, typer.Option(help="Why (e.g. the request's ticket)")] = None,
        as_user: AsOption = None,
    ) -> None:
        """Everything held about a person as JSON (lead, merged duplicates, account, related records,
        audit trail). The export itself is recorded in the audit trail."""

        from leadflow.ops import privacy

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            doc = privacy.export_person(s, actor, lead_id, reason=reason)
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text, encoding="utf-8")
            err.print(f"exported lead {lead_id} to {output}")

    @privacy_app.command("erase")
    @handle_errors
    def privacy_erase(
        lead_id: Annotated[int, typer.Argument(help="Lead id")],
        reason: Annotated[str, typer.Option(help="Why (e.g. the erasure request)")],
        yes: Annotated[bool, typer.Option("--yes", help="Erase without asking")] = False,
        as_user: AsOption = None,
    ) -> None:
        """Erase a person: the lead, its merged duplicates and every feature's records of them; the
        audit trail keeps a tombstone without personal data."""

        from leadflow.ops import privacy

        if not yes and not typer.confirm(f"Erase lead {lead_id} and everything about them?"):
            raise fail("erase cancelled", code=1)
        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            privacy.erase_person(s, actor, lead_id, reason=reason)
        console.print(f"lead {lead_id} erased")

    app.add_typer(privacy_app, name="privacy")
