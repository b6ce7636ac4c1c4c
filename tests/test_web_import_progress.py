"""Web import progress lives on the import's row (imports.rows_done / progress_at), so it shows
after a restart and from any server process; an import whose process died is shown stopped."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from conftest import make_user
from fastapi.testclient import TestClient
from sqlalchemy import update
from test_web_server import sign_in

from leadflow.auth.models import Role
from leadflow.db.base import Database, utcnow
from leadflow.imports import service as svc
from leadflow.leads.models import ImportJob


def test_progress_is_read_from_the_import_row(client: TestClient, db: Database) -> None:
    mk = make_user(db, "Mia", Role.MARKETING)
    sign_in(client, db, mk)
    # An import running in another process: only its row is shared.
    job_id = svc.start_job(db, "big.csv", actor=mk.principal)
    with db.transaction() as s:
        s.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id)
            .values(rows_total=1_000_000, rows_done=250_000, progress_at=utcnow())
        )
    frag = client.get(f"/app/imports/runs/{job_id}", headers={"HX-Request": "true"}).text
    assert "Imported 250,000 of 1,000,000 rows" in frag and "every 1s" in frag
    assert "<h1>Importing big.csv</h1>" in client.get(f"/app/imports/runs/{job_id}").text

    # No progress for longer than the import writes it: its process is gone; polling stops.
    with db.transaction() as s:
        s.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id)
            .values(progress_at=utcnow() - timedelta(minutes=30))
        )
    frag = client.get(f"/app/imports/runs/{job_id}", headers={"HX-Request": "true"}).text
    assert "the server process running it stopped" in frag and "every 1s" not in frag
    assert "250,000 of 1,000,000 rows" in frag


def test_the_import_writes_its_progress_on_the_row(db: Database, tmp_path: Path) -> None:
    mk = make_user(db, "Mia", Role.MARKETING)
    path = tmp_path / "leads.csv"
    path.write_text("Email,First Name\n" + "".join(f"p{i}@example.org,P{i}\n" for i in range(30)))
    job_id = svc.start_job(db, "leads.csv", actor=mk.principal)
    seen: list[int] = []
    svc.run_import(
        db,
        path,
        actor=mk.principal,
        job_id=job_id,
        report_dir=tmp_path,
        chunk_size=10,
        workers=0,
        progress=lambda done, total: seen.append(done),
    )
    with db.transaction() as s:
        job = s.get(ImportJob, job_id)
        assert job is not None
        assert (job.status, job.rows_total, job.rows_done, job.created) == ("completed", 30, 30, 30)
        assert job.progress_at is not None
    assert seen[-1] == 30
