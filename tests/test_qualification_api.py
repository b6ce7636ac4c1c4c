"""Lead -> prospect through the API: needs assessment -> SAL, discovery call -> SQL or
unqualified, the three qualification levels, the buying committee, the marketing -> sales
handoff with its SLA, rejections and both reports, and the public needs-assessment form."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from leadflow.api import create_app
from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.db.base import Database
from leadflow.events import DomainEvent, subscribe, unsubscribe
from leadflow.leads.models import Lead, StageChange
from leadflow.qualification import api as qualification_api
from leadflow.qualification.models import AssessmentRecord, DiscoveryCallRecord, Handoff

GOOD = {
    "source": "search",
    "need": "Cut the time to onboard a customer from weeks to days",
    "product_interest": "Leadflow Pro",
    "solution": "Automated routing and follow-up",
    "timeline": "this_quarter",
}
BANT_MET = {
    "budget": {"answer": "30k approved", "rating": 2},
    "authority": {"answer": "She signs", "rating": 3},
    "need": {"answer": "Onboarding too slow", "rating": 3},
    "timeline": {"answer": "Live by March", "rating": 2},
}


@pytest.fixture(scope="module")
def app(database: Database) -> FastAPI:
    return create_app(database)


@pytest.fixture
def client(db: Database, app: FastAPI) -> Iterator[TestClient]:
    qualification_api._limiter.storage.reset()
    with TestClient(app) as c:
        yield c


@pytest.fixture
def tasks() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def grab(ev: DomainEvent) -> None:
        seen.append(ev.payload)

    subscribe("task.requested", grab)
    yield seen
    unsubscribe("task.requested", grab)


def new_lead(client: TestClient, actor: Actor, **fields: Any) -> dict[str, Any]:
    body = {
        "email": f"ada{datetime.now().timestamp()}@example.org",
        "first_name": "Ada",
        "last_name": "Lovelace",
        **fields,
    }
    r = client.post("/api/leads", json=body, headers=actor.headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def to_mql(client: TestClient, actor: Actor, lead_id: int) -> None:
    r = client.post(
        f"/api/leads/{lead_id}/transitions",
        json={"to": "mql", "evidence": {"kind": "marketing_review", "note": "booth visit"}},
        headers=actor.headers,
    )
    assert r.status_code == 200, r.text


def lead_stage(client: TestClient, actor: Actor, lead_id: int) -> str:
    r = client.get(f"/api/leads/{lead_id}", headers=actor.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["stage"])


def assess(client: TestClient, actor: Actor, lead_id: int, answers: dict[str, Any], **kw: Any) -> Any:
    return client.post(
        f"/api/qualification/leads/{lead_id}/assessments",
        json={"answers": answers, **kw},
        headers=actor.headers,
    )


def call(client: TestClient, actor: Actor, lead_id: int, **body: Any) -> Any:
    return client.post(
        f"/api/qualification/leads/{lead_id}/discovery-calls", json=body, headers=actor.headers
    )


@pytest.fixture
def marketer(db: Database) -> Actor:
    return make_user(db, "Mia", Role.MARKETING)


@pytest.fixture
def rep(db: Database) -> Actor:
    return make_user(db, "Rex", Role.SALES_REP, team="east")


def test_defaults_are_the_seeds_questionnaire_and_bant(client: TestClient, rep: Actor) -> None:
    qs = client.get("/api/qualification/questionnaires", headers=rep.headers).json()
    assert [q["key"] for q in qs] == ["default"]
    keys = [q["key"] for q in qs[0]["definition"]["questions"]]
    assert keys == ["source", "need", "product_interest", "solution", "timeline"]
    assert qs[0]["post_url"].startswith("/forms/assessments/")
    fws = client.get("/api/qualification/frameworks", headers=rep.headers).json()
    assert {f["key"]: f["is_default"] for f in fws} == {"bant": True, "meddic": False, "champ": False}
    bant = next(f for f in fws if f["key"] == "bant")
    assert [c["key"] for c in bant["definition"]["criteria"]] == ["budget", "authority", "need", "timeline"]
    settings = client.get("/api/qualification/settings", headers=rep.headers).json()
    assert settings["handoff"]["first_touch_minutes"] == 240


def test_the_road_from_mql_to_prospect(
    client: TestClient, db: Database, marketer: Actor, rep: Actor, tasks: list[dict[str, Any]]
) -> None:
    lead = new_lead(client, marketer, company="Initech", country="US", timezone="America/New_York")
    lid = lead["id"]
    to_mql(client, marketer, lid)
    # MQL: the lead is in the sales queue with an SLA in business hours, and a first-touch task.
    queue = client.get("/api/qualification/queue", headers=marketer.headers).json()
    assert [q["handoff"]["lead_id"] for q in queue] == [lid]
    h = queue[0]["handoff"]
    assert h["status"] == "queued" and h["timezone"] == "America/New_York" and h["sla_minutes"] == 240
    assert [t["source"] for t in tasks] == ["handoff"]
    # A rep takes the lead and runs the needs assessment on a call: SAL, with the record as evidence.
    r = client.patch(
        f"/api/leads/{lid}", json={"owner_id": rep.user_id, "version": 2}, headers=marketer.headers
    )
    assert r.status_code == 200, r.text
    r = assess(client, rep, lid, GOOD, channel="call")
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["outcome"] == "sal" and out["applied"] and out["stage"] == "sal"
    assert out["follow_up_due_at"] is not None
    assert tasks[-1]["source"] == "needs_assessment" and tasks[-1]["owner_id"] == rep.user_id
    hist = client.get(f"/api/leads/{lid}/transitions", headers=rep.headers).json()["history"]
    assert hist[-1]["to_stage"] == "sal"
    assert hist[-1]["evidence"]["kind"] == "needs_assessment"
    assert hist[-1]["evidence"]["assessment_id"] == str(out["assessment"]["id"])
    # Accepting the MQL closed the handoff; the assessment call was the first touch.
    hs = client.get(f"/api/qualification/leads/{lid}/handoffs", headers=rep.headers).json()
    assert hs[0]["status"] == "accepted" and hs[0]["first_touch_at"] is not None
    # The discovery call under BANT: every criterion met -> SQL (prospect).
    script = client.get(f"/api/qualification/leads/{lid}/call-script", headers=rep.headers).json()
    assert script["framework"] == "bant"
    assert [q["criterion"] for q in script["questions"]] == ["budget", "authority", "need", "timeline"]
    need = next(q for q in script["questions"] if q["criterion"] == "need")
    assert any("Cut the time to onboard" in c for c in need["confirm"])
    assert any("Initech" in line for line in script["agenda"])
    r = call(client, rep, lid, criteria=BANT_MET, outcome="sql", notes="Great call")
    assert r.status_code == 201, r.text
    res = r.json()
    assert res["recommendation"] == "sql" and res["stage"] == "sql" and res["call"]["total"] == 10
    hist = client.get(f"/api/leads/{lid}/transitions", headers=rep.headers).json()["history"]
    assert hist[-1]["evidence"]["kind"] == "discovery_call"
    assert hist[-1]["evidence"]["call_id"] == str(res["call"]["id"])
    levels = client.get(f"/api/qualification/leads/{lid}/levels", headers=rep.headers).json()
    assert levels["opportunity"]["status"] == "qualified"
    assert levels["buying_role"] == "decision_maker" and levels["stakeholder"]["status"] == "qualified"
    assert levels["organization"]["status"] == "qualified"  # the default ICP accepts any company


def test_assessment_outcomes_follow_the_rule(client: TestClient, marketer: Actor, rep: Actor) -> None:
    later = new_lead(client, rep)  # sales-sourced: may go to SAL directly
    r = assess(client, rep, later["id"], {**GOOD, "timeline": "no_plans"})
    assert r.status_code == 201, r.text
    assert r.json()["outcome"] == "nurture" and r.json()["stage"] == "nurture"
    assert "no purchase planned within a year" in r.json()["reason"]
    # A marketing lead that is not MQL yet: the assessment is kept, the SAL move waits.
    fresh = new_lead(client, marketer)
    r = assess(client, rep, fresh["id"], GOOD)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["outcome"] == "sal" and not body["applied"] and body["stage"] == "new"
    assert "must become MQL" in body["not_applied_reason"]
    to_mql(client, marketer, fresh["id"])
    r = client.post(f"/api/qualification/assessments/{body['assessment']['id']}/apply", headers=rep.headers)
    assert r.status_code == 200, r.text
    assert lead_stage(client, rep, fresh["id"]) == "sal"


def test_a_custom_rule_unqualifies_with_its_reason(client: TestClient, db: Database, rep: Actor) -> None:
    admin = make_user(db, "Root", Role.ADMIN)
    doc = {
        "key": "short",
        "name": "Short assessment",
        "questions": [
            {"key": "need", "label": "Need?", "type": "long_text", "required": True},
            {"key": "seats", "label": "Seats", "type": "number"},
            {"key": "student", "label": "Student?", "type": "boolean"},
        ],
        "rule": {
            "qualify_when": [{"question": "seats", "op": "gte", "value": 5}],
            "unqualify_when": [
                {"question": "student", "op": "equals", "value": True, "reason": "students get the free plan"}
            ],
        },
    }
    r = client.put("/api/qualification/questionnaires", json={"definition": doc}, headers=admin.headers)
    assert r.status_code == 200, r.text
    lead = new_lead(client, rep)
    r = assess(
        client, rep, lead["id"], {"need": "homework", "seats": "1", "student": "yes"}, questionnaire="short"
    )
    assert r.status_code == 201, r.text
    assert r.json()["outcome"] == "unqualified" and r.json()["stage"] == "unqualified"
    assert r.json()["reason"] == "students get the free plan"
    lead2 = new_lead(client, rep)
    r = assess(client, rep, lead2["id"], {"need": "team of 12", "seats": 12}, questionnaire="short")
    assert r.json()["outcome"] == "sal" and r.json()["stage"] == "sal"


def test_bad_answers_answer_422_and_store_nothing(client: TestClient, db: Database, rep: Actor) -> None:
    lead = new_lead(client, rep)
    r = assess(client, rep, lead["id"], {**GOOD, "timeline": "someday", "color": "blue"})
    assert r.status_code == 422
    locs = [e["loc"] for e in r.json()["detail"]]
    assert ["answers", "timeline"] in locs and ["answers", "color"] in locs
    r = assess(client, rep, lead["id"], {"source": "search"})
    assert r.status_code == 422 and ["answers", "need"] in [e["loc"] for e in r.json()["detail"]]
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(AssessmentRecord)) == 0
    assert lead_stage(client, rep, lead["id"]) == "new"


def test_bad_questionnaire_definitions_name_the_field(client: TestClient, db: Database, rep: Actor) -> None:
    admin = make_user(db, "Root", Role.ADMIN)
    bad = {"key": "x", "name": "X", "questions": [{"key": "t", "label": "T", "type": "choice"}]}
    r = client.put("/api/qualification/questionnaires", json={"definition": bad}, headers=admin.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["definition", "questions", 0, "options"]
    r = client.put("/api/qualification/questionnaires", json={"definition": bad}, headers=rep.headers)
    assert r.status_code == 403


def test_discovery_call_outcomes(client: TestClient, rep: Actor, db: Database) -> None:
    lead = new_lead(client, rep)
    assert assess(client, rep, lead["id"], GOOD).json()["stage"] == "sal"
    weak = {**BANT_MET, "budget": {"answer": "none yet", "rating": 0}}
    # Against the recommendation: the rep must say why.
    r = call(client, rep, lead["id"], criteria=weak, outcome="sql")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["override_reason"]
    assert "Budget" in r.json()["detail"][0]["msg"]
    r = call(client, rep, lead["id"], criteria=weak, outcome="unqualified")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["reason"]
    r = call(client, rep, lead["id"], criteria={"budgett": {"rating": 1}}, outcome="pending")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["criteria", "budgett"]
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(DiscoveryCallRecord)) == 0
    r = call(
        client,
        rep,
        lead["id"],
        criteria=weak,
        outcome="unqualified",
        reason="no budget this year",
        referral="Smaller vendor list",
        recommended_vendor="Acme Lite",
    )
    assert r.status_code == 201, r.text
    assert r.json()["stage"] == "unqualified" and r.json()["recommendation"] == "unqualified"
    got = client.get(f"/api/leads/{lead['id']}", headers=rep.headers).json()
    assert "no budget this year" in got["status_reason"] and "Acme Lite" in got["status_reason"]
    calls = client.get(f"/api/qualification/leads/{lead['id']}/discovery-calls", headers=rep.headers).json()
    assert calls[0]["referral"] == "Smaller vendor list"


def test_override_sql_and_illegal_call_stores_nothing(client: TestClient, rep: Actor, db: Database) -> None:
    lead = new_lead(client, rep)
    # Not SAL yet: the move is illegal, so the call is not stored either.
    r = call(client, rep, lead["id"], criteria=BANT_MET, outcome="sql")
    assert r.status_code == 409 and r.json()["code"] == "illegal_transition"
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(DiscoveryCallRecord)) == 0
    assess(client, rep, lead["id"], GOOD)
    weak = {**BANT_MET, "timeline": {"answer": "unclear", "rating": 1}}
    r = call(
        client,
        rep,
        lead["id"],
        criteria=weak,
        outcome="sql",
        override_reason="CFO confirmed the date by email",
        framework="bant",
    )
    assert r.status_code == 201, r.text
    assert r.json()["stage"] == "sql" and r.json()["unmet"] == ["timeline"]


def test_meddic_preset_and_custom_framework(client: TestClient, db: Database, rep: Actor) -> None:
    admin = make_user(db, "Root", Role.ADMIN)
    custom = {
        "key": "quick",
        "name": "Quick",
        "criteria": [{"key": "pain", "label": "Pain", "questions": ["What hurts?"]}],
        "min_total": 2,
    }
    r = client.put("/api/qualification/frameworks", json={"definition": custom}, headers=admin.headers)
    assert r.status_code == 200, r.text
    r = client.put(
        "/api/qualification/frameworks",
        json={"definition": {**custom, "min_total": 9}},
        headers=admin.headers,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["definition", "min_total"]
    lead = new_lead(client, rep)
    assess(client, rep, lead["id"], GOOD)
    r = call(
        client,
        rep,
        lead["id"],
        framework="quick",
        criteria={"pain": {"answer": "churn", "rating": 3}},
        outcome="sql",
    )
    assert r.status_code == 201, r.text
    script = client.get(
        f"/api/qualification/leads/{lead['id']}/call-script?framework=meddic", headers=rep.headers
    )
    assert [q["criterion"] for q in script.json()["questions"]][:2] == ["metrics", "economic_buyer"]


def test_levels_icp_overrides_and_committee(client: TestClient, db: Database, rep: Actor) -> None:
    admin = make_user(db, "Root", Role.ADMIN)
    r = client.put(
        "/api/qualification/settings/icp",
        json={"value": {"industries": ["software"], "min_employees": 50, "countries": ["US", "CA"]}},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/api/accounts",
        json={"name": "Globex", "domain": "globex.com", "industry": "software", "employee_count": 20},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    acc = r.json()["id"]
    user = new_lead(client, rep, email="ann@globex.com", job_title="Analyst", country="US")
    lv = client.get(f"/api/qualification/leads/{user['id']}/levels", headers=rep.headers).json()
    assert lv["organization"]["status"] == "unqualified" and "below 50" in lv["organization"]["reason"]
    assert lv["buying_role"] == "user" and lv["stakeholder"]["status"] == "partial"
    assert lv["opportunity"]["status"] == "unknown"
    # A person may override a level, with a reason; clearing it returns to the derived status.
    r = client.put(
        f"/api/qualification/leads/{user['id']}/levels/organization",
        json={"status": "qualified", "reason": "expanding to 80 people in Q1"},
        headers=rep.headers,
    )
    assert r.status_code == 200 and r.json()["organization"]["source"] == "manual"
    r = client.put(
        f"/api/qualification/leads/{user['id']}/levels/organization",
        json={"status": "qualified"},
        headers=rep.headers,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["reason"]
    r = client.put(
        f"/api/qualification/leads/{user['id']}/levels/organization",
        json={"status": None},
        headers=rep.headers,
    )
    assert r.json()["organization"]["source"] == "derived"
    actions = [
        e["action"] for e in client.get(f"/api/leads/{user['id']}/audit", headers=admin.headers).json()
    ]
    assert actions.count("qualification_level") == 2
    # The buying committee: no decision maker engaged yet, until the CEO is in the funnel.
    com = client.get(f"/api/qualification/accounts/{acc}/committee", headers=rep.headers).json()
    assert com["flags"] == ["no decision maker engaged yet"] and com["roles"]["user"] == 1
    ceo = new_lead(client, rep, email="ceo@globex.com", job_title="Chief Executive Officer")
    com = client.get(f"/api/qualification/accounts/{acc}/committee", headers=rep.headers).json()
    assert com["decision_maker_engaged"] is False  # known, but not engaged
    assess(client, rep, ceo["id"], GOOD)
    com = client.get(f"/api/qualification/accounts/{acc}/committee", headers=rep.headers).json()
    assert com["decision_maker_engaged"] is True and com["flags"] == []
    roles = {m["lead_id"]: m["buying_role"] for m in com["members"]}
    assert roles == {user["id"]: "user", ceo["id"]: "decision_maker"}
    r = client.put(
        f"/api/qualification/leads/{user['id']}/buying-role",
        json={"role": "influencer", "reason": "runs the evaluation"},
        headers=rep.headers,
    )
    assert r.status_code == 200 and r.json()["buying_role_source"] == "manual"


def test_rejection_returns_to_nurture_and_is_reported(
    client: TestClient, marketer: Actor, rep: Actor
) -> None:
    ids = []
    for i, source in enumerate(["webinar", "webinar", "webinar", "ads"]):
        lead = new_lead(client, marketer, email=f"r{i}@example.org", source=source)
        to_mql(client, marketer, lead["id"])
        ids.append(lead["id"])
    r = client.post(
        f"/api/qualification/leads/{ids[0]}/handoff/reject", json={"reason": "nope"}, headers=rep.headers
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["reason"]
    r = client.post(
        f"/api/qualification/leads/{ids[0]}/handoff/reject", json={"reason": "other"}, headers=rep.headers
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["note"]
    for lid, reason in ((ids[0], "no_need"), (ids[1], "no_need"), (ids[3], "wrong_contact")):
        r = client.post(
            f"/api/qualification/leads/{lid}/handoff/reject",
            json={"reason": reason, "note": "called"},
            headers=rep.headers,
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "rejected"
        assert lead_stage(client, rep, lid) == "nurture"
    r = client.post(
        f"/api/qualification/leads/{ids[0]}/handoff/reject", json={"reason": "no_need"}, headers=rep.headers
    )
    assert r.status_code == 409
    assert assess(client, rep, ids[2], GOOD).json()["stage"] == "sal"
    rep_ = client.get("/api/qualification/reports/rejections", headers=marketer.headers).json()
    assert rep_["decided"] == 4 and rep_["rejected"] == 3 and rep_["rejection_rate"] == 0.75
    assert rep_["by_source"]["webinar"]["rejection_rate"] == round(2 / 3, 4)
    assert rep_["by_source"]["ads"]["reasons"] == {"wrong_contact": 1}
    assert rep_["by_reason"]["no_need"] == {"rejected": 2, "share": round(2 / 3, 4)}
    # The same numbers in the report registry (JSON, CSV, charts).
    reg = client.get("/api/reports/mql_rejections", headers=marketer.headers)
    assert reg.status_code == 200, reg.text
    rows = {r["source"]: r for r in reg.json()["rows"]}
    assert rows["webinar"]["rejection_rate"] == 66.7 and rows["webinar"]["top_reason"] == "no_need"
    assert rows["total"]["decided"] == 4 and rows["total"]["rejection_rate"] == 75.0


def test_sla_touches_breaches_and_report(
    client: TestClient, db: Database, marketer: Actor, rep: Actor
) -> None:
    leads = []
    for i in range(3):
        lead = new_lead(client, marketer, email=f"s{i}@example.org", source="webinar" if i < 2 else "ads")
        to_mql(client, marketer, lead["id"])
        leads.append(lead["id"])
    # The clock: move the first two handoffs into the past so they are due already.
    past = datetime.now(UTC) - timedelta(days=3)
    with db.transaction() as s:
        s.execute(
            update(Handoff)
            .where(Handoff.lead_id.in_(leads[:2]))
            .values(queued_at=past, due_at=past + timedelta(hours=4))
        )
    # Lead 0 was called on time (a call logged inside the SLA)...
    r = client.post(
        f"/api/leads/{leads[0]}/activities",
        json={"type": "call", "occurred_at": (past + timedelta(hours=1)).isoformat()},
        headers=marketer.headers,
    )
    assert r.status_code in (200, 201), r.text
    # ... lead 1 was never touched: the check flags it once.
    r = client.post("/api/qualification/sla/check", headers=marketer.headers)
    assert r.status_code == 200, r.text
    assert [h["lead_id"] for h in r.json()["breached"]] == [leads[1]]
    assert client.post("/api/qualification/sla/check", headers=marketer.headers).json()["breached"] == []
    queue = client.get("/api/qualification/queue?breached=true", headers=marketer.headers).json()
    assert [q["handoff"]["lead_id"] for q in queue] == [leads[1]]
    report = client.get("/api/qualification/reports/sla", headers=marketer.headers).json()
    assert report["total"]["within_sla"] == 1 and report["total"]["breached_open"] == 1
    assert report["total"]["pending"] == 1 and report["total"]["compliance"] == 0.5
    assert report["by_source"]["webinar"]["compliance"] == 0.5
    assert [b["lead_id"] for b in report["breaches"]] == [leads[1]]
    reg = client.get("/api/reports/handoff_sla", params={"by": "source"}, headers=marketer.headers)
    assert reg.status_code == 200, reg.text
    rows = {r["group"]: r for r in reg.json()["rows"]}
    assert rows["webinar"]["compliance"] == 50.0 and rows["total"]["handoffs"] == 3
    reg = client.get("/api/reports/handoff_sla", params={"by": "team"}, headers=marketer.headers)
    assert reg.status_code == 422
    with db.transaction() as s:
        assert (
            s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "sla_breached"))
            == 1
        )


def test_sla_due_time_counts_business_hours_in_the_leads_zone(
    client: TestClient, db: Database, marketer: Actor
) -> None:
    admin = make_user(db, "Root", Role.ADMIN)
    r = client.put(
        "/api/qualification/settings/handoff",
        json={"value": {"first_touch_minutes": 0}},
        headers=admin.headers,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["value", "first_touch_minutes"]
    r = client.put(
        "/api/qualification/settings/handoff",
        json={"value": {"business_hours": {"timezone": "Mars/Olympus"}}},
        headers=admin.headers,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["value", "business_hours", "timezone"]
    r = client.put(
        "/api/qualification/settings/handoff",
        json={"value": {"first_touch_minutes": 120}},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    lead = new_lead(client, marketer, timezone="Asia/Tokyo")
    to_mql(client, marketer, lead["id"])
    with db.transaction() as s:
        h = s.scalars(select(Handoff)).one()
        assert h.timezone == "Asia/Tokyo" and h.sla_minutes == 120
        local_due = h.due_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
        assert local_due.weekday() < 5 and 9 <= local_due.hour <= 17


def test_public_assessment_form(client: TestClient, db: Database, tasks: list[dict[str, Any]]) -> None:
    admin = make_user(db, "Root", Role.ADMIN)
    qs = client.get("/api/qualification/questionnaires", headers=admin.headers).json()
    q = qs[0]
    r = client.put(
        "/api/qualification/questionnaires",
        json={"definition": q["definition"], "redirect_url": "https://acme.io/thanks"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    url = q["post_url"]
    page = client.get(url)
    assert page.status_code == 200 and "When are you planning to purchase?" in page.text
    r = client.post(
        url, data={"email": "form@example.org", "first_name": "Flo", **GOOD}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "https://acme.io/thanks"
    with db.transaction() as s:
        lead = s.scalars(select(Lead).where(Lead.email == "form@example.org")).one()
        rec = s.scalars(select(AssessmentRecord)).one()
        # A new marketing lead: the assessment qualifies, and waits for MQL to make it SAL.
        assert rec.channel == "web_form" and rec.outcome == "sal" and lead.stage == "new"
        assert lead.source == "needs_assessment_form"
    assert tasks and tasks[-1]["source"] == "needs_assessment"
    # Not ready: the rule itself moves the lead to nurture, and says so in the audit trail.
    r = client.post(
        url,
        json={"email": "later@example.org", **GOOD, "timeline": "later"},
        headers={"Accept": "application/json"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.json()["outcome"] == "nurture"
    with db.transaction() as s:
        later = s.scalars(select(Lead).where(Lead.email == "later@example.org")).one()
        assert later.stage == "nurture"
        change = s.scalars(
            select(StageChange).where(StageChange.lead_id == later.id, StageChange.to_stage == "nurture")
        ).one()
        assert change.evidence and change.evidence["kind"] == "needs_assessment"
        who = s.scalars(
            select(AuditEntry.actor_label).where(
                AuditEntry.entity_id == later.id, AuditEntry.action == "stage_change"
            )
        ).one()
        assert "qualifying rule" in who
    # A bot fills the honeypot: same redirect, nothing stored.
    r = client.post(
        url, data={"email": "bot@example.org", "website_url": "x", **GOOD}, follow_redirects=False
    )
    assert r.status_code == 303
    r = client.post(
        url, data={"email": "bad@example.org", "timeline": "whenever", "need": "x"}, follow_redirects=False
    )
    assert r.status_code == 422
    with db.transaction() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(Lead)
                .where(Lead.email.in_(["bot@example.org", "bad@example.org"]))
            )
            == 0
        )
    assert client.post("/forms/assessments/nope", data={"email": "a@b.org"}).status_code == 404


def test_the_worker_job_flags_breaches_once(client: TestClient, db: Database, marketer: Actor) -> None:
    from leadflow import jobs

    lead = new_lead(client, marketer)
    to_mql(client, marketer, lead["id"])
    assert "qualification.sla_breaches" in {j.name for j in jobs.registered_jobs()}
    assert jobs.run_job(db, "qualification.sla_breaches", datetime.now(UTC)) == 0
    later = datetime.now(UTC) + timedelta(days=10)
    assert jobs.run_job(db, "qualification.sla_breaches", later) == 1
    assert jobs.run_job(db, "qualification.sla_breaches", later) == 0
