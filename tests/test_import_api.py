"""The import's edges: POST /api/imports (multipart) and ``leadflow import``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from conftest import Actor, make_user
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from leadflow import cli as root_cli
from leadflow.api import create_app
from leadflow.auth.models import Role
from leadflow.config import get_settings
from leadflow.db.base import Database
from leadflow.imports.api import router
from leadflow.imports.cli import register
from leadflow.leads.models import Lead

DATA = Path(__file__).parent / "data" / "imports"


@pytest.fixture
def settings_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: Database) -> Iterator[Path]:
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", db.url)
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


@pytest.fixture
def api(db: Database, settings_dir: Path) -> Iterator[TestClient]:
    app: FastAPI = create_app(db)
    if not any(getattr(r, "path", "") == "/api/imports" for r in app.routes):
        app.include_router(router)
    with TestClient(app) as client:
        yield client


def lead_count(db: Database) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(Lead)) or 0)


def upload(client: TestClient, actor: Actor, name: str, data: bytes, **form: str) -> object:
    return client.post(
        "/api/imports",
        headers=actor.headers,
        files={"file": (name, data, "text/csv")},
        data=form,
    )


def test_upload_and_read_back(api: TestClient, admin: Actor, db: Database, settings_dir: Path) -> None:
    data = (DATA / "salesforce_leads.csv").read_bytes()
    res = api.post(
        "/api/imports",
        headers=admin.headers,
        files={"file": ("leads.csv", data, "text/csv")},
        data={"mapping": "salesforce"},
    )
    assert res.status_code == 201, res.text
    body = res.json()
    assert (body["filename"], body["mapping"], body["status"], body["dry_run"]) == (
        "leads.csv",
        "salesforce",
        "completed",
        False,
    )
    # Warnings: three owners match no user here, one lead status is unknown.
    assert (body["rows_total"], body["created"], body["failed"], body["warnings"]) == (8, 6, 2, 4)
    assert body["created_by"] == admin.user_id and body["columns"]["Lead Status"] == "stage"
    assert body["errors_url"] == f"/api/imports/{body['id']}/errors.csv"
    assert lead_count(db) == 6
    assert not list((settings_dir / "imports" / "uploads").iterdir())  # the upload is removed

    job = api.get(f"/api/imports/{body['id']}", headers=admin.headers)
    assert job.status_code == 200 and job.json()["created"] == 6 and job.json()["finished_at"]

    errors = api.get(body["errors_url"], headers=admin.headers)
    assert errors.status_code == 200 and errors.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(errors.text)))
    failed = [(r["line"], r["column"]) for r in rows if r["severity"] == "error"]
    assert failed == [("7", "Email"), ("8", "Email")]

    dry = api.post(
        "/api/imports",
        headers=admin.headers,
        files={"file": ("leads.csv", data, "text/csv")},
        data={"mapping": "salesforce", "dry_run": "true"},
    )
    assert dry.status_code == 201 and (dry.json()["dry_run"], dry.json()["skipped"]) == (True, 6)


def test_malformed_file_answers_422_naming_the_line(api: TestClient, admin: Actor, db: Database) -> None:
    data = b'Email,Name\nann@acme-corp.com,"Ann\nbob@acme-corp.com,Bob\n'
    res = api.post("/api/imports", headers=admin.headers, files={"file": ("bad.csv", data, "text/csv")})
    assert res.status_code == 422
    body = res.json()
    assert body["code"] == "invalid_file"
    (detail,) = body["detail"]
    assert detail["loc"] == ["file"] and detail["line"] == 2 and "unbalanced quote" in detail["msg"]
    assert lead_count(db) == 0

    res = api.post("/api/imports", headers=admin.headers, files={"file": ("e.csv", b"", "text/csv")})
    assert res.status_code == 422 and res.json()["detail"][0]["msg"] == "the file is empty"
    res = api.post(
        "/api/imports",
        headers=admin.headers,
        files={"file": ("x.csv", b"email\na@acme-corp.com\n", "text/csv")},
        data={"mapping": "pipedrive"},
    )
    assert res.status_code == 422


def test_rights(api: TestClient, db: Database) -> None:
    one = {"file": ("a.csv", b"email\na@acme-corp.com\n")}
    rep = make_user(db, "Rita", Role.SALES_REP)
    res = api.post("/api/imports", headers=rep.headers, files=one)
    assert res.status_code == 403
    assert api.post("/api/imports", files={"file": ("a.csv", b"email\n")}).status_code == 401
    marketer = make_user(db, "Mara", Role.MARKETING)
    res = api.post("/api/imports", headers=marketer.headers, files=one)
    assert res.status_code == 201
    assert api.get(f"/api/imports/{res.json()['id']}", headers=rep.headers).status_code == 403
    assert api.get("/api/imports/999999", headers=marketer.headers).status_code == 404


# --------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(settings_dir: Path, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setattr(root_cli.console, "width", 250)
    monkeypatch.setattr(root_cli.err, "width", 250)
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Leadflow (test root)."""

    register(app)
    return app


def test_cli_import(cli: typer.Typer, db: Database, tmp_path: Path) -> None:
    runner = CliRunner()
    copy = tmp_path / "errors.csv"
    res = runner.invoke(
        cli, ["import", str(DATA / "hubspot_contacts.csv"), "--mapping", "hubspot", "--errors", str(copy)]
    )
    assert res.exit_code == 0, res.output
    assert "Import #" in res.output and "created" in res.output and "9" in res.output
    assert lead_count(db) == 9 and copy.read_text().startswith("line,column,value,reason,severity")

    res = runner.invoke(cli, ["import", str(DATA / "salesforce_leads.csv"), "-m", "salesforce", "--dry-run"])
    assert res.exit_code == 1, res.output  # rows failed
    assert "Dry run" in res.output and lead_count(db) == 9

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    res = runner.invoke(cli, ["import", str(bad)])
    assert res.exit_code == 2
    assert "Excel workbook" in res.output and "Traceback" not in res.output

    res = runner.invoke(cli, ["import", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2 and "is not a file" in res.output


def test_an_imported_leads_audit_answers_who_when_why(api: TestClient, admin: Actor, db: Database) -> None:
    """The import writes one audit entry per transaction for the leads it creates; each lead's
    audit (GET /api/leads/{id}/audit) still starts with its own creation, then later changes."""

    res = upload(api, admin, "leads.csv", (DATA / "salesforce_leads.csv").read_bytes(), mapping="salesforce")
    assert res.status_code == 201, res.text  # type: ignore[attr-defined]
    import_id = res.json()["id"]  # type: ignore[attr-defined]
    with db.transaction() as s:
        lead = s.scalars(select(Lead).where(Lead.email == "ada@analytical.co.uk")).one()
        lead_id, version = lead.id, lead.version
    changed = api.patch(
        f"/api/leads/{lead_id}",
        headers=admin.headers,
        json={"job_title": "Chief Mathematician", "version": version},
    )
    assert changed.status_code == 200, changed.text
    trail = api.get(f"/api/leads/{lead_id}/audit", headers=admin.headers)
    assert trail.status_code == 200, trail.text
    created, updated = trail.json()
    assert (created["entity_type"], created["entity_id"], created["action"]) == ("lead", lead_id, "create")
    assert (created["actor_id"], created["reason"]) == (admin.user_id, f"import #{import_id}")
    assert created["after"] == {"line": 2, "import_id": import_id} and created["at"]
    assert created["evidence"] == {
        "kind": "imported",
        "system": "salesforce",
        "original_value": "Open - Not Contacted",
    }
    assert updated["action"] == "update" and updated["after"]["job_title"] == "Chief Mathematician"
    # The personal-data export holds the same trail.
    export = api.get(f"/api/leads/{lead_id}/export", headers=admin.headers)
    assert export.status_code == 200, export.text
    audit = export.json()["audit"]
    assert [(a["action"], a["id"], a["reason"]) for a in audit[:2]] == [
        ("create", created["id"], f"import #{import_id}"),
        ("update", updated["id"], updated["reason"]),
    ]
