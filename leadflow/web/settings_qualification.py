"""Settings tabs of the qualification feature: needs-assessment questionnaires and discovery-call
frameworks (``qualification.config``), and the lead assignment rules with rep capacity caps
(``assignment.service``). Reading is open to every user who can read leads; changes need
``qualification:admin`` / ``assignment:admin`` (admins, marketing ops, managers), decided by the
services exactly as for the API."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote_plus

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from leadflow.assignment import service as assignment
from leadflow.auth import service as auth
from leadflow.auth.models import Role
from leadflow.auth.principal import Perm
from leadflow.core import qualification as core
from leadflow.core.assignment import REGIONS, STRATEGIES
from leadflow.errors import InvalidInput
from leadflow.qualification import config as qconfig
from leadflow.web.core import PREFIX, Ctx, CtxDep, redirect, render
from leadflow.web.qualification import field_errors
from leadflow.web.settings import TABS

router = APIRouter(prefix=PREFIX + "/settings", include_in_schema=False)

TABS.append(("qualification", "Qualification", PREFIX + "/settings/qualification"))
TABS.append(("assignment", "Assignment rules", PREFIX + "/settings/assignment"))

MATCH_KEYS = ("countries", "regions", "industries", "sources")


def _page(ctx: Ctx, tab: str, status: int = 200, **values: Any) -> Response:
    return render(
        ctx, ctx.request, f"settings_{tab}.html", status, nav="settings", tabs=TABS, tab=tab, **values
    )


def _json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _parse_json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput("definition", f"not valid JSON: {exc.msg} at line {exc.lineno}") from None


# ------------------------------------------------------------------------------ qualification


def _qualification_page(ctx: Ctx, status: int = 200, **extra: Any) -> Response:
    with ctx.db.transaction() as s:
        questionnaires = qconfig.list_questionnaires(s, ctx.principal)
        frameworks = qconfig.list_frameworks(s, ctx.principal)
        parsed_q = {r.key: qconfig.questionnaire(r) for r in questionnaires}
        parsed_f = {r.key: qconfig.framework(r) for r in frameworks}
    return _page(
        ctx,
        "qualification",
        status,
        questionnaires=questionnaires,
        frameworks=frameworks,
        parsed_q=parsed_q,
        parsed_f=parsed_f,
        docs_q={r.key: _json(r.definition) for r in questionnaires},
        docs_f={r.key: _json(r.definition) for r in frameworks},
        presets=list(core.PRESETS),
        rating_labels=core.RATING_LABELS,
        can_admin=ctx.can(Perm.QUALIFICATION_ADMIN),
        new_q=_json(_blank_questionnaire()),
        new_f=_json(_blank_framework()),
        **extra,
    )


def _blank_questionnaire() -> dict[str, Any]:
    return {
        "key": "my_questionnaire",
        "name": "My questionnaire",
        "questions": [
            {
                "key": "need",
                "label": "What problem do you want to solve?",
                "type": "long_text",
                "required": True,
            },
            {"key": "timeline", "label": "When?", "type": "choice", "options": list(core.TIMELINE_OPTIONS)},
        ],
        "rule": {"qualify_when": [{"question": "need", "op": "present", "reason": "no need named"}]},
    }


def _blank_framework() -> dict[str, Any]:
    return {
        "key": "my_framework",
        "name": "My framework",
        "criteria": [
            {"key": "need", "label": "Need", "questions": ["What problem are you solving?"], "min_rating": 2},
        ],
    }


@router.get("/qualification", response_class=HTMLResponse)
def qualification_page(ctx: CtxDep) -> Response:
    return _qualification_page(ctx, msg=ctx.request.query_params.get("msg"))


@router.post("/qualification/questionnaires")
def save_questionnaire(
    ctx: CtxDep,
    definition: Annotated[str, Form()] = "",
    make_default: Annotated[bool, Form()] = False,
    redirect_url: Annotated[str, Form()] = "",
    version: Annotated[int | None, Form()] = None,
    form_id: Annotated[str, Form()] = "new",
) -> Response:
    try:
        doc = _parse_json(definition)
        with ctx.db.transaction() as s:
            row = qconfig.put_questionnaire(
                s,
                ctx.principal,
                doc,
                make_default=make_default,
                redirect_url=redirect_url.strip() or None,
                expected_version=version,
            )
            key, ver = row.key, row.version
    except InvalidInput as exc:
        return _qualification_page(
            ctx, 422, q_form=form_id, q_errors=field_errors(exc), q_document=definition
        )
    return redirect(ctx, f"{PREFIX}/settings/qualification?msg=Questionnaire+{key}+saved+(v{ver})")


@router.post("/qualification/frameworks")
def save_framework(
    ctx: CtxDep,
    definition: Annotated[str, Form()] = "",
    preset: Annotated[str, Form()] = "",
    make_default: Annotated[bool, Form()] = False,
    version: Annotated[int | None, Form()] = None,
    form_id: Annotated[str, Form()] = "new",
) -> Response:
    try:
        doc = None if preset else _parse_json(definition)
        with ctx.db.transaction() as s:
            row = qconfig.put_framework(
                s,
                ctx.principal,
                doc,
                preset=preset or None,
                make_default=make_default,
                expected_version=None if preset else version,
            )
            key, ver = row.key, row.version
    except InvalidInput as exc:
        return _qualification_page(
            ctx, 422, f_form=form_id, f_errors=field_errors(exc), f_document=definition
        )
    return redirect(ctx, f"{PREFIX}/settings/qualification?msg=Framework+{key}+saved+(v{ver})")


# ------------------------------------------------------------------------------ assignment


def _assignment_page(ctx: Ctx, status: int = 200, **extra: Any) -> Response:
    with ctx.db.transaction() as s:
        rules = assignment.list_rules(s, ctx.principal)
        caps = assignment.capacities(s, ctx.principal)
        users = [u for u in auth.list_users(s) if u.active]
    return _page(
        ctx,
        "assignment",
        status,
        rules=rules,
        caps=caps,
        users={u.id: u for u in users},
        reps=[u for u in users if u.role in (Role.SALES_REP.value, Role.MANAGER.value)],
        teams=sorted({u.team for u in users if u.team}),
        strategies=STRATEGIES,
        regions=REGIONS,
        match_keys=MATCH_KEYS,
        can_admin=ctx.can(Perm.ASSIGNMENT_ADMIN),
        **extra,
    )


@router.get("/assignment", response_class=HTMLResponse)
def assignment_page(ctx: CtxDep) -> Response:
    return _assignment_page(ctx, msg=ctx.request.query_params.get("msg"))


def _rule_doc(form: FormData) -> dict[str, Any]:
    strategy = str(form.get("strategy") or "")
    raw_user = str(form.get("user_id") or "").strip()
    doc: dict[str, Any] = {
        "name": str(form.get("name") or "").strip(),
        "strategy": strategy,
        "match": {
            k: [x.strip() for x in str(form.get(f"match.{k}") or "").split(",") if x.strip()]
            for k in MATCH_KEYS
        },
    }
    if strategy == "user":
        if raw_user and not raw_user.isdigit():
            raise InvalidInput("user_id", "choose a user")
        doc["user_id"] = int(raw_user) if raw_user else None
    if strategy == "round_robin":
        doc["team"] = str(form.get("team") or "").strip() or None
    return doc


def _back(msg: str) -> str:
    return f"{PREFIX}/settings/assignment?msg={quote_plus(msg)}"


@router.post("/assignment/rules")
async def create_rule(ctx: CtxDep) -> Response:
    form = await ctx.request.form()
    raw_pos = str(form.get("position") or "").strip()
    try:
        doc = _rule_doc(form)
        if raw_pos and not raw_pos.isdigit():
            raise InvalidInput("position", "must be a whole number (1 = evaluated first)")
        with ctx.db.transaction() as s:
            row = assignment.create_rule(s, ctx.principal, doc, position=int(raw_pos) if raw_pos else None)
            name = row.name
    except InvalidInput as exc:
        return _assignment_page(
            ctx, 422, rule_form="new", rule_errors=field_errors(exc), rule_values=dict(form.items())
        )
    return redirect(ctx, _back(f"Rule {name} created"))


@router.post("/assignment/rules/{rule_id}")
async def update_rule(ctx: CtxDep, rule_id: int) -> Response:
    form = await ctx.request.form()
    raw_version = str(form.get("version") or "")
    try:
        doc = _rule_doc(form)
        with ctx.db.transaction() as s:
            row = assignment.update_rule(
                s,
                ctx.principal,
                rule_id,
                doc,
                active=form.get("active") == "yes",
                expected_version=int(raw_version) if raw_version.isdigit() else None,
            )
            name = row.name
    except InvalidInput as exc:
        return _assignment_page(
            ctx, 422, rule_form=rule_id, rule_errors=field_errors(exc), rule_values=dict(form.items())
        )
    return redirect(ctx, _back(f"Rule {name} saved"))


@router.post("/assignment/rules/{rule_id}/toggle")
def toggle_rule(ctx: CtxDep, rule_id: int, version: Annotated[int | None, Form()] = None) -> Response:
    with ctx.db.transaction() as s:
        row = assignment.get_rule(s, ctx.principal, rule_id)
        doc = {k: row.definition.get(k) for k in ("name", "strategy", "match", "user_id", "team")}
        row = assignment.update_rule(
            s, ctx.principal, rule_id, doc, active=not row.active, expected_version=version
        )
        msg = f"Rule {row.name} {'enabled' if row.active else 'disabled'}"
    return redirect(ctx, _back(msg))


@router.post("/assignment/rules/{rule_id}/move")
def move_rule(ctx: CtxDep, rule_id: int, direction: Annotated[str, Form()] = "") -> Response:
    if direction not in ("up", "down"):
        raise InvalidInput("direction", "must be up or down")
    with ctx.db.transaction() as s:
        ids = [r.id for r in assignment.list_rules(s, ctx.principal)]
        if rule_id not in ids:
            assignment.get_rule(s, ctx.principal, rule_id)  # 404 for an unknown rule
        i = ids.index(rule_id)
        j = i - 1 if direction == "up" else i + 1
        if not 0 <= j < len(ids):
            return redirect(ctx, _back(f"The rule is already {'first' if j < 0 else 'last'}"))
        ids[i], ids[j] = ids[j], ids[i]
        assignment.reorder_rules(s, ctx.principal, ids)
    return redirect(ctx, _back("Rule order saved"))


@router.post("/assignment/rules/{rule_id}/delete")
def delete_rule(ctx: CtxDep, rule_id: int) -> Response:
    with ctx.db.transaction() as s:
        assignment.delete_rule(s, ctx.principal, rule_id)
    return redirect(ctx, _back("Rule deleted"))


@router.post("/assignment/capacity/{user_id}")
def set_capacity(ctx: CtxDep, user_id: int, max_open_leads: Annotated[str, Form()] = "") -> Response:
    raw = max_open_leads.strip()
    if raw and not raw.isdigit():
        raise InvalidInput("max_open_leads", "must be a whole number, or empty for no cap")
    with ctx.db.transaction() as s:
        assignment.set_capacity(s, ctx.principal, user_id, int(raw) if raw else None)
    return redirect(ctx, _back("Capacity saved"))
