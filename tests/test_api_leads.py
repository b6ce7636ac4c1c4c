"""The leads HTTP API end to end: capture, dedupe, batch, validation, authentication, listing,
optimistic locking, stage transitions and erasure, on the real migrated database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role, User
from leadflow.db.base import Database
from leadflow.errors import StaleVersion
from leadflow.leads import service as svc
from leadflow.leads.models import Account, Activity, Lead, StageChange

NA = {"kind": "needs_assessment", "answers": {"need": "pipeline visibility"}, "qualified": True}
MR = {"kind": "marketing_review", "note": "met at the booth"}
DC = {"kind": "discovery_call", "criteria": {"budget": True}, "outcome": "qualified"}
# No opportunity_id: an id given must name a stored opportunity of the lead (the pipeline
# feature's convert makes both; tests/test_reliability_regressions.py checks the refusals).
OPP = {"kind": "opportunity_opened", "signals": ["demo_request"]}
WON = {"kind": "deal_won", "amount": 12000}


def create(client: TestClient, actor: Actor, expect: int = 201, **fields: Any) -> dict[str, Any]:
    r = client.post("/api/leads", json=fields, headers=actor.headers)
    assert r.status_code == expect, r.text
    body: dict[str, Any] = r.json()
    return body


def move(client: TestClient, actor: Actor, lead_id: int, to: str, **body: Any) -> Any:
    return client.post(f"/api/leads/{lead_id}/transitions", json={"to": to, **body}, headers=actor.headers)


def account(client: TestClient, actor: Actor, account_id: int) -> dict[str, Any]:
    r = client.get(f"/api/accounts/{account_id}", headers=actor.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def audit(client: TestClient, actor: Actor, lead_id: int) -> list[dict[str, Any]]:
    r = client.get(f"/api/leads/{lead_id}/audit", headers=actor.headers)
    assert r.status_code == 200, r.text
    body: list[dict[str, Any]] = r.json()
    return body


# ----------------------------------------------------------------------------------- create


def test_create_normalizes_the_contact_data(client: TestClient, admin: Actor) -> None:
    r = client.post(
        "/api/leads",
        json={
            "first_name": "  ADA ",
            "last_name": "lovelace",
            "email": " Ada@ACME.io ",
            "phone": "030 1234567",
            "country": "germany",
            "job_title": "Head of Engineering",
            "company": "Acme GmbH",
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    lead = r.json()
    assert r.headers["Location"] == f"/api/leads/{lead['id']}"
    assert lead["first_name"] == "Ada"
    assert lead["last_name"] == "Lovelace"
    assert lead["email"] == "ada@acme.io"
    assert lead["phone"] == "+49301234567"
    assert lead["phone_raw"] == "030 1234567"
    assert lead["country"] == "DE"
    assert lead["timezone"] == "Europe/Berlin"
    assert lead["seniority"] == "vp"
    assert lead["stage"] == "new"
    assert lead["origin"] == "marketing"
    assert lead["owner_id"] is None
    assert lead["version"] == 1
    assert lead["bad_candidate_reasons"] is None
    again = client.get(f"/api/leads/{lead['id']}", headers=admin.headers)
    assert again.json() == lead
    assert again.headers["ETag"] == '"1"'


def test_create_writes_stage_history_and_audit(client: TestClient, admin: Actor) -> None:
    lead = create(client, admin, email="ada@acme.io")
    hist = client.get(f"/api/leads/{lead['id']}/transitions", headers=admin.headers).json()["history"]
    assert [(h["from_stage"], h["to_stage"], h["actor_id"]) for h in hist] == [(None, "new", admin.user_id)]
    trail = audit(client, admin, lead["id"])
    assert [(a["action"], a["actor_id"]) for a in trail] == [("create", admin.user_id)]
    assert trail[0]["after"]["email"] == "ada@acme.io"
    assert trail[0]["before"] is None


def test_time_zone_comes_from_an_international_phone(client: TestClient, admin: Actor) -> None:
    lead = create(client, admin, email="bo@acme.io", phone="+44 20 7946 0958")
    assert (lead["phone"], lead["timezone"]) == ("+442079460958", "Europe/London")
    given = create(client, admin, email="cy@acme.io", phone="+44 20 7946 0959", timezone="Asia/Tokyo")
    assert given["timezone"] == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"email": "ada@example.com"}, "placeholder"),
        ({"email": "noreply@acme.io"}, "not a person's mailbox"),
        ({"email": "ada@mailinator.com"}, "disposable"),
        ({"email": "ada@acme.io", "first_name": "Mickey", "last_name": "Mouse"}, "placeholder"),
        ({"email": "ada@acme.io", "phone": "123", "country": "DE"}, "not a valid number"),
    ],
)
def test_bad_lead_candidates_are_flagged_with_reasons_but_stored(
    client: TestClient, admin: Actor, fields: dict[str, Any], fragment: str
) -> None:
    lead = create(client, admin, **fields)
    assert lead["stage"] == "new"
    assert lead["bad_candidate_reasons"], lead
    assert any(fragment in r for r in lead["bad_candidate_reasons"])


def test_sales_rep_leads_are_sales_sourced_and_owned_by_the_rep(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    lead = create(client, rep, email="ada@acme.io")
    assert (lead["origin"], lead["owner_id"]) == ("sales", rep.user_id)


# ----------------------------------------------------------------------------------- accounts


def test_corporate_email_domain_creates_then_matches_an_account(client: TestClient, admin: Actor) -> None:
    ada = create(client, admin, email="ada@acme.io", company="Acme GmbH", industry="Software")
    bob = create(client, admin, email="bob@ACME.io")
    assert ada["account_id"] is not None
    assert bob["account_id"] == ada["account_id"]
    acc = account(client, admin, ada["account_id"])
    assert (acc["name"], acc["domain"], acc["industry"], acc["lead_count"]) == (
        "Acme GmbH",
        "acme.io",
        "Software",
        2,
    )


def test_account_named_after_the_domain_when_no_company_is_given(client: TestClient, admin: Actor) -> None:
    lead = create(client, admin, email="hank@globex.com")
    assert account(client, admin, lead["account_id"])["name"] == "Globex"


def test_free_mail_never_creates_an_account(client: TestClient, admin: Actor, db: Database) -> None:
    for email in ("carol@gmail.com", "dan@yahoo.com", "eve@outlook.com"):
        assert create(client, admin, email=email)["account_id"] is None
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 0


def test_company_name_matches_an_account_whatever_its_legal_form(client: TestClient, admin: Actor) -> None:
    first = create(client, admin, email="erin@gmail.com", company="Initech LLC")
    second = create(client, admin, email="frank@yahoo.com", company="INITECH, Inc.")
    third = create(client, admin, email="gina@initech.com", company="The Initech Corporation")
    assert first["account_id"] is not None
    assert second["account_id"] == first["account_id"] == third["account_id"]
    # The corporate email fills the domain the name-matched account lacked.
    assert account(client, admin, first["account_id"])["domain"] == "initech.com"
    assert create(client, admin, email="hal@initech.com")["account_id"] == first["account_id"]


def test_a_lead_never_overwrites_curated_firmographics(client: TestClient, admin: Actor) -> None:
    r = client.post(
        "/api/accounts",
        json={"name": "Umbrella", "domain": "umbrella.com", "industry": "Pharma"},
        headers=admin.headers,
    )
    acc_id = r.json()["id"]
    lead = create(client, admin, email="al@umbrella.com", industry="Retail", employee_count=50)
    assert lead["account_id"] == acc_id
    acc = account(client, admin, acc_id)
    assert (acc["industry"], acc["employee_count"]) == ("Pharma", 50)


def test_explicit_account_id_wins_and_must_exist(client: TestClient, admin: Actor) -> None:
    acc_id = client.post("/api/accounts", json={"name": "Hooli"}, headers=admin.headers).json()["id"]
    lead = create(client, admin, email="gavin@piedpiper.com", account_id=acc_id)
    assert lead["account_id"] == acc_id
    r = client.post("/api/leads", json={"email": "x@acme.io", "account_id": 9999}, headers=admin.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["account_id"]


# ----------------------------------------------------------------------------------- duplicates


def test_duplicate_email_answers_409_naming_the_existing_lead(client: TestClient, admin: Actor) -> None:
    first = create(client, admin, email="ada@acme.io")
    r = client.post("/api/leads", json={"email": " ADA@Acme.IO", "first_name": "X"}, headers=admin.headers)
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "duplicate"
    assert body["lead_id"] == first["id"]
    assert "ada@acme.io" in body["detail"]
    assert client.get(f"/api/leads/{first['id']}", headers=admin.headers).json()["first_name"] is None


def test_on_duplicate_update_fills_only_empty_fields(client: TestClient, admin: Actor) -> None:
    first = create(client, admin, email="ada@acme.io", job_title="CTO", first_name="Ada")
    r = client.post(
        "/api/leads?on_duplicate=update",
        json={"email": "ada@acme.io", "job_title": "Intern", "first_name": "Eve", "phone": "+49 30 1234567"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    lead = r.json()
    assert lead["id"] == first["id"]
    assert (lead["job_title"], lead["first_name"], lead["seniority"]) == ("CTO", "Ada", "executive")
    assert lead["phone"] == "+49301234567"
    assert lead["version"] == 2
    last = audit(client, admin, lead["id"])[-1]
    assert last["action"] == "update"
    # The phone also gave the empty time zone.
    assert last["after"] == {"phone": "+49301234567", "timezone": "Europe/Berlin"}
    assert last["before"] == {"phone": None, "timezone": None}
    # Nothing new to fill: no new version, no audit entry.
    r = client.post(
        "/api/leads?on_duplicate=update",
        json={"email": "ada@acme.io", "job_title": "CEO"},
        headers=admin.headers,
    )
    assert r.status_code == 200
    assert r.json()["version"] == 2
    assert len(audit(client, admin, lead["id"])) == 2


# ----------------------------------------------------------------------------------- batch


def test_batch_with_good_and_bad_items(client: TestClient, admin: Actor, db: Database) -> None:
    existing = create(client, admin, email="old@acme.io")
    r = client.post(
        "/api/leads/batch",
        json={
            "leads": [
                {"email": "ada@initech.com", "company": "Initech"},
                {"email": "not-an-email", "company": "Ghost Corp"},
                {"email": "bo@acme.io", "country": "Narnia", "company": "Phantom Ltd"},
                {"email": "old@acme.io", "first_name": "Olga"},
                {"first_name": "Nobody"},
                {"email": "ADA@initech.com", "job_title": "CFO"},
                {"email": "cy@hooli.com", "phone": "+1 212 555 0123"},
            ]
        },
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["created"], out["updated"], out["failed"]) == (2, 2, 3)
    res = out["results"]
    assert [x["index"] for x in res] == list(range(7))
    assert [x["status"] for x in res] == [
        "created",
        "error",
        "error",
        "updated",
        "error",
        "updated",
        "created",
    ]
    assert res[1]["errors"][0]["loc"] == ["email"]
    assert res[2]["errors"][0]["loc"] == ["country"]
    assert res[4]["errors"][0]["loc"] == ["email"]
    assert res[3]["lead_id"] == existing["id"]
    assert res[5]["lead_id"] == res[0]["lead_id"]
    for bad in (1, 2, 4):
        assert res[bad]["lead_id"] is None
    emails = {x["email"] for x in client.get("/api/leads", headers=admin.headers).json()["items"]}
    assert emails == {"old@acme.io", "ada@initech.com", "cy@hooli.com"}
    ada = client.get(f"/api/leads/{res[0]['lead_id']}", headers=admin.headers).json()
    assert ada["job_title"] == "CFO"
    assert client.get(f"/api/leads/{existing['id']}", headers=admin.headers).json()["first_name"] == "Olga"
    with db.transaction() as s:
        names = set(s.scalars(select(Account.name)))
    assert "Ghost Corp" not in names and "Phantom Ltd" not in names
    assert {"Initech", "Hooli"} <= names


def test_batch_on_duplicate_error_names_the_existing_lead(client: TestClient, admin: Actor) -> None:
    existing = create(client, admin, email="old@acme.io")
    r = client.post(
        "/api/leads/batch",
        json={"leads": [{"email": "old@acme.io"}, {"email": "new@acme.io"}], "on_duplicate": "error"},
        headers=admin.headers,
    )
    out = r.json()
    assert (out["created"], out["updated"], out["failed"]) == (1, 0, 1)
    assert out["results"][0]["status"] == "error"
    assert out["results"][0]["lead_id"] == existing["id"]
    assert out["results"][0]["errors"][0]["loc"] == ["email"]


def test_a_forbidden_item_does_not_stop_the_batch(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    mate = make_user(db, "Mo", Role.SALES_REP, "east")
    r = client.post(
        "/api/leads/batch",
        json={
            "leads": [
                {"email": "a@acme.io"},
                {"email": "b@acme.io", "owner_id": mate.user_id},
                {"email": "c@acme.io", "owner_id": rep.user_id},
            ]
        },
        headers=rep.headers,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["created"], out["failed"]) == (2, 1)
    assert out["results"][1]["status"] == "error"
    assert out["results"][1]["errors"][0]["loc"] == ["owner_id"]
    emails = {x["email"] for x in client.get("/api/leads", headers=rep.headers).json()["items"]}
    assert emails == {"a@acme.io", "c@acme.io"}


def test_batch_schema_errors_reject_the_whole_request(client: TestClient, admin: Actor) -> None:
    r = client.post(
        "/api/leads/batch",
        json={"leads": [{"email": "a@acme.io"}, {"email": "b@acme.io", "shoe_size": 42}]},
        headers=admin.headers,
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "leads", 1, "shoe_size"]
    assert client.get("/api/leads", headers=admin.headers).json()["items"] == []
    assert client.post("/api/leads/batch", json={"leads": []}, headers=admin.headers).status_code == 422


# ----------------------------------------------------------------------------------- 422


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"email": "a@acme.io", "shoe_size": 42}, ["body", "shoe_size"]),
        ({"email": "a@@acme"}, ["email"]),
        ({"email": "a@acme.io", "country": "Narnia"}, ["country"]),
        ({"email": "a@acme.io", "employee_count": -1}, ["body", "employee_count"]),
        ({"email": "a@acme.io", "timezone": "Mars/Olympus"}, ["timezone"]),
        ({"email": "a@acme.io", "seniority": "overlord"}, ["seniority"]),
        ({"email": "a@acme.io", "website": "not a site"}, ["website"]),
        ({"email": "a@acme.io", "owner_id": 999}, ["owner_id"]),
        ({"email": "a@acme.io", "consent": "maybe"}, ["body", "consent"]),
        ({"email": "a@acme.io", "stage": "limbo"}, ["body", "stage"]),
        ({"email": "a@acme.io", "evidence": {"kind": "gut_feeling"}}, ["evidence"]),
        ({"first_name": "Ada"}, ["email"]),
    ],
)
def test_bad_input_answers_422_naming_the_field(
    client: TestClient, admin: Actor, body: dict[str, Any], loc: list[Any]
) -> None:
    r = client.post("/api/leads", json=body, headers=admin.headers)
    assert r.status_code == 422, r.text
    assert loc in [d["loc"] for d in r.json()["detail"]]
    assert client.get("/api/leads", headers=admin.headers).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"email": "a@acme.io", "employee_count": 2**31}, ["employee_count"]),
        ({"email": "a@acme.io", "annual_revenue": 2**63}, ["annual_revenue"]),
    ],
)
def test_numbers_beyond_the_columns_answer_422_naming_the_field(
    client: TestClient, admin: Actor, body: dict[str, Any], loc: list[str]
) -> None:
    r = client.post("/api/leads", json=body, headers=admin.headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc
    ok = create(client, admin, email="b@acme.io", employee_count=2**31 - 1, annual_revenue=10**15)
    acc = account(client, admin, ok["account_id"])
    assert (acc["employee_count"], acc["annual_revenue"]) == (2**31 - 1, 10**15)


@pytest.mark.parametrize("big", [2**31, 10**20])
def test_ids_beyond_the_columns_are_client_errors_not_500(client: TestClient, admin: Actor, big: int) -> None:
    lead = create(client, admin, email="a@acme.io")
    answers = [
        client.get(f"/api/leads/{big}", headers=admin.headers),
        client.get(f"/api/accounts/{big}", headers=admin.headers),
        client.get("/api/leads", params={"owner_id": big}, headers=admin.headers),
        client.get("/api/activities", params={"lead_id": big}, headers=admin.headers),
        client.post("/api/leads", json={"email": "b@acme.io", "owner_id": big}, headers=admin.headers),
        client.post("/api/leads", json={"email": "c@acme.io", "account_id": big}, headers=admin.headers),
        client.post(f"/api/leads/{lead['id']}/merge", json={"loser_id": big}, headers=admin.headers),
        client.post(
            "/api/events", json={"events": [{"lead_id": big, "type": "call"}]}, headers=admin.headers
        ),
    ]
    for r in answers:
        assert r.status_code in (200, 404, 422), (r.request.url, r.status_code, r.text)
        if r.status_code == 200 and r.request.method == "GET":
            assert r.json()["items"] == []


def test_service_422_names_every_bad_field(client: TestClient, admin: Actor) -> None:
    r = client.post(
        "/api/leads", json={"email": "nope", "country": "Narnia", "timezone": "X/Y"}, headers=admin.headers
    )
    assert r.status_code == 422
    assert r.json()["code"] == "invalid"
    assert {tuple(d["loc"]) for d in r.json()["detail"]} == {("email",), ("country",), ("timezone",)}


# ----------------------------------------------------------------------------------- 401 / 403


def _issue(client: TestClient, admin: Actor, user_id: int, **body: Any) -> dict[str, Any]:
    r = client.post(f"/api/users/{user_id}/tokens", json=body, headers=admin.headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer lf_not-a-real-token"},
        {"Authorization": "Bearer something-else"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
    ],
)
def test_missing_or_bad_token_answers_401(client: TestClient, admin: Actor, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/api/leads"), ("POST", "/api/leads"), ("GET", "/api/leads/1")):
        r = client.request(method, path, headers=headers, json={"email": "a@acme.io"})
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json()["code"] == "unauthenticated"


def test_revoked_token_answers_401(client: TestClient, admin: Actor) -> None:
    issued = _issue(client, admin, admin.user_id, name="short-lived")
    headers = {"Authorization": f"Bearer {issued['token']}"}
    assert client.get("/api/leads", headers=headers).status_code == 200
    assert client.delete(f"/api/tokens/{issued['id']}", headers=admin.headers).status_code == 204
    assert client.get("/api/leads", headers=headers).status_code == 401
    assert client.get("/api/leads", headers=admin.headers).status_code == 200


def test_expired_token_answers_401(client: TestClient, admin: Actor) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    expired = _issue(client, admin, admin.user_id, expires_at=past)["token"]
    valid = _issue(client, admin, admin.user_id, expires_at=future)["token"]
    assert client.get("/api/leads", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    assert client.get("/api/leads", headers={"Authorization": f"Bearer {valid}"}).status_code == 200


def test_inactive_users_token_answers_401(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Gone", Role.SALES_REP)
    assert client.get("/api/leads", headers=rep.headers).status_code == 200
    with db.transaction() as s:
        s.execute(update(User).where(User.id == rep.user_id).values(active=False))
    assert client.get("/api/leads", headers=rep.headers).status_code == 401


def test_roles_without_the_right_get_403(client: TestClient, admin: Actor, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    mkt = make_user(db, "Mia", Role.MARKETING)
    mgr = make_user(db, "Max", Role.MANAGER, "east")
    form = {"name": "Contact", "redirect_url": "https://acme.io/thanks"}
    for who in (rep, mgr):
        r = client.post("/api/forms", json=form, headers=who.headers)
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "forbidden"
    lead = create(client, admin, email="ada@acme.io", origin="sales")
    r = move(client, mkt, lead["id"], "sal", evidence=NA)
    assert r.status_code == 403
    assert "sal" in r.json()["detail"]
    assert client.get(f"/api/leads/{lead['id']}", headers=admin.headers).json()["stage"] == "new"
    assert client.delete(f"/api/leads/{lead['id']}", headers=rep.headers).status_code == 403
    r = client.post(
        "/api/users", json={"name": "X", "email": "x@acme.io", "role": "admin"}, headers=mkt.headers
    )
    assert r.status_code == 403


# ----------------------------------------------------------------------------------- list: filters


def _ids(client: TestClient, actor: Actor, **params: Any) -> list[int]:
    r = client.get("/api/leads", params={"limit": 1000, **params}, headers=actor.headers)
    assert r.status_code == 200, r.text
    return [x["id"] for x in r.json()["items"]]


def test_every_list_filter(client: TestClient, admin: Actor, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    a = create(
        client, admin, email="ada@acme.io", first_name="Ada", last_name="Lovelace", company="Acme",
        source="webinar", campaign="spring", country="DE", owner_id=rep.user_id,
    )  # fmt: skip
    b = create(
        client, admin, email="bob@initech.com", first_name="Bob", last_name="Slydell", company="Initech",
        source="ads", campaign="fall", country="US", origin="sales",
    )  # fmt: skip
    c = create(client, admin, email="test@example.com", source="webinar", country="US")
    move(client, admin, b["id"], "sal", evidence=NA).raise_for_status()

    assert _ids(client, admin) == [a["id"], b["id"], c["id"]]
    assert _ids(client, admin, stage="sal") == [b["id"]]
    assert _ids(client, admin, stage=["sal", "new"]) == [a["id"], b["id"], c["id"]]
    assert _ids(client, admin, stage="mql") == []
    assert _ids(client, admin, owner_id=rep.user_id) == [a["id"]]
    assert _ids(client, admin, unassigned="true") == [b["id"], c["id"]]
    assert _ids(client, admin, unassigned="false") == [a["id"]]
    assert _ids(client, admin, source="webinar") == [a["id"], c["id"]]
    assert _ids(client, admin, campaign="fall") == [b["id"]]
    assert _ids(client, admin, account_id=a["account_id"]) == [a["id"]]
    assert _ids(client, admin, origin="sales") == [b["id"]]
    assert _ids(client, admin, origin="marketing") == [a["id"], c["id"]]
    assert _ids(client, admin, country="us") == [b["id"], c["id"]]
    assert _ids(client, admin, email=" BOB@initech.com ") == [b["id"]]
    assert _ids(client, admin, q="love") == [a["id"]]  # last name prefix, any case
    assert _ids(client, admin, q="BO") == [b["id"]]  # first name / email prefix
    assert _ids(client, admin, q="init") == [b["id"]]  # company prefix
    assert _ids(client, admin, q="test@") == [c["id"]]
    assert _ids(client, admin, q="zzz") == []
    assert _ids(client, admin, bad_candidate="true") == [c["id"]]
    assert _ids(client, admin, bad_candidate="false") == [a["id"], b["id"]]
    assert _ids(client, admin, source="webinar", country="US") == [c["id"]]


def test_search_treats_wildcards_literally(client: TestClient, admin: Actor) -> None:
    under = create(client, admin, email="j_doe@acme.io")
    create(client, admin, email="jxdoe@acme.io")
    pct = create(client, admin, email="ann@acme.io", company="100% Natural")
    create(client, admin, email="bo@acme.io", company="1000 Lakes")
    assert _ids(client, admin, q="j_") == [under["id"]]
    assert _ids(client, admin, q="100%") == [pct["id"]]
    assert _ids(client, admin, q="%") == []


def test_date_filters(client: TestClient, admin: Actor) -> None:
    a = create(client, admin, email="a@acme.io")
    b = create(client, admin, email="b@acme.io")
    assert a["created_at"] < b["created_at"]
    assert _ids(client, admin, created_after=b["created_at"]) == [b["id"]]
    assert _ids(client, admin, created_before=b["created_at"]) == [a["id"]]
    assert _ids(client, admin, created_after=a["created_at"], created_before=b["created_at"]) == [a["id"]]
    r = client.patch(f"/api/leads/{a['id']}", json={"version": 1, "first_name": "Ann"}, headers=admin.headers)
    assert _ids(client, admin, updated_after=r.json()["updated_at"]) == [a["id"]]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert _ids(client, admin, created_after=future) == []


def test_include_total_counts_every_match_not_the_page(client: TestClient, admin: Actor) -> None:
    items = [{"email": f"p{i}@acme.io", "source": "ads" if i % 3 else "seo"} for i in range(12)]
    client.post("/api/leads/batch", json={"leads": items}, headers=admin.headers).raise_for_status()
    r = client.get("/api/leads", params={"limit": 2, "include_total": "true"}, headers=admin.headers).json()
    assert (len(r["items"]), r["total"]) == (2, 12)
    r = client.get(
        "/api/leads", params={"limit": 2, "include_total": "true", "source": "seo"}, headers=admin.headers
    ).json()
    assert r["total"] == 4
    assert client.get("/api/leads", params={"limit": 2}, headers=admin.headers).json()["total"] is None


def test_list_rejects_bad_sort_limit_and_cursor(client: TestClient, admin: Actor) -> None:
    assert client.get("/api/leads?sort=email", headers=admin.headers).status_code == 422
    assert client.get("/api/leads?limit=0", headers=admin.headers).status_code == 422
    assert client.get("/api/leads?limit=1001", headers=admin.headers).status_code == 422
    r = client.get("/api/leads?cursor=garbage!", headers=admin.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["cursor"]


def test_a_cursor_of_another_sort_order_answers_422(client: TestClient, admin: Actor) -> None:
    for i in range(3):
        create(client, admin, email=f"c{i}@acme.io", last_name=f"Name{i}")
    by_date = client.get("/api/leads?limit=1&sort=created_at", headers=admin.headers).json()["next_cursor"]
    by_name = client.get("/api/leads?limit=1&sort=-last_name", headers=admin.headers).json()["next_cursor"]
    for sort, cursor in (("last_name", by_date), ("-updated_at", by_name), ("stage_changed_at", by_name)):
        r = client.get("/api/leads", params={"sort": sort, "cursor": cursor}, headers=admin.headers)
        assert r.status_code == 422, (sort, r.text)
        assert r.json()["detail"][0]["loc"] == ["cursor"]
    r = client.get("/api/leads", params={"sort": "-last_name", "cursor": by_name}, headers=admin.headers)
    assert [x["last_name"] for x in r.json()["items"]] == ["Name1", "Name0"]


# ----------------------------------------------------------------------------------- list: cursor

SORTS = ["id", "created_at", "updated_at", "last_name", "stage_changed_at"]
LAST_NAMES = [None, "Adams", "Baker", "Smith", None, "Smith", "Young", "Baker", None, "Zed"]


@pytest.fixture
def many_leads(client: TestClient, admin: Actor, db: Database) -> list[dict[str, Any]]:
    """47 leads with NULL and repeated last names and many equal timestamps."""

    items = []
    for i in range(47):
        item: dict[str, Any] = {"email": f"lead{i:02d}@acme.io"}
        name = LAST_NAMES[i % len(LAST_NAMES)]
        if name:
            item["last_name"] = name
        items.append(item)
    client.post("/api/leads/batch", json={"leads": items}, headers=admin.headers).raise_for_status()
    base = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    with db.transaction() as s:
        ids = list(s.scalars(select(Lead.id).order_by(Lead.id)))
        for n, lead_id in enumerate(ids):
            # Shuffle the timestamps against the ids, with runs of equal values.
            s.execute(
                update(Lead)
                .where(Lead.id == lead_id)
                .values(
                    created_at=base + timedelta(seconds=(n * 7) % 5),
                    updated_at=base + timedelta(minutes=(n * 3) % 4, microseconds=n % 2),
                    stage_changed_at=base - timedelta(hours=n % 3),
                )
            )
    r = client.get("/api/leads", params={"limit": 1000}, headers=admin.headers)
    rows: list[dict[str, Any]] = r.json()["items"]
    assert len(rows) == 47
    return rows


def _expected(rows: list[dict[str, Any]], sort: str, descending: bool) -> list[int]:
    def key(row: dict[str, Any]) -> tuple[int, Any, int]:
        value = row[sort]
        if sort.endswith("_at"):
            value = datetime.fromisoformat(value)
        return (0, "", row["id"]) if value is None else (1, value, row["id"])

    ordered = [r["id"] for r in sorted(rows, key=key)]
    return ordered[::-1] if descending else ordered


@pytest.mark.parametrize("sort", SORTS)
def test_cursor_walks_every_row_exactly_once_in_order(
    client: TestClient, admin: Actor, many_leads: list[dict[str, Any]], sort: str
) -> None:
    for descending in (False, True):
        expected = _expected(many_leads, sort, descending)
        for limit in (3, 10, 46):
            seen: list[int] = []
            cursor = None
            pages = 0
            while True:
                params: dict[str, Any] = {"sort": ("-" if descending else "") + sort, "limit": limit}
                if cursor:
                    params["cursor"] = cursor
                r = client.get("/api/leads", params=params, headers=admin.headers)
                assert r.status_code == 200, r.text
                page = r.json()
                assert len(page["items"]) <= limit
                seen.extend(x["id"] for x in page["items"])
                pages += 1
                cursor = page["next_cursor"]
                if cursor is None:
                    break
                assert pages <= 47, "pagination does not end"
            assert seen == expected, (sort, descending, limit)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.tuples(st.one_of(st.none(), st.sampled_from(["Adams", "Baker", "Smith"])), st.integers(0, 3)),
        max_size=16,
    ),
    limit=st.integers(1, 5),
)
def test_keyset_pages_partition_any_data_in_the_service_layer(
    db: Database, admin: Actor, rows: list[tuple[str | None, int]], limit: int
) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with db.transaction() as s:
        for table in (StageChange, AuditEntry, Lead):
            s.execute(delete(table))
        for i, (name, second) in enumerate(rows):
            data: dict[str, Any] = {"email": f"h{i}@acme.io"}
            if name is not None:
                data["last_name"] = name
            lead = svc.create_lead(s, admin.principal, data).lead
            lead.created_at = lead.updated_at = lead.stage_changed_at = base + timedelta(seconds=second)
    with db.transaction() as s:
        leads = list(s.scalars(select(Lead)))
    for sort in SORTS:

        def key(lead: Lead, sort: str = sort) -> tuple[int, Any, int]:
            value = getattr(lead, sort)
            return (0, "", lead.id) if value is None else (1, value, lead.id)

        for descending in (False, True):
            expected = [x.id for x in sorted(leads, key=key, reverse=descending)]
            seen: list[int] = []
            cursor = None
            for _ in range(len(rows) + 2):
                with db.transaction() as s:
                    page = svc.list_leads(
                        s, admin.principal, svc.LeadFilter(), sort=sort, descending=descending,
                        cursor=cursor, limit=limit,
                    )  # fmt: skip
                assert len(page.items) <= limit
                seen += [x.id for x in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert seen == expected, (sort, descending)


def test_cursor_is_stable_when_rows_are_added_meanwhile(client: TestClient, admin: Actor) -> None:
    for i in range(6):
        create(client, admin, email=f"s{i}@acme.io")
    first = client.get("/api/leads", params={"limit": 3}, headers=admin.headers).json()
    create(client, admin, email="late@acme.io")
    rest = client.get(
        "/api/leads", params={"limit": 10, "cursor": first["next_cursor"]}, headers=admin.headers
    ).json()
    ids = [x["id"] for x in first["items"] + rest["items"]]
    assert ids == sorted(ids) and len(ids) == 7


# ----------------------------------------------------------------------------------- PATCH


def test_patch_with_body_version_bumps_the_version(client: TestClient, admin: Actor) -> None:
    lead = create(client, admin, email="ada@acme.io", first_name="Ada", job_title="Engineer")
    r = client.patch(
        f"/api/leads/{lead['id']}",
        json={"version": 1, "job_title": "CTO", "last_name": "LOVELACE", "reason": "LinkedIn"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["version"], out["job_title"], out["last_name"], out["seniority"]) == (
        2,
        "CTO",
        "Lovelace",
        "executive",
    )
    assert r.headers["ETag"] == '"2"'
    assert out["updated_at"] > lead["updated_at"]
    entry = audit(client, admin, lead["id"])[-1]
    assert entry["action"] == "update"
    assert entry["reason"] == "LinkedIn"
    assert entry["before"] == {"job_title": "Engineer", "last_name": None, "seniority": None}
    assert entry["after"] == {"job_title": "CTO", "last_name": "Lovelace", "seniority": "executive"}


@pytest.mark.parametrize("if_match", ['"1"', "1", 'W/"1"'])
def test_patch_with_if_match(client: TestClient, admin: Actor, if_match: str) -> None:
    lead = create(client, admin, email="ada@acme.io")
    r = client.patch(
        f"/api/leads/{lead['id']}",
        json={"first_name": "Ada"},
        headers={**admin.headers, "If-Match": if_match},
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2


def test_stale_version_answers_409_and_changes_nothing(client: TestClient, admin: Actor) -> None:
    lead = create(client, admin, email="ada@acme.io")
    url = f"/api/leads/{lead['id']}"
    assert (
        client.patch(url, json={"version": 1, "first_name": "Ada"}, headers=admin.headers).status_code == 200
    )
    r = client.patch(url, json={"version": 1, "first_name": "Eve"}, headers=admin.headers)
    assert r.status_code == 409
    assert r.json()["code"] == "stale_version"
    assert r.json()["current_version"] == 2
    r = client.patch(url, json={"first_name": "Eve"}, headers={**admin.headers, "If-Match": '"1"'})
    assert r.status_code == 409
    now = client.get(url, headers=admin.headers).json()
    assert (now["first_name"], now["version"]) == ("Ada", 2)


def test_missing_or_bad_version_answers_422(client: TestClient, admin: Actor) -> None:
    lead = create(client, admin, email="ada@acme.io")
    r = client.patch(f"/api/leads/{lead['id']}", json={"first_name": "Ada"}, headers=admin.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["version"]
    r = client.patch(
        f"/api/leads/{lead['id']}", json={"first_name": "Ada"}, headers={**admin.headers, "If-Match": "abc"}
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["header", "If-Match"]


def test_concurrent_writers_cannot_both_win(db: Database, admin: Actor) -> None:
    """Both writers read version 1; the one committing second is refused even though its own
    copy of the lead still says version 1 (compare-and-set in SQL)."""

    with db.transaction() as s:
        lead_id = svc.create_lead(s, admin.principal, {"email": "ada@acme.io"}).lead.id
    with db.sessions() as slow:
        stale = svc.get_lead(slow, admin.principal, lead_id)
        assert stale.version == 1
        with db.transaction() as fast:
            svc.update_lead(fast, admin.principal, lead_id, {"first_name": "Fast"}, expected_version=1)
        with pytest.raises(StaleVersion):
            svc.update_lead(slow, admin.principal, lead_id, {"first_name": "Slow"}, expected_version=1)
        slow.rollback()
    with db.transaction() as s:
        lead = svc.get_lead(s, admin.principal, lead_id)
        assert (lead.first_name, lead.version) == ("Fast", 2)


def test_patch_without_a_change_keeps_the_version(client: TestClient, admin: Actor) -> None:
    lead = create(client, admin, email="ada@acme.io", first_name="Ada")
    r = client.patch(
        f"/api/leads/{lead['id']}", json={"version": 1, "first_name": "ada"}, headers=admin.headers
    )
    assert r.status_code == 200
    assert r.json()["version"] == 1
    assert [a["action"] for a in audit(client, admin, lead["id"])] == ["create"]


def test_patch_of_attributes_is_audited_and_a_no_op_keeps_the_version(
    client: TestClient, admin: Actor
) -> None:
    lead = create(client, admin, email="ada@acme.io", attributes={"plan": "free", "seats": 1})
    url = f"/api/leads/{lead['id']}"
    r = client.patch(
        url, json={"version": 1, "attributes": {"plan": "pro", "seats": 1}}, headers=admin.headers
    )
    assert (r.json()["attributes"], r.json()["version"]) == ({"plan": "pro", "seats": 1}, 2)
    entry = audit(client, admin, lead["id"])[-1]
    assert entry["before"] == {"attributes": {"plan": "free", "seats": 1}}
    assert entry["after"] == {"attributes": {"plan": "pro", "seats": 1}}
    r = client.patch(
        url, json={"version": 2, "attributes": {"seats": 1, "plan": "pro"}}, headers=admin.headers
    )
    assert r.json()["version"] == 2
    assert len(audit(client, admin, lead["id"])) == 2
    r = client.patch(url, json={"version": 2, "attributes": None}, headers=admin.headers)
    assert (r.json()["attributes"], r.json()["version"]) == (None, 3)


def test_patch_validation(client: TestClient, admin: Actor) -> None:
    a = create(client, admin, email="ada@acme.io")
    b = create(client, admin, email="bob@acme.io")
    url = f"/api/leads/{b['id']}"
    r = client.patch(url, json={"version": 1, "email": "ADA@acme.io"}, headers=admin.headers)
    assert r.status_code == 409
    assert r.json()["lead_id"] == a["id"]
    r = client.patch(url, json={"version": 1, "email": None}, headers=admin.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["email"]
    r = client.patch(url, json={"version": 1, "stage": "sql"}, headers=admin.headers)
    assert r.status_code == 422  # stages move only through transitions
    r = client.patch(url, json={"version": 1, "country": "Atlantis"}, headers=admin.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["country"]
    assert client.get(url, headers=admin.headers).json()["version"] == 1
    assert client.patch("/api/leads/999", json={"version": 1}, headers=admin.headers).status_code == 404


def test_patch_assigns_and_reassigns_the_account(client: TestClient, admin: Actor, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    lead = create(client, admin, email="ada@gmail.com")
    assert lead["account_id"] is None
    r = client.patch(
        f"/api/leads/{lead['id']}",
        json={"version": 1, "email": "ada@initech.com", "owner_id": rep.user_id},
        headers=admin.headers,
    )
    out = r.json()
    assert out["account_id"] is not None and out["owner_id"] == rep.user_id
    entry = audit(client, admin, lead["id"])[-1]
    assert set(entry["after"]) == {"email", "account_id", "owner_id"}


# ----------------------------------------------------------------------------------- transitions


def test_full_funnel_of_a_marketing_lead(client: TestClient, admin: Actor) -> None:
    lead = create(client, admin, email="ada@acme.io")
    steps = [("mql", MR), ("sal", NA), ("sql", DC), ("opportunity", OPP), ("customer", WON)]
    version = 1
    for stage, ev in steps:
        r = move(client, admin, lead["id"], stage, evidence=ev, reason=f"to {stage}", version=version)
        assert r.status_code == 200, r.text
        assert r.json()["stage"] == stage
        assert r.json()["version"] == version + 1
        version += 1
    t = client.get(f"/api/leads/{lead['id']}/transitions", headers=admin.headers).json()
    assert t["stage"] == "customer"
    assert t["legal"] == []
    assert [(h["from_stage"], h["to_stage"]) for h in t["history"]] == [
        (None, "new"),
        ("new", "mql"),
        ("mql", "sal"),
        ("sal", "sql"),
        ("sql", "opportunity"),
        ("opportunity", "customer"),
    ]
    assert t["history"][2]["evidence"]["kind"] == "needs_assessment"
    assert t["history"][2]["evidence"]["answers"] == {"need": "pipeline visibility"}
    assert t["history"][3]["reason"] == "to sql"
    moves = [a for a in audit(client, admin, lead["id"]) if a["action"] == "stage_change"]
    assert [(m["before"]["stage"], m["after"]["stage"]) for m in moves] == [
        ("new", "mql"),
        ("mql", "sal"),
        ("sal", "sql"),
        ("sql", "opportunity"),
        ("opportunity", "customer"),
    ]
    assert moves[0]["evidence"] == {"kind": "marketing_review", "note": "met at the booth"}
    assert moves[4]["evidence"]["amount"] == 12000
    assert moves[4]["actor_id"] == admin.user_id


def test_illegal_move_answers_409_listing_the_legal_moves(client: TestClient, admin: Actor) -> None:
    lead = create(client, admin, email="ada@acme.io")
    r = move(client, admin, lead["id"], "sql", evidence=DC)
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "illegal_transition"
    assert (body["current"], body["target"]) == ("new", "sql")
    assert set(body["legal"]) == {"cold", "mql", "nurture", "unqualified", "bad"}
    after = client.get(f"/api/leads/{lead['id']}", headers=admin.headers).json()
    assert (after["stage"], after["version"]) == ("new", 1)


@pytest.mark.parametrize(
    ("to", "body", "required"),
    [
        ("mql", {}, ["score_threshold", "marketing_review"]),
        ("mql", {"evidence": NA}, ["score_threshold", "marketing_review"]),
        ("nurture", {}, ["reason"]),
        ("nurture", {"reason": "   "}, ["reason"]),
        ("unqualified", {}, ["reason"]),
        ("bad", {"reason": "typo"}, ["bad_reason"]),
    ],
)
def test_missing_evidence_answers_409_with_required(
    client: TestClient, admin: Actor, to: str, body: dict[str, Any], required: list[str]
) -> None:
    lead = create(client, admin, email="ada@acme.io")
    r = move(client, admin, lead["id"], to, **body)
    assert r.status_code == 409, r.text
    out = r.json()
    assert out["code"] == "missing_evidence"
    assert out["required"] == required
    assert to in out["legal"]
    assert client.get(f"/api/leads/{lead['id']}", headers=admin.headers).json()["stage"] == "new"


def test_side_states_keep_their_reasons(client: TestClient, admin: Actor) -> None:
    lead = create(client, admin, email="ada@acme.io")
    r = move(client, admin, lead["id"], "bad", bad_reason="competitor", reason="works at a rival")
    out = r.json()
    assert (out["stage"], out["bad_reason"], out["status_reason"]) == (
        "bad",
        "competitor",
        "works at a rival",
    )
    t = client.get(f"/api/leads/{lead['id']}/transitions", headers=admin.headers).json()
    assert [x["to"] for x in t["legal"]] == ["recycled"]
    assert t["legal"][0]["requires_reason"] is True
    r = move(client, admin, lead["id"], "recycled", reason="new job")
    assert (r.json()["stage"], r.json()["bad_reason"]) == ("recycled", None)


def test_marketing_lead_cannot_skip_mql_but_sales_lead_can(client: TestClient, admin: Actor) -> None:
    mkt_lead = create(client, admin, email="ada@acme.io")
    r = move(client, admin, mkt_lead["id"], "sal", evidence=NA)
    assert r.status_code == 409
    assert r.json()["code"] == "illegal_transition"
    assert "mql" in r.json()["legal"] and "sal" not in r.json()["legal"]
    sales_lead = create(client, admin, email="bob@acme.io", origin="sales")
    assert move(client, admin, sales_lead["id"], "sal").json()["code"] == "missing_evidence"
    r = move(client, admin, sales_lead["id"], "sal", evidence=NA)
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "sal"
    refused = {**NA, "qualified": False}
    other = create(client, admin, email="cy@acme.io", origin="sales")
    assert move(client, admin, other["id"], "sal", evidence=refused).json()["code"] == "missing_evidence"


def test_sales_lead_may_be_created_at_sal_with_an_assessment(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    r = client.post("/api/leads", json={"email": "ada@acme.io", "stage": "sal"}, headers=rep.headers)
    assert r.status_code == 409 and r.json()["required"] == ["needs_assessment"]
    lead = create(client, rep, email="ada@acme.io", stage="sal", evidence=NA, reason="inbound call")
    assert (lead["stage"], lead["origin"]) == ("sal", "sales")
    hist = client.get(f"/api/leads/{lead['id']}/transitions", headers=rep.headers).json()["history"]
    assert hist[0]["to_stage"] == "sal" and hist[0]["evidence"]["kind"] == "needs_assessment"
    r = client.post(
        "/api/leads", json={"email": "bo@acme.io", "stage": "sql", "evidence": DC}, headers=rep.headers
    )
    assert r.status_code == 409 and r.json()["code"] == "illegal_transition"


def test_transition_with_a_stale_version_answers_409(client: TestClient, admin: Actor) -> None:
    lead = create(client, admin, email="ada@acme.io")
    client.patch(f"/api/leads/{lead['id']}", json={"version": 1, "first_name": "A"}, headers=admin.headers)
    r = move(client, admin, lead["id"], "mql", evidence=MR, version=1)
    assert r.status_code == 409
    assert r.json()["code"] == "stale_version"
    assert client.get(f"/api/leads/{lead['id']}", headers=admin.headers).json()["stage"] == "new"


def test_transitions_view_lists_legal_moves_with_their_rules(
    client: TestClient, admin: Actor, db: Database
) -> None:
    lead = create(client, admin, email="ada@acme.io", origin="sales")
    t = client.get(f"/api/leads/{lead['id']}/transitions", headers=admin.headers).json()
    legal = {x["to"]: x for x in t["legal"]}
    assert set(legal) == {"cold", "mql", "sal", "nurture", "unqualified", "bad"}
    assert legal["sal"]["requires_evidence"] == ["needs_assessment"]
    assert legal["bad"]["requires_bad_reason"] is True
    assert legal["cold"] == {
        "to": "cold",
        "requires_evidence": [],
        "requires_reason": False,
        "requires_bad_reason": False,
    }
    mkt = make_user(db, "Mia", Role.MARKETING)
    seen_by_marketing = client.get(f"/api/leads/{lead['id']}/transitions", headers=mkt.headers).json()
    assert {x["to"] for x in seen_by_marketing["legal"]} == {"cold", "mql", "nurture", "unqualified", "bad"}
    assert client.get("/api/leads/999/transitions", headers=admin.headers).status_code == 404


def test_lifecycle_endpoint_describes_the_machine(client: TestClient) -> None:
    r = client.get("/api/lifecycle")
    assert r.status_code == 200
    stages = {s["stage"]: s for s in r.json()}
    assert set(stages) == {
        "new", "cold", "mql", "sal", "sql", "opportunity", "customer",
        "nurture", "unqualified", "bad", "recycled",
    }  # fmt: skip
    assert stages["customer"]["next"] == {"marketing": [], "sales": []}
    assert "sal" in stages["new"]["next"]["sales"]
    assert "sal" not in stages["new"]["next"]["marketing"]
    assert stages["sql"]["requires_evidence"] == ["discovery_call"]
    assert stages["unqualified"]["requires_reason"] is True


# ----------------------------------------------------------------------------------- erase


def test_delete_erases_the_lead_and_redacts_its_audit(client: TestClient, admin: Actor, db: Database) -> None:
    lead = create(client, admin, email="ada@acme.io", first_name="Ada", phone="+49 30 1234567")
    keep = create(client, admin, email="bob@acme.io")
    move(client, admin, lead["id"], "mql", evidence=MR).raise_for_status()
    client.post(
        f"/api/leads/{lead['id']}/activities", json={"type": "call"}, headers=admin.headers
    ).raise_for_status()
    client.post(
        "/api/events", json={"events": [{"lead_id": keep["id"], "type": "page_view"}]}, headers=admin.headers
    ).raise_for_status()
    r = client.delete(f"/api/leads/{lead['id']}", params={"reason": "GDPR request"}, headers=admin.headers)
    assert r.status_code == 204
    assert client.get(f"/api/leads/{lead['id']}", headers=admin.headers).status_code == 404
    assert client.get(f"/api/leads/{lead['id']}/audit", headers=admin.headers).status_code == 404
    assert client.delete(f"/api/leads/{lead['id']}", headers=admin.headers).status_code == 404
    with db.transaction() as s:
        assert s.get(Lead, lead["id"]) is None
        assert s.scalar(select(func.count()).where(Activity.lead_id == lead["id"])) == 0
        assert s.scalar(select(func.count()).where(StageChange.lead_id == lead["id"])) == 0
        entries = list(
            s.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "lead", AuditEntry.entity_id == lead["id"])
                .order_by(AuditEntry.id)
            )
        )
        # The other lead keeps its history.
        assert s.scalar(select(func.count()).where(Activity.lead_id == keep["id"])) == 1
    assert [e.action for e in entries] == ["create", "stage_change", "erase"]
    for e in entries[:-1]:
        assert (e.before, e.after, e.evidence, e.reason) == (None, None, None, "[erased]")
    assert (entries[-1].reason, entries[-1].actor_id) == ("GDPR request", admin.user_id)
    dump = repr([(e.before, e.after, e.evidence, e.reason) for e in entries])
    assert "ada" not in dump.lower() and "+49" not in dump
    # The address is free again.
    assert create(client, admin, email="ada@acme.io")["id"] != lead["id"]


@pytest.mark.parametrize("value", ["DE", "de", "DEU", "Germany", "germany"])
def test_country_filter_takes_codes_and_names(client: TestClient, admin: Actor, value: str) -> None:
    de = create(client, admin, email="hans@firma.de", country="Germany")
    create(client, admin, email="ann@corp.fr", country="FR")
    got = client.get("/api/leads", params={"country": value}, headers=admin.headers).json()
    assert [i["id"] for i in got["items"]] == [de["id"]]


def test_an_unknown_country_filter_is_a_422_naming_the_field(client: TestClient, admin: Actor) -> None:
    r = client.get("/api/leads", params={"country": "Atlantis"}, headers=admin.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "country"
    r = client.get("/api/accounts", params={"country": "Atlantis"}, headers=admin.headers)
    assert r.status_code == 422
