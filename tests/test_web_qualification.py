"""The lead page's needs assessment and discovery call through the web UI: forms rendered from
the configured questionnaire and framework, recorded through the qualification service (records,
evidence-backed stage moves, audit), field errors shown next to their field."""

from __future__ import annotations

import re

from conftest import make_user
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_web_server import _lead, sign_in

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.db.base import Database
from leadflow.leads import service as leads
from leadflow.leads.models import StageChange
from leadflow.qualification import config as qconfig
from leadflow.qualification.models import AssessmentRecord, DiscoveryCallRecord

DEFAULT_ANSWERS = {
    "answers.source": "event",
    "answers.need": "pipeline visibility",
    "answers.product_interest": "Leadflow Pro",
    "answers.solution": "Pro plan, 20 seats",
    "answers.timeline": "next_quarter",
}


def _moves(db: Database, lead_id: int) -> list[StageChange]:
    with db.transaction() as s:
        return list(
            s.scalars(select(StageChange).where(StageChange.lead_id == lead_id).order_by(StageChange.id))
        )


def _stage(db: Database, lead_id: int) -> str:
    return _moves(db, lead_id)[-1].to_stage


def test_needs_assessment_renders_the_questionnaire_and_moves_through_the_service(
    client: TestClient, db: Database
) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, rep, "ada@example.org", company="Analytical Engines Ltd")
    csrf = sign_in(client, db, rep)
    page = client.get(f"/app/leads/{lead_id}").text
    # The default questionnaire's questions, types and options, not a fixed form.
    assert "What are your current goals or priorities?" in page
    assert 'name="answers.timeline"' in page and 'value="this_quarter"' in page
    assert '<textarea id="na-need" name="answers.need"' in page

    # A required answer missing: 422, the message next to the field, the other answers kept.
    missing = {**DEFAULT_ANSWERS, "answers.need": "", "csrf_token": csrf}
    r = client.post(f"/app/leads/{lead_id}/needs-assessment", data=missing)
    assert r.status_code == 422
    assert re.search(r'id="na-need-err">is required<', r.text)
    assert 'value="Leadflow Pro"' in r.text
    with db.transaction() as s:
        assert s.scalar(select(AssessmentRecord.id)) is None
    # An answer outside the choice's options is named too.
    r = client.post(
        f"/app/leads/{lead_id}/needs-assessment",
        data={**DEFAULT_ANSWERS, "answers.timeline": "someday", "csrf_token": csrf},
    )
    assert r.status_code == 422 and "must be one of now, this_quarter" in r.text

    ok = client.post(
        f"/app/leads/{lead_id}/needs-assessment",
        data={**DEFAULT_ANSWERS, "on_call": "yes", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and "lead+moved" in ok.headers["location"]
    with db.transaction() as s:
        rec = s.scalars(select(AssessmentRecord)).one()
        audit = s.scalars(
            select(AuditEntry.action).where(AuditEntry.entity_type == "lead", AuditEntry.entity_id == lead_id)
        ).all()
    assert (rec.outcome, rec.channel, rec.applied_stage) == ("sal", "call", "sal")
    assert rec.answers["timeline"] == "next_quarter"
    move = _moves(db, lead_id)[-1]
    assert move.to_stage == "sal" and move.evidence is not None
    assert move.evidence["assessment_id"] == str(rec.id)
    assert "needs_assessment" in audit


def test_a_not_ready_lead_goes_to_nurture_with_the_rules_reason(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, rep, "ada@example.org")
    csrf = sign_in(client, db, rep)
    r = client.post(
        f"/app/leads/{lead_id}/needs-assessment",
        data={**DEFAULT_ANSWERS, "answers.timeline": "no_plans", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert _stage(db, lead_id) == "nurture"
    assert "no purchase planned within a year" in client.get(r.headers["location"]).text


def test_a_custom_questionnaire_renders_every_answer_type(client: TestClient, db: Database, admin) -> None:  # type: ignore[no-untyped-def]
    doc = {
        "key": "saas",
        "name": "SaaS intake",
        "questions": [
            {"key": "seats", "label": "How many seats?", "type": "number", "required": True},
            {"key": "student", "label": "Are you a student?", "type": "boolean"},
            {"key": "modules", "label": "Which modules?", "type": "multi_choice", "options": ["crm", "cpq"]},
            {"key": "start", "label": "Start date", "type": "date"},
        ],
        "rule": {
            "qualify_when": [{"question": "seats", "op": "gte", "value": 5, "reason": "fewer than 5 seats"}],
            "unqualify_when": [
                {"question": "student", "op": "equals", "value": True, "reason": "students get the free plan"}
            ],
        },
    }
    with db.transaction() as s:
        qconfig.put_questionnaire(s, admin.principal, doc)
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, rep, "ada@example.org")
    csrf = sign_in(client, db, rep)
    page = client.get(f"/app/leads/{lead_id}?questionnaire=saas").text
    assert 'type="number" step="any" name="answers.seats"' in page
    assert 'type="checkbox" name="answers.modules" value="cpq"' in page
    assert 'type="date" name="answers.start"' in page
    assert 'name="questionnaire" value="saas"' in page

    bad = client.post(
        f"/app/leads/{lead_id}/needs-assessment",
        data={
            "questionnaire": "saas",
            "answers.seats": "many",
            "answers.modules": ["crm", "cpq"],
            "csrf_token": csrf,
        },
    )
    assert bad.status_code == 422 and 'id="na-seats-err">must be a number<' in bad.text
    assert re.search(r'value="cpq"\s+checked', bad.text)  # the ticked boxes stay ticked
    r = client.post(
        f"/app/leads/{lead_id}/needs-assessment",
        data={"questionnaire": "saas", "answers.seats": "40", "answers.student": "yes", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with db.transaction() as s:
        rec = s.scalars(select(AssessmentRecord)).one()
    assert (rec.questionnaire_key, rec.outcome, rec.answers) == (
        "saas",
        "unqualified",
        {"seats": 40, "student": True},
    )
    assert _stage(db, lead_id) == "unqualified"


def _to_sal(client: TestClient, lead_id: int, csrf: str) -> None:
    r = client.post(
        f"/app/leads/{lead_id}/needs-assessment",
        data={**DEFAULT_ANSWERS, "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_discovery_call_follows_the_chosen_framework_with_its_script(
    client: TestClient, db: Database
) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, rep, "ada@example.org", company="Analytical Engines Ltd", job_title="CTO")
    csrf = sign_in(client, db, rep)
    _to_sal(client, lead_id, csrf)
    page = client.get(f"/app/leads/{lead_id}").text
    assert "Call script (BANT)" in page and "Hi Ada, this is Rita." in page
    assert "Earlier answer: When are you planning to purchase? -&gt; &#34;next quarter&#34;" in page
    # Switching the framework (HTMX fragment) shows MEDDIC's criteria and questions.
    frag = client.get(f"/app/leads/{lead_id}/discovery-call?framework=meddic", headers={"HX-Request": "true"})
    assert frag.status_code == 200 and "<html" not in frag.text
    assert "Economic buyer" in frag.text and "Who owns the budget this comes from?" in frag.text
    assert 'name="criteria.champion.rating"' in frag.text and "optional" in frag.text

    ratings = {
        "metrics": 2,
        "economic_buyer": 3,
        "decision_criteria": 2,
        "decision_process": 2,
        "identify_pain": 3,
    }
    form = {f"criteria.{k}.rating": str(v) for k, v in ratings.items()}
    form |= {"criteria.metrics.answer": "cut ramp time by 30%", "framework": "meddic", "csrf_token": csrf}
    r = client.post(f"/app/leads/{lead_id}/discovery-call", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    with db.transaction() as s:
        call = s.scalars(select(DiscoveryCallRecord)).one()
        lead = leads.get_lead(s, rep.principal, lead_id)
    assert (call.framework_key, call.outcome, call.recommendation, call.total) == ("meddic", "sql", "sql", 12)
    assert lead.stage == "sql"
    move = _moves(db, lead_id)[-1]
    assert move.evidence is not None and move.evidence["framework"] == "meddic"
    assert move.evidence["call_id"] == str(call.id)
    assert move.evidence["criteria"]["metrics"] == {"answer": "cut ramp time by 30%", "rating": 2}
    assert "cut ramp time by 30%" in client.get(f"/app/leads/{lead_id}").text


def test_discovery_call_unqualified_and_field_errors(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, rep, "ada@example.org")
    csrf = sign_in(client, db, rep)
    _to_sal(client, lead_id, csrf)
    weak = {f"criteria.{k}.rating": "2" for k in ("authority", "need", "timeline")}
    weak |= {"criteria.budget.rating": "0", "csrf_token": csrf}
    # SQL against the ratings' recommendation needs the override reason: shown next to it (HTMX).
    r = client.post(
        f"/app/leads/{lead_id}/discovery-call",
        data={**weak, "outcome": "sql", "criteria.need.answer": "slow reporting"},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 422 and "<html" not in r.text
    assert re.search(r'id="call-override_reason-err">the BANT ratings recommend unqualified', r.text)
    assert "slow reporting" in r.text  # what the rep typed is kept
    with db.transaction() as s:
        assert s.scalar(select(DiscoveryCallRecord.id)) is None
    # A full page (no HTMX) shows the lead page with the error.
    bad = client.post(f"/app/leads/{lead_id}/discovery-call", data={**weak, "criteria.budget.rating": "7"})
    assert (
        bad.status_code == 422
        and "must be an integer from 0 to 3" in bad.text
        and "Lifecycle timeline" in bad.text
    )
    # Following the ratings: unqualified, the reason names the unmet criterion.
    r = client.post(f"/app/leads/{lead_id}/discovery-call", data=weak, follow_redirects=False)
    assert r.status_code == 303
    assert _stage(db, lead_id) == "unqualified"
    assert _moves(db, lead_id)[-1].reason == "BANT criteria not met: Budget"


def test_a_rep_cannot_qualify_another_teams_lead(client: TestClient, db: Database) -> None:
    west = make_user(db, "Wes", Role.SALES_REP, "Americas")
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, west, "ada@example.org", owner_id=west.user_id)
    csrf = sign_in(client, db, rep)
    r = client.post(f"/app/leads/{lead_id}/needs-assessment", data={**DEFAULT_ANSWERS, "csrf_token": csrf})
    assert r.status_code == 404
    assert (
        client.get(f"/app/leads/{lead_id}/discovery-call", headers={"HX-Request": "true"}).status_code == 404
    )
