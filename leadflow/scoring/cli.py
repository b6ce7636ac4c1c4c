"""``leadflow score explain LEAD`` and ``leadflow scoring show|set|versions|activate|rescore``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from leadflow.auth.principal import Principal
from leadflow.db.base import Database
from leadflow.errors import InvalidInput
from leadflow.scoring import service as svc

score_app = typer.Typer(help="Lead scores: explain a lead's score.", no_args_is_help=True)
scoring_app = typer.Typer(
    help="Scoring models: show, set, activate, roll back, rescore.", no_args_is_help=True
)


AsOption = Annotated[
    str | None, typer.Option("--as", help="Act as this user (email); default: an admin 'cli' actor")
]


def _rescore(db: Database, actor: Principal, fire: bool = True, rebuild: bool = False) -> None:
    from leadflow.cli import console

    with Progress(
        TextColumn("rescoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("leads", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = svc.rescore_all(db, actor, progress=progress, fire=fire, rebuild=rebuild)
    actions = ", ".join(f"{k} {v:,}" for k, v in sorted(result.actions.items())) or "none"
    console.print(
        f"model v{result.model_version}: {result.leads:,} leads in {result.seconds:.1f}s, "
        f"{result.changed:,} changed ({result.written:,} written), "
        f"{result.crossings:,} threshold crossings (actions: {actions}); "
        + (
            "engagement state built from the events"
            if result.rebuilt
            else "engagement from the kept state (no pass over the events)"
        )
        + f"; fit carried forward for {result.fit_carried:,} leads"
    )


def _load(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput("FILE", f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(
            "FILE", f"{path} is not a valid {'JSON' if path.suffix == '.json' else 'YAML'} document: {exc}"
        ) from None


def register(app: typer.Typer) -> None:
    """Add the score and scoring commands (called by the composition root, leadflow.cli)."""

    # The root's helpers, imported late: leadflow.cli imports this module.
    from leadflow.cli import actor_for, console, err, fail, handle_errors, open_db

    @score_app.command("explain")
    @handle_errors
    def explain(
        lead_id: Annotated[int, typer.Argument(help="Lead id")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON")] = False,
        as_user: AsOption = None,
    ) -> None:
        """A lead's score broken into the rules that fired, their points and events; its history."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            view = svc.explain(s, actor, lead_id)
            doc = view.score.explanation()
            history = [(h.at, h.total, h.model_version) for h in view.history]
            firings = [(f.at, f.threshold_id, f.action, f.outcome, f.detail) for f in view.firings]
        if as_json:
            doc.update(
                lead_id=lead_id,
                model_version=view.model_version,
                armed=view.armed,
                history=[{"at": a.isoformat(), "total": t, "model_version": v} for a, t, v in history],
            )
            console.print_json(json.dumps(doc))
            return
        c = console
        c.print(
            f"lead {lead_id}: [bold]total {doc['total']:.1f}[/]  "
            f"fit {doc['fit']:.1f} (grade {doc['grade']})  "
            f"engagement {doc['engagement']:.1f}  [dim]model v{view.model_version}[/]"
        )
        table = Table("rule", "kind", "points", "because")
        for r in doc["reasons"]:
            if r["kind"] == "fit":
                because = f"{r['field']} = {r['value']!r}"
            else:
                evs = r["events"][:3]
                because = f"{r['event_count']} event(s)" + (" (capped)" if r["capped"] else "")
                because += ": " + ", ".join(
                    f"#{e['id']} {e['occurred_at'][:10]} {e['points']:+.2f}" for e in evs
                )
                if r["event_count"] > len(evs):
                    because += ", ..."
            table.add_row(r["label"], r["kind"], f"{r['points']:+.2f}", because)
        c.print(table)
        state = ", ".join(
            f"{k}: {'armed' if v else 'fired, waiting to re-arm'}" for k, v in view.armed.items()
        )
        c.print(f"thresholds: {state or 'none'}")
        if history:
            c.print("history: " + "  ".join(f"{a:%Y-%m-%d %H:%M} {t:.1f}" for a, t, _ in history[-8:]))
        for at, tid, action, outcome, detail in firings:
            c.print(
                f"  {at:%Y-%m-%d %H:%M} {tid}: {action} -> {outcome}" + (f" ({detail})" if detail else "")
            )

    @scoring_app.command("show")
    @handle_errors
    def show(
        version: Annotated[
            int | None, typer.Option(help="A stored version; default: the active model")
        ] = None,
        fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
    ) -> None:
        """Print a model document (the active one by default)."""

        db = open_db()
        actor = actor_for(db, None)
        with db.transaction() as s:
            if version is None:
                active = svc.active_model(s)
                number, document = active.version, active.model.to_document()
            else:
                row = svc.get_version(s, actor, version)
                number, document = row.version, row.document
        if fmt == "json":
            print(json.dumps(document, indent=2))
        else:
            print(f"# scoring model version {number}")
            print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")

    @scoring_app.command("set")
    @handle_errors
    def set_model(
        file: Annotated[Path, typer.Argument(help="Model document (.yaml/.yml or .json)")],
        activate: Annotated[bool, typer.Option("--activate/--no-activate", help="Make it active")] = True,
        rescore: Annotated[
            bool, typer.Option("--rescore/--no-rescore", help="Rescore after activating")
        ] = True,
        as_user: AsOption = None,
    ) -> None:
        """Store a new version of the model from a file (validated: errors name rule and field)."""

        document = _load(file)
        db = open_db()
        actor = actor_for(db, as_user)
        try:
            with db.transaction() as s:
                row = svc.save_model(s, actor, document, activate=activate)
                number = row.version
        except InvalidInput as exc:
            for e in exc.extra.get("errors", [])[:20]:
                err.print(f"[red]invalid:[/] {e['msg']}")
            raise fail(f"{file} was not stored: {len(exc.extra.get('errors', [])) or 1} problem(s)") from None
        console.print(f"stored scoring model version {number}" + (" (active)" if activate else ""))
        if activate and rescore:
            _rescore(db, actor)

    @scoring_app.command("versions")
    @handle_errors
    def versions() -> None:
        """List stored model versions."""

        db = open_db()
        with db.transaction() as s:
            rows = svc.list_versions(s, actor_for(db, None))
            table = Table("version", "name", "active", "created", "activated")
            for r in rows:
                table.add_row(
                    str(r.version),
                    r.name,
                    "yes" if r.active else "",
                    f"{r.created_at:%Y-%m-%d %H:%M}",
                    f"{r.activated_at:%Y-%m-%d %H:%M}" if r.activated_at else "",
                )
        console.print(table if rows else "no stored versions: the built-in default (version 0) is active")

    @scoring_app.command("activate")
    @handle_errors
    def activate_cmd(
        version: Annotated[int, typer.Argument(help="Version to activate (also rolls back)")],
        rescore: Annotated[
            bool, typer.Option("--rescore/--no-rescore", help="Rescore after activating")
        ] = True,
        as_user: AsOption = None,
    ) -> None:
        """Activate a stored version (a rollback is activating an older one)."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            svc.activate_version(s, actor, version)
        console.print(f"scoring model version {version} is active")
        if rescore:
            _rescore(db, actor)

    @scoring_app.command("rescore")
    @handle_errors
    def rescore_cmd(
        fire: Annotated[bool, typer.Option("--fire/--silent", help="Act on threshold crossings")] = True,
        rebuild: Annotated[
            bool,
            typer.Option(
                "--rebuild",
                help="Rebuild every lead's engagement state from the events (one pass) and fit every "
                "lead from its attributes (no stored fit score carried forward)",
            ),
        ] = False,
        as_user: AsOption = None,
    ) -> None:
        """Rescore every lead with the active model (set-based), with a progress bar."""

        db = open_db()
        _rescore(db, actor_for(db, as_user), fire=fire, rebuild=rebuild)

    from leadflow.scoring.predictive_cli import register as register_predictive

    register_predictive(scoring_app)
    app.add_typer(score_app, name="score")
    app.add_typer(scoring_app, name="scoring")
