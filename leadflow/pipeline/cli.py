"""``leadflow pipeline ...`` (pipelines, reasons, buying signals) and ``leadflow opp ...``
(convert, list, show, move, reopen)."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from leadflow.errors import InvalidInput
from leadflow.pipeline import service as svc
from leadflow.pipeline import signals as sig

pipeline_app = typer.Typer(
    help="Pipelines, stages, won/lost reasons and buying signals.", no_args_is_help=True
)
opp_app = typer.Typer(
    help="Opportunities: convert a prospect, move deals, win, lose, reopen.", no_args_is_help=True
)

AsOption = Annotated[
    str | None, typer.Option("--as", help="Act as this user (email); default: an admin 'cli' actor")
]


def _date(value: str | None, loc: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(loc, "must be a date YYYY-MM-DD") from None


def register(app: typer.Typer) -> None:

    from leadflow.cli import actor_for, console, handle_errors, open_db
    from leadflow.pipeline.api import opportunity_out, pipeline_out

    app.add_typer(pipeline_app, name="pipeline")
    app.add_typer(opp_app, name="opp")

    @pipeline_app.command("list")
    @handle_errors
    def list_pipelines(as_user: AsOption = None) -> None:
        """Pipelines with their stages, probabilities and rotting ages."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            outs = [pipeline_out(s, p) for p in svc.list_pipelines(s, actor)]
        for p in outs:
            t = Table(
                "#",
                "key",
                "name",
                "prob %",
                "kind",
                "rots after",
                "forecast",
                title=f"{p.key}: {p.name} ({p.currency}){' default' if p.is_default else ''}",
            )
            for st in p.stages:
                t.add_row(
                    str(st.position),
                    st.key,
                    escape(st.name),
                    str(st.probability),
                    st.kind,
                    str(st.rotting_days or ""),
                    st.forecast_category,
                )
            console.print(t)

    @pipeline_app.command("create")
    @handle_errors
    def create_pipeline(
        key: Annotated[str, typer.Argument(help="Short key, e.g. enterprise")],
        name: Annotated[str, typer.Argument(help="Display name")],
        currency: Annotated[str, typer.Option(help="ISO currency")] = "USD",
        stages: Annotated[
            str | None, typer.Option(help="Stages as JSON list of {key, probability, kind, rotting_days}")
        ] = None,
        default: Annotated[bool, typer.Option("--default", help="Make it the default pipeline")] = False,
        as_user: AsOption = None,
    ) -> None:
        """Create a pipeline (the six default stages unless --stages is given)."""

        try:
            parsed = json.loads(stages) if stages else None
            if parsed is not None and not isinstance(parsed, list):
                raise ValueError("must be a JSON list")
        except (ValueError, json.JSONDecodeError) as exc:
            raise InvalidInput("--stages", str(exc)) from None
        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            p = svc.create_pipeline(
                s, actor, key=key, name=name, currency=currency, stages=parsed, is_default=default
            )
            console.print(f"pipeline [bold]{p.key}[/] created (id {p.id})")

    @pipeline_app.command("reasons")
    @handle_errors
    def reasons(
        add: Annotated[
            str | None, typer.Option(help="Add a reason: kind:key:label, e.g. lost:legal:Legal review failed")
        ] = None,
        as_user: AsOption = None,
    ) -> None:
        """List (or add) the won and lost reasons."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            if add:
                parts = add.split(":", 2)
                if len(parts) != 3:
                    raise InvalidInput("--add", "must be kind:key:label")
                svc.add_reason(s, actor, parts[0], parts[1], parts[2])
            rows = [(r.kind, r.key, r.label) for r in svc.list_reasons(s, actor)]
        t = Table("kind", "key", "label", title="won/lost reasons")
        for row in rows:
            t.add_row(*(escape(x) for x in row))
        console.print(t)

    @pipeline_app.command("ready")
    @handle_errors
    def ready(as_user: AsOption = None) -> None:
        """Prospects that showed buying signals and have no opportunity yet."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            found = sig.ready_prospects(s, actor)
        t = Table("lead", "name", "company", "signals", title="opportunity-ready prospects")
        for r in found:
            t.add_row(
                str(r.lead_id),
                escape(r.name),
                escape(r.company or ""),
                ", ".join(x["kind"] for x in r.signals),
            )
        console.print(t)

    @pipeline_app.command("scan-signals")
    @handle_errors
    def scan_signals(
        apply: Annotated[bool, typer.Option("--apply/--no-apply", help="Also run the automatic rule")] = True,
    ) -> None:
        """Record buying signals from every lead's activities, then apply the automatic rule."""

        db = open_db()
        with console.status("scanning activities for buying signals..."), db.transaction() as s:
            added = sig.scan(s)
            opened = sig.apply_rule(s) if apply else []
        console.print(f"{added:,} new buying signals; {len(opened):,} opportunities opened by the rule")

    @opp_app.command("convert")
    @handle_errors
    def convert(
        lead_id: Annotated[int, typer.Argument(help="The prospect (SQL) to convert")],
        amount: Annotated[float, typer.Option(help="Deal amount")] = 0.0,
        currency: Annotated[str | None, typer.Option(help="ISO currency (default: the pipeline's)")] = None,
        close_date: Annotated[str | None, typer.Option(help="Expected close date YYYY-MM-DD")] = None,
        name: Annotated[str | None, typer.Option(help="Deal name")] = None,
        pipeline: Annotated[str | None, typer.Option(help="Pipeline id or key")] = None,
        stage: Annotated[str | None, typer.Option(help="Stage key")] = None,
        owner: Annotated[int | None, typer.Option(help="Owner user id")] = None,
        account_id: Annotated[int | None, typer.Option(help="Existing account id")] = None,
        contact: Annotated[int | None, typer.Option(help="Existing contact (lead id) of the account")] = None,
        signal: Annotated[list[str] | None, typer.Option(help="Buying signal (repeatable)")] = None,
        reason: Annotated[str | None, typer.Option(help="Why")] = None,
        as_user: AsOption = None,
    ) -> None:
        """Convert a prospect into an opportunity (and account)."""

        inp = svc.ConvertInput(
            name=name,
            amount=amount,
            currency=currency,
            expected_close_date=_date(close_date, "--close-date"),
            pipeline=pipeline,
            stage=stage,
            owner_id=owner,
            owner_set=owner is not None,
            account_id=account_id,
            contact_lead_id=contact,
            signals=list(signal or []),
            reason=reason,
        )
        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            opp = svc.convert_lead(s, actor, lead_id, inp)
            out = opportunity_out(s, opp)
        console.print(
            f"opportunity [bold]{out.id}[/] {escape(out.name)} opened at {out.stage} "
            f"({out.amount:,.2f} {out.currency})"
        )

    @opp_app.command("list")
    @handle_errors
    def list_opps(
        status: Annotated[str | None, typer.Option(help="open, won or lost")] = None,
        stage: Annotated[str | None, typer.Option(help="Stage key")] = None,
        owner: Annotated[int | None, typer.Option(help="Owner user id")] = None,
        limit: Annotated[int, typer.Option(help="Rows")] = 50,
        as_user: AsOption = None,
    ) -> None:
        """List opportunities."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            page = svc.list_opportunities(
                s, actor, svc.OpportunityFilter(status=status, stage=stage, owner_id=owner), limit=limit
            )
            outs = [opportunity_out(s, o) for o in page.items]
        t = Table(
            "id", "name", "stage", "amount", "cur", "prob", "close", "owner", "status", title="opportunities"
        )
        for o in outs:
            t.add_row(
                str(o.id),
                escape(o.name),
                (o.stage or "") + (" (rotting)" if o.rotting else ""),
                f"{o.amount:,.2f}",
                o.currency,
                str(o.probability),
                str(o.expected_close_date or ""),
                str(o.owner_id or ""),
                o.status,
            )
        console.print(t)

    @opp_app.command("show")
    @handle_errors
    def show(opp_id: Annotated[int, typer.Argument(help="Opportunity id")], as_user: AsOption = None) -> None:
        """An opportunity with its stage history and the lead's history."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            out = opportunity_out(s, svc.get_opportunity(s, actor, opp_id))
            spans = svc.stage_history(s, actor, opp_id)
            tl = svc.timeline(s, actor, opp_id)
        t = Table(show_header=False, title=f"opportunity {opp_id}")
        for key, value in out.model_dump(mode="json").items():
            if value not in (None, "", []):
                t.add_row(key, escape(str(value)))
        console.print(t)
        h = Table("stage", "entered", "days", "reason", title="deal stages")
        for sp in spans:
            h.add_row(
                sp.stage_name,
                sp.entered_at.strftime("%Y-%m-%d %H:%M"),
                f"{sp.days:.1f}",
                escape(" ".join(x for x in (sp.reason_key, sp.reason) if x)),
            )
        console.print(h)
        lt = Table("at", "from", "to", "reason", title=f"lead {out.lead_id} stages")
        for x in tl["lead_stages"]:
            lt.add_row(
                x["at"].strftime("%Y-%m-%d %H:%M"),
                x["from_stage"] or "",
                x["to_stage"],
                escape(x["reason"] or ""),
            )
        console.print(lt)

    @opp_app.command("move")
    @handle_errors
    def move(
        opp_id: Annotated[int, typer.Argument(help="Opportunity id")],
        stage: Annotated[str, typer.Argument(help="Target stage key, e.g. proposal or closed_lost")],
        reason_key: Annotated[
            str | None, typer.Option(help="Won/lost reason key (required for closed lost)")
        ] = None,
        reason: Annotated[str | None, typer.Option(help="Why, in words")] = None,
        lead_stage: Annotated[
            str | None, typer.Option(help="On a loss: recycled, nurture or unqualified")
        ] = None,
        as_user: AsOption = None,
    ) -> None:
        """Move a deal to another stage (win or lose it with a reason)."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            opp = svc.move_stage(
                s, actor, opp_id, stage, reason=reason, reason_key=reason_key, lead_stage=lead_stage
            )
            out = opportunity_out(s, opp)
        console.print(
            f"opportunity {out.id} is now [bold]{out.stage}[/] ({out.status}, version {out.version})"
        )

    @opp_app.command("reopen")
    @handle_errors
    def reopen(
        opp_id: Annotated[int, typer.Argument(help="Opportunity id")],
        reason: Annotated[str, typer.Option(help="Why it is reopened")],
        stage: Annotated[
            str | None, typer.Option(help="Open stage (default: the one it closed from)")
        ] = None,
        as_user: AsOption = None,
    ) -> None:
        """Reopen a won or lost deal."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            opp = svc.reopen(s, actor, opp_id, stage_key=stage, reason=reason)
            out = opportunity_out(s, opp)
        console.print(f"opportunity {out.id} reopened at [bold]{out.stage}[/]")
