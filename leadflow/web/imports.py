"""CSV import from the browser: the upload makes the import's row (``imports.service.start_job``)
and runs the import in a background thread (the same ``imports.service.run_import`` as the CLI and
the API); the page polls the row with HTMX — its status, rows done of rows total — and offers the
row-error report when it is done.

The progress is on the import's row (``imports.rows_done``, written while the import runs), not in
this process's memory: the page shows it after a restart of the web process and from any of
several server processes.
"""

from __future__ import annotations

import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import select

from leadflow.auth.principal import Perm, Principal, Visibility
from leadflow.db.base import Database, utcnow
from leadflow.errors import InvalidInput, NotFound
from leadflow.imports import service as svc
from leadflow.imports.mapping import Mapping
from leadflow.leads.models import ImportJob
from leadflow.web.core import PREFIX, CtxDep, redirect, render

router = APIRouter(prefix=PREFIX + "/imports", include_in_schema=False)

MAX_UPLOAD_BYTES = 1 << 30
# A running import writes its progress every half second; this long without any, its process
# is gone (a restart or a crash): the page says so instead of polling forever.
STALLED_AFTER = timedelta(minutes=5)
_KEEP_SECONDS = 3600


def _work(
    db: Database, job_id: int, path: Path, mapping: str, dry_run: bool, actor: Principal, name: str
) -> None:
    try:
        svc.run_import(
            db,
            path,
            mapping=mapping,
            dry_run=dry_run,
            actor=actor,
            filename=name,
            report_dir=svc.report_dir_default(),
            job_id=job_id,
        )
    except BaseException as exc:  # recorded on the row: the thread must always finish
        # run_import marks the row rejected/failed itself; this covers what fails before that.
        with db.transaction() as s:
            job = s.get(ImportJob, job_id)
            if job is not None and job.status == "running":
                job.status, job.finished_at = "failed", utcnow()
                job.message = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"[:2000]
    finally:
        path.unlink(missing_ok=True)


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
    name = file.filename[:500]
    try:
        job_id = svc.start_job(ctx.db, name, mapping=mapping, dry_run=dry_run, actor=ctx.principal)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    threading.Thread(
        target=_work,
        args=(ctx.db, job_id, path, mapping, dry_run, ctx.principal, name),
        daemon=True,
        name=f"web-import-{job_id}",
    ).start()
    return redirect(ctx, f"{PREFIX}/imports/runs/{job_id}")


@router.get("/runs/{import_id}", response_class=HTMLResponse)
def run_page(ctx: CtxDep, import_id: int) -> Response:
    job = svc.get_import(ctx.db, import_id, ctx.principal)
    # Like the imports list: one's own imports, or every import for those who see everything.
    if job.created_by != ctx.user.id and ctx.principal.visibility is not Visibility.ALL:
        raise NotFound(f"import {import_id} not found")
    template = "_import_progress.html" if ctx.is_htmx else "import_run.html"
    last = job.progress_at or job.started_at
    stalled = job.status == "running" and utcnow() - last > STALLED_AFTER
    return render(ctx, ctx.request, template, nav="imports", job=job, stalled=stalled)


@router.get("/{import_id}/errors.csv")
def errors_csv(ctx: CtxDep, import_id: int) -> Response:
    job = svc.get_import(ctx.db, import_id, ctx.principal)
    path = svc.error_report_path(job)
    if path is None:
        raise NotFound(f"import {import_id} has no error report")
    return FileResponse(path, media_type="text/csv", filename=f"import-{import_id}-errors.csv")
