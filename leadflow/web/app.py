"""Mounting the web UI on the FastAPI app: routes, static assets, the session middleware and the
HTML answers to errors on web paths."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from markupsafe import escape

from leadflow.core.lifecycle import LifecycleError, MissingEvidence
from leadflow.errors import InvalidInput, LeadflowError
from leadflow.web.core import HERE, PREFIX, CsrfRefused, SignInRequired, render, sign_in_redirect
from leadflow.web.session import Sessions, load_secret

# Scripts and styles only from this origin; charts and HTMX are vendored files, never inline code.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'self'"
)


def _is_web(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


def _message(exc: Exception) -> str:
    if isinstance(exc, InvalidInput):
        errors = exc.extra.get("errors") or [{"loc": exc.loc, "msg": exc.reason}]
        parts = []
        for e in errors:
            loc = ".".join(str(x) for x in (e.get("loc") or []) if x not in ("body",))
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return "; ".join(parts)
    if isinstance(exc, MissingEvidence):
        return f"{exc.message} (needs: {', '.join(exc.required)})"
    if isinstance(exc, LifecycleError):
        legal = ", ".join(s.value for s in exc.legal) or "none"
        return f"{exc.message} (legal moves: {legal})"
    if isinstance(exc, LeadflowError):
        return exc.message
    return str(exc)


def _error_response(request: Request, status: int, message: str) -> Response:
    if request.headers.get("HX-Request") == "true":
        # Shown in the page's flash area, whatever the request targeted.
        body = f'<div class="flash flash-error" role="alert">{escape(message)}</div>'
        return HTMLResponse(
            body, status_code=status, headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"}
        )
    return render(None, request, "error.html", status_code=status, status=status, message=message)


Handler = Callable[[Request, Any], Awaitable[Response]]


def install(app: FastAPI) -> None:
    """Mount the web UI on ``app`` (called by the composition root, leadflow/api.py)."""

    from leadflow.web import (
        dashboards,
        imports,
        pipeline,
        qualification,
        routes,
        settings,
        settings_qualification,
        tasks,
    )

    app.state.web_sessions = Sessions(load_secret())
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (
        routes,
        qualification,
        imports,
        tasks,
        pipeline,
        dashboards,
        settings,
        settings_qualification,
    ):
        app.include_router(module.router)

    @app.middleware("http")
    async def web_session(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not _is_web(request):
            return await call_next(request)
        sessions: Sessions = app.state.web_sessions
        ws = sessions.read(request)
        request.state.web_session = ws
        response = await call_next(request)
        if ws.dirty:
            sessions.write(request, response, ws)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    api_domain: Handler | None = app.exception_handlers.get(LeadflowError)  # type: ignore[assignment]
    api_lifecycle: Handler | None = app.exception_handlers.get(LifecycleError)  # type: ignore[assignment]

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return sign_in_redirect(request, exc.next_url)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _exc: CsrfRefused) -> Response:
        return _error_response(
            request, 403, "The form expired or did not come from this site; reload the page."
        )

    @app.exception_handler(LeadflowError)
    async def _domain(request: Request, exc: LeadflowError) -> Response:
        if _is_web(request):
            return _error_response(request, exc.status, _message(exc))
        assert api_domain is not None
        return await api_domain(request, exc)

    @app.exception_handler(LifecycleError)
    async def _lifecycle(request: Request, exc: LifecycleError) -> Response:
        if _is_web(request):
            return _error_response(request, 409, _message(exc))
        assert api_lifecycle is not None
        return await api_lifecycle(request, exc)
