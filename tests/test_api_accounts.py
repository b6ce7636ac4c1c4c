"""Accounts through the HTTP API: create and normalize, read with lead counts, optimistic
locking, filters, sorting, cursor and the account's leads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import select

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.db.base import Database


def new_account(client: TestClient, actor: Actor, **body: Any) -> dict[str, Any]:
    r = client.post("/api/accounts", json=body, headers=actor.headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def new_lead(client: TestClient, actor: Actor, **body: Any) -> dict[str, Any]:
    r = client.post("/api/leads", json=body, headers=actor.headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_create_normalizes_and_reads_back(client: TestClient, admin: Actor) -> None:
    acc = new_account(
        client,
        admin,
        name="  Acme GmbH ",
        domain="https://www.Acme.com/about",
        country="germany",
        industry="Software",
        employee_count=120,
        annual_revenue=9_000_000_000,
    )
    assert (acc["name"], acc["domain"], acc["country"], acc["version"]) == ("Acme GmbH", "acme.com", "DE", 1)
    got = client.get(f"/api/accounts/{acc['id']}", headers=admin.headers).json()
    assert got["lead_count"] == 0
    assert {k: got[k] for k in ("name", "domain", "industry", "employee_count", "annual_revenue")} == {
        "name": "Acme GmbH",
        "domain": "acme.com",
        "industry": "Software",
        "employee_count": 120,
        "annual_revenue": 9_000_000_000,
    }
    assert client.get("/api/accounts/9999", headers=admin.headers).status_code == 404


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "name"]),
        ({"name": ""}, ["body", "name"]),
        ({"name": "   "}, ["name"]),
        ({"name": "X", "size": 3}, ["body", "size"]),
        ({"name": "X", "domain": "not a domain"}, ["domain"]),
        ({"name": "X", "country": "Narnia"}, ["country"]),
        ({"name": "X", "employee_count": -1}, ["body", "employee_count"]),
        ({"name": "X", "owner_id": 999}, ["owner_id"]),
        ({"name": "X", "employee_count": 2**31}, ["employee_count"]),
        ({"name": "X", "annual_revenue": 2**63}, ["annual_revenue"]),
    ],
)
def test_create_validation(client: TestClient, admin: Actor, body: dict[str, Any], loc: list[Any]) -> None:
    r = client.post("/api/accounts", json=body, headers=admin.headers)
    assert r.status_code == 422, r.text
    assert loc in [d["loc"] for d in r.json()["detail"]]
    assert client.get("/api/accounts", headers=admin.headers).json()["items"] == []


def test_one_account_per_domain(client: TestClient, admin: Actor) -> None:
    new_account(client, admin, name="Acme", domain="acme.com")
    r = client.post("/api/accounts", json={"name": "Acme 2", "domain": "WWW.ACME.COM"}, headers=admin.headers)
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    other = new_account(client, admin, name="Other", domain="other.com")
    r = client.patch(
        f"/api/accounts/{other['id']}", json={"version": 1, "domain": "acme.com"}, headers=admin.headers
    )
    assert r.status_code == 409


def test_lead_count_and_account_leads(client: TestClient, admin: Actor) -> None:
    acc = new_account(client, admin, name="Initech", domain="initech.com")
    ids = [new_lead(client, admin, email=f"p{i}@initech.com")["id"] for i in range(5)]
    by_name = new_lead(client, admin, email="peter@gmail.com", company="Initech Inc.")
    new_lead(client, admin, email="someone@else.io")
    assert client.get(f"/api/accounts/{acc['id']}", headers=admin.headers).json()["lead_count"] == 6
    listed = client.get("/api/accounts", headers=admin.headers).json()["items"]
    assert {a["name"]: a["lead_count"] for a in listed} == {"Initech": 6, "Else": 1}
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = client.get(f"/api/accounts/{acc['id']}/leads", params=params, headers=admin.headers).json()
        seen += [x["id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [*ids, by_name["id"]]
    assert client.get("/api/accounts/9999/leads", headers=admin.headers).status_code == 404


def test_update_with_optimistic_locking(client: TestClient, admin: Actor, db: Database) -> None:
    acc = new_account(client, admin, name="Acme", industry="Retail")
    url = f"/api/accounts/{acc['id']}"
    r = client.patch(
        url, json={"version": 1, "industry": "Software", "employee_count": 50}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["industry"], out["employee_count"], out["version"]) == ("Software", 50, 2)
    # The answer shows what was stored.
    got = client.get(url, headers=admin.headers).json()
    assert out["updated_at"] == got["updated_at"]
    assert datetime.fromisoformat(got["updated_at"]) > datetime.fromisoformat(acc["updated_at"])
    stale = client.patch(url, json={"version": 1, "industry": "Pharma"}, headers=admin.headers)
    assert stale.status_code == 409 and stale.json()["code"] == "stale_version"
    assert client.patch(url, json={"industry": "Pharma"}, headers=admin.headers).status_code == 422
    r = client.patch(url, json={"industry": "Pharma"}, headers={**admin.headers, "If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["version"] == 3
    # No change, no new version.
    assert (
        client.patch(url, json={"version": 3, "industry": "Pharma"}, headers=admin.headers).json()["version"]
        == 3
    )
    r = client.patch(url, json={"version": 3, "name": "  "}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["name"]
    r = client.patch(url, json={"version": 3, "owner_id": 999}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["owner_id"]
    assert (
        client.patch(
            "/api/accounts/9999", json={"version": 1, "name": "X"}, headers=admin.headers
        ).status_code
        == 404
    )
    with db.transaction() as s:
        trail = list(
            s.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "account", AuditEntry.entity_id == acc["id"])
                .order_by(AuditEntry.id)
            )
        )
    assert [e.action for e in trail] == ["create", "update", "update"]
    assert trail[1].before == {"industry": "Retail", "employee_count": None}
    assert trail[1].after == {"industry": "Software", "employee_count": 50}
    assert trail[2].after == {"industry": "Pharma"}


def test_account_owner(client: TestClient, admin: Actor, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    acc = new_account(client, admin, name="Acme", owner_id=rep.user_id)
    assert acc["owner_id"] == rep.user_id
    other = new_account(client, admin, name="Other")
    listed = client.get("/api/accounts", params={"owner_id": rep.user_id}, headers=admin.headers).json()[
        "items"
    ]
    assert [a["id"] for a in listed] == [acc["id"]]
    r = client.patch(
        f"/api/accounts/{other['id']}", json={"version": 1, "owner_id": rep.user_id}, headers=admin.headers
    )
    assert r.status_code == 200 and r.json()["owner_id"] == rep.user_id


def test_account_filters(client: TestClient, admin: Actor) -> None:
    a = new_account(client, admin, name="Acme Corp", domain="acme.com", industry="Software", country="DE")
    b = new_account(client, admin, name="Acme Labs", domain="labs.io", industry="Biotech", country="US")
    c = new_account(client, admin, name="Initech", domain="initech.com", industry="Software", country="US")

    def ids(**params: Any) -> list[int]:
        r = client.get("/api/accounts", params=params, headers=admin.headers)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["items"]]

    assert ids() == [a["id"], b["id"], c["id"]]
    assert ids(q="acme") == [a["id"], b["id"]]
    assert ids(q="ACME, Inc.") == [a["id"], b["id"]]  # the name's matching key
    assert ids(q="labs.") == [b["id"]]  # domain prefix
    assert ids(q="ini") == [c["id"]]
    assert ids(domain=" ACME.com ") == [a["id"]]
    assert ids(industry="Software") == [a["id"], c["id"]]
    assert ids(country="us") == [b["id"], c["id"]]
    assert ids(country="us", industry="Software") == [c["id"]]
    assert ids(q="zzz") == []
    under = new_account(client, admin, name="Data_Works")
    new_account(client, admin, name="DataXWorks")
    assert ids(q="data_") == [under["id"]]  # "_" is a character, not a wildcard


def test_account_sorting_and_cursor(client: TestClient, admin: Actor) -> None:
    names = ["Delta", "alpha", "Charlie", "Bravo", "Echo", "Bravo", "Foxtrot"]
    made = [new_account(client, admin, name=n) for n in names]
    for sort in ("id", "name", "created_at", "updated_at"):
        for descending in (False, True):

            def key(a: dict[str, Any], sort: str = sort) -> tuple[Any, int]:
                return (a[sort], a["id"])

            expected = [a["id"] for a in sorted(made, key=key, reverse=descending)]
            for limit in (2, 7):
                seen: list[int] = []
                cursor = None
                while True:
                    params: dict[str, Any] = {"sort": ("-" if descending else "") + sort, "limit": limit}
                    if cursor:
                        params["cursor"] = cursor
                    r = client.get("/api/accounts", params=params, headers=admin.headers)
                    assert r.status_code == 200, r.text
                    page = r.json()
                    seen += [x["id"] for x in page["items"]]
                    cursor = page["next_cursor"]
                    if not cursor:
                        break
                assert seen == expected, (sort, descending, limit)
    assert client.get("/api/accounts?sort=domain", headers=admin.headers).status_code == 422
    assert client.get("/api/accounts?limit=0", headers=admin.headers).status_code == 422


def test_account_rights(client: TestClient, admin: Actor, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    acc = new_account(client, rep, name="Rep's Account")
    assert client.get(f"/api/accounts/{acc['id']}", headers=rep.headers).status_code == 200
    token = client.post(
        f"/api/users/{rep.user_id}/tokens", json={"scopes": ["accounts:read"]}, headers=admin.headers
    ).json()["token"]
    ro = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/accounts", headers=ro).status_code == 200
    r = client.post("/api/accounts", json={"name": "X"}, headers=ro)
    assert r.status_code == 403 and r.json()["permission"] == "accounts:write"
    assert (
        client.patch(f"/api/accounts/{acc['id']}", json={"version": 1, "name": "Y"}, headers=ro).status_code
        == 403
    )
    assert client.get("/api/accounts").status_code == 401
