"""CSV import use case: ``run_import`` checks the file, validates rows on every core and writes them
in chunked transactions, recording the job, its error report and its audit trail.

The pipeline: the file is checked as a whole first (:func:`leadflow.imports.reader.inspect_file`;
a malformed file raises :class:`ImportFileError` and nothing is written). Records are then read
in file order and cut into chunks; worker processes normalize and validate the chunks
(:mod:`leadflow.imports.rows`) while this process writes the previous ones
(:mod:`leadflow.imports.writer`). At most a few chunks are in flight, so memory stays flat
however long the file is. Small files are processed in this process (a worker pool costs about a
second to start).

An import that stops half-way (the process is killed, the database goes away) leaves whole chunks
behind and the job marked failed; running the same file again completes it without duplicates.
"""

from __future__ import annotations

import csv
import multiprocessing
import multiprocessing.context
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import User
from leadflow.auth.principal import SYSTEM, Perm, Principal
from leadflow.config import get_settings
from leadflow.db.base import Database, utcnow
from leadflow.errors import Forbidden, InvalidInput, NotFound
from leadflow.imports.mapping import ColumnPlan, Mapping, plan_columns
from leadflow.imports.reader import FileInfo, ImportFileError, inspect_file, read_chunk
from leadflow.imports.rows import ChunkResult, Issue, RowContext, UserRef, init_worker, process_chunk, work
from leadflow.imports.writer import ChunkWriter
from leadflow.leads.models import ImportJob

# Rows per chunk: one worker task, and one write transaction. Larger transactions rewrite each hot
# index page once per commit for more rows (5,000 -> 20,000 rows: ~17% less writer CPU per row,
# measured); the SQLite write lock is then held for about a second at a time.
DEFAULT_CHUNK = 20_000
# Below this many rows the file is validated in this process (no worker start-up cost).
INLINE_ROWS = 20_000
REPORT_HEADER = ("line", "column", "value", "reason", "severity")

Progress = Callable[[int, int], None]
"""Called with (rows processed, rows in the file) after the file check and after each chunk."""


@dataclass
class ImportResult:
    id: int
    filename: str
    mapping: str
    dry_run: bool
    status: str
    rows_total: int
    created: int
    updated: int
    skipped: int
    failed: int
    warnings: int
    accounts_created: int
    error_report: str | None
    encoding: str
    delimiter: str
    columns: dict[str, str | None] = field(default_factory=dict)
    seconds: float = 0.0
    message: str | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows_total / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows_per_second"] = round(self.rows_per_second, 1)
        return data


def _require(actor: Principal) -> None:
    if not actor.can(Perm.LEADS_IMPORT):
        raise Forbidden(
            f"role {actor.role.value} lacks the right {Perm.LEADS_IMPORT.value}",
            permission=Perm.LEADS_IMPORT.value,
        )


def report_dir_default() -> Path:
    return get_settings().data_dir / "imports"


def _users(db: Database) -> tuple[dict[str, UserRef], dict[str, list[UserRef]]]:
    by_email: dict[str, UserRef] = {}
    by_name: dict[str, list[UserRef]] = {}
    with db.transaction() as s:
        for user in s.scalars(select(User)):
            ref = UserRef(user.id, user.active, user.name, user.team)
            by_email[user.email.strip().lower()] = ref
            by_name.setdefault(" ".join(user.name.lower().split()), []).append(ref)
    return by_email, by_name


def _mp_context() -> multiprocessing.context.BaseContext:
    """Never plain fork: the API server has threads, and a forked child would inherit the
    engine's open connections. A fork server (started once per process, with the validation
    modules imported) makes later pools start at once; spawn where there is none."""

    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["leadflow.imports.rows"])
        return ctx
    return multiprocessing.get_context("spawn")


def _results(ctx: RowContext, info: FileInfo, *, workers: int) -> Iterator[ChunkResult]:
    """Validated chunks in file order; with workers, validation runs ahead of the caller by a few
    chunks (never more: memory stays flat)."""

    if workers <= 0:
        for chunk in info.chunks:
            yield process_chunk(ctx, read_chunk(info, chunk))
        return
    # ProcessPoolExecutor, not multiprocessing.Pool: a worker that dies raises BrokenProcessPool
    # here instead of leaving the import waiting forever.
    with ProcessPoolExecutor(
        workers,
        mp_context=_mp_context(),
        initializer=init_worker,
        initargs=(ctx, info),
    ) as pool:
        pending: deque[Future[ChunkResult]] = deque()
        in_flight = workers * 2 + 1
        try:
            for chunk in info.chunks:
                pending.append(pool.submit(work, chunk))
                if len(pending) >= in_flight:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _worker_count(requested: int | None, rows: int, chunks: int) -> int:
    if requested is not None:
        return max(0, requested)
    if rows <= INLINE_ROWS or chunks <= 2:
        return 0
    return max(1, os.cpu_count() or 1)


def run_import(
    db: Database,
    path: Path,
    *,
    mapping: str = "auto",
    dry_run: bool = False,
    actor: Principal | None = None,
    progress: Progress | None = None,
    filename: str | None = None,
    report_dir: Path | None = None,
    workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    job_id: int | None = None,
) -> ImportResult:
    """Import a CSV file of leads. Raises ImportFileError (nothing written) for a malformed file,
    Forbidden without the leads:import right, InvalidInput for an unknown mapping. ``job_id``: a
    row made beforehand by ``start_job`` (the web UI shows its progress before the import runs);
    otherwise the row is made here. The row's ``rows_done`` follows the progress."""

    actor = actor or SYSTEM
    _require(actor)
    preset = _preset(mapping)
    started = time.perf_counter()
    name = filename or path.name
    job = _Job(db, job_id, dry_run) if job_id is not None else _Job.start(db, name, preset, dry_run, actor)
    report_dir = report_dir or report_dir_default()
    report_dir.mkdir(parents=True, exist_ok=True)
    try:
        info = inspect_file(path, chunk_size=chunk_size, work_dir=report_dir)
    except ImportFileError as exc:
        raise job.reject(exc) from None
    try:
        plan = plan_columns(info.header, preset)
        if "email" not in plan.fields:
            raise job.reject(
                ImportFileError(
                    "no email column: imports match leads by email, so the file needs one (recognized "
                    "names: Email, E-mail, Email Address, Work Email...). Columns found: "
                    + ", ".join(info.header[:30]),
                    line=info.header_lines,
                )
            )
        return _run(job, info, plan, actor, progress, name, report_dir, workers, started)
    finally:
        if info.transcoded:
            info.path.unlink(missing_ok=True)


def _preset(mapping: str) -> Mapping:
    try:
        return Mapping(mapping)
    except ValueError:
        raise InvalidInput("mapping", f"must be one of {', '.join(m.value for m in Mapping)}") from None


def start_job(
    db: Database,
    filename: str,
    *,
    mapping: str = "auto",
    dry_run: bool = False,
    actor: Principal | None = None,
) -> int:
    """The import's row, made before the import runs (status running, no rows yet), for a caller
    that runs the import in the background and shows its progress from the row."""

    actor = actor or SYSTEM
    _require(actor)
    return _Job.start(db, filename, _preset(mapping), dry_run, actor).id


# The progress on the job row is written at most this often (one small UPDATE per write).
PROGRESS_EVERY = 0.5


@dataclass
class _Job:
    """The import's row in ``imports``."""

    db: Database
    id: int
    dry_run: bool

    @classmethod
    def start(cls, db: Database, name: str, preset: Mapping, dry_run: bool, actor: Principal) -> _Job:
        with db.transaction() as s:
            job = ImportJob(
                filename=name[:500],
                mapping=preset.value,
                dry_run=dry_run,
                status="running",
                created_by=actor.user_id,
                started_at=utcnow(),
            )
            s.add(job)
            s.flush()
            return cls(db, job.id, dry_run)

    def update(self, **values: Any) -> None:
        with self.db.transaction() as s:
            s.execute(update(ImportJob).where(ImportJob.id == self.id).values(**values))

    def progress(self, done: int) -> None:
        """The rows done so far, on a plain connection: no session, so no commit hooks (domain
        events, incremental rescoring) run on the import's thread between its chunks."""

        with self.db.engine.begin() as conn:
            conn.execute(
                update(ImportJob).where(ImportJob.id == self.id).values(rows_done=done, progress_at=utcnow())
            )

    def finish(self, status: str, **values: Any) -> None:
        self.update(status=status, finished_at=utcnow(), **values)

    def reject(self, exc: ImportFileError) -> ImportFileError:
        self.finish("rejected", message=exc.message)
        exc.extra["import_id"] = self.id
        return exc


def _run(
    job: _Job,
    info: FileInfo,
    plan: ColumnPlan,
    actor: Principal,
    progress: Progress | None,
    name: str,
    report_dir: Path,
    workers: int | None,
    started: float,
) -> ImportResult:
    db, job_id, dry_run = job.db, job.id, job.dry_run
    report_path = (report_dir / f"import-{job_id}-errors.csv").resolve()
    by_email, by_name = _users(db)
    ctx = RowContext(
        plan, by_email, by_name, actor_role=actor.role.value, actor_id=actor.user_id, actor_team=actor.team
    )
    writer = ChunkWriter(
        db, job_id=job_id, actor=actor, dry_run=dry_run, email_column=plan.header_of("email")
    )
    n_workers = _worker_count(workers, info.rows, len(info.chunks))
    done = 0
    warnings = 0
    job.update(rows_total=info.rows, rows_done=0, progress_at=utcnow())
    last_progress = time.perf_counter()
    if progress:
        progress(0, info.rows)
    try:
        with report_path.open("w", encoding="utf-8", newline="") as report:
            out = csv.writer(report)
            out.writerow(REPORT_HEADER)

            def write_issues(issues: list[Issue]) -> None:
                nonlocal warnings
                for issue in sorted(issues, key=lambda i: i.line):
                    out.writerow(issue)
                    if issue.severity == "warning":
                        warnings += 1

            with writer.connected():
                for result in _results(ctx, info, workers=n_workers):
                    writer.totals.failed += result.failed
                    chunk_out = writer.write(result.norm_rows())
                    write_issues(result.issues + chunk_out.issues)
                    done += result.processed
                    if progress:
                        progress(done, info.rows)
                    if time.perf_counter() - last_progress >= PROGRESS_EVERY:
                        job.progress(done)
                        last_progress = time.perf_counter()
    except BaseException as exc:
        t = writer.totals
        job.finish(
            "failed",
            rows_done=done,
            created=t.created,
            updated=t.updated,
            skipped=t.skipped,
            failed=t.failed,
            error_report=str(report_path),
            message=f"stopped after {done} of {info.rows} rows: {type(exc).__name__}: {exc}"[:2000],
        )
        raise
    t = writer.totals
    seconds = time.perf_counter() - started
    message = (
        f"{info.rows} rows: {t.created} created, {t.updated} updated, {t.skipped} unchanged, "
        f"{t.failed} failed, {warnings} warnings; {t.accounts_created} accounts created"
    )
    status = "completed"
    with db.transaction() as s:
        s.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id)
            .values(
                status=status,
                finished_at=utcnow(),
                rows_done=info.rows,
                created=t.created,
                updated=t.updated,
                skipped=t.skipped,
                failed=t.failed,
                error_report=str(report_path),
                message=message,
            )
        )
        if not dry_run:
            s.add(
                AuditEntry(
                    at=utcnow(),
                    actor_id=actor.user_id,
                    actor_label=actor.label,
                    entity_type="import",
                    entity_id=job_id,
                    action="import",
                    after={
                        "filename": name,
                        "mapping": plan.mapping.value,
                        "rows": info.rows,
                        "created": t.created,
                        "updated": t.updated,
                        "skipped": t.skipped,
                        "failed": t.failed,
                        "accounts_created": t.accounts_created,
                    },
                    reason=f"import #{job_id}",
                )
            )
    return ImportResult(
        id=job_id,
        filename=name,
        mapping=plan.mapping.value,
        dry_run=dry_run,
        status=status,
        rows_total=info.rows,
        created=t.created,
        updated=t.updated,
        skipped=t.skipped,
        failed=t.failed,
        warnings=warnings,
        accounts_created=t.accounts_created,
        error_report=str(report_path),
        encoding=info.encoding_label,
        delimiter=info.delimiter,
        columns=plan.describe(),
        seconds=seconds,
        message=message,
    )


def get_import(db: Database, import_id: int, actor: Principal | None = None) -> ImportJob:
    _require(actor or SYSTEM)
    with db.transaction() as s:
        job = s.get(ImportJob, import_id)
        if job is None:
            raise NotFound(f"import {import_id} not found")
        s.expunge(job)
        return job


def error_report_path(job: ImportJob) -> Path | None:
    if not job.error_report:
        return None
    path = Path(job.error_report)
    return path if path.is_file() else None
