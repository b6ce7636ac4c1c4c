"""Scoring through the HTTP API and the CLI: model documents (JSON and YAML), versions,
activation and rollback, rescoring, and a lead's explained score."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from leadflow import cli
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.config import get_settings
from leadflow.core import scoring as core
from leadflow.db.base import Database
from leadflow.db.migrate import upgrade
from leadflow.leads import service as leads

SOON = (datetime.now(UTC) + timedelta(days=1)).isoformat()
HOT = {"email": "vp@acme.io", "job_title": "VP Sales", "industry": "Software", "employee_count": 300}


def create(client: TestClient, who: Actor, **data: Any) -> int:
    res = client.post("/api/leads", json=data, headers=who.headers)
    assert res.status_code == 201, res.text
    return int(res.json()["id"])


def test_the_default_model_is_active_until_one_is_stored(client: TestClient, admin: Actor) -> None:
    res = client.get("/api/scoring/model", headers=admin.headers)
    assert res.status_code == 200
    body = res.json()
    assert body["version"] == 0 and body["active"]
    assert [t["at"] for t in body["document"]["thresholds"]] == [60, 80]
    assert client.get("/api/scoring/models", headers=admin.headers).json() == []


def test_invalid_model_is_refused_naming_rule_and_field(client: TestClient, admin: Actor) -> None:
    doc = core.default_model().to_document()
    doc["engagement"]["rules"][0]["cap"] = {"points": -3, "days": 7}
    res = client.put("/api/scoring/model", json=doc, headers=admin.headers)
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert detail[0]["rule"] == "pricing_page" and detail[0]["field"] == "points"
    assert detail[0]["loc"] == ["engagement", "rules", "pricing_page", "cap", "points"]
    res = client.put(
        "/api/scoring/model",
        content=b"name: x\nfit: {rules: [{id: a, field: industry, points: 2}]}",
        headers={**admin.headers, "Content-Type": "application/yaml"},
    )
    assert res.status_code == 422 and res.json()["detail"][0]["rule"] == "a"
    res = client.put("/api/scoring/model", content=b"{nope", headers=admin.headers)
    assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["body"]
    assert client.get("/api/scoring/model", headers=admin.headers).json()["version"] == 0  # unchanged


def test_store_activate_rescore_and_roll_back(client: TestClient, admin: Actor) -> None:
    lid = create(client, admin, **HOT)
    doc = core.default_model().to_document()
    strict = {**doc, "name": "Fit only", "weights": {"fit": 1, "engagement": 0}}
    res = client.put(
        "/api/scoring/model",
        content=yaml.safe_dump(strict).encode(),
        headers={**admin.headers, "Content-Type": "application/yaml"},
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["model"]["version"] == 1 and body["model"]["active"]
    assert body["rescore"]["leads"] == 1 and body["rescore"]["model_version"] == 1
    # Only the weights changed: the lead's fit score (computed when it was created) carries.
    assert body["rescore"]["fit_carried"] == 1 and body["rescore"]["history_points"] == 1
    score = client.get(f"/api/leads/{lid}/score", headers=admin.headers).json()
    assert score["total"] == 100 and score["model_version"] == 1

    res = client.put("/api/scoring/model?activate=false", json=doc, headers=admin.headers)
    assert res.json()["model"] == {**res.json()["model"], "version": 2, "active": False}
    assert res.json()["rescore"] is None
    versions = client.get("/api/scoring/models", headers=admin.headers).json()
    assert [(v["version"], v["active"]) for v in versions] == [(2, False), (1, True)]

    res = client.post("/api/scoring/models/2/activate", headers=admin.headers)
    assert res.status_code == 200 and res.json()["rescore"]["leads"] == 1
    assert client.get(f"/api/leads/{lid}/score", headers=admin.headers).json()["total"] == 50
    client.post("/api/scoring/models/1/activate?rescore=false", headers=admin.headers)  # rollback
    assert client.get("/api/scoring/model", headers=admin.headers).json()["name"] == "Fit only"
    assert client.get("/api/scoring/models/2", headers=admin.headers).json()["document"] == doc
    assert client.post("/api/scoring/models/7/activate", headers=admin.headers).status_code == 404

    res = client.post("/api/scoring/rescore", headers=admin.headers)
    assert res.status_code == 200 and res.json()["model_version"] == 1


def test_validate_endpoint(client: TestClient, admin: Actor) -> None:
    res = client.post("/api/scoring/model/validate", json=core.DEFAULT_DOCUMENT, headers=admin.headers)
    assert res.status_code == 200 and res.json()["valid"]
    res = client.post("/api/scoring/model/validate", json={"name": ""}, headers=admin.headers)
    assert res.status_code == 422 and res.json()["detail"][0]["field"] == "name"


def test_rights(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rep", Role.SALES_REP)
    assert (
        client.put("/api/scoring/model", json=core.DEFAULT_DOCUMENT, headers=rep.headers).status_code == 403
    )
    assert client.post("/api/scoring/rescore", headers=rep.headers).status_code == 403
    assert client.get("/api/scoring/model", headers=rep.headers).status_code == 200
    mkt = make_user(db, "Mia", Role.MARKETING)
    assert (
        client.put("/api/scoring/model", json=core.DEFAULT_DOCUMENT, headers=mkt.headers).status_code == 200
    )


def test_events_through_the_api_update_the_explained_score(client: TestClient, admin: Actor) -> None:
    lid = create(client, admin, **HOT)
    events = [
        {"lead_id": lid, "type": "page_view", "occurred_at": SOON, "properties": {"url": "/pricing"}},
        {"lead_id": lid, "type": "demo_request", "occurred_at": SOON},
    ]
    assert client.post("/api/events", json={"events": events}, headers=admin.headers).status_code == 200
    res = client.get(f"/api/leads/{lid}/score", headers=admin.headers)
    assert res.status_code == 200
    body = res.json()
    assert body["total"] == pytest.approx(50 + (10 + 1 + 30) / 2, abs=0.01)
    assert body["grade"] == "A" and body["stored"]["total"] == pytest.approx(body["total"], abs=0.01)
    by_rule = {r["rule_id"]: r for r in body["reasons"]}
    assert by_rule["demo_request"]["points"] == 30 and len(by_rule["demo_request"]["events"]) == 1
    assert by_rule["decision_maker"]["value"] == "vp"
    assert [round(h["total"]) for h in body["history"]] == [50, 70]
    assert [(f["threshold_id"], f["action"], f["outcome"]) for f in body["firings"]] == [
        ("marketing_email", "move_to_mql", "done"),
        ("marketing_email", "enroll_sequence", "emitted"),
    ]
    assert {t["id"]: t["armed"] for t in body["thresholds"]} == {"marketing_email": False, "sales_call": True}
    assert client.get(f"/api/leads/{lid}", headers=admin.headers).json()["stage"] == "mql"
    assert client.get("/api/leads/999999/score", headers=admin.headers).status_code == 404


# ------------------------------------------------------------------------------ CLI


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[CliRunner, Database]]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setattr(cli.err, "width", 250)
    get_settings.cache_clear()
    db = Database(url)
    upgrade(db.engine)
    yield CliRunner(), db
    db.dispose()
    get_settings.cache_clear()


def test_cli_show_set_activate_rescore_explain(run: tuple[CliRunner, Database], tmp_path: Path) -> None:
    runner, db = run
    with db.transaction() as s:
        lid = leads.create_lead(s, SYSTEM, HOT).lead.id

    def ok(*args: str) -> str:
        res = runner.invoke(cli.app, list(args))
        assert res.exit_code == 0, (args, res.output)
        return res.output

    shown = ok("scoring", "show")
    assert shown.startswith("# scoring model version 0")
    doc = yaml.safe_load(shown)
    assert doc == core.default_model().to_document()

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**doc, "grades": {"A": 10, "B": 20, "C": 5}}))
    res = runner.invoke(cli.app, ["scoring", "set", str(bad)])
    assert res.exit_code == 2 and "grades" in res.output and "was not stored" in res.output

    good = tmp_path / "fit.json"
    good.write_text(json.dumps({**doc, "weights": {"fit": 1, "engagement": 0}}))
    out = ok("scoring", "set", str(good))
    assert "stored scoring model version 1 (active)" in out and "1 leads" in out
    out = ok("score", "explain", str(lid))
    assert "total 100.0" in out and "Decision maker" in out and "seniority = 'vp'" in out
    explained = json.loads(ok("score", "explain", str(lid), "--json"))
    assert explained["total"] == 100 and explained["model_version"] == 1

    ok("scoring", "set", str(good), "--no-activate")
    assert "yes" in ok("scoring", "versions")
    out = ok("scoring", "activate", "2")
    assert "version 2 is active" in out and "model v2: 1 leads" in out
    assert "model v2" in ok("scoring", "rescore", "--silent")
    rebuilt = ok("scoring", "rescore", "--silent", "--rebuild")
    assert "engagement state built from the events" in rebuilt and "carried forward for 0 leads" in rebuilt
    kept = ok("scoring", "rescore", "--silent")
    assert "engagement from the kept state" in kept and "carried forward for 1 leads" in kept
    res = runner.invoke(cli.app, ["score", "explain", "424242"])
    assert res.exit_code == 2 and "not found" in res.output
