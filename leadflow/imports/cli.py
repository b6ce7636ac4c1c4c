"""``leadflow import FILE.csv``: the CSV import on the command line, with a progress bar.

The root CLI adds the command with :func:`register`. Exit codes: 0 every row imported (or
unchanged); 1 the import ran but some rows failed (see the error report); 2 the file was refused
(nothing written) or the arguments are wrong.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from leadflow.errors import LeadflowError
from leadflow.imports.mapping import Mapping
from leadflow.imports.reader import ImportFileError
from leadflow.imports.service import ImportResult, run_import

HELP = """Import leads from a CSV file (comma, semicolon or tab separated; UTF-8, UTF-16 or
Windows-1252).

Every row needs an email: leads are matched by it, so importing the same file again creates no
duplicates (unchanged rows are skipped, changed ones updated; blank cells never erase stored
values). Rows that cannot be imported are listed in an error report (line, column, value, reason).

Exit codes: 0 all rows imported, 1 some rows failed, 2 the file was refused (nothing written).
"""


class RateColumn(ProgressColumn):
    """Rows per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "", style="progress.data.speed")


def _summary(console: Console, result: ImportResult) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    verb = "would be " if result.dry_run else ""
    table.add_row(f"{verb}created", f"{result.created:,}")
    table.add_row(f"{verb}updated", f"{result.updated:,}")
    table.add_row("unchanged (skipped)", f"{result.skipped:,}")
    table.add_row("failed", f"[red]{result.failed:,}[/]" if result.failed else "0")
    table.add_row("warnings", f"{result.warnings:,}")
    if not result.dry_run:
        table.add_row("accounts created", f"{result.accounts_created:,}")
    title = "Dry run (nothing written)" if result.dry_run else f"Import #{result.id}"
    console.print(
        f"[bold]{title}[/]: {result.rows_total:,} rows in {result.seconds:.1f}s "
        f"({result.rows_per_second:,.0f} rows/s), {result.encoding}, "
        f"delimiter {result.delimiter!r}"
    )
    console.print(table)
    if result.failed or result.warnings:
        console.print(f"error report: {result.error_report}")


def import_command(
    file: Annotated[Path, typer.Argument(help="The CSV file", show_default=False)],
    mapping: Annotated[
        Mapping,
        typer.Option(
            "--mapping",
            "-m",
            case_sensitive=False,
            help="Column names: auto (common synonyms), salesforce (Lead export), hubspot (contacts export)",
        ),
    ] = Mapping.AUTO,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the file and count what would change; write nothing")
    ] = False,
    as_user: Annotated[
        str | None, typer.Option("--as", help="Run as this user (email); default: an admin 'cli' actor")
    ] = None,
    errors: Annotated[
        Path | None, typer.Option("--errors", help="Also copy the error report (CSV) to this path")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Validation processes (default: one per core; 0 validates in this process)"),
    ] = None,
) -> None:
    from leadflow import cli as root  # the root CLI imports this module

    db = root.open_db()
    try:
        actor = root.actor_for(db, as_user)
        console = root.console
        started = time.perf_counter()
        with Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as bar:
            task = bar.add_task(f"checking {file.name}", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, description=f"importing {file.name}", completed=done, total=total)

            try:
                result = run_import(
                    db,
                    file,
                    mapping=mapping.value,
                    dry_run=dry_run,
                    actor=actor,
                    progress=progress,
                    filename=file.name,
                    workers=workers,
                )
            except ImportFileError as exc:
                bar.stop()
                raise root.fail(f"{file}: {exc.reason}") from None
            except LeadflowError as exc:
                bar.stop()
                raise root.fail(exc.message) from None
        result.seconds = result.seconds or time.perf_counter() - started
        _summary(console, result)
        if errors is not None and result.error_report:
            shutil.copyfile(result.error_report, errors)
            console.print(f"error report copied to {errors}")
    finally:
        db.dispose()
    if result.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``import`` to the root command line."""

    app.command("import", help=HELP)(import_command)
