"""Regression tests for bugs the fuzzing and the access matrix found."""

from __future__ import annotations

from conftest import Actor
from fastapi.testclient import TestClient
from sqlalchemy import select

from leadflow.db.base import Database
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
