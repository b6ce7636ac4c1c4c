"""``leadflow qualify`` and ``leadflow assign`` on the test database (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_user
from typer.testing import CliRunner, Result

from leadflow import cli
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.config import get_settings
from leadflow.core.lifecycle import MarketingReview, Stage
from leadflow.db.base import Database
from leadflow.leads import service as leads


class Run:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(cli.app, list(args))

    def ok(self, *args: str) -> str:
        res = self(*args)
        assert res.exit_code == 0, (args, res.output)
        return res.stdout


@pytest.fixture
def run(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", db.url)
    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setattr(cli.err, "width", 250)
    get_settings.cache_clear()
    yield Run()
    get_settings.cache_clear()


def test_assess_call_levels_and_script(run: Run, db: Database) -> None:
    rep = make_user(db, "Rex", Role.SALES_REP, team="east")
    email = "rex@leadflow-test.io"
    with db.transaction() as s:
        lid = leads.create_lead(s, rep.principal, {"email": "p@globex.com", "job_title": "CTO"}).lead.id
    res = run(
        "qualify", "assess", str(lid), "-a", "need=faster onboarding", "-a", "timeline=someday", "--as", email
    )
    assert res.exit_code == 2 and "timeline" in res.output
    out = run.ok(
        "qualify",
        "assess",
        str(lid),
        "-a",
        "need=faster onboarding",
        "-a",
        "solution=routing",
        "-a",
        "timeline=now",
        "--call",
        "--as",
        email,
    )
    assert "sal" in out and f"lead {lid} is sal" in out
    script = json.loads(run.ok("qualify", "script", str(lid), "--json", "--as", email))
    assert script["framework"] == "bant" and script["questions"][0]["criterion"] == "budget"
    assert "Opening" in run.ok("qualify", "script", str(lid), "--as", email)
    res = run("qualify", "call", str(lid), "--outcome", "sql", "-r", "budget=0", "--as", email)
    assert res.exit_code == 2 and "override_reason" in res.output
    out = run.ok(
        "qualify",
        "call",
        str(lid),
        "--outcome",
        "sql",
        "-r",
        "budget=2",
        "-r",
        "authority=3",
        "-r",
        "need=3",
        "-r",
        "timeline=2",
        "-a",
        "budget=approved",
        "--as",
        email,
    )
    assert f"lead {lid} is sql" in out
    doc = json.loads(run.ok("qualify", "levels", str(lid), "--json", "--as", email))
    assert doc["opportunity"]["status"] == "qualified" and doc["buying_role"] == "decision_maker"
    res = run(
        "qualify", "levels", str(lid), "--level", "organization", "--status", "qualified", "--as", email
    )
    assert res.exit_code == 2 and "reason" in res.output
    out = run.ok(
        "qualify",
        "levels",
        str(lid),
        "--level",
        "organization",
        "--status",
        "unqualified",
        "--reason",
        "too small",
        "--as",
        email,
    )
    assert "manual" in out and "too small" in out
    with db.transaction() as s:
        account_id = leads.get_lead(s, SYSTEM, lid).account_id
    assert "CTO" in run.ok("qualify", "committee", str(account_id))


def test_queue_reject_sla_and_reports(run: Run, db: Database, tmp_path: Path) -> None:
    make_user(db, "Rex", Role.SALES_REP, team="east")
    with db.transaction() as s:
        ids = [
            leads.create_lead(s, SYSTEM, {"email": f"m{i}@example.org", "source": "webinar"}).lead.id
            for i in range(2)
        ]
    for lid in ids:
        with db.transaction() as s:
            leads.transition_lead(s, SYSTEM, lid, Stage.MQL, evidence=MarketingReview(note="x"))
    out = run.ok("qualify", "queue")
    assert str(ids[0]) in out and str(ids[1]) in out
    res = run("qualify", "reject", str(ids[0]), "--reason", "whatever")
    assert res.exit_code == 2 and "reason" in res.output
    assert "back to nurture" in run.ok("qualify", "reject", str(ids[0]), "--reason", "no_need")
    assert "0 new SLA breach(es)" in run.ok("qualify", "sla-check")
    doc = json.loads(run.ok("qualify", "report", "rejections", "--json"))
    assert doc["by_source"]["webinar"]["rejected"] == 1 and doc["rejection_rate"] == 1.0
    assert "webinar" in run.ok("qualify", "report", "sla")
    assert run("qualify", "report", "funnel").exit_code == 2
    # Configuration from files.
    (tmp_path / "sla.yaml").write_text("first_touch_minutes: 60\nbusiness_hours: {timezone: Europe/Paris}\n")
    out = json.loads(run.ok("qualify", "config", "handoff", "--set", str(tmp_path / "sla.yaml")))
    assert out["first_touch_minutes"] == 60 and out["business_hours"]["timezone"] == "Europe/Paris"
    (tmp_path / "bad.yaml").write_text("first_touch_minutes: -5\n")
    res = run("qualify", "config", "handoff", "--set", str(tmp_path / "bad.yaml"))
    assert res.exit_code == 2 and "first_touch_minutes" in res.output
    fw = json.loads(run.ok("qualify", "config", "framework", "--preset", "champ", "--default"))
    assert fw["key"] == "champ" and fw["default"] is True
    q = json.loads(run.ok("qualify", "config", "questionnaire"))
    assert q["questions"][0]["key"] == "source"


def test_assign_rules_capacity_apply(run: Run, db: Database, tmp_path: Path) -> None:
    ann = make_user(db, "Ann", Role.SALES_REP, team="emea")
    (tmp_path / "rule.json").write_text(
        json.dumps({"name": "EMEA", "strategy": "round_robin", "team": "emea"})
    )
    out = run.ok("assign", "rules", "--add", str(tmp_path / "rule.json"))
    assert "Account owner" in out and "EMEA" in out and "round_robin" in out
    (tmp_path / "bad.json").write_text(json.dumps({"name": "X", "strategy": "telepathy"}))
    res = run("assign", "rules", "--add", str(tmp_path / "bad.json"))
    assert res.exit_code == 2 and "strategy" in res.output
    assert "3" in run.ok("assign", "capacity", str(ann.user_id), "--max", "3")
    with db.transaction() as s:
        lid = leads.create_lead(s, SYSTEM, {"email": "new@example.org"}).lead.id
    out = run.ok("assign", "apply", "--lead", str(lid))
    assert "1 assigned" in out and f"lead {lid} -> {ann.user_id}" in out
    assert run("assign", "apply").exit_code == 2
