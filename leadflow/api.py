"""The composition root of the HTTP application: builds the app, mounts each feature's router
and translates domain errors into HTTP answers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy import text
from sqlalchemy.exc import DataError

from leadflow import __version__
from leadflow.assignment.api import router as assignment_router
from leadflow.auth.api import router as auth_router
from leadflow.cadences.api import public_router as cadences_public_router
from leadflow.cadences.api import router as cadences_router
from leadflow.config import get_settings
from leadflow.core.lifecycle import LifecycleError, MissingEvidence
from leadflow.db.base import Database
from leadflow.errors import InvalidInput, LeadflowError
from leadflow.imports.api import router as imports_router
from leadflow.leads.api import router as leads_router
from leadflow.leads.forms_api import public_router as forms_public_router
from leadflow.leads.forms_api import router as forms_router
from leadflow.ops import idempotency
from leadflow.ops.api import router as ops_router
from leadflow.ops.idempotency import IdempotencyMiddleware
from leadflow.ops.logging import RequestLogMiddleware
from leadflow.pipeline.api import router as pipeline_router
from leadflow.qualification.api import public_router as qualification_public_router
from leadflow.qualification.api import router as qualification_router
from leadflow.reports.api import router as reports_router
from leadflow.scoring.api import router as scoring_router
from leadflow.scoring.predictive_api import router as predictive_router
from leadflow.tasks.api import router as tasks_router
from leadflow.web.app import install as install_web
from leadflow.webhooks.api import router as webhooks_router
from leadflow.wiring import register_reactions

log = logging.getLogger("leadflow")

DESCRIPTION = """
Leadflow carries potential customers from **lead** to **prospect** (SQL) to **opportunity**.

Authenticate with `Authorization: Bearer lf_...` (create a token with `leadflow token create`).
Bad input answers 422 naming the field; an illegal stage move answers 409 listing the legal ones;
a stale `version` answers 409.
"""


def _error_body(exc: LeadflowError) -> dict[str, Any]:
    if isinstance(exc, InvalidInput):
        errors = exc.extra.get("errors") or [{"loc": exc.loc, "msg": exc.reason}]
        return {"detail": [{**e, "type": "value_error"} for e in errors], "code": exc.code}
    return {"detail": exc.message, "code": exc.code, **exc.extra}


def create_app(db: Database | None = None) -> FastAPI:
    settings = get_settings()
    owned = db is None
    database = db or Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            database.dispose()

    # Swagger UI and ReDoc assets are served from the installed package, never from a CDN.
    app = FastAPIOffline(
        title="Leadflow",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "leads", "description": "Leads, stage transitions, events and their audit trail"},
            {"name": "accounts", "description": "Organizations and their buying committees"},
            {"name": "imports", "description": "CSV import"},
            {"name": "web forms", "description": "Public web-to-lead capture"},
            {"name": "users", "description": "Users, roles and API tokens"},
            {"name": "scoring", "description": "Lead scoring models, rescoring and explanations"},
            {
                "name": "predictive scoring",
                "description": "Models trained on outcomes, evaluation, predictions, rule point suggestions",
            },
            {
                "name": "qualification",
                "description": "Needs assessments, discovery calls, qualification levels, handoff SLA",
            },
            {"name": "assignment", "description": "Lead assignment rules and rep capacity"},
            {"name": "webhooks", "description": "Signed webhook deliveries, their log and redelivery"},
            {"name": "opportunities", "description": "Pipelines, opportunities, conversion, buying signals"},
            {"name": "reports", "description": "Funnel, velocity, forecast, attribution, leaderboards"},
            {"name": "tasks", "description": "Rep tasks and the inbox; logging calls"},
            {"name": "cadences", "description": "Follow-up sequences, email, appointments, unsubscribe"},
            {"name": "privacy", "description": "Personal data: export everything about a person"},
            {"name": "operations", "description": "Health and readiness"},
        ],
    )
    app.state.db = database

    @app.exception_handler(LeadflowError)
    async def _domain_error(_req: Request, exc: LeadflowError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(_error_body(exc), status_code=exc.status, headers=headers)

    @app.exception_handler(DataError)
    @app.exception_handler(OverflowError)
    async def _out_of_range(_req: Request, exc: Exception) -> JSONResponse:
        # A value the database cannot hold, e.g. an id beyond its integer column (PostgreSQL
        # raises DataError, SQLite's driver OverflowError): bad input, not a server fault.
        log.info("value refused by the database: %s", str(exc).splitlines()[0][:200])
        detail = [{"loc": [], "msg": "a value is out of range for the database", "type": "value_error"}]
        return JSONResponse({"detail": detail, "code": "invalid"}, status_code=422)

    @app.exception_handler(LifecycleError)
    async def _lifecycle_error(_req: Request, exc: LifecycleError) -> JSONResponse:
        body: dict[str, Any] = {
            "detail": exc.message,
            "code": exc.code,
            "current": exc.current.value,
            "target": exc.target.value,
            "legal": [s.value for s in exc.legal],
        }
        if isinstance(exc, MissingEvidence):
            body["required"] = exc.required
        return JSONResponse(body, status_code=409)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: the database answers")
    def readyz() -> JSONResponse:
        try:
            with database.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # readiness reports any database failure
            return JSONResponse({"status": "unavailable", "error": str(exc)[:200]}, status_code=503)
        return JSONResponse({"status": "ok", "database": database.dialect})

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/app/")

    app.include_router(leads_router)
    app.include_router(auth_router)
    app.include_router(forms_router)
    app.include_router(forms_public_router)
    app.include_router(scoring_router)
    app.include_router(imports_router)
    app.include_router(qualification_router)
    app.include_router(qualification_public_router)
    app.include_router(assignment_router)
    app.include_router(webhooks_router)
    app.include_router(predictive_router)
    app.include_router(pipeline_router)
    app.include_router(reports_router)
    app.include_router(tasks_router)
    app.include_router(cadences_router)
    app.include_router(cadences_public_router)
    install_web(app)  # the web UI under /app (after the API's error handlers: it wraps them)
    app.include_router(ops_router)
    # Outermost last: every request gets an id and a log line, replays included.
    app.add_middleware(IdempotencyMiddleware, db=database)
    app.add_middleware(RequestLogMiddleware)
    base_openapi = app.openapi
    app.openapi = lambda: idempotency.document(base_openapi())  # type: ignore[method-assign]
    register_reactions(database)  # handoff, buying signals, scoring, cadences (leadflow/wiring.py)
    return app
