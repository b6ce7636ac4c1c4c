"""Operations: structured request logs, Idempotency-Key, backup/restore, personal-data export."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from leadflow.auth.models import Role
from leadflow.cli import app as cli_app
from leadflow.config import get_settings
from leadflow.db.base import Database
from leadflow.leads.models import Lead
from leadflow.ops import backup as backups
from leadflow.ops.logging import configure_logging, reset_logging
from leadflow.ops.models import IdempotencyKey

runner = CliRunner()


def _lead(client: TestClient, actor: Actor, email: str, **extra: Any) -> dict[str, Any]:
    r = client.post("/api/leads", json={"email": email, "first_name": "Ada", **extra}, headers=actor.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _count(db: Database, model: Any) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# ------------------------------------------------------------------------------------ logging


def test_every_request_is_logged_as_one_json_line(
    client: TestClient, admin: Actor, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "info", force=True)
    try:
        r = client.get("/api/leads", headers={**admin.headers, "X-Request-ID": "req-42"})
        assert r.status_code == 200
        assert r.headers["x-request-id"] == "req-42"
        missing = client.get("/api/leads/999", headers=admin.headers)
        assert missing.status_code == 404
        assert len(missing.headers["x-request-id"]) == 32  # a fresh id when none was sent
    finally:
        reset_logging()
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    requests = [x for x in lines if x.get("event") == "request"]
    assert len(requests) == 2, lines
    first, second = requests
    assert first["request_id"] == "req-42"
    assert (first["method"], first["path"], first["status"]) == ("GET", "/api/leads", 200)
    assert first["actor"] == "admin@leadflow-test.io"
    assert isinstance(first["duration_ms"], float)
    assert first["level"] == "info" and first["logger"] == "leadflow.access" and "timestamp" in first
    assert (second["status"], second["request_id"]) == (404, missing.headers["x-request-id"])


def test_log_format_is_checked() -> None:
    with pytest.raises(ValueError, match="json or console"):
        configure_logging("xml")


# ------------------------------------------------------------------------------------ idempotency


def test_a_retried_create_replays_the_first_answer(client: TestClient, admin: Actor, db: Database) -> None:
    headers = {**admin.headers, "Idempotency-Key": "create-ada-1"}
    body = {"email": "ada@example.com", "first_name": "Ada"}
    first = client.post("/api/leads", json=body, headers=headers)
    assert first.status_code == 201
    again = client.post("/api/leads", json=body, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert _count(db, Lead) == 1
    # Without the key the same body is a duplicate (409), proving the replay did not run it again.
    assert client.post("/api/leads", json=body, headers=admin.headers).status_code == 409


def test_the_same_key_with_another_body_is_refused(client: TestClient, admin: Actor, db: Database) -> None:
    headers = {**admin.headers, "Idempotency-Key": "k-1"}
    assert client.post("/api/leads", json={"email": "a@example.com"}, headers=headers).status_code == 201
    r = client.post("/api/leads", json={"email": "b@example.com"}, headers=headers)
    assert r.status_code == 422
    assert r.json()["code"] == "idempotency_key_reused"
    assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert _count(db, Lead) == 1


def test_keys_belong_to_their_caller(client: TestClient, admin: Actor, db: Database) -> None:
    other = make_user(db, "Marketer", Role.MARKETING)
    body = {"email": "a@example.com"}
    assert (
        client.post("/api/leads", json=body, headers={**admin.headers, "Idempotency-Key": "k"}).status_code
        == 201
    )
    # Another caller's identical key is another request: it runs (and finds the duplicate).
    r = client.post("/api/leads", json=body, headers={**other.headers, "Idempotency-Key": "k"})
    assert r.status_code == 409 and r.json()["code"] == "duplicate"


def test_a_failed_request_frees_its_key(client: TestClient, admin: Actor, db: Database) -> None:
    headers = {**admin.headers, "Idempotency-Key": "fix-and-retry"}
    bad = client.post("/api/leads", json={"email": "not-an-email"}, headers=headers)
    assert bad.status_code == 422
    assert _count(db, IdempotencyKey) == 0
    ok = client.post("/api/leads", json={"email": "ok@example.com"}, headers=headers)
    assert ok.status_code == 201


@pytest.mark.parametrize("key", [b"", b" " * 3, b"x" * 256, b"tab\there", "ünïcode".encode("latin-1")])
def test_malformed_keys_answer_422(client: TestClient, admin: Actor, db: Database, key: bytes) -> None:
    r = client.post(
        "/api/leads",
        json={"email": "a@example.com"},
        headers={**{k: v.encode() for k, v in admin.headers.items()}, "Idempotency-Key": key},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert _count(db, Lead) == 0


def test_a_key_still_in_flight_answers_409(client: TestClient, admin: Actor, db: Database) -> None:
    body = json.dumps({"email": "a@example.com"}).encode()
    headers = {**admin.headers, "Idempotency-Key": "slow", "content-type": "application/json"}
    from leadflow.ops.idempotency import IdempotencyMiddleware

    mw = IdempotencyMiddleware(client.app, db)
    import hashlib

    digest = hashlib.sha256(b"POST /api/leads?" + b"" + b"\n" + body).hexdigest()
    claimed = mw._claim(f"user:{admin.user_id}", "slow", digest, {"method": "POST", "path": "/api/leads"})
    assert isinstance(claimed, int)
    r = client.post("/api/leads", content=body, headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "idempotency_key_in_progress"
    assert _count(db, Lead) == 0


def test_concurrent_retries_create_once(client: TestClient, admin: Actor, db: Database) -> None:
    headers = {**admin.headers, "Idempotency-Key": "burst"}
    body = {"email": "burst@example.com", "first_name": "Burst"}
    codes: list[int] = []
    lock = threading.Lock()

    def post() -> None:
        r = client.post("/api/leads", json=body, headers=headers)
        with lock:
            codes.append(r.status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _count(db, Lead) == 1
    assert set(codes) <= {201, 409} and 201 in codes
    # 409s here are "still in flight" answers, never duplicates.


def test_every_post_documents_the_header(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    posts = [op for item in schema["paths"].values() for m, op in item.items() if m == "post"]
    assert posts
    for op in posts:
        assert any(p["name"] == "Idempotency-Key" for p in op.get("parameters", [])), op.get("summary")


# ------------------------------------------------------------------------------------ backup


def _seed(client: TestClient, admin: Actor, n: int = 5) -> None:
    for i in range(n):
        _lead(client, admin, f"p{i}@acme-{i}.com", company=f"Acme {i}")


def _env(db: Database) -> dict[str, str]:
    return {"LEADFLOW_DATABASE_URL": db.url}


@pytest.fixture(autouse=True)
def _cli_settings(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The CLI reads its settings once per process: point them at the test database.
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", db.url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_backup_then_restore_brings_back_exactly_the_data(
    client: TestClient, admin: Actor, db: Database, tmp_path: Path
) -> None:
    _seed(client, admin)
    before = backups.fingerprint(db)
    path = tmp_path / "lf.backup"
    r = runner.invoke(cli_app, ["backup", str(path)], env=_env(db))
    assert r.exit_code == 0, r.output
    assert "backup written" in r.output
    assert path.exists() and Path(str(path) + ".manifest.json").exists()
    assert runner.invoke(cli_app, ["verify-backup", str(path)], env=_env(db)).exit_code == 0

    # Change everything: a new lead, an edit, an erasure.
    _lead(client, admin, "late@example.com")
    with db.transaction() as s:
        s.execute(text("UPDATE leads SET first_name = 'Changed' WHERE id = 1"))
    assert client.delete("/api/leads/2", headers=admin.headers).status_code == 204
    assert backups.fingerprint(db) != before

    r = runner.invoke(cli_app, ["restore", str(path), "--yes"], env=_env(db))
    assert r.exit_code == 0, r.output
    assert "restored and verified" in r.output
    assert backups.fingerprint(db) == before
    # The application keeps working on the restored data.
    assert client.get("/api/leads/2", headers=admin.headers).json()["email"] == "p1@acme-1.com"
    assert _count(db, Lead) == 5


def test_restore_refuses_a_damaged_backup_and_keeps_the_data(
    client: TestClient, admin: Actor, db: Database, tmp_path: Path
) -> None:
    _seed(client, admin, 2)
    path = tmp_path / "lf.backup"
    assert runner.invoke(cli_app, ["backup", str(path)], env=_env(db)).exit_code == 0
    data = bytearray(path.read_bytes())
    data[:64] = b"\0" * 64  # destroy the header
    path.write_bytes(bytes(data))
    before = backups.fingerprint(db)
    assert runner.invoke(cli_app, ["verify-backup", str(path)], env=_env(db)).exit_code == 1
    r = runner.invoke(cli_app, ["restore", str(path), "--yes"], env=_env(db))
    assert r.exit_code == 1
    assert backups.fingerprint(db) == before


def test_restore_compares_with_the_manifest(
    client: TestClient, admin: Actor, db: Database, tmp_path: Path
) -> None:
    _seed(client, admin, 2)
    path = tmp_path / "lf.backup"
    backups.backup(db, path)
    manifest = Path(str(path) + ".manifest.json")
    doc = json.loads(manifest.read_text())
    doc["tables"]["leads"]["rows"] = 3  # the manifest says 3, the backup holds 2
    manifest.write_text(json.dumps(doc))
    with pytest.raises(backups.BackupError, match="leads: 3 rows expected, 2 found"):
        backups.restore(db, path)


def test_backup_of_a_missing_or_foreign_file(db: Database, tmp_path: Path) -> None:
    r = runner.invoke(cli_app, ["restore", str(tmp_path / "nope"), "--yes"], env=_env(db))
    assert r.exit_code == 2
    other = tmp_path / "x.backup"
    other.write_bytes(b"x")
    Path(str(other) + ".manifest.json").write_text(
        json.dumps({"dialect": "oracle" if db.dialect == "sqlite" else "sqlite", "tables": {}})
    )
    with pytest.raises(backups.BackupError, match="backup is of a"):
        backups.restore(db, other)


# ------------------------------------------------------------------------------------ privacy


def test_person_export_holds_everything_and_is_audited(
    client: TestClient, admin: Actor, db: Database
) -> None:
    lead = _lead(client, admin, "grace@navy.mil", company="US Navy", phone="+1 202 555 0100")
    dup = _lead(client, admin, "grace.hopper@example.com", last_name="Hopper")
    lid = lead["id"]
    assert (
        client.post(f"/api/leads/{lid}/activities", json={"type": "call"}, headers=admin.headers).status_code
        == 201
    )
    r = client.post(
        "/api/events",
        json={
            "events": [
                {"lead_id": lid, "type": "page_view", "external_id": "pv-1", "properties": {"url": "/p"}}
            ]
        },
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/api/leads/{lid}/merge",
        json={"loser_id": dup["id"], "reason": "same person"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text

    r = client.get(f"/api/leads/{lid}/export", headers=admin.headers)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["format"] == "leadflow-person-export/1"
    assert doc["lead"]["email"] == "grace@navy.mil"
    assert [m["id"] for m in doc["merged_leads"]] == [dup["id"]]
    assert doc["merged_leads"][0]["last_name"] == "Hopper"
    assert doc["account"]["name"]
    types = sorted(a["type"] for a in doc["related"]["activities"])
    assert types == ["call", "page_view"]
    assert doc["related"]["stage_changes"]
    assert {"activities", "stage_changes", "lead_scores"} <= set(doc["related"])
    actions = [a["action"] for a in doc["audit"]]
    assert "create" in actions and "merge" in " ".join(actions)
    # The export itself is on the record.
    audit = client.get(f"/api/leads/{lid}/audit", headers=admin.headers).json()
    assert audit[-1]["action"] == "export_personal_data"

    cli = runner.invoke(cli_app, ["privacy", "export", str(lid)], env=_env(db))
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["lead"]["email"] == "grace@navy.mil"


def test_erase_leaves_only_a_tombstone(client: TestClient, admin: Actor, db: Database) -> None:
    lead = _lead(client, admin, "erase-me@example.com", last_name="Secret")
    lid = lead["id"]
    r = runner.invoke(
        cli_app, ["privacy", "erase", str(lid), "--reason", "GDPR art. 17", "--yes"], env=_env(db)
    )
    assert r.exit_code == 0, r.output
    assert client.get(f"/api/leads/{lid}/export", headers=admin.headers).status_code == 404
    with db.transaction() as s:
        rows = s.execute(
            text("SELECT action, before, after, reason FROM audit_log WHERE entity_type='lead'")
        ).all()
    dump = json.dumps([list(map(str, r)) for r in rows])
    assert "erase-me" not in dump and "Secret" not in dump
    assert any(r.action == "erase" for r in rows)


def test_a_rep_cannot_export_another_reps_person(client: TestClient, admin: Actor, db: Database) -> None:
    rep_a = make_user(db, "RepA", Role.SALES_REP, team="east")
    rep_b = make_user(db, "RepB", Role.SALES_REP, team="west")
    lead = _lead(client, admin, "owned@example.com", owner_id=rep_a.user_id)
    assert client.get(f"/api/leads/{lead['id']}/export", headers=rep_a.headers).status_code == 200
    assert client.get(f"/api/leads/{lead['id']}/export", headers=rep_b.headers).status_code == 404


def test_the_export_finds_tables_of_later_features() -> None:
    from leadflow.ops.privacy import lead_tables

    names = {t.name for t, _ in lead_tables()}
    assert {"activities", "stage_changes", "lead_scores", "score_history", "threshold_firings"} <= names
    assert "leads" not in names


def test_backup_env_does_not_leak_the_password(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    args, env = backups._pg_args(db)
    url_password = db.engine.url.password
    # Host, port, user and database as separate flags; never a URL carrying the password.
    assert all("://" not in a and "password" not in a for a in args)
    assert url_password is None or env["PGPASSWORD"] == url_password
