"""``leadflow qualify ...`` (assessments, calls, scripts, levels, committee, queue, SLA, reports,
configuration) and ``leadflow assign ...`` (rules, capacity, apply)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from leadflow.assignment import service as assignment
from leadflow.errors import InvalidInput
from leadflow.qualification import config as cfg
from leadflow.qualification import handoff as ho
from leadflow.qualification import service as svc

qualify_app = typer.Typer(
    help="Qualification: needs assessments, discovery calls, levels, sales queue, SLA and reports.",
    no_args_is_help=True,
)
assign_app = typer.Typer(
    help="Lead assignment rules, rep capacity, applying the rules.", no_args_is_help=True
)

AsOption = Annotated[
    str | None, typer.Option("--as", help="Act as this user (email); default: an admin 'cli' actor")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _load(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput("FILE", f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput("FILE", f"{path} is not a valid JSON/YAML document: {exc}") from None


def _pairs(items: list[str], name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise InvalidInput(name, f"{item!r} is not KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(name, f"{value!r} is not an ISO 8601 date or time") from None


def register(app: typer.Typer) -> None:
    """Add the qualify and assign commands (called by the composition root, leadflow.cli)."""

    from leadflow.cli import actor_for, console, handle_errors, open_db

    ho.register()

    def out(doc: Any) -> None:
        console.print_json(json.dumps(doc, default=str))

    @qualify_app.command("assess")
    @handle_errors
    def assess(
        lead_id: Annotated[int, typer.Argument(help="Lead id")],
        answer: Annotated[list[str], typer.Option("--answer", "-a", help="QUESTION=ANSWER (repeat)")],
        questionnaire: Annotated[str | None, typer.Option(help="Questionnaire key (default one)")] = None,
        on_call: Annotated[bool, typer.Option("--call", help="Taken by the rep on a live call")] = False,
        record_only: Annotated[
            bool, typer.Option("--record-only", help="Do not make the stage move")
        ] = False,
        as_user: AsOption = None,
    ) -> None:
        """Record a needs assessment; its rule decides SAL, nurture or unqualified."""

        db = open_db()
        actor = actor_for(db, as_user)
        answers: dict[str, Any] = _pairs(answer, "--answer")
        with db.transaction() as s:
            row = cfg.questionnaire_row(s, questionnaire)
            for q in cfg.questionnaire(row).questions:  # a comma list answers a multi-choice question
                if q.type.value == "multi_choice" and q.key in answers:
                    answers[q.key] = [x for x in str(answers[q.key]).split(",") if x.strip()]
            res = svc.record_assessment(
                s,
                actor,
                lead_id,
                answers,
                channel="call" if on_call else "api",
                questionnaire_key=questionnaire,
                apply=not record_only,
            )
            console.print(
                f"assessment {res.record.id}: [bold]{res.decision.outcome}[/] ({res.decision.reason}); "
                f"lead {lead_id} is {res.stage}"
                + (f" [yellow](not moved: {res.not_applied_reason})[/]" if res.not_applied_reason else "")
            )

    @qualify_app.command("call")
    @handle_errors
    def discovery_call(
        lead_id: Annotated[int, typer.Argument(help="Lead id")],
        outcome: Annotated[str, typer.Option(help="sql, unqualified or pending")],
        rate: Annotated[list[str], typer.Option("--rate", "-r", help="CRITERION=RATING (0-3), repeat")],
        answer: Annotated[
            list[str] | None, typer.Option("--answer", "-a", help="CRITERION=what they said")
        ] = None,
        framework: Annotated[str | None, typer.Option(help="Framework key (default BANT)")] = None,
        reason: Annotated[str | None, typer.Option(help="Why unqualified")] = None,
        override_reason: Annotated[str | None, typer.Option(help="Why against the recommendation")] = None,
        referral: Annotated[str | None, typer.Option(help="Referral for an unqualified lead")] = None,
        vendor: Annotated[str | None, typer.Option(help="Recommended vendor")] = None,
        notes: Annotated[str | None, typer.Option(help="Call notes")] = None,
        as_user: AsOption = None,
    ) -> None:
        """Record a discovery call: SQL (prospect) or unqualified with the reason."""

        ratings = _pairs(rate, "--rate")
        answers = _pairs(answer or [], "--answer")
        criteria: dict[str, Any] = {}
        for key in {*ratings, *answers}:
            try:
                rating = int(ratings.get(key, "0"))
            except ValueError:
                raise InvalidInput(["--rate", key], "must be an integer from 0 to 3") from None
            criteria[key] = {"rating": rating, "answer": answers.get(key, "")}
        if outcome not in ("sql", "unqualified", "pending"):
            raise InvalidInput("--outcome", "must be sql, unqualified or pending")
        db = open_db()
        actor = actor_for(db, as_user)
        data = svc.CallInput(
            criteria=criteria,
            outcome=outcome,  # type: ignore[arg-type]  # checked just above
            framework=framework,
            reason=reason,
            override_reason=override_reason,
            referral=referral,
            recommended_vendor=vendor,
            notes=notes,
        )
        with db.transaction() as s:
            res = svc.record_call(s, actor, lead_id, data)
            console.print(
                f"call {res.record.id}: outcome [bold]{res.record.outcome}[/], recommended "
                f"{res.recommendation.outcome} ({res.recommendation.reason}); lead {lead_id} is {res.stage}"
            )

    @qualify_app.command("script")
    @handle_errors
    def script(
        lead_id: Annotated[int, typer.Argument(help="Lead id")],
        framework: Annotated[str | None, typer.Option(help="Framework key (default BANT)")] = None,
        as_json: JsonOption = False,
        as_user: AsOption = None,
    ) -> None:
        """The discovery-call script for a lead: research, opening, agenda, questions, close."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            doc = svc.call_script(s, actor, lead_id, framework)
        if as_json:
            out(doc)
            return
        for section in ("research", "opening", "agenda"):
            console.print(f"[bold]{section.title()}[/]")
            for line in doc[section]:
                console.print(f"  - {line}")
        console.print("[bold]Questions[/]")
        for q in doc["questions"]:
            console.print(f"  [cyan]{q['label']}[/]{'' if q['required'] else ' (optional)'}")
            for line in [*q["confirm"], *q["ask"]]:
                console.print(f"    - {line}")
        console.print("[bold]Close[/]")
        for line in doc["close"]:
            console.print(f"  - {line}")

    @qualify_app.command("levels")
    @handle_errors
    def levels(
        lead_id: Annotated[int, typer.Argument(help="Lead id")],
        level: Annotated[
            str | None, typer.Option(help="Override this level (organization|opportunity|stakeholder)")
        ] = None,
        status: Annotated[
            str | None, typer.Option(help="qualified|partial|unqualified|unknown, or 'clear'")
        ] = None,
        reason: Annotated[str | None, typer.Option(help="Why (required for an override)")] = None,
        as_json: JsonOption = False,
        as_user: AsOption = None,
    ) -> None:
        """A lead's organization, opportunity and stakeholder qualification (or override one)."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            if level is not None:
                if status is None:
                    raise InvalidInput("--status", "give the status to set (or 'clear')")
                doc = svc.override_level(
                    s, actor, lead_id, level, None if status == "clear" else status, reason
                )
            else:
                doc = svc.levels(s, actor, lead_id)
        if as_json:
            out(doc)
            return
        table = Table("level", "status", "source", "reason")
        for lv in ("organization", "opportunity", "stakeholder"):
            table.add_row(lv, doc[lv]["status"], doc[lv]["source"], doc[lv]["reason"])
        console.print(table)
        console.print(
            f"buying role: {doc['buying_role']} ({doc['buying_role_source']}); overall: {doc['overall']}"
        )

    @qualify_app.command("committee")
    @handle_errors
    def committee(
        account_id: Annotated[int, typer.Argument(help="Account id")],
        as_json: JsonOption = False,
        as_user: AsOption = None,
    ) -> None:
        """The buying committee of an account, flagged when no decision maker is engaged."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            doc = svc.committee(s, actor, account_id)
        if as_json:
            out(doc)
            return
        table = Table("lead", "name", "title", "stage", "role", "engaged")
        for m in doc["members"]:
            table.add_row(
                str(m["lead_id"]),
                m["name"] or "",
                m["job_title"] or "",
                m["stage"],
                m["buying_role"],
                "yes" if m["engaged"] else "no",
            )
        console.print(f"[bold]{doc['account']}[/]")
        console.print(table)
        for flag in doc["flags"]:
            console.print(f"[yellow]! {flag}[/]")

    @qualify_app.command("queue")
    @handle_errors
    def queue(
        breached: Annotated[bool, typer.Option("--breached", help="Only MQLs past their SLA")] = False,
        as_user: AsOption = None,
    ) -> None:
        """The sales queue: MQLs waiting for their first touch, most urgent first."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            rows = ho.queue(s, actor, breached=True if breached else None)
            table = Table("lead", "name", "owner", "source", "queued", "due", "touched")
            for h, lead in rows:
                table.add_row(
                    str(lead.id),
                    " ".join(x for x in (lead.first_name, lead.last_name) if x),
                    str(h.owner_id or "-"),
                    h.source or "",
                    f"{h.queued_at:%Y-%m-%d %H:%M}",
                    f"{h.due_at:%Y-%m-%d %H:%M}",
                    f"{h.first_touch_at:%Y-%m-%d %H:%M}" if h.first_touch_at else "no",
                )
        console.print(table)

    @qualify_app.command("reject")
    @handle_errors
    def reject(
        lead_id: Annotated[int, typer.Argument(help="Lead id")],
        reason: Annotated[str, typer.Option(help="Rejection reason key")],
        note: Annotated[str | None, typer.Option(help="Free-text note")] = None,
        as_user: AsOption = None,
    ) -> None:
        """Sales rejects an MQL: back to marketing nurture, counted in the rejection report."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            h = ho.reject(s, actor, lead_id, reason, note)
            console.print(f"lead {lead_id} rejected ({h.rejection_reason}); back to nurture")

    @qualify_app.command("sla-check")
    @handle_errors
    def sla_check(as_user: AsOption = None) -> None:
        """Detect handoffs past their first-touch SLA (run it from cron or the worker)."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            res = ho.check_breaches(s, actor)
            console.print(f"{len(res.breached)} new SLA breach(es)")
            for h in res.breached:
                console.print(
                    f"  lead {h.lead_id}: due {h.due_at:%Y-%m-%d %H:%M} UTC, owner {h.owner_id or '-'}"
                )

    @qualify_app.command("report")
    @handle_errors
    def report(
        kind: Annotated[str, typer.Argument(help="sla or rejections")],
        since: Annotated[str | None, typer.Option(help="From (ISO date/time)")] = None,
        until: Annotated[str | None, typer.Option(help="Until (ISO date/time, exclusive)")] = None,
        as_json: JsonOption = False,
        as_user: AsOption = None,
    ) -> None:
        """SLA compliance (by source and owner, breaches) or sales' rejection rate (by source, reason)."""

        if kind not in ("sla", "rejections"):
            raise InvalidInput("KIND", "must be sla or rejections")
        db = open_db()
        actor = actor_for(db, as_user)
        a, b = _when(since, "--since"), _when(until, "--until")
        with db.transaction() as s:
            doc = (
                ho.sla_report(s, actor, since=a, until=b)
                if kind == "sla"
                else ho.rejection_report(s, actor, since=a, until=b)
            )
        if as_json:
            out(doc)
            return
        if kind == "sla":
            table = Table(
                "source", "handoffs", "within SLA", "late", "breached open", "pending", "compliance"
            )
            for name, row in [("(all)", doc["total"]), *doc["by_source"].items()]:
                comp = "-" if row["compliance"] is None else f"{row['compliance']:.0%}"
                table.add_row(
                    name,
                    *(str(row[k]) for k in ("handoffs", "within_sla", "late", "breached_open", "pending")),
                    comp,
                )
            console.print(table)
            console.print(f"{len(doc['breaches'])} breach(es)")
        else:
            table = Table("source", "decided", "accepted", "rejected", "rejection rate", "top reasons")
            for name, row in doc["by_source"].items():
                rate_ = "-" if row["rejection_rate"] is None else f"{row['rejection_rate']:.0%}"
                reasons = ", ".join(f"{k} {v}" for k, v in list(row["reasons"].items())[:3])
                table.add_row(
                    name, str(row["decided"]), str(row["accepted"]), str(row["rejected"]), rate_, reasons
                )
            console.print(table)

    @qualify_app.command("config")
    @handle_errors
    def config_cmd(
        what: Annotated[str, typer.Argument(help="questionnaire, framework, handoff or icp")],
        file: Annotated[
            Path | None, typer.Option("--set", help="Replace it from this JSON/YAML file")
        ] = None,
        preset: Annotated[str | None, typer.Option(help="Framework preset: bant, meddic, champ")] = None,
        key: Annotated[str | None, typer.Option(help="Questionnaire/framework key to show")] = None,
        make_default: Annotated[bool, typer.Option("--default", help="Make it the default")] = False,
        as_user: AsOption = None,
    ) -> None:
        """Show or replace a questionnaire, a framework, the handoff SLA or the ICP."""

        if what not in ("questionnaire", "framework", "handoff", "icp"):
            raise InvalidInput("WHAT", "must be questionnaire, framework, handoff or icp")
        db = open_db()
        actor = actor_for(db, as_user)
        doc = _load(file) if file is not None else None
        with db.transaction() as s:
            if what == "questionnaire":
                if doc is not None:
                    row = cfg.put_questionnaire(s, actor, doc, make_default=make_default)
                else:
                    row = cfg.questionnaire_row(s, key)
                out(
                    {
                        **row.definition,
                        "version": row.version,
                        "post_url": f"/forms/assessments/{row.public_key}",
                    }
                )
            elif what == "framework":
                if doc is not None or preset is not None:
                    fw = cfg.put_framework(s, actor, doc, preset=preset, make_default=make_default)
                else:
                    fw = cfg.framework_row(s, key)
                out({**fw.definition, "version": fw.version, "default": fw.is_default})
            elif doc is not None:
                out(cfg.put_setting(s, actor, what, doc))
            else:
                out(cfg.get_settings(s, actor)[what])

    # ------------------------------------------------------------------ assignment

    @assign_app.command("rules")
    @handle_errors
    def rules(
        add: Annotated[Path | None, typer.Option("--add", help="Add a rule from a JSON/YAML file")] = None,
        remove: Annotated[int | None, typer.Option("--remove", help="Remove the rule with this id")] = None,
        position: Annotated[int | None, typer.Option(help="Position of the added rule (1 = first)")] = None,
        as_user: AsOption = None,
    ) -> None:
        """List the assignment rules in evaluation order (or add / remove one)."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            if add is not None:
                assignment.create_rule(s, actor, _load(add), position=position)
            if remove is not None:
                assignment.delete_rule(s, actor, remove)
            table = Table("#", "id", "name", "strategy", "match", "target", "active")
            for r in assignment.list_rules(s, actor):
                d = r.definition
                match = (
                    "; ".join(f"{k}={','.join(v)}" for k, v in (d.get("match") or {}).items() if v) or "any"
                )
                target = d.get("team") or (f"user {d['user_id']}" if d.get("user_id") else "account owner")
                table.add_row(
                    str(r.position),
                    str(r.id),
                    r.name,
                    d["strategy"],
                    match,
                    target,
                    "yes" if r.active else "no",
                )
        console.print(table)

    @assign_app.command("capacity")
    @handle_errors
    def capacity(
        user_id: Annotated[int | None, typer.Argument(help="Rep's user id (omit to list)")] = None,
        max_open: Annotated[
            int | None, typer.Option("--max", help="Cap on open leads; omit to remove")
        ] = None,
        as_user: AsOption = None,
    ) -> None:
        """Show reps' open leads and caps, or set one rep's cap."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            if user_id is not None:
                assignment.set_capacity(s, actor, user_id, max_open)
            rows = assignment.capacities(s, actor)
        table = Table("user", "name", "team", "open leads", "cap")
        for r in rows:
            table.add_row(
                str(r["user_id"]),
                r["name"],
                r["team"] or "",
                str(r["open_leads"]),
                "-" if r["max_open_leads"] is None else str(r["max_open_leads"]),
            )
        console.print(table)

    @assign_app.command("apply")
    @handle_errors
    def apply(
        lead: Annotated[list[int] | None, typer.Option("--lead", help="Lead id (repeat)")] = None,
        unassigned: Annotated[
            bool, typer.Option("--unassigned", help="Every unassigned MQL/SAL/SQL")
        ] = False,
        force: Annotated[bool, typer.Option("--force", help="Re-route leads that have an owner")] = False,
        as_user: AsOption = None,
    ) -> None:
        """Apply the rules now; every change is audited with its rule."""

        db = open_db()
        actor = actor_for(db, as_user)
        with db.transaction() as s:
            res = assignment.apply(s, actor, lead, unassigned=unassigned, force=force)
        console.print(
            f"{len(res.decisions)} lead(s) considered, {res.changed} assigned, {res.unassigned} unplaced"
        )
        for d in res.decisions[:50]:
            console.print(f"  lead {d.lead_id} -> {d.owner_id or '-'}: {d.explanation}")

    app.add_typer(qualify_app, name="qualify")
    app.add_typer(assign_app, name="assign")
