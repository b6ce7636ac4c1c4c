"""Reports over a small, known history: funnel, velocity, forecast, stale deals, attribution,
leaderboard and loss reasons through the service, the API (JSON, CSV, PNG) and the CLI."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from leadflow.auth.models import Role
from leadflow.cli import app as cli_app
from leadflow.core import pipeline as core
from leadflow.core.lifecycle import DiscoveryCall, NeedsAssessment, ScoreThreshold, Stage
from leadflow.db.base import Database, utcnow
from leadflow.leads import activities
from leadflow.leads import service as leads
from leadflow.pipeline import service as svc
from leadflow.pipeline.models import Opportunity
from leadflow.reports import registry
from leadflow.reports.facts import refresh

PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class World:
    rep: Actor
    other: Actor
    won_id: int
    open_id: int
    lost_id: int


def _walk(db: Database, actor: Actor, lead_id: int, *moves: tuple[Stage, int]) -> None:
    now = utcnow()
    evidence = {
        Stage.MQL: ScoreThreshold(score=80, threshold=60),
        Stage.SAL: NeedsAssessment(),
        Stage.SQL: DiscoveryCall(),
    }
    for stage, day in moves:
        with db.transaction() as s:
            leads.transition_lead(
                s, actor.principal, lead_id, stage, evidence=evidence[stage], at=now + timedelta(days=day)
            )


@pytest.fixture
def world(db: Database, admin: Actor) -> World:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    other = make_user(db, "Otto", Role.SALES_REP, "west")
    a = admin.principal
    ids = {}
    with db.transaction() as s:
        for key, source, owner in (
            ("a", "webinar", rep.user_id),
            ("b", "webinar", rep.user_id),
            ("c", "paid_search", None),
            ("e", "paid_search", other.user_id),
        ):
            ids[key] = leads.create_lead(
                s,
                a,
                {
                    "email": f"{key}@{key}-corp.io",
                    "source": source,
                    "campaign": f"{source}-q1",
                    "owner_id": owner,
                },
            ).lead.id
        ids["d"] = leads.create_lead(
            s,
            a,
            {"email": "d@d-corp.io", "source": "referral", "owner_id": rep.user_id, "origin": "sales"},
            stage=Stage.SAL,
            evidence=NeedsAssessment(),
        ).lead.id
    _walk(db, admin, ids["a"], (Stage.MQL, 1), (Stage.SAL, 3), (Stage.SQL, 4))
    _walk(db, admin, ids["b"], (Stage.MQL, 2))
    _walk(db, admin, ids["d"], (Stage.SQL, 5))
    _walk(db, admin, ids["e"], (Stage.MQL, 1), (Stage.SAL, 2), (Stage.SQL, 3))
    with db.transaction() as s:
        activities.ingest(
            s,
            a,
            [
                {
                    "lead_id": ids["a"],
                    "type": "page_view",
                    "properties": {"utm_source": "google", "campaign": "brand"},
                }
            ],
        )
    next_month = (date.today().replace(day=1) + timedelta(days=40)).replace(day=10)
    with db.transaction() as s:
        won = svc.convert_lead(
            s, a, ids["a"], svc.ConvertInput(amount=1000, owner_id=rep.user_id, owner_set=True)
        )
        open_ = svc.convert_lead(
            s,
            a,
            ids["d"],
            svc.ConvertInput(
                amount=2000, owner_id=rep.user_id, owner_set=True, expected_close_date=next_month
            ),
        )
        lost = svc.convert_lead(
            s, a, ids["e"], svc.ConvertInput(amount=500, owner_id=other.user_id, owner_set=True)
        )
        svc.move_stage(s, a, open_.id, "proposal")
        svc.move_stage(s, a, won.id, "closed_won", reason_key="product_fit", at=utcnow() + timedelta(days=10))
        svc.move_stage(s, a, lost.id, "closed_lost", reason_key="price")
        w = World(rep, other, won.id, open_.id, lost.id)
    return w


def _run(db: Database, actor: Actor, name: str, **params: str) -> registry.ReportResult:
    with db.transaction() as s:
        return registry.run(s, actor.principal, name, params)[2]


def test_funnel_counts_and_rates(db: Database, admin: Actor, world: World) -> None:
    res = _run(db, admin, "funnel", group_by="total")
    (row,) = res.rows
    assert [row[k] for k in ("leads", "mql", "sal", "sql", "opportunity", "won")] == [5, 4, 3, 3, 3, 1]
    assert row["lead_to_won"] == 20.0 and row["mql_to_sal"] == 75.0
    by_source = {r["group"]: r for r in _run(db, admin, "funnel", group_by="source").rows}
    assert by_source["webinar"]["leads"] == 2 and by_source["webinar"]["won"] == 1
    assert by_source["paid_search"]["sql"] == 1 and by_source["total"]["leads"] == 5
    by_campaign = {r["group"]: r for r in _run(db, admin, "funnel", group_by="campaign").rows}
    assert by_campaign["webinar-q1"]["mql"] == 2
    month = date.today().strftime("%Y-%m")
    assert {r["group"] for r in _run(db, admin, "funnel").rows} == {month, "total"}
    assert _run(db, admin, "funnel", **{"from": "2099-01"}).rows[-1]["leads"] == 0
    # A rep counts only its own leads.
    mine = _run(db, world.rep, "funnel", group_by="total").rows[0]
    assert mine["leads"] == 3 and mine["won"] == 1


def test_facts_follow_new_stage_changes(db: Database, admin: Actor, world: World) -> None:
    before = _run(db, admin, "funnel", group_by="total").rows[0]
    with db.transaction() as s:
        lead_id = leads.create_lead(s, admin.principal, {"email": "late@late-corp.io"}).lead.id
    _walk(db, admin, lead_id, (Stage.MQL, 0))
    after = _run(db, admin, "funnel", group_by="total").rows[0]
    assert after["leads"] == before["leads"] + 1 and after["mql"] == before["mql"] + 1
    with db.transaction() as s:  # an erased lead leaves the facts
        leads.delete_lead(s, admin.principal, lead_id)
    assert _run(db, admin, "funnel", group_by="total").rows[0]["leads"] == before["leads"]
    with db.transaction() as s:
        full = refresh(s, full=True)
    assert full.full and full.leads == before["leads"]


def test_velocity_median_and_p90(db: Database, admin: Actor, world: World) -> None:
    rows = {(r["section"], r["key"]): r for r in _run(db, admin, "velocity").rows}
    mql = rows[("lifecycle", "mql")]
    assert mql["count"] == 2 and mql["median_days"] == 1.0 and mql["p90_days"] == 2.0  # a: 2 days, e: 1 day
    assert rows[("lifecycle", "sal")]["count"] == 3
    assert rows[("pipeline sales", "qualification")]["count"] == 3
    assert core.percentile_from_histogram([(1, 9), (10, 1)], 0.9) == 1.0
    assert core.percentile_from_histogram([(1, 8), (10, 2)], 0.9) == 10.0


def test_forecast_stale_attribution_leaderboard_reasons(db: Database, admin: Actor, world: World) -> None:
    fc = _run(db, admin, "forecast", group_by="owner")
    rita = next(r for r in fc.rows if r["group"] == "Rita")
    assert rita["open_deals"] == 1 and rita["open_amount"] == 2000 and rita["weighted"] == 1000
    assert rita["best_case"] == 2000 and rita["closed_won"] == 1000
    months = _run(db, admin, "forecast").rows
    assert sum(r["weighted"] for r in months) == 1000
    # Stale: nothing is idle yet; push the open deal 30 days back.
    assert _run(db, admin, "stale_deals").rows == []
    old = utcnow() - timedelta(days=30)
    with db.transaction() as s:
        s.execute(
            update(Opportunity)
            .where(Opportunity.id == world.open_id)
            .values(stage_entered_at=old, last_activity_at=old)
        )
    stale = _run(db, admin, "stale_deals").rows
    assert [r["id"] for r in stale] == [world.open_id] and stale[0]["idle_days"] >= 30
    attr = {r["source"]: r for r in _run(db, admin, "attribution").rows}
    assert attr["webinar"]["first_revenue"] == 1000 and attr["webinar"]["first_share"] == 100.0
    assert attr["google"]["last_revenue"] == 1000
    board = _run(db, admin, "leaderboard").rows
    assert [r["owner"] for r in board] == ["Rita", "Otto"]
    assert board[0]["won"] == 1 and board[0]["win_rate"] == 100.0 and board[0]["avg_cycle_days"] >= 9.9
    assert board[1]["lost"] == 1 and board[1]["win_rate"] == 0.0
    lost = _run(db, admin, "loss_reasons").rows
    assert lost == [
        {"reason": "price", "label": "Price too high", "deals": 1, "amount": 500.0, "share": 100.0}
    ]
    assert _run(db, admin, "loss_reasons", kind="won").rows[0]["reason"] == "product_fit"
    # Otto sees only his deals.
    assert [r["owner"] for r in _run(db, world.other, "leaderboard").rows] == ["Otto"]


def test_reports_api_json_csv_png_and_errors(
    db: Database, client: TestClient, admin: Actor, world: World
) -> None:
    h = admin.headers
    names = {r["name"] for r in client.get("/api/reports", headers=h).json()}
    assert {
        "funnel",
        "velocity",
        "forecast",
        "stale_deals",
        "attribution",
        "leaderboard",
        "loss_reasons",
    } <= names
    body = client.get("/api/reports/funnel?group_by=source", headers=h).json()
    assert body["params"]["group_by"] == "source" and body["columns"][0]["key"] == "group"
    r = client.get("/api/reports/leaderboard?format=csv", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["owner"] == "Rita" and rows[0]["revenue"] == "1000.0"
    for name in (
        "funnel",
        "forecast",
        "velocity",
        "leaderboard",
        "attribution",
        "loss_reasons",
        "stale_deals",
    ):
        r = client.get(f"/api/reports/{name}?format=png", headers=h)
        assert r.status_code == 200 and r.content.startswith(PNG), name
    r = client.get("/api/reports/funnel?group_by=planet", headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["group_by"]
    r = client.get("/api/reports/funnel?from=2026-13", headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["from"]
    r = client.get("/api/reports/funnel?colour=red", headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["colour"]
    assert client.get("/api/reports/nope", headers=h).status_code == 404
    assert client.get("/api/reports/funnel").status_code == 401


def test_reports_cli_table_csv_json_chart(
    db: Database, admin: Actor, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow import cli
    from leadflow.config import get_settings

    monkeypatch.setenv("LEADFLOW_DATABASE_URL", db.url)
    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setattr(cli.err, "width", 250)
    get_settings.cache_clear()
    runner = CliRunner()
    chart = tmp_path / "funnel.png"
    res = runner.invoke(cli_app, ["report", "funnel", "--chart", str(chart)])
    assert res.exit_code == 0, res.output
    assert "Funnel conversion" in res.output and chart.read_bytes().startswith(PNG)
    res = runner.invoke(cli_app, ["report", "funnel", "--format", "csv", "--group-by", "source"])
    assert res.exit_code == 0 and res.output.startswith("group,leads,mql")
    out = tmp_path / "lb.json"
    res = runner.invoke(cli_app, ["report", "leaderboard", "--format", "json", "-o", str(out)])
    assert res.exit_code == 0 and '"Rita"' in out.read_text()
    res = runner.invoke(cli_app, ["report", "list"])
    assert res.exit_code == 0 and "attribution" in res.output
    res = runner.invoke(cli_app, ["report", "funnel", "--from", "May"])
    assert res.exit_code == 2 and "from" in res.output
    res = runner.invoke(cli_app, ["report", "forecast", "-p", "group_by=month_owner"])
    assert res.exit_code == 0 and "Rita" in res.output
    res = runner.invoke(cli_app, ["report", "refresh", "--full"])
    assert res.exit_code == 0 and "rebuilt" in res.output
    get_settings.cache_clear()


def test_registry_accepts_new_reports(db: Database, admin: Actor) -> None:
    @registry.register("test_echo", "Echo", params=(registry.Param("word", default="hi"),))
    def echo(session: object, actor: object, p: dict[str, str]) -> registry.ReportResult:
        return registry.ReportResult("Echo", [registry.Column("word", "Word")], [{"word": p["word"]}])

    try:
        assert _run(db, admin, "test_echo", word="yo").rows == [{"word": "yo"}]
    finally:
        registry.REPORTS.pop("test_echo")
