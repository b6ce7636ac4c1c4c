"""Shared pieces of the web UI: templates, the signed-in context of a request, CSRF checks and
the HTML answers to domain errors.

Routes call the same service functions as the REST API with the user's Principal; rights and
record visibility are enforced there, never re-implemented here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from leadflow.auth.models import User
from leadflow.auth.principal import Perm, Principal
from leadflow.db.base import Database
from leadflow.web.session import CSRF_FIELD, CSRF_HEADER, UNSAFE, Sessions, WebSession, load_user

HERE = Path(__file__).parent
PREFIX = "/app"
templates = Jinja2Templates(directory=str(HERE / "templates"))


def _ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    secs = (datetime.now(UTC) - value).total_seconds()
    future = secs < 0
    secs = abs(secs)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if secs >= size:
            text = f"{int(secs // size)} {unit}"
            return f"in {text}" if future else f"{text} ago"
    return "just now"


def _dt(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


def _label(value: Any) -> str:
    return str(value or "").replace("_", " ")


def _tojson_attr(value: Any) -> Markup:
    return Markup(json.dumps(value, default=str).replace("&", "\\u0026").replace("<", "\\u003c"))


templates.env.filters["ago"] = _ago
templates.env.filters["dt"] = _dt
templates.env.filters["label"] = _label
templates.env.filters["json"] = _tojson_attr
templates.env.globals["prefix"] = PREFIX
# Main navigation after "Leads": (key, label, url, permission needed to see it).
templates.env.globals["nav_items"] = [
    ("tasks", "Tasks", PREFIX + "/tasks", "leads:read"),
    ("pipeline", "Pipeline", PREFIX + "/pipeline", "opportunities:read"),
]


class SignInRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class CsrfRefused(Exception):
    pass


@dataclass
class Ctx:
    """What every signed-in page needs: the request, the database, who is acting."""

    request: Request
    db: Database
    session: WebSession
    user: User
    principal: Principal
    csrf: str

    def can(self, perm: Perm | str) -> bool:
        return self.principal.can(Perm(perm))

    @property
    def is_htmx(self) -> bool:
        return self.request.headers.get("HX-Request") == "true"


def sessions(request: Request) -> Sessions:
    s: Sessions = request.app.state.web_sessions
    return s


def web_session(request: Request) -> WebSession:
    ws: WebSession = request.state.web_session
    return ws


async def check_csrf(request: Request) -> None:
    """Unsafe requests carry the session's CSRF token (form field or header)."""

    if request.method not in UNSAFE:
        return
    token = request.headers.get(CSRF_HEADER)
    if not token:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # parsed once; the route's Form() fields reuse it
            value = form.get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
    if not sessions(request).csrf_ok(web_session(request), token):
        raise CsrfRefused()


async def context(request: Request) -> Ctx:
    await check_csrf(request)
    ws = web_session(request)
    loaded = load_user(request.app.state.db, ws.user_id)
    if loaded is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target if request.method == "GET" else PREFIX + "/")
    user, principal = loaded
    request.state.principal = principal
    return Ctx(request, request.app.state.db, ws, user, principal, sessions(request).csrf_token(ws))


CtxDep = Annotated[Ctx, Depends(context)]


def render(
    ctx: Ctx | None, request: Request, name: str, status_code: int = 200, **values: Any
) -> HTMLResponse:
    base: dict[str, Any] = {"request": request}
    if ctx is not None:
        base.update(user=ctx.user, principal=ctx.principal, csrf=ctx.csrf, ctx=ctx)
    else:
        ws = web_session(request)
        base.update(user=None, principal=None, csrf=sessions(request).csrf_token(ws), ctx=None)
    base.update(values)
    return templates.TemplateResponse(request, name, base, status_code=status_code)


def redirect(ctx: Ctx | None, url: str) -> Response:
    """A redirect after a form post; HTMX requests get HX-Redirect (a full navigation)."""

    if ctx is not None and ctx.is_htmx:
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def sign_in_redirect(request: Request, next_url: str) -> Response:
    url = f"{PREFIX}/login?next={quote(next_url)}"
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def flash_html(message: str, kind: str = "ok") -> str:
    from markupsafe import escape

    return f'<div class="flash flash-{kind}" role="status">{escape(message)}</div>'
