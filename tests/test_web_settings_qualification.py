"""Settings → Qualification (questionnaires, frameworks) and Settings → Assignment rules through
the web UI, on the qualification and assignment services (rights as the API's)."""

from __future__ import annotations

import json
import re

from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_web_server import _lead, sign_in

from leadflow.assignment.models import AssignmentRule, RepCapacity
from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.db.base import Database
from leadflow.qualification.models import FrameworkDef, QuestionnaireDef

CUSTOM_FW = {
    "key": "spin",
    "name": "SPIN",
    "criteria": [
        {"key": "situation", "label": "Situation", "questions": ["How do you work today?"]},
        {"key": "problem", "label": "Problem", "questions": ["What goes wrong?"], "stakeholder": False},
    ],
}


def test_frameworks_and_questionnaires_are_viewed_and_edited(
    client: TestClient, db: Database, admin: Actor
) -> None:
    csrf = sign_in(client, db, admin)
    page = client.get("/app/settings/qualification")
    assert page.status_code == 200
    for text in ("BANT", "MEDDIC", "CHAMP", "Economic buyer", "What are your current goals or priorities?"):
        assert text in page.text
    assert re.search(r'href="/forms/assessments/[\w-]+"', page.text)

    # A custom framework: an error in the document names its place, nothing is stored.
    broken = {**CUSTOM_FW, "criteria": [{**CUSTOM_FW["criteria"][0], "min_rating": 9}]}
    r = client.post(
        "/app/settings/qualification/frameworks",
        data={"definition": json.dumps(broken), "form_id": "new", "csrf_token": csrf},
    )
    assert r.status_code == 422
    assert "criteria.0.min_rating: must be an integer from 0 to 3" in r.text
    assert "&#34;situation&#34;" in r.text  # the typed document is kept
    bad_json = client.post(
        "/app/settings/qualification/frameworks",
        data={"definition": "{nope", "form_id": "new", "csrf_token": csrf},
    )
    assert bad_json.status_code == 422 and "not valid JSON" in bad_json.text
    ok = client.post(
        "/app/settings/qualification/frameworks",
        data={
            "definition": json.dumps(CUSTOM_FW),
            "form_id": "new",
            "make_default": "true",
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303
    with db.transaction() as s:
        spin = s.scalars(select(FrameworkDef).where(FrameworkDef.key == "spin")).one()
        assert spin.is_default
        assert s.scalar(select(AuditEntry.id).where(AuditEntry.entity_type == "framework")) is not None
    # Editing with a stale version is refused; the current one saves v2.
    edited = {**CUSTOM_FW, "name": "SPIN selling"}
    stale = client.post(
        "/app/settings/qualification/frameworks",
        data={"definition": json.dumps(edited), "version": "7", "form_id": "spin", "csrf_token": csrf},
    )
    assert stale.status_code == 409
    assert (
        client.post(
            "/app/settings/qualification/frameworks",
            data={"definition": json.dumps(edited), "version": "1", "form_id": "spin", "csrf_token": csrf},
            follow_redirects=False,
        ).status_code
        == 303
    )
    # The default framework now drives the lead page's discovery call.
    lead_id = _lead(db, admin, "ada@example.org", origin="sales")
    r = client.post(
        f"/app/leads/{lead_id}/needs-assessment",
        data={
            "answers.need": "visibility",
            "answers.solution": "pro",
            "answers.timeline": "now",
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    lead_page = client.get(f"/app/leads/{lead_id}").text
    assert "Call script (SPIN selling)" in lead_page and "What goes wrong?" in lead_page

    # A new questionnaire.
    doc = {
        "key": "event",
        "name": "Event follow-up",
        "questions": [
            {"key": "need", "label": "What did you come to see?", "type": "text", "required": True}
        ],
    }
    r = client.post(
        "/app/settings/qualification/questionnaires",
        data={"definition": json.dumps(doc), "form_id": "new", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with db.transaction() as s:
        assert (
            s.scalars(select(QuestionnaireDef.name).where(QuestionnaireDef.key == "event")).one()
            == "Event follow-up"
        )
    assert "What did you come to see?" in client.get("/app/settings/qualification").text
    # A preset is added back / reset in one click.
    r = client.post(
        "/app/settings/qualification/frameworks",
        data={"preset": "champ", "form_id": "preset", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_a_rep_sees_qualification_settings_read_only(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    csrf = sign_in(client, db, rep)
    page = client.get("/app/settings/qualification")
    assert page.status_code == 200 and "BANT" in page.text and "New framework" not in page.text
    r = client.post(
        "/app/settings/qualification/frameworks",
        data={"definition": json.dumps(CUSTOM_FW), "csrf_token": csrf},
    )
    assert r.status_code == 403
    assert client.get("/app/settings/assignment").status_code == 200
    assert (
        client.post(
            "/app/settings/assignment/rules",
            data={"name": "x", "strategy": "account_owner", "csrf_token": csrf},
        ).status_code
        == 403
    )


def _rules(db: Database) -> list[tuple[str, int, bool]]:
    with db.transaction() as s:
        rows = s.scalars(select(AssignmentRule).order_by(AssignmentRule.position)).all()
        return [(r.name, r.position, r.active) for r in rows]


def test_assignment_rules_are_created_edited_reordered_and_toggled(client: TestClient, db: Database) -> None:
    manager = make_user(db, "Mona", Role.MANAGER, "EMEA")
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    csrf = sign_in(client, db, manager)
    page = client.get("/app/settings/assignment")
    assert page.status_code == 200 and "Account owner" in page.text and "New rule" in page.text

    form = {
        "name": "DACH",
        "strategy": "round_robin",
        "team": "EMEA",
        "match.countries": "DE, Austria",
        "csrf_token": csrf,
    }
    r = client.post("/app/settings/assignment/rules", data=form)
    assert r.status_code == 422 and "use ISO 3166 two-letter country codes" in r.text
    assert 'value="DE, Austria"' in r.text
    r = client.post(
        "/app/settings/assignment/rules", data={**form, "strategy": "user", "match.countries": "DE"}
    )
    assert r.status_code == 422 and "a &#39;user&#39; rule names the rep&#39;s user id" in r.text
    r = client.post(
        "/app/settings/assignment/rules",
        data={**form, "match.countries": "de, at, ch"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    r = client.post(
        "/app/settings/assignment/rules",
        data={
            "name": "Rita's banks",
            "strategy": "user",
            "user_id": str(rep.user_id),
            "match.industries": "Banking",
            "position": "1",
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert _rules(db) == [("Rita's banks", 1, True), ("Account owner", 2, True), ("DACH", 3, True)]
    with db.transaction() as s:
        ids = {r.name: r.id for r in s.scalars(select(AssignmentRule))}
        dach = s.get(AssignmentRule, ids["DACH"])
        assert dach is not None and dach.definition["match"]["countries"] == ["AT", "CH", "DE"]

    assert (
        client.post(
            f"/app/settings/assignment/rules/{ids['DACH']}/move", data={"direction": "up", "csrf_token": csrf}
        ).status_code
        == 200
    )
    assert [n for n, _, _ in _rules(db)] == ["Rita's banks", "DACH", "Account owner"]
    r = client.post(
        f"/app/settings/assignment/rules/{ids['DACH']}/toggle", data={"version": "1", "csrf_token": csrf}
    )
    assert r.status_code == 200  # followed to the page
    assert ("DACH", 2, False) in _rules(db)
    r = client.post(
        f"/app/settings/assignment/rules/{ids['DACH']}",
        data={
            "name": "DACH + NL",
            "strategy": "round_robin",
            "team": "EMEA",
            "match.countries": "DE, AT, CH, NL",
            "active": "yes",
            "version": "2",
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert ("DACH + NL", 2, True) in _rules(db)
    r = client.post(
        f"/app/settings/assignment/rules/{ids['DACH']}",
        data={"name": "", "strategy": "round_robin", "team": "EMEA", "version": "3", "csrf_token": csrf},
    )
    assert r.status_code == 422 and "is required (at most 200 characters)" in r.text
    assert (
        client.post(
            f"/app/settings/assignment/capacity/{rep.user_id}",
            data={"max_open_leads": "25", "csrf_token": csrf},
        ).status_code
        == 200
    )
    with db.transaction() as s:
        cap = s.get(RepCapacity, rep.user_id)
        assert cap is not None and cap.max_open_leads == 25
    assert (
        client.post(
            f"/app/settings/assignment/rules/{ids['Rita' + chr(39) + 's banks']}/delete",
            data={"csrf_token": csrf},
        ).status_code
        == 200
    )
    assert [n for n, _, _ in _rules(db)] == ["DACH + NL", "Account owner"]
