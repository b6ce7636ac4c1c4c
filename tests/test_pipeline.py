"""Opportunities: conversion into new/existing accounts and contacts, stage moves with history,
won/lost with reasons, reopen, optimistic locking, visibility, buying signals and the rule."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.cli import app as cli_app
from leadflow.core.lifecycle import DiscoveryCall, NeedsAssessment, Stage
from leadflow.db.base import Database, utcnow
from leadflow.errors import InvalidInput, NotFound, StaleVersion
from leadflow.leads import service as leads
from leadflow.leads.models import Account, Activity, Lead, StageChange
from leadflow.pipeline import service as svc
from leadflow.pipeline import signals as sig
from leadflow.pipeline.models import Opportunity, OpportunityStageChange


def prospect(db: Database, rep: Actor, email: str, **extra: Any) -> int:
    """A sales-sourced lead taken to SQL the way sales does it: needs assessment, discovery call."""

    with db.transaction() as s:
        lead = leads.create_lead(
            s,
            rep.principal,
            {"email": email, "first_name": "Ada", "last_name": "Buyer", "company": "Acme Corp", **extra},
            stage=Stage.SAL,
            evidence=NeedsAssessment(answers={"need": "pipeline visibility"}),
        ).lead
        leads.transition_lead(
            s, rep.principal, lead.id, Stage.SQL, evidence=DiscoveryCall(outcome="qualified")
        )
        return lead.id


@pytest.fixture
def rep(db: Database) -> Actor:
    return make_user(db, "Rita", Role.SALES_REP, "east")


def test_convert_opens_deal_moves_lead_and_creates_account(
    db: Database, client: TestClient, rep: Actor
) -> None:
    lead_id = prospect(db, rep, "ada@acme-corp.io", country="DE")
    close = (date.today() + timedelta(days=30)).isoformat()
    r = client.post(
        f"/api/leads/{lead_id}/convert",
        json={"amount": 25000, "currency": "EUR", "expected_close_date": close, "signals": ["demo_request"]},
        headers=rep.headers,
    )
    assert r.status_code == 201, r.text
    opp = r.json()
    assert opp["stage"] == "qualification" and opp["probability"] == 10 and opp["status"] == "open"
    assert opp["owner_id"] == rep.user_id and opp["currency"] == "EUR" and opp["weighted_amount"] == 2500.0
    assert opp["expected_close_date"] == close and opp["signals"] == ["demo_request"]
    with db.transaction() as s:
        lead = s.get(Lead, lead_id)
        assert lead is not None and lead.stage == "opportunity"
        account = s.get(Account, opp["account_id"])
        assert account is not None and account.country == "DE" and account.owner_id == rep.user_id
        last = s.scalars(
            select(StageChange).where(StageChange.lead_id == lead_id).order_by(StageChange.id.desc())
        ).first()
        assert last is not None and last.evidence == {
            "kind": "opportunity_opened",
            "opportunity_id": str(opp["id"]),
            "signals": ["demo_request"],
        }
        assert s.scalar(select(AuditEntry).where(AuditEntry.entity_type == "opportunity")) is not None
    # The lead's whole history is visible from the opportunity.
    tl = client.get(f"/api/opportunities/{opp['id']}/timeline", headers=rep.headers).json()
    assert [x["to_stage"] for x in tl["lead_stages"]] == ["sal", "sql", "opportunity"]
    assert tl["lead_stages"][1]["evidence"]["kind"] == "discovery_call"


def test_convert_into_existing_account_fills_only_empty_fields(
    db: Database, rep: Actor, admin: Actor
) -> None:
    with db.transaction() as s:
        acc = Account(name="Globex", name_key="globex", industry="Software", country=None, version=1)
        s.add(acc)
        s.flush()
        acc_id = acc.id
    lead_id = prospect(db, rep, "hank@globex.io", country="FR", attributes={"industry": "Retail"})
    with db.transaction() as s:
        opp = svc.convert_lead(s, rep.principal, lead_id, svc.ConvertInput(account_id=acc_id, amount=1000))
        assert opp.account_id == acc_id and opp.name == "Globex - Sales"
    with db.transaction() as s:
        acc2 = s.get(Account, acc_id)
        assert acc2 is not None
        assert acc2.industry == "Software"  # curated value kept
        assert acc2.country == "FR"  # empty field filled
        lead = s.get(Lead, lead_id)
        assert lead is not None and lead.account_id == acc_id


def test_convert_into_existing_contact_fills_its_empty_fields(db: Database, rep: Actor) -> None:
    existing = prospect(db, rep, "boss@initech.io")
    with db.transaction() as s:
        acc_id = s.get(Lead, existing).account_id  # type: ignore[union-attr]
    lead_id = prospect(db, rep, "peter@initech.io", job_title="VP Sales", phone="+1 415 555 0100")
    with db.transaction() as s:
        opp = svc.convert_lead(
            s,
            rep.principal,
            lead_id,
            svc.ConvertInput(account_id=acc_id, contact_lead_id=existing, amount=10),
        )
        assert opp.contact_lead_id == existing and opp.lead_id == lead_id
    with db.transaction() as s:
        contact = s.get(Lead, existing)
        assert contact is not None and contact.job_title == "VP Sales" and contact.phone == "+14155550100"
        assert contact.first_name == "Ada"  # not overwritten


def test_convert_refuses_non_prospects_and_bad_input(db: Database, client: TestClient, rep: Actor) -> None:
    with db.transaction() as s:
        lead = leads.create_lead(s, rep.principal, {"email": "new@x-corp.io"}).lead
        lead_id = lead.id
    r = client.post(f"/api/leads/{lead_id}/convert", json={"amount": 5}, headers=rep.headers)
    assert r.status_code == 409 and r.json()["code"] == "illegal_transition"
    p = prospect(db, rep, "p@x-corp.io")
    r = client.post(f"/api/leads/{p}/convert", json={"amount": -1}, headers=rep.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "amount"
    r = client.post(f"/api/leads/{p}/convert", json={"stage": "nope"}, headers=rep.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["stage"]
    r = client.post(f"/api/leads/{p}/convert", json={"currency": "XYZ"}, headers=rep.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["currency"]
    with db.transaction() as s:  # nothing half-written
        assert s.scalar(select(Opportunity.id)) is None
        assert s.get(Lead, p).stage == "sql"  # type: ignore[union-attr]


def _open(db: Database, rep: Actor, email: str, amount: float = 1000) -> int:
    lead_id = prospect(db, rep, email)
    with db.transaction() as s:
        return svc.convert_lead(s, rep.principal, lead_id, svc.ConvertInput(amount=amount)).id


def test_stage_moves_history_win_and_reopen(db: Database, client: TestClient, rep: Actor) -> None:
    opp_id = _open(db, rep, "w@win-corp.io", 5000)
    h = rep.headers
    r = client.post(f"/api/opportunities/{opp_id}/stage", json={"stage": "proposal", "version": 1}, headers=h)
    assert (
        r.status_code == 200
        and r.json()["probability"] == 50
        and r.json()["forecast_category"] == "best_case"
    )
    r = client.post(f"/api/opportunities/{opp_id}/stage", json={"stage": "proposal", "version": 2}, headers=h)
    assert r.status_code == 422  # already there
    r = client.post(
        f"/api/opportunities/{opp_id}/stage", json={"stage": "negotiation", "version": 1}, headers=h
    )
    assert r.status_code == 409 and r.json()["code"] == "stale_version"
    r = client.post(
        f"/api/opportunities/{opp_id}/stage",
        json={"stage": "closed_won", "reason_key": "product_fit", "reason": "signed"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    won = r.json()
    assert won["status"] == "won" and won["closed_at"] and won["close_reason"] == "product_fit"
    with db.transaction() as s:
        lead = s.get(Lead, won["lead_id"])
        assert lead is not None and lead.stage == "customer"
    # A closed deal cannot jump to another closed stage.
    r = client.post(
        f"/api/opportunities/{opp_id}/stage", json={"stage": "closed_lost", "reason_key": "price"}, headers=h
    )
    assert r.status_code == 422
    r = client.post(
        f"/api/opportunities/{opp_id}/reopen", json={"reason": "customer asked for a new quote"}, headers=h
    )
    assert r.status_code == 200 and r.json()["stage"] == "proposal" and r.json()["status"] == "open"
    assert r.json()["closed_at"] is None
    spans = client.get(f"/api/opportunities/{opp_id}/stages", headers=h).json()
    assert [x["stage_key"] for x in spans] == ["qualification", "proposal", "closed_won", "proposal"]
    assert all(x["days"] >= 0 for x in spans)
    with db.transaction() as s:
        changes = list(
            s.scalars(select(OpportunityStageChange).where(OpportunityStageChange.opportunity_id == opp_id))
        )
        assert len(changes) == 4 and all(c.seconds_in_previous is not None for c in changes[1:])
        actions = list(s.scalars(select(AuditEntry.action).where(AuditEntry.entity_type == "opportunity")))
        assert actions == ["create", "stage_change", "won", "reopen"]


def test_lost_needs_a_listed_reason_and_can_recycle_the_lead(
    db: Database, client: TestClient, rep: Actor
) -> None:
    opp_id = _open(db, rep, "l@lost-corp.io")
    h = rep.headers
    r = client.post(f"/api/opportunities/{opp_id}/stage", json={"stage": "closed_lost"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["reason_key"]
    r = client.post(
        f"/api/opportunities/{opp_id}/stage", json={"stage": "closed_lost", "reason_key": "nope"}, headers=h
    )
    assert r.status_code == 422
    r = client.post(
        f"/api/opportunities/{opp_id}/stage",
        json={
            "stage": "closed_lost",
            "reason_key": "competitor",
            "reason": "went with Rival",
            "lead_stage": "recycled",
        },
        headers=h,
    )
    assert r.status_code == 200 and r.json()["status"] == "lost"
    with db.transaction() as s:
        lead = s.get(Lead, r.json()["lead_id"])
        assert lead is not None and lead.stage == "recycled" and "competitor" in (lead.status_reason or "")


def test_configurable_reasons_and_pipelines(
    db: Database, client: TestClient, admin: Actor, rep: Actor
) -> None:
    h = admin.headers
    r = client.post(
        "/api/outcome-reasons", json={"kind": "lost", "key": "legal", "label": "Legal review"}, headers=h
    )
    assert r.status_code == 201
    assert "legal" in [x["key"] for x in client.get("/api/outcome-reasons?kind=lost", headers=h).json()]
    assert (
        client.post(
            "/api/outcome-reasons", json={"kind": "lost", "key": "x", "label": "y"}, headers=rep.headers
        ).status_code
        == 403
    )
    stages = [
        {"key": "discovery", "probability": 20, "rotting_days": 7},
        {"key": "pilot", "probability": 60, "forecast_category": "commit"},
        {"key": "won", "probability": 100, "kind": "won"},
        {"key": "lost", "probability": 0, "kind": "lost"},
    ]
    r = client.post(
        "/api/pipelines",
        json={"key": "partners", "name": "Partners", "currency": "EUR", "stages": stages},
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert [s["key"] for s in r.json()["stages"]] == ["discovery", "pilot", "won", "lost"]
    bad = [{"key": "a", "probability": 10}, {"key": "w", "probability": 100, "kind": "won"}]
    r = client.post("/api/pipelines", json={"key": "bad", "name": "Bad", "stages": bad}, headers=h)
    assert r.status_code == 422 and "lost" in r.json()["detail"][0]["msg"]
    lead_id = prospect(db, rep, "p@partner-corp.io")
    r = client.post(
        f"/api/leads/{lead_id}/convert", json={"pipeline": "partners", "amount": 10}, headers=rep.headers
    )
    assert r.status_code == 201 and r.json()["stage"] == "discovery" and r.json()["currency"] == "EUR"
    # A stage holding deals cannot be dropped.
    r = client.put("/api/pipelines/partners/stages", json={"stages": stages[1:]}, headers=h)
    assert r.status_code == 422
    stages[0]["probability"] = 30
    r = client.put("/api/pipelines/partners/stages", json={"stages": stages}, headers=h)
    assert r.status_code == 200 and r.json()["stages"][0]["probability"] == 30


def test_visibility_and_edit_with_version(db: Database, client: TestClient, rep: Actor) -> None:
    other = make_user(db, "Otto", Role.SALES_REP, "west")
    boss = make_user(db, "Eve", Role.MANAGER, "east")
    opp_id = _open(db, rep, "v@vis-corp.io")
    assert client.get(f"/api/opportunities/{opp_id}", headers=other.headers).status_code == 404
    assert client.get(f"/api/opportunities/{opp_id}", headers=boss.headers).status_code == 200
    assert [o["id"] for o in client.get("/api/opportunities", headers=other.headers).json()["items"]] == []
    r = client.patch(f"/api/opportunities/{opp_id}", json={"amount": 7777}, headers=rep.headers)
    assert r.status_code == 422  # no version
    r = client.patch(
        f"/api/opportunities/{opp_id}", json={"amount": 7777}, headers={**rep.headers, "If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.json()["amount"] == 7777 and r.json()["version"] == 2
    r = client.patch(
        f"/api/opportunities/{opp_id}", json={"owner_id": other.user_id, "version": 2}, headers=rep.headers
    )
    assert r.status_code == 403
    with db.transaction() as s, pytest.raises(StaleVersion):
        svc.update_opportunity(s, rep.principal, opp_id, {"name": "x"}, expected_version=1)
    with db.transaction() as s, pytest.raises(NotFound):
        svc.get_opportunity(s, other.principal, opp_id)
    marketer = make_user(db, "Mia", Role.MARKETING)
    assert client.get(f"/api/opportunities/{opp_id}", headers=marketer.headers).status_code == 200
    r = client.post(
        f"/api/opportunities/{opp_id}/stage", json={"stage": "proposal"}, headers=marketer.headers
    )
    assert r.status_code == 403


def test_buying_signals_mark_ready_and_rule_opens_the_deal(
    db: Database, client: TestClient, admin: Actor, rep: Actor
) -> None:
    lead_id = prospect(db, rep, "s@signal-corp.io")
    r = client.post(
        "/api/events", json={"events": [{"lead_id": lead_id, "type": "pricing_request"}]}, headers=rep.headers
    )
    assert r.status_code in (200, 201, 202), r.text
    ready = client.get("/api/opportunity-ready", headers=rep.headers).json()
    assert [x["lead_id"] for x in ready] == [lead_id] and ready[0]["signals"][0]["kind"] == "pricing_request"
    # The rule: two distinct signals open the deal automatically.
    r = client.put(
        "/api/opportunity-rule",
        json={"min_signals": 2, "amount": 900, "stage": "needs_analysis"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    assert client.get("/api/opportunities", headers=rep.headers).json()["items"] == []
    r = client.post(
        f"/api/leads/{lead_id}/decision-timeline",
        json={"decision_date": (date.today() + timedelta(days=45)).isoformat(), "note": "board meets in Q3"},
        headers=rep.headers,
    )
    assert r.status_code == 201 and r.json()["kind"] == "decision_timeline"
    items = client.get("/api/opportunities", headers=rep.headers).json()["items"]
    assert len(items) == 1, items
    opp = items[0]
    assert opp["stage"] == "needs_analysis" and opp["amount"] == 900 and opp["owner_id"] == rep.user_id
    assert opp["signals"] == ["pricing_request", "decision_timeline"]
    with db.transaction() as s:
        assert s.get(Lead, lead_id).stage == "opportunity"  # type: ignore[union-attr]
    assert client.get("/api/opportunity-ready", headers=rep.headers).json() == []
    tl = client.get(f"/api/opportunities/{opp['id']}/timeline", headers=rep.headers).json()
    assert {x["kind"] for x in tl["signals"]} == {"pricing_request", "decision_timeline"}


def test_scan_is_idempotent_and_rule_validation(db: Database, admin: Actor, rep: Actor) -> None:
    lead_id = prospect(db, rep, "i@idem-corp.io")
    with db.transaction() as s:  # written directly, as a bulk load would: no event
        s.add(Activity(lead_id=lead_id, type="trial_start", occurred_at=utcnow(), properties={"plan": "pro"}))
    with db.transaction() as s:
        assert sig.scan(s) == 1
        assert sig.scan(s) == 0
        assert sig.apply_rule(s) == []  # no rule yet
    with db.transaction() as s, pytest.raises(InvalidInput) as exc:
        sig.set_rule(s, admin.principal, active=True, signals=["nope"])
    assert exc.value.loc == ["signals"]


def test_cli_convert_move_and_list(db: Database, rep: Actor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", db.url)
    from leadflow import cli
    from leadflow.config import get_settings

    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setattr(cli.err, "width", 250)

    get_settings.cache_clear()
    lead_id = prospect(db, rep, "c@cli-corp.io")
    runner = CliRunner()
    email = "rita@leadflow-test.io"
    res = runner.invoke(cli_app, ["opp", "convert", str(lead_id), "--amount", "1200", "--as", email])
    assert res.exit_code == 0, res.output
    with db.transaction() as s:
        opp_id = s.scalar(select(Opportunity.id))
    res = runner.invoke(cli_app, ["opp", "move", str(opp_id), "closed_lost", "--as", email])
    assert res.exit_code == 2 and "reason" in res.output
    res = runner.invoke(
        cli_app, ["opp", "move", str(opp_id), "closed_lost", "--reason-key", "price", "--as", email]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli_app, ["opp", "list", "--as", email])
    assert res.exit_code == 0 and "closed_lost" in res.output
    res = runner.invoke(cli_app, ["opp", "show", str(opp_id), "--as", email])
    assert res.exit_code == 0 and "Closed lost" in res.output and "discovery_call" not in res.output
    assert "sql" in res.output and "opportunity" in res.output
    res = runner.invoke(cli_app, ["pipeline", "list"])
    assert res.exit_code == 0 and "negotiation" in res.output
    res = runner.invoke(cli_app, ["opp", "convert", "999999", "--as", email])
    assert res.exit_code == 2
    get_settings.cache_clear()


def test_move_at_time_records_time_in_stage(db: Database, rep: Actor) -> None:
    opp_id = _open(db, rep, "t@time-corp.io")
    later = utcnow() + timedelta(days=3)
    with db.transaction() as s:
        svc.move_stage(s, rep.principal, opp_id, "needs_analysis", at=later)
    with db.transaction() as s:
        ch = s.scalars(
            select(OpportunityStageChange)
            .where(OpportunityStageChange.opportunity_id == opp_id)
            .order_by(OpportunityStageChange.id.desc())
        ).first()
        assert ch is not None and ch.seconds_in_previous is not None
        assert abs(ch.seconds_in_previous - 3 * 86400) < 60


def test_deals_follow_a_merge(db: Database, client: TestClient, rep: Actor, admin: Actor) -> None:
    opp_id = _open(db, rep, "m@merge-corp.io")
    with db.transaction() as s:
        loser = s.get(Opportunity, opp_id).lead_id  # type: ignore[union-attr]
        winner = leads.create_lead(s, rep.principal, {"email": "m2@merge-corp.io"}).lead.id
    r = client.post(f"/api/leads/{winner}/merge", json={"loser_id": loser}, headers=admin.headers)
    assert r.status_code == 200, r.text
    with db.transaction() as s:
        opp = s.get(Opportunity, opp_id)
        assert opp is not None and opp.lead_id == winner and opp.contact_lead_id == winner
