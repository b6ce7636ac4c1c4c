"""HTTP routes for CSV imports (thin: store the upload, call the service, shape the answer).

``POST /api/imports`` runs the import inside the request and answers with its summary; a large
file keeps the request open while it runs (about a minute per million rows). A refused file
answers 422 naming the line, like every other invalid input.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status
from fastapi.responses import FileResponse

from leadflow.auth.deps import DB, Actor
from leadflow.errors import InvalidInput, NotFound
from leadflow.imports import service as svc
from leadflow.imports.mapping import Mapping
from leadflow.imports.schemas import ImportOut, ImportSummary
from leadflow.leads.models import ImportJob

router = APIRouter(prefix="/api/imports", tags=["imports"])

# Uploads larger than this are refused (413) before anything is read into the database.
MAX_UPLOAD_BYTES = 1 << 30
_COPY_BLOCK = 1 << 20


class UploadTooLarge(InvalidInput):
    status = 413
    code = "too_large"


def _errors_url(job_id: int) -> str:
    return f"/api/imports/{job_id}/errors.csv"


def _out(job: ImportJob) -> ImportOut:
    out = ImportOut.model_validate(job)
    out.errors_url = _errors_url(job.id) if job.error_report else None
    return out


def _save_upload(upload: UploadFile, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".csv", dir=directory)
    path = Path(name)
    size = 0
    try:
        with open(fd, "wb") as out:
            while block := upload.file.read(_COPY_BLOCK):
                size += len(block)
                if size > MAX_UPLOAD_BYTES:
                    raise UploadTooLarge("file", f"the file is larger than {MAX_UPLOAD_BYTES >> 20} MiB")
                out.write(block)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


@router.post(
    "",
    response_model=ImportSummary,
    status_code=status.HTTP_201_CREATED,
    summary="Import leads from a CSV file (multipart upload)",
)
def create_import(
    db: DB,
    actor: Actor,
    file: Annotated[
        UploadFile, File(description="CSV: comma, semicolon or tab; UTF-8, UTF-16 or Windows-1252")
    ],
    mapping: Annotated[Mapping, Form(description="column names: auto, salesforce or hubspot")] = Mapping.AUTO,
    dry_run: Annotated[bool, Form(description="check and count, write nothing")] = False,
) -> ImportSummary:
    report_dir = svc.report_dir_default()
    path = _save_upload(file, report_dir / "uploads")
    try:
        result = svc.run_import(
            db,
            path,
            mapping=mapping.value,
            dry_run=dry_run,
            actor=actor,
            filename=file.filename or path.name,
            report_dir=report_dir,
        )
    finally:
        path.unlink(missing_ok=True)
    job = svc.get_import(db, result.id, actor)
    return ImportSummary(
        **_out(job).model_dump(),
        warnings=result.warnings,
        accounts_created=result.accounts_created,
        encoding=result.encoding,
        delimiter=result.delimiter,
        columns=result.columns,
        seconds=round(result.seconds, 3),
        rows_per_second=round(result.rows_per_second, 1),
    )


@router.get("/{import_id}", response_model=ImportOut, summary="An import job and its counts")
def get_import(import_id: int, db: DB, actor: Actor) -> ImportOut:
    return _out(svc.get_import(db, import_id, actor))


@router.get(
    "/{import_id}/errors.csv",
    response_class=FileResponse,
    summary="The import's error report: line, column, value, reason, severity",
)
def import_errors(import_id: int, db: DB, actor: Actor) -> FileResponse:
    job = svc.get_import(db, import_id, actor)
    path = svc.error_report_path(job)
    if path is None:
        raise NotFound(f"import {import_id} has no error report")
    return FileResponse(path, media_type="text/csv", filename=f"import-{import_id}-errors.csv")
