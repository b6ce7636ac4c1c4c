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
