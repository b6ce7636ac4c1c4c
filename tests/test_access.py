"""Who may see and do what, checked in the service layer (where it is enforced) and through the
HTTP API: record visibility by role and team, assignment rules, marketing's part of the funnel
and token scopes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient

from leadflow.auth import service as auth
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.core.lifecycle import (
    DealWon,
    DiscoveryCall,
    MarketingReview,
    NeedsAssessment,
    OpportunityOpened,
    Stage,
)
from leadflow.db.base import Database
from leadflow.errors import Forbidden, NotFound
from leadflow.leads import activities as activity_svc
from leadflow.leads import service as svc

NA = {"kind": "needs_assessment", "qualified": True}
MR = {"kind": "marketing_review", "note": "booth"}
DC = {"kind": "discovery_call", "outcome": "qualified"}
OPP = {"kind": "opportunity_opened"}
WON = {"kind": "deal_won"}


@dataclass
class World:
    admin: Actor
    mkt: Actor
    east1: Actor
    east2: Actor
    east_mgr: Actor
    west: Actor
    loner_mgr: Actor  # a manager without a team
    leads: dict[str, int]  # e1, e2, w, free, mgr (owned by the east manager)


@pytest.fixture
def world(db: Database, admin: Actor, client: TestClient) -> World:
    w = World(
        admin=admin,
        mkt=make_user(db, "Mia", Role.MARKETING),
        east1=make_user(db, "Erin", Role.SALES_REP, "east"),
        east2=make_user(db, "Eddie", Role.SALES_REP, "east"),
        east_mgr=make_user(db, "Emma", Role.MANAGER, "east"),
        west=make_user(db, "Walt", Role.SALES_REP, "west"),
        loner_mgr=make_user(db, "Lou", Role.MANAGER),
        leads={},
    )
    owners = {"e1": w.east1, "e2": w.east2, "w": w.west, "mgr": w.east_mgr, "free": None}
    for key, owner in owners.items():
        body: dict[str, Any] = {"email": f"{key}@acme-{key}.io", "origin": "sales"}
        if owner is not None:
            body["owner_id"] = owner.user_id
        r = client.post("/api/leads", json=body, headers=admin.headers)
        assert r.status_code == 201, r.text
        w.leads[key] = r.json()["id"]
    events = [{"lead_id": i, "type": "page_view"} for i in w.leads.values()]
    client.post("/api/events", json={"events": events}, headers=admin.headers).raise_for_status()
    return w


def visible(w: World, *keys: str) -> set[int]:
    return {w.leads[k] for k in keys}


EXPECTED = {
    "admin": {"e1", "e2", "w", "mgr", "free"},
    "mkt": {"e1", "e2", "w", "mgr", "free"},
    "east1": {"e1", "free"},
    "east2": {"e2", "free"},
    "east_mgr": {"e1", "e2", "mgr", "free"},
    "west": {"w", "free"},
    "loner_mgr": {"free"},
}


# ----------------------------------------------------------------------------------- reading


@pytest.mark.parametrize("who", sorted(EXPECTED))
def test_each_role_sees_exactly_its_leads_through_the_api(client: TestClient, world: World, who: str) -> None:
    actor: Actor = getattr(world, who)
    want = visible(world, *EXPECTED[who])
    r = client.get("/api/leads", params={"include_total": "true", "limit": 2}, headers=actor.headers).json()
    assert r["total"] == len(want)
    seen: set[int] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/leads", params=params, headers=actor.headers).json()
        seen |= {x["id"] for x in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == want
    acts = client.get("/api/activities", params={"limit": 100}, headers=actor.headers).json()["items"]
    assert {a["lead_id"] for a in acts} == want
    for key, lead_id in world.leads.items():
        expect = 200 if key in EXPECTED[who] else 404
        for path in ("", "/audit", "/transitions", "/activities"):
            r_ = client.get(f"/api/leads/{lead_id}{path}", headers=actor.headers)
            assert r_.status_code == expect, (who, key, path, r_.text)


@pytest.mark.parametrize("who", sorted(EXPECTED))
def test_each_role_sees_exactly_its_leads_in_the_service_layer(db: Database, world: World, who: str) -> None:
    actor = getattr(world, who).principal
    want = visible(world, *EXPECTED[who])
    with db.transaction() as s:
        page = svc.list_leads(s, actor, svc.LeadFilter(), limit=1000)
        assert {x.id for x in page.items} == want
        assert svc.count_leads(s, actor, svc.LeadFilter()) == len(want)
        assert svc.visible_lead_ids(s, actor, list(world.leads.values())) == want
        acts = activity_svc.list_activities(s, actor, activity_svc.ActivityFilter(), limit=1000)
        assert {a.lead_id for a in acts.items} == want
    for lead_id in world.leads.values():
        with db.transaction() as s:
            if lead_id in want:
                assert svc.get_lead(s, actor, lead_id).id == lead_id
                assert svc.lead_audit(s, actor, lead_id)
                assert svc.stage_history(s, actor, lead_id)
                continue
            with pytest.raises(NotFound):
                svc.get_lead(s, actor, lead_id)
            with pytest.raises(NotFound):
                svc.lead_audit(s, actor, lead_id)
            with pytest.raises(NotFound):
                svc.stage_history(s, actor, lead_id)
            with pytest.raises(NotFound):
                activity_svc.list_activities(s, actor, activity_svc.ActivityFilter(lead_id=lead_id))


def test_account_leads_follow_visibility(client: TestClient, world: World) -> None:
    lead = client.get(f"/api/leads/{world.leads['w']}", headers=world.admin.headers).json()
    acc = lead["account_id"]
    assert client.get(f"/api/accounts/{acc}/leads", headers=world.admin.headers).json()["items"]
    assert client.get(f"/api/accounts/{acc}/leads", headers=world.east1.headers).json()["items"] == []


# ----------------------------------------------------------------------------------- writing


def test_invisible_leads_cannot_be_changed(client: TestClient, world: World) -> None:
    theirs = world.leads["w"]
    h = world.east1.headers
    r = client.patch(f"/api/leads/{theirs}", json={"version": 1, "first_name": "X"}, headers=h)
    assert r.status_code == 404
    r = client.post(f"/api/leads/{theirs}/transitions", json={"to": "sal", "evidence": NA}, headers=h)
    assert r.status_code == 404
    assert client.post(f"/api/leads/{theirs}/activities", json={"type": "call"}, headers=h).status_code == 404
    out = client.post("/api/events", json={"events": [{"lead_id": theirs, "type": "call"}]}, headers=h).json()
    assert out["accepted"] == 0 and out["errors"][0]["msg"] == f"lead {theirs} not found"
    r = client.delete(f"/api/leads/{theirs}", headers=world.east_mgr.headers)
    assert r.status_code == 404
    after = client.get(f"/api/leads/{theirs}", headers=world.admin.headers).json()
    assert (after["version"], after["stage"], after["first_name"]) == (1, "new", None)
    # Visible ones can.
    mine, free = world.leads["e1"], world.leads["free"]
    r = client.patch(f"/api/leads/{mine}", json={"version": 1, "first_name": "Y"}, headers=h)
    assert r.status_code == 200
    r = client.post(f"/api/leads/{free}/transitions", json={"to": "sal", "evidence": NA}, headers=h)
    assert r.status_code == 200


def test_invisible_leads_cannot_be_changed_in_the_service_layer(db: Database, world: World) -> None:
    rep = world.east1.principal
    theirs = world.leads["w"]
    with db.transaction() as s, pytest.raises(NotFound):
        svc.update_lead(s, rep, theirs, {"first_name": "X"}, expected_version=1)
    with db.transaction() as s, pytest.raises(NotFound):
        svc.transition_lead(s, rep, theirs, Stage.SAL, evidence=NeedsAssessment())
    with db.transaction() as s, pytest.raises(NotFound):
        activity_svc.log_activity(s, rep, theirs, activity_svc.ActivityType.CALL)
    with db.transaction() as s, pytest.raises(NotFound):
        svc.delete_lead(s, world.east_mgr.principal, theirs)
    with db.transaction() as s:
        res = activity_svc.ingest(s, rep, [{"lead_id": theirs, "type": "call"}])
        assert res.accepted == 0 and res.errors[0]["loc"] == ["lead_id"]
    with db.transaction() as s:
        assert svc.get_lead(s, SYSTEM, theirs).version == 1


def test_reps_assign_leads_only_to_themselves(client: TestClient, world: World) -> None:
    h = world.east1.headers
    free = world.leads["free"]
    r = client.patch(f"/api/leads/{free}", json={"version": 1, "owner_id": world.east2.user_id}, headers=h)
    assert r.status_code == 403
    r = client.post("/api/leads", json={"email": "n@new.io", "owner_id": world.east2.user_id}, headers=h)
    assert r.status_code == 403
    r = client.patch(f"/api/leads/{free}", json={"version": 1, "owner_id": world.east1.user_id}, headers=h)
    assert r.status_code == 200 and r.json()["owner_id"] == world.east1.user_id
    # Now it is the rep's own: the team mate no longer sees it.
    assert client.get(f"/api/leads/{free}", headers=world.east2.headers).status_code == 404
    trail = client.get(f"/api/leads/{free}/audit", headers=h).json()
    assert trail[-1]["after"] == {"owner_id": world.east1.user_id}


def test_reps_assignment_rules_in_the_service_layer(db: Database, world: World) -> None:
    rep = world.east1.principal
    with db.transaction() as s, pytest.raises(Forbidden):
        svc.update_lead(s, rep, world.leads["free"], {"owner_id": world.west.user_id}, expected_version=1)
    with db.transaction() as s, pytest.raises(Forbidden):
        svc.create_lead(s, rep, {"email": "n@new.io", "owner_id": world.east2.user_id})
    with db.transaction() as s:
        lead = svc.create_lead(s, rep, {"email": "n@new.io"}).lead
        assert lead.owner_id == world.east1.user_id


def test_managers_assign_within_their_team(client: TestClient, world: World) -> None:
    h = world.east_mgr.headers
    free = world.leads["free"]
    r = client.patch(f"/api/leads/{free}", json={"version": 1, "owner_id": world.west.user_id}, headers=h)
    assert r.status_code == 403
    r = client.patch(f"/api/leads/{free}", json={"version": 1, "owner_id": world.east2.user_id}, headers=h)
    assert r.status_code == 200
    r = client.patch(f"/api/leads/{free}", json={"version": 2, "owner_id": world.east_mgr.user_id}, headers=h)
    assert r.status_code == 200
    # Admins assign anywhere.
    r = client.patch(
        f"/api/leads/{free}", json={"version": 3, "owner_id": world.west.user_id}, headers=world.admin.headers
    )
    assert r.status_code == 200
    assert client.get(f"/api/leads/{free}", headers=h).status_code == 404


# ----------------------------------------------------------------------------------- marketing


@pytest.mark.parametrize(
    ("path", "target", "evidence"),
    [
        ([], "sal", NA),
        (["sal"], "sql", DC),
        (["sal", "sql"], "opportunity", OPP),
        (["sal", "sql", "opportunity"], "customer", WON),
    ],
)
def test_marketing_cannot_make_sales_moves(
    client: TestClient, world: World, path: list[str], target: str, evidence: dict[str, Any]
) -> None:
    lead = world.leads["free"]
    steps = {"sal": NA, "sql": DC, "opportunity": OPP}
    for stage in path:
        r = client.post(
            f"/api/leads/{lead}/transitions",
            json={"to": stage, "evidence": steps[stage]},
            headers=world.admin.headers,
        )
        assert r.status_code == 200, r.text
    r = client.post(
        f"/api/leads/{lead}/transitions", json={"to": target, "evidence": evidence}, headers=world.mkt.headers
    )
    assert r.status_code == 403, r.text
    r = client.post(
        f"/api/leads/{lead}/transitions",
        json={"to": target, "evidence": evidence},
        headers=world.east1.headers,
    )
    assert r.status_code == 200, r.text


def test_marketing_cannot_make_sales_moves_in_the_service_layer(db: Database, world: World) -> None:
    mkt = world.mkt.principal
    evidence = {
        Stage.SAL: NeedsAssessment(),
        Stage.SQL: DiscoveryCall(),
        Stage.OPPORTUNITY: OpportunityOpened(),
        Stage.CUSTOMER: DealWon(),
    }
    for target, ev in evidence.items():
        with db.transaction() as s, pytest.raises(Forbidden):
            svc.transition_lead(s, mkt, world.leads["free"], target, evidence=ev)
    with db.transaction() as s:
        lead = svc.create_lead(s, mkt, {"email": "m@mkt.io"}).lead
        assert (
            svc.transition_lead(s, mkt, lead.id, Stage.MQL, evidence=MarketingReview(note="x")).stage == "mql"
        )
        assert svc.transition_lead(s, mkt, lead.id, Stage.NURTURE, reason="later").stage == "nurture"


def test_marketing_cannot_create_a_lead_at_a_sales_stage(client: TestClient, world: World) -> None:
    """Creating a lead straight at SAL is the same sales decision as moving it there."""

    body = {"email": "skip@acme.io", "origin": "sales", "stage": "sal", "evidence": NA}
    r = client.post("/api/leads", json=body, headers=world.mkt.headers)
    assert r.status_code == 403, r.text
    assert (
        client.get("/api/leads", params={"email": "skip@acme.io"}, headers=world.admin.headers).json()[
            "items"
        ]
        == []
    )
    r = client.post("/api/leads", json={**body, "owner_id": None}, headers=world.east1.headers)
    assert r.status_code == 201
    # Marketing may still start leads where its part of the funnel is.
    r = client.post(
        "/api/leads",
        json={"email": "n@acme.io", "stage": "nurture", "reason": "later"},
        headers=world.mkt.headers,
    )
    assert r.status_code == 201


def test_transitions_view_hides_sales_moves_from_marketing(client: TestClient, world: World) -> None:
    lead = world.leads["free"]
    mkt = client.get(f"/api/leads/{lead}/transitions", headers=world.mkt.headers).json()
    rep = client.get(f"/api/leads/{lead}/transitions", headers=world.east1.headers).json()
    assert "sal" not in [x["to"] for x in mkt["legal"]]
    assert "sal" in [x["to"] for x in rep["legal"]]


# ----------------------------------------------------------------------------------- scopes


def _token(client: TestClient, admin: Actor, user_id: int, scopes: list[str]) -> dict[str, str]:
    r = client.post(f"/api/users/{user_id}/tokens", json={"scopes": scopes}, headers=admin.headers)
    assert r.status_code == 201, r.text
    assert r.json()["scopes"] == sorted(scopes)
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_a_read_scoped_token_cannot_write(client: TestClient, world: World) -> None:
    ro = _token(client, world.admin, world.admin.user_id, ["leads:read"])
    assert client.get("/api/leads", headers=ro).status_code == 200
    lead = world.leads["free"]
    assert client.get(f"/api/leads/{lead}", headers=ro).status_code == 200
    r = client.post("/api/leads", json={"email": "x@acme.io"}, headers=ro)
    assert r.status_code == 403 and r.json()["permission"] == "leads:write"
    assert (
        client.patch(f"/api/leads/{lead}", json={"version": 1, "first_name": "X"}, headers=ro).status_code
        == 403
    )
    assert client.post(f"/api/leads/{lead}/transitions", json={"to": "cold"}, headers=ro).status_code == 403
    assert client.delete(f"/api/leads/{lead}", headers=ro).status_code == 403
    assert client.get(f"/api/leads/{lead}/audit", headers=ro).status_code == 403
    assert (
        client.post(
            "/api/events", json={"events": [{"lead_id": lead, "type": "call"}]}, headers=ro
        ).status_code
        == 403
    )
    assert client.post("/api/accounts", json={"name": "X"}, headers=ro).status_code == 403
    assert client.get("/api/accounts", headers=ro).status_code == 403
    me = client.get("/api/me", headers=ro).json()
    assert me["permissions"] == ["leads:read"] and me["role"] == "admin"
    assert client.get(f"/api/leads/{lead}", headers=world.admin.headers).json()["version"] == 1


def test_scopes_never_add_to_the_role(client: TestClient, world: World) -> None:
    # A rep's token asking for leads:delete still lacks it: scopes only narrow the role.
    h = _token(client, world.admin, world.east1.user_id, ["leads:read", "leads:delete"])
    assert client.delete(f"/api/leads/{world.leads['e1']}", headers=h).status_code == 403
    assert client.get("/api/me", headers=h).json()["permissions"] == ["leads:read"]
    rw = _token(client, world.admin, world.east1.user_id, ["leads:read", "leads:write"])
    assert client.post("/api/leads", json={"email": "rw@acme.io"}, headers=rw).status_code == 201
    r = client.post(f"/api/leads/{world.leads['e1']}/transitions", json={"to": "cold"}, headers=rw)
    assert r.status_code == 403 and r.json()["permission"] == "leads:transition"


def test_token_management_rights(client: TestClient, world: World) -> None:
    r = client.post(f"/api/users/{world.east2.user_id}/tokens", json={}, headers=world.east1.headers)
    assert r.status_code == 403
    r = client.post(
        f"/api/users/{world.east1.user_id}/tokens", json={"name": "mine"}, headers=world.east1.headers
    )
    assert r.status_code == 201
    r = client.post(
        f"/api/users/{world.east1.user_id}/tokens",
        json={"scopes": ["leads:fly"]},
        headers=world.admin.headers,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["scopes"]
    admin_token = client.post(
        f"/api/users/{world.admin.user_id}/tokens", json={}, headers=world.admin.headers
    ).json()
    assert client.delete(f"/api/tokens/{admin_token['id']}", headers=world.east1.headers).status_code == 403
    assert client.delete("/api/tokens/9999", headers=world.admin.headers).status_code == 404
    assert client.delete(f"/api/tokens/{admin_token['id']}", headers=world.admin.headers).status_code == 204


def test_only_admins_create_users(client: TestClient, db: Database, world: World) -> None:
    body = {"name": "New", "email": "new@acme.io", "role": "sales_rep", "team": "east"}
    for who in (world.mkt, world.east_mgr, world.east1):
        assert client.post("/api/users", json=body, headers=who.headers).status_code == 403
    with db.transaction() as s, pytest.raises(Forbidden):
        auth.create_user(s, world.mkt.principal, name="New", email="new@acme.io", role=Role.ADMIN)
    r = client.post("/api/users", json=body, headers=world.admin.headers)
    assert r.status_code == 201 and r.json()["role"] == "sales_rep"
    assert client.post("/api/users", json=body, headers=world.admin.headers).status_code == 409


def test_a_duplicate_owned_by_another_team_does_not_reveal_its_id(client: TestClient, world: World) -> None:
    # Creating and re-emailing both hit the unique address; the answer must not name the record.
    r = client.post("/api/leads", json={"email": "w@acme-w.io"}, headers=world.east1.headers)
    assert r.status_code == 409
    assert "lead_id" not in r.json() and str(world.leads["w"]) not in r.text
    r = client.patch(
        f"/api/leads/{world.leads['e1']}",
        json={"version": 1, "email": "w@acme-w.io"},
        headers=world.east1.headers,
    )
    assert r.status_code == 409
    assert "lead_id" not in r.json() and str(world.leads["w"]) not in r.text
    # Someone who can see the holder still learns which lead it is, to merge them.
    r = client.post("/api/leads", json={"email": "w@acme-w.io"}, headers=world.admin.headers)
    assert r.status_code == 409 and r.json()["lead_id"] == world.leads["w"]


def test_an_accounts_lead_count_counts_only_visible_leads(client: TestClient, world: World) -> None:
    acc = client.post("/api/accounts", json={"name": "Shared Co"}, headers=world.admin.headers).json()
    for key in ("e1", "w", "free"):
        r = client.patch(
            f"/api/leads/{world.leads[key]}",
            json={"version": 1, "account_id": acc["id"]},
            headers=world.admin.headers,
        )
        assert r.status_code == 200, r.text
    counts = {
        who: client.get(f"/api/accounts/{acc['id']}", headers=getattr(world, who).headers).json()[
            "lead_count"
        ]
        for who in ("admin", "east1", "west", "loner_mgr")
    }
    assert counts == {"admin": 3, "east1": 2, "west": 2, "loner_mgr": 1}
    listed = client.get("/api/accounts", params={"q": "Shared"}, headers=world.east1.headers).json()
    assert [a["lead_count"] for a in listed["items"]] == [2]


def test_imported_evidence_cannot_be_claimed_through_the_lead_api(client: TestClient, world: World) -> None:
    body = {
        "email": "skip@acme.io",
        "stage": "sql",
        "evidence": {"kind": "imported", "system": "hubspot", "original_value": "SQL"},
    }
    r = client.post("/api/leads", json=body, headers=world.mkt.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["evidence", "kind"]
    r = client.post(
        f"/api/leads/{world.leads['free']}/transitions",
        json={"to": "sql", "evidence": body["evidence"], "version": 1},
        headers=world.mkt.headers,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["evidence", "kind"]
    found = client.get("/api/leads", params={"email": "skip@acme.io"}, headers=world.admin.headers)
    assert found.json()["items"] == []
