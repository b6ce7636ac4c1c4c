"""CSV import from the browser: the upload starts the import in a background thread (the same
``imports.service.run_import`` as the CLI and the API); the page polls its progress with HTMX
and offers the row-error report when it is done.

Progress lives in this process's memory (the import itself is in the database): with several
server processes, the page polls the process that took the upload only if the load balancer is
sticky; the finished import is visible from any process on the imports page.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import select

from leadflow.auth.principal import Perm, Principal, Visibility
from leadflow.db.base import Database
from leadflow.errors import InvalidInput, LeadflowError, NotFound
from leadflow.imports import service as svc
from leadflow.imports.mapping import Mapping
from leadflow.leads.models import ImportJob
from leadflow.web.core import PREFIX, CtxDep, redirect, render

router = APIRouter(prefix=PREFIX + "/imports", include_in_schema=False)

MAX_UPLOAD_BYTES = 1 << 30
_KEEP_SECONDS = 3600


@dataclass
class Run:
    user_id: int | None
    filename: str
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: bool = False
    import_id: int | None = None
    error: str | None = None


_runs: dict[str, Run] = {}
_lock = threading.Lock()


def _forget_old() -> None:
    now = time.monotonic()
    with _lock:
        for key in [k for k, r in _runs.items() if r.finished and now - r.started > _KEEP_SECONDS]:
            del _runs[key]


def _work(db: Database, run: Run, path: Path, mapping: str, dry_run: bool, actor: Principal) -> None:
    def progress(done: int, total: int) -> None:
        run.done, run.total = done, total

    try:
        result = svc.run_import(
            db,
            path,
            mapping=mapping,
            dry_run=dry_run,
            actor=actor,
            progress=progress,
            filename=run.filename,
            report_dir=svc.report_dir_default(),
        )
        run.import_id = result.id
        run.done = run.total = result.rows_total
    except LeadflowError as exc:
        run.error = exc.message
        run.import_id = exc.extra.get("import_id")
    except BaseException as exc:  # the thread must always finish the run, whatever failed
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        path.unlink(missing_ok=True)
        run.finished = True


def _recent(db: Database, actor: Principal) -> list[ImportJob]:
    stmt = select(ImportJob).order_by(ImportJob.id.desc()).limit(20)
    if actor.visibility is not Visibility.ALL:
        stmt = stmt.where(ImportJob.created_by == actor.user_id)
    with db.transaction() as s:
        return list(s.scalars(stmt))


@router.get("", response_class=HTMLResponse)
def imports_page(ctx: CtxDep) -> Response:
    ctx.principal.require(Perm.LEADS_IMPORT)
    return render(
        ctx,
        ctx.request,
        "imports.html",
        nav="imports",
        jobs=_recent(ctx.db, ctx.principal),
        mappings=[m.value for m in Mapping],
    )


@router.post("")
def start_import(
    ctx: CtxDep,
    file: Annotated[UploadFile, File()],
    mapping: Annotated[str, Form()] = "auto",
    dry_run: Annotated[bool, Form()] = False,
) -> Response:
    ctx.principal.require(Perm.LEADS_IMPORT)
    if mapping not in {m.value for m in Mapping}:
        raise InvalidInput("mapping", f"must be one of {', '.join(m.value for m in Mapping)}")
    if not file.filename:
        raise InvalidInput("file", "choose a CSV file")
    directory = svc.report_dir_default() / "uploads"
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".csv", dir=directory)
    path = Path(name)
    size = 0
    try:
        with open(fd, "wb") as out:
            while block := file.file.read(1 << 20):
                size += len(block)
                if size > MAX_UPLOAD_BYTES:
                    raise InvalidInput("file", f"the file is larger than {MAX_UPLOAD_BYTES >> 20} MiB")
                out.write(block)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    _forget_old()
    token = secrets.token_urlsafe(12)
    run = Run(user_id=ctx.user.id, filename=file.filename[:500])
    with _lock:
        _runs[token] = run
    threading.Thread(
        target=_work,
        args=(ctx.db, run, path, mapping, dry_run, ctx.principal),
        daemon=True,
        name="web-import",
    ).start()
    return redirect(ctx, f"{PREFIX}/imports/runs/{token}")


def _run_of(ctx: CtxDep, token: str) -> Run:
    run = _runs.get(token)
    if run is None or run.user_id != ctx.user.id:
        raise NotFound("no such import run (runs are kept for an hour)")
    return run


@router.get("/runs/{token}", response_class=HTMLResponse)
def run_page(ctx: CtxDep, token: str) -> Response:
    run = _run_of(ctx, token)
    job = None
    if run.finished and run.import_id is not None:
        job = svc.get_import(ctx.db, run.import_id, ctx.principal)
    template = "_import_progress.html" if ctx.is_htmx else "import_run.html"
    return render(ctx, ctx.request, template, nav="imports", run=run, token=token, job=job)


@router.get("/{import_id}/errors.csv")
def errors_csv(ctx: CtxDep, import_id: int) -> Response:
    job = svc.get_import(ctx.db, import_id, ctx.principal)
    path = svc.error_report_path(job)
    if path is None:
        raise NotFound(f"import {import_id} has no error report")
    return FileResponse(path, media_type="text/csv", filename=f"import-{import_id}-errors.csv")
