"""Assignment rules as data, in order: the account owner wins, territory, industry, round-robin
inside a team with capacity caps; applied at MQL (atomic with the move), on demand and in sets,
every reassignment audited. Service layer and API, on the real database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from leadflow.api import create_app
from leadflow.assignment import service as assignment
from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.core.assignment import region_of
from leadflow.core.lifecycle import MarketingReview, Stage
from leadflow.db.base import Database
from leadflow.imports.service import run_import
from leadflow.leads import accounts
from leadflow.leads import service as leads
from leadflow.leads.models import Lead
from leadflow.qualification import handoff


@pytest.fixture(scope="module")
def app(database: Database) -> FastAPI:
    return create_app(database)


@pytest.fixture
def client(db: Database, app: FastAPI) -> Iterator[TestClient]:
    handoff.register()
    with TestClient(app) as c:
        yield c


@pytest.fixture
def team(db: Database) -> dict[str, Actor]:
    return {
        "ann": make_user(db, "Ann", Role.SALES_REP, team="emea"),
        "bob": make_user(db, "Bob", Role.SALES_REP, team="emea"),
        "cat": make_user(db, "Cat", Role.SALES_REP, team="emea"),
        "dan": make_user(db, "Dan", Role.SALES_REP, team="amer"),
    }


def lead(db: Database, email: str, **fields: Any) -> int:
    with db.transaction() as s:
        return leads.create_lead(s, SYSTEM, {"email": email, **fields}).lead.id


def mql(db: Database, lead_id: int) -> None:
    with db.transaction() as s:
        leads.transition_lead(s, SYSTEM, lead_id, Stage.MQL, evidence=MarketingReview(note="hand-raise"))


def owner(db: Database, lead_id: int) -> int | None:
    with db.transaction() as s:
        return s.get(Lead, lead_id).owner_id  # type: ignore[union-attr]


def rule(db: Database, doc: dict[str, Any], **kw: Any) -> int:
    with db.transaction() as s:
        return assignment.create_rule(s, SYSTEM, doc, **kw).id


def test_the_account_owner_wins_at_mql_atomically_audited(
    client: TestClient, db: Database, team: dict[str, Actor]
) -> None:
    with db.transaction() as s:
        acc = accounts.create_account(
            s, SYSTEM, {"name": "Umbrella", "domain": "umbrella.com", "owner_id": team["dan"].user_id}
        )
    rule(db, {"name": "EMEA", "strategy": "round_robin", "team": "emea", "match": {"regions": ["EMEA"]}})
    lid = lead(db, "alice@umbrella.com", country="DE")
    assert owner(db, lid) is None
    mql(db, lid)
    assert owner(db, lid) == team["dan"].user_id  # the account owner outranks the territory rule
    with db.transaction() as s:
        entry = s.scalars(
            select(AuditEntry).where(AuditEntry.entity_id == lid, AuditEntry.action == "assign")
        ).one()
        assert entry.evidence == {
            "kind": "assignment_rule",
            "rule_id": 1,
            "rule": "Account owner",
            "trigger": "mql",
        }
        assert entry.actor_label == "assignment rules"
        change = s.scalars(
            select(AuditEntry).where(AuditEntry.entity_id == lid, AuditEntry.action == "stage_change")
        ).one()
        assert change.id < entry.id
        assert acc.id


def test_territory_industry_round_robin_and_caps(db: Database, team: dict[str, Actor]) -> None:
    ann, bob, cat, dan = (team[k].user_id for k in ("ann", "bob", "cat", "dan"))
    rule(
        db, {"name": "Banks to Dan", "strategy": "user", "user_id": dan, "match": {"industries": ["Banking"]}}
    )
    rule(db, {"name": "Americas", "strategy": "user", "user_id": dan, "match": {"regions": ["NA", "LATAM"]}})
    rule(db, {"name": "EMEA pool", "strategy": "round_robin", "team": "emea", "match": {"regions": ["EMEA"]}})
    with db.transaction() as s:
        accounts.create_account(
            s, SYSTEM, {"name": "Big Bank", "domain": "bigbank.de", "industry": "banking"}
        )
        assignment.set_capacity(s, SYSTEM, cat, 1)
    bank = lead(db, "x@bigbank.de", country="DE")
    us = lead(db, "y@example.org", country="US")
    eu = [
        lead(db, f"eu{i}@example.org", country=c) for i, c in enumerate(["FR", "DE", "GB", "IT", "ES", "NL"])
    ]
    jp = lead(db, "z@example.org", country="JP")
    with db.transaction() as s:
        res = assignment.assign_many(s, SYSTEM, [bank, us, *eu, jp], trigger="import")
    owners = {lid: owner(db, lid) for lid in [bank, us, *eu, jp]}
    assert owners[bank] == dan and owners[us] == dan
    # Round-robin in user-id order; what a batch hands out counts against the caps at once, so Cat
    # (cap 1) takes one lead and is then skipped.
    assert [owners[i] for i in eu] == [ann, bob, cat, ann, bob, ann]
    assert owners[jp] is None
    jp_decision = next(d for d in res.decisions if d.lead_id == jp)
    assert jp_decision.explanation == "no rule matched"
    # Now with open leads: each MQL counts against the cap, and Cat (cap 1) is skipped once full.
    with db.transaction() as s:
        s.execute(Lead.__table__.update().values(stage="mql"))
        assignment.set_capacity(s, SYSTEM, ann, 2)
        assignment.set_capacity(s, SYSTEM, bob, 2)
    more = [lead(db, f"more{i}@example.org", country="FR") for i in range(3)]
    with db.transaction() as s:
        res = assignment.assign_many(s, SYSTEM, more, trigger="manual")
    # Ann, Bob and Cat hold 3, 2 and 1 open leads against caps of 2, 2 and 1: nobody has room.
    assert all(owner(db, m) is None for m in more)
    assert "at capacity" in res.decisions[0].explanation


def test_round_robin_continues_between_batches_and_spreads_evenly(
    db: Database, team: dict[str, Actor]
) -> None:
    rule(db, {"name": "EMEA pool", "strategy": "round_robin", "team": "emea"})
    ids = [lead(db, f"l{i}@example.org") for i in range(31)]
    with db.transaction() as s:
        assignment.assign_many(s, SYSTEM, ids[:10], trigger="import")
    with db.transaction() as s:
        assignment.assign_many(s, SYSTEM, ids[10:], trigger="import")
    counts = Counter(owner(db, i) for i in ids)
    assert sorted(counts.values()) == [10, 10, 11]
    assert None not in counts


def test_owned_leads_stay_unless_forced(db: Database, team: dict[str, Actor]) -> None:
    rule(db, {"name": "All to Bob", "strategy": "user", "user_id": team["bob"].user_id})
    lid = lead(db, "kept@example.org", owner_id=team["ann"].user_id)
    with db.transaction() as s:
        res = assignment.apply(s, SYSTEM, [lid])
    assert res.changed == 0 and owner(db, lid) == team["ann"].user_id
    with db.transaction() as s:
        res = assignment.apply(s, SYSTEM, [lid], force=True)
    assert res.changed == 1 and owner(db, lid) == team["bob"].user_id
    with db.transaction() as s:
        entries = s.scalars(
            select(AuditEntry).where(AuditEntry.entity_id == lid, AuditEntry.action == "assign")
        ).all()
        assert [(e.before, e.after) for e in entries] == [
            ({"owner_id": team["ann"].user_id}, {"owner_id": team["bob"].user_id})
        ]


def test_regions() -> None:
    assert [region_of(c) for c in ("US", "BR", "JP", "DE", "ZA", None)] == [
        "NA",
        "LATAM",
        "APAC",
        "EMEA",
        "EMEA",
        None,
    ]


def test_rules_api(client: TestClient, db: Database, team: dict[str, Actor]) -> None:
    admin = make_user(db, "Root", Role.ADMIN)
    h = admin.headers
    rules = client.get("/api/assignment/rules", headers=h).json()
    assert [(r["name"], r["definition"]["strategy"]) for r in rules] == [("Account owner", "account_owner")]
    r = client.post("/api/assignment/rules", json={"name": "X", "strategy": "round_robin"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["team"]
    r = client.post(
        "/api/assignment/rules", json={"name": "X", "strategy": "user", "user_id": 999}, headers=h
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["user_id"]
    r = client.post(
        "/api/assignment/rules",
        json={"name": "X", "strategy": "round_robin", "team": "emea", "match": {"countries": ["Germany"]}},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["match", "countries"]
    r = client.post(
        "/api/assignment/rules",
        json={"name": "EMEA", "strategy": "round_robin", "team": "emea"},
        headers=team["ann"].headers,
    )
    assert r.status_code == 403
    r = client.post(
        "/api/assignment/rules",
        json={"name": "EMEA", "strategy": "round_robin", "team": "emea", "position": 1},
        headers=h,
    )
    assert r.status_code == 201, r.text
    new_id = r.json()["id"]
    rules = client.get("/api/assignment/rules", headers=h).json()
    assert [r["name"] for r in rules] == ["EMEA", "Account owner"]
    r = client.put("/api/assignment/rules/order", json={"ids": [new_id]}, headers=h)
    assert r.status_code == 422
    r = client.put("/api/assignment/rules/order", json={"ids": [rules[1]["id"], new_id]}, headers=h)
    assert [x["name"] for x in r.json()] == ["Account owner", "EMEA"]
    r = client.put(
        f"/api/assignment/rules/{new_id}",
        json={"name": "EMEA", "strategy": "user", "user_id": team["cat"].user_id, "version": 1},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    r = client.put(f"/api/assignment/capacity/{team['cat'].user_id}", json={"max_open_leads": 5}, headers=h)
    assert r.status_code == 200 and r.json()["max_open_leads"] == 5
    caps = {
        c["user_id"]: c["max_open_leads"] for c in client.get("/api/assignment/capacity", headers=h).json()
    }
    assert caps[team["cat"].user_id] == 5 and caps[team["ann"].user_id] is None
    ids = []
    for i in range(3):
        r = client.post("/api/leads", json={"email": f"a{i}@example.org"}, headers=h)
        ids.append(r.json()["id"])
    r = client.post("/api/assignment/apply", json={"lead_ids": ids}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] == 3 and {d["owner_id"] for d in body["decisions"]} == {team["cat"].user_id}
    r = client.post("/api/assignment/apply", json={"lead_ids": [10**6]}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["lead_ids"]
    assert client.delete(f"/api/assignment/rules/{new_id}", headers=h).status_code == 204
    assert len(client.get("/api/assignment/rules", headers=h).json()) == 1


def test_imported_leads_are_routed_by_the_rules(db: Database, team: dict[str, Actor], tmp_path: Path) -> None:
    handoff.register()
    rule(db, {"name": "EMEA pool", "strategy": "round_robin", "team": "emea"})
    csv_path = tmp_path / "leads.csv"
    csv_path.write_text(
        "Email,First Name,Country\n" + "".join(f"imp{i}@example.org,Imp{i},DE\n" for i in range(6)),
        encoding="utf-8",
    )
    result = run_import(db, csv_path, report_dir=tmp_path, workers=1)
    assert result.created == 6
    with db.transaction() as s:
        owners = list(s.scalars(select(Lead.owner_id).order_by(Lead.id)))
        assert owners == [team[k].user_id for k in ("ann", "bob", "cat", "ann", "bob", "cat")]
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "assign")).all()
        assert len(entries) == 6 and all(e.evidence and e.evidence["trigger"] == "import" for e in entries)
