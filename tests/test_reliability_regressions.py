"""Regression tests for bugs the fuzzing and the access matrix found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Actor
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from leadflow.cli import app as cli_app
from leadflow.config import get_settings
from leadflow.db.base import Database
from leadflow.leads.models import Lead, StageChange
from leadflow.scoring.models import LeadScore


def test_events_dated_far_off_are_refused_by_name_and_scoring_keeps_working(
    client: TestClient, admin: Actor, db: Database
) -> None:
    """Found by the access matrix's generated requests: an event at year 9999 overflowed the score
    decay (2^years: NaN engagement, the score could not be stored) and one at year 1 was stored
    on SQLite in a form it cannot read back (every later read of the lead's activities: 500)."""

    lead = client.post("/api/leads", json={"email": "future@example.com"}, headers=admin.headers).json()
    events = [
        {
            "lead_id": lead["id"],
            "type": "page_view",
            "external_id": "far-future",
            "occurred_at": "9999-12-31T00:00:00Z",
        },
        {
            "lead_id": lead["id"],
            "type": "page_view",
            "external_id": "far-past",
            "occurred_at": "0001-01-02T00:00:00Z",
        },
        {
            "lead_id": lead["id"],
            "type": "page_view",
            "external_id": "fine",
            "occurred_at": "2020-01-02T00:00:00Z",
        },
    ]
    r = client.post("/api/events", json={"events": events}, headers=admin.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 1
    assert [(e["index"], e["loc"]) for e in body["errors"]] == [(0, ["occurred_at"]), (1, ["occurred_at"])]
    r = client.post(
        f"/api/leads/{lead['id']}/activities",
        json={"type": "call", "occurred_at": "0001-01-02T00:00:00Z"},
        headers=admin.headers,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["occurred_at"]
    assert client.get(f"/api/leads/{lead['id']}/activities", headers=admin.headers).status_code == 200
    assert client.post("/api/scoring/rescore", headers=admin.headers).status_code < 500
    with db.transaction() as s:
        score = s.scalar(select(LeadScore).where(LeadScore.lead_id == lead["id"]))
    assert score is not None
    assert 0 <= score.engagement <= 100 and 0 <= score.total <= 100


def _post(client: TestClient, actor: Actor, path: str, body: dict[str, Any], expect: int = 201) -> Any:
    r = client.post(path, json=body, headers=actor.headers)
    assert r.status_code == expect, r.text
    return r.json()


def _to(client: TestClient, actor: Actor, lead_id: int, stage: str, evidence: dict[str, Any]) -> Any:
    return client.post(
        f"/api/leads/{lead_id}/transitions", json={"to": stage, "evidence": evidence}, headers=actor.headers
    )


def _history(db: Database, lead_id: int) -> list[Any]:
    with db.transaction() as s:
        return list(s.execute(select(StageChange.to_stage).where(StageChange.lead_id == lead_id)).all())


def test_evidence_must_name_a_stored_record_of_the_lead(
    client: TestClient, admin: Actor, db: Database
) -> None:
    """A stage change justified by another lead's assessment, call or opportunity, or by one that
    does not exist, is refused with 422 naming the evidence field, and changes nothing."""

    a = _post(client, admin, "/api/leads", {"email": "a@evidence.example"})["id"]
    b = _post(client, admin, "/api/leads", {"email": "b@evidence.example"})["id"]
    for lead_id in (a, b):
        assert (
            _to(client, admin, lead_id, "mql", {"kind": "marketing_review", "note": "booth"}).status_code
            == 200
        )
    answers = {"answers": {"need": "faster onboarding", "timeline": "this_quarter"}, "apply": False}
    a_assessment = _post(client, admin, f"/api/qualification/leads/{a}/assessments", answers)["assessment"][
        "id"
    ]
    b_assessment = _post(client, admin, f"/api/qualification/leads/{b}/assessments", answers)["assessment"][
        "id"
    ]

    before = _history(db, b)
    for bad in (str(a_assessment), "999999", "na-1", "1" * 40):
        r = _to(client, admin, b, "sal", {"kind": "needs_assessment", "assessment_id": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"][0]["loc"] == ["evidence", "assessment_id"], r.text
    assert _history(db, b) == before
    assert client.get(f"/api/leads/{b}", headers=admin.headers).json()["stage"] == "mql"
    ok = _to(client, admin, b, "sal", {"kind": "needs_assessment", "assessment_id": str(b_assessment)})
    assert ok.status_code == 200, ok.text
    assert _to(client, admin, a, "sal", {"kind": "needs_assessment"}).status_code == 200  # no id: fine

    call = {"criteria": {}, "outcome": "pending"}
    a_call = _post(client, admin, f"/api/qualification/leads/{a}/discovery-calls", call)["call"]["id"]
    r = _to(client, admin, b, "sql", {"kind": "discovery_call", "call_id": str(a_call)})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["evidence", "call_id"], r.text
    assert _to(client, admin, a, "sql", {"kind": "discovery_call", "call_id": str(a_call)}).status_code == 200
    assert _to(client, admin, b, "sql", {"kind": "discovery_call"}).status_code == 200

    a_opp = _post(client, admin, f"/api/leads/{a}/convert", {"name": "A's deal"})["id"]
    r = _to(client, admin, b, "opportunity", {"kind": "opportunity_opened", "opportunity_id": str(a_opp)})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["evidence", "opportunity_id"], r.text
    r = _to(client, admin, b, "opportunity", {"kind": "opportunity_opened", "opportunity_id": "0"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["evidence", "opportunity_id"], r.text
    assert client.get(f"/api/leads/{b}", headers=admin.headers).json()["stage"] == "sql"


def test_leads_imported_through_the_cli_are_scored_like_through_the_api(
    client: TestClient, admin: Actor, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``leadflow import`` did not register the reactions the API app wires (incremental scoring
    among them): its leads had no score until the next full rescore. The same people imported
    both ways now get the same scores."""

    rows = [
        ("Ada", "Lovelace", "VP Engineering", "Analytical Engines", "GB"),
        ("Grace", "Hopper", "CTO", "US Navy", "US"),
        ("Joan", "Clarke", "Analyst", "Bletchley", "GB"),
        ("Kay", "Unknown", "", "", ""),
    ]

    def csv_of(domain: str) -> bytes:
        lines = ["email,first_name,last_name,job_title,company,country"]
        lines += [f"{f.lower()}@{domain},{f},{last},{t},{c},{cc}" for f, last, t, c, cc in rows]
        return ("\n".join(lines) + "\n").encode()

    r = client.post(
        "/api/imports", headers=admin.headers, files={"file": ("api.csv", csv_of("api.example"), "text/csv")}
    )
    assert r.status_code == 201 and r.json()["created"] == len(rows), r.text
    path = tmp_path / "cli.csv"
    path.write_bytes(csv_of("cli.example"))
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", db.url)
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(cli_app, ["import", str(path)])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output

    with db.transaction() as s:
        scored = s.execute(
            select(Lead.email, LeadScore.total, LeadScore.fit, LeadScore.engagement).join(
                LeadScore, LeadScore.lead_id == Lead.id, isouter=True
            )
        ).all()
    by_email = {e: (total, fit, eng) for e, total, fit, eng in scored}
    assert len(by_email) == 2 * len(rows)
    for first, *_ in rows:
        api_score = by_email[f"{first.lower()}@api.example"]
        cli_score = by_email[f"{first.lower()}@cli.example"]
        assert api_score[0] is not None, first
        assert cli_score == api_score, (first, cli_score, api_score)
    assert len({v[0] for v in by_email.values()}) > 1  # the rows score differently: a real check


def test_completing_a_call_task_without_a_lead_checks_the_outcome(
    client: TestClient, admin: Actor, db: Database
) -> None:
    """Found by `make fuzz` (as a rep): a call task with no lead completed with an unknown
    outcome raised ValueError (500); the outcome is now checked before anything changes."""

    task = _post(client, admin, "/api/tasks", {"kind": "call", "title": "Call back the front desk"})
    r = client.post(
        f"/api/tasks/{task['id']}/complete", json={"outcome": "predictive scoring"}, headers=admin.headers
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["outcome"], r.text
    assert client.get(f"/api/tasks/{task['id']}", headers=admin.headers).json()["status"] == "open"
    r = client.post(f"/api/tasks/{task['id']}/complete", json={"outcome": "voicemail"}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["outcome"] == "voicemail", r.text
