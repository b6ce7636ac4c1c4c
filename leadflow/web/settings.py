"""Settings pages: the scoring model (view, edit as a new version, activate), users and API
tokens. Later features (sequences, frameworks, pipelines, assignment rules) add their tabs."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from leadflow.auth import service as auth
from leadflow.auth.models import ApiToken, Role, User
from leadflow.auth.principal import Perm
from leadflow.errors import InvalidInput
from leadflow.scoring import service as scoring
from leadflow.web.core import PREFIX, Ctx, CtxDep, redirect, render

router = APIRouter(prefix=PREFIX + "/settings", include_in_schema=False)

# Tabs other features' pages register: (key, label, url).
TABS: list[tuple[str, str, str]] = [
    ("scoring", "Scoring model", PREFIX + "/settings/scoring"),
    ("users", "Users and API tokens", PREFIX + "/settings/users"),
]


def _page(ctx: Ctx, tab: str, **values: Any) -> Response:
    return render(ctx, ctx.request, f"settings_{tab}.html", nav="settings", tabs=TABS, tab=tab, **values)


@router.get("", response_class=HTMLResponse)
def settings_home(ctx: CtxDep) -> Response:
    return redirect(None, PREFIX + "/settings/scoring")


@router.get("/scoring", response_class=HTMLResponse)
def scoring_page(ctx: CtxDep, error: str | None = None) -> Response:
    with ctx.db.transaction() as s:
        active = scoring.active_model(s)
        versions = scoring.list_versions(s, ctx.principal)
    document = json.dumps(active.model.to_document(), indent=2, ensure_ascii=False)
    can_manage = ctx.principal.role in (Role.ADMIN, Role.MARKETING)
    return _page(ctx, "scoring", active=active, versions=versions, document=document, can_manage=can_manage)


@router.post("/scoring")
def save_scoring(
    ctx: CtxDep, document: Annotated[str, Form()] = "", activate: Annotated[bool, Form()] = False
) -> Response:
    try:
        parsed = json.loads(document)
    except json.JSONDecodeError as exc:
        raise InvalidInput("document", f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    with ctx.db.transaction() as s:
        scoring.save_model(s, ctx.principal, parsed, activate=activate)
    return redirect(ctx, PREFIX + "/settings/scoring")


@router.post("/scoring/{version}/activate")
def activate_scoring(ctx: CtxDep, version: int) -> Response:
    with ctx.db.transaction() as s:
        scoring.activate_version(s, ctx.principal, version)
    return redirect(ctx, PREFIX + "/settings/scoring")


def _tokens(ctx: Ctx) -> list[tuple[ApiToken, str]]:
    with ctx.db.transaction() as s:
        stmt = (
            select(ApiToken, User.email).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id.desc())
        )
        if not ctx.can(Perm.USERS_ADMIN):
            stmt = stmt.where(ApiToken.user_id == ctx.user.id)
        return [(t, str(e)) for t, e in s.execute(stmt.limit(200)).all()]


@router.get("/users", response_class=HTMLResponse)
def users_page(ctx: CtxDep) -> Response:
    with ctx.db.transaction() as s:
        users = auth.list_users(s) if ctx.can(Perm.USERS_ADMIN) else []
    return _page(
        ctx,
        "users",
        users=users,
        tokens=_tokens(ctx),
        roles=list(Role),
        new_token=None,
        perms=[p.value for p in Perm],
    )


@router.post("/users")
def create_user(
    ctx: CtxDep,
    name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    team: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    with ctx.db.transaction() as s:
        auth.create_user(
            s,
            ctx.principal,
            name=name,
            email=email,
            role=role,
            team=team.strip() or None,
            password=password or None,
        )
    return redirect(ctx, PREFIX + "/settings/users")


@router.post("/tokens", response_class=HTMLResponse)
async def create_token(ctx: CtxDep) -> Response:
    form = await ctx.request.form()
    name = str(form.get("name") or "").strip() or "web"
    raw_user = str(form.get("user_id") or "")
    user_id = int(raw_user) if raw_user.isdigit() else ctx.user.id
    scopes = [str(v) for v in form.getlist("scopes")]
    with ctx.db.transaction() as s:
        issued = auth.create_token(s, ctx.principal, user_id, name=name[:200], scopes=scopes)
        users = auth.list_users(s) if ctx.can(Perm.USERS_ADMIN) else []
    # The token is shown once, in this answer; only its hash is stored.
    return _page(
        ctx,
        "users",
        users=users,
        tokens=_tokens(ctx),
        roles=list(Role),
        new_token=issued.token,
        perms=[p.value for p in Perm],
    )


@router.post("/tokens/{token_id}/revoke")
def revoke_token(ctx: CtxDep, token_id: int) -> Response:
    with ctx.db.transaction() as s:
        auth.revoke_token(s, ctx.principal, token_id)
    return redirect(ctx, PREFIX + "/settings/users")


# --------------------------------------------------------------------------------- sequences

TABS.insert(1, ("sequences", "Sequences", PREFIX + "/settings/sequences"))
TABS.insert(2, ("pipelines", "Pipelines", PREFIX + "/settings/pipelines"))


def _json_field(raw: str, loc: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(loc, f"not valid JSON: {exc.msg} at line {exc.lineno}") from None


@router.get("/sequences", response_class=HTMLResponse)
def sequences_page(ctx: CtxDep) -> Response:
    from leadflow.cadences import service as cadences

    with ctx.db.transaction() as s:
        seqs = cadences.list_sequences(s, ctx.principal)
        docs = {
            q.key: json.dumps(
                {
                    "name": q.name,
                    "description": q.description,
                    "steps": q.steps,
                    "max_attempts": q.max_attempts,
                    "on_exhausted": q.on_exhausted,
                    "active": q.active,
                },
                indent=2,
                ensure_ascii=False,
            )
            for q in seqs
        }
    return _page(ctx, "sequences", sequences=seqs, docs=docs)


@router.post("/sequences")
def save_sequence(
    ctx: CtxDep,
    key: Annotated[str, Form()] = "",
    document: Annotated[str, Form()] = "",
    new: Annotated[bool, Form()] = False,
) -> Response:
    from leadflow.cadences import service as cadences

    data = _json_field(document, "document")
    if not isinstance(data, dict):
        raise InvalidInput("document", "must be a JSON object")
    with ctx.db.transaction() as s:
        if new:
            cadences.create_sequence(s, ctx.principal, {**data, "key": key})
        else:
            cadences.update_sequence(s, ctx.principal, key, data)
    return redirect(ctx, PREFIX + "/settings/sequences")


# --------------------------------------------------------------------------------- pipelines


@router.get("/pipelines", response_class=HTMLResponse)
def pipelines_page(ctx: CtxDep) -> Response:
    from leadflow.pipeline import service as pipeline

    with ctx.db.transaction() as s:
        pipes = pipeline.list_pipelines(s, ctx.principal)
        stages = {p.id: pipeline.stages_of(s, p.id) for p in pipes}
        reasons = {k: pipeline.list_reasons(s, ctx.principal, k) for k in ("won", "lost")}
    docs = {
        p.id: json.dumps(
            [
                {
                    "key": st.key,
                    "name": st.name,
                    "probability": st.probability,
                    "kind": st.kind,
                    "rotting_days": st.rotting_days,
                    "forecast_category": st.forecast_category,
                }
                for st in stages[p.id]
            ],
            indent=2,
        )
        for p in pipes
    }
    return _page(
        ctx,
        "pipelines",
        pipes=pipes,
        stages=stages,
        docs=docs,
        reasons=reasons,
        can_admin=ctx.can(Perm.PIPELINES_ADMIN),
    )


@router.post("/pipelines/{pipeline_id}/stages")
def save_stages(
    ctx: CtxDep, pipeline_id: int, document: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = ""
) -> Response:
    from leadflow.pipeline import service as pipeline

    data = _json_field(document, "stages")
    if not isinstance(data, list):
        raise InvalidInput("stages", "must be a JSON list of stages")
    with ctx.db.transaction() as s:
        pipeline.set_stages(
            s, ctx.principal, pipeline_id, data, reason=reason.strip() or "edited in the web UI"
        )
    return redirect(ctx, PREFIX + "/settings/pipelines")


@router.post("/reasons")
def add_reason(
    ctx: CtxDep,
    kind: Annotated[str, Form()] = "",
    key: Annotated[str, Form()] = "",
    label: Annotated[str, Form()] = "",
) -> Response:
    from leadflow.pipeline import service as pipeline

    with ctx.db.transaction() as s:
        pipeline.add_reason(s, ctx.principal, kind, key, label)
    return redirect(ctx, PREFIX + "/settings/pipelines")
