"""``leadflow report NAME [--format table|csv|json] [--chart out.png] [-p key=value ...]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from leadflow.errors import InvalidInput
from leadflow.reports import registry
from leadflow.reports.render import to_csv, to_png, to_table

AsOption = Annotated[
    str | None, typer.Option("--as", help="Act as this user (email); default: an admin 'cli' actor")
]


def register(app: typer.Typer) -> None:
    """Add ``leadflow report`` (called by the composition root, leadflow.cli)."""

    from leadflow.cli import actor_for, console, err, handle_errors, open_db

    @app.command("report")
    @handle_errors
    def report(
        name: Annotated[
            str,
            typer.Argument(help="Report name; 'list' shows them all, 'refresh' rebuilds the funnel facts"),
        ],
        fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
        chart: Annotated[
            Path | None, typer.Option("--chart", help="Also write the chart as PNG here")
        ] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write csv/json here")] = None,
        param: Annotated[
            list[str] | None, typer.Option("--param", "-p", help="A report parameter key=value (repeatable)")
        ] = None,
        group_by: Annotated[
            str | None, typer.Option("--group-by", help="Shortcut for -p group_by=...")
        ] = None,
        since: Annotated[str | None, typer.Option("--from", help="First month YYYY-MM")] = None,
        until: Annotated[str | None, typer.Option("--to", help="Last month YYYY-MM")] = None,
        pipeline: Annotated[str | None, typer.Option("--pipeline", help="Pipeline id or key")] = None,
        full: Annotated[bool, typer.Option("--full", help="With 'refresh': rebuild from scratch")] = False,
        as_user: AsOption = None,
    ) -> None:
        """Run a report: a table (default), CSV or JSON, and a PNG chart with --chart."""

        if fmt not in ("table", "csv", "json"):
            raise InvalidInput("--format", "must be table, csv or json")
        if name == "list":
            table = Table("name", "title", "parameters", title="reports")
            for r in registry.all_reports():
                table.add_row(r.name, r.title, ", ".join(p.name for p in r.params))
            console.print(table)
            return
        raw: dict[str, str] = {}
        for item in param or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise InvalidInput("--param", f"{item!r} is not key=value")
            raw[key.strip()] = value
        shortcuts: dict[str, str | None] = {
            "group_by": group_by,
            "from": since,
            "to": until,
            "pipeline": pipeline,
        }
        raw.update({k: v for k, v in shortcuts.items() if v is not None})
        db = open_db()
        actor = actor_for(db, as_user)
        if name == "refresh":
            from leadflow.reports.facts import refresh

            with console.status("refreshing the funnel facts..."), db.transaction() as s:
                res = refresh(s, full=full)
            console.print(
                f"funnel facts: {res.leads:,} leads {'rebuilt' if res.full else 'updated'} "
                f"in {res.seconds:.2f}s"
            )
            return
        with db.transaction() as s:
            rep, params, result = registry.run(s, actor, name, raw)
        if fmt == "table":
            console.print(to_table(result))
        else:
            text = (
                to_csv(result)
                if fmt == "csv"
                else json.dumps(result.to_json(rep.name, params), indent=2, default=str)
            )
            if output is not None:
                output.write_text(text, encoding="utf-8")
                err.print(f"wrote {output}")
            else:
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
        if chart is not None:
            try:
                chart.write_bytes(to_png(result))
            except OSError as exc:
                raise InvalidInput("--chart", f"cannot write {chart}: {exc.strerror}") from None
            err.print(f"chart written to {chart}")
