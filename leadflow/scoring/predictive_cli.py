"""``leadflow scoring train|evaluate|predict|predictive-versions|predictive-activate|suggest|
apply-suggestions|rollback|synthetic``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from leadflow.errors import InvalidInput
from leadflow.scoring import evaluate as ev
from leadflow.scoring import predictive as svc
from leadflow.scoring import suggest

Target = Annotated[str, typer.Option(help="sql (sql or later), opportunity (or later) or won")]
Horizon = Annotated[float, typer.Option(help="Positive: reached the target within this many days")]
TestFraction = Annotated[float, typer.Option(help="The newest leads held out for evaluation")]
Cutoff = Annotated[str | None, typer.Option(help="Outcomes known up to this ISO date/time (default: now)")]
AsUser = Annotated[
    str | None, typer.Option("--as", help="Act as this user (email); default: an admin 'cli' actor")
]


def _params(target: str, horizon: float, test_fraction: float, cutoff: str | None) -> svc.Params:
    when = None
    if cutoff:
        try:
            when = datetime.fromisoformat(cutoff)
        except ValueError:
            raise InvalidInput("--cutoff", f"not an ISO date/time: {cutoff!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return svc.Params(target, horizon, test_fraction, when)


def _figures(console: Any, report: dict[str, Any]) -> None:
    h = report["holdout"]
    d = report.get("data", {})
    console.print(
        f"hold-out: {h['leads']:,} leads captured from {str(d.get('split_at', ''))[:10]}, "
        f"{h['positive']:,} positive (base rate {h['base_rate']:.1%}); trained on {d.get('train', 0):,}"
    )
    table = Table("model", "ROC AUC", "PR AUC", "top-decile lift", "Brier")
    for name, m in ev.summary(report).items():
        table.add_row(
            ev.LABELS.get(name, name),
            f"{m['roc_auc']:.3f}",
            f"{m['pr_auc']:.3f}",
            f"{m['top_decile_lift']:.2f}x",
            f"{m['brier']:.3f}",
        )
    console.print(table)


def register(scoring_app: typer.Typer) -> None:
    from leadflow.cli import actor_for, console, handle_errors, open_db

    @scoring_app.command("train")
    @handle_errors
    def train(
        target: Target = "sql",
        horizon_days: Horizon = 90.0,
        test_fraction: TestFraction = 0.25,
        cutoff: Cutoff = None,
        activate: Annotated[bool, typer.Option("--activate/--no-activate", help="Answer predictions")] = True,
        as_user: AsUser = None,
    ) -> None:
        """Train a calibrated model on outcomes (time split), compare it on the hold-out, store it."""

        db = open_db()
        actor = actor_for(db, as_user)
        params = _params(target, horizon_days, test_fraction, cutoff)
        with console.status("reading the history and training"), db.transaction() as s:
            row = svc.train(s, actor, params, activate=activate)
            version, report = row.version, row.metrics
        console.print(f"stored predictive model version {version}" + (" (active)" if activate else ""))
        _figures(console, report)

    @scoring_app.command("evaluate")
    @handle_errors
    def evaluate(
        out: Annotated[
            Path | None,
            typer.Option(help="Directory for report.json and the PNG plots (default var/reports/...)"),
        ] = None,
        version: Annotated[
            int | None, typer.Option(help="A stored predictive version (default: active)")
        ] = None,
        fresh: Annotated[
            bool, typer.Option("--fresh", help="Train a new model for the report instead")
        ] = False,
        target: Target = "sql",
        horizon_days: Horizon = 90.0,
        test_fraction: TestFraction = 0.25,
        cutoff: Cutoff = None,
        as_user: AsUser = None,
    ) -> None:
        """Rule score vs naive-Bayes frequencies vs trained model on the same hold-out: ROC AUC,
        PR AUC, top-decile lift, calibration; written as JSON and PNG plots."""

        db = open_db()
        actor = actor_for(db, as_user)
        params = _params(target, horizon_days, test_fraction, cutoff) if fresh else None
        with console.status("evaluating"), db.transaction() as s:
            report = svc.evaluation(s, actor, params, version=version)
        folder = out or Path("var/reports") / f"scoring-eval-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        files = ev.write(report, folder)
        _figures(console, report)
        console.print("written: " + ", ".join(str(f) for f in files))

    @scoring_app.command("predict")
    @handle_errors
    def predict(
        lead_id: Annotated[int, typer.Argument(help="Lead id")],
        top: Annotated[int, typer.Option(help="How many factors")] = svc.TOP_FACTORS,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        as_user: AsUser = None,
    ) -> None:
        """A lead's probability of reaching the target, with its top contributing factors."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            p = svc.predict_lead(s, actor, lead_id, top=top)
        if as_json:
            console.print_json(
                json.dumps(
                    {**p.__dict__, "as_of": p.as_of.isoformat(), "factors": [f.__dict__ for f in p.factors]}
                )
            )
            return
        console.print(
            f"lead {lead_id}: [bold]{p.probability:.1%}[/] chance of reaching {p.target} within "
            f"{p.horizon_days:g} days [dim](predictive model v{p.model_version})[/]"
        )
        table = Table("factor", "value", "log-odds")
        for f in p.factors:
            table.add_row(f.label, str(f.value), f"{f.contribution:+.3f}")
        console.print(table)

    @scoring_app.command("predictive-versions")
    @handle_errors
    def versions() -> None:
        """Stored predictive model versions with their hold-out figures."""

        db = open_db()
        with db.transaction() as s:
            rows = svc.list_versions(s, actor_for(db, None))
            table = Table("version", "target", "active", "trained", "train/test", "ROC AUC", "vs rule score")
            for r in rows:
                m = ev.summary(r.metrics)
                table.add_row(
                    str(r.version),
                    r.target,
                    "yes" if r.active else "",
                    f"{r.created_at:%Y-%m-%d %H:%M}",
                    f"{r.n_train:,}/{r.n_test:,}",
                    f"{m['trained_model']['roc_auc']:.3f}",
                    f"{m['rule_score']['roc_auc']:.3f}",
                )
        console.print(table if rows else "no predictive model trained yet (leadflow scoring train)")

    @scoring_app.command("predictive-activate")
    @handle_errors
    def predictive_activate(
        version: Annotated[int, typer.Argument(help="Predictive version (also a rollback)")],
        as_user: AsUser = None,
    ) -> None:
        """Make a stored predictive model version answer predictions."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            svc.activate_version(s, actor, version)
        console.print(f"predictive model version {version} is active")

    @scoring_app.command("suggest")
    @handle_errors
    def suggest_cmd(
        target: Target = "sql",
        horizon_days: Horizon = 90.0,
        test_fraction: TestFraction = 0.25,
        cutoff: Cutoff = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the suggestions and document as JSON")
        ] = False,
        as_user: AsUser = None,
    ) -> None:
        """Suggested point values per rule from outcomes, with the hold-out AUC gain of each."""

        db = open_db()
        actor = actor_for(db, as_user)
        with console.status("deriving points from outcomes"), db.transaction() as s:
            sugg = suggest.suggest(s, actor, _params(target, horizon_days, test_fraction, cutoff))
        if as_json:
            console.print_json(json.dumps(sugg.to_dict()))
            return
        table = Table("rule", "kind", "now", "suggested", "log-odds/unit", "leads", "AUC gain alone")
        for r in sugg.rules:
            new = "remove" if r.suggested is None else f"{r.suggested:g}"
            table.add_row(
                r.label,
                r.kind,
                f"{r.current:g}",
                new,
                f"{r.weight:+.3f}",
                f"{r.support:,}",
                f"{r.holdout_auc_gain:+.4f}",
            )
        console.print(table)
        console.print(
            f"rule score hold-out ROC AUC (model v{sugg.rule_version}): {sugg.holdout_auc_now:.4f} -> "
            f"[bold]{sugg.holdout_auc_suggested:.4f}[/] with every suggestion ({sugg.gain:+.4f}); "
            "apply with: leadflow scoring apply-suggestions"
        )

    @scoring_app.command("apply-suggestions")
    @handle_errors
    def apply_cmd(
        target: Target = "sql",
        horizon_days: Horizon = 90.0,
        test_fraction: TestFraction = 0.25,
        cutoff: Cutoff = None,
        rescore: Annotated[
            bool, typer.Option("--rescore/--no-rescore", help="Rescore after activating")
        ] = True,
        as_user: AsUser = None,
    ) -> None:
        """Activate the suggested points as a new rule model version (the old one stays)."""

        db = open_db()
        actor = actor_for(db, as_user)
        with console.status("applying suggestions and rescoring"):
            applied = suggest.apply_suggestions(
                db, actor, _params(target, horizon_days, test_fraction, cutoff), rescore=rescore
            )
        s = applied.suggestions
        console.print(
            f"scoring model version {applied.version} is active (was {applied.previous}); hold-out ROC AUC "
            f"{s.holdout_auc_now:.4f} -> {s.holdout_auc_suggested:.4f}. Undo with: leadflow scoring rollback"
        )
        if applied.rescore:
            console.print(f"rescored {applied.rescore.leads:,} leads ({applied.rescore.changed:,} changed)")

    @scoring_app.command("rollback")
    @handle_errors
    def rollback_cmd(
        rescore: Annotated[
            bool, typer.Option("--rescore/--no-rescore", help="Rescore after activating")
        ] = True,
        as_user: AsUser = None,
    ) -> None:
        """Go back to the rule model version that was active before the current one."""

        db = open_db()
        source, target = suggest.rollback(db, actor_for(db, as_user), rescore=rescore)
        console.print(
            f"scoring model version {target} is active again (was {source})"
            + (" (the built-in default)" if target == 0 else "")
        )

    @scoring_app.command("synthetic")
    @handle_errors
    def synthetic_cmd(
        leads: Annotated[int, typer.Option(help="How many leads")] = 3000,
        seed: Annotated[int, typer.Option(help="Random seed")] = 7,
    ) -> None:
        """Load a synthetic history with a known latent propensity (demos of train/evaluate/suggest)."""

        from leadflow.scoring import synthetic

        if not 100 <= leads <= 1_000_000:
            raise InvalidInput("--leads", "between 100 and 1,000,000")
        db = open_db()
        with console.status("generating"), db.transaction() as s:
            summary = synthetic.generate(s, leads=leads, seed=seed)
        console.print(
            f"{summary.leads:,} leads, {summary.accounts:,} accounts, {summary.activities:,} events; "
            f"{summary.converted:,} became SQLs"
        )
