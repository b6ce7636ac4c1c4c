"""Public web-to-lead forms: management by marketing and admins, HTML and JSON submissions, the
honeypot, repeat submissions and the per-IP rate limit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.config import get_settings
from leadflow.db.base import Database
from leadflow.leads import forms_api
from leadflow.leads.models import Activity, Lead, WebForm

THANKS = "https://acme.io/thank-you"


@pytest.fixture(autouse=True)
def fresh_limiter() -> Iterator[None]:
    forms_api._limiter.storage.reset()
    yield
    forms_api._limiter.storage.reset()


def new_form(client: TestClient, actor: Actor, **body: Any) -> dict[str, Any]:
    r = client.post(
        "/api/forms", json={"name": "Contact us", "redirect_url": THANKS, **body}, headers=actor.headers
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def submit(client: TestClient, key: str, data: dict[str, str]) -> Any:
    return client.post(f"/forms/{key}", data=data, follow_redirects=False)


def counts(db: Database) -> tuple[int, int]:
    with db.transaction() as s:
        leads = s.scalar(select(func.count()).select_from(Lead))
        acts = s.scalar(select(func.count()).select_from(Activity))
    return int(leads or 0), int(acts or 0)


def the_lead(client: TestClient, admin: Actor, email: str) -> dict[str, Any]:
    items = client.get("/api/leads", params={"email": email}, headers=admin.headers).json()["items"]
    assert len(items) == 1, items
    out: dict[str, Any] = items[0]
    return out


def form_submits(client: TestClient, admin: Actor, lead_id: int) -> list[dict[str, Any]]:
    r = client.get(f"/api/leads/{lead_id}/activities", params={"type": "form_submit"}, headers=admin.headers)
    out: list[dict[str, Any]] = r.json()["items"]
    return out


# ----------------------------------------------------------------------------------- management


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MARKETING])
def test_admins_and_marketing_create_forms(client: TestClient, db: Database, role: Role) -> None:
    who = make_user(db, "Fiona", role)
    form = new_form(client, who, source="landing_page", campaign="spring-26")
    assert form["post_url"] == f"/forms/{form['key']}"
    assert len(form["key"]) >= 12
    assert (form["source"], form["campaign"], form["active"]) == ("landing_page", "spring-26", True)
    listed = client.get("/api/forms", headers=who.headers).json()
    assert [(f["id"], f["post_url"]) for f in listed] == [(form["id"], form["post_url"])]


@pytest.mark.parametrize("role", [Role.SALES_REP, Role.MANAGER])
def test_other_roles_may_not_manage_forms(client: TestClient, db: Database, role: Role) -> None:
    who = make_user(db, "Sam", role, "east")
    r = client.post("/api/forms", json={"name": "X", "redirect_url": THANKS}, headers=who.headers)
    assert r.status_code == 403
    assert client.get("/api/forms", headers=who.headers).status_code == 403
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(WebForm)) == 0


def test_form_validation(client: TestClient, admin: Actor) -> None:
    for url in ("/thanks", "ftp://acme.io/x", "javascript:alert(1)"):
        r = client.post("/api/forms", json={"name": "X", "redirect_url": url}, headers=admin.headers)
        assert r.status_code == 422, url
        assert r.json()["detail"][0]["loc"] == ["redirect_url"]
    r = client.post("/api/forms", json={"name": "   ", "redirect_url": THANKS}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["name"]
    r = client.post("/api/forms", json={"name": "X", "redirect_url": THANKS, "x": 1}, headers=admin.headers)
    assert r.status_code == 422
    r = client.post(
        "/api/forms", json={"name": "X", "redirect_url": THANKS, "owner_id": 999}, headers=admin.headers
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["owner_id"]
    assert client.get("/api/forms", headers=admin.headers).json() == []
    assert client.post("/api/forms", json={"name": "X", "redirect_url": THANKS}).status_code == 401


# ----------------------------------------------------------------------------------- submissions


def test_html_form_post_redirects_and_captures_the_lead(
    client: TestClient, admin: Actor, db: Database
) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    form = new_form(client, admin, source="landing_page", campaign="spring", owner_id=rep.user_id)
    r = submit(
        client,
        form["key"],
        {
            "firstname": "ADA",
            "LastName": "lovelace",
            "email": "Ada@Acme.io",
            "phone_number": "+49 30 1234567",
            "title": "CTO",
            "consent": "on",
            "message": "Call me maybe",
        },
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == THANKS
    lead = the_lead(client, admin, "ada@acme.io")
    assert (lead["first_name"], lead["last_name"], lead["job_title"], lead["seniority"]) == (
        "Ada",
        "Lovelace",
        "CTO",
        "executive",
    )
    assert (lead["phone"], lead["timezone"], lead["consent"]) == ("+49301234567", "Europe/Berlin", "granted")
    assert (lead["source"], lead["campaign"], lead["owner_id"]) == ("landing_page", "spring", rep.user_id)
    assert (lead["origin"], lead["stage"]) == ("marketing", "new")
    assert lead["account_id"] is not None
    (act,) = form_submits(client, admin, lead["id"])
    assert act["source"] == "web_form"
    assert act["properties"]["form"] == "Contact us"
    assert act["properties"]["form_key"] == form["key"]
    assert act["properties"]["message"] == "Call me maybe"
    assert act["properties"]["ip"]
    assert lead["last_activity_at"] is not None
    with db.transaction() as s:
        labels = set(s.scalars(select(AuditEntry.actor_label).where(AuditEntry.entity_type == "lead")))
    assert labels == {f"web form 'Contact us' ({form['key']})"}


def test_json_body_is_accepted_too(client: TestClient, admin: Actor) -> None:
    form = new_form(client, admin)
    r = client.post(
        f"/forms/{form['key']}",
        json={"email": "bo@initech.com", "first_name": "Bo"},
        headers={"Accept": "application/json"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == THANKS
    lead = the_lead(client, admin, "bo@initech.com")
    assert r.json() == {"redirect_url": THANKS, "lead_id": lead["id"]}
    assert lead["source"] == "web_form"
    r = client.post(f"/forms/{form['key']}", json={"email": "cy@initech.com"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == THANKS
    the_lead(client, admin, "cy@initech.com")
    r = client.post(f"/forms/{form['key']}", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = client.post(f"/forms/{form['key']}", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_filled_honeypot_redirects_the_same_and_stores_nothing(
    client: TestClient, admin: Actor, db: Database
) -> None:
    form = new_form(client, admin)
    before = counts(db)
    r = submit(client, form["key"], {"email": "bot@spam.io", "website_url": "http://spam.io"})
    assert r.status_code == 303 and r.headers["location"] == THANKS
    r = client.post(
        f"/forms/{form['key']}",
        json={"email": "bot2@spam.io", "website_url": "x"},
        headers={"Accept": "application/json"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.json()["lead_id"] is None
    assert counts(db) == before
    # An empty honeypot is what people send.
    assert submit(client, form["key"], {"email": "human@acme.io", "website_url": ""}).status_code == 303
    assert counts(db) == (before[0] + 1, before[1] + 1)


def test_unknown_or_inactive_form_answers_404(client: TestClient, admin: Actor, db: Database) -> None:
    assert submit(client, "no-such-form", {"email": "a@acme.io"}).status_code == 404
    form = new_form(client, admin)
    with db.transaction() as s:
        s.execute(update(WebForm).where(WebForm.id == form["id"]).values(active=False))
    assert submit(client, form["key"], {"email": "a@acme.io"}).status_code == 404
    assert counts(db) == (0, 0)


def test_repeat_submission_updates_rather_than_duplicates(client: TestClient, admin: Actor) -> None:
    form = new_form(client, admin)
    assert submit(client, form["key"], {"email": "ada@acme.io", "first_name": "Ada"}).status_code == 303
    r = submit(
        client, form["key"], {"email": "ADA@acme.io", "first_name": "Someone Else", "company": "Acme Ltd"}
    )
    assert r.status_code == 303
    lead = the_lead(client, admin, "ada@acme.io")
    assert (lead["first_name"], lead["company"], lead["version"]) == ("Ada", "Acme Ltd", 2)
    assert len(form_submits(client, admin, lead["id"])) == 2
    total = client.get("/api/leads", params={"include_total": "true"}, headers=admin.headers).json()["total"]
    assert total == 1


def test_public_fields_cannot_set_ownership_stage_or_source(
    client: TestClient, admin: Actor, db: Database
) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    form = new_form(client, admin, source="landing_page")
    r = submit(
        client,
        form["key"],
        {
            "email": "ada@acme.io",
            "owner_id": str(rep.user_id),
            "stage": "customer",
            "origin": "sales",
            "source": "partner",
            "account_id": "1",
        },
    )
    assert r.status_code == 303
    lead = the_lead(client, admin, "ada@acme.io")
    assert (lead["owner_id"], lead["stage"], lead["origin"], lead["source"]) == (
        None,
        "new",
        "marketing",
        "landing_page",
    )
    props = form_submits(client, admin, lead["id"])[0]["properties"]
    assert props["stage"] == "customer"  # kept as submitted context, not applied


def test_bad_submissions_answer_422_and_store_nothing(client: TestClient, admin: Actor, db: Database) -> None:
    form = new_form(client, admin)
    r = submit(client, form["key"], {"email": "not-an-address"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["email"]
    r = submit(client, form["key"], {"first_name": "Ada"})
    assert r.status_code == 422
    assert counts(db) == (0, 0)


def test_values_too_big_for_the_database_answer_422(client: TestClient, admin: Actor, db: Database) -> None:
    form = new_form(client, admin)
    r = submit(client, form["key"], {"email": "a@acme.io", "phone": "+1 " + "5" * 70})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["phone"]
    r = submit(client, form["key"], {"email": "b@acme.io", "employee_count": "1e12"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["employee_count"]
    assert counts(db) == (0, 0)


def test_per_ip_rate_limit(
    client: TestClient, admin: Actor, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_FORM_RATE_LIMIT", "3/minute")
    get_settings.cache_clear()
    try:
        form = new_form(client, admin)
        for i in range(3):
            assert submit(client, form["key"], {"email": f"p{i}@acme.io"}).status_code == 303
        r = submit(client, form["key"], {"email": "p3@acme.io"})
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "60"
        # Bots hitting unknown forms and honeypots count too.
        assert submit(client, "nope", {"email": "x@acme.io"}).status_code == 429
        assert counts(db)[0] == 3
        # The management API is not rate limited.
        assert client.get("/api/forms", headers=admin.headers).status_code == 200
    finally:
        monkeypatch.delenv("LEADFLOW_FORM_RATE_LIMIT")
        get_settings.cache_clear()
