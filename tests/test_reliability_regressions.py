"""Regression tests for bugs the fuzzing and the access matrix found."""

from __future__ import annotations

from typing import Any

from conftest import Actor
from fastapi.testclient import TestClient
from sqlalchemy import select

from leadflow.db.base import Database
from leadflow.leads.models import StageChange
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
