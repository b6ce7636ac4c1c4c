"""Tasks and the rep inbox through the API and the service: visibility like leads (a rep sees
own, a manager the team's), due today / overdue in the viewer's time zone, call outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Actor, make_user
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from leadflow.api import create_app
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.clock import SettableClock, set_clock
from leadflow.db.base import Database
from leadflow.leads import service as leads
from leadflow.leads.models import Activity, Lead

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # Monday 15:00 UTC = 16:00 Berlin


@pytest.fixture(scope="module")
def app(database: Database) -> FastAPI:
    return create_app(database)


@pytest.fixture
def client(db: Database, app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture(autouse=True)
def clock() -> Iterator[SettableClock]:
    c = SettableClock(NOW)
    set_clock(c)
    yield c
    set_clock(None)


def lead_for(db: Database, owner: int | None, email: str) -> int:
    with db.transaction() as s:
        return leads.create_lead(s, SYSTEM, {"email": email, "first_name": "Lin", "owner_id": owner}).lead.id


def add(client: TestClient, who: Actor, **body: object) -> dict[str, object]:
    r = client.post("/api/tasks", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    out: dict[str, object] = r.json()
    return out


def ids(client: TestClient, who: Actor, **params: str) -> list[int]:
    r = client.get("/api/tasks", params=params, headers=who.headers)
    assert r.status_code == 200, r.text
    return [int(t["id"]) for t in r.json()["items"]]


def test_inbox_visibility_and_due_filters(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, team="east")
    peer = make_user(db, "Pete", Role.SALES_REP, team="east")
    other = make_user(db, "Olga", Role.SALES_REP, team="west")
    boss = make_user(db, "Mona", Role.MANAGER, team="east")
    mine = lead_for(db, rep.user_id, "a@example.org")
    peers = lead_for(db, peer.user_id, "b@example.org")
    west = lead_for(db, other.user_id, "c@example.org")
    overdue = add(
        client, rep, lead_id=mine, kind="call", title="Call", due_at=(NOW - timedelta(hours=3)).isoformat()
    )
    today = add(
        client, rep, lead_id=mine, kind="email", title="Send deck", due_at="2026-11-23T23:30:00+00:00"
    )
    # 23:30 UTC is already tomorrow in Berlin: not "today" there.
    later = add(
        client, rep, lead_id=mine, kind="todo", title="Prep", due_at=(NOW + timedelta(days=3)).isoformat()
    )
    p_task = add(client, peer, lead_id=peers, kind="call", title="Peer call", due_at=NOW.isoformat())
    w_task = add(client, other, lead_id=west, kind="call", title="West call", due_at=NOW.isoformat())

    assert ids(client, rep, due="overdue") == [overdue["id"]]
    assert ids(client, rep, due="today", tz="UTC") == [today["id"]]
    assert ids(client, rep, due="today", tz="Europe/Berlin") == []
    assert ids(client, rep, due="upcoming", tz="UTC") == [later["id"]]
    assert ids(client, rep) == [overdue["id"], today["id"], later["id"]]
    assert sorted(ids(client, boss, scope="team")) == sorted(
        [overdue["id"], today["id"], later["id"], p_task["id"]]  # type: ignore[list-item]
    )
    assert w_task["id"] not in ids(client, boss)
    assert client.get(f"/api/tasks/{w_task['id']}", headers=rep.headers).status_code == 404
    assert (
        client.post(
            f"/api/tasks/{p_task['id']}/complete", json={"outcome": "connected"}, headers=rep.headers
        ).status_code
        == 404
    )
    # A rep cannot hand a task to someone else; bad input names the field.
    r = client.post(
        "/api/tasks", json={"lead_id": mine, "title": "x", "owner_id": peer.user_id}, headers=rep.headers
    )
    assert r.status_code == 403
    r = client.post(
        "/api/tasks",
        json={"lead_id": mine, "title": "x", "due_at": "2026-11-24T09:00:00"},
        headers=rep.headers,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "due_at"
    assert client.get("/api/tasks", params={"tz": "Mars/Olympus"}, headers=rep.headers).status_code == 422


def test_call_outcomes_are_activities_and_wrong_number_flags_for_review(
    client: TestClient, db: Database
) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP)
    lead_id = lead_for(db, rep.user_id, "a@example.org")
    call = add(client, rep, lead_id=lead_id, kind="call", title="Call", due_at=NOW.isoformat())
    r = client.post(f"/api/tasks/{call['id']}/complete", json={}, headers=rep.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["outcome"]
    r = client.post(
        f"/api/tasks/{call['id']}/complete", json={"outcome": "wrong_number"}, headers=rep.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "done" and r.json()["outcome"] == "wrong_number"
    again = client.post(
        f"/api/tasks/{call['id']}/complete", json={"outcome": "connected"}, headers=rep.headers
    )
    assert again.status_code == 422
    with db.transaction() as s:
        lead = s.get(Lead, lead_id)
        assert lead is not None and "wrong number reported on a call" in (lead.bad_candidate_reasons or [])
        assert lead.stage == "new"  # a candidate for review, not moved to bad
        acts = s.scalars(select(Activity).where(Activity.lead_id == lead_id)).all()
        assert [(a.type, (a.properties or {}).get("outcome")) for a in acts] == [("call", "wrong_number")]
    review = client.get(
        "/api/tasks", params={"lead_id": str(lead_id), "kind": "todo"}, headers=rep.headers
    ).json()
    assert review["items"][0]["title"].startswith("Review: wrong number")
    r = client.post(
        "/api/calls",
        json={"lead_id": lead_id, "outcome": "voicemail", "notes": "left a message"},
        headers=rep.headers,
    )
    assert r.status_code == 201
    r = client.post("/api/calls", json={"lead_id": lead_id, "outcome": "maybe"}, headers=rep.headers)
    assert r.status_code == 422


def test_edit_cancel_and_audit(client: TestClient, db: Database, admin: Actor) -> None:
    lead_id = lead_for(db, None, "a@example.org")
    task = add(client, admin, lead_id=lead_id, kind="todo", title="Research account")
    r = client.patch(
        f"/api/tasks/{task['id']}",
        json={"title": "Research the account", "version": 1},
        headers=admin.headers,
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    stale = client.patch(f"/api/tasks/{task['id']}", json={"title": "x", "version": 1}, headers=admin.headers)
    assert stale.status_code == 409
    r = client.post(f"/api/tasks/{task['id']}/cancel", json={"reason": "duplicate"}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert ids(client, admin) == []
    assert ids(client, admin, status="cancelled") == [task["id"]]
    from leadflow.audit.models import AuditEntry

    with db.transaction() as s:
        actions = s.scalars(
            select(AuditEntry.action).where(AuditEntry.entity_type == "task").order_by(AuditEntry.id)
        ).all()
    assert actions == ["create", "update", "cancel"]
