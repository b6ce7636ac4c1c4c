"""Structured logs: one line per request (request id, actor, method, path, status, duration) and
every stdlib ``logging`` record rendered the same way, as JSON (``LEADFLOW_LOG_FORMAT=json``, for
log shippers) or as readable console lines (the default).

The actor is learnt inside the request (authentication runs in a dependency, in a worker thread);
a mutable per-request dict in a context variable carries it back to the middleware, because
context variables set in a worker thread do not flow back to the caller.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_request: ContextVar[dict[str, Any] | None] = ContextVar("leadflow_request", default=None)

REQUEST_ID_HEADER = "x-request-id"
_configured: tuple[str, str] | None = None


def note_actor(label: str) -> None:
    """Record who is acting in the current request (called by authentication)."""

    ctx = _request.get()
    if ctx is not None:
        ctx["actor"] = label


def current_request_id() -> str | None:
    ctx = _request.get()
    return None if ctx is None else str(ctx["request_id"])


def _add_request(_logger: Any, _name: str, event: Any) -> Any:
    ctx = _request.get()
    if ctx is not None:
        event.setdefault("request_id", ctx["request_id"])
    return event


def configure_logging(fmt: str = "console", level: str = "info", *, force: bool = False) -> None:
    """Route structlog and stdlib logging (uvicorn, SQLAlchemy, our modules) through one
    renderer on stderr. Idempotent unless ``force``."""

    global _configured
    fmt = fmt.lower()
    if fmt not in ("json", "console"):
        raise ValueError(f"log format must be json or console, not {fmt!r}")
    if _configured == (fmt, level) and not force:
        return
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else _keep,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("leadflow")
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == "leadflow":
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own access log would duplicate our request line.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    _configured = (fmt, level)


def _keep(_logger: Any, _name: str, event: Any) -> Any:
    return event


def reset_logging() -> None:
    """Undo :func:`configure_logging`: structlog events become plain stdlib records again (what
    library users and tests get when nothing configured logging)."""

    global _configured
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == "leadflow":
            root.removeHandler(h)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_request,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    _configured = None


reset_logging()
access_log = structlog.stdlib.get_logger("leadflow.access")


class RequestLogMiddleware:
    """Pure ASGI middleware: assigns a request id (or keeps a sane incoming ``X-Request-ID``),
    echoes it in the response, and logs one ``request`` event when the response is done. An
    exception escaping the app is logged with its traceback, as status 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, REQUEST_ID_HEADER)
        rid = incoming if incoming and len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        ctx: dict[str, Any] = {"request_id": rid, "actor": None}
        token = _request.set(ctx)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            access_log.exception("request failed", **_fields(scope, ctx, 500, started))
            raise
        else:
            fields = _fields(scope, ctx, status, started)
            if status >= 500:
                access_log.error("request", **fields)
            else:
                access_log.info("request", **fields)
        finally:
            _request.reset(token)


def _fields(scope: Scope, ctx: dict[str, Any], status: int, started: float) -> dict[str, Any]:
    actor = ctx.get("actor")
    if actor is None:
        principal = (scope.get("state") or {}).get("principal")  # web UI sessions
        actor = getattr(principal, "label", None)
    return {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "actor": actor,
        "client": (scope.get("client") or (None,))[0],
    }


def _header(scope: Scope, name: str) -> str | None:
    key = name.encode()
    for k, v in scope.get("headers", []):
        if k == key:
            try:
                return str(v.decode("latin-1"))
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
                return None
    return None
