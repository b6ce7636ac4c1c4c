"""Merging duplicate leads: the winner keeps its values and gains the loser's, both histories are
read from the winner, and the loser stays as a tombstone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.db.base import Database
from leadflow.errors import Forbidden, InvalidInput, NotFound
from leadflow.leads import service as svc
from leadflow.leads.models import Activity, Lead, StageChange

NA = {"kind": "needs_assessment", "answers": {"need": "reporting"}, "qualified": True}
MR = {"kind": "marketing_review", "note": "booth"}
DC = {"kind": "discovery_call", "outcome": "qualified"}


def create(client: TestClient, actor: Actor, **fields: Any) -> dict[str, Any]:
    r = client.post("/api/leads", json=fields, headers=actor.headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def move(client: TestClient, actor: Actor, lead_id: int, to: str, **body: Any) -> dict[str, Any]:
    r = client.post(f"/api/leads/{lead_id}/transitions", json={"to": to, **body}, headers=actor.headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def merge(client: TestClient, actor: Actor, winner: int, loser: int, **body: Any) -> Any:
    return client.post(f"/api/leads/{winner}/merge", json={"loser_id": loser, **body}, headers=actor.headers)


def get(client: TestClient, actor: Actor, lead_id: int) -> dict[str, Any]:
    r = client.get(f"/api/leads/{lead_id}", headers=actor.headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_merge_combines_values_and_histories(client: TestClient, admin: Actor, db: Database) -> None:
    winner = create(
        client,
        admin,
        email="ada@acme.io",
        first_name="Ada",
        job_title="CTO",
        attributes={"a": 1, "shared": "w"},
    )
    loser = create(
        client,
        admin,
        email="ada.lovelace@acme.io",
        first_name="Augusta",
        last_name="Lovelace",
        job_title="Engineer",
        phone="+49 30 1234567",
        attributes={"b": 2, "shared": "l"},
    )
    move(client, admin, loser["id"], "mql", evidence=MR)
    events = [
        {"lead_id": loser["id"], "type": "webinar", "occurred_at": "2026-02-01T10:00:00+00:00"},
        {"lead_id": loser["id"], "type": "page_view", "occurred_at": "2026-02-02T10:00:00+00:00"},
        {"lead_id": winner["id"], "type": "page_view", "occurred_at": "2026-01-01T10:00:00+00:00"},
    ]
    client.post("/api/events", json={"events": events}, headers=admin.headers).raise_for_status()

    r = merge(client, admin, winner["id"], loser["id"], reason="same person")
    assert r.status_code == 200, r.text
    won = r.json()
    # The winner keeps its own values and gains only what it lacked.
    assert (won["email"], won["first_name"], won["job_title"]) == ("ada@acme.io", "Ada", "CTO")
    assert (won["last_name"], won["phone"]) == ("Lovelace", "+49301234567")
    assert won["attributes"] == {"a": 1, "b": 2, "shared": "w"}
    # Further down the funnel wins.
    assert won["stage"] == "mql"
    assert datetime.fromisoformat(won["last_activity_at"]) == datetime(2026, 2, 2, 10, tzinfo=UTC)
    assert won["version"] == winner["version"] + 1

    tomb = get(client, admin, loser["id"])
    assert tomb["merged_into_id"] == winner["id"]
    assert tomb["email"] is None
    assert tomb["version"] == 3  # created, moved to mql, merged

    # Activities moved over.
    acts = client.get(f"/api/leads/{winner['id']}/activities", headers=admin.headers).json()["items"]
    assert sorted(a["type"] for a in acts) == ["page_view", "page_view", "webinar"]
    with db.transaction() as s:
        assert s.scalar(select(func.count()).where(Activity.lead_id == loser["id"])) == 0

    # Both stage histories, read from the winner.
    hist = client.get(f"/api/leads/{winner['id']}/transitions", headers=admin.headers).json()["history"]
    assert sorted((h["lead_id"], h["from_stage"] or "", h["to_stage"]) for h in hist) == sorted(
        [
            (winner["id"], "", "new"),
            (loser["id"], "", "new"),
            (loser["id"], "new", "mql"),
            (winner["id"], "new", "mql"),
        ]
    )
    merge_step = next(h for h in hist if h["lead_id"] == winner["id"] and h["to_stage"] == "mql")
    assert merge_step["evidence"] == {"kind": "merge", "lead_id": loser["id"]}

    # Both audit trails, read from the winner.
    trail = client.get(f"/api/leads/{winner['id']}/audit", headers=admin.headers).json()
    actions = [(a["entity_id"], a["action"]) for a in trail]
    assert (loser["id"], "create") in actions
    assert (loser["id"], "stage_change") in actions
    assert (winner["id"], "merge") in actions
    assert (loser["id"], "merged_into") in actions
    merged_entry = next(a for a in trail if a["action"] == "merge")
    assert merged_entry["reason"] == "same person"
    assert merged_entry["evidence"] == {
        "kind": "merge",
        "winner_id": winner["id"],
        "loser_id": loser["id"],
        "activities_moved": 2,
    }
    assert merged_entry["after"]["last_name"] == "Lovelace"
    assert "first_name" not in merged_entry["after"]
    tomb_entry = next(a for a in trail if a["action"] == "merged_into")
    assert tomb_entry["before"] == {"email": "ada.lovelace@acme.io"}


def test_the_loser_leaves_lists_counts_and_email_lookups(client: TestClient, admin: Actor) -> None:
    winner = create(client, admin, email="ada@acme.io")
    loser = create(client, admin, email="ada2@acme.io")
    merge(client, admin, winner["id"], loser["id"]).raise_for_status()
    r = client.get("/api/leads", params={"include_total": "true"}, headers=admin.headers).json()
    assert [x["id"] for x in r["items"]] == [winner["id"]] and r["total"] == 1
    acc = client.get(f"/api/accounts/{winner['account_id']}", headers=admin.headers).json()
    assert acc["lead_count"] == 1
    # The loser's address is freed: events for it no longer land on the tombstone.
    out = client.post(
        "/api/events",
        json={"events": [{"email": "ada2@acme.io", "type": "page_view"}]},
        headers=admin.headers,
    ).json()
    assert out["accepted"] == 0 and out["errors"][0]["loc"] == ["email"]


def test_winner_without_email_takes_the_losers(client: TestClient, admin: Actor) -> None:
    winner = create(client, admin, phone="+49 30 1234567", first_name="Ada")
    loser = create(client, admin, email="ada@acme.io")
    won = merge(client, admin, winner["id"], loser["id"]).json()
    assert won["email"] == "ada@acme.io"
    assert get(client, admin, loser["id"])["email"] is None


def test_the_further_funnel_stage_is_kept_either_way(client: TestClient, admin: Actor) -> None:
    ahead = create(client, admin, email="ahead@acme.io", origin="sales")
    move(client, admin, ahead["id"], "sal", evidence=NA)
    move(client, admin, ahead["id"], "sql", evidence=DC)
    behind = create(client, admin, email="behind@acme.io")
    won = merge(client, admin, ahead["id"], behind["id"]).json()
    assert won["stage"] == "sql"
    hist = client.get(f"/api/leads/{ahead['id']}/transitions", headers=admin.headers).json()["history"]
    assert not any(h["evidence"] and h["evidence"].get("kind") == "merge" for h in hist)

    side = create(client, admin, email="side@acme.io")
    move(client, admin, side["id"], "bad", bad_reason="duplicate")
    fresh = create(client, admin, email="fresh@acme.io")
    # A side state (bad) is not further down the funnel than new.
    assert merge(client, admin, fresh["id"], side["id"]).json()["stage"] == "new"


def test_merge_refusals(client: TestClient, admin: Actor) -> None:
    a = create(client, admin, email="a@acme.io")
    b = create(client, admin, email="b@acme.io")
    c = create(client, admin, email="c@acme.io")
    r = merge(client, admin, a["id"], a["id"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["loser_id"]
    assert merge(client, admin, a["id"], b["id"]).status_code == 200
    again = merge(client, admin, a["id"], b["id"])
    assert again.status_code == 422 and "already merged" in again.json()["detail"][0]["msg"]
    # A tombstone cannot win either, nor be moved along the funnel.
    assert merge(client, admin, b["id"], c["id"]).status_code == 422
    r = client.post(
        f"/api/leads/{b['id']}/transitions", json={"to": "mql", "evidence": MR}, headers=admin.headers
    )
    assert r.status_code == 422
    assert merge(client, admin, a["id"], 9999).status_code == 404
    assert merge(client, admin, 9999, c["id"]).status_code == 404
    assert get(client, admin, c["id"])["merged_into_id"] is None
    assert get(client, admin, a["id"])["version"] == 2  # only the one successful merge


def test_a_tombstone_is_not_worked_on(client: TestClient, admin: Actor) -> None:
    """Changes to a merged-away lead would be invisible from the winner, and an address set on
    it would block every later capture of that address as a duplicate of a hidden lead."""

    winner = create(client, admin, email="ada@acme.io")
    loser = create(client, admin, email="ada2@acme.io")
    merge(client, admin, winner["id"], loser["id"]).raise_for_status()
    tomb = get(client, admin, loser["id"])
    r = client.patch(
        f"/api/leads/{loser['id']}",
        json={"version": tomb["version"], "email": "fresh@acme.io"},
        headers=admin.headers,
    )
    assert r.status_code == 422, r.text
    assert f"merged into lead {winner['id']}" in r.json()["detail"][0]["msg"]
    assert get(client, admin, loser["id"]) == tomb
    assert create(client, admin, email="fresh@acme.io")["id"] not in (winner["id"], loser["id"])
    r = client.post(f"/api/leads/{loser['id']}/activities", json={"type": "call"}, headers=admin.headers)
    assert r.status_code == 422
    out = client.post(
        "/api/events",
        json={
            "events": [
                {"lead_id": loser["id"], "type": "page_view"},
                {"lead_id": winner["id"], "type": "call"},
            ]
        },
        headers=admin.headers,
    ).json()
    assert out["accepted"] == 1
    assert out["errors"] == [
        {"index": 0, "loc": ["lead_id"], "msg": f"lead {loser['id']} was merged into lead {winner['id']}"}
    ]
    acts = client.get(f"/api/leads/{winner['id']}/activities", headers=admin.headers).json()["items"]
    assert [a["type"] for a in acts] == ["call"]


def test_merged_histories_chain(client: TestClient, admin: Actor) -> None:
    a = create(client, admin, email="a@acme.io")
    b = create(client, admin, email="b@acme.io")
    c = create(client, admin, email="c@acme.io")
    client.post(
        "/api/events", json={"events": [{"lead_id": c["id"], "type": "webinar"}]}, headers=admin.headers
    )
    merge(client, admin, b["id"], c["id"]).raise_for_status()
    merge(client, admin, a["id"], b["id"]).raise_for_status()
    trail = client.get(f"/api/leads/{a['id']}/audit", headers=admin.headers).json()
    assert {a_["entity_id"] for a_ in trail} == {a["id"], b["id"], c["id"]}
    hist = client.get(f"/api/leads/{a['id']}/transitions", headers=admin.headers).json()["history"]
    assert {h["lead_id"] for h in hist} == {a["id"], b["id"], c["id"]}
    acts = client.get(f"/api/leads/{a['id']}/activities", headers=admin.headers).json()["items"]
    assert [x["type"] for x in acts] == ["webinar"]


def test_who_may_merge(client: TestClient, admin: Actor, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    mgr = make_user(db, "Max", Role.MANAGER, "east")
    west = make_user(db, "Olaf", Role.SALES_REP, "west")
    mine = create(client, rep, email="mine@acme.io")
    also = create(client, rep, email="also@acme.io")
    theirs = create(client, west, email="theirs@acme.io")
    r = merge(client, rep, mine["id"], also["id"])
    assert r.status_code == 403 and r.json()["permission"] == "leads:merge"
    assert merge(client, mgr, mine["id"], theirs["id"]).status_code == 404
    assert get(client, admin, theirs["id"])["merged_into_id"] is None
    assert merge(client, mgr, mine["id"], also["id"]).status_code == 200


def test_merge_through_the_service_layer(db: Database, admin: Actor) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    with db.transaction() as s:
        a = svc.create_lead(s, admin.principal, {"email": "a@acme.io"}).lead.id
        b = svc.create_lead(s, admin.principal, {"email": "b@acme.io"}).lead.id
    with db.transaction() as s, pytest.raises(Forbidden):
        svc.merge_leads(s, rep.principal, a, b)
    with db.transaction() as s, pytest.raises(InvalidInput):
        svc.merge_leads(s, admin.principal, a, a)
    with db.transaction() as s, pytest.raises(NotFound):
        svc.merge_leads(s, admin.principal, a, 12345)
    with db.transaction() as s:
        svc.merge_leads(s, admin.principal, a, b, reason="dupe")
    with db.transaction() as s:
        assert s.get(Lead, b).merged_into_id == a  # type: ignore[union-attr]
        assert [x.id for x in svc.list_leads(s, admin.principal, svc.LeadFilter()).items] == [a]
        merged = svc.list_leads(s, admin.principal, svc.LeadFilter(include_merged=True)).items
        assert [x.id for x in merged] == [a, b]
        assert {h.lead_id for h in svc.stage_history(s, admin.principal, a)} == {a, b}


def test_erasing_a_winner_erases_the_leads_merged_into_it(
    client: TestClient, admin: Actor, db: Database
) -> None:
    """The merged leads are the same person: an erasure must not bring a duplicate back to life
    nor leave its personal data (name, phone, old address) in the lead or its audit trail."""

    winner = create(client, admin, email="ada@acme.io")
    loser = create(client, admin, email="ada.l@acme.io", first_name="Augusta", phone="+49 30 1234567")
    older = create(client, admin, email="ada.old@acme.io", last_name="Byron")
    merge(client, admin, loser["id"], older["id"]).raise_for_status()
    merge(client, admin, winner["id"], loser["id"]).raise_for_status()
    other = create(client, admin, email="bob@acme.io")
    assert client.delete(f"/api/leads/{winner['id']}", headers=admin.headers).status_code == 204

    for gone in (winner, loser, older):
        assert client.get(f"/api/leads/{gone['id']}", headers=admin.headers).status_code == 404
    listed = client.get("/api/leads", headers=admin.headers).json()["items"]
    assert [x["id"] for x in listed] == [other["id"]]
    ids = [winner["id"], loser["id"], older["id"]]
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Lead).where(Lead.id.in_(ids))) == 0
        assert s.scalar(select(func.count()).where(StageChange.lead_id.in_(ids))) == 0
        entries = list(
            s.scalars(
                select(AuditEntry).where(AuditEntry.entity_type == "lead", AuditEntry.entity_id.in_(ids))
            )
        )
    leftovers = repr([(e.before, e.after, e.evidence, e.reason) for e in entries if e.action != "erase"])
    for personal in ("ada", "Augusta", "Byron", "+49"):
        assert personal not in leftovers
    assert {e.entity_id for e in entries if e.action == "erase"} == set(ids)
